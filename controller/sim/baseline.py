# Meshtastic 2.7 routing, for the simulator only: the baseline pollen is
# compared against. CPython, never on boards. Same sans-IO interface as
# pollen.node.Node (docs/simulator.md); every constant and rule below is traced
# to its source in docs/baseline.md.
#
#   r = ManagedFlood(settings, storage, rng); r.start(now_ms)
#   r.send(dest, text, now_ms) -> id     r.on_frame(frame, rssi_dbm, snr_db, now_ms)
#   r.channel_busy(until_ms, now_ms)     r.poll(now_ms) -> actions; r.next_wake_ms
#
# The model: one transmit queue ordered by priority with one transmit timer
# (RadioLibInterface), SNR-weighted contention delays for relays
# (RadioInterface), a packet history that remembers who relayed what
# (PacketHistory), managed flooding with duplicate cancellation for broadcasts
# (FloodingRouter), next-hop routing for direct messages learnt from the relayer
# of their acks, with a flooded last retry (NextHopRouter), implicit and
# end-to-end acknowledgement (ReliableRouter), and optionally the NodeInfo and
# device telemetry broadcasts a default node sends by itself. Frames are sized
# like Meshtastic's: a 16-byte header and a protobuf Data message, unencrypted
# (AES-CTR adds no bytes; a PKI direct message carries its 12 bytes of
# overhead as zeros).
import hashlib
import struct

from pollen.airtime import PRESETS, preset_time_on_air_us
from pollen.region import DutyCycle, REGIONS
from pollen_controller.errors import InputError

BROADCAST = 0xFFFFFFFF
HEADER_BYTES = 16
MAX_FRAME_BYTES = 255        # MAX_LORA_PAYLOAD_LEN
CHANNEL_HASH = 0x08          # hash of the default "LongFast" channel with the default key
PKI_CHANNEL = 0x00           # the header's channel byte of a PKI-encrypted direct message
PKI_OVERHEAD = 12            # MESHTASTIC_PKC_OVERHEAD: 8-byte auth tag + 4-byte extra nonce
PORT_TEXT = 1                # TEXT_MESSAGE_APP
PORT_NODEINFO = 4            # NODEINFO_APP
PORT_ROUTING = 5             # ROUTING_APP (acks)
PORT_TELEMETRY = 67          # TELEMETRY_APP
HOP_MAX = 7                  # the header's 3-bit hop limit
NO_NEXT_HOP = 0              # NO_NEXT_HOP_PREFERENCE

CW_MIN = 3
CW_MAX = 8
SNR_MIN_DB = -20             # getCWsize maps SNR -20..+10 dB to CW_MIN..CW_MAX
SNR_MAX_DB = 10
SNR_CLAMP_DB = (-20, 15)     # what a LoRa radio reports (Meshtasticator clamps so too)
PROCESSING_MS = 4500         # PROCESSING_TIME_MSEC in getRetransmissionMsec
NUM_RELIABLE_RETX = 3        # transmissions in all of a packet we originate with want_ack
NUM_INTERMEDIATE_RETX = 2    # a relay that named a next hop: its relay, then one flooded retry
MAX_TX_QUEUE = 16
PRIO_BACKGROUND = 10         # MeshPacket.Priority: our own NodeInfo and telemetry
PRIO_DEFAULT = 64            # relayed NodeInfo and telemetry
PRIO_RELIABLE = 70           # a relayed packet we cannot decode (PKI) with want_ack
PRIO_RESPONSE = 80
PRIO_HIGH = 100              # text messages
PRIO_ACK = 120               # routing acks
HISTORY_CAPACITY = 200       # PACKETHISTORY_MAX = max(2 * MAX_NUM_NODES, 100)
NUM_RELAYERS = 6             # relayers a history record remembers
NODE_CAPACITY = 100          # MAX_NUM_NODES: next hops and nodes heard
ONLINE_MS = 7200000          # NUM_ONLINE_SECS: a node heard within 2 h is online
UTIL_PERIOD_MS = 10000       # channel utilisation: six 10 s periods
UTIL_PERIODS = 6
MAX_PENDING = 32             # packets being retransmitted (own and as a named next hop)
MAX_AWAITING = 64            # own unicast ids awaiting the destination's ack
IDLE_WAKE_MS = 3600000

