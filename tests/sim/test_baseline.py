"""The Meshtastic 2.7 baseline router (controller/sim/baseline.py).

Whole conversations run over tests/core/fakemesh.py (explicit links, fake clock,
half-duplex, collisions, carrier sense) with ManagedFlood in place of pollen's
Node; single routers are driven directly with frames built by the module's own
pack functions.
"""
import random

import pytest

from pollen.airtime import PRESETS, preset_time_on_air_us
from pollen.region import REGIONS
from pollen.storage import MemoryStorage
from pollen_controller.sim.baseline import (
    BROADCAST, CHANNEL_HASH, HEADER_BYTES, MAX_FRAME_BYTES, NODEINFO_INTERVAL_MS,
    ManagedFlood, congestion_scale, cw_size, decode_data, encode_ack, encode_nodeinfo,
    encode_telemetry, encode_text, pack_frame, parse_frame, public_key, response_hop_limit,
    slot_time_ms,
)
from core.fakemesh import max_hour_airtime_us, settings

from .router_mesh import RouterMesh, run_until_tx


class BaselineMesh(RouterMesh):
    # FakeMesh with ManagedFlood routers; records every transmission.
    ROUTER = ManagedFlood
    DEFAULTS = {"background": False}


def line(n, **kw):
    ids = list(range(1, n + 1))
    return BaselineMesh(ids, [(a, a + 1) for a in ids[:-1]], **kw)


def router(node_id=2, **kw):
    s = {"node_id": node_id, "background": False}
    s.update(kw)
    r = ManagedFlood(s, MemoryStorage(), random.Random(node_id * 31 + 7))
    r.start(0)
    return r


def post_frame(sender=1, pkt_id=77, hop_limit=3, hop_start=3, text=b"hi", relay=1):
    return pack_frame(BROADCAST, sender, pkt_id, hop_limit, hop_start, False,
                      encode_text(text), relay)


# ---- wire -------------------------------------------------------------------

def test_frame_layout_and_sizes_are_meshtastic_like():
    f = pack_frame(0x0A0B0C0D, 0x01020304, 0x11223344, 2, 3, True, encode_text(b"hello"), 0x04)
    # header: to, from, id little-endian; flags = hop_limit | want_ack << 3 | hop_start << 5
    assert f[:16] == bytes.fromhex("0d0c0b0a" "04030201" "44332211") + bytes(
        (2 | 0x08 | 3 << 5, CHANNEL_HASH, 0, 0x04))
    assert f[16:] == b"\x08\x01\x12\x05hello\x48\x00"
    assert len(f) == HEADER_BYTES + 6 + 5
    assert len(pack_frame(1, 2, 3, 3, 3, False, encode_ack(9))) == HEADER_BYTES + 13
    assert len(encode_text(b"x" * 128)) == 128 + 7  # two-byte length from 128 on
    p, why = parse_frame(f)
    assert why is None
    assert (p.dest, p.sender, p.pkt_id, p.hop_limit, p.hop_start, p.want_ack) == \
        (0x0A0B0C0D, 0x01020304, 0x11223344, 2, 3, True)
    assert (p.port, p.payload, p.hops()) == (1, b"hello", 1)
    assert decode_data(encode_ack(0xDEADBEEF)) == (5, b"\x18\x00", 0xDEADBEEF)


def test_largest_text_fills_255_bytes():
    r = router(1)
    r.send(BROADCAST, "x" * 232, 0)
    assert len(run_until_tx(r, 0)[1]) == MAX_FRAME_BYTES
    with pytest.raises(ValueError):
        r.send(BROADCAST, "x" * 233, 0)
    # a direct message is PKI-encrypted: 12 bytes more, so 220 bytes of text
    r.send(3, "x" * 220, 0)
    t, frame = run_until_tx(r, 1)
    assert len(frame) == MAX_FRAME_BYTES and frame[13] == 0
    with pytest.raises(ValueError):
        r.send(3, "x" * 221, 0)
    with pytest.raises(ValueError):
        r.send(1, "to myself", 0)


# ---- flooding ---------------------------------------------------------------

