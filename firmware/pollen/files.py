# Content-addressed small files: the file model of the shared commons.
# A file is cut into chunks that each fit one frame; its manifest names it and
# lists a short hash per chunk; the content id is a hash of the manifest, so
# any node holding the manifest can verify every chunk from anyone.
#
# Manifest v1 (big-endian):
#   0      version (1)
#   1      name length N, then N bytes of UTF-8 name
#   .      media type length M, then M bytes (e.g. "text/plain")
#   .      size_bytes (4) | chunk_bytes (2) | author node id (4) | created_s (4)
#   .      SHA-256 of the whole file (32)
#   .      4-byte short hash (SHA-256 prefix) of each chunk, in order
# content id = first 16 bytes of SHA-256(manifest), shown as 26 base32 letters.
import hashlib
from pollen._compat import const, publish
from pollen.wire import u32

_MANIFEST_VERSION = const(1)
_CHUNK_BYTES = const(200)        # 16 header + 16 id + 2 index + 200 + 8 tag <= 255
_MAX_FILE_BYTES = const(65536)   # default limit; a node may set a smaller one
_SHORT = const(4)
_HEAD_MAX = const(559)  # the longest fields a manifest can have before its chunk hashes


class FileError(ValueError):
    pass


def _sha(data):
    return hashlib.sha256(data).digest()


def chunk_count(size_bytes, chunk_bytes=_CHUNK_BYTES):
    return (size_bytes + chunk_bytes - 1) // chunk_bytes


def max_manifest_bytes(max_file_bytes=_MAX_FILE_BYTES):
    # the longest manifest of a file of at most max_bytes: longest name and
    # media type, fixed fields, and a short hash per chunk of the smallest size
    return 1 + 65 + 33 + 46 + chunk_count(max_file_bytes, 16) * _SHORT


class Manifest:
    # its bytes (_raw) while it is new; (storage, name) once it is kept there
    # (_record, kept()). On the class while unset: an instance's attribute
    # table is smaller by what it does not hold (a node keeps one per file)
    _raw = None
    _record = None

    def __init__(self, raw, name, media_type, size_bytes, chunk_bytes, author, created_s,
                 file_sha256, hashes_at, cid):
        if raw is not None:
            self._raw = raw
        self.name = name
        self.media_type = media_type
        self.size_bytes = size_bytes
        self.chunk_bytes = chunk_bytes
        self.author = author
        self.created_s = created_s
        self.file_sha256 = file_sha256
        self.hashes_at = hashes_at
        self.chunks = chunk_count(size_bytes, chunk_bytes)
        self.cid = cid

    @property
    def raw(self):
        # its bytes: in RAM until it is kept in storage, then read back when
        # used (a node's memory does not grow with the files it holds)
        if self._raw is None:
            return self._record[0].get(self._record[1])
        return self._raw

    def __len__(self):
        # its length in bytes, known from its fields (parse_manifest checks
        # it): counting its parts needs no read from storage
        return self.hashes_at + self.chunks * _SHORT

    def kept(self, storage, name):
        # it is in storage as record `name`: its bytes leave the heap
        if self._raw is not None:
            del self._raw
        self._record = (storage, name)

    def read_at(self, offset, n):
        # n of its bytes from offset (a manifest part): only those are read
        # from storage
        if self._raw is None:
            return self._record[0].read_at(self._record[1], offset, n)
        return self._raw[offset:offset + n]

    def chunk_hash(self, index):
        return self.read_at(self.hashes_at + index * _SHORT, _SHORT)

    def chunk_ok(self, index, data):
        if not 0 <= index < self.chunks:
            return False
        last = self.size_bytes - index * self.chunk_bytes
        want = self.chunk_bytes if last > self.chunk_bytes else last
        return len(data) == want and _sha(data)[:_SHORT] == self.chunk_hash(index)


