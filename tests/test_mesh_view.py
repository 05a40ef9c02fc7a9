"""MeshView (controller/monitor/mesh_view.py) from synthetic console events, and the
monitor's screen rendered to text (monitor/render.py, render_text)."""
import pytest

from pollen_controller.monitor.mesh_view import MeshView, fmt_age, node_id
from pollen_controller.monitor.render import render_text

T0 = 1_700_000_000.0


def status(nid="00000001", name="hall", neighbours=(), **kw):
    ev = {"event": "status", "id": nid, "name": name, "uptime_s": 3600, "queue": 2, "held": 1,
          "airtime_pct": 0.4, "battery_mv": 4100, "duty_headroom_pct": 96.5,
          "neighbours": list(neighbours)}
    ev.update(kw)
    return ev


def nb(nid, name=None, rssi=-97, snr=5.25, age=3):
    return {"id": nid, "name": name, "rssi_dbm": rssi, "snr_db": snr, "last_heard_s": age}


def telemetry(nid="0000000c", name="farm", hops=2, **kw):
    ev = {"event": "telemetry", "id": nid, "name": name, "hops": hops, "rssi_dbm": -101,
          "snr_db": 2.0, "uptime_s": 500, "battery_mv": 3950, "heap_free_bytes": 40960,
          "airtime_pct": 0.8, "duty_headroom_pct": 95.0, "queue": 1, "held": 3, "files_kib": 12,
          "counters": {"rx": 1}, "neighbours": [{"id": "00000002", "rssi_dbm": -90, "snr_db": 7.5}],
          "interval_s": 300}
    ev.update(kw)
    return ev


def post(src="0000000c", msg_id=7, text="hello mesh", relays=1, **kw):
    ev = {"event": "received", "kind": "post", "from": src, "to": "ffffffff", "id": msg_id,
          "text": text, "hops": relays, "rssi_dbm": -99, "snr_db": 3.0}
    ev.update(kw)
    return ev


def by_id(rows):
    return {r["id"]: r for r in rows}


def test_status_gives_the_attached_node_and_its_direct_neighbours():
    v = MeshView()
    u = v.apply(status(neighbours=[nb("00000002", "mill", -97, 5.25, 12)]), T0)
    assert u.touched == {"00000001", "00000002"}
    rows = v.rows(T0 + 20)
    assert [r["id"] for r in rows] == ["00000001", "00000002"]
    me, mill = rows
    assert me["hops"] == 0 and me["name"] == "hall" and me["last_heard_s"] == 20
    assert (me["battery_mv"], me["airtime_pct"], me["duty_headroom_pct"], me["queue"],
            me["held"], me["uptime_s"]) == (4100, 0.4, 96.5, 2, 1, 3600)
    assert me["rssi_dbm"] is None and me["via"] is None
    # heard 12 s before the status came: 32 s ago at T0 + 20
    assert mill["hops"] == 1 and mill["name"] == "mill" and mill["last_heard_s"] == 32
    assert (mill["rssi_dbm"], mill["snr_db"], mill["via"]) == (-97, 5.25, "00000001")
    assert mill["battery_mv"] is None and mill["queue"] is None   # it reported nothing itself


def test_telemetry_and_messages_add_nodes_further_away():
    v = MeshView()
    v.apply(status(neighbours=[nb("00000002", "mill")]), T0)
    v.apply(telemetry(), T0 + 5)
    r = by_id(v.rows(T0 + 10))["0000000c"]
    assert (r["name"], r["hops"], r["rssi_dbm"], r["snr_db"]) == ("farm", 2, -101, 2.0)
    assert (r["battery_mv"], r["airtime_pct"], r["duty_headroom_pct"], r["queue"], r["held"],
            r["uptime_s"], r["interval_s"]) == (3950, 0.8, 95.0, 1, 3, 500, 300)
    assert r["last_heard_s"] == 5 and r["heard_by"] == "telemetry" and r["via"] == "00000001"
    # a post from a node never heard before: relays + 1 radio hops
    v.apply(post(src="0000000d", relays=2), T0 + 8)
    d = by_id(v.rows(T0 + 10))["0000000d"]
    assert d["hops"] == 3 and d["heard_by"] == "message" and d["name"] is None
    assert [r["id"] for r in v.rows(T0 + 10)] == ["00000001", "00000002", "0000000c", "0000000d"]


