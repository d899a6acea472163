"""Hooks api.py calls: ``on_startup`` starts the in-process minutes worker thread."""
from __future__ import annotations

import logging

from shared.config import Settings

log = logging.getLogger(__name__)


def on_startup(settings: Settings):
    """Start the minutes worker thread when ``settings.minutes_worker == "thread"``.

    Returns the ``stop()`` callable the app calls at shutdown (a job in progress is handed back to
    the queue and resumes from its last stored segment on the next start), or None when jobs are
    run by separate ``niiza-ai minutes worker`` processes (``NIIZA_AI_MINUTES_WORKER=none``).
    """
    mode = (settings.minutes_worker or "").strip().lower()
    if mode != "thread":
        if mode not in ("none", "process", ""):
            log.warning("unknown NIIZA_AI_MINUTES_WORKER=%r; no in-process worker started", mode)
        return None
    from minutes.worker import start_thread  # noqa: PLC0415

    return start_thread(settings)