def test_post_reaches_three_hops_and_not_four():
    # hop_limit 3: the origin's neighbour hears it at hops 0, and three relays
    # carry it to hops 3; the node one further never hears it
    m = line(6)
    pid = m.send(1, BROADCAST, "hello")
    m.run(60000)
    for node, hops in ((2, 0), (3, 1), (4, 2), (5, 3)):
        got = m.received(node, "post")
        assert [(g["from"], g["id"], g["hops"], g["text"]) for g in got] == \
            [("00000001", pid, hops, "hello")]
    assert m.received(6) == []
    assert [m.nodes[i].counters["relayed"] for i in range(1, 7)] == [0, 1, 1, 1, 0, 0]
    # the origin heard node 2 relay it: an implicit ack, no retransmission
    assert m.nodes[1].counters["implicit_acks"] == 1
    assert len(m.sent_by(1)) == 1


def test_contention_delay_by_snr_and_role():
    slot = slot_time_ms(PRESETS["LongFast"])
    assert slot == 28  # 2.5 symbols of 8.192 ms + 7.6 ms, truncated
    assert [cw_size(s) for s in (-30, -20, -14, -8, -2, 4, 10, 15, 40)] == \
        [3, 3, 4, 5, 6, 7, 8, 8, 8]

    def delays(role, snr):
        out = []
        for seed in range(120):
            r = ManagedFlood({"node_id": 2, "role": role}, MemoryStorage(),
                             random.Random(seed))
            r.start(0)
            r.on_frame(post_frame(), -100, snr, 1000)
            out.append(run_until_tx(r, 1000)[0] - 1000)
        assert all(d % slot == 0 for d in out)
        return {d // slot for d in out}

    # clients wait 2*CWmax slots, then a random slot of 2^CW
    assert delays("client", -20) <= set(range(16, 16 + 8))
    far = delays("client", -20)
    near = delays("client", 10)
    assert near <= set(range(16, 16 + 256)) and max(near) > max(far) + 20
    # routers go first: a random slot of 2*CW, no offset
    assert delays("router", -20) <= set(range(0, 6))
    assert delays("router", 10) <= set(range(0, 16)) and max(delays("router", 10)) > 6


def test_queued_relay_cancelled_on_hearing_a_duplicate():
    r = router(2)
    r.on_frame(post_frame(relay=1), -100, 10, 0)
    assert r.status(0)["queue"] == 1
    r.poll(0)
    assert r.next_wake_ms >= 16 * 28  # a client waits at least 2*CWmax slots
    r.on_frame(post_frame(hop_limit=2, relay=3), -100, 8, 100)  # node 3 relayed it first
    assert r.counters["duplicates"] == 1 and r.counters["cancelled"] == 1
    assert r.status(100)["queue"] == 0
    assert run_until_tx(r, 100, 60000) is None


def test_router_role_never_cancels():
    r = router(2, role="router")
    r.on_frame(post_frame(relay=1), -100, 10, 0)
    r.on_frame(post_frame(hop_limit=2, relay=3), -100, 8, 0)
    assert r.counters["cancelled"] == 0
    t, frame = run_until_tx(r, 0)
    assert parse_frame(frame)[0].hop_limit == 2 and frame[15] == 2


def test_duplicate_of_a_retransmission_is_relayed_again():
    # the originator repeats a packet (hops taken still 0) because it did not
    # hear us: we relay it once more so it does
    r = router(2)
    r.on_frame(post_frame(), -100, 0, 0)
    assert run_until_tx(r, 0) is not None
    r.on_frame(post_frame(), -100, 0, 10000)
    assert r.counters["resent"] == 1
    assert run_until_tx(r, 10000) is not None
    assert r.counters["relayed"] == 2


# ---- implicit and end-to-end acknowledgement ---------------------------------

def test_originator_retransmits_unheard_post_three_times_in_all():
    m = line(2)
    m.power_off(2)
    m.send(1, BROADCAST, "anyone?")
    m.run(120000)
    sent = m.sent_by(1)
    assert len(sent) == 3
    c = m.nodes[1].counters
    assert c["retries"] == 2 and c["unconfirmed"] == 1
    # getRetransmissionMsec: 2 x airtime + (8 + 16 + 32) slots + 4.5 s processing
    air_ms = preset_time_on_air_us(len(sent[0][2]), PRESETS["ShortFast"]) // 1000
    gap = 2 * air_ms + 56 * slot_time_ms(PRESETS["ShortFast"]) + 4500
    for a, b in zip(sent, sent[1:]):
        assert b[0] - a[0] >= gap
        assert b[2] == a[2]  # the very same frame, full hop limit


def test_originator_does_not_retransmit_once_a_relay_is_heard():
    m = line(2)
    m.send(1, BROADCAST, "hello")
    m.run(120000)
    assert len(m.sent_by(1)) == 1
    assert m.nodes[1].counters["implicit_acks"] == 1
    assert m.nodes[1].counters["retries"] == 0


def test_unicast_acknowledged_end_to_end():
    m = line(3)
    pid = m.send(1, 3, "hi there")
    m.run(60000)
    got = m.received(3, "msg")
    assert [(g["from"], g["id"], g["hops"], g["text"]) for g in got] == \
        [("00000001", pid, 1, "hi there")]
    assert m.delivered(1) == [{"id": pid, "to": "00000003", "hops": 1}]
    assert m.nodes[3].counters["acks_sent"] == 1
    assert m.nodes[2].counters["relayed"] == 2  # the message one way, the ack back
    assert m.received(2) == []  # a relay is not told about messages for others
    assert m.nodes[1].status(m.now_ms)["held"] == 0
    # the destination does not relay what is addressed to it
    assert m.nodes[3].counters["relayed"] == 0


def test_unacknowledged_unicast_expires_after_three_transmissions():
    m = line(2)
    m.power_off(2)
    pid = m.send(1, 2, "are you there")
    assert m.nodes[1].status(0)["held"] == 1
    m.run(120000)
    assert len(m.sent_by(1)) == 3
    assert m.events_of(1, "expired") == [{"id": pid, "to": "00000002",
                                          "reason": "max_retransmit"}]
    assert m.delivered(1) == []
    assert m.nodes[1].status(m.now_ms)["held"] == 0


def test_ack_hop_limit_follows_the_request():
    assert response_hop_limit(3, 3, 3) == 2      # direct: 0 hops used, plus two
    assert response_hop_limit(7, 6, 7) == 3
    assert response_hop_limit(7, 1, 3) == 6      # used more than we allow: as many
    assert response_hop_limit(3, 2, 3) == 3
    assert response_hop_limit(0, 0, 3) == 0      # asked with 0 hops: answered with 0
    assert response_hop_limit(2, 3, 3) == 3      # nonsense (hop_limit > hop_start): configured


# ---- channel and duty cycle -----------------------------------------------------

def test_carrier_sense_defers_and_rerandomises():
    r = router(2, role="router")
    r.on_frame(post_frame(), -100, 10, 0)
    r.poll(0)
    r.channel_busy(5000, 0)  # someone else is on air until 5 s
    t, _ = run_until_tx(r, 0)
    assert t >= 5000
    assert r.counters["busy_backoffs"] >= 1


def test_duty_cycle_defers_transmissions_over_budget():
    # LongSlow frames of ~12.7 s: two fit EU868's 36 s per hour, the rest wait
    r = ManagedFlood({"node_id": 1, "preset": "LongSlow", "region": "EU868"},
                     MemoryStorage(), random.Random(5))
    r.start(0)
    for _ in range(3):
        r.send(BROADCAST, "x" * 200, 0)
    sent, t, end = [], 0, 3 * 3600000
    while t < end:
        for a in r.poll(t):
            if a[0] == "tx":
                sent.append((t, preset_time_on_air_us(len(a[1]), r.preset)))
        t = max(r.next_wake_ms, t + 1)
    budget_us = 3600000 * 1000 * REGIONS["EU868"][1] // 1000
    assert r.counters["deferred"] > 0
    assert max_hour_airtime_us(sent) <= budget_us
    assert sent[2][0] >= 3600000  # the third frame waited for the first to age out
    assert len(sent) >= 5


# ---- robustness ---------------------------------------------------------------

def test_malformed_frames_are_counted_never_raised():
    good = post_frame()
    bad = [
        b"", b"\x01" * 10, b"\x00" * 300,                              # short, oversize
        pack_frame(BROADCAST, 1, 5, 3, 3, False, encode_text(b"x"), channel=0x33),
        pack_frame(BROADCAST, 0, 5, 3, 3, False, encode_text(b"x")),   # no sender
        pack_frame(BROADCAST, 1, 0, 3, 3, False, encode_text(b"x")),   # id 0
        pack_frame(BROADCAST, 1, 5, 3, 1, False, encode_text(b"x")),   # hop_limit > hop_start
        good[:16] + b"\xff\xff\xff",                                   # not a protobuf
        good[:16] + b"\x12\x05hel",                                    # truncated field
        good[:16] + b"\x12\x02hi",                                     # no portnum
        good[:16] + b"\x08\x01\x0f",                                   # bad wire type
        good[:16] + b"\x08\x81",                                       # runaway varint
        good[:16] + bytes(range(200)),
    ]
    r = router(2)
    for i, f in enumerate(bad):
        r.on_frame(f, -100, 0, i)
        assert r.poll(i) == []
    st = r.status(100)
    assert st["counters"]["rx"] == len(bad)
    assert sum(st["dropped"].values()) == len(bad)
    assert set(st["dropped"]) == {"short", "oversize", "channel", "field", "data"}
    assert st["queue"] == 0
    for seed in range(200):  # random garbage of every length
        rnd = random.Random(seed)
        r.on_frame(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 260))),
                   -100, 0, 200)
    r.poll(200)
    assert r.counters["internal"] == 0
    r.on_frame(good, -100, 0, 300)  # and it still works
    assert [a[0] for a in r.poll(300)] == ["received"]


