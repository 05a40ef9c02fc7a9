# Replay protection (tables.Replay): a frame recorded off the air and sent again
# later (a minute, an hour of traffic, a day, a restart) is not delivered,
# acked, flooded or believed again. Runs under CPython and MicroPython.
from pollen import wire
from pollen.wire import Frame, BEACON, POST, MSG, ACK, BROADCAST, F_WANT_ACK, F_STORED, F_FRESH
from pollen.crypto import NetworkKey
from pollen.tables import Replay
from pollen.storage import MemoryStorage

from .fakemesh import KEY_HEX
from .test_node import Mesh, line

KEY = NetworkKey(bytes.fromhex(KEY_HEX))
HOUR_MS = 3600000


def _pack(ftype, origin, dest, msg_id, text=b"x", flags=0, hops=0, relayer=None, next_hop=0):
    return wire.pack(Frame(ftype, flags, 3, hops, origin, dest, msg_id, next_hop,
                           origin & 0xFF if relayer is None else relayer, text), KEY)


def _sent_by(m, i, since, ftype=None, key=None):
    out = []
    for t, s, data in m.log[since:]:
        f, _ = wire.unpack(data, KEY)
        if s == i and (ftype is None or f.ftype == ftype) and (key is None or f.key() == key):
            out.append(f)
    return out


def _recorded(m, ftype, origin, dest=None):
    # the first copy of a frame of ftype from origin that went on air
    for t, s, data in m.log:
        f, _ = wire.unpack(data, KEY)
        if f.ftype == ftype and f.origin == origin and (dest is None or f.dest == dest):
            return data, f


def _texts(m, i, kind):
    return [r["text"] for r in m.received(i, kind)]


# ---- the window itself ------------------------------------------------------

def test_the_window_accepts_each_id_once_and_refuses_ids_below_it():
    r = Replay(MemoryStorage(), 8)
    assert r.state(7, 100) == 0
    r.add(7, 100)
    assert r.state(7, 100) == 1
    for i in (101, 140, 99, 120):  # ahead, and late ones within the window
        assert r.state(7, i) == 0, i
        r.add(7, i)
        assert r.state(7, i) == 1, i
    assert r.state(7, 119) == 0 and r.state(7, 121) == 0  # not taken yet: still welcome
    r.add(7, 300)
    assert r.state(7, 236) == 1 or r.state(7, 236) == 0   # (at the window's edge)
    assert r.state(7, 140) == 2 and r.state(7, 100) == 2  # below the window: old
    assert r.state(8, 100) == 0                           # another origin's ids are its own


def test_the_window_moves_over_the_counters_wrap_and_takes_a_counter_begun_again():
    r = Replay(MemoryStorage(), 8)
    r.add(5, 0x7FFFFFF0)
    r.add(5, 0x00000003)  # counted up through the wrap
    assert r.state(5, 0x7FFFFFF0) == 1 and r.state(5, 0x7FFFFFF5) == 0
    assert r.state(5, 0x7FFFFF00) == 2
    # an origin that lost its storage starts again from a random id far away
    assert r.state(5, 0x30000000) == 0
    r.add(5, 0x30000000)
    assert r.state(5, 0x30000000) == 1 and r.state(5, 0x00000003) == 0


def test_a_full_table_lets_go_of_the_origin_least_used_and_is_kept_across_restarts():
    st = MemoryStorage()
    r = Replay(st, 8)
    for o in range(1, 9):
        r.add(o, 1000)
    r.add(9, 5)        # full, all used: the oldest goes (1)
    assert r.state(1, 1000) == 0 and r.state(2, 1000) == 1
    r.add(2, 1001)     # 2 is used again, 3 is not
    r.add(10, 5)
    r.add(11, 5)
    assert r.state(2, 1001) == 1 and r.state(3, 1000) == 0 and r.state(4, 1000) == 0
    r.flush()
    again = Replay(st, 8)   # after a restart
    assert again.state(2, 1001) == 1 and again.state(2, 1002) == 0
    bigger = Replay(st, 32)  # the setting changed: what fits is kept
    assert bigger.state(2, 1001) == 1
    smaller = Replay(st, 2)
    assert smaller.state(1, 999999) in (0, 2)   # (no crash; what fits)


def test_beacons_must_count_up():
    r = Replay(MemoryStorage(), 4)
    assert r.heard(3, 0x80000010)
    assert r.heard(3, 0x80000011)
    assert not r.heard(3, 0x80000011)  # the same again
    assert not r.heard(3, 0x80000005)  # an older one
    assert r.heard(3, 0x80300000)      # a counter begun again (storage lost)


# ---- ids: two counters ---------------------------------------------------------

def test_messages_and_other_frames_take_ids_from_two_counters_that_survive_a_restart():
    m = line(2)
    n = m.nodes[1]
    m.run(30000)
    mid = m.send(1, BROADCAST, "a post")
    m.send(1, 2, "a message")
    m.run(10000)
    beacon = _recorded(m, BEACON, 1)[1]
    assert not mid >> 31 and beacon.msg_id >> 31     # the top bit tells them apart
    post_ids = [mid]
    rec = m.storage[1].get("ids")
    assert len(rec) == 8
    m.power_off(1)
    n = m.boot(1)
    again = n.send(BROADCAST, "after a restart", m.now_ms)
    assert not again >> 31 and (again - post_ids[0]) & 0x7FFFFFFF < 0x40000000 and again != mid
    # a record of one counter (written before there were two): both go on from it
    m.storage[1].put("ids", wire.be32(0x90000005))
    n = m.boot(1)
    assert n.ids[0] >= 0x10000005 and n.ids[2] >= 0x30000005


# ---- replays in a mesh -----------------------------------------------------------

