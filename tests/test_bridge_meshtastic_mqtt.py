"""pollen bridge meshtastic --mqtt (controller/bridge_meshtastic/mqtt_codec.py,
mqtt_side.py; docs/meshtastic.md, "MQTT"): the cipher against known
vectors, envelopes both ways, and the bridge through the real Mosquitto
the suite starts, with a fake pollen node's console on a pty
(tests/fakes/fake_console_node.py) and a paho client in the test playing
the Meshtastic gateways.

The test's envelopes are built with the `meshtastic` package's protobuf
classes and encrypted here, independently of mqtt_codec, as the firmware
does (src/mesh/CryptoEngine.cpp: AES-CTR, counter block = packet id as
64-bit little-endian, sender 32-bit little-endian, 4 zero bytes)."""
import base64
import queue
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from meshtastic.protobuf import mesh_pb2, mqtt_pb2, portnums_pb2

from pollen_controller.bridge_meshtastic import mqtt_codec as codec
from pollen_controller.bridge_meshtastic.bridge import MeshtasticBridge
from pollen_controller.bridge_meshtastic.holdback import HoldBack
from pollen_controller.bridge_meshtastic.mqtt_side import MqttSide, topics
from pollen_controller.bridge_meshtastic.relay import IdMap, RateLimit, bridge_in_name, bridge_name
from pollen_controller.errors import InputError
from pollen_controller.node.link import SerialLink
from tests.fakes.bridge_run import BridgeRun
from tests.fakes.fake_console_node import FakeConsoleNode

DEFAULT_KEY = bytes.fromhex("d4f1bb3a20290759f0bcffabcf4e6901")   # firmware src/mesh/Channels.h defaultpsk
KEY16 = bytes(range(1, 17))
KEY32 = bytes(range(100, 132))
ANNA, FARM = 0x11223344, 0x55667788
BRIDGE = 0xB1D9E0A7
CH = "LongFast"
TOPIC = "msh/EU_868/2/e/LongFast/"
POLLEN = str(Path(sys.executable).with_name("pollen"))
TEXT, NODEINFO, POSITION = (portnums_pb2.PortNum.TEXT_MESSAGE_APP, portnums_pb2.PortNum.NODEINFO_APP,
                            portnums_pb2.PortNum.POSITION_APP)


def _ctr(key, packet_id, sender, data):
    if not key:
        return data
    block = struct.pack("<Q", packet_id) + struct.pack("<I", sender) + bytes(4)
    return Cipher(algorithms.AES(key), modes.CTR(block)).encryptor().update(data)


def _hash(name, key):
    h = 0
    for b in name.encode() + key:
        h ^= b
    return h


def gateway_envelope(sender, packet_id, portnum, payload, key=DEFAULT_KEY, channel=CH,
                     gateway="!aaaaaaaa", to=0xFFFFFFFF, channel_hash=None, reply_id=0):
    """What a Meshtastic gateway publishes for a packet it heard (MQTT.cpp onSend)."""
    data = mesh_pb2.Data(portnum=portnum, payload=payload, reply_id=reply_id).SerializeToString()
    p = mesh_pb2.MeshPacket(to=to, id=packet_id, hop_limit=2, hop_start=3,
                            channel=_hash(channel, key) if channel_hash is None else channel_hash,
                            encrypted=_ctr(key, packet_id, sender, data))
    setattr(p, "from", sender)
    return mqtt_pb2.ServiceEnvelope(packet=p, channel_id=channel, gateway_id=gateway).SerializeToString()


def user(short, long):
    return mesh_pb2.User(short_name=short, long_name=long).SerializeToString()


# ---- the cipher and the envelopes: known answers ------------------------------------------

@pytest.mark.parametrize("key, block, plain, expect", [
    # meshtastic/firmware test/test_crypto/test_main.cpp test_AES_CTR (RFC 3686 §6, vectors 1 and 7)
    ("AE6852F8121067CC4BF7A5765577F39E", "00000030000000000000000000000001", b"Single block msg",
     "E4095D4FB7A7B3792D6175A3261311B8"),
    ("776BEFF2851DB06F4C8A0542C8696F6C6A81AF1EEC96B4D37FC1D689E6C1C104",
     "00000060DB5672C97AA8F0B200000001", b"Single block msg", "145AD01DBF824EC7560863DC71E3E0C0"),
    # RFC 3686 §6 vector 2: two blocks, so the counter is stepped
    ("7E24067817FAE0D743D6CE1F32539163", "006CB6DBC0543B59DA48D90B00000001", bytes(range(32)),
     "5104A106168A72D9790D41EE8EDAD388EB2E1EFC46DA57C8FCE630DF9141BE28"),
])
def test_aes_ctr_known_answers(key, block, plain, expect):
    assert codec.aes_ctr(bytes.fromhex(key), bytes.fromhex(block), plain) == bytes.fromhex(expect)


