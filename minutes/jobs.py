"""Minutes jobs: accept an uploaded recording, cancel/retry, delete, retention, meeting views.

The thin adapters (``router.py``, ``worker_cli.py``) call these functions; the worker that runs the
transcription is in :mod:`minutes.worker`. No web imports here.

Files: recordings live under ``settings.uploads_dir / "minutes"`` with a random name; the database
stores the path relative to ``uploads_dir`` and every access resolves it back inside that folder.
"""
from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

from minutes import storage
from shared.config import Settings
from shared.errors import InvalidInput, NotFound

log = logging.getLogger(__name__)

UPLOAD_SUBDIR = "minutes"

# container name reported by PyAV → (MIME type the browser's <audio> understands, file suffix)
_FORMATS: dict[str, tuple[str, str]] = {
    "mp3": ("audio/mpeg", ".mp3"),
    "wav": ("audio/wav", ".wav"),
    "ogg": ("audio/ogg", ".ogg"),
    "flac": ("audio/flac", ".flac"),
    "matroska,webm": ("audio/webm", ".webm"),
    "mov,mp4,m4a,3gp,3g2,mj2": ("audio/mp4", ".m4a"),
    "aac": ("audio/aac", ".aac"),
    "asf": ("audio/x-ms-wma", ".wma"),
    "aiff": ("audio/aiff", ".aiff"),
}

WORKER_CRASHED_MESSAGE = ("処理が繰り返し中断されたため停止しました。録音ファイルを確認し、"
                          "「再実行」を押すか管理者に連絡してください。")


def upload_root(settings: Settings) -> Path:
    root = Path(settings.uploads_dir) / UPLOAD_SUBDIR
    root.mkdir(parents=True, exist_ok=True)
    return root


def new_upload_path(settings: Settings) -> Path:
    """A fresh temporary path inside the uploads folder for an incoming file."""
    return upload_root(settings) / f".incoming-{uuid.uuid4().hex}.part"


def resolve_audio(settings: Settings, relative: str | None) -> Path:
    """The absolute path of a stored recording, refusing anything outside the uploads folder."""
    if not relative:
        raise NotFound("録音ファイルがありません。", code="audio_missing")
    base = Path(settings.uploads_dir).resolve()
    path = (base / relative).resolve()
    if base not in path.parents:
        raise NotFound("録音ファイルがありません。", code="audio_missing",
                       log_message="audio path outside uploads dir")
    return path


def probe_audio(path: Path):
    """Check by decoding that ``path`` is audio; :class:`InvalidInput` (Japanese) otherwise."""
    from minutes.audio import probe  # noqa: PLC0415 (PyAV import is heavy)

    return probe(path)


def accept_upload(db: sqlite_utils.Database, settings: Settings, incoming: Path, *,
                  header: dict[str, Any], owner_id: int | None, num_speakers: int | None = None,
                  size: int | None = None) -> tuple[int, int]:
    """Validate a fully received upload and queue it; returns (meeting_id, job_id).

    ``incoming`` is a file under :func:`upload_root`; it is removed when it is not audio.
    """
    if num_speakers is not None and not (1 <= num_speakers <= 30):
        incoming.unlink(missing_ok=True)
        raise InvalidInput("話者の人数は1〜30で指定してください。", code="num_speakers_invalid")
    try:
        info = probe_audio(incoming)
    except Exception:
        incoming.unlink(missing_ok=True)
        raise
    mime, suffix = _FORMATS.get(info.container, ("application/octet-stream", ".bin"))
    final = upload_root(settings) / f"{uuid.uuid4().hex}{suffix}"
    os.replace(incoming, final)
    os.chmod(final, 0o600)  # personal data: readable by the service account only
    rel = str(final.relative_to(Path(settings.uploads_dir)))
    audio = storage.NewAudio(path=rel, mime=mime, size=size if size is not None else final.stat().st_size,
                             format=info.container, duration_s=info.duration_s)
    try:
        return storage.create_meeting(db, owner_id=owner_id, header=header, audio=audio,
                                      retention_days=settings.minutes_retention_days,
                                      num_speakers=num_speakers)
    except Exception:
        final.unlink(missing_ok=True)
        raise


# --- 用語登録 (the city's glossary, applied to every new transcription) ------------------------------

GLOSSARY_FILE = "glossary.csv"
GLOSSARY_MAX_CHARS = 200_000


def glossary_path(settings: Settings) -> Path:
    return upload_root(settings) / GLOSSARY_FILE


