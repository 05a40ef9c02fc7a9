"""The discrete-event loop: routers (the pollen core, or the baseline), the
LoRa channel, and the scenario's traffic, files, mobility and failures, in
virtual milliseconds. Deterministic for a scenario and seed."""
from __future__ import annotations

import heapq
import random
import time

from pollen import file_wire, files
from pollen import file_author
from pollen.airtime import preset_time_on_air_us
from pollen.crypto import TAG_BYTES
from pollen.storage import MemoryStorage
from pollen.wire import HEADER_BYTES
from pollen_controller.errors import InputError, ScenarioError
from pollen_controller.sim import frames
from pollen_controller.sim.channel import Channel
from pollen_controller.sim.metrics import Metrics
from pollen_controller.topology import PathLossModel, hop_distances

BROADCAST = 0xFFFFFFFF
ROUTERS = ("pollen", "managed-flood", "meshcore")
NETWORK_KEY = "5e" * 32  # simulated community key

_WAKE, _TX_END, _TRAFFIC, _MOVE, _FAIL, _SAMPLE, _SHARE, _FETCH, _LINK = range(9)
_MOVE_STEP_MS = 5000
_SAMPLE_MS = 60000
# settings of the baseline routers (docs/baseline.md) that pollen does not take
_BASELINE_ONLY = ("role", "background", "next_hop", "pki", "repeat", "flood_max", "msg_attempts",
                  "flood_after", "flood_attempts")
MEDIA_TYPE = "application/octet-stream"   # of the scenario's files
FILE_ROUTERS = ("pollen",)                 # routers that share and fetch files


def make_router(kind, settings, storage, rng):
    if kind == "pollen":
        from pollen.node import Node

        return Node({k: v for k, v in settings.items() if k not in _BASELINE_ONLY}, storage, rng)
    if kind == "managed-flood":
        from pollen_controller.sim.baseline import ManagedFlood

        return ManagedFlood(settings, storage, rng)
    if kind == "meshcore":
        from pollen_controller.sim.meshcore import MeshCore

        return MeshCore(settings, storage, rng)
    raise ValueError(f"--router: expected one of {', '.join(ROUTERS)}, got {kind!r}")


def _preset_dict(p):
    return {"sf": p[0], "bw_hz": p[1], "cr": p[2], "preamble": p[3]}


