# The node state machine, driven as whole conversations over FakeMesh: N
# nodes, explicit links, a fake clock, LoRa airtime, collisions and loss.
# Runs under CPython (pytest) and MicroPython (tests/core/mp_run.py): plain
# test_* functions and asserts only. MicroPython iterates dicts in another
# order than CPython, so runs differ in detail; assertions hold for both.
from pollen import wire
from pollen.wire import Frame, BEACON, POST, MSG, ACK, BROADCAST, F_WANT_ACK, F_FRESH
from pollen.crypto import NetworkKey
from pollen.node import Node
from pollen.storage import MemoryStorage
from pollen.airtime import preset_time_on_air_us

from .fakemesh import FakeMesh, XorShift, KEY_HEX, settings, max_hour_airtime_us

KEY = NetworkKey(bytes.fromhex(KEY_HEX))
HOUR_MS = 3600000


class Mesh(FakeMesh):
    # FakeMesh that also logs every transmission: (t_ms, sender, frame).
    def __init__(self, ids, links, **kw):
        self.log = []
        FakeMesh.__init__(self, ids, links, **kw)

    def _transmit(self, i, frame):
        self.log.append((self.now_ms, i, frame))
        FakeMesh._transmit(self, i, frame)

    def copies(self, key):
        # every transmitted copy of one message: [(t_ms, sender, Frame)]
        out = []
        for t, i, data in self.log:
            f, _ = wire.unpack(data, KEY)
            if f is not None and f.key() == key:
                out.append((t, i, f))
        return out

    def held_by(self, key):
        return [i for i, n in self.nodes.items() if key in n.held]

    def events_of(self, kind):
        return [e for e in self.events if e[2] == kind]

    def warm(self, limit_ms=120000):
        # run until every node has heard all its linked neighbours' beacons
        # (first beacons collide in dense meshes); bounded
        start = self.now_ms
        while True:
            self.run(5000)
            if all(b in self.nodes[a].neigh.table for (a, b) in self.links):
                return self.now_ms - start
            assert self.now_ms - start < limit_ms, "neighbour tables incomplete"


def _held_records(storage):
    return [n for n in storage.names() if n.startswith("h")]


def line(n, **kw):
    ids = list(range(1, n + 1))
    return Mesh(ids, [(i, i + 1) for i in ids[:-1]], **kw)


def ladder(n, **kw):
    # two rows: 1..n on top, n+1..2n below, rungs between i and n+i
    links = []
    for i in range(1, n + 1):
        links.append((i, n + i))
        if i < n:
            links.append((i, i + 1))
            links.append((n + i, n + i + 1))
    return Mesh(list(range(1, 2 * n + 1)), links, **kw)


def cluster(n, **kw):
    ids = list(range(1, n + 1))
    return Mesh(ids, [(a, b) for a in ids for b in ids if a < b], **kw)


def _key(origin, msg_id):
    return (origin << 32) | msg_id


def _texts(m, i, kind=None):
    return [r["text"] for r in m.received(i, kind)]


def _frame(ftype, origin, dest, msg_id, payload=b"", hops=0, hop_limit=6, flags=0,
           next_hop=0, relayer=None):
    if relayer is None:
        relayer = origin & 0xFF
    return wire.pack(Frame(ftype, flags, hop_limit, hops, origin, dest, msg_id,
                           next_hop, relayer, payload), KEY)


def _acks(m):
    return [f for f in [wire.unpack(d, KEY)[0] for _, _, d in m.log] if f.ftype == ACK]


def _max_hour_airtime_us(m, node_id):
    # the most airtime node_id used in any sliding hour, from the transmission log
    return max_hour_airtime_us([(t, preset_time_on_air_us(len(d), m.nodes[node_id].preset))
                                for t, i, d in m.log if i == node_id])


# ---- flooding -------------------------------------------------------------------

def test_neighbours_found_by_beacons():
    m = line(4)
    m.run(35000)
    assert sorted(m.nodes[1].neigh.table) == [2]
    assert sorted(m.nodes[2].neigh.table) == [1, 3]
    assert m.nodes[2].neigh.table[3][0] == "00000003"   # name from the beacon
    # beacons are never relayed: node 1 has not heard of node 3
    assert 3 not in m.nodes[1].neigh.table and m.nodes[1].routes.hops(3) is None


def test_duplicate_is_delivered_once():
    m = Mesh([1], [])
    data = _frame(POST, 0x0A0B0C01, BROADCAST, 77, b"once")
    m.inject(1, data)
    m.inject(1, data)
    relayed = wire.relayed(data, 1, 0, 0x42, KEY)  # another copy of the same message
    m.inject(1, relayed)
    assert _texts(m, 1) == ["once"]
    assert m.nodes[1].counters["duplicates"] == 2
    # a unicast: delivered once and acknowledged once; a flooded copy by
    # another path is not acknowledged again, but a copy that says our ack
    # was lost is: one handed to us by name (its sender's hop retry) and the
    # origin's end-to-end retry (F_STORED)
    msg = _frame(MSG, 0x0A0B0C01, 1, 78, b"to one", flags=F_WANT_ACK)
    m.inject(1, msg)
    m.run(2000)
    m.inject(1, wire.relayed(msg, 1, 0, 0x42, KEY))
    m.run(2000)
    assert len(_acks(m)) == 1
    m.inject(1, wire.relayed(msg, 1, 1, 0x42, KEY))
    m.run(2000)
    # (an ack to a next hop we know only by its low byte goes twice)
    assert len({a.msg_id for a in _acks(m)}) == 2
    m.inject(1, wire.with_flags(msg, wire.F_STORED, KEY))
    m.run(2000)
    assert _texts(m, 1, "msg") == ["to one"]
    acks = _acks(m)
    assert len({a.msg_id for a in acks}) == 3
    for a in acks:
        assert a.payload == bytes((0, 0, 0, 78)) and a.dest == 0x0A0B0C01 and a.origin == 1


