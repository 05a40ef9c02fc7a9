"""The MeshCore baseline router (controller/sim/meshcore.py).

Whole conversations run over tests/core/fakemesh.py (explicit links, fake clock,
half-duplex, collisions, carrier sense) with MeshCore routers in place of
pollen's Node; single routers are driven directly with frames built by the
module's own pack functions.
"""
import random

import pytest

from pollen.airtime import PRESETS, preset_time_on_air_us
from pollen.storage import MemoryStorage
from pollen_controller.sim import meshcore
from pollen_controller.sim.meshcore import (
    ADV_TYPE_REPEATER, BROADCAST, FLOOD_ADVERT_INTERVAL_MS, PUBLIC_HASH, ROUTE_DIRECT,
    ROUTE_FLOOD, T_ACK, T_ADVERT, T_PATH, T_TXT, MeshCore, ack_crc, advert_payload,
    pack_packet, packet_hash, parse_packet, public_key, seal, text_plain,
)
from core.fakemesh import settings

from .router_mesh import RouterMesh, run_until_tx


class MeshCoreMesh(RouterMesh):
    # FakeMesh with MeshCore routers; records every transmission.
    ROUTER = MeshCore
    DEFAULTS = {}


def line(n, **kw):
    ids = list(range(1, n + 1))
    return MeshCoreMesh(ids, [(a, a + 1) for a in ids[:-1]], **kw)


def router(node_id=2, **kw):
    s = {"node_id": node_id, "preset": "ShortFast"}
    s.update(kw)
    r = MeshCore(s, MemoryStorage(), random.Random(node_id * 31 + 7))
    r.start(0)
    return r


def h(node_id):
    return public_key(node_id)[0]


def dm_frame(origin=1, dest=5, msg_id=0x11223344, text=b"hello", path=b"", attempt=0):
    payload = bytes((h(dest), h(origin))) + seal(b"k" * 32, text_plain(msg_id, attempt, text))
    return pack_packet(ROUTE_FLOOD, T_TXT, path, payload)


# ---- wire -------------------------------------------------------------------

def test_packet_layout_byte_vectors():
    # header 0bVVPPPPRR: version 1, TXT_MSG (2), FLOOD (1); path_len 0; then
    # dest hash, source hash, 2-byte MAC and the text in AES blocks of 16:
    # timestamp (here the message id), txt_type | attempt, text, zero padding
    f = dm_frame()
    assert f[:4] == bytes((0x09, 0x00, h(5), h(1)))
    assert f[6:] == bytes.fromhex("44332211" "00") + b"hello" + bytes(6)
    assert len(f) == 22
    # a direct ack along two hops: header 0x0e, path_len 2, the path, 6 bytes
    ack = pack_packet(ROUTE_DIRECT, T_ACK, b"\xaa\xbb", bytes.fromhex("010203040009"))
    assert ack == bytes.fromhex("0e02aabb010203040009")
    # path_len: hash size - 1 in its top two bits, the hop count below
    assert pack_packet(ROUTE_FLOOD, T_TXT, b"\x01\x02\x03\x04", b"xyz", hash_size=2)[1] == 0x42
    p, why = parse_packet(f)
    assert why is None and (p.route, p.ptype, p.path, p.hops()) == (ROUTE_FLOOD, T_TXT, b"", 0)
    # a repeat appends a hash to the path but keeps the packet hash
    p2, _ = parse_packet(dm_frame(path=b"\x40\x0d"))
    assert p2.hops() == 2 and p2.hash() == p.hash() == packet_hash(T_TXT, f[2:])


def test_sizes():
    # 40 bytes of text: 45 bytes in three AES blocks, 2 + 2 + 2 + 48
    assert len(dm_frame(text=b"x" * 40)) == 54
    # an advert: key 32, time 4, signature 64, flags, lat/lon 8, name
    adv = advert_payload(7, 1750000000, "n7", ADV_TYPE_REPEATER)
    assert len(adv) == 32 + 4 + 64 + 1 + 8 + 2 and adv[100] == ADV_TYPE_REPEATER | 0x90
    # the largest text: 160 bytes (MAX_TEXT_LEN); 161 is refused
    r = router(1)
    r.send(5, "x" * 160, 0)
    assert len(run_until_tx(r, 0)[1]) == 2 + 4 + 176
    with pytest.raises(ValueError):
        r.send(5, "x" * 161, 0)
    with pytest.raises(ValueError):  # "0000000x: " takes 10 bytes of a post's 160
        r.send(BROADCAST, "x" * 151, 0)


