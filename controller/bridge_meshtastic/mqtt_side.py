"""The Meshtastic side of the bridge through an MQTT broker instead of a
device: the channel as Meshtastic gateways uplink it (docs/meshtastic.md,
"MQTT"). mqtt_codec.py reads and writes the envelopes; this holds the
broker connection (gateway/mqtt.py's paho-mqtt client: reconnected after
1, 2, 4 .. 30 s) and what the broker said.

It has what bridge.py asks of a side (side.py): `up`, `poll()`,
`send(text, channel, to, ref)` and `confirmed(packet_id)`, `short_name`,
`num`, `stats["connects"]`, `close()`; texts arrive through `on_text` on
paho's thread. A text is confirmed once the broker acknowledged its
publication (QoS 1). The same outbox row handed again (the broker went
before acknowledging it) goes out with the same packet id, so a Meshtastic
node that gets both keeps one (the firmware drops a packet whose sender
and id it has seen: src/mesh/PacketHistory.cpp).

The bridge's own node info ("pollen bridge ID", relay.bridge_name) goes out
when it connects and every 3 hours; other bridges on the broker learn of it
from that (on_bridge(num, pollen_id)), and each answers a newcomer's with
its own, so bridges started together know of each other before any text
(docs/meshtastic.md, "No loops, no doubles").
"""
from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path

from pollen_controller.bridge_meshtastic import mqtt_codec as codec
from pollen_controller.bridge_meshtastic.relay import RateLimit, bridge_in_name
from pollen_controller.errors import MeshtasticError
from pollen_controller.gateway.bridge import Recent
from pollen_controller.gateway.mqtt import mqtt_client, parse_mqtt_url, probe_broker

NODEINFO_EVERY_S = 3 * 3600   # as a node's own (src/mesh/Default.h default_node_info_broadcast_secs)
_SEEN = 1024                  # (sender, packet id) remembered against duplicate uplinks
_NODES = 4096                 # nodes whose names are kept
_CONNECT_WAIT_S = 5.0         # at start, for the broker's answer
_SAY_EVERY = 100              # a kind of drop said on stderr the first time, then every 100th
_BRIDGES = 256                # other bridges' node infos remembered
_RESTARTED_S = 2.5 * 3600     # a bridge's node info sooner than this after its last: it restarted
DROPS = ("undecodable", "not_envelope", "too_big", "other_channel", "pki", "wrong_key", "plaintext",
         "not_utf8", "duplicate", "own", "direct")
_NO_KEY = ("its public key is not known: its node info has not been heard on the channel"
           " (a node sends it every 3 hours)")


def topics(root: str, region: str | None, channel: str) -> tuple[str, str]:
    """(where to subscribe, where to publish): ROOT[/REGION]/2/e/CHANNEL/+
    (and the /2/c/ of firmware before 2.3), ROOT[/REGION]/2/e/CHANNEL/."""
    base = "/".join(p for p in (root.strip("/"), region) if p)
    return f"{base}/2/e/{channel}/+", f"{base}/2/e/{channel}/"