def test_broadcast_reaches_a_line():
    m = line(8)
    m.warm()
    mid = m.send(1, BROADCAST, "hello line")
    m.run(20000)
    for i in range(2, 9):
        assert _texts(m, i, "post") == ["hello line"], i
    assert _texts(m, 1) == []                       # the origin does not receive its own
    assert [r["hops"] for r in m.received(8)] == [6]
    # on a line every node in between must relay; the last is at the hop limit
    relays = set(i for _, i, f in m.copies(_key(1, mid)) if f.hops > 0)
    assert relays == set(range(2, 8)), relays


def test_broadcast_reaches_a_ladder():
    m = ladder(6)
    m.warm()
    mid = m.send(1, BROADCAST, "hello ladder")
    m.run(30000)
    for i in range(2, 13):
        assert _texts(m, i, "post") == ["hello ladder"], i
    assert len(m.copies(_key(1, mid))) < 2 * 12     # bounded: at most each node's tries


def test_post_missed_across_a_partition_is_repaired_when_it_heals():
    m = line(5)
    m.warm()
    m.cut(3, 4)
    mid = m.send(1, BROADCAST, "notice: well water is safe again")
    m.run(30000)
    assert [len(_texts(m, i, "post")) for i in range(2, 6)] == [1, 1, 0, 0]
    m.join(3, 4)
    m.run(40000)  # a few beacon rounds: 4 then 5 advertise posts without it
    for i in (4, 5):
        assert _texts(m, i, "post") == ["notice: well water is safe again"], i
    assert m.nodes[3].counters["repaired"] >= 1
    # repaired copies are counted, not delivered twice
    assert len(_texts(m, 2, "post")) == 1


def test_repair_respects_the_hop_limit():
    m = line(5, hop_limit=1)
    m.warm()
    m.send(1, BROADCAST, "near only")
    m.run(60000)
    assert [len(_texts(m, i, "post")) for i in range(2, 6)] == [1, 1, 0, 0]


def test_flooded_unicast_handed_over_once():
    # 1 does not know 4, so its unicast floods; 2 and 3 both hear 4 and hear
    # each other: one hands it over, the other stands down (else their copies
    # collide at 4).
    m = Mesh([1, 2, 3, 4], [(1, 2), (1, 3), (2, 3), (2, 4), (3, 4)])
    m.warm()
    m.run(20000)          # a second beacon round: two-hop views complete
    mid = m.send(1, 4, "one of you")
    m.run(30000)
    assert _texts(m, 4, "msg") == ["one of you"]
    assert len(m.delivered(1)) == 1
    handovers = [i for _, i, f in m.copies(_key(1, mid)) if f.hops == 1]
    assert len(handovers) == 1, handovers
    assert m.nodes[1].counters["retries"] == 0


def test_hop_limit_bounds_a_post():
    m = line(6, hop_limit=2)
    m.warm()
    mid = m.send(1, BROADCAST, "near only")
    m.run(20000)
    assert [len(_texts(m, i)) for i in range(1, 7)] == [0, 1, 1, 1, 0, 0]
    relays = set(i for _, i, f in m.copies(_key(1, mid)) if f.hops > 0)
    assert relays == set((2, 3)), relays            # exactly two relays, then it stops
    assert max(f.hops for _, _, f in m.copies(_key(1, mid))) == 2


def test_dense_cluster_cancels_relays():
    m = cluster(10)
    m.warm()
    m.run(20000)  # two beacon rounds: neighbours' neighbour lists are complete
    mid = m.send(1, BROADCAST, "everyone hears")
    m.run(20000)
    for i in range(2, 11):
        assert _texts(m, i) == ["everyone hears"], i
    cancelled = sum(n.counters["cancelled"] for n in m.nodes.values())
    assert cancelled > 0
    relays = set(i for _, i, f in m.copies(_key(1, mid)) if f.hops > 0)
    # all of them hear the origin and, by now, know it: next to nobody relays
    assert len(relays) <= 2, relays


# ---- unicast ---------------------------------------------------------------------

def test_unicast_acknowledged_end_to_end_over_five_hops():
    m = line(6)
    m.warm()
    mid = m.send(1, 6, "hi six")
    m.run(30000)
    got = m.received(6, "msg")
    assert [(r["text"], r["from"], r["hops"]) for r in got] == [("hi six", "00000001", 4)]
    d = m.delivered(1)
    assert len(d) == 1 and d[0]["id"] == mid and d[0]["to"] == "00000006"
    assert m.nodes[1].counters["delivered"] == 1
    assert m.nodes[1].counters["retries"] == 0     # no loss: the first attempt did it
    assert m.nodes[1].held == {}                   # done: nothing left to retry
    assert _held_records(m.storage[1]) == []
    for i in range(1, 7):                           # no other node received it
        if i != 6:
            assert _texts(m, i, "msg") == [], i


def test_retry_under_loss():
    # 10 % of frames lost at each receiver: hop-by-hop and end-to-end retries
    # get every message through, exactly once, and the origin hears of it
    m = line(4, loss=0.1, seed=3)
    m.warm()
    mids = []
    for k in range(6):
        mids.append(m.send(1, 4, "lossy %d" % k))
        m.run(60000)
    m.run(120000)
    assert sorted(_texts(m, 4, "msg")) == ["lossy %d" % k for k in range(6)]
    delivered = [d["id"] for d in m.delivered(1)]
    assert len(delivered) == len(set(delivered)) >= 5
    for mid in mids:   # what is not confirmed is still held, never dropped
        assert mid in delivered or _key(1, mid) in m.nodes[1].held
    assert sum(n.counters["retries"] for n in m.nodes.values()) > 0


