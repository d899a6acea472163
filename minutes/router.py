"""HTTP adapters for the minutes service: the JSON API (/api/minutes) and the pages (/minutes).

Thin layer over :mod:`minutes.jobs` and :mod:`minutes.storage`; every route needs the ``clerk``
role (admin passes too). Every change is audit-logged with ids and counts only, never transcript
text, names or header values.
"""
from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Optional
from urllib.parse import quote

import sqlite_utils
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, Field
try:  # python-multipart >= 0.0.13
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # pragma: no cover - older python-multipart (import name "multipart")
    from multipart.exceptions import MultipartParseError
    from multipart.multipart import MultipartParser, parse_options_header

from minutes import jobs, storage
from shared import audit
from shared.auth import User
from shared.config import Settings
from shared.deps import current_user, get_db, get_settings, require_page_role, require_role
from shared.errors import InvalidInput, NiizaError, NotFound, TooLarge
from shared.web import render

log = logging.getLogger(__name__)

api_router = APIRouter(tags=["minutes"], dependencies=[require_role("clerk")])
page_router = APIRouter(tags=["minutes pages"], include_in_schema=False,
                        dependencies=[require_page_role("clerk")])

FIELD_MAX_BYTES = 8 * 1024
FILE_FIELD = "file"
_TEXT_FIELDS = (*storage.HEADER_FIELDS, "num_speakers")


# --- upload (streamed to disk) ------------------------------------------------------------------

class _UploadParser:
    """Streams the ``file`` part of a multipart body into a file under the uploads folder and
    collects the small text fields. Counts bytes against the upload limit as they arrive."""

    def __init__(self, target: Path, limit: int):
        self.target = target
        self.limit = limit
        self.fields: dict[str, str] = {}
        self.file_size = 0
        self.got_file = False
        self.filename = ""
        self._fh = None
        self._hname = b""
        self._hvalue = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._is_file = False
        self._buf = bytearray()

    # callbacks of python_multipart.MultipartParser
    def on_part_begin(self):
        self._headers, self._name, self._is_file, self._buf = {}, "", False, bytearray()

    def on_header_field(self, data, start, end):
        self._hname += data[start:end]

    def on_header_value(self, data, start, end):
        self._hvalue += data[start:end]

    def on_header_end(self):
        self._headers[self._hname.lower()] = self._hvalue
        self._hname, self._hvalue = b"", b""

    def on_headers_finished(self):
        _disp, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in params and self._name == FILE_FIELD:
            if self.got_file:
                raise InvalidInput("録音ファイルは1つずつ送信してください。", code="too_many_files")
            self._is_file = True
            self.got_file = True
            self.filename = params[b"filename"].decode("utf-8", "replace")[:200]
            self._fh = open(self.target, "wb")

    def on_part_data(self, data, start, end):
        chunk = data[start:end]
        if self._is_file:
            self.file_size += len(chunk)
            if self.file_size > self.limit:
                raise TooLarge(f"録音ファイルが大きすぎます（上限 {self.limit:,} バイト）。",
                               code="upload_too_large")
            self._fh.write(chunk)
        elif self._name in _TEXT_FIELDS:
            self._buf += chunk
            if len(self._buf) > FIELD_MAX_BYTES:
                raise InvalidInput("入力項目が長すぎます。", code="field_too_long")

    def on_part_end(self):
        if self._is_file:
            self._fh.close()
            self._fh = None
        elif self._name in _TEXT_FIELDS:
            self.fields[self._name] = bytes(self._buf).decode("utf-8", "replace")

    def close(self):
        if self._fh is not None:
            self._fh.close()
            self._fh = None


async def _receive_upload(request: Request, settings: Settings) -> tuple[Path, _UploadParser]:
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise InvalidInput("録音ファイルを選んで送信してください（multipart/form-data）。",
                           code="upload_not_multipart")
    target = jobs.new_upload_path(settings)
    up = _UploadParser(target, settings.max_upload_bytes)
    callbacks = {name: getattr(up, name) for name in (
        "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
        "on_part_data", "on_part_end")}
    parser = MultipartParser(boundary, callbacks)
    try:
        async for chunk in request.stream():
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except BaseException as exc:
        # Client gone, body over the middleware's limit, our own limit: no partial file stays.
        up.close()
        target.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise NiizaError("サーバーの保存領域が不足しているため、録音ファイルを保存できませんでした。管理者に連絡してください。",
                             code="disk_full", status=507, log_message="upload: no space left") from exc
        if not isinstance(exc, MultipartParseError):
            raise
        raise InvalidInput("送信データを読み取れませんでした。もう一度お試しください。",
                           code="upload_broken", log_message=f"multipart: {type(exc).__name__}") from exc
    up.close()
    if not up.got_file:
        target.unlink(missing_ok=True)
        raise InvalidInput("録音ファイルを選んでください。", code="upload_no_file")
    return target, up