def test_the_freshest_observation_wins():
    v = MeshView()
    v.apply(telemetry(nid="00000002", name="mill", hops=2, rssi_dbm=-110, snr_db=-3.0), T0)
    # the attached node heard it directly after that telemetry: hops 1 now
    v.apply(status(neighbours=[nb("00000002", rssi=-95, snr=6.0, age=2)]), T0 + 10)
    r = by_id(v.rows(T0 + 10))["00000002"]
    assert (r["hops"], r["rssi_dbm"], r["snr_db"], r["heard_by"]) == (1, -95, 6.0, "neighbour")
    # but a neighbour entry older than the telemetry does not override it
    v2 = MeshView()
    v2.apply(telemetry(nid="00000002", name="mill", hops=2), T0)
    v2.apply(status(neighbours=[nb("00000002", rssi=-95, snr=6.0, age=60)]), T0 + 10)
    r = by_id(v2.rows(T0 + 10))["00000002"]
    assert (r["hops"], r["heard_by"], r["last_heard_s"]) == (2, "telemetry", 10)
    # the self-report fields stay from the telemetry either way
    assert r["battery_mv"] == 3950 and r["uptime_s"] == 500


def test_alerts_silent_duty_battery():
    v = MeshView(silent_after_s=600, duty_headroom_alert_pct=10.0, battery_low_mv=3400)
    v.apply(status(neighbours=[nb("00000003", age=2000)]), T0)
    v.apply(telemetry(battery_mv=3300, duty_headroom_pct=4.0), T0)
    alerts = v.alerts(T0 + 30)
    kinds = sorted((a["id"], a["kind"]) for a in alerts)
    assert kinds == [("00000003", "silent"), ("0000000c", "battery"), ("0000000c", "duty")]
    texts = {(a["id"], a["kind"]): a["text"] for a in alerts}
    assert texts[("00000003", "silent")] == "00000003 not heard for 33m (alert after 10m)"
    assert texts[("0000000c", "duty")] == ("farm (0000000c) near its duty-cycle limit: "
                                           "4.0 % of the hourly budget left")
    assert texts[("0000000c", "battery")] == "farm (0000000c) battery low: 3.30 V (alert below 3.40 V)"
    assert by_id(v.rows(T0 + 30))["0000000c"]["alerts"] == ["duty", "battery"]
    # farm's telemetry comes every 300 s: silent only after two of them (600 s here)
    assert not any(a["kind"] == "silent" and a["id"] == "0000000c" for a in v.alerts(T0 + 599))
    assert any(a["kind"] == "silent" and a["id"] == "0000000c" for a in v.alerts(T0 + 601))


def test_a_node_announcing_a_long_interval_gets_two_of_them():
    v = MeshView(silent_after_s=900)
    v.apply(telemetry(interval_s=1800), T0)
    assert v.alerts(T0 + 3500) == []
    assert [a["kind"] for a in v.alerts(T0 + 3601)] == ["silent"]


def test_the_attached_node_goes_silent_when_its_status_stops():
    v = MeshView(silent_after_s=120)
    v.apply(status(), T0)
    assert v.alerts(T0 + 100) == []
    assert [a["kind"] for a in v.alerts(T0 + 130)] == ["silent"]