def _deaf_to_first_ack(node):
    # the node misses the first ACK it would hear; returns the list it goes in
    lost = []

    def deaf(data, rssi_dbm, snr_db, now_ms):
        f, _ = wire.unpack(data, KEY)
        if f is not None and f.ftype == ACK and not lost:
            lost.append(f)
            return
        Node.on_frame(node, data, rssi_dbm, snr_db, now_ms)

    node.on_frame = deaf
    return lost


def _send_losing_the_first_ack(length, dest, text, run_ms):
    # node 1 of a line sends to dest and misses the first ACK it would hear;
    # the message must be delivered once and confirmed all the same
    m = line(length)
    m.warm()
    lost = _deaf_to_first_ack(m.nodes[1])
    mid = m.send(1, dest, text)
    m.run(run_ms)
    assert len(lost) == 1
    assert _texts(m, dest, "msg") == [text]              # delivered once
    assert [d["id"] for d in m.delivered(1)] == [mid]    # and confirmed
    return m, mid


def test_lost_ack_is_recovered_by_a_retry():
    # The ack is lost on its last hop. The relays have seen both the message
    # and its ack, yet they must carry the origin's retry (marked F_STORED)
    # again, so that the destination can acknowledge once more.
    m, mid = _send_losing_the_first_ack(4, 4, "ack me", 60000)
    n1 = m.nodes[1]
    assert n1.counters["retries"] >= 1
    copies = m.copies(_key(1, mid))
    assert any(i == 3 and f.flags & wire.F_STORED for _, i, f in copies)
    acks_by_4 = [1 for _, i, d in m.log if i == 4 and wire.unpack(d, KEY)[0].ftype == ACK]
    assert len(acks_by_4) >= 2


def test_a_lost_last_hop_ack_is_answered_by_the_hop_retry_not_an_end_to_end_retry():
    # The destination is a neighbour: the message goes to it by name. Its ack
    # is lost; the sender's hop retry says so, and the destination acks that
    # copy again, so the sender learns of the delivery a few slots later
    # instead of after its end-to-end ack timeout (a retry marked F_STORED)
    m, mid = _send_losing_the_first_ack(3, 2, "next door", 15000)
    copies = m.copies(_key(1, mid))
    assert len(copies) == 2 and all(i == 1 and f.next_hop == 2 for _, i, f in copies)
    assert not any(f.flags & wire.F_STORED for _, _, f in copies)


def test_routes_learned_then_used():
    # ladder of 5: 1..5 on top, 6..10 below; 1 to 10 is 5 hops (hop limit 6)
    m = ladder(5)
    m.warm()
    first = m.send(1, 10, "first")
    m.run(30000)
    assert len(m.delivered(1)) == 1
    # the ack came back from 10 along the message's path: routes to 10 learned
    assert m.nodes[1].routes.next_hop(10, m.now_ms) in (2, 6)
    assert m.nodes[1].routes.hops(10) == 5
    flood = m.copies(_key(1, first))
    second = m.send(1, 10, "second")
    m.run(30000)
    assert _texts(m, 10, "msg") == ["first", "second"]
    assert len(m.delivered(1)) == 2
    routed = m.copies(_key(1, second))
    assert routed[0][1] == 1 and routed[0][2].next_hop in (2, 6)
    # one copy per hop of a shortest path, each naming the next hop
    assert len([1 for _, _, f in routed if f.next_hop != 0]) >= 5
    assert len(routed) < len(flood), (len(routed), len(flood))


def test_routes_come_from_first_or_shorter_copies():
    # Node 5 hears neighbours 1, 2 and 3. A message from 9 (far away) comes
    # first through 2: the route to 9 is via 2. A later copy via 3 took a
    # longer way (or is our own forward passed on by the next hop): it must
    # not replace the route, nor make one once the route is forgotten. A later
    # copy that came a shorter way does replace it.
    m = Mesh([5], [])
    n = m.nodes[5]
    for i in (1, 2, 3):
        m.inject(5, _frame(BEACON, i, BROADCAST, 50 + i, b"\x01x"))
    post = _frame(POST, 9, BROADCAST, 60, b"far", hops=0, hop_limit=7)
    m.inject(5, wire.relayed(post, 3, 0, 2, KEY))
    assert (n.routes.next_hop(9, m.now_ms), n.routes.hops(9)) == (2, 4)
    m.inject(5, wire.relayed(post, 4, 0, 3, KEY))
    assert (n.routes.next_hop(9, m.now_ms), n.routes.hops(9)) == (2, 4)
    m.inject(5, wire.relayed(post, 1, 0, 1, KEY))
    assert (n.routes.next_hop(9, m.now_ms), n.routes.hops(9)) == (1, 2)
    n.routes.forget(9)                    # as after a failed forward
    m.inject(5, wire.relayed(post, 5, 0, 3, KEY))
    assert n.routes.next_hop(9, m.now_ms) is None
    assert _texts(m, 5) == ["far"]


def _path(copies):
    # [(sender, next hop)] of a routed message, in order
    return [(i, f.next_hop) for _, i, f in copies]


