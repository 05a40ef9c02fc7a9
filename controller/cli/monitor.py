"""CLI commands `pollen monitor`, `pollen nodes`, `pollen history` and
`pollen topology` (docs/monitor.md). Registered on the `pollen` group by
cli/main.py. Heavy imports (rich, sqlite, paho, matplotlib) happen inside the
commands, so `pollen --help` stays instant."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

_DB_HELP = ("History database (default: history.db in the user's data directory, "
            "~/.local/share/pollen/ on Linux).")


def register(main):
    main.add_command(monitor)
    main.add_command(nodes)
    main.add_command(history)
    main.add_command(topology)


def _db_path(db):
    from pollen_controller.monitor.history import default_path

    return Path(db) if db else default_path()


def _since(value, option="--since"):
    from pollen_controller.errors import InputError
    from pollen_controller.monitor.history import parse_since

    if value is None:
        return None
    try:
        return parse_since(value, time.time())
    except InputError as e:
        raise click.BadParameter(str(e), param_hint=option) from None


def _view(silent_min, duty_left_pct=10.0, battery_low_mv=3400):
    from pollen_controller.monitor.mesh_view import MeshView

    return MeshView(silent_after_s=silent_min * 60, duty_headroom_alert_pct=duty_left_pct,
                    battery_low_mv=battery_low_mv)


def _iso(t):
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


_SILENT_HELP = ("Alert when a node has not been heard for this many minutes (default 15; "
                "2 min with --demo). A node that announced a longer telemetry interval is "
                "given two of its intervals; one that announced 18 h or more (65535 s) is "
                "not marked silent.")


@click.command()
@click.option("--port", default=None,
              help="Serial port of the attached node; held exclusively: another command "
                   "on it is told who has it.")
@click.option("--mqtt", "mqtt_url", default=None,
              help="Watch what gateways publish on this broker: mqtt://HOST[:PORT] (mqtts:// for TLS).")
@click.option("--demo", is_flag=True,
              help="Watch an emulated mesh of six real MicroPython nodes (no hardware); two of "
                   "them are switched on after --hold-back seconds, and how long the monitor "
                   "takes to show them is measured.")
@click.option("--meshtastic", "meshtastic", default=None, metavar="PORT|HOST[:PORT]",
              help="Also show the nodes a Meshtastic device knows (its node database: names, "
                   "last heard, SNR, battery, hops), as rows marked meshtastic, recorded in the "
                   "same history: a serial port (a path, e.g. /dev/ttyACM0, or COMn) or a host "
                   "with the TCP API (port 4403 unless given). With --port, --mqtt or --demo, "
                   "or alone.")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=_DB_HELP + " With --demo: a temporary file unless given.")
@click.option("--network", default="mesh", show_default=True,
              help="With --mqtt: the network name in the topics (pollen/NETWORK/#).")
@click.option("--username", default=None, help="With --mqtt: broker user name.")
@click.option("--password", default=None, envvar="POLLEN_MQTT_PASSWORD",
              help="With --mqtt: broker password (also read from POLLEN_MQTT_PASSWORD).")
@click.option("--silent-min", type=click.FloatRange(min=0, min_open=True), default=None,
              help=_SILENT_HELP)
@click.option("--duty-left", "duty_left_pct", type=click.FloatRange(0, 100), default=10.0,
              show_default=True,
              help="Alert when a node has less than this % of its hourly duty-cycle budget left.")
@click.option("--battery-low", "battery_low_mv", type=click.IntRange(0, 20000), default=3400,
              show_default=True, help="Alert when a node's battery is below this many mV.")
@click.option("--once", is_flag=True,
              help="Listen for a while (--wait), print one snapshot of the nodes table and exit.")
@click.option("--json", "as_json", is_flag=True,
              help="With --once: print the nodes table as a JSON list of objects.")
@click.option("--wait", "wait_s", type=click.FloatRange(min=0), default=None,
              help="With --once: seconds to listen before printing (default 5; with --port it "
                   "ends 2 s after the node's status came; with --demo up to 120, ending when "
                   "both held-back nodes are shown; --meshtastic ends once the device's node "
                   "database is read).")
@click.option("--hold-back", "hold_back_s", type=click.FloatRange(min=0), default=25.0,
              show_default=True, help="With --demo: seconds before the two held-back nodes are switched on.")
@click.option("--keep-days", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Delete history older than this many days when the monitor starts (0: keep all).")
def monitor(port, mqtt_url, demo, meshtastic, db, network, username, password, silent_min,
            duty_left_pct, battery_low_mv, once, as_json, wait_s, hold_back_s, keep_days):
    """Watch the mesh live: a table of its nodes (last heard, hops, RSSI/SNR,
    battery, airtime, duty-cycle headroom, queue), alerts and recent messages,
    redrawn every second; every event is recorded in the history database.

    The events come from the node on --port (its status is asked for every
    5 s), from gateways on an MQTT broker (--mqtt), or from an emulated mesh
    (--demo); and, beside one of those or alone, from a Meshtastic device's
    node database (--meshtastic). Nodes seen in earlier runs appear from the
    history with their real last-heard time. Ctrl-C quits. See docs/monitor.md."""
    given = sum(x is not None for x in (port, mqtt_url, demo or None))
    if given > 1 or (given == 0 and meshtastic is None):
        raise click.UsageError("give one of --port PORT, --mqtt URL or --demo "
                               "(and --meshtastic PORT|HOST beside it, or alone)")
    where = None
    if meshtastic is not None:
        from pollen_controller.bridge_meshtastic.device import parse_where
        from pollen_controller.errors import InputError

        try:
            where = parse_where(meshtastic, "--meshtastic")
        except InputError as e:
            raise click.BadParameter(str(e).removeprefix("--meshtastic "),
                                     param_hint="--meshtastic") from None
    if as_json and not once:
        raise click.BadParameter("only with --once (the live view is for a terminal)",
                                 param_hint="--json")
    if mqtt_url:
        from pollen_controller.gateway.mqtt import MqttUrlError, parse_mqtt_url

        try:
            parse_mqtt_url(mqtt_url)
        except MqttUrlError as e:
            raise click.BadParameter(str(e).removeprefix("--mqtt: "), param_hint="--mqtt") from None
    if silent_min is None:
        silent_min = 2.0 if demo else 15.0
    if wait_s is None:
        wait_s = 120.0 if demo else 5.0
    say = _say
    if demo:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="pollen-monitor-") as d:
            from pollen_controller.monitor.sources import DemoSource

            _run(_beside(lambda: DemoSource(Path(d) / "mesh", hold_back_s=hold_back_s, say=say),
                         where),
                 db or Path(d) / "history.db", db is None, silent_min, duty_left_pct,
                 battery_low_mv, once, as_json, wait_s, keep_days)
        return
    if not port and not mqtt_url:
        make_source = None
    elif port:
        from pollen_controller.monitor.sources import SerialSource

        make_source = lambda: SerialSource(port)  # noqa: E731
    else:
        import hashlib

        from pollen_controller.monitor.sources import MqttSource

        path = _db_path(db).resolve()
        # a persistent session per history file: what was published while the
        # monitor was away is kept by the broker and recorded when it is back
        client_id = None if once else \
            f"pollen-monitor-{network}-{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
        make_source = lambda: MqttSource(mqtt_url, network, username, password, client_id)  # noqa: E731
    _run(_beside(make_source, where), _db_path(db), False, silent_min, duty_left_pct,
         battery_low_mv, once, as_json, wait_s, keep_days)


def _beside(make_source, where):
    """make_source, with the Meshtastic device at `where` beside it (or
    alone without make_source): a function that makes the monitor's source."""
    if where is None:
        return make_source

    def make():
        from pollen_controller.monitor.meshtastic_source import MeshtasticSource
        from pollen_controller.monitor.sources import Sources

        first = make_source() if make_source else None
        try:
            mesh = MeshtasticSource(where)
        except BaseException:
            if first is not None:
                first.close()
            raise
        return Sources([first, mesh]) if first is not None else mesh

    return make


