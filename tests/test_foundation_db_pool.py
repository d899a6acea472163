"""The per-app pool of SQLite connections behind ``get_db``."""
from __future__ import annotations

from shared.db import ConnectionPool


def test_pool_reuses_connections_and_rolls_back_open_transactions(tmp_path):
    pool = ConnectionPool(tmp_path / "t.db", max_idle=1)
    db = pool.acquire()
    db.conn.execute("CREATE TABLE t (x INTEGER)")
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    pool.release(db)
    again = pool.acquire()
    assert again is db  # reused, not reopened

    again.conn.execute("BEGIN")
    again.conn.execute("INSERT INTO t VALUES (1)")
    pool.release(again)  # unfinished transaction: rolled back, never committed
    other = pool.acquire()
    assert not other.conn.in_transaction
    assert other.conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0

    extra = pool.acquire()  # pool empty: a new connection
    assert extra is not other
    pool.release(other)
    pool.release(extra)  # over max_idle: closed
    assert pool.try_acquire() is other
    assert pool.try_acquire() is None
    pool.release(other)
    pool.close()
    assert pool.try_acquire() is None


def test_requests_share_pooled_connections(client, app):
    for _ in range(3):
        assert client.get("/api/chat/categories").status_code == 200
    pool = app.state.db_pool
    assert 1 <= len(pool._idle) <= pool.max_idle
