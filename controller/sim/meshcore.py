# MeshCore routing (meshcore-dev/MeshCore 1.17), for the simulator only: a
# second baseline pollen is compared against. CPython, never on boards. Same
# sans-IO interface as pollen.node.Node (docs/simulator.md); every constant and
# rule is traced to its source in docs/baseline-meshcore.md.
#
#   r = MeshCore(settings, storage, rng); r.start(now_ms)
#   r.send(dest, text, now_ms) -> id     r.on_frame(frame, rssi_dbm, snr_db, now_ms)
#   r.channel_busy(until_ms, now_ms)     r.poll(now_ms) -> actions; r.next_wake_ms
#
# The model: a direct message is flooded first, each repeater appending its
# hash to the packet's path; the destination returns that path (a PATH packet
# carrying the ack) and from then on messages, acks and paths go source-routed
# along it (Mesh.cpp, BaseChatMesh.cpp). Floods wait a random delay of up to
# 2.5 airtimes before a repeat, direct hops up to one (companion_radio and
# simple_repeater MyMesh). No duplicate cancellation, no implicit acks: a
# packet is repeated once by every node that hears it first. The phone app
# retries a message unacked within its timeout, the last time by flood
# (meshcore_py send_msg_with_retry). One send queue served by priority, listen
# before talk (Dispatcher.cpp). Repeaters advertise themselves by flood.
#
# Frames are MeshCore's, byte for byte in size: header, path length, path,
# payload; 1-byte node hashes, 2-byte MACs, AES blocks of 16. The simulation
# does not encrypt: a "ciphertext" is the plaintext padded with zeros, and who
# can decrypt what is told by a registry of the packets sent (the stand-in
# for contacts and their shared secrets, below).
import base64
import hashlib
import hmac
import struct

from pollen.airtime import preset_time_on_air_us
from pollen.region import DutyCycle, REGIONS
from pollen_controller.errors import InputError
from pollen_controller.sim.baseline import _flag, _int, _node_id, _preset, _region, _role

BROADCAST = 0xFFFFFFFF

ROUTE_TRANSPORT_FLOOD = 0
ROUTE_FLOOD = 1
ROUTE_DIRECT = 2
ROUTE_TRANSPORT_DIRECT = 3
T_REQ = 0x00
T_RESPONSE = 0x01
T_TXT = 0x02                 # PAYLOAD_TYPE_TXT_MSG: a direct text
T_ACK = 0x03
T_ADVERT = 0x04
T_GRP_TXT = 0x05             # a text on a group channel: our broadcasts
T_PATH = 0x08                # a returned path, with an ack as its "extra"
T_TRACE = 0x09
T_MULTIPART = 0x0A
T_CONTROL = 0x0B
TYPE_NAMES = {T_REQ: "req", T_RESPONSE: "response", T_TXT: "msg", T_ACK: "ack",
              T_ADVERT: "advert", T_GRP_TXT: "text", 0x06: "grp_data", 0x07: "anon_req",
              T_PATH: "path", T_TRACE: "trace", T_MULTIPART: "ack", T_CONTROL: "control"}

MAX_TRANS_UNIT = 255
MAX_PACKET_PAYLOAD = 184
MAX_PATH_SIZE = 64           # path bytes: 64 hops of 1-byte hashes
MAX_TEXT_LEN = 160           # 10 * CIPHER_BLOCK_SIZE
CIPHER_MAC_SIZE = 2
CIPHER_BLOCK_SIZE = 16
PUB_KEY_SIZE = 32
SIGNATURE_SIZE = 64
HASH_SIZE = 8                # MAX_HASH_SIZE: the packet hash duplicates are told by
SEEN_CAPACITY = 160          # MAX_PACKET_HASHES (128 + 32)
POOL_SIZE = 16               # StaticPoolPacketManager(16): queued packets at most
CONTACTS = 100               # MAX_CONTACTS: paths kept
EXPECTED_ACKS = 8            # EXPECTED_ACK_TABLE_SIZE