def _say(s):
    # a line for stderr; it may quote what a node or the air said: shown safely
    from pollen_controller.untrusted import safe_text

    click.echo(safe_text(s), err=True)


def _run(make_source, db, temporary, silent_min, duty_left_pct, battery_low_mv, once, as_json,
         wait_s, keep_days):
    from pollen_controller.monitor.history import History
    from pollen_controller.monitor.mesh_view import GONE_AFTER_S
    from pollen_controller.monitor.render import render_text
    from pollen_controller.monitor.sources import pump

    hist = History(db, keep_days=keep_days or None)   # a bad file fails before anything starts
    try:
        source = make_source()
        try:
            view = _view(silent_min, duty_left_pct, battery_low_mv)
            now = time.time()
            view.load(hist.node_states(), hist.links(since=now - GONE_AFTER_S),
                      hist.recent_messages(50))
            where = "a temporary file" if temporary else str(db)
            if once:
                pump(source, view, hist, wait_s, stop=lambda: source.done(view))
                problem = source.failed()
                if problem:
                    raise click.ClickException(f"{problem} (within --wait {wait_s:g} s); "
                                               "nothing printed")
                now = time.time()
                if as_json:
                    rows = view.rows(now)
                    extras = source.row_extras()
                    for r in rows:
                        r.update(extras.get(r["id"], {}))
                    click.echo(json.dumps(rows))
                    for note in source.notes():   # what the screen would say, on stderr
                        _say(f"pollen: {note}")
                else:
                    click.echo(render_text(view, now, _width(), _header(source, where),
                                           source.notes()), nl=False)
                return
            _live(source, view, hist, where)
        finally:
            source.close()
    finally:
        hist.close()


