"""Minutes API and pages over real HTTP (TestClient on the real app, real SQLite file, real model)."""
from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from minutes import jobs, storage
from shared.config import load_settings
from tests.conftest import page_csrf, web_login

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "minutes"
MP3 = DATA / "short_meeting.mp3"
M4A = DATA / "short_meeting.m4a"


@pytest.fixture
def settings(tmp_path, whisper_dir):
    # No worker thread by default: tests decide when jobs run. beam 1: fast real transcription.
    return load_settings(environ={}, home=tmp_path / "home", login_fail_delay_s=0.0,
                         whisper_model=str(whisper_dir), whisper_beam_size=1, minutes_worker="none")


def _upload(client, headers, path: Path = MP3, name: str | None = None, data: dict | None = None):
    with open(path, "rb") as f:
        return client.post("/api/minutes/meetings", headers=headers,
                           files={"file": (name or path.name, f, "application/octet-stream")},
                           data=data or {"title": "文教厚生委員会"})


def _leftover_uploads(settings) -> list[Path]:
    root = Path(settings.uploads_dir) / "minutes"
    return sorted(root.iterdir()) if root.exists() else []


# --- roles ------------------------------------------------------------------------------------

def test_roles_clerk_ok_childcare_forbidden_anonymous_401(client, login_as):
    clerk, childcare, admin = login_as("clerk"), login_as("childcare"), login_as("admin")
    for path in ("/api/minutes/meetings", "/api/minutes/jobs"):
        r = client.get(path)
        assert r.status_code == 401 and r.json()["message"] == "ログインが必要です。"
        assert client.get(path, headers=childcare).status_code == 403
        assert client.get(path, headers=clerk).status_code == 200
        assert client.get(path, headers=admin).status_code == 200
    r = client.post("/api/minutes/meetings", files={"file": ("a.mp3", b"x")})
    assert r.status_code == 401
    r = client.post("/api/minutes/meetings", headers=childcare, files={"file": ("a.mp3", b"x")})
    assert r.status_code == 403
    assert client.delete("/api/minutes/meetings/1", headers=childcare).status_code == 403
    assert client.get("/api/minutes/meetings/1/audio", headers=childcare).status_code == 403
    # pages: login redirect without a session, 403 page for the wrong role
    r = client.get("/minutes", follow_redirects=False, headers={"accept": "text/html"})
    assert r.status_code in (302, 303) and "/login" in r.headers["location"]
    r = client.get("/minutes", headers={**childcare, "accept": "text/html"})
    assert r.status_code == 403 and "権限" in r.text
    assert client.get("/minutes", headers=clerk).status_code == 200


def test_every_minutes_route_requires_clerk(app):
    from tests.test_foundation_auth import _guards, api_routes
    checked = 0
    for path, methods, dependant in api_routes(app):
        if not (path.startswith("/api/minutes") or path == "/minutes" or path.startswith("/minutes/")):
            continue
        guards = _guards(dependant)
        assert guards and all(g.roles == ("clerk",) for g in guards), path
        checked += 1
    assert checked >= 18


def test_cookie_session_needs_csrf_header(client, make_user):
    user = make_user("clerk")
    assert web_login(client, user.username).status_code == 303
    r = _upload(client, {})
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    token = page_csrf(client, "/minutes")
    r = _upload(client, {"X-CSRF-Token": token})
    assert r.status_code == 201, r.text


# --- upload checks ----------------------------------------------------------------------------

def test_non_audio_files_rejected_with_japanese_message(client, login_as, settings, db):
    h = login_as("clerk")
    for name, content in (("minutes.mp3", "これは音声ではありません".encode() * 50),
                          ("report.m4a", b"%PDF-1.4\n" + bytes(range(256)) * 20),
                          ("empty.wav", b"")):
        r = client.post("/api/minutes/meetings", headers=h, files={"file": (name, content, "audio/mpeg")})
        assert r.status_code == 422, (name, r.text)
        assert "音声ファイルとして読み込めませんでした" in r.json()["message"]
    r = client.post("/api/minutes/meetings", headers=h, data={"title": "ファイルなし"},
                    files={"other": ("x.txt", b"abc")})
    assert r.status_code == 422 and r.json()["message"] == "録音ファイルを選んでください。"
    r = client.post("/api/minutes/meetings", headers=h, json={"title": "x"})
    assert r.status_code == 422 and "録音ファイル" in r.json()["message"]
    assert _leftover_uploads(settings) == []
    assert db.execute("SELECT COUNT(*) FROM minutes_meeting").fetchone()[0] == 0


