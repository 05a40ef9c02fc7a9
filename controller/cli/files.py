"""CLI commands for the shared commons through an attached node: share,
catalog, fetch. Registered on the `pollen` group by cli/main.py."""
from __future__ import annotations

import json
from pathlib import Path

import click

from pollen_controller.cli.progress import progress_bar
from pollen_controller.untrusted import safe_file_name, safe_text

_PORT_HELP = ("Serial port of the attached node (a board, or a virtual board's port); held "
              "exclusively: another command on it is told who has it.")


def register(main):
    main.add_command(share)
    main.add_command(catalog)
    main.add_command(fetch)


def _link(port):
    from pollen_controller.node.link import SerialLink

    return SerialLink(port)


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--port", required=True, help=_PORT_HELP)
@click.option("--name", default=None, help="Name in the catalog (default: the file's name).")
@click.option("--type", "media_type", default=None,
              help="Media type, e.g. text/plain (default: guessed from the name).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def share(path, port, name, media_type, as_json):
    """Share a file through the attached node. It is named by its content
    (a 26-letter content id, printed) and offered to the whole mesh.

    Only a regular file, at most the node's max_file_bytes (64 KiB unless
    set otherwise): its size is checked before it is read. A progress bar
    shows the chunks going to the node (on a terminal, without --json)."""
    from pollen_controller.node import files_client

    files_client.check_shareable(path)   # a device or a huge file: refused before the port opens
    link = _link(port)
    try:
        info = files_client.share_file(link, path, name, media_type,
                                       progress=progress_bar("sending to the node", not as_json))
    finally:
        link.close()
    if as_json:
        click.echo(json.dumps(info))
    else:
        click.echo(f"shared {safe_text(info['name'])} ({info['size_bytes']} bytes, "
                   f"{info['chunks']} chunks)")
        click.echo(f"content id: {info['cid']}")


@click.command()
@click.option("--port", required=True, help=_PORT_HELP)
@click.option("--search", default=None, help="Only files whose name contains TEXT (any case).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def catalog(port, search, as_json):
    """List the files the attached node holds or has heard of, nearest first."""
    from pollen_controller.node import files_client

    link = _link(port)
    try:
        rows = files_client.catalog(link, search)
    finally:
        link.close()
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no files known" + (f" matching {search!r}" if search else ""))
        return
    click.echo(render_catalog(rows))


# A file only heard of comes with its size in whole KiB, rounded up (the
# catalog frame has one byte for it: docs/protocol.md, docs/console.md), and
# 255 KiB means that much or more; the node reports it as KiB x 1024
_HEARD_MAX_KIB = 255


def size_text(row) -> str:
    """A catalog row's size: exact for a file on the node (held), else the
    bound the catalog frame gives: "≤1K" for 1..1024 bytes, "≥255K"."""
    size = row.get("size_bytes") or 0
    if row.get("size_exact", row.get("held")):
        return f"{size}" if size < 10240 else f"{size // 1024}K"
    kib = -(-size // 1024)
    return f"\u2265{kib}K" if kib >= _HEARD_MAX_KIB else f"\u2264{kib}K"


def render_catalog(rows) -> str:
    """The catalog as a table; names from the air shown safely (untrusted.py)."""
    head = f"{'content id':26}  {'name':32} {'size':>8} {'hops':>4} {'holders':>7} {'seen':>6}  held"
    lines = [head]
    for r in rows:
        hops = "-" if r.get("hops") is None else str(r["hops"])
        held = r.get("held") or ""
        if held == "partial":
            held = f"partial {r.get('have')}/{r.get('chunks')}"
        lines.append(f"{safe_text(r.get('cid'), 26):26}  {safe_text(r.get('name'), 32):32} "
                     f"{size_text(r):>8} {hops:>4} {r.get('holders', 0):>7} "
                     f"{str(r.get('last_seen_s', '')) + 's':>6}  {safe_text(held, 20)}")
    return "\n".join(lines)


@click.command()
@click.argument("cid")
@click.option("--port", required=True, help=_PORT_HELP)
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None,
              help="Write the file here (default: its name made safe, in this folder: no "
                   "folders, control characters or leading dot or dash; its content id if "
                   "nothing is left).")
@click.option("--force", is_flag=True, help="Replace a local file of the same name.")
@click.option("--timeout", "timeout_s", default=3600.0, show_default=True, type=float,
              help="Seconds to wait for the mesh.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def fetch(cid, port, out_path, force, timeout_s, as_json):
    """Fetch a file by content id through the attached node (from any nodes
    that hold it), verify it and write it out. An interrupted fetch resumes.
    An existing local file is never replaced without --force."""
    from pollen_controller.errors import FilesError
    from pollen_controller.node import files_client

    cid = files_client.check_cid(cid)
    if out_path is not None and not force and out_path.exists():
        raise FilesError(f"{out_path}: a file of that name exists; not overwritten "
                         "(--force to replace it, or -o another name)")
    link = _link(port)
    try:
        note = files_client.unannounced(link, cid)
        if note:  # a long wait ahead that may end in nothing: said now, not in 10 min
            click.echo(f"pollen: {note}", err=True)
        got = files_client.fetch(link, cid, timeout_s, progress=progress_bar("fetching", not as_json))
        m, data = files_client.read_out(link, got["cid"], progress=progress_bar("reading out", not as_json))
    finally:
        link.close()
    path = out_path or Path(safe_file_name(m.name, got["cid"]))
    files_client.save(path, data, force)
    info = {"cid": got["cid"], "name": m.name, "size_bytes": len(data), "media_type": m.media_type,
            "seconds": got.get("seconds"), "verified": True, "path": str(path)}
    if as_json:
        click.echo(json.dumps(info))
    else:
        click.echo(f"fetched {safe_text(m.name)} ({len(data)} bytes, SHA-256 verified) in "
                   f"{got.get('seconds')} s -> {safe_text(path)}")
