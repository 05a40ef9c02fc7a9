"""Console events as the host uses them: a node's `telemetry` event carries
another node's status frame as hex (`data`, docs/protocol.md §11); the host
decodes it into named fields here, so a node never holds the decoder.
Used by every reader of node consoles (node/link.py, emulation/node_process.py)."""
from __future__ import annotations

import json

from pollen.status_wire import unpack_status


def decode_event(ev: dict) -> dict:
    """Expand a telemetry event's `data` into its fields, in place. A payload
    that does not decode is marked `"malformed": true` (and keeps `data`)."""
    if ev.get("event") != "telemetry" or not isinstance(ev.get("data"), str):
        return ev
    try:
        fields = unpack_status(bytes.fromhex(ev["data"]))
    except ValueError:
        fields = None
    if fields is None:
        ev["malformed"] = True
        return ev
    del ev["data"]
    for k, v in fields.items():
        ev.setdefault(k, v)  # id, hops, rssi_dbm, snr_db are the receiver's
    return ev


def _float(text: str) -> float:
    # A node's MicroPython writes floats with 17 significant digits, so its
    # round(99.9, 1) reads 99.90000000000001. Any decimal of up to 15
    # significant digits survives a double, so cutting to 15 gives back the
    # number the node meant, for every reader: tables, the gateway's MQTT
    # status, the history.
    return float(f"{float(text):.15g}")


def tidy_line(line: str) -> str:
    """A console line as a person reads it (pollen console): a JSON object
    written again with the floats the node meant (99.9, not
    99.90000000000001) and characters beyond ASCII as themselves; anything
    else as it came."""
    s = line.strip()
    if s.startswith("{"):
        try:
            ev = json.loads(s, parse_float=_float)
        except ValueError:
            return line
        if isinstance(ev, dict):
            return json.dumps(ev, ensure_ascii=False)
    return line


def parse_line(line: str) -> dict | None:
    """A console line -> its event (a telemetry event's status frame decoded
    into named fields: decode_event), or None for anything else."""
    line = line.strip()
    if not line.startswith("{"):
        return None  # boot chatter, a REPL banner: not an event
    try:
        ev = json.loads(line, parse_float=_float)
    except ValueError:
        return None
    return decode_event(ev) if isinstance(ev, dict) else None
