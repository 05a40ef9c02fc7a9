"""The gateway's SQLite queues (controller/gateway/store.py): order, the
bounds and what happens at them, surviving a restart, an old outbox file."""
import sqlite3

import pytest

from pollen_controller.gateway import store
from pollen_controller.gateway.store import Store, StoreError


def test_outbox_keeps_order_and_survives_a_restart(tmp_path):
    s = Store(tmp_path / "gw.db")
    dropped = [s.outbox.add(f"t/{k}", f"p{k}") for k in range(5)]
    assert dropped == [0] * 5  # nothing had to go
    rows = s.outbox.pending()
    assert [r[1] for r in rows] == [f"t/{k}" for k in range(5)]
    s.outbox.done(rows[0][0], rows[2][0])
    assert [r[2] for r in s.outbox.pending(after=rows[1][0], limit=1)] == ["p3"]
    s.close()
    s = Store(tmp_path / "gw.db")
    assert [r[2] for r in s.outbox.pending()] == ["p1", "p3", "p4"] and s.outbox.count == 3


def test_outbox_bounds_drop_the_oldest_perishable_first(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "MAX_OUTBOX", 10)
    monkeypatch.setattr(store, "MAX_PERISHABLE", 3)
    s = Store(tmp_path / "gw.db")
    s.outbox.add("m", "message 0")
    dropped = [s.outbox.add("tele", f"telemetry {k}", perishable=True) for k in range(5)]
    assert dropped == [0, 0, 0, 1, 1]
    assert [r[2] for r in s.outbox.pending()] == ["message 0"] + [f"telemetry {k}" for k in (2, 3, 4)]
    dropped = [s.outbox.add("m", f"message {k}") for k in range(1, 8)]
    # 10 rows at most: then the oldest goes, whatever it is
    assert dropped == [0] * 6 + [1]
    assert s.outbox.count == 10 and [r[2] for r in s.outbox.pending()][0] == "telemetry 2"


def test_inbox_refuses_past_its_bound_and_keeps_commands(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "MAX_INBOX", 2)
    s = Store(tmp_path / "gw.db")
    a = s.inbox.add({"cmd": "send", "to": "all", "text": "a"})
    s.inbox.add({"cmd": "send", "to": "all", "text": "b"})
    assert s.inbox.add({"cmd": "send", "to": "all", "text": "c"}) is None
    s.inbox.done(a)
    assert [c["text"] for _, c in s.inbox.pending()] == ["b"] and s.inbox.get(a) is None


def test_an_outbox_of_the_first_version_is_taken_on(tmp_path):
    db = sqlite3.connect(tmp_path / "old.db")
    db.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
               " topic TEXT NOT NULL, payload TEXT NOT NULL)")
    db.execute("INSERT INTO outbox (topic, payload) VALUES ('pollen/x/1/message', '{}')")
    db.commit()
    db.close()
    s = Store(tmp_path / "old.db")
    assert [r[1] for r in s.outbox.pending()] == ["pollen/x/1/message"]
    assert [r[1] for r in s.outbox.pending(now_s=0.0)] == ["pollen/x/1/message"]
    assert s.outbox.held(0.0) == []
    s.outbox.add("pollen/x/1/status", "{}", perishable=True)
    assert s.outbox.count == 2


def test_outbox_rows_held_back_as_one_text(tmp_path):
    # pollen bridge meshtastic: a text split in two is two rows of one uid,
    # held back together, cancelled together, and kept across a restart
    s = Store(tmp_path / "b.db")
    s.outbox.add("meshtastic", "part 1", after_s=100.0, uid="0000000c-30")
    s.outbox.add("meshtastic", "part 2", after_s=100.0, uid="0000000c-30")
    s.outbox.add("meshtastic", "held too", after_s=100.0, uid="0000000c-31")
    s.outbox.add("meshtastic", "now")
    assert [r[2] for r in s.outbox.pending(now_s=99.0)] == ["now"]
    assert s.outbox.held(99.0) == [("0000000c-30", 100.0)] * 2 + [("0000000c-31", 100.0)]
    assert s.outbox.cancel("0000000c-30", 99.0) and s.outbox.count == 2
    assert not s.outbox.cancel("0000000c-31", 100.0)  # its time has come: it goes
    s.close()
    s = Store(tmp_path / "b.db")
    assert s.outbox.held(99.0) == [("0000000c-31", 100.0)] and s.outbox.count == 2
    assert [r[2] for r in s.outbox.pending(now_s=100.0)] == ["held too", "now"]
    assert [r[2] for r in s.outbox.pending()] == ["held too", "now"]  # (the gateway's call)