def _num_speakers(value: str | None) -> int | None:
    v = (value or "").strip()
    if not v:
        return None
    try:
        return int(v)
    except ValueError:
        raise InvalidInput("話者の人数は数字で入力してください。", code="num_speakers_invalid") from None


@api_router.post("/meetings", status_code=201, summary="録音ファイルをアップロードして文字起こしを開始する")
async def upload_meeting(request: Request, db: sqlite_utils.Database = Depends(get_db),
                         settings: Settings = Depends(get_settings), user: User = Depends(current_user)):
    target, up = await _receive_upload(request, settings)
    try:
        num = _num_speakers(up.fields.get("num_speakers"))
    except InvalidInput:
        target.unlink(missing_ok=True)
        raise
    header = {k: up.fields[k] for k in storage.HEADER_FIELDS if k in up.fields}
    meeting_id, job_id = await run_in_threadpool(
        jobs.accept_upload, db, settings, target, header=header, owner_id=user.id, num_speakers=num,
        size=up.file_size)
    audit.record(db, user.username, "minutes_upload", "minutes_meeting", meeting_id, job_id=job_id,
                 bytes=up.file_size)
    return {"meeting_id": meeting_id, "job_id": job_id,
            "job": jobs.job_view(storage.get_job(db, job_id))}


# --- meetings and jobs --------------------------------------------------------------------------

@api_router.get("/meetings", summary="会議（録音）の一覧と処理状況")
def list_meetings(db: sqlite_utils.Database = Depends(get_db)):
    return {"meetings": jobs.list_meetings(db)}


@api_router.get("/jobs", summary="文字起こし処理の一覧（状態・進捗）")
def list_jobs(state: Optional[str] = None, db: sqlite_utils.Database = Depends(get_db)):
    states = [s for s in (state or "").split(",") if s] or None
    if states and not set(states) <= set(storage.JOB_STATES):
        raise InvalidInput("状態は queued・running・done・failed・cancelled で指定してください。")
    return {"jobs": [jobs.job_view(j) | {"meeting_id": j["meeting_id"]}
                     for j in storage.list_jobs(db, states)]}


@api_router.get("/meetings/{meeting_id}", summary="会議の詳細（見出し・発言・話者・要点）")
def get_meeting(meeting_id: int, db: sqlite_utils.Database = Depends(get_db)):
    return jobs.meeting_detail(db, meeting_id)


@api_router.get("/meetings/{meeting_id}/job", summary="処理状況（進捗バー用）")
def get_job(meeting_id: int, db: sqlite_utils.Database = Depends(get_db)):
    storage.get_meeting(db, meeting_id)
    return {"job": jobs.job_view(storage.latest_job(db, meeting_id))}


@api_router.get("/meetings/{meeting_id}/segments",
                summary="認識済みの区間（処理中の途中経過。after より後の番号だけ）")
def get_segments(meeting_id: int, after: int = -1, db: sqlite_utils.Database = Depends(get_db)):
    storage.get_meeting(db, meeting_id)
    job = storage.latest_job(db, meeting_id)
    segs = [] if job is None else [
        {"index": s["index"], "start": s["start"], "end": s["end"], "text": s["text"], "dropped": s["dropped"]}
        for s in storage.load_segments(db, job["id"]) if s["index"] > after]
    return {"job": jobs.job_view(job), "segments": segs}


class HeaderIn(BaseModel):
    title: Optional[str] = Field(None, max_length=storage.HEADER_MAX_CHARS["title"])
    held_at: Optional[str] = Field(None, max_length=storage.HEADER_MAX_CHARS["held_at"])
    place: Optional[str] = Field(None, max_length=storage.HEADER_MAX_CHARS["place"])
    attendees: Optional[str] = Field(None, max_length=storage.HEADER_MAX_CHARS["attendees"])
    agenda: Optional[str] = Field(None, max_length=storage.HEADER_MAX_CHARS["agenda"])


@api_router.patch("/meetings/{meeting_id}", summary="見出し（会議名・日時・場所・出席者・議題）を変更する")
def edit_header(meeting_id: int, body: HeaderIn, db: sqlite_utils.Database = Depends(get_db),
                user: User = Depends(current_user)):
    changed = storage.update_header(db, meeting_id, body.model_dump(exclude_none=True))
    if changed:
        audit.record(db, user.username, "minutes_header_edit", "minutes_meeting", meeting_id,
                     fields=changed)
    return {"changed": changed, "header": jobs.meeting_detail(db, meeting_id)["header"]}