def test_a_node_whose_receive_count_stands_still_while_it_reports_is_deaf():
    v = MeshView(silent_after_s=600)
    for i, rx in enumerate((5, 9, 9, 9, 9)):      # telemetry every 300 s
        v.apply(telemetry(counters={"rx": rx}), T0 + 300 * i)
        kinds = [a["kind"] for a in v.alerts(T0 + 300 * i + 1)]
        assert kinds == (["deaf"] if i == 4 else []), (i, kinds)
    (alert,) = v.alerts(T0 + 1201)
    assert alert["text"] == ("farm (0000000c) has heard nothing for 15m (its receive count "
                             "stands at 9) but still reports")
    v.apply(telemetry(counters={"rx": 10}), T0 + 1500)
    assert v.alerts(T0 + 1501) == []


def test_relays_held_back_for_an_origin_over_its_fair_share_are_an_alert_for_a_while():
    v = MeshView(silent_after_s=600)
    v.apply(status(dropped={"tag": 3}), T0)
    assert v.alerts(T0 + 1) == []
    v.apply(status(dropped={"unfair": 40, "tag": 3}), T0 + 60)
    (alert,) = v.alerts(T0 + 61)
    assert alert["kind"] == "unfair"
    assert alert["text"].endswith("held back 40 relays for an origin over its fair share "
                                  "of airtime (40 since start): a member flooding?")
    v.apply(status(dropped={"unfair": 52}), T0 + 120)
    assert "held back 12 relays" in v.alerts(T0 + 121)[0]["text"]
    v.apply(status(dropped={"unfair": 52}), T0 + 700)   # no more since: it clears
    assert v.alerts(T0 + 721) == []
    v.apply(status(dropped={"unfair": "many"}), T0 + 800)   # nonsense is ignored
    assert v.alerts(T0 + 801) == []


def test_a_key_refused_for_a_pinned_id_is_an_alert():
    # (identity.md: another key for an id whose key the node pinned)
    v = MeshView(silent_after_s=600)
    v.apply(status(dropped={"tag": 3}), T0)
    v.apply(status(dropped={"pin": 2, "tag": 3}), T0 + 60)
    (alert,) = v.alerts(T0 + 61)
    assert alert["kind"] == "pin"
    assert alert["text"].endswith("refused 2 node keys unlike the ones it pinned for their ids "
                                  "(2 since start): a node impersonated?")
    v.apply(status(dropped={"pin": 2}), T0 + 700)   # no more since: it clears
    assert v.alerts(T0 + 721) == []


def test_a_task_that_failed_on_the_attached_node_is_an_alert_for_a_while():
    v = MeshView(silent_after_s=600)
    v.apply({"event": "task_failed", "task": "radio", "error": "OSError(5,)"}, T0)
    assert v.ignored == 1                          # no attached node yet: whose task?
    v.apply(status(), T0)
    for i in range(2):
        v.apply({"event": "task_failed", "task": "radio", "error": "MemoryError()"}, T0 + i)
    (alert,) = v.alerts(T0 + 10)
    assert (alert["id"], alert["kind"]) == ("00000001", "task")
    assert alert["text"] == "hall (00000001): a task failed and went on, 2 times (last radio: MemoryError())"
    v.apply(status(), T0 + 700)
    assert v.alerts(T0 + 701) == []                # none since: the alert is over


def test_messages_newest_first_and_repeats_dropped():
    v = MeshView()
    v.apply(status(), T0)
    v.apply(post(msg_id=1, text="one"), T0 + 1)
    v.apply(post(msg_id=2, text="two"), T0 + 2)
    u = v.apply(post(msg_id=1, text="one"), T0 + 3)   # MQTT QoS 1 may repeat
    assert u.message is None
    assert [m["text"] for m in v.messages(10)] == ["two", "one"]
    assert [m["text"] for m in v.messages(1)] == ["two"]
    m = v.messages(1)[0]
    assert (m["from"], m["kind"], m["hops"], m["via"], m["uid"]) == ("0000000c", "post", 1,
                                                                      "00000001", "0000000c-2")


