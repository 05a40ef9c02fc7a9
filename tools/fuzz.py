"""Hostile frames against one pollen node: does anything escape, crash or grow?

    python tools/fuzz.py [--frames N] [--seed S] [--json] [--storage memory|file]
    python tools/fuzz.py --micropython [--heap 128K] [--romfs] [--frames N] [--seed S] [--json]
    python tools/fuzz.py --identity [...]  (the node and three neighbours with identities)

Drives one Node (firmware/pollen/node.py) with frames a neighbour holding the
network key, or anyone at all, could send: random bytes; valid frames of every
type with bits flipped, cut short or extended; and, mostly, frames with a valid
tag (packed with the network key) whose header and payload are hostile, which
is what reaches the payload parsers, including answers to what the node itself
sends (parts and chunks for its fetches, acks for its messages, echoes). Time
advances between frames and node.poll runs the timers. The frames are a
function of --seed, the frame number and what the node sent, so a run repeats.

The frames are made here, on the host. The node and its driver (which counts
what goes wrong) run in this process under CPython; with --micropython they
run in the real MicroPython unix port with the given heap (the firmware and
the driver part of this file compiled to .mpy), fed frame by frame over a
pipe. With --romfs the firmware and the driver run from a ROMFS image, as on a
board with a ROMFS partition (docs/boards.md): the image is read into the
process first and the heap made larger by what it takes (as the emulation
does), so the node has the heap a board of --heap has. See tools/README.md for
what each count means.
"""
# ---- the driver: where the node runs --------------------------------------------
# Under CPython this process; under MicroPython the part of this file from
# here to "the host" below, compiled alone (all of it would take 35 KB of a
# small heap; this part takes about 12 KB, as much as the node app's code),
# fed frames over a pipe by serve().
import binascii
import gc
import json
import sys

try:
    from time import ticks_us, ticks_diff
except ImportError:  # CPython
    from time import perf_counter_ns as _ns

    def ticks_us():
        return _ns() // 1000

    def ticks_diff(a, b):
        return a - b

MICROPYTHON = sys.implementation.name == "micropython"
# --identity: the node has an identity (docs/identity.md), and three of its
# neighbours too, whose keys it has pinned (two with the pair key derived):
# IDENT frames and private messages and acks, sealed with a real pair key or
# not, reach its parsers. The keys are fixed: x25519 at start would take the
# heap (secret 51..51 42 for the node, 61/62/63..42 for the neighbours)
IDENTITY = False
ID_SECRET = "5151515151515151515151515151515151515151515151515151515151515142"
ID_PUBLIC = "56d4f8ee1bdeeca4b4e59c59c02948c23f60ea09cd02ac5492cbb3f413f73e4d"
# (id, public key, pair secret with the node)
ID_PEERS = ((0x6ca039c1, "f0e5a8396589bb31531468867b78546bbd75413af6fbac3d435850805eab2c67",
             "934d886adc9486017dd77e1dc3cd54e34d289b5304db17943685f0df00c77805"),
            (0xed064b74, "0422a68e76ba733d8d655996eb335a32b3c573fb6f975fe85287300e64848060",
             "7de4b89b6b61965a6dd6caa277c8ae14bdf584adda0e2d7cc4521e97116f5db7"),
            (0x43af6ba1, "8f76e88df148d4c92a0ca494c39822bc455554c5005f59c95b382ae149ef3f5b",
             "c929d3dd66eb1584bd486058aef03a4bd9f466fca2ff56cbb08b40161d2ccdc6"))
ME = 0xA4A5D7CD if IDENTITY else 0x0A0B0C01
KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
SETTINGS = {"node_id": ME, "network_key": KEY_HEX, "name": "fuzzed", "region": "EU868-10",
            "preset": "ShortFast", "beacon_interval_ms": 30000,
            "telemetry_interval_ms": 60000, "catalog_interval_ms": 60000,
            "neighbour_expiry_ms": 600000, "fetch_patience_ms": 120000}
if IDENTITY:
    SETTINGS["identity_key"] = ID_SECRET + ID_PUBLIC
# 40 neighbours; ids k and k + 30 share a low byte (ambiguous relayers)
NEIGHBOURS = [0x20000000 | (k << 8) | (2 + k % 30) for k in range(40)] \
    + ([p[0] for p in ID_PEERS] if IDENTITY else [])
SLOW_MS = 500 if MICROPYTHON else 50
MAX_TRACES = 5  # distinct tracebacks kept (and printed) per kind
COUNTS = ("frames", "uncaught", "internal_errors", "memory_errors", "slow_frames",
          "api_errors", "untold", "max_frame_ms")
TABLES = ("neighbours", "routes", "seen", "held", "jobs", "posts", "catalog", "files",
          "manifest_bytes", "bad_senders", "serving_queued", "fetches", "fetch_parts",
          "storage_records")
OWN_FILE = 768  # bytes of the node's own file: byte j is j & 0xFF
TRACED_MEMORY_ERRORS = 32  # past these a MemoryError the node caught is counted, not traced


def _trace(e):
    if MICROPYTHON:
        import io
        buf = io.StringIO()
        sys.print_exception(e, buf)
        return buf.getvalue()
    import traceback
    return "".join(traceback.format_exception(type(e), e, e.__traceback__))


def _unload(name):
    # as the node app does: a module only needed at start leaves the heap
    import pollen
    sys.modules.pop(name, None)
    if name[7:] in dir(pollen):
        delattr(pollen, name[7:])


def _free():
    if hasattr(gc, "mem_free"):
        gc.collect()
        return gc.mem_free()


