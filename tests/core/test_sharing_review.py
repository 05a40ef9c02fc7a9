# The shared commons (sharing.py) against bad input from inside the network
# (a buggy or compromised node holds the network key too) and against frame
# loss: state keyed by values from the air stays bounded, one frame does not
# make many, and what is held is not lost or left half done. CPython (pytest)
# and MicroPython (tests/core/mp_run.py): plain test_* functions.
from pollen import file_author
from pollen import wire, files, file_wire
from pollen.wire import Frame, BROADCAST, WANT, PART, CHUNK, CATALOG, F_PARTS
from pollen.crypto import NetworkKey
from pollen.held_files import HeldFiles
from pollen.storage import MemoryStorage

from .fakemesh import FakeMesh, KEY_HEX, line
from .util import random_bytes

KEY = NetworkKey(bytes.fromhex(KEY_HEX))
FAST = {"region": "EU868-10"}
FORGER = 0x0A0B0C07


def _frame(ftype, origin, payload, next_hop=0, flags=0, msg_id=1):
    return wire.pack(Frame(ftype, flags, 0, 0, origin, BROADCAST, msg_id, next_hop,
                           origin & 0xFF, payload), KEY)


def _want(origin, asked, cid, first, idx, parts=False):
    return _frame(WANT, origin, file_wire.pack_want(cid, first, idx), asked & 0xFF,
                  F_PARTS if parts else 0)


def _advertise(m, node, holder, cid, hops=0):
    # holder tells node it has cid (a catalog frame)
    payload, n = file_wire.pack_catalog([(cid, 1000, hops, 0, "x")])
    m.inject(node, _frame(CATALOG, holder, payload))


def _shared(m, node, size_bytes, seed=1):
    data = random_bytes(size_bytes, seed)
    return file_author.share(m.nodes[node], "f", "application/octet-stream", data, m.now_ms), data


def _pair_sharing(size_bytes):
    # nodes 1 and 2 hear each other; 1 shares a file and 2 has heard of it
    m = line(2, **FAST)
    m.run(30000)
    cid, data = _shared(m, 1, size_bytes)
    m.run(20000)
    return m, cid, data


def test_an_overheard_want_for_chunks_we_hold_does_not_hold_back_our_own():
    # 2 has the first 16 chunks of a file held by 1 and fetches the rest. A
    # neighbour further behind asks 1 for chunks 0..15: 2 must not wait for
    # that answer (it wants none of it), nor count 1 silent if none comes.
    m, cid, data = _pair_sharing(8000)
    n = m.nodes[2]
    raw = m.nodes[1].files.manifests[cid].raw
    n.files.begin(raw)
    for i in range(16):
        n.files.put_chunk(cid, i, file_author.chunk_of(data, i))
    wants = n.counters["wants"]
    n.fetch(cid, m.now_ms)
    behind = 0x0C000005
    m.inject(2, _want(behind, 1, cid, 0, list(range(16))))
    m.run(200)
    assert n.counters["wants"] == wants + 1  # it asked 1 for the rest at once
    assert n.fetches[cid].windows[1][0] == set(range(16, 32))
    m.run(60000)
    assert n.files.complete(cid)


def test_an_overheard_want_that_goes_unanswered_is_no_strike_against_the_source():
    # we wait for the answer to a WANT we overheard; the source never heard
    # that WANT (a hidden or forged asker): it is not silent towards us, so
    # it is not backed off, and we ask it ourselves at once
    m, cid, data = _pair_sharing(8000)
    n = m.nodes[2]
    n.files.begin(m.nodes[1].files.manifests[cid].raw)
    for i in range(16):
        n.files.put_chunk(cid, i, file_author.chunk_of(data, i))
    n.fetch(cid, m.now_ms)
    m.inject(2, _want(0x0C000005, 1, cid, 16, list(range(16, 32))))
    fe = n.fetches[cid]
    w = fe.windows[1]
    while fe.windows.get(1) is w:
        m.run(50)
    assert 1 not in fe.strikes, fe.strikes
    m.run(60000)
    assert n.files.complete(cid)


def test_one_want_gets_at_most_one_window_answered():
    # a WANT asking for 100 chunks at once (a bitmap of 13 bytes) makes the
    # holder send at most the biggest window a node asks for (64), not 100
    m = FakeMesh([1], [], **FAST)
    cid, data = _shared(m, 1, 20000)
    m.inject(1, _want(FORGER, 1, cid, 0, list(range(100))))
    m.run(120000)
    sent = m.nodes[1].counters["chunks_sent"]
    assert 0 < sent <= 64, sent