def test_links_from_neighbour_tables_and_telemetry():
    v = MeshView()
    v.apply(status(neighbours=[nb("00000002", "mill", -97, 5.25, 10),
                               nb("00000003", None, -120, -9.0, 1000)]), T0)
    v.apply(telemetry(), T0 + 5)
    links = {(x["rx"], x["tx"]): x for x in v.links(T0 + 5)}
    assert set(links) == {("00000001", "00000002"), ("0000000c", "00000002")}  # 00000003: gone
    assert links[("00000001", "00000002")]["snr_db"] == 5.25
    assert links[("00000001", "00000002")]["age_s"] == 15
    assert links[("0000000c", "00000002")]["tx_name"] == "mill"
    assert len(v.links(T0 + 5, max_age_s=None)) == 3


def test_bad_fields_from_the_air_are_unknown_not_errors():
    v = MeshView()
    assert v.apply({"event": "telemetry", "id": "zz"}, T0).touched == set()
    assert v.apply({"event": "status", "id": 5}, T0).touched == set()
    assert v.apply({"event": "received", "from": "0000000c"}, T0).touched == set()  # no id
    assert v.ignored == 3
    v.apply(telemetry(hops="two", battery_mv="full", queue=True, airtime_pct=float("nan"),
                      neighbours="none", rssi_dbm=None), T0)
    r = v.rows(T0)[0]
    assert r["hops"] is None and r["battery_mv"] is None and r["queue"] is None
    assert r["airtime_pct"] is None and r["rssi_dbm"] is None
    v.apply({"event": "status", "id": "00000001", "neighbours": [5, {"id": "00000001"},
                                                                 {"id": "00000009"}]}, T0)
    assert "00000009" not in v.nodes            # no last_heard_s: not a usable entry
    v.apply({"event": "sent", "id": 5}, T0)     # other events are not the view's business
    assert v.apply({"not": "an event"}, T0).touched == set()


def test_state_survives_export_and_load():
    v = MeshView()
    v.apply(status(neighbours=[nb("00000002", "mill")]), T0)
    v.apply(telemetry(), T0 + 5)
    v.apply(post(), T0 + 6)
    w = MeshView()
    w.load(v.states(), v.links(T0 + 6), v.messages(50)[::-1])
    assert w.rows(T0 + 100) == v.rows(T0 + 100)
    assert w.messages(5) == v.messages(5)
    assert w.apply(post(), T0 + 7).message is None    # a repeat after a restart too


def test_status_samples_are_kept_about_once_a_minute():
    v = MeshView()
    kept = [v.apply(status(neighbours=[nb("00000002", age=0)]), T0 + s).keep_event
            for s in (0, 5, 10, 55, 60, 200)]
    assert kept == [True, False, False, True, False, True]
    # a neighbour heard anew gives a sample each time, the same hearing only once
    v = MeshView()
    n = [len([s for s in v.apply(status(neighbours=[nb("00000002", age=age)]), T0 + t).samples
              if s["source"] == "neighbour"]) for t, age in ((0, 0), (5, 5), (10, 0))]
    assert n == [1, 0, 1]


def test_ids_and_ages():
    assert node_id("0000000C") == "0000000c"
    assert node_id("c") is None and node_id("ffffffff") is None and node_id(12) is None
    assert [fmt_age(s) for s in (None, 5, 89, 90, 3599, 3600, 3725, 90000)] == \
        ["-", "5s", "89s", "1m", "59m", "1h00m", "1h02m", "1d01h"]


# ---- the screen as text -------------------------------------------------------------

