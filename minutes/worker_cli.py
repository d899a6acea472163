"""``niiza-ai minutes worker``: run minutes jobs in a separate process (e.g. on a GPU host).

The commands are defined here and added to the ``minutes`` click group in ``minutes/cli.py``::

    from minutes.worker_cli import purge, worker
    minutes.add_command(worker)
    minutes.add_command(purge)

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


@click.command("purge")
def purge() -> None:
    """保存期間（NIIZA_AI_MINUTES_RETENTION_DAYS）を過ぎた会議の録音とデータを削除します。"""
    from minutes.jobs import purge_expired  # noqa: PLC0415
    from shared.runtime import cli_context  # noqa: PLC0415

    settings, db = cli_context()
    ids = purge_expired(db, settings)
    click.echo(f"{len(ids)}件の会議を削除しました（保存期間 {settings.minutes_retention_days}日）。")


@click.group()
def _main() -> None:
    """python -m minutes.worker_cli worker|purge (the same as `niiza-ai minutes worker|purge`)."""


_main.add_command(worker)
_main.add_command(purge)

if __name__ == "__main__":
    _main()