# ---- 2.7: frames of next-hop routing, PKI and background traffic --------------

def test_next_hop_and_pki_header_bytes():
    f = pack_frame(0x0A0B0C0D, 0x01020304, 0x11223344, 3, 3, True, encode_text(b"hi"), 0x04,
                   next_hop=0x0D, pki=True)
    # flags 0x6b: hop limit 3, want_ack, hop start 3; channel 0 and 12 bytes of
    # tag and nonce mark a PKI direct message; next_hop 0x0d, relay_node 0x04
    assert f == bytes.fromhex("0d0c0b0a" "04030201" "44332211" "6b" "00" "0d" "04"
                              "0801120268694800") + bytes(12)
    p, why = parse_frame(f)
    assert why is None and p.pki and (p.next_hop, p.relay, p.payload) == (0x0D, 0x04, b"hi")
    # there is no PKI broadcast
    assert parse_frame(pack_frame(BROADCAST, 1, 2, 3, 3, False, encode_text(b"x"), pki=True)) \
        == (None, "channel")


def test_frame_info_names_each_kind_and_its_message():
    info = ManagedFlood.frame_info
    assert info(pack_frame(3, 1, 55, 3, 3, True, encode_text(b"x"), pki=True)) == ("msg", (1, 55))
    assert info(pack_frame(3, 1, 55, 3, 3, True, encode_text(b"x"))) == ("msg", (1, 55))
    # an ack names the message it acknowledges: its destination is the origin
    assert info(pack_frame(1, 3, 900, 2, 2, True, encode_ack(55))) == ("ack", (1, 55))
    assert info(post_frame()) == ("text", None)
    assert info(pack_frame(BROADCAST, 1, 5, 3, 3, False, encode_nodeinfo(1))) == ("nodeinfo", None)
    assert info(pack_frame(BROADCAST, 1, 6, 3, 3, False, encode_telemetry(1, 4.0, 1.0, 0.1, 9))) \
        == ("telemetry", None)
    assert info(b"\x00" * 5) == ("invalid", None)