def test_what_waits_to_be_served_is_bounded():
    # WANTs for one window after another of a big file: the chunks waiting
    # to go out are bounded (the askers ask again for what did not come)
    m = FakeMesh([1], [], **FAST)
    cid, data = _shared(m, 1, 40000)
    for k in range(3):
        m.inject(1, _want(FORGER + k * 256, 1, cid, k * 64, [k * 64 + i for i in range(64)]))
    e = m.nodes[1].serving[cid]
    assert len(e[0]) + len(e[1]) <= 128, len(e[1])
    m.run(120000)
    assert not m.nodes[1].serving



def test_chunks_owed_before_the_manifest_stay_bounded():
    # a relay asked for chunks of a file it lacks fetches it for the asker;
    # what it owes is bounded, whatever indices the asker names
    m = FakeMesh([2], [], **FAST)
    cid = bytes(range(16))
    holder = 0x0D000003
    _advertise(m, 2, holder, cid)
    for k in range(40):
        m.inject(2, _want(FORGER, 2, cid, k * 256, [k * 256 + i for i in range(256)]))
    fe = m.nodes[2].fetches[cid]
    assert len(fe.owed) <= 64, len(fe.owed)
    for k in range(100):  # many askers, each a new origin
        m.inject(2, _want(0x0E000001 + k * 256, 2, cid, 0, [0]))
    assert len(fe.askers) <= 8, len(fe.askers)
    m.run(60000)


def test_chunks_owed_beyond_the_file_are_forgotten_once_the_manifest_is_in():
    # 3 asks relay 2 for chunk 0 and for chunks past the end of the file;
    # once 2 has the manifest it owes only what exists: it passes chunk 0 on
    # and stops, rather than asking 1 for chunks nobody has until its patience ends
    m, cid, data = _pair_sharing(1000)
    n = m.nodes[2]
    m.inject(2, _want(FORGER, 2, cid, 0, [0, 100, 200]))
    m.run(60000)
    assert n.files.has_chunk(cid, 0)
    assert cid not in n.fetches, n.fetches[cid].owed


def test_strikes_stay_bounded_when_sources_come_and_go():
    # sources that never answer (forged origins, or nodes gone for good):
    # each is backed off, but the fetch remembers only a few of them
    m = FakeMesh([2], [], **FAST)
    cid = bytes(range(16))
    n = m.nodes[2]
    n.fetch(cid, m.now_ms)
    for k in range(40):
        _advertise(m, 2, 0x0F000001 + k * 256, cid)
        m.run(4000)
    fe = n.fetches[cid]
    assert len(fe.strikes) <= 8, len(fe.strikes)


def test_manifest_parts_no_manifest_can_have_are_dropped():
    # a 64 KiB file's manifest is at most 83 parts of 200 bytes: 255 parts of
    # 213 bytes (54 KB of storage while they gather) are not kept
    m = FakeMesh([2], [], **FAST)
    n = m.nodes[2]
    cid = bytes(range(16))
    n.fetch(cid, m.now_ms)
    for part in range(40):
        m.inject(2, _frame(PART, FORGER, bytes(cid) + bytes((part, 255)) + b"x" * 213))
    fe = n.fetches[cid]
    assert not fe.parts and n.drops.get("manifest") == 40
    assert n.storage.stat("f" + cid.hex() + "m") is None  # nothing gathered
    # a part longer than the parts a node cuts is no part either
    m.inject(2, _frame(PART, FORGER, bytes(cid) + bytes((0, 2)) + b"x" * 213))
    assert not fe.parts


def test_a_stray_manifest_part_does_not_get_the_holder_blamed():
    # one bad PART (another part count) arrives before the holder's answer:
    # the holder is not counted as bad nor forgotten, and the fetch completes
    m, cid, data = _pair_sharing(4000)
    n = m.nodes[2]
    n.fetch(cid, m.now_ms)
    m.inject(2, _frame(PART, FORGER, bytes(cid) + bytes((2, 3)) + b"junk"))
    m.run(120000)
    assert n.files.complete(cid)
    assert 1 not in n.bad_senders, n.bad_senders