def parse_manifest(raw, max_file_bytes=_MAX_FILE_BYTES, length=None, cid=None):
    # bytes -> Manifest; FileError names what is wrong (remote input: count it).
    # With length (and cid): raw is only the manifest's first bytes, the
    # manifest is length bytes long and has that content id (files.load)
    if length is None:
        length = len(raw)
        cid = content_id(raw)
        raw = bytes(raw)
    try:
        if raw[0] != _MANIFEST_VERSION:
            raise FileError("manifest version %d" % raw[0])
        i = 1
        n = raw[i]
        name = bytes(raw[i + 1:i + 1 + n]).decode()
        i += 1 + n
        m = raw[i]
        media = bytes(raw[i + 1:i + 1 + m]).decode()
        i += 1 + m
        size_bytes = u32(raw, i)
        chunk = (raw[i + 4] << 8) | raw[i + 5]
        author = u32(raw, i + 6)
        created = u32(raw, i + 10)
        sha = bytes(raw[i + 14:i + 46])
        i += 46
    except (IndexError, UnicodeError):
        raise FileError("manifest truncated or garbled")
    if size_bytes > max_file_bytes:
        raise FileError("file is %d bytes; the limit is %d" % (size_bytes, max_file_bytes))
    if not n or size_bytes == 0 or not 16 <= chunk <= _CHUNK_BYTES:
        raise FileError("manifest fields out of range")
    if length != i + chunk_count(size_bytes, chunk) * _SHORT or len(sha) != 32:
        raise FileError("manifest length does not match its chunk count")
    return Manifest(raw if len(raw) == length else None, name, media, size_bytes, chunk, author,
                    created, sha, i, cid)


def load(storage, name, max_file_bytes=_MAX_FILE_BYTES, chunk_bytes=_CHUNK_BYTES, cid=None):
    # Load the manifest in storage record `name` -> Manifest kept there: read and
    # hashed a piece at a time (pieces of chunk_bytes: how it was written),
    # so a long one (16.5 KB, a 64 KiB file in 16-byte chunks) never needs
    # its length in one block of the heap. FileError as parse_manifest;
    # None if cid is given and the record's content id is another.
    size = storage.stat(name)
    if not size:
        raise FileError("manifest truncated or garbled")
    h = hashlib.sha256()
    head = b""
    for at in range(0, size, chunk_bytes):
        d = storage.read_at(name, at, min(chunk_bytes, size - at))
        if d is None:
            raise FileError("manifest truncated or garbled")
        h.update(d)
        if len(head) < _HEAD_MAX:
            head += d
    got = h.digest()[:16]
    if cid is not None and got != cid:
        return None
    m = parse_manifest(head, max_file_bytes, size, got)
    m.kept(storage, name)
    return m


def content_id(raw):
    return _sha(raw)[:16]


def cid_hex(cid):
    # 16 bytes -> 32 hex digits: how a content id names storage records
    return "".join("%02x" % b for b in cid)


def cid_from_hex(text):
    # 32 lowercase hex digits -> 16 bytes; ValueError if they are not (int()
    # alone would also take "+", "-", "_" and spaces)
    cid = bytes(int(text[2 * i:2 * i + 2], 16) for i in range(16)) if len(text) == 32 else None
    if cid is None or cid_hex(cid) != text:
        raise ValueError("a content id is 32 lowercase hex digits")
    return cid


def cid_str(cid):
    # 16 bytes -> 26 lowercase base32 letters (no padding): a-z, 2-7, built
    # in one small buffer (it runs for every chunk a node reports, and a
    # growing list and a 128-bit number need heap a busy node may not have)
    out = bytearray(26)
    bits = value = k = 0
    for b in cid:
        value = (value << 8 | b) & 0xFFF  # at most 12 bits are pending
        bits += 8
        while bits >= 5:
            bits -= 5
            out[k] = _letter((value >> bits) & 31)
            k += 1
    if bits:
        out[k] = _letter((value << (5 - bits)) & 31)
    return out.decode()


def _letter(v):
    # 0..31 -> the byte of its letter: a..z, then 2..7
    return 97 + v if v < 26 else 24 + v


def parse_cid(text):
    # read as bytes: each character of a str read one at a time is interned
    # by MicroPython (a name the heap keeps for good: docs/boards.md, "Interned names")
    text = text.strip().lower()
    if len(text) != 26:
        raise FileError("a content id is 26 base32 letters")
    value = 0
    bits = 0
    out = bytearray()
    for ch in text.encode():
        v = ch - 97 if 97 <= ch <= 122 else ch - 24 if 50 <= ch <= 55 else -1  # (_letter's inverse)
        if v < 0:
            raise FileError("a content id is 26 base32 letters (a-z, 2-7)")
        value = (value << 5) | v
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((value >> bits) & 0xFF)
    cid = bytes(out[:16])
    if cid_str(cid) != text:
        raise FileError("not a canonical content id")
    return cid


publish(globals())  # hosts: wire.MSG and the like (_compat.py)
