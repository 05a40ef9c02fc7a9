# The shared commons in the node (sharing.py), driven over FakeMesh: catalog
# gossip, fetching across hops with loss, several sources, overhearing,
# resume after a restart, and bad input from the air. Runs under CPython
# (pytest) and MicroPython (tests/core/mp_run.py): plain test_* functions.
from pollen import file_author
from pollen import wire, files, file_wire
from pollen.wire import Frame, BROADCAST, CHUNK, PART, CATALOG
from pollen.crypto import NetworkKey
from pollen.airtime import preset_time_on_air_us

from .fakemesh import FakeMesh, KEY_HEX, line
from .util import random_bytes, file_storage

KEY = NetworkKey(bytes.fromhex(KEY_HEX))
FAST = {"region": "EU868-10"}  # 10 % duty cycle: file traffic is not held back by the budget


def _data(n, seed=1):
    return random_bytes(n, seed)


def _settle(m, ms=30000):
    m.run(ms)  # beacons: neighbours known


def _events(m, node, kind):
    return [e[3] for e in m.events if e[1] == node and e[2] == kind]


def _fetch(m, node, cid, ms):
    m.nodes[node].fetch(cid, m.now_ms)
    m._poll(node)
    m.run(ms)


def _same(node, cid, data):
    # the node holds exactly data (chunk by chunk: no second copy of the file)
    m = node.files.manifests[cid]
    for i in range(m.chunks):
        if node.files.read_chunk(cid, i) != file_author.chunk_of(data, i, m.chunk_bytes):
            return False
    return m.size_bytes == len(data)


class Logged(FakeMesh):
    # FakeMesh that adds up time on air per (sender, frame type)
    def __init__(self, ids, links, **kw):
        self.air = {}
        FakeMesh.__init__(self, ids, links, **kw)

    def _transmit(self, i, frame):
        k = (i, frame[0] & 0x0F)
        self.air[k] = self.air.get(k, 0) + preset_time_on_air_us(len(frame), self.nodes[i].preset)
        FakeMesh._transmit(self, i, frame)

    def airtime_us(self, types, node=None):
        return sum(v for (i, t), v in self.air.items() if t in types and node in (None, i))


def _frame(ftype, origin, msg_id, payload, next_hop=0, flags=0):
    return wire.pack(Frame(ftype, flags, 0, 0, origin, BROADCAST, msg_id, next_hop,
                           origin & 0xFF, payload), KEY)


def test_file_crosses_four_hops_and_is_verified():
    m = line(5, **FAST)
    _settle(m)
    data = _data(16384)
    cid = file_author.share(m.nodes[1], "map.bin", "application/octet-stream", data, m.now_ms)
    m.run(20000)
    # the catalog reached the far end, with the way to the file
    row = [r for r in m.nodes[5].catalog_entries(m.now_ms) if r["name"] == "map.bin"]
    assert len(row) == 1 and row[0]["hops"] == 4 and row[0]["cid"] == files.cid_str(cid)
    _fetch(m, 5, cid, 900000)
    done = _events(m, 5, "fetched")
    assert len(done) == 1 and done[0]["verified"] and done[0]["size_bytes"] == 16384
    assert _same(m.nodes[5], cid, data)
    assert _events(m, 5, "fetch_progress")  # progress was reported on the way
    # the relays kept what they passed on (caching along the way)
    assert m.nodes[3].files.complete(cid)
    assert m.nodes[5].files.complete(cid) and not m.nodes[5].fetches


def test_fetch_completes_with_frame_loss():
    m = line(4, loss=0.1, seed=3, **FAST)
    _settle(m)
    data = _data(8000, 2)
    cid = file_author.share(m.nodes[1], "notice.txt", "text/plain", data, m.now_ms)
    m.run(20000)
    _fetch(m, 4, cid, 1800000)
    assert [e["verified"] for e in _events(m, 4, "fetched")] == [True]
    assert _same(m.nodes[4], cid, data)


def test_airtime_within_twice_the_lower_bound():
    m = Logged([1, 2, 3, 4, 5], [(i, i + 1) for i in range(1, 5)], loss=0.1, seed=5, **FAST)
    _settle(m)
    data = _data(16384, 3)
    cid = file_author.share(m.nodes[1], "map.bin", "application/octet-stream", data, m.now_ms)
    m.run(20000)
    m.air = {}
    _fetch(m, 5, cid, 1800000)
    assert len(_events(m, 5, "fetched")) == 1
    preset = m.nodes[1].preset
    used = m.airtime_us((wire.WANT, wire.CHUNK, wire.PART))
    chunks = files.chunk_count(16384)
    bound = chunks * 4 * preset_time_on_air_us(16 + 18 + 200 + 8, preset)
    assert used <= 2 * bound, used / bound