def test_route_failure_falls_back_to_flooding():
    m = ladder(5)
    m.warm()
    m.send(1, 10, "learn")
    m.run(30000)
    mid = m.send(1, 10, "routed")
    m.run(30000)
    path = _path(m.copies(_key(1, mid)))
    assert len(path) == 5
    a, b = path[2]                                  # cut the route in the middle
    m.cut(a, b)
    mid = m.send(1, 10, "detour")
    m.run(90000)
    assert _texts(m, 10, "msg") == ["learn", "routed", "detour"]
    assert len(m.delivered(1)) == 3
    copies = m.copies(_key(1, mid))
    assert copies[0][2].next_hop != 0                   # first tried on the old route
    assert any(f.next_hop == 0 for _, _, f in copies)   # then flooded around the cut


# ---- store and forward ---------------------------------------------------------

def test_held_across_a_partition_until_it_heals():
    m = line(5)
    m.warm()
    m.cut(3, 4)
    mid = m.send(1, 5, "across")
    m.run(120000)
    key = _key(1, mid)
    assert _texts(m, 5) == []
    assert 1 in m.held_by(key) and 3 in m.held_by(key)
    assert m.storage[3].get("h%016x" % key) is not None   # custody survives a restart
    m.join(3, 4)
    m.run(60000)
    assert _texts(m, 5, "msg") == ["across"]
    assert [d["id"] for d in m.delivered(1)] == [mid]
    assert m.held_by(key) == []


def test_destination_off_then_booted():
    m = line(4)
    m.warm()
    m.power_off(4)
    mid = m.send(1, 4, "wake up")
    m.run(120000)
    key = _key(1, mid)
    assert 3 in m.held_by(key) and 1 in m.held_by(key)
    m.boot(4)
    m.run(60000)
    assert _texts(m, 4, "msg") == ["wake up"]
    assert [d["id"] for d in m.delivered(1)] == [mid]
    assert m.held_by(key) == []


def test_restart_from_storage_delivers_own_message():
    m = line(4)
    m.warm()
    m.cut(1, 2)
    mid = m.send(1, 4, "survives reboot")
    m.run(100000)                                    # all attempts made, no ack
    assert m.nodes[1].held[_key(1, mid)].attempts >= m.nodes[1].s.max_attempts
    m.power_off(1)
    m.run(5000)
    m.join(1, 2)
    n = m.boot(1)                                    # same MemoryStorage
    assert _key(1, mid) in n.held and n.held[_key(1, mid)].own
    m.run(60000)
    assert _texts(m, 4, "msg") == ["survives reboot"]
    assert [d["id"] for d in m.delivered(1)] == [mid]
    assert _held_records(m.storage[1]) == []


def test_held_message_expires():
    m = line(3, lifetime_ms=60000)
    m.warm()
    m.power_off(3)
    mid = m.send(1, 3, "too late")
    m.run(30000)
    key = _key(1, mid)
    assert 1 in m.held_by(key) and 2 in m.held_by(key)
    m.run(40000)
    assert m.held_by(key) == []
    exp = m.events_of("expired")
    assert [(e[1], e[3]["id"], e[3]["to"]) for e in exp] == [(1, mid, "00000003")]
    assert m.nodes[2].counters["expired"] == 1 and m.nodes[1].counters["expired"] == 1
    assert _held_records(m.storage[1]) == [] and _held_records(m.storage[2]) == []
    m.boot(3)
    m.run(60000)
    assert _texts(m, 3) == [] and m.delivered(1) == []


# ---- duty cycle -----------------------------------------------------------------

def test_duty_cycle_defers_and_keeps_one_percent():
    # LongSlow: a 150-byte post is ~9.8 s on air; EU868 allows 36 s an hour
    m = line(2, preset="LongSlow", beacon_interval_ms=1800000, post_retries=0)
    m.run(5000)
    mids = [m.send(1, BROADCAST, "%02d " % k + "x" * 140) for k in range(7)]
    m.run(4 * HOUR_MS)
    assert m.nodes[1].counters["deferred"] > 0
    budget_us = m.nodes[1].duty.budget_us
    assert budget_us == 36000000
    for i in (1, 2):
        assert _max_hour_airtime_us(m, i) <= budget_us, i
    # every post went on air in the end, the last ones hours late
    first_tx = [m.copies(_key(1, mid))[0][0] for mid in mids]
    assert max(first_tx) > 2 * HOUR_MS
    assert len([t for t in first_tx if t < HOUR_MS]) <= 3
    assert len(_texts(m, 2)) > 0
    # budget frees on minute boundaries; deferred nodes must not all start
    # on the same one at once (they share a clock here, as in the simulator)
    starts = [t for t, _, _ in m.log]
    assert len(set(starts)) == len(starts)


def test_duty_cycle_frame_longer_than_budget_is_dropped():
    # a single frame longer than the whole hour's budget can never be sent (no
    # region is that strict for a 255-byte frame, so the budget is cut here)
    n = Node(settings(5, region="EU868", preset="LongSlow"), MemoryStorage(), XorShift(1))
    n.duty.budget_us = 1000000
    n.start(0)
    n.poll(0)
    n.send(BROADCAST, "x" * 100, 10)
    t = 10
    out = []
    for _ in range(50):
        t = max(t + 1, n.next_wake_ms)
        out += n.poll(t)
    assert n.drops.get("dwell", 0) >= 1
    assert [a for a in out if a[0] == "tx"] == []


# ---- input from the air never raises -------------------------------------------

