# Payloads of the file frames (inside an authenticated, encrypted frame of
# wire.py). Pure pack/unpack; unpack returns None for a payload that does not
# parse (the node drops and counts it).
#   CHUNK     cid (16) | index (2) | data (1..200)
#   WANT      cid (16) | first index (2) | bitmap (1..32): bit k of byte k//8
#             (least significant first) asks for chunk first + k
#   MANIFEST  cid (16) | part (1) | parts (1) | bytes (1..200): the manifest
#             in 200-byte parts (a 64 KiB file's manifest is about 1.4 KB)
#   CATALOG   entries of cid (16) | size in KiB, rounded up (1, 255 = more) |
#             hops to the nearest holder (1, 0 = the sender holds it) |
#             via: low byte of the neighbour the sender reaches it through
#             (1, 0 = holds it; that neighbour ignores the entry: poisoned
#             reverse, so no node takes its own echo for a way) |
#             name length (1) | name (UTF-8, at most 24 bytes, cut short)
from pollen._compat import const

_CID_BYTES = const(16)
_PART_BYTES = const(200)
_MAX_WANT_BITMAP = const(32)   # a window of 256 chunks
_MAX_WANTED = const(64)        # indices of one WANT read (unpack_want)
_CATALOG_FIXED = const(20)      # cid, size, hops, via, name length
_CATALOG_NAME_BYTES = const(24)
_MAX_CATALOG_BYTES = const(231)  # a frame's whole payload


def _idx(b, i):
    return (b[i] << 8) | b[i + 1]


def pack_chunk(cid, index, data):
    return bytes(cid) + bytes(((index >> 8) & 0xFF, index & 0xFF)) + bytes(data)


def unpack_chunk(payload):
    if len(payload) < _CID_BYTES + 3:
        return None
    return bytes(payload[:_CID_BYTES]), _idx(payload, _CID_BYTES), bytes(payload[_CID_BYTES + 2:])


def pack_want(cid, first, wanted):
    # wanted: chunk indices >= first and < first + 256
    top = 0
    for i in wanted:
        top = max(top, i - first)
    bitmap = bytearray(top // 8 + 1)
    for i in wanted:
        k = i - first
        if not 0 <= k < _MAX_WANT_BITMAP * 8:
            raise ValueError("chunk %d outside the request window" % i)
        bitmap[k // 8] |= 1 << (k % 8)
    return bytes(cid) + bytes(((first >> 8) & 0xFF, first & 0xFF)) + bytes(bitmap)


def unpack_want(payload, limit=_MAX_WANTED):
    # -> (cid, the first `limit` indices asked for) or None. No node answers
    # more than 64 items of one WANT (sharing._MAX_ANSWER), so a bitmap of
    # 256 set bits does not become a list of 256 numbers (about 2 KB that
    # fragment a small heap): the bitmap is read in place
    n = len(payload) - _CID_BYTES - 2
    if n < 1 or n > _MAX_WANT_BITMAP:
        return None
    first = _idx(payload, _CID_BYTES)
    wanted = []
    for k in range(n * 8):
        if payload[_CID_BYTES + 2 + (k >> 3)] & (1 << (k & 7)):
            if len(wanted) >= limit:
                break
            wanted.append(first + k)
    return bytes(payload[:_CID_BYTES]), wanted


def part_count(raw, chunk_bytes=_PART_BYTES):
    # a manifest is sent in parts of a chunk's size
    return (len(raw) + chunk_bytes - 1) // chunk_bytes


def manifest_part(cid, raw, i, chunk_bytes=_PART_BYTES):
    # parts are cut alike by every node of a network (its region's dwell
    # time sets chunk_bytes), so parts from different senders fit together.
    # raw: the manifest's bytes, or a files.Manifest (only that part is read
    # from storage, not the whole: up to 16.5 KB)
    at = i * chunk_bytes
    if hasattr(raw, "read_at"):
        data = raw.read_at(at, min(chunk_bytes, len(raw) - at))
    else:
        data = raw[at:at + chunk_bytes]
    return bytes(cid) + bytes((i, part_count(raw, chunk_bytes))) + data


def unpack_manifest_part(payload):
    if len(payload) < _CID_BYTES + 3:
        return None
    part, parts = payload[_CID_BYTES], payload[_CID_BYTES + 1]
    if part >= parts:
        return None
    return bytes(payload[:_CID_BYTES]), part, parts, bytes(payload[_CID_BYTES + 2:])


def _cut_utf8(b, n):
    # at most n bytes of UTF-8 text b, not cutting a character in two
    if len(b) <= n:
        return b
    while n > 0 and b[n] & 0xC0 == 0x80:
        n -= 1
    return b[:n]


def pack_catalog(entries, room=_MAX_CATALOG_BYTES):
    # entries: [(cid, size_bytes, hops, via, name)], as many as fit `room` bytes;
    # returns (payload, how many entries went in)
    out = bytearray()
    n = 0
    for cid, size, hops, via, name in entries:
        nb = _cut_utf8(name.encode(), _CATALOG_NAME_BYTES)
        if len(out) + _CATALOG_FIXED + len(nb) > room:
            break
        kib = (size + 1023) // 1024
        out += bytes(cid) + bytes((kib if kib < 255 else 255, hops, via, len(nb))) + nb
        n += 1
    return bytes(out), n


def unpack_catalog(payload):
    # -> [(cid, size_kib, hops, via, name)] or None if the payload does not parse
    out = []
    i = 0
    while i < len(payload):
        if i + _CATALOG_FIXED > len(payload):
            return None
        n = payload[i + _CID_BYTES + 3]
        if n > _CATALOG_NAME_BYTES or i + _CATALOG_FIXED + n > len(payload):
            return None
        try:
            name = bytes(payload[i + _CATALOG_FIXED:i + _CATALOG_FIXED + n]).decode()
        except UnicodeError:
            return None
        out.append((bytes(payload[i:i + _CID_BYTES]), payload[i + _CID_BYTES], payload[i + _CID_BYTES + 1],
                    payload[i + _CID_BYTES + 2], name))
        i += _CATALOG_FIXED + n
    return out if out else None