def test_audio_type_is_checked_by_decoding_not_by_extension(client, login_as):
    h = login_as("clerk")
    r = _upload(client, h, M4A, name="recording.txt", data={"title": "拡張子違い", "num_speakers": "3"})
    assert r.status_code == 201, r.text
    detail = client.get(f"/api/minutes/meetings/{r.json()['meeting_id']}", headers=h).json()
    assert detail["audio_mime"] == "audio/mp4"
    assert detail["num_speakers"] == 3
    assert detail["duration_s"] == pytest.approx(43.8, abs=0.5)
    assert detail["job"]["state"] == "queued"
    r = _upload(client, h, MP3, data={"num_speakers": "たくさん"})
    assert r.status_code == 422 and "数字" in r.json()["message"]


def _multipart(boundary: str, payload: bytes, filename="big.mp3") -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n大きい\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: audio/mpeg\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()


def test_upload_size_limit_413_declared_and_streamed(settings, login_as, client, db):
    small = dataclasses.replace(settings, max_upload_bytes=100_000)
    from api import create_app
    h = login_as("clerk")
    with TestClient(create_app(small)) as c:
        r = _upload(c, h)  # 219 KB with Content-Length
        assert r.status_code == 413 and "大きすぎます" in r.json()["message"]
        boundary = "niizaBoundary123"
        body = _multipart(boundary, MP3.read_bytes())

        def chunks():  # no Content-Length: the limit is enforced while streaming to disk
            for i in range(0, len(body), 16384):
                yield body[i:i + 16384]

        r = c.post("/api/minutes/meetings", headers={**h, "content-type": f"multipart/form-data; boundary={boundary}"},
                   content=chunks())
        assert r.status_code == 413, r.text
        assert "大きすぎます" in r.json()["message"]
        # under the limit is fine in the same streamed form
        tiny = _multipart(boundary, b"")
        r = c.post("/api/minutes/meetings", headers={**h, "content-type": f"multipart/form-data; boundary={boundary}"},
                   content=iter([tiny]))
        assert r.status_code == 422  # empty file: not audio
    assert _leftover_uploads(settings) == []
    assert db.execute("SELECT COUNT(*) FROM minutes_meeting").fetchone()[0] == 0


# --- the whole flow over HTTP -----------------------------------------------------------------

def _wait_done(client, h, meeting_id, timeout=180):
    seen = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/api/minutes/meetings/{meeting_id}/job", headers=h).json()["job"]
        seen.append((job["state"], job["progress"]))
        if job["state"] in ("done", "failed", "cancelled"):
            return job, seen
        time.sleep(0.3)
    raise AssertionError(f"job did not finish: {seen[-5:]}")


