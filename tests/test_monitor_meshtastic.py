"""`pollen monitor --meshtastic`: a Meshtastic device's node database as rows
of the monitor (controller/monitor/meshtastic_source.py, docs/monitor.md),
with the real `meshtastic` package's SerialInterface and TCPInterface on the
fake device (tests/fakes/fake_meshtastic.py), and the pure parts on the
dictionaries the package keeps."""
import json
import sqlite3
import time

import pytest
from click.testing import CliRunner

from pollen_controller.cli.main import main
from pollen_controller.monitor.history import _SCHEMA, History
from pollen_controller.monitor.mesh_view import MeshView
from pollen_controller.monitor.meshtastic_source import MeshtasticSource, node_event
from pollen_controller.monitor.render import render_text
from pollen_controller.monitor.sources import Source, Sources, pump
from tests.fakes.fake_meshtastic import FakeMeshtastic

from test_mesh_view import nb, status

BASE, ANNA, FARM = 0xA1B2C3D4, 0x11223344, 0x55667788
HOSTILE = "Anna\x1b[2J\u202e\n🌻"          # a long name from the air: escape, bidi override, newline


def run(*args):
    # a terminal wide enough for every column (narrower ones shorten ids and
    # names with an ellipsis: what the table shows then depends on $COLUMNS)
    return CliRunner(env={"COLUMNS": "200"}).invoke(main, [str(a) for a in args])


def nodes_now(now):
    """The fake device's node database: itself on USB power, Anna a direct
    neighbour with a hostile long name, the farm 2 hops further and low."""
    return [(BASE, "BASE", "Base station", {"last_heard": now, "battery_level": 101, "voltage": 4.2,
                                            "hw_model": "HELTEC_V3", "uptime_seconds": 3600,
                                            "air_util_tx": 1.5}),
            (ANNA, "ANNA", HOSTILE, {"last_heard": now - 300, "snr": 6.25, "hops_away": 0,
                                     "battery_level": 87, "voltage": 3.95, "hw_model": "TBEAM"}),
            (FARM, "🌻SF", "Sunflower farm", {"last_heard": now - 9000, "snr": -7.5, "hops_away": 2,
                                              "battery_level": 12, "voltage": 3.3})]


# ---- pure: the package's dictionaries in, events and rows out ---------------------------

def test_node_event_from_what_the_package_keeps():
    now = 1.8e9
    node = {"num": ANNA, "user": {"id": "!11223344", "longName": "Anna", "shortName": "ANNA",
                                  "hwModel": "TBEAM"},
            "lastHeard": int(now) - 60, "snr": 6.25, "hopsAway": 0,
            "deviceMetrics": {"batteryLevel": 87, "voltage": 3.95, "uptimeSeconds": 10}}
    ev = node_event(node, "!a1b2c3d4", now)
    assert ev == {"event": "meshtastic_node", "device": "!a1b2c3d4", "id": "!11223344",
                  "name": "Anna", "short_name": "ANNA", "hw_model": "TBEAM", "attached": False,
                  "heard_t": now - 60, "hops": 1, "snr_db": 6.25, "rssi_dbm": None,
                  "metrics": {"battery_pct": 87, "voltage_v": 3.95, "air_util_tx_pct": None,
                              "uptime_s": 10},
                  "report_t": now - 60}
    # a packet from it: heard now (no rx_time: the device has no clock), its hops and signal
    packet = {"from": ANNA, "rxSnr": -3.5, "rxRssi": -110, "hopStart": 3, "hopLimit": 1,
              "decoded": {"portnum": "TELEMETRY_APP"}}
    ev = node_event(node, "!a1b2c3d4", now, packet)
    assert (ev["heard_t"], ev["hops"], ev["snr_db"], ev["rssi_dbm"], ev["report_t"]) == \
        (now, 3, -3.5, -110, now)
    ev = node_event(node, "!a1b2c3d4", now, dict(packet, viaMqtt=True))
    assert (ev["snr_db"], ev["rssi_dbm"]) == (6.25, None)           # not radio figures: the database's
    packet = {"from": ANNA, "rxTime": int(now) - 2, "hopStart": 3}   # hop_limit 0: left out
    assert node_event(node, "!a1b2c3d4", now, packet)["hops"] == 4
    assert node_event(node, "!a1b2c3d4", now, dict(packet, rxTime=int(now) + 3600))["heard_t"] == now
    # the package's minimal entry for a node it has only seen a packet of
    ev = node_event({"num": FARM}, "!a1b2c3d4", now)
    assert (ev["id"], ev["name"], ev["heard_t"], ev["hops"], "metrics" in ev) == \
        ("!55667788", None, None, None, False)
    assert node_event({"num": 0xFFFFFFFF}, "!a1b2c3d4", now) is None
    assert node_event({"user": {"id": "!11223344"}}, "!a1b2c3d4", now) is None
    assert node_event({"num": BASE}, "!a1b2c3d4", now)["attached"] is True