def test_bad_frames_are_counted_not_raised():
    m = line(2)
    m.warm()
    n = m.nodes[1]
    good = _frame(POST, 0x0A0B0C01, BROADCAST, 9, b"fine")
    body = bytearray(good[:-8])
    body[0] = 0x2C                                    # version 2, type 12
    unknown_type = bytes(body) + KEY.tag(bytes(body))
    body = bytearray(good[:-8])
    body[1] = (2 << 3) | 5                            # hops 5 > hop limit 2
    too_many_hops = bytes(body) + KEY.tag(bytes(body))
    flipped = bytearray(good)
    flipped[20] ^= 4
    cases = (
        (b"", "short"),
        (good[:23], "short"),
        (good + bytes(240), "oversize"),
        (bytes((0x32,)) + good[1:], "version"),
        (bytes(flipped), "tag"),
        (wire.pack(Frame(POST, 0, 6, 0, 0x0A0B0C01, BROADCAST, 10, 0, 1, b"x"),
                   NetworkKey(bytes(32))), "tag"),   # another network
        (unknown_type, "type"),
        (too_many_hops, "field"),
        (_frame(POST, 1, BROADCAST, 11, b"echo"), "loop"),         # our own frame
        (_frame(ACK, 0x0A0B0C01, 1, 12, b"\x01\x02"), "field"),   # ack of 2 bytes
        (_frame(POST, 0x0A0B0C01, BROADCAST, 13, b"\xff\xfe bad utf-8"), "text"),
        (_frame(BEACON, 0x0A0B0C01, BROADCAST, 14, b""), "field"),  # beacon without a name
        (_frame(BEACON, 0x0A0B0C01, BROADCAST, 15, b"\x09abc"), "field"),  # name cut short
    )
    rx0 = n.counters["rx"]
    want = {}
    for data, reason in cases:
        m.inject(1, data)
        want[reason] = want.get(reason, 0) + 1
        assert n.drops.get(reason) == want[reason], (reason, n.drops)
    assert n.counters["rx"] == rx0 + len(cases)
    assert n.counters["internal"] == 0
    assert m.received(1) == []
    m.inject(1, good)                                 # and it still works
    assert _texts(m, 1) == ["fine"]


def test_fuzzed_frames_never_raise():
    m = line(3)
    m.warm()
    rng = XorShift(9)
    valid = [_frame(t, 0x0A0B0C01, d, 100 + t, b"p" * (t * 3), hops=1, next_hop=2)
             for t, d in ((POST, BROADCAST), (MSG, 2), (ACK, 3), (BEACON, BROADCAST))]
    for k in range(400):
        data = bytearray(valid[k % 4])
        for _ in range(1 + k % 3):
            data[rng.getrandbits(8) % len(data)] ^= 1 << rng.getrandbits(3)
        if k % 5 == 0:
            data = data[:rng.getrandbits(8) % len(data)]
        m.inject(2, bytes(data), rssi=-120, snr=-25)
    # authenticated but odd frames: every type, hop and address combination
    for t in (BEACON, POST, MSG, ACK):
        for hops, limit in ((0, 0), (0, 7), (7, 7), (3, 4)):
            for dest in (1, 2, 3, 0, BROADCAST, 0x0A0B0C01):
                for payload in (b"", b"\x00\x00\x00\x01", b"\xc3"):
                    m.inject(2, _frame(t, 0x0A0B0C02, dest, rng.getrandbits(32) | 1,
                                       payload, hops, limit, next_hop=2))
    m.run(60000)
    n = m.nodes[2]
    assert n.counters["internal"] == 0
    assert sum(n.drops.values()) >= 400


# ---- the node's own interface ------------------------------------------------

def test_send_rejects_misuse():
    m = line(2)
    n = m.nodes[1]
    for dest in (0, 1, 0x0A0B0C00):
        try:
            n.send(dest, "x", 0)
        except ValueError:
            pass
        else:
            raise AssertionError("dest %x accepted" % dest)
    try:
        n.send(2, "x" * 232, 0)
    except ValueError as e:
        assert "231" in str(e)
    else:
        raise AssertionError("232 bytes accepted")
    n.send(2, "x" * 231, 0)
    # US915: 400 ms dwell; a preset too slow for even a beacon is a config
    # error, and a text too long for the dwell time is refused up front
    try:
        Node(settings(9, region="US915", preset="LongSlow"), MemoryStorage(), XorShift(2))
    except ValueError as e:
        assert "'preset'" in str(e) and "dwell" in str(e)
    else:
        raise AssertionError("LongSlow accepted in US915")
    slow = Node(settings(9, region="US915", preset="MediumFast"), MemoryStorage(), XorShift(2))
    slow.send(BROADCAST, "hi", 0)
    try:
        slow.send(BROADCAST, "x" * 200, 0)
    except ValueError as e:
        assert "dwell" in str(e)
    else:
        raise AssertionError("dwell not enforced")
    assert n.counters["originated"] == 1


def test_poll_plans_its_next_wake():
    n = Node(settings(3), MemoryStorage(), XorShift(3))
    n.start(0)
    assert n.poll(0) == []
    assert n.next_wake_ms > 0 and n.next_wake_ms <= 2000   # first beacon
    t = n.next_wake_ms
    out = n.poll(t)
    assert [a[0] for a in out] == ["tx"]
    f, _ = wire.unpack(out[0][1], KEY)
    assert f.ftype == BEACON and b"00000003" in f.payload and f.hop_limit == 0
    assert n.next_wake_ms > t
    assert n.poll(t) == []                          # nothing more is due


def test_status():
    m = line(3)
    m.run(25000)
    m.send(2, BROADCAST, "status check")
    m.run(10000)
    s = m.nodes[2].status(m.now_ms)
    assert s["id"] == "00000002" and s["name"] == "00000002"
    assert s["uptime_s"] == 35
    assert sorted(nb["id"] for nb in s["neighbours"]) == ["00000001", "00000003"]
    for nb in s["neighbours"]:
        assert nb["name"] == nb["id"] and nb["rssi_dbm"] == -95 and nb["snr_db"] == 5
        assert 0 <= nb["last_heard_s"] <= 25   # beacons every 10 s, one may collide
    assert s["counters"]["originated"] == 1 and s["counters"]["tx"] >= 3
    assert s["counters"] is not m.nodes[2].counters   # a copy
    assert s["dropped"] == {}
    assert s["routes"] == 2 and s["held"] == 0 and s["queue"] >= 0
    assert s["airtime_ms"] > 0
    assert 99 <= s["duty_headroom_pct"] <= 100
    for k in ("id", "name", "uptime_s", "counters", "dropped", "neighbours", "routes",
              "held", "queue", "airtime_ms", "duty_headroom_pct"):
        assert k in s, k