class Driver:
    # One node and what befalls it, counted in self.c. frame() hands it a
    # frame and runs its timers; the other methods do what the node app does
    # now and then. Each returns the frames the node transmitted meanwhile.
    # The first traceback of each distinct error goes to emit(record).
    def __init__(self, seed, storage=None, emit=None, code_bytes=None):
        import random
        from pollen.node import Node
        from pollen.storage import MemoryStorage
        if hasattr(random, "Random"):
            rng = random.Random(seed)
        else:  # MicroPython's module has the one method the node uses
            random.seed(seed)
            rng = random
        self.emit = emit
        self.storage = storage or MemoryStorage()
        if IDENTITY:  # the neighbours' keys pinned, the first two's pair keys derived
            for k, (nid, pub, pair) in enumerate(ID_PEERS):
                self.storage.put("k%08x" % nid, binascii.unhexlify(pub + (pair if k < 2 else "")))
        self.node = node = Node(SETTINGS, self.storage, rng)
        if MICROPYTHON:
            _unload("pollen.settings")
        self.c = dict((k, 0) for k in COUNTS)
        self.errors = {}  # "kind type innermost-frame" -> [record, count]
        self.escaped = dict((k, 0) for k in ("on_frame", "poll", "channel_busy", "status",
                                             "catalog_entries"))  # uncaught, by call
        self.index = -1
        self.data = b""
        self.actions = {}
        # table sizes now and at their peak, in dicts made once (no heap
        # needed to measure a full one)
        self.tables = dict((k, 0) for k in TABLES)
        self.peak = dict(self.tables)
        self.min_free = self.free = None
        self.last_ms = 0
        # on a small heap, as the node app: collect after each frame, and often
        self.small = hasattr(gc, "mem_free") and gc.mem_free() + gc.mem_alloc() < 262144
        if self.small and hasattr(gc, "threshold"):
            gc.threshold(gc.mem_free() // 4)
        self._reserve()
        # what the driver takes of a small heap: its code and its reserve
        self.harness_bytes = code_bytes + (2048 if self.small else 0) if code_bytes else None
        # the node catches an exception in handling a frame or in its timers
        # (it counts it "internal" and goes on) and keeps its type and
        # message; these keep its traceback
        for name in ("_handle", "_timers", "_transmit_due", "_plan_wake"):
            if hasattr(node, name):
                setattr(node, name, self._watch(name, getattr(node, name)))

    def _watch(self, name, inner):
        def call(*args):
            try:
                return inner(*args)
            except Exception as e:
                self.error("internal", name, e)
                raise
        return call

    def error(self, kind, where, e):
        if isinstance(e, MemoryError):
            self.c["memory_errors"] += 1
            if self.c["memory_errors"] > TRACED_MEMORY_ERRORS and kind != "uncaught":
                return
        self.reserve = None  # room to write down what happened
        try:
            text = _trace(e)
            last = ""  # the innermost 'File ..., line ..., in ...'
            for line in text.split("\n"):
                if line.strip().startswith("File "):
                    last = line.strip()
            k = "%s %s %s" % (kind, type(e).__name__, last)
            if k in self.errors:
                self.errors[k][1] += 1
            elif len([1 for v in self.errors.values() if v[0]["kind"] == kind]) < MAX_TRACES:
                rec = {"kind": kind, "where": where, "type": type(e).__name__,
                       "message": str(e)[:200], "frame_index": self.index,
                       "frame_hex": binascii.hexlify(self.data).decode()}
                self.errors[k] = [rec, 1]
                rec["trace"] = text
                self.emit(rec)
                del rec["trace"]  # printed by the host; not kept here
        except MemoryError:
            self.c["untold"] += 1
        self._reserve()

    def _reserve(self):
        # on a small heap, 2 KB kept back so that a MemoryError can be told
        try:
            self.reserve = bytearray(2048) if self.small else None
        except MemoryError:
            self.reserve = None

    def _call(self, where, fn, *args):
        # fn(*args) -> its result, () if it raised. What escapes the node is
        # "uncaught"; what it caught itself shows in its counters: "internal",
        # and frames dropped for want of heap ("memory")
        node = self.node
        internal = node.counters["internal"]
        memory = node.drops.get("memory", 0)
        out = ()
        try:
            out = fn(*args)
        except Exception as e:
            self.c["uncaught"] += 1
            self.escaped[where] = self.escaped.get(where, 0) + 1  # told or not
            self.error("uncaught", where, e)
        self.c["internal_errors"] += node.counters["internal"] - internal
        self.c["memory_errors"] += node.drops.get("memory", 0) - memory
        return out

    def start(self, now, manifest):
        # the node's own business: a file of its own (its manifest made by
        # the host: a board is handed one), messages waiting for acks
        node = self.node
        node.start(now)
        self.last_ms = now
        try:
            cid = node.share_manifest(manifest, now)
            for i in range(0, OWN_FILE, 200):
                end = min(i + 200, OWN_FILE)
                node.share_chunk(cid, i // 200, bytes(j & 0xFF for j in range(i, end)), now)
            for k in range(3):
                node.send(NEIGHBOURS[k], "message %d" % k, now)
            node.send(0xFFFFFFFF, "hello all", now)
        except Exception as e:
            self.c["api_errors"] += 1
            self.error("api", "start", e)
        return self._polls(now)

    def frame(self, i, data, rssi, snr, now):
        self.index = i
        self.data = data
        t0 = ticks_us()
        self._call("on_frame", self.node.on_frame, data, rssi, snr, now)
        us = ticks_diff(ticks_us(), t0)
        if self.small:
            gc.collect()  # the node app's, not the node's: not timed
        t0 = ticks_us()
        tx = self._polls(now)
        ms = (us + ticks_diff(ticks_us(), t0)) // 1000
        c = self.c
        c["frames"] += 1
        if ms > SLOW_MS:
            c["slow_frames"] += 1
        if ms > c["max_frame_ms"]:
            c["max_frame_ms"] = ms
        if i % 64 == 0:
            self._sample()
        return tx

    def _polls(self, now):
        # the timers: at the wake times the node asked for since the last
        # poll (a few at most), then now
        tx = []
        for _ in range(3):
            at = self.node.next_wake_ms
            if not self.last_ms < at < now:
                at = now
            self.last_ms = at
            for a in self._call("poll", self.node.poll, at):
                self.actions[a[0]] = self.actions.get(a[0], 0) + 1
                if a[0] == "tx":
                    tx.append(a[1])
            if at == now:
                return tx
        return tx

    def _sample(self):
        t = self.tables
        _sizes(self.node, self.storage, t)
        for k in TABLES:
            if t[k] > self.peak[k]:
                self.peak[k] = t[k]
        free = self.free = _free()
        if free is not None:
            self.node.heap_free_bytes = free
            if self.min_free is None or free < self.min_free:
                self.min_free = free

    def api(self, op, arg, now):
        # the user: "send" (to, text) or "fetch" cid; ValueError (FileError
        # too) is the node's documented refusal: store full, too many fetches
        try:
            if op == "send":
                self.node.send(arg[0], arg[1], now)
            else:
                self.node.fetch(arg, now)
        except ValueError:
            pass
        except Exception as e:
            self.c["api_errors"] += 1
            self.error("api", op, e)
        return self._polls(now)

    def busy(self, until_ms, now):
        self._call("channel_busy", self.node.channel_busy, until_ms, now)
        return self._polls(now)

    def console(self, now):
        # what the node app's console asks for: its status, field by field,
        # and the catalog. Turning them into JSON is the app's part: a
        # MemoryError there counts as the driver's
        def status():
            for _, v in self.node.status_items(now):
                self._json(v)
        self._call("status", status)
        self._json(self._call("catalog_entries", self.node.catalog_entries, now))
        return self._polls(now)

    def _json(self, v):
        try:
            json.dumps(v)
        except MemoryError as e:
            self.error("harness", "console JSON", e)

    def finish(self):
        # -> the summary dict. The node goes first (its tables measured):
        # on a full heap its room is what the summary needs
        self.reserve = None
        self._sample()
        node = self.node
        drops, counters, last = node.drops, node.counters, node.last_internal
        self.node = node = None
        gc.collect()
        errors = []
        for rec, n in self.errors.values():
            rec["count"] = n
            errors.append(rec)
        out = {"tables": self.tables, "peak_tables": self.peak, "drops": drops,
               "actions": self.actions, "counters": counters, "last_internal": last,
               "harness_bytes": self.harness_bytes, "min_free_heap": self.min_free,
               "errors": errors, "free_heap": self.free, "uncaught_by_call": self.escaped}
        for k in COUNTS:
            out[k] = self.c[k]
        return out


def _sizes(node, storage, t):
    # the node's tables into t, read from its fields (those after one a
    # change to the core renamed keep their last value)
    try:
        t["neighbours"] = len(node.neigh.table)
        t["routes"] = len(node.routes)
        r = node.seen._ring  # 4 bytes a key, the first never 0 once used (tables.Seen)
        t["seen"] = sum(1 for i in range(0, len(r), 4) if r[i])
        t["held"] = len(node.held)
        t["jobs"] = len(node.jobs)
        t["posts"] = len(node.posts.items)
        t["catalog"] = len(node.catalog.table)
        t["files"] = len(node.files.state)
        t["manifest_bytes"] = sum(len(m) for m in node.files.manifests.values())  # in storage
        t["bad_senders"] = len(node.bad_senders)
        t["serving_queued"] = sum(len(e[0]) + len(e[1]) for e in node.serving.values())
        fe = node.fetches.values()
        t["fetches"] = len(fe)
        # fetches gathering manifest parts (in storage, sharing._on_part)
        t["fetch_parts"] = sum(1 for x in fe if x.parts is not None)
        t["storage_records"] = len(storage.names())
    except Exception:  # MemoryError too: measured another time
        pass


def serve(seed, folder, code_bytes):
    # MicroPython's side of the pipe, in binary so that reading a request
    # takes no heap (a full one must cost the node, not the pipe). A request
    # is a 19-byte head: op (1) | length of its data (2) | now_ms (8) |
    # a number (4: the frame's index, the destination, ms busy) | RSSI dBm (2)
    # | SNR in 1/4 dB (2); then its data, read into one buffer for the run.
    # Ops: a start (data: the manifest of its own file), f a frame, s send
    # (the text), g fetch (the cid), b channel busy, c console, q quit. Each
    # answer is messages of a tag byte and then: "t" a frame transmitted,
    # length (2) and its bytes; "e" a new traceback, "." the counts (COUNTS)
    # that end an answer, "r" the summary for q, "R" ready: a line of JSON.
    import struct
    from pollen_io.filestore import FileStorage
    d = Driver(seed, FileStorage(folder), lambda rec: _say("e", json.dumps(rec)), code_bytes)
    mv = memoryview(bytearray(19 + 1024))
    _say("R", "{}")
    while _read(mv, 0, 19):
        op, n, now, num, rssi, snr4 = struct.unpack_from(">BHqIhh", mv, 0)
        if not _read(mv, 19, 19 + n):
            return
        if op == 0x71:  # q
            _summary(d)
            return
        tx = ()
        try:
            data = bytes(mv[19:19 + n])
            if op == 0x66:  # f
                tx = d.frame(num, data, rssi, snr4 / 4, now)
            elif op == 0x73:  # s
                tx = d.api("send", (num, data.decode()), now)
            elif op == 0x67:  # g
                tx = d.api("fetch", data, now)
            elif op == 0x62:  # b
                tx = d.busy(now + num, now)
            elif op == 0x63:  # c
                tx = d.console(now)
            else:
                tx = d.start(now, data)
        except MemoryError as e:
            d.error("harness", "serve", e)  # this request is lost, not the run
        data = None
        for t in tx:
            _say("t", t)
        tx = None
        _say(".", json.dumps([d.c[k] for k in COUNTS]))


def _summary(d):
    # the summary as a line of JSON written a field at a time (as the node
    # app streams its status): no one string of all of it in a small heap,
    # and the node gone first (Driver.finish). Cut short by a full heap, the
    # line does not parse, and the host keeps the counts it has
    w = sys.stdout.buffer.write
    try:
        out = d.finish()
        d = None
        w("r")
        sep = "{"
        for k, v in out.items():
            w(sep)
            sep = ","
            w(json.dumps(k))
            w(":")
            if isinstance(v, list):  # the errors: one at a time
                w("[")
                for i, x in enumerate(v):
                    w("," if i else "")
                    w(json.dumps(x))
                w("]")
            else:
                w(json.dumps(v))
        w("}\n")
    except MemoryError:
        w("\n")


def _read(mv, a, b):
    # bytes a..b of the buffer from stdin; False at its end
    while a < b:
        k = sys.stdin.buffer.readinto(mv[a:b])
        if not k:
            return False
        a += k
    return True


def _say(tag, data):
    # "t": a frame, length first; the others a line of text (JSON has no
    # raw newline), written as it is: no copy of it in a full heap
    w = sys.stdout.buffer.write
    if tag == "t":
        w(bytes((0x74, len(data) >> 8, len(data) & 0xFF)))
        w(data)
    else:
        w(tag)
        w(data)
        w("\n")


# ---- the host: the frames and the run (CPython) -------------------------------------
if not MICROPYTHON and __name__ == "__main__":
    # the firmware of this checkout, whatever is installed
    sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/firmware")

from pollen import wire  # noqa: E402
from pollen.wire import (Frame, BEACON, MSG, ACK, CATALOG, WANT, CHUNK, PART,  # noqa: E402
                         BROADCAST, F_PARTS, be32)
from pollen.crypto import NetworkKey  # noqa: E402


class Rng:
    # xorshift32, reseeded for every frame from (seed, frame number)
    def __init__(self, seed):
        self.seed(seed)

    def seed(self, *parts):
        s = 0x9E3779B9
        for p in parts:
            s = ((s ^ (p & 0xFFFFFFFF)) * 0x85EBCA6B + 0x165667B1) & 0xFFFFFFFF
            s ^= s >> 13
        self.s = s or 1

    def getrandbits(self, n):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x >> (32 - n) if n < 32 else x

    def below(self, n):
        return self.getrandbits(32) % n if n > 0 else 0

    def chance(self, pct):
        return self.below(100) < pct

    def pick(self, seq):
        return seq[self.below(len(seq))]

    def bytes(self, n):
        return bytes(self.getrandbits(8) for _ in range(n))


# origins no node may have, and ids that look like ours
SPECIAL_IDS = (0, 0xFFFFFFFF, 0x12345600, 0xAABBCC01, 0x0A0B0C00, 0x7FFFFFFF)
TEXTS = (b"", b"hi", "h\u00e9llo \u2603".encode(), b"\xc3\x28", b"\xff\xfe\xfd", b"\x00" * 40,
         b"x" * 231, "\u00e9".encode() * 115 + b"\xc3")


class Remote:
    # A file some neighbour offers: its manifest raw (held, or made up byte by
    # byte past its head for a long one) and its data if it has real data.
    def __init__(self, head, filler=0, data=None, chunk_bytes=200):
        import hashlib
        self.head = head
        self.n = len(head) + filler
        self.data = data
        self.chunk_bytes = chunk_bytes
        self.parts = (self.n + 199) // 200
        h = hashlib.sha256()
        for a in range(0, self.n, 200):
            h.update(self.raw(a, a + 200))
        self.cid = h.digest()[:16]

    def raw(self, a, b):
        b = b if b < self.n else self.n
        if b <= len(self.head):
            return self.head[a:b]
        out = bytearray(self.head[a:b])
        for j in range(max(a, len(self.head)), b):
            out.append((j * 0x9E3779B1 >> 11) & 0xFF)
        return bytes(out)

    def part(self, i):
        return self.raw(i * 200, i * 200 + 200)

    def chunk(self, i):
        if self.data is None:
            return None
        return self.data[i * self.chunk_bytes:(i + 1) * self.chunk_bytes]


def _manifest_head(name, size, chunk, sha):
    # a manifest up to its chunk hashes (files.py's layout)
    return bytes((1, len(name))) + name + b"\x00" + be32(size) \
        + bytes((chunk >> 8, chunk & 0xFF)) + be32(0x20000102) + be32(0) + sha


def remote_files():
    from pollen.file_author import make_manifest
    data = bytes(((j * 31) ^ (j >> 3)) & 0xFF for j in range(1000))
    raw = make_manifest("notes.txt", "text/plain", data, 0x20000102)
    real = Remote(raw, data=data)
    # every chunk matches its short hash, the whole file does not
    k = 2 + 9 + 1 + 10 + 14
    badsha = Remote(raw[:k] + bytes(32) + raw[k + 32:], data=data)
    # the longest manifest a node takes: 64 KiB in 16-byte chunks (16.5 KB)
    big = Remote(_manifest_head(b"big.bin", 65536, 16, bytes(32)), filler=4096 * 4)
    garbage = Remote(bytes((j * 97 + 13) & 0xFF for j in range(450)))
    # a file over the node's limit (its manifest says so at once)
    oversize = Remote(_manifest_head(b"huge.bin", 1 << 20, 200, bytes(32)) + bytes(40))
    return [real, badsha, big, garbage, oversize]


class Hostile:
    # The frames: a function of (seed, frame number), and of what the node
    # sent lately (answers). self.r is reseeded for every frame.
    def __init__(self, seed):
        from pollen.file_author import make_manifest
        from pollen.files import content_id
        self.key = NetworkKey(binascii.unhexlify(KEY_HEX))
        self.seed = seed
        self.r = Rng(seed)
        self.nb = NEIGHBOURS
        self.remotes = remote_files()
        # the node's own file (Driver.start)
        self.own_manifest = make_manifest("own.txt", "text/plain", bytes(range(256)) * 3, ME)
        own = content_id(self.own_manifest)
        self.cids = [f.cid for f in self.remotes] + [own, bytes(16), b"\xff" * 16]
        self.sent = []      # the node's recent frames, unpacked
        self.owed = []      # (source, cid, index, parts) the node asked for
        self.mine = []      # ids of the node's own messages
        self.recent = []    # frames we made lately, for mutation
        self.counts = {"random": 0, "mutated": 0, "hostile": 0, "answer": 0}
        self.types = [0] * 16
        # --identity: the pair keys of the peers whose keys the node holds
        self.pairs = [(p[0], NetworkKey(binascii.unhexlify(p[2]))) for p in ID_PEERS[:2]]

    # ---- what the node sent ----------------------------------------------------

    def heard(self, data):
        f, _ = wire.unpack(data, self.key)
        if f is None:
            return
        self.sent.append((f, data))
        if len(self.sent) > 8:
            self.sent.pop(0)
        if f.ftype == MSG and f.origin == ME and f.msg_id not in self.mine:
            self.mine.append(f.msg_id)  # its own message: ack it now and then
            del self.mine[:-16]
        if f.ftype == WANT and f.next_hop:
            from pollen.file_wire import unpack_want
            p = unpack_want(f.payload)
            src = self._by_low(f.next_hop)
            if p is not None and src is not None:
                for i in p[1][:16]:
                    self.owed.append((src, p[0], i, bool(f.flags & F_PARTS)))
                del self.owed[:-48]

    def _by_low(self, low):
        for n in self.nb:
            if n & 0xFF == low:
                return n
        return None

    # ---- a frame -----------------------------------------------------------------

    def frame(self, i):
        # frame number i: (bytes, rssi_dbm, snr_db)
        r = self.r
        r.seed(self.seed, i)
        rssi = r.pick((-120, -90, -60, -20, 10, -200))
        snr = r.pick((-30, -7.5, 0, 5, 12.25, 40))
        x = r.below(100)
        if x < 8:
            self.counts["random"] += 1
            return r.bytes(r.below(256)), rssi, snr
        if x < 20 and self.recent:
            self.counts["mutated"] += 1
            if self.sent and r.chance(30):
                return self._mutated(r.pick(self.sent)[1]), rssi, snr
            return self._mutated(r.pick(self.recent)), rssi, snr
        if x < 38 and (self.sent or self.owed):
            self.counts["answer"] += 1
            data = self._answer()
        else:
            self.counts["hostile"] += 1
            data = self._hostile()
        self.types[data[0] & 0x0F] += 1
        self.recent.append(data)
        if len(self.recent) > 8:
            self.recent.pop(0)
        return data, rssi, snr

    def _pack(self, t, payload, origin=None, dest=None, hop_limit=None, hops=None,
              next_hop=None, flags=None, msg_id=None, relayer=None):
        r = self.r
        file = CATALOG <= t <= PART
        if origin is None:
            origin = r.pick(self.nb) if r.chance(85) \
                else r.pick(SPECIAL_IDS + (ME, r.getrandbits(32)))
        if hop_limit is None:
            if (file or t == BEACON) and r.chance(85):
                hop_limit = hops = 0
            else:
                hop_limit = r.below(8)
        if hops is None:
            hops = 0 if r.chance(50) else r.below(hop_limit + 1)
        if dest is None:
            if t in (MSG, ACK) and r.chance(60):
                dest = ME if r.chance(70) else r.pick(self.nb)
            else:
                dest = BROADCAST if r.chance(80) else r.pick(SPECIAL_IDS + (ME, r.getrandbits(32)))
        if msg_id is None:
            msg_id = r.pick((0, 0xFFFFFFFF, r.getrandbits(32))) if r.chance(20) \
                else 1 + r.below(24)  # a small pool: duplicates
        if next_hop is None:
            next_hop = r.pick((0, 0, ME & 0xFF, ME & 0xFF, r.getrandbits(8),
                               r.pick(self.nb) & 0xFF))
        if flags is None:
            flags = r.pick((0, 0x40, 0x80, 0xC0))
        cipher = None
        if IDENTITY and t in (MSG, ACK) and r.chance(50):
            # private: sealed with a real pair key (its origin that peer's, or
            # not), or with a made-up one
            origin, cipher = r.pick(self.pairs)
            if r.chance(15):
                cipher = NetworkKey(r.bytes(32))
            if r.chance(15):
                origin = r.pick(self.nb)
        if relayer is None:
            relayer = origin & 0xFF if hops == 0 and r.chance(80) \
                else r.pick((0, ME & 0xFF, r.getrandbits(8), r.pick(self.nb) & 0xFF))
        f = Frame(t, flags, hop_limit, hops, origin, dest, msg_id, next_hop, relayer,
                  payload[:wire.MAX_PAYLOAD_BYTES])
        return wire.pack(f, self.key, cipher)

    def _sign(self, body):
        # a valid tag over any body (a MSG or ACK: any inner tag, then the outer)
        body = bytes(body)
        if body[0] & 0x0F in (wire.MSG, wire.ACK):
            body += bytes(4)
            return body + self.key.tag(body)[:4]
        return body + self.key.tag(body)

    def _hostile(self):
        r = self.r
        t = 1 + r.below(10)
        x = r.below(100)
        if t == wire.IDENT:
            # a key, its origin the id it gives (a peer's, ours) or not
            peer = r.pick(ID_PEERS + ((ME, ID_PUBLIC, ""),))
            p = self._payload(t)
            origin = None
            if r.chance(60):
                p = binascii.unhexlify(peer[1]) + p[32:]
                origin = peer[0] if r.chance(85) else None
            dest = r.pick((BROADCAST, BROADCAST, ME, r.pick(self.nb)))
            return self._pack(t, p, origin=origin, dest=dest,
                              flags=r.pick((0, 0x40, 0x80, 0xC0)))
        if x < 4:
            # header fields the tag check passes and a later check must reject
            b = bytearray(self._pack(t, self._payload(t))[:-8])
            if r.chance(50):
                b[0] = r.pick((0x10, 0x1A, 0x1F, 0x00, 0x21, r.getrandbits(8)))
            else:
                b[1] = (b[1] & 0xC0) | (r.below(7) << 3) | 7  # hops over the limit
            return self._sign(b)
        data = self._pack(t, self._payload(t))
        if x < 14:
            # the plaintext with bits flipped (CTR: ciphertext bit = plaintext bit)
            b = bytearray(data[:-8])
            for _ in range(1 + r.below(3)):
                if len(b) > 16:
                    k = 16 + r.below(len(b) - 16)
                    b[k] ^= 1 << r.below(8)
            return self._sign(b)
        return data

    # ---- payloads, type by type -----------------------------------------------------

    def _payload(self, t):
        return (self._beacon, self._text, self._text, self._ack, self._catalog, self._want,
                self._chunk, self._part, self._status, self._ident)[t - 1]()

    def _ident(self):
        # a key and a name: of any length, the name any bytes
        r = self.r
        return r.pick((r.bytes(32) + self._name(16), r.bytes(r.below(64)), b"",
                       bytes(32), b"\xff" * 48, r.bytes(32) + self._name(40)))

    def _n(self, small, hostile):
        # a count: usually a sane one, sometimes one from `hostile`
        r = self.r
        return r.pick(hostile) if r.chance(25) else r.below(small + 1)

    def _name(self, most):
        r = self.r
        return r.pick((b"", b"n", "\u00e9t\u00e9".encode(), b"\xff\xfe", b"\xe2\x98",
                       r.bytes(r.below(most + 1)), b"x" * most, b"abc" * 20))

    def _lows(self, n):
        r = self.r
        return bytes(r.pick((ME & 0xFF, 0, 0xFF, r.pick(self.nb) & 0xFF, r.getrandbits(8)))
                     for _ in range(n))

    def _cut(self, p):
        # a length byte or the end made wrong now and then
        r = self.r
        x = r.below(100)
        if x < 8 and p:
            return p[:r.below(len(p))]
        if x < 14 and p:
            b = bytearray(p)
            b[r.below(len(b))] = r.pick((0, 1, 0x7F, 0x80, 0xFF, r.getrandbits(8)))
            return bytes(b)
        if x < 17:
            return p + r.bytes(1 + r.below(24))
        return p

    def _beacon(self):
        r = self.r
        name = self._name(16)
        heard = self._lows(self._n(8, (32, 33, 64, 200)))
        tags = r.bytes(self._n(16, (17, 18, 40)))
        p = bytes((len(name),)) + name + bytes((len(heard),)) + heard + tags
        if r.chance(10):
            p = r.pick((b"", b"\x00", b"\xff", b"\x00\xff", b"\x05ab", b"\x00\x00"))
        return self._cut(p)

    def _text(self):
        r = self.r
        return r.pick(TEXTS) if r.chance(60) else r.bytes(r.below(232))

    def _ack(self):
        r = self.r
        if self.mine and r.chance(40):
            p = be32(r.pick(self.mine))
        else:
            p = be32(r.pick((0, 0xFFFFFFFF, 1 + r.below(24), r.getrandbits(32))))
        return self._cut(p) if r.chance(30) else p

    def _cid(self):
        r = self.r
        if r.chance(80):
            return r.pick(self.cids)
        return r.bytes(16)

    def _catalog(self):
        r = self.r
        out = b""
        for _ in range(self._n(6, (11, 20))):
            name = self._name(24)
            n = len(name) if r.chance(85) else r.pick((25, 60, 255, len(name) + 1))
            out += self._cid() + bytes((r.pick((0, 1, 16, 64, 255, r.getrandbits(8))),
                                        r.pick((0, 0, 0, 1, 5, 6, 7, 8, 255, r.getrandbits(8))),
                                        r.pick((0, 0, ME & 0xFF, r.getrandbits(8))),
                                        n & 0xFF)) + name
        return self._cut(out)

    def _want(self):
        r = self.r
        first = r.pick((0, 0, 1, r.below(300), 0xFF00, 0xFFF8, 0xFFFF, r.getrandbits(16)))
        n = r.pick((1, 1, 2, 4, 32, 32, 0, 33, 40, r.below(214)))
        fill = r.below(3)
        bitmap = r.bytes(n) if fill == 0 else (b"\xff" * n if fill == 1 else bytes(n))
        return self._cid() + bytes((first >> 8, first & 0xFF)) + bitmap

    def _remote(self, cid):
        for f in self.remotes:
            if f.cid == cid:
                return f
        return self.r.pick(self.remotes)

    def _chunk(self, cid=None, i=None):
        # cid and i given: an answer, mostly faithful
        r = self.r
        f = r.pick(self.remotes) if cid is None else self._remote(cid)
        bad = 30 if cid is None else 5
        cid = f.cid if cid is None else cid
        if i is None:
            i = r.below(8) if r.chance(70) else r.pick((0xFFFF, 4096, r.getrandbits(16)))
        data = f.chunk(i) if f.cid == cid and not r.chance(bad) else None
        if not data:
            data = r.bytes(self._n(200, (0, 201, 213)))
        return cid + bytes((i >> 8 & 0xFF, i & 0xFF)) + data

    def _part(self, cid=None, i=None):
        r = self.r
        f = r.pick(self.remotes) if cid is None else self._remote(cid)
        bad = 20 if cid is None else 2
        if i is None:
            i = r.below(f.parts)
        parts = f.parts
        if r.chance(bad):
            parts = r.pick((0, 1, i, 83, 84, 255, r.getrandbits(8)))
        if r.chance(bad // 2):
            i = r.pick((0, 255, parts, r.getrandbits(8)))
        data = f.part(i) if not r.chance(bad) else r.bytes(self._n(200, (0, 201, 213)))
        return (f.cid if cid is None else cid) + bytes((i & 0xFF, parts & 0xFF)) + data

    def _status(self):
        r = self.r
        name = self._name(16)
        k = self._n(8, (9, 30, 255))
        p = bytes((r.pick((1, 1, 1, 0, 2, 255)), len(name))) + name + r.bytes(44) \
            + bytes((k,)) + r.bytes(6 * (k if k < 31 else 31))
        return self._cut(p)

    # ---- answers to the node's own frames ---------------------------------------------

    def _answer(self):
        r = self.r
        if self.owed and r.chance(70):
            src, cid, i, parts = self.owed.pop(0)
            payload = self._part(cid, i) if parts else self._chunk(cid, i)
            return self._pack(PART if parts else CHUNK, payload, origin=src, hop_limit=0, hops=0,
                              flags=0, relayer=src & 0xFF)
        if not self.sent:
            return self._hostile()
        f, data = r.pick(self.sent)
        x = r.below(100)
        if x < 10:
            return data  # our own frame echoed back
        src = r.pick(self.nb)
        if x < 40 and f.ftype == MSG:
            # acknowledged by its destination, or by someone else
            origin = f.dest if f.dest != BROADCAST and r.chance(70) else src
            return self._pack(ACK, be32(f.msg_id), origin=origin, dest=f.origin,
                              next_hop=r.pick((0, ME & 0xFF)), flags=0)
        if x < 55 and f.ftype == CATALOG:
            from pollen.file_wire import unpack_catalog
            e = unpack_catalog(f.payload)
            if e:
                cid = r.pick(e)[0]
                first = r.pick((0, 0, 1, 0xFFFF))
                p = cid + bytes((first >> 8, first & 0xFF)) \
                    + r.pick((b"\xff", b"\x0f", b"\xff" * 32))
                return self._pack(WANT, p, origin=src, hop_limit=0, hops=0, next_hop=ME & 0xFF,
                                  flags=r.pick((0, F_PARTS)), relayer=src & 0xFF)
        # relayed on by a neighbour (hops + 1), or a later copy
        hops = f.hops + 1 if f.hops < f.hop_limit else f.hops
        return wire.relayed(data, hops, r.pick((0, ME & 0xFF, f.next_hop)), src & 0xFF, self.key)

    def _mutated(self, data):
        r = self.r
        b = bytearray(data)
        x = r.below(100)
        if x < 40:
            for _ in range(1 + r.below(4)):
                k = r.below(len(b))
                b[k] ^= 1 << r.below(8)
        elif x < 55:
            b = b[:r.below(len(b) + 1)]
        elif x < 70:
            b += r.bytes(1 + r.below(64))
        elif x < 80:
            k = r.below(len(b))
            b[k:k + 1 + r.below(8)] = r.bytes(1 + r.below(8))
        elif x < 90:
            return bytes(data)  # replayed as it was
        else:
            f, _ = wire.unpack(data, self.key)
            if f is not None:  # the same frame from another network
                return wire.pack(f, NetworkKey(bytes(range(32))))
        return bytes(b)




class Crashed(Exception):
    pass


DRIVER_BEGIN = "# ---- the driver: where the node runs"
DRIVER_END = "# ---- the host: the frames and the run"
# the driver's code first, then the core's, each after a collection: the
# other way round a 128K heap is too fragmented to load the driver
RUNNER = ("import gc\ngc.collect()\nfree = gc.mem_free()\nimport fuzz_driver\ngc.collect()\n"
          "free -= gc.mem_free()\nimport pollen.node\ngc.collect()\n"
          "fuzz_driver.serve(%d, %r, free)\n")


class Piped:
    # A Driver in a MicroPython process (serve() above), with the same
    # methods. Crashed: the process died or hung; self.counts holds its
    # counts as it last told them.
    def __init__(self, fw, heap, seed, folder, emit, timeout_s, rom_image=None):
        import os
        import subprocess
        from pollen_controller.emulation.node_process import (heap_with_romfs, micropython_binary,
                                                              romfs_mount_code)
        self.emit = emit
        self.timeout_s = timeout_s
        self.counts = {}
        self.buf = b""
        # cwd is fw: the modules' paths short, as on a board (they stay in the heap)
        env = dict(os.environ, MICROPYPATH=".frozen:.")
        code = RUNNER % (seed, str(folder))
        if rom_image:
            size = os.path.getsize(rom_image)
            heap = str(heap_with_romfs(heap, size))
            code = romfs_mount_code(rom_image) + code
        self.p = subprocess.Popen([micropython_binary(), "-X", "heapsize=" + heap, "-c",
                                   code], env=env, cwd=str(fw),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        try:
            tag, _ = self._message()
        except Crashed as e:
            raise SystemExit("fuzz: MicroPython did not start the node: %s" % e)
        if tag != "R":
            raise SystemExit("fuzz: MicroPython did not start the node: %s" % self._died(tag))

    def _died(self, why):
        # what it printed as it ended (MicroPython prints an uncaught
        # exception to stdout), if anything
        try:
            try:
                self.p.wait(2)
            except Exception:
                self.p.kill()
                self.p.wait(5)
            out = self.buf + self.p.stdout.read() + self.p.stderr.read()
            err = out.decode(errors="replace")
        except Exception:
            err = ""
        return Crashed("%s (exit %s): %s" % (why, self.p.returncode, err[-3000:]))

    def _more(self):
        import os
        import select
        ready, _, _ = select.select([self.p.stdout], [], [], self.timeout_s)
        if not ready:
            raise self._died("no answer in %d s" % self.timeout_s)
        chunk = os.read(self.p.stdout.fileno(), 65536)
        if not chunk:
            raise self._died("ended")
        self.buf += chunk

    def _exactly(self, n):
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _message(self):
        # -> (tag, bytes); see serve()
        tag = chr(self._exactly(1)[0])
        if tag == "t":
            head = self._exactly(2)
            return tag, self._exactly((head[0] << 8) | head[1])
        while b"\n" not in self.buf:
            self._more()
        line, _, self.buf = self.buf.partition(b"\n")
        return tag, line

    def _ask(self, op, now, num=0, data=b"", rssi=0, snr=0):
        import struct
        try:
            self.p.stdin.write(struct.pack(">BHqIhh", ord(op), len(data), now, num & 0xFFFFFFFF,
                                           rssi, int(snr * 4)) + data)
            self.p.stdin.flush()
        except OSError:
            raise self._died("ended")
        tx = []
        while True:
            tag, data = self._message()
            if tag == "t":
                tx.append(data)
            elif tag == "e":
                self.emit(json.loads(data))
            elif tag == ".":
                self.counts = dict(zip(COUNTS, json.loads(data)))
                return tx
            elif tag == "r":
                self.p.stdin.close()
                self.p.wait(30)
                try:
                    return json.loads(data)
                except ValueError:
                    return None  # cut short by a full heap: the counts will do

    def start(self, now, manifest):
        return self._ask("a", now, 0, manifest)

    def frame(self, i, data, rssi, snr, now):
        return self._ask("f", now, i, data, rssi, snr)

    def api(self, op, arg, now):
        if op == "send":
            return self._ask("s", now, arg[0], arg[1].encode())
        return self._ask("g", now, 0, arg)

    def busy(self, until_ms, now):
        return self._ask("b", now, until_ms - now)

    def console(self, now):
        return self._ask("c", now)

    def finish(self):
        return self._ask("q", 0)


def fuzz(frames, seed, open_driver, emit):
    # The run: frames 0..frames-1 from the generator to a driver (a new one
    # after a crash, which goes on with the next frame) -> the summary.
    gen = Hostile(seed)
    crashes = 0
    dead = {}     # counts of drivers that died
    drv = None
    now = 1000
    for i in range(frames):
        data, rssi, snr = gen.frame(i)
        try:
            if drv is None:
                drv = open_driver(crashes)
                tx = drv.start(now, gen.own_manifest)
                for f in gen.remotes[:4]:  # the real file, its bad twin, the longest, garbage
                    tx += drv.api("fetch", f.cid, now)
            else:
                tx = []
            tx += drv.frame(i, data, rssi, snr, now)
            # what the app does now and then: the user shares the air too
            if i % 1000 == 500:
                if i % 4000 == 500:
                    tx += drv.api("fetch", gen.r.pick(gen.cids), now)
                else:
                    tx += drv.api("send", (gen.r.pick(gen.nb + [BROADCAST]), "note %d" % i), now)
            if i % 2000 == 1999:
                tx += drv.console(now)
            if gen.r.below(1000) == 0:
                tx += drv.busy(now + gen.r.below(3000), now)
        except Crashed as e:
            crashes += 1
            for k, v in (drv.counts if drv is not None else {}).items():
                dead[k] = max(dead.get(k, 0), v) if k == "max_frame_ms" else dead.get(k, 0) + v
            text = str(e)
            emit({"kind": "crash", "where": "process", "type": "Crashed", "message": text[:200],
                  "count": 1, "frame_index": i, "frame_hex": binascii.hexlify(data).decode(),
                  "trace": text})
            drv = None
            tx = []
        for t in tx:
            gen.heard(t)
        # time moves on: mostly a fraction of a second, now and then minutes
        x = gen.r.below(1000)
        now += gen.r.below(1500) if x < 998 else 60000 * (1 + gen.r.below(30))
    s = {}
    if drv is not None:
        try:
            s = drv.finish()
        except Crashed as e:
            crashes += 1
            emit({"kind": "crash", "where": "summary", "type": "Crashed", "message": str(e)[:200],
                  "count": 1, "frame_index": frames, "frame_hex": "", "trace": str(e)})
        if not s or not isinstance(s, dict):  # no summary: its counts at least
            s = dict(drv.counts)
    for k in COUNTS:
        v = dead.get(k, 0)
        s[k] = max(s.get(k, 0), v) if k == "max_frame_ms" else s.get(k, 0) + v
    s["crashes"] = crashes
    s["sent"] = frames
    s["bound_violations"] = _over_bounds(s.get("peak_tables", {}))
    s["seed"] = seed
    s["classes"] = gen.counts
    s["signed_by_type"] = dict(("%d" % t, n) for t, n in enumerate(gen.types) if n)
    return s


def _over_bounds(peak):
    # tables seen over the bound their settings (or the code) give them
    from pollen import sharing, posts
    from pollen.jobs import MAX_JOBS
    from pollen.settings import plain
    s = plain(SETTINGS)
    limits = (("neighbours", s.neighbour_capacity), ("routes", s.route_capacity),
              ("held", s.held_capacity), ("jobs", MAX_JOBS), ("catalog", s.catalog_capacity),
              ("seen", s.seen_capacity), ("fetches", sharing.MAX_FETCHES),
              ("serving_queued", sharing._MAX_SERVING * sharing._MAX_QUEUED),
              ("posts", posts._CAP), ("bad_senders", 16))
    return [k for k, n in limits if peak.get(k, 0) > n]


def _print_trace(e):
    print("fuzz: %s %s in %s at frame %d: %s\n  frame %s\n%s"
          % (e["kind"], e["type"], e["where"], e["frame_index"], e["message"],
             e["frame_hex"] or "-", e["trace"].rstrip()), file=sys.stderr)


def _print_readable(s):
    print("%d frames in %.1f s: %d crashes, %d uncaught, %d internal errors, %d memory errors, "
          "%d slow frames (slowest %s ms)" % (
              s["frames"], s["seconds"], s["crashes"], s["uncaught"], s["internal_errors"],
              s["memory_errors"], s["slow_frames"], s["max_frame_ms"]))
    print("frames by class: " + ", ".join("%s %d" % kv for kv in sorted(s["classes"].items())))
    if "tables" in s:
        print("dropped: " + ", ".join("%s %d" % kv for kv in sorted(s["drops"].items())))
        print("actions: " + ", ".join("%s %d" % kv for kv in sorted(s["actions"].items())))
        t, p = s["tables"], s["peak_tables"]
        print("tables at the end (peak): " + ", ".join(
            "%s %s (%s)" % (k, t[k], p.get(k, "-")) for k in sorted(t)))
        if s["bound_violations"]:
            print("over their bound: " + ", ".join(s["bound_violations"]))
    if s.get("free_heap") is not None:
        print("heap %s: %d bytes free at the end, %s at the least; the driver took %s"
              % (s.get("heap"), s["free_heap"], s.get("min_free_heap"), s.get("harness_bytes")))
    if s.get("uncaught"):
        print("uncaught, by call: " + ", ".join(
            "%s %d" % kv for kv in sorted(s.get("uncaught_by_call", {}).items()) if kv[1]))
    for e in s.get("errors", []):
        print("  %s %s in %s x%d: %s"
              % (e["kind"], e["type"], e["where"], e["count"], e["message"]))


def _with_identity():
    # --identity under CPython: this module's constants as the driver part
    # has them with IDENTITY = True
    global IDENTITY, ME, NEIGHBOURS
    IDENTITY = True
    ME = SETTINGS["node_id"] = 0xA4A5D7CD
    SETTINGS["identity_key"] = ID_SECRET + ID_PUBLIC
    NEIGHBOURS = NEIGHBOURS + [p[0] for p in ID_PEERS]


def main(argv=None):
    import argparse
    import os
    import tempfile
    import time
    from pathlib import Path
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--micropython", action="store_true",
                    help="run the node in the MicroPython unix port, the firmware as .mpy")
    ap.add_argument("--heap", default="128K", help="MicroPython's heap (with --micropython)")
    ap.add_argument("--romfs", action="store_true",
                    help="with --micropython: the firmware and the driver from a ROMFS image")
    ap.add_argument("--storage", choices=("memory", "file"), default=None,
                    help="the node's storage under CPython: in memory (the default) or files "
                         "in a temporary folder (always files under MicroPython)")
    ap.add_argument("--timeout", type=int, default=60,
                    help="seconds MicroPython may take over one frame before it counts as hung")
    ap.add_argument("--identity", action="store_true",
                    help="the node has an identity: IDENT frames, private messages and acks "
                         "(sealed with a real pair key or not) reach its parsers")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.identity:
        _with_identity()
    traces = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        if args.micropython:
            import subprocess
            from pollen_controller.board.firmware import compile_firmware, mpy_cross_binary
            fw = Path(d) / "fw"
            compile_firmware(fw)
            # the driver part of this file alone, as module fuzz_driver
            text = Path(__file__).read_text()
            part = fw / "fuzz_driver.py"
            driver = text[text.index(DRIVER_BEGIN):text.index(DRIVER_END)]
            if args.identity:
                driver = driver.replace("\nIDENTITY = False\n", "\nIDENTITY = True\n")
            part.write_text(driver)
            r = subprocess.run([mpy_cross_binary(), "-O3", "-o", str(fw / "fuzz_driver.mpy"),
                                "-s", "fuzz_driver", str(part)], capture_output=True, text=True)
            part.unlink()
            if r.returncode:
                raise SystemExit("fuzz: mpy-cross failed: " + r.stderr.strip())
            rom = None
            if args.romfs:
                import shutil
                from pollen_controller.board.firmware import ROMFS_PACKAGES, romfs_image
                rom = Path(d) / "fuzz.romfs"
                rom.write_bytes(romfs_image(fw, extra=("fuzz_driver.mpy",)))
                for name in ROMFS_PACKAGES:
                    shutil.rmtree(fw / name)
                (fw / "fuzz_driver.mpy").unlink()

            def open_driver(n):
                return Piped(fw, args.heap, args.seed, Path(d) / ("store%d" % n), traces.append,
                             args.timeout, rom)
        else:
            def open_driver(n):
                storage = None
                if args.storage == "file":
                    from pollen_io.filestore import FileStorage
                    storage = FileStorage(os.path.join(d, "store%d" % n))
                return Driver(args.seed, storage, traces.append)
        s = fuzz(args.frames, args.seed, open_driver, traces.append)
    s["seconds"] = round(time.monotonic() - t0, 1)
    s["heap"] = args.heap if args.micropython else None
    s["romfs"] = bool(args.micropython and args.romfs)
    for kind in ("crash", "uncaught", "internal", "api", "harness"):
        for e in [e for e in traces if e["kind"] == kind][:MAX_TRACES]:
            _print_trace(e)
    if args.json:
        print(json.dumps(s, sort_keys=True))
    else:
        _print_readable(s)
    return 1 if s["crashes"] or s["uncaught"] else 0


if __name__ == "__main__":
    sys.exit(main())