@pytest.mark.parametrize("frame, reason", [
    (b"", "short"), (b"\x09", "short"), (b"\x49\x00abcd", "version"),
    (b"\x09\xc1\x00abcd", "path"), (b"\x09\x05\x01\x02", "path"),
    (b"\x09\x00" + bytes(185), "oversize"), (b"\x08", "short")])
def test_parse_refuses(frame, reason):
    assert parse_packet(frame) == (None, reason)


def test_malformed_frames_are_counted_never_raised():
    r = router(2)
    for seed in range(300):
        rnd = random.Random(seed)
        r.on_frame(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 260))), -100, 0, 10)
    r.poll(10)
    assert r.counters["internal"] == 0 and r.counters["rx"] == 300
    assert sum(r.drops.values()) > 100


# ---- flood, path return, direct ----------------------------------------------

def test_first_message_floods_then_the_path_comes_back_and_direct_follows():
    m = line(5)
    first = m.send(1, 5, "hello there")
    m.run(60000)
    assert [(g["from"], g["id"], g["hops"]) for g in m.received(5, "msg")] == \
        [("00000001", first, 3)]
    assert m.delivered(1) == [{"id": first, "to": "00000005", "hops": 3}]
    flood = [(i, f[0] & 3, f[2:2 + f[1]]) for _, i, f in m.sent
             if MeshCore.frame_info(f) == ("msg", (1, first))]
    # each repeat appends its hash to the path
    assert flood == [(1, ROUTE_FLOOD, b""), (2, ROUTE_FLOOD, bytes([h(2)])),
                     (3, ROUTE_FLOOD, bytes([h(2), h(3)])),
                     (4, ROUTE_FLOOD, bytes([h(2), h(3), h(4)]))]
    # 5 returns that path by flood with the ack inside; 1 takes it and sends
    # its own path back directly
    kinds = [(i, MeshCore.frame_info(f)) for _, i, f in m.sent if f[0] >> 2 & 15 == T_PATH]
    assert kinds[:4] == [(5, ("path", (1, first))), (4, ("path", (1, first))),
                         (3, ("path", (1, first))), (2, ("path", (1, first)))]
    assert kinds[4:] == [(1, ("path", None)), (2, ("path", None)), (3, ("path", None)),
                         (4, ("path", None))]
    assert m.nodes[1].paths == {5: bytes([h(2), h(3), h(4)])}
    assert m.nodes[5].paths == {1: bytes([h(4), h(3), h(2)])}
    m.sent.clear()
    second = m.send(1, 5, "again")
    m.run(60000)
    assert m.received(5, "msg")[-1]["id"] == second
    assert m.delivered(1)[-1] == {"id": second, "to": "00000005", "hops": 3}
    # the message goes along the path, each hop taking itself off; the ack comes back so
    got = [(i, MeshCore.frame_info(f)[0], f[0] & 3, f[2:2 + f[1]]) for _, i, f in m.sent]
    assert got == [(1, "msg", ROUTE_DIRECT, bytes([h(2), h(3), h(4)])),
                   (2, "msg", ROUTE_DIRECT, bytes([h(3), h(4)])),
                   (3, "msg", ROUTE_DIRECT, bytes([h(4)])),
                   (4, "msg", ROUTE_DIRECT, b""),
                   (5, "ack", ROUTE_DIRECT, bytes([h(4), h(3), h(2)])),
                   (4, "ack", ROUTE_DIRECT, bytes([h(3), h(2)])),
                   (3, "ack", ROUTE_DIRECT, bytes([h(2)])),
                   (2, "ack", ROUTE_DIRECT, b"")]
    assert {MeshCore.frame_info(f)[1] for _, _, f in m.sent} == {(1, second)}


