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


def test_send_answers_accepted_once_stored_even_if_its_first_attempt_fails():
    # the heap runs out while the first attempt is built: the message is
    # stored, so send says it is accepted (it used to raise "out of
    # memory" for a message that then went out), and its retry sends it
    m = line(2)
    m.run(30000)
    n = m.nodes[1]

    def no_heap(h, now_ms):
        raise MemoryError("test")
    n._attempt = no_heap
    mid = m.send(1, 2, "stored before the trouble")
    del n._attempt
    assert _key(1, mid) in n.held and n.counters["internal"] == 1
    n.counters["internal"] = 0   # (FakeMesh.run fails on any other)
    m.run(60000)
    assert [r["id"] for r in m.received(2, "msg")] == [mid]


def test_a_timer_that_runs_out_of_heap_does_not_keep_queued_frames_from_going():
    # a full heap made a timer fail at every poll (a retry's frame read
    # back, a beacon built), and poll gave up before sending: what was
    # queued never went, though sending is what frees the heap
    m = line(2)
    m.run(30000)
    n = m.nodes[1]

    def no_heap(now_ms):
        raise MemoryError
    n._timers = no_heap
    mid = m.send(1, 2, "queued before the heap ran out")
    m._run(20000, 5000)   # (few steps: a failing timer is tried again a slot later, not at once)
    assert [r["id"] for r in m.received(2, "msg")] == [mid]
    assert n.counters["internal"] > 0 and n.last_internal == "MemoryError in poll"


def test_a_frame_whose_error_cannot_even_be_counted_for_want_of_heap_does_not_escape():
    # counting a drop reason seen for the first time grows a dict, and an
    # error's text is a new string: on a full heap either raised
    # MemoryError out of on_frame, into the app's radio task (42 times in
    # 100,000 hostile frames at 128K)
    m = line(2)
    m.run(30000)
    n = m.nodes[2]

    def no_heap(*args):
        raise MemoryError
    n._drop = no_heap
    n._internal = no_heap
    n.on_frame(b"\x01garbage", -80, 5, m.now_ms)          # a drop
    n._handle = lambda *args: 1 / 0                          # an error
    m.send(1, 2, "hello")
    m._run(5000, 50000)
    assert n.counters["internal"] >= 2 and n.last_internal == "MemoryError in on_frame"


def test_a_drop_whose_reason_cannot_be_counted_for_want_of_heap_does_not_raise():
    # the app's tasks count dropped["memory"] right after a MemoryError; the
    # first such count grows the table, which on a full heap raised again
    # inside their handler
    class Full:  # the node's drop table, with no heap to grow
        def __init__(self, counts):
            self.counts = counts

        def get(self, k, default):
            return self.counts.get(k, default)

        def __setitem__(self, k, v):
            if k not in self.counts:
                raise MemoryError
            self.counts[k] = v
    m = line(2)
    m.run(30000)
    n = m.nodes[1]
    n.drops = Full({"field": 1})
    n._drop("field")
    n._drop("memory")
    assert n.drops.counts == {"field": 2} and n.counters["internal"] == 1


def test_frames_from_reserved_ids_are_dropped_and_cannot_touch_the_node_s_jobs():
    # an ACK "for" origin 00000000 whose payload names a small id used to
    # delete the node's beacon, want, catalog or status job; a POST from
    # origin 00000000 replaced one. Now such frames are dropped, counted
    from pollen import wire
    from pollen.wire import Frame, ACK, POST, BROADCAST
    from pollen.crypto import NetworkKey
    from .fakemesh import KEY_HEX
    key = NetworkKey(bytes.fromhex(KEY_HEX))
    m = line(2)
    m.run(30000)
    n = m.nodes[1]
    jobs = dict(n.jobs)
    bad = []
    for k in range(5):
        bad.append(Frame(ACK, 0, 3, 0, 2, 0, 100 + k, 0, 2, wire.be32(k)))
        bad.append(Frame(POST, 0, 3, 0, 0, BROADCAST, k, 0, 2, b"x"))
        bad.append(Frame(POST, 0, 3, 0, BROADCAST, BROADCAST, k, 0, 2, b"x"))
        bad.append(Frame(POST, 0, 3, 0, 0x0A0B0C00, BROADCAST, k, 0, 2, b"x"))
    for f in bad:
        m.inject(1, wire.pack(f, key))
    assert n.drops.get("reserved") == len(bad)
    assert n.jobs == jobs and m.received(1, "post") == []


