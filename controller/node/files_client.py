"""The shared commons from the host, through an attached node's console
(node/link.py): share a file, list the catalog, fetch a file and write it out.
Used by `pollen share/catalog/fetch` and by `pollen demo`.

The host builds the manifest (pollen.files, the same code the nodes run) and
hands the node one chunk at a time, so a board never holds a file whole in
RAM; reading a fetched file out works the same way, and the host checks the
whole file against the manifest's SHA-256 before it writes anything.
"""
from __future__ import annotations

import base64
import mimetypes
import os
import time
from pathlib import Path

from pollen import files
from pollen import file_author
from pollen.settings import _INTS as _SETTINGS
from pollen_controller import bounded
from pollen_controller.errors import FilesError, LinkTimeout
from pollen_controller.node.link import LinkError

# the most any node takes (setting max_file_bytes: its range's top); a node's
# own limit (its setting, 64 KiB by default) is asked for before reading a file
MAX_FILE_BYTES = _SETTINGS["max_file_bytes"][2]
_LIMIT_HINT = " (setting max_file_bytes)"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def node_status(link) -> dict:
    st = link.ask({"cmd": "status"}, "status")
    if st.get("partial"):
        raise FilesError("the node is short of memory: its status came back partial "
                         "(without its file store); try again in a moment")
    if not isinstance(st.get("files"), dict):
        raise FilesError("the node's firmware has no file support (update it with pollen flash)")
    return st


def check_shareable(path: Path, limit_bytes: int = MAX_FILE_BYTES) -> int:
    """The size of the file at path, without reading it; FilesError for
    what is not a regular file (a device such as /dev/zero, a pipe, a
    folder) or is over limit_bytes (by default the most any node takes,
    said so: the node's own, often smaller, limit is checked next)."""
    hint = (_LIMIT_HINT if limit_bytes != MAX_FILE_BYTES else
            ": no node takes a larger file (the largest max_file_bytes)")
    return bounded.check_file(path, limit_bytes, FilesError, hint)


def share_file(link, path: Path, name: str | None = None, media_type: str | None = None,
               progress=None) -> dict:
    """Share the file at path (checked against the node's limit before it
    is read, and read a piece at a time): share() with its bytes."""
    check_shareable(path)
    limit = node_status(link)["files"]["max_file_bytes"]
    data = bounded.read_file(path, limit, FilesError, _LIMIT_HINT)
    return share(link, data, name or Path(path).name, media_type, progress=progress)


def share(link, data: bytes, name: str, media_type: str | None = None,
          created_s: int | None = None, progress=None) -> dict:
    """Share data as a file of the attached node. Returns {cid, name, size_bytes, chunks}."""
    st = node_status(link)
    limits = st["files"]
    if len(data) > limits["max_file_bytes"]:
        raise FilesError(f"file is {len(data)} bytes; the node's limit is "
                         f"{limits['max_file_bytes']} (setting max_file_bytes)")
    media_type = media_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    author = int(st["id"], 16)
    try:
        raw = file_author.make_manifest(name, media_type, data, author,
                                  int(time.time()) if created_s is None else created_s,
                                  chunk_bytes=limits["chunk_bytes"])
    except files.FileError as e:
        raise FilesError(str(e)) from None
    ready = link.ask({"cmd": "share", "manifest": _b64(raw)}, "share_ready")
    m = files.parse_manifest(raw, max_file_bytes=len(data))
    missing = ready.get("missing")
    if missing is None:  # the node lists missing chunks only for a share cut short
        missing = [] if ready.get("held", 0) >= m.chunks else list(range(m.chunks))
    for n, i in enumerate(missing):
        chunk = file_author.chunk_of(data, i, m.chunk_bytes)
        link.ask({"cmd": "put", "cid": ready["cid"], "index": i, "data": _b64(chunk)}, "put")
        if progress:
            progress(n + 1, len(missing))
    return {"cid": ready["cid"], "name": name, "size_bytes": len(data), "chunks": m.chunks,
            "media_type": media_type}


def catalog(link, search: str | None = None, timeout_s: float = 10.0) -> list[dict]:
    ref = link.new_ref()
    cmd = {"cmd": "catalog", "ref": ref}
    if search:
        cmd["search"] = search
    link.command(cmd)
    rows = []
    while True:
        ev = link.wait(lambda e: e.get("ref") == ref, timeout_s)
        if ev["event"] == "error":
            raise LinkError(ev.get("error"))
        if ev["event"] == "catalog":
            return rows
        row = {k: v for k, v in ev.items() if k not in ("event", "ref") and not k.startswith("_")}
        # a file only heard of has its size in whole KiB, rounded up (the catalog frame's byte)
        row["size_exact"] = bool(row.get("held"))
        rows.append(row)