def test_catalog_search_and_holders():
    m = line(3, **FAST)
    _settle(m)
    file_author.share(m.nodes[1], "Bus Timetable", "text/plain", b"08:15 village hall\n", m.now_ms)
    file_author.share(m.nodes[3], "well map", "image/png", _data(900), m.now_ms)
    m.run(30000)
    rows = m.nodes[2].catalog_entries(m.now_ms)
    assert sorted(r["name"] for r in rows) == ["Bus Timetable", "well map"]
    assert all(r["hops"] == 1 and r["holders"] == 1 and r["held"] is None for r in rows)
    found = m.nodes[2].catalog_entries(m.now_ms, "timetable")
    assert [r["name"] for r in found] == ["Bus Timetable"]
    assert m.nodes[2].catalog_entries(m.now_ms, "nothing like it") == []
    own = m.nodes[1].catalog_entries(m.now_ms, "bus")
    assert own[0]["held"] == "complete" and own[0]["hops"] == 0


def test_catalog_gossip_stays_within_its_airtime_share():
    m = Logged([1, 2, 3], [(1, 2), (2, 3)], **FAST)
    for k in range(30):  # more files than one catalog frame holds
        file_author.share(m.nodes[1], "file %d" % k, "text/plain", _data(300, k), m.now_ms)
    hour = 3600000
    m.run(hour)
    preset = m.nodes[1].preset
    for node in (1, 2):
        used = m.airtime_us((CATALOG,), node)
        # 1 % of the time, plus the burst a node may save up (4 full frames)
        allowed = hour * 10 + 4 * preset_time_on_air_us(255, preset)
        assert 0 < used <= allowed, (node, used, allowed)
    assert len(m.nodes[3].catalog_entries(m.now_ms)) == 30


def test_two_holders_serve_one_fetcher_at_once():
    # 1 and 2 both hold the file; 3 hears both
    m = Logged([1, 2, 3], [(1, 3), (2, 3)], **FAST)
    _settle(m)
    data = _data(12000, 4)
    cid = file_author.share(m.nodes[1], "shared.bin", "application/octet-stream", data, m.now_ms)
    # 2 got the same file (same manifest) some other way
    raw = m.nodes[1].files.manifests[cid].raw
    assert m.nodes[2].share_manifest(raw, m.now_ms) == cid
    for i in range(files.chunk_count(12000)):
        m.nodes[2].share_chunk(cid, i, file_author.chunk_of(data, i), m.now_ms)
    m.run(20000)
    _fetch(m, 3, cid, 900000)
    assert len(_events(m, 3, "fetched")) == 1
    assert m.nodes[1].counters["chunks_sent"] > 5 and m.nodes[2].counters["chunks_sent"] > 5


def test_three_fetchers_at_once_cost_less_than_three_fetches():
    # seeder 1 - relay 2 - fetchers 3, 4, 5 (each hears 2 and one another)
    links = [(1, 2), (2, 3), (2, 4), (2, 5), (3, 4), (4, 5), (3, 5)]
    data = _data(8000, 5)

    def run(fetchers):
        m = FakeMesh([1, 2, 3, 4, 5], links, **FAST)
        _settle(m)
        cid = file_author.share(m.nodes[1], "popular", "text/plain", data, m.now_ms)
        m.run(20000)
        for f in fetchers:
            m.nodes[f].fetch(cid, m.now_ms)
            m._poll(f)
        m.run(900000)
        for f in fetchers:
            assert len(_events(m, f, "fetched")) == 1, f
        return sum(n.counters["chunks_sent"] for n in m.nodes.values())

    together = run([3, 4, 5])
    separate = run([3]) + run([4]) + run([5])
    assert together < separate, (together, separate)


def test_fetch_resumes_after_a_restart():
    m = line(3, **FAST)
    _settle(m)
    data = _data(16384, 6)
    cid = file_author.share(m.nodes[1], "big", "application/octet-stream", data, m.now_ms)
    m.run(20000)
    m.nodes[3].fetch(cid, m.now_ms)
    m._poll(3)
    while m.nodes[3].files.chunks_held(cid) < 20:
        m.run(500)
    m.power_off(3)  # a power cut in the middle
    m.run(5000)
    had = m.nodes[3].files.chunks_held(cid)
    n = m.boot(3)  # same storage: the partial and the fetch record are there
    assert n.files.chunks_held(cid) == had and cid in n.fetches
    m.run(900000)
    assert [e["verified"] for e in _events(m, 3, "fetched")] == [True]
    assert n.counters["chunks_stored"] == files.chunk_count(16384) - had  # nothing twice
    assert _same(n, cid, data)


def test_forged_chunk_is_dropped_and_its_sender_counted():
    m = line(2, **FAST)
    _settle(m)
    data = _data(4000, 7)
    cid = file_author.share(m.nodes[1], "doc", "text/plain", data, m.now_ms)
    m.run(20000)
    n = m.nodes[2]
    n.fetch(cid, m.now_ms)
    m._poll(2)
    while cid not in n.files.manifests:
        m.run(100)
    forger = 0x0A0B0C07
    bad = file_wire.pack_chunk(cid, 19, b"x" * 200)
    m.inject(2, _frame(CHUNK, forger, 77, bad))
    assert n.drops.get("chunk_hash") == 1 and n.bad_senders == {forger: 1}
    assert not n.files.has_chunk(cid, 19)
    m.run(300000)
    assert _same(n, cid, data)  # the real chunk came from the real holder


