"""`pollen gateway`: an attached node's mesh and an MQTT broker, bridged with
paho-mqtt. Topics and payloads (JSON) are documented in docs/gateway.md:

  pollen/<network>/<node>/message   up: a post or message a node sent, as the
                                    gateway's node received it
  pollen/<network>/<node>/status    up: the gateway node's status
  pollen/<network>/send             down: {"to": "all" | node id, "text": ...}
  pollen/<network>/errors           what the gateway refused, and why

Uplink goes through an outbox in SQLite first (written before anything is
published, removed only when the broker acknowledged it at QoS 1), so nothing
the node heard is lost while the broker is away or the gateway restarts; it is
published in order. Each uplink carries a `uid` (origin node and message id):
a subscriber that sees the same uid twice (QoS 1 is at least once) drops it.
"""
from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

_MAX_TEXT_BYTES = 231
# A post another gateway bridged into this mesh starts with this mark and the
# id of the node that first posted it: such posts are published (for
# monitoring) but never bridged again, so nothing loops between meshes.
BRIDGE_MARK = "\u21c4"
_SEEN_UIDS = 1024


class GatewayError(ValueError):
    pass


def parse_mqtt_url(url: str) -> tuple[str, int, bool]:
    u = urlparse(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise GatewayError(f"--mqtt: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], got {url!r}")
    tls = u.scheme == "mqtts"
    try:
        port = u.port or (8883 if tls else 1883)
    except ValueError:
        raise GatewayError(f"--mqtt: the port in {url!r} is not a number 1..65535") from None
    return u.hostname, port, tls


class Outbox:
    """Uplink messages waiting for the broker's acknowledgement, in SQLite."""

    def __init__(self, path: Path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(path), check_same_thread=False, timeout=5)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                            " topic TEXT NOT NULL, payload TEXT NOT NULL)")
            self.db.commit()
        except sqlite3.DatabaseError as e:
            raise GatewayError(f"outbox {path}: {e} (move the file away to start a new one)") from None
        self.lock = threading.Lock()

    def add(self, topic: str, payload: str) -> int:
        with self.lock:
            cur = self.db.execute("INSERT INTO outbox (topic, payload) VALUES (?, ?)", (topic, payload))
            self.db.commit()
            return cur.lastrowid

    def pending(self) -> list[tuple[int, str, str]]:
        with self.lock:
            return list(self.db.execute("SELECT seq, topic, payload FROM outbox ORDER BY seq"))

    def done(self, seq: int):
        with self.lock:
            self.db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self.db.commit()

    def close(self):
        with self.lock:
            self.db.close()


def check_send(payload: bytes) -> dict:
    """A downlink payload -> the node's send command; GatewayError names what is wrong."""
    try:
        d = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise GatewayError("payload is not JSON") from None
    if not isinstance(d, dict):
        raise GatewayError("payload: expected a JSON object {\"to\": ..., \"text\": ...}")
    text = d.get("text")
    if not isinstance(text, str) or not text:
        raise GatewayError("field 'text': expected a non-empty string")
    if len(text.encode()) > _MAX_TEXT_BYTES:
        raise GatewayError(f"field 'text': {len(text.encode())} bytes; at most {_MAX_TEXT_BYTES} fit a frame")
    to = d.get("to", "all")
    if to != "all":
        ok = isinstance(to, str) and len(to) == 8
        try:
            ok = ok and 0 < int(to, 16) < 0xFFFFFFFF
        except ValueError:
            ok = False
        if not ok:
            raise GatewayError(f"field 'to': expected \"all\" or a node id of 8 hex digits, got {to!r}")
    return {"cmd": "send", "to": to, "text": text}


