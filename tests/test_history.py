"""The monitor's history (controller/monitor/history.py) on real SQLite files:
durable, refusing files that are not its own without touching them, a clear
error when locked, and --since parsing."""
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from pollen_controller.monitor.history import History, HistoryError, parse_since
from pollen_controller.monitor.mesh_view import MeshView

from test_mesh_view import T0, nb, post, status, telemetry


def feed(h, view, events):
    for ev, t in events:
        u = view.apply(ev, t)
        h.record(ev, t, u, view.states(u.touched))


def some_events():
    return [(status(neighbours=[nb("00000002", "mill", age=1)]), T0),
            (telemetry(), T0 + 5),
            (post(text="one"), T0 + 6),
            (post(text="one"), T0 + 6.5),          # a repeat: recorded as an event only
            (status(neighbours=[nb("00000002", "mill", age=11)]), T0 + 10),  # too soon
            (telemetry(battery_mv=3700), T0 + 400)]


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_what_was_recorded_survives_reopening(tmp_path):
    db = tmp_path / "sub" / "history.db"
    with History(db, keep_days=None) as h:
        feed(h, MeshView(), some_events())
    with History(db, readonly=True) as h:
        # the second status, 10 s after the first, updates nodes but is not archived
        assert h.event_count() == 5
        far = h.samples(["0000000c"])
        assert [(s["source"], s["battery_mv"]) for s in far] == [
            ("telemetry", 3950), ("message", None), ("telemetry", 3700)]
        assert far[0]["hops"] == 2 and far[1]["hops"] == 2 and far[0]["via"] == "00000001"
        assert [s["source"] for s in h.samples(["00000001"])] == ["status"]
        assert [s["source"] for s in h.samples(["00000002"])] == ["neighbour"]
        assert h.samples(since=T0 + 100) == h.samples(["0000000c"])[-1:]
        assert [m["text"] for m in h.messages()] == ["one"]
        assert {(x["rx"], x["tx"]) for x in h.links()} == {("00000001", "00000002"),
                                                          ("0000000c", "00000002")}
        # a fresh view seeded from history shows what the live one showed
        live = MeshView()
        for ev, t in some_events():
            live.apply(ev, t)
        seeded = MeshView()
        seeded.load(h.node_states(), h.links(), h.recent_messages())
        assert seeded.rows(T0 + 1000) == live.rows(T0 + 1000)
        assert seeded.messages(5) == live.messages(5)


def test_node_lookup_by_name_or_id(tmp_path):
    with History(tmp_path / "h.db") as h:
        feed(h, MeshView(), some_events())
        assert h.resolve_node("FARM") == ["0000000c"]
        assert h.resolve_node("c") == ["0000000c"] and h.resolve_node("0000000C") == ["0000000c"]
        assert h.resolve_node("nobody") == []
        assert h.known_nodes() == ["farm (0000000c)", "hall (00000001)", "mill (00000002)"]


def test_old_history_is_pruned_when_the_monitor_starts(tmp_path):
    db = tmp_path / "h.db"
    old = time.time() - 40 * 86400
    with History(db) as h:
        feed(h, MeshView(), [(telemetry(), old), (telemetry(), time.time())])
    with History(db, keep_days=30) as h:
        assert len(h.samples()) == 1 and h.event_count() == 1
        assert [s["id"] for s in h.node_states()] == ["0000000c"]   # nodes are kept


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path):
    db = tmp_path / "history.db"
    db.write_bytes(os.urandom(3000))
    before = digest(db)
    for readonly in (False, True):
        with pytest.raises(HistoryError) as e:
            History(db, readonly=readonly)
        assert str(db) in str(e.value)
        assert "not an SQLite database" in str(e.value) and "move it aside" in str(e.value)
    assert digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.db"]


def test_an_sqlite_file_of_another_program_is_refused_and_left_alone(tmp_path):
    db = tmp_path / "other.db"
    c = sqlite3.connect(db)
    c.execute("CREATE TABLE recipes (name TEXT)")
    c.execute("INSERT INTO recipes VALUES ('bread')")
    c.commit()
    c.close()
    before = digest(db)
    with pytest.raises(HistoryError, match="SQLite database, but not a pollen history") as e:
        History(db)
    assert str(db) in str(e.value) and "recipes" in str(e.value)
    assert digest(db) == before
    c = sqlite3.connect(db)
    assert c.execute("SELECT name FROM recipes").fetchall() == [("bread",)]