TX_DELAY_FACTOR = 0.5        # flood repeat: random 0..5 x 0.5 airtime (both firmwares)
DIRECT_DELAY_FACTOR = {"client": 0.2, "router": 0.3}  # companion / repeater
TXT_ACK_DELAY_MS = 200       # the destination's PATH return or ack
PATH_RECIPROCAL_DELAY_MS = 500
PATH_RETRY_DELAY_MS = 3000   # handleReturnPathRetry
CAD_RETRY_MS = 120           # listen before talk: retry after 120, 240 or 360 ms
CAD_MAX_MS = 4000            # then send anyway
SEND_TIMEOUT_BASE_MS = 500
FLOOD_TIMEOUT_FACTOR = 16
DIRECT_PERHOP_FACTOR = 6
DIRECT_PERHOP_EXTRA_MS = 250
APP_TIMEOUT_FACTOR = 1.2     # the app waits the suggested timeout x 1.2
OWN_BUDGET_PER_MILLE = 500   # airtime_factor 1.0: a duty cycle of 1 / (1 + 1)
FLOOD_ADVERT_INTERVAL_MS = 47 * 3600000   # a repeater's flood.advert.interval (47 h)
ADV_TYPE_CHAT = 1
ADV_TYPE_REPEATER = 2
ADV_LATLON = 0x10
ADV_NAME = 0x80
PUBLIC_PSK = base64.b64decode("izOH6cXN6mrJ5e26oRXNcg==")   # the "Public" channel
PUBLIC_HASH = hashlib.sha256(PUBLIC_PSK).digest()[0]
IDLE_WAKE_MS = 3600000
DEFAULT_BACKGROUND = True


# ---- wire: pure pack/parse --------------------------------------------------

def pack_packet(route, ptype, path, payload, hash_size=1):
    # header 0bVVPPPPRR (version 1), path_len 0bSSCCCCCC, path, payload
    count = len(path) // hash_size
    return bytes((route | ptype << 2, (hash_size - 1) << 6 | count)) + bytes(path) \
        + bytes(payload)


class Packet:
    __slots__ = ("route", "ptype", "hash_size", "path", "payload", "transport")

    def flood(self):
        return self.route in (ROUTE_FLOOD, ROUTE_TRANSPORT_FLOOD)

    def hops(self):
        return len(self.path) // self.hash_size

    def hash(self):
        return packet_hash(self.ptype, self.payload)


def parse_packet(frame):
    # bytes on air -> (Packet, None) or (None, reason) (Dispatcher::tryParsePacket)
    n = len(frame)
    if n < 2:
        return None, "short"
    if n > MAX_TRANS_UNIT:
        return None, "oversize"
    h = frame[0]
    if h >> 6:
        return None, "version"
    p = Packet()
    p.route, p.ptype = h & 3, (h >> 2) & 0x0F
    i = 1
    if p.route in (ROUTE_TRANSPORT_FLOOD, ROUTE_TRANSPORT_DIRECT):
        if n < 5:
            return None, "short"
        p.transport = struct.unpack_from("<HH", frame, 1)
        i = 5
    else:
        p.transport = None
    if i >= n:
        return None, "short"
    pl = frame[i]
    i += 1
    if pl >> 6 == 3:
        return None, "path"
    p.hash_size = (pl >> 6) + 1
    plen = (pl & 63) * p.hash_size
    if plen > MAX_PATH_SIZE or i + plen > n:
        return None, "path"
    p.path = bytes(frame[i:i + plen])
    p.payload = bytes(frame[i + plen:])
    if len(p.payload) > MAX_PACKET_PAYLOAD:
        return None, "oversize"
    return p, None


def packet_hash(ptype, payload):
    # Packet::calculatePacketHash: the type and payload, not the path
    return hashlib.sha256(bytes((ptype,)) + payload).digest()[:HASH_SIZE]


def public_key(node_id):
    # a stand-in for the node's Ed25519 public key; its first byte is the
    # node's hash in paths and datagrams
    return hashlib.sha256(b"meshcore-sim" + struct.pack("<I", node_id)).digest()


def _secret(a, b):
    # a stand-in for the ECDH shared secret of two nodes (symmetric)
    lo, hi = min(a, b), max(a, b)
    return hashlib.sha256(b"meshcore-pair" + struct.pack("<II", lo, hi)).digest()


def seal(secret, plain):
    # Utils::encryptThenMAC, sized alike: 2-byte MAC + zero-padded AES blocks
    # (left in the clear here)
    pad = -len(plain) % CIPHER_BLOCK_SIZE
    ct = bytes(plain) + bytes(pad)
    return hmac.new(secret, ct, hashlib.sha256).digest()[:CIPHER_MAC_SIZE] + ct


