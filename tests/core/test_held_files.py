# Files held by a node: partials that survive a restart, verification,
# quota with least-recently-used eviction. CPython and MicroPython.
from pollen import files
from pollen import file_author
from pollen.held_files import HeldFiles
from pollen.storage import MemoryStorage

from .util import random_bytes as _data, file_error as _refused


def test_own_file_is_complete_and_readable():
    s = HeldFiles(MemoryStorage())
    data = _data(5000)
    cid = file_author.add_own(s, "map.png", "image/png", data, 7)
    assert s.complete(cid) and s.missing(cid) == [] and s.holdings() == [cid]
    m = s.manifests[cid]
    assert b"".join(s.read_chunk(cid, i) for i in range(m.chunks)) == data


def test_fetched_out_of_order_resumes_after_a_restart():
    store = MemoryStorage()
    data = _data(3000, 2)
    raw = file_author.make_manifest("notice.txt", "text/plain", data, 9)
    s = HeldFiles(store)
    cid = s.begin(raw)
    m = s.manifests[cid]
    for i in (14, 3, 0, 7):
        assert s.put_chunk(cid, i, file_author.chunk_of(data, i))
    assert not s.put_chunk(cid, 3, file_author.chunk_of(data, 3))  # a duplicate
    assert not s.complete(cid)
    s2 = HeldFiles(store)  # power cut and restart
    left = s2.missing(cid)
    assert left == [i for i in range(m.chunks) if i not in (0, 3, 7, 14)]
    for i in left:
        s2.put_chunk(cid, i, file_author.chunk_of(data, i))
    assert s2.complete(cid) and HeldFiles(store).complete(cid)


def test_bad_chunks_and_unknown_files_are_refused_and_nothing_is_damaged():
    s = HeldFiles(MemoryStorage())
    data = _data(1000, 3)
    cid = file_author.add_own(s, "a", "", data, 1)
    other = s.begin(file_author.make_manifest("b", "", _data(600, 4), 2))
    bad = bytearray(file_author.chunk_of(data, 1))
    bad[0] ^= 0xFF
    assert "hash" in _refused(s.put_chunk, other, 1, bytes(bad))
    assert "unknown" in _refused(s.put_chunk, b"\x00" * 16, 0, b"x")
    assert s.complete(cid) and s.missing(other) == [0, 1, 2]
    _refused(s.begin, b"\x01garbage")


def test_quota_evicts_least_recently_used_cached_files_not_own_ones():
    s = HeldFiles(MemoryStorage(), quota_bytes=3000)
    own = file_author.add_own(s, "mine", "", _data(1000, 5), 1)
    cached = []
    for k in range(2):
        d = _data(800, 10 + k)
        cid = s.begin(file_author.make_manifest("c%d" % k, "", d, 2))
        for i in range(4):
            s.put_chunk(cid, i, file_author.chunk_of(d, i))
        cached.append(cid)
    s.read_chunk(cached[0], 0)  # the first cached file was used lately
    d = _data(800, 20)
    newest = s.begin(file_author.make_manifest("new", "", d, 3))
    for i in range(4):
        s.put_chunk(newest, i, file_author.chunk_of(d, i))
    assert s.complete(own) and s.complete(cached[0]) and s.complete(newest)
    assert cached[1] not in s.state  # least recently used went
    assert s.used_bytes() <= 3000


def test_a_full_store_of_own_files_says_so():
    s = HeldFiles(MemoryStorage(), quota_bytes=1000)
    file_author.add_own(s, "mine", "", _data(1000, 6), 1)
    assert "full" in _refused(file_author.add_own, s, "more", "", _data(200, 7), 1)
    assert len(s.state) == 1  # the refused file left nothing behind


class _Cut(Exception):
    pass


class _CutStorage(MemoryStorage):
    # the power goes after `left` more writes (put or delete)
    def __init__(self):
        MemoryStorage.__init__(self)
        self.left = -1

    def _op(self):
        if self.left == 0:
            raise _Cut()
        self.left -= 1

    def put(self, name, data):
        self._op()
        MemoryStorage.put(self, name, data)

    def delete(self, name):
        self._op()
        MemoryStorage.delete(self, name)


def _check_after_restart(store):
    # what a restart finds: every file it says is complete has all its
    # chunks and checks out, and nothing is left of a file it does not hold
    store.left = -1
    s = HeldFiles(store)
    for cid in s.holdings():
        m = s.manifests[cid]
        assert s.missing(cid) == [], "complete, with chunks missing"
        assert all(s.read_chunk(cid, i) is not None for i in range(m.chunks))
    for name in store.names():
        if name[:1] == "f":
            assert files.cid_from_hex(name[1:33]) in s.state, "orphan record " + name
    return s


def test_a_power_cut_at_any_write_of_an_eviction_or_a_start_leaves_the_old_state_or_the_new():
    data = [_data(2500, k) for k in range(3)]
    raws = [file_author.make_manifest("f%d" % k, "text/plain", data[k], 9) for k in range(3)]
    n = 0
    while True:
        store = _CutStorage()
        s = HeldFiles(store, quota_bytes=6000)
        for k in (0, 1):   # two cached files fill the quota
            cid = s.begin(raws[k])
            for i in range(s.manifests[cid].chunks):
                s.put_chunk(cid, i, file_author.chunk_of(data[k], i))
        store.left = n   # then the power goes at the n-th write of the third
        try:
            cid = s.begin(raws[2])   # evicts the least recently used to make room
            for i in range(s.manifests[cid].chunks):
                s.put_chunk(cid, i, file_author.chunk_of(data[2], i))
        except _Cut:
            _check_after_restart(store)
            n += 1
            continue
        s = _check_after_restart(store)
        assert len(s.holdings()) == 2 and n > 10
        break


def test_a_store_of_the_first_layout_is_moved_to_one_data_record_per_file():
    # a record per chunk ("f<cid>c<i>") and a 5-byte state, as nodes kept
    # files before: read at start-up into the data record, nothing lost
    from pollen.wire import be32
    data = _data(3000, 5)
    raw = file_author.make_manifest("old.txt", "text/plain", data, 9)
    m = files.parse_manifest(raw)
    h = "f" + files.cid_hex(m.cid)
    store = MemoryStorage()
    store.put(h + "m", raw)
    for i in range(m.chunks):
        store.put(h + "c%d" % i, file_author.chunk_of(data, i, m.chunk_bytes))
    store.put(h + "s", bytes((1 | 4,)) + be32(3))   # own, complete, used 3 times
    s = HeldFiles(store)
    assert s.complete(m.cid) and s.holdings() == [m.cid]
    assert b"".join(s.read_chunk(m.cid, i) for i in range(m.chunks)) == data
    assert sorted(store.names()) == [h + "d", h + "m", h + "s"]
    assert HeldFiles(store).complete(m.cid)   # and so it stays