def test_nodeinfo_and_telemetry_are_sized_like_the_real_protobufs():
    ni = encode_nodeinfo(0x0A0B0C0D)
    # User: id 2+9, long name 2+15, short name 2+4, macaddr 2+6, hw_model 2,
    # public key 2+32, is_unmessagable 2 = 80; Data: portnum 2, payload 2+80, bitfield 2
    assert len(ni) == 86 and len(encode_nodeinfo(0x0A0B0C0D, router=True)) == 88
    assert ni.startswith(bytes.fromhex("0804" "1250" "0a09") + b"!0a0b0c0d" + b"\x12\x0f"
                         + b"Meshtastic 0c0d")
    assert public_key(0x0A0B0C0D) in ni and decode_data(ni)[0] == 4
    # Telemetry: time, device_metrics{battery 101, voltage, channel util, air util, uptime}
    t = encode_telemetry(1750000123, 4.1, 12.5, 0.75, 3600)
    assert t == bytes.fromhex("0843" "121b" "0dfbe14e68" "1214" "0865" "1533338340" "1d00004841"
                              "250000403f" "28901c" "4800")
    assert decode_data(t)[0] == 67


def test_background_traffic_on_and_off():
    def frames(**kw):
        r = router(2, preset="ShortFast", **kw)
        out, t = [], 0
        while t <= 4 * 3600000 + 300000:
            for a in r.poll(t):
                if a[0] == "tx":
                    out.append((t, ManagedFlood.frame_info(a[1])[0], len(a[1])))
            t = max(r.next_wake_ms, t + 1)
        return out

    on = frames(background=True)
    ni = [t for t, k, _ in on if k == "nodeinfo"]
    tele = [t for t, k, _ in on if k == "telemetry"]
    # NodeInfo every 3 h from a random phase; telemetry every hour (one node
    # online: not scaled), checked once a minute
    assert len(ni) in (1, 2) and len(tele) in (4, 5) and len(on) == len(ni) + len(tele)
    # (each then waits its contention delay, a few slots)
    assert all(abs(b - a - NODEINFO_INTERVAL_MS) < 2000 for a, b in zip(ni, ni[1:]))
    assert all(abs(b - a - 3600000) < 2000 for a, b in zip(tele, tele[1:]))
    assert {n for _, k, n in on if k == "nodeinfo"} == {HEADER_BYTES + 86}
    assert frames(background=False) == []
    # on unless told otherwise, as a deployed node is
    assert ManagedFlood({"node_id": 2}, MemoryStorage(), random.Random(1)).background