class MqttSide:
    def __init__(self, url: str, channel: str, key: bytes, num: int | None = None,
                 root: str = "msh", region: str | None = None, username=None, password=None,
                 long_name: str = "pollen bridge", short_name: str = "PLN", log=None,
                 nodeinfo_every_s: float = NODEINFO_EVERY_S, reconnect_s: tuple = (1, 30),
                 key_file: Path | None = None):
        self.url = url
        self.host, self.port, self.tls = parse_mqtt_url(url)
        self.where = f"{self.host}:{self.port}"
        self.channel, self.key = codec.check_channel(channel), key
        self.num = num
        self.root, self.region = root, region
        self.subscribe_to, self.publish_to = topics(root, region, channel)
        # direct messages: PKI-encrypted to a node's own key, on ROOT/2/e/PKI/ (mqtt_codec)
        self.pki_subscribe, self.pki_publish = topics(root, region, codec.PKI_CHANNEL)
        self.private_key = load_key(key_file)
        self.public_key = _public_key(self.private_key)
        self.shared = Recent(256)           # (node num, its public key) -> our direct-message key
        self.refusals = Recent(64)          # packet id -> why it was not published
        self.username, self.password = username, password
        self.long_name, self.short = long_name, short_name
        self.nodeinfo_every_s = nodeinfo_every_s
        self.reconnect_s = reconnect_s       # paho's back-off, first and longest
        self.log = log or (lambda s: None)
        self.on_text = None
        self.client = None
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.answered = threading.Event()    # the broker took or refused the first connection
        self.subscribed = threading.Event()  # the broker acknowledged the subscription
        self.connect_refused = None          # the broker's reason when it refused us
        self.acked = Recent(_SEEN)          # mids the broker acknowledged
        self.mids: dict[int, int] = {}       # packet id -> mid of its last publication
        self.ids = Recent(64)               # outbox ref -> packet id (the same id when handed again)
        self.seen = Recent(_SEEN)           # (from, id) of packets taken
        self.nodes = Recent(_NODES)         # node number -> (short name, long name)
        self.next_nodeinfo = 0.0
        self.on_bridge = None                # set by the bridge: (num, pollen id) of another bridge
        self.bridges = Recent(_BRIDGES)      # num of another bridge -> when its node info came
        self.answer_due = 0                  # a newcomer's node info came (its id): ours answers it
        self.answers = RateLimit(0.1, 3)     # answers: bursts of 3, then one in 10 minutes
        self.unreachable = False
        self.stats = {"connects": 0, "lost": 0, "heard": 0, "texts": 0, "names": 0,
                      **{k: 0 for k in DROPS}, "ignored": 0}
        self.ignored: dict[str, int] = {}    # port name -> packets of that port not bridged

    @property
    def node_id(self) -> str:
        return f"!{self.num:08x}" if self.num is not None else "?"

    # ---- connecting ---------------------------------------------------------------

    def open(self):
        """Connect now; GatewayError or MeshtasticError naming the broker if it fails."""
        if self.num is None:
            raise ValueError("MqttSide.num is not set")
        probe_broker(self.url)
        self.client = mqtt_client(f"pollen-mt-{self.channel}-{self.num:08x}", False,
                                  self.username, self.password, self.tls)
        self.client.reconnect_delay_set(*self.reconnect_s)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        end = time.monotonic() + _CONNECT_WAIT_S
        if not self.answered.wait(_CONNECT_WAIT_S) or self.connect_refused \
                or not self.subscribed.wait(max(0.0, end - time.monotonic())):
            why = self.connect_refused or f"no answer within {_CONNECT_WAIT_S:g} s"
            self.close()
            raise MeshtasticError(f"--mqtt {self.url}: the broker did not take the connection ({why})")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.connect_refused = str(reason_code)
            self.log(f"broker {self.where} refused the connection: {reason_code}")
            self.answered.set()
            return
        self.connect_refused = None
        # QoS 1 and a persistent session: the broker keeps what the channel
        # says while the bridge is away (up to its max_queued_messages)
        client.subscribe([(self.subscribe_to, 1), (self.subscribe_to.replace("/2/e/", "/2/c/"), 1),
                          (self.pki_subscribe, 1)])
        self.unreachable = False
        self.stats["connects"] += 1
        if self.stats["connects"] > 1:
            self.log(f"broker {self.where} is back; subscribed to {self.subscribe_to}")
        self.connected.set()
        self.answered.set()

    def _on_connect_fail(self, client, userdata):
        if not self.unreachable:
            self.unreachable = True
            self.log(f"cannot reach the broker at {self.where}; trying again every 1..30 s"
                     f" (texts for Meshtastic wait in the outbox)")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.connected.is_set():
            self.stats["lost"] += 1
            self.log(f"broker {self.where}: connection lost ({reason_code}); texts for it wait;"
                     f" reconnecting every 1..30 s")
        self.connected.clear()

    @property
    def up(self) -> bool:
        return self.connected.is_set()

    def poll(self):
        """The bridge's loop: the bridge's own node info, every few hours."""
        now = time.monotonic()
        if self.up and (now >= self.next_nodeinfo
                        or (self.answer_due and self.answers.take(now))):
            reply_id, self.answer_due = self.answer_due, 0
            self.next_nodeinfo = now + self.nodeinfo_every_s
            self.client.publish(self.publish_to + self.node_id,
                                codec.nodeinfo_envelope(self.channel, self.key, self.num,
                                                        _packet_id(), self.long_name, self.short,
                                                        reply_id=reply_id, public_key=self.public_key),
                                qos=1)

    def drop(self, why: str):
        # paho sends what the broker did not acknowledge again by itself,
        # once connected again; the bridge hands the text again too (same id)
        self.log(f"broker {self.where}: {why}; the text is published again")

    # ---- texts to Meshtastic ----------------------------------------------------------

    def send(self, text: str, channel, to_num: int | None = None, ref=None) -> int | None:
        if not self.up:
            return None
        with self.lock:
            packet_id = self.ids.get(ref) if ref is not None else None
            if packet_id is None:
                packet_id = _packet_id()
                if ref is not None:
                    self.ids.add(ref, packet_id)
        if to_num is None:
            payload, topic = codec.text_envelope(self.channel, self.key, self.num, packet_id, text), \
                self.publish_to
        else:                                  # a direct message: PKI, to its key
            shared = self._shared(to_num)
            if shared is None:
                self.refusals.add(packet_id, "PKI_UNKNOWN_PUBKEY")
                return packet_id
            payload, topic = codec.pki_text_envelope(shared, self.num, to_num, packet_id, text), \
                self.pki_publish
        info = self.client.publish(topic + self.node_id, payload, qos=1)
        with self.lock:
            self.mids[packet_id] = info.mid
            while len(self.mids) > 64:
                del self.mids[next(iter(self.mids))]
        return packet_id

    def confirmed(self, packet_id: int) -> bool:
        with self.lock:
            mid = self.mids.get(packet_id)
            return mid is not None and mid in self.acked

    def refused(self, packet_id: int) -> str | None:
        # a direct message whose destination's key is not known; (a broker
        # that refuses a publication drops the connection)
        return self.refusals.get(packet_id)

    def cannot_reach(self, num: int) -> str | None:
        """Why a direct message to node `num` cannot be sent, or None."""
        return None if self._shared(num) is not None else _NO_KEY

    def _shared(self, num: int) -> bytes | None:
        # the key of direct messages between our node and `num` (its public
        # key from its node info), or None
        known = self.nodes.get(num)
        public_key = known[2] if known else b""
        if not public_key:
            return None
        with self.lock:
            shared = self.shared.get((num, public_key))
            if shared is None:
                shared = codec.pki_shared_key(self.private_key, public_key)
                if shared is not None:
                    self.shared.add((num, public_key), shared)
        return shared

    def _pki_key(self, from_num: int, to: int) -> bytes | None:
        return self._shared(from_num) if to == self.num else None

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self.lock:
            self.acked.add(mid)

    # ---- what the broker brings ----------------------------------------------------------

    def _on_message(self, client, userdata, msg):
        heard = codec.read_envelope(msg.payload, self.channel, self.key, self._pki_key)
        self.stats["heard"] += 1
        if heard.gateway == self.node_id or (heard.why is None and heard.from_num == self.num):
            self._drop("own", msg.topic, heard)      # our own publication, back from the broker
            return
        if heard.why is not None:
            self._drop(heard.why, msg.topic, heard)
            return
        uid = (heard.from_num, heard.packet_id)
        if uid in self.seen:                          # the same packet from another gateway
            self._drop("duplicate", msg.topic, heard)
            return
        self.seen.add(uid)
        if heard.kind == "bridge":                   # a bridge on a device announcing itself
            self._bridge(heard.from_num, heard.long, heard)
            return
        if heard.kind == "user":
            self.nodes.add(heard.from_num, (heard.short, heard.long, heard.public_key))
            self.stats["names"] += 1
            pollen_id = bridge_in_name(heard.long)
            if pollen_id is not None:
                self._bridge(heard.from_num, pollen_id, heard)
            return
        if heard.to != codec.BROADCAST and not heard.pki:
            self._drop("direct", msg.topic, heard)   # (to one node with the channel's key: legacy)
            return
        self.stats["texts"] += 1
        if self.on_text is not None:
            self.on_text({"from": heard.from_num, "to": heard.to, "id": heard.packet_id,
                          "channel": self.channel, "decoded": {"text": heard.text}}, self)

    def _bridge(self, num: int, pollen_id: str, heard):
        # another bridge's node info (or announce): it goes into the hold-back
        # ranks; ours answers it (naming it: reply_id) when it is new here or
        # restarted (it may not know of us), never an answer itself
        now = time.monotonic()
        last = self.bridges.get(num)
        self.bridges.add(num, now)
        if not heard.reply_id and (last is None or now - last < _RESTARTED_S):
            self.answer_due = heard.packet_id
        if last is None:
            self.log(f"another bridge on the channel: !{num:08x} (pollen node {pollen_id})")
        if self.on_bridge is not None:
            self.on_bridge(num, pollen_id, False)   # (this side answers with its node info)

    def _drop(self, why: str, topic: str, heard):
        if why.startswith("port:"):
            port = why[5:]
            self.ignored[port] = n = self.ignored.get(port, 0) + 1
            self.stats["ignored"] += 1
            if n == 1:
                self.log(f"{topic}: {port} packets are not bridged (only texts); counted")
            return
        self.stats[why] += 1
        n = self.stats[why]
        if why not in ("duplicate", "own") and (n == 1 or n % _SAY_EVERY == 0):
            sender = f" from !{heard.from_num:08x}" if heard.from_num else ""
            self.log(f"{topic}: a packet{sender} dropped: {_WHY[why]} ({n} so far)")

    def short_name(self, num: int) -> str | None:
        known = self.nodes.get(num)
        return known[0] if known else None

    def report(self) -> dict:
        """The counters said when the bridge stops."""
        out = {f"mqtt_{k}": v for k, v in self.stats.items()}
        out.update({f"mqtt_ignored_{port}": n for port, n in sorted(self.ignored.items())})
        return out

    def close(self):
        client, self.client = self.client, None
        if client is not None:
            client.disconnect()   # first: paho's loop then ends at once, not after its 1 s select
            client.loop_stop()


