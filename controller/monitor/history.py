"""The monitor's history in SQLite (docs/monitor.md#history): every event as it
arrives, samples per node over time, messages, links, and the last known state
of each node. WAL, one transaction per event, synchronous=FULL: what was
committed survives a crash or a power cut.

A file that is not SQLite, or SQLite but not this schema, is refused with its
path named and never written to; so is a schema newer than this code. A file
locked by another writer for longer than the busy timeout is an error that
says so. Both are HistoryError (a PollenError: the CLI prints it).

What is read back is checked as what comes from the air: a node state's
values that cannot be are unknown (mesh_view.clean_state), and rows whose
time is not between 1970 and 2106 (an older monitor may have stored a NaN or
an infinite one) are not read.
"""
from __future__ import annotations

import json
import re
import sqlite3
import time
from datetime import datetime
from pathlib import Path

from pollen_controller.errors import HistoryError, InputError
from pollen_controller.monitor.mesh_view import STATE_FIELDS, clean_state, mesh_id, node_id

SCHEMA_VERSION = 2   # 2: samples.battery_pct (Meshtastic nodes); a version 1 file is moved on
APP = "pollen-history"
BUSY_TIMEOUT_S = 5.0
KEEP_DAYS = 30
_MAGIC = b"SQLite format 3\x00"
_VALID_T = "t >= 0 AND t < 4294967296"   # mesh_view.unix_time: 1970 .. 2106

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, t REAL NOT NULL,
                     event TEXT NOT NULL, node TEXT, body TEXT NOT NULL);
CREATE INDEX events_t ON events (t);
CREATE TABLE samples (t REAL NOT NULL, node TEXT NOT NULL, source TEXT NOT NULL, via TEXT,
                      hops INTEGER, rssi_dbm REAL, snr_db REAL, battery_mv INTEGER,
                      airtime_pct REAL, duty_headroom_pct REAL, queue INTEGER, held INTEGER,
                      uptime_s INTEGER, heap_free_bytes INTEGER, battery_pct INTEGER);
CREATE INDEX samples_node_t ON samples (node, t);
CREATE INDEX samples_t ON samples (t);
CREATE TABLE messages (uid TEXT PRIMARY KEY, t REAL NOT NULL, kind TEXT, src TEXT NOT NULL,
                       dst TEXT, msg_id INTEGER, text TEXT, hops INTEGER, rssi_dbm REAL,
                       snr_db REAL, via TEXT);
CREATE INDEX messages_t ON messages (t);
CREATE TABLE nodes (id TEXT PRIMARY KEY, name TEXT, seen_t REAL, state TEXT NOT NULL);
CREATE TABLE links (rx TEXT NOT NULL, tx TEXT NOT NULL, t REAL NOT NULL, rssi_dbm REAL,
                    snr_db REAL, PRIMARY KEY (rx, tx));