def _posts_on_air(node, text, count):
    # `count` posts, each let go on air before the next (the queue holds
    # MAX_JOBS frames; a post waiting in it is a record in storage)
    ids = []
    t = 0
    for i in range(count):
        ids.append(node.send(BROADCAST, "%s%d" % (text, i), t))
        while any(not j.hops and j.due_ms is not None for j in node.jobs.values()):
            t += 100
            node.poll(t)
    return ids


def test_message_ids_never_repeat_across_a_restart():
    store = MemoryStorage()
    a = Node(settings(1), store, XorShift(5))
    a.start(0)
    first = _posts_on_air(a, "p", 300)  # crosses a block
    # same random source again: without the reserved block ids would repeat
    b = Node(settings(1), store, XorShift(5))
    b.start(0)
    again = _posts_on_air(b, "q", 300)
    assert len(set(first)) == 300 and not set(first) & set(again)
    assert 0 not in first + again


def test_a_carried_copy_is_offered_a_few_times_then_let_go():
    m = line(3)
    m.warm()
    m.power_off(3)
    mid = m.send(1, 3, "for a node that never comes back")
    m.run(60000)
    key = _key(1, mid)
    assert 2 in m.held_by(key)
    for _ in range(6):  # node 1 keeps going away and coming back
        m.power_off(1)
        m.run(40000)
        m.boot(1)
        m.run(20000)
    assert 1 <= m.nodes[2].counters["offered"] <= 4
    assert 2 not in m.held_by(key)
    assert all(n.counters["internal"] == 0 for n in m.nodes.values())
    # the origin keeps its own message, but stops trying after a bounded number
    assert m.nodes[1].held[key].attempts <= 3 + 8
    # each attempt: at most 2 transmissions by the origin and 2 by the relay
    assert len(m.copies(key)) <= (3 + 8) * 4 + 4


def test_a_mule_carries_a_message_past_a_village_where_its_destination_is_not():
    # villages A (1, 2), C (3, 4) and B (5, 6), out of range of each other;
    # mule 7 drives A -> C -> B. A message from 1 to 6 goes with the mule and
    # is not offered to C's nodes (their beacons do not name 6), so it is not
    # used up on the way; in B, 6 is the mule's neighbour and gets it.
    m = Mesh(list(range(1, 8)), [(1, 2), (3, 4), (5, 6), (1, 7), (2, 7)])
    m.warm()
    mid = m.send(1, 6, "over the hills")
    m.run(120000)
    key = _key(1, mid)
    assert 7 in m.held_by(key)
    for a in (1, 2):
        m.cut(a, 7)
    for c in (3, 4):
        m.join(c, 7)
    m.log = []  # (a long log does not fit MicroPython's test heap)
    m.run(600000)  # 10 minutes in C: beacons heard both ways
    assert 3 in m.nodes[7].neigh.table and 4 in m.nodes[7].neigh.table
    offered_in_c = [f for t, i, f in m.copies(key) if i == 7]
    assert offered_in_c == [] and 7 in m.held_by(key)
    assert _texts(m, 3) == [] and _texts(m, 4) == []
    for c in (3, 4):
        m.cut(c, 7)
    for b in (5, 6):
        m.join(b, 7)
    m.log = []
    m.run(600000)
    assert _texts(m, 6, "msg") == ["over the hills"]
    assert key not in m.nodes[7].held


def test_a_carried_copy_is_offered_once_when_a_neighbour_first_names_its_destination():
    # node 1 carries a message for 0x33 (custody, no route). Neighbour 2's
    # beacons name 0x33 among the nodes it hears: the copy goes to 2 once,
    # not again at each later beacon whose list merely changed around it.
    from pollen import held as heldrec
    n = Node(settings(1), MemoryStorage(), XorShift(3))
    n.start(0)
    msg = wire.pack(Frame(MSG, F_WANT_ACK, 5, 1, 0x44, 0x33, 77, 0, 0x44, b"carried"), KEY)
    h = heldrec.Held((0x44 << 32) | 77, 0x33, msg, HOUR_MS * 10, False)
    h.custody = True
    n.held[h.key] = h

    def beacon(msg_id, heard, t):
        p = bytes((2,)) + b"n2" + bytes((len(heard),)) + bytes(heard)
        n.on_frame(wire.pack(Frame(BEACON, 0, 0, 0, 2, BROADCAST, msg_id, 0, 2, p), KEY),
                   -90, 5, t)
        for step in range(20):  # let whatever it sends go out
            n.poll(t + step * 1000)

    # beacons 20 s apart: 2 stays a neighbour (it is "back" after 5 beacon
    # intervals of silence, 50 s here, and then everything is offered again)
    beacon(1, [0x33], 1000)
    assert n.counters["offered"] == 1
    beacon(2, [0x33, 0x55], 21000)   # the list changed, 0x33 was named before
    beacon(3, [0x55, 0x33], 41000)
    assert n.counters["offered"] == 1
    beacon(4, [0x55], 61000)
    beacon(5, [0x55, 0x33], 81000)   # named again after it was gone: once more
    assert n.counters["offered"] == 2


