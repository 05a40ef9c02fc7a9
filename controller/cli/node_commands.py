"""CLI one-shot commands on an attached node, in the manner of the Meshtastic
CLI: info, send, set, config export|import, reboot (node/commands.py does
the work; docs/node-commands.md). Registered on the `pollen` group by
cli/main.py."""
from __future__ import annotations

import json
from pathlib import Path

import click

_PORT_HELP = "Serial port of the attached node (a board, or a virtual board's port)."


def register(main):
    main.add_command(info)
    main.add_command(send)
    main.add_command(set_config)
    main.add_command(config)
    main.add_command(reboot)


def _link(port):
    from pollen_controller.node.link import SerialLink

    return SerialLink(port)


@click.command()
@click.option("--port", required=True, help=_PORT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(port, as_json):
    """Show the attached node: who it is, its config (the network key and
    the node's identity secret hidden), its status and its neighbours, all from its console, without
    disturbing it."""
    from pollen_controller.node import commands

    link = _link(port)
    try:
        st = commands.status(link)
        fp = {}
        cfg = commands.console_config(link, fingerprint=fp)
    finally:
        link.close()
    out = {"status": st}
    if cfg is not None:
        out["config"] = commands.hide_key(cfg)
    out.update(fp)
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(render_info(out))


def render_info(out: dict) -> str:
    from pollen_controller.untrusted import safe_text

    st = out["status"]
    c = st.get("counters") or {}
    # names come from config.json and from the air (neighbours' beacons)
    lines = [f"node      {safe_text(st.get('id'))}  '{safe_text(st.get('name'))}'",
             f"firmware  pollen {st.get('version')} on {st.get('runtime')}",
             f"up        {st.get('uptime_s')} s; heap {st.get('heap_bytes')} B used, "
             f"{st.get('heap_free_bytes')} B free",
             f"traffic   rx {c.get('rx', 0)}, tx {c.get('tx', 0)}, relayed {c.get('relayed', 0)},"
             f" delivered {c.get('delivered', 0)}, held {st.get('held')}, queue {st.get('queue')}",
             f"airtime   {st.get('airtime_ms')} ms; duty-cycle headroom "
             f"{st.get('duty_headroom_pct')} %"]
    if out.get("key_fingerprint"):  # compare with pollen network info's, by voice
        lines.append(f"key       fingerprint {safe_text(out['key_fingerprint'], 24)}")
    if st.get("partial"):
        lines.append("(the node was short of memory: its status came back partial)")
    neighbours = st.get("neighbours") or []
    lines.append(f"neighbours ({len(neighbours)}):" if neighbours else "neighbours: none heard yet")
    for n in neighbours:
        lines.append(f"  {safe_text(n.get('id'))}  {safe_text(n.get('name') or '?'):16} {n.get('rssi_dbm')} dBm  "
                     f"SNR {n.get('snr_db')} dB  heard {n.get('last_heard_s')} s ago")
    if "config" in out:
        lines.append("config:")
        # as JSON, text as itself (café, 🌻), what a terminal must not get escaped
        lines += [f"  {safe_text(k)}: {safe_text(json.dumps(v, ensure_ascii=False))}"
                  for k, v in out["config"].items()]
    return "\n".join(lines)


@click.command()
@click.argument("text")
@click.option("--port", required=True, help=_PORT_HELP)
@click.option("--to", "to", default="all", show_default=True,
              help="'all' (a post), a node id (up to 8 hex digits) or a neighbour's name.")
@click.option("--wait-ack", is_flag=True,
              help="Wait until the message is acknowledged end to end (not for 'all').")
@click.option("--timeout", "timeout_s", default=60.0, show_default=True, type=float,
              help="Seconds to wait for the acknowledgement.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def send(text, port, to, wait_ack, timeout_s, as_json):
    """Send TEXT from the attached node: a post to all, or a message to one
    node. Says sent, or with --wait-ack delivered (acknowledged) or failed
    (exit status 1)."""
    from pollen_controller.node import commands

    link = _link(port)
    try:
        r = commands.send(link, to, text, wait_ack, timeout_s)
    finally:
        link.close()
    if as_json:
        click.echo(json.dumps(r))
    elif r["state"] == "delivered":
        click.echo(f"delivered to {r['to']} (message {r['id']}, {r['hops']} hops, "
                   f"{r['seconds']} s)")
    elif r["state"] == "sent":
        click.echo(f"sent to {r['to']} (message {r['id']})")
    else:
        click.echo(f"failed: message {r['id']} to {r['to']}: {r['error']}")
    if r["state"] == "failed":
        raise SystemExit(1)


@click.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--port", required=True, help=_PORT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print what changed as JSON.")
def set_config(assignments, port, as_json):
    """Change fields of the node's config.json, e.g. beacon_interval_ms=60000
    name=bakery radio.port=47001 (an empty VALUE: back to the default).
    Every field is checked as the node checks it at start; the config is
    written atomically and the node restarted with it. See docs/config.md
    for the fields."""
    from pollen_controller.node import commands

    changed = {}

    def change(cfg):
        new, diff = commands.apply_assignments(cfg, assignments)
        commands.check_config(new)
        changed.update(diff)
        return new

    r = commands.edit_config(port, change)
    shown = commands.hide_key(changed)
    if as_json:
        click.echo(json.dumps({"changed": shown, "id": r["status"].get("id"),
                               "name": r["status"].get("name")}))
        return
    for line in render_changes(shown):
        click.echo(line)
    click.echo(f"{port}: config written; node {r['status'].get('id')} "
               f"{r['status'].get('name')!r} restarted with it")


def render_changes(shown: dict) -> list[str]:
    """`KEY = VALUE` lines of what set changed: values as JSON with text as
    itself (café 🌻), control and bidi characters escaped."""
    from pollen_controller.untrusted import safe_text

    return [f"{safe_text(k)} = " + ("(default)" if v is None else
                                    safe_text(json.dumps(v, ensure_ascii=False)))
            for k, v in shown.items()]


@click.group()
def config():
    """A node's config.json as YAML: export it, import it."""


@config.command("export")
@click.option("--port", required=True, help=_PORT_HELP)
@click.option("--with-key", is_flag=True,
              help="Include the network key and the node's identity secret (keep such a file "
                   "as you keep the network file).")
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write to this file (default: print it).")
def config_export(port, with_key, out_path):
    """Print (or write) the node's config as YAML, without the network key
    and the node's identity secret (identity_key) unless --with-key. Without the key it comes from the node's console (its
    config command), the node undisturbed; the key never leaves a node by its
    console, so --with-key interrupts its app, reads config.json in the REPL
    and restarts it."""
    from pollen_controller.files_atomic import write_atomic
    from pollen_controller.node import commands

    cfg = None
    if not with_key:
        link = _link(port)
        try:
            cfg = commands.console_config(link)
        finally:
            link.close()
    if cfg is None:  # the key asked for, or a firmware without the config command
        cfg = commands.edit_config(port)["before"]
    text = commands.config_to_yaml(cfg, with_key)
    if out_path is None:
        click.echo(text, nl=False)
    else:
        write_atomic(out_path, text, mode=0o600 if with_key else 0o644)
        click.echo(f"{out_path}: config of {port}" + (" (with its keys)" if with_key
                                                       else ""))


@config.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--port", required=True, help=_PORT_HELP)
@click.option("--force", is_flag=True,
              help="Take the file's node_id even when it is another node's (two nodes with "
                   "one id cannot be told apart: only to replace a node by another).")
def config_import(path, port, force):
    """Write a YAML config (from config export) to the node: every field is
    checked first, as the node checks it; without a network_key,
    identity_key, node_id or name the node's own is kept. Another node's
    node_id is refused unless --force (to set a second node up alike, remove
    node_id and name from the file). Written atomically; the node restarts
    with it."""
    from pollen_controller.bounded import read_small
    from pollen_controller.errors import InputError
    from pollen_controller.node import commands

    try:  # within a bound: /dev/zero named by mistake is not read into memory
        text = read_small(path).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    r = commands.edit_config(port, lambda cfg: commands.config_from_yaml(text, str(path), cfg,
                                                                        force))
    st = r["status"]
    same = "unchanged" if r["after"] == r["before"] else "written"
    click.echo(f"{port}: config {same}; node {st.get('id')} {st.get('name')!r} restarted")


@click.command()
@click.option("--port", required=True, help=_PORT_HELP)
def reboot(port):
    """Restart the node (interrupt its app, soft-reset the board) and wait
    until it answers again."""
    from pollen_controller.node import commands

    st = commands.reboot(port)
    click.echo(f"{port}: node {st.get('id')} {st.get('name')!r} restarted")