@api_router.delete("/meetings/{meeting_id}", summary="会議を削除する（録音ファイルとすべてのデータ）")
def delete_meeting(meeting_id: int, db: sqlite_utils.Database = Depends(get_db),
                   settings: Settings = Depends(get_settings), user: User = Depends(current_user)):
    out = jobs.delete_meeting(db, settings, meeting_id)
    audit.record(db, user.username, "minutes_delete", "minutes_meeting", meeting_id,
                 file_removed=out["file_removed"], **{k.replace("minutes_", "") + "s": v
                                                     for k, v in out["counts"].items()})
    return {"deleted": meeting_id, "file_removed": out["file_removed"]}


@api_router.post("/meetings/{meeting_id}/cancel", summary="文字起こしを取り消す")
def cancel_job(meeting_id: int, db: sqlite_utils.Database = Depends(get_db),
               user: User = Depends(current_user)):
    job = jobs.cancel(db, meeting_id)
    audit.record(db, user.username, "minutes_cancel", "minutes_job", job["id"], meeting_id=meeting_id)
    return {"job": jobs.job_view(job)}


@api_router.post("/meetings/{meeting_id}/retry", summary="失敗・取り消しした文字起こしを再実行する（続きから）")
def retry_job(meeting_id: int, db: sqlite_utils.Database = Depends(get_db),
              user: User = Depends(current_user)):
    job = jobs.retry(db, meeting_id)
    audit.record(db, user.username, "minutes_retry", "minutes_job", job["id"], meeting_id=meeting_id)
    return {"job": jobs.job_view(job)}


# --- utterances ---------------------------------------------------------------------------------

class UtteranceIn(BaseModel):
    text: str = Field(..., max_length=storage.UTTERANCE_MAX_CHARS)
    base_version: Optional[int] = None


@api_router.put("/meetings/{meeting_id}/utterances/{utterance_id}",
                summary="発言の文章を保存する（新しい版として保存、以前の版は残る）")
def edit_utterance(meeting_id: int, utterance_id: int, body: UtteranceIn,
                   db: sqlite_utils.Database = Depends(get_db), user: User = Depends(current_user)):
    before = storage.get_utterance(db, meeting_id, utterance_id)["version"]
    version = storage.edit_utterance(db, meeting_id, utterance_id, body.text,
                                     base_version=body.base_version, author_id=user.id)
    if version != before:
        audit.record(db, user.username, "minutes_utterance_edit", "minutes_utterance", utterance_id,
                     meeting_id=meeting_id, version=version)
    row = storage.get_utterance(db, meeting_id, utterance_id)
    return {"id": utterance_id, "version": version, "text": row["text"]}


@api_router.get("/meetings/{meeting_id}/utterances/{utterance_id}/versions", summary="発言の版の履歴")
def utterance_versions(meeting_id: int, utterance_id: int, db: sqlite_utils.Database = Depends(get_db)):
    return {"versions": storage.utterance_versions(db, meeting_id, utterance_id)}


class RestoreIn(BaseModel):
    version: int


@api_router.post("/meetings/{meeting_id}/utterances/{utterance_id}/restore",
                 summary="以前の版に戻す（戻した内容も新しい版として保存）")
def restore_utterance(meeting_id: int, utterance_id: int, body: RestoreIn,
                      db: sqlite_utils.Database = Depends(get_db), user: User = Depends(current_user)):
    version = storage.restore_version(db, meeting_id, utterance_id, body.version, user.id)
    audit.record(db, user.username, "minutes_utterance_restore", "minutes_utterance", utterance_id,
                 meeting_id=meeting_id, version=version, restored=body.version)
    row = storage.get_utterance(db, meeting_id, utterance_id)
    return {"id": utterance_id, "version": version, "text": row["text"]}


# --- speakers -----------------------------------------------------------------------------------

class SpeakerIn(BaseModel):
    display_name: str = Field(..., max_length=storage.SPEAKER_NAME_MAX_CHARS)


class MergeIn(BaseModel):
    source_id: int
    target_id: int


@api_router.patch("/meetings/{meeting_id}/speakers/{speaker_id}", summary="話者名を変更する（会議全体）")
def rename_speaker(meeting_id: int, speaker_id: int, body: SpeakerIn,
                   db: sqlite_utils.Database = Depends(get_db), user: User = Depends(current_user)):
    storage.get_meeting(db, meeting_id)
    storage.rename_speaker(db, meeting_id, speaker_id, body.display_name)
    audit.record(db, user.username, "minutes_speaker_rename", "minutes_speaker", speaker_id,
                 meeting_id=meeting_id)
    return {"speakers": storage.speakers(db, meeting_id)}


@api_router.post("/meetings/{meeting_id}/speakers/merge", summary="話者を統合する（元に戻せます）")
def merge_speakers(meeting_id: int, body: MergeIn, db: sqlite_utils.Database = Depends(get_db),
                   user: User = Depends(current_user)):
    storage.get_meeting(db, meeting_id)
    storage.merge_speakers(db, meeting_id, body.source_id, body.target_id)
    audit.record(db, user.username, "minutes_speaker_merge", "minutes_speaker", body.source_id,
                 meeting_id=meeting_id, into_speaker_id=body.target_id)
    return {"speakers": storage.speakers(db, meeting_id)}


