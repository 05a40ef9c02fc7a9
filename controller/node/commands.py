"""One-shot commands on an attached node, in the manner of the Meshtastic
CLI (`meshtastic --info`, `--sendtext … --dest … --ack`, `--set`,
`--export-config` / `--configure`, `--reboot`): `pollen info`, `send`,
`set`, `config export|import` and `reboot` (cli/node_commands.py).

Two ways to the node, and which command takes which:
- its JSON console (node/link.py), while its app runs: status and
  neighbours, send. Nothing restarts.
- its REPL (board/transport.py, mpremote), for config.json: the node's
  console has no command that reads or writes its config, and the firmware
  reads config.json only at start. So reading or changing the config
  interrupts the app (Ctrl-C, as on any MicroPython board), does the
  file work in the raw REPL, and soft-resets the board (Ctrl-D): the node
  starts again with the config and answers its console (restart() waits for
  that). Its stored messages and files survive; its neighbour table is
  learnt again from beacons.

A config is checked on the host exactly as the node checks it at start
(pollen_io/boot.py, the firmware's own code), so a bad value is refused,
naming the field, before anything is written; it is then written
atomically (a temporary file renamed over config.json).
"""
from __future__ import annotations

import json
import os
import tempfile
import time

from pollen.ids import ConfigError
from pollen_controller.errors import InputError, LinkError, LinkTimeout
from pollen_controller.node.lines import node_json

CONFIG = "config.json"
KEY = "network_key"
# what never leaves the node unless asked for (--with-key): the network key
# and the node's X25519 identity (its secret, then its public key)
SECRETS = (KEY, "identity_key")
# fields whose values are text even when they look like numbers ("00000010")
_TEXT_FIELDS = ("node_id", "name", KEY, "identity_key", "region", "network", "board", "storage_dir")


# ---- the console: status, send --------------------------------------------

def status(link, timeout_s: float = 10.0, hint: bool = True) -> dict:
    """The node's status event (identity, counters, neighbours, …), without
    event/ref. A node that does not answer is asked whether its app runs
    (unless hint is False)."""
    try:
        st = link.ask({"cmd": "status"}, "status", timeout_s)
    except LinkTimeout as e:
        if not hint:
            raise
        raise LinkTimeout(f"{e}: is its app running? (after pollen flash and provision, "
                          "pollen reboot starts it)") from None
    return {k: v for k, v in st.items() if k not in ("event", "ref")}


def resolve_destination(to: str, st: dict) -> str:
    """--to as the node's console takes it: "all", or a node id in 8 hex
    digits. A name is looked up among the node's neighbours (the names
    their beacons carry); a name that is also hex is taken as the name."""
    to = to.strip()
    if to.lower() in ("all", "broadcast"):
        return "all"
    if to == st.get("name") or to.lower() == str(st.get("id")):
        raise InputError(f"--to: {to!r} is this node itself ({st.get('id')})")
    neighbours = st.get("neighbours") or []
    by_name = [n for n in neighbours if n.get("name") == to]
    if not by_name:
        by_name = [n for n in neighbours if (n.get("name") or "").lower() == to.lower()]
    if len(by_name) > 1:
        ids = ", ".join(n["id"] for n in by_name)
        raise InputError(f"--to: {len(by_name)} neighbours are named {to!r} ({ids}); give the id")
    if by_name:
        return by_name[0]["id"]
    if 0 < len(to) <= 8 and all(c in "0123456789abcdefABCDEF" for c in to):
        return f"{int(to, 16):08x}"
    known = ", ".join(f"{n.get('name') or '?'} ({n['id']})" for n in neighbours) or "none yet"
    later = ("; a neighbour's name (?) is known once its beacon is heard"
             if any(not n.get("name") for n in neighbours) else "")
    raise InputError(f"--to: expected 'all', a node id (up to 8 hex digits) or a neighbour's "
                     f"name; no neighbour is named {to!r} (neighbours: {known}){later}")


