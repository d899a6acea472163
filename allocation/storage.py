"""Allocation tables: rounds (with their input files), runs (a solve of a round) and results.

Plain functions over a ``sqlite_utils.Database``; no web imports. Input files hold personal data
and live only in ``alloc_input``; logs and audit records carry ids, counts and hashes only.
Run states: ``queued`` → ``running`` → ``done`` | ``failed``.
"""
from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from shared.db import Migration, now_iso
from shared.errors import NotFound

RUN_STATES = ("queued", "running", "done", "failed")


def _m1_tables(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE alloc_round (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL DEFAULT '',
            applicants INTEGER NOT NULL DEFAULT 0,
            nurseries INTEGER NOT NULL DEFAULT 0,
            applicants_sha256 TEXT NOT NULL,
            nurseries_sha256 TEXT NOT NULL,
            rules_sha256 TEXT NOT NULL,
            rules_canonical TEXT NOT NULL DEFAULT ''
        )""")
    db.execute(
        """CREATE TABLE alloc_input (
            id INTEGER PRIMARY KEY,
            round_id INTEGER NOT NULL REFERENCES alloc_round(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('applicants','nurseries','rules')),
            filename TEXT NOT NULL DEFAULT '',
            sheet TEXT,
            sha256 TEXT NOT NULL,
            data BLOB NOT NULL,
            UNIQUE (round_id, kind)
        )""")
    db.execute(
        """CREATE TABLE alloc_run (
            id INTEGER PRIMARY KEY,
            round_id INTEGER NOT NULL REFERENCES alloc_round(id) ON DELETE CASCADE,
            state TEXT NOT NULL CHECK (state IN ('queued','running','done','failed')),
            stage TEXT NOT NULL DEFAULT '',
            progress REAL NOT NULL DEFAULT 0,
            seed INTEGER NOT NULL,
            time_limit_s REAL NOT NULL,
            workers INTEGER NOT NULL,
            solver TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT '',
            summary TEXT NOT NULL DEFAULT '{}',
            cutoff TEXT NOT NULL DEFAULT '[]',
            verifier TEXT NOT NULL DEFAULT '{}',
            result_csv TEXT,
            result_sha256 TEXT,
            report_html TEXT,
            error_message TEXT,
            created_by TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT
        )""")
    db.execute("CREATE INDEX alloc_run_round ON alloc_run(round_id)")
    db.execute(
        """CREATE TABLE alloc_result (
            run_id INTEGER NOT NULL REFERENCES alloc_run(id) ON DELETE CASCADE,
            applicant_id TEXT NOT NULL,
            nursery_id TEXT,
            preference_rank INTEGER,
            priority_rank INTEGER,
            reason TEXT NOT NULL DEFAULT '',
            explanation TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (run_id, applicant_id)
        )""")
    db.execute(
        """CREATE TABLE alloc_comparison (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES alloc_run(id) ON DELETE CASCADE,
            manual_sha256 TEXT NOT NULL,
            created_by TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            summary TEXT NOT NULL DEFAULT '{}',
            report_html TEXT NOT NULL DEFAULT ''
        )""")


MIGRATIONS = [Migration("alloc", 1, "rounds, inputs, runs, results, comparisons", _m1_tables)]


# --- rounds -------------------------------------------------------------------------------------

def create_round(db: sqlite_utils.Database, *, title: str, created_by: str, applicants: int, nurseries: int,
                 inputs: list[dict], rules_canonical: str) -> int:
    """``inputs``: dicts with kind, filename, sheet, sha256, data."""
    by_kind = {i["kind"]: i for i in inputs}
    with db.conn:
        cur = db.execute(
            "INSERT INTO alloc_round (title, created_at, created_by, applicants, nurseries, applicants_sha256,"
            " nurseries_sha256, rules_sha256, rules_canonical) VALUES (?,?,?,?,?,?,?,?,?)",
            [title, now_iso(), created_by, applicants, nurseries, by_kind["applicants"]["sha256"],
             by_kind["nurseries"]["sha256"], by_kind.get("rules", {}).get("sha256", ""), rules_canonical])
        rid = cur.lastrowid
        for i in inputs:
            db.execute("INSERT INTO alloc_input (round_id, kind, filename, sheet, sha256, data) VALUES (?,?,?,?,?,?)",
                       [rid, i["kind"], i["filename"], i.get("sheet"), i["sha256"], i["data"]])
    return rid


def get_round(db: sqlite_utils.Database, round_id: int) -> dict:
    row = db.execute("SELECT id, title, created_at, created_by, applicants, nurseries, applicants_sha256,"
                     " nurseries_sha256, rules_sha256, rules_canonical FROM alloc_round WHERE id = ?",
                     [round_id]).fetchone()
    if row is None:
        raise NotFound("指定された選考データが見つかりません。")
    keys = ["id", "title", "created_at", "created_by", "applicants", "nurseries", "applicants_sha256",
            "nurseries_sha256", "rules_sha256", "rules_canonical"]
    out = dict(zip(keys, row))
    out["files"] = {r[0]: {"filename": r[1], "sheet": r[2], "sha256": r[3]} for r in db.execute(
        "SELECT kind, filename, sheet, sha256 FROM alloc_input WHERE round_id = ?", [round_id]).fetchall()}
    return out


def list_rounds(db: sqlite_utils.Database, limit: int = 100) -> list[dict]:
    rows = db.execute("SELECT id, title, created_at, created_by, applicants, nurseries FROM alloc_round"
                      " ORDER BY id DESC LIMIT ?", [limit]).fetchall()
    keys = ["id", "title", "created_at", "created_by", "applicants", "nurseries"]
    return [dict(zip(keys, r)) for r in rows]


def delete_round(db: sqlite_utils.Database, round_id: int) -> None:
    """Delete a round with its files, runs, results and comparisons (foreign keys cascade)."""
    get_round(db, round_id)
    if db.execute("SELECT COUNT(*) FROM alloc_run WHERE round_id = ? AND state IN ('queued', 'running')",
                  [round_id]).fetchone()[0]:
        from shared.errors import Conflict
        raise Conflict("計算中のため削除できません。計算が終わってから削除してください。")
    with db.conn:
        db.execute("DELETE FROM alloc_round WHERE id = ?", [round_id])


def round_inputs(db: sqlite_utils.Database, round_id: int) -> dict[str, dict[str, Any]]:
    rows = db.execute("SELECT kind, filename, sheet, data FROM alloc_input WHERE round_id = ?", [round_id]).fetchall()
    if not rows:
        raise NotFound("指定された選考データが見つかりません。")
    return {r[0]: {"filename": r[1], "sheet": r[2], "data": bytes(r[3])} for r in rows}


# --- runs ---------------------------------------------------------------------------------------

_RUN_KEYS = ["id", "round_id", "state", "stage", "progress", "seed", "time_limit_s", "workers", "solver", "status",
             "summary", "cutoff", "verifier", "result_sha256", "error_message", "created_by", "created_at",
             "started_at", "finished_at"]


def create_run(db: sqlite_utils.Database, round_id: int, *, seed: int, time_limit_s: float, workers: int,
               created_by: str) -> int:
    get_round(db, round_id)
    cur = db.execute("INSERT INTO alloc_run (round_id, state, stage, seed, time_limit_s, workers, created_by,"
                     " created_at) VALUES (?,?,?,?,?,?,?,?)",
                     [round_id, "queued", "待機中", seed, time_limit_s, workers, created_by, now_iso()])
    return cur.lastrowid


def get_run(db: sqlite_utils.Database, run_id: int, *, full: bool = True) -> dict:
    row = db.execute(f"SELECT {', '.join(_RUN_KEYS)} FROM alloc_run WHERE id = ?", [run_id]).fetchone()
    if row is None:
        raise NotFound("指定された計算結果が見つかりません。")
    out = dict(zip(_RUN_KEYS, row))
    for k in ("summary", "cutoff", "verifier"):
        out[k] = json.loads(out[k]) if full else None
    return out


def list_runs(db: sqlite_utils.Database, round_id: int | None = None, limit: int = 100) -> list[dict]:
    sql = "SELECT id, round_id, state, stage, progress, seed, status, created_at, finished_at FROM alloc_run"
    args: list = []
    if round_id is not None:
        sql += " WHERE round_id = ?"
        args.append(round_id)
    sql += " ORDER BY id DESC LIMIT ?"
    args.append(limit)
    keys = ["id", "round_id", "state", "stage", "progress", "seed", "status", "created_at", "finished_at"]
    return [dict(zip(keys, r)) for r in db.execute(sql, args).fetchall()]


def set_progress(db: sqlite_utils.Database, run_id: int, stage: str, progress: float, state: str = "running") -> None:
    db.execute("UPDATE alloc_run SET state = ?, stage = ?, progress = ?, started_at = COALESCE(started_at, ?)"
               " WHERE id = ?", [state, stage, progress, now_iso(), run_id])


def finish_run(db: sqlite_utils.Database, run_id: int, *, solver: str, status: str, summary: dict, cutoff: list,
               verifier: dict, result_csv: str, result_sha256: str, report_html: str, rows: list[dict]) -> None:
    with db.conn:
        db.execute("DELETE FROM alloc_result WHERE run_id = ?", [run_id])
        db.conn.executemany(
            "INSERT INTO alloc_result (run_id, applicant_id, nursery_id, preference_rank, priority_rank, reason,"
            " explanation) VALUES (?,?,?,?,?,?,?)",
            [(run_id, r["applicant_id"], r["nursery_id"], r["preference_rank"], r["priority_rank"], r["reason"],
              r["explanation"]) for r in rows])
        db.execute("UPDATE alloc_run SET state = 'done', stage = '完了', progress = 1, solver = ?, status = ?,"
                   " summary = ?, cutoff = ?, verifier = ?, result_csv = ?, result_sha256 = ?, report_html = ?,"
                   " finished_at = ? WHERE id = ?",
                   [solver, status, json.dumps(summary, ensure_ascii=False), json.dumps(cutoff, ensure_ascii=False),
                    json.dumps(verifier, ensure_ascii=False), result_csv, result_sha256, report_html, now_iso(),
                    run_id])


def fail_run(db: sqlite_utils.Database, run_id: int, message: str) -> None:
    db.execute("UPDATE alloc_run SET state = 'failed', stage = '失敗', error_message = ?, finished_at = ?"
               " WHERE id = ?", [message, now_iso(), run_id])


def fail_interrupted(db: sqlite_utils.Database, grace_s: float = 600.0) -> int:
    """Mark runs that cannot still be running (created long before their time limit would have
    ended) as failed. Runs of other live server processes are left alone."""
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    stale = [rid for rid, created, limit in db.execute(
        "SELECT id, created_at, time_limit_s FROM alloc_run WHERE state IN ('queued', 'running')").fetchall()
        if (now - datetime.fromisoformat(created)).total_seconds() > 3 * limit + grace_s]
    for rid in stale:
        fail_run(db, rid, "サーバーの再起動により計算が中断されました。もう一度実行してください。")
    return len(stale)


def run_blob(db: sqlite_utils.Database, run_id: int, column: str) -> str:
    if column not in ("result_csv", "report_html"):
        raise ValueError(column)
    row = db.execute(f"SELECT state, {column} FROM alloc_run WHERE id = ?", [run_id]).fetchone()
    if row is None:
        raise NotFound("指定された計算結果が見つかりません。")
    if row[0] != "done" or row[1] is None:
        raise NotFound("計算がまだ終わっていません。")
    return row[1]


def results(db: sqlite_utils.Database, run_id: int, *, applicant_id: str | None = None, nursery_id: str | None = None,
            unplaced: bool = False, offset: int = 0, limit: int = 100) -> dict:
    where = ["run_id = ?"]
    args: list = [run_id]
    if applicant_id:
        where.append("applicant_id = ?")
        args.append(applicant_id)
    if nursery_id:
        where.append("nursery_id = ?")
        args.append(nursery_id)
    if unplaced:
        where.append("nursery_id IS NULL")
    w = " AND ".join(where)
    total = db.execute(f"SELECT COUNT(*) FROM alloc_result WHERE {w}", args).fetchone()[0]
    rows = db.execute(f"SELECT applicant_id, nursery_id, preference_rank, priority_rank, reason, explanation"
                      f" FROM alloc_result WHERE {w} ORDER BY priority_rank LIMIT ? OFFSET ?",
                      args + [limit, offset]).fetchall()
    keys = ["applicant_id", "nursery_id", "preference_rank", "priority_rank", "reason", "explanation"]
    return {"total": total, "offset": offset, "items": [dict(zip(keys, r)) for r in rows]}


def create_comparison(db: sqlite_utils.Database, run_id: int, *, manual_sha256: str, created_by: str,
                      summary: dict, report_html: str) -> int:
    cur = db.execute("INSERT INTO alloc_comparison (run_id, manual_sha256, created_by, created_at, summary,"
                     " report_html) VALUES (?,?,?,?,?,?)",
                     [run_id, manual_sha256, created_by, now_iso(), json.dumps(summary, ensure_ascii=False),
                      report_html])
    return cur.lastrowid


def comparison_html(db: sqlite_utils.Database, comparison_id: int) -> str:
    row = db.execute("SELECT report_html FROM alloc_comparison WHERE id = ?", [comparison_id]).fetchone()
    if row is None:
        raise NotFound("指定された比較結果が見つかりません。")
    return row[0]