def test_an_exception_in_a_timer_is_counted_and_poll_goes_on():
    # a bug (or no heap) in one of the core's timers no longer escapes
    # poll, where it would end the node app's main loop for good
    m = line(2)
    m.run(10000)
    n = m.nodes[1]

    def broken(now_ms):
        raise KeyError("boom")
    n._held_timers = broken
    out = n.poll(m.now_ms)
    assert isinstance(out, list) and n.counters["internal"] == 1
    assert "KeyError" in n.last_internal and n.next_wake_ms > m.now_ms
    del n._held_timers
    n.counters["internal"] = 0
    before = n.counters["tx"]
    m.run(1200000)
    assert n.counters["tx"] > before   # beacons still go


def test_a_message_or_post_delivered_before_a_restart_is_not_delivered_again():
    # the receiver restarts (forgetting what it has seen) and the same
    # message comes again (its ack was lost, so the sender retries) and the
    # same post (a neighbour repairs it): acked again, not handed to the app
    from pollen import wire
    from pollen.wire import Frame, MSG, ACK, POST, BROADCAST, F_WANT_ACK, F_STORED
    from pollen.crypto import NetworkKey
    from .fakemesh import KEY_HEX
    key = NetworkKey(bytes.fromhex(KEY_HEX))
    m = line(2)
    m.run(30000)
    sent = []
    transmit = m._transmit
    def logged(i, frame):
        f, _ = wire.unpack(frame, key)
        sent.append((i, f.ftype, wire.u32(f.payload, 0) if f.ftype == ACK else None))
        transmit(i, frame)
    m._transmit = logged
    msg = wire.pack(Frame(MSG, F_WANT_ACK, 3, 0, 1, 2, 77, 0, 1, b"once"), key)
    again = wire.pack(Frame(MSG, F_WANT_ACK | F_STORED, 3, 0, 1, 2, 77, 0, 1, b"once"), key)
    post = wire.pack(Frame(POST, 0, 3, 0, 1, BROADCAST, 78, 0, 1, b"once too"), key)
    m.inject(2, msg)
    m.inject(2, post)
    m.run(5000)
    m.power_off(2)
    n = m.boot(2)
    acks = len([s for s in sent if s == (2, ACK, 77)])
    m.inject(2, again)
    m.inject(2, post)
    m.run(5000)
    assert [r["id"] for r in m.received(2)] == [77, 78]
    assert n.counters["duplicates"] == 2
    assert len([s for s in sent if s == (2, ACK, 77)]) == acks + 1   # acked again


def test_a_message_below_its_origins_window_is_not_delivered_again_after_a_restart():
    # a busy origin sends many messages between a message and a copy of it
    # that comes after a restart (a retry, or a replay): the copy is older
    # than the window kept for that origin across restarts (tables.Replay) and
    # is refused, not delivered twice (a ring of 32 keys once let 167
    # duplicates through in 1000 power cuts)
    from pollen import wire
    from pollen.wire import Frame, MSG, POST, BROADCAST, F_WANT_ACK, F_STORED
    from pollen.crypto import NetworkKey
    from .fakemesh import KEY_HEX
    key = NetworkKey(bytes.fromhex(KEY_HEX))
    m = line(2)
    m.run(30000)
    m.inject(2, wire.pack(Frame(MSG, F_WANT_ACK, 3, 0, 1, 2, 77, 0, 1, b"first"), key))
    for k in range(100):
        m.inject(2, wire.pack(Frame(POST, 0, 3, 0, 1, BROADCAST, 1000 + k, 0, 1, b"busy"), key))
        m.run(300)
    m.power_off(2)
    n = m.boot(2)
    m.inject(2, wire.pack(Frame(MSG, F_WANT_ACK | F_STORED, 3, 0, 1, 2, 77, 0, 1, b"first"), key))
    m.run(5000)
    assert [r["id"] for r in m.received(2)].count(77) == 1
    assert n.drops["replay"] == 1


