"""``niiza-ai minutes worker``: run minutes jobs in a separate process (e.g. on a GPU host).

The command is defined here and added to the ``minutes`` click group in ``minutes/cli.py``::

    from minutes.worker_cli import worker
    minutes.add_command(worker)

Run it with ``NIIZA_AI_MINUTES_WORKER=none`` on the web server so the app does not also start its
in-process worker thread (both together are safe, jobs are claimed atomically, but that uses the
web server's CPU).
"""
from __future__ import annotations

import logging
import signal

import click


@click.command("worker")
@click.option("--once", is_flag=True, help="run the queued jobs, then exit (no waiting)")
@click.option("--poll", "poll_s", default=2.0, show_default=True, type=float,
              help="seconds between queue checks when idle")
@click.option("--stale-after", "stale_after_s", default=60.0, show_default=True, type=float,
              help="a running job without a heartbeat for this long is resumed by this worker")
def worker(once: bool, poll_s: float, stale_after_s: float) -> None:
    """文字起こしジョブを処理するワーカーを起動します（Ctrl+C で停止、処理中のジョブは次回再開）。"""
    from minutes.worker import Worker, WorkerConfig  # noqa: PLC0415
    from shared.runtime import cli_context  # noqa: PLC0415

    settings, db = cli_context()  # migrated database
    db.conn.close()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    w = Worker(settings, WorkerConfig(poll_s=poll_s, stale_after_s=stale_after_s))

    def _stop(signum, frame):  # finish the current segment, hand the job back, exit
        w.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"議事録ワーカーを起動しました（{w.worker_id}）。")
    w.run_forever(exit_when_idle=once)
    click.echo("議事録ワーカーを停止しました。")


if __name__ == "__main__":  # python -m minutes.worker_cli (same as `niiza-ai minutes worker`)
    worker()
