"""What `pollen monitor` draws (rich renderables) and render_text(), the same
screen as plain text for tests and logs. Names and texts come from the air:
they are shown as plain text (no rich markup) with control characters escaped
(untrusted.py).
"""
from __future__ import annotations

import io
import time

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from pollen_controller.monitor.mesh_view import BATTERY_POWERED_PCT, MESHTASTIC_ONLINE_S, fmt_age
from pollen_controller.untrusted import safe_text


def _f(v, fmt="{}", none="-"):
    return none if v is None else fmt.format(v)


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


# (header, min chars): the columns in order; "net" only when Meshtastic rows
# are there; the optional ones go first when the terminal is narrow, in the
# order of _OPTIONAL (a Meshtastic id starts with "!"; the alerts are listed
# below the table anyway)
_COLUMNS = (("node", 16), ("id", 9), ("net", 10), ("heard", 5), ("hops", 4), ("RSSI", 4),
            ("SNR", 5), ("batt V", 6), ("air %", 5), ("duty left", 9), ("queue", 5),
            ("held", 4), ("up", 5), ("alerts", 12))
_OPTIONAL = ("up", "held", "net", "alerts")


def _columns(width: int, net: bool = False) -> list[str]:
    kept = [(c, w) for c, w in _COLUMNS if net or c != "net"]
    cols = [c for c, _ in kept]
    need = sum(w + 2 for _, w in kept)
    widths = dict(kept)
    for c in _OPTIONAL:
        if c not in widths:
            continue
        if need <= width:
            break
        cols.remove(c)
        need -= widths[c] + 2
    return cols


def _battery(r) -> str:
    if r.get("battery_pct") == BATTERY_POWERED_PCT:
        return "pwr"   # a Meshtastic node on external power (or charging)
    return "-" if r["battery_mv"] is None else f"{r['battery_mv'] / 1000:.2f}"


def nodes_table(rows: list[dict], title: str | None = None, width: int = 120) -> Table:
    cols = _columns(width, any(r.get("net") == "meshtastic" for r in rows))
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
              title_justify="left", padding=(0, 1), collapse_padding=True)
    for c in cols:
        t.add_column(c, no_wrap=True, max_width=16 if c == "node" else None,
                     justify="left" if c in ("node", "id", "alerts") else "right")
    for r in rows:
        alerts = r.get("alerts") or []
        cells = {
            "node": Text(safe_text(r["name"], 16) or "?"),
            "id": r["id"],
            "net": r.get("net") or "pollen",
            "heard": fmt_age(r["last_heard_s"]),
            "hops": _f(r["hops"]),
            "RSSI": _f(r["rssi_dbm"], "{:.0f}"),
            "SNR": _f(r["snr_db"], "{:.1f}"),
            "batt V": Text(_battery(r), style="red" if "battery" in alerts else ""),
            "air %": _f(r["airtime_pct"], "{:.1f}"),
            "duty left": Text(_f(r["duty_headroom_pct"], "{:.1f}"),
                              style="red" if "duty" in alerts else ""),
            "queue": _f(r["queue"]),
            "held": _f(r["held"]),
            # uptime as of its last report, carried on to now
            "up": fmt_age(None if r["uptime_s"] is None
                          else r["uptime_s"] + (r["report_age_s"] or 0)),
            "alerts": Text(" ".join(alerts), style="red"),
        }
        style = "red" if "silent" in alerts else ("bold" if r["hops"] == 0 else None)
        if r.get("net") == "meshtastic" and (r["last_heard_s"] is None
                                             or r["last_heard_s"] > MESHTASTIC_ONLINE_S):
            style = "dim"   # not online, as Meshtastic counts it
        t.add_row(*(cells[c] for c in cols), style=style)
    return t


def alerts_table(alerts: list[dict]) -> Table | Text:
    if not alerts:
        return Text("alerts: none", style="green")
    t = Table(title="alerts", box=None, show_header=False, title_justify="left", pad_edge=False)
    t.add_column("kind", style="red", no_wrap=True)
    t.add_column("text")
    for a in alerts:
        t.add_row(a["kind"], Text(safe_text(a["text"], 200)))
    return t


def messages_table(view, messages: list[dict]) -> Table | Text:
    if not messages:
        return Text("recent messages: none yet", style="dim")
    t = Table(title="recent messages (newest first)", box=box.SIMPLE_HEAD, pad_edge=False,
              show_edge=False, title_justify="left", padding=(0, 1), collapse_padding=True)
    t.add_column("time", no_wrap=True)
    t.add_column("from", no_wrap=True, max_width=18)
    t.add_column("to", no_wrap=True, max_width=18)
    t.add_column("relays", justify="right")
    t.add_column("text", overflow="fold")
    for m in messages:
        to = m.get("to")
        to = "all" if to in (None, "ffffffff", "all") else safe_text(view.name(to) or to, 18)
        t.add_row(_clock(m["t"]), Text(safe_text(view.name(m["from"]) or m["from"], 18)), Text(to),
                  _f(m.get("hops")), Text(safe_text(m.get("text"), 240)))
    return t


def screen(view, now: float, header: str = "pollen monitor", notes=(), messages: int = 8,
           width: int = 120):
    rows = view.rows(now)
    alerts = view.alerts(now)
    head = Text(safe_text(header, 200), style="bold")
    head.append(f"  {len(rows)} nodes, {len(alerts)} alerts, {_clock(now)}", style="")
    parts = [head, *[Text(safe_text(n, 300), style="yellow") for n in notes if n],
             nodes_table(rows, width=width) if rows else Text("no nodes heard yet", style="dim"),
             alerts_table(alerts), messages_table(view, view.messages(messages))]
    return Group(*parts)


def to_text(renderable, width: int = 120) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, force_terminal=False,
            force_jupyter=False, highlight=False, emoji=False, soft_wrap=False).print(renderable)
    return out.getvalue()


def render_text(view, now: float, width: int = 120, header: str = "pollen monitor",
                notes=()) -> str:
    """The monitor's screen as plain text, no colour codes."""
    return to_text(screen(view, now, header, notes, width=width), width)