def test_upload_transcribe_edit_export_delete(settings, login_as, db):
    """Worker thread started by the app (minutes_worker=thread), the clerk's whole session."""
    from api import create_app
    threaded = dataclasses.replace(settings, minutes_worker="thread")
    with TestClient(create_app(threaded)) as client:
        from shared import auth
        auth.create_user(db, "clerk-flow", "flow-pass-2026", "clerk")
        tok = client.post("/api/auth/token", json={"username": "clerk-flow", "password": "flow-pass-2026"})
        h = {"Authorization": f"Bearer {tok.json()['access_token']}"}

        # the city's glossary (用語登録) applies to new transcriptions
        glossary_csv = (DATA / "short_meeting.glossary.csv").read_text(encoding="utf-8")
        r = client.put("/api/minutes/glossary", headers=h, json={"text": glossary_csv})
        assert r.status_code == 200 and r.json()["entries"] == 5
        assert client.get("/api/minutes/glossary", headers=h).json() == {"text": glossary_csv, "entries": 5}
        r = client.put("/api/minutes/glossary", headers=h, json={"text": "term,reading\n保育課,hoikuka\n"})
        assert r.status_code == 422 and "ひらがなかカタカナ" in r.json()["message"]
        assert client.get("/api/minutes/glossary", headers=h).json()["entries"] == 5  # unchanged

        r = _upload(client, h, data={"title": "文教厚生委員会", "held_at": "令和8年11月29日", "place": "第1委員会室",
                                     "attendees": "委員長、佐藤委員", "agenda": "保育所の入所申請"})
        assert r.status_code == 201, r.text
        meeting_id = r.json()["meeting_id"]
        job, seen = _wait_done(client, h, meeting_id)
        assert job["state"] == "done", job
        assert job["progress"] == 100
        listed = client.get("/api/minutes/meetings", headers=h).json()["meetings"]
        assert listed[0]["id"] == meeting_id and listed[0]["job"]["state_label"] == "完了"
        segs = client.get(f"/api/minutes/meetings/{meeting_id}/segments?after=-1", headers=h).json()["segments"]
        assert [s["index"] for s in segs] == list(range(len(segs))) and len(segs) >= 4
        later = client.get(f"/api/minutes/meetings/{meeting_id}/segments?after=2", headers=h).json()["segments"]
        assert later[0]["index"] == 3
        jobs_list = client.get("/api/minutes/jobs?state=done", headers=h).json()["jobs"]
        assert [j["meeting_id"] for j in jobs_list] == [meeting_id]

        detail = client.get(f"/api/minutes/meetings/{meeting_id}", headers=h).json()
        utts = detail["utterances"]
        assert len(utts) >= 4
        assert detail["header"]["place"] == "第1委員会室"
        assert detail["model"]
        assert all(u["version"] == 1 and u["text"] for u in utts)
        assert "文教厚生委員会" in utts[0]["text"]  # corrected by the glossary (base hears 文競構成)
        assert any(k["kind"] for k in detail["key_points"])
        assert all(d["reason"] and d["reason_label"] for d in detail["dropped"])  # listed, not lost
        assert all(u["raw_text"] for u in utts)
        first = utts[0]

        # versioned edit; a stale save is refused; history shows both; restore makes version 3
        new_text = "ただいまから文教厚生委員会を開会いたします。（編集済み）"
        r = client.put(f"/api/minutes/meetings/{meeting_id}/utterances/{first['id']}", headers=h,
                       json={"text": new_text, "base_version": 1})
        assert r.status_code == 200 and r.json()["version"] == 2
        r = client.put(f"/api/minutes/meetings/{meeting_id}/utterances/{first['id']}", headers=h,
                       json={"text": "別の画面からの編集", "base_version": 1})
        assert r.status_code == 409 and "他の画面で先に更新" in r.json()["message"]
        versions = client.get(f"/api/minutes/meetings/{meeting_id}/utterances/{first['id']}/versions",
                              headers=h).json()["versions"]
        assert [(v["version"], v["source"]) for v in versions] == [(2, "edit"), (1, "machine")]
        assert versions[0]["author"] == "clerk-flow" and versions[1]["text"] == first["text"]
        r = client.post(f"/api/minutes/meetings/{meeting_id}/utterances/{first['id']}/restore", headers=h,
                        json={"version": 1})
        assert r.json()["version"] == 3 and r.json()["text"] == first["text"]
        r = client.put(f"/api/minutes/meetings/{meeting_id}/utterances/{first['id']}", headers=h,
                       json={"text": new_text, "base_version": 3})
        assert r.json()["version"] == 4

        # speakers: rename once for the meeting, merge two
        spk = detail["speakers"]
        assert len(spk) >= 2
        r = client.patch(f"/api/minutes/meetings/{meeting_id}/speakers/{spk[0]['id']}", headers=h,
                         json={"display_name": "委員長"})
        assert r.status_code == 200
        r = client.post(f"/api/minutes/meetings/{meeting_id}/speakers/merge", headers=h,
                        json={"source_id": spk[1]["id"], "target_id": spk[0]["id"]})
        assert r.status_code == 200
        merged = {s["id"]: s for s in r.json()["speakers"]}
        assert merged[spk[1]["id"]]["effective_name"] == "委員長"
        after = client.get(f"/api/minutes/meetings/{meeting_id}", headers=h).json()["utterances"]
        assert {u["speaker"] for u in after if u["speaker_id"] == spk[0]["id"]} == {"委員長"}
        assert after[0]["text"] == new_text

        r = client.patch(f"/api/minutes/meetings/{meeting_id}", headers=h, json={"title": "文教厚生委員会（第3回）"})
        assert r.json()["changed"] == ["title"]

        # exports
        for fmt in ("docx", "md", "txt", "srt", "vtt", "json"):
            r = client.get(f"/api/minutes/meetings/{meeting_id}/export/{fmt}", headers=h)
            assert r.status_code == 200, (fmt, r.text)
            assert "attachment" in r.headers["content-disposition"]
            if fmt != "docx":
                assert new_text in r.content.decode("utf-8"), fmt
        data = json.loads(client.get(f"/api/minutes/meetings/{meeting_id}/export/json", headers=h).content)
        assert data["header"]["title"] == "文教厚生委員会（第3回）"
        assert data["header"]["attendees"] == ["委員長", "佐藤委員"]
        assert data["utterances"][0]["text"] == new_text
        from docx import Document
        doc = Document(io.BytesIO(client.get(f"/api/minutes/meetings/{meeting_id}/export/docx", headers=h).content))
        body = "\n".join(p.text for p in doc.paragraphs)
        assert new_text in body and "委員長：" in body
        assert client.get(f"/api/minutes/meetings/{meeting_id}/export/pdf", headers=h).status_code == 422

        # audio with Range (seeking in the player)
        r = client.get(f"/api/minutes/meetings/{meeting_id}/audio", headers={**h, "Range": "bytes=1000-1999"})
        assert r.status_code == 206 and r.headers["content-range"] == f"bytes 1000-1999/{MP3.stat().st_size}"
        assert r.content == MP3.read_bytes()[1000:2000]
        r = client.get(f"/api/minutes/meetings/{meeting_id}/audio", headers=h)
        assert r.status_code == 200 and r.headers["accept-ranges"] == "bytes"
        assert r.headers["content-type"] == "audio/mpeg"

        # pages render the edit
        page = client.get(f"/minutes/{meeting_id}", headers=h)
        assert page.status_code == 200 and new_text in page.text and "要点" in page.text
        assert "<script>" not in page.text and "style=" not in page.text

        # audit log: every change, ids only, never transcript text or names
        rows = db.execute("SELECT action, detail FROM audit_log WHERE action LIKE 'minutes_%'").fetchall()
        actions = {a for a, _ in rows}
        assert {"minutes_upload", "minutes_glossary_edit", "minutes_utterance_edit", "minutes_utterance_restore", "minutes_speaker_rename",
                "minutes_speaker_merge", "minutes_header_edit", "minutes_export"} <= actions
        blob = " ".join(d for _, d in rows)
        assert "編集済み" not in blob and "委員長" not in blob and "文教" not in blob

        # delete: file and rows
        audio_path = jobs.resolve_audio(settings, storage.get_meeting(db, meeting_id)["audio_path"])
        assert audio_path.is_file()
        r = client.delete(f"/api/minutes/meetings/{meeting_id}", headers=h)
        assert r.status_code == 200 and r.json()["file_removed"] is True
        assert not audio_path.exists()
        for table in ("minutes_meeting", "minutes_job", "minutes_segment", "minutes_utterance",
                      "minutes_speaker"):
            col = "id" if table == "minutes_meeting" else "meeting_id"
            assert db.execute(f"SELECT COUNT(*) FROM {table} WHERE {col} = ?", [meeting_id]).fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM minutes_utterance_version").fetchone()[0] == 0
        assert client.get(f"/api/minutes/meetings/{meeting_id}", headers=h).status_code == 404
        assert db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'minutes_delete'").fetchone()[0] == 1


