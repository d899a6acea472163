"""One SQLite file (WAL mode) through sqlite-utils, and versioned migrations.

Each service owns its tables (prefixed ``chat_``, ``minutes_``, ``alloc_``) and declares its
schema as an ordered list of :class:`Migration` steps in its own ``storage.py``. ``migrate`` applies
the steps not yet recorded in ``_migrations``, each in its own transaction, at start-up.
"""
from __future__ import annotations

import sqlite3
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import sqlite_utils


@dataclass(frozen=True)
class Migration:
    service: str  # "shared", "chat", "minutes", "alloc"
    version: int  # 1, 2, 3 ... per service, never reused
    name: str
    apply: Callable[[sqlite_utils.Database], None]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def connect(path: Path | str) -> sqlite_utils.Database:
    """Open the database with the settings every connection needs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return sqlite_utils.Database(conn)


class ConnectionPool:
    """Idle connections to one database file, reused across web requests.

    Opening a connection is cheap, but its first statement makes SQLite read and parse the whole
    schema (~0.5 ms with every service's tables), which a per-request connection pays on every
    request. A connection goes back to the pool only outside a transaction (an open one is rolled
    back first); at most ``max_idle`` are kept, the rest are closed.
    """

    def __init__(self, path: Path | str, max_idle: int = 16):
        self.path = Path(path)
        self.max_idle = max_idle
        self._idle: deque[sqlite_utils.Database] = deque()
        self._lock = threading.Lock()
        self._closed = False

    def try_acquire(self) -> sqlite_utils.Database | None:
        """An idle connection, or None (then call ``open``)."""
        with self._lock:
            return self._idle.pop() if self._idle else None

    def open(self) -> sqlite_utils.Database:
        return connect(self.path)

    def acquire(self) -> sqlite_utils.Database:
        return self.try_acquire() or self.open()

    def release(self, db: sqlite_utils.Database) -> None:
        conn = db.conn
        try:
            if conn.in_transaction:
                conn.rollback()
        except sqlite3.Error:
            conn.close()
            return
        with self._lock:
            if not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(db)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle), deque()
        for db in idle:
            db.conn.close()


def migrate(db: sqlite_utils.Database, migrations: Iterable[Migration]) -> list[str]:
    """Apply pending migrations in order; returns the names applied."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (service TEXT NOT NULL, version INTEGER NOT NULL,"
        " name TEXT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (service, version))"
    )
    done = {(r[0], r[1]) for r in db.execute("SELECT service, version FROM _migrations").fetchall()}
    applied = []
    steps = sorted(migrations, key=lambda m: (m.service, m.version))
    seen = set()
    for m in steps:
        if (m.service, m.version) in seen:
            raise ValueError(f"duplicate migration {m.service}/{m.version}")
        seen.add((m.service, m.version))
        if (m.service, m.version) in done:
            continue
        with db.conn:  # one transaction per step
            db.conn.execute("BEGIN IMMEDIATE")
            m.apply(db)
            db.conn.execute(
                "INSERT INTO _migrations (service, version, name, applied_at) VALUES (?,?,?,?)",
                (m.service, m.version, m.name, now_iso()),
            )
        applied.append(f"{m.service}/{m.version}:{m.name}")
    return applied


def healthy(db: sqlite_utils.Database) -> bool:
    try:
        return db.execute("SELECT 1").fetchone()[0] == 1
    except sqlite3.Error:
        return False