def test_render_text_shows_the_nodes_table_alerts_and_messages():
    v = MeshView(silent_after_s=600)
    v.apply(status(neighbours=[nb("00000002", "mill", -97, 5.25, 12),
                               nb("00000003", None, -118, -6.5, 2000)]), T0)
    v.apply(telemetry(battery_mv=3300, duty_headroom_pct=4.0, airtime_pct=8.1, queue=5), T0 + 5)
    v.apply(post(text="market moved to friday"), T0 + 7)
    text = render_text(v, T0 + 20, width=120, header="pollen monitor: test")
    assert "\x1b" not in text                               # no colour codes
    lines = [line.rstrip() for line in text.splitlines()]
    assert lines[0].startswith("pollen monitor: test  4 nodes, 3 alerts")
    head = lines.index(next(line for line in lines if line.startswith("node ")))
    assert lines[head].split() == ["node", "id", "heard", "hops", "RSSI", "SNR", "batt", "V", "air",
                                   "%", "duty", "left", "queue", "held", "up", "alerts"]
    assert set(lines[head + 1]) == {"\u2500"}
    table = lines[head + 2:lines.index("alerts", head)]
    row = {line.split()[1]: line.split() for line in table}
    assert row["00000001"] == ["hall", "00000001", "20s", "0", "-", "-", "4.10", "0.4", "96.5",
                               "2", "1", "1h00m"]
    assert row["00000002"] == ["mill", "00000002", "32s", "1", "-97", "5.2", "-", "-", "-", "-",
                               "-", "-"]
    assert row["00000003"][:4] == ["?", "00000003", "33m", "1"] and row["00000003"][-1] == "silent"
    assert row["0000000c"] == ["farm", "0000000c", "13s", "2", "-99", "3.0", "3.30", "8.1",
                               "4.0", "5", "3", "8m", "duty", "battery"]
    # the table's order: attached, then hops, then name
    assert [line.split()[1] for line in table] == ["00000001", "00000002", "00000003", "0000000c"]
    assert "silent   00000003 not heard for 33m (alert after 10m)" in text
    assert "battery  farm (0000000c) battery low: 3.30 V (alert below 3.40 V)" in text
    msg = next(line for line in lines if "market moved" in line)
    assert msg.split()[1:] == ["farm", "all", "1", "market", "moved", "to", "friday"]


def test_a_narrow_terminal_drops_the_least_needed_columns():
    v = MeshView()
    v.apply(status(), T0)
    head = next(line for line in render_text(v, T0, width=100).splitlines()
                if line.startswith("node "))
    assert "queue" in head and "up" not in head.split() and "alerts" not in head


def test_names_and_texts_from_the_air_cannot_drive_the_terminal():
    v = MeshView()
    v.apply(telemetry(name="[red]y[/]\x1b[2J"), T0)
    v.apply(post(text="hi\x1b]0;pwned\x07\nnext [link=file:///etc]z"), T0)
    text = render_text(v, T0, width=160)
    assert "\x1b" not in text and "\x07" not in text
    assert "[red]y[/]\\x1b[2J" in text                # shown as typed, not as markup
    assert "hi\\x1b]0;pwned\\x07\\nnext [link=file:///etc]z" in text
    # emoji, combining marks and right-to-left text as they are; a bidi override escaped
    v.apply(post(msg_id=8, text="sunflower \U0001f33b cafe\u0301 \u05e9\u05dc\u05d5\u05dd \u202eevil"), T0)
    text = render_text(v, T0, width=160)
    assert "sunflower \U0001f33b cafe\u0301 \u05e9\u05dc\u05d5\u05dd \\u202eevil" in text


def test_empty_view_says_so():
    text = render_text(MeshView(), T0)
    assert "0 nodes, 0 alerts" in text and "no nodes heard yet" in text
    assert "recent messages: none yet" in text and "alerts: none" in text


@pytest.mark.parametrize("width", [60, 80, 200])
def test_render_text_fits_the_width(width):
    v = MeshView()
    v.apply(status(neighbours=[nb("00000002", "a-very-long-node-name-indeed")]), T0)
    v.apply(post(text="x" * 300), T0)
    assert max(len(line) for line in render_text(v, T0, width=width).splitlines()) <= width