def test_a_post_accepted_just_before_a_power_cut_goes_out_after_the_restart_once():
    # send() returns once a post is in storage; the power goes before it is
    # on air. The restarted node sends it, and its record goes once it has
    # (a second restart does not send it again)
    from pollen import wire
    from pollen.wire import POST, BROADCAST
    from .fakemesh import KEY_HEX
    from pollen.crypto import NetworkKey
    key = NetworkKey(bytes.fromhex(KEY_HEX))
    m = line(3)
    m.run(60000)   # neighbours known
    m.log = []
    mid = m.send(1, BROADCAST, "the well by the school is dry")
    m.power_off(1)

    def posts_sent_by_1():
        return [f for f in (wire.unpack(d, key)[0] for _, i, d in m.log if i == 1)
                if f is not None and f.ftype == POST]
    assert posts_sent_by_1() == []   # cut before it went on air
    assert len(_held_records(m.storage[1])) == 1
    m.run(5000)
    _power_cycle(m, 1)
    m.run(60000)
    for i in (2, 3):
        assert [r["id"] for r in m.received(i, "post")] == [mid], i
    assert _held_records(m.storage[1]) == []
    sent = len(posts_sent_by_1())
    _power_cycle(m, 1)
    m.run(60000)
    assert len(posts_sent_by_1()) == sent   # not sent again
    for i in (2, 3):
        assert [r["id"] for r in m.received(i, "post")] == [mid], i


def test_a_message_whose_handing_to_the_app_failed_is_handed_on_its_retry_not_lost():
    # the first copy is seen but handing it to the app fails (a full heap on
    # a board); the sender's retry must get it to the app, and only then is
    # it acked (an ack for a message the app never had loses it: the sender
    # lets its copy go)
    from pollen import wire
    from pollen.wire import Frame, MSG, ACK, F_WANT_ACK, F_STORED
    from pollen.crypto import NetworkKey
    from .fakemesh import KEY_HEX
    key = NetworkKey(bytes.fromhex(KEY_HEX))
    m = line(2)
    m.run(30000)
    n = m.nodes[2]
    acks = []
    transmit = m._transmit
    def logged(i, frame):
        f, _ = wire.unpack(frame, key)
        if i == 2 and f.ftype == ACK:
            acks.append(wire.u32(f.payload, 0))
        transmit(i, frame)
    m._transmit = logged
    deliver = n._deliver
    def full_heap(*args):
        raise MemoryError
    n._deliver = full_heap
    m.inject(2, wire.pack(Frame(MSG, F_WANT_ACK, 3, 0, 1, 2, 91, 0, 1, b"keep me"), key))
    m._run(5000, 500000)  # the failure is counted as internal, on purpose
    assert n.counters["internal"] == 1 and acks == [] and m.received(2) == []
    n._deliver = deliver
    m.inject(2, wire.pack(Frame(MSG, F_WANT_ACK | F_STORED, 3, 0, 1, 2, 91, 0, 1, b"keep me"), key))
    m._run(5000, 500000)  # the failure is counted as internal, on purpose
    assert [r["text"] for r in m.received(2)] == ["keep me"] and acks == [91]
    m.inject(2, wire.pack(Frame(MSG, F_WANT_ACK | F_STORED, 3, 0, 1, 2, 91, 0, 1, b"keep me"), key))
    m._run(5000, 500000)  # the failure is counted as internal, on purpose
    assert len(m.received(2)) == 1 and acks == [91, 91]   # a retry after that: acked, not handed again
    assert n.counters["internal"] == 1


def test_a_message_held_across_its_origins_restart_is_delivered_after_newer_ones():
    # its origin restarts and sends a few posts (ids of a new block) before
    # the message gets through: the message's id must still be inside the
    # destination's replay window (tables.Replay), or it is dropped as a
    # replay for good. Ids are reserved 32 at a time for messages, so a
    # restart jumps at most that far (it was 256: this message was lost)
    from .test_node import Mesh
    a, b, c = 0x0A01, 0x0B01, 0x0C01
    m = Mesh([a, b, c], [(a, b), (b, c)], beacon_interval_ms=10000)
    m.run(40000)
    m.cut(b, c)
    mid = m.send(a, c, "held across a restart")
    m.run(20000)
    assert _key(a, mid) in m.nodes[a].held
    m.power_off(a)
    m.boot(a)
    for i in range(3):
        m.send(a, 0xFFFFFFFF, "post after restart %d" % i)
    m.run(20000)
    m.join(b, c)
    m.run(600000)
    assert [d["id"] for d in m.delivered(a)] == [mid], m.nodes[c].drops
    assert "replay" not in m.nodes[c].drops
