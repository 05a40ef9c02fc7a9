# Telemetry (telemetry.py): status frames flooded over FakeMesh, their fields
# as the app receives them, the adaptive interval and the airtime cap.
# Runs under CPython (pytest) and MicroPython (tests/core/mp_run.py).
from pollen import wire
from pollen.wire import Frame, STATUS, BROADCAST
from pollen.crypto import NetworkKey
from pollen.airtime import preset_time_on_air_us
from pollen.status_wire import unpack_status

from .fakemesh import FakeMesh, KEY_HEX

KEY = NetworkKey(bytes.fromhex(KEY_HEX))
MIN_MS = 60000


def _telemetry(m, node_id, origin=None):
    # the telemetry actions node_id's app got, decoded as a host does
    out = []
    for e in m.events:
        if e[1] == node_id and e[2] == "telemetry" and (origin is None or e[3]["id"] == "%08x" % origin):
            t = unpack_status(e[3]["data"])
            for k in ("id", "hops", "rssi_dbm", "snr_db"):
                t[k] = e[3][k]
            out.append(t)
    return out


class Mesh(FakeMesh):
    # FakeMesh that sums each node's airtime per frame type; compact=True
    # keeps only who heard whose status instead of every event (a long run
    # must fit MicroPython's heap)
    def __init__(self, ids, links, compact=False, **kw):
        self.air_ms = {}     # (sender, frame type) -> airtime ms
        self.compact = compact
        self.heard = set()   # (receiver, origin id) of status frames
        FakeMesh.__init__(self, ids, links, **kw)

    def _transmit(self, i, frame):
        air = preset_time_on_air_us(len(frame), self.nodes[i].preset) // 1000
        k = (i, frame[0] & 0x0F)
        self.air_ms[k] = self.air_ms.get(k, 0) + air
        FakeMesh._transmit(self, i, frame)

    def _poll(self, i):
        k = len(self.events)
        FakeMesh._poll(self, i)
        if self.compact:
            for e in self.events[k:]:
                if e[2] == "telemetry":
                    self.heard.add((e[1], e[3]["id"]))
            del self.events[k:]

    def status_air_ms(self, sender):
        # the node's own and relayed status frames on air
        return self.air_ms.get((sender, STATUS), 0)


def test_status_frames_reach_every_node_with_their_fields():
    m = Mesh([1, 2, 3, 4], [(1, 2, 8), (2, 3, 4), (3, 4, 6)], telemetry_interval_ms=MIN_MS,
             region="EU868-10")
    m.nodes[4].battery_mv = 3712
    m.nodes[4].heap_free_bytes = 40000
    m.run(10 * MIN_MS)  # a mesh just started relays status as its budget grows
    for origin, hops in ((2, 1), (3, 2), (4, 3)):
        got = _telemetry(m, 1, origin)
        assert got, origin
        t = got[-1]
        assert t["hops"] == hops and t["name"] == "%08x" % origin
        assert t["counters"]["tx"] > 0 and t["counters"]["rx"] > 0
        assert t["uptime_s"] > 0 and t["interval_s"] > 0
        assert t["queue"] >= 0 and t["held"] == 0 and t["files_kib"] == 0
    far = _telemetry(m, 1, 4)[-1]
    assert far["battery_mv"] == 3712 and far["heap_free_bytes"] == 40000
    assert _telemetry(m, 1, 3)[-1]["battery_mv"] is None  # not measured there
    assert _telemetry(m, 1, 3)[-1]["heap_free_bytes"] is None
    # node 4's neighbour table, as it measured it: node 3 at SNR 6 dB
    nb = far["neighbours"]
    assert [n["id"] for n in nb] == ["00000003"] and nb[0]["snr_db"] == 6
    # the link the last hop took to node 1: node 2's copy at SNR 8
    assert far["rssi_dbm"] == 8 - 100 and far["snr_db"] == 8
    # each node's own frames are not reported back to it
    assert not _telemetry(m, 2, 2)
    # airtime: a share of time, as the status event reports it too
    assert 0 < far["airtime_pct"] < 5 and far["duty_headroom_pct"] > 90
    st = m.nodes[1].status(m.now_ms)
    assert 0 < st["airtime_pct"] < 5


def test_a_status_payload_round_trips_with_extremes_clamped():
    m = FakeMesh([1, 2], [(1, 2)], telemetry_interval_ms=MIN_MS)
    n = m.nodes[1]
    n.counters["rx"] = 0xFFFFFFFF
    n.drops["tag"] = 5
    n.drops["short"] = 2
    n.neigh.heard(0x0A0B0C0D, -140, -23.25, 0)   # clamped RSSI, quarter-dB SNR
    n.neigh.heard(0x0A0B0C0E, -60, 12.5, 0)
    t = unpack_status(n._status_payload(1000))
    assert t["counters"]["rx"] == 0xFFFFFFFF
    assert t["counters"]["auth_failed"] == 5 and t["counters"]["dropped"] == 7
    by_id = {x["id"]: x for x in t["neighbours"]}
    assert by_id["0a0b0c0d"]["rssi_dbm"] == -128 and by_id["0a0b0c0d"]["snr_db"] == -23.25
    assert by_id["0a0b0c0e"]["rssi_dbm"] == -60 and by_id["0a0b0c0e"]["snr_db"] == 12.5


def test_at_most_eight_neighbours_and_the_frame_fits():
    m = FakeMesh([1, 2], [(1, 2)], telemetry_interval_ms=MIN_MS)
    n = m.nodes[1]
    for k in range(20):
        n.neigh.heard(0x100 + k, -80, 5, 0)
    p = n._status_payload(1000)
    assert len(unpack_status(p)["neighbours"]) == 8
    assert wire.HEADER_BYTES + len(p) + 8 <= wire.MAX_FRAME_BYTES


