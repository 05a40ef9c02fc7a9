"""Where airtime goes: frames classified by type and by the unicast they carry
(controller/sim/frames.py), and the metrics built on that (sim/metrics.py)."""
import pytest

from pollen import wire
from pollen.crypto import NetworkKey
from pollen_controller.sim import baseline
from pollen_controller.sim.engine import BROADCAST, NETWORK_KEY, ROUTERS, Simulation
from pollen_controller.sim.frames import PollenFrames, classify

from .test_channel_engine import Plain, line

KEY = NetworkKey(bytes.fromhex(NETWORK_KEY))


def pollen_frame(ftype, origin=0x11, dest=0x22, msg_id=0x0A0B0C0D, payload=b"x"):
    return wire.pack(wire.Frame(ftype, 0, 3, 0, origin, dest, msg_id, 0, origin & 0xFF,
                                payload), KEY)


@pytest.mark.parametrize("ftype, name", [
    (wire.BEACON, "beacon"), (wire.POST, "post"), (wire.CATALOG, "catalog"),
    (wire.WANT, "want"), (wire.CHUNK, "chunk"), (wire.PART, "part"),
    (wire.STATUS, "status"), (12, "type12")])
def test_pollen_frames_that_carry_no_direct_message(ftype, name):
    assert classify("pollen", pollen_frame(ftype, dest=BROADCAST)) == (name, None)


def test_a_pollen_message_and_its_ack_name_the_same_message():
    msg = pollen_frame(wire.MSG, origin=0x11, dest=0x22, msg_id=0x01020304)
    assert classify("pollen", msg) == ("msg", (0x11, 0x01020304))
    # the ack goes from the destination back to the origin, under an id of its
    # own; the id it acknowledges is in its encrypted payload
    ack = pollen_frame(wire.ACK, origin=0x22, dest=0x11, msg_id=0x99,
                       payload=wire.be32(0x01020304))
    frames = PollenFrames(NETWORK_KEY)
    assert frames.classify(ack) == ("ack", (0x11, 0x01020304))
    relayed = wire.relayed(ack, 1, 0, 0x33, KEY)   # a relay's copy: same message
    assert frames.classify(relayed) == ("ack", (0x11, 0x01020304))
    assert len(frames._acks) == 1                  # decrypted once for both copies
    forged = ack[:-1] + bytes([ack[-1] ^ 1])       # not ours: no message named
    assert PollenFrames(NETWORK_KEY).classify(forged) == ("ack", None)


def test_managed_flood_frames_by_their_port():
    post = baseline.pack_frame(BROADCAST, 5, 70, 3, 3, False, baseline.encode_text(b"hi"), 5)
    msg = baseline.pack_frame(6, 5, 71, 3, 3, True, baseline.encode_text(b"hi"), 5)
    ack = baseline.pack_frame(5, 6, 72, 3, 3, False, baseline.encode_ack(71), 6)
    got = [classify("managed-flood", f) for f in (post, msg, ack)]
    assert [g[0] for g in got[:2]] == ["text", "msg"] and got[2][0] == "ack"
    assert got[0][1] is None and got[1][1] == got[2][1] == (5, 71)


@pytest.mark.parametrize("router", ROUTERS)
def test_frames_by_type_add_up_to_every_frame_on_air(router):
    traffic = [(60000, 1, BROADCAST, 30), (61000, 4, 1, 30), (70000, 2, 4, 20)]
    r = Simulation(Plain(line(4), traffic, duration_s=100), router).run()
    assert sum(r["tx_by_type"].values()) == r["tx_frames"] > 0
    assert set(r["airtime_ms_by_type"]) == set(r["tx_by_type"])
    assert r["tx_by_type"]["msg"] >= 3   # every router names direct messages "msg"
    assert r["unicast_delivery"] == 1.0 and r["unicast_tx_per_delivered"] >= 2


def test_unicast_transmissions_over_hops_on_a_line():
    # 1 -> 4 over three hops: the message relayed by 2 and 3, the ack by 3 and 2
    sim = Simulation(Plain(line(4), [(60000, 1, 4, 30)], duration_s=100), "pollen")
    carried = []
    record = sim.metrics.transmitted

    def tally(n, air_us, sensed, kind="frame", msg_key=None):
        if msg_key is not None:
            carried.append((n, kind))
        record(n, air_us, sensed, kind, msg_key)

    sim.metrics.transmitted = tally
    r = sim.run()
    (m,) = sim.metrics.messages.values()
    assert m["hops"] == 3 and r["unicast_delivery"] == 1.0
    assert r["unicast_tx_per_delivered"] == len(carried)
    msg = sum(1 for _, kind in carried if kind == "msg")
    assert r["unicast_tx_over_hops"]["p50"] == round(msg / 3, 3)
    assert r["unicast_ack_tx_over_hops"]["p50"] == round((len(carried) - msg) / 3, 3)
    # nothing lost on a clean line: each hop once each way, the least there can be
    assert sorted(carried) == [(1, "msg"), (2, "ack"), (2, "msg"), (3, "ack"), (3, "msg"),
                               (4, "ack")]


def test_a_unicast_without_a_path_is_left_out_of_the_ratio():
    pos = line(2)
    pos[3] = (1e7, 0.0)   # far out of anyone's range
    sim = Simulation(Plain(pos, [(60000, 1, 3, 30), (61000, 1, 2, 30)], duration_s=100),
                     "pollen")
    r = sim.run()
    assert sorted((m["dest"], m["hops"]) for m in sim.metrics.messages.values()) \
        == [(2, 1), (3, None)]
    assert r["unicasts"] == 2 and r["unicast_delivery"] == 0.5
    assert r["unicast_tx_over_hops"]["p50"] + r["unicast_ack_tx_over_hops"]["p50"] \
        == r["unicast_tx_per_delivered"] / 1


def test_messages_sent_with_a_route_known_are_counted_apart():
    # 1 -> 4 twice: the first finds the way (flooded), the second goes along
    # it; only the second is in the "route known" ratio, at one copy per hop
    sim = Simulation(Plain(line(4), [(60000, 1, 4, 30), (90000, 1, 4, 30)], duration_s=150),
                     "pollen")
    r = sim.run()
    first, second = sorted(sim.metrics.messages.values(), key=lambda m: m["t"])
    assert r["unicast_delivery"] == 1.0
    assert first["routed"] is False and second["routed"] is True
    routed = r["unicast_tx_over_hops_routed"]
    assert routed["n"] == 1 and routed["p50"] == 1.0
    assert r["unicast_tx_over_hops"]["p50"] >= routed["p50"]