# background traffic of a default node (Default.h, NodeInfoModule, DeviceTelemetryModule)
NODEINFO_INTERVAL_MS = 3 * 3600000      # default_node_info_broadcast_secs
TELEMETRY_INTERVAL_MS = 3600000         # default_telemetry_broadcast_interval_secs
TELEMETRY_ROUTER_MS = 12 * 3600000      # the same for ROUTER (IF_ROUTER)
TELEMETRY_CHECK_MS = 60000              # DeviceTelemetryModule::runOnce period
POLITE_UTIL_PCT = 25                    # AirTime polite_channel_util_percent
MAX_UTIL_PCT = 40                       # AirTime max_channel_util_percent
POLITE_DUTY_PCT = 50                    # AirTime polite_duty_cycle_percent
HW_MODEL = 43                           # HardwareModel HELTEC_V3, a common board
ROLE_ROUTER = 2                         # Config.DeviceConfig.Role ROUTER
USB_BATTERY = 101                       # MAGIC_USB_BATTERY_LEVEL
EPOCH_S = 1750000000                    # the simulated start, in unix seconds
DEFAULT_BACKGROUND = True               # docs/baseline.md: "Background traffic"

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


def _pb_varint(field, v):
    return _varint(field << 3) + _varint(v)


def _pb_bytes(field, b):
    return _varint(field << 3 | 2) + _varint(len(b)) + bytes(b)


def _pb_fixed32(field, v):
    return _varint(field << 3 | 5) + struct.pack("<I", v)


def _pb_float(field, v):
    return _varint(field << 3 | 5) + struct.pack("<f", v)


def _data(port, payload, request_id=0):
    # Data{portnum, payload, request_id, bitfield: 0}; the firmware sets
    # has_bitfield on every packet it originates (Router.cpp perhapsEncode)
    out = _pb_varint(1, port) + _pb_bytes(2, payload)
    if request_id:
        out += _pb_fixed32(6, request_id)
    return out + b"\x48\x00"


def encode_text(text):
    # 6 bytes of overhead (7 from 128 bytes of text, when the length takes two)
    return _data(PORT_TEXT, text)


def encode_ack(request_id):
    # payload Routing{error_reason: NONE}: 13 bytes in all
    return _data(PORT_ROUTING, b"\x18\x00", request_id)


def public_key(node_id):
    # a stand-in for the node's X25519 public key: 32 bytes, fixed per node
    return hashlib.sha256(b"meshtastic-sim" + struct.pack("<I", node_id)).digest()


def encode_nodeinfo(node_id, router=False):
    # User as a default node sends it (NodeDB installDefaultDeviceState):
    # id "!%08x", long name "Meshtastic %04x", short name "%04x", macaddr (its
    # last four bytes are the node number), hw_model, role (CLIENT is 0 and
    # not encoded), public_key, is_unmessagable false (has_ set)
    low = node_id & 0xFFFF
    user = (_pb_bytes(1, b"!%08x" % node_id) + _pb_bytes(2, b"Meshtastic %04x" % low)
            + _pb_bytes(3, b"%04x" % low) + _pb_bytes(4, b"\x02\x00" + struct.pack(">I", node_id))
            + _pb_varint(5, HW_MODEL) + (_pb_varint(7, ROLE_ROUTER) if router else b"")
            + _pb_bytes(8, public_key(node_id)) + _pb_varint(9, 0))
    return _data(PORT_NODEINFO, user)


def encode_telemetry(time_s, voltage, channel_util, air_util, uptime_s):
    # Telemetry{time, device_metrics{battery_level, voltage, channel_utilization,
    # air_util_tx, uptime_seconds}} (DeviceTelemetryModule::getDeviceTelemetry)
    metrics = (_pb_varint(1, USB_BATTERY) + _pb_float(2, voltage) + _pb_float(3, channel_util)
               + _pb_float(4, air_util) + _pb_varint(5, uptime_s))
    return _data(PORT_TELEMETRY, _pb_fixed32(1, time_s) + _pb_bytes(2, metrics))


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


def last_byte(node_id):
    # NodeDB::getLastByteOfNodeNum: the low byte, 0xff for a node whose low byte is 0
    return node_id & 0xFF or 0xFF


def pack_frame(dest, sender, pkt_id, hop_limit, hop_start, want_ack, data, relay=0,
               channel=CHANNEL_HASH, next_hop=NO_NEXT_HOP, pki=False):
    # PacketHeader: to, from, id (little-endian u32), flags, channel, next_hop,
    # relay_node. A PKI direct message has channel 0 and 12 more bytes.
    flags = (hop_limit & _F_HOP_LIMIT) | (_F_WANT_ACK if want_ack else 0) \
        | ((hop_start & 7) << _F_HOP_START_SHIFT)
    if pki:
        channel, data = PKI_CHANNEL, bytes(data) + bytes(PKI_OVERHEAD)
    return struct.pack("<IIIBBBB", dest, sender, pkt_id, flags, channel, next_hop & 0xFF,
                       relay & 0xFF) + bytes(data)


