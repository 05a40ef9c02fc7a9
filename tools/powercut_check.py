"""Checks for tools/powercut.py, on the host, with the firmware's own decoders.

    scan_store(folder, key, max_file_bytes) -> StoreScan
        every record a node left in its storage folder, decoded as the node
        decodes it at start: held messages (pollen.held + the frame's tag),
        the id record, file manifests, states and chunks (pollen.files, the
        layout of pollen.held_files), the fetches the user asked for ("q").
    AirWatch.frame(sender, frame)
        every frame on air: the same (origin, message id) sent at hops 0 with
        different ciphertext is an id reuse (with the same frame type, the
        cipher's nonce was used twice).
    Ledger
        what the nodes said on their consoles: messages accepted ("sent"),
        received (duplicates), fetches started and finished.

Nothing here starts a process: the functions are tested on their own
(tests/test_powercut_smoke.py).
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pollen import file_author
from pollen import files, held, wire

try:
    from pollen import tables as replay
except ImportError:  # a firmware from before the replay windows
    replay = None

# pollen/held_files.py's state flags and record names ("f<cid hex>m|s|c<i>")
_COMPLETE = 4
_CID_HEX = 32


@dataclass
class StoreScan:
    records: int = 0
    corrupt: list = field(default_factory=list)      # (name, why): does not decode
    torn_complete: list = field(default_factory=list)  # (cid hex, why): "complete" but not whole
    orphans: list = field(default_factory=list)      # (name, why): a record its file does not own
    tmp_left: list = field(default_factory=list)     # writes cut short (swept at start)
    held_keys: set = field(default_factory=set)      # (origin, msg id) of held messages
    own_files: int = 0                               # files with a state record
    complete_files: int = 0
    fetch_records: int = 0
    fetch_cids: set = field(default_factory=set)     # content ids (hex) of fetches asked for

    def problems(self):
        return ([("corrupt", n, w) for n, w in self.corrupt]
                + [("complete but not whole", n, w) for n, w in self.torn_complete]
                + [("orphan", n, w) for n, w in self.orphans])


def _read(path: Path):
    try:
        return path.read_bytes()
    except OSError:   # gone between listing and reading (a live node)
        return None


def scan_store(folder, key, max_file_bytes: int = files.MAX_FILE_BYTES) -> StoreScan:
    """Decode every record in a node's storage folder. key: pollen.crypto.NetworkKey."""
    folder = Path(folder)
    out = StoreScan()
    if not folder.is_dir():
        return out
    names = sorted(os.listdir(folder))
    data = {}
    for name in names:
        if name.endswith(".tmp"):
            out.tmp_left.append(name)
            continue
        raw = _read(folder / name)
        if raw is not None:
            data[name] = raw
    out.records = len(data)
    frecs = {}       # cid hex -> {"m" | "s" | "d" | "c<i>": record}
    for name, raw in data.items():
        if name == "ids":
            # pollen/node.py: the end of each counter's reserved block (one
            # counter in a record written before there were two)
            if len(raw) not in (4, 8):
                out.corrupt.append((name, f"id record of {len(raw)} bytes, not 8"))
        elif replay is not None and name == replay._RECORD:
            # pollen/tables.py Replay: whole entries, one per origin
            if not raw or len(raw) % replay._ENTRY:
                out.corrupt.append((name, f"replay windows of {len(raw)} bytes"))
        elif held.is_record(name):
            rec = held.decode(name, raw, 0)
            if rec is None:
                out.corrupt.append((name, f"held record does not decode ({len(raw)} bytes)"))
                continue
            f, why = wire.unpack(rec[4], key)
            if f is None:
                out.corrupt.append((name, f"held frame does not unpack: {why}"))
                continue
            if f.key() != rec[0]:
                out.corrupt.append((name, "held frame is another message's"))
                continue
            out.held_keys.add((f.origin, f.msg_id))
        elif name[:1] == "q":
            ok = len(name) == 1 + _CID_HEX and raw == b""
            try:
                files.cid_from_hex(name[1:])
            except ValueError:
                ok = False
            if ok:
                out.fetch_records += 1
                out.fetch_cids.add(name[1:])
            else:
                out.corrupt.append((name, "fetch record garbled"))
        elif name[:1] == "f" and len(name) > 1 + _CID_HEX:
            cid_hex, rest = name[1:1 + _CID_HEX], name[1 + _CID_HEX:]
            try:
                files.cid_from_hex(cid_hex)
            except ValueError:
                out.corrupt.append((name, "file record with a garbled content id"))
                continue
            if rest in ("m", "s", "d") or rest[:1] == "c" and rest[1:].isdigit():
                frecs.setdefault(cid_hex, {})[rest] = raw
            else:
                out.corrupt.append((name, "unknown file record"))
        elif name == ".probe":
            pass  # the start-up write test, cut between its put and delete: rewritten at start
        else:
            out.corrupt.append((name, "unknown record"))
    for cid_hex, recs in frecs.items():
        _check_file(out, cid_hex, recs, max_file_bytes)
    return out