def test_mixed_up_parts_blame_nobody_in_particular():
    # a forged part 0 and the holder's part 1: the manifest does not hash
    # to its content id, but the holder sent nothing wrong
    m, cid, data = _pair_sharing(8000)
    n = m.nodes[2]
    raw = m.nodes[1].files.manifests[cid].raw
    assert file_wire.part_count(raw) == 2
    n.fetch(cid, m.now_ms)
    m.inject(2, _frame(PART, FORGER, bytes(cid) + bytes((0, 2)) + b"y" * 200))
    m.run(120000)
    assert n.files.complete(cid)
    assert 1 not in n.bad_senders, n.bad_senders


def test_a_sender_of_a_bad_chunk_is_asked_no_more_for_that_file():
    # a neighbour that sent a chunk failing its hash is "asked no more for
    # this file" (docs/files.md) while there is another way, even when it
    # advertises the file again
    asked = []

    class Watched(FakeMesh):
        def _transmit(self, i, frame):
            if i == 2 and frame[0] & 0x0F == WANT:
                asked.append(frame[14])
            FakeMesh._transmit(self, i, frame)

    m = Watched([1, 2], [], **FAST)  # 1 and 2 out of reach of each other
    cid, data = _shared(m, 1, 20000)
    n = m.nodes[2]
    n.files.begin(m.nodes[1].files.manifests[cid].raw)
    n.fetch(cid, m.now_ms)
    _advertise(m, 2, FORGER, cid)
    m.run(10000)
    assert FORGER & 0xFF in asked, asked
    m.inject(2, _frame(CHUNK, FORGER, file_wire.pack_chunk(cid, 99, b"x" * 200)))
    assert n.bad_senders == {FORGER: 1}
    while FORGER in n.fetches[cid].windows:
        m.run(100)
    m.join(1, 2)
    _advertise(m, 2, 1, cid)
    del asked[:]
    while not n.files.complete(cid):
        _advertise(m, 2, FORGER, cid)  # it says it has the file, again and again
        m.run(5000)
    assert asked and FORGER & 0xFF not in asked, asked



def test_a_want_from_our_only_way_does_not_cut_us_off():
    # 3 fetches through relay 2, its only way. A WANT to 3 with 2 as its
    # origin (a bug, or forged: any member can forge any origin) makes 2 an
    # asker, a bad chunk with 2 as its origin a bad sender, and neither is
    # asked while another way answers; for our own fetch 2 must still be
    # asked, also when a way that never answers is advertised beside it
    for frame in ("want", "chunk", "chunk and a silent way"):
        m = line(3, **FAST)
        m.run(30000)
        cid, data = _shared(m, 1, 8000)
        m.run(20000)
        n = m.nodes[3]
        n.fetch(cid, m.now_ms)
        m._poll(3)
        while cid not in n.files.manifests:
            m.run(100)
        if frame == "want":
            m.inject(3, _want(2, 3, cid, 30, [30, 31]))
        else:
            m.inject(3, _frame(CHUNK, 2, file_wire.pack_chunk(cid, 30, b"x" * 200)))
            assert n.bad_senders == {2: 1}
        if frame == "chunk and a silent way":
            _advertise(m, 3, FORGER, cid, hops=1)
        m.run(300000)
        assert n.files.complete(cid), frame



def test_cached_files_are_bounded_in_number():
    # every file a relay passes on stays cached with its manifest in RAM;
    # the quota bounds only chunk bytes, so small files (or manifests whose
    # chunks never came) piled up without limit. Own files are never evicted
    m = line(2, **FAST)
    m.run(30000)
    mine = file_author.share(m.nodes[2], "mine", "text/plain", b"my own notice", m.now_ms)
    cids = []
    for k in range(40):
        cid, data = _shared(m, 1, 150, k + 10)
        cids.append(cid)
    m.run(900000)  # the catalog brings them, a frame at a time
    n = m.nodes[2]
    cids = [c for c in cids if c in n.catalog.table]
    assert len(cids) >= 24, len(cids)
    for cid in cids:
        m.inject(2, _want(FORGER, 2, cid, 0, [0]))
        m.run(3000)
    assert n.files.complete(cids[-1]) and n.files.complete(mine)
    assert len(n.files.state) <= 17, len(n.files.state)



def test_a_power_cut_before_the_complete_flag_is_written_is_healed():
    # every chunk is stored, then the power goes before the state record
    # says "complete": at start-up the file is checked and marked complete
    # (a fetch of it would otherwise find nothing to ask for and give up)
    store = MemoryStorage()
    data = random_bytes(3000, 4)
    raw = file_author.make_manifest("notice.txt", "text/plain", data, 9)
    s = HeldFiles(store)
    cid = s.begin(raw, pinned=True)
    for i in range(s.manifests[cid].chunks):
        s.put_chunk(cid, i, file_author.chunk_of(data, i))
    assert s.complete(cid)
    name = "f" + "".join("%02x" % b for b in cid) + "s"
    st = store.get(name)
    store.put(name, bytes((st[0] & ~4,)) + st[1:])  # the last write did not happen
    s2 = HeldFiles(store)
    assert s2.complete(cid) and s2.holdings() == [cid]