def test_a_real_uplink_decrypts():
    # meshtastic/c-sharp Meshtastic.Test/Crypto/PacketCryptoTests.cs TestDefaultKeyDecrypt: an
    # envelope seen on LongFast (gateway !fa8165a4), the default key, a NODEINFO_APP
    p = mesh_pb2.MeshPacket(to=4294967295, channel=8, id=1777428186, hop_limit=3, hop_start=3,
                            encrypted=base64.b64decode("kiDV39nDDsi8AON+Czei6zUpy+F/7E+lyIpicxJR40KX"
                                                       "BFmPkqFUEnobI5voQadha+s="))
    setattr(p, "from", 4202784164)
    env = mqtt_pb2.ServiceEnvelope(packet=p, channel_id="LongFast", gateway_id="!fa8165a4")
    assert codec.channel_hash("LongFast", codec.parse_key("default")) == 8   # the hash on the air
    heard = codec.read_envelope(env.SerializeToString(), "LongFast", codec.parse_key("AQ=="))
    assert (heard.why, heard.kind, heard.long, heard.short) == (None, "user", "Meshtastic 65a4", "65a4")
    assert heard.from_num == 0xFA8165A4 and heard.gateway == "!fa8165a4"


@pytest.mark.parametrize("value, key", [
    ("default", DEFAULT_KEY), ("AQ==", DEFAULT_KEY),
    ("Ag==", DEFAULT_KEY[:-1] + bytes([DEFAULT_KEY[-1] + 1])),   # index 2: last byte + 1
    ("none", b""), ("AA==", b""),
    (base64.b64encode(KEY16).decode(), KEY16), (base64.b64encode(KEY32).decode(), KEY32),
])
def test_keys_as_the_firmware_expands_them(value, key):
    assert codec.parse_key(value) == key


@pytest.mark.parametrize("value, error", [
    ("AAEC", "3 bytes; expected 16 or 32"), ("not base64!", "expected default, none or"),
    (base64.b64encode(bytes(24)).decode(), "24 bytes"),
])
def test_bad_keys_name_the_option(value, error):
    with pytest.raises(InputError, match="--key") as e:
        codec.parse_key(value)
    assert error in str(e.value)


def test_names_and_topics():
    assert codec.parse_node("!b1d9e0a7") == BRIDGE
    for bad in ("!ffffffff", "!00000002", "xyz", "!123456789"):
        with pytest.raises(InputError, match="--mqtt-node"):
            codec.parse_node(bad)
    for bad in ("Long/Fast", "#", "", "TwelveBytes!"):
        with pytest.raises(InputError, match="--channel"):
            codec.check_channel(bad)
    assert 4 <= codec.node_for("0000000a") < 0xFFFFFFFF
    assert codec.node_for("0000000a") == codec.node_for("0000000a") != codec.node_for("0000000b")
    assert topics("msh", "EU_868", CH) == ("msh/EU_868/2/e/LongFast/+", "msh/EU_868/2/e/LongFast/")
    assert topics("msh/", None, CH)[0] == "msh/2/e/LongFast/+"


@pytest.mark.parametrize("key", [DEFAULT_KEY, KEY16, KEY32, b""])
def test_envelopes_both_ways(key):
    out = codec.text_envelope(CH, key, BRIDGE, 77, "héllo 🌻")
    env = mqtt_pb2.ServiceEnvelope.FromString(out)       # as a Meshtastic node reads it
    p = env.packet
    assert (env.channel_id, env.gateway_id) == (CH, "!b1d9e0a7")
    assert (getattr(p, "from"), p.to, p.id, p.channel, p.hop_limit, p.hop_start) == \
        (BRIDGE, 0xFFFFFFFF, 77, _hash(CH, key), 3, 3)
    data = mesh_pb2.Data.FromString(_ctr(key, 77, BRIDGE, p.encrypted))
    assert (data.portnum, data.payload.decode()) == (TEXT, "héllo 🌻")
    heard = codec.read_envelope(gateway_envelope(ANNA, 9, TEXT, "hi".encode(), key), CH, key)
    assert (heard.why, heard.kind, heard.text, heard.from_num, heard.packet_id) == (None, "text", "hi", ANNA, 9)


def _plain_envelope():
    p = mesh_pb2.MeshPacket(to=0xFFFFFFFF, id=5, decoded=mesh_pb2.Data(portnum=TEXT, payload=b"hi"))
    setattr(p, "from", ANNA)
    return mqtt_pb2.ServiceEnvelope(packet=p, channel_id=CH, gateway_id="!aaaaaaaa").SerializeToString()


