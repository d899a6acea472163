"""Stored rounds and background runs (used by the web API; no web imports).

A run is a job: a row in ``alloc_run`` with state, stage and progress, executed by a background
thread (one run at a time: CP-SAT uses the machine's cores). Every run is audit-logged with the
input hashes, rules, seed and solver version so a result can be reproduced exactly.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from shared import audit
from shared.db import connect
from shared.errors import InvalidInput, NiizaError

from . import storage
from .io import load_round, result_csv_text
from .models import Round
from .report import solve_report
from .rules import parse_rules
from .service import run_solve, sha256_hex

log = logging.getLogger(__name__)
_one_at_a_time = threading.Semaphore(1)
MAX_FILE_BYTES = 50 * 1024 * 1024


def parse_uploads(files: dict[str, dict]) -> tuple[Round, list[dict]]:
    """``files``: kind -> {filename, data, sheet}. Validates everything; returns the round and the
    input rows to store."""
    for kind in ("applicants", "nurseries"):
        if kind not in files or not files[kind]["data"]:
            label = "申込者" if kind == "applicants" else "施設"
            raise InvalidInput(f"{label}のファイルを選んでください。", details=[
                {"file": kind, "row": None, "column": "", "message": f"{label}のファイルがありません。"}])
    for f in files.values():
        if len(f["data"]) > MAX_FILE_BYTES:
            raise InvalidInput(f"{f['filename']} が大きすぎます（上限 50MB）。")
    rules = None
    if files.get("rules") and files["rules"]["data"]:
        try:
            text = files["rules"]["data"].decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput("ルールファイルは UTF-8 で保存してください。") from None
        rules = parse_rules(text, files["rules"]["filename"] or "rules.toml")
    rnd = load_round(files["applicants"]["filename"], files["nurseries"]["filename"], rules,
                     applicants_sheet=files["applicants"].get("sheet"), nurseries_sheet=files["nurseries"].get("sheet"),
                     applicants_data=files["applicants"]["data"], nurseries_data=files["nurseries"]["data"])
    inputs = [{"kind": k, "filename": f["filename"], "sheet": f.get("sheet"), "sha256": sha256_hex(f["data"]),
               "data": f["data"]} for k, f in files.items() if f and f["data"]]
    return rnd, inputs


def load_stored_round(db, round_id: int, seed: int | None = None) -> Round:
    inputs = storage.round_inputs(db, round_id)
    rules = parse_rules(inputs["rules"]["data"].decode("utf-8-sig"), inputs["rules"]["filename"]) \
        if "rules" in inputs else None
    return load_round(inputs["applicants"]["filename"], inputs["nurseries"]["filename"], rules, seed=seed,
                      applicants_sheet=inputs["applicants"]["sheet"], nurseries_sheet=inputs["nurseries"]["sheet"],
                      applicants_data=inputs["applicants"]["data"], nurseries_data=inputs["nurseries"]["data"])


def execute_run(db_path: Path, run_id: int) -> None:
    db = connect(db_path)
    try:
        with _one_at_a_time:
            run = storage.get_run(db, run_id, full=False)
            try:
                storage.set_progress(db, run_id, "入力の読み込み", 0.05)
                rnd = load_stored_round(db, run["round_id"], run["seed"])
                storage.set_progress(db, run_id, "最適化の計算中", 0.15)
                outcome = run_solve(rnd, time_limit=run["time_limit_s"], workers=run["workers"],
                                    progress=lambda label, frac: storage.set_progress(db, run_id, label, frac))
                storage.set_progress(db, run_id, "検証結果と説明の保存", 0.9)
                csv_text = result_csv_text(outcome.result, rnd)
                summary = outcome.summary()
                meta = {"選考データ": run["round_id"], "計算": run_id, "抽選シード": rnd.rules.lottery_seed,
                        "ソルバー": outcome.result.solver, "状態": outcome.result.status}
                html = solve_report("保育所入所選考 結果報告", summary, outcome.report.to_dict(), outcome.explanations,
                                    outcome.cutoff_table, meta)
                rows = [{"applicant_id": p.applicant_id, "nursery_id": p.nursery_id,
                         "preference_rank": p.preference_rank, "priority_rank": p.priority_rank, "reason": p.reason,
                         "explanation": outcome.explanations[p.applicant_id].text()}
                        for p in outcome.result.placements.values()]
                verifier = outcome.report.to_dict()
                result_hash = sha256_hex(csv_text.encode("utf-8"))
                storage.finish_run(db, run_id, solver=outcome.result.solver, status=outcome.result.status,
                                   summary=summary, cutoff=outcome.cutoff_table, verifier=verifier,
                                   result_csv=csv_text, result_sha256=result_hash, report_html=html, rows=rows)
                rnd_row = storage.get_round(db, run["round_id"])
                audit.record(db, run["created_by"] or "system", "alloc_run_finished", "alloc_run", run_id,
                             round_id=run["round_id"], applicants_sha256=rnd_row["applicants_sha256"],
                             nurseries_sha256=rnd_row["nurseries_sha256"], rules_sha256=rnd_row["rules_sha256"],
                             rules=rnd.rules.source, seed=rnd.rules.lottery_seed, solver=outcome.result.solver,
                             status=outcome.result.status, placed=summary["placed"],
                             blocking_coalitions=summary["blocking_coalitions"], violations=summary["violations"],
                             result_sha256=result_hash, time_limit_s=run["time_limit_s"], workers=run["workers"])
                log.info("allocation run %s done: status=%s placed=%s", run_id, outcome.result.status,
                         summary["placed"])
            except NiizaError as exc:
                storage.fail_run(db, run_id, exc.message)
                audit.record(db, run["created_by"] or "system", "alloc_run_failed", "alloc_run", run_id, code=exc.code)
            except Exception:  # a bug must not leave the run "running" forever
                log.exception("allocation run %s failed", run_id)
                storage.fail_run(db, run_id, "計算中に予期しないエラーが発生しました。管理者に連絡してください。")
                audit.record(db, run["created_by"] or "system", "alloc_run_failed", "alloc_run", run_id,
                             code="internal_error")
    finally:
        db.conn.close()


def start_run(db_path: Path, run_id: int) -> threading.Thread:
    t = threading.Thread(target=execute_run, args=(db_path, run_id), name=f"alloc-run-{run_id}", daemon=True)
    t.start()
    return t
