# The file model: manifests, chunks, content ids. Runs under CPython and
# MicroPython (tests/core/mp_run.py): plain test_* functions and asserts.
from pollen import files
from pollen import file_author
from pollen.files import FileError

from .fakemesh import XorShift
from .util import random_bytes as _data, file_error as _raises


def test_manifest_round_trip_and_chunks_verify():
    data = _data(16384)
    raw = file_author.make_manifest("timetable.txt", "text/plain", data, 0x0A0B0C01, 1700000000)
    m = files.parse_manifest(raw)
    assert (m.name, m.media_type, m.size_bytes, m.author, m.created_s) == (
        "timetable.txt", "text/plain", 16384, 0x0A0B0C01, 1700000000)
    assert m.chunks == 82 and m.chunk_bytes == 200
    assert len(raw) == 1 + 1 + 13 + 1 + 10 + 14 + 32 + 82 * 4
    for i in range(m.chunks):
        assert m.chunk_ok(i, file_author.chunk_of(data, i))
    assert file_author.file_ok(m, data)
    # kept in storage: its bytes are read back, its length known without them
    from pollen.storage import MemoryStorage
    st = MemoryStorage()
    st.put("fm", raw)
    m.kept(st, "fm")
    assert len(m) == len(raw) and m.raw == raw
    assert all(m.chunk_ok(i, file_author.chunk_of(data, i)) for i in range(m.chunks))
    assert not m.chunk_ok(1, file_author.chunk_of(data, 2))


def test_a_bad_chunk_or_file_is_caught():
    data = _data(1000)
    m = files.parse_manifest(file_author.make_manifest("a", "", data, 1))
    c = bytearray(file_author.chunk_of(data, 2))
    c[7] ^= 1
    assert not m.chunk_ok(2, bytes(c))
    assert not m.chunk_ok(2, file_author.chunk_of(data, 3))       # right size, wrong place
    assert not m.chunk_ok(4, file_author.chunk_of(data, 4)[:-1])  # last chunk cut short
    assert m.chunk_ok(4, file_author.chunk_of(data, 4))           # 1000 = 4 x 200 + 200
    assert not m.chunk_ok(5, b"") and not m.chunk_ok(-1, b"")
    assert not file_author.file_ok(m, data[:-1] + bytes((data[-1] ^ 1,)))


def test_content_id_names_the_content():
    a = file_author.make_manifest("n", "t", b"hello", 1, 5)
    b = file_author.make_manifest("n", "t", b"hellp", 1, 5)
    assert files.content_id(a) != files.content_id(b)
    assert files.content_id(a) == files.content_id(file_author.make_manifest("n", "t", b"hello", 1, 5))
    cid = files.content_id(a)
    text = files.cid_str(cid)
    assert len(text) == 26 and files.parse_cid(text) == cid
    assert files.parse_cid(text.upper()) == cid
    assert "26" in _raises(files.parse_cid, text[:-1])
    assert "a-z" in _raises(files.parse_cid, text[:-1] + "1")


def test_base32_known_vector():
    assert files.cid_str(bytes(16)) == "a" * 26
    assert files.cid_str(b"\xff" * 16) == "7" * 25 + "4"


def test_limits_and_garbled_manifests_are_refused():
    assert "limit" in _raises(file_author.make_manifest, "big", "", bytes(65537), 1)
    assert "empty" in _raises(file_author.make_manifest, "e", "", b"", 1)
    assert "name" in _raises(file_author.make_manifest, "x" * 65, "", b"1", 1)
    raw = file_author.make_manifest("ok", "text/plain", _data(500), 1)
    for cut in (0, 1, 5, 20, len(raw) - 1):
        _raises(files.parse_manifest, raw[:cut])
    _raises(files.parse_manifest, raw + b"\0")
    _raises(files.parse_manifest, b"\x02" + raw[1:])
    # a manifest for a file over the receiver's limit
    assert "file is 500 bytes; the limit is 100" in _raises(files.parse_manifest, raw, 100)
    r = XorShift(3)
    for _ in range(300):  # fuzz: a FileError or a manifest, nothing else
        junk = bytes(r.getrandbits(8) for _ in range(r.getrandbits(7)))
        try:
            files.parse_manifest(b"\x01" + junk)
        except FileError:
            pass