def test_cancel_retry_and_failed_job_over_http(client, login_as, settings, db):
    h = login_as("clerk")
    meeting_id = _upload(client, h).json()["meeting_id"]
    r = client.post(f"/api/minutes/meetings/{meeting_id}/cancel", headers=h)
    assert r.status_code == 200 and r.json()["job"]["state"] == "cancelled"
    assert client.post(f"/api/minutes/meetings/{meeting_id}/cancel", headers=h).status_code == 409
    r = client.post(f"/api/minutes/meetings/{meeting_id}/retry", headers=h)
    assert r.status_code == 200 and r.json()["job"]["state"] == "queued"
    assert client.post(f"/api/minutes/meetings/{meeting_id}/retry", headers=h).status_code == 409
    # the recording gets damaged on disk: the job fails with a Japanese reason and keeps the file
    path = jobs.resolve_audio(settings, storage.get_meeting(db, meeting_id)["audio_path"])
    path.write_bytes(b"broken" * 1000)
    from minutes.worker import Worker
    Worker(settings).run_once()
    job = client.get(f"/api/minutes/meetings/{meeting_id}/job", headers=h).json()["job"]
    assert job["state"] == "failed" and job["state_label"] == "失敗"
    assert "音声ファイルとして読み込めませんでした" in job["error_message"]
    assert path.is_file()
    page = client.get("/minutes", headers=h)
    assert "失敗" in page.text and "音声ファイルとして読み込めませんでした" in page.text
    assert client.get(f"/api/minutes/meetings/{meeting_id}/export/docx", headers=h).status_code == 409
    assert client.get("/api/minutes/meetings/999", headers=h).status_code == 404


def test_health_reports_whisper_without_loading(client):
    body = client.get("/health").json()
    assert body["models"]["whisper"]["ok"] is True
    assert body["models"]["whisper"]["worker"] == "none"
