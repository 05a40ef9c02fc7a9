# The console's file commands (docs/console.md#files): share, put, fetch,
# catalog, manifest, get. Loaded by the app for each such command and
# dropped after it, so a node that only relays never holds this code, and
# one serving a file holds it only while it answers its host.
import binascii

from pollen.files import parse_cid, cid_str
from pollen_io.app import emit


def cmd_share(app, c, ref):
    # the host sends the manifest, then each chunk with "put": a board
    # never holds the whole file in RAM
    cid = app.node.share_manifest(_b64(c, "manifest"), app.clock.now())
    m = app.node.files.manifests[cid]
    held = app.node.files.chunks_held(cid)
    if 0 < held < m.chunks:  # a share cut short before: what is still to come
        emit("share_ready", cid=cid_str(cid), name=m.name, chunks=m.chunks, held=held,
             missing=app.node.files.missing(cid), ref=ref)
    else:  # none or all of it: no list (it would need a block of a small heap)
        emit("share_ready", cid=cid_str(cid), name=m.name, chunks=m.chunks, held=held, ref=ref)


def cmd_put(app, c, ref):
    cid = _cid(c)
    index = c.get("index")
    if not isinstance(index, int) or isinstance(index, bool):
        raise ValueError("field 'index': expected a chunk number")
    done = app.node.share_chunk(cid, index, _b64(c, "data"), app.clock.now())
    emit("put", cid=cid_str(cid), index=index, complete=done, ref=ref)


def cmd_fetch(app, c, ref):
    cid = _cid(c)
    app.node.fetch(cid, app.clock.now())  # refused (too many fetches): an error, no start
    emit("fetch_started", cid=cid_str(cid), ref=ref)


def cmd_catalog(app, c, ref):
    search = c.get("search")
    if search is not None and not isinstance(search, str):
        raise ValueError("field 'search': expected text")
    rows = app.node.catalog_entries(app.clock.now(), search)
    for r in rows:  # one line each: a long catalog never needs one big string
        r["ref"] = ref
        emit("catalog_entry", **r)
    emit("catalog", count=len(rows), ref=ref)


def cmd_manifest(app, c, ref):
    cid = _cid(c)
    m = app.node.files.manifests.get(cid)
    if m is None:
        raise ValueError("content id %s: not on this node" % cid_str(cid))
    emit("manifest", cid=cid_str(cid), data=_b64s(m.raw),
         complete=app.node.files.complete(cid), ref=ref)


def cmd_get(app, c, ref):
    cid = _cid(c)
    index = c.get("index")
    ok = isinstance(index, int) and not isinstance(index, bool)
    data = app.node.files.read_chunk(cid, index) if ok else None
    if data is None:
        raise ValueError("content id %s: no chunk %r on this node" % (cid_str(cid), index))
    emit("chunk", cid=cid_str(cid), index=index, data=_b64s(data), ref=ref)


def _b64(c, field):
    v = c.get(field)
    try:
        return binascii.a2b_base64(v)
    except (ValueError, TypeError):
        raise ValueError("field '%s': expected base64" % field)


def _b64s(data):
    return binascii.b2a_base64(data).decode().strip()


def _cid(c):
    v = c.get("cid")
    if not isinstance(v, str):
        raise ValueError("field 'cid': expected a content id (26 letters a-z, 2-7)")
    try:
        return parse_cid(v)
    except ValueError as e:
        raise ValueError("field 'cid': %s" % e)
