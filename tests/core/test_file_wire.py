# File frame payloads, both ways, with byte literals. CPython and MicroPython.
from pollen import file_author
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
    # a full bitmap of 256 asks is read as far as anyone answers: 64
    full = fw.unpack_want(CID + b"\x01\x00" + b"\xff" * 32)
    assert full == (CID, list(range(256, 256 + 64)))


def test_manifest_parts_reassemble():
    raw = bytes(i % 251 for i in range(450))
    parts = file_author.manifest_parts(CID, raw)
    assert len(parts) == 3 and all(len(p) <= 16 + 2 + 200 for p in parts)
    got = [fw.unpack_manifest_part(p) for p in parts]
    assert [(g[1], g[2]) for g in got] == [(0, 3), (1, 3), (2, 3)]
    assert b"".join(g[3] for g in got) == raw
    assert fw.unpack_manifest_part(CID + b"\x03\x03x") is None  # part beyond parts


def test_catalog_entries():
    p, n = fw.pack_catalog([(CID, 16384, 0, 0, "map.png"), (bytes(16), 1, 3, 0x2A, "")])
    assert n == 2
    assert p == CID + b"\x10\x00\x00\x07map.png" + bytes(16) + b"\x01\x03\x2a\x00"
    assert fw.unpack_catalog(p) == [(CID, 16, 0, 0, "map.png"), (bytes(16), 1, 3, 0x2A, "")]
    assert fw.unpack_catalog(p[:-1]) is None and fw.unpack_catalog(b"") is None
    assert fw.unpack_catalog(CID + b"\x01\x00\x00\x02\xff\xfe") is None  # not UTF-8


def test_catalog_sizes_names_and_room():
    p, _ = fw.pack_catalog([(CID, 10 ** 6, 1, 5, "\u00e9" * 20)])
    got = fw.unpack_catalog(p)[0]
    assert got[1] == 255 and got[4] == "\u00e9" * 12  # 24 bytes, no half character
    # only whole entries that fit the room go in
    many = [(CID, 100, 0, 0, "timetable-%d" % i) for i in range(10)]
    p, n = fw.pack_catalog(many)
    assert n == 7 and len(p) <= 231  # a frame's whole payload
    assert len(fw.unpack_catalog(p)) == 7
