"""HTTP adapters for allocation: the JSON API (/api/allocation) and the pages (/allocation).

Every route needs the ``childcare`` role (admin passes too). Changes are audit-logged with ids,
counts and SHA-256 hashes of the files, never child data.
"""
from __future__ import annotations

from urllib.parse import quote

import sqlite_utils
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from shared import audit
from shared.auth import User
from shared.config import Settings
from shared.deps import current_user, get_db, get_settings, require_page_role, require_role
from shared.web import render

from . import runs, storage
from .compare import compare
from .io import load_assignment, rows_xlsx_bytes
from .model import SOLVER_NAME
from .report import compare_report
from .service import sha256_hex

api_router = APIRouter(tags=["allocation"], dependencies=[require_role("childcare")])
page_router = APIRouter(tags=["allocation pages"], include_in_schema=False,
                        dependencies=[require_page_role("childcare")])


async def _file(upload: UploadFile | None, sheet: str = "") -> dict | None:
    if upload is None or not upload.filename:
        return None
    data = await upload.read(runs.MAX_FILE_BYTES + 1)
    return {"filename": upload.filename.replace("\\", "/").rsplit("/", 1)[-1], "data": data,
            "sheet": sheet.strip() or None}


@api_router.post("/rounds", status_code=201, summary="申込者・施設・ルールのファイルを登録する（全件検証）")
async def create_round(applicants: UploadFile = File(...), nurseries: UploadFile = File(...),
                       rules: UploadFile | None = File(None), title: str = Form(""),
                       applicants_sheet: str = Form(""), nurseries_sheet: str = Form(""),
                       db: sqlite_utils.Database = Depends(get_db), user: User = Depends(current_user)):
    files = {"applicants": await _file(applicants, applicants_sheet),
             "nurseries": await _file(nurseries, nurseries_sheet)}
    r = await _file(rules)
    if r is not None:
        files["rules"] = r
    files = {k: v for k, v in files.items() if v is not None}
    rnd, inputs = await run_in_threadpool(runs.parse_uploads, files)
    title = title.strip()[:200] or f"選考データ（申込 {len(rnd.applicants)} 件）"
    round_id = storage.create_round(db, title=title, created_by=user.username, applicants=len(rnd.applicants),
                                    nurseries=len(rnd.nurseries), inputs=inputs, rules_canonical=rnd.rules.source)
    audit.record(db, user.username, "alloc_round_created", "alloc_round", round_id,
                 applicants=len(rnd.applicants), nurseries=len(rnd.nurseries),
                 **{f"{i['kind']}_sha256": i["sha256"] for i in inputs})
    return storage.get_round(db, round_id)


@api_router.get("/rounds", summary="登録済みの選考データ")
def list_rounds(db: sqlite_utils.Database = Depends(get_db)):
    return {"rounds": storage.list_rounds(db), "runs": storage.list_runs(db)}


@api_router.get("/rounds/{round_id}", summary="選考データの詳細（ファイルのハッシュ・計算の履歴）")
def get_round(round_id: int, db: sqlite_utils.Database = Depends(get_db)):
    return {**storage.get_round(db, round_id), "runs": storage.list_runs(db, round_id)}


@api_router.delete("/rounds/{round_id}", status_code=204, summary="選考データを削除する（ファイル・計算結果・比較も）")
def delete_round(round_id: int, db: sqlite_utils.Database = Depends(get_db), user: User = Depends(current_user)):
    rnd = storage.get_round(db, round_id)
    storage.delete_round(db, round_id)
    audit.record(db, user.username, "alloc_round_deleted", "alloc_round", round_id,
                 applicants_sha256=rnd["applicants_sha256"], nurseries_sha256=rnd["nurseries_sha256"])
    return Response(status_code=204)


class RunIn(BaseModel):
    # Bounded to SQLite's 64-bit integer: the seed is stored with the run and in the audit log.
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1,
                             description="抽選シード（省略時は rules.toml の lottery_seed）")


@api_router.post("/rounds/{round_id}/runs", status_code=202, summary="配置の計算を開始する")
def start_run(round_id: int, body: RunIn | None = None, db: sqlite_utils.Database = Depends(get_db),
              settings: Settings = Depends(get_settings), user: User = Depends(current_user)):
    rnd_row = storage.get_round(db, round_id)
    seed = body.seed if body and body.seed is not None else _rules_seed(rnd_row["rules_canonical"])
    run_id = storage.create_run(db, round_id, seed=seed, time_limit_s=settings.alloc_time_limit_s,
                                workers=settings.alloc_workers, created_by=user.username)
    audit.record(db, user.username, "alloc_run_started", "alloc_run", run_id, round_id=round_id, seed=seed,
                 applicants_sha256=rnd_row["applicants_sha256"], nurseries_sha256=rnd_row["nurseries_sha256"],
                 rules_sha256=rnd_row["rules_sha256"], solver=SOLVER_NAME,
                 time_limit_s=settings.alloc_time_limit_s, workers=settings.alloc_workers)
    runs.start_run(settings.db_path, run_id)
    return storage.get_run(db, run_id)


def _rules_seed(canonical: str) -> int:
    import json

    try:
        return int(json.loads(canonical).get("lottery_seed", 0)) if canonical else 0
    except (ValueError, TypeError):
        return 0


@api_router.get("/runs/{run_id}", summary="計算の状況・概要・施設別ボーダー・検証結果")
def get_run(run_id: int, db: sqlite_utils.Database = Depends(get_db)):
    return storage.get_run(db, run_id)