def glossary_text(settings: Settings) -> str:
    path = glossary_path(settings)
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def save_glossary(settings: Settings, text: str) -> int:
    """Check (via :func:`minutes.glossary.parse`, Japanese errors) and store the glossary; returns
    the number of entries. An empty text removes it."""
    from minutes import glossary  # noqa: PLC0415

    text = (text or "").replace("\r\n", "\n")
    if len(text) > GLOSSARY_MAX_CHARS:
        raise InvalidInput(f"用語登録は{GLOSSARY_MAX_CHARS:,}文字以内にしてください。", code="glossary_too_long")
    entries = len(glossary.parse(text))
    path = glossary_path(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return entries


def load_glossary(settings: Settings):
    """The stored glossary (a :class:`minutes.glossary.Glossary`), or None when there is none."""
    from minutes import glossary  # noqa: PLC0415

    text = glossary_text(settings)
    if not text.strip():
        return None
    g = glossary.parse(text)
    return g if len(g) else None


def delete_meeting(db: sqlite_utils.Database, settings: Settings, meeting_id: int) -> dict:
    """Delete a meeting: its rows (jobs, segments, utterances and versions, speakers) and its file."""
    out = storage.delete_meeting_rows(db, meeting_id)
    removed = False
    if out["audio_path"]:
        try:
            path = resolve_audio(settings, out["audio_path"])
            path.unlink()
            removed = True
        except (FileNotFoundError, NotFound):
            pass
    out["file_removed"] = removed
    return out


def purge_expired(db: sqlite_utils.Database, settings: Settings, now=None) -> list[int]:
    """Delete meetings (files and rows) older than ``settings.minutes_retention_days``."""
    ids = []
    for m in storage.expired_meetings(db, settings.minutes_retention_days, now=now):
        try:
            delete_meeting(db, settings, m["id"])
            ids.append(m["id"])
        except NotFound:
            continue
    if ids:
        from shared import audit  # noqa: PLC0415

        for mid in ids:
            audit.record(db, "system", "minutes_meeting_expired", "minutes_meeting", mid,
                         retention_days=settings.minutes_retention_days)
        log.info("retention: deleted %d meeting(s)", len(ids))
    # Leftovers of interrupted uploads (older than a day) go too.
    root = upload_root(settings)
    import time  # noqa: PLC0415

    for p in root.glob(".incoming-*.part"):
        try:
            if p.stat().st_mtime < time.time() - 86400:
                p.unlink()
        except FileNotFoundError:
            pass
    return ids


def _latest_job(db: sqlite_utils.Database, meeting_id: int) -> dict:
    storage.get_meeting(db, meeting_id)
    job = storage.latest_job(db, meeting_id)
    if job is None:
        raise NotFound("指定された処理が見つかりません。", code="job_not_found")
    return job


def cancel(db: sqlite_utils.Database, meeting_id: int) -> dict:
    job = _latest_job(db, meeting_id)
    storage.request_cancel(db, job["id"])
    return storage.get_job(db, job["id"])


def retry(db: sqlite_utils.Database, meeting_id: int) -> dict:
    job = _latest_job(db, meeting_id)
    storage.retry_job(db, job["id"])
    return storage.get_job(db, job["id"])


def job_view(job: dict | None) -> dict | None:
    """The public fields of a job row (what the list and the progress bar show)."""
    if job is None:
        return None
    return {
        "id": job["id"], "state": job["state"], "state_label": STATE_LABELS.get(job["state"], job["state"]),
        "progress": job["progress"], "eta_s": job["eta_s"], "stage": job["stage"],
        "stage_label": STAGE_LABELS.get(job["stage"] or "", ""),
        "done_s": job["done_s"], "duration_s": job["duration_s"], "attempts": job["attempts"],
        "resumed_from_s": job.get("resumed_from_s"),
        "cancel_requested": bool(job["cancel_requested"]),
        "error_code": job["error_code"], "error_message": job["error_message"],
        "created_at": job["created_at"], "started_at": job["started_at"],
        "finished_at": job["finished_at"], "updated_at": job["updated_at"],
    }


STATE_LABELS = {"queued": "待機中", "running": "処理中", "done": "完了", "failed": "失敗",
                "cancelled": "取り消し"}
STAGE_LABELS = {"": "", "decode": "音声を読み込み中", "vad": "発話区間を検出中", "model": "音声認識モデルを準備中",
                "transcribe": "文字起こし中", "speakers": "話者を判定中", "draft": "議事録の下書きを作成中", "done": "完了",
                "failed": "失敗", "cancelled": "取り消し",
                "resume": "再開待ち", "retry": "再実行待ち"}


JST = timezone(timedelta(hours=9))


def local_time(iso: str | None) -> str:
    """'2026-11-29T00:16:00+00:00' → '2026-11-29 09:16' (Japan time, what clerks read)."""
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).astimezone(JST).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def meeting_summary(m: dict) -> dict:
    """A list row: header, state and progress."""
    return {
        "id": m["id"], "title": m["title"], "held_at": m["held_at"], "place": m["place"],
        "created_at": m["created_at"], "created_local": local_time(m["created_at"]), "duration_s": m["duration_s"], "expires_at": m["expires_at"],
        "utterances": m["utterances"],
        "job": None if m["job_id"] is None else {
            "id": m["job_id"], "state": m["state"], "state_label": STATE_LABELS.get(m["state"], m["state"]),
            "progress": m["progress"], "eta_s": m["eta_s"], "stage": m["stage"],
            "stage_label": STAGE_LABELS.get(m["stage"] or "", ""),
            "error_code": m["error_code"], "error_message": m["error_message"]},
    }