class Simulation:
    def __init__(self, scenario, router: str = "pollen", seed: int | None = None, progress=None):
        if router not in ROUTERS:
            raise InputError(f"--router: expected one of {', '.join(ROUTERS)}, got {router!r}")
        if seed is not None and seed != scenario.seed:
            # another seed is another mesh: placement, traffic and failures too
            scenario = scenario.with_seed(seed)
        self.sc = scenario
        self.router_kind = router
        self.seed = scenario.seed
        self.progress = progress
        pl = dict(scenario.pathloss)
        sigma = pl.pop("shadowing_sigma_db", 0.0)
        model_keys = ("pl_d0_db", "d0_m", "exponent", "tx_power_dbm", "antenna_gain_dbi",
                      "noise_figure_db")
        self.model = PathLossModel(**{k: v for k, v in pl.items() if k in model_keys})
        self.ids = list(scenario.node_ids)
        self.channel = Channel(scenario.initial_positions(), scenario.preset, self.model,
                               sigma, self.seed, frame_loss=scenario.frame_loss,
                               capture=getattr(scenario, "capture", "calibrated"),
                               interference_db=getattr(scenario, "interference_db", None))
        self.metrics = Metrics(self.ids)
        self.classify = frames.classifier(router)   # frame -> (type name, unicast key)
        self.topology_epoch = 0   # bumped when links change (movers, cuts)
        self._hops_cache = {}     # source -> (epoch, {node: hops})
        self.files = scenario.files()
        self.file_cid = {}   # file index -> content id
        self.cids = {}       # content id (text) -> file index
        self.hops = {}       # seeder -> {node: hops} over the links at the start
        self.storage = {n: MemoryStorage() for n in self.ids}
        self.routers = {}
        self.up = {n: True for n in self.ids}
        self.scheduled = {n: None for n in self.ids}
        self.heap = []
        self.seq = 0
        self.events = 0
        self.now_ms = 0
        self.duration_ms = int(scenario.duration_s * 1000)

    # ---- setup --------------------------------------------------------------

    def _settings(self, n):
        s = {"node_id": n, "network_key": NETWORK_KEY, "region": self.sc.region,
             "preset": _preset_dict(self.sc.preset), "name": f"n{n}"}
        s.update(self.sc.router_settings)
        return s

    def _boot(self, n, t):
        rng = random.Random(f"{self.seed}:{self.router_kind}:{n}:{t}")
        r = make_router(self.router_kind, self._settings(n), self.storage[n], rng)
        r.start(t)
        self.routers[n] = r
        self.up[n] = True
        self.channel.set_up(n, True)
        self._poll(n, t)

    def _push(self, t, kind, a=None, b=None):
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, a, b))

    # ---- run ----------------------------------------------------------------

    def run(self) -> dict:
        wall0 = time.perf_counter()
        for n in self.ids:
            self._boot(n, 0)
        for t, src, dest, size in self.sc.traffic():
            self._push(t, _TRAFFIC, (src, dest, False), size)
        # (spam: a scenario's members sending at their duty limit; an object
        # with the older Scenario interface has none)
        for t, src, dest, size in (self.sc.spam() if hasattr(self.sc, "spam") else ()):
            self._push(t, _TRAFFIC, (src, dest, True), size)
        self.metrics.spammers = self.sc.spammers() if hasattr(self.sc, "spammers") else []
        self.movers = self.sc.movers()
        if self.movers:
            self._push(0, _MOVE)
        for t, n, what in self.sc.failures():
            self._push(t, _FAIL, n, what)
        for t, a, b, what in self.sc.link_failures():
            self._push(t, _LINK, (a, b), what)
        if self.files and self.router_kind not in FILE_ROUTERS:
            self.metrics.file_not_applicable = f"{self.router_kind} has no file transfer"
        elif self.files:
            for f in self.files:
                self.hops.setdefault(f.seeder, self._hops_from(f.seeder))
                self._push(f.share_ms, _SHARE, f.index)
                for n in f.fetchers:
                    self._push(f.fetch_ms, _FETCH, f.index, n)
        self._push(_SAMPLE_MS, _SAMPLE)
        next_forget = self.channel.longest_ms
        next_report = 0
        end = self.duration_ms
        heap = self.heap
        while heap:
            t, _, kind, a, b = heapq.heappop(heap)
            if t > end:
                break
            self.now_ms = t
            if kind == _WAKE:
                if self.scheduled[a] != t or not self.up[a]:
                    continue
                self.scheduled[a] = None
                self.events += 1
                self._poll(a, t)
            elif kind == _TX_END:
                self.events += 1
                self._deliver(a, t)
            elif kind == _TRAFFIC:
                self.events += 1
                self._send(a[0], a[1], b, t, a[2])
            elif kind == _MOVE:
                self.events += 1
                for n, mover in self.movers.items():
                    x, y = mover.position(t)
                    self.channel.move(n, x, y)
                self.topology_epoch += 1
                self._push(t + _MOVE_STEP_MS, _MOVE)
            elif kind == _FAIL:
                self.events += 1
                self._fail(a, b, t)
            elif kind == _SAMPLE:
                self._sample(t)
                self._push(t + _SAMPLE_MS, _SAMPLE)
            elif kind == _SHARE:
                self.events += 1
                self._share(a, t)
            elif kind == _FETCH:
                self.events += 1
                self._fetch(a, b, t)
            elif kind == _LINK:
                self.events += 1
                self.channel.cut_link(a[0], a[1], b == "off")
                self.topology_epoch += 1
            if t >= next_forget:
                # frames that ended more than one longest frame ago overlap nothing new
                self.channel.forget_before(t - self.channel.longest_ms)
                next_forget = t + self.channel.longest_ms
            if self.progress and t >= next_report:
                self.progress(t, end)
                next_report = t + end // 100
        if self.progress:
            self.progress(end, end)
        wall = time.perf_counter() - wall0
        out = {"scenario": self.sc.name, "router": self.router_kind, "nodes": len(self.ids),
               "seed": self.seed}
        out.update(self.metrics.summary(self.duration_ms, self.channel.stats))
        if self.router_kind == "pollen":   # frames the cores let go, by reason
            dropped = {}
            for r in self.routers.values():
                for k, v in r.drops.items():
                    dropped[k] = dropped.get(k, 0) + v
            out["dropped"] = dict(sorted(dropped.items()))
        out["sim_seconds"] = self.duration_ms / 1000
        out["wall_seconds"] = round(wall, 2)
        out["events"] = self.events
        out["events_per_second"] = round(self.events / wall) if wall > 0 else None
        return out

    # ---- event handlers -----------------------------------------------------

    def _poll(self, n, t):
        r = self.routers[n]
        for a in r.poll(t):
            if a[0] == "tx":
                self._transmit(n, a[1], t)
            elif a[0] == "received":
                self.metrics.received(n, a[1], t)
            elif a[0] in ("fetched", "fetch_failed"):
                i = self.cids.get(a[1]["cid"])
                if i is not None:
                    self.metrics.fetch_ended(i, n, t, a[0] == "fetched")
        w = r.next_wake_ms
        if w is not None:
            if w <= t:
                w = t + 1
            if self.scheduled[n] != w:
                self.scheduled[n] = w
                self._push(w, _WAKE, n)

    def _transmit(self, n, frame, t):
        air_us = preset_time_on_air_us(len(frame), self.sc.preset)
        end = t + -(-air_us // 1000)
        tx = self.channel.begin(n, frame, t, end)
        sensed = self.channel.sensing(tx)
        for rx in sensed:
            # at boot a node may transmit before every other node has a router
            r = self.routers.get(rx)
            if r is not None and self.up[rx]:
                r.channel_busy(end, t)
        kind, msg_key = self.classify(frame)
        self.metrics.transmitted(n, air_us, sensed, kind, msg_key)
        self._push(end, _TX_END, tx)

    def _deliver(self, tx, t):
        for rx, rssi, snr in self.channel.end(tx):
            if self.up[rx]:
                self.routers[rx].on_frame(tx.frame, int(round(rssi)), round(snr * 4) / 4, t)
                self._poll(rx, t)

    def _send(self, src, dest, size, t, spam=False):
        if not self.up[src]:
            self.metrics.not_sent += 1
            return
        r = self.routers[src]
        try:
            msg_id = r.send(dest, "x" * size, t)
        except ValueError:
            # refused (a full store or queue): the user was told, and it
            # counts as a message that did not arrive
            if spam:   # a spammer's node at its limit: counted apart
                self.metrics.spam_refused += 1
                return
            self.metrics.send_errors += 1
            self.metrics.sent(src, ("refused", self.metrics.send_errors), dest, t,
                              dest == BROADCAST)
            return
        if spam:
            self.metrics.sent(src, msg_id, dest, t, dest == BROADCAST, spam=True)
            self._poll(src, t)
            return
        hops = None if dest == BROADCAST else self._hops_now(src).get(dest)
        routed = None if dest == BROADCAST else self._route_known(r, dest, t)
        self.metrics.sent(src, msg_id, dest, t, dest == BROADCAST, hops, routed)
        self._poll(src, t)

    def _route_known(self, r, dest, t):
        # did the sender know a way to dest as it sent (a next hop, a
        # returned path)? None: this router keeps no such table
        if self.router_kind == "pollen":
            return r._next_hop(dest, t) is not None
        for table in ("next_hops", "paths"):   # Meshtastic 2.7, MeshCore
            known = getattr(r, table, None)
            if known is not None:
                return dest in known
        return None

    def _share(self, i, t):
        # the seeder shares file i; if it is off, nobody has the file (its
        # content id is still what the fetchers ask for)
        f = self.files[i]
        r = self.routers[f.seeder]
        if self.up[f.seeder]:
            try:
                cid = file_author.share(r, f.name, MEDIA_TYPE, f.data, t)
            except files.FileError as e:   # e.g. chunks too small for the file under a dwell limit
                raise ScenarioError(f"scenario '{self.sc.name}': field 'files[{i}]': node "
                                 f"{f.seeder} cannot share it: {e}") from None
            self._poll(f.seeder, t)
        else:
            self.metrics.files_not_shared += 1
            limit = self._settings(f.seeder).get("max_file_bytes", files.MAX_FILE_BYTES)
            cid = files.content_id(file_author.make_manifest(f.name, MEDIA_TYPE, f.data, f.seeder, 0,
                                                       r.file_chunk_bytes, limit))
        self.cids[files.cid_str(cid)] = i
        self.file_cid[i] = cid

    def _fetch(self, i, n, t):
        f = self.files[i]
        if not self.up[n]:
            self.metrics.file_not_started += 1
            return
        try:
            self.routers[n].fetch(self.file_cid[i], t)
        except ValueError:   # FileError: the node is fetching as many files as it can
            self.metrics.file_not_started += 1
            return
        self.metrics.fetch_started(i, n, t, self._fetch_bound_us(f, n))
        self._poll(n, t)

    def _fetch_bound_us(self, f, n):
        # the least airtime that can bring file f from its seeder to n: each
        # chunk sent once per hop of the shortest path, in full-size chunk frames
        hops = self.hops[f.seeder].get(n)
        if hops is None:
            return None
        chunk_bytes = self.routers[f.seeder].file_chunk_bytes
        payload = file_wire.pack_chunk(bytes(16), 0, bytes(chunk_bytes))
        frame_bytes = HEADER_BYTES + len(payload) + TAG_BYTES
        return files.chunk_count(f.size_bytes, chunk_bytes) * hops \
            * preset_time_on_air_us(frame_bytes, self.sc.preset)

    def _hops_now(self, src):
        # _hops_from(src) over the links as they are now, once per topology epoch
        got = self._hops_cache.get(src)
        if got is None or got[0] != self.topology_epoch:
            got = self._hops_cache[src] = (self.topology_epoch, self._hops_from(src))
        return got[1]

    def _hops_from(self, src):
        # {node: hops} over the channel's links as they are now
        return hop_distances(self.channel.neighbours, src)

    def _fail(self, n, what, t):
        if what == "off" and self.up[n]:
            self.up[n] = False
            self.scheduled[n] = None
            self.channel.set_up(n, False)
        elif what == "on" and not self.up[n]:
            self._boot(n, t)

    def _sample(self, t):
        for n, r in self.routers.items():
            if self.up[n]:
                st = r.status(t)
                self.metrics.sample(st.get("held", 0), st.get("queue", 0))


def simulate(scenario, router="pollen", seed=None, progress=None) -> dict:
    return Simulation(scenario, router, seed, progress).run()
