# File frame payloads, both ways, with byte literals. CPython and MicroPython.
from pollen import file_wire as fw

CID = bytes(range(16))


def test_chunk_both_ways():
    p = fw.pack_chunk(CID, 0x0102, b"abc")
    assert p == bytes(range(16)) + b"\x01\x02abc"
    assert fw.unpack_chunk(p) == (CID, 0x0102, b"abc")
    assert fw.unpack_chunk(p[:18]) is None  # no data


def test_want_bitmap_both_ways():
    p = fw.pack_want(CID, 8, [8, 10, 17])
    assert p == CID + b"\x00\x08" + bytes((0b00000101, 0b00000010))
    assert fw.unpack_want(p) == (CID, [8, 10, 17])
    try:
        fw.pack_want(CID, 0, [256])
    except ValueError:
        pass
    else:
        raise AssertionError("window not enforced")
    assert fw.unpack_want(CID + b"\x00\x00") is None
    assert fw.unpack_want(CID + b"\x00\x00" + bytes(33)) is None


def test_manifest_parts_reassemble():
    raw = bytes(i % 251 for i in range(450))
    parts = fw.manifest_parts(CID, raw)
    assert len(parts) == 3 and all(len(p) <= 16 + 2 + 200 for p in parts)
    got = [fw.unpack_manifest_part(p) for p in parts]
    assert [(g[1], g[2]) for g in got] == [(0, 3), (1, 3), (2, 3)]
    assert b"".join(g[3] for g in got) == raw
    assert fw.unpack_manifest_part(CID + b"\x03\x03x") is None  # part beyond parts


def test_catalog_entries():
    p = fw.pack_catalog([(CID, 16384), (bytes(16), 1), (CID, 10 ** 6)])
    assert p == CID[:6] + b"\x10" + bytes(6) + b"\x01" + CID[:6] + b"\xff"
    assert fw.unpack_catalog(p) == [(CID[:6], 16), (bytes(6), 1), (CID[:6], 255)]
    assert fw.unpack_catalog(p[:-1]) is None and fw.unpack_catalog(b"") is None
