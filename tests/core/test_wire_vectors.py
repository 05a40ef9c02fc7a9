# Wire format v1 against its golden vectors: pack and unpack both ways, the
# header's layout, the largest frame.
# Runs under CPython (pytest) and MicroPython (tests/core/mp_run.py): plain
# test_* functions and asserts only.
from pollen import wire
from pollen.wire import Frame, POST, BROADCAST
from pollen.crypto import TAG_BYTES

from .wire_vectors import KEY, VECTORS, frame_fields, valid_frame


def test_pack_golden_vectors():
    for f, hexed in VECTORS:
        got = wire.pack(f, KEY)
        assert got == bytes.fromhex(hexed), (f.ftype, got.hex())


def test_unpack_golden_vectors():
    for f, hexed in VECTORS:
        g, reason = wire.unpack(bytes.fromhex(hexed), KEY)
        assert reason is None
        assert frame_fields(g) == frame_fields(f)


def test_header_is_in_clear_and_payload_is_not():
    data = valid_frame()
    assert data[0] == 0x22                      # version 2, POST
    assert data[1] == (6 << 3) | 2             # hop limit 6, hops 2
    assert data[2:6] == b"\x0a\x0b\x0c\x01"
    assert data[6:10] == b"\xff\xff\xff\xff"
    assert data[10:14] == b"\x55\x66\x77\x88"
    assert len(data) == wire.HEADER_BYTES + len(b"hello, mesh") + TAG_BYTES
    assert b"hello" not in data


def test_unpack_accepts_bytearray_and_memoryview():
    data = valid_frame()
    for d in (bytearray(data), memoryview(data)):
        f, reason = wire.unpack(d, KEY)
        assert reason is None and f.payload == b"hello, mesh"


def test_frame_key_names_the_message():
    f = VECTORS[2][0]
    assert f.key() == (0x0A0B0C01 << 32) | 0x99AABBCC


def test_largest_frame_fits():
    payload = bytes(range(wire.MAX_PAYLOAD_BYTES))
    data = wire.pack(Frame(POST, 0, 7, 0, 1, BROADCAST, 2, 0, 1, payload), KEY)
    assert len(data) == wire.MAX_FRAME_BYTES == 255
    f, reason = wire.unpack(data, KEY)
    assert reason is None and f.payload == payload