def text_plain(msg_id, attempt, text):
    # timestamp (the message id, unique per sender as getCurrentTimeUnique
    # makes it), txt_type 0 | attempt, text
    return struct.pack("<I", msg_id) + bytes((attempt & 3,)) + bytes(text)


def ack_crc(plain, sender_pub):
    # the ack a text expects: sha256(timestamp, flags, text, sender key)[:4]
    return hashlib.sha256(bytes(plain) + sender_pub).digest()[:4]


def path_plain(path, extra_type=None, extra=b""):
    # PATH: path_len, path, extra type, extra (0xff and 4 random bytes without one)
    return bytes((len(path),)) + bytes(path) + bytes((extra_type,)) + bytes(extra)


def advert_payload(node_id, time_s, name, node_type):
    # pub key, timestamp, signature, app data: flags, lat/lon, name (<= 32 bytes)
    app = bytes((node_type | ADV_LATLON | ADV_NAME,)) + bytes(8) + name.encode()[:23]
    return public_key(node_id) + struct.pack("<I", time_s) + bytes(SIGNATURE_SIZE) + app


# ---- the registry: who can decrypt what ----------------------------------------
# A real node tells whether a datagram is for it by its 1-byte hashes and a
# MAC under the secret it shares with each contact whose hash matches. Here
# every node is every other's contact, and a registry of the packets sent
# answers "who sent it to whom" (and, for the metrics, which message a frame
# belongs to) from its packet hash or, for acks, its 4-byte code.

_REGISTRY = {}               # packet hash / ack code -> (kind, origin, dest, msg_id, hops)
_REGISTRY_CAPACITY = 1 << 16


def _register(key, value):
    if key not in _REGISTRY and len(_REGISTRY) >= _REGISTRY_CAPACITY:
        del _REGISTRY[next(iter(_REGISTRY))]
    _REGISTRY[key] = value


def _sealed_by(pkt):
    return _REGISTRY.get(pkt.hash())


class _Seen:  # SimpleMeshTables: a ring of the last packet hashes
    def __init__(self, capacity=SEEN_CAPACITY):
        self.ring = [None] * capacity
        self.count = {}
        self.i = 0

    def __contains__(self, h):
        return h in self.count

    def mark(self, h):
        old = self.ring[self.i]
        if old is not None:
            c = self.count[old] - 1
            if c:
                self.count[old] = c
            else:
                del self.count[old]
        self.ring[self.i] = h
        self.count[h] = self.count.get(h, 0) + 1
        self.i = (self.i + 1) % len(self.ring)


class _Out:  # a queued packet (PacketQueue entry)
    __slots__ = ("frame", "prio", "due_ms", "relay")

    def __init__(self, frame, prio, due_ms, relay):
        self.frame, self.prio, self.due_ms, self.relay = frame, prio, due_ms, relay


class _Msg:  # a direct message the app is sending (send_msg_with_retry)
    __slots__ = ("msg_id", "dest", "text", "attempts", "flood", "flood_attempts", "deadline_ms")

    def __init__(self, msg_id, dest, text):
        self.msg_id, self.dest, self.text = msg_id, dest, text
        self.attempts = self.flood_attempts = 0
        self.flood = False
        self.deadline_ms = 0


