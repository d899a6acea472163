"""`niiza-ai faq ...`: ask, eval, import, export, load-sample, calibrate, reindex."""
from __future__ import annotations

import json
import sys

import click

from shared.errors import NiizaError


def _ctx():
    from shared.runtime import cli_context

    return cli_context()


@click.group("faq")
def faq():
    """FAQチャットボット: 質問・評価・FAQの取り込み/書き出し・較正."""


@faq.command("ask")
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="JSON 1行で出力")
def ask_cmd(question, as_json):
    """質問に答える（ログには記録しません）。"""
    from . import service

    settings, db = _ctx()
    res = service.ask(db, settings, question, store=False, channel="cli")
    if as_json:
        click.echo(json.dumps(res, ensure_ascii=False))
        return
    if res["kind"] == "answer":
        click.echo(f"[{res['faq_id']}] {res['question']}")
        click.echo(res["answer"])
        click.echo(f"担当: {res['department']} {res['contact'] or ''}".rstrip())
        if res.get("url"):
            click.echo(res["url"])
    else:
        click.echo(res["answer"])
        for c in res["candidates"]:
            click.echo(f"  - [{c['faq_id']}] {c['question']}")
    click.echo(f"(confidence {res['confidence']:.2f})")


@faq.command("eval")
@click.argument("queries", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="JSON 1行で出力")
@click.option("--mode", type=click.Choice(["hybrid", "lexical", "dense"]), default="hybrid",
              show_default=True)
def eval_cmd(queries, as_json, mode):
    """評価用CSV（query,faq_id; faq_id が空 = 対象外）で現在のFAQを評価する。"""
    from . import service

    settings, db = _ctx()
    rows = service.read_queries(queries)
    m = service.evaluate(db, settings, rows, mode=mode)
    if as_json:
        # the contract's keys first, unchanged; then the direct-answer precision and rate
        keys = ("n", "hit_at_1", "hit_at_5", "mrr_at_10", "oos_precision", "oos_recall",
                "p50_ms", "p95_ms", "direct_precision", "direct_rate")
        click.echo(json.dumps({k: m[k] for k in keys}))
        return
    for k, v in m.items():
        click.echo(f"{k:14s} {v}")


@faq.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--replace", is_flag=True, help="FAQ全体をこのファイルの内容に置き換える（1トランザクション）")
def import_cmd(file, replace):
    """FAQ を CSV / XLSX から取り込む（誤りが1行でもあれば何も登録しません）。"""
    from . import importer, service

    settings, db = _ctx()
    data, name = importer.read_file(file)
    try:
        importer.parse(data, name)  # nothing is written (synonyms included) for a bad file
        # a brand-new database (no FAQ, no synonym yet): the bundled general synonym table first,
        # as `load-sample` does, so the new FAQ is indexed with it
        seeded = importer.seed_synonyms(db)
        res = service.import_file(db, settings, data, name, replace=replace, actor="cli")
    except NiizaError as e:
        click.echo(f"エラー: {e.message}", err=True)
        for d in e.details or []:
            if isinstance(d, dict) and "line" in d:
                click.echo(f"  {d['line']}行目 [{d['field'] or '-'}] {d['message']}", err=True)
            else:
                click.echo(f"  - {d}", err=True)
        sys.exit(1)
    _audit(db, "faq_import", "chat_faq", name, rows=res["rows"], created=res["created"],
           updated=res["updated"], deleted=res["deleted"], replace=replace)
    click.echo(f"取り込み完了: {res['rows']}件（新規 {res['created']}・更新 {res['updated']}・"
               f"削除 {res['deleted']}）")
    if seeded:
        click.echo(f"同梱の同義語表（{seeded}件）を読み込みました。管理画面の同義語表で編集できます。")


@faq.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="出力先（省略時は標準出力）")
def export_cmd(output):
    """FAQ を CSV で書き出す（ファイルには Excel 向けに BOM 付き UTF-8）。"""
    from . import importer, storage

    _settings, db = _ctx()
    text = importer.export_csv(storage.list_faqs(db))
    if output:
        with open(output, "w", encoding="utf-8-sig", newline="") as fh:
            fh.write(text)
        click.echo(f"書き出し完了: {output}", err=True)
    else:
        click.echo(text, nl=False)