def test_no_busy_wait_while_a_message_waits_for_duty_cycle_budget():
    n = Node(settings(1), MemoryStorage(), XorShift(9))
    n.start(0)
    n.poll(0)
    n.duty.record(0, n.duty.budget_us)  # the hour's budget is spent
    n.send(2, "waits for the budget", 10)
    t = 10
    wakes = 0
    while t < 600000:  # ten minutes
        n.poll(t)
        assert n.next_wake_ms > t or n.next_wake_ms == t and wakes == 0
        t = max(t + 1, n.next_wake_ms)
        wakes += 1
    assert wakes < 200, wakes  # beacons and timers, not a spin every millisecond


def test_a_node_back_after_a_short_outage_gets_what_was_held_for_it():
    # off for less than its neighbours' expiry and than 2.5 beacon intervals:
    # only its first ("fresh") beacon tells them it restarted
    m = line(3)
    m.warm()
    m.power_off(3)
    m.send(1, 3, "while you rebooted")
    m.run(15000)
    assert _texts(m, 3) == []
    m.boot(3)
    m.run(6000)  # its first beacon goes within 2 s of boot
    assert _texts(m, 3, "msg") == ["while you rebooted"]



class _LosesFreshBeacons(Mesh):
    # a restarted node's first ("fresh") beacon is lost at every receiver
    def __init__(self, ids, links, lose_from, **kw):
        self.lose_from = lose_from
        Mesh.__init__(self, ids, links, **kw)

    def _transmit(self, i, frame):
        f, _ = wire.unpack(frame, KEY)
        if i == self.lose_from and f.ftype == BEACON and f.flags & F_FRESH:
            self.log.append((self.now_ms, i, frame))
            return
        Mesh._transmit(self, i, frame)


def test_a_destination_heard_of_while_the_last_attempt_is_on_its_way_is_not_forgotten():
    # Node 2 is heard of (here its restart beacon) while our last attempt is
    # still queued; that attempt goes unacknowledged (2 went off again): one
    # more follows, and reaches 2 once it is up. This signal used to be
    # dropped, and the message waited for a destination that was already
    # there until its lifetime ended
    m = _LosesFreshBeacons([1, 2], [(1, 2)], lose_from=2)
    m.warm()
    m.power_off(2)
    mid = m.send(1, 2, "while you rebooted")
    key = _key(1, mid)
    a = m.nodes[1]
    while not (a.held[key].attempts == a.s.max_attempts and key in a.jobs):
        m.run(50)
        assert m.now_ms < 600000, "the last attempt never came"
    m.inject(1, _frame(BEACON, 2, BROADCAST, 0x7777, payload=bytes(2), flags=F_FRESH))
    while key in a.jobs:
        m.run(50)
    m.boot(2)      # its own fresh beacon is lost: 1 has nothing else to go on
    m.run(300000)
    assert _texts(m, 2, "msg") == ["while you rebooted"]
    assert [d["id"] for d in m.delivered(1)] == [mid]


def test_a_carried_copy_goes_to_its_destination_heard_again_even_if_its_restart_beacon_was_lost():
    # Off for less than its neighbours' expiry: they learn it is back only
    # from what it sends. A relay keeping a copy for it hands it on when it
    # hears the node itself, whatever it sent
    m = _LosesFreshBeacons([1, 2, 3], [(1, 2), (2, 3)], lose_from=3)
    m.warm()
    m.power_off(3)
    mid = m.send(1, 3, "are you there")
    key = _key(1, mid)
    r = m.nodes[2]
    while not (key in r.held and r.held[key].custody and key not in r.jobs):
        m.run(50)
        assert m.now_ms < 600000, "the relay never kept a copy"
    m.run(20000)   # the origin's attempts go on meanwhile
    m.boot(3)
    m.run(30000)   # its next beacons are not "fresh"
    assert _texts(m, 3, "msg") == ["are you there"]


# ---- cost of a direct message, budgets, congestion (issue 11) -------------------

def test_a_routed_message_costs_its_path_and_its_ack_comes_back_the_same_way():
    # ladder of 5 (1 to 10 is 5 hops): once routes are known, one copy of the
    # message per hop and one copy of the ack per hop, nothing flooded
    m = ladder(5)
    m.warm()
    m.send(1, 10, "learn the way")
    m.run(30000)
    mid = m.send(1, 10, "along the route")
    m.run(30000)
    assert _texts(m, 10, "msg") == ["learn the way", "along the route"]
    copies = m.copies(_key(1, mid))
    assert len(copies) == 5 and all(f.next_hop != 0 for _, _, f in copies), _path(copies)
    acks = [f for f in _acks(m) if wire.u32(f.payload, 0) == mid]
    assert len(acks) == 5 and all(f.next_hop != 0 for f in acks)


def test_a_retry_goes_along_the_route_not_through_the_whole_mesh():
    # the ack is lost on its last hop; the origin's retry (STORED) is routed
    # like the first attempt: no node floods it
    m = ladder(5)
    m.warm()
    m.send(1, 10, "learn the way")
    m.run(30000)
    lost = _deaf_to_first_ack(m.nodes[1])
    mid = m.send(1, 10, "ack me twice")
    m.run(60000)
    assert lost and [d["id"] for d in m.delivered(1)][-1] == mid
    copies = m.copies(_key(1, mid))
    retries = [(i, f) for _, i, f in copies if f.flags & wire.F_STORED]
    assert retries and all(f.next_hop != 0 for _, f in retries), _path(copies)
    assert len(copies) <= 10   # two routed attempts over 5 hops