def send(link, to: str, text: str, wait_ack: bool = False, timeout_s: float = 60.0) -> dict:
    """Send text to "all", an id or a neighbour's name. Returns {id, to,
    state}: state "sent" (handed to the node; with wait_ack only for posts,
    which are not acknowledged), "delivered" (acknowledged end to end, with
    hops and seconds) or "failed" (with error: expired, or no
    acknowledgement within timeout_s — the node keeps trying then)."""
    if not text:
        raise InputError("TEXT: expected some text to send, got nothing")
    st = status(link)
    dest = resolve_destination(to, st)
    if wait_ack and dest == "all":
        raise InputError("--wait-ack: a post to all is not acknowledged; leave it out, or send "
                         "to one node")
    t0 = time.monotonic()
    sent = link.ask({"cmd": "send", "to": dest, "text": text}, "sent")
    out = {"id": sent["id"], "to": sent["to"], "state": "sent"}
    if not wait_ack:
        return out
    try:
        ev = link.wait(lambda e: e.get("id") == sent["id"] and e.get("event") in
                       ("delivered", "expired"), timeout_s)
    except LinkTimeout:
        return dict(out, state="failed",
                    error=f"no acknowledgement within {timeout_s:.0f} s (the node holds the "
                          "message and keeps trying until its lifetime ends)")
    if ev["event"] == "expired":
        return dict(out, state="failed", error="expired: its lifetime ended unacknowledged")
    return dict(out, state="delivered", hops=ev.get("hops"),
                seconds=round(time.monotonic() - t0, 1))


# ---- config.json through the REPL -------------------------------------------

def console_config(link, timeout_s: float = 10.0, fingerprint: dict | None = None) -> dict | None:
    """The node's config.json through its console's `config` command, the
    network key hidden by the node (docs/console.md); None from a firmware
    without that command (then read_config through the REPL). The key's
    fingerprint, when the node tells it, goes into `fingerprint` (a dict)."""
    try:
        ev = link.ask({"cmd": "config"}, "config", timeout_s)
    except LinkError as e:  # the node's own refusal, or a timeout (raised on)
        if "unknown cmd" in str(e):
            return None
        raise
    cfg = ev.get("config")
    if fingerprint is not None and isinstance(ev.get("key_fingerprint"), str):
        fingerprint["key_fingerprint"] = ev["key_fingerprint"]
    return cfg if isinstance(cfg, dict) else None


def hide_key(cfg: dict) -> dict:
    """cfg with its secrets (the network key, the node's identity secret)
    shown as "(hidden)"."""
    return {k: ("(hidden)" if k in SECRETS else v) for k, v in cfg.items()}


def read_config(board) -> dict:
    raw = board.read(CONFIG)
    if raw is None:
        raise InputError(f"{board.port}: no {CONFIG} on the node; provision it first "
                         "(pollen provision)")
    try:
        cfg = json.loads(raw)
    except ValueError:
        raise InputError(f"{board.port}: {CONFIG} on the node is not JSON; provision it "
                         "again") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{board.port}: {CONFIG} on the node is not a JSON object")
    return cfg


def check_config(cfg: dict, source: str = CONFIG) -> dict:
    """Check a whole config as the node does at start (pollen_io/boot.py):
    InputError naming the field and what was expected, else cfg."""
    from pollen_io import boot

    fd, path = tempfile.mkstemp(suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(cfg, f)
        boot.load_config(path)
    except ConfigError as e:
        raise InputError(f"{source}: {str(e).replace(path, CONFIG)}") from None
    finally:
        os.unlink(path)
    if "name" in cfg:  # as provision checks it: printable, not blank, 1..16 bytes
        from pollen_controller.board.node_config import check_name

        check_name(cfg["name"], f"{source}: config field 'name'")
    return cfg


def parse_value(key: str, text: str):
    """A VALUE of KEY=VALUE: JSON (5000, true, {"kind": "udp", "port": 47001})
    where it parses, else text; always text for ids, names and the key."""
    if key.split(".")[0] in _TEXT_FIELDS:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def apply_assignments(cfg: dict, pairs) -> tuple[dict, dict]:
    """cfg with KEY=VALUE pairs applied (KEY may be dotted: radio.port=47001;
    an empty VALUE removes the key, back to its default). Returns (new
    config, {key: value} changed)."""
    new = json.loads(json.dumps(cfg))
    changed = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"{pair!r}: expected KEY=VALUE (e.g. beacon_interval_ms=60000)")
        *parents, leaf = key.split(".")
        d = new
        for p in parents:
            if not isinstance(d.get(p), dict):
                raise InputError(f"{key}: field {p!r} is not an object in {CONFIG}")
            d = d[p]
        if text == "":
            d.pop(leaf, None)
            changed[key] = None
        else:
            d[leaf] = changed[key] = parse_value(key, text)
    return new, changed


