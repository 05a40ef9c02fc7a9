"""`pollen monitor`, `nodes`, `history` and `topology` as a user runs them:
on a history built from synthetic events, on a fake node behind a real
pseudo-terminal, on a real Mosquitto broker (the `mosquitto` fixture), and
end to end on the emulated mesh of real MicroPython nodes."""
import json
import os
import select
import struct
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner

from pollen_controller.cli.main import main
from pollen_controller.monitor.history import History
from pollen_controller.monitor.mesh_view import MeshView
from pollen_controller.monitor.sources import MqttSource, mqtt_event

from test_mesh_view import nb, post, status, telemetry


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def build_history(path, now):
    view = MeshView()
    events = [(status(neighbours=[nb("00000002", "mill", -97, 5.25, 2),
                                  nb("0000000c", "farm", -112, -4.0, 30)]), now - 600),
              (telemetry(battery_mv=3300, neighbours=[{"id": "00000002", "rssi_dbm": -90,
                                                      "snr_db": 7.5}]), now - 300),
              (post(text="market on friday"), now - 200),
              (telemetry(battery_mv=3290), now - 100),
              (status(neighbours=[nb("00000002", "mill", -96, 6.0, 5)]), now - 60)]
    with History(path) as h:
        for ev, t in events:
            u = view.apply(ev, t)
            h.record(ev, t, u, view.states(u.touched))
    return view


# ---- nodes, history, topology ---------------------------------------------------------

