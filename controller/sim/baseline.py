# Meshtastic 2.x-style managed flooding (before next-hop routing), for the
# simulator only: the baseline pollen is compared against. CPython, never on
# boards. Same sans-IO interface as pollen.node.Node (docs/simulator.md);
# every constant and rule below is traced to its source in docs/baseline.md.
#
#   r = ManagedFlood(settings, storage, rng); r.start(now_ms)
#   r.send(dest, text, now_ms) -> id     r.on_frame(frame, rssi_dbm, snr_db, now_ms)
#   r.channel_busy(until_ms, now_ms)     r.poll(now_ms) -> actions; r.next_wake_ms
#
# The model: one transmit queue ordered by priority with one transmit timer
# (RadioLibInterface), SNR-weighted contention delays for relays
# (RadioInterface), duplicate suppression and relay cancellation
# (FloodingRouter), implicit and end-to-end acknowledgement with up to three
# transmissions (ReliableRouter). Frames are sized like Meshtastic's: a 16-byte
# header and a protobuf Data message, unencrypted (AES-CTR adds no bytes).
import struct

from pollen.airtime import PRESETS, preset_time_on_air_us
from pollen.region import DutyCycle, REGIONS

BROADCAST = 0xFFFFFFFF
HEADER_BYTES = 16
MAX_FRAME_BYTES = 255        # MAX_LORA_PAYLOAD_LEN
CHANNEL_HASH = 0x08          # hash of the default "LongFast" channel with the default key
PORT_TEXT = 1                # TEXT_MESSAGE_APP
PORT_ROUTING = 5             # ROUTING_APP (acks)
HOP_MAX = 7

CW_MIN = 3
CW_MAX = 8
SNR_MIN_DB = -20             # getCWsize maps SNR -20..+10 dB to CW_MIN..CW_MAX
SNR_MAX_DB = 10
SNR_CLAMP_DB = (-20, 15)     # what a LoRa radio reports (Meshtasticator clamps so too)
PROCESSING_MS = 4500         # PROCESSING_TIME_MSEC in getRetransmissionMsec
NUM_RETRANSMISSIONS = 3      # transmissions in total for a want_ack packet
MAX_TX_QUEUE = 16
PRIO_HIGH = 100              # text messages (MeshPacket.Priority)
PRIO_ACK = 120               # routing acks
HISTORY_CAPACITY = 256       # packet history entries (sender, id)
FLOOD_EXPIRE_MS = 600000     # a history entry is forgotten after 10 minutes
UTIL_PERIOD_MS = 10000       # channel utilisation: six 10 s periods
UTIL_PERIODS = 6
MAX_PENDING = 32             # own packets awaiting an (implicit) ack
MAX_AWAITING = 64            # own unicast ids awaiting the destination's ack
IDLE_WAKE_MS = 3600000

_F_HOP_LIMIT = 0x07
_F_WANT_ACK = 0x08
_F_HOP_START_SHIFT = 5


# ---- wire: pure pack/parse --------------------------------------------------

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_text(text):
    # Data{portnum: TEXT_MESSAGE_APP, payload: text, bitfield: 0}: 6 bytes of
    # overhead (7 from 128 bytes of text, when the length takes two bytes)
    return b"\x08\x01\x12" + _varint(len(text)) + bytes(text) + b"\x48\x00"


def encode_ack(request_id):
    # Data{portnum: ROUTING_APP, payload: Routing{error_reason: NONE},
    #      request_id: fixed32, bitfield: 0}: 13 bytes
    return b"\x08\x05\x12\x02\x18\x00\x35" + struct.pack("<I", request_id) + b"\x48\x00"


def decode_data(b):
    # -> (portnum, payload, request_id) or None when it is not a valid Data.
    i, n = 0, len(b)
    port, payload, request_id = 0, b"", 0
    while i < n:
        key, i = _read_varint(b, i)
        if i < 0:
            return None
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read_varint(b, i)
            if i < 0:
                return None
            if field == 1:
                port = v
        elif wire == 2:
            ln, i = _read_varint(b, i)
            if i < 0 or i + ln > n:
                return None
            if field == 2:
                payload = bytes(b[i:i + ln])
            i += ln
        elif wire == 5:
            if i + 4 > n:
                return None
            if field == 6:
                request_id = struct.unpack_from("<I", b, i)[0]
            i += 4
        elif wire == 1 and i + 8 <= n:
            i += 8
        else:
            return None
    if port == 0:  # UNKNOWN_APP: what a wrong key decrypts to
        return None
    return port, payload, request_id