def test_telemetry_that_did_not_decode_counts_as_heard_only():
    v = MeshView()
    u = v.apply({"event": "telemetry", "id": "0000000c", "hops": 2, "rssi_dbm": -100,
                 "snr_db": 1.0, "data": "01ff", "malformed": True}, T0)
    r = v.rows(T0)[0]
    assert (r["id"], r["hops"], r["rssi_dbm"], r["last_heard_s"]) == ("0000000c", 2, -100, 0)
    assert r["battery_mv"] is None and r["queue"] is None and r["interval_s"] is None
    assert [s["source"] for s in u.samples] == ["undecoded"]


def test_the_up_column_counts_on_from_the_last_report():
    v = MeshView()
    v.apply(telemetry(uptime_s=30), T0)
    row = next(line for line in render_text(v, T0 + 100).splitlines() if "0000000c" in line)
    assert row.split()[11] == "2m"          # 30 s when it reported, 100 s ago
    assert v.rows(T0 + 100)[0]["uptime_s"] == 30 and v.rows(T0 + 100)[0]["report_age_s"] == 100


def test_the_number_of_nodes_is_bounded(monkeypatch):
    import pollen_controller.monitor.mesh_view as mv

    monkeypatch.setattr(mv, "MAX_NODES", 3)
    v = MeshView()
    v.apply(status(neighbours=[nb("00000002"), nb("00000003"), nb("00000004")]), T0)
    v.apply(telemetry(nid="0000000c"), T0)
    v.apply(post(src="0000000d"), T0)
    assert sorted(v.nodes) == ["00000001", "00000002", "00000003"]
    assert v.ignored == 3
    v.apply(telemetry(nid="00000002", battery_mv=3000), T0 + 1)   # known ones go on
    assert v.nodes["00000002"]["battery_mv"] == 3000


# ---- values from the air that no node sends ------------------------------------------

@pytest.mark.parametrize("t", [float("nan"), float("inf"), float("-inf"), -1.0, 2.0 ** 40,
                               "1700000000", None, True])
def test_an_event_at_a_time_that_is_not_a_time_is_ignored(t):
    v = MeshView()
    v.apply(status(), T0)
    u = v.apply(telemetry(), t)
    assert u.touched == set() and u.samples == [] and not u.keep_event
    assert v.ignored == 1 and "0000000c" not in v.nodes
    assert [r["id"] for r in v.rows(T0)] == ["00000001"]
    assert v.states()[0]["seen_t"] == T0


# field, a value out of its range (unknown), the edges of the range (kept)
_RANGES = [("hops", 256, (1, 255)), ("battery_mv", 65536, (0, 65535)),
           ("airtime_pct", 100.1, (0, 100.0)), ("duty_headroom_pct", -0.1, (0, 100)),
           ("queue", 1e30, (0, 65535)), ("held", -1, (0, 65535)),
           ("uptime_s", 2 ** 32, (0, 2 ** 32 - 1)), ("heap_free_bytes", 1e300, (0, 2 ** 32 - 1)),
           ("rssi_dbm", -201, (-200, 50)), ("snr_db", 50.5, (-50, 50.0))]


@pytest.mark.parametrize("key,bad,edges", _RANGES)
def test_a_field_out_of_its_range_is_unknown(key, bad, edges):
    v = MeshView()
    v.apply(telemetry(**{key: bad}), T0)
    assert v.rows(T0)[0][key] is None
    for ok in edges:
        v.apply(telemetry(**{key: ok}), T0 + 1)
        assert v.rows(T0 + 1)[0][key] == ok


