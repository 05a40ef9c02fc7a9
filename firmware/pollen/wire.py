# Wire format v2: pure pack/unpack functions. Documented, with golden
# vectors, in docs/protocol.md. A frame is
#   header (16 bytes) | payload (encrypted, 0..231 bytes) | tag (8 bytes)
# and for MSG and ACK the tag is two of 4 bytes: an inner tag over what no
# relay changes, with the pair key of origin and destination (a private
# message, identity.py) or else the network key, then the outer tag with
# the network key over everything before it (what relays check and renew)
# header:
#   0     version (high nibble) | frame type (low nibble)
#   1     flags (2 bits) | hop limit (3 bits) | hops taken (3 bits)
#   2-5   origin node id, big-endian
#   6-9   destination node id (0xFFFFFFFF = everyone)
#   10-13 message id (random per message; with origin, names the message)
#   14    next hop: low byte of the node asked to relay (0 = any node may)
#   15    relayer: low byte of the node that transmitted this copy
from pollen._compat import const, publish

# the numbers of crypto.py used here, as private copies (_compat.publish)
_TAG_BYTES = const(8)


VERSION = const(2)
_HEADER_BYTES = const(16)
_MAX_FRAME_BYTES = const(255)
_MAX_PAYLOAD_BYTES = const(231)  # 255 - 16 - 8
_MAX_HOPS = const(7)
_BROADCAST = const(0xFFFFFFFF)

_BEACON = const(1)  # neighbour discovery, never relayed; payload: name, neighbours, post tags
_POST = const(2)    # broadcast text, flooded
_MSG = const(3)     # unicast text, acknowledged end to end
_ACK = const(4)     # payload: acknowledged message id (4 bytes)
# The shared commons (sharing.py; payloads in file_wire.py): one hop each,
# hop limit 0, never relayed as such.
_CATALOG = const(5)  # files we hold or know of, with hops to the nearest holder
_WANT = const(6)     # a window of chunks (or manifest parts) asked of next_hop
_CHUNK = const(7)    # one chunk of a file, for whoever wants it
_PART = const(8)     # one part of a file's manifest
_STATUS = const(9)   # a node's telemetry, flooded (telemetry.py)
_IDENT = const(10)   # a node's public key and name, flooded (identity.py)
# the types are 1..10, every one of them known

_F_WANT_ACK = const(0x80)
_F_STORED = const(0x40)  # this copy was held by a node and sent on later
_F_FRESH = const(0x40)   # on a BEACON: the node's first since it started
_F_PARTS = const(0x40)   # on a WANT: the bitmap asks for manifest parts, not chunks

# Reasons a frame is dropped; the node counts each (by these names: hosts
# and tests use the strings themselves; private, a node does not intern the
# six names)
_R_SHORT = const("short")
_R_OVERSIZE = const("oversize")
_R_VERSION = const("version")
_R_TAG = const("tag")
_R_TYPE = const("type")
_R_FIELD = const("field")


class Frame:
    def __init__(self, ftype, flags, hop_limit, hops, origin, dest, msg_id,
                 next_hop=0, relayer=0, payload=b""):
        self.ftype = ftype
        self.flags = flags
        self.hop_limit = hop_limit
        self.hops = hops
        self.origin = origin
        self.dest = dest
        self.msg_id = msg_id
        self.next_hop = next_hop
        self.relayer = relayer
        self.payload = payload

    def key(self):
        # Names the message across all its copies (for duplicate suppression).
        return (self.origin << 32) | self.msg_id


# Big-endian 32-bit fields, for every record and payload of the core.
def u32(b, i):
    return (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]