def test_nodes_lists_what_the_history_knows(tmp_path):
    db = tmp_path / "h.db"
    build_history(db, time.time())
    r = run("nodes", "--db", db, "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [x["id"] for x in rows] == ["00000001", "00000002", "0000000c"]
    hall, mill, farm = rows
    assert hall["hops"] == 0 and 55 <= hall["last_heard_s"] <= 65
    assert (mill["hops"], mill["rssi_dbm"], mill["snr_db"]) == (1, -96, 6.0)
    assert (farm["name"], farm["hops"], farm["battery_mv"], farm["alerts"]) == \
        ("farm", 2, 3290, ["battery"])
    for key in ("id", "name", "last_heard_s", "hops", "rssi_dbm", "snr_db", "airtime_pct", "queue"):
        assert all(key in x for x in rows)
    r = run("nodes", "--db", db)
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["node", "id", "heard", "hops"]
    assert lines[2].split()[:4] == ["hall", "00000001", "60s", "0"]
    assert lines[4].split()[:7] == ["farm", "0000000c", "1m", "2", "-101", "2.0", "3.29"]


def test_history_samples_and_messages(tmp_path):
    db = tmp_path / "h.db"
    build_history(db, time.time())
    r = run("history", "--db", db, "--node", "farm", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [(x["source"], x["battery_mv"]) for x in rows] == [
        ("neighbour", None), ("telemetry", 3300), ("message", None), ("telemetry", 3290)]
    assert all(x["node"] == "0000000c" and x["time"] for x in rows)
    r = run("history", "--db", db, "--node", "c", "--since", "4m", "--json")
    assert [x["battery_mv"] for x in json.loads(r.stdout)] == [None, 3290]
    r = run("history", "--db", db, "--node", "mill")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["time", "node", "id", "source", "via", "hops", "RSSI", "SNR", "batt",
                                "V", "air", "%", "duty", "left", "queue", "held", "up", "s"]
    assert [line.split()[2:9] for line in lines[2:]] == [
        ["mill", "00000002", "neighbour", "00000001", "1", "-97", "5.2"],
        ["mill", "00000002", "neighbour", "00000001", "1", "-96", "6.0"]]
    r = run("history", "--db", db, "--messages")
    assert r.exit_code == 0
    assert r.stdout.splitlines()[2].split()[2:] == ["farm", "all", "post", "1", "-99", "3.0",
                                                    "market", "on", "friday"]
    r = run("history", "--db", db, "--limit", "2", "--json")
    assert len(json.loads(r.stdout)) == 2 and "showing the newest 2 rows" in r.stderr
    r = run("history", "--db", db, "--since", "2000-01-01T00:00", "--node", "hall", "--json")
    assert [x["source"] for x in json.loads(r.stdout)] == ["status", "status"]


def test_history_options_say_what_is_wrong(tmp_path):
    db = tmp_path / "h.db"
    build_history(db, time.time())
    r = run("history", "--db", db, "--since", "yesterday")
    assert r.exit_code == 2
    assert "Invalid value for --since: expected a duration like 30m, 1h, 2d" in r.stderr
    r = run("history", "--db", db, "--node", "nobody")
    assert r.exit_code == 2
    assert "Invalid value for --node: no node named or numbered 'nobody'" in r.stderr
    assert "known: farm (0000000c), hall (00000001), mill (00000002)" in r.stderr
    r = run("history", "--db", db, "--since", "1d", "--node", "mill", "--limit", "0")
    assert r.exit_code == 2 and "--limit" in r.stderr


def test_topology_draws_the_links(tmp_path):
    db = tmp_path / "h.db"
    build_history(db, time.time())
    png = tmp_path / "mesh.png"
    r = run("topology", "--png", png, "--db", db)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"wrote {png}: 3 nodes, 3 links heard since ")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000
    r = run("topology", "--png", tmp_path / "x.png", "--db", db, "--since", "1s")
    assert r.exit_code == 1 and "no links heard since" in r.stderr and "--since" in r.stderr
    assert not (tmp_path / "x.png").exists()


def test_names_from_the_air_are_plain_text_everywhere(tmp_path):
    # matplotlib reads $...$ as mathtext (a$\\foo$ raised ValueError), rich reads [..] as markup
    db = tmp_path / "h.db"
    names = {"00000001": "a$\\foo$", "00000002": "[bold]x[/]", "0000000c": "$\\frac{1}{"}
    events = [(status(name=names["00000001"],
                      neighbours=[nb("00000002", names["00000002"], -97, 5.25, 2)]), time.time()),
              (telemetry(name=names["0000000c"]), time.time())]
    with History(db) as h:
        view = MeshView()
        for ev, t in events:
            u = view.apply(ev, t)
            h.record(ev, t, u, view.states(u.touched))
    png = tmp_path / "mesh.png"
    r = run("topology", "--png", png, "--db", db)
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = run("nodes", "--db", db)
    assert r.exit_code == 0, r.output
    shown = {line.split()[1]: line.split()[0] for line in r.stdout.splitlines()[2:] if line.strip()}
    assert shown == {"00000001": "a$\\foo$", "00000002": "[bold]x[/]", "0000000c": "$\\frac{1}{"}
    r = run("history", "--db", db, "--node", "00000002")
    assert r.exit_code == 0 and "[bold]x[/]" in r.stdout


def test_commands_on_a_missing_or_foreign_history(tmp_path):
    r = run("nodes", "--db", tmp_path / "none.db")
    assert r.exit_code == 1
    assert r.stderr == f"pollen: {tmp_path / 'none.db'}: no history here yet (`pollen monitor` " \
                       "records it; --db chooses another file)\n"
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    for args in (["nodes"], ["history"], ["topology", "--png", tmp_path / "t.png"],
                 ["monitor", "--port", "/dev/null", "--once"]):
        r = run(*args, "--db", junk)
        assert r.exit_code == 1, args
        assert f"pollen: {junk}: it is not an SQLite database. It was left as it is: move it aside" \
            in r.stderr
    assert junk.read_bytes() == b"not a database at all" * 100


def test_monitor_options_say_what_is_wrong(tmp_path):
    r = run("monitor")
    assert r.exit_code == 2 and "give one of --port PORT, --mqtt URL or --demo" in r.stderr
    r = run("monitor", "--demo", "--port", "/dev/null")
    assert r.exit_code == 2 and "give one of" in r.stderr
    r = run("monitor", "--demo", "--json")
    assert r.exit_code == 2 and "Invalid value for --json: only with --once" in r.stderr
    r = run("monitor", "--mqtt", "http://x")
    assert r.exit_code == 2
    assert "Invalid value for --mqtt: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]" in r.stderr
    r = run("monitor", "--demo", "--silent-min", "0")
    assert r.exit_code == 2 and "--silent-min" in r.stderr
    r = run("monitor", "--port", tmp_path / "no-such-port", "--db", tmp_path / "h.db", "--once")
    assert r.exit_code == 1 and "cannot open the port" in r.stderr


def test_once_says_when_nothing_could_be_heard(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()   # nothing listens there
    r = run("monitor", "--mqtt", f"mqtt://127.0.0.1:{port}", "--once", "--json", "--wait", "1.5",
            "--db", tmp_path / "h.db")
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.startswith(f"Error: --mqtt 127.0.0.1:{port}: ")
    assert r.stderr.endswith("(within --wait 1.5 s); nothing printed\n")
    master, slave = os.openpty()    # a port on which no node answers
    try:
        r = run("monitor", "--port", os.ttyname(slave), "--once", "--wait", "1",
                "--db", tmp_path / "h.db")
    finally:
        os.close(master)
        os.close(slave)
    assert r.exit_code == 1
    assert "the node did not answer a status request (within --wait 1 s)" in r.stderr


def test_every_command_has_help():
    for cmd in ("monitor", "nodes", "history", "topology"):
        r = run(cmd, "--help")
        assert r.exit_code == 0 and "--db" in r.stdout and len(r.stdout) > 400


# ---- a fake node behind a real pseudo-terminal ------------------------------------------

def status_payload(name, uptime_s, battery_mv, airtime_pm, headroom_pm, queue, held, interval_s,
                   neighbours):
    """A STATUS frame payload as telemetry.py packs it (docs/protocol.md)."""
    b = name.encode()
    p = struct.pack(">BB", 1, len(b)) + b
    p += struct.pack(">IHIHHBBHH6IB", uptime_s, battery_mv, 0xFFFFFFFF, airtime_pm, headroom_pm,
                     queue, held, 3, interval_s, 1, 2, 3, 4, 5, 6, len(neighbours))
    for nid, rssi, snr in neighbours:
        p += struct.pack(">Ibb", nid, rssi, int(snr * 4))
    return p


class PtyNode:
    """The far end of a pseudo-terminal: answers `status`, and after the
    first one tells of a telemetry frame (hex, as the node prints it) and a post."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        self.port = os.ttyname(self.slave)
        self.commands = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def say(self, ev):
        os.write(self.master, (json.dumps(ev) + "\n").encode())

    def _run(self):
        buf = b""
        while not self.stop.is_set():
            if not select.select([self.master], [], [], 0.1)[0]:
                continue
            try:
                buf += os.read(self.master, 4096)
            except OSError:
                return
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                cmd = json.loads(line)
                self.commands.append(cmd)
                if cmd.get("cmd") == "status":
                    self.say(status(neighbours=[nb("00000002", "mill", -97, 5.25, 1)],
                                    ref=cmd.get("ref")))
                    if len(self.commands) == 1:
                        data = status_payload("farm", 777, 3950, 8, 950, 1, 2, 300,
                                              [(2, -90, 7.5)])
                        self.say({"event": "telemetry", "id": "0000000c", "hops": 2,
                                  "rssi_dbm": -101, "snr_db": 2.0, "data": data.hex()})
                        self.say(post(text="over the serial port"))

    def close(self):
        self.stop.set()
        self.thread.join(2)
        os.close(self.master)
        os.close(self.slave)


def test_monitor_once_json_from_a_node_on_a_serial_port(tmp_path):
    node = PtyNode()
    try:
        t = time.monotonic()
        r = run("monitor", "--port", node.port, "--db", tmp_path / "h.db", "--once", "--json",
                "--wait", "20")
        took = time.monotonic() - t
    finally:
        node.close()
    assert r.exit_code == 0, r.output
    assert took < 10   # it ends 2 s after the status came, not at --wait
    assert node.commands[0] == {"cmd": "status", "ref": "monitor"}
    rows = {x["id"]: x for x in json.loads(r.stdout)}
    assert list(rows) == ["00000001", "00000002", "0000000c"]
    farm = rows["0000000c"]
    assert (farm["name"], farm["hops"], farm["uptime_s"], farm["battery_mv"], farm["airtime_pct"],
            farm["duty_headroom_pct"], farm["queue"], farm["held"], farm["interval_s"]) == \
        ("farm", 2, 777, 3950, 0.8, 95.0, 1, 2, 300)
    assert farm["heard_by"] == "message" and farm["rssi_dbm"] == -99   # the post came after it
    # everything went into the history, and the next run starts from it
    r = run("history", "--db", tmp_path / "h.db", "--messages", "--json")
    assert [m["text"] for m in json.loads(r.stdout)] == ["over the serial port"]
    r = run("topology", "--db", tmp_path / "h.db", "--png", tmp_path / "t.png")
    assert r.exit_code == 0 and ": 3 nodes, 2 links" in r.stdout


def test_a_serial_port_that_goes_away_is_tried_again_and_the_view_stays():
    from pollen_controller.monitor.sources import SerialSource

    node = PtyNode()
    src = SerialSource(node.port)
    view = MeshView()
    try:
        end = time.monotonic() + 5
        while "0000000c" not in view.nodes and time.monotonic() < end:
            got = src.get(0.2)
            if got:
                view.apply(*got)
        assert "0000000c" in view.nodes
        node.close()                                   # unplugged
        end = time.monotonic() + 5
        while not src.notes() and time.monotonic() < end:
            src.get(0.2)  # (what the node said before it went may still come)
        assert src.notes() and src.notes()[0].startswith(f"{node.port}: ")
        assert src.notes()[0].endswith("; trying again every 2 s")
        assert "0000000c" in view.nodes                # what was known stays
    finally:
        src.close()


# ---- MQTT -------------------------------------------------------------------------------------

def test_mqtt_topics_map_back_to_console_events():
    now = 1e9
    ev, t = mqtt_event("pollen/v/00000001/status", json.dumps(
        {"id": "00000001", "neighbours": [], "gateway": "00000001", "t": now - 5}).encode(), "v", now)
    assert ev["event"] == "status" and t == now - 5
    ev, t = mqtt_event("pollen/v/0000000c/telemetry", json.dumps(
        {"hops": 2, "t": now + 3600, "gateway": "00000001"}).encode(), "v", now)
    assert (ev["event"], ev["id"], t) == ("telemetry", "0000000c", now)   # a clock in the future
    ev, _ = mqtt_event("pollen/v/0000000c/message", json.dumps(
        {"kind": "post", "id": 3, "text": "x", "uid": "0000000c-3"}).encode(), "v", now)
    assert (ev["event"], ev["from"]) == ("received", "0000000c")
    data = status_payload("n", 1, 0, 0, 1000, 0, 0, 300, [])
    ev, _ = mqtt_event("pollen/v/0000000c/telemetry",
                       json.dumps({"hops": 1, "data": data.hex()}).encode(), "v", now)
    assert ev["name"] == "n" and ev["battery_mv"] is None and "data" not in ev
    assert mqtt_event("pollen/v/send", b"{}", "v", now) is None
    assert mqtt_event("pollen/v/send/outcome", b"{}", "v", now) is None
    assert mqtt_event("pollen/other/0000000c/status", b"{}", "v", now) is None
    with pytest.raises(ValueError, match="payload over 65536 bytes"):   # not parsed at all
        mqtt_event("pollen/v/0000000c/status", b"[" * 100000, "v", now)
    for bad in (b"not json", b"[1, 2]", b"\xff\xfe"):
        with pytest.raises(ValueError, match="pollen/v/0000000c/status: payload is not"):
            mqtt_event("pollen/v/0000000c/status", bad, "v", now)
    # json.loads takes NaN and Infinity; a time must be one (1970..2106)
    for t in (b"NaN", b"Infinity", b"-Infinity", b"-1", b"1e300", b'"now"', b"true", b"[]"):
        with pytest.raises(ValueError, match="pollen/v/0000000c/telemetry: t is not a time"):
            mqtt_event("pollen/v/0000000c/telemetry", b'{"hops": 1, "t": ' + t + b"}", "v", now)
    for body in (b'{"hops": 1}', b'{"hops": 1, "t": null}'):
        assert mqtt_event("pollen/v/0000000c/telemetry", body, "v", now)[1] == now


class Publisher:
    """Publishes what gateways would, over and over (QoS 1), until closed."""

    def __init__(self, broker, network, messages):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()
        self.stop = threading.Event()
        self.messages = messages
        self.network = network
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            for topic, body in self.messages:
                raw = body if isinstance(body, bytes) else json.dumps(body)   # bytes: as they are
                self.c.publish(f"pollen/{self.network}/{topic}", raw, qos=1)
            self.stop.wait(0.3)

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.c.loop_stop()
        self.c.disconnect()


# emoji, a combining mark and right-to-left text: through broker, monitor and history intact
BROKER_TEXT = "via the broker \U0001f33b cafe\u0301 \u05e9\u05dc\u05d5\u05dd"


def gateway_traffic():
    t = time.time()
    return [("00000001/status", dict(status(neighbours=[nb("00000002", "mill")]),
                                     gateway="00000001", t=t)),
            ("0000000c/telemetry", dict(telemetry(), gateway="00000001", t=t)),
            ("0000000c/message", {"kind": "post", "from": "0000000c", "to": "ffffffff", "id": 42,
                                  "text": BROKER_TEXT, "hops": 1, "rssi_dbm": -99,
                                  "snr_db": 3.0, "uid": "0000000c-42", "gateway": "00000001",
                                  "t": t, "bridged": False}),
            ("0000000c/message", b"garbage"), ("errors", {"error": "field 'text': too long"})]


def monitor_once_over_mqtt(mosquitto, tmp_path, traffic):
    # `pollen monitor --mqtt --once --json` while a publisher sends traffic
    pub = Publisher(mosquitto, "village", traffic)
    try:
        return run("monitor", "--mqtt", mosquitto.url, "--network", "village", "--db",
                   tmp_path / "h.db", "--once", "--json", "--wait", "3")
    finally:
        pub.close()


def test_monitor_once_json_from_an_mqtt_broker(mosquitto, tmp_path):
    traffic = gateway_traffic()
    traffic[3] = ("0000000c/status", "not an object")
    r = monitor_once_over_mqtt(mosquitto, tmp_path, traffic)
    assert r.exit_code == 0, r.output
    rows = {x["id"]: x for x in json.loads(r.stdout)}
    assert list(rows) == ["00000001", "00000002", "0000000c"]
    assert rows["00000001"]["hops"] == 0 and rows["00000002"]["via"] == "00000001"
    assert (rows["0000000c"]["name"], rows["0000000c"]["battery_mv"]) == ("farm", 3950)
    # the same post came many times (QoS 1, and here on purpose): kept once
    r = run("history", "--db", tmp_path / "h.db", "--messages", "--json")
    assert [m["text"] for m in json.loads(r.stdout)] == [BROKER_TEXT]
    r = run("history", "--db", tmp_path / "h.db", "--messages")
    assert BROKER_TEXT in r.stdout


def test_monitor_on_the_wrong_network_says_where_it_listens(mosquitto, tmp_path):
    pub = Publisher(mosquitto, "village", gateway_traffic())
    try:
        r = run("monitor", "--mqtt", mosquitto.url, "--network", "vilage", "--db",
                tmp_path / "h.db", "--once", "--wait", "3")
    finally:
        pub.close()
    assert r.exit_code == 0, r.output
    assert "no nodes heard yet" in r.stdout
    assert "nothing has arrived on pollen/vilage/# in 3 s" in r.stdout and "--network" in r.stdout
    # ... and which networks gateways on this broker do publish on
    assert "gateways on this broker publish on: village (--network village)" in r.stdout
    r = run("monitor", "--mqtt", mosquitto.url, "--network", "vilage", "--db",
            tmp_path / "h.db", "--once", "--json", "--wait", "2.5")
    assert json.loads(r.stdout) == [] and "nothing has arrived on pollen/vilage/#" in r.stderr


def test_bad_payloads_neither_stop_the_monitor_nor_stay_in_its_history(mosquitto, tmp_path):
    t = time.time()
    traffic = [("00000001/status", dict(status(), gateway="00000001", t=t)),
               # a NaN or -Infinity time (json.dumps writes them, json.loads takes them)
               ("0000000d/telemetry", dict(telemetry(nid="0000000d"), t=float("nan"))),
               ("0000000e/status", dict(status(nid="0000000e"), t=float("-inf"))),
               # numbers no node sends, that SQLite cannot store as integers
               ("0000000c/telemetry", dict(telemetry(queue=1e30, uptime_s=-1e30, hops=1e30),
                                           gateway="00000001", t=t)),
               ("0000000c/message", {"kind": "post", "id": 2 ** 70, "text": "x", "t": t}),
               ("0000000c/message", {"kind": "post", "id": 5, "hops": 1e30, "text": "y",
                                     "uid": "0000000c-5", "t": t})]
    r = monitor_once_over_mqtt(mosquitto, tmp_path, traffic)
    assert r.exit_code == 0, r.output
    rows = {x["id"]: x for x in json.loads(r.stdout)}
    assert list(rows) == ["00000001", "0000000c"]
    farm = rows["0000000c"]
    assert (farm["queue"], farm["uptime_s"], farm["hops"], farm["battery_mv"]) == (None, None,
                                                                                  None, 3950)
    for args in (["nodes", "--json"], ["nodes"], ["history", "--json"], ["history"],
                 ["history", "--messages"]):
        r = run(*args, "--db", tmp_path / "h.db")
        assert r.exit_code == 0, (args, r.output)
    assert [x["id"] for x in json.loads(run("nodes", "--json", "--db", tmp_path / "h.db").stdout)] \
        == ["00000001", "0000000c"]
    r = run("history", "--messages", "--json", "--db", tmp_path / "h.db")
    assert [(m["text"], m["hops"]) for m in json.loads(r.stdout)] == [("y", None)]


def test_the_monitors_mqtt_session_keeps_what_came_while_it_was_away(mosquitto):
    src = MqttSource(mosquitto.url, "village", client_id="pollen-monitor-test")
    assert src.connected.wait(5)
    src.close()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    body = dict(telemetry(), gateway="00000001", t=time.time() - 30)
    pub.publish("pollen/village/0000000c/telemetry", json.dumps(body), qos=1).wait_for_publish(5)
    pub.publish("pollen/village/0000000c/status", b"junk", qos=1).wait_for_publish(5)
    pub.loop_stop()
    pub.disconnect()
    src = MqttSource(mosquitto.url, "village", client_id="pollen-monitor-test")
    try:
        got = src.get(5)
        assert got is not None
        ev, t = got
        assert ev["event"] == "telemetry" and ev["id"] == "0000000c"
        assert t == pytest.approx(body["t"])     # when the gateway heard it, not now
        end = time.monotonic() + 2
        while src.malformed == 0 and time.monotonic() < end:
            src.get(0.1)
        assert src.malformed == 1
        assert "1 MQTT payloads ignored (not JSON objects, or no valid time)" in src.notes()
    finally:
        src.close()


# ---- end to end: the emulated mesh ------------------------------------------------------------

def test_monitor_demo_shows_the_mesh_and_measures_new_nodes(tmp_path):
    t = time.monotonic()
    r = run("monitor", "--demo", "--once", "--json", "--hold-back", "8", "--wait", "55",
            "--db", tmp_path / "h.db")
    took = time.monotonic() - t
    assert r.exit_code == 0, r.output
    rows = {x["id"]: x for x in json.loads(r.stdout)}
    assert sorted(rows) == [f"{i:08x}" for i in range(1, 7)]
    hall = rows["00000001"]
    assert hall["name"] == "hall" and hall["hops"] == 0 and hall["airtime_pct"] is not None
    assert {i for i, x in rows.items() if x["hops"] == 1} >= {"00000002", "00000003", "00000004"}
    # chapel is 2 hops from the hall; its status frame is flooded, and the copy
    # the hall hears last may have come the long way round (the short path's
    # copy lost to a collision): the monitor shows the hops of what it heard
    assert rows["00000006"]["hops"] in (2, 3) and rows["00000006"]["name"] == "chapel"
    # the two nodes switched on late were shown, and how fast was measured
    for held in ("00000004", "00000006"):
        assert 0 < rows[held]["shown_after_s"] < 45, rows[held]
        assert rows[held]["shown_by"] in ("neighbour", "telemetry", "message")
    assert took < 65
    with History(tmp_path / "h.db", readonly=True) as h:
        assert h.event_count() > 5 and len(h.node_states()) == 6