@pytest.mark.parametrize("payload, why", [
    (b"\xff\xfe garbage", "undecodable"),
    (mesh_pb2.Position(latitude_i=5, longitude_i=7).SerializeToString(), "not_envelope"),  # foreign
    (gateway_envelope(ANNA, 5, TEXT, b"hi", channel="Other"), "other_channel"),
    (gateway_envelope(ANNA, 5, TEXT, b"hi", key=KEY16, channel_hash=_hash(CH, DEFAULT_KEY)), "wrong_key"),
    (gateway_envelope(ANNA, 5, TEXT, b"hi", key=KEY16), "wrong_key"),     # the hash says so first
    (gateway_envelope(ANNA, 5, TEXT, b"\xffhi"), "not_utf8"),
    (gateway_envelope(ANNA, 5, TEXT, b"x" * 300), "too_big"),
    (gateway_envelope(ANNA, 5, POSITION, b"\x0d\x01\x00\x00\x00"), "port:POSITION_APP"),
    (gateway_envelope(ANNA, 5, TEXT, b"hi", channel="PKI"), "pki"),
    (_plain_envelope(), "plaintext"),
])
def test_what_is_dropped_and_why(payload, why):
    assert codec.read_envelope(payload, CH, DEFAULT_KEY).why == why


# ---- the bridge through Mosquitto -------------------------------------------------------

class Gateways:
    """The test's paho client: publishes envelopes as Meshtastic gateways do,
    and reads what the bridge publishes (a persistent session, so what the
    bridge publishes while the client is away waits for it)."""

    def __init__(self, port):
        import paho.mqtt.client as mqtt

        self.got: queue.Queue = queue.Queue()
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-gateways",
                             clean_session=False)
        self.c.reconnect_delay_set(0.1, 0.5)
        self.c.on_connect = lambda c, u, f, rc, p: (c.subscribe(TOPIC + "+", qos=1), self.ready.set())
        self.c.on_message = lambda c, u, m: self.got.put((m.topic, m.payload, time.monotonic()))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.ready.wait(5)
        time.sleep(0.05)   # the subscription's SUBACK

    def publish(self, payload, gateway="!aaaaaaaa"):
        self.c.publish(TOPIC + gateway, payload, qos=1).wait_for_publish(5)

    def texts(self, n, key=DEFAULT_KEY, timeout_s=10.0):
        """The next n texts the bridge published: (text, packet, envelope, when)."""
        out, end = [], time.monotonic() + timeout_s
        while len(out) < n:
            topic, payload, t = self.got.get(timeout=max(0.01, end - time.monotonic()))
            env = mqtt_pb2.ServiceEnvelope.FromString(payload)
            if env.gateway_id != "!b1d9e0a7":
                continue                              # the test's own publications
            p = env.packet
            data = mesh_pb2.Data.FromString(_ctr(key, p.id, getattr(p, "from"), p.encrypted))
            if data.portnum == TEXT:
                out.append((data.payload.decode(), p, env, t))
        return out

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


class Bridge(BridgeRun):
    def __init__(self, folder, broker_port, key=DEFAULT_KEY, to_mesh=(6000, 10), to_pollen=(6000, 10),
                 num=BRIDGE, node_id="0000000a", hold=(0,), maps=()):
        self.node = FakeConsoleNode(folder, node_id=node_id).plug()
        self.logs = []
        self.side = MqttSide(f"mqtt://127.0.0.1:{broker_port}", CH, key, num, region="EU_868",
                             long_name=bridge_name(node_id), log=self.logs.append,
                             reconnect_s=(0.1, 0.5))
        self.link = SerialLink(self.node.path)
        self.bridge = MeshtasticBridge(self.link, self.side, CH, folder / "outbox.db", IdMap(maps),
                                       to_mesh_rate=RateLimit(*to_mesh), to_pollen_rate=RateLimit(*to_pollen),
                                       log=self.logs.append, confirm_timeout_s=1.0,
                                       holdback=HoldBack(*hold))
        self.side.open()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.bridge.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def post(self, text, msg_id=17, sender="0000000c"):
        self.node.emit({"event": "received", "kind": "post", "from": sender, "to": "ffffffff",
                        "id": msg_id, "text": text, "hops": 1})


@pytest.fixture
def bridged(tmp_path, mosquitto):
    made = []

    def make(**kw):
        gw = Gateways(mosquitto.port)
        made.append(gw)
        br = Bridge(tmp_path, mosquitto.port, **kw)
        made.append(br)
        return br, gw

    yield make
    for m in reversed(made):
        m.close()


def _no_more(q, wait_s=0.2):
    with pytest.raises(queue.Empty):
        q.get(timeout=wait_s)


