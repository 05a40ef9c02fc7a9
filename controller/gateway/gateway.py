"""`pollen gateway`: an attached node's mesh and an MQTT broker, bridged with
paho-mqtt. Topics and payloads (JSON) are documented in docs/gateway.md:

  pollen/<network>/<node>/message   up: a post or message a node sent, as the
                                    gateway's node received it
  pollen/<network>/<node>/status    up: the gateway node's status
  pollen/<network>/<node>/telemetry up: another node's status frame, as the
                                    gateway's node heard it
  pollen/<network>/send             down: {"to": "all" | node id, "text": ..., "ref": ...}
  pollen/<network>/send/outcome     up: what became of a send: sent, delivered
                                    or failed (outcomes.py), with its ref
  pollen/<network>/errors           what the gateway refused, and why

Both ways go through SQLite (store.py): an uplink is written to the
outbox before it is published and removed only when the broker acknowledged
it at QoS 1; a send is written to the inbox before the broker gets its
acknowledgement (paho's manual_ack: paho's thread hands it to ours, which
stores it and then acknowledges it; one the store refuses waits, not
acknowledged) and removed only when the node answered it. So nothing is
lost while the broker is away, the node's port is away (attached_node.py
opens it again), or the gateway restarts; uplink is published in order. Each
message carries a `uid` (origin node and message id): a subscriber that sees
the same uid twice (QoS 1 is at least once) drops it.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path

from pollen_controller.errors import GatewayError
from pollen_controller.gateway.attached_node import AttachedNode
from pollen_controller.gateway.bridge import (HOLD_S, SPREAD_S, STEP_S, BRIDGE_MARK, Bridging,
                                              is_node_id, parse_mark)
from pollen_controller.gateway.mqtt import mqtt_client, mqtt_json, parse_mqtt_url
from pollen_controller.gateway.outcomes import OUTCOME_KEY, Outcomes, check_ref, for_node
from pollen_controller.gateway.store import MAX_INBOX, MAX_OUTBOX, MAX_PERISHABLE, Store, is_locked

_MAX_TEXT_BYTES = 231
_HANDED = 100             # outbox rows paho holds at most (the rest wait on disk)
_SENDING = 4              # commands written to the node and not answered yet, at most
_ANSWER_TIMEOUT_S = 10.0  # a command unanswered this long is written again
_TAKEN = 1000             # messages from the broker held, not yet stored (so not acknowledged)
_RETRY_S = (1.0, 10.0)    # a message the store refused is tried again after 1 s, 2, 4 .. 10
MAX_PAYLOAD_BYTES = 4096  # a message from the broker: longer is refused, and only this much kept


def check_send(payload: bytes) -> dict:
    """A downlink payload -> the node's send command; GatewayError names what is wrong."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise GatewayError(f"payload: over {MAX_PAYLOAD_BYTES} bytes (a send is a short text)")
    try:
        d = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise GatewayError("payload is not JSON") from None
    if not isinstance(d, dict):
        raise GatewayError("payload: expected a JSON object {\"to\": ..., \"text\": ...}")
    text = d.get("text")
    if not isinstance(text, str) or not text:
        raise GatewayError("field 'text': expected a non-empty string")
    size = utf8_bytes(text)
    if size is None:
        raise GatewayError("field 'text': not valid Unicode (a lone \\ud800-\\udfff escape, half "
                           "of a pair)")
    if size > _MAX_TEXT_BYTES:
        raise GatewayError(f"field 'text': {size} bytes in UTF-8 ({len(text)} characters); "
                           f"at most {_MAX_TEXT_BYTES} bytes fit a frame")
    to = d.get("to", "all")
    if to != "all":
        ok = isinstance(to, str) and len(to) == 8
        try:
            ok = ok and 0 < int(to, 16) < 0xFFFFFFFF
        except ValueError:
            ok = False
        if not ok:
            raise GatewayError(f"field 'to': expected \"all\" or a node id of 8 hex digits, got {to!r}")
    problem = check_ref(d.get("ref"))
    if problem:
        raise GatewayError(problem)
    return {"cmd": "send", "to": to, "text": text}


