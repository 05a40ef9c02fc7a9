"""A virtual radio medium: one UDP socket on loopback that every emulated node talks to.

Wire protocol (one datagram per message; the firmware's UDP radio adapter speaks it):

    node -> medium   b"H" + node_id (4 bytes, big-endian)
        Hello. The medium records the sender's UDP address for that node id. A hello
        from a new address replaces the old one (the node restarted).
    node -> medium   b"T" + frame (1..255 bytes)
        Transmit. The sender is known by its source address. The transmission starts
        now, or when the node's previous one ends (the medium queues it).
    medium -> node   b"B" + airtime_ms (2 bytes, big-endian)
        Channel busy, sent to every node that can hear the sender when a transmission
        starts: what a LoRa radio's channel activity detection (CAD) tells its node,
        so nodes listen before they talk.
    medium -> node   b"R" + rssi + snr + frame
        Receive, sent when the transmission ends. rssi: int8, dBm. snr: int8, quarter-dB
        (-32.0 .. +31.75 dB). Both rounded and clamped.

Anything else from a node is dropped and counted; the medium carries on.

Physics, on the host's monotonic clock. A transmission lasts
preset_time_on_air_us(len(frame), preset). When it ends, each node with a link from
the sender receives it unless:
  - it was transmitting at any moment during the frame (half-duplex);
  - another frame it can hear overlapped in time and was not at least capture_db
    weaker than this one (collision: the stronger survives only by capture_db);
  - the loss dice said so (probability `loss`, per frame and receiver);
  - it has not said hello yet (counted as unaddressed).
"""

from __future__ import annotations

import heapq
import logging
import random
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from pollen.airtime import PRESETS, preset_time_on_air_us
from pollen_controller.errors import InputError, MalformedDatagram

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 255
MAX_QUEUED_FRAMES = 8      # per node, waiting for its own previous frame to end
_POLL_S = 0.05             # longest the thread sleeps: bounds stop() latency
_DATAGRAM_BYTES = 2048

_HELLO = b"H"[0]
_TRANSMIT = b"T"[0]
_RECEIVE = b"R"

STAT_COUNTERS = (
    "tx_frames", "tx_airtime_us", "tx_queued", "tx_queue_full", "delivered",
    "lost_loss", "lost_collision", "lost_half_duplex", "unaddressed",
    "malformed", "unknown_sender", "unknown_node", "joined", "send_errors",
)


# --- wire format: pure functions ---------------------------------------------

def _clamp_int8(value):
    return max(-128, min(127, round(value)))


def pack_hello(node_id):
    return b"H" + struct.pack(">I", node_id)


def pack_transmit(frame):
    return b"T" + bytes(frame)


def pack_receive(rssi_dbm, snr_db, frame):
    return _RECEIVE + struct.pack("bb", _clamp_int8(rssi_dbm), _clamp_int8(snr_db * 4)) + bytes(frame)


def parse_receive(datagram):
    # -> (rssi_dbm, snr_db, frame)
    if len(datagram) < 4 or datagram[:1] != _RECEIVE:
        raise MalformedDatagram("not a receive datagram")
    rssi_dbm, snr_qdb = struct.unpack_from("bb", datagram, 1)
    return rssi_dbm, snr_qdb / 4, bytes(datagram[3:])


def parse_node_datagram(datagram):
    # -> ("hello", node_id) or ("transmit", frame)
    if len(datagram) == 5 and datagram[0] == _HELLO:
        return "hello", struct.unpack_from(">I", datagram, 1)[0]
    if datagram and datagram[0] == _TRANSMIT and 1 <= len(datagram) - 1 <= MAX_FRAME_BYTES:
        return "transmit", bytes(datagram[1:])
    raise MalformedDatagram(f"bad datagram ({len(datagram)} bytes)")


# --- the medium ----------------------------------------------------------------

@dataclass(order=True)
class _Tx:
    end_s: float
    seq: int
    start_s: float = field(compare=False)
    sender: int = field(compare=False)
    frame: bytes = field(compare=False)


