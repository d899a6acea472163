"""The operations the CLI and the web share: solve (+ verify + explain), check, compare.

Each returns plain data; cli.py and router.py only adapt inputs and outputs.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from .compare import compare
from .explain import Explanation, explain
from .model import SOLVER_NAME, solve
from .models import Result, Round
from .rules import compute_priority
from .verify import Report, verify_assignment


@dataclass
class SolveOutcome:
    result: Result
    report: Report
    explanations: dict[str, Explanation]
    cutoff_table: list[dict]
    timings: dict[str, float]

    def summary(self) -> dict:
        return {**self.report.summary(), "status": self.result.status, "solver": self.result.solver,
                "lottery_seed": self.result.seed, "objective": self.result.objective,
                "timings": {k: round(v, 3) for k, v in self.timings.items()}}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_solve(rnd: Round, *, time_limit: float, workers: int, progress=None) -> SolveOutcome:
    t0 = time.perf_counter()
    prio = compute_priority(rnd.applicants, rnd.rules)
    result = solve(rnd, time_limit=time_limit, workers=workers, priority=prio, progress=progress)
    t1 = time.perf_counter()
    report = verify_assignment(rnd, result.assignment(), prio)
    t2 = time.perf_counter()
    explanations, table = explain(rnd, result.assignment(), prio)
    for aid, p in result.placements.items():
        p.reason = explanations[aid].reason
    t3 = time.perf_counter()
    timings = {**result.timings, "solve_total": t1 - t0, "verify": t2 - t1, "explain": t3 - t2, "total": t3 - t0}
    return SolveOutcome(result, report, explanations, table, timings)


def run_check(rnd: Round, assignment: dict[str, str | None], priority=None) -> Report:
    return verify_assignment(rnd, assignment, priority)


def run_compare(rnd: Round, manual: dict[str, str | None], *, time_limit: float, workers: int,
                tool: dict[str, str | None] | None = None) -> tuple[dict, SolveOutcome | None]:
    outcome = None
    if tool is None:
        outcome = run_solve(rnd, time_limit=time_limit, workers=workers)
        tool = outcome.result.assignment()
    return compare(rnd, tool, manual), outcome


__all__ = ["SOLVER_NAME", "SolveOutcome", "run_check", "run_compare", "run_solve", "sha256_hex"]


def on_startup(settings):
    """Runs left queued/running by a previous process can never finish: mark them failed."""
    from shared.db import connect

    from . import storage

    db = connect(settings.db_path)
    try:
        storage.fail_interrupted(db)
    finally:
        db.conn.close()