class Packet:
    __slots__ = ("dest", "sender", "pkt_id", "hop_limit", "hop_start", "want_ack", "next_hop",
                 "relay", "pki", "port", "payload", "request_id")

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
    dest, sender, pkt_id, flags, channel, next_hop, relay = struct.unpack_from("<IIIBBBB", frame)
    pki = channel == PKI_CHANNEL and dest != BROADCAST
    if channel != CHANNEL_HASH and not pki:
        return None, "channel"  # stands in for "no key decrypts this"
    p = Packet()
    p.dest, p.sender, p.pkt_id, p.next_hop, p.relay, p.pki = dest, sender, pkt_id, next_hop, \
        relay, pki
    p.hop_limit = flags & _F_HOP_LIMIT
    p.hop_start = flags >> _F_HOP_START_SHIFT
    p.want_ack = bool(flags & _F_WANT_ACK)
    if sender in (0, BROADCAST) or dest == 0 or pkt_id == 0 or p.hop_start < p.hop_limit:
        return None, "field"
    end = n - PKI_OVERHEAD if pki else n
    d = decode_data(frame[HEADER_BYTES:end]) if end > HEADER_BYTES else None
    if d is None:
        return None, "data"
    p.port, p.payload, p.request_id = d
    return p, None


def relayed(frame, hop_limit, relay, next_hop=None):
    b = bytearray(frame)
    b[12] = (b[12] & ~_F_HOP_LIMIT & 0xFF) | hop_limit
    if next_hop is not None:
        b[14] = next_hop & 0xFF
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
    if hop_start >= hop_limit:
        used = hop_start - hop_limit
        if used > configured:
            return used
        if hop_start == 0:
            return 0
        if used + 2 < configured:
            return used + 2
    return configured


def congestion_scale(online, preset):
    # Default::congestionScalingCoefficient: intervals grow past 40 nodes online
    if online <= 40:
        return 1.0
    return 1.0 + (online - 40) * (1 << preset[0]) / (preset[1] / 1000 * 100)


# ---- settings ----------------------------------------------------------------

def _preset(v):
    if isinstance(v, str):
        if v not in PRESETS:
            raise InputError("preset: one of %s, got %r" % (", ".join(sorted(PRESETS)), v))
        return PRESETS[v]
    if isinstance(v, dict):
        return (int(v["sf"]), int(v["bw_hz"]), int(v.get("cr", 5)), int(v.get("preamble", 16)))
    if isinstance(v, (tuple, list)) and len(v) == 4:
        return tuple(int(x) for x in v)
    raise InputError("preset: a name, (sf, bw_hz, cr, preamble) or a dict, got %r" % (v,))


def _node_id(v):
    if isinstance(v, str):
        try:
            v = int(v, 16)
        except ValueError:
            raise InputError("node_id: a 32-bit id in hex, got %r" % (v,)) from None
    if not isinstance(v, int) or isinstance(v, bool) or not 0 < v < BROADCAST:
        raise InputError("node_id: a 32-bit id, not 0 or ffffffff, got %r" % (v,))
    return v


def _region(settings):
    region = settings.get("region", "EU868")
    if region not in REGIONS:
        raise InputError("region: one of %s, got %r" % (", ".join(sorted(REGIONS)), region))
    return region


def _flag(settings, key, default):
    v = settings.get(key, default)
    if not isinstance(v, bool):
        raise InputError("%s: true or false, got %r" % (key, v))
    return v


def _int(settings, key, default, lo, hi, why):
    # why: what bounds it, said when a value is refused
    v = settings.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool):
        raise InputError("%s: an integer %d..%d, got %r" % (key, lo, hi, v))
    if not lo <= v <= hi:
        raise InputError("%s: %d..%d (%s), got %r" % (key, lo, hi, why, v))
    return v


def _role(settings):
    role = settings.get("role", "client")
    if role not in ("client", "router"):
        raise InputError("role: 'client' or 'router', got %r" % (role,))
    return role


# ---- owned state --------------------------------------------------------------

class _Record:  # a PacketHistory record
    __slots__ = ("t", "next_hop", "highest", "our_tx", "relayers")


