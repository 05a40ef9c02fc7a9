# Wire format v1, the frame's fields: local misuse raises, a bad header from
# the air is (None, reason) and never an exception, relaying rewrites the hop
# fields only.
# Runs under CPython (pytest) and MicroPython (tests/core/mp_run.py): plain
# test_* functions and asserts only.
from pollen import wire
from pollen.wire import Frame, POST, MSG, BROADCAST, F_WANT_ACK, F_STORED
from pollen.crypto import TAG_BYTES

from .wire_vectors import KEY, VECTORS, valid_frame, signed
from .util import raises


def test_pack_rejects_misuse():
    raises(ValueError, wire.pack, Frame(POST, 0, 7, 0, 1, BROADCAST, 2, 0, 1,
                                         bytes(wire.MAX_PAYLOAD_BYTES + 1)), KEY)
    raises(ValueError, wire.pack, Frame(POST, 0, 2, 3, 1, BROADCAST, 2), KEY)
    raises(ValueError, wire.pack, Frame(POST, 0, 8, 0, 1, BROADCAST, 2), KEY)


def test_short_frames():
    data = valid_frame()
    for n in range(wire.HEADER_BYTES + TAG_BYTES):
        assert wire.unpack(data[:n], KEY) == (None, "short"), n


def test_oversize_frames():
    data = wire.pack(Frame(POST, 0, 7, 0, 1, BROADCAST, 2, 0, 1, bytes(wire.MAX_PAYLOAD_BYTES)), KEY)
    assert wire.unpack(data + b"\x00", KEY) == (None, "oversize")
    assert wire.unpack(bytes(1000), KEY) == (None, "oversize")


def test_unknown_version():
    data = bytearray(valid_frame())
    for v in (0, 1, 3, 15):
        data[0] = (v << 4) | POST
        assert wire.unpack(bytes(data), KEY) == (None, "version")
        # a correct tag does not make an unknown version acceptable
        assert wire.unpack(signed(data[:-8]), KEY) == (None, "version")


def test_unknown_type_with_valid_tag():
    body = bytearray(valid_frame()[:-8])
    for t in (0, 11, 12, 15):
        body[0] = (wire.VERSION << 4) | t
        assert wire.unpack(signed(body), KEY) == (None, "type"), t


def test_hops_over_hop_limit_with_valid_tag():
    body = bytearray(valid_frame()[:-8])
    for limit, hops in ((0, 1), (2, 3), (5, 7)):
        body[1] = (limit << 3) | hops
        assert wire.unpack(signed(body), KEY) == (None, "field"), (limit, hops)
    body[1] = (7 << 3) | 7
    f, reason = wire.unpack(signed(body), KEY)
    assert reason is None and f.hops == f.hop_limit == 7


def test_relayed_keeps_payload_and_retags():
    data = bytes.fromhex(VECTORS[2][1])   # MSG, hop limit 5, hops 1
    copy = wire.relayed(data, 2, 0x77, 0x88, KEY)
    assert len(copy) == len(data)
    assert copy[16:-8] == data[16:-8]     # ciphertext carried unchanged
    assert copy[0] == data[0] and copy[2:14] == data[2:14]
    assert copy[-8:] != data[-8:]
    f, reason = wire.unpack(copy, KEY)
    assert reason is None
    assert (f.hops, f.next_hop, f.relayer) == (2, 0x77, 0x88)
    assert (f.ftype, f.flags, f.hop_limit, f.origin, f.dest, f.msg_id, f.payload) == \
        (MSG, F_WANT_ACK, 5, 0x0A0B0C01, 0x0D0E0F02, 0x99AABBCC, b"hi there")


def test_with_flags_sets_stored_and_retags():
    data = bytes.fromhex(VECTORS[2][1])
    copy = wire.with_flags(data, F_STORED, KEY)
    f, reason = wire.unpack(copy, KEY)
    assert reason is None
    assert f.flags == F_WANT_ACK | F_STORED and f.payload == b"hi there" and f.hops == 1
