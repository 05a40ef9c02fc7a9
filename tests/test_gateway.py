"""`pollen gateway` against a real Mosquitto broker (the `mosquitto` fixture in
conftest.py) and an emulated mesh of real MicroPython nodes."""
import json
import queue
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from pollen_controller.emulation import Emulation
from pollen_controller.gateway import Gateway, GatewayError, check_send
from pollen_controller.node_link import ProcessLink
from pollen_controller.topology import line

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
FAST = {"beacon_interval_ms": 1500, "neighbour_expiry_ms": 20000}


class Subscriber:
    """A persistent-session QoS 1 subscriber: what it got, in order."""

    def __init__(self, broker, topic, name="test-sub"):
        self.got = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, clean_session=False)
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.c.on_message = self._message
        self.c.reconnect_delay_set(0.2, 2)
        self.c.connect_async("127.0.0.1", broker.port)
        self.c.loop_start()

    def _message(self, c, u, m):
        try:
            self.got.put((m.topic, json.loads(m.payload)))
        except ValueError:
            self.got.put((m.topic, {"raw": m.payload}))

    def wait(self, pred, timeout_s=20):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            try:
                t, body = self.got.get(timeout=0.2)
            except queue.Empty:
                continue
            if pred(t, body):
                return t, body
        raise AssertionError("nothing matching arrived")

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def publish(broker, topic, payload):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    c.publish(topic, payload, qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


@pytest.fixture
def mesh(tmp_path):
    topo = line(3)
    with Emulation(topo, tmp_path / "mesh", KEY, node_settings=FAST) as emu:
        assert emu.wait_started() == []
        time.sleep(3)
        yield emu, sorted(topo.node_ids)


def start_gateway(emu, node, broker, tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    gw = Gateway(ProcessLink(emu.nodes[node]), broker.url, "test", tmp_path / "outbox.db",
                 status_interval_s=3600)
    stop = threading.Event()
    t = threading.Thread(target=gw.run, args=(stop,), daemon=True)
    t.start()
    return gw, stop, t


def received_by(node, text, timeout_s=20):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            ev = node.events.get(timeout=0.2)
        except queue.Empty:
            continue
        if ev.get("event") == "received" and ev.get("text") == text:
            return ev
    raise AssertionError(f"node never received {text!r}")


def test_uplink_downlink_and_a_malformed_send(mosquitto, mesh, tmp_path):
    emu, ids = mesh
    sub = Subscriber(mosquitto, "pollen/test/#")
    gw, stop, t = start_gateway(emu, ids[0], mosquitto, tmp_path)
    try:
        assert gw.connected.wait(10)
        # uplink: a post from the far end of the mesh
        emu.nodes[ids[-1]].command({"cmd": "send", "to": "all", "text": "hello broker"})
        topic, body = sub.wait(lambda t, b: b.get("text") == "hello broker")
        assert topic == f"pollen/test/{ids[-1]:08x}/message"
        assert body["kind"] == "post" and body["from"] == f"{ids[-1]:08x}" and body["hops"] == 1
        assert body["uid"] == f"{ids[-1]:08x}-{body['id']}" and body["gateway"] == f"{ids[0]:08x}"
        # downlink: from the broker into the mesh, to the far node
        publish(mosquitto, "pollen/test/send",
                json.dumps({"to": f"{ids[-1]:08x}", "text": "from the broker"}))
        ev = received_by(emu.nodes[ids[-1]], "from the broker")
        assert ev["from"] == f"{ids[0]:08x}" and ev["kind"] == "msg"
        # a malformed payload: an error on the errors topic, nothing sent, gateway goes on
        publish(mosquitto, "pollen/test/send", b"{not json")
        topic, body = sub.wait(lambda t, b: t == "pollen/test/errors")
        assert body["error"] == "payload is not JSON" and body["payload"] == "{not json"
        publish(mosquitto, "pollen/test/send", json.dumps({"to": "all", "text": "x" * 300}))
        topic, body = sub.wait(lambda t, b: t == "pollen/test/errors")
        assert "'text'" in body["error"] and "231" in body["error"]
        publish(mosquitto, "pollen/test/send", json.dumps({"to": "all", "text": "still here"}))
        received_by(emu.nodes[ids[-1]], "still here")
        assert t.is_alive()
    finally:
        stop.set()
        t.join(5)
        sub.close()


def test_broker_away_at_start_and_restarted_nothing_lost_or_doubled(mosquitto, mesh, tmp_path):
    emu, ids = mesh
    sub = Subscriber(mosquitto, "pollen/test/+/message")
    time.sleep(0.5)   # the subscriber's persistent session is on the broker
    sub.close()
    mosquitto.stop()  # the broker is away when the gateway starts
    gw, stop, t = start_gateway(emu, ids[0], mosquitto, tmp_path)
    heard = []  # what the gateway's node received, in its order (the mesh may reorder posts)
    uplink = gw._uplink
    gw._uplink = lambda ev: (heard.append(ev.get("text")), uplink(ev))
    try:
        far = emu.nodes[ids[-1]]
        texts = [f"buffered {k}" for k in range(4)]
        for text in texts[:2]:
            far.command({"cmd": "send", "to": "all", "text": text})
            time.sleep(1.0)
        mosquitto.start()  # back; then gone again in the middle of traffic
        for text in texts[2:]:
            far.command({"cmd": "send", "to": "all", "text": text})
            time.sleep(1.0)
        mosquitto.restart()
        more = [f"after restart {k}" for k in range(3)]
        for text in more:
            far.command({"cmd": "send", "to": "all", "text": text})
            time.sleep(1.0)
        sub = Subscriber(mosquitto, "pollen/test/+/message")
        got = []
        end = time.monotonic() + 40
        while time.monotonic() < end and len({b["uid"] for b in got}) < len(texts + more):
            try:
                got.append(sub.got.get(timeout=0.5)[1])
            except queue.Empty:
                pass
        arrived = [b["text"] for b in got]
        assert sorted(set(arrived)) == sorted(texts + more), arrived   # nothing lost
        assert len(arrived) == len(set(arrived)), arrived              # nothing doubled
        assert arrived == [x for x in heard if x in arrived]           # in the order heard
        assert gw.outbox.pending() == [] or t.is_alive()
    finally:
        stop.set()
        t.join(5)
        sub.close()


def test_send_payloads_are_checked():
    assert check_send(b'{"to": "all", "text": "hi"}') == {"cmd": "send", "to": "all", "text": "hi"}
    for bad, word in ((b"[]", "object"), (b'{"text": ""}', "'text'"),
                      (b'{"to": "zz", "text": "x"}', "'to'"), (b"\xff", "JSON")):
        with pytest.raises(GatewayError, match=word):
            check_send(bad)


def test_two_meshes_joined_through_one_broker_without_loops_or_doubles(mosquitto, tmp_path):
    # mesh A: nodes 0x101..0x103; mesh B: 0x201..0x203; a gateway in each
    a_topo, b_topo = line(3, first_id=0x101), line(3, first_id=0x201)
    with Emulation(a_topo, tmp_path / "a", KEY, node_settings=FAST) as a, \
            Emulation(b_topo, tmp_path / "b", KEY, node_settings=FAST) as b:
        assert a.wait_started() == [] and b.wait_started() == []
        time.sleep(3)
        a_ids, b_ids = sorted(a_topo.node_ids), sorted(b_topo.node_ids)
        gw_a, stop_a, t_a = start_gateway(a, a_ids[0], mosquitto, tmp_path / "ga")
        gw_b, stop_b, t_b = start_gateway(b, b_ids[0], mosquitto, tmp_path / "gb")
        try:
            assert gw_a.connected.wait(10) and gw_b.connected.wait(10)
            a.nodes[a_ids[-1]].command({"cmd": "send", "to": "all", "text": "market at noon"})
            got = received_by(b.nodes[b_ids[-1]], f"\u21c4{a_ids[-1]:08x} market at noon", 30)
            assert got["from"] == f"{b_ids[0]:08x}"  # posted in mesh B by B's gateway node
            b.nodes[b_ids[-1]].command({"cmd": "send", "to": "all", "text": "bring apples"})
            received_by(a.nodes[a_ids[-1]], f"\u21c4{b_ids[-1]:08x} bring apples", 30)
            time.sleep(8)  # time for any loop or double to show
            assert gw_a.stats["bridged"] == 1 and gw_b.stats["bridged"] == 1
            # nothing came back: mesh A never got its own post bridged back to it
            back = [e for e in _drain(a.nodes[a_ids[1]]) if "market at noon" in e.get("text", "")
                    and e["text"].startswith("\u21c4")]
            assert back == []
        finally:
            stop_a.set()
            stop_b.set()
            t_a.join(5)
            t_b.join(5)


def _drain(node):
    out = []
    while True:
        try:
            out.append(node.events.get_nowait())
        except queue.Empty:
            return out