def test_retries_flood_twice_without_a_path():
    m = line(2)
    m.power_off(2)
    pid = m.send(1, 2, "anyone?")
    m.run(120000)
    sent = m.sent_by(1)
    # two flooded attempts (max_flood_attempts), attempt number 0 then 1
    assert [(f[0] & 3, f[10] & 3) for _, _, f in sent] == [(ROUTE_FLOOD, 0), (ROUTE_FLOOD, 1)]
    # the app waits 1.2 x the device's estimate: 500 ms + 16 airtimes
    air = preset_time_on_air_us(len(sent[0][2]), PRESETS["ShortFast"]) // 1000
    assert sent[1][0] - sent[0][0] == int((500 + 16 * air) * 1.2)
    assert m.events_of(1, "expired") == [{"id": pid, "to": "00000002", "reason": "max_attempts"}]
    assert m.nodes[1].status(m.now_ms)["held"] == 0


def test_retries_direct_twice_then_reset_the_path_and_flood():
    m = line(3)
    m.send(1, 3, "learn the way")
    m.run(60000)
    assert m.nodes[1].paths == {3: bytes([h(2)])}
    m.power_off(3)
    m.sent.clear()
    pid = m.send(1, 3, "are you there")
    m.run(120000)
    tries = m.sent_by(1)
    assert [f[0] & 3 for _, _, f in tries] == [ROUTE_DIRECT, ROUTE_DIRECT, ROUTE_FLOOD]
    # direct timeout: 500 ms + (6 airtimes + 250 ms) per hop and one more
    air = preset_time_on_air_us(len(tries[0][2]), PRESETS["ShortFast"]) // 1000
    assert tries[1][0] - tries[0][0] == int((500 + (6 * air + 250) * 2) * 1.2)
    assert m.nodes[1].counters["path_resets"] == 1 and m.nodes[1].paths == {}
    assert m.events_of(1, "expired") == [{"id": pid, "to": "00000003", "reason": "max_attempts"}]


def test_a_late_ack_of_an_earlier_attempt_still_counts():
    r = router(1)
    pid = r.send(5, "hi", 0)
    run_until_tx(r, 0)
    code = ack_crc(text_plain(pid, 0, b"hi"), public_key(1))
    r.on_frame(pack_packet(ROUTE_FLOOD, T_ACK, bytes([h(3)]), code + b"\x00\x07"), -90, 5, 100)
    assert r.poll(100) == [("delivered", {"id": pid, "to": "00000005", "hops": 1})]
    assert r.status(100)["queue"] == 0  # an ack for us is not repeated


def test_a_group_post_reaches_everyone():
    m = line(4)
    pid = m.send(2, BROADCAST, "hello all")
    m.run(30000)
    for n in (1, 3, 4):
        assert [(g["from"], g["id"], g["text"]) for g in m.received(n, "post")] == \
            [("00000002", pid, "hello all")]
    first = m.sent_by(2)[0][2]
    assert first[2] == PUBLIC_HASH and MeshCore.frame_info(first) == ("text", None)
    # every node repeats it once, the far end too (no hop limit short of 64)
    assert sorted(i for _, i, _ in m.sent) == [1, 2, 3, 4]


# ---- repeating ------------------------------------------------------------------

def test_flood_repeat_waits_up_to_two_and_a_half_airtimes():
    frame = dm_frame(origin=7, dest=9, path=bytes([h(8)]))
    repeated_len = len(frame) + 1
    t_ms = preset_time_on_air_us(repeated_len, PRESETS["ShortFast"]) // 1000
    delays = set()
    for seed in range(40):
        r = MeshCore({"node_id": 2, "preset": "ShortFast"}, MemoryStorage(), random.Random(seed))
        r.start(0)
        r.on_frame(frame, -100, 5, 1000)
        t, out = run_until_tx(r, 1000)
        delays.add(t - 1000)
        assert out[1] == 2 and out[2:4] == bytes([h(8), h(2)])  # our hash appended
    # getRetransmitDelay: random 0 .. 5 x (airtime x 0.5)
    assert max(delays) <= 5 * int(t_ms * 0.5) and len(delays) > 10