def _header(source, where):
    return f"pollen monitor: {source.description}; history in {where}"


def _live(source, view, hist, where):
    from rich.console import Console
    from rich.live import Live

    from pollen_controller.monitor.render import screen
    from pollen_controller.monitor.sources import pump

    console = Console()
    header = _header(source, where)

    def draw():
        now = time.time()
        notes = source.notes() + ["Ctrl-C quits"]
        # the recent messages get the lines the table and alerts leave (3 to 8)
        used = len(view.nodes) + len(view.alerts(now)) + len(notes) + 10
        return screen(view, now, header, notes, width=console.width,
                      messages=max(3, min(8, console.height - used)))

    try:
        with Live(draw(), console=console, auto_refresh=False) as live:
            while True:
                pump(source, view, hist, 1.0)
                live.update(draw(), refresh=True)
    except KeyboardInterrupt:
        click.echo(f"monitor stopped; history in {where}", err=True)


# ---- looking back: nodes, history, topology -----------------------------------------------

@click.command()
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None, help=_DB_HELP)
@click.option("--silent-min", type=click.FloatRange(min=0, min_open=True), default=15.0,
              show_default=True, help="Mark nodes not heard for this many minutes as silent.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects, one per node.")
def nodes(db, silent_min, as_json):
    """List every node the history knows, with what was last heard of it:
    the monitor's nodes table, from the history database (no node needed)."""
    from pollen_controller.monitor.history import History
    from pollen_controller.monitor.render import alerts_table, nodes_table, to_text

    path = _db_path(db)
    with History(path, readonly=True) as h:
        view = _view(silent_min)
        view.load(h.node_states())
    now = time.time()
    rows = view.rows(now)
    if as_json:
        click.echo(json.dumps(rows))
    elif not rows:
        click.echo(f"no nodes in {path} yet")
    else:
        from rich.console import Group

        width = _width()
        alerts = view.alerts(now)
        click.echo(to_text(Group(nodes_table(rows, width=width),
                                 *([alerts_table(alerts)] if alerts else [])), width), nl=False)


def _width() -> int:
    import shutil

    return shutil.get_terminal_size((120, 24)).columns   # 120 when not a terminal


@click.command()
@click.option("--node", default=None, help="Only this node: its name or id (8 hex digits, or fewer).")
@click.option("--since", default="1h", show_default=True,
              help="From this long ago (90s, 30m, 1h, 2d, 1w) or this time (ISO, e.g. 2024-05-01T12:00; "
                   "local time unless it names a zone).")
@click.option("--messages", "show_messages", is_flag=True,
              help="List the messages heard instead of the samples.")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True,
              help="At most this many rows (the newest).")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None, help=_DB_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
def history(node, since, show_messages, limit, db, as_json):
    """What the monitor recorded, oldest first: samples of each node over
    time (from its status, its telemetry, the neighbour table of the attached
    node, and the messages it sent), or with --messages the messages heard."""
    from pollen_controller.monitor.history import History
    from pollen_controller.monitor.render import to_text
    from pollen_controller.untrusted import safe_text

    since_t = _since(since)
    path = _db_path(db)
    with History(path, readonly=True) as h:
        ids = None
        if node is not None:
            ids = h.resolve_node(node)
            if not ids:
                known = safe_text(", ".join(h.known_nodes()[:12]), 300) or "none yet"
                raise click.BadParameter(f"no node named or numbered {node!r} in {path} "
                                         f"(known: {known})", param_hint="--node")
        names = {s["id"]: s.get("name") for s in h.node_states()}
        rows = (h.messages(ids, since_t, limit) if show_messages
                else h.samples(ids, since_t, limit))
    for r in rows:
        r["time"] = _iso(r["t"])
    if len(rows) == limit:
        click.echo(f"pollen: showing the newest {limit} rows; --limit for more", err=True)
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo(f"nothing recorded since {_iso(since_t)} in {path}")
        return
    table = _messages_table(rows, names) if show_messages else _samples_table(rows, names)
    wide = any(r.get("battery_pct") is not None for r in rows)   # the samples' "batt %" column
    click.echo(to_text(table, 148 if wide and not show_messages else 140), nl=False)