def _check_file(out, cid_hex, recs, max_file_bytes):
    # pollen/held_files.py: the state record "s" makes a file held (written
    # after the manifest "m", deleted first); a cut may leave the others of
    # a file without it, which the next start deletes (orphans here). Two
    # layouts: chunks in one data record "d" and the chunk bitmap in the
    # state (flags, use u32, bitmap), or one record per chunk "c<i>" and a
    # 5-byte state (the first layout, upgraded at start)
    name = "f" + cid_hex
    st = recs.get("s")
    if st is None:
        for rest in sorted(recs):
            out.orphans.append((name + rest, "a file's record without its state record"))
        return
    try:
        m = files.parse_manifest(recs.get("m"), max_file_bytes)
    except (files.FileError, ValueError, TypeError) as e:
        why = "missing" if recs.get("m") is None else f"does not parse: {e}"
        out.corrupt.append((name + "m", f"manifest of a held file {why}"))
        return
    if files.cid_hex(m.cid) != cid_hex:
        out.corrupt.append((name + "m", "manifest is another file's"))
        return
    nbits = (m.chunks + 7) // 8
    chunks = {}
    if len(st) == 5:      # first layout
        for rest, raw in recs.items():
            if rest[:1] == "c":
                chunks[int(rest[1:])] = raw
    elif len(st) == 5 + nbits:
        data = recs.get("d") or b""
        for i in range(m.chunks):
            if st[5 + (i >> 3)] & (1 << (i & 7)):
                size = m.size_bytes - i * m.chunk_bytes if i == m.chunks - 1 else m.chunk_bytes
                raw = data[i * m.chunk_bytes:i * m.chunk_bytes + size]
                if len(raw) == size:
                    chunks[i] = raw
                else:
                    out.corrupt.append((name + "d", f"chunk {i} marked there but the data "
                                                    f"record ends before it"))
    else:
        out.corrupt.append((name + "s", f"file state of {len(st)} bytes (5 or {5 + nbits})"))
        return
    for i, raw in sorted(chunks.items()):
        if not m.chunk_ok(i, raw):
            out.corrupt.append((name + ("d" if len(st) > 5 else f"c{i}"),
                                f"chunk {i} does not match its manifest's hash"))
    out.own_files += 1
    if st[0] & _COMPLETE:
        out.complete_files += 1
        missing = [i for i in range(m.chunks) if i not in chunks]
        if missing:
            out.torn_complete.append((cid_hex, f"marked complete, chunks {missing} of "
                                               f"{m.chunks} missing"))
        elif not file_author.file_ok(m, b"".join(chunks[i] for i in range(m.chunks))):
            out.torn_complete.append((cid_hex, "marked complete, SHA-256 does not match"))


class AirWatch:
    """Id reuse on air: (origin, msg id) -> the first ciphertext sent with it at hops 0."""

    def __init__(self):
        self.lock = threading.Lock()
        self.first = {}           # (origin, id) -> (frame type, sha1 of the ciphertext)
        self.frames = 0
        self.reuses = []          # (origin, id, type before, type now, same type)

    def frame(self, sender, frame: bytes):
        if len(frame) < wire.HEADER_BYTES + 8:
            return
        hops = frame[1] & 0x07
        with self.lock:
            self.frames += 1
            if hops:
                return
            k = (wire.u32(frame, 2), wire.u32(frame, 10))
            ftype = frame[0] & 0x0F
            digest = hashlib.sha1(frame[wire.HEADER_BYTES:-8]).digest()
            was = self.first.get(k)
            if was is None:
                self.first[k] = (ftype, digest)
            elif was != (ftype, digest):
                self.reuses.append((k[0], k[1], was[0], ftype, was[0] == ftype))
                self.first[k] = (ftype, digest)


class Ledger:
    """What the nodes said, kept as counts (a long run must not keep every event)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.unicasts = {}     # (origin, id) -> dest
        self.posts = {}        # (origin, id) -> set of nodes that received it
        self.received = {}     # (receiver, origin, id) -> times delivered to the app
        self.expired = []
        self.fetches = {}      # (node, cid) -> {"interrupted": bool, "done": str|None}
        self.peak_heap = 0
        self.least_free = None
        self.internal = {}     # node -> (count, last error text)
        self.memory_drops = {}  # node -> dropped "memory" at its last status
        self.last_status = {}   # node -> its last status event

    def sent(self, node: int, ev: dict):
        k = (node, ev["id"])
        with self.lock:
            if ev.get("to") == "all":
                self.posts.setdefault(k, set())
            else:
                self.unicasts[k] = int(ev["to"], 16)

    def got(self, node: int, ev: dict):
        origin = int(ev["from"], 16)
        with self.lock:
            k = (node, origin, ev["id"])
            self.received[k] = self.received.get(k, 0) + 1
            if ev.get("kind") == "post" and (origin, ev["id"]) in self.posts:
                self.posts[(origin, ev["id"])].add(node)

    def status(self, node: int, ev: dict):
        with self.lock:
            self.last_status[node] = ev
            self.peak_heap = max(self.peak_heap, ev.get("peak_heap_bytes") or 0)
            free = ev.get("heap_free_bytes")
            if free is not None and (self.least_free is None or free < self.least_free):
                self.least_free = free
            n = (ev.get("counters") or {}).get("internal", 0)
            if n:
                self.internal[node] = (n, ev.get("last_internal_error"))
            mem = (ev.get("dropped") or {}).get("memory", 0)
            if mem:
                self.memory_drops[node] = mem

    def delivered(self, origin: int, msg_id: int, dest: int) -> bool:
        return self.received.get((dest, origin, msg_id), 0) > 0

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.received.values() if n > 1)

    def duplicate_examples(self, k=5):
        return [{"at": f"{r:08x}", "from": f"{o:08x}", "id": i, "times": n}
                for (r, o, i), n in self.received.items() if n > 1][:k]