def test_huge_numbers_in_a_message_or_a_neighbour_table_are_unknown():
    v = MeshView()
    assert v.apply(post(msg_id=2 ** 32), T0).message is None     # message ids are u32
    assert v.ignored == 1
    m = v.apply(post(msg_id=2 ** 32 - 1, relays=1e30, rssi_dbm=-1e30, snr_db=1e30), T0).message
    assert (m["id"], m["hops"], m["rssi_dbm"], m["snr_db"]) == (2 ** 32 - 1, None, None, None)
    v.apply(status(neighbours=[nb("00000002", age=1e30), nb("00000003", rssi=1e9, snr=-1e9)]), T0)
    assert "00000002" not in v.nodes
    n3 = v.nodes["00000003"]
    assert n3["rssi_dbm"] is None and n3["snr_db"] is None and n3["seen_t"] == T0 - 3


def test_a_node_announcing_18_hours_or_more_is_never_called_silent_for_it():
    # 65535 s in a status frame means "18 h or more": when it is due is unknown
    v = MeshView(silent_after_s=900)
    v.apply(telemetry(interval_s=65535), T0)
    assert v.silent_after(v.nodes["0000000c"]) is None
    assert v.alerts(T0 + 40 * 3600) == [] and v.alerts(T0 + 30 * 86400) == []
    assert v.rows(T0 + 40 * 3600)[0]["interval_s"] == 65535
    v.apply(telemetry(interval_s=1e12), T0)            # more than the wire carries: the same
    assert v.rows(T0)[0]["interval_s"] == 65535 and v.alerts(T0 + 40 * 3600) == []
    v.apply(telemetry(interval_s=65534), T0)            # a known interval: two of them
    assert v.alerts(T0 + 131068) == []
    assert [a["kind"] for a in v.alerts(T0 + 131069)] == ["silent"]


def test_a_node_once_attached_is_hops_0_while_its_status_comes_not_its_telemetry():
    v = MeshView(silent_after_s=900)
    v.apply(status(nid="0000000c", name="farm"), T0)
    v.apply(telemetry(interval_s=65535), T0 + 1)         # later heard through another node
    assert v.rows(T0 + 800)[0]["hops"] == 0
    assert v.rows(T0 + 1000)[0]["hops"] == 2


def test_load_ignores_values_in_a_stored_state_that_cannot_be():
    good = MeshView()
    good.apply(status(neighbours=[nb("00000002", "mill")]), T0)
    good.apply(telemetry(), T0 + 5)
    states = good.states()
    nan, inf = float("nan"), float("inf")
    states[0].update(seen_t=nan, attached_t=-inf, report_t="yesterday", hops=1e30, name=5,
                     battery_mv=inf, via="somebody", heard_by="[bold]x[/]")
    states[2].update(seen_t=1e300, interval_s=-4, queue=[1], uptime_s=True)
    links = good.links(T0 + 5) + [{"rx": "00000002", "tx": "0000000c", "t": nan,
                                   "rssi_dbm": -90, "snr_db": 1.0}]
    msgs = [{"uid": "0000000c-1", "t": -inf, "kind": "post", "from": "0000000c", "to": None,
             "id": 1, "text": "x", "hops": 1, "rssi_dbm": None, "snr_db": None, "via": None}]
    v = MeshView()
    v.load(states + [{"id": "nonsense"}, "not a dict"], links, msgs)
    rows = by_id(v.rows(T0 + 100))
    assert sorted(rows) == ["00000001", "00000002", "0000000c"]
    hall, farm = rows["00000001"], rows["0000000c"]
    assert hall["last_heard_s"] is None and hall["hops"] is None and hall["name"] is None
    assert hall["battery_mv"] is None and hall["via"] is None and hall["heard_by"] is None
    assert hall["report_age_s"] is None and hall["uptime_s"] == 3600
    assert farm["last_heard_s"] is None and farm["interval_s"] is None
    assert farm["queue"] is None and farm["uptime_s"] is None and farm["battery_mv"] == 3950
    assert [(x["rx"], x["tx"]) for x in v.links(T0 + 100)] == [("00000001", "00000002"),
                                                               ("0000000c", "00000002")]
    assert v.messages(5) == []
    render_text(v, T0 + 100)
    v.alerts(T0 + 100)
