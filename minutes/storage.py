"""Minutes tables (meetings, jobs, segments, versioned utterances, speakers) and their storage functions.

Plain functions over a ``sqlite_utils.Database``; no web imports. Transcript text lives only in
``minutes_segment``, ``minutes_utterance`` and ``minutes_utterance_version`` and is never logged.

Job states: ``queued`` → ``running`` → ``done`` | ``failed`` | ``cancelled``; ``retry`` puts a
failed/cancelled job back to ``queued``. Segments are stored as the recogniser yields them, keyed
by (job_id, idx), so a worker that crashed resumes at ``offset = last stored segment's end``.

Utterance edits never overwrite: every save appends a row to ``minutes_utterance_version`` (version
1 is the machine draft) and the utterance row holds the current text and version number. A save
names the version it was based on; a stale base gets :class:`~shared.errors.Conflict` so two
clerks cannot silently overwrite each other.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import sqlite_utils

from shared.db import Migration, now_iso
from shared.errors import Conflict, InvalidInput, NotFound

JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")
HEADER_FIELDS = ("title", "held_at", "place", "attendees", "agenda")
HEADER_LABELS = {"title": "会議名", "held_at": "日時", "place": "場所", "attendees": "出席者",
                 "agenda": "議題"}
HEADER_MAX_CHARS = {"title": 200, "held_at": 100, "place": 200, "attendees": 2000, "agenda": 2000}
UTTERANCE_MAX_CHARS = 20_000
SPEAKER_NAME_MAX_CHARS = 60


# --- schema -------------------------------------------------------------------------------------

def _m1_tables(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE minutes_meeting (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL DEFAULT '',
            held_at TEXT NOT NULL DEFAULT '',
            place TEXT NOT NULL DEFAULT '',
            attendees TEXT NOT NULL DEFAULT '',
            agenda TEXT NOT NULL DEFAULT '',
            owner_id INTEGER,
            audio_path TEXT,
            audio_mime TEXT NOT NULL DEFAULT 'application/octet-stream',
            audio_bytes INTEGER NOT NULL DEFAULT 0,
            audio_format TEXT NOT NULL DEFAULT '',
            duration_s REAL,
            num_speakers INTEGER,
            model TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            expires_at TEXT
        )"""
    )
    db.execute("CREATE INDEX minutes_meeting_created ON minutes_meeting(created_at)")
    db.execute(
        """CREATE TABLE minutes_job (
            id INTEGER PRIMARY KEY,
            meeting_id INTEGER NOT NULL REFERENCES minutes_meeting(id) ON DELETE CASCADE,
            state TEXT NOT NULL CHECK (state IN ('queued','running','done','failed','cancelled')),
            progress REAL NOT NULL DEFAULT 0,
            done_s REAL NOT NULL DEFAULT 0,
            eta_s REAL,
            stage TEXT NOT NULL DEFAULT '',
            audio_path TEXT NOT NULL,
            duration_s REAL,
            resumed_from_s REAL,
            segments_before INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            error_code TEXT,
            error_message TEXT,
            worker_id TEXT,
            heartbeat REAL,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            updated_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX minutes_job_state ON minutes_job(state, id)")
    db.execute("CREATE INDEX minutes_job_meeting ON minutes_job(meeting_id)")
    db.execute(
        """CREATE TABLE minutes_segment (
            job_id INTEGER NOT NULL REFERENCES minutes_job(id) ON DELETE CASCADE,
            meeting_id INTEGER NOT NULL REFERENCES minutes_meeting(id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            start REAL NOT NULL,
            "end" REAL NOT NULL,
            text TEXT NOT NULL,
            words TEXT NOT NULL DEFAULT '[]',
            avg_logprob REAL NOT NULL DEFAULT 0,
            compression_ratio REAL NOT NULL DEFAULT 1,
            no_speech_prob REAL NOT NULL DEFAULT 0,
            temperature REAL NOT NULL DEFAULT 0,
            dropped TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            PRIMARY KEY (job_id, idx)
        )"""
    )
    db.execute("CREATE INDEX minutes_segment_meeting ON minutes_segment(meeting_id)")
    db.execute(
        """CREATE TABLE minutes_speaker (
            id INTEGER PRIMARY KEY,
            meeting_id INTEGER NOT NULL REFERENCES minutes_meeting(id) ON DELETE CASCADE,
            label TEXT NOT NULL,
            display_name TEXT NOT NULL,
            merged_into INTEGER REFERENCES minutes_speaker(id) ON DELETE SET NULL,
            position INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL,
            UNIQUE (meeting_id, label)
        )"""
    )
    db.execute(
        """CREATE TABLE minutes_utterance (
            id INTEGER PRIMARY KEY,
            meeting_id INTEGER NOT NULL REFERENCES minutes_meeting(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            start REAL NOT NULL,
            "end" REAL NOT NULL,
            speaker_label TEXT NOT NULL DEFAULT '',
            text TEXT NOT NULL,
            raw_text TEXT NOT NULL,
            segment_indexes TEXT NOT NULL DEFAULT '[]',
            version INTEGER NOT NULL DEFAULT 1,
            updated_at TEXT NOT NULL,
            updated_by INTEGER,
            UNIQUE (meeting_id, position)
        )"""
    )
    db.execute(
        """CREATE TABLE minutes_utterance_version (
            id INTEGER PRIMARY KEY,
            utterance_id INTEGER NOT NULL REFERENCES minutes_utterance(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            text TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('machine','edit','restore')),
            author_id INTEGER,
            created_at TEXT NOT NULL,
            UNIQUE (utterance_id, version)
        )"""
    )


def _m2_diarization(db: sqlite_utils.Database) -> None:
    # JSON {"turns": [[start, end, speaker], ...] | null}; NULL = not computed yet. Kept so that a
    # resumed job does not run the (expensive) diarization again.
    db.execute("ALTER TABLE minutes_job ADD COLUMN diarization TEXT")


MIGRATIONS = [
    Migration("minutes", 1, "meetings, jobs, segments, speakers, versioned utterances", _m1_tables),
    Migration("minutes", 2, "job diarization result", _m2_diarization),
]


# --- helpers ------------------------------------------------------------------------------------

def _rows(db: sqlite_utils.Database, sql: str, params: Iterable[Any] = ()) -> list[dict]:
    cur = db.execute(sql, list(params))
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _row(db: sqlite_utils.Database, sql: str, params: Iterable[Any] = ()) -> dict | None:
    rows = _rows(db, sql, params)
    return rows[0] if rows else None


class _tx:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` on an autocommit connection (rollback on error)."""

    def __init__(self, db: sqlite_utils.Database):
        self.conn = db.conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
        return False


def transaction(db: sqlite_utils.Database) -> _tx:
    return _tx(db)


def _clean_header(values: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in HEADER_FIELDS:
        if key not in values or values[key] is None:
            continue
        v = str(values[key]).replace("\r\n", "\n").strip()
        if len(v) > HEADER_MAX_CHARS[key]:
            raise InvalidInput(f"{HEADER_LABELS[key]}は{HEADER_MAX_CHARS[key]}文字以内で入力してください。",
                               details=[{"field": key, "max": HEADER_MAX_CHARS[key]}])
        out[key] = v
    return out


# --- meetings -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NewAudio:
    path: str  # relative to settings.uploads_dir
    mime: str
    size: int
    format: str
    duration_s: float | None


def create_meeting(db: sqlite_utils.Database, *, owner_id: int | None, header: dict[str, Any],
                   audio: NewAudio, retention_days: int, num_speakers: int | None = None) -> tuple[int, int]:
    """Insert a meeting and its queued transcription job; returns (meeting_id, job_id)."""
    h = _clean_header(header)
    now = now_iso()
    expires = None
    if retention_days and retention_days > 0:
        expires = (datetime.now(timezone.utc) + timedelta(days=retention_days)).isoformat(timespec="seconds")
    with transaction(db):
        cur = db.execute(
            "INSERT INTO minutes_meeting (title, held_at, place, attendees, agenda, owner_id, audio_path,"
            " audio_mime, audio_bytes, audio_format, duration_s, num_speakers, created_at, updated_at,"
            " expires_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [h.get("title", ""), h.get("held_at", ""), h.get("place", ""), h.get("attendees", ""),
             h.get("agenda", ""), owner_id, audio.path, audio.mime, audio.size, audio.format,
             audio.duration_s, num_speakers, now, now, expires])
        meeting_id = cur.lastrowid
        cur = db.execute(
            "INSERT INTO minutes_job (meeting_id, state, audio_path, duration_s, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?)", [meeting_id, "queued", audio.path, audio.duration_s, now, now])
        job_id = cur.lastrowid
    return meeting_id, job_id


def get_meeting(db: sqlite_utils.Database, meeting_id: int) -> dict:
    m = _row(db, "SELECT * FROM minutes_meeting WHERE id = ?", [meeting_id])
    if m is None:
        raise NotFound("指定された会議が見つかりません。", code="meeting_not_found")
    return m


def update_header(db: sqlite_utils.Database, meeting_id: int, values: dict[str, Any]) -> list[str]:
    """Change header fields; returns the names of fields that changed."""
    current = get_meeting(db, meeting_id)
    h = _clean_header(values)
    changed = [k for k, v in h.items() if current[k] != v]
    if changed:
        sets = ", ".join(f"{k} = ?" for k in changed)
        db.execute(f"UPDATE minutes_meeting SET {sets}, updated_at = ? WHERE id = ?",
                   [h[k] for k in changed] + [now_iso(), meeting_id])
    return changed


def set_meeting_model(db: sqlite_utils.Database, meeting_id: int, model: str) -> None:
    db.execute("UPDATE minutes_meeting SET model = ? WHERE id = ?", [model, meeting_id])


def list_meetings(db: sqlite_utils.Database, limit: int = 200) -> list[dict]:
    """Meetings newest first, each with its latest job's state and progress."""
    return _rows(db, """
        SELECT m.id, m.title, m.held_at, m.place, m.created_at, m.updated_at, m.duration_s,
               m.audio_bytes, m.expires_at,
               j.id AS job_id, j.state, j.progress, j.eta_s, j.stage, j.error_code, j.error_message,
               j.attempts, j.updated_at AS job_updated_at,
               (SELECT COUNT(*) FROM minutes_utterance u WHERE u.meeting_id = m.id) AS utterances
        FROM minutes_meeting m
        LEFT JOIN minutes_job j ON j.id = (SELECT MAX(id) FROM minutes_job WHERE meeting_id = m.id)
        ORDER BY m.id DESC LIMIT ?""", [limit])


def delete_meeting_rows(db: sqlite_utils.Database, meeting_id: int) -> dict:
    """Delete a meeting and every row that belongs to it; returns counts and the audio path.

    The caller removes the audio file (see :func:`minutes.jobs.delete_meeting`).
    """
    m = get_meeting(db, meeting_id)
    counts = {}
    with transaction(db):
        for table in ("minutes_segment", "minutes_utterance", "minutes_speaker", "minutes_job"):
            counts[table] = db.execute(f"SELECT COUNT(*) FROM {table} WHERE meeting_id = ?",
                                       [meeting_id]).fetchone()[0]
        # Cascades remove jobs, segments, speakers, utterances and their versions.
        db.execute("UPDATE minutes_job SET cancel_requested = 1 WHERE meeting_id = ?", [meeting_id])
        db.execute("DELETE FROM minutes_meeting WHERE id = ?", [meeting_id])
    return {"audio_path": m["audio_path"], "counts": counts}


def expired_meetings(db: sqlite_utils.Database, retention_days: int, now: datetime | None = None) -> list[dict]:
    """Meetings created more than ``retention_days`` ago (none when retention is 0 or negative)."""
    if retention_days is None or retention_days <= 0:
        return []
    now = now or datetime.now(timezone.utc)
    cutoff = (now - timedelta(days=retention_days)).isoformat(timespec="seconds")
    return _rows(db, "SELECT id, audio_path, created_at FROM minutes_meeting WHERE created_at < ?"
                     " ORDER BY id", [cutoff])


# --- jobs ---------------------------------------------------------------------------------------

def get_job(db: sqlite_utils.Database, job_id: int) -> dict:
    j = _row(db, "SELECT * FROM minutes_job WHERE id = ?", [job_id])
    if j is None:
        raise NotFound("指定された処理が見つかりません。", code="job_not_found")
    return j


def find_job(db: sqlite_utils.Database, job_id: int) -> dict | None:
    return _row(db, "SELECT * FROM minutes_job WHERE id = ?", [job_id])


def latest_job(db: sqlite_utils.Database, meeting_id: int) -> dict | None:
    return _row(db, "SELECT * FROM minutes_job WHERE meeting_id = ? ORDER BY id DESC LIMIT 1",
                [meeting_id])


def list_jobs(db: sqlite_utils.Database, states: Iterable[str] | None = None, limit: int = 200) -> list[dict]:
    if states:
        st = list(states)
        return _rows(db, f"SELECT * FROM minutes_job WHERE state IN ({','.join('?' * len(st))})"
                         " ORDER BY id LIMIT ?", st + [limit])
    return _rows(db, "SELECT * FROM minutes_job ORDER BY id DESC LIMIT ?", [limit])


def claim_next_job(db: sqlite_utils.Database, worker_id: str) -> dict | None:
    """Atomically move the oldest queued job to ``running`` for ``worker_id``."""
    now = now_iso()
    pick = ("SELECT id FROM minutes_job WHERE state = 'queued' AND cancel_requested = 0"
            " ORDER BY id LIMIT 1")
    if db.execute(pick).fetchone() is None:  # idle poll: no write lock taken
        return None
    with transaction(db):
        row = db.execute(pick).fetchone()  # again under the lock: another worker may have won
        if row is None:
            return None
        db.execute("UPDATE minutes_job SET state = 'running', worker_id = ?, heartbeat = ?,"
                   " attempts = attempts + 1, started_at = COALESCE(started_at, ?), updated_at = ?,"
                   " error_code = NULL, error_message = NULL, eta_s = NULL WHERE id = ?",
                   [worker_id, time.time(), now, now, row[0]])
    return get_job(db, row[0])


def heartbeat(db: sqlite_utils.Database, job_id: int, worker_id: str) -> bool:
    """Refresh the job's heartbeat; False when the job is no longer this worker's running job."""
    cur = db.execute("UPDATE minutes_job SET heartbeat = ? WHERE id = ? AND state = 'running'"
                     " AND worker_id = ?", [time.time(), job_id, worker_id])
    return cur.rowcount == 1


def requeue_stale_jobs(db: sqlite_utils.Database, stale_after_s: float, *, max_attempts: int,
                       failed_message: str) -> dict[str, list[int]]:
    """Running jobs without a heartbeat for ``stale_after_s`` go back to the queue (they resume);
    those that already used ``max_attempts`` fail instead (a recording that crashes the worker
    every time must not loop forever)."""
    cutoff = time.time() - stale_after_s
    sql = ("SELECT id, attempts, cancel_requested FROM minutes_job WHERE state = 'running'"
           " AND (heartbeat IS NULL OR heartbeat < ?)")
    if not db.execute(sql, [cutoff]).fetchall():  # the usual case: no write lock taken
        return {"requeued": [], "failed": []}
    with transaction(db):
        return _requeue(db, db.execute(sql, [cutoff]).fetchall(), max_attempts, failed_message)


def running_jobs(db: sqlite_utils.Database) -> list[dict]:
    return _rows(db, "SELECT id, worker_id, heartbeat FROM minutes_job WHERE state = 'running'")


def requeue_jobs_of_dead_workers(db: sqlite_utils.Database, dead_worker_ids: Iterable[str], *,
                                 max_attempts: int, failed_message: str) -> dict[str, list[int]]:
    """Like :func:`requeue_stale_jobs`, for running jobs whose worker is known to be gone."""
    ids = list(dead_worker_ids)
    if not ids:
        return {"requeued": [], "failed": []}
    with transaction(db):
        rows = db.execute(f"SELECT id, attempts, cancel_requested FROM minutes_job WHERE state = 'running'"
                          f" AND worker_id IN ({','.join('?' * len(ids))})", ids).fetchall()
        return _requeue(db, rows, max_attempts, failed_message)


def _requeue(db, rows, max_attempts: int, failed_message: str) -> dict[str, list[int]]:
    now = now_iso()
    out: dict[str, list[int]] = {"requeued": [], "failed": []}
    for job_id, attempts, cancel in rows:
        if cancel:
            db.execute("UPDATE minutes_job SET state = 'cancelled', worker_id = NULL, eta_s = NULL,"
                       " finished_at = ?, updated_at = ? WHERE id = ?", [now, now, job_id])
        elif attempts >= max_attempts:
            db.execute("UPDATE minutes_job SET state = 'failed', worker_id = NULL, eta_s = NULL,"
                       " error_code = 'worker_crashed', error_message = ?, finished_at = ?,"
                       " updated_at = ? WHERE id = ?", [failed_message, now, now, job_id])
            out["failed"].append(job_id)
        else:
            db.execute("UPDATE minutes_job SET state = 'queued', worker_id = NULL, eta_s = NULL,"
                       " stage = 'resume', updated_at = ? WHERE id = ?", [now, job_id])
            out["requeued"].append(job_id)
    return out


def update_progress(db: sqlite_utils.Database, job_id: int, *, progress: float, done_s: float,
                    eta_s: float | None, stage: str, duration_s: float | None = None) -> None:
    db.execute("UPDATE minutes_job SET progress = ?, done_s = ?, eta_s = ?, stage = ?, heartbeat = ?,"
               " duration_s = COALESCE(?, duration_s), updated_at = ? WHERE id = ? AND state = 'running'",
               [round(max(0.0, min(100.0, progress)), 1), round(done_s, 2),
                None if eta_s is None else round(eta_s, 1), stage, time.time(), duration_s,
                now_iso(), job_id])


def mark_resume_point(db: sqlite_utils.Database, job_id: int, offset_s: float, stored: int) -> None:
    """Record where this run starts transcribing (0 for a fresh job) and how many segments it kept."""
    db.execute("UPDATE minutes_job SET resumed_from_s = ?, segments_before = ? WHERE id = ?",
               [round(offset_s, 3), stored, job_id])


def save_diarization(db: sqlite_utils.Database, job_id: int, turns: list[tuple[float, float, str]] | None) -> None:
    db.execute("UPDATE minutes_job SET diarization = ? WHERE id = ?",
               [json.dumps({"turns": None if turns is None else [list(t) for t in turns]},
                           ensure_ascii=False), job_id])


def load_diarization(db: sqlite_utils.Database, job_id: int) -> tuple[bool, list[tuple[float, float, str]] | None]:
    """(computed?, turns or None)."""
    row = db.execute("SELECT diarization FROM minutes_job WHERE id = ?", [job_id]).fetchone()
    if row is None or row[0] is None:
        return False, None
    turns = json.loads(row[0]).get("turns")
    return True, None if turns is None else [(float(a), float(b), str(c)) for a, b, c in turns]


def cancel_requested(db: sqlite_utils.Database, job_id: int) -> bool:
    """True when the clerk asked to cancel or the job (or its meeting) is gone."""
    row = db.execute("SELECT cancel_requested, state FROM minutes_job WHERE id = ?", [job_id]).fetchone()
    return row is None or bool(row[0]) or row[1] != "running"


def request_cancel(db: sqlite_utils.Database, job_id: int) -> str:
    """Cancel a queued job at once, or ask the worker to stop a running one. Returns the new state."""
    job = get_job(db, job_id)
    now = now_iso()
    if job["state"] == "queued":
        db.execute("UPDATE minutes_job SET state = 'cancelled', cancel_requested = 1, eta_s = NULL,"
                   " finished_at = ?, updated_at = ? WHERE id = ? AND state = 'queued'", [now, now, job_id])
    elif job["state"] == "running":
        db.execute("UPDATE minutes_job SET cancel_requested = 1, updated_at = ? WHERE id = ?", [now, job_id])
    else:
        raise Conflict("この処理は実行中ではないため取り消せません。", code="job_not_active")
    return get_job(db, job_id)["state"]


def retry_job(db: sqlite_utils.Database, job_id: int) -> None:
    """Put a failed or cancelled job back in the queue; it resumes from its stored segments."""
    job = get_job(db, job_id)
    if job["state"] not in ("failed", "cancelled"):
        raise Conflict("失敗または取り消しされた処理だけを再実行できます。", code="job_not_retryable")
    now = now_iso()
    db.execute("UPDATE minutes_job SET state = 'queued', cancel_requested = 0, attempts = 0,"
               " error_code = NULL, error_message = NULL, eta_s = NULL, finished_at = NULL,"
               " stage = 'retry', updated_at = ? WHERE id = ?", [now, job_id])


def finish_job(db: sqlite_utils.Database, job_id: int, state: str, *, error_code: str | None = None,
               error_message: str | None = None, worker_id: str | None = None) -> bool:
    """End a running job (done/failed/cancelled); False when it was not running any more (or,
    with ``worker_id``, not running for that worker)."""
    assert state in ("done", "failed", "cancelled")
    now = now_iso()
    sql = ("UPDATE minutes_job SET state = ?, error_code = ?, error_message = ?, eta_s = NULL,"
           " progress = CASE WHEN ? = 'done' THEN 100 ELSE progress END, stage = ?, worker_id = NULL,"
           " finished_at = ?, updated_at = ? WHERE id = ? AND state = 'running'")
    params = [state, error_code, error_message, state, state, now, now, job_id]
    if worker_id is not None:
        sql += " AND worker_id = ?"
        params.append(worker_id)
    return db.execute(sql, params).rowcount == 1


# --- segments -----------------------------------------------------------------------------------

def store_segment(db: sqlite_utils.Database, job_id: int, meeting_id: int, seg: dict[str, Any], *,
                  worker_id: str | None = None) -> bool:
    """Store one recognised segment (a :meth:`minutes.types.Segment.to_dict`), idempotent by index.

    With ``worker_id`` the row is written only while the job is still running for that worker
    (returns False otherwise: cancelled, deleted, or taken over after a stale heartbeat).
    """
    values = [job_id, meeting_id, int(seg["index"]), float(seg["start"]), float(seg["end"]), seg["text"],
              json.dumps(seg.get("words") or [], ensure_ascii=False),
              float(seg.get("avg_logprob", 0.0)), float(seg.get("compression_ratio", 1.0)),
              float(seg.get("no_speech_prob", 0.0)), float(seg.get("temperature") or 0.0),
              seg.get("dropped") or "", now_iso()]
    sql = ('INSERT OR REPLACE INTO minutes_segment (job_id, meeting_id, idx, start, "end", text, words,'
           " avg_logprob, compression_ratio, no_speech_prob, temperature, dropped, created_at)")
    if worker_id is None:
        db.execute(sql + " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", values)
        return True
    cur = db.execute(sql + " SELECT ?,?,?,?,?,?,?,?,?,?,?,?,? WHERE EXISTS (SELECT 1 FROM minutes_job"
                     " WHERE id = ? AND state = 'running' AND worker_id = ?)", values + [job_id, worker_id])
    return cur.rowcount == 1


def load_segments(db: sqlite_utils.Database, job_id: int) -> list[dict]:
    out = []
    for r in _rows(db, 'SELECT idx, start, "end", text, words, avg_logprob, compression_ratio,'
                       " no_speech_prob, temperature, dropped FROM minutes_segment WHERE job_id = ?"
                       " ORDER BY idx", [job_id]):
        r["index"] = r.pop("idx")
        r["words"] = json.loads(r["words"])
        out.append(r)
    return out


def segment_stats(db: sqlite_utils.Database, job_id: int) -> tuple[int, float]:
    """(number of stored segments, end of the last stored segment)."""
    row = db.execute('SELECT COUNT(*), MAX(idx) FROM minutes_segment WHERE job_id = ?', [job_id]).fetchone()
    if not row[0]:
        return 0, 0.0
    end = db.execute('SELECT "end" FROM minutes_segment WHERE job_id = ? AND idx = ?', [job_id, row[1]]).fetchone()[0]
    return int(row[0]), float(end)


def delete_segments(db: sqlite_utils.Database, job_id: int) -> int:
    return db.execute("DELETE FROM minutes_segment WHERE job_id = ?", [job_id]).rowcount


# --- utterances and speakers --------------------------------------------------------------------

def replace_draft(db: sqlite_utils.Database, meeting_id: int, utterances: list[dict[str, Any]],
                  speaker_labels: list[str]) -> int:
    """Store the machine draft (utterances as version 1, speakers) for a meeting that has none yet.

    A meeting that already has utterances keeps them (and their edits): the draft is only written
    once; returns the number of utterances written.
    """
    now = now_iso()
    with transaction(db):
        have = db.execute("SELECT COUNT(*) FROM minutes_utterance WHERE meeting_id = ?",
                          [meeting_id]).fetchone()[0]
        if have:
            return 0
        labels = list(dict.fromkeys([*speaker_labels, *(u.get("speaker", "") for u in utterances)]))
        for pos, label in enumerate(l for l in labels if l):
            db.execute("INSERT OR IGNORE INTO minutes_speaker (meeting_id, label, display_name, position,"
                       " updated_at) VALUES (?,?,?,?,?)", [meeting_id, label, label, pos, now])
        for pos, u in enumerate(utterances):
            cur = db.execute(
                'INSERT INTO minutes_utterance (meeting_id, position, start, "end", speaker_label, text,'
                " raw_text, segment_indexes, version, updated_at) VALUES (?,?,?,?,?,?,?,?,1,?)",
                [meeting_id, pos, float(u["start"]), float(u["end"]), u.get("speaker", ""), u["text"],
                 u.get("raw_text", u["text"]), json.dumps(u.get("segment_indexes") or []), now])
            db.execute("INSERT INTO minutes_utterance_version (utterance_id, version, text, source,"
                       " created_at) VALUES (?,1,?,'machine',?)", [cur.lastrowid, u["text"], now])
    return len(utterances)


def speakers(db: sqlite_utils.Database, meeting_id: int) -> list[dict]:
    """Speakers of a meeting with ``effective_id`` / ``effective_name`` after merges."""
    rows = _rows(db, "SELECT id, label, display_name, merged_into, position FROM minutes_speaker"
                     " WHERE meeting_id = ? ORDER BY position, id", [meeting_id])
    by_id = {r["id"]: r for r in rows}
    for r in rows:
        target, seen = r, set()
        while target["merged_into"] is not None and target["merged_into"] in by_id and target["id"] not in seen:
            seen.add(target["id"])
            target = by_id[target["merged_into"]]
        r["effective_id"] = target["id"]
        r["effective_name"] = target["display_name"]
    return rows


def rename_speaker(db: sqlite_utils.Database, meeting_id: int, speaker_id: int, display_name: str) -> None:
    name = (display_name or "").strip()
    if not name:
        raise InvalidInput("話者名を入力してください。", code="speaker_name_empty")
    if len(name) > SPEAKER_NAME_MAX_CHARS:
        raise InvalidInput(f"話者名は{SPEAKER_NAME_MAX_CHARS}文字以内で入力してください。")
    cur = db.execute("UPDATE minutes_speaker SET display_name = ?, updated_at = ? WHERE id = ? AND meeting_id = ?",
                     [name, now_iso(), speaker_id, meeting_id])
    if cur.rowcount != 1:
        raise NotFound("指定された話者が見つかりません。", code="speaker_not_found")


def merge_speakers(db: sqlite_utils.Database, meeting_id: int, source_id: int, target_id: int) -> None:
    """Show every line of ``source`` as ``target`` (reversible with :func:`unmerge_speaker`)."""
    rows = {r["id"]: r for r in speakers(db, meeting_id)}
    if source_id not in rows or target_id not in rows:
        raise NotFound("指定された話者が見つかりません。", code="speaker_not_found")
    if rows[target_id]["effective_id"] == rows[source_id]["effective_id"]:
        raise InvalidInput("同じ話者どうしは統合できません。", code="speaker_same")
    target = rows[target_id]["effective_id"]
    now = now_iso()
    with transaction(db):
        # Anything already merged into the source follows it to the target (no chains).
        db.execute("UPDATE minutes_speaker SET merged_into = ?, updated_at = ? WHERE meeting_id = ?"
                   " AND merged_into = ?", [target, now, meeting_id, source_id])
        db.execute("UPDATE minutes_speaker SET merged_into = ?, updated_at = ? WHERE id = ?",
                   [target, now, source_id])


def unmerge_speaker(db: sqlite_utils.Database, meeting_id: int, speaker_id: int) -> None:
    cur = db.execute("UPDATE minutes_speaker SET merged_into = NULL, updated_at = ? WHERE id = ?"
                     " AND meeting_id = ?", [now_iso(), speaker_id, meeting_id])
    if cur.rowcount != 1:
        raise NotFound("指定された話者が見つかりません。", code="speaker_not_found")


def utterances(db: sqlite_utils.Database, meeting_id: int) -> list[dict]:
    """Current utterances in order, with the effective speaker name after renames/merges."""
    spk = {r["label"]: r for r in speakers(db, meeting_id)}
    out = []
    for r in _rows(db, 'SELECT id, position, start, "end", speaker_label, text, raw_text, segment_indexes,'
                       " version, updated_at FROM minutes_utterance WHERE meeting_id = ? ORDER BY position",
                   [meeting_id]):
        s = spk.get(r["speaker_label"])
        r["speaker_id"] = s["effective_id"] if s else None
        r["speaker"] = s["effective_name"] if s else r["speaker_label"]
        r["segment_indexes"] = json.loads(r["segment_indexes"])
        out.append(r)
    return out


def get_utterance(db: sqlite_utils.Database, meeting_id: int, utterance_id: int) -> dict:
    r = _row(db, "SELECT * FROM minutes_utterance WHERE id = ? AND meeting_id = ?", [utterance_id, meeting_id])
    if r is None:
        raise NotFound("指定された発言が見つかりません。", code="utterance_not_found")
    return r


def edit_utterance(db: sqlite_utils.Database, meeting_id: int, utterance_id: int, text: str, *,
                   base_version: int | None, author_id: int | None, source: str = "edit") -> int:
    """Save new text as a new version; returns the new version number.

    ``base_version``: the version the editor started from; when another save landed in between,
    raise :class:`Conflict` (the other edit is kept and the clerk can look at both).
    """
    text = (text or "").replace("\r\n", "\n").strip()
    if len(text) > UTTERANCE_MAX_CHARS:
        raise InvalidInput(f"発言は{UTTERANCE_MAX_CHARS}文字以内で入力してください。")
    now = now_iso()
    with transaction(db):
        row = db.execute("SELECT version, text FROM minutes_utterance WHERE id = ? AND meeting_id = ?",
                         [utterance_id, meeting_id]).fetchone()
        if row is None:
            raise NotFound("指定された発言が見つかりません。", code="utterance_not_found")
        current, current_text = row
        if base_version is not None and base_version != current:
            raise Conflict("この発言は他の画面で先に更新されました。最新の内容を読み込んでから編集してください。",
                           code="utterance_version_conflict", details={"current_version": current})
        if current_text == text:
            return current
        new = current + 1
        db.execute("INSERT INTO minutes_utterance_version (utterance_id, version, text, source, author_id,"
                   " created_at) VALUES (?,?,?,?,?,?)", [utterance_id, new, text, source, author_id, now])
        db.execute("UPDATE minutes_utterance SET text = ?, version = ?, updated_at = ?, updated_by = ?"
                   " WHERE id = ?", [text, new, now, author_id, utterance_id])
    return new


def utterance_versions(db: sqlite_utils.Database, meeting_id: int, utterance_id: int) -> list[dict]:
    get_utterance(db, meeting_id, utterance_id)
    return _rows(db, "SELECT v.version, v.text, v.source, v.created_at, a.username AS author"
                     " FROM minutes_utterance_version v LEFT JOIN auth_user a ON a.id = v.author_id"
                     " WHERE v.utterance_id = ? ORDER BY v.version DESC", [utterance_id])


def restore_version(db: sqlite_utils.Database, meeting_id: int, utterance_id: int, version: int,
                    author_id: int | None) -> int:
    """Make an earlier version current again (as a new version; nothing is lost)."""
    get_utterance(db, meeting_id, utterance_id)
    row = db.execute("SELECT text FROM minutes_utterance_version WHERE utterance_id = ? AND version = ?",
                     [utterance_id, version]).fetchone()
    if row is None:
        raise NotFound("指定された版が見つかりません。", code="version_not_found")
    return edit_utterance(db, meeting_id, utterance_id, row[0], base_version=None, author_id=author_id,
                          source="restore")


def edit_counts(db: sqlite_utils.Database, meeting_id: int) -> dict[int, int]:
    """utterance id → number of stored versions (for the editor's 履歴 buttons)."""
    return {r[0]: r[1] for r in db.execute(
        "SELECT v.utterance_id, COUNT(*) FROM minutes_utterance_version v JOIN minutes_utterance u"
        " ON u.id = v.utterance_id WHERE u.meeting_id = ? GROUP BY v.utterance_id", [meeting_id]).fetchall()}