def test_a_damaged_history_is_refused_and_left_alone(tmp_path):
    db = tmp_path / "history.db"
    with History(db) as h:
        feed(h, MeshView(), some_events())
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 3 * page
    data[2 * page + 10:3 * page] = os.urandom(page - 10)    # garbage in a table page
    db.write_bytes(bytes(data))
    before = digest(db)
    with pytest.raises(HistoryError, match="damaged") as e:
        History(db)
    assert str(db) in str(e.value) and "move it aside" in str(e.value)
    assert digest(db) == before


def test_a_newer_schema_is_refused(tmp_path):
    db = tmp_path / "h.db"
    History(db).close()
    c = sqlite3.connect(db)
    c.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    c.commit()
    c.close()
    with pytest.raises(HistoryError, match="schema version 99 is newer"):
        History(db)


def test_a_lock_held_by_another_writer_is_a_clear_error(tmp_path):
    db = tmp_path / "h.db"
    h = History(db, busy_timeout_s=0.3)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    t = time.monotonic()
    with pytest.raises(HistoryError) as e:
        h.record(*some_events()[1])
    assert time.monotonic() - t >= 0.25     # it waited the busy timeout first
    assert str(e.value) == (f"{db}: the history database is locked by another program "
                            "(another pollen monitor?) for more than 0.3 s; stop it, or choose "
                            "another file with --db")
    with pytest.raises(HistoryError, match="locked by another program"):
        History(db, busy_timeout_s=0.3)       # a second monitor does not start either
    other.execute("ROLLBACK")
    h.record(*some_events()[1])              # the lock gone, it goes on
    h.close()
    with History(db, readonly=True) as r:
        assert r.event_count() == 1


def test_a_short_lock_is_waited_for(tmp_path):
    db = tmp_path / "h.db"
    h = History(db, busy_timeout_s=5)
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    import threading

    threading.Timer(0.3, lambda: other.execute("ROLLBACK")).start()
    h.record(*some_events()[1])
    h.close()


def test_a_killed_writer_loses_nothing_it_committed(tmp_path):
    db = tmp_path / "h.db"
    code = f"""
import os, sys
sys.path[:0] = {sys.path!r}
from pollen_controller.monitor.history import History
from pollen_controller.monitor.mesh_view import MeshView
h = History({str(db)!r})
v = MeshView()
for i in range(20):
    ev = {{"event": "received", "kind": "post", "from": "0000000c", "to": "ffffffff",
          "id": i, "text": "n%d" % i, "hops": 0}}
    u = v.apply(ev, 1e9 + i)
    h.record(ev, 1e9 + i, u, v.states(u.touched))
os.kill(os.getpid(), 9)
"""
    r = subprocess.run([sys.executable, "-c", code])
    assert r.returncode == -9
    with History(db, readonly=True) as h:
        assert [m["text"] for m in h.messages()] == [f"n{i}" for i in range(20)]


def test_readonly_needs_an_existing_history(tmp_path):
    with pytest.raises(HistoryError, match="no history here yet"):
        History(tmp_path / "none.db", readonly=True)
    assert not (tmp_path / "none.db").exists()
    with pytest.raises(HistoryError, match="is a folder"):
        History(tmp_path)


def test_an_empty_file_becomes_a_history(tmp_path):
    db = tmp_path / "h.db"
    db.touch()
    with History(db) as h:
        feed(h, MeshView(), some_events()[:1])
    with History(db, readonly=True) as h:
        assert h.event_count() == 1


@pytest.mark.parametrize("text,ago_s", [("30m", 1800), ("1h", 3600), ("2d", 172800),
                                        ("90s", 90), ("1w", 604800), (" 1.5h ", 5400)])
def test_since_durations(text, ago_s):
    assert parse_since(text, 1e9) == 1e9 - ago_s


def test_since_iso_times():
    assert parse_since("2024-05-01T12:00:00Z", 0) == \
        datetime(2024, 5, 1, 12, tzinfo=timezone.utc).timestamp()
    assert parse_since("2024-05-01T14:00+02:00", 0) == \
        datetime(2024, 5, 1, 12, tzinfo=timezone.utc).timestamp()
    assert parse_since("2024-05-01T12:00", 0) == datetime(2024, 5, 1, 12).timestamp()  # local
    assert parse_since("2024-05-01", 0) == datetime(2024, 5, 1).timestamp()


@pytest.mark.parametrize("bad", ["", "1y", "h", "-1h", "yesterday", "2024-13-01"])
def test_since_refuses_what_it_cannot_read(bad):
    with pytest.raises(ValueError, match="expected a duration like 30m, 1h, 2d"):
        parse_since(bad, 1e9)


