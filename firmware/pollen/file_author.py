# A file whole in RAM: what hosts do with one (the `pollen share` and `pollen
# fetch` commands, the simulator, tests): make its manifest, cut it into
# chunks, share it through a node, check a file read back. A node never
# loads this module: a host hands it the manifest and then the chunks one at
# a time (console share/put, Sharing.share_manifest/share_chunk), so a board
# never holds a whole file, and this code takes no room in its heap (nor
# its names: tests/test_core_micropython.py checks what a node imports).
import hashlib
from pollen import files
from pollen import file_wire
from pollen.files import FileError, chunk_count
from pollen.wire import be32
from pollen._compat import const

# the numbers of files.py used here, as private copies (_compat.publish)
_CHUNK_BYTES = const(200)
_MAX_FILE_BYTES = const(65536)

_MANIFEST_VERSION = 1
_SHORT = 4  # bytes of each chunk's short hash


def _sha(data):
    return hashlib.sha256(data).digest()


def chunk_of(data, index, chunk_bytes=_CHUNK_BYTES):
    return data[index * chunk_bytes:(index + 1) * chunk_bytes]


def file_ok(manifest, data):
    # a whole file read back (chunk by chunk) is the one its manifest names
    return len(data) == manifest.size_bytes and _sha(data) == manifest.file_sha256


def manifest_parts(cid, raw):
    # a manifest cut into the parts of PART frames (file_wire.manifest_part)
    return [file_wire.manifest_part(cid, raw, i) for i in range(file_wire.part_count(raw))]


def make_manifest(name, media_type, data, author, created_s=0, chunk_bytes=_CHUNK_BYTES,
                  max_bytes=_MAX_FILE_BYTES):
    # Raises FileError on local misuse: over the size limit, names too long.
    if len(data) > max_bytes:
        raise FileError("file is %d bytes; the limit is %d" % (len(data), max_bytes))
    if not data:
        raise FileError("file is empty")
    n = name.encode()
    m = media_type.encode()
    if not 0 < len(n) <= 64:
        raise FileError("name must be 1..64 bytes")
    if len(m) > 32:
        raise FileError("media type must be at most 32 bytes")
    if not 16 <= chunk_bytes <= _CHUNK_BYTES:
        raise FileError("chunk size must be 16..%d bytes" % _CHUNK_BYTES)
    out = bytearray((_MANIFEST_VERSION, len(n)))
    out += n
    out.append(len(m))
    out += m
    out += be32(len(data))
    out += bytes(((chunk_bytes >> 8) & 0xFF, chunk_bytes & 0xFF))
    out += be32(author) + be32(created_s) + _sha(data)
    for i in range(chunk_count(len(data), chunk_bytes)):
        out += _sha(chunk_of(data, i, chunk_bytes))[:_SHORT]
    return bytes(out)


def add_own(held, name, media_type, data, author, created_s=0, max_bytes=_MAX_FILE_BYTES):
    # Share a file of ours into a HeldFiles store: kept until unshared, never evicted.
    raw = make_manifest(name, media_type, data, author, created_s, max_bytes=max_bytes)
    known = files.content_id(raw) in held.state
    cid = held.begin(raw, own=True)
    m = held.manifests[cid]
    try:
        for i in range(m.chunks):
            held.put_chunk(cid, i, chunk_of(data, i, m.chunk_bytes))
    except FileError:
        if not known:
            held.remove(cid)  # nothing half-shared is left behind
        raise
    return cid


def share(node, name, media_type, data, now_ms, created_s=0):
    # Share a file held in RAM through a node (Node.share): its content id.
    raw = make_manifest(name, media_type, data, node.id, created_s,
                        node.file_chunk_bytes, node.s.max_file_bytes)
    cid = node.share_manifest(raw, now_ms)
    m = node.files.manifests[cid]
    for i in range(m.chunks):
        node.share_chunk(cid, i, chunk_of(data, i, m.chunk_bytes), now_ms)
    return cid