def write_config(board, cfg: dict):
    check_config(cfg)
    board.write_atomic(CONFIG, (node_json(cfg) + "\n").encode())


def config_to_yaml(cfg: dict, with_key: bool = False) -> str:
    import yaml

    head = "# pollen node config (config.json), from pollen config export\n"
    if not with_key:
        left_out = [k for k in SECRETS if k in cfg]
        cfg = {k: v for k, v in cfg.items() if k not in SECRETS}
        if left_out:
            head += (f"# {' and '.join(left_out)} left out (--with-key includes "
                     f"{'them' if len(left_out) > 1 else 'it'}); import keeps the node's own\n")
    return head + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)


def _same_id(a, b) -> bool:
    try:
        return int(str(a), 16) == int(str(b), 16)
    except ValueError:
        return str(a) == str(b)


def config_from_yaml(text: str, source: str, current: dict, force: bool = False) -> dict:
    """A config from YAML (an export), checked field by field; without a
    network_key, identity_key (or with "(hidden)"), node_id or name it keeps
    the node's current one. A node_id other than the node's own is refused
    unless force: one node's export imported onto another would give two
    nodes one id (and with --with-key one identity)."""
    import yaml

    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(f"{source}: not valid YAML"
                         + (f" at line {mark.line + 1}" if mark else "")) from None
    if not isinstance(cfg, dict):
        raise InputError(f"{source}: expected a mapping of config fields")
    mine = current.get("node_id")
    if "node_id" in cfg and mine is not None and not force and not _same_id(cfg["node_id"], mine):
        raise InputError(f"{source}: node_id {cfg['node_id']} is another node's (this one is "
                         f"{mine}); importing it would give two nodes one id: remove node_id "
                         "(and identity_key) from the file to set this node up alike, or "
                         "--force to make this node that one")
    for k in SECRETS:
        if cfg.get(k, "(hidden)") == "(hidden)":
            cfg.pop(k, None)
            if k in current:
                cfg[k] = current[k]
    for k in ("node_id", "name"):   # who the node is: its own unless the file says
        if k not in cfg and k in current:
            cfg[k] = current[k]
    return check_config(cfg, source)


# ---- restarting -------------------------------------------------------------

def restart(board, port: str, timeout_s: float = 20.0) -> dict:
    """Soft-reset the board (its app starts again with config.json) and wait
    until the node answers its console; returns its status."""
    from pollen_controller.node.link import SerialLink

    board.reset()
    end = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < end:
        time.sleep(0.5)
        try:
            link = SerialLink(port)
        except LinkError as e:  # a board whose USB resets with it: not back yet
            last = e
            continue
        try:
            fatal = _fatal_error(link)
            if fatal:
                raise InputError(f"{port}: the node did not start: {fatal}")
            return status(link, min(3.0, max(0.5, end - time.monotonic())), hint=False)
        except LinkError as e:
            last = e
        finally:
            link.close()
    raise LinkError(f"{port}: the node did not answer within {timeout_s:.0f} s of its "
                    f"restart ({last}); see its output with pollen console")


def _fatal_error(link) -> str | None:
    # a config error at start is one `error` event with "fatal": true
    try:
        ev = link.wait(lambda e: e.get("event") in ("started", "error"), 1.5)
    except LinkError:
        return None
    return ev.get("error") if ev.get("fatal") else None


def reboot(port: str) -> dict:
    """Restart the node's app (interrupt it, soft-reset the board); its status after."""
    from pollen_controller.board.transport import Board

    return restart(Board(port), port)


def edit_config(port: str, change=None) -> dict:
    """Read config.json through the REPL; with change(cfg) -> new config
    (checked, written atomically when it differs). The node is restarted in
    any case (its app was interrupted to reach the REPL), also when the
    change is refused. Returns {before, after, status}."""
    from pollen_controller.board.transport import Board

    board = Board(port)
    try:
        before = read_config(board)
        after = change(before) if change else before
        if after != before:
            write_config(board, after)
    except BaseException:
        try:
            restart(board, port)
        except Exception:  # the first error is the one to tell
            pass
        raise
    return {"before": before, "after": after, "status": restart(board, port)}
