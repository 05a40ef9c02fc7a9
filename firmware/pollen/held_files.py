# Files on a node, through the core's storage object. A file is kept as
# three records, so a board never needs it whole in RAM, a power cut
# mid-file leaves a resumable partial, and a file of 330 chunks does not
# cost 330 records (nor 330 names when the store is listed at start):
#   "f<cid>m"      its manifest
#   "f<cid>d"      its data: chunk i at i * chunk_bytes, written in place
#                  (each chunk verified against the manifest before)
#   "f<cid>s"      state: flags (1 own, 2 pinned, 4 complete), a use counter
#                  (u32) and the bitmap of the chunks there
# A chunk is written into the data record first and marked in the state
# record after: a cut between them costs that chunk, fetched again.
# "complete" is set only after every chunk and the whole-file SHA-256 check
# out. The state record is what makes a file held: it is written after the
# manifest when a file starts, and deleted first when one goes (then the
# manifest, then the data), and at start-up what a power cut left of a
# file without its state is deleted. So any cut leaves the old state or the
# new one (docs/files.md). Stores of the first layout (a record per chunk,
# "f<cid>c<i>", and a 5-byte state) are moved to this one at start-up.
# A quota bounds the bytes held; when full, the least recently used
# cached file (not our own, not pinned) goes first. At most _MAX_CACHED
# cached files are kept, the least recently used going first too.
import hashlib
from pollen import files
from pollen._compat import const, unload
from pollen.wire import be32

# the numbers of files.py used here, as private copies (_compat.publish)
_MAX_FILE_BYTES = const(65536)

_OWN = const(1)
_PINNED = const(2)
_COMPLETE = const(4)
_MAX_CACHED = const(16)  # files kept for others (each a Manifest in RAM, its bytes in storage)