def _samples_table(rows, names):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from pollen_controller.untrusted import safe_text

    def f(v, fmt="{}"):
        return "-" if v is None else fmt.format(v)

    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1),
              collapse_padding=True)
    pct = any(r.get("battery_pct") is not None for r in rows)   # Meshtastic nodes report it
    for c in ("time", "node", "id", "source", "via", "hops", "RSSI", "SNR", "batt V",
              *(["batt %"] if pct else []), "air %", "duty left", "queue", "held", "up s"):
        t.add_column(c, no_wrap=True,
                     justify="left" if c in ("time", "node", "id", "source", "via") else "right")
    for r in rows:
        t.add_row(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["t"])),
                  Text(safe_text(names.get(r["node"]) or "?", 16)), r["node"], r["source"],
                  f(r["via"]), f(r["hops"]), f(r["rssi_dbm"], "{:.0f}"), f(r["snr_db"], "{:.1f}"),
                  "-" if r["battery_mv"] is None else f"{r['battery_mv'] / 1000:.2f}",
                  *([_battery_pct(r.get("battery_pct"))] if pct else []),
                  f(r["airtime_pct"], "{:.1f}"), f(r["duty_headroom_pct"], "{:.1f}"),
                  f(r["queue"]), f(r["held"]), f(r["uptime_s"]))
    return t


def _battery_pct(v):
    from pollen_controller.monitor.mesh_view import BATTERY_POWERED_PCT

    return "-" if v is None else ("pwr" if v == BATTERY_POWERED_PCT else str(v))


def _messages_table(rows, names):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from pollen_controller.untrusted import safe_text

    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1),
              collapse_padding=True)
    for c in ("time", "from", "to", "kind", "relays", "RSSI", "SNR", "text"):
        t.add_column(c, no_wrap=c != "text", overflow="fold",
                     justify="right" if c in ("relays", "RSSI", "SNR") else "left")
    for r in rows:
        dst = "all" if r["dst"] in (None, "ffffffff") else (names.get(r["dst"]) or r["dst"])
        t.add_row(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["t"])),
                  Text(safe_text(names.get(r["src"]) or r["src"], 16)), Text(safe_text(dst, 16)),
                  r["kind"] or "?", "-" if r["hops"] is None else str(r["hops"]),
                  "-" if r["rssi_dbm"] is None else f"{r['rssi_dbm']:.0f}",
                  "-" if r["snr_db"] is None else f"{r['snr_db']:.1f}", Text(safe_text(r["text"], 240)))
    return t


@click.command()
@click.option("--png", "png", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the drawing to this PNG file.")
@click.option("--since", default="1h", show_default=True,
              help="Only links heard since then (90s, 30m, 1h, 2d, 1w, or an ISO time).")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None, help=_DB_HELP)
def topology(png, since, db):
    """Draw the mesh from the neighbour tables the monitor recorded (the
    attached node's, and those in other nodes' telemetry): nodes labelled by
    name, each link coloured and labelled by its SNR."""
    from pollen_controller.monitor.history import History
    from pollen_controller.monitor.mesh_plot import draw_mesh

    since_t = _since(since)
    path = _db_path(db)
    with History(path, readonly=True) as h:
        links = h.links(since_t)
        # pollen's mesh: a Meshtastic node's links are not known (no neighbour lists are read)
        states = {s["id"]: s for s in h.node_states() if s["net"] != "meshtastic"}
    if not links:
        raise click.ClickException(f"no links heard since {_iso(since_t)} in {path}; "
                                   "try a longer --since")
    out = draw_mesh(states, links, png, since_t)
    click.echo(f"wrote {png}: {out['nodes']} nodes, {out['links']} links heard since {_iso(since_t)}")