def _busy(m, origins, count, every_ms=2000):
    # ordinary traffic from a few origins: posts and messages
    for k in range(count):
        o = origins[k % len(origins)]
        m.send(o, BROADCAST if k % 2 else origins[(k + 1) % len(origins)], "busy %d" % k)
        m.run(every_ms)
        m.log = []
        m.events = [e for e in m.events if "busy" not in str(e[3].get("text", ""))]


def test_a_post_replayed_after_a_minute_an_hour_of_traffic_a_day_or_a_restart_is_refused():
    m = line(3)
    m.warm()
    m.send(1, BROADCAST, "the original")
    m.run(20000)
    data, f = _recorded(m, POST, 1)
    assert _texts(m, 3, "post") == ["the original"]
    for when in ("minute", "hour", "day", "restart"):
        if when == "minute":
            m.run(60000)
        elif when == "hour":
            _busy(m, [1, 2, 3], 240)   # more than the seen table holds
            for _ in range(5):
                m.run((HOUR_MS - 480000) // 5)
                m.log = []
        elif when == "day":
            for _ in range(25 * 6):   # (beacons every 10 s: the log in pieces)
                m.run(HOUR_MS // 6)
                m.log = []
        else:
            m.power_off(2)
            m.power_off(3)
            m.boot(2)
            m.boot(3)
            m.run(30000)
        m.log = []  # (a 1M MicroPython heap holds no day of frames)
        since = 0
        before = len(m.received(3, "post")), len(m.received(2, "post"))
        m.inject(3, data, snr=5)
        m.inject(2, data, snr=5)
        m.run(20000)
        assert (len(m.received(3, "post")), len(m.received(2, "post"))) == before, when
        assert _sent_by(m, 2, since, key=f.key()) == [] and _sent_by(m, 3, since, key=f.key()) == [], when
        if when != "minute":  # (within a minute the seen table has it still)
            assert m.nodes[3].drops.get("replay", 0) >= 1, when


def test_a_message_replayed_is_not_delivered_again_and_acked_a_few_times_at_most():
    m = line(3)
    m.warm()
    m.send(1, 3, "private words")
    m.run(30000)
    assert _texts(m, 3, "msg") == ["private words"]
    data, f = _recorded(m, MSG, 1, 3)
    retry = wire.relayed(data, f.hops, 3, 2, KEY)   # a retry handed to node 3 by name
    retry = wire.with_flags(retry, F_STORED, KEY)
    for when in ("minute", "hour", "restart"):
        if when == "minute":
            m.run(60000)
        elif when == "hour":
            _busy(m, [1, 2, 3], 240)
        else:
            m.power_off(3)
            m.boot(3)
            m.run(30000)
        m.log = []
        since = 0
        for _ in range(10):
            m.inject(3, retry)
            m.run(3000)
        assert _texts(m, 3, "msg").count("private words") == 1, when
        acks = [a for a in _sent_by(m, 3, since, ACK) if a.payload == wire.be32(f.msg_id)]
        assert len(acks) <= 3, (when, len(acks))   # not one for each replay


def test_a_replayed_fresh_beacon_does_not_make_neighbours_send_what_they_hold():
    m = line(3)
    m.warm()
    m.power_off(3)
    m.boot(3)
    m.run(15000)
    data, fresh = None, None
    for t, s, d in m.log:
        f, _ = wire.unpack(d, KEY)
        if s == 3 and f.ftype == BEACON and f.flags & F_FRESH:
            data, fresh = d, f
    assert fresh is not None
    m.power_off(3)                       # it goes away for good
    m.send(1, 3, "for the absent one")
    m.run(60000)
    held = [i for i, n in m.nodes.items() if any(k & 0xFFFFFFFF for k in n.held)]
    assert held
    since = len(m.log)
    m.inject(2, data)                    # its fresh beacon, replayed
    m.run(20000)
    assert _sent_by(m, 2, since, MSG) == []
    assert m.nodes[2].drops.get("replay", 0) >= 1


def test_a_message_far_below_its_origins_last_is_refused_and_a_late_one_within_it_arrives():
    m = line(2)
    m.warm()
    n = m.nodes[2]
    m.inject(2, _pack(POST, 0x0101, BROADCAST, 5000, b"new"))
    m.inject(2, _pack(POST, 0x0101, BROADCAST, 4000, b"a thousand below"))
    m.inject(2, _pack(POST, 0x0101, BROADCAST, 4990, b"late, within the window"))
    m.run(5000)
    assert _texts(m, 2, "post") == ["new", "late, within the window"]
    assert n.drops["replay"] == 1


def test_a_message_held_through_a_partition_still_arrives():
    # its origin sends much more meanwhile: its id stays in the window
    # (beacons and status frames count on the other counter)
    m = line(3, beacon_interval_ms=5000)
    m.warm()
    m.cut(2, 3)
    mid = m.send(1, 3, "held for a while")
    m.run(HOUR_MS // 4)
    for k in range(20):
        m.send(1, BROADCAST, "meanwhile %d" % k)
        m.run(10000)
    m.join(2, 3)
    m.run(120000)
    assert "held for a while" in _texts(m, 3, "msg")
    assert [d["id"] for d in m.delivered(1)] == [mid]


def test_the_two_counters_ids_do_not_fold_alike_in_the_seen_table():
    # (they did when both began at one value: a node's message was taken for
    # a duplicate of its own status frame, and not relayed)
    from pollen.tables import _fold
    for seed in (1, 2, 3):
        m = line(1, seed=seed)
        n = m.nodes[1]
        msgs = set(_fold((1 << 32) | n._new_id(0)) for _ in range(500))
        others = set(_fold((1 << 32) | n._new_id(1)) for _ in range(500))
        assert not msgs & others
