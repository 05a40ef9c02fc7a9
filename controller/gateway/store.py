"""The gateway's two queues, in one SQLite file (docs/gateway.md):

  outbox   publications for the broker, each removed only when the broker
           acknowledged it (QoS 1). (`pollen bridge meshtastic` keeps its
           texts for the Meshtastic side here too, held back like bridged
           posts: an `after` time and a `uid`, bridge_meshtastic/holdback.py)
  inbox    commands for the gateway's node (sends from the broker, posts
           bridged in from another mesh), each removed only when the node
           answered it. A bridged post is held back until its `after` time
           (it may be cancelled meanwhile: bridge.Bridging)

Both keep their order and survive a restart of the gateway. Bounds, and what
happens at them:

  outbox   at most 100 000 rows; past that the oldest row goes. Of them at
           most 1 000 status and telemetry rows (perishable: a newer one says
           more); past that the oldest of those goes first
  inbox    at most 1 000 commands; past that a new one is refused

One gateway per file: the Store holds an flock on it while open, and a second
gateway given the same file stops at start, saying so.
"""
from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

from pollen_controller.errors import StoreError

MAX_OUTBOX = 100_000
MAX_PERISHABLE = 1_000
MAX_INBOX = 1_000
_LOCK_WAIT_S = 5.0  # how long a write waits for another connection's lock on the file


class Store:
    def __init__(self, path: Path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # An flock (not SQLite's own POSIX locks, which it takes and drops per
        # transaction) on the file, held while the store is open: two gateways
        # on one file would each publish and send the other's rows.
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise StoreError(f"outbox {path}: another gateway has it open; give each gateway"
                             f" its own file (--outbox PATH)") from None
        try:
            db = sqlite3.connect(str(path), check_same_thread=False, timeout=_LOCK_WAIT_S)
        except sqlite3.Error as e:
            os.close(self._fd)
            raise StoreError(f"outbox {path}: {e}") from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                       " topic TEXT NOT NULL, payload TEXT NOT NULL)")
            columns = [r[1] for r in db.execute("PRAGMA table_info(outbox)")]
            if "perishable" not in columns:  # an outbox of the first gateway version
                db.execute("ALTER TABLE outbox ADD COLUMN perishable INTEGER NOT NULL DEFAULT 0")
            if "after" not in columns:  # an outbox of an earlier version
                db.execute("ALTER TABLE outbox ADD COLUMN after REAL NOT NULL DEFAULT 0")
                db.execute("ALTER TABLE outbox ADD COLUMN uid TEXT")
            db.execute("CREATE INDEX IF NOT EXISTS outbox_perishable ON outbox (seq)"
                       " WHERE perishable = 1")
            db.execute("CREATE TABLE IF NOT EXISTS inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                       " cmd TEXT NOT NULL)")
            columns = [r[1] for r in db.execute("PRAGMA table_info(inbox)")]
            if "after" not in columns:  # an inbox of an earlier version
                db.execute("ALTER TABLE inbox ADD COLUMN after REAL NOT NULL DEFAULT 0")
                db.execute("ALTER TABLE inbox ADD COLUMN uid TEXT")
            db.commit()
        except sqlite3.DatabaseError as e:
            db.close()
            os.close(self._fd)
            if is_locked(e):
                raise StoreError(f"outbox {path}: another program holds a lock on it (waited"
                                 f" {_LOCK_WAIT_S:g} s: {e}); close it and start again") from None
            raise StoreError(f"outbox {path}: {e} (move the file away to start a new one)") from None
        self.db, self.path = db, path
        self.lock = threading.Lock()
        self.outbox = Outbox(self)
        self.inbox = Inbox(self)

    def close(self):
        with self.lock:
            self.db.close()
            os.close(self._fd)  # after SQLite's: closing a file drops the process's locks on it