class Medium:
    def __init__(self, topology, preset=PRESETS["ShortFast"], loss=0.0, capture_db=6.0,
                 seed=None, host="127.0.0.1", port=0, on_transmit=None):
        # The medium owns `topology` while running: change links via set_link().
        self.topology = topology
        self.preset = preset
        self.capture_db = capture_db
        self.on_transmit = on_transmit   # called from the medium thread
        # on_join(node_id) -> {other_id: Link}: where a node the topology does
        # not know hears and is heard, when it says hello (pollen mesh up: a
        # virtual board joining); None refuses such nodes (unknown_node).
        # Called from the medium thread with its lock held: compute, no I/O
        self.on_join = None
        self.host = host
        self.port = port
        self._loss = 0.0
        self.loss = loss
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._sock = None
        self._thread = None
        self._running = False
        self._addr_by_node = {}
        self._node_by_addr = {}
        self._pending = []          # heap of _Tx not yet delivered, by end time
        self._on_air = []           # _Tx that may still overlap a pending one
        self._busy_until_s = {}     # node -> end of its last scheduled transmission
        self._seq = 0
        self.stats = {name: 0 for name in STAT_COUNTERS}
        self.stats["tx_by_node"] = {}
        # frames delivered to each node since it last said hello (its start):
        # beside the node's own receive count, a node that stopped hearing shows
        self.stats["rx_by_node"] = {}

    # --- control ---------------------------------------------------------

    @property
    def loss(self):
        return self._loss

    @loss.setter
    def loss(self, value):
        if not 0.0 <= value <= 1.0:
            raise InputError("loss is a probability, 0..1")
        self._loss = value

    def set_link(self, a, b, link, symmetric=True):
        # Cut (link None) or restore a link while running; applies from the next delivery.
        with self._lock:
            self.topology.set_link(a, b, link, symmetric)

    def snapshot_stats(self):
        with self._lock:
            return {**self.stats, "tx_by_node": dict(self.stats["tx_by_node"]),
                    "rx_by_node": dict(self.stats["rx_by_node"])}

    def address_of(self, node_id):
        with self._lock:
            return self._addr_by_node.get(node_id)

    def start(self):
        if self._thread is not None:
            raise RuntimeError("medium already started")
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((self.host, self.port))
        self._sock.setblocking(False)
        self.port = self._sock.getsockname()[1]
        self._running = True
        self._thread = threading.Thread(target=self._run, name=f"medium:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=5 * _POLL_S + 1.0)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- the thread --------------------------------------------------------

    def _run(self):
        while self._running:
            self._deliver_due(time.monotonic())
            with self._lock:
                next_s = self._pending[0].end_s if self._pending else None
            wait_s = _POLL_S if next_s is None else min(_POLL_S, max(0.0, next_s - time.monotonic()))
            readable, _, _ = select.select([self._sock], [], [], wait_s)
            if not readable:
                continue
            try:
                datagram, addr = self._sock.recvfrom(_DATAGRAM_BYTES)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:   # e.g. ICMP port unreachable reported late
                log.debug("medium recv: %s", exc)
                continue
            self._handle(datagram, addr, time.monotonic())

    def _handle(self, datagram, addr, now_s):
        try:
            kind, value = parse_node_datagram(datagram)
        except MalformedDatagram:
            with self._lock:
                self.stats["malformed"] += 1
            return
        if kind == "hello":
            self._hello(value, addr)
        else:
            self._transmit(value, addr, now_s)

    def _hello(self, node_id, addr):
        with self._lock:
            if node_id not in self.topology.positions:
                links = self.on_join(node_id) if self.on_join else None
                if not links:
                    self.stats["unknown_node"] += 1
                    return
                self.topology.positions[node_id] = None
                for other, link in links.items():
                    self.topology.set_link(node_id, other, link)
                self.stats["joined"] += 1
            old_addr = self._addr_by_node.pop(node_id, None)
            self._node_by_addr.pop(old_addr, None)
            other = self._node_by_addr.pop(addr, None)   # address reused by another id
            self._addr_by_node.pop(other, None)
            self._addr_by_node[node_id] = addr
            self._node_by_addr[addr] = node_id
            self.stats["rx_by_node"][node_id] = 0

    def _transmit(self, frame, addr, now_s):
        with self._lock:
            sender = self._node_by_addr.get(addr)
            if sender is None:
                self.stats["unknown_sender"] += 1
                return
            airtime_us = preset_time_on_air_us(len(frame), self.preset)
            start_s = max(now_s, self._busy_until_s.get(sender, 0.0))
            if start_s > now_s:
                queued = sum(1 for tx in self._pending if tx.sender == sender and tx.start_s > now_s)
                if queued >= MAX_QUEUED_FRAMES:
                    self.stats["tx_queue_full"] += 1
                    return
                self.stats["tx_queued"] += 1
            tx = _Tx(start_s + airtime_us / 1e6, self._seq, start_s, sender, frame)
            self._seq += 1
            self._busy_until_s[sender] = tx.end_s
            heapq.heappush(self._pending, tx)
            self._on_air.append(tx)
            self.stats["tx_frames"] += 1
            self.stats["tx_airtime_us"] += airtime_us
            by_node = self.stats["tx_by_node"]
            by_node[sender] = by_node.get(sender, 0) + 1
            busy = []
            if start_s == now_s:
                datagram = b"B" + struct.pack(">H", min(65535, airtime_us // 1000 + 1))
                for (a, b) in self.topology.links:
                    if a == sender and b in self._addr_by_node:
                        busy.append((self._addr_by_node[b], datagram))
        for addr_b, datagram in busy:
            try:
                self._sock.sendto(datagram, addr_b)
            except OSError:
                pass
        if self.on_transmit is not None:
            try:
                self.on_transmit(sender, frame, start_s)
            except Exception:
                log.exception("on_transmit observer failed")

    def _deliver_due(self, now_s):
        while True:
            with self._lock:
                if not self._pending or self._pending[0].end_s > now_s:
                    return
                tx = heapq.heappop(self._pending)
                sends = self._receptions(tx)
                self._forget_old()
            for addr, datagram in sends:
                try:
                    self._sock.sendto(datagram, addr)
                except OSError as exc:
                    log.debug("medium send to %s: %s", addr, exc)
                    with self._lock:
                        self.stats["send_errors"] += 1

    def _receptions(self, tx):
        # Decide, for each node that can hear tx.sender, whether it gets the frame.
        # Called with the lock held; returns the datagrams to send.
        overlapping = [o for o in self._on_air
                       if o is not tx and o.start_s < tx.end_s and o.end_s > tx.start_s]
        sends = []
        for rx in self.topology.neighbours(tx.sender):
            link = self.topology.link(tx.sender, rx)
            lost_by_dice = self._rng.random() < self._loss   # drawn for every receiver
            if any(o.sender == rx for o in overlapping):
                self.stats["lost_half_duplex"] += 1
            elif self._collides(tx, rx, link, overlapping):
                self.stats["lost_collision"] += 1
            elif lost_by_dice:
                self.stats["lost_loss"] += 1
            elif rx not in self._addr_by_node:
                self.stats["unaddressed"] += 1
            else:
                self.stats["delivered"] += 1
                self.stats["rx_by_node"][rx] = self.stats["rx_by_node"].get(rx, 0) + 1
                sends.append((self._addr_by_node[rx], pack_receive(link.rssi_dbm, link.snr_db, tx.frame)))
        return sends

    def _collides(self, tx, rx, link, overlapping):
        for other in overlapping:
            other_link = self.topology.link(other.sender, rx)
            if other_link is not None and link.rssi_dbm < other_link.rssi_dbm + self.capture_db:
                return True
        return False

    def _forget_old(self):
        # Keep only transmissions that could still overlap one not yet delivered.
        if not self._pending:
            self._on_air.clear()
            return
        earliest_start_s = min(tx.start_s for tx in self._pending)
        self._on_air = [tx for tx in self._on_air if tx.end_s > earliest_start_s]
