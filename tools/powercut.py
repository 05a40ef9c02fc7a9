"""Power cuts on an emulated mesh: does every node come back from any of them?

    .venv/bin/python tools/powercut.py [--cycles N] [--heap 128K] [--full-store]
                                       [--romfs] [--seed S] [--json] [--keep DIR]

Four real MicroPython nodes in a line (A - B - C - D, EU868-10, ShortFast) on
the virtual radio medium carry direct messages (also to D while it is switched
off, so they are held), posts, and files from a pool that A shares and D (C
while D is off) fetches across the relays, whose small file stores evict as
files pass. Again and again one node's power is cut (SIGKILL): at a random
moment while it sends, relays, holds, fetches or serves, or at its n-th
storage rename or unlink (tools/powercut_node.py, with strace; the firmware
is unchanged), also during its start-up; then it starts again on the same
storage.

After each cut, before the restart, every record in the node's storage is
decoded with the firmware's own decoders (tools/powercut_check.py). Every
frame on air is checked for id reuse. At the end every node is started, the
mesh is given time to deliver, and every direct message a node accepted must
have been delivered or still be held in storage, and every post it accepted
must have gone on air or still be in storage (`lost` counts both).

--full-store: D stays off until the end; A, B and C are kept at held_capacity
(messages to D, topped up before every cut), A's file store is at its quota
and C fetches until its own is full.

The summary (--json: one JSON object): cycles (power cuts), failed_starts,
crash_loops, corrupt_records, lost, id_reuse, fetches_started,
fetches_resumed, duplicates, peak_heap_bytes, seconds_per_cycle, and under
"details" what was cut where and the evidence of each failure.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from powercut_check import AirWatch, Ledger, scan_store  # noqa: E402

SETTINGS = {
    "beacon_interval_ms": 1500, "neighbour_expiry_ms": 20000,
    "lifetime_ms": 3600000,        # nothing expires in a run
    "catalog_interval_ms": 10000,  # a restarted relay learns of the files again soon
}
START_TIMEOUT_S = 10.0             # a restart without "started" by then failed
CRASH_WINDOW_S = 5.0               # an exit of its own this soon after a start is early
CRASH_LOOP = 3                     # early exits in a row that make a crash loop
# the files A shares: three (at 128K a node that shares a fourth loses the
# console lines that carry it to a full heap)
POOL_BYTES = (600, 1000, 1400)
RELAY_QUOTA_BYTES = 3200           # two files cached at a relay: the third evicts
ARM_AT_START = 0.3                 # share of restarts run armed (a cut at a storage call)
MAX_EVIDENCE = 40
PROBE_S = 10.0                     # every node is asked for its status this often


def _cpu_s(p):
    # CPU seconds the node's process has used (Linux /proc)
    try:
        fields = Path(f"/proc/{p.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100
    except (OSError, IndexError, ValueError, AttributeError):
        return 0.0


def _kind(record):
    # what a storage record is, for the tally of cut points
    if record.endswith(".tmp"):
        record = record[:-4]
    if record[:1] == "h":
        return "held"
    if record[:1] == "q":
        return "fetch"
    if record[:1] == "f":
        return {"m": "manifest", "s": "file-state"}.get(record[-1:], "chunk")
    return record or "?"


class Harness:
    def __init__(self, cycles, heap, full_store, seed, workdir, say, settle_s=None,
                 share_over_console=True, neighbours_s=3.0, no_strace=False, romfs=False):
        from powercut_node import strace_usable

        self.cycles = cycles
        self.heap = heap
        self.full = full_store
        self.romfs = romfs
        self.seed = seed
        self.rng = random.Random(seed)
        self.workdir = Path(workdir)
        self.say = say
        self.settle_s = settle_s or (240.0 if full_store else 90.0)
        self.share_over_console = share_over_console
        self.neighbours_s = neighbours_s
        self.no_strace = "--no-strace" if no_strace else strace_usable()
        self.key_hex = "%064x" % self.rng.getrandbits(256)
        self.ledger = Ledger()
        self.air = AirWatch()
        self.lock = threading.Lock()
        self.answers = {}         # ref -> event
        self.started_t = {}       # node -> time of its last "started"
        self.down = set()         # nodes switched off on purpose
        self.away = False         # D is off (its messages are held)
        self.finishing = False    # no more arms
        self.fetching = {}        # (node, cid) -> {"interrupted": bool}
        self.have = {}            # node -> cids it has fetched
        self.orphans = {}         # node -> orphan names at its last scan
        self.early = {}           # node -> early exits in a row
        self.recent = {}          # node -> its last few console events (for evidence)
        self.looping = set()      # nodes in a crash loop, left off
        self.idle = 0             # cycles in a row with no node on
        self.next_probe = 0.0     # when to ask every node whether it is still there
        self.hung = set()         # (node, start time) of lives seen hung
        self.leaked = set()
        self.ref = 0
        self.n = {k: 0 for k in (
            "cuts", "timed_cuts", "write_cuts", "startup_cuts", "arms", "failed_starts",
            "crash_loops", "unexpected_exits", "corrupt", "torn_complete", "orphans_at_cut",
            "orphans_leaked", "tmp_left", "sends", "refused", "fetches_requested",
            "fetches_started", "fetches_done", "fetches_failed", "fetches_interrupted",
            "fetches_resumed", "wipes", "shares_failed", "mute_at_end", "hangs", "probes",
            "fetch_commands_lost")}
        self.cut_by = {}          # why a timed cut: "send", "relay", ... -> count
        self.write_points = {}    # "rename held before" -> cuts there
        self.evidence = []
        self.final = {}           # node -> parts of its status at the end

    # ---- what the nodes say (reader threads) ---------------------------------------

    def on_event(self, proc, ev):
        i = proc.node_id
        kind = ev.get("event")
        if kind == "sent" and "id" in ev:
            self.ledger.sent(i, ev)
        elif kind == "received":
            self.ledger.got(i, ev)
        elif kind == "status":
            self.ledger.status(i, ev)
        elif kind == "started":
            self.started_t[i] = ev["_t"]
        elif kind == "fetch_started":
            self.n["fetches_started"] += 1
            with self.lock:
                f = self.fetching.get((i, ev.get("cid")))
                if f is not None:
                    f["started"] = True
        elif kind in ("fetched", "fetch_failed"):
            self._fetch_ended(i, ev)
        elif kind == "expired":
            self.ledger.expired.append((i, ev.get("id"), ev.get("to")))
        if kind not in ("status", "sent", "received"):
            self.recent.setdefault(i, deque(maxlen=8)).append(
                {k: v for k, v in ev.items() if k not in ("_t", "_node")})
        ref = ev.get("ref")
        if ref is not None:
            with self.lock:
                self.answers[ref] = ev

    def _fetch_ended(self, i, ev):
        with self.lock:
            f = self.fetching.pop((i, ev.get("cid")), None)
        if ev["event"] == "fetch_failed":
            self.n["fetches_failed"] += 1
            self._evidence("fetch failed", node=i, cid=ev.get("cid"), error=ev.get("error"))
            return
        self.n["fetches_done"] += 1
        self.have.setdefault(i, set()).add(ev.get("cid"))
        if not ev.get("verified"):
            self._evidence("fetched file not verified", node=i, cid=ev.get("cid"))
        if f is not None and f["interrupted"]:
            self.n["fetches_resumed"] += 1

    def _evidence(self, what, **info):
        with self.lock:
            if len(self.evidence) < MAX_EVIDENCE:
                self.evidence.append(dict(what=what, cut=self.n["cuts"], **{
                    k: (f"{v:08x}" if k == "node" else v) for k, v in info.items()}))

    # ---- the run ----------------------------------------------------------------------

    def run(self):
        from pollen.crypto import NetworkKey
        from pollen_controller.emulation.mesh import Emulation
        from pollen_controller.topology import line

        self.netkey = NetworkKey(bytes.fromhex(self.key_hex))
        topo = line(4)
        self.ids = sorted(topo.node_ids)
        self.A, self.B, self.C, self.D = self.ids
        self.emu = Emulation(topo, self.workdir, self.key_hex, seed=self.seed, heap=self.heap,
                             node_settings=SETTINGS, on_event=self.on_event, romfs=self.romfs)
        self.emu.medium.on_transmit = lambda sender, frame, t: self.air.frame(sender, frame)
        t0 = time.monotonic()
        with self.emu:
            if self.emu.wait_started():
                raise RuntimeError("the nodes did not start")
            self._setup()
            t_cycles = time.monotonic()
            self.next_probe = t_cycles + PROBE_S
            while self.n["cuts"] < self.cycles and self.idle < 20:
                self._cycle()
                self._drain()
                if self.n["cuts"] // 25 != getattr(self, "_said", 0):
                    self._said = self.n["cuts"] // 25
                    self.say(f"{self.n['cuts']} cuts, {time.monotonic() - t_cycles:.0f} s")
            cycles_s = time.monotonic() - t_cycles
            held = self._finish()
        return self._summary(held, cycles_s, time.monotonic() - t0)

    def _setup(self):
        from pollen_controller.node import files_client
        from pollen_controller.node.link import LinkError, ProcessLink
        from powercut_node import CutNode

        # each node again as a CutNode, with its own file quota (not counted as cuts)
        pool = [self.rng.randbytes(n) for n in POOL_BYTES]
        pool_quota = sum(-(-len(d) // 200) * 200 for d in pool)
        quota = {self.A: pool_quota if self.full else 32768, self.B: RELAY_QUOTA_BYTES,
                 self.C: pool_quota if self.full else RELAY_QUOTA_BYTES, self.D: 32768}
        for i, old in list(self.emu.nodes.items()):
            old.stop(hard=True)
            p = CutNode(i, old.folder, dict(old.config, file_quota_bytes=quota[i]), old.fw_dir,
                        self.heap, self.on_event, old.rom_image)
            self.emu.nodes[i] = p
            if i == self.A and not self.share_over_console:
                self.pool = [self._share_offline(i, data, k, quota[i])
                             for k, data in enumerate(pool)]
            self._start(i, count=False)
        time.sleep(self.neighbours_s)  # neighbours find each other
        self._drain()
        if self.share_over_console:
            # as a user would (pollen share); what the node does not take, for
            # want of heap, it is given offline
            link = ProcessLink(self.emu.nodes[self.A])
            self.pool = []
            for k, data in enumerate(pool):
                try:
                    self.pool.append(files_client.share(link, data, f"pool-{k}.bin",
                                                        created_s=1700000000 + k)["cid"])
                    continue
                except LinkError as e:
                    self.n["shares_failed"] += 1
                    self._evidence("share failed", node=self.A, file=f"pool-{k}.bin", error=str(e),
                                   console=list(self.recent.get(self.A, ()))[-1:])
                self.emu.nodes[self.A].stop(hard=True)
                self.pool.append(self._share_offline(self.A, data, k, quota[self.A]))
                self._start(self.A, count=False)
        self.say(f"A shares {len(self.pool)} files ({sum(map(len, pool))} bytes); heap "
                 f"{self.heap}{', full store' if self.full else ''}{', ROMFS' if self.romfs else ''}"
                 + (f"; no cuts at storage calls: {self.no_strace}" if self.no_strace else ""))
        if self.full:
            self._switch_d(off=True)
            for i in (self.A, self.B, self.C):
                self._top_up(i)
        self._sleep(min(1.0, self.neighbours_s))

    def _share_offline(self, i, data, k, quota):
        # node i (stopped) is given pool file k as its own, written into its
        # store by the firmware's own code, here under CPython; the same file
        # files_client.share makes (a share cut short is completed)
        from pollen import file_author, files
        from pollen.held_files import HeldFiles
        from pollen_io.filestore import FileStorage

        p = self.emu.nodes[i]
        (p.folder / "store").mkdir(parents=True, exist_ok=True)
        store = HeldFiles(FileStorage(str(p.folder / "store")), quota)
        raw = file_author.make_manifest(f"pool-{k}.bin", "application/octet-stream", data, i,
                                        1700000000 + k)
        cid = store.begin(raw, own=True)
        m = store.manifests[cid]
        for k in range(m.chunks):
            store.put_chunk(cid, k, file_author.chunk_of(data, k, m.chunk_bytes))
        assert store.complete(cid)
        return files.cid_str(cid)

    def _cycle(self):
        self._watch()
        if time.monotonic() >= self.next_probe:
            self._probe()
        if not self.full and self.rng.random() < 0.1:
            self._switch_d(off=not self.away)
            return
        if not self._up():
            # every node off (crash loops): nothing to cut; the run ends if that lasts
            self._sleep(0.5)
            self.idle += 1
            return
        self.idle = 0
        kind = self.rng.choices(("send", "relay", "fetch", "write", "startup"),
                                (2, 2, 2, 2, 1))[0]
        if kind in ("write", "startup") and self.no_strace:
            kind = "send"
        getattr(self, "_scn_" + kind)()

    # ---- scenarios: each ends in at least one cut ----------------------------------------

    def _scn_send(self):
        victim = self.rng.choice(self._up())
        self._top_up(victim)
        self._traffic(victim, self.rng.randint(1, 4))
        self._cut_after(victim, self.rng.uniform(0, 1.2), "send")

    def _scn_relay(self):
        relays = self._up([self.B, self.C])
        if not relays:
            return self._scn_send()
        victim = self.rng.choice(relays)
        self._top_up(victim)
        for src in self._up([self.A, self.D]) or self._up():
            self._traffic(src, self.rng.randint(1, 3))
        self._cut_after(victim, self.rng.uniform(0.05, 1.5), "relay")

    def _scn_fetch(self):
        f = self._start_fetch()
        if f is None:
            return self._scn_send()
        fetcher, relays = f
        victim = self.rng.choice([fetcher, fetcher] + relays + [self.A])
        if victim not in self._up():
            victim = fetcher
        self._top_up(victim)
        self._cut_after(victim, self.rng.uniform(0.1, 4.0), "fetch")

    def _scn_write(self):
        # a running node is armed: cut at its n-th rename or unlink from now,
        # while it sends, relays, fetches; if none comes, at a random moment
        victim = self.rng.choice(self._up())
        self._top_up(victim)
        p = self.emu.nodes[victim]
        if p.arm_running(*self._random_arm(start=False)):
            self.n["arms"] += 1
        cuts = self.n["cuts"]
        self._traffic(victim, self.rng.randint(1, 3))
        if victim != self.A:
            self._start_fetch()
        for src in self._up([self.A, self.D]):
            if src != victim:
                self._traffic(src, 1)
        end = time.monotonic() + 5.0
        while time.monotonic() < end and self.n["cuts"] == cuts:
            self._sleep(0.05)
        if self.n["cuts"] == cuts:
            self._cut(victim, "write (not reached)")
            self._restart(victim)

    def _scn_startup(self):
        # a cut at a random moment, then one at a storage call of the start that follows
        victim = self.rng.choice(self._up())
        self._cut_after(victim, self.rng.uniform(0, 1.0), "before a start-up cut", restart=False)
        if victim == self.D and self.away:
            return
        arm = self.rng.choice((("rename", 1), ("rename", 2), ("unlink", 1), ("rename", 3)))
        cuts = self.n["cuts"]
        self._start(victim, arm=arm + (self.rng.choice(("before", "after")),))
        end = time.monotonic() + 2.0
        while time.monotonic() < end and self.n["cuts"] == cuts:
            self._sleep(0.02)
        if self.n["cuts"] == cuts:
            self._cut(victim, "start-up (not reached)")
            self._restart(victim)
        else:
            self.n["startup_cuts"] += 1

    # ---- cuts and starts ---------------------------------------------------------------

    def _cut_after(self, victim, delay_s, why, restart=True):
        # its status first: the peak heap of the life about to end
        self._command(victim, {"cmd": "status"})
        self._sleep(delay_s)
        self._cut(victim, why)
        if restart:
            self._restart(victim)

    def _cut(self, i, why):
        """A timed cut (unless strace got there first)."""
        p = self.emu.nodes[i]
        if not p.running and i not in self.down:
            self._watch()   # it went by itself meanwhile: that is the cut
            return
        self.down.add(i)
        p.stop(hard=True)
        self.n["timed_cuts"] += 1
        self.cut_by[why] = self.cut_by.get(why, 0) + 1
        self._after_cut(i, f"cut ({why})")

    def _after_cut(self, i, when, point=None):
        self.n["cuts"] += 1
        with self.lock:
            for (node, _), f in self.fetching.items():
                if node == i and not f["interrupted"]:
                    f["interrupted"] = True
                    self.n["fetches_interrupted"] += 1
        time.sleep(0.05)  # the console reader takes what the node said last
        s = self._scan(i, when, point)
        # a fetch asked for and not yet confirmed goes on if its record was written
        from pollen.files import cid_hex, parse_cid

        with self.lock:
            for (node, cid), f in list(self.fetching.items()):
                if node == i and not f["started"]:
                    if cid_hex(parse_cid(cid)) in s.fetch_cids:
                        f["started"] = True
                    else:
                        del self.fetching[(node, cid)]
                        self.n["fetch_commands_lost"] += 1
        if when.startswith("cut"):
            self._maybe_wipe(i)

    def _scan(self, i, when, point=None):
        from pollen.files import MAX_FILE_BYTES

        store = self.emu.nodes[i].folder / "store"
        s = scan_store(store, self.netkey, MAX_FILE_BYTES)
        self.n["tmp_left"] += len(s.tmp_left)
        at = " ".join(point) if point else None
        for what, name, why in s.problems():
            if what == "orphan":
                continue
            self.n["corrupt" if what == "corrupt" else "torn_complete"] += 1
            self._evidence(what, node=i, record=name, why=why, when=when, cut_at=at)
            self._keep_copy(store, i)
        names = {name for name, _ in s.orphans}
        self.n["orphans_at_cut"] += len(names)
        for name in sorted(names & self.orphans.get(i, set())):
            if (i, name) not in self.leaked:
                self.leaked.add((i, name))
                self.n["orphans_leaked"] += 1
                self._evidence("orphan a restart left in place", node=i, record=name,
                               why=dict(s.orphans)[name], when=when, cut_at=at)
        self.orphans[i] = names
        return s

    def _keep_copy(self, store, i):
        base = self.workdir / "evidence"
        dest = base / f"cut{self.n['cuts']}-{i:08x}"
        if not dest.exists() and (not base.exists() or len(list(base.iterdir())) < 10):
            shutil.copytree(store, dest)

    def _maybe_wipe(self, i):
        # a fetcher that has the whole pool forgets its files (as if its user
        # deleted them), so it has something to fetch again; not while fetching
        busy = any(node == i for node, _ in self.fetching)
        if i in (self.C, self.D) and set(self.pool) <= self.have.get(i, set()) and not busy:
            for rec in (self.emu.nodes[i].folder / "store").iterdir():
                if rec.name[:1] in ("f", "q"):
                    rec.unlink()
            self.have[i] = set()
            self.orphans[i] = set()
            self.n["wipes"] += 1

    def _random_arm(self, start):
        syscall = self.rng.choice(("rename", "rename", "unlink"))
        n = self.rng.randint(1, 8 if syscall == "rename" else 4) + (2 if start else 0)
        return syscall, n, self.rng.choice(("before", "after"))

    def _restart(self, i):
        if i == self.D and self.away or i in self.looping:
            return  # D stays off until it is switched on; a crash loop until the end
        arm = None
        if not self.no_strace and not self.finishing and self.rng.random() < ARM_AT_START:
            arm = self._random_arm(start=True)
        self._start(i, arm=arm)

    def _start(self, i, count=True, arm=None):
        p = self.emu.nodes[i]
        for attempt in range(3):
            t0 = time.monotonic()
            p.arm = arm
            if arm:
                self.n["arms"] += 1
            p.start()
            self.down.discard(i)
            while time.monotonic() - t0 < START_TIMEOUT_S:
                if self.started_t.get(i, 0) >= t0:
                    return True
                if not p.running:
                    if p.killed_by_strace():
                        return True   # cut during its start-up: _watch() takes it
                    break
                time.sleep(0.01)
            self.down.add(i)
            if count:
                self.n["failed_starts"] += 1
            p.stop(hard=True)
            time.sleep(0.1)  # what it said last
            self._evidence("failed start", node=i, attempt=attempt + 1, rc=p.proc.returncode,
                           stderr=p.stderr_lines[-4:], console=list(self.recent.get(i, ()))[-4:])
            arm = None
        return False

    def _switch_d(self, off):
        if off and not self.away:
            self.away = True
            if self.D in self._up():
                self._cut_after(self.D, self.rng.uniform(0, 0.5), "D switched off", restart=False)
        elif not off and self.away:
            self.away = False
            self._restart(self.D)

    def _watch(self):
        """Nodes that went down without us: cut by strace, or an exit of their own."""
        now = time.monotonic()
        for i, p in self.emu.nodes.items():
            if i in self.down or p.running:
                continue
            if p.killed_by_strace():
                self.down.add(i)
                point = p.cut_point()
                p.disarm()
                key = f"{point[0]} {_kind(point[1])} {point[2]}"
                self.write_points[key] = self.write_points.get(key, 0) + 1
                self.n["write_cuts"] += 1
                self._after_cut(i, "cut (at a storage call)", point)
                self._restart(i)
                continue
            self.down.add(i)
            self.n["unexpected_exits"] += 1
            up_s = now - self.started_t.get(i, 0)
            self.early[i] = self.early.get(i, 0) + 1 if up_s < CRASH_WINDOW_S else 0
            time.sleep(0.1)
            self._evidence("node exited by itself", node=i, rc=p.proc.returncode,
                           seconds_after_start=round(up_s, 1), stderr=p.stderr_lines[-4:],
                           console=list(self.recent.get(i, ()))[-2:])
            self._scan(i, "after an exit of its own")
            if self.early[i] >= CRASH_LOOP:
                # it would go on like this: left off until the end of the run
                self.n["crash_loops"] += 1
                self.early[i] = 0
                self.looping.add(i)
                self._keep_copy(p.folder / "store", i)
                self._evidence("crash loop: left off until the end", node=i)
            elif not self.finishing or i not in self.looping:
                self._start(i)

    def _probe(self, wait_s=1.0, why="probe"):
        """Ask every running node for its status: one that does not answer in
        wait_s is mute; busy on the CPU all the while, it is hung."""
        self.next_probe = time.monotonic() + PROBE_S
        self.n["probes"] += 1
        refs = {}
        for i in self._up():
            refs[i] = f"live{self.n['probes']}-{i}"
            self._command(i, {"cmd": "status", "ref": refs[i]})
        cpu0 = {i: _cpu_s(self.emu.nodes[i]) for i in refs}
        t0 = time.monotonic()
        self._sleep(wait_s)
        mute = []
        for i, ref in refs.items():
            with self.lock:
                answered = self.answers.pop(ref, None)
            p = self.emu.nodes[i]
            if answered is not None or not p.running or i in self.down:
                continue
            busy = (_cpu_s(p) - cpu0[i]) / (time.monotonic() - t0)
            life = (i, self.started_t.get(i))
            mute.append(i)
            if life not in self.hung:
                self.hung.add(life)
                self.n["hangs"] += 1
                self._evidence("mute: no answer to a status" + (" and busy on the CPU (hung)"
                               if busy > 0.8 else ""), node=i, when=why, cpu_share=round(busy, 2),
                               seconds_after_start=round(time.monotonic() - (life[1] or 0), 1),
                               stderr=p.stderr_lines[-3:])
        return mute

    # ---- helpers ------------------------------------------------------------------------

    def _up(self, nodes=None):
        return [i for i in (nodes or self.ids) if i not in self.down and self.emu.nodes[i].running]

    def _sleep(self, s):
        end = time.monotonic() + s
        while True:
            self._watch()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.02))

    def _traffic(self, src, k):
        # k messages from src: direct ones to any other node (held while D is off), or posts
        for _ in range(k):
            if self.rng.random() < 0.2:
                self._send(src, "all")
            else:
                self._send(src, self.rng.choice([i for i in self.ids if i != src]))
            self._sleep(self.rng.uniform(0, 0.1))

    def _send(self, src, dest, wait=False):
        self.ref += 1
        ref = self.ref
        to = "all" if dest == "all" else f"{dest:08x}"
        self.n["sends"] += 1
        if not self._command(src, {"cmd": "send", "to": to, "text": f"pc{self.n['cuts']} {ref}",
                                   "ref": ref}):
            return None
        if not wait:
            return None
        ev = self._answer(ref, 5.0)
        if ev is not None and ev["event"] == "error":
            self.n["refused"] += 1
        return ev

    def _command(self, i, cmd):
        try:
            self.emu.nodes[i].command(cmd)
            return True
        except (RuntimeError, OSError, ValueError):
            return False   # cut meanwhile

    def _answer(self, ref, timeout_s):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self.lock:
                ev = self.answers.pop(ref, None)
            if ev is not None:
                return ev
            time.sleep(0.005)
        return None

    def _top_up(self, i):
        # --full-store: messages to D (off) until the node's store is full
        if not self.full or i == self.D or i not in self._up():
            return
        for _ in range(80):
            ev = self._send(i, self.D, wait=True)
            if ev is None or ev["event"] == "error":
                return

    def _start_fetch(self):
        fetcher = self.C if self.away or self.D in self.down else self.D
        if fetcher not in self._up():
            return None
        with self.lock:
            busy = {cid for (node, cid) in self.fetching if node == fetcher}
        todo = [c for c in self.pool if c not in self.have.get(fetcher, set()) and c not in busy]
        if len(busy) >= 2 or not todo:
            return None
        cid = self.rng.choice(todo)
        with self.lock:
            self.fetching[(fetcher, cid)] = {"interrupted": False, "started": False}
        self.n["fetches_requested"] += 1
        self.ref += 1
        self._command(fetcher, {"cmd": "fetch", "cid": cid, "ref": self.ref})
        return fetcher, [i for i in (self.B, self.C) if i != fetcher]

    def _drain(self):
        # the NodeProcess queues fill with every event; we read them in on_event
        for p in self.emu.nodes.values():
            while not p.events.empty():
                try:
                    p.events.get_nowait()
                except Exception:
                    break
        with self.lock:
            if len(self.answers) > 1000:
                self.answers.clear()

    # ---- the end ----------------------------------------------------------------------------

    def _finish(self):
        self.say("all nodes on; waiting for delivery...")
        self.finishing = True
        self.away = False
        for p in self.emu.nodes.values():
            p.disarm()
        for i in self.ids:
            if not self.emu.nodes[i].running:
                self._start(i)
        end = time.monotonic() + self.settle_s
        while time.monotonic() < end:
            self._sleep(0.5)
            with self.ledger.lock:
                left = [k for k, d in self.ledger.unicasts.items()
                        if not self.ledger.delivered(k[0], k[1], d)]
            if not left and not self.fetching:
                break
        mute = self._probe(wait_s=2.0, why="end of run")
        self.n["mute_at_end"] = len(mute)
        for i in self.ids:
            st = self.ledger.last_status.get(i) or {}
            self.final[f"{i:08x}"] = {k: st.get(k) for k in (
                "uptime_s", "held", "queue", "files", "heap_free_bytes", "peak_heap_bytes",
                "dropped", "last_internal_error")}
            if i in mute:
                self.final[f"{i:08x}"]["mute"] = True
        held = {}
        for i in self.ids:
            self.down.add(i)
            self.emu.nodes[i].stop(hard=True)
        time.sleep(0.1)
        for i in self.ids:
            for k in self._scan(i, "end of run").held_keys:
                held.setdefault(k, []).append(f"{i:08x}")
        return held

    def _summary(self, held_at_end, cycles_s, wall_s):
        led = self.ledger
        lost, held = [], []
        for (origin, mid), dest in led.unicasts.items():
            if led.delivered(origin, mid, dest):
                continue
            if (origin, mid) in held_at_end:
                held.append({"from": f"{origin:08x}", "id": mid, "to": f"{dest:08x}",
                             "held_by": held_at_end[(origin, mid)]})
            else:
                lost.append({"from": f"{origin:08x}", "id": mid, "to": f"{dest:08x}"})
        # a post is kept in storage from send() until it first goes on air
        # (docs/protocol.md section 7): one never on air and not in storage
        # at the end was lost
        for (origin, mid), got in led.posts.items():
            if not got and (origin, mid) not in self.air.first and (origin, mid) not in held_at_end:
                lost.append({"from": f"{origin:08x}", "id": mid, "to": "all"})
        reuses = self.air.reuses
        cuts = self.n["cuts"]
        n = self.n
        d = {
            "cuts_timed": n["timed_cuts"], "cuts_at_storage_call": n["write_cuts"],
            "cuts_in_startup": n["startup_cuts"], "arms": n["arms"],
            "timed_cuts_by_scenario": dict(sorted(self.cut_by.items())),
            "storage_call_cuts": dict(sorted(self.write_points.items())),
            "no_storage_call_cuts_because": self.no_strace,
            "unexpected_exits": n["unexpected_exits"],
            "crash_looping_nodes": sorted(f"{i:08x}" for i in self.looping),
            "nodes_mute_at_end": n["mute_at_end"], "hangs": n["hangs"],
            "corrupt": n["corrupt"], "complete_but_not_whole": n["torn_complete"],
            "orphans_at_cut": n["orphans_at_cut"], "orphans_left_by_restart": n["orphans_leaked"],
            "tmp_files_at_cut": n["tmp_left"],
            "unicasts_accepted": len(led.unicasts), "unicasts_held_at_end": len(held),
            "held_at_end_examples": held[:10],
            "lost_examples": lost[:10], "expired": len(led.expired),
            "posts_accepted": len(led.posts),
            "posts_heard_by_none": sum(1 for got in led.posts.values() if not got),
            "posts_never_on_air": sum(1 for k, got in led.posts.items()
                                      if not got and k not in self.air.first),
            "sends_refused": n["refused"],
            "duplicate_examples": led.duplicate_examples(),
            "id_reuse_examples": [{"origin": f"{o:08x}", "id": i, "type_before": a, "type_now": b}
                                  for o, i, a, b, _ in reuses[:5]],
            "nonce_reuse": sum(1 for r in reuses if r[4]),
            "frames_on_air": self.air.frames,
            "fetches_requested": n["fetches_requested"], "fetches_completed": n["fetches_done"],
            "fetches_failed": n["fetches_failed"],
            "fetches_interrupted": n["fetches_interrupted"],
            # started (or its fetch record written: it ended after all) and not ended
            "fetches_unfinished": sum(1 for f in self.fetching.values() if f["started"]),
            "fetch_commands_lost": n["fetch_commands_lost"]
            + sum(1 for f in self.fetching.values() if not f["started"]),
            "fetcher_wipes": n["wipes"],
            "fetches_unfinished_examples": [
                {"node": f"{i:08x}", "cid": cid, "cut_meanwhile": f["interrupted"],
                 "files_at_the_end": (self.final.get(f"{i:08x}") or {}).get("files")}
                for (i, cid), f in list(self.fetching.items())[:5] if f["started"]],
            "heap_free_least_bytes": led.least_free,
            "shares_over_console_failed": n["shares_failed"],
            "internal_errors": {f"{k:08x}": v for k, v in led.internal.items()},
            "memory_drops": {f"{k:08x}": v for k, v in led.memory_drops.items()},
            "stderr_tails": {f"{i:08x}": p.stderr_lines[-4:] for i, p in self.emu.nodes.items()
                             if p.stderr_lines},
            "evidence": self.evidence,
            "final_status": self.final,
            "heap": self.heap, "full_store": self.full, "romfs": self.romfs, "seed": self.seed,
            "seconds": round(wall_s, 1),
        }
        return {
            "cycles": cuts,
            "failed_starts": n["failed_starts"],
            "crash_loops": n["crash_loops"],
            "corrupt_records": n["corrupt"] + n["torn_complete"] + n["orphans_leaked"],
            "lost": len(lost),
            "id_reuse": len(reuses),
            "fetches_started": n["fetches_started"],
            "fetches_resumed": n["fetches_resumed"],
            "duplicates": led.duplicates(),
            "hangs": n["hangs"],
            "peak_heap_bytes": led.peak_heap or None,
            "seconds_per_cycle": round(cycles_s / cuts, 2) if cuts else None,
            "details": d,
        }


def render(s: dict) -> str:
    d = s["details"]
    out = [
        f"power cuts: {s['cycles']} ({d['cuts_timed']} at random moments, "
        f"{d['cuts_at_storage_call']} at a storage rename/unlink, {d['cuts_in_startup']} of "
        f"those in a start-up), {s['seconds_per_cycle']} s per cut; heap {d['heap']}"
        f"{', full store' if d['full_store'] else ''}{', ROMFS' if d.get('romfs') else ''}, seed {d['seed']}, {d['seconds']} s in all",
        f"failed starts {s['failed_starts']}, crash loops {s['crash_loops']}, "
        f"exits of their own {d['unexpected_exits']}, mute or hung {s['hangs']} "
        f"({d['nodes_mute_at_end']} at the end)",
        f"corrupt records {s['corrupt_records']}: undecodable {d['corrupt']}, complete but not "
        f"whole {d['complete_but_not_whole']}, orphans a restart left {d['orphans_left_by_restart']}"
        f" (orphans at a cut {d['orphans_at_cut']}, .tmp files at a cut {d['tmp_files_at_cut']})",
        f"direct messages accepted {d['unicasts_accepted']}: lost {s['lost']}, still held at the "
        f"end {d['unicasts_held_at_end']}, expired {d['expired']}; duplicates delivered "
        f"{s['duplicates']}; posts {d['posts_accepted']}, heard by no node {d['posts_heard_by_none']}",
        f"id reuse {s['id_reuse']} (same nonce {d['nonce_reuse']}) in {d['frames_on_air']} frames",
        f"fetches started {s['fetches_started']}, completed {d['fetches_completed']}, cut at the "
        f"fetcher {d['fetches_interrupted']}, resumed {s['fetches_resumed']}, failed "
        f"{d['fetches_failed']}, unfinished {d['fetches_unfinished']}",
        f"peak heap {s['peak_heap_bytes']} bytes, least free {d['heap_free_least_bytes']}",
    ]
    if d["no_storage_call_cuts_because"]:
        out.append(f"no cuts at storage calls: {d['no_storage_call_cuts_because']}")
    if d["storage_call_cuts"]:
        out.append("cut at: " + ", ".join(f"{k} x{v}" for k, v in d["storage_call_cuts"].items()))
    for k in ("internal_errors", "memory_drops"):
        if d[k]:
            out.append(f"{k}: {json.dumps(d[k])}")
    for e in d["evidence"]:
        out.append("  ! " + json.dumps(e))
    for name, k in (("lost", "lost_examples"), ("held at the end", "held_at_end_examples"),
                    ("fetch unfinished", "fetches_unfinished_examples"),
                    ("duplicate", "duplicate_examples"),
                    ("id reuse", "id_reuse_examples")):
        for e in d[k]:
            out.append(f"  {name}: {json.dumps(e)}")
    for node, tail in d["stderr_tails"].items():
        out.append(f"  stderr {node}: " + " | ".join(tail))
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=20, help="power cuts (default 20)")
    ap.add_argument("--heap", default="128K", help="MicroPython heap of each node (default 128K)")
    ap.add_argument("--full-store", action="store_true",
                    help="cut nodes whose stores are at their bounds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--settle-s", type=float, help="longest wait for delivery at the end "
                    "(default 90, 240 with --full-store)")
    ap.add_argument("--no-strace", action="store_true",
                    help="cut at random moments only (no cuts at storage calls)")
    ap.add_argument("--romfs", action="store_true",
                    help="nodes run the firmware from a ROMFS image, as boards with a ROMFS "
                         "partition do (docs/emulation.md)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--keep", metavar="DIR", help="run in DIR and keep it (stores, evidence)")
    args = ap.parse_args(argv)
    if args.cycles < 1:
        ap.error("--cycles: at least 1")
    say = (lambda s: None) if args.json else (lambda s: print(s, file=sys.stderr, flush=True))
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pollen-powercut-"))
    try:
        summary = Harness(args.cycles, args.heap, args.full_store, args.seed, workdir, say,
                          args.settle_s, no_strace=args.no_strace, romfs=args.romfs).run()
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(summary) if args.json else render(summary))


if __name__ == "__main__":
    main()