def test_a_file_that_is_not_a_database_is_named(tmp_path):
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StoreError, match="junk.db.*move the file away"):
        Store(tmp_path / "junk.db")


def test_a_second_gateway_on_the_same_file_is_told_so(tmp_path):
    s = Store(tmp_path / "gw.db")
    with pytest.raises(StoreError, match=r"gw.db: another gateway has it open.*--outbox"):
        Store(tmp_path / "gw.db")
    s.close()
    Store(tmp_path / "gw.db").close()  # free again once the first one closed it


def test_a_file_another_program_holds_locked_is_named_and_not_called_broken(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "_LOCK_WAIT_S", 0.2)
    other = sqlite3.connect(tmp_path / "held.db")
    other.execute("CREATE TABLE t (x)")
    other.commit()
    other.execute("BEGIN EXCLUSIVE")  # a program in the middle of a write
    with pytest.raises(StoreError, match=r"held.db: another program holds a lock on it") as e:
        Store(tmp_path / "held.db")
    assert "move the file away" not in str(e.value)
    other.rollback()
    Store(tmp_path / "held.db").close()


def test_a_write_that_fails_changes_nothing_and_the_next_one_works(tmp_path):
    s = Store(tmp_path / "gw.db")
    s.inbox.add({"cmd": "send", "to": "all", "text": "a"})
    pages = s.db.execute("PRAGMA page_count").fetchone()[0]
    s.db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
    for write in (lambda: s.inbox.add({"cmd": "send", "to": "all", "text": "b" * 5000}),
                  lambda: s.outbox.add("t", "p" * 5000)):
        with pytest.raises(sqlite3.Error, match="full"):
            write()
    assert (s.inbox.count, s.outbox.count) == (1, 0)
    s.db.execute("PRAGMA max_page_count = 1000000")  # room again
    s.inbox.add({"cmd": "send", "to": "all", "text": "c"})
    assert [c["text"] for _, c in s.inbox.pending()] == ["a", "c"] and s.inbox.count == 2
    s.close()


def test_a_held_command_waits_for_its_time_and_can_be_cancelled_until_then(tmp_path):
    s = Store(tmp_path / "gw.db")
    s.inbox.add({"cmd": "send", "to": "all", "text": "bridged 1"}, after_s=100.0, uid="0000000c-1")
    s.inbox.add({"cmd": "send", "to": "0000000c", "text": "a send"})
    s.inbox.add({"cmd": "send", "to": "all", "text": "bridged 2"}, after_s=100.0, uid="0000000c-2")
    assert [c["text"] for _, c in s.inbox.pending(now_s=99.0)] == ["a send"]  # not held up behind
    assert s.inbox.held(99.0) == [("0000000c-1", 100.0), ("0000000c-2", 100.0)]
    assert s.inbox.cancel("0000000c-1", 99.0) and s.inbox.count == 2
    assert not s.inbox.cancel("0000000c-2", 100.0)  # its time has come: it goes to the node
    s.close()
    s = Store(tmp_path / "gw.db")  # held back across a restart too
    assert s.inbox.held(99.0) == [("0000000c-2", 100.0)]
    assert [c["text"] for _, c in s.inbox.pending(now_s=100.0)] == ["a send", "bridged 2"]


def test_an_inbox_of_an_earlier_version_is_taken_on(tmp_path):
    db = sqlite3.connect(tmp_path / "old.db")
    db.execute("CREATE TABLE inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, cmd TEXT NOT NULL)")
    db.execute("""INSERT INTO inbox (cmd) VALUES ('{"cmd": "send", "to": "all", "text": "old"}')""")
    db.commit()
    db.close()
    s = Store(tmp_path / "old.db")
    assert [c["text"] for _, c in s.inbox.pending(now_s=0.0)] == ["old"] and s.inbox.held(0.0) == []
