import socket
import time

import pytest

from pollen.airtime import preset_time_on_air_us
from pollen_controller.emulation.medium import (
    MalformedDatagram, Medium, pack_hello, pack_receive, pack_transmit,
    parse_node_datagram, parse_receive,
)
from pollen_controller.topology import Link, Topology

# SF10 at 125 kHz: ~0.25-0.3 s for short frames, long enough that two datagrams sent
# back to back overlap on air even on a loaded machine, short enough for a quick suite.
SLOW = (10, 125000, 5, 8)
FRAME = b"0123456789"
AIRTIME_S = preset_time_on_air_us(len(FRAME), SLOW) / 1e6
A, B, C = 0x0A, 0x0B, 0x0C


# --- wire format --------------------------------------------------------------

@pytest.mark.parametrize("rssi_dbm, snr_db, frame, datagram", [
    (-80, 7.25, b"ab", b"R\xb0\x1dab"),
    (-80.4, -2.6, b"\x00", b"R\xb0\xf6\x00"),
    (-200, 40.0, b"x", b"R\x80\x7fx"),        # clamped
    (10, -40.0, b"x", b"R\x0a\x80x"),
])
def test_pack_receive_vectors(rssi_dbm, snr_db, frame, datagram):
    assert pack_receive(rssi_dbm, snr_db, frame) == datagram


def test_parse_receive_inverts_pack():
    assert parse_receive(b"R\xb0\x1dab") == (-80, 7.25, b"ab")
    with pytest.raises(MalformedDatagram):
        parse_receive(b"R\x00\x00")
    with pytest.raises(MalformedDatagram):
        parse_receive(b"T\x00\x00x")


def test_node_datagram_vectors():
    assert pack_hello(0x01020304) == b"H\x01\x02\x03\x04"
    assert parse_node_datagram(b"H\xff\xff\xff\xfe") == ("hello", 0xFFFFFFFE)
    assert pack_transmit(b"hi") == b"Thi"
    assert parse_node_datagram(b"T" + bytes(255)) == ("transmit", bytes(255))
    for bad in (b"", b"H\x01", b"H\x01\x02\x03\x04\x05", b"T", b"T" + bytes(256), b"Xabc"):
        with pytest.raises(MalformedDatagram):
            parse_node_datagram(bad)


# --- helpers --------------------------------------------------------------------

