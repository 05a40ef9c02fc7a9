# The wire format's golden vectors and the network key they are made with,
# shared by the wire tests (test_wire_*.py).
from pollen import wire
from pollen.wire import Frame, BEACON, POST, MSG, ACK, BROADCAST, F_WANT_ACK, F_STORED
from pollen.crypto import NetworkKey

KEY = NetworkKey(bytes(range(32)))
REASONS = ("short", "oversize", "version", "tag", "type", "field")

# Golden vectors: generated once from the code and frozen. A change here is a
# change of the wire format (bump wire.VERSION and tell every node).
# (frame fields, bytes on air)
VECTORS = (
    (Frame(BEACON, 0, 0, 0, 0x0A0B0C01, BROADCAST, 0x11223344, 0, 0x01, b"alice"),
     "21000a0b0c01ffffffff1122334400013838362a6029233aa3c1a1d15f"),
    (Frame(POST, 0, 6, 2, 0x0A0B0C01, BROADCAST, 0x55667788, 0, 0x22, b"hello, mesh"),
     "22320a0b0c01ffffffff556677880022aeb3d02ac2ad177de66cc57969a1cc5c0218b7"),
    (Frame(MSG, F_WANT_ACK, 5, 1, 0x0A0B0C01, 0x0D0E0F02, 0x99AABBCC, 0x33, 0x44, b"hi there"),
     "23a90a0b0c010d0e0f0299aabbcc33442d678764bf561c23c4a3bf0e429db492"),
    (Frame(ACK, 0, 6, 0, 0x0D0E0F02, 0x0A0B0C01, 0xDDEEFF01, 0x44, 0x02, b"\x99\xaa\xbb\xcc"),
     "24300d0e0f020a0b0c01ddeeff0144024011996e0d2ad8ed61374e24"),
    (Frame(MSG, F_WANT_ACK | F_STORED, 7, 7, 0x0A0B0C01, 0x0D0E0F02, 0x99AABBCD, 0, 0x55, b""),
     "23ff0a0b0c010d0e0f0299aabbcd00556ec9b7af79cbef21"),
)


def frame_fields(f):
    return (f.ftype, f.flags, f.hop_limit, f.hops, f.origin, f.dest, f.msg_id,
            f.next_hop, f.relayer, bytes(f.payload))


def valid_frame():
    return bytes.fromhex(VECTORS[1][1])


def signed(body):
    # A frame with a valid tag over any header we like: for fields the tag
    # check passes but a later check must reject.
    # (a MSG or ACK: an inner tag of any 4 bytes, and the outer tag of 4)
    body = bytes(body)
    if body[0] & 0x0F in (MSG, ACK):
        body += bytes(4)
        return body + KEY.tag(body)[:4]
    return body + KEY.tag(body)