class History:
    # PacketHistory: a fixed number of records (sender, id) -> who relayed it,
    # the next hop first asked for, the highest hop limit heard; no expiry, the
    # least recently heard record makes room.
    def __init__(self, node_id, our_byte, capacity=HISTORY_CAPACITY):
        self.node_id, self.our, self.capacity = node_id, our_byte, capacity
        self.recs = {}  # key -> _Record, least recently heard first

    def seen(self, key, hop_limit, next_hop, relay, now_ms, update=True):
        # wasSeenRecently -> (seen, fallback, we_were_next_hop, upgraded)
        our = self.our
        found = self.recs.get(key)
        fallback = we_were = upgraded = False
        if found is not None:
            upgraded = found.highest < hop_limit
            # our named next hop did not relay and the relayer now floods it
            fallback = ((key >> 32) != self.node_id and found.next_hop not in (NO_NEXT_HOP, our)
                        and next_hop == NO_NEXT_HOP and relay in found.relayers
                        and our not in found.relayers and found.next_hop not in found.relayers)
            we_were = found.next_hop == our
        if update:
            r = _Record()
            r.t, r.next_hop, r.highest = now_ms, next_hop, hop_limit
            will_relay = relay == our
            r.our_tx = hop_limit if will_relay else None
            r.relayers = [our] if will_relay else []
            if found is not None:
                if not will_relay:
                    tx = found.our_tx or 0
                    # a copy relayed by a node that heard ours: one hop fewer
                    if our in found.relayers and hop_limit in (tx, tx - 1) and relay:
                        r.relayers.append(relay)
                    r.our_tx = found.our_tx
                r.highest = max(r.highest, found.highest)
                for b in found.relayers:
                    if b not in r.relayers and len(r.relayers) < NUM_RELAYERS:
                        r.relayers.append(b)
                r.next_hop = found.next_hop  # whether we were asked is decided by the first
                del self.recs[key]
            self.recs[key] = r
            if len(self.recs) > self.capacity:
                del self.recs[next(iter(self.recs))]
        return found is not None, fallback, we_were, upgraded

    def was_relayer(self, relay, key):
        # -> (relay relayed it, relay was its only relayer)
        r = self.recs.get(key)
        if r is None or not relay or relay not in r.relayers:
            return False, False
        return True, len(r.relayers) == 1


class _Background:
    # what a default node sends by itself, in steady state: each timer starts
    # at a random phase of its interval (a deployed node has been up for a while)
    def __init__(self, start_ms, u_nodeinfo, u_telemetry, u_check):
        self.start_ms = start_ms
        self.nodeinfo_ms = start_ms + int((1 - u_nodeinfo) * NODEINFO_INTERVAL_MS)
        self.telemetry_u = u_telemetry
        self.telemetry_last_ms = None
        self.check_ms = start_ms + int(u_check * TELEMETRY_CHECK_MS)

    def telemetry_due(self, now_ms, interval_ms):
        if self.telemetry_last_ms is None:
            return now_ms - self.start_ms >= (1 - self.telemetry_u) * interval_ms
        return now_ms - self.telemetry_last_ms >= interval_ms

    def next_ms(self):
        return min(self.nodeinfo_ms, self.check_ms)


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


class _Pending:  # NextHopRouter's PendingPacket
    __slots__ = ("frame", "dest", "tries", "next_ms", "own", "prio", "snr_db")

    def __init__(self, frame, dest, tries, next_ms, own, prio, snr_db):
        self.frame, self.dest, self.tries, self.next_ms = frame, dest, tries, next_ms
        self.own, self.prio, self.snr_db = own, prio, snr_db