def be32(v):
    return bytes(((v >> 24) & 0xFF, (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF))


def _nonce(frame):
    # origin + message id + version/type, then 3 zero bytes: unique per
    # message and frame type. (Written into one buffer: no slices to join)
    n = bytearray(12)
    for k in range(4):
        n[k] = frame[2 + k]
        n[4 + k] = frame[10 + k]
    n[8] = frame[0]
    return n


def _inner(key, data):
    # the inner tag: over type, origin, destination, id and the encrypted
    # payload, what no relay changes (the leading 00 keeps it apart from an
    # outer tag's input, which begins with the version); data: the frame
    # without its tags
    head = bytearray(14)  # 00, type, origin, destination, id
    head[1] = data[0]
    head[2:] = data[2:14]
    return key.tag(memoryview(data)[_HEADER_BYTES:], head)[:4]


def inner_ok(data, key):
    # whether MSG or ACK frame data (as on air, its outer tag checked) has
    # the inner tag of key: the network key's for a channel frame, a pair
    # key's for a private one. Only its destination asks (relays need not)
    n = len(data)
    return _equal(_inner(key, memoryview(data)[:n - _TAG_BYTES]), data[n - 8:n - 4])


def _outer(key, data, n):
    # the tag bytes of data[:n] (all of it before the tag)
    # (MSG and ACK carry an inner tag of 4 bytes and an outer one of 4)
    t = key.tag(data[:n])
    return t[:4] if data[0] & 0x0F in (_MSG, _ACK) else t


def pack(f, key, cipher=None):
    # Frame -> bytes on air; cipher: the pair key of a private MSG or ACK
    # (identity.py: a MSG's payload is encrypted with it, an ACK's with the
    # network key, that relays read). Raises ValueError on local misuse.
    if len(f.payload) > _MAX_PAYLOAD_BYTES:
        raise ValueError("payload over %d bytes" % _MAX_PAYLOAD_BYTES)
    if f.hop_limit > _MAX_HOPS or f.hops > f.hop_limit:
        raise ValueError("hops out of range")
    h = bytearray(_HEADER_BYTES)
    h[0] = (VERSION << 4) | (f.ftype & 0x0F)
    h[1] = (f.flags & 0xC0) | (f.hop_limit << 3) | f.hops
    h[2:6] = be32(f.origin)
    h[6:10] = be32(f.dest)
    h[10:14] = be32(f.msg_id)
    h[14] = f.next_hop & 0xFF
    h[15] = f.relayer & 0xFF
    body = bytes(h) + (cipher if cipher and f.ftype == _MSG else key).ctr(_nonce(h), f.payload)
    if f.ftype == _MSG or f.ftype == _ACK:
        body += _inner(cipher or key, body)
    return body + _outer(key, body, len(body))


def unpack(data, key):
    # bytes on air -> (Frame, None) or (None, reason). Never raises on bad input.
    n = len(data)
    if n < _HEADER_BYTES + _TAG_BYTES:
        return None, _R_SHORT
    if n > _MAX_FRAME_BYTES:
        return None, _R_OVERSIZE
    if data[0] >> 4 != VERSION:
        return None, _R_VERSION
    t = 4 if data[0] & 0x0F in (_MSG, _ACK) else _TAG_BYTES
    # (a view, not a copy: the tags and the cipher read the frame in place)
    view = memoryview(data)
    if not _equal(_outer(key, view, n - t), data[n - t:]):
        return None, _R_TAG
    ftype = data[0] & 0x0F
    if not _BEACON <= ftype <= _IDENT:
        return None, _R_TYPE
    hop_limit = (data[1] >> 3) & 0x07
    hops = data[1] & 0x07
    if hops > hop_limit:
        return None, _R_FIELD
    # (a MSG or ACK's inner tag is its destination's to check: inner_ok; a
    # private MSG's payload so deciphered is noise until Identity.opened)
    payload = key.ctr(_nonce(data), view[_HEADER_BYTES:n - _TAG_BYTES])
    return Frame(ftype, data[1] & 0xC0, hop_limit, hops, u32(data, 2),
                 u32(data, 6), u32(data, 10), data[14], data[15], payload), None


def relayed(data, hops, next_hop, relayer, key):
    # A copy of an authenticated frame with new hop fields and a fresh tag;
    # the encrypted payload is carried unchanged.
    n = len(data) - (4 if data[0] & 0x0F in (_MSG, _ACK) else _TAG_BYTES)
    out = bytearray(data)  # one copy, the new tag written into its place
    out[1] = (out[1] & 0xF8) | hops
    out[14] = next_hop & 0xFF
    out[15] = relayer & 0xFF
    out[n:] = _outer(key, memoryview(out), n)
    return bytes(out)


def with_flags(data, flags, key):
    n = len(data) - (4 if data[0] & 0x0F in (_MSG, _ACK) else _TAG_BYTES)
    out = bytearray(data)  # (as relayed)
    out[1] |= flags & 0xC0
    out[n:] = _outer(key, memoryview(out), n)
    return bytes(out)


def _equal(a, b):
    # Constant-time compare for tags.
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0


publish(globals())  # hosts: wire.MSG and the like (_compat.py)
