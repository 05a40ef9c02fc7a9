# Code a node runs once, when it starts: reading back what it keeps in
# storage. Node.start loads this module and drops it afterwards
# (_compat.unload), so its bytecode does not stay in the heap for the
# node's whole life (a board's core runs as .mpy, in RAM).
from pollen._compat import const
from pollen import wire, files
from pollen import held as heldrec
from pollen.wire import u32
from pollen.jobs import Job

# the numbers of wire.py, jobs.py and sharing.py used here, as private copies (_compat.publish)
_POST = const(2)
_J_FLOOD = const(1)
_MAX_FETCHES = const(4)
_FETCH_RECORD = const("q")

_START_GAP_SLOTS = const(8)  # own messages are retried this many slots apart (custody.py)
_COMPLETE = const(4)         # a file's state flag (held_files.py)


def load_held(node, names, now_ms):
    # every record in storage is a message still owed. Its frame stays in
    # storage (read back when it is sent), and our own are retried a few
    # slots apart, not all at once: what a node holds does not all come
    # into its heap when it starts
    k = 0
    for name in names:
        if not heldrec.is_record(name):
            continue
        rec = heldrec.decode(name, node.storage.get(name) or b"", now_ms)
        f = None
        if rec:
            f, _ = wire.unpack(rec[4], node.key)
        if f is None or f.ftype == _POST and f.origin != node.id:
            node.storage.delete(name)
            node._drop("store")
            continue
        if f.ftype == _POST:
            # our own post, accepted but not yet on air when the node went
            # down (Node.send): it goes now. The record goes once it has
            node.seen.add(rec[0])
            node.posts.add(rec[0], rec[4], now_ms)
            node._add_job(Job(rec[0], _J_FLOOD, rec[4], now_ms + node.slot_ms * (4 + k)
                              + node._rand(node.slot_ms * 4), 0, f.dest, 1 + node.s.post_retries))
            k += 1
            continue
        if len(node.held) >= node.s.held_capacity:
            break  # the store holds more than the setting now allows: the rest wait
        h = heldrec.Held(rec[0], f.dest, None, rec[2], rec[1], rec[3])
        if h.own:
            h.retry_ms = now_ms + node.slot_ms * (4 + _START_GAP_SLOTS * k) \
                + node._rand(node.slot_ms * 4)
            k += 1
        h.custody = True
        node.held[h.key] = h
        node.seen.add(h.key)


def start_sharing(node, names, now_ms):
    # the files the node holds, and the fetches its user asked for before
    # the restart: they go on where they were (sharing.py)
    from pollen.sharing import Fetch
    node.files.load(names)
    node.cat_budget.at_ms = now_ms
    # something to tell from the start (our files), or nothing until we hear of some
    node.next_catalog_ms = now_ms + (node.slot_ms if node.files.holdings()
                                     else node.s.catalog_interval_ms)
    for name in names:
        if name[:1] == _FETCH_RECORD and len(name) == 33:
            try:
                cid = files.cid_from_hex(name[1:])
            except ValueError:
                node.storage.delete(name)
                continue
            if len(node.fetches) < _MAX_FETCHES:
                node.fetches[cid] = Fetch(cid, True, now_ms)


def load_files(self, names):
    # what the file store holds (self: the HeldFiles; names: its listing, a
    # node lists it once when it starts, for everything it keeps there)
    kept = set(n[1:33] for n in names if n[:1] == "f" and n[-1:] == "s" and len(n) == 34)
    for name in names:
        if name[:1] == "f" and len(name) > 33 and name[1:33] not in kept:
            self.storage.delete(name)  # what a cut left of a file that was starting or going
    for h in kept:
        name = "f" + h + "s"
        try:
            cid = files.cid_from_hex(h)
            mname = "f" + h + "m"
            # read a piece at a time, never whole; its bytes are read back when used
            m = files.load(self.storage, mname, self.max_file_bytes)
            if m.cid != cid:
                continue  # damaged
            st = self.storage.get(name)
        except (ValueError, TypeError):
            continue  # damaged: left for the next put to replace
        nbits = (m.chunks + 7) // 8
        if st is not None and len(st) == 5:
            # the first layout: moved (its code is loaded only for this)
            from pollen.file_store_upgrade import upgrade
            st = upgrade(self.storage, cid, m, st, names)
        if st is None or len(st) != 5 + nbits:
            continue
        bits = bytearray(st[5:])
        held = 0
        for i in range(m.chunks):
            if bits[i >> 3] & (1 << (i & 7)):
                held += 1
        use = u32(st, 1)
        self.state[cid] = [st[0], use, held * m.chunk_bytes, bits]
        self.manifests[cid] = m
        self.clock = max(self.clock, use)
        if held < m.chunks and st[0] & _COMPLETE:
            # complete no more (a damaged store): fetched again
            self.state[cid][0] &= ~_COMPLETE
            self._save_state(cid)
        if held == m.chunks and not st[0] & _COMPLETE:
            # the power went between the last chunk and the "complete"
            # flag: check the whole file now (a mismatch discards it)
            try:
                self._finish(cid)
            except files.FileError:
                pass