def test_forged_manifest_is_dropped():
    m = line(2, **FAST)
    _settle(m)
    cid = file_author.share(m.nodes[1], "doc", "text/plain", _data(1000, 8), m.now_ms)
    other = file_author.make_manifest("evil", "text/plain", b"not the file", 0x0A0B0C07)
    n = m.nodes[2]
    n.fetch(cid, 0)  # before it could ask anyone: the forger answers first
    m.inject(2, _frame(PART, 0x0A0B0C07, 78, bytes(cid) + bytes((0, 1)) + other))
    assert n.drops.get("manifest") == 1 and cid not in n.files.manifests
    m.run(300000)
    assert n.files.complete(cid)


def test_unknown_content_id_fails_with_a_clear_error():
    m = line(3, **FAST)
    _settle(m)
    cid = bytes(range(16))
    _fetch(m, 3, cid, 900000)
    failed = _events(m, 3, "fetch_failed")
    assert len(failed) == 1 and "no node within reach has content id" in failed[0]["error"]
    assert files.cid_str(cid) in failed[0]["error"] and not m.nodes[3].fetches


def test_over_the_size_limit():
    m = line(2, max_file_bytes=8192, **FAST)
    n = m.nodes[1]
    try:
        file_author.share(n, "huge", "application/octet-stream", _data(9000), m.now_ms)
    except files.FileError as e:
        assert "9000 bytes" in str(e) and "8192" in str(e)
    else:
        raise AssertionError("oversize file shared")
    # a file shared by a node with a higher limit is refused by the fetcher
    m.boot(1, max_file_bytes=65536)
    _settle(m)
    cid = file_author.share(m.nodes[1], "huge", "application/octet-stream", _data(9000), m.now_ms)
    m.run(20000)
    _fetch(m, 2, cid, 300000)
    failed = _events(m, 2, "fetch_failed")
    assert len(failed) == 1 and "9000 bytes" in failed[0]["error"]
    assert m.nodes[2].drops.get("file_size") == 1


def test_full_store_refuses_without_damaging_what_is_held():
    m = line(2, file_quota_bytes=6000, **FAST)
    _settle(m)
    mine = _data(4000, 9)
    own = file_author.share(m.nodes[2], "mine", "text/plain", mine, m.now_ms)
    cid = file_author.share(m.nodes[1], "too much", "text/plain", _data(3000, 10), m.now_ms)
    m.run(20000)
    _fetch(m, 2, cid, 300000)
    failed = _events(m, 2, "fetch_failed")
    assert len(failed) == 1 and "full" in failed[0]["error"], failed
    assert m.nodes[2].files.complete(own) and _same(m.nodes[2], own, mine)


def test_a_bigger_size_limit_is_honoured():
    m = line(2, max_file_bytes=100000, **FAST)
    for i in (1, 2):  # files in files, as on a board: 330 chunks each
        m.storage[i] = file_storage("big%d" % i)
        m.boot(i)
    _settle(m)
    data = _data(66000, 11)
    cid = file_author.share(m.nodes[1], "big map", "image/png", data, m.now_ms)
    m.run(20000)
    _fetch(m, 2, cid, 1800000)
    assert [e["size_bytes"] for e in _events(m, 2, "fetched")] == [66000]
    assert _same(m.nodes[2], cid, data)


def test_every_file_frame_fits_the_dwell_time():
    # US915 allows 400 ms on air per frame: chunks, manifest parts and
    # catalog frames are all cut to fit
    longest = [0]

    class Watched(FakeMesh):
        def _transmit(self, i, frame):
            air = preset_time_on_air_us(len(frame), self.nodes[i].preset)
            if frame[0] & 0x0F >= CATALOG:
                longest[0] = max(longest[0], air)
            FakeMesh._transmit(self, i, frame)

    m = Watched([1, 2], [(1, 2)], region="US915", preset="MediumFast")
    _settle(m)
    n = m.nodes[1]
    assert 16 <= n.file_chunk_bytes < 200
    data = _data(20000, 12)
    cid = file_author.share(n, "timetable", "text/plain", data, m.now_ms)
    for k in range(8):  # enough names to fill a catalog frame
        file_author.share(n, "notice %d with a long name" % k, "text/plain", _data(100, k), m.now_ms)
    m.run(60000)
    _fetch(m, 2, cid, 1800000)
    assert _same(m.nodes[2], cid, data)
    assert 0 < longest[0] <= 400000, longest[0]
    assert not m.nodes[1].drops.get("dwell") and not m.nodes[2].drops.get("dwell")


def test_the_fetch_timer_module_uses_sharings_constants():
    # fetching.py repeats four of sharing.py's constants as compile-time
    # constants (they take no room in its module dict); they must agree
    import sys
    if sys.implementation.name == "micropython":
        return  # (there they are compiled away: no attributes to compare)
    from pollen import sharing, fetching
    for name in ("_WANT_JOB", "_FIRST_PARTS", "_MAX_BACKOFF", "_MAX_STRIKES"):
        assert getattr(fetching, name) == getattr(sharing, name), name