class Gateway:
    def __init__(self, link, mqtt_url: str, network: str, outbox_path: Path,
                 username: str | None = None, password: str | None = None,
                 status_interval_s: float = 60.0, log=None):
        import paho.mqtt.client as mqtt

        self.link = link
        self.host, self.port, tls = parse_mqtt_url(mqtt_url)
        self.network = network
        self.log = log or (lambda s: None)
        self.status_interval_s = status_interval_s
        st = link.ask({"cmd": "status"}, "status")
        self.node = st["id"]
        self.prefix = f"pollen/{network}"
        self.outbox = Outbox(outbox_path)
        self.down: queue.Queue = queue.Queue()
        self.inflight: dict[int, int] = {}   # paho mid -> outbox seq
        self.queued: set[int] = set()        # outbox seqs handed to paho
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.stats = {"up": 0, "acked": 0, "down": 0, "refused": 0, "bridged": 0}
        self.bridged: dict[str, None] = {}  # uids already bridged in (ordered: oldest first)
        # a persistent session: the broker keeps our subscription and what
        # was published to it while we were away
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"pollen-gw-{network}-{self.node}",
                                  clean_session=False)
        if username:
            self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set()
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    # ---- MQTT side (paho's thread) -------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.log(f"broker refused the connection: {reason_code}")
            return
        client.subscribe(f"{self.prefix}/send", qos=1)
        client.subscribe(f"{self.prefix}/+/message", qos=1)  # other meshes' posts
        self.connected.set()
        self.log(f"connected to {self.host}:{self.port}")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        # paho keeps its unacknowledged messages in memory and sends them
        # again on reconnect; the outbox has them too, should we restart
        self.log(f"broker connection lost ({reason_code}); reconnecting")

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self.lock:
            seq = self.inflight.pop(mid, None)
        if seq is not None:
            self.outbox.done(seq)
            self.queued.discard(seq)
            self.stats["acked"] += 1

    def _on_message(self, client, userdata, msg):
        self.down.put((msg.topic, msg.payload))

    # ---- running ----------------------------------------------------------------

    def run(self, stop: threading.Event):
        try:
            self.client.connect_async(self.host, self.port, keepalive=30)
        except OSError as e:
            raise GatewayError(f"--mqtt {self.host}:{self.port}: {e}") from None
        self.client.loop_start()
        next_status = 0.0
        try:
            while not stop.is_set():
                self._flush_outbox()
                self._downlink()
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + self.status_interval_s
                    self.link.command({"cmd": "status", "ref": "gateway"})
                try:
                    ev = self.link.events.get(timeout=0.1)
                except queue.Empty:
                    self.link._check_alive()
                    continue
                self._uplink(ev)
        finally:
            self.client.loop_stop()
            self.client.disconnect()
            self.outbox.close()

    def _uplink(self, ev: dict):
        kind = ev.get("event")
        if kind == "received":
            body = {k: ev[k] for k in ("kind", "from", "to", "id", "text", "hops", "rssi_dbm", "snr_db")
                    if k in ev}
            body["uid"] = f"{ev['from']}-{ev['id']}"
            text = ev.get("text", "")
            if text.startswith(BRIDGE_MARK):  # bridged in by a gateway: never out again
                body["bridged"] = True
                first = text[1:].split(" ", 1)[0]
                if len(first) == 8:  # the node that first posted it
                    body["uid"] = f"{first}-bridged-{ev['id']}"
            topic = f"{self.prefix}/{ev['from']}/message"
        elif kind == "status":
            body = {k: v for k, v in ev.items() if not k.startswith("_") and k not in ("event", "ref")}
            topic = f"{self.prefix}/{self.node}/status"
        elif kind == "error" and ev.get("ref", "").startswith("down"):
            self._refuse(ev.get("error", "the node refused it"), ev.get("ref"))
            return
        else:
            return
        body["gateway"] = self.node
        body["t"] = round(time.time(), 3)
        self.outbox.add(topic, json.dumps(body))
        self.stats["up"] += 1

    def _flush_outbox(self):
        # hand paho what it does not have yet, in order (it queues while disconnected)
        for seq, topic, payload in self.outbox.pending():
            if seq in self.queued:
                continue
            with self.lock:
                info = self.client.publish(topic, payload, qos=1)
                self.inflight[info.mid] = seq
            self.queued.add(seq)

    def _downlink(self):
        while True:
            try:
                topic, payload = self.down.get_nowait()
            except queue.Empty:
                return
            if topic != f"{self.prefix}/send":
                self._bridge_in(payload)
                continue
            try:
                cmd = check_send(payload)
            except GatewayError as e:
                self._refuse(str(e), None, payload)
                continue
            self.stats["down"] += 1
            cmd["ref"] = f"down{self.stats['down']}"
            self.link.command(cmd)

    def _bridge_in(self, payload: bytes):
        # A post another gateway heard in its mesh: post it in ours, once.
        try:
            body = json.loads(payload)
            uid, text, kind, origin = body["uid"], body["text"], body["kind"], body["from"]
        except (ValueError, KeyError, TypeError):
            return  # not an uplink of ours; the errors topic is for sends
        if body.get("gateway") == self.node or kind != "post" or body.get("bridged"):
            return  # our own, a message for one node, or bridged already
        if uid in self.bridged:
            return  # heard by two gateways over there: once is enough
        self.bridged[uid] = None
        if len(self.bridged) > _SEEN_UIDS:
            del self.bridged[next(iter(self.bridged))]
        text = f"{BRIDGE_MARK}{origin} {text}"
        while len(text.encode()) > _MAX_TEXT_BYTES:
            text = text[:-1]
        self.stats["bridged"] += 1
        self.stats["down"] += 1
        self.link.command({"cmd": "send", "to": "all", "text": text, "ref": f"down{self.stats['down']}"})

    def _refuse(self, error: str, ref=None, payload: bytes | None = None):
        self.stats["refused"] += 1
        body = {"error": error, "gateway": self.node, "t": round(time.time(), 3)}
        if payload is not None:
            body["payload"] = payload[:200].decode(errors="replace")
        self.log(f"refused: {error}")
        self.outbox.add(f"{self.prefix}/errors", json.dumps(body))