def is_locked(e: Exception) -> bool:
    """SQLite's "database is locked": another connection holds the file longer than we wait."""
    return getattr(e, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class _Queue:
    def __init__(self, store: Store, table: str):
        self.db, self.lock, self.table = store.db, store.lock, table
        self.count = self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    @contextmanager
    def _writing(self):
        # one transaction: committed whole, or (locked, disk full) rolled back
        # whole and the sqlite3.Error raised, the count as it was
        with self.lock:
            count = self.count
            try:
                yield
                self.db.commit()
            except BaseException:
                self.db.rollback()
                self.count = count
                raise

    def held(self, now_s: float) -> list[tuple[str, float]]:
        """(uid, after) of the rows held back past now_s (one per row: a
        text split in two has two rows of one uid)."""
        with self.lock:
            return list(self.db.execute(f"SELECT uid, after FROM {self.table} WHERE after > ? AND"
                                        f" uid IS NOT NULL ORDER BY seq", (now_s,)))

    def cancel(self, uid: str, now_s: float) -> bool:
        """Remove the rows named uid that are still held back at now_s."""
        with self._writing():
            n = self.db.execute(f"DELETE FROM {self.table} WHERE uid = ? AND after > ?",
                                (uid, now_s)).rowcount
            self.count -= n
        return n > 0


class Outbox(_Queue):
    """Publications waiting for the broker's acknowledgement."""

    def __init__(self, store: Store):
        super().__init__(store, "outbox")

    def add(self, topic: str, payload: str, perishable: bool = False, after_s: float = 0.0,
            uid: str | None = None) -> int:
        """Queue one publication; returns how many older rows went to make room.
        One with an `after_s` (Unix time, s) is not pending before then; its
        `uid` names it for cancel()."""
        with self._writing():
            dropped = 0
            if perishable:
                n = self.db.execute("SELECT COUNT(*) FROM outbox WHERE perishable = 1").fetchone()[0]
                if n >= MAX_PERISHABLE:
                    dropped += self._drop("WHERE perishable = 1", n - MAX_PERISHABLE + 1)
            if self.count >= MAX_OUTBOX:
                dropped += self._drop("", self.count - MAX_OUTBOX + 1)
            self.db.execute("INSERT INTO outbox (topic, payload, perishable, after, uid)"
                            " VALUES (?, ?, ?, ?, ?)", (topic, payload, int(perishable), after_s, uid))
            self.count += 1
        return dropped

    def _drop(self, where: str, n: int) -> int:
        cur = self.db.execute(f"DELETE FROM outbox WHERE seq IN"
                              f" (SELECT seq FROM outbox {where} ORDER BY seq LIMIT ?)", (n,))
        self.count -= cur.rowcount
        return cur.rowcount

    def pending(self, after: int = 0, limit: int = -1,
                now_s: float = float("inf")) -> list[tuple[int, str, str]]:
        """(seq, topic, payload) in order, those after seq `after` whose
        `after` time has come by now_s."""
        with self.lock:
            return list(self.db.execute("SELECT seq, topic, payload FROM outbox WHERE seq > ?"
                                        " AND after <= ? ORDER BY seq LIMIT ?", (after, now_s, limit)))

    def done(self, *seqs: int):
        with self._writing():
            for seq in seqs:
                self.count -= self.db.execute("DELETE FROM outbox WHERE seq = ?", (seq,)).rowcount


class Inbox(_Queue):
    """Commands waiting for the gateway's node to answer them."""

    def __init__(self, store: Store):
        super().__init__(store, "inbox")

    def add(self, cmd: dict, after_s: float = 0.0, uid: str | None = None) -> int | None:
        """Queue a command; its seq, or None when MAX_INBOX already wait. One
        with an `after_s` (Unix time, s) is not pending before then; its `uid`
        names it for cancel()."""
        with self._writing():
            if self.count >= MAX_INBOX:
                return None
            seq = self.db.execute("INSERT INTO inbox (cmd, after, uid) VALUES (?, ?, ?)",
                                  (json.dumps(cmd), after_s, uid)).lastrowid
            self.count += 1
        return seq

    def pending(self, limit: int = -1, now_s: float = float("inf")) -> list[tuple[int, dict]]:
        """(seq, command) in order, those whose `after` has come by now_s."""
        with self.lock:
            rows = list(self.db.execute("SELECT seq, cmd FROM inbox WHERE after <= ?"
                                        " ORDER BY seq LIMIT ?", (now_s, limit)))
        return [(seq, json.loads(cmd)) for seq, cmd in rows]

    def get(self, seq: int) -> dict | None:
        with self.lock:
            row = self.db.execute("SELECT cmd FROM inbox WHERE seq = ?", (seq,)).fetchone()
        return json.loads(row[0]) if row else None

    def done(self, seq: int):
        with self._writing():
            self.count -= self.db.execute("DELETE FROM inbox WHERE seq = ?", (seq,)).rowcount
