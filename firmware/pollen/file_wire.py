# Payloads of the file frames (inside an authenticated, encrypted frame of
# wire.py). Pure pack/unpack; unpack returns None for a payload that does not
# parse (the node drops and counts it).
#   CHUNK     cid (16) | index (2) | data (1..200)
#   WANT      cid (16) | first index (2) | bitmap (1..32): bit k of byte k//8
#             (least significant first) asks for chunk first + k
#   MANIFEST  cid (16) | part (1) | parts (1) | bytes (1..200): the manifest
#             in 200-byte parts (a 64 KiB file's manifest is about 1.4 KB)
#   CATALOG   entries of cid prefix (6) | size in KiB, rounded up (1, 255 = more)
from pollen._compat import const

CID_BYTES = const(16)
PART_BYTES = const(200)
MAX_WANT_BITMAP = const(32)   # a window of 256 chunks
CATALOG_ENTRY = const(7)
CATALOG_PREFIX = const(6)


def _idx(b, i):
    return (b[i] << 8) | b[i + 1]


def pack_chunk(cid, index, data):
    return bytes(cid) + bytes(((index >> 8) & 0xFF, index & 0xFF)) + bytes(data)


def unpack_chunk(p):
    if len(p) < CID_BYTES + 3:
        return None
    return bytes(p[:CID_BYTES]), _idx(p, CID_BYTES), bytes(p[CID_BYTES + 2:])


def pack_want(cid, first, wanted):
    # wanted: chunk indices >= first and < first + 256
    top = 0
    for i in wanted:
        top = max(top, i - first)
    bitmap = bytearray(top // 8 + 1)
    for i in wanted:
        k = i - first
        if not 0 <= k < MAX_WANT_BITMAP * 8:
            raise ValueError("chunk %d outside the request window" % i)
        bitmap[k // 8] |= 1 << (k % 8)
    return bytes(cid) + bytes(((first >> 8) & 0xFF, first & 0xFF)) + bytes(bitmap)


def unpack_want(p):
    n = len(p) - CID_BYTES - 2
    if n < 1 or n > MAX_WANT_BITMAP:
        return None
    first = _idx(p, CID_BYTES)
    wanted = []
    for k in range(n * 8):
        if p[CID_BYTES + 2 + k // 8] & (1 << (k % 8)):
            wanted.append(first + k)
    return bytes(p[:CID_BYTES]), wanted


def manifest_parts(cid, raw):
    count = (len(raw) + PART_BYTES - 1) // PART_BYTES
    return [bytes(cid) + bytes((i, count)) + raw[i * PART_BYTES:(i + 1) * PART_BYTES]
            for i in range(count)]


def unpack_manifest_part(p):
    if len(p) < CID_BYTES + 3:
        return None
    part, parts = p[CID_BYTES], p[CID_BYTES + 1]
    if part >= parts:
        return None
    return bytes(p[:CID_BYTES]), part, parts, bytes(p[CID_BYTES + 2:])


def pack_catalog(entries):
    # entries: [(cid, size_bytes)]; as many as fit one frame's payload
    out = bytearray()
    for cid, size in entries:
        kib = (size + 1023) // 1024
        out += bytes(cid[:CATALOG_PREFIX]) + bytes((kib if kib < 255 else 255,))
    return bytes(out)


def unpack_catalog(p):
    if not p or len(p) % CATALOG_ENTRY:
        return None
    return [(bytes(p[i:i + CATALOG_PREFIX]), p[i + CATALOG_PREFIX])
            for i in range(0, len(p), CATALOG_ENTRY)]
