# What the user asks of file sharing (sharing.py) once per file: share a
# file of ours (the manifest; its chunks follow through Node.share_chunk),
# and fetch one. Runs only when the node's host asks (a console command, the
# simulator, tests), so a node loads this code then and drops it after
# (pollen_io/app.py): it takes no room in a running node's heap.
from pollen import files, file_wire
from pollen.files import FileError
from pollen.sharing import Fetch
from pollen._compat import const

# the numbers of sharing.py used here, as private copies (_compat.publish)
_MAX_FETCHES = const(4)
_FETCH_RECORD = const("q")


def share_manifest(node, raw, now_ms):
    # Begin sharing a file of ours, chunks to follow (share_chunk): a board
    # never needs the whole file in RAM. Raises FileError naming the problem.
    m = files.parse_manifest(raw, node.s.max_file_bytes)
    if m.chunk_bytes > node.file_chunk_bytes:
        raise FileError("chunk size %d: this node's radio sends chunks of at most %d bytes"
                        % (m.chunk_bytes, node.file_chunk_bytes))
    if m.chunks * m.chunk_bytes > node.files.quota_bytes:
        raise FileError("file is %d bytes; the file store holds %d"
                        % (m.size_bytes, node.files.quota_bytes))
    if file_wire.part_count(raw, node.file_chunk_bytes) > 255:  # part numbers are a byte
        raise FileError("manifest is %d bytes, over 255 parts of %d: use bigger chunks"
                        % (len(raw), node.file_chunk_bytes))
    return node.files.begin(raw, own=True)


def fetch(node, cid, now_ms):
    # Fetch a file by content id (resumes a partial); refused with FileError
    # when the node already fetches all it can
    if node.files.complete(cid):
        node.files.pin(cid)
        node._fetched(cid, now_ms, now_ms)
        return
    fe = node.fetches.get(cid)
    if fe is None:
        if len(node.fetches) >= _MAX_FETCHES and not node._drop_relay_fetch():
            raise FileError("already fetching %d files; wait for one to finish"
                            % len(node.fetches))
        fe = Fetch(cid, True, now_ms)
        node.fetches[cid] = fe
    fe.own = True
    fe.progress_ms = now_ms
    fe.next_ms = now_ms
    node.files.pin(cid)
    node.storage.put(_FETCH_RECORD + files.cid_hex(cid), b"")