_WHY = {"undecodable": "not a protobuf", "not_envelope": "a protobuf but not a ServiceEnvelope with a packet",
        "too_big": "over the 256 bytes a packet holds",
        "other_channel": "its channel_id names another channel",
        "pki": "a direct message encrypted to another node's key (PKI), or to ours by a node"
               " whose key is not known: unreadable",
        "wrong_key": "it does not decrypt with this channel's key",
        "plaintext": "unencrypted on a channel with a key (as the firmware refuses it)",
        "not_utf8": "a text that is not UTF-8",
        "direct": "a direct message with the channel's key (firmware 2.7.15 on drops these; direct"
                  " messages are PKI-encrypted)"}


def load_key(path: Path | None) -> bytes:
    """The bridge's own X25519 private key (32 bytes) from `path` (hex),
    made there (mode 0600) when the file is not there yet; a new one each
    run when path is None."""
    if path is None:
        return secrets.token_bytes(32)
    path = Path(path)
    try:
        key = bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        key = secrets.token_bytes(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex() + "\n")
        return key
    except ValueError:
        key = b""
    if len(key) != 32:
        raise MeshtasticError(f"{path}: not the bridge's key (64 hex digits); move it away and a"
                              f" new key is made")
    return key


def _public_key(private_key: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return X25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


def _packet_id() -> int:
    # random and non-zero, as the firmware's generatePacketId
    return secrets.randbits(32) or 1