def unannounced(link, cid: str) -> str | None:
    """What to tell the user before a fetch of a file the node's catalog
    does not list (no node in reach announced it): the wait may be long
    and end in nothing. None when it is listed (or the catalog cannot be read)."""
    try:
        rows = catalog(link)
    except (LinkError, FilesError):
        return None
    if any(r.get("cid") == cid for r in rows):
        return None
    return (f"content id {cid} is not in the node's catalog (yet): no node in reach has "
            "announced it so far; the node asks the mesh and gives up after "
            "fetch_patience_ms without an answer (10 min unless set otherwise); Ctrl-C stops "
            "waiting")


def check_cid(cid: str) -> str:
    """A content id as typed -> its canonical form; FilesError naming what is wrong."""
    try:
        return files.cid_str(files.parse_cid(cid))
    except files.FileError as e:
        raise FilesError(f"content id {cid!r}: {e}") from None


def fetch(link, cid: str, timeout_s: float = 3600.0, progress=None) -> dict:
    """Ask the node to fetch cid; wait until it has it. Returns the node's
    `fetched` event fields. progress(have, chunks) is called as it goes.
    FilesError when it fails or is not done within timeout_s, saying whether
    any node in reach announced the file; LinkError when the node is gone."""
    cid = check_cid(cid)
    link.ask({"cmd": "fetch", "cid": cid}, "fetch_started")
    end = time.monotonic() + timeout_s
    got = None
    while True:
        try:
            ev = link.wait(lambda e: e.get("cid") == cid and e.get("event") in
                           ("fetch_progress", "fetched", "fetch_failed"),
                           max(0.0, end - time.monotonic()))
        except LinkTimeout:
            raise FilesError(_not_done(link, cid, got, timeout_s)) from None
        if ev["event"] == "fetch_failed":
            error = str(ev.get("error") or "the node gave up")
            raise FilesError(error if cid in error else f"content id {cid}: {error}")
        if ev["event"] == "fetched":
            return ev
        if ev.get("chunks"):
            got = (ev.get("have") or 0, ev["chunks"])
            if progress:
                progress(*got)


def _not_done(link, cid: str, got, timeout_s: float) -> str:
    # why a fetch is not done in time: what the node knows of the file
    again = "the node keeps looking; run pollen fetch again to wait more"
    if got is not None:
        return (f"content id {cid}: {got[0]} of {got[1]} chunks after {timeout_s:g} s "
                f"(the node keeps fetching; run pollen fetch again to wait more)")
    try:
        row = next((r for r in catalog(link) if r.get("cid") == cid), None)
    except LinkError:
        row = None
    if row is None:
        return (f"content id {cid}: not found: no node in reach announced it within "
                f"{timeout_s:g} s ({again})")
    if row.get("hops") is None:
        return (f"content id {cid}: heard of, but no node in reach holds it now "
                f"(waited {timeout_s:g} s; {again})")
    return (f"content id {cid}: a node {row['hops']} hops away holds it, but nothing came "
            f"within {timeout_s:g} s ({again})")


def read_out(link, cid: str, progress=None) -> tuple[files.Manifest, bytes]:
    """The file's bytes from the node, checked against its manifest."""
    ev = link.ask({"cmd": "manifest", "cid": cid}, "manifest")
    if not ev.get("complete"):
        raise FilesError(f"content id {cid}: the node holds only part of it")
    raw = base64.b64decode(ev["data"])
    m = files.parse_manifest(raw, max_file_bytes=MAX_FILE_BYTES)
    if files.cid_str(m.cid) != cid:
        raise FilesError(f"content id {cid}: the node sent another file's manifest")
    out = bytearray()
    for i in range(m.chunks):
        got = link.ask({"cmd": "get", "cid": cid, "index": i}, "chunk")
        out += base64.b64decode(got["data"])
        if progress:
            progress(i + 1, m.chunks)
    if not file_author.file_ok(m, bytes(out)):
        raise FilesError(f"content id {cid}: the file read from the node does not match its SHA-256")
    return m, bytes(out)


def save(path: Path, data: bytes, force: bool = False):
    """Write data to path through a temporary file beside it (a crash leaves
    no half file); an existing file is replaced only with force (FilesError
    naming it otherwise)."""
    path = Path(path)
    if not force and (path.exists() or path.is_symlink()):
        raise FilesError(f"{path}: a file of that name exists; not overwritten "
                         "(--force to replace it, or -o another name)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the name appeared meanwhile: never overwrites
            except FileExistsError:
                raise FilesError(f"{path}: a file of that name exists; not overwritten "
                                 "(--force to replace it, or -o another name)") from None
    finally:
        tmp.unlink(missing_ok=True)