def test_telemetry_interval_grows_with_nodes_online():
    # Default::getConfiguredOrDefaultMsScaled: 1 + (n - 40) * 2^SF / (BW kHz * 100)
    assert congestion_scale(40, PRESETS["MediumFast"]) == 1.0
    assert congestion_scale(100, PRESETS["MediumFast"]) == pytest.approx(1 + 60 * 512 / 25000)
    assert congestion_scale(100, PRESETS["LongFast"]) == pytest.approx(1 + 60 * 2048 / 25000)


@pytest.mark.parametrize("key, value, words", [
    ("hop_limit", 8, "3-bit"), ("hop_limit", 0, "1..7"), ("hop_limit", "3", "integer"),
    ("background", "on", "true or false"), ("next_hop", 1, "true or false"),
    ("pki", None, "true or false"), ("role", "repeater", "'client' or 'router'"),
    ("region", "XX", "one of"), ("node_id", 0, "not 0")])
def test_bad_settings_are_refused_naming_the_key(key, value, words):
    with pytest.raises(ValueError) as e:
        ManagedFlood({"node_id": 2, key: value}, MemoryStorage(), random.Random(1))
    assert str(e.value).startswith(key + ":") and words in str(e.value)


# ---- 2.7: reliable acks and next-hop routing ---------------------------------------

def test_neighbours_ack_reliably_and_ack_the_ack():
    m = line(2)
    pid = m.send(1, 2, "hi")
    m.run(60000)
    got = [(i, ManagedFlood.frame_info(f)[0], parse_frame(f)[0]) for _, i, f in m.sent]
    # the message; its ack, itself wanting an ack (reliable acks of direct
    # texts); a 0-hop ack of that ack, so node 2 stops repeating it
    assert [(i, k) for i, k, _ in got] == [(1, "msg"), (2, "ack"), (1, "ack")]
    assert got[1][2].want_ack and got[1][2].request_id == pid
    assert got[2][2].hop_limit == 0 and not got[2][2].want_ack
    assert m.delivered(1) == [{"id": pid, "to": "00000002", "hops": 0}]
    assert all(n.status(m.now_ms)["pending"] == 0 for n in m.nodes.values())
    # each learnt the other as its next hop: the ack came straight from it
    assert m.nodes[1].next_hops == {2: 2} and m.nodes[2].next_hops == {1: 1}