def list_meetings(db: sqlite_utils.Database) -> list[dict]:
    return [meeting_summary(m) for m in storage.list_meetings(db)]


def meeting_detail(db: sqlite_utils.Database, meeting_id: int) -> dict:
    """Everything the editor shows: header, job, speakers, utterances and the 要点."""
    m = storage.get_meeting(db, meeting_id)
    utts = storage.utterances(db, meeting_id)
    counts = storage.edit_counts(db, meeting_id)
    for u in utts:
        u["versions"] = counts.get(u["id"], 1)
    return {
        "id": m["id"],
        "header": {k: m[k] for k in storage.HEADER_FIELDS},
        "created_at": m["created_at"], "updated_at": m["updated_at"], "expires_at": m["expires_at"],
        "duration_s": m["duration_s"], "audio_mime": m["audio_mime"], "audio_bytes": m["audio_bytes"],
        "model": m["model"], "num_speakers": m["num_speakers"],
        "job": job_view(storage.latest_job(db, meeting_id)),
        "speakers": storage.speakers(db, meeting_id),
        "utterances": utts,
        "key_points": key_points(utts),
        "dropped": dropped_segments(db, meeting_id),
    }


DROP_REASONS = {"no_speech": "無音・雑音と判定", "compression": "同じ文の繰り返し", "repetition": "語句の繰り返し",
                "outside_speech": "発話のない区間", "stock_phrase": "よくある誤認識（定型文）", "empty": "文字なし"}


def dropped_segments(db: sqlite_utils.Database, meeting_id: int) -> list[dict]:
    """Segments the hallucination filter left out (listed for the clerk, never silently lost)."""
    job = storage.latest_job(db, meeting_id)
    if job is None:
        return []
    return [{"index": s["index"], "start": s["start"], "end": s["end"], "reason": s["dropped"],
             "reason_label": DROP_REASONS.get(s["dropped"], s["dropped"]), "text": s["text"]}
            for s in storage.load_segments(db, job["id"]) if s["dropped"]]


# --- the draft as the clerk edited it: 要点 and exports -------------------------------------------

EXPORT_TYPES = {
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "md": "text/markdown; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "json": "application/json",
}


def _as_utterances(rows: list[dict]):
    from minutes.types import Utterance  # noqa: PLC0415

    return [Utterance(start=r["start"], end=r["end"], speaker=r["speaker"], text=r["text"],
                      raw_text=r["raw_text"], segment_indexes=list(r["segment_indexes"])) for r in rows]


def key_points(rows: list[dict]) -> list[dict]:
    """The extractive 要点 of the current (edited) text, via :mod:`minutes.draft`."""
    from dataclasses import asdict  # noqa: PLC0415

    from minutes.draft import extract_key_points  # noqa: PLC0415

    return [asdict(k) for k in extract_key_points(_as_utterances(rows))]


def current_draft(db: sqlite_utils.Database, meeting_id: int):
    """A :class:`minutes.draft.MinutesDraft` of the meeting as stored now (edits, speaker names)."""
    from minutes.draft import MinutesHeader, build_draft  # noqa: PLC0415
    from minutes.types import Segment  # noqa: PLC0415

    m = storage.get_meeting(db, meeting_id)
    header = MinutesHeader.from_dict({"title": m["title"], "date": m["held_at"], "place": m["place"],
                                      "attendees": m["attendees"], "agenda": m["agenda"]})
    job = storage.latest_job(db, meeting_id)
    dropped = []
    if job is not None:
        dropped = [Segment.from_dict(s) for s in storage.load_segments(db, job["id"]) if s["dropped"]]
    return build_draft(_as_utterances(storage.utterances(db, meeting_id)), duration_s=m["duration_s"] or 0.0,
                       model=m["model"], header=header, dropped=dropped)


def export_meeting(db: sqlite_utils.Database, meeting_id: int, fmt: str, *, raw: bool = False) -> tuple[bytes, str, str]:
    """(content, file name, media type) of the meeting in ``fmt`` (docx/md/txt/srt/vtt/json)."""
    import tempfile  # noqa: PLC0415

    from minutes import export  # noqa: PLC0415

    fmt = (fmt or "").lower()
    if fmt not in EXPORT_TYPES:
        raise InvalidInput("出力形式は docx・md・txt・srt・vtt・json のいずれかを指定してください。",
                           code="export_format_invalid")
    d = current_draft(db, meeting_id)
    if not d.utterances:
        from shared.errors import Conflict  # noqa: PLC0415

        raise Conflict("文字起こしが完了していないため、まだ出力できません。", code="draft_not_ready")
    with tempfile.TemporaryDirectory(prefix="minutes-export-") as tmp:
        path = export.write(d, Path(tmp) / f"minutes.{fmt}", fmt, raw=raw)
        data = path.read_bytes()
    suffix = "_素起こし" if raw else ""
    return data, f"議事録_{meeting_id}{suffix}.{fmt}", EXPORT_TYPES[fmt]
