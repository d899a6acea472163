"""Staff views over the log: unanswered/unhelpful report grouped by similar questions, dashboard
numbers, CSV export. Plain functions (no web imports)."""
from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import numpy as np
import sqlite_utils

from . import service, storage


def dashboard(db: sqlite_utils.Database, days: int = 30) -> dict:
    since = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat(timespec="seconds")
    rows = db.conn.execute(
        "SELECT substr(at, 1, 10) AS d, count(*), sum(kind = 'answer') FROM chat_log WHERE at >= ?"
        " GROUP BY d ORDER BY d", (since,)).fetchall()
    per_day = [{"date": d, "questions": n, "answered": int(a or 0)} for d, n, a in rows]
    total = sum(r["questions"] for r in per_day)
    answered = sum(r["answered"] for r in per_day)
    top = db.conn.execute(
        "SELECT l.faq_id, f.question, count(*) AS n FROM chat_log l LEFT JOIN chat_faq f"
        " ON f.faq_id = l.faq_id WHERE l.at >= ? AND l.faq_id IS NOT NULL GROUP BY l.faq_id"
        " ORDER BY n DESC, l.faq_id LIMIT 10", (since,)).fetchall()
    fb = db.conn.execute(
        "SELECT sum(helpful = 1), sum(helpful = 0) FROM chat_feedback WHERE at >= ?", (since,)).fetchone()
    groups = unanswered_report(db, days=days, limit=10)
    return {
        "days": days,
        "per_day": per_day,
        "questions": total,
        "answered": answered,
        "answered_share": round(answered / total, 3) if total else 0.0,
        "top_faqs": [{"faq_id": f, "question": q or "（削除済み）", "count": n} for f, q, n in top],
        "top_unanswered": [{"example": g["example"], "count": g["count"]} for g in groups],
        "feedback": {"helpful": int(fb[0] or 0), "unhelpful": int(fb[1] or 0)},
        "faqs": storage.count_faqs(db),
    }


def unanswered_report(db: sqlite_utils.Database, settings=None, *, days: int = 90,
                      limit: int = 50, threshold: float = 0.87, max_rows: int = 3000) -> list[dict]:
    """Questions the bot could not answer directly, and answers marked unhelpful, grouped by
    similar wording (greedy clustering on the query embeddings)."""
    since = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat(timespec="seconds")
    items: list[tuple[str, str, str, str]] = []  # (message, reason, at, faq_id)
    for msg, kind, at, top in db.conn.execute(
            "SELECT message, kind, at, top_faq_id FROM chat_log WHERE at >= ? AND kind != 'answer'"
            " ORDER BY id DESC LIMIT ?", (since, max_rows)):
        items.append((msg, "unanswered" if kind == "out_of_scope" else "suggested", at, top or ""))
    for msg, at, fid in db.conn.execute(
            "SELECT l.message, f.at, f.faq_id FROM chat_feedback f JOIN chat_log l ON l.id = f.log_id"
            " WHERE f.helpful = 0 AND f.at >= ? ORDER BY f.id DESC LIMIT ?", (since, max_rows)):
        items.append((msg, "unhelpful", at, fid))
    # unhelpful feedback without a logged question still counts against its FAQ
    orphan = Counter(r[0] for r in db.conn.execute(
        "SELECT faq_id FROM chat_feedback WHERE helpful = 0 AND log_id IS NULL AND at >= ?", (since,)))
    if not items and not orphan:
        return []
    counts = Counter(m for m, *_ in items)
    uniq = [m for m, _ in counts.most_common()]
    groups: list[dict] = []
    if uniq:
        if settings is not None:
            r = service.retriever(db, settings)
            vecs = np.stack([r.query_vector(m) for m in uniq])
        else:
            vecs = None
        reps: list[int] = []
        assign: dict[str, int] = {}
        for i, m in enumerate(uniq):
            g = -1
            if vecs is not None and reps:
                sims = vecs[reps] @ vecs[i]
                j = int(np.argmax(sims))
                if sims[j] >= threshold:
                    g = j
            if g < 0:
                reps.append(i)
                groups.append({"example": m, "questions": [], "count": 0, "reasons": Counter(),
                               "faq_ids": Counter(), "last_at": ""})
                g = len(groups) - 1
            assign[m] = g
        for msg, reason, at, fid in items:
            grp = groups[assign[msg]]
            grp["count"] += 1
            grp["reasons"][reason] += 1
            if fid:
                grp["faq_ids"][fid] += 1
            if msg not in grp["questions"] and len(grp["questions"]) < 5:
                grp["questions"].append(msg)
            grp["last_at"] = max(grp["last_at"], at)
    for fid, n in orphan.items():
        groups.append({"example": f"（FAQ {fid} への「役に立たなかった」）", "questions": [], "count": n,
                       "reasons": Counter({"unhelpful": n}), "faq_ids": Counter({fid: n}), "last_at": ""})
    groups.sort(key=lambda g: (-g["count"], g["example"]))
    out = []
    for g in groups[:limit]:
        out.append({"example": g["example"], "count": g["count"], "questions": g["questions"],
                    "reasons": dict(g["reasons"]), "faq_ids": [f for f, _ in g["faq_ids"].most_common(3)],
                    "last_at": g["last_at"]})
    return out


LOG_COLUMNS = ("id", "at", "session_id", "message", "kind", "faq_id", "top_faq_id", "confidence",
               "latency_ms", "channel", "feedback")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value):
    """Residents' text goes into this CSV; staff open it in Excel. A leading ' keeps a value
    that starts like a formula (= + - @ tab CR) from being evaluated (CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def log_csv(db: sqlite_utils.Database, days: int = 365) -> str:
    """The question log (messages already masked) with feedback, as CSV."""
    since = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat(timespec="seconds")
    fb = defaultdict(list)
    for log_id, helpful in db.conn.execute(
            "SELECT log_id, helpful FROM chat_feedback WHERE log_id IS NOT NULL"):
        fb[log_id].append("役に立った" if helpful else "役に立たなかった")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LOG_COLUMNS)
    for row in db.conn.execute(
            "SELECT id, at, session_id, message, kind, faq_id, top_faq_id, confidence, latency_ms,"
            " channel FROM chat_log WHERE at >= ? ORDER BY id", (since,)):
        w.writerow([_cell(v) for v in row] + ["/".join(fb.get(row[0], []))])
    return buf.getvalue()