@api_router.get("/runs/{run_id}/results", summary="申込者ごとの結果と説明（検索・ページ送り）")
def get_results(run_id: int, applicant_id: str | None = None, nursery_id: str | None = None, unplaced: bool = False,
                offset: int = 0, limit: int = 100, db: sqlite_utils.Database = Depends(get_db)):
    storage.get_run(db, run_id, full=False)
    return storage.results(db, run_id, applicant_id=applicant_id or None, nursery_id=nursery_id or None,
                           unplaced=unplaced, offset=max(0, offset), limit=max(1, min(limit, 1000)))


def _attachment(filename: str) -> dict:
    return {"Content-Disposition": f"attachment; filename=\"{filename}\"; filename*=UTF-8''{quote(filename)}",
            "Cache-Control": "no-store"}


@api_router.get("/runs/{run_id}/result.csv", summary="結果 CSV をダウンロードする")
def result_csv(run_id: int, db: sqlite_utils.Database = Depends(get_db)):
    text = storage.run_blob(db, run_id, "result_csv")
    return Response(text.encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers=_attachment(f"allocation-result-{run_id}.csv"))


@api_router.get("/runs/{run_id}/result.xlsx", summary="結果を Excel でダウンロードする")
def result_xlsx(run_id: int, db: sqlite_utils.Database = Depends(get_db)):
    storage.run_blob(db, run_id, "result_csv")  # 404 unless done
    data = rows_xlsx_bytes(storage.results(db, run_id, limit=10**9)["items"])
    return Response(data, media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers=_attachment(f"allocation-result-{run_id}.xlsx"))


@api_router.get("/runs/{run_id}/cutoff.csv", summary="施設・年齢別ボーダー指数の表（公表用 CSV）をダウンロードする")
def cutoff_csv(run_id: int, db: sqlite_utils.Database = Depends(get_db)):
    from .explain import cutoff_csv_text

    storage.run_blob(db, run_id, "result_csv")  # 404 unless done
    text = cutoff_csv_text(storage.get_run(db, run_id)["cutoff"])
    return Response(text.encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers=_attachment(f"allocation-cutoff-{run_id}.csv"))


@api_router.get("/runs/{run_id}/report.html", summary="結果報告書（HTML）をダウンロードする")
def report_html(run_id: int, db: sqlite_utils.Database = Depends(get_db)):
    html = storage.run_blob(db, run_id, "report_html")
    return Response(html.encode("utf-8"), media_type="text/html; charset=utf-8",
                    headers=_attachment(f"allocation-report-{run_id}.html"))


@api_router.post("/runs/{run_id}/compare", status_code=201, summary="手作業の選考結果と比較する")
async def compare_manual(run_id: int, manual: UploadFile = File(...), db: sqlite_utils.Database = Depends(get_db),
                         user: User = Depends(current_user)):
    run = storage.get_run(db, run_id, full=False)
    storage.run_blob(db, run_id, "result_csv")  # 404 unless done
    f = await _file(manual)
    if f is None or not f["data"]:
        from shared.errors import InvalidInput
        raise InvalidInput("手作業の結果ファイルを選んでください。")

    def work():
        rnd = runs.load_stored_round(db, run["round_id"], run["seed"])
        manual_assignment = load_assignment(f["filename"], rnd, data=f["data"], name=f["filename"])
        tool = {r["applicant_id"]: r["nursery_id"] for r in storage.results(db, run_id, limit=10**9)["items"]}
        cmp = compare(rnd, tool, manual_assignment)
        html = compare_report("手作業の選考との比較", cmp, {"計算": run_id, "手作業": f["filename"]})
        return cmp, html

    cmp, html = await run_in_threadpool(work)
    summary = {k: cmp[k] for k in ("applicants", "same", "agreement_pct", "differences")}
    for side in ("tool", "manual"):
        summary[side] = {k: v for k, v in cmp[side].items() if not k.endswith("_list") and k != "cutoff_table"}
    manual_hash = sha256_hex(f["data"])
    cid = storage.create_comparison(db, run_id, manual_sha256=manual_hash, created_by=user.username,
                                    summary=summary, report_html=html)
    audit.record(db, user.username, "alloc_compare", "alloc_comparison", cid, run_id=run_id,
                 manual_sha256=manual_hash, agreement_pct=cmp["agreement_pct"], differences=cmp["differences"])
    return {"id": cid, **summary, "report_url": f"/api/allocation/comparisons/{cid}/report.html"}


@api_router.get("/comparisons/{comparison_id}/report.html", summary="比較報告書（HTML）をダウンロードする")
def comparison_report(comparison_id: int, db: sqlite_utils.Database = Depends(get_db)):
    html = storage.comparison_html(db, comparison_id)
    return Response(html.encode("utf-8"), media_type="text/html; charset=utf-8",
                    headers=_attachment(f"allocation-compare-{comparison_id}.html"))


# --- pages --------------------------------------------------------------------------------------

@page_router.get("", response_class=HTMLResponse)
def index_page(request: Request, db: sqlite_utils.Database = Depends(get_db),
               settings: Settings = Depends(get_settings)):
    return render(request, "alloc_index.html", {
        "rounds": storage.list_rounds(db), "runs": storage.list_runs(db),
        "time_limit": settings.alloc_time_limit_s})


@page_router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(run_id: int, request: Request, db: sqlite_utils.Database = Depends(get_db)):
    run = storage.get_run(db, run_id)
    return render(request, "alloc_run.html", {"run": run, "round": storage.get_round(db, run["round_id"])})