def mt(nid, t, **kw):
    return {"event": "meshtastic_node", "device": "!a1b2c3d4", "id": nid, "heard_t": t, **kw}


def test_meshtastic_rows_beside_pollen_rows_and_their_alerts():
    now = 1.8e9
    view = MeshView(silent_after_s=900)
    view.apply(status(neighbours=[nb("00000002", "mill", -97, 5.25, 2)], counters={"rx": 5}),
               now - 3000)
    view.apply(status(counters={"rx": 5}), now - 10)                 # pollen's own: deaf, silent
    view.apply(mt("!a1b2c3d4", now, attached=True, name="Base",
                  metrics={"battery_pct": 101, "voltage_v": 0.0}), now)
    for nid, metrics in (("!11223344", {"battery_pct": 101, "voltage_v": 3.1}),   # powered
                         ("!55667788", {"battery_pct": 12, "voltage_v": 3.3}),    # low
                         ("!00000abc", {"battery_pct": 500, "voltage_v": 4.0})):  # over 100: powered
        view.apply(mt(nid, now - 86400 * 3, hops=2, name=nid[-4:], metrics=metrics), now)
    view.apply(mt("!ffffffff", now), now)                 # broadcast: not a node
    view.apply(mt("11223344", now), now)                  # a pollen id: not a Meshtastic one
    rows = view.rows(now)
    assert [(r["id"], r["net"], r["hops"]) for r in rows] == [
        ("00000001", "pollen", 0), ("00000002", "pollen", 1), ("!a1b2c3d4", "meshtastic", 0),
        ("!00000abc", "meshtastic", 2), ("!11223344", "meshtastic", 2),
        ("!55667788", "meshtastic", 2)]
    alerts = {r["id"]: r["alerts"] for r in rows}
    assert alerts["00000001"] == ["deaf"] and alerts["00000002"] == ["silent"]
    # three days unheard, no receive count, no duty cycle: only a low battery,
    # and not when powered (0 V: not measured)
    assert [alerts[i] for i in ("!a1b2c3d4", "!00000abc", "!11223344", "!55667788")] == \
        [[], [], [], ["battery"]]
    by_id = {r["id"]: r for r in rows}
    assert by_id["!a1b2c3d4"]["battery_mv"] is None and by_id["!00000abc"]["battery_pct"] == 101
    assert view.ignored == 2
    text = render_text(view, now)
    assert "!55667788  meshtastic" in text and "pwr" in text


def test_names_from_the_air_are_shown_safely():
    view = MeshView()
    view.apply(mt("!11223344", 1.8e9, name=HOSTILE, short_name="A\x07"), 1.8e9)
    text = render_text(view, 1.8e9)
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    assert "Anna\\x1b[2J\\u20…" in text      # escaped, and cut to the column's 16


# ---- the history: an old file opens; Meshtastic rows are kept ---------------------------

def test_a_version_1_history_opens_and_takes_meshtastic_rows(tmp_path):
    db = tmp_path / "old.db"
    c = sqlite3.connect(db)
    c.executescript(_SCHEMA.replace(", battery_pct INTEGER", ""))
    c.executemany("INSERT INTO meta VALUES (?, ?)", [("app", "pollen-history"),
                                                      ("schema_version", "1"), ("created_t", "0")])
    c.execute("INSERT INTO samples (t, node, source, battery_mv) VALUES (?, '0000000c', "
              "'telemetry', 3900)", (time.time() - 60,))
    c.commit()
    c.close()
    with History(db, readonly=True) as h:            # looked at: left as it is
        assert [s["battery_mv"] for s in h.samples()] == [3900]
    assert run("history", "--db", db, "--node", "c").exit_code == 0
    with History(db) as h:                           # written to: moved on to version 2
        view = MeshView()
        ev = mt("!11223344", time.time() - 5, name="Anna", short_name="ANNA",
                metrics={"battery_pct": 87, "voltage_v": 3.95})
        u = view.apply(ev, time.time())
        h.record(ev, time.time(), u, view.states(u.touched))
        assert h.resolve_node("anna") == h.resolve_node("!11223344") == ["!11223344"]
    c = sqlite3.connect(db)
    assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
    c.close()
    rows = json.loads(run("history", "--db", db, "--node", "ANNA", "--json").stdout)
    assert [(r["node"], r["source"], r["battery_pct"], r["battery_mv"]) for r in rows] == \
        [("!11223344", "meshtastic", 87, 3950)]
    r = run("history", "--db", db)
    assert r.exit_code == 0 and "batt %" in r.stdout and "!11223344  meshtastic" in r.stdout


