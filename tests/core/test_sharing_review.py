# The shared commons (sharing.py) against bad input from inside the network
# (a buggy or compromised node holds the network key too) and against frame
# loss: state keyed by values from the air stays bounded, one frame does not
# make many, and what is held is not lost or left half done. CPython (pytest)
# and MicroPython (tests/core/mp_run.py): plain test_* functions.
from pollen import wire, files, file_wire
from pollen.wire import Frame, BROADCAST, WANT, PART, CATALOG, F_PARTS
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
    return m.nodes[node].share("f", "application/octet-stream", data, m.now_ms), data


def test_a_power_cut_before_the_complete_flag_is_written_is_healed():
    # every chunk is stored, then the power goes before the state record
    # says "complete": at start-up the file is checked and marked complete
    # (a fetch of it would otherwise find nothing to ask for and give up)
    store = MemoryStorage()
    data = random_bytes(3000, 4)
    raw = files.make_manifest("notice.txt", "text/plain", data, 9)
    s = HeldFiles(store)
    cid = s.begin(raw, pinned=True)
    for i in range(s.manifests[cid].chunks):
        s.put_chunk(cid, i, files.chunk_of(data, i))
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
    m = line(2, **FAST)
    m.run(30000)
    cid, data = _shared(m, 1, 3000)
    m.run(20000)
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
