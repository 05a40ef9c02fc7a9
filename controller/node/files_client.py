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
import time
from pathlib import Path

from pollen import files
from pollen import file_author
from pollen_controller.errors import FilesError
from pollen_controller.files_atomic import write_atomic
from pollen_controller.node.link import LinkError


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
    m = files.parse_manifest(raw, max_bytes=len(data))
    missing = ready.get("missing")
    if missing is None:  # the node lists missing chunks only for a share cut short
        missing = [] if ready.get("held", 0) >= m.chunks else list(range(m.chunks))
    for n, i in enumerate(missing):
        chunk = files.chunk_of(data, i, m.chunk_bytes)
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
        rows.append(row)


def fetch(link, cid: str, timeout_s: float = 3600.0, progress=None) -> dict:
    """Ask the node to fetch cid; wait until it has it. Returns the node's
    `fetched` event fields. progress(have, chunks) is called as it goes."""
    try:
        cid = files.cid_str(files.parse_cid(cid))
    except files.FileError as e:
        raise FilesError(f"content id {cid!r}: {e}") from None
    link.ask({"cmd": "fetch", "cid": cid}, "fetch_started")
    end = time.monotonic() + timeout_s
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise FilesError(f"content id {cid}: not complete after {timeout_s:.0f} s "
                             "(the node keeps fetching; run pollen fetch again to wait more)")
        ev = link.wait(lambda e: e.get("cid") == cid and e.get("event") in
                       ("fetch_progress", "fetched", "fetch_failed"), left)
        if ev["event"] == "fetch_failed":
            raise FilesError(f"content id {cid}: {ev.get('error')}")
        if ev["event"] == "fetched":
            return ev
        if progress and ev.get("chunks"):
            progress(ev["have"], ev["chunks"])


def read_out(link, cid: str, progress=None) -> tuple[files.Manifest, bytes]:
    """The file's bytes from the node, checked against its manifest."""
    ev = link.ask({"cmd": "manifest", "cid": cid}, "manifest")
    if not ev.get("complete"):
        raise FilesError(f"content id {cid}: the node holds only part of it")
    raw = base64.b64decode(ev["data"])
    m = files.parse_manifest(raw, max_bytes=1 << 24)
    if files.cid_str(m.cid) != cid:
        raise FilesError(f"content id {cid}: the node sent another file's manifest")
    out = bytearray()
    for i in range(m.chunks):
        got = link.ask({"cmd": "get", "cid": cid, "index": i}, "chunk")
        out += base64.b64decode(got["data"])
        if progress:
            progress(i + 1, m.chunks)
    if not m.file_ok(bytes(out)):
        raise FilesError(f"content id {cid}: the file read from the node does not match its SHA-256")
    return m, bytes(out)


def save(path: Path, data: bytes):
    write_atomic(Path(path), data)