# ---- on the real meshtastic package ------------------------------------------------------

def test_monitor_once_shows_the_devices_nodes_and_records_them(tmp_path):
    now = int(time.time())
    mesh = FakeMeshtastic(tmp_path, nodes=nodes_now(now)).serial()
    db = tmp_path / "h.db"
    r = run("monitor", "--meshtastic", mesh.path, "--once", "--json", "--db", db)
    assert r.exit_code == 0, r.output
    rows = {x["id"]: x for x in json.loads(r.stdout)}
    assert list(rows) == ["!a1b2c3d4", "!11223344", "!55667788"]
    base, anna, farm = rows.values()
    assert (base["net"], base["hops"], base["last_heard_s"] <= 2, base["battery_pct"],
            base["battery_mv"], base["uptime_s"], base["airtime_pct"], base["hw_model"]) == \
        ("meshtastic", 0, True, 101, 4200, 3600, 1.5, "HELTEC_V3")
    assert (anna["name"], anna["short_name"], anna["hops"], anna["snr_db"], anna["battery_pct"],
            anna["battery_mv"], anna["via"], anna["alerts"]) == \
        (HOSTILE, "ANNA", 1, 6.25, 87, 3950, "!a1b2c3d4", [])
    assert 299 <= anna["last_heard_s"] <= 303
    assert (farm["hops"], farm["alerts"], 8999 <= farm["last_heard_s"] <= 9003) == (3, ["battery"], True)
    # the history has them, for `nodes` (the monitor's table: marked, names escaped) and `history`
    r = run("nodes", "--db", db)
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.stdout and "\u202e" not in r.stdout
    line = next(x for x in r.stdout.splitlines() if "!11223344" in x)
    assert line.split()[:5] == ["Anna\\x1b[2J\\u20…", "!11223344", "meshtastic", "5m", "1"]
    assert [x["id"] for x in json.loads(run("nodes", "--db", db, "--json").stdout)] == list(rows)
    samples = json.loads(run("history", "--db", db, "--node", "🌻SF", "--since", "1d",
                             "--json").stdout)
    assert [(s["source"], s["battery_pct"], s["hops"]) for s in samples] == [("meshtastic", 12, 3)]
    r = run("topology", "--db", db, "--png", tmp_path / "t.png")   # pollen's mesh: none here
    assert r.exit_code == 1 and "no links heard since" in r.stderr
    assert mesh.configs == 1


def test_meshtastic_beside_a_pollen_node_over_tcp(tmp_path):
    from test_monitor import PtyNode

    mesh = FakeMeshtastic(tmp_path, nodes=nodes_now(int(time.time()))).tcp()
    node = PtyNode()
    try:
        r = run("monitor", "--port", node.port, "--meshtastic", f"127.0.0.1:{mesh.tcp_port}",
                "--once", "--json", "--db", tmp_path / "h.db", "--wait", "10")
    finally:
        node.close()
    assert r.exit_code == 0, r.output
    assert [(x["id"], x["net"]) for x in json.loads(r.stdout)] == [
        ("00000001", "pollen"), ("00000002", "pollen"), ("0000000c", "pollen"),
        ("!a1b2c3d4", "meshtastic"), ("!11223344", "meshtastic"), ("!55667788", "meshtastic")]