"""
SAMPLE_FIELDS = ("t", "node", "source", "via", "hops", "rssi_dbm", "snr_db", "battery_mv",
                 "airtime_pct", "duty_headroom_pct", "queue", "held", "uptime_s",
                 "heap_free_bytes", "battery_pct")
# what each version after the first adds; run in order on an older file opened to write
_UPGRADES = {2: ("ALTER TABLE samples ADD COLUMN battery_pct INTEGER",)}
MESSAGE_FIELDS = ("uid", "t", "kind", "src", "dst", "msg_id", "text", "hops", "rssi_dbm",
                  "snr_db", "via")


def default_path() -> Path:
    import platformdirs

    return platformdirs.user_data_path("pollen") / "history.db"


_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float) -> float:
    """'30m', '1h', '2d', '1w', '90s' before now, or an ISO time (local time
    unless it names a zone) -> Unix seconds. InputError says what is expected."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if m:
        return now - float(m.group(1)) * _UNITS_S[m.group(2)]
    iso = (text or "").strip()
    if iso.endswith(("Z", "z")):
        iso = iso[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise InputError("expected a duration like 30m, 1h, 2d, 1w or an ISO time like "
                         f"2024-05-01T12:00, got {text!r}") from None
    return when.timestamp()  # naive: local time


class History:
    """One history file. readonly=True for the commands that only look
    (nodes, history, topology): they never create or change the file."""

    def __init__(self, path, readonly: bool = False, busy_timeout_s: float = BUSY_TIMEOUT_S,
                 keep_days: float | None = KEEP_DAYS):
        self.path = Path(path)
        self.readonly = readonly
        self.busy_timeout_s = busy_timeout_s
        self.db = None
        try:
            self._open(keep_days)
        except sqlite3.Error as e:
            self.close()
            raise self._error(e) from None

    # ---- opening -------------------------------------------------------------------

    def _open(self, keep_days):
        p = self.path
        if p.is_dir():
            raise HistoryError(f"{p}: is a folder; --db expects a file")
        fresh = not p.exists() or p.stat().st_size == 0
        if fresh and self.readonly:
            raise HistoryError(f"{p}: no history here yet (`pollen monitor` records it; "
                               "--db chooses another file)")
        if not fresh:
            with open(p, "rb") as f:
                if f.read(len(_MAGIC)) != _MAGIC:
                    raise self._corrupt("it is not an SQLite database")
            # look first through a read-only connection: a file that is not
            # ours is never written to
            ro = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True,
                                 timeout=self.busy_timeout_s)
            try:
                empty, version = self._check_schema(ro)
                if not self.readonly and not empty:
                    bad = ro.execute("PRAGMA quick_check(1)").fetchone()[0]
                    if bad != "ok":
                        raise self._corrupt(f"the database is damaged ({bad})")
            finally:
                ro.close()
            if self.readonly:
                self.db = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True,
                                          timeout=self.busy_timeout_s, isolation_level=None)
                return
            fresh = empty
        else:
            version = SCHEMA_VERSION
        p.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(p), timeout=self.busy_timeout_s, isolation_level=None)
        if self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            raise HistoryError(f"{p}: could not switch the database to WAL mode")
        self.db.execute("PRAGMA synchronous=FULL")
        with self._write():
            if fresh and not self._tables(self.db):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.executemany("INSERT INTO meta VALUES (?, ?)",
                                    [("app", APP), ("schema_version", str(SCHEMA_VERSION)),
                                     ("created_t", str(time.time()))])
            elif not fresh and version < SCHEMA_VERSION:
                self._upgrade()
            if keep_days:
                self._prune(time.time() - keep_days * 86400)

    @staticmethod
    def _tables(db) -> set:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _upgrade(self):
        # an older history, opened to write: the columns it lacks are added
        # (the pollen that wrote it then refuses it as newer, by design). The
        # version is read again inside the write transaction: another monitor
        # may have moved it on since it was looked at
        version = int(self.db.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
        for v in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _UPGRADES[v]:
                self.db.execute(statement)
        self.db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                        (str(SCHEMA_VERSION),))

    def _check_schema(self, db) -> tuple[bool, int]:
        """(True, 0) for an empty database, else (False, its schema version);
        HistoryError for one that is not ours."""
        tables = self._tables(db)
        if not tables:
            return True, 0
        if "meta" not in tables:
            raise self._corrupt("it is an SQLite database, but not a pollen history "
                                f"(its tables: {', '.join(sorted(tables)[:5])})")
        meta = dict(db.execute("SELECT key, value FROM meta"))
        if meta.get("app") != APP:
            raise self._corrupt("it is an SQLite database, but not a pollen history")
        try:
            version = int(meta.get("schema_version"))
        except (TypeError, ValueError):
            raise self._corrupt("its schema version is missing") from None
        if version > SCHEMA_VERSION:
            raise HistoryError(f"{self.path}: history schema version {version} is newer than this "
                               f"pollen reads ({SCHEMA_VERSION}); update pollen, or choose another "
                               "file with --db")
        return False, version

    def _corrupt(self, why: str) -> HistoryError:
        return HistoryError(f"{self.path}: {why}. It was left as it is: move it aside "
                            f"(mv '{self.path}' '{self.path}.bad') and run again to start a "
                            "new history, or choose another file with --db")

    def _error(self, e: sqlite3.Error) -> HistoryError:
        text = str(e)
        if "locked" in text or "busy" in text:
            return HistoryError(f"{self.path}: the history database is locked by another program "
                                f"(another pollen monitor?) for more than {self.busy_timeout_s:g} s; "
                                "stop it, or choose another file with --db")
        if "malformed" in text or "not a database" in text or "corrupt" in text:
            return self._corrupt(f"the database is damaged ({text})")
        return HistoryError(f"{self.path}: {text}")

    # ---- writing -------------------------------------------------------------------

    class _Tx:
        def __init__(self, h):
            self.h = h

        def __enter__(self):
            self.h.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, et, e, tb):
            if et is None:
                self.h.db.execute("COMMIT")
            elif self.h.db.in_transaction:
                self.h.db.execute("ROLLBACK")

    def _write(self):
        return History._Tx(self)

    def record(self, event: dict, t: float, update=None, states=()):
        """One event, what the view made of it (mesh_view.Update) and the
        states of the nodes it touched, in one committed transaction."""
        if self.readonly:
            raise HistoryError(f"{self.path}: opened read-only")
        try:
            with self._write():
                self._record(event, t, update)
                self.save_nodes(states)
        except sqlite3.Error as e:
            raise self._error(e) from None

    def _record(self, event, t, u):
        db = self.db
        if u is None or u.keep_event:
            body = {k: v for k, v in event.items() if not str(k).startswith("_")}
            db.execute("INSERT INTO events (t, event, node, body) VALUES (?, ?, ?, ?)",
                       (t, str(event.get("event")), u.node if u else None,
                        json.dumps(body, default=str)))
        if u is None:
            return
        db.executemany(f"INSERT INTO samples ({', '.join(SAMPLE_FIELDS)}) "
                       f"VALUES ({', '.join('?' * len(SAMPLE_FIELDS))})",
                       [tuple(s.get(k) for k in SAMPLE_FIELDS) for s in u.samples])
        db.executemany("INSERT INTO links VALUES (?, ?, ?, ?, ?) ON CONFLICT (rx, tx) DO UPDATE "
                       "SET t = excluded.t, rssi_dbm = excluded.rssi_dbm, snr_db = excluded.snr_db "
                       "WHERE excluded.t >= links.t",
                       [(x["rx"], x["tx"], x["t"], x["rssi_dbm"], x["snr_db"]) for x in u.links])
        if u.message:
            m = u.message
            db.execute("INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (m["uid"], m["t"], m["kind"], m["from"], m["to"], m["id"], m["text"],
                        m["hops"], m["rssi_dbm"], m["snr_db"], m["via"]))

    def save_nodes(self, states, commit: bool = False):
        rows = [(s["id"], s.get("name"), s.get("seen_t"),
                 json.dumps({k: s.get(k) for k in STATE_FIELDS})) for s in states]
        if not rows:
            return
        sql = ("INSERT INTO nodes VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
               "name = excluded.name, seen_t = excluded.seen_t, state = excluded.state")
        if not commit:
            self.db.executemany(sql, rows)
            return
        try:
            with self._write():
                self.db.executemany(sql, rows)
        except sqlite3.Error as e:
            raise self._error(e) from None

    def _prune(self, before_t: float):
        for table in ("events", "samples", "messages", "links"):
            self.db.execute(f"DELETE FROM {table} WHERE t < ?", (before_t,))

    # ---- reading -------------------------------------------------------------------

    def _query(self, sql, args=()):
        try:
            cur = self.db.execute(sql, args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
        except sqlite3.Error as e:
            raise self._error(e) from None

    def node_states(self) -> list[dict]:
        """Each node's last state, checked (mesh_view.clean_state); a row
        that is not JSON or has no valid id is left out."""
        out = []
        for r in self._query("SELECT id, state FROM nodes ORDER BY id"):
            try:
                s = json.loads(r["state"])
            except ValueError:
                continue
            s = clean_state(dict(s, id=r["id"])) if isinstance(s, dict) else None
            if s is not None:
                out.append(s)
        return out

    def resolve_node(self, text: str) -> list[str]:
        """Node ids for --node: a name (any case; a Meshtastic node's long or
        short name) or an id (8 hex digits, or fewer read as a hex number like
        the console does; a Meshtastic one as !11223344)."""
        want = text.strip().lower()
        ids = [r["id"] for r in self._query("SELECT id FROM nodes WHERE lower(name) = ?", (want,))]
        ids += [s["id"] for s in self.node_states()
                if (s["short_name"] or "").lower() == want and s["id"] not in ids]
        if ids:
            return ids
        if mesh_id(want):
            return [want]
        if re.fullmatch(r"[0-9a-f]{1,8}", want) and node_id(want.zfill(8)):
            return [want.zfill(8)]
        return []

    def known_nodes(self) -> list[str]:
        return [f"{r['name']} ({r['id']})" if r["name"] else r["id"]
                for r in self._query("SELECT id, name FROM nodes ORDER BY name, id")]

    def samples(self, nodes=None, since: float | None = None, limit: int | None = None) -> list[dict]:
        """Samples oldest first (the newest `limit` of them)."""
        return self._newest("samples", "node", nodes, since, limit)

    def messages(self, nodes=None, since: float | None = None, limit: int | None = None) -> list[dict]:
        """Messages oldest first (the newest `limit` of them); `nodes` matches sender."""
        return self._newest("messages", "src", nodes, since, limit)

    def _newest(self, table: str, node_column: str, nodes, since, limit) -> list[dict]:
        # a table's rows oldest first: the newest `limit` of them (all without one)
        where, args = self._where(nodes, node_column, since)
        sql = f"SELECT * FROM {table}{where} ORDER BY t DESC, rowid DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self._query(sql, args)[::-1]

    def recent_messages(self, limit: int = 50) -> list[dict]:
        """The newest messages, oldest first, as mesh_view keeps them."""
        return [{"uid": r["uid"], "t": r["t"], "kind": r["kind"], "from": r["src"], "to": r["dst"],
                 "id": r["msg_id"], "text": r["text"], "hops": r["hops"], "rssi_dbm": r["rssi_dbm"],
                 "snr_db": r["snr_db"], "via": r["via"]} for r in self.messages(limit=limit)]

    def links(self, since: float | None = None) -> list[dict]:
        where, args = self._where(None, None, since)
        return self._query(f"SELECT * FROM links{where} ORDER BY rx, tx", args)

    def event_count(self) -> int:
        return self._query("SELECT count(*) AS n FROM events")[0]["n"]

    @staticmethod
    def _where(nodes, column, since):
        clauses, args = [_VALID_T], []
        if nodes:
            clauses.append(f"{column} IN ({', '.join('?' * len(nodes))})")
            args += list(nodes)
        if since is not None:
            clauses.append("t >= ?")
            args.append(since)
        return " WHERE " + " AND ".join(clauses), args

    def close(self):
        if self.db is not None:
            self.db.close()
            self.db = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