class MeshCore:
    def __init__(self, settings, storage, rng):
        self.id = _node_id(settings.get("node_id"))
        pm = REGIONS[_region(settings)][1]
        # the region's duty cycle, and MeshCore's own airtime budget (50 %)
        self.duty = DutyCycle(min(pm, OWN_BUDGET_PER_MILLE) if pm else OWN_BUDGET_PER_MILLE)
        self.preset = _preset(settings.get("preset", "LongFast"))
        self.role = _role(settings)
        name = settings.get("name", "%08x" % self.id)
        if not isinstance(name, str) or not 0 < len(name.encode()) <= 31:
            raise InputError("name: text of 1..31 bytes, got %r" % (name,))
        self.name = name
        self.background = _flag(settings, "background", DEFAULT_BACKGROUND)
        self.repeat = _flag(settings, "repeat", True)
        self.flood_max = _int(settings, "flood_max", 64, 1, 64,
                              "a path holds 64 one-byte hashes (MAX_PATH_SIZE)")
        self.msg_attempts = _int(settings, "msg_attempts", 3, 1, 4,
                                 "the attempt number has two bits")
        self.flood_after = _int(settings, "flood_after", 2, 1, 4,
                                "the attempt after which the app resets the path")
        self.flood_attempts = _int(settings, "flood_attempts", 2, 1, 4,
                                   "every flooded attempt repeats through the whole mesh")
        self.storage = storage  # unused: the model keeps nothing across restarts
        self.rng = rng
        self.pub = public_key(self.id)
        self.hash = self.pub[0]
        self.direct_factor = DIRECT_DELAY_FACTOR[self.role]
        self.seen = _Seen()
        self.queue = []          # _Out, in the order queued
        self.tx_end_ms = None
        self.next_tx_ms = 0
        self.cad_start_ms = None
        self.channel_until_ms = 0
        self.paths = {}          # contact -> out_path (bytes), oldest first
        self.sending = {}        # msg_id -> _Msg
        self.expected = {}       # ack code -> msg_id (the device's expected-ack table)
        self.got = {}            # (origin, msg_id) delivered to the app, oldest first
        self.advert_ms = None
        self.next_id = 1
        self.started_ms = 0
        self.next_wake_ms = 0
        self.out = []
        self.counters = {"rx": 0, "tx": 0, "relayed": 0, "flood_sent": 0, "direct_sent": 0,
                         "duplicates": 0, "not_for_us": 0, "originated": 0, "retries": 0,
                         "path_resets": 0, "paths_learned": 0, "acks_sent": 0, "delivered": 0,
                         "expired": 0, "adverts": 0, "deferred": 0, "busy_backoffs": 0,
                         "queue_full": 0, "internal": 0}
        self.drops = {}

    # ---- inputs -------------------------------------------------------------

    def start(self, now_ms):
        self.started_ms = now_ms
        self.next_id = self.rng.getrandbits(32) or 1
        if self.background and self.role == "router":
            # steady state: a random phase of the 47 h interval
            u = self.rng.getrandbits(24) / 16777216
            self.advert_ms = now_ms + int((1 - u) * FLOOD_ADVERT_INTERVAL_MS)
        self.next_wake_ms = now_ms

    def send(self, dest, payload, now_ms):
        # Raises ValueError on local misuse (too long, bad destination).
        text = payload.encode() if isinstance(payload, str) else bytes(payload)
        if dest in (self.id, 0) or not 0 < dest <= BROADCAST:
            raise ValueError("bad destination %08x" % dest)
        if dest == BROADCAST:
            prefix = (self.name + ": ").encode()
            if len(prefix) + len(text) > MAX_TEXT_LEN:
                raise ValueError("text is %d bytes; at most %d fit after the sender's name"
                                 % (len(text), MAX_TEXT_LEN - len(prefix)))
        elif len(text) > MAX_TEXT_LEN:
            raise ValueError("text is %d bytes; at most %d fit" % (len(text), MAX_TEXT_LEN))
        msg_id = self._new_id()
        self.counters["originated"] += 1
        if dest == BROADCAST:
            # BaseChatMesh::sendGroupMessage: "name: text" on the Public channel
            plain = struct.pack("<I", msg_id) + b"\x00" + prefix + text
            payload = bytes((PUBLIC_HASH,)) + seal(PUBLIC_PSK, plain)
            _register(packet_hash(T_GRP_TXT, payload), ("text", self.id, BROADCAST, msg_id, None))
            self._send_flood(T_GRP_TXT, payload, 1, 0, now_ms)
            return msg_id
        m = _Msg(msg_id, dest, text)
        self.sending[msg_id] = m
        self._attempt(m, now_ms)
        return msg_id

    def on_frame(self, frame, rssi_dbm, snr_db, now_ms):
        self.counters["rx"] += 1
        p, reason = parse_packet(frame)
        if p is None:
            self._drop(reason)
            return
        try:
            self._handle(p, rssi_dbm, snr_db, now_ms)
        except Exception:  # a well-formed but nonsensical frame must not stop us
            self.counters["internal"] += 1

    def channel_busy(self, until_ms, now_ms):
        # the radio is receiving a packet: Dispatcher::checkSend waits
        if until_ms > self.channel_until_ms:
            self.channel_until_ms = until_ms

    # ---- outputs ------------------------------------------------------------

    def poll(self, now_ms):
        if self.tx_end_ms is not None and now_ms >= self.tx_end_ms:
            self.tx_end_ms = None
            self.next_tx_ms = now_ms
        if self.advert_ms is not None and now_ms >= self.advert_ms:
            self.advert_ms += FLOOD_ADVERT_INTERVAL_MS
            self._advert(now_ms)
        for m in list(self.sending.values()):
            if now_ms >= m.deadline_ms:
                self._timed_out(m, now_ms)
        self._check_send(now_ms)
        t = now_ms + IDLE_WAKE_MS
        if self.tx_end_ms is not None:
            t = self.tx_end_ms
        elif self.queue:
            due = min(e.due_ms for e in self.queue)
            t = min(t, max(due, self.next_tx_ms))
        if self.advert_ms is not None:
            t = min(t, self.advert_ms)
        for m in self.sending.values():
            t = min(t, m.deadline_ms)
        self.next_wake_ms = max(t, now_ms)
        out = self.out
        self.out = []
        return out

    def status(self, now_ms):
        return {"id": "%08x" % self.id, "role": self.role,
                "uptime_s": (now_ms - self.started_ms) // 1000,
                "held": len(self.sending), "queue": len(self.queue), "paths": len(self.paths),
                "counters": dict(self.counters), "dropped": dict(self.drops),
                "airtime_ms": self.duty.total_us // 1000,
                "duty_headroom_pct": round(self.duty.headroom_per_mille(now_ms) / 10, 1)}

    @staticmethod
    def frame_info(frame):
        # -> (type_name, msg_key) for the simulator's metrics: msg_key is
        # (origin, id) of the direct message a frame carries or acknowledges
        p, _ = parse_packet(frame)
        if p is None:
            return "invalid", None
        name = TYPE_NAMES.get(p.ptype, "type%d" % p.ptype)
        e = None
        if p.ptype == T_TXT:
            e = _sealed_by(p)
            return name, None if e is None else (e[1], e[3])
        if p.ptype == T_PATH:  # the message whose ack it carries, if any
            e = _sealed_by(p)
            return name, None if e is None else e[3]
        if p.ptype in (T_ACK, T_MULTIPART):
            e = _REGISTRY.get(p.payload[1:5] if p.ptype == T_MULTIPART else p.payload[:4])
            return name, None if e is None else (e[1], e[3])
        return name, None

    # ---- sending a direct message (the app, BaseChatMesh::sendMessage) ------

    def _attempt(self, m, now_ms):
        if m.attempts == self.flood_after and not m.flood and m.dest in self.paths:
            del self.paths[m.dest]  # the app resets the path: flood from now on
            self.counters["path_resets"] += 1
        plain = text_plain(m.msg_id, m.attempts, m.text)
        payload = bytes((public_key(m.dest)[0], self.hash)) + seal(_secret(self.id, m.dest), plain)
        code = ack_crc(plain, self.pub)
        path = self.paths.get(m.dest)
        _register(packet_hash(T_TXT, payload), ("msg", self.id, m.dest, m.msg_id,
                                                 None if path is None else len(path)))
        _register(code, ("ack", self.id, m.dest, m.msg_id, None))
        if len(self.expected) >= EXPECTED_ACKS:
            del self.expected[next(iter(self.expected))]
        self.expected[code] = (m.msg_id, m.dest)
        if path is None:
            frame = self._send_flood(T_TXT, payload, 1, 0, now_ms)
            timeout = SEND_TIMEOUT_BASE_MS + FLOOD_TIMEOUT_FACTOR * self._air_ms(len(frame))
        else:
            frame = self._send_direct(T_TXT, payload, path, 0, 0, now_ms)
            timeout = SEND_TIMEOUT_BASE_MS + (DIRECT_PERHOP_FACTOR * self._air_ms(len(frame))
                                              + DIRECT_PERHOP_EXTRA_MS) * (len(path) + 1)
        if m.attempts:
            self.counters["retries"] += 1
        m.flood = path is None
        m.attempts += 1
        if m.flood:
            m.flood_attempts += 1
        m.deadline_ms = now_ms + int(timeout * APP_TIMEOUT_FACTOR)

    def _timed_out(self, m, now_ms):
        # the app's loop: attempts left, and flooded ones left if it floods
        if m.attempts < self.msg_attempts and (not m.flood
                                               or m.flood_attempts < self.flood_attempts):
            self._attempt(m, now_ms)
            return
        del self.sending[m.msg_id]
        self.counters["expired"] += 1
        self.out.append(("expired", {"id": m.msg_id, "to": "%08x" % m.dest,
                                     "reason": "max_attempts"}))

    def _ack(self, code, now_ms, hops):
        # processAck -> the contact that acked, when the code is one we expect
        # (of any attempt of a message: the table keeps the last 8)
        got = self.expected.pop(bytes(code[:4]), None)
        if got is None:
            return None
        msg_id, dest = got
        if self.sending.pop(msg_id, None) is not None:
            if hops is None:  # came along a path: as long as ours
                hops = len(self.paths.get(dest, b""))
            self.counters["delivered"] += 1
            self.out.append(("delivered", {"id": msg_id, "to": "%08x" % dest, "hops": hops}))
        return dest

    # ---- receiving (Mesh::onRecvPacket) ---------------------------------------

    def _handle(self, p, rssi_dbm, snr_db, now_ms):
        if p.ptype in (T_TRACE, T_CONTROL) and not p.flood():
            return  # not modelled: traces and discovery
        if not p.flood() and p.hops() > 0:
            self._direct_hop(p, now_ms)
            return
        h = p.hash()
        if p.ptype in (T_ACK, T_PATH, T_TXT, T_REQ, T_RESPONSE, T_GRP_TXT, T_ADVERT):
            if h in self.seen:
                self.counters["duplicates"] += 1
                return
        if p.ptype == T_ACK:
            if len(p.payload) < 4:
                return self._drop("incomplete")
            self.seen.mark(h)
            contact = self._ack(p.payload, now_ms, p.hops() if p.flood() else None)
            if contact is not None:
                if p.flood() and contact in self.paths:
                    # BaseChatMesh::handleReturnPathRetry: acked by flood
                    # although we have a path: the other end lacks its path
                    # back, so it goes to it again
                    self._send_path(contact, p.path, None, b"", None, False,
                                    PATH_RETRY_DELAY_MS, now_ms)
                return  # ours: not repeated
            self._repeat(p, now_ms)
        elif p.ptype in (T_TXT, T_PATH, T_REQ, T_RESPONSE):
            if len(p.payload) <= 2 + CIPHER_MAC_SIZE:
                return self._drop("incomplete")
            self.seen.mark(h)
            e = _sealed_by(p) if p.payload[0] == self.hash else None
            if e is not None and e[2] == self.id:  # the MAC checks out: it is for us
                if p.ptype == T_TXT:
                    self._text_for_us(p, e, rssi_dbm, snr_db, now_ms)
                elif p.ptype == T_PATH:
                    self._path_for_us(p, e, now_ms)
                return  # for us: not repeated
            if p.payload[0] == self.hash:
                self.counters["not_for_us"] += 1  # a hash collision: the MAC fails
            self._repeat(p, now_ms)
        elif p.ptype == T_GRP_TXT:
            if len(p.payload) <= 1 + CIPHER_MAC_SIZE:
                return self._drop("incomplete")
            self.seen.mark(h)
            e = _sealed_by(p)
            if p.payload[0] == PUBLIC_HASH and e is not None:
                self._deliver("post", e[1], BROADCAST, p, p.hops(), rssi_dbm, snr_db)
            self._repeat(p, now_ms)
        elif p.ptype == T_ADVERT:
            if len(p.payload) < PUB_KEY_SIZE + 4 + SIGNATURE_SIZE:
                return self._drop("incomplete")
            if p.payload[:PUB_KEY_SIZE] == self.pub:
                return  # our own advert, repeated back
            self.seen.mark(h)
            self._repeat(p, now_ms)
        else:
            self._drop("type")

    def _direct_hop(self, p, now_ms):
        # a source-routed packet: an ack is read on the way ("early received
        # ACK"); the node whose hash leads the path repeats it, minus itself
        if p.ptype == T_ACK and len(p.payload) >= 4:
            self._ack(p.payload, now_ms, None)
        hs = p.hash_size
        if p.path[:hs] != self.pub[:hs] or not self.repeat:
            return
        h = p.hash()
        if h in self.seen:
            self.counters["duplicates"] += 1
            return
        self.seen.mark(h)
        rest = p.path[hs:]
        if p.ptype == T_ACK:
            # Mesh::routeDirectRecvAcks: an ack goes on at once
            self._queue(pack_packet(ROUTE_DIRECT, T_ACK, rest, p.payload, hs), 0, now_ms, True)
            return
        frame = pack_packet(ROUTE_DIRECT, p.ptype, rest, p.payload, hs)
        self._queue(frame, 0, now_ms + self._direct_delay(frame), True)

    def _repeat(self, p, now_ms):
        # Mesh::routeRecvPacket: a flood is repeated once, our hash appended,
        # closer sources first (priority = hops)
        if not p.flood() or not self.repeat:
            return
        n = p.hops() + 1
        if n * p.hash_size > MAX_PATH_SIZE or p.hops() >= self.flood_max:
            return
        if p.ptype == T_ADVERT and self.role == "router" and p.hops() >= 8:
            return  # a repeater's flood.max.advert
        frame = pack_packet(ROUTE_FLOOD, p.ptype, p.path + self.pub[:p.hash_size], p.payload,
                            p.hash_size)
        self._queue(frame, n, now_ms + self._flood_delay(frame), True)

    def _text_for_us(self, p, e, rssi_dbm, snr_db, now_ms):
        # BaseChatMesh::onPeerDataRecv: deliver, then the ack; by flood it
        # rides a PATH return that tells the sender the way here
        origin = e[1]
        plain = p.payload[2 + CIPHER_MAC_SIZE:]
        n = plain.find(b"\x00", 5)
        n = len(plain) if n < 0 else n
        hops = p.hops() if p.flood() else e[4]
        self._deliver("msg", origin, self.id, p, hops, rssi_dbm, snr_db, plain[5:n])
        code = ack_crc(plain[:n], public_key(origin)) + bytes((plain[n + 1] if n + 1 < len(plain)
                                                                else 0, self._rand(256)))
        self.counters["acks_sent"] += 1
        if p.flood():
            self._send_path(origin, p.path, T_ACK, code, (origin, e[3]), True,
                            TXT_ACK_DELAY_MS, now_ms)
            return
        path = self.paths.get(origin)
        if path is None:
            self._send_flood(T_ACK, code, 1, TXT_ACK_DELAY_MS, now_ms)
        else:
            self._send_direct(T_ACK, code, path, 0, TXT_ACK_DELAY_MS, now_ms)

    def _path_for_us(self, p, e, now_ms):
        # onPeerPathRecv: the path to the sender replaces ours; an ack may
        # ride along; by flood, our own path back goes to it directly
        origin = e[1]
        plain = p.payload[2 + CIPHER_MAC_SIZE:]
        n = plain[0] & 63
        path, extra_type, extra = plain[1:1 + n], plain[1 + n], plain[2 + n:]
        self._learn_path(origin, path)
        if extra_type == T_ACK:
            self._ack(extra, now_ms, n)
        if p.flood():
            self._send_path(origin, p.path, None, b"", None, False, PATH_RECIPROCAL_DELAY_MS,
                            now_ms)

    def _send_path(self, to, path, extra_type, extra, msg_key, flood, delay_ms, now_ms):
        # Mesh::createPathReturn, sent by flood or along our path to `to`
        if extra_type is None:
            extra_type, extra = 0xFF, bytes(self._rand(256) for _ in range(4))
        payload = bytes((public_key(to)[0], self.hash)) + seal(
            _secret(self.id, to), path_plain(path, extra_type, extra))
        _register(packet_hash(T_PATH, payload), ("path", self.id, to, msg_key, None))
        if flood:
            self._send_flood(T_PATH, payload, 2, delay_ms, now_ms)
        elif to in self.paths:
            self._send_direct(T_PATH, payload, self.paths[to], 1, delay_ms, now_ms)

    def _learn_path(self, node, path):
        self.paths.pop(node, None)
        self.paths[node] = bytes(path)
        if len(self.paths) > CONTACTS:
            del self.paths[next(iter(self.paths))]
        self.counters["paths_learned"] += 1

    def _deliver(self, kind, origin, dest, p, hops, rssi_dbm, snr_db, text=None):
        plain = p.payload[(2 if kind == "msg" else 1) + CIPHER_MAC_SIZE:]
        msg_id = struct.unpack_from("<I", plain)[0]
        if (origin, msg_id) in self.got:
            return  # a retry of what we have: acked again, shown once
        self.got[(origin, msg_id)] = True
        if len(self.got) > 256:
            del self.got[next(iter(self.got))]
        if text is None:
            body = plain[5:].rstrip(b"\x00")
            text = body.split(b": ", 1)[-1]
        self.out.append(("received", {
            "kind": kind, "from": "%08x" % origin, "to": "%08x" % dest, "id": msg_id,
            "text": bytes(text).decode("utf-8", "replace"), "hops": hops,
            "rssi_dbm": rssi_dbm, "snr_db": snr_db}))

    # ---- background: a repeater's advert --------------------------------------

    def _advert(self, now_ms):
        self.counters["adverts"] += 1
        kind = ADV_TYPE_REPEATER if self.role == "router" else ADV_TYPE_CHAT
        payload = advert_payload(self.id, 1750000000 + now_ms // 1000, self.name, kind)
        self._send_flood(T_ADVERT, payload, 3, 0, now_ms)

    # ---- the send queue (Dispatcher, StaticPoolPacketManager) ----------------

    def _send_flood(self, ptype, payload, prio, delay_ms, now_ms):
        frame = pack_packet(ROUTE_FLOOD, ptype, b"", payload)
        self.seen.mark(packet_hash(ptype, payload))  # our own echo is a duplicate
        self._queue(frame, prio, now_ms + delay_ms, False)
        return frame

    def _send_direct(self, ptype, payload, path, prio, delay_ms, now_ms):
        frame = pack_packet(ROUTE_DIRECT, ptype, path, payload)
        self.seen.mark(packet_hash(ptype, payload))
        self._queue(frame, prio, now_ms + delay_ms, False)
        return frame

    def _queue(self, frame, prio, due_ms, relay):
        if len(self.queue) >= POOL_SIZE:
            self.counters["queue_full"] += 1
            return False  # "send queue full, dropping packet"
        self.queue.append(_Out(frame, prio, due_ms, relay))
        return True

    def _check_send(self, now_ms):
        if self.tx_end_ms is not None or now_ms < self.next_tx_ms:
            return
        due = [e for e in self.queue if e.due_ms <= now_ms]
        if not due:
            return
        if now_ms < self.channel_until_ms:
            # the radio is receiving: try again in 120..360 ms, for up to 4 s
            if self.cad_start_ms is None:
                self.cad_start_ms = now_ms
            if now_ms - self.cad_start_ms <= CAD_MAX_MS:
                self.counters["busy_backoffs"] += 1
                self.next_tx_ms = now_ms + (1 + self._rand(3)) * CAD_RETRY_MS
                return
        self.cad_start_ms = None
        best = due[0]
        for e in due:  # the most important of those due; the first queued at a tie
            if e.prio < best.prio:
                best = e
        air_us = preset_time_on_air_us(len(best.frame), self.preset)
        at = self.duty.earliest_ms(now_ms, air_us)
        if at < 0:
            self.queue.remove(best)
            self._drop("duty")
            return
        if at > now_ms:
            self.counters["deferred"] += 1
            self.next_tx_ms = at
            return
        self.queue.remove(best)
        self.duty.record(now_ms, air_us)
        self.tx_end_ms = now_ms + -(-air_us // 1000)
        self.counters["tx"] += 1
        if best.relay:
            self.counters["relayed"] += 1
        self.counters["flood_sent" if best.frame[0] & 3 in (ROUTE_FLOOD, ROUTE_TRANSPORT_FLOOD)
                      else "direct_sent"] += 1
        self.out.append(("tx", best.frame))

    def _flood_delay(self, frame):
        # getRetransmitDelay: random 0..5 x (airtime of path + payload + 2) x 0.5
        t = int(self._air_ms(len(frame)) * TX_DELAY_FACTOR)
        return self._rand(5 * t + 1)

    def _direct_delay(self, frame):
        # getDirectRetransmitDelay: the same with 0.2 (companion) or 0.3 (repeater)
        t = int(self._air_ms(len(frame)) * self.direct_factor)
        return self._rand(5 * t + 1)

    # ---- helpers ------------------------------------------------------------

    def _air_ms(self, frame_bytes):
        return preset_time_on_air_us(frame_bytes, self.preset) // 1000

    def _rand(self, n):
        return self.rng.getrandbits(24) % n if n > 0 else 0

    def _new_id(self):
        i = self.next_id
        self.next_id = (i + 1) & 0xFFFFFFFF
        return i or self._new_id()

    def _drop(self, reason):
        self.drops[reason] = self.drops.get(reason, 0) + 1