class ManagedFlood:
    def __init__(self, settings, storage, rng):
        self.id = _node_id(settings.get("node_id"))
        self.low = last_byte(self.id)
        region = _region(settings)
        self.duty_per_mille = REGIONS[region][1]
        self.duty = DutyCycle(self.duty_per_mille)
        self.preset = _preset(settings.get("preset", "LongFast"))
        self.hop_limit = _int(settings, "hop_limit", 3, 1, HOP_MAX,
                              "the header holds a 3-bit hop limit; a flood cannot go further")
        self.role = _role(settings)
        self.next_hop_on = _flag(settings, "next_hop", True)
        self.pki = _flag(settings, "pki", True)
        self.background = _flag(settings, "background", DEFAULT_BACKGROUND)
        self.storage = storage  # unused: the model keeps nothing across restarts
        self.rng = rng
        self.slot_ms = slot_time_ms(self.preset)
        self.history = History(self.id, self.low)
        self.next_hops = {}      # destination -> next hop byte (NodeInfoLite.next_hop)
        self.heard = {}          # node -> last heard ms (NodeDB last_heard)
        self.txq = []            # _Tx, in transmit order
        self.timer_ms = None     # the transmit timer (TRANSMIT_DELAY_COMPLETED)
        self.tx_end_ms = None    # our transmission ends (ISR_TX to come)
        self.busy_until_ms = 0
        self.channel_until_ms = 0
        self.pending = {}        # key -> _Pending
        self.awaiting = {}       # own unicast id -> destination
        self.util = [0] * UTIL_PERIODS
        self.util_stamp = [-1] * UTIL_PERIODS
        self.bg = None
        self.next_id = 1
        self.started_ms = 0
        self.next_wake_ms = 0
        self.out = []
        self.counters = {"rx": 0, "tx": 0, "relayed": 0, "duplicates": 0, "cancelled": 0,
                         "retries": 0, "relay_retries": 0, "fallbacks": 0, "delivered": 0,
                         "originated": 0, "deferred": 0, "expired": 0, "unconfirmed": 0,
                         "implicit_acks": 0, "acks_sent": 0, "resent": 0, "upgraded": 0,
                         "next_hop_learned": 0, "not_next_hop": 0, "nodeinfo": 0,
                         "telemetry": 0, "busy_backoffs": 0, "queue_full": 0, "internal": 0}
        self.drops = {}

    # ---- inputs -------------------------------------------------------------

    def start(self, now_ms):
        self.started_ms = now_ms
        self.next_id = self.rng.getrandbits(32) or 1
        if self.background:
            self.bg = _Background(now_ms, self._unit(), self._unit(), self._unit())
        self.next_wake_ms = now_ms

    def send(self, dest, payload, now_ms):
        # Raises ValueError on local misuse (too long, bad destination).
        text = payload.encode() if isinstance(payload, str) else bytes(payload)
        if dest in (self.id, 0) or not 0 < dest <= BROADCAST:
            raise ValueError("bad destination %08x" % dest)
        unicast = dest != BROADCAST
        pki = unicast and self.pki
        data = encode_text(text)
        room = MAX_FRAME_BYTES - HEADER_BYTES - (PKI_OVERHEAD if pki else 0)
        if len(data) > room:
            raise ValueError("text is %d bytes; at most %d fit in a frame" % (len(text), room - 7))
        pid = self._new_id()
        nh = self._next_hop_for(dest)
        # want_ack: set on air for unicasts only (Router::send clears it on broadcasts)
        frame = pack_frame(dest, self.id, pid, self.hop_limit, self.hop_limit, unicast, data,
                           self.low, next_hop=nh, pki=pki)
        key = (self.id << 32) | pid
        self.history.seen(key, self.hop_limit, nh, self.low, now_ms)
        self.counters["originated"] += 1
        self._start_retransmission(key, frame, dest, NUM_RELIABLE_RETX, True, PRIO_HIGH, None,
                                   now_ms)
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
        if self.txq and self.timer_ms is None:  # ISR_RX: setTransmitDelay
            self._set_transmit_delay(now_ms)
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
            self.tx_end_ms = None  # ISR_TX: setTransmitDelay for the next queued packet
            if self.txq and self.timer_ms is None:
                self._set_transmit_delay(now_ms)
        if self.bg is not None:
            self._background(now_ms)
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
        if self.bg is not None:
            t = min(t, self.bg.next_ms())
        for pend in self.pending.values():
            t = min(t, pend.next_ms)
        self.next_wake_ms = max(t, now_ms)
        out = self.out
        self.out = []
        return out

    def status(self, now_ms):
        held = sum(1 for k, p in self.pending.items()
                   if p.own and (k & 0xFFFFFFFF) in self.awaiting)
        return {"id": "%08x" % self.id, "role": self.role,
                "uptime_s": (now_ms - self.started_ms) // 1000,
                "held": held, "queue": len(self.txq), "pending": len(self.pending),
                "next_hops": len(self.next_hops), "online": self._online(now_ms),
                "counters": dict(self.counters), "dropped": dict(self.drops),
                "airtime_ms": self.duty.total_us // 1000,
                "duty_headroom_pct": round(self.duty.headroom_per_mille(now_ms) / 10, 1),
                "channel_util_pct": round(self._util_pct(now_ms), 1)}

    @staticmethod
    def frame_info(frame):
        # -> (type_name, msg_key) for the simulator's metrics: msg_key is
        # (origin, id) of the direct message a frame carries or acknowledges
        p, _ = parse_frame(frame)
        if p is None:
            return "invalid", None
        if p.pki:
            return "msg", (p.sender, p.pkt_id)
        if p.port == PORT_ROUTING:
            return "ack", (p.dest, p.request_id) if p.request_id else None
        if p.port == PORT_TEXT:
            return ("text", None) if p.dest == BROADCAST else ("msg", (p.sender, p.pkt_id))
        if p.port == PORT_NODEINFO:
            return "nodeinfo", None
        if p.port == PORT_TELEMETRY:
            return "telemetry", None
        return "port%d" % p.port, None

    # ---- receiving ----------------------------------------------------------

    def _handle(self, p, frame, rssi_dbm, snr_db, now_ms, air_ms):
        key = p.key()
        decoded = not p.pki or p.dest == self.id
        # ReliableRouter::shouldFilterReceived: someone rebroadcast our packet
        if p.sender == self.id and self._stop_retransmission(key):
            self.counters["implicit_acks"] += 1
        for pend in self.pending.values():  # we could not hear an ack meanwhile
            pend.next_ms += air_ms
        if p.dest == BROADCAST or not self.next_hop_on:
            filtered = self._filter_flooding(p, frame, snr_db, now_ms)
        else:
            filtered = self._filter_next_hop(p, frame, snr_db, now_ms)
        if filtered:
            return
        if decoded:
            self._heard(p.sender, now_ms)
        # ReliableRouter::sniffReceived: what is addressed to us
        if p.dest == self.id:
            self._reliable(p, decoded, now_ms)
        # NextHopRouter::sniffReceived: an ack going by teaches a next hop and
        # ends the relaying of its message
        if decoded and p.request_id and p.dest != BROADCAST:
            self._ack_going_by(p, now_ms)
        self._rebroadcast(p, frame, snr_db, now_ms)
        if decoded and p.port == PORT_TEXT and p.dest in (self.id, BROADCAST):
            self.out.append(("received", {
                "kind": "post" if p.dest == BROADCAST else "msg", "from": "%08x" % p.sender,
                "to": "%08x" % p.dest, "id": p.pkt_id,
                "text": p.payload.decode("utf-8", "replace"), "hops": p.hops(),
                "rssi_dbm": rssi_dbm, "snr_db": snr_db}))

    def _filter_flooding(self, p, frame, snr_db, now_ms):
        # FloodingRouter::shouldFilterReceived -> True when p goes no further
        key = p.key()
        seen, _, _, upgraded = self.history.seen(key, p.hop_limit, p.next_hop, p.relay, now_ms)
        if upgraded and self._upgrade(p, frame, snr_db, now_ms):
            return True
        if not seen:
            return False
        self.counters["duplicates"] += 1
        if p.hop_start > 0 and p.hop_start == p.hop_limit:
            # the originator repeats it because it heard no relay: relay it
            # again (unless still queued) so it hears its implicit ack
            if not self._queued(key) and self._rebroadcast(p, frame, snr_db, now_ms):
                self.counters["resent"] += 1
        else:
            self._cancel_dupe(key)
        return True

    def _filter_next_hop(self, p, frame, snr_db, now_ms):
        # NextHopRouter::shouldFilterReceived (direct messages)
        key = p.key()
        seen, fallback, we_were_next_hop, upgraded = self.history.seen(
            key, p.hop_limit, p.next_hop, p.relay, now_ms)
        if upgraded and self._upgrade(p, frame, snr_db, now_ms):
            return True
        if not seen:
            return False
        self.counters["duplicates"] += 1
        self._stop_retransmission(key)  # somebody relayed it: ours is not needed
        if fallback:
            # the named next hop never relayed it and the relayer fell back
            # to flooding: we relay now if we did not already
            if not self._queued(key) and self._rebroadcast(p, frame, snr_db, now_ms):
                self.counters["resent"] += 1
        elif p.hops() == 0:
            # repeated by its originator: relay again, or, if it is for us,
            # ack it again with hop limit 0 so the originator stops
            if not self._queued(key):
                if self._rebroadcast(p, frame, snr_db, now_ms):
                    self.counters["resent"] += 1
                elif p.dest == self.id and p.want_ack:
                    self._send_ack(p, 0, False, now_ms)
        elif not we_were_next_hop:
            self._cancel_dupe(key)
        return True

    def _upgrade(self, p, frame, snr_db, now_ms):
        # FloodingRouter::perhapsHandleUpgradedPacket: a copy with more hops
        # left replaces the one waiting in our queue
        if p.hop_limit == 0:
            return False
        key = p.key()
        for i, e in enumerate(self.txq):
            if e.key == key and e.relay and (e.frame[12] & _F_HOP_LIMIT) < p.hop_limit:
                del self.txq[i]
                self.counters["upgraded"] += 1
                self._rebroadcast(p, frame, snr_db, now_ms)
                return True
        return False

    def _cancel_dupe(self, key):
        # FloodingRouter::perhapsCancelDupe: a client drops its queued relay of
        # a packet someone else relayed; a router never does
        if self.role == "client" and self._cancel(key):
            self.counters["cancelled"] += 1

    def _rebroadcast(self, p, frame, snr_db, now_ms):
        # NextHopRouter::perhapsRebroadcast -> True when queued
        if p.dest == self.id or p.sender == self.id or p.hop_limit == 0:
            return False
        if p.next_hop not in (NO_NEXT_HOP, self.low):
            self.counters["not_next_hop"] += 1
            return False
        hop = p.hop_limit - 1
        # FloodingRouter::send keeps "no preference"; NextHopRouter::send names ours
        nh = NO_NEXT_HOP if p.next_hop == NO_NEXT_HOP else self._next_hop_for(p.dest)
        key = p.key()
        out = relayed(frame, hop, self.low, nh)
        self.history.seen(key, hop, nh, self.low, now_ms)
        prio = self._relay_prio(p)
        if nh != NO_NEXT_HOP and (hop > 0 or p.want_ack):
            # NextHopRouter::send: one retry if the next hop is not heard relaying
            self._start_retransmission(key, out, p.dest, NUM_INTERMEDIATE_RETX, False, prio,
                                       snr_db, now_ms)
        self._enqueue(_Tx(key, out, prio, True, snr_db), now_ms)
        return True

    def _reliable(self, p, decoded, now_ms):
        # ReliableRouter::sniffReceived for a packet addressed to us
        if p.want_ack and decoded:
            if p.port == PORT_TEXT:
                # shouldSuccessAckWithWantAck: a direct text is acked reliably
                self._send_ack(p, response_hop_limit(p.hop_start, p.hop_limit, self.hop_limit),
                               True, now_ms)
            elif not p.request_id:
                self._send_ack(p, response_hop_limit(p.hop_start, p.hop_limit, self.hop_limit),
                               False, now_ms)
            elif p.hops() == 0 or p.next_hop != NO_NEXT_HOP:
                # a reliable ack heard from its sender or via a next hop: a
                # 0-hop ack stops their retransmissions
                self._send_ack(p, 0, False, now_ms)
        elif not p.want_ack and p.next_hop == self.low and p.hop_limit > 0:
            self._send_ack(p, 0, False, now_ms)
        if decoded and p.port == PORT_ROUTING and p.request_id:
            self._stop_retransmission((self.id << 32) | p.request_id)
            dest = self.awaiting.pop(p.request_id, None)
            if dest is not None:
                self.counters["delivered"] += 1
                self.out.append(("delivered", {"id": p.request_id, "to": "%08x" % dest,
                                               "hops": p.hops()}))

    def _ack_going_by(self, p, now_ms):
        acked = (p.dest << 32) | p.request_id  # the acknowledged packet
        if self.next_hop_on:
            # learn a next hop towards the ack's sender: its relayer relayed
            # the message too (a two-way link), or we were the message's only
            # relayer and the ack came straight from its sender
            relayer, _ = self.history.was_relayer(p.relay, acked)
            we_relayed, sole = self.history.was_relayer(self.low, acked)
            if (we_relayed and relayer) or (p.hops() == 0 and sole):
                if self.next_hops.get(p.sender) != p.relay:
                    self.next_hops.pop(p.sender, None)
                    self.next_hops[p.sender] = p.relay
                    if len(self.next_hops) > NODE_CAPACITY:
                        del self.next_hops[next(iter(self.next_hops))]
                    self.counters["next_hop_learned"] += 1
        if p.dest != self.id:
            if self._cancel(acked):
                self.counters["cancelled"] += 1
            self._stop_retransmission(acked)

    def _send_ack(self, p, hop, want_ack, now_ms):
        pid = self._new_id()
        nh = self._next_hop_for(p.sender)
        frame = pack_frame(p.sender, self.id, pid, hop, hop, want_ack, encode_ack(p.pkt_id),
                           self.low, next_hop=nh)
        key = (self.id << 32) | pid
        self.history.seen(key, hop, nh, self.low, now_ms)
        self.counters["acks_sent"] += 1
        if want_ack:
            self._start_retransmission(key, frame, p.sender, NUM_RELIABLE_RETX, True, PRIO_ACK,
                                       None, now_ms)
        self._send_own(key, frame, PRIO_ACK, now_ms)

    def _relay_prio(self, p):
        # fixPriority on the copy we relay
        if p.pki and p.dest != self.id:  # we cannot decode it
            return PRIO_RELIABLE if p.want_ack else PRIO_DEFAULT
        if p.port == PORT_ROUTING:
            return PRIO_ACK
        if p.port == PORT_TEXT:
            return PRIO_HIGH
        if p.request_id:
            return PRIO_RESPONSE
        return PRIO_RELIABLE if p.want_ack else PRIO_DEFAULT

    def _next_hop_for(self, dest):
        # NextHopRouter::getNextHop: never ourselves
        if not self.next_hop_on or dest == BROADCAST:
            return NO_NEXT_HOP
        nh = self.next_hops.get(dest, NO_NEXT_HOP)
        return NO_NEXT_HOP if nh == self.low else nh

    # ---- background traffic (NodeInfoModule, DeviceTelemetryModule) ----------

    def _background(self, now_ms):
        bg = self.bg
        if now_ms >= bg.nodeinfo_ms:
            bg.nodeinfo_ms += NODEINFO_INTERVAL_MS
            if self._air_util_ok(now_ms) and self._util_pct(now_ms) < MAX_UTIL_PCT:
                self.counters["nodeinfo"] += 1
                self._send_background(encode_nodeinfo(self.id, self.role == "router"), now_ms)
        if now_ms >= bg.check_ms:
            bg.check_ms += TELEMETRY_CHECK_MS
            if self.role == "router":  # not scaled for routers
                interval = TELEMETRY_ROUTER_MS
                util_limit = MAX_UTIL_PCT
            else:
                interval = TELEMETRY_INTERVAL_MS * congestion_scale(self._online(now_ms),
                                                                    self.preset)
                util_limit = POLITE_UTIL_PCT
            util = self._util_pct(now_ms)
            if bg.telemetry_due(now_ms, interval) and util < util_limit \
                    and self._air_util_ok(now_ms):
                bg.telemetry_last_ms = now_ms
                self.counters["telemetry"] += 1
                air = self.duty.used_us(now_ms) / 36000000  # % of the hour
                data = encode_telemetry(EPOCH_S + now_ms // 1000, 4.1, util, air,
                                        (now_ms - self.started_ms) // 1000)
                self._send_background(data, now_ms)

    def _send_background(self, data, now_ms):
        pid = self._new_id()
        frame = pack_frame(BROADCAST, self.id, pid, self.hop_limit, self.hop_limit, False, data,
                           self.low)
        key = (self.id << 32) | pid
        self.history.seen(key, self.hop_limit, NO_NEXT_HOP, self.low, now_ms)
        self._send_own(key, frame, PRIO_BACKGROUND, now_ms)

    def _air_util_ok(self, now_ms):
        # AirTime::isTxAllowedAirUtil: under half the duty-cycle allowance
        pm = self.duty_per_mille
        if not 0 < pm < 1000:
            return True
        return self.duty.used_us(now_ms) * 100 < self.duty.budget_us * POLITE_DUTY_PCT

    def _heard(self, node, now_ms):
        self.heard.pop(node, None)
        self.heard[node] = now_ms
        if len(self.heard) > NODE_CAPACITY:
            del self.heard[next(iter(self.heard))]

    def _online(self, now_ms):
        # NodeDB::getNumOnlineMeshNodes, ourselves included
        return 1 + sum(1 for t in self.heard.values() if now_ms - t < ONLINE_MS)

    # ---- retransmission (ReliableRouter, NextHopRouter) ---------------------

    def _start_retransmission(self, key, frame, dest, transmissions, own, prio, snr_db, now_ms):
        self._stop_retransmission(key)
        if len(self.pending) >= MAX_PENDING:
            self.pending.pop(next(iter(self.pending)))
        self.pending[key] = _Pending(frame, dest, transmissions - 1,
                                     now_ms + self._retransmission_ms(len(frame), now_ms),
                                     own, prio, snr_db)

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
                if not pend.own:
                    continue
                if pend.dest == BROADCAST:
                    self.counters["unconfirmed"] += 1
                elif self.awaiting.pop(pid, None) is not None:
                    self.counters["expired"] += 1
                    self.out.append(("expired", {"id": pid, "to": "%08x" % pend.dest,
                                                 "reason": "max_retransmit"}))
                continue
            nh = NO_NEXT_HOP
            frame = pend.frame
            if pend.dest != BROADCAST and self.next_hop_on:
                if pend.tries == 1:
                    # the last retry floods, and the next hop is forgotten
                    self.next_hops.pop(pend.dest, None)
                    self.counters["fallbacks"] += 1
                else:
                    nh = self._next_hop_for(pend.dest)
                frame = relayed(frame, frame[12] & _F_HOP_LIMIT, self.low, nh)
            self.history.seen(key, frame[12] & _F_HOP_LIMIT, nh, self.low, now_ms)
            pend.tries -= 1
            pend.next_ms = now_ms + self._retransmission_ms(len(frame), now_ms)
            self.counters["retries" if pend.own else "relay_retries"] += 1
            self._enqueue(_Tx(key, frame, pend.prio, not pend.own, pend.snr_db), now_ms)

    def _stop_retransmission(self, key):
        pend = self.pending.pop(key, None)
        if pend is None:
            return False
        # a copy already queued again is dropped too (by a router, only its own)
        if pend.tries < NUM_RELIABLE_RETX - 1 and (pend.own or self.role == "client"):
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

    def _airtime_ms(self, frame_bytes):
        return preset_time_on_air_us(frame_bytes, self.preset) // 1000

    def _rand(self, n):
        return self.rng.getrandbits(24) % n if n > 0 else 0

    def _unit(self):
        return self.rng.getrandbits(24) / 16777216

    def _new_id(self):
        i = self.next_id
        self.next_id = (i + 1) & 0xFFFFFFFF
        return i or self._new_id()

    def _drop(self, reason):
        self.drops[reason] = self.drops.get(reason, 0) + 1