# ---- values that cannot be ---------------------------------------------------------

def test_huge_numbers_from_the_air_are_recorded_as_unknown(tmp_path):
    huge = 1e30
    events = [(telemetry(queue=huge, held=huge, uptime_s=huge, battery_mv=huge, hops=huge,
                         heap_free_bytes=2 ** 70, rssi_dbm=-huge, snr_db=huge), T0),
              (post(msg_id=2 ** 32 - 1, relays=huge), T0 + 1),
              (post(msg_id=2 ** 70), T0 + 2),
              (status(neighbours=[nb("00000002", rssi=huge, snr=huge, age=huge)]), T0 + 3)]
    with History(tmp_path / "h.db") as h:
        feed(h, MeshView(), events)           # raised OverflowError before: not an sqlite3.Error
    with History(tmp_path / "h.db", readonly=True) as h:
        tele, msg = h.samples(["0000000c"])
        assert (tele["queue"], tele["held"], tele["uptime_s"], tele["battery_mv"], tele["hops"],
                tele["heap_free_bytes"], tele["rssi_dbm"], tele["snr_db"]) == (None,) * 8
        assert msg["hops"] is None
        assert [(m["msg_id"], m["hops"]) for m in h.messages()] == [(2 ** 32 - 1, None)]


def test_an_event_at_no_time_is_not_recorded(tmp_path):
    with History(tmp_path / "h.db") as h:
        view = MeshView()
        feed(h, view, [(telemetry(), T0), (telemetry(battery_mv=3000), float("nan")),
                       (telemetry(battery_mv=3100), float("-inf"))])
        assert h.event_count() == 1 and len(h.samples()) == 1
        assert [s["seen_t"] for s in h.node_states()] == [T0]


def spoil(db):
    """What a monitor before the checks could leave: a NaN time in a node's
    state (written by json.dumps as NaN), times of no year, numbers too big."""
    c = sqlite3.connect(db)
    c.execute("""UPDATE nodes SET state = '{"id": "0000000c", "name": "farm", "seen_t": NaN,
                 "report_t": -Infinity, "hops": 1e30, "queue": 1e300, "interval_s": "x",
                 "battery_mv": 3950}' WHERE id = '0000000c'""")
    c.execute("UPDATE nodes SET state = 'not json' WHERE id = '00000002'")
    c.execute("INSERT INTO nodes VALUES ('nonsense', NULL, NULL, '{}')")
    c.execute("INSERT INTO samples (t, node, source) VALUES (1e300, '0000000c', 'telemetry'),"
              " (-1e300, '0000000c', 'telemetry'), (?, '0000000c', 'telemetry')", (float("-inf"),))
    c.execute("INSERT INTO messages (uid, t, src, text) VALUES "
              "('0000000c-9', 1e300, '0000000c', 'x'), ('0000000c-8', ?, '0000000c', 'y')",
              (float("-inf"),))
    c.execute("INSERT INTO links VALUES ('0000000c', '00000001', 1e300, -90, 1.0)")
    c.commit()
    c.close()


def test_values_that_cannot_be_in_a_history_are_ignored_not_fatal(tmp_path):
    db = tmp_path / "h.db"
    with History(db) as h:
        feed(h, MeshView(), some_events())
    spoil(db)
    with History(db, readonly=True) as h:
        states = {s["id"]: s for s in h.node_states()}
        assert sorted(states) == ["00000001", "0000000c"]       # unreadable ones left out
        farm = states["0000000c"]
        assert farm["name"] == "farm" and farm["battery_mv"] == 3950
        assert (farm["seen_t"], farm["report_t"], farm["hops"], farm["queue"],
                farm["interval_s"]) == (None,) * 5
        # times of no year are not history's: only those from 1970 to 2106 are read
        assert all(0 <= s["t"] < 2 ** 32 for s in h.samples(since=None))
        assert [m["text"] for m in h.messages(since=None)] == ["one"]
        assert {(x["rx"], x["tx"]) for x in h.links()} == {("00000001", "00000002"),
                                                          ("0000000c", "00000002")}
        view = MeshView()
        view.load(h.node_states(), h.links(), h.recent_messages())
        view.rows(T0 + 1000)
        view.alerts(T0 + 1000)
    with History(db) as h:                     # and the monitor goes on with it
        feed(h, view, [(telemetry(), T0 + 2000)])
        assert {s["id"]: s for s in h.node_states()}["0000000c"]["seen_t"] == T0 + 2000