@faq.command("load-sample")
def load_sample_cmd():
    """同梱のサンプルFAQ（架空の市のサンプルデータ）を読み込む。"""
    from . import service

    settings, db = _ctx()
    res = service.load_sample(db, settings, actor="cli")
    _audit(db, "faq_load_sample", "chat_faq", "sample", created=res["created"], updated=res["updated"])
    click.echo(f"サンプルFAQを読み込みました: 新規 {res['created']}件・更新 {res['updated']}件"
               f"（同義語 {res['synonyms']}件）")


@faq.command("calibrate")
@click.argument("queries", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@click.option("--write-default", type=click.Path(dir_okay=False), default=None,
              help="結果を既定の較正ファイル（calibration.json）としても書き出す")
@click.option("--target-precision", type=click.FloatRange(0.5, 1.0), default=None,
              help="直接回答の正答率の目標（交差検証で評価。既定 0.93）")
@click.option("--min-oos-precision", type=click.FloatRange(0.0, 1.0), default=None,
              help="直接回答しなかった質問のうち対象外の質問が占める割合の目標（既定 0.9）")
@click.option("--min-oos-recall", type=click.FloatRange(0.0, 1.0), default=None,
              help="対象外の質問に直接回答しない割合の下限（既定 0.83）")
def calibrate_cmd(queries, as_json, write_default, target_precision, min_oos_precision,
                  min_oos_recall):
    """評価用CSVで融合の重みと回答しきい値を調整し、データベースに保存する。"""
    from . import confidence, service

    settings, db = _ctx()
    rows = service.read_queries(queries)
    target = target_precision if target_precision is not None else confidence.DIRECT_PRECISION_TARGET
    oos_p = confidence.MIN_OOS_PRECISION if min_oos_precision is None else min_oos_precision
    oos_r = confidence.MIN_OOS_RECALL if min_oos_recall is None else min_oos_recall
    cal = service.calibrate(db, settings, rows, source=queries, target_precision=target,
                            min_oos_precision=oos_p, min_oos_recall=oos_r)
    _audit(db, "faq_calibrate", "chat_calibration", "latest", n=len(rows))
    if write_default:
        with open(write_default, "w", encoding="utf-8") as fh:
            json.dump(cal.to_dict(), fh, ensure_ascii=False, indent=2)
            fh.write("\n")
    if as_json:
        click.echo(json.dumps(cal.to_dict(), ensure_ascii=False))
        return
    click.echo(f"重み: 語句 {cal.w_lex:.2f} / 意味 {cal.w_dense:.2f}")
    click.echo(f"重み: かな {cal.w_kana:.2f} / 回答文 {cal.w_answer:.2f}")
    if cal.answer_model:
        click.echo(f"直接回答のしきい値（正答確率）: {cal.t_answer:.3f}"
                   f"（目標の正答率 {target:.0%}）")
        if cal.t_p:
            click.echo(f"直接回答のしきい値（対象内の確率）: {cal.t_p:.3f}"
                       f"（未回答のうち対象外 {oos_p:.0%} 以上・対象外の {oos_r:.0%} 以上に直接回答しない）")
    else:
        click.echo(f"しきい値: スコア {cal.t_score:.3f} / 差 {cal.t_margin:.3f} / 類似度 {cal.t_dense:.3f}"
                   f" / 対象外 {cal.t_oos:.3f}")
    for k, v in (cal.metrics or {}).items():
        click.echo(f"  {k:14s} {v}")


@faq.command("build-sample-vectors", hidden=True)
def build_sample_vectors_cmd():
    """(maintainers) precompute the bundled sample FAQ's vectors for the default model."""
    from . import service

    settings, _db = _ctx()
    n = service.write_sample_vectors(settings)
    click.echo(f"{n} vectors -> {service.SAMPLE_VECTORS}")


@faq.command("reindex")
def reindex_cmd():
    """埋め込みモデルを変えた後などに、FAQのベクトルを計算し直す。"""
    from . import service

    settings, db = _ctx()
    n = service.reindex(db, settings)
    click.echo(f"ベクトルを計算しました: {n}件")


def _audit(db, action, target_type, target_id, **detail):
    try:
        from shared import audit
    except ImportError:  # pragma: no cover
        return
    audit.record(db, "cli", action, target_type, target_id, **detail)