@api_router.post("/meetings/{meeting_id}/speakers/{speaker_id}/unmerge", summary="話者の統合を解除する")
def unmerge_speaker(meeting_id: int, speaker_id: int, db: sqlite_utils.Database = Depends(get_db),
                    user: User = Depends(current_user)):
    storage.get_meeting(db, meeting_id)
    storage.unmerge_speaker(db, meeting_id, speaker_id)
    audit.record(db, user.username, "minutes_speaker_unmerge", "minutes_speaker", speaker_id,
                 meeting_id=meeting_id)
    return {"speakers": storage.speakers(db, meeting_id)}


# --- 用語登録 -------------------------------------------------------------------------------------

class GlossaryIn(BaseModel):
    text: str = Field(..., max_length=jobs.GLOSSARY_MAX_CHARS)


@api_router.get("/glossary", summary="用語登録（固有名詞の自動修正。新しい文字起こしに適用）")
def get_glossary(settings: Settings = Depends(get_settings)):
    from minutes import glossary  # noqa: PLC0415

    text = jobs.glossary_text(settings)
    return {"text": text, "entries": len(glossary.parse(text)) if text.strip() else 0}


@api_router.put("/glossary", summary="用語登録を保存する（「用語,読み」または「誤,正」の CSV）")
def put_glossary(body: GlossaryIn, db: sqlite_utils.Database = Depends(get_db),
                 settings: Settings = Depends(get_settings), user: User = Depends(current_user)):
    entries = jobs.save_glossary(settings, body.text)
    audit.record(db, user.username, "minutes_glossary_edit", "minutes_glossary", "city", entries=entries)
    return {"entries": entries}


# --- export and audio ---------------------------------------------------------------------------

def _attachment(filename: str) -> str:
    return f"attachment; filename=\"minutes{Path(filename).suffix}\"; filename*=UTF-8''{quote(filename)}"


@api_router.get("/meetings/{meeting_id}/export/{fmt}",
                summary="議事録を出力する（docx・md・txt・srt・vtt・json）")
def export_meeting(meeting_id: int, fmt: str, raw: bool = False,
                   db: sqlite_utils.Database = Depends(get_db), user: User = Depends(current_user)):
    data, filename, media_type = jobs.export_meeting(db, meeting_id, fmt, raw=raw)
    audit.record(db, user.username, "minutes_export", "minutes_meeting", meeting_id, format=fmt.lower(),
                 raw=raw)
    return Response(data, media_type=media_type, headers={"Content-Disposition": _attachment(filename),
                                                          "Cache-Control": "no-store"})


@api_router.get("/meetings/{meeting_id}/audio", summary="録音を再生する（Range 対応）")
def meeting_audio(meeting_id: int, db: sqlite_utils.Database = Depends(get_db),
                  settings: Settings = Depends(get_settings)):
    m = storage.get_meeting(db, meeting_id)
    path = jobs.resolve_audio(settings, m["audio_path"])
    if not path.is_file():
        raise NotFound("録音ファイルが見つかりません。", code="audio_missing")
    # Starlette's FileResponse answers Range requests with 206 (seeking in the <audio> player).
    return FileResponse(path, media_type=m["audio_mime"],
                        headers={"Cache-Control": "private, no-store"})


# --- pages --------------------------------------------------------------------------------------

@page_router.get("", response_class=HTMLResponse)
def list_page(request: Request, db: sqlite_utils.Database = Depends(get_db),
              settings: Settings = Depends(get_settings)):
    return render(request, "minutes_list.html", {
        "title": "AI議事録作成",
        "meetings": jobs.list_meetings(db),
        "max_upload_bytes": settings.max_upload_bytes,
        "max_upload_label": _size_label(settings.max_upload_bytes),
        "retention_days": settings.minutes_retention_days,
    })


@page_router.get("/{meeting_id}", response_class=HTMLResponse)
def editor_page(meeting_id: int, request: Request, db: sqlite_utils.Database = Depends(get_db)):
    detail = jobs.meeting_detail(db, meeting_id)
    return render(request, "minutes_editor.html", {
        "title": detail["header"]["title"] or f"会議 {meeting_id}",
        "m": detail,
        "labels": storage.HEADER_LABELS,
        "formats": [("docx", "Word（.docx）"), ("md", "Markdown（.md）"), ("txt", "テキスト（.txt）"),
                    ("srt", "字幕 SRT（.srt）"), ("vtt", "字幕 WebVTT（.vtt）"), ("json", "JSON（.json）")],
    })


def _size_label(n: int) -> str:
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + unit
    return f"{n}バイト"