def _read_varint(b, i):
    v = shift = 0
    while shift < 70:
        if i >= len(b):
            return 0, -1
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if not c & 0x80:
            return v, i
        shift += 7
    return 0, -1


def pack_frame(dest, sender, pkt_id, hop_limit, hop_start, want_ack, data, relay=0,
               channel=CHANNEL_HASH):
    # PacketHeader: to, from, id (little-endian u32), flags, channel, next_hop, relay_node
    flags = (hop_limit & _F_HOP_LIMIT) | (_F_WANT_ACK if want_ack else 0) \
        | ((hop_start & 7) << _F_HOP_START_SHIFT)
    return struct.pack("<IIIBBBB", dest, sender, pkt_id, flags, channel, 0, relay & 0xFF) \
        + bytes(data)


class Packet:
    __slots__ = ("dest", "sender", "pkt_id", "hop_limit", "hop_start", "want_ack",
                 "port", "payload", "request_id")

    def key(self):
        return (self.sender << 32) | self.pkt_id

    def hops(self):
        return self.hop_start - self.hop_limit


def parse_frame(frame):
    # bytes on air -> (Packet, None) or (None, reason). Never raises on bad input.
    n = len(frame)
    if n < HEADER_BYTES:
        return None, "short"
    if n > MAX_FRAME_BYTES:
        return None, "oversize"
    dest, sender, pkt_id, flags, channel, _, _ = struct.unpack_from("<IIIBBBB", frame)
    if channel != CHANNEL_HASH:
        return None, "channel"  # stands in for "no key decrypts this"
    p = Packet()
    p.dest, p.sender, p.pkt_id = dest, sender, pkt_id
    p.hop_limit = flags & _F_HOP_LIMIT
    p.hop_start = flags >> _F_HOP_START_SHIFT
    p.want_ack = bool(flags & _F_WANT_ACK)
    if sender in (0, BROADCAST) or dest == 0 or pkt_id == 0 or p.hop_start < p.hop_limit:
        return None, "field"
    d = decode_data(frame[HEADER_BYTES:])
    if d is None:
        return None, "data"
    p.port, p.payload, p.request_id = d
    return p, None


def relayed(frame, hop_limit, relay):
    b = bytearray(frame)
    b[12] = (b[12] & ~_F_HOP_LIMIT & 0xFF) | hop_limit
    b[15] = relay & 0xFF
    return bytes(b)


# ---- timing: pure functions of the preset and SNR ---------------------------