class Node:
    """A stand-in for one firmware process: a UDP socket speaking the medium protocol."""

    def __init__(self, medium, node_id):
        self.node_id = node_id
        self.medium_addr = ("127.0.0.1", medium.port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.busy_ms = []
        self.hello()

    def hello(self):
        self.sock.sendto(pack_hello(self.node_id), self.medium_addr)

    def send(self, frame):
        self.sock.sendto(pack_transmit(frame), self.medium_addr)

    def send_raw(self, datagram):
        self.sock.sendto(datagram, self.medium_addr)

    def recv(self, timeout_s):
        # The next received frame; channel-busy notices are collected on the way.
        deadline = time.monotonic() + timeout_s
        while True:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                d = self.sock.recv(2048)
            except TimeoutError:
                return None
            if d[:1] == b"B":
                self.busy_ms.append(int.from_bytes(d[1:3], "big"))
                continue
            return parse_receive(d)

    def close(self):
        self.sock.close()


@pytest.fixture
def run():
    started, nodes = [], []

    def _run(topology, node_ids=(A, B, C), **kwargs):
        medium = Medium(topology, preset=SLOW, seed=1, **kwargs).start()
        started.append(medium)
        new = [Node(medium, n) for n in node_ids]
        nodes.extend(new)
        return medium, new

    yield _run
    for node in nodes:
        node.close()
    for medium in started:
        medium.stop()


def wait_until(predicate, timeout_s=AIRTIME_S + 1.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def chain():
    # A - B - C: A and C cannot hear each other.
    return Topology.from_links([A, B, C], [(A, B, -97.3, -4.6), (B, C, -90, 2)])


# --- medium ---------------------------------------------------------------------

def test_frame_reaches_linked_node_only_after_its_time_on_air(run):
    medium, (a, b, c) = run(chain())
    t0 = time.monotonic()
    a.send(FRAME)
    got = b.recv(AIRTIME_S + 2.0)
    elapsed_s = time.monotonic() - t0
    assert got is not None and got[2] == FRAME
    assert AIRTIME_S <= elapsed_s < AIRTIME_S + 1.0
    assert c.recv(0.2) is None
    assert a.recv(0.0001) is None     # never to itself
    stats = medium.snapshot_stats()
    assert stats["delivered"] == 1
    assert stats["tx_frames"] == 1
    assert stats["tx_airtime_us"] == preset_time_on_air_us(len(FRAME), SLOW)
    assert stats["tx_by_node"] == {A: 1}


def test_rssi_and_snr_bytes_carry_the_link_values(run):
    medium, (a, b, c) = run(chain())
    a.send(FRAME)
    rssi_dbm, snr_db, _ = b.recv(AIRTIME_S + 2.0)
    assert rssi_dbm == -97
    assert snr_db == -4.5


def test_loss_one_drops_everything_and_counts_then_can_be_lowered(run):
    medium, (a, b, c) = run(chain(), loss=1.0)
    b.send(FRAME)   # heard by A and C
    assert wait_until(lambda: medium.stats["lost_loss"] == 2)
    assert a.recv(0.01) is None and c.recv(0.01) is None
    medium.loss = 0.0
    b.send(FRAME)
    assert a.recv(AIRTIME_S + 2.0) is not None
    assert medium.stats["delivered"] >= 1


def test_half_duplex_a_transmitting_node_hears_nothing(run):
    medium, (a, b, c) = run(Topology.from_links([A, B, C], [(A, B, -80, 5)]))
    a.send(FRAME)
    time.sleep(AIRTIME_S / 5)
    b.send(b"from b")
    assert wait_until(lambda: medium.stats["lost_half_duplex"] == 2)
    assert a.recv(0.01) is None and b.recv(0.01) is None
    assert medium.stats["delivered"] == 0


@pytest.mark.parametrize("a_rssi_dbm, c_rssi_dbm, survivor", [
    (-90, -90, None),
    (-80, -85, None),     # 5 dB: not enough for capture
    (-80, -86, b"from a"),
    (-100, -94, b"from c"),
])
def test_collision_at_a_receiver_capture_needs_6_db(run, a_rssi_dbm, c_rssi_dbm, survivor):
    # A and C cannot hear each other (hidden terminals); both reach B.
    topo = Topology.from_links([A, B, C], [(A, B, a_rssi_dbm, 0), (C, B, c_rssi_dbm, 0)])
    medium, (a, b, c) = run(topo)
    a.send(b"from a")
    c.send(b"from c")
    assert wait_until(lambda: medium.stats["lost_collision"] + medium.stats["delivered"] == 2)
    got = b.recv(0.05)
    assert (got and got[2]) == survivor
    assert b.recv(0.01) is None
    assert medium.stats["lost_collision"] == (2 if survivor is None else 1)


def test_frames_that_do_not_overlap_do_not_collide(run):
    topo = Topology.from_links([A, B, C], [(A, B, -90, 0), (C, B, -90, 0)])
    medium, (a, b, c) = run(topo)
    a.send(b"first")
    assert b.recv(AIRTIME_S + 2.0)[2] == b"first"
    c.send(b"second")
    assert b.recv(AIRTIME_S + 2.0)[2] == b"second"
    assert medium.stats["lost_collision"] == 0


def test_back_to_back_transmissions_are_queued_not_overlapped(run):
    medium, (a, b, c) = run(chain())
    t0 = time.monotonic()
    a.send(b"one")
    a.send(b"two")
    assert b.recv(AIRTIME_S + 2.0)[2] == b"one"
    assert b.recv(AIRTIME_S + 2.0)[2] == b"two"
    one_s = preset_time_on_air_us(3, SLOW) / 1e6
    assert time.monotonic() - t0 >= 2 * one_s
    assert medium.stats["tx_queued"] == 1
    assert medium.stats["lost_collision"] == 0


def test_malformed_and_unknown_datagrams_are_counted_and_the_medium_carries_on(run):
    medium, (a, b, c) = run(chain())
    for bad in (b"", b"X", b"T", b"T" + bytes(256), b"H\x00\x00\x0b"):
        a.send_raw(bad)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        stranger.sendto(pack_transmit(b"who am i"), a.medium_addr)   # never said hello
        stranger.sendto(pack_hello(0x99), a.medium_addr)             # not in the topology
    finally:
        stranger.close()
    a.send(FRAME)
    assert b.recv(AIRTIME_S + 2.0)[2] == FRAME
    stats = medium.snapshot_stats()
    assert stats["malformed"] == 5
    assert stats["unknown_sender"] == 1
    assert stats["unknown_node"] == 1


def test_restarted_node_gets_frames_at_its_new_address(run):
    medium, (a, b, c) = run(chain())
    b_again = Node(medium, B)   # same id, new port
    try:
        assert wait_until(lambda: medium.address_of(B) == b_again.sock.getsockname(), 1.0)
        a.send(FRAME)
        assert b_again.recv(AIRTIME_S + 2.0)[2] == FRAME
        assert b.recv(0.05) is None
    finally:
        b_again.close()


def test_links_can_be_cut_and_restored_while_running(run):
    medium, (a, b, c) = run(chain())
    saved = medium.topology.link(A, B)
    medium.set_link(A, B, None)
    a.send(b"cut")
    assert wait_until(lambda: medium.stats["tx_frames"] == 1)
    assert b.recv(AIRTIME_S + 0.5) is None
    medium.set_link(A, B, saved)
    a.send(b"restored")
    assert b.recv(AIRTIME_S + 2.0)[2] == b"restored"


def test_unaddressed_receiver_is_counted_and_observer_sees_transmissions(run):
    seen = []
    medium, (a, b) = run(chain(), node_ids=(A, B),
                         on_transmit=lambda node, frame, t_s: seen.append((node, frame, t_s)))
    t0 = time.monotonic()
    b.send(FRAME)   # heard by A and by C, which never said hello
    assert a.recv(AIRTIME_S + 2.0)[2] == FRAME
    assert medium.stats["unaddressed"] == 1
    assert len(seen) == 1 and seen[0][:2] == (B, FRAME)
    assert t0 <= seen[0][2] <= t0 + 1.0


def test_medium_as_context_manager_stops_its_thread():
    with Medium(Topology.from_links([A], [])) as medium:
        assert medium.port != 0
        thread = medium._thread
        assert thread.is_alive()
    assert not thread.is_alive()


def test_link_table_accepts_link_objects():
    medium = Medium(Topology.from_links([A, B], []))
    medium.set_link(A, B, Link(-70, 9))
    assert medium.topology.link(B, A) == Link(-70, 9)
    with pytest.raises(ValueError):
        medium.loss = 1.5


def test_carrier_sense_notice_reaches_hearers_when_transmission_starts(run):
    medium, (a, b, c) = run(chain())
    t0 = time.monotonic()
    a.send(FRAME)
    got = b.recv(AIRTIME_S + 2.0)
    assert got is not None
    assert len(b.busy_ms) == 1 and abs(b.busy_ms[0] - AIRTIME_S * 1000) <= 2
    assert c.recv(0.3) is None and c.busy_ms == []  # c cannot hear a


def test_a_node_the_topology_does_not_know_joins_where_on_join_puts_it(run):
    # pollen mesh up: a virtual board with its own id joins next to node A
    medium, (a, b, c) = run(chain())
    medium.on_join = lambda node_id: {A: Link(-90.0, 6.0)} if node_id == 0x77 else None
    joiner = Node(medium, 0x77)
    stranger = Node(medium, 0x66)   # on_join gives it no place: refused as before
    try:
        assert wait_until(lambda: medium.address_of(0x77) == joiner.sock.getsockname(), 1.0)
        a.send(FRAME)
        assert joiner.recv(AIRTIME_S + 2.0) == (-90, 6.0, FRAME)
        joiner.send(FRAME)             # and A hears it, B does not (not linked)
        assert a.recv(AIRTIME_S + 2.0)[2] == FRAME
        assert b.recv(0.1)[0] == -97       # A's frame; the joiner's did not reach B
        assert b.recv(0.1) is None and stranger.recv(0.05) is None
        stats = medium.snapshot_stats()
        assert (stats["joined"], stats["unknown_node"]) == (1, 1)
    finally:
        joiner.close()
        stranger.close()