@pytest.mark.parametrize("key", [DEFAULT_KEY, KEY16, KEY32], ids=["default", "aes128", "aes256"])
def test_texts_both_ways(bridged, key):
    b, gw = bridged(key=key)
    gw.publish(gateway_envelope(ANNA, 3, NODEINFO, user("ANNA", "Anna's handheld"), key))
    t0 = time.monotonic()
    gw.publish(gateway_envelope(ANNA, 7, TEXT, "anyone at the mill?".encode(), key))
    [(to, text, t1)] = b.pollen_sends(1)
    assert (to, text) == ("all", "\u21c411223344-7 ANNA: anyone at the mill?")
    t2 = time.monotonic()
    b.post("market at noon")
    [(text, p, env, t3)] = gw.texts(1, key)
    assert text == "\u21c40000000c-17 market at noon"
    assert (getattr(p, "from"), p.to, p.channel, p.hop_limit, env.channel_id) == \
        (BRIDGE, 0xFFFFFFFF, _hash(CH, key), 3, CH)
    print(f"\nmqtt: meshtastic->pollen {1000 * (t1 - t0):.0f} ms (from the publication),"
          f" pollen->meshtastic {1000 * (t3 - t2):.0f} ms")
    deadline = time.monotonic() + 2
    while b.bridge.outbox.count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b.bridge.outbox.count == 0                  # the broker's PUBACK confirmed it
    assert b.side.stats["own"] >= 1                    # its own publications came back, skipped


def test_bad_input_is_counted_and_the_bridge_goes_on(bridged):
    b, gw = bridged()
    for payload in (b"\xff\xfe garbage", mesh_pb2.Position(latitude_i=5).SerializeToString(),
                    gateway_envelope(ANNA, 20, TEXT, b"other", channel="Other"),
                    gateway_envelope(ANNA, 21, TEXT, b"wrong", key=KEY16,
                                     channel_hash=_hash(CH, DEFAULT_KEY)),
                    gateway_envelope(ANNA, 22, TEXT, b"\xff\xfe"),
                    gateway_envelope(ANNA, 23, POSITION, b"\x0d\x01\x00\x00\x00"),
                    gateway_envelope(ANNA, 24, TEXT, b"for you", to=BRIDGE),
                    _plain_envelope(), b""):
        gw.publish(payload)
    gw.publish(gateway_envelope(FARM, 25, TEXT, "still here".encode()))
    assert b.pollen_sends(1)[0][1] == "\u21c455667788-25 !55667788: still here"
    s = b.side.stats
    assert (s["undecodable"], s["not_envelope"], s["other_channel"], s["wrong_key"], s["not_utf8"],
            s["direct"], s["plaintext"], s["ignored"]) == (1, 2, 1, 1, 1, 1, 1, 1), s
    assert b.side.ignored == {"POSITION_APP": 1}
    assert any("does not decrypt with this channel's key" in line for line in b.logs)
    _no_more(b.node.commands)


def test_the_same_packet_from_two_gateways_is_bridged_once(bridged):
    b, gw = bridged()
    one = gateway_envelope(ANNA, 40, TEXT, "heard twice".encode(), gateway="!aaaaaaaa")
    two = gateway_envelope(ANNA, 40, TEXT, "heard twice".encode(), gateway="!bbbbbbbb")
    gw.publish(one)
    gw.publish(two, gateway="!bbbbbbbb")
    assert b.pollen_sends(1)[0][1] == "\u21c411223344-40 !11223344: heard twice"
    _no_more(b.node.commands)
    assert b.side.stats["duplicate"] == 1
    # a text bridged in by any bridge (the mark) is not bridged back
    gw.publish(gateway_envelope(FARM, 41, TEXT, "\u21c40000000c-9 bakery: bread".encode()))
    _no_more(b.node.commands)
    assert b.bridge.stats["bridged_skipped"] == 1


def test_two_bridges_on_one_broker_publish_one_copy(tmp_path, mosquitto):
    # both pollen nodes hear the bakery's post; each bridge hears the other's
    # publications straight from the broker: the first copy (the lower node
    # number's, rank 0) is heard long before the other's hold ends
    gw = Gateways(mosquitto.port)
    made = []
    try:
        for name, num, node_id in (("one", 0xB0000001, "0000000a"), ("two", 0xB0000002, "0000000b")):
            (tmp_path / name).mkdir()
            made.append(Bridge(tmp_path / name, mosquitto.port, num=num, node_id=node_id,
                               hold=(0.1, 1.0, 0.0)))
        one, two = made
        one.post("first: now two knows of one", msg_id=40)   # (heard over the broker)
        deadline = time.monotonic() + 5
        while not two.bridge.holdback.bridges("meshtastic") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert two.bridge.holdback.bridges("meshtastic") == [0xB0000001]
        for b in made:
            b.post("market at noon", msg_id=41)
        got, end = [], time.monotonic() + 1.2               # past two's hold (1.1 s)
        while time.monotonic() < end:
            try:
                topic, payload, _ = gw.got.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                break
            p = mqtt_pb2.ServiceEnvelope.FromString(payload).packet
            data = mesh_pb2.Data.FromString(_ctr(DEFAULT_KEY, p.id, getattr(p, "from"), p.encrypted))
            if data.portnum == TEXT:
                got.append((getattr(p, "from"), data.payload.decode()))
        assert got == [(0xB0000001, "\u21c40000000c-40 first: now two knows of one"),
                       (0xB0000001, "\u21c40000000c-41 market at noon")]
        assert two.bridge.stats["doubles_avoided"] == 1 and two.bridge.outbox.count == 0
    finally:
        for m in reversed(made):
            m.close()
        gw.close()