def test_malformed_status_is_dropped_and_counted_not_delivered():
    m = FakeMesh([1, 2], [(1, 2)], telemetry_interval_ms=MIN_MS)
    good = m.nodes[2]._status_payload(1000)
    bad = (good[:-1], b"", b"\x02" + good[1:], good + b"\x00", bytes((1, 17)) + good[2:])
    for p in bad:
        assert unpack_status(p) is None
    for k, p in enumerate(bad):
        f = Frame(STATUS, 0, 3, 0, 2, BROADCAST, 100 + k, 0, 2, p)
        m.inject(1, wire.pack(f, KEY))
    assert m.nodes[1].drops.get("field") == len(bad)
    assert not _telemetry(m, 1)
    assert m.internal_errors() == 0


def test_interval_grows_with_the_nodes_heard_and_airtime_stays_within_the_share():
    # 16 nodes that all hear each other, asked for a status every second
    # where there is no duty cycle:
    # the interval stretches with the nodes heard, and no node's status
    # frames (own and relayed) take more than 2 % of its time
    ids = list(range(1, 17))
    links = [(a, b, 5) for a in ids for b in ids if a < b]
    m = Mesh(ids, links, compact=True, telemetry_interval_ms=1000, beacon_interval_ms=60000,
             region="US915")  # no duty cycle: the share is of all the time
    hour_ms = 3600000
    m.run(hour_ms, max_steps=2000000)
    n = m.nodes[1]
    air_us = preset_time_on_air_us(wire.HEADER_BYTES + len(n._status_payload(m.now_ms)) + 8,
                                   n.preset)
    assert len(n.routes) == 15
    assert n.tele_interval_ms >= 16 * air_us // 20 > 1000
    # at most the share of the hour and a quarter of an hour's share saved up
    for i in ids:
        assert m.status_air_ms(i) <= hour_ms * 20 // 1000 * 5 // 4, i
    # and status still flows: every node heard from every other
    for i in ids:
        assert len([h for h in m.heard if h[0] == i]) == 15, i


def test_a_zero_share_sends_and_relays_no_status():
    m = Mesh([1, 2, 3], [(1, 2), (2, 3)], telemetry_interval_ms=MIN_MS, region="EU868-10")
    m.nodes[2] = m.boot(2, telemetry_interval_ms=MIN_MS, telemetry_share_per_mille=0)
    m.run(5 * MIN_MS)
    assert m.status_air_ms(2) == 0
    assert m.nodes[2].counters["telemetry_skipped"] > 0
    assert _telemetry(m, 2, 1) and _telemetry(m, 2, 3)  # it still hears them
    assert not _telemetry(m, 1, 3)                      # but carries nothing across


def test_telemetry_off_sends_no_status_frames():
    m = Mesh([1, 2], [(1, 2)])  # FakeMesh's default: telemetry_interval_ms 0
    m.run(5 * MIN_MS)
    assert m.status_air_ms(1) == 0 and m.status_air_ms(2) == 0
    assert m.air_ms[(1, wire.BEACON)] > 0


def test_the_hard_cap_holds_when_relaying_would_take_more():
    # a line of 10 where every status is relayed end to end, with a share so
    # small that relaying everything would exceed it: relays are skipped;
    # without a duty cycle and with EU868's 1 %
    ids = list(range(1, 11))
    for region, duty_per_mille, share in (("US915", 1000, 3), ("EU868", 10, 20)):
        # a route table of 4 undercounts the mesh, so the interval comes out
        # too short and only the hard budget holds the share
        m = Mesh(ids, [(i, i + 1, 5) for i in ids[:-1]], compact=True, telemetry_interval_ms=1000,
                 telemetry_share_per_mille=share, beacon_interval_ms=60000, region=region,
                 route_capacity=4)
        hours = 2
        m.run(hours * 3600000, max_steps=2000000)
        n = m.nodes[5]
        # the share is of the airtime the node may use: its duty-cycle budget
        # (EU868: 1 %); saved up: a quarter of an hour's share, or one status
        # frame of the longest kind (135 bytes)
        allowed_ms = hours * 3600000 * share * duty_per_mille // 1000000
        saved_ms = max(allowed_ms // hours // 4, preset_time_on_air_us(135, n.preset) // 1000)
        for i in ids:
            assert m.status_air_ms(i) <= allowed_ms + saved_ms, (region, i)
        assert max(m.status_air_ms(i) for i in ids) > allowed_ms // 2, region  # it is used
        assert sum(m.nodes[i].counters["telemetry_skipped"] for i in ids) > 0, region


def test_a_new_node_says_it_twice_and_each_frame_tells_when_the_next_is_due():
    m = Mesh([1, 2], [(1, 2, 5)], telemetry_interval_ms=MIN_MS, region="EU868-10")
    m.run(10 * MIN_MS)
    got = [(e[0], unpack_status(e[3]["data"])["interval_s"]) for e in m.events
           if e[1] == 1 and e[2] == "telemetry"]
    assert len(got) >= 3
    assert 3000 <= got[0][0] <= 20000 + 1000        # the first soon after start
    assert 20000 <= got[1][0] - got[0][0] <= 41000   # the second 20-40 s later
    for (t, due_s), (t_next, _) in zip(got, got[1:]):
        # what a frame announced is when the next came (to the second; the
        # frame goes on air a little after it is built)
        assert abs((t_next - t) / 1000 - due_s) <= 2, (t, due_s, t_next)
    assert got[2][1] >= MIN_MS // 1000 - MIN_MS // 10000   # then the interval