def test_no_duplicate_cancellation():
    r = router(2)
    frame = dm_frame(origin=7, dest=9)
    r.on_frame(frame, -100, 5, 0)
    r.on_frame(dm_frame(origin=7, dest=9, path=bytes([h(8)])), -100, 5, 1)
    assert r.counters["duplicates"] == 1 and r.status(1)["queue"] == 1
    assert run_until_tx(r, 1) is not None


def test_listen_before_talk():
    r = router(1)
    r.channel_busy(1000, 0)
    r.send(5, "hi", 0)
    t, _ = run_until_tx(r, 0)
    # tried again after 120, 240 or 360 ms until the channel was free
    assert t >= 1000 and r.counters["busy_backoffs"] >= 3
    t += 1000
    r.channel_busy(100000, t)  # busy for long: after 4 s it sends anyway
    r.send(5, "hi again", t)
    t2, _ = run_until_tx(r, t)
    assert 4000 < t2 - t <= 4000 + 360


# ---- background ---------------------------------------------------------------

def test_adverts_as_background_traffic():
    def adverts(**kw):
        r = router(3, name="hilltop", **kw)
        out, t = [], 0
        while t <= 48 * 3600000:
            out += [(t, a[1]) for a in r.poll(t) if a[0] == "tx"]
            t = max(r.next_wake_ms, t + 1)
        return out

    # a repeater floods its advert every 47 h, from a random phase
    got = adverts(role="router")
    assert len(got) in (1, 2)
    t, frame = got[0]
    assert frame[:2] == bytes((ROUTE_FLOOD | T_ADVERT << 2, 0))
    assert frame[2:34] == public_key(3) and frame.endswith(b"hilltop")
    assert t < FLOOD_ADVERT_INTERVAL_MS and MeshCore.frame_info(frame) == ("advert", None)
    # a companion sends none by itself; nor a repeater with background off
    assert adverts() == [] and adverts(role="router", background=False) == []


# ---- settings -----------------------------------------------------------------

@pytest.mark.parametrize("key, value, words", [
    ("flood_max", 65, "64 one-byte hashes"), ("flood_max", 0, "1..64"),
    ("msg_attempts", 5, "two bits"), ("flood_attempts", 9, "whole mesh"),
    ("flood_after", "2", "integer"), ("repeat", "yes", "true or false"),
    ("background", 1, "true or false"), ("role", "repeater", "'client' or 'router'"),
    ("name", "x" * 32, "1..31 bytes"), ("region", "XX", "one of")])
def test_bad_settings_are_refused_naming_the_key(key, value, words):
    with pytest.raises(ValueError) as e:
        MeshCore({"node_id": 2, key: value}, MemoryStorage(), random.Random(1))
    assert str(e.value).startswith(key + ":") and words in str(e.value)


def test_duty_cycle_is_the_regions_or_meshcores_own():
    def per_mille(region):
        return MeshCore({"node_id": 2, "region": region}, MemoryStorage(),
                        random.Random(1)).duty.per_mille
    # EU868's 1 %; where the region sets none, MeshCore's airtime factor 1 (50 %)
    assert per_mille("EU868") == 10 and per_mille("US915") == 500


def test_a_datagram_for_a_namesake_is_repeated_not_taken():
    # nodes are told apart by one byte: a node whose hash matches but whose
    # MAC check fails (the registry says it is for another) repeats it
    r = router(2)
    frame = dm_frame(origin=7, dest=2)  # addressed by hash to 2 ...
    meshcore._register(parse_packet(frame)[0].hash(), ("msg", 7, 9, 0x11223344, None))  # ... for 9
    r.on_frame(frame, -100, 5, 10)
    assert r.poll(10) == [] and r.status(10)["queue"] == 1
    assert r.counters["not_for_us"] == 1
    # and the one it is for takes it, acks it with a PATH return, repeats nothing
    meshcore._register(parse_packet(frame)[0].hash(), ("msg", 7, 2, 0x11223344, None))
    r2 = router(2)
    r2.on_frame(frame, -100, 5, 10)
    assert [a[0] for a in r2.poll(10)] == ["received"]
    t, out = run_until_tx(r2, 10)
    assert t - 10 == 200 and MeshCore.frame_info(out) == ("path", (7, 0x11223344))