def test_a_direct_message_decrypts_as_the_firmwares_own_test():
    # meshtastic/firmware test/test_crypto/test_main.cpp test_PKC_Decrypt: a packet from
    # node 0x0929, id 0x13b2d662, 16 header bytes then 22 of PKI payload; its Data is
    # "08011204746573744800": TEXT_MESSAGE_APP "test", bitfield 0
    key = codec.pki_shared_key(
        bytes.fromhex("a00330633e63522f8a4d81ec6d9d1e6617f6c8ffd3a4c698229537d44e522277"),
        bytes.fromhex("db18fc50eea47f00251cb784819a3cf5fc361882597f589f0d7ff820e8064457"))
    assert key[:8].hex() == "777b1545c9d6f9a2"
    radio = bytes.fromhex("8c646d7a2909000062d6b2136b00000040df24abfcc30a17a3d9046726099e796a1c036a792b")
    assert codec.pki_decrypt(key, 0x13B2D662, 0x0929, radio[16:]).hex() == "08011204746573744800"
    assert codec.pki_decrypt(key, 0x13B2D663, 0x0929, radio[16:]) is None     # another id: no
    assert codec.pki_decrypt(bytes(32), 0x13B2D662, 0x0929, radio[16:]) is None
    assert codec.pki_shared_key(bytes(32), bytes(32)) is None                  # a weak key


def test_direct_messages_both_ways_in_envelopes():
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    def pair():
        k = X25519PrivateKey.generate()
        return k.private_bytes_raw(), k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    (bridge_priv, bridge_pub), (anna_priv, anna_pub) = pair(), pair()
    env = codec.pki_text_envelope(codec.pki_shared_key(anna_priv, bridge_pub), ANNA, BRIDGE, 61,
                                  "for the bakery 🍞")
    ours = {(ANNA, BRIDGE): codec.pki_shared_key(bridge_priv, anna_pub)}
    heard = codec.read_envelope(env, CH, DEFAULT_KEY, lambda f, t: ours.get((f, t)))
    assert (heard.why, heard.kind, heard.text, heard.pki, heard.to) == \
        (None, "text", "for the bakery 🍞", True, BRIDGE)
    assert codec.read_envelope(env, CH, DEFAULT_KEY).why == "pki"              # not ours to read
    assert codec.read_envelope(env, CH, DEFAULT_KEY, lambda f, t: bytes(32)).why == "pki"
    p = mqtt_pb2.ServiceEnvelope.FromString(env).packet
    assert (p.channel, p.pki_encrypted, len(p.encrypted)) == (0, True, len(
        mesh_pb2.Data(portnum=TEXT, payload="for the bakery 🍞".encode()).SerializeToString()) + 12)


@pytest.mark.parametrize("long, pollen_id", [
    ("pollen bridge 0000000a", "0000000a"), ("pollen bridge 0000000A", None), ("pollen bridge 0a", None),
    ("pollen bridge 0000000a x", None), ("Anna's handheld", None), (None, None)])
def test_a_bridge_is_known_by_its_long_name(long, pollen_id):
    assert bridge_in_name(long) == pollen_id
    assert bridge_in_name(bridge_name("0000000c")) == "0000000c"