def slot_time_ms(preset):
    # CAD (2.5 symbols on SX126x) + propagation, turnaround and MAC processing
    # (0.2 + 0.4 + 7 ms), truncated to whole ms like the firmware's uint32_t
    sf, bw_hz = preset[0], preset[1]
    return (5 * (1 << sf) * 1000000 // bw_hz // 2 + 7600) // 1000


def cw_size(snr_db):
    # Arduino map(snr, -20, 10, CW_MIN, CW_MAX) on an integer SNR, with the SNR
    # first clamped to what a radio reports
    s = min(max(int(snr_db), SNR_CLAMP_DB[0]), SNR_CLAMP_DB[1])
    return (s - SNR_MIN_DB) * (CW_MAX - CW_MIN) // (SNR_MAX_DB - SNR_MIN_DB) + CW_MIN


def response_hop_limit(hop_start, hop_limit, configured):
    # RoutingModule::getHopLimitForResponse: the hops the request used, plus two
    if hop_start:
        used = configured if hop_start < hop_limit else hop_start - hop_limit
        if used > configured:
            return used
        if used + 2 < configured:
            return used + 2
    return configured


def _preset(v):
    if isinstance(v, str):
        if v not in PRESETS:
            raise ValueError("preset: one of %s, got %r" % (", ".join(sorted(PRESETS)), v))
        return PRESETS[v]
    if isinstance(v, dict):
        return (int(v["sf"]), int(v["bw_hz"]), int(v.get("cr", 5)), int(v.get("preamble", 16)))
    if isinstance(v, (tuple, list)) and len(v) == 4:
        return tuple(int(x) for x in v)
    raise ValueError("preset: a name, (sf, bw_hz, cr, preamble) or a dict, got %r" % (v,))


def _node_id(v):
    if isinstance(v, str):
        v = int(v, 16)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 < v < BROADCAST:
        raise ValueError("node_id: a 32-bit id, not 0 or ffffffff, got %r" % (v,))
    return v


class _Tx:  # an entry of the transmit queue
    __slots__ = ("key", "frame", "prio", "relay", "snr_db")

    def __init__(self, key, frame, prio, relay, snr_db):
        self.key, self.frame, self.prio, self.relay, self.snr_db = key, frame, prio, relay, snr_db

    def before(self, other):
        # MeshPacketQueue order: higher priority first; at equal priority a
        # packet already on the mesh (a relay) before our own
        if self.prio != other.prio:
            return self.prio > other.prio
        return self.relay and not other.relay


class _Pending:  # ReliableRouter's PendingPacket
    __slots__ = ("frame", "dest", "tries", "next_ms")

    def __init__(self, frame, dest, tries, next_ms):
        self.frame, self.dest, self.tries, self.next_ms = frame, dest, tries, next_ms


class ManagedFlood:
    def __init__(self, settings, storage, rng):
        self.id = _node_id(settings.get("node_id"))
        self.low = self.id & 0xFF
        region = settings.get("region", "EU868")
        if region not in REGIONS:
            raise ValueError("region: one of %s, got %r" % (", ".join(sorted(REGIONS)), region))
        self.duty = DutyCycle(REGIONS[region][1])
        self.preset = _preset(settings.get("preset", "LongFast"))
        self.hop_limit = settings.get("hop_limit", 3)
        if not isinstance(self.hop_limit, int) or not 1 <= self.hop_limit <= HOP_MAX:
            raise ValueError("hop_limit: an integer 1..%d, got %r" % (HOP_MAX, self.hop_limit))
        self.role = settings.get("role", "client")
        if self.role not in ("client", "router"):
            raise ValueError("role: 'client' or 'router', got %r" % (self.role,))
        self.storage = storage  # unused: Meshtastic keeps no messages across restarts
        self.rng = rng
        self.slot_ms = slot_time_ms(self.preset)
        self.history = {}        # key -> last heard ms, oldest first
        self.txq = []            # _Tx, in transmit order
        self.timer_ms = None     # the transmit timer (TRANSMIT_DELAY_COMPLETED)
        self.tx_end_ms = None    # our transmission ends (ISR_TX to come)
        self.busy_until_ms = 0
        self.channel_until_ms = 0
        self.pending = {}        # key -> _Pending
        self.awaiting = {}       # own unicast id -> destination
        self.util = [0] * UTIL_PERIODS
        self.util_stamp = [-1] * UTIL_PERIODS
        self.next_id = 1
        self.started_ms = 0
        self.next_wake_ms = 0
        self.out = []
        self.counters = {"rx": 0, "tx": 0, "relayed": 0, "duplicates": 0, "cancelled": 0,
                         "retries": 0, "delivered": 0, "originated": 0, "deferred": 0,
                         "expired": 0, "unconfirmed": 0, "implicit_acks": 0, "acks_sent": 0,
                         "resent": 0, "busy_backoffs": 0, "queue_full": 0, "internal": 0}
        self.drops = {}

    # ---- inputs -------------------------------------------------------------

    def start(self, now_ms):
        self.started_ms = now_ms
        self.next_id = self.rng.getrandbits(32) or 1
        self.next_wake_ms = now_ms

    def send(self, dest, payload, now_ms):
        # Raises ValueError on local misuse (too long, bad destination).
        text = payload.encode() if isinstance(payload, str) else bytes(payload)
        if dest in (self.id, 0) or not 0 < dest <= BROADCAST:
            raise ValueError("bad destination %08x" % dest)
        data = encode_text(text)
        if HEADER_BYTES + len(data) > MAX_FRAME_BYTES:
            raise ValueError("text is %d bytes; at most %d fit in a frame"
                             % (len(text), MAX_FRAME_BYTES - HEADER_BYTES - 7))
        pid = self._new_id()
        unicast = dest != BROADCAST
        # want_ack: set on air for unicasts only (Router::send clears it on broadcasts)
        frame = pack_frame(dest, self.id, pid, self.hop_limit, self.hop_limit, unicast, data,
                           self.low)
        key = (self.id << 32) | pid
        self._seen(key, now_ms, True)
        self.counters["originated"] += 1
        if len(self.pending) >= MAX_PENDING:
            self.pending.pop(next(iter(self.pending)))
        self.pending[key] = _Pending(frame, dest, NUM_RETRANSMISSIONS - 1,
                                     now_ms + self._retransmission_ms(len(frame), now_ms))
        if unicast:
            if len(self.awaiting) >= MAX_AWAITING:
                self.awaiting.pop(next(iter(self.awaiting)))
            self.awaiting[pid] = dest
        self._send_own(key, frame, PRIO_HIGH, now_ms)
        return pid

    def on_frame(self, frame, rssi_dbm, snr_db, now_ms):
        self.counters["rx"] += 1
        air_ms = self._airtime_ms(min(len(frame), MAX_FRAME_BYTES))
        self._log_util(now_ms, air_ms)
        if self.txq and self.timer_ms is None:  # ISR_RX restarts the transmit timer
            self.timer_ms = now_ms + self._util_delay_ms(now_ms)
        p, reason = parse_frame(frame)
        if p is None:
            self._drop(reason)
            return
        try:
            self._handle(p, frame, rssi_dbm, snr_db, now_ms, air_ms)
        except Exception:  # a well-formed but nonsensical frame must not stop us
            self.counters["internal"] += 1

    def channel_busy(self, until_ms, now_ms):
        # carrier sensed (channel activity detection): the transmit timer
        # re-randomises its delay while this lasts
        if until_ms > self.channel_until_ms:
            self.channel_until_ms = until_ms

    # ---- outputs ------------------------------------------------------------

    def poll(self, now_ms):
        if self.tx_end_ms is not None and now_ms >= self.tx_end_ms:
            self.tx_end_ms = None  # ISR_TX: the next queued packet waits a random delay
            if self.txq and self.timer_ms is None:
                self.timer_ms = now_ms + self._util_delay_ms(now_ms)
        self._retransmissions(now_ms)
        if self.timer_ms is not None and now_ms >= self.timer_ms:
            self.timer_ms = None
            if self.txq:
                if now_ms < self.busy_until_ms or now_ms < self.channel_until_ms:
                    self.counters["busy_backoffs"] += 1
                    self._set_transmit_delay(now_ms)
                else:
                    self._transmit_front(now_ms)
        if self.txq and self.timer_ms is None and self.tx_end_ms is None:
            self._set_transmit_delay(now_ms)
        t = now_ms + IDLE_WAKE_MS
        if self.timer_ms is not None:
            t = min(t, self.timer_ms)
        if self.tx_end_ms is not None:
            t = min(t, self.tx_end_ms)
        for pend in self.pending.values():
            t = min(t, pend.next_ms)
        self.next_wake_ms = max(t, now_ms)
        out = self.out
        self.out = []
        return out

    def status(self, now_ms):
        held = sum(1 for p in self.pending.values() if p.dest != BROADCAST)
        return {"id": "%08x" % self.id, "role": self.role,
                "uptime_s": (now_ms - self.started_ms) // 1000,
                "held": held, "queue": len(self.txq), "pending": len(self.pending),
                "counters": dict(self.counters), "dropped": dict(self.drops),
                "airtime_ms": self.duty.total_us // 1000,
                "duty_headroom_pct": round(self.duty.headroom_per_mille(now_ms) / 10, 1),
                "channel_util_pct": round(self._util_pct(now_ms), 1)}

    # ---- receiving ----------------------------------------------------------

    def _handle(self, p, frame, rssi_dbm, snr_db, now_ms, air_ms):
        key = p.key()
        # ReliableRouter::shouldFilterReceived: someone rebroadcast our packet
        if p.sender == self.id and self._stop_retransmission(key):
            self.counters["implicit_acks"] += 1
        for pend in self.pending.values():  # we could not hear an ack meanwhile
            pend.next_ms += air_ms
        # a retransmission straight from its originator (no hop taken yet) of
        # a packet we have seen: relay it again so the originator hears an
        # implicit ack this time
        repeated = p.hop_start == p.hop_limit
        if repeated and self._seen(key, now_ms, False) and p.dest != self.id \
                and p.sender != self.id and p.hop_limit > 0 and not self._queued(key):
            self.counters["resent"] += 1
            self._enqueue(_Tx(key, relayed(frame, p.hop_limit - 1, self.low), self._prio(p),
                              True, snr_db), now_ms)
        # FloodingRouter::shouldFilterReceived: duplicate suppression
        if self._seen(key, now_ms, True):
            self.counters["duplicates"] += 1
            if not repeated and self.role == "client" and self._cancel(key):
                self.counters["cancelled"] += 1
            return
        # ReliableRouter::sniffReceived: acks addressed to us
        if p.dest == self.id:
            if p.want_ack and p.port == PORT_TEXT:
                self._send_ack(p, now_ms)
            if p.port == PORT_ROUTING and p.request_id:
                self._stop_retransmission((self.id << 32) | p.request_id)
                dest = self.awaiting.pop(p.request_id, None)
                if dest is not None:
                    self.counters["delivered"] += 1
                    self.out.append(("delivered", {"id": p.request_id, "to": "%08x" % dest,
                                                   "hops": p.hops()}))
        # FloodingRouter::sniffReceived: an ack going by ends the relaying of its message
        if p.request_id and p.dest not in (self.id, BROADCAST):
            if self._cancel((p.dest << 32) | p.request_id):
                self.counters["cancelled"] += 1
        if p.dest != self.id and p.hop_limit > 0 and p.sender != self.id:
            self._enqueue(_Tx(key, relayed(frame, p.hop_limit - 1, self.low), self._prio(p),
                              True, snr_db), now_ms)
        if p.port == PORT_TEXT and p.dest in (self.id, BROADCAST):
            self.out.append(("received", {
                "kind": "post" if p.dest == BROADCAST else "msg", "from": "%08x" % p.sender,
                "to": "%08x" % p.dest, "id": p.pkt_id,
                "text": p.payload.decode("utf-8", "replace"), "hops": p.hops(),
                "rssi_dbm": rssi_dbm, "snr_db": snr_db}))

    def _send_ack(self, p, now_ms):
        hop = response_hop_limit(p.hop_start, p.hop_limit, self.hop_limit)
        pid = self._new_id()
        frame = pack_frame(p.sender, self.id, pid, hop, hop, False, encode_ack(p.pkt_id),
                           self.low)
        key = (self.id << 32) | pid
        self._seen(key, now_ms, True)
        self.counters["acks_sent"] += 1
        self._send_own(key, frame, PRIO_ACK, now_ms)

    @staticmethod
    def _prio(p):
        return PRIO_ACK if p.port == PORT_ROUTING else PRIO_HIGH

    # ---- retransmission (ReliableRouter) ------------------------------------

    def _retransmissions(self, now_ms):
        for key, pend in list(self.pending.items()):
            if pend.next_ms > now_ms:
                continue
            if self._queued(key):
                # still waiting for the channel or the duty-cycle budget: not a
                # try (the firmware refuses over-budget sends instead of deferring)
                pend.next_ms = now_ms + self._retransmission_ms(len(pend.frame), now_ms)
                continue
            if pend.tries <= 0:  # give up (the firmware NAKs MAX_RETRANSMIT to the app)
                self._stop_retransmission(key)
                pid = key & 0xFFFFFFFF
                if pend.dest == BROADCAST:
                    self.counters["unconfirmed"] += 1
                elif self.awaiting.pop(pid, None) is not None:
                    self.counters["expired"] += 1
                    self.out.append(("expired", {"id": pid, "to": "%08x" % pend.dest,
                                                 "reason": "max_retransmit"}))
                continue
            pend.tries -= 1
            pend.next_ms = now_ms + self._retransmission_ms(len(pend.frame), now_ms)
            self.counters["retries"] += 1
            self._enqueue(_Tx(key, pend.frame, PRIO_HIGH, False, None), now_ms)

    def _stop_retransmission(self, key):
        if self.pending.pop(key, None) is None:
            return False
        self._cancel(key)
        return True

    def _retransmission_ms(self, frame_bytes, now_ms):
        # RadioInterface::getRetransmissionMsec, with the CW from channel utilisation
        cw = self._util_cw(now_ms)
        return (2 * self._airtime_ms(frame_bytes)
                + ((1 << cw) + 2 * CW_MAX + (1 << ((CW_MAX + CW_MIN) // 2))) * self.slot_ms
                + PROCESSING_MS)

    # ---- transmit queue and timer (MeshPacketQueue, RadioLibInterface) -------

    def _send_own(self, key, frame, prio, now_ms):
        # ReliableRouter::send: while this is on air no (implicit) ack can be heard
        air_ms = self._airtime_ms(len(frame))
        for k, pend in self.pending.items():
            if k != key:
                pend.next_ms += air_ms
        self._enqueue(_Tx(key, frame, prio, False, None), now_ms)

    def _enqueue(self, e, now_ms):
        if len(self.txq) >= MAX_TX_QUEUE:
            self.counters["queue_full"] += 1
            if not self.txq[-1].prio < e.prio:
                return False  # nothing of lower priority to evict: the new one is dropped
            self.txq.pop()
        i = 0
        while i < len(self.txq) and not e.before(self.txq[i]):
            i += 1
        self.txq.insert(i, e)
        if self.timer_ms is None:
            self._set_transmit_delay(now_ms)
        return True

    def _queued(self, key):
        for e in self.txq:
            if e.key == key:
                return True
        return False

    def _cancel(self, key):
        for i, e in enumerate(self.txq):
            if e.key == key:
                del self.txq[i]
                return True
        return False

    def _set_transmit_delay(self, now_ms):
        # the delay is chosen for the packet at the front of the queue: a relay
        # waits by the SNR it was heard at, our own packets by channel use
        front = self.txq[0]
        if front.snr_db is None:
            self.timer_ms = now_ms + self._util_delay_ms(now_ms)
        else:
            self.timer_ms = now_ms + self._weighted_delay_ms(front.snr_db)

    def _transmit_front(self, now_ms):
        e = self.txq[0]
        air_us = preset_time_on_air_us(len(e.frame), self.preset)
        at = self.duty.earliest_ms(now_ms, air_us)
        if at < 0:  # longer than the whole budget: can never go
            del self.txq[0]
            self._drop("duty")
            return
        if at > now_ms:  # over the duty-cycle budget: wait until it frees, then contend
            self.counters["deferred"] += 1
            self.timer_ms = at + (self._util_delay_ms(now_ms) if e.snr_db is None
                                  else self._weighted_delay_ms(e.snr_db))
            return
        del self.txq[0]
        self.duty.record(now_ms, air_us)
        air_ms = -(-air_us // 1000)
        self.busy_until_ms = now_ms + air_ms
        self.tx_end_ms = self.busy_until_ms
        self._log_util(now_ms, air_ms)
        self.counters["tx"] += 1
        if e.relay:
            self.counters["relayed"] += 1
        self.out.append(("tx", e.frame))

    def _weighted_delay_ms(self, snr_db):
        # RadioInterface::getTxDelayMsecWeighted: low SNR (far away) relays first
        cw = cw_size(snr_db)
        if self.role == "router":
            return self._rand(2 * cw) * self.slot_ms
        return (2 * CW_MAX + self._rand(1 << cw)) * self.slot_ms

    def _util_delay_ms(self, now_ms):
        # RadioInterface::getTxDelayMsec
        return self._rand(1 << self._util_cw(now_ms)) * self.slot_ms

    # ---- channel utilisation (AirTime) --------------------------------------

    def _log_util(self, now_ms, air_ms):
        b = now_ms // UTIL_PERIOD_MS
        i = b % UTIL_PERIODS
        if self.util_stamp[i] != b:
            self.util_stamp[i] = b
            self.util[i] = 0
        self.util[i] += air_ms

    def _util_pct(self, now_ms):
        lo = now_ms // UTIL_PERIOD_MS - UTIL_PERIODS + 1
        used = sum(self.util[i] for i in range(UTIL_PERIODS) if self.util_stamp[i] >= lo)
        return used * 100 / (UTIL_PERIODS * UTIL_PERIOD_MS)

    def _util_cw(self, now_ms):
        return CW_MIN + int(self._util_pct(now_ms)) * (CW_MAX - CW_MIN) // 100

    # ---- helpers ------------------------------------------------------------

    def _seen(self, key, now_ms, update):
        # PacketHistory::wasSeenRecently, bounded: the oldest entry goes when full
        t = self.history.get(key)
        seen = t is not None and now_ms - t < FLOOD_EXPIRE_MS
        if update:
            self.history.pop(key, None)
            self.history[key] = now_ms
            if len(self.history) > HISTORY_CAPACITY:
                del self.history[next(iter(self.history))]
        return seen

    def _airtime_ms(self, frame_bytes):
        return preset_time_on_air_us(frame_bytes, self.preset) // 1000

    def _rand(self, n):
        return self.rng.getrandbits(24) % n if n > 0 else 0

    def _new_id(self):
        i = self.next_id
        self.next_id = (i + 1) & 0xFFFFFFFF
        return i or self._new_id()

    def _drop(self, reason):
        self.drops[reason] = self.drops.get(reason, 0) + 1
