# A node that comes back: what it holds survives a restart without coming
# into its heap all at once, and restarts neither use up nor multiply its
# retries. Runs under CPython (pytest) and MicroPython (tests/core/mp_run.py).
from .fakemesh import line


def _key(origin, msg_id):
    return (origin << 32) | msg_id


def _held_records(storage):
    return [n for n in storage.names() if n.startswith("h")]


def _power_cycle(m, i, off_ms=2000):
    m.power_off(i)
    m.run(off_ms)
    return m.boot(i)   # the same storage


def test_a_node_holding_a_full_store_restarts_with_a_few_retries_queued_and_delivers_all():
    # 32 messages (held_capacity) wait for a node that is off. After a
    # restart the sender keeps their frames in storage, not in its heap, and
    # retries a few at a time (every queued retry is a frame in the heap):
    # this crash-looped a node at MicroPython's 128K heap
    m = line(3)
    m.run(60000)   # neighbours known
    m.power_off(3)
    cap = m.nodes[1].s.held_capacity
    ids = [m.send(1, 3, "message %d for a node that is away" % k) for k in range(cap)]
    m.run(20000)
    n = _power_cycle(m, 1)
    assert len(n.held) == cap and len(_held_records(m.storage[1])) == cap
    assert all(h.frame is None for h in n.held.values())   # in storage, read when sent
    most = 0
    for _ in range(60):
        m.run(1000)
        most = max(most, len([k for k in n.jobs if k in n.held]))
    assert 0 < most <= 4
    m.boot(3)
    m.run(600000)
    got = [r["id"] for r in m.received(3, "msg")]
    assert sorted(got) == sorted(ids)                        # each one, once


def test_restarts_do_not_use_up_a_message_s_retries():
    # node 2 is switched off and on again and again while its neighbour 3,
    # the destination, is away: every start it tries again when it hears
    # its other neighbour, and when the destination is back the message
    # still goes (it used to give up for good after about ten attempts)
    m = line(3)
    m.run(60000)   # neighbours known
    m.power_off(3)
    mid = m.send(2, 3, "still trying")
    m.run(120000)
    for _ in range(15):
        _power_cycle(m, 2)
        m.run(30000)
    assert m.nodes[2].held[_key(2, mid)].attempts > 12
    m.boot(3)
    m.run(120000)
    assert [r["id"] for r in m.received(3, "msg")] == [mid]
    assert m.nodes[2].held == {}