def test_a_newcomer_bridge_is_answered():
    side = MqttSide("mqtt://127.0.0.1:1", CH, DEFAULT_KEY, BRIDGE)
    heard = []
    side.on_bridge = lambda num, pollen_id, answer: heard.append((num, pollen_id))
    env = gateway_envelope(0xB0000002, 9, NODEINFO, user("PLN", "pollen bridge 0000000b"))
    side._on_message(None, None, type("M", (), {"payload": env, "topic": TOPIC + "!aaaaaaaa"}))
    assert heard == [(0xB0000002, "0000000b")] and side.answer_due    # new here: answered
    side.answer_due = False
    env = gateway_envelope(0xB0000002, 10, NODEINFO, user("PLN", "pollen bridge 0000000b"))
    side._on_message(None, None, type("M", (), {"payload": env, "topic": TOPIC + "!aaaaaaaa"}))
    assert len(heard) == 2 and side.answer_due                         # restarted: answered again
    env = gateway_envelope(0xB0000003, 11, NODEINFO, user("ANNA", "Anna's handheld"))
    side.answer_due = False
    side._on_message(None, None, type("M", (), {"payload": env, "topic": TOPIC + "!aaaaaaaa"}))
    assert len(heard) == 2 and not side.answer_due                     # not a bridge
    env = gateway_envelope(0xB0000002, 13, NODEINFO, user("PLN", "pollen bridge 0000000b"), reply_id=5)
    side._on_message(None, None, type("M", (), {"payload": env, "topic": TOPIC + "!aaaaaaaa"}))
    assert len(heard) == 3 and not side.answer_due                     # an answer: not answered
    assert [side.answers.take(0.0) for _ in range(4)] == [True, True, True, False]   # bounded
    env = gateway_envelope(0xB0000004, 12, portnums_pb2.PortNum.PRIVATE_APP, b"pollen bridge 0000000d")
    side._on_message(None, None, type("M", (), {"payload": env, "topic": TOPIC + "!aaaaaaaa"}))
    assert heard[-1] == (0xB0000004, "0000000d") and side.answer_due   # a bridge on a device


def test_three_bridges_started_together_bring_one_copy_into_pollen(tmp_path, mosquitto):
    # Three bridges on one broker, started one after another, each with its
    # own pollen node in the same pollen mesh (the test relays each node's
    # post to the other two after 0.5 s, as over the air). They learn of each
    # other from their node infos (a bridge answers a newcomer's with its own)
    # before any text: Anna's first text reaches pollen once, not three times
    # (all rank 0, their draws within 0.2 s, each copy heard 0.5 s later)
    gw = Gateways(mosquitto.port)
    made, stop = [], threading.Event()
    try:
        for name, num, node_id in (("one", 0xB0000001, "0000000a"), ("two", 0xB0000002, "0000000b"),
                                   ("three", 0xB0000003, "0000000d")):
            (tmp_path / name).mkdir()
            made.append(Bridge(tmp_path / name, mosquitto.port, num=num, node_id=node_id,
                               hold=(0.1, 1.0, 0.2)))
        sends = queue.Queue()

        def air(b):   # a post one node sends is heard by the others 0.5 s later
            while not stop.is_set():
                try:
                    cmd = b.node.commands.get(timeout=0.05)
                except queue.Empty:
                    continue
                if cmd.get("cmd") == "send":
                    sends.put((b.node.id, cmd["text"]))
                    for other in made:
                        if other is not b:
                            threading.Timer(0.5, other.post, (cmd["text"],),
                                            {"msg_id": 60, "sender": b.node.id}).start()
        for b in made:
            threading.Thread(target=air, args=(b,), daemon=True).start()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not all(
                len(b.bridge.holdback.bridges("pollen", b.node.id)) == 2 for b in made):
            time.sleep(0.02)
        assert [b.bridge.holdback.bridges("pollen", b.node.id) for b in made] == \
            [["0000000b", "0000000d"], ["0000000a", "0000000d"], ["0000000a", "0000000b"]]
        gw.publish(gateway_envelope(ANNA, 70, TEXT, "hello all".encode()))
        time.sleep(2.5)                                   # past the third's hold (2.1..2.3 s)
        got = []
        while not sends.empty():
            got.append(sends.get())
        assert got == [("0000000a", "\u21c411223344-70 !11223344: hello all")]
        assert [b.bridge.stats["doubles_avoided"] for b in made] == [0, 1, 1]
        assert all(b.bridge.inbox.count == 0 for b in made)
    finally:
        stop.set()
        for m in reversed(made):
            m.close()
        gw.close()


def _x25519_pair():
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    k = X25519PrivateKey.generate()
    return k.private_bytes_raw(), k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _pki_key(private, public):
    # as the firmware: SHA-256 of the X25519 secret (CryptoEngine setDHPublicKey, hash)
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    return hashlib.sha256(X25519PrivateKey.from_private_bytes(private).exchange(
        X25519PublicKey.from_public_bytes(public))).digest()


def _pki_nonce(packet_id, sender, extra):
    return struct.pack("<I", packet_id) + extra + struct.pack("<I", sender) + b"\0"