def test_a_fetch_record_left_for_a_complete_file_ends_as_fetched():
    # the power goes after the file is complete but before its fetch record
    # is deleted (or the file came complete another way, e.g. shared by the
    # host meanwhile): the fetch finds nothing to ask for; it must end as
    # fetched, not wait out its patience and report a failure
    m, cid, data = _pair_sharing(3000)
    m.nodes[2].fetch(cid, m.now_ms)
    m._poll(2)
    m.run(60000)
    assert m.nodes[2].files.complete(cid)
    m.storage[2].put("q" + "".join("%02x" % b for b in cid), b"")
    n = m.boot(2)
    assert cid in n.fetches
    m.run(30000)
    assert not n.fetches
    assert [e[2] for e in m.events if e[1] == 2 and e[2] in ("fetched", "fetch_failed")] == ["fetched", "fetched"]



def test_a_manifest_of_more_than_255_parts_is_refused_when_shared():
    # part numbers are one byte: a manifest of 16-byte chunks of a 256 KiB
    # file is 329 parts, and a WANT for its parts made poll() raise
    m = FakeMesh([1], [], max_file_bytes=262144, **FAST)
    size = 262144
    raw = bytearray((1, 1)) + b"n" + bytes((0,)) + wire.be32(size) + bytes((0, 16)) \
        + wire.be32(1) + wire.be32(0) + bytes(32) + bytes(4 * (size // 16))
    n = m.nodes[1]
    try:
        n.share_manifest(bytes(raw), m.now_ms)
    except files.FileError as e:
        assert "parts" in str(e), str(e)
    else:
        cid = files.content_id(bytes(raw))
        m.inject(1, _want(FORGER, 1, cid, 0, list(range(8)), parts=True))
        m.run(10000)
        raise AssertionError("shared a manifest of more than 255 parts")


def test_a_long_manifest_is_gathered_in_storage_part_by_part():
    # a file in 16-byte chunks has a long manifest (the longest, a 64 KiB
    # file's, is 16.5 KB): the fetcher writes each part into the manifest's
    # record as it comes and never holds the parts, nor the whole, in RAM
    m = line(2, **FAST)
    m.run(30000)
    a, n = m.nodes[1], m.nodes[2]
    data = random_bytes(2048, 3)
    raw = file_author.make_manifest("long", "application/octet-stream", data, a.id, 0, 16)
    cid = a.share_manifest(raw, m.now_ms)
    for i in range(a.files.manifests[cid].chunks):
        a.share_chunk(cid, i, file_author.chunk_of(data, i, 16), m.now_ms)
    assert file_wire.part_count(raw, n.file_chunk_bytes) == 3
    m.run(20000)
    n.fetch(cid, m.now_ms)
    record = "f" + files.cid_hex(cid) + "m"
    gathering = 0
    for _ in range(3000):
        m.run(100)
        fe = n.fetches.get(cid)
        if fe is not None and fe.parts is not None:
            # what is kept in RAM: which parts are still missing, 32 bytes
            gathering += 1
            assert len(fe.parts) == 32 and fe.parts[0] & 7 and max(fe.parts[1:]) == 0
            assert 0 < n.storage.stat(record) < len(raw)
        if n.files.complete(cid):
            break
    assert gathering and n.files.complete(cid)
    assert n.files.manifests[cid]._raw is None and n.files.manifests[cid].raw == raw
    got = b"".join(n.files.read_chunk(cid, i) for i in range(len(data) // 16))
    assert got == data


def test_parts_that_do_not_make_their_manifest_leave_no_record():
    # a forger answers a fetch with parts whose whole has another content id:
    # it is blamed, and what was gathered leaves storage
    m = FakeMesh([2], [], **FAST)
    n = m.nodes[2]
    cid = bytes(range(16))
    n.fetch(cid, m.now_ms)
    for part in range(2):
        m.inject(2, _frame(PART, FORGER, bytes(cid) + bytes((part, 2)) + b"y" * (200 - 100 * part)))
    assert n.storage.stat("f" + files.cid_hex(cid) + "m") is None
    assert FORGER in n.bad_senders and not n.fetches[cid].parts