def test_next_hop_learnt_from_the_ack_then_used():
    # 1 - 2 - 3 - 4, and 5 beside 1
    m = BaselineMesh([1, 2, 3, 4, 5], [(1, 2), (2, 3), (3, 4), (1, 5)])
    first = m.send(1, 4, "first")
    m.run(60000)
    assert m.delivered(1)[0]["id"] == first
    assert m.sent_by(1)[0][2][14] == 0  # nothing known yet: flooded
    # the ack came back 4 -> 3 -> 2 -> 1 and each learnt whom it came from
    # (a relayer that had relayed the message too)
    assert (m.nodes[1].next_hops[4], m.nodes[2].next_hops[4], m.nodes[3].next_hops[4]) == (2, 3, 4)
    m.sent.clear()
    second = m.send(1, 4, "second")
    m.run(60000)
    assert m.delivered(1)[-1]["id"] == second
    # (sender, next_hop, relay_node) of each copy: only the named node relays
    dm = [(i, f[14], f[15]) for _, i, f in m.sent
          if ManagedFlood.frame_info(f) == ("msg", (1, second))]
    assert dm == [(1, 2, 1), (2, 3, 2), (3, 4, 3)]
    assert m.nodes[5].counters["not_next_hop"] >= 1


def test_last_retry_falls_back_to_flooding():
    m = line(2)
    m.send(1, 2, "hello")
    m.run(60000)
    assert m.nodes[1].next_hops == {2: 2}
    m.power_off(2)
    m.sent.clear()
    pid = m.send(1, 2, "are you there")
    m.run(120000)
    # to the next hop twice, then with no preference (a flood); the next hop is forgotten
    assert [f[14] for _, i, f in m.sent if i == 1] == [2, 2, 0]
    assert m.nodes[1].counters["fallbacks"] == 1 and 2 not in m.nodes[1].next_hops
    assert m.events_of(1, "expired") == [{"id": pid, "to": "00000002",
                                          "reason": "max_retransmit"}]


def test_a_named_relay_that_hears_nothing_floods_its_one_retry():
    m = line(4)
    m.send(1, 4, "learn the way")
    m.run(60000)
    assert m.nodes[3].next_hops[4] == 4
    m.cut(3, 4)
    m.sent.clear()
    second = m.send(1, 4, "the last link is gone")
    m.run(60000)
    by3 = [f[14] for _, i, f in m.sent if i == 3 and ManagedFlood.frame_info(f)[1] == (1, second)]
    # 3 named 4, heard neither a relay nor an ack, and tried once more by flood
    assert by3 == [4, 0]
    c = m.nodes[3].counters
    assert (c["relay_retries"], c["fallbacks"]) == (1, 1) and 4 not in m.nodes[3].next_hops
    # node 2 is not asked to relay the flooded retry: it was the named hop before
    assert sum(1 for _, i, f in m.sent if i == 2) == 1


def test_a_copy_with_more_hops_left_replaces_the_queued_relay():
    r = router(2)
    r.on_frame(post_frame(hop_limit=1, relay=3), -100, 10, 0)  # via a relay: 1 hop left
    r.poll(0)
    r.on_frame(post_frame(hop_limit=3, relay=1), -100, 10, 5)  # from its origin: 3 left
    assert r.counters["upgraded"] == 1 and r.status(5)["queue"] == 1
    t, frame = run_until_tx(r, 5)
    assert parse_frame(frame)[0].hop_limit == 2


def test_cli_background_option(tmp_path):
    import json

    from click.testing import CliRunner

    from pollen_controller.cli.main import main

    sc = tmp_path / "pair.yaml"
    sc.write_text("name: pair\nduration_s: 120\nnodes: {count: 3, placement: line, "
                  "spacing_m: 300}\nradio: {preset: ShortFast}\n"
                  "traffic: {broadcast_interval_s: 60, unicast_interval_s: 60}\n")
    for flag, want in (("off", False), ("on", True)):
        r = CliRunner().invoke(main, ["sim", str(sc), "--router", "managed-flood",
                                      "--background", flag, "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.output.splitlines()[-1])["background"] is want
    r = CliRunner().invoke(main, ["sim", str(sc), "--background", "on"])
    assert r.exit_code != 0 and "--background" in r.output