def test_direct_messages_both_ways_over_mqtt(tmp_path, mosquitto):
    # PKI, as firmware 2.5 on sends direct messages: Anna's node knows the bridge's public
    # key from its node info, the bridge hers from hers (encrypted here, apart from mqtt_codec)
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    gw = Gateways(mosquitto.port)
    gw.c.subscribe("msh/EU_868/2/e/PKI/+", qos=1)
    anna_priv, anna_pub = _x25519_pair()
    b = Bridge(tmp_path, mosquitto.port, maps=["0000000c=!11223344", "0000000d=!55667788"])
    try:
        end = time.monotonic() + 10
        bridge_pub = None
        while bridge_pub is None:                     # the bridge's node info, with its key
            topic, payload, _ = gw.got.get(timeout=max(0.01, end - time.monotonic()))
            p = mqtt_pb2.ServiceEnvelope.FromString(payload).packet
            if getattr(p, "from") == BRIDGE:
                data = mesh_pb2.Data.FromString(_ctr(DEFAULT_KEY, p.id, BRIDGE, p.encrypted))
                if data.portnum == NODEINFO:
                    bridge_pub = mesh_pb2.User.FromString(data.payload).public_key
        assert len(bridge_pub) == 32
        anna = mesh_pb2.User(short_name="ANNA", long_name="Anna's handheld", public_key=anna_pub)
        gw.publish(gateway_envelope(ANNA, 3, NODEINFO, anna.SerializeToString()))
        key = _pki_key(anna_priv, bridge_pub)
        data = mesh_pb2.Data(portnum=TEXT, payload="psst, bakery".encode(), bitfield=0)
        enc = AESCCM(key, tag_length=8).encrypt(_pki_nonce(62, ANNA, b"\x01\x02\x03\x04"),
                                                data.SerializeToString(), None) + b"\x01\x02\x03\x04"
        p = mesh_pb2.MeshPacket(to=BRIDGE, id=62, channel=0, hop_limit=2, hop_start=3,
                                pki_encrypted=True, encrypted=enc)
        setattr(p, "from", ANNA)
        env = mqtt_pb2.ServiceEnvelope(packet=p, channel_id="PKI", gateway_id="!aaaaaaaa")
        gw.c.publish("msh/EU_868/2/e/PKI/!aaaaaaaa", env.SerializeToString(), qos=1).wait_for_publish(5)
        assert b.pollen_sends(1)[0][:2] == ("0000000c", "\u21c411223344-62 ANNA: psst, bakery")
        b.node.emit({"event": "received", "kind": "msg", "from": "0000000c", "to": "0000000a",
                     "id": 19, "text": "hello anna", "hops": 1})
        while True:                                   # the bridge's direct message to Anna
            topic, payload, _ = gw.got.get(timeout=max(0.01, end + 10 - time.monotonic()))
            env = mqtt_pb2.ServiceEnvelope.FromString(payload)
            if env.channel_id == "PKI" and getattr(env.packet, "from") == BRIDGE:
                break
        p = env.packet
        assert topic == f"msh/EU_868/2/e/PKI/!{BRIDGE:08x}" and (p.to, p.channel, p.pki_encrypted) == \
            (ANNA, 0, True)
        plain = AESCCM(key, tag_length=8).decrypt(_pki_nonce(p.id, BRIDGE, p.encrypted[-4:]),
                                                  p.encrypted[:-4], None)
        assert mesh_pb2.Data.FromString(plain).payload.decode() == "\u21c40000000c-19 hello anna"
        # a direct message for a node whose key the bridge has not heard: said, not queued
        b.node.emit({"event": "received", "kind": "msg", "from": "0000000d", "to": "0000000a",
                     "id": 20, "text": "hello farm", "hops": 1})
        deadline = time.monotonic() + 5
        while not b.bridge.stats["unreachable"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert b.bridge.stats["unreachable"] == 1
        assert any("its public key is not known" in line for line in b.logs)
    finally:
        b.close()
        gw.close()


def test_non_ascii_both_ways(bridged):
    b, gw = bridged()
    gw.publish(gateway_envelope(FARM, 2, NODEINFO, user("🌻SF", "Sunflower farm")))
    gw.publish(gateway_envelope(FARM, 3, TEXT, "sunflower 🌻 café عربى".encode()))
    assert b.pollen_sends(1)[0][1] == "\u21c455667788-3 🌻SF: sunflower 🌻 café عربى"
    b.post("naïve ☕ مرحبا", msg_id=18)
    assert gw.texts(1)[0][0] == "\u21c40000000c-18 naïve ☕ مرحبا"


def test_a_flood_is_rate_limited_and_nothing_lost(bridged):
    # (into pollen each text waits for the node's answer, about 150 ms on the fake node's pty:
    # fewer texts that way keep the test short)
    rate_per_s, burst, n, n_in = 10.0, 3, 10, 6
    b, gw = bridged(to_pollen=(rate_per_s * 60, burst), to_mesh=(rate_per_s * 60, burst))
    for k in range(n_in):
        gw.publish(gateway_envelope(ANNA, 100 + k, TEXT, f"flood {k}".encode()))
    for k in range(n):
        b.post(f"flood out {k}", msg_id=200 + k)
    sends = b.pollen_sends(n_in)
    assert [s[1] for s in sends] == [f"\u21c411223344-{100 + k} !11223344: flood {k}" for k in range(n_in)]
    out = gw.texts(n)
    assert [o[0] for o in out] == [f"\u21c40000000c-{200 + k} flood out {k}" for k in range(n)]
    for times in ([s[2] for s in sends], [o[3] for o in out]):
        for i, t in enumerate(times):                 # never ahead of the bucket
            assert t - times[0] >= (i - burst + 1) / rate_per_s - 0.05, (i, t - times[0])
    print(f"\nflood at {rate_per_s:g}/s, burst {burst}: {n_in} into pollen over"
          f" {sends[-1][2] - sends[0][2]:.2f} s, {n} into meshtastic over {out[-1][3] - out[0][3]:.2f} s")


def test_broker_restarted_mid_flight_nothing_lost(bridged, mosquitto):
    b, gw = bridged()
    mosquitto.stop()
    deadline = time.monotonic() + 5
    while b.side.up and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not b.side.up
    for k in range(3):
        b.post(f"while away {k}", msg_id=300 + k)
    time.sleep(0.3)
    assert b.bridge.outbox.count == 3                  # waiting on disk
    mosquitto.start()
    got = gw.texts(3, timeout_s=15)
    texts = list(dict.fromkeys(g[0] for g in got))     # a repeat carries the same packet id
    assert texts == [f"\u21c40000000c-{300 + k} while away {k}" for k in range(3)]
    gw.publish(gateway_envelope(ANNA, 50, TEXT, "after the restart".encode()))
    assert b.pollen_sends(1)[0][1] == "\u21c411223344-50 !11223344: after the restart"
    assert b.side.stats["lost"] == 1 and b.side.stats["connects"] == 2
    assert any("connection lost" in line for line in b.logs)


# ---- the command ----------------------------------------------------------------------------

@pytest.mark.parametrize("args, line", [   # (--key, --channel, --mqtt-node: the pure tests above)
    (["--channel", "LongFast", "--region", "XX"], "pollen: --region 'XX': expected a Meshtastic region"),
    (["--channel", "LongFast", "--map", "0000000c"], "pollen: --map '0000000c': expected POLLENID"),
])
def test_command_bad_input(args, line):
    r = subprocess.run([POLLEN, "bridge", "meshtastic", "--port", "/dev/null/x", "--mqtt",
                        "mqtt://127.0.0.1:1"] + args, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stderr.startswith(line) and r.stderr.count("\n") == 1, r.stderr


def test_command_runs_and_reports(tmp_path, mosquitto):
    import signal

    node = FakeConsoleNode(tmp_path, node_id="0000000a").plug()
    gw = Gateways(mosquitto.port)
    proc = subprocess.Popen([POLLEN, "bridge", "meshtastic", "--port", node.path, "--mqtt",
                             f"mqtt://127.0.0.1:{mosquitto.port}", "--channel", CH, "--region", "eu_868",
                             "--outbox", str(tmp_path / "o.db"), "--hold-s", "0.05"],
                            stderr=subprocess.PIPE, text=True,
                            # (SIGINT as a terminal gives it: an xdist worker ignores it)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = proc.stderr.readline()
        bridge_id = f"!{codec.node_for('0000000a'):08x}"
        assert first.startswith("bridge: pollen node 0000000a <-> Meshtastic channel LongFast on"
                                f" 127.0.0.1:{mosquitto.port} (msh/EU_868/2/e/LongFast/+), as node {bridge_id}")
        gw.publish(gateway_envelope(ANNA, 7, TEXT, "hello from the mill".encode()))
        cmd = node.commands.get(timeout=10)
        while cmd.get("cmd") != "send":
            cmd = node.commands.get(timeout=10)
        assert cmd["text"] == "\u21c411223344-7 !11223344: hello from the mill"
        gw.publish(b"junk")
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=10)[1]
    finally:
        proc.kill()
        gw.close()
        node.unplug()
    stopped = [line for line in rest.splitlines() if line.startswith("bridge stopped:")]
    assert stopped and "to_pollen 1" in stopped[0] and "mqtt_texts 1" in stopped[0] \
        and "mqtt_undecodable 1" in stopped[0], rest
    assert "not a protobuf" in rest


def test_command_broker_not_there(tmp_path):
    node = FakeConsoleNode(tmp_path).plug()
    r = subprocess.run([POLLEN, "bridge", "meshtastic", "--port", node.path, "--mqtt", "mqtt://127.0.0.1:1",
                        "--channel", CH, "--outbox", str(tmp_path / "o.db")],
                       capture_output=True, text=True, timeout=30)
    node.unplug()
    assert r.returncode == 1 and r.stderr.startswith("pollen: --mqtt mqtt://127.0.0.1:1: cannot reach"), r.stderr
