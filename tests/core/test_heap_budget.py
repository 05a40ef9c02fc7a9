# The total heap budget (Node.heap_free): once the app says the heap is low,
# what grows from the air stops growing, and it grows again once there is
# room. Runs under CPython (pytest) and MicroPython (tests/core/mp_run.py).
from pollen import wire
from pollen.wire import Frame, MSG, F_WANT_ACK

from .fakemesh import line


def _grow(n, now_ms, k0, count):
    # what hostile or busy air adds: new neighbours, routes, catalog entries
    for k in range(k0, k0 + count):
        n.neigh.heard(0x30000001 + (k << 8), -80, 5, now_ms)
        n.routes.learn(0x40000001 + (k << 8), 1, 2, now_ms)
        n.catalog.heard(bytes([k + 1]) * 16, "file %d" % k, 1, 1, 1, now_ms)


def test_below_the_low_heap_mark_the_tables_stop_growing_and_grow_again_with_room():
    m = line(3)
    m.run(20000)
    n = m.nodes[2]
    assert len(n.neigh.table) == 2
    routes = len(n.routes)
    n.heap_free(2048)
    assert n._heap_low() and n.counters["heap_low"] == 1
    _grow(n, m.now_ms, 0, 12)
    # a newcomer takes the place of the oldest: the tables keep their size
    # (at least 4 entries each, so a starved node still has a way out)
    kept = max(routes, 4)
    assert len(n.neigh.table) == 4 and len(n.routes) == kept and len(n.catalog.table) == 4
    assert 0x30000001 + (11 << 8) in n.neigh.table   # the newest is there
    n.heap_free(2048)
    assert n.counters["heap_low"] == 1   # counted once per low spell
    n.heap_free(40000)
    assert not n._heap_low()
    _grow(n, m.now_ms, 20, 12)
    assert len(n.neigh.table) == 16 and len(n.catalog.table) == 16
    assert n.neigh.capacity == n.s.neighbour_capacity and len(n.routes) == kept + 12


def test_with_the_heap_low_a_relay_carries_nothing_for_others_but_keeps_its_own():
    m = line(3)
    m.run(20000)
    n = m.nodes[2]
    cid = b"\x07" * 16
    n.catalog.heard(cid, "map", 4, 0, 1, m.now_ms)   # node 1 holds it
    n.heap_free(2048)
    # a unicast for a node nobody knows a way to: not carried
    f = Frame(MSG, F_WANT_ACK, 3, 1, 1, 0x0A0B0C09, 77, 0, 1, b"for someone away")
    n._maybe_carry(f, wire.pack(f, n.key), m.now_ms)
    assert f.key() not in n.held
    # its own fetch and its own messages go on
    n.fetch(cid, m.now_ms)
    assert cid in n.fetches
    mid = n.send(0x0A0B0C09, "ours", m.now_ms)
    assert (n.id << 32 | mid) in n.held
    n.heap_free(40000)
    n._maybe_carry(f, wire.pack(f, n.key), m.now_ms)
    assert f.key() in n.held

