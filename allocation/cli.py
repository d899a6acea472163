"""``niiza-ai alloc``: solve, check, compare, generate.

Exit codes: 0 success; 1 invalid input (every error listed, in Japanese) or, for ``check``,
a result that breaks a rule or has a blocking coalition; 2 usage errors (click).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from shared.errors import NiizaError

from .io import format_error, load_assignment, load_round, write_result_csv


def _fail(exc: NiizaError) -> None:
    click.echo(exc.message, err=True)
    for d in exc.details or []:
        click.echo("  " + (format_error(d) if isinstance(d, dict) and "file" in d else str(d)), err=True)
    sys.exit(1)


def _defaults(time_limit: float | None, workers: int | None) -> tuple[float, int]:
    if time_limit is None or workers is None:
        from shared.config import load_settings  # settings are read only when a default is needed

        s = load_settings()
        time_limit = s.alloc_time_limit_s if time_limit is None else time_limit
        workers = s.alloc_workers if workers is None else workers
    return float(time_limit), int(workers)


def _dump(data) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _round_options(f):
    f = click.option("--nurseries-sheet", default=None, help="nurseries が .xlsx のときのシート名（または番号）")(f)
    f = click.option("--applicants-sheet", default=None, help="applicants が .xlsx のときのシート名（または番号）")(f)
    f = click.option("--seed", type=int, default=None, help="抽選のシード（rules.toml の lottery_seed より優先）")(f)
    f = click.option("--rules", "rules_path", type=click.Path(dir_okay=False), default=None,
                     help="rules.toml（同一指数の判定基準・抽選シード・共有枠）")(f)
    f = click.option("--nurseries", "nurseries_path", required=True, type=click.Path(dir_okay=False),
                     help="施設の CSV / xlsx")(f)
    f = click.option("--applicants", "applicants_path", required=True, type=click.Path(dir_okay=False),
                     help="申込者の CSV / xlsx")(f)
    return f


def _load(applicants_path, nurseries_path, rules_path, seed, applicants_sheet, nurseries_sheet):
    return load_round(applicants_path, nurseries_path, rules_path, seed=seed,
                      applicants_sheet=applicants_sheet, nurseries_sheet=nurseries_sheet)


@click.group(name="alloc", help="保育所入所選考（CP-SAT による配置・検証・説明・手作業との比較）")
def alloc() -> None:
    pass


@alloc.command("solve", help="配置を計算し、検証して結果 CSV（と報告書）を書き出します。")
@_round_options
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="結果 CSV の出力先")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None, help="HTML 報告書の出力先")
@click.option("--cutoff", "cutoff_path", type=click.Path(dir_okay=False), default=None,
              help="施設・年齢別ボーダー指数の表（公表用 CSV）の出力先")
@click.option("--time-limit", type=float, default=None, help="計算時間の上限（秒）")
@click.option("--workers", type=int, default=None, help="CP-SAT の並列数")
@click.option("--json", "as_json", is_flag=True, help="概要を JSON で表示")
def solve_cmd(applicants_path, nurseries_path, rules_path, seed, applicants_sheet, nurseries_sheet,
              out_path, report_path, cutoff_path, time_limit, workers, as_json):
    from .report import solve_report
    from .service import run_solve

    try:
        rnd = _load(applicants_path, nurseries_path, rules_path, seed, applicants_sheet, nurseries_sheet)
    except NiizaError as exc:
        _fail(exc)
    time_limit, workers = _defaults(time_limit, workers)
    outcome = run_solve(rnd, time_limit=time_limit, workers=workers)
    write_result_csv(out_path, outcome.result, rnd)
    if cutoff_path:
        from .explain import cutoff_csv_text

        Path(cutoff_path).write_text(cutoff_csv_text(outcome.cutoff_table), encoding="utf-8", newline="")
    summary = outcome.summary()
    if report_path:
        meta = {"申込": Path(applicants_path).name, "施設": Path(nurseries_path).name,
                "抽選シード": rnd.rules.lottery_seed, "ソルバー": outcome.result.solver,
                "状態": outcome.result.status}
        Path(report_path).write_text(solve_report("保育所入所選考 結果報告", summary, outcome.report.to_dict(),
                                                  outcome.explanations, outcome.cutoff_table, meta), encoding="utf-8")
    if as_json:
        _dump(summary)
    else:
        s = summary
        click.echo(f"状態: {s['status']}  入所決定 {s['placed']} / {s['applicants']} 人、"
                   f"優先順位の逆転 {s['blocking_coalitions']} 件、ルール違反 {s['violations']} 件、"
                   f"計算 {s['timings']['total']:.2f} 秒")
        click.echo(f"結果: {out_path}" + (f"  報告書: {report_path}" if report_path else ""))
        if s["status"] != "OPTIMAL":
            click.echo("注意: 時間内に最適であることを証明できませんでした。結果は検証済みですが、"
                       "--time-limit を延ばすとより良い配置になる場合があります。", err=True)
    if not outcome.report.ok:
        sys.exit(2)


@alloc.command("check", help="結果 CSV（ツールまたは手作業）を検証します。")
@_round_options
@click.option("--result", "result_path", required=True, type=click.Path(dir_okay=False),
              help="検証する結果（applicant_id,nursery_id）")
@click.option("--json", "as_json", is_flag=True, help="検証結果を JSON で表示")
def check_cmd(applicants_path, nurseries_path, rules_path, seed, applicants_sheet, nurseries_sheet,
              result_path, as_json):
    from .io import load_priority_ranks, priority_from_ranks
    from .rules import compute_priority
    from .service import run_check

    try:
        rnd = _load(applicants_path, nurseries_path, rules_path, seed, applicants_sheet, nurseries_sheet)
        assignment = load_assignment(result_path, rnd)
        ranks = load_priority_ranks(result_path, rnd)
    except NiizaError as exc:
        _fail(exc)
    if rules_path is None and seed is None and ranks is not None:
        # no rules given: judge with the priority order recorded in the result file itself
        prio = priority_from_ranks(ranks)
    else:
        prio = compute_priority(rnd.applicants, rnd.rules)
        if ranks is not None and ranks != prio.rank:
            click.echo("注意: 結果ファイルの priority_rank が、指定されたルールによる優先順位と一致しません。", err=True)
    rep = run_check(rnd, assignment, prio)
    if as_json:
        _dump(rep.to_dict())
    else:
        s = rep.summary()
        click.echo(f"入所決定 {s['placed']} / {s['applicants']} 人、ルール違反 {s['violations']} 件、"
                   f"優先順位の逆転 {s['blocking_coalitions']} 件、希望者がいる空席 {s['empty_seats_wanted']}、"
                   f"兄弟が別々 {s['split_sibling_groups']} 組")
        for v in rep.violations[:50]:
            click.echo("  違反: " + v["message"])
        for b in rep.blocking[:50]:
            who = "・".join(b["applicant_ids"])
            over = "空席" if b["empty_seat"] else "・".join(b["passed_over_for"][:5]) + " が入所"
            click.echo(f"  逆転: {who} は {b['nursery_id']} を希望し優先順位が上ですが、{over}")
    if not rep.ok or rep.blocking:
        sys.exit(1)


@alloc.command("compare", help="手作業の選考結果とツールの結果を比較します。")
@_round_options
@click.option("--manual", "manual_path", required=True, type=click.Path(dir_okay=False),
              help="手作業の結果（applicant_id,nursery_id）")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None, help="HTML 比較報告書の出力先")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None, help="ツールの結果 CSV の出力先")
@click.option("--time-limit", type=float, default=None, help="計算時間の上限（秒）")
@click.option("--workers", type=int, default=None, help="CP-SAT の並列数")
@click.option("--json", "as_json", is_flag=True, help="比較結果を JSON で表示")
def compare_cmd(applicants_path, nurseries_path, rules_path, seed, applicants_sheet, nurseries_sheet,
                manual_path, report_path, out_path, time_limit, workers, as_json):
    from .report import compare_report
    from .service import run_compare

    try:
        rnd = _load(applicants_path, nurseries_path, rules_path, seed, applicants_sheet, nurseries_sheet)
        manual = load_assignment(manual_path, rnd)
    except NiizaError as exc:
        _fail(exc)
    time_limit, workers = _defaults(time_limit, workers)
    cmp, outcome = run_compare(rnd, manual, time_limit=time_limit, workers=workers)
    if out_path and outcome is not None:
        write_result_csv(out_path, outcome.result, rnd)
    if report_path:
        meta = {"申込": Path(applicants_path).name, "手作業": Path(manual_path).name,
                "抽選シード": rnd.rules.lottery_seed, "ソルバー": outcome.result.solver if outcome else ""}
        Path(report_path).write_text(compare_report("手作業の選考との比較", cmp, meta), encoding="utf-8")
    if as_json:
        _dump(cmp)
    else:
        t, m = cmp["tool"], cmp["manual"]
        click.echo(f"一致率 {cmp['agreement_pct']}%（異なる {cmp['differences']} 人）")
        click.echo(f"入所決定: ツール {t['placed']} / 手作業 {m['placed']}")
        click.echo(f"優先順位の逆転: ツール {t['blocking_coalitions']} / 手作業 {m['blocking_coalitions']}")
        click.echo(f"ルール違反: ツール {t['violations']} / 手作業 {m['violations']}")
        click.echo(f"希望者がいる空席: ツール {t['empty_seats_wanted']} / 手作業 {m['empty_seats_wanted']}")
        click.echo(f"兄弟が別々: ツール {t['split_sibling_groups']} / 手作業 {m['split_sibling_groups']}")


@alloc.command("generate", help="合成の選考データ（テスト・デモ・ベンチマーク用）を作ります。")
@click.option("--children", type=int, required=True, help="申込児童数")
@click.option("--nurseries", type=int, required=True, help="施設数")
@click.option("--siblings", type=float, default=0.08, show_default=True, help="兄弟で申し込む児童の割合")
@click.option("--transfers", type=float, default=0.05, show_default=True, help="転園希望の割合")
@click.option("--seed", type=int, default=0, show_default=True, help="乱数シード")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="出力フォルダ")
@click.option("--manual", is_flag=True, help="手作業風の選考結果 manual.csv も作る")
def generate_cmd(children, nurseries, siblings, transfers, seed, out_dir, manual):
    from .generate import generate, write

    if children < 1 or nurseries < 1 or not 0 <= siblings <= 1 or not 0 <= transfers <= 1:
        raise click.UsageError("children と nurseries は1以上、siblings と transfers は0〜1で指定してください。")
    gen = generate(children, nurseries, siblings=siblings, transfers=transfers, seed=seed, manual=manual)
    for p in write(gen, out_dir):
        click.echo(str(p))


if __name__ == "__main__":
    alloc()
