"""`pollen bridge meshtastic`: texts between a pollen node's mesh and one
Meshtastic channel, and direct messages between mapped ids
(docs/meshtastic.md). relay.py decides what crosses and how it is written;
the Meshtastic side (side.py says what the loop asks of it) is a device
(device.py) or the channel on an MQTT broker (mqtt_side.py);
gateway/attached_node.py holds the pollen node; gateway/store.py the
queues, in one SQLite file:

  outbox   texts for the Meshtastic side (topic "meshtastic", payload JSON
           {"text", "channel", "to"}), removed once the side confirmed one
           (a device's QueueStatus naming the packet; the broker's PUBACK)
  inbox    send commands for the pollen node, removed once it answered `sent`

Each way is rate limited (a token bucket) and bounded (MAX_QUEUE texts;
past that a new text is refused, said on stderr and counted). Each text is
first held back a moment (an `after` time and its uid in its row), and
dropped if another bridge's copy is heard meanwhile: holdback.py decides.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from pollen_controller.bridge_meshtastic.holdback import HoldBack
from pollen_controller.bridge_meshtastic.relay import (IdMap, RateLimit, bridge_name, destination,
                                                       mesh_id, to_meshtastic, to_pollen)
from pollen_controller.gateway.attached_node import AttachedNode
from pollen_controller.gateway.bridge import Recent, is_node_id, parse_mark
from pollen_controller.gateway.store import Store
from pollen_controller.untrusted import safe_text

MAX_QUEUE = 1000          # texts waiting each way, at most
_ANSWER_TIMEOUT_S = 10.0  # a send the pollen node has not answered is written again
_CONFIRM_TIMEOUT_S = 5.0  # a text the device has not confirmed by then: the device is taken as gone
_REFUSED_RETRY_S = 5.0    # a send the pollen node refused (queue full) is tried again after
_DEVICE_RETRY_S = (5.0, 300.0)   # a text the device refused: tried again after 5 s, 10 .. 300 s
# what a device refuses a text for, for good: that text is dropped (said, counted);
# it refuses others (DUTY_CYCLE_LIMIT, a full queue, NO_CHANNEL ..) until something changes
_REFUSED_FOR_GOOD = ("TOO_LARGE", "BAD_REQUEST", "PKI_UNKNOWN_PUBKEY")
# what the pollen node refuses a send for, for good (firmware/pollen/sending.py and
# pollen_io/console_commands.py raise these; the console gives no codes, only the
# text): too long for a frame or for the region's dwell time, a bad destination or
# field. Any other refusal (its queue or store full, out of memory) is for now.
_POLLEN_FOR_GOOD = ("send: text is ", "send: frame would exceed", "send: bad destination",
                    "send: field ")
_TOPIC = "meshtastic"
_STATUS_EVERY_S = 60.0    # the pollen node asked its status (its neighbours' names) this often
_NAMES = 4096             # pollen nodes' names kept


class MeshtasticBridge:
    """device: the Meshtastic side (side.Side); channel: its channel (an
    index on a device, a name on MQTT), as the side labels what it hears."""

    def __init__(self, link, device, channel, outbox_path: Path, id_map: IdMap | None = None,
                 to_mesh_rate: RateLimit | None = None, to_pollen_rate: RateLimit | None = None,
                 log=None, confirm_timeout_s: float = _CONFIRM_TIMEOUT_S,
                 holdback: HoldBack | None = None):
        self.log = log or (lambda s: None)
        self.confirm_timeout_s = confirm_timeout_s
        self.attached = AttachedNode(link, self.log)
        self.device = device
        self.device.on_text = self._on_mesh_text
        if hasattr(device, "on_bridge"):
            device.on_bridge = self._on_bridge    # a side that tells of other bridges
        self.channel = channel
        self.ids = id_map or IdMap()
        self.to_mesh_rate = to_mesh_rate or RateLimit(6, 3)
        self.to_pollen_rate = to_pollen_rate or RateLimit(20, 5)
        self.store = Store(outbox_path)
        self.outbox, self.inbox = self.store.outbox, self.store.inbox
        self.names = Recent(_NAMES)          # pollen node id -> name: beacons and status frames
        self.sending: tuple[int, float] | None = None   # inbox seq written to the node, when
        self.retry_at = 0.0
        self.pollen_retry_s = _REFUSED_RETRY_S   # the pollen node refused a send for now: the wait
        self.handed: tuple[int, int, int, float] | None = None  # outbox seq, packet id, connection, when
        self.refused_retry_s = _DEVICE_RETRY_S[0]   # the device refused a text: the next try's wait
        self.announced = -1                  # the device connection this bridge last announced on
        self.announce_due = 0                # another bridge's announce (its id): ours answers it
        self.announces = RateLimit(0.1, 3)   # at most 3 at once, then one in 10 minutes
        self.device_retry_at = 0.0
        self.device_wait_s = 0.0
        self.lock = threading.Lock()
        self.stats = {"to_meshtastic": 0, "to_pollen": 0, "sent_meshtastic": 0, "sent_pollen": 0,
                      "bridged_skipped": 0, "unmapped": 0, "too_long": 0, "refused_full": 0,
                      "other_channel": 0, "doubles_avoided": 0, "refused_meshtastic": 0,
                      "refused_pollen": 0, "unreachable": 0}
        self.holdback = holdback or HoldBack()
        self.hold_lock = threading.Lock()    # holdback is fed on both threads
        now = time.time()
        with self.hold_lock:                 # texts held back when the bridge last stopped
            for uid, until_s in self.inbox.held(now):
                self.holdback.took("pollen", uid, until_s)
            for uid, until_s in self.outbox.held(now):
                self.holdback.took("meshtastic", uid, until_s)
        self._learn_names(self.attached.status)

    @property
    def node(self) -> str:
        return self.attached.id

    def _count(self, key: str, n: int = 1):
        with self.lock:  # also counted on the package's publishing thread
            self.stats[key] += n

    # ---- Meshtastic -> pollen (the package's publishing thread) ------------------

    def _on_mesh_text(self, packet: dict, device):
        num, text = packet.get("from"), (packet.get("decoded") or {}).get("text")
        if not isinstance(num, int) or not isinstance(text, str) or num == device.num:
            return
        direct = packet.get("to") == device.num     # a direct message to the bridge's device
        if not direct and packet.get("channel", 0) != self.channel:
            self._count("other_channel")
            return
        short = device.short_name(num)
        who = f"meshtastic {mesh_id(num)} {safe_text(short, 16)}".rstrip()
        self._heard("meshtastic", num, text)
        dest, why = destination(text, direct, num, self.ids.to_pollen, "all")
        if why:
            self._skip(why, who, mesh_id(num))
            return
        parts = to_pollen(num, packet.get("id", 0), short, text)
        if parts is None:
            self._count("too_long")
            self.log(f"{who}: a text of {len(text.encode())} bytes does not fit two"
                     f" pollen posts; not bridged")
            return
        after_s, uid = self._hold("pollen", parts[0], self.node, who, text)
        if after_s is None:
            return
        for part in parts:
            cmd = {"cmd": "send", "to": dest, "text": part}
            if not self._keep(self.inbox, "the pollen node", lambda: self.inbox.add(cmd, after_s, uid)):
                return
        self._count("to_pollen")
        self.log(f"{who} -> pollen {dest}: {safe_text(text, 80)!s}")

    def _keep(self, queue, for_whom: str, add) -> bool:
        # one text into a queue of at most MAX_QUEUE (the inbox or the
        # outbox): add() writes it (None: the store itself is full); False,
        # said and counted, when it could not be kept
        try:
            kept = add() if queue.count < MAX_QUEUE else None
        except sqlite3.Error as e:
            self._count("refused_full")
            self.log(f"could not keep a text for {for_whom}: {e}")
            return False
        if kept is None:
            self._count("refused_full")
            self.log(f"{queue.count} texts already wait for {for_whom}; one refused")
            return False
        return True

    # ---- pollen -> Meshtastic (our thread) -----------------------------------------

    def _on_node_event(self, ev: dict):
        kind = ev.get("event")
        if kind == "received":
            self._on_pollen_text(ev)
        elif kind == "status":
            self._learn_names(ev)
        elif kind == "telemetry":             # any node's status frame, flooded: its name
            self._learn_name(ev.get("id"), ev.get("name"))
        elif self.sending is not None and ev.get("ref") == f"mt{self.sending[0]}":
            seq = self.sending[0]
            if kind == "sent":
                self.inbox.done(seq)
                self._count("sent_pollen")
            elif kind == "error":
                error = ev.get("error") if isinstance(ev.get("error"), str) else ""
                if error.startswith(_POLLEN_FOR_GOOD):   # it never goes: not in the way of the rest
                    self.inbox.done(seq)
                    self._count("refused_pollen")
                    self.log(f"the pollen node refused a bridged text for good ({safe_text(error)});"
                             f" dropped")
                else:
                    self.retry_at = time.monotonic() + self.pollen_retry_s
                    self.log(f"the pollen node refused a bridged text ({safe_text(error)});"
                             f" tried again in {self.pollen_retry_s:g} s")
            self.sending = None
        elif kind in ("_away", "_back", "started"):
            self.sending = None               # unanswered: written again

    def _learn_names(self, status: dict):
        # the attached node's status: its neighbours' names, from their beacons
        for n in status.get("neighbours") or ():
            if isinstance(n, dict):
                self._learn_name(n.get("id"), n.get("name"))

    def _learn_name(self, node_id, name):
        if is_node_id(node_id) and isinstance(name, str) and name:
            self.names.add(node_id, name)

    def _on_pollen_text(self, ev: dict):
        sender, text, msg_id = ev.get("from"), ev.get("text"), ev.get("id")
        if not (is_node_id(sender) and isinstance(text, str) and isinstance(msg_id, int)):
            return
        name = self.names.get(sender)
        who = f"pollen {sender} {safe_text(name, 16)}".rstrip()
        self._heard("pollen", sender, text)
        to, why = destination(text, ev.get("kind") == "msg", sender, self.ids.to_mesh, None)
        if why:
            self._skip(why, who, sender)
            return
        cannot = getattr(self.device, "cannot_reach", None)   # (MQTT: a direct message needs a key)
        why_not = cannot(to) if cannot is not None and to is not None else None
        if why_not:
            self._count("unreachable")
            self.log(f"{who}: a direct message for {mesh_id(to)} not bridged: {why_not}")
            return
        parts = to_meshtastic(sender, msg_id, name, text, direct=to is not None)
        if parts is None:
            self._count("too_long")
            self.log(f"{who}: a text too long for two Meshtastic texts; not bridged")
            return
        after_s, uid = self._hold("meshtastic", parts[0], self.device.num, who, text)
        if after_s is None:
            return
        for part in parts:
            body = json.dumps({"text": part, "channel": self.channel, "to": to})
            if not self._keep(self.outbox, "the Meshtastic device",
                              lambda: self.outbox.add(_TOPIC, body, after_s=after_s, uid=uid)):
                return
        self._count("to_meshtastic")
        self.log(f"{who} -> meshtastic {mesh_id(to) if to is not None else f'channel {self.channel}'}:"
                 f" {safe_text(text, 80)}")

    # ---- several bridges: one copy on the other side (holdback.py) -------------------------

    def _heard(self, network: str, sender, text: str):
        # a marked text heard on `network`: its sender is a bridge; our held copy of it goes
        now = time.time()
        with self.hold_lock:
            uids = self.holdback.heard(network, sender, text, now)
        queue = self.inbox if network == "pollen" else self.outbox
        for uid in uids:
            try:
                dropped = queue.cancel(uid, now)
            except sqlite3.Error as e:
                self.log(f"could not drop a text held back for {network} ({uid}): {e}")
                continue
            if dropped:
                self._count("doubles_avoided")
                self.log(f"{uid}: another bridge brought it into {network} first; ours dropped")

    def _on_bridge(self, num: int, pollen_id: str, answer: int | None = None):
        # another bridge made itself known (its node info, its announce): it counts in
        # the ranks, both networks; one that announced itself (it just connected;
        # `answer` the announce's packet id) is answered with ours, as it may not know
        # of us; an answer names the announce it answers and is not answered in turn
        now = time.time()
        with self.hold_lock:
            new = num not in self.holdback.bridges("meshtastic")
            self.holdback.known("meshtastic", num, now)
            self.holdback.known("pollen", pollen_id, now)
        if new:
            self.log(f"another bridge: Meshtastic node {mesh_id(num)}, pollen node {pollen_id}")
        if answer:
            self.announce_due = answer

    def _hold(self, network: str, first_part: str, own, who: str, text: str):
        # (Unix time before which the text waits, its uid), or (None, None): a copy is in already
        uid = parse_mark(first_part)[1]
        now = time.time()
        with self.hold_lock:
            hold_s = self.holdback.offer(network, uid, own, now, text)
        if hold_s is None:
            self._count("doubles_avoided")
            self.log(f"{who}: another bridge brought it into {network} already ({uid}); not bridged")
            return None, None
        return now + hold_s, uid

    def _skip(self, why: str, who: str, sender: str):
        self._count(why)
        if why == "unmapped":
            self.log(f"{who}: a direct message, not bridged (no --map for {sender})")

    # ---- running ---------------------------------------------------------------------

    def run(self, stop: threading.Event):
        try:
            next_status = time.monotonic() + _STATUS_EVERY_S
            while not stop.is_set():
                if self.attached.up and time.monotonic() >= next_status:
                    next_status = time.monotonic() + _STATUS_EVERY_S
                    self.attached.command({"cmd": "status", "ref": "bridge"})
                self.device.poll()
                self._send_to_meshtastic()
                self._send_to_pollen()
                for ev in self.attached.poll(0.05):
                    self._on_node_event(ev)
        finally:
            self.device.close()
            self.store.close()

    def _send_to_meshtastic(self):
        # one text handed to the device at a time, removed from the outbox
        # when the device confirms it (docs/meshtastic.md, "Either side going away")
        if self.handed is not None:
            seq, packet_id, connection, t0 = self.handed
            if self.device.stats["connects"] != connection or not self.device.up:
                self.handed = None            # the device went: handed again to the next one
                return
            why = self.device.refused(packet_id)
            if why is not None:
                self.handed = None
                self._device_refused(seq, why)
                return
            confirmed = self.device.confirmed(packet_id)
            waited_s = time.monotonic() - t0
            if confirmed is None and waited_s >= self.confirm_timeout_s:
                confirmed = True              # a firmware that never confirms: taken as sent
            if confirmed:
                self.outbox.done(seq)
                self._count("sent_meshtastic")
                self.handed = None
                self.device_wait_s = 0.0
            elif waited_s >= self.confirm_timeout_s:
                self.device.drop(f"no confirmation of a text within {self.confirm_timeout_s:g} s")
                self.handed = None
            return
        if not self.device.up:
            return
        self._announce()
        if time.monotonic() < self.device_retry_at:
            return
        for seq, _topic, payload in self.outbox.pending(limit=1, now_s=time.time()):
            if not self.to_mesh_rate.take(time.monotonic()):
                return
            body = json.loads(payload)
            packet_id = self.device.send(body["text"], body["channel"], body.get("to"), ref=seq)
            if packet_id is not None:
                self.handed = (seq, packet_id, self.device.stats["connects"], time.monotonic())

    def _announce(self):
        # a bridge on a device says "pollen bridge ID" on its channel when it
        # connects and to answer another's (device.py announce): the other
        # bridges then count it in their ranks before any text. Never while a
        # text waits for its confirmation (one packet at a time)
        announce = getattr(self.device, "announce", None)
        connection = self.device.stats["connects"]
        if announce is None or (connection == self.announced and not self.announce_due):
            return
        if not self.announces.take(time.monotonic()):
            return
        due, self.announce_due = self.announce_due, 0   # (one heard meanwhile: due again)
        if announce(bridge_name(self.node), self.channel, reply_to=due or None):
            self.announced = connection
        else:
            self.announce_due = self.announce_due or due

    def _device_refused(self, seq: int, why: str):
        # the device said it will not send the text (its QueueStatus): for
        # good (too large) it is dropped; else it waits, in order, and is
        # handed again after 5 s, 10, 20 .. 300 s (a duty cycle used up
        # frees within the hour)
        if why in _REFUSED_FOR_GOOD:
            self.outbox.done(seq)
            self._count("refused_meshtastic")
            self.log(f"the Meshtastic device refused a text for good ({why}); dropped")
            return
        first = self.device_wait_s == 0.0
        self.device_wait_s = min(max(2 * self.device_wait_s, self.refused_retry_s),
                                  max(_DEVICE_RETRY_S[1], self.refused_retry_s))
        self.device_retry_at = time.monotonic() + self.device_wait_s
        if first:
            self.log(f"the Meshtastic device refused a text ({why}); texts for it wait, tried"
                     f" again after {self.device_wait_s:g} s and longer, up to"
                     f" {_DEVICE_RETRY_S[1]:g} s")

    def _send_to_pollen(self):
        now = time.monotonic()
        if not self.attached.up or now < self.retry_at:
            return
        if self.sending is not None:
            if now - self.sending[1] < _ANSWER_TIMEOUT_S:
                return
            self.sending = None              # no answer: written again
        for seq, cmd in self.inbox.pending(limit=1, now_s=time.time()):
            if not self.to_pollen_rate.take(now):
                return
            cmd["ref"] = f"mt{seq}"
            if self.attached.command(cmd):
                self.sending = (seq, now)
