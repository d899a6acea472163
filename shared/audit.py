"""Audit log: who did what, when, to which object. Never personal field values."""
from __future__ import annotations

import json

import sqlite_utils

from shared.db import now_iso

# Keys whose values must never be written to the audit log, whatever a caller passes.
_FORBIDDEN_KEYS = {"password", "name", "text", "message", "address", "phone", "email", "child_name"}


def record(db: sqlite_utils.Database, actor: str, action: str, target_type: str,
           target_id: str | int, **detail) -> int:
    bad = _FORBIDDEN_KEYS.intersection(detail)
    if bad:
        raise ValueError(f"audit detail must not carry personal fields: {sorted(bad)}")
    cur = db.execute(
        "INSERT INTO audit_log (at, actor, action, target_type, target_id, detail) VALUES (?,?,?,?,?,?)",
        [now_iso(), actor, action, target_type, str(target_id),
         json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)],
    )
    return cur.lastrowid


def tail(db: sqlite_utils.Database, limit: int = 20) -> list[dict]:
    rows = db.execute(
        "SELECT id, at, actor, action, target_type, target_id, detail FROM audit_log"
        " ORDER BY id DESC LIMIT ?", [limit]
    ).fetchall()
    keys = ["id", "at", "actor", "action", "target_type", "target_id", "detail"]
    out = [dict(zip(keys, r)) for r in reversed(rows)]
    for r in out:
        r["detail"] = json.loads(r["detail"])
    return out