def utf8_bytes(text: str) -> int | None:
    """How many bytes text takes in UTF-8 (what a frame carries); None if it
    cannot be encoded (a lone surrogate, as a JSON "\\ud83c" gives)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _down_seq(ref) -> int | None:
    # our commands to the node carry ref "down<inbox seq>"
    if isinstance(ref, str) and ref.startswith("down") and ref[4:].isdigit():
        return int(ref[4:])
    return None


def is_topic_level(name) -> bool:
    """A network name fits one MQTT topic level: text, not empty, no '/',
    '+', '#' or NUL."""
    return isinstance(name, str) and bool(name) and not any(c in name for c in "/+#\0")


class Gateway:
    def __init__(self, link, mqtt_url: str, network: str, outbox_path: Path,
                 username: str | None = None, password: str | None = None,
                 status_interval_s: float = 60.0, log=None,
                 bridge_timing_s: tuple[float, float, float] = (HOLD_S, STEP_S, SPREAD_S)):
        self.host, self.port, tls = parse_mqtt_url(mqtt_url)
        if not is_topic_level(network):
            raise GatewayError(f"--network: {network!r} cannot be a topic level (no '/', '+' or '#')")
        self.network = network
        self.log = log or (lambda s: None)
        self.status_interval_s = status_interval_s
        self.link = link
        self.attached = AttachedNode(link, self.log)
        self.prefix = f"pollen/{network}"
        self.store = Store(outbox_path)
        self.outbox, self.inbox = self.store.outbox, self.store.inbox
        self.lock = threading.Lock()
        # paho's thread and ours share these under self.lock, which is never
        # held while calling paho (paho calls on_publish holding its own lock)
        self.inflight: dict[int, int] = {}   # paho mid -> outbox seq
        self.early: set[int] = set()         # mids acknowledged before we knew their seq
        self.acked: list[int] = []           # outbox seqs acknowledged, to remove from the outbox
        self.handed: set[int] = set()        # outbox seqs paho has and the broker has not acknowledged
        self.last_handed = 0
        self.sending: dict[int, float] = {}  # inbox seq -> when it was written to the node
        # messages from the broker, handed over by paho's thread, not yet
        # stored and so not acknowledged: (connection, mid, qos, dup, topic, payload)
        self.taken: deque = deque()
        self.connection = 0                  # counts connections: an ack goes on its message's own
        self.kept_unacked: dict[tuple[int, bytes], None] = {}  # stored after its connection went
        self.direct: set[int] = set()        # mids of publications not from the outbox
        self.retry_at = 0.0                  # while the store refuses a message: when to try again
        self.retry_s = 0.0
        self.connected = threading.Event()
        self.stats = {"up": 0, "acked": 0, "down": 0, "refused": 0, "bridged": 0, "bridge_dropped": 0,
                      "telemetry": 0,
                      "dropped": 0, "node_away": 0}
        self.outcomes = Outcomes()
        self.unreachable = False             # the broker could not be reached: said once until it is
        self.stopping = False                # run() is ending: its own disconnect is no news
        self.bridging = Bridging(self.node, *bridge_timing_s)
        for uid, until_s in self.inbox.held(time.time()):  # held back when we stopped
            self.bridging.took(uid, until_s)
        # a persistent session: the broker keeps our subscription and what
        # was published to it while we were away
        self.client = mqtt_client(f"pollen-gw-{network}-{self.node}", False,
                                  username, password, tls, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    @property
    def node(self) -> str:
        """The gateway node's id (8 hex digits)."""
        return self.attached.id

    # ---- MQTT side (paho's thread) -------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.log(f"broker refused the connection: {reason_code}")
            return
        client.subscribe(f"{self.prefix}/send", qos=1)
        client.subscribe(f"{self.prefix}/+/message", qos=1)  # other meshes' posts
        self.connected.set()
        self.unreachable = False
        self.log(f"connected to {self.host}:{self.port}")

    def _on_connect_fail(self, client, userdata):
        if not self.unreachable:   # once per outage, not every try
            self.unreachable = True
            self.log(f"cannot reach the broker at {self.host}:{self.port}; trying again every "
                     f"1..30 s (the mesh's messages wait in {self.store.path})")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        with self.lock:
            self.connection += 1  # what it sent and we did not acknowledge, it sends again
        # paho keeps its unacknowledged messages in memory and sends them
        # again on reconnect; the outbox has them too, should we restart
        if not self.stopping:
            self.log(f"broker connection lost ({reason_code}); reconnecting")

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        # paho holds its own lock here: take ours only briefly, and leave
        # the outbox to the main loop (_flush_outbox)
        with self.lock:
            if mid in self.direct:
                self.direct.discard(mid)
                return
            seq = self.inflight.pop(mid, None)
            if seq is None:
                self.early.add(mid)  # acknowledged before publish() returned its mid
            else:
                self.acked.append(seq)

    def _on_message(self, client, userdata, msg):
        # paho's thread: hand it to ours (_take), which stores it and only
        # then acknowledges it (manual_ack): a send survives the node being
        # away, the store refusing a write for a while and the gateway restarting
        payload = msg.payload[:MAX_PAYLOAD_BYTES + 1]   # past the bound: refused (check_send) or ignored
        with self.lock:
            full = len(self.taken) >= _TAKEN
            if not full:
                self.taken.append((self.connection, msg.mid, msg.qos, msg.dup, msg.topic, payload))
        if full:  # not acknowledged: the broker sends it again when we next connect
            self.log(f"{msg.topic}: {_TAKEN} messages from the broker wait to be stored; not taken")

    def _take(self):
        # store what paho handed over, in order, and acknowledge each once it
        # is stored; while the store refuses one (another program holds the
        # file locked, the disk is full) it and those after it wait,
        # unacknowledged, and it is tried again after 1, 2, 4 .. 10 s
        if time.monotonic() < self.retry_at:
            return
        while True:
            with self.lock:
                if not self.taken:
                    return
                connection, mid, qos, dup, topic, payload = self.taken[0]
            if not (dup and (mid, payload) in self.kept_unacked):  # not stored already
                try:
                    if topic == f"{self.prefix}/send":
                        self._take_send(payload)
                    else:
                        self._bridge_in(payload)
                except sqlite3.Error as e:
                    self._not_stored(e, topic, payload)
                    return
            else:
                del self.kept_unacked[(mid, payload)]
            if self.retry_s:
                self.log(f"{topic}: stored now; going on")
            self.retry_s, self.retry_at = 0.0, 0.0
            with self.lock:  # paho takes no lock of its own in ack()
                self.taken.popleft()
                if connection == self.connection:
                    self.client.ack(mid, qos)
                elif qos:  # the broker sends it again (dup): acknowledged then, not stored twice
                    self.kept_unacked[(mid, payload)] = None
                    if len(self.kept_unacked) > _TAKEN:
                        del self.kept_unacked[next(iter(self.kept_unacked))]

    def _not_stored(self, e: sqlite3.Error, topic: str, payload: bytes):
        first = self.retry_s == 0
        self.retry_s = min(max(2 * self.retry_s, _RETRY_S[0]), _RETRY_S[1])
        self.retry_at = time.monotonic() + self.retry_s
        if not first:
            return
        why = f"another program holds {self.store.path} locked" if is_locked(e) else str(e)
        error = (f"could not keep a message from {topic}: {why} ({e}); not acknowledged,"
                 f" tried again every {_RETRY_S[0]:g}..{_RETRY_S[1]:g} s")
        self.log(error)
        # on the errors topic, but not through the outbox, which is what failed:
        # paho keeps it (in memory) until the broker has it
        body = {"error": error, "payload": payload[:200].decode(errors="replace"),
                "gateway": self.node, "t": round(time.time(), 3)}
        info = self.client.publish(f"{self.prefix}/errors", mqtt_json(body), qos=1)
        with self.lock:
            if info.mid in self.early:
                self.early.discard(info.mid)
            else:
                self.direct.add(info.mid)

    def _take_send(self, payload: bytes):
        try:
            cmd = check_send(payload)
        except GatewayError as e:
            self._refuse(str(e), payload)
            self._outcome(self.outcomes.invalid(payload, str(e)))   # with its ref, if any
            return
        try:
            ref = json.loads(payload).get("ref")
        except (ValueError, AttributeError):
            ref = None
        cmd[OUTCOME_KEY] = {"ref": ref}   # its outcome is published (outcomes.py)
        self._to_node(cmd, payload)

    def _bridge_in(self, payload: bytes):
        # A post another gateway heard in its mesh: post it in ours, once
        # (Bridging says whether, and how long to hold it back first).
        if len(payload) > MAX_PAYLOAD_BYTES:
            return  # no uplink of a gateway is this long
        try:
            body = json.loads(payload)
            text = body["text"]
        except (ValueError, KeyError, TypeError):
            return  # not an uplink of ours; the errors topic is for sends
        if not isinstance(text, str) or utf8_bytes(text) is None:
            return
        now = time.time()
        hold_s = self.bridging.offer(body, now)
        if hold_s is None:
            return
        text = f"{BRIDGE_MARK}{body['uid']} {text}"
        while len(text.encode()) > _MAX_TEXT_BYTES:
            text = text[:-1]
        if self._to_node({"cmd": "send", "to": "all", "text": text}, payload, now + hold_s, body["uid"]):
            self.stats["bridged"] += 1
        self.bridging.took(body["uid"], now + hold_s)  # (also when refused: not tried again)

    def _to_node(self, cmd: dict, payload: bytes, after_s: float = 0.0, uid: str | None = None) -> bool:
        if self.inbox.add(cmd, after_s, uid) is None:
            self._refuse(f"{MAX_INBOX} commands already wait for the gateway's node"
                         f"{'' if self.attached.up else ' (it is away)'}; refused", payload)
            return False
        self.stats["down"] += 1
        if not self.attached.up:
            self.log(f"the node is away: a send waits for it ({self.inbox.count} waiting)")
        return True

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
                self._take()
                self._downlink()
                if self.attached.up and time.monotonic() >= next_status:
                    next_status = time.monotonic() + self.status_interval_s
                    self.attached.command({"cmd": "status", "ref": "gateway"})
                for ev in self.attached.poll(0.1):
                    self._on_node_event(ev)
        finally:
            self.stopping = True   # the disconnect below is ours: not "lost; reconnecting"
            self.client.loop_stop()
            self.client.disconnect()
            self.store.close()

    def _on_node_event(self, ev: dict):
        kind = ev.get("event")
        down = _down_seq(ev.get("ref"))
        if kind == "received":
            self._uplink_message(ev)
        elif kind == "status" and is_node_id(ev.get("id")):
            self._heard_nodes(ev)
            self._publish(f"{self.prefix}/{self.node}/status", _fields(ev), perishable=True)
        elif kind == "telemetry":
            if not is_node_id(ev.get("id")):
                self.log(f"a telemetry event without a node id: ignored ({str(ev)[:80]})")
                return
            self.stats["telemetry"] += 1
            self._heard_nodes(ev)
            self._publish(f"{self.prefix}/{ev['id']}/telemetry", _fields(ev), perishable=True)
        elif kind == "sent" and down is not None:
            cmd = self.inbox.get(down) or {}
            self.sending.pop(down, None)
            self.inbox.done(down)
            self._outcome(self.outcomes.sent(cmd, ev))
        elif kind == "error" and down is not None:
            cmd = self.inbox.get(down) or {}
            self.sending.pop(down, None)
            self.inbox.done(down)
            error = ev.get("error") or "the node refused it"
            self._refuse(error, json.dumps({k: cmd[k] for k in ("to", "text") if k in cmd}).encode())
            self._outcome(self.outcomes.refused(cmd, error))
        elif kind == "delivered":
            self._outcome(self.outcomes.delivered(ev))
        elif kind == "expired":
            self._outcome(self.outcomes.expired(ev))
        elif kind == "_away":
            self.stats["node_away"] += 1
            self.sending.clear()  # unanswered: written again when the node is back
        elif kind in ("_back", "started"):
            if kind == "started":
                self.log(f"node {self.node} restarted")
            self.sending.clear()
            self.bridging.own = self.node  # (another board on the port: another node)
            self.bridging.heard_node(self.node)

    def _heard_nodes(self, ev: dict):
        # a status or telemetry event: that node and its neighbours are in our mesh
        self.bridging.heard_node(ev["id"])
        for n in ev.get("neighbours") or ():
            if isinstance(n, dict) and is_node_id(n.get("id")):
                self.bridging.heard_node(n["id"])

    def _uplink_message(self, ev: dict):
        if not (is_node_id(ev.get("from")) and isinstance(ev.get("id"), int)):
            self.log(f"a received event without from/id: ignored ({str(ev)[:80]})")
            return
        body = {k: ev[k] for k in ("kind", "from", "to", "id", "text", "hops", "rssi_dbm", "snr_db")
                if k in ev}
        body["uid"] = f"{ev['from']}-{ev['id']}"
        mark = parse_mark(ev.get("text"))
        if mark:  # bridged in by a gateway of this mesh: never out again
            body["bridged"] = True
            if mark[1]:
                body["bridged_uid"] = mark[1]
        for uid in self.bridging.heard(ev["from"], body["uid"], ev.get("text"), time.time()):
            try:  # heard here before its hold ended: in this mesh already
                if self.inbox.cancel(uid, time.time()):
                    self.stats["bridge_dropped"] += 1
            except sqlite3.Error as e:
                self.log(f"could not drop a post held back to bridge in ({uid}): {e}")
        self._publish(f"{self.prefix}/{ev['from']}/message", body)

    def _outcome(self, body: dict | None):
        if body is not None:
            self._publish(f"{self.prefix}/send/outcome", body)

    def _publish(self, topic: str, body: dict, perishable: bool = False):
        body["gateway"] = self.node
        body["t"] = round(time.time(), 3)
        dropped = self.outbox.add(topic, mqtt_json(body), perishable)
        self.stats["up"] += 1
        if dropped:
            before = self.stats["dropped"]
            self.stats["dropped"] += dropped
            if before // 100 != self.stats["dropped"] // 100 or before == 0:
                self.log(f"outbox full: {self.stats['dropped']} oldest publications dropped so far"
                         f" (bounds: {MAX_OUTBOX}, of them {MAX_PERISHABLE} status and telemetry)")

    def _flush_outbox(self):
        # remove what the broker acknowledged; hand paho the next
        # publications, in order, at most _HANDED at a time (it queues them
        # while disconnected; the rest wait on disk)
        with self.lock:
            acked, self.acked = self.acked, []
        if acked:
            self.outbox.done(*acked)
            self.handed.difference_update(acked)
            self.stats["acked"] += len(acked)
        room = _HANDED - len(self.handed)
        if room <= 0:
            return
        for seq, topic, payload in self.outbox.pending(after=self.last_handed, limit=room):
            info = self.client.publish(topic, payload, qos=1)
            with self.lock:
                if info.mid in self.early:
                    self.early.discard(info.mid)
                    self.acked.append(seq)
                else:
                    self.inflight[info.mid] = seq
            self.handed.add(seq)
            self.last_handed = seq

    def _downlink(self):
        # write the waiting commands to the node, at most _SENDING unanswered
        if not self.attached.up or (not self.sending and self.inbox.count == 0):
            return
        now = time.monotonic()
        for seq, t0 in list(self.sending.items()):
            if now - t0 > _ANSWER_TIMEOUT_S:
                del self.sending[seq]  # no answer: written again
        if len(self.sending) >= _SENDING:
            return
        for seq, cmd in self.inbox.pending(limit=2 * _SENDING, now_s=time.time()):
            if seq in self.sending:
                continue
            if len(self.sending) >= _SENDING:
                return
            cmd["ref"] = f"down{seq}"
            if not self.attached.command(for_node(cmd)):
                return
            self.sending[seq] = now

    def _refuse(self, error: str, payload: bytes | None = None):
        self.stats["refused"] += 1
        body = {"error": error}
        if payload is not None:
            body["payload"] = payload[:200].decode(errors="replace")
        self.log(f"refused: {error}")
        self._publish(f"{self.prefix}/errors", body)


def _fields(ev: dict) -> dict:
    return {k: v for k, v in ev.items() if not k.startswith("_") and k not in ("event", "ref")}