class HeldFiles:
    # The node's files: its own (shared) ones and those it fetched or cached.
    def __init__(self, storage, quota_bytes=262144, max_file_bytes=_MAX_FILE_BYTES,
                 load=True):
        self.storage = storage
        self.quota_bytes = quota_bytes
        self.max_file_bytes = max_file_bytes
        self.state = {}     # cid -> [flags, last_use, bytes held, chunk bitmap]
        self.manifests = {}  # cid -> Manifest (small: parsed once)
        self.clock = 0
        if load:
            self.load(storage.names())

    def load(self, names):
        # what the store holds (its code is loaded only for this: restart.py)
        from pollen.restart import load_files
        load_files(self, names)
        unload("pollen.restart")

    # ---- records -----------------------------------------------------------

    def _save_state(self, cid):
        st = self.state[cid]
        self.storage.put("f" + files.cid_hex(cid) + "s", bytes((st[0],)) + be32(st[1]) + st[3])

    def _touch(self, cid):
        self.clock += 1
        self.state[cid][1] = self.clock

    def _chunk_size(self, m, index):
        return m.size_bytes - index * m.chunk_bytes if index == m.chunks - 1 else m.chunk_bytes

    # ---- adding ------------------------------------------------------------

    def begin(self, manifest, own=False, pinned=False):
        # Start holding a file (or resume one): returns its content id.
        # manifest: its bytes, or a Manifest already in its record (one a
        # fetch gathered there part by part, files.load)
        m = manifest if isinstance(manifest, files.Manifest) \
            else files.parse_manifest(manifest, self.max_file_bytes)
        cid = m.cid
        if cid not in self.state:
            if not (own or pinned):
                self._limit_cached()
            if m._record is None:
                name = "f" + files.cid_hex(cid) + "m"
                self.storage.put(name, m.raw)
                m.kept(self.storage, name)
            self.state[cid] = [0, 0, 0, bytearray((m.chunks + 7) // 8)]
            self.manifests[cid] = m
        st = self.state[cid]
        st[0] |= (_OWN if own else 0) | (_PINNED if pinned else 0)
        self._touch(cid)
        self._save_state(cid)
        return cid

    def put_chunk(self, cid, index, data):
        # Keep a chunk if it matches the manifest. True: new; False: had it;
        # FileError: unknown file, a chunk that fails its hash, or no room.
        m = self.manifests.get(cid)
        if m is None:
            raise files.FileError("unknown content id")
        if not m.chunk_ok(index, data):
            raise files.FileError("chunk %d does not match its hash" % index)
        if self.has_chunk(cid, index):
            return False
        self._make_room(m.chunk_bytes, cid)
        # the data first, then the state that marks it there
        self.storage.write_at("f" + files.cid_hex(cid) + "d", index * m.chunk_bytes, data)
        st = self.state[cid]
        st[2] += m.chunk_bytes
        st[3][index >> 3] |= 1 << (index & 7)
        if st[2] >= m.chunks * m.chunk_bytes:
            self._finish(cid)  # saves the state, complete
        else:
            self._save_state(cid)
        return True

    def _finish(self, cid):
        m = self.manifests[cid]
        h = hashlib.sha256()
        for i in range(m.chunks):
            h.update(self.read_chunk(cid, i) or b"")
        if h.digest() != m.file_sha256:  # chunk hashes are short: the whole-file check decides
            self.remove(cid)
            raise files.FileError("file does not match its SHA-256; discarded")
        self.state[cid][0] |= _COMPLETE
        self._save_state(cid)

    # ---- reading -----------------------------------------------------------

    def complete(self, cid):
        st = self.state.get(cid)
        return st is not None and bool(st[0] & _COMPLETE)

    def missing(self, cid):
        # chunk indices still to fetch (all of them for an unknown file: None)
        m = self.manifests.get(cid)
        if m is None:
            return None
        return [i for i in range(m.chunks) if not self.has_chunk(cid, i)]

    def has_chunk(self, cid, index):
        st = self.state.get(cid)
        return st is not None and 0 <= index < len(st[3]) * 8 \
            and bool(st[3][index >> 3] & (1 << (index & 7)))

    def chunks_held(self, cid):
        st = self.state.get(cid)
        m = self.manifests.get(cid)
        return st[2] // m.chunk_bytes if st is not None and m is not None else 0

    def pin(self, cid):
        # a file the user fetched: kept like our own, never evicted
        if cid in self.state:
            self.state[cid][0] |= _PINNED
            self._save_state(cid)

    def read_chunk(self, cid, index):
        m = self.manifests.get(cid)
        if m is None or not self.has_chunk(cid, index):
            return None
        data = self.storage.read_at("f" + files.cid_hex(cid) + "d", index * m.chunk_bytes,
                                    self._chunk_size(m, index))
        if data is not None:
            self._touch(cid)
        return data

    def holdings(self):
        return [cid for cid, st in self.state.items() if st[0] & _COMPLETE]

    def used_bytes(self):
        return sum(st[2] for st in self.state.values())

    # ---- room --------------------------------------------------------------

    def remove(self, cid):
        # the state record first: a cut after it leaves records without a
        # state, which the next start deletes (_load)
        name = "f" + files.cid_hex(cid)
        for suffix in ("s", "m", "d"):
            self.storage.delete(name + suffix)
        self.manifests.pop(cid, None)
        self.state.pop(cid, None)

    def _limit_cached(self):
        # the quota bounds chunk bytes, not how many files: small files (or
        # manifests whose chunks never came) would pile up in RAM
        while True:
            victim = None
            n = 0
            for cid, st in self.state.items():
                if not st[0] & (_OWN | _PINNED):
                    n += 1
                    if victim is None or st[1] < self.state[victim][1]:
                        victim = cid
            if n < _MAX_CACHED:
                return
            self.remove(victim)

    def _make_room(self, length, cid):
        # room for length more bytes, evicting cached files (never cid's)
        while self.used_bytes() + length > self.quota_bytes:
            victim = None
            for c, st in self.state.items():
                if c == cid or st[0] & (_OWN | _PINNED):
                    continue
                if victim is None or st[1] < self.state[victim][1]:
                    victim = c
            if victim is None:
                raise files.FileError("file store full (%d of %d bytes, nothing evictable)"
                                      % (self.used_bytes(), self.quota_bytes))
            self.remove(victim)