def test_a_relay_spends_at_most_its_budget_on_one_message():
    # replayed retries of a message (STORED copies naming node 2 as next hop)
    # make node 2 forward it again, but never more than tx_budget times
    m = line(3, tx_budget=4)
    m.warm()
    f = _frame(MSG, 1, 3, 777, b"again and again", flags=F_WANT_ACK | wire.F_STORED, next_hop=2)
    for _ in range(12):
        m.inject(2, f)
        m.run(3000)
    sent = [1 for _, i, g in m.copies(_key(1, 777)) if i == 2]
    assert 0 < len(sent) <= 4
    assert m.nodes[2].drops.get("over_budget", 0) > 0


def test_a_flood_stops_where_it_cannot_reach_its_destination():
    # node 5 knows 9 is 4 hops away; a flooded unicast for 9 with 2 hops left
    # is not relayed (counted), one with enough hops left is
    m = Mesh([5], [])
    n = m.nodes[5]
    m.inject(5, _frame(BEACON, 6, BROADCAST, 50, b"\x01x"))
    m.inject(5, wire.relayed(_frame(POST, 9, BROADCAST, 60, b"hello", hop_limit=7), 3, 0, 6, KEY))
    assert n.routes.hops(9) == 4
    far = wire.relayed(_frame(MSG, 1, 9, 61, b"far", hop_limit=5, flags=F_WANT_ACK), 3, 0, 6, KEY)
    m.inject(5, far)
    assert n.drops.get("out_of_scope") == 1 and _key(1, 61) not in n.jobs
    near = wire.relayed(_frame(MSG, 1, 9, 62, b"near", hop_limit=7, flags=F_WANT_ACK), 2, 0, 6, KEY)
    m.inject(5, near)
    assert _key(1, 62) in n.jobs


def test_traffic_classes_put_our_own_hop_retries_just_after_first_sends():
    # congestion.py: 0 never shed, 1 at level 3, 2 at level 2, 3 at level 1
    from pollen.jobs import Job, J_ROUTED, J_FLOOD, J_STORED
    n = Mesh([5], []).nodes[5]

    def job(ftype, origin, kind, hops, retry, flags=0):
        j = Job(1 << 40, kind, _frame(ftype, origin, 9, 1, b"x", hops=hops, flags=flags), 0, hops, 9)
        if retry:
            j.copies = 0
        return n._traffic_class(j)

    assert job(MSG, 5, J_ROUTED, 0, False) == 0          # our message, first try
    assert job(MSG, 1, J_ROUTED, 2, False) == 0          # a relay's first try
    assert job(ACK, 5, J_ROUTED, 0, False) == 0
    assert job(MSG, 5, J_ROUTED, 0, True) == 1           # our hop retry
    assert job(MSG, 5, J_FLOOD, 0, True) == 1            # ... its last try, flooded
    assert job(ACK, 5, J_ROUTED, 0, True) == 1           # our ack's hop retry
    assert job(MSG, 1, J_ROUTED, 2, True) == 2           # a relay's hop retry
    assert job(POST, 5, J_FLOOD, 0, True) == 2           # a post's coverage retry
    assert job(MSG, 5, J_ROUTED, 0, False, wire.F_STORED) == 2   # an end-to-end retry
    assert job(MSG, 1, J_STORED, 2, False) == 2          # a held copy offered
    assert job(wire.STATUS, 1, J_FLOOD, 2, False) == 3   # relayed telemetry


def test_gossip_is_shed_on_a_busy_channel_but_first_sends_are_not():
    m = Mesh([5], [], telemetry_interval_ms=60000)
    n = m.nodes[5]
    m.run(70000)
    # carrier sense: someone else's transmissions fill the next 45 s
    n.channel_busy(m.now_ms + 45000, m.now_ms)
    m.run(45000)
    assert n.cong.level(m.now_ms) == 3
    status = _frame(wire.STATUS, 7, BROADCAST, 70, bytes((1, 0)) + bytes(45), hop_limit=6)
    n.tele_credit_us = 10 ** 9   # the channel credit is not what stops it here
    m.inject(5, status)
    post = _frame(POST, 8, BROADCAST, 71, b"news", hop_limit=6)
    m.inject(5, post)
    m.run(20000)
    sent = [wire.unpack(d, KEY)[0] for _, i, d in m.log if i == 5]
    assert any(f.ftype == POST and f.origin == 8 for f in sent)        # relayed
    assert not any(f.ftype == wire.STATUS and f.origin == 7 for f in sent)   # shed
    assert n.drops.get("shed", 0) >= 1


def test_routes_fill_their_slots_evict_the_oldest_and_forget():
    # the route table: fixed arrays, one slot a destination (tables.Routes)
    from pollen.tables import Routes
    r = Routes(capacity=4, expiry_ms=3600000)
    for k, dest in enumerate((0x0A000001, 0x0B000100, 0x00010000, 0xFFFFFF00)):
        assert r.learn(dest, 0x100 + k, 2, k * 60000)
    assert len(r) == 4 and r.hops(0x00010000) == 2 and r.next_hop(0xFFFFFF00, 180000) == 3
    assert not r.learn(0, 5, 1, 0) and r.hops(0) is None and r.next_hop(0, 0) is None
    assert not r.learn(0x0A000001, 0x07, 3, 240000)          # a longer way: kept the shorter
    assert r.learn(0x0C000001, 0x09, 1, 300000) and len(r) == 4   # full: the oldest goes
    assert r.hops(0x0A000001) is None and r.hops(0x0C000001) == 1
    r.forget(0x0B000100)
    assert len(r) == 3 and r.hops(0x0B000100) is None
    assert r.learn(0x0B000100, 0x02, 2, 360000) and len(r) == 4    # into the free slot
    assert r.next_hop(0x0C000001, 300000 + 3600000) is None        # expired