def test_packets_garbage_and_the_device_going_away(tmp_path):
    now = int(time.time())
    mesh = FakeMeshtastic(tmp_path, nodes=nodes_now(now)).serial()
    src = MeshtasticSource({"serial_port": mesh.path}, first_delay_s=0.1, max_delay_s=0.3,
                           device_every_s=0.2)
    view = MeshView()
    hist = History(tmp_path / "h.db")

    def until(cond, what, timeout_s=5.0):
        end = time.monotonic() + timeout_s
        while not cond():
            assert time.monotonic() < end, (what, src.notes())
            pump(src, view, hist, 0.1)

    try:
        until(lambda: "!55667788" in view.nodes, "the database read")
        # a telemetry packet from the farm: heard now, relayed once, its battery anew
        mesh.telemetry(FARM, battery_level=55, voltage=3.8, uptime_seconds=99, hop_start=3,
                       hop_limit=2, rx_snr=-2.5, rx_rssi=-118)
        until(lambda: view.nodes["!55667788"]["battery_pct"] == 55, "the telemetry packet")
        farm = {r["id"]: r for r in view.rows(time.time())}["!55667788"]
        assert (farm["hops"], farm["snr_db"], farm["rssi_dbm"], farm["battery_mv"],
                farm["uptime_s"], farm["alerts"]) == (2, -2.5, -118, 3800, 99, [])
        assert farm["last_heard_s"] <= 2
        mesh.user(ANNA, "AN", "Anna renamed")       # a node-info packet: new names
        mesh.garbage(b"\x94\xc3\x00\x05junk boot log line\n")
        until(lambda: view.nodes["!11223344"]["name"] == "Anna renamed", "the node-info packet")
        until(lambda: src.device.stats["package_errors"], "the garbage counted")
        assert any(n.startswith("the meshtastic package said ") and "last: Error while" in n
                   for n in src.notes())
        # unplugged: the rows stay, the screen says so; back: read again
        mesh.unplug()
        until(lambda: any("away for" in n for n in src.notes()), "noticing the device gone")
        assert set(view.nodes) == {"!a1b2c3d4", "!11223344", "!55667788"}
        assert "connecting again every 0.1..0.3 s" in " ".join(src.notes())
        mesh.nodes = nodes_now(now) + [(0x0BADCAFE, "NEW", "New node", {"last_heard": now})]
        mesh.plug()
        until(lambda: "!0badcafe" in view.nodes, "the database after the device came back")
        assert src.device.stats["lost"] == 1 and src.device.stats["connects"] == 2
        assert "Meshtastic device: connections lost 1, made 2" in src.notes()
    finally:
        src.close()
        hist.close()
    with History(tmp_path / "h.db", readonly=True) as h:
        farm = [s for s in h.samples(["!55667788"]) if s["battery_pct"] == 55]
        assert farm and farm[0]["hops"] == 2
        assert {s["id"] for s in h.node_states()} >= {"!a1b2c3d4", "!11223344", "!55667788",
                                                      "!0badcafe"}


@pytest.mark.parametrize("args, message", [
    (["--meshtastic", "h:0"], "Invalid value for --meshtastic: 'h:0': port '0' is not a number 1..65535"),
    (["--meshtastic", ""], "Invalid value for --meshtastic: '': no host name or address"),
    (["--meshtastic", "h", "--demo", "--port", "/dev/null"], "give one of --port PORT, --mqtt URL or --demo"),
])
def test_bad_input_names_the_option(args, message):
    r = run("monitor", *args)
    assert r.exit_code == 2 and message in r.stderr, r.stderr


def test_a_device_not_there_at_start(tmp_path):
    r = run("monitor", "--meshtastic", tmp_path / "gone", "--once", "--db", tmp_path / "h.db")
    assert r.exit_code == 1
    assert r.stderr.startswith(f"pollen: Meshtastic device {tmp_path / 'gone'}: ")


def test_where_the_device_is():
    from pollen_controller.bridge_meshtastic.device import parse_where

    assert parse_where("/dev/ttyACM0", "--meshtastic") == {"serial_port": "/dev/ttyACM0"}
    assert parse_where("COM3", "--meshtastic") == {"serial_port": "COM3"}
    assert parse_where("mesh.local", "--meshtastic") == {"host": "mesh.local", "tcp_port": 4403}
    assert parse_where("[fe80::1]:4404", "--meshtastic") == {"host": "fe80::1", "tcp_port": 4404}


class Stub(Source):
    def __init__(self, name, items, failed=None):
        self.description, self.items, self._failed = name, list(items), failed

    def get(self, timeout_s):
        return self.items.pop(0) if self.items else None

    def done(self, view):
        return not self.items

    def failed(self):
        return self._failed


def test_merged_sources_take_turns_and_say_which_heard_nothing():
    a = Stub("serial x", [("a1", 1.0), ("a2", 2.0)], failed="serial x: the node did not answer")
    b = Stub("Meshtastic y", [("b1", 3.0)])
    both = Sources([a, b])
    assert both.description == "serial x + Meshtastic y"
    assert [both.get(0.1) for _ in range(4)] == [("a1", 1.0), ("b1", 3.0), ("a2", 2.0), None]
    assert both.done(None) and both.failed() is None
    assert both.notes() == ["serial x: the node did not answer"]
    assert Sources([a, Stub("c", [], failed="c: nothing")]).failed() == \
        "serial x: the node did not answer; c: nothing"
