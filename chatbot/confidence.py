"""When to answer directly, when to say 「もしかして」, when to say "I can't answer that".

A direct answer needs all of: fused top score ≥ ``t_score``, margin over #2 ≥ ``t_margin`` and top
cosine ≥ ``t_dense``. Below ``t_oos`` (fused top score) or ``t_oos_dense`` (cosine) the question
is treated as out of scope: a polite reply with the general contact and no FAQ text. In between,
up to three candidate FAQs are offered. The thresholds and the fusion weights are calibrated on
the dev set (``calibrate``) and stored; nothing here ever composes an answer of its own.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np

DEFAULT_PATH = Path(__file__).parent / "data" / "calibration.json"


@dataclass
class Calibration:
    w_lex: float = 0.3
    w_dense: float = 0.7
    t_score: float = 3.0
    t_margin: float = 0.3
    t_dense: float = 0.0
    t_oos: float = 2.0
    t_oos_dense: float = 0.0
    model: str = ""
    n_queries: int = 0
    metrics: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Calibration":
        if not d:
            return cls()
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def load_default() -> Calibration:
    if DEFAULT_PATH.exists():
        return Calibration.from_dict(json.loads(DEFAULT_PATH.read_text(encoding="utf-8")))
    return Calibration()


@dataclass
class Decision:
    kind: str  # answer | suggest | out_of_scope
    confidence: float  # 0..1; 0.5 at the direct-answer threshold


def decide(top: float, margin: float, top_dense: float, cal: Calibration) -> Decision:
    conf = 1.0 / (1.0 + math.exp(-3.0 * (top - cal.t_score)))
    if top >= cal.t_score and margin >= cal.t_margin and top_dense >= cal.t_dense:
        return Decision("answer", round(conf, 3))
    if top < cal.t_oos or top_dense < cal.t_oos_dense:
        return Decision("out_of_scope", round(min(conf, 0.5), 3))
    return Decision("suggest", round(min(conf, 0.499), 3))


# --- calibration -----------------------------------------------------------------------------


@dataclass
class QueryScores:
    """Raw per-query scores over the whole FAQ, enough to re-fuse with any weights."""

    gold: str  # "" = out of scope
    lex_z: np.ndarray
    dense_z: np.ndarray
    dense: np.ndarray
    ids: Sequence[str]


def metrics_for(ranked_ids: list[list[str]], kinds: list[str], golds: list[str]) -> dict:
    """hit@1 (direct answer with the right FAQ), hit@5 and MRR@10 (ranking) over in-scope
    queries; out-of-scope precision/recall where 'caught' = no direct answer."""
    n_in = sum(1 for g in golds if g)
    n_oos = len(golds) - n_in
    hit1 = hit5 = 0
    mrr = 0.0
    caught = no_direct = 0
    for ids, kind, gold in zip(ranked_ids, kinds, golds):
        if kind != "answer":
            no_direct += 1
        if gold:
            if kind == "answer" and ids and ids[0] == gold:
                hit1 += 1
            if gold in ids[:5]:
                hit5 += 1
            if gold in ids[:10]:
                mrr += 1.0 / (ids.index(gold) + 1)
        elif kind != "answer":
            caught += 1
    return {
        "hit_at_1": hit1 / n_in if n_in else 0.0,
        "hit_at_5": hit5 / n_in if n_in else 0.0,
        "mrr_at_10": mrr / n_in if n_in else 0.0,
        "oos_precision": caught / no_direct if no_direct else (1.0 if n_oos == 0 else 0.0),
        "oos_recall": caught / n_oos if n_oos else 1.0,
    }


def _objective(m: dict) -> float:
    return m["hit_at_1"] + 0.5 * m["oos_recall"] + 0.5 * m["oos_precision"]


def calibrate(qs: list[QueryScores], *, weights: Sequence[float] | None = None,
              model: str = "") -> Calibration:
    """Grid-search the lexical weight and the thresholds that maximise
    hit@1 + (OOS precision + OOS recall) / 2 on the given queries."""
    if not qs:
        raise ValueError("no queries to calibrate on")
    weights = list(weights) if weights is not None else [round(x, 2) for x in np.arange(0, 1.0001, 0.05)]
    golds = [q.gold for q in qs]
    gold_in = np.array([bool(g) for g in golds])
    best = None
    for wl in weights:
        wd = 1.0 - wl
        tops, margins, tdense, correct, ranked = [], [], [], [], []
        for q in qs:
            fused = wl * q.lex_z + wd * q.dense_z
            order = np.argsort(-fused, kind="stable")[:10]
            ids = [q.ids[i] for i in order]
            ranked.append(ids)
            tops.append(float(fused[order[0]]))
            margins.append(float(fused[order[0]] - fused[order[1]]) if len(order) > 1 else float(fused[order[0]]))
            tdense.append(float(q.dense.max()))
            correct.append(bool(q.gold) and ids[0] == q.gold)
        tops_a, marg_a, dense_a = np.array(tops), np.array(margins), np.array(tdense)
        correct_a = np.array(correct)
        # base ranking metrics (independent of thresholds)
        base = metrics_for(ranked, ["suggest"] * len(qs), golds)
        ts_grid = np.unique(np.quantile(tops_a, np.linspace(0, 1, 41)))
        tm_grid = np.unique(np.concatenate([[0.0], np.quantile(marg_a, np.linspace(0, 0.6, 25))]))
        td_grid = np.unique(np.concatenate([[0.0], np.quantile(dense_a, np.linspace(0, 0.5, 11))]))
        n_in, n_oos = int(gold_in.sum()), int((~gold_in).sum())
        for td in td_grid:
            okd = dense_a >= td
            for tm in tm_grid:
                okm = okd & (marg_a >= tm)
                for ts in ts_grid:
                    direct = okm & (tops_a >= ts)
                    hit1 = float((direct & correct_a).sum()) / n_in if n_in else 0.0
                    nd = ~direct
                    caught = int((nd & ~gold_in).sum())
                    prec = caught / int(nd.sum()) if nd.sum() else (1.0 if n_oos == 0 else 0.0)
                    rec = caught / n_oos if n_oos else 1.0
                    m = {"hit_at_1": hit1, "oos_precision": prec, "oos_recall": rec}
                    j = _objective(m)
                    # tie-break: fewer wrong direct answers, then a lower score threshold
                    wrong = int((direct & ~correct_a).sum())
                    key = (round(j, 6), -wrong, -ts)
                    if best is None or key > best[0]:
                        best = (key, wl, float(ts), float(tm), float(td), dict(base, **m))
    _, wl, ts, tm, td, m = best
    # out-of-scope cut among the non-direct: maximise labelling accuracy on the fused top score
    fused_tops = []
    for q in qs:
        fused = wl * q.lex_z + (1 - wl) * q.dense_z
        fused_tops.append(float(fused.max()))
    ft = np.array(fused_tops)
    cand = np.unique(np.concatenate([ft, [ts]]))
    best_acc, t_oos = -1.0, float(ft.min()) - 1.0
    for c in cand:
        if c > ts:
            continue
        pred_oos = ft < c
        acc = float((pred_oos == ~gold_in).mean())
        if acc > best_acc:
            best_acc, t_oos = acc, float(c)
    return Calibration(w_lex=float(wl), w_dense=float(1 - wl), t_score=ts, t_margin=tm, t_dense=td,
                       t_oos=t_oos, t_oos_dense=0.0, model=model, n_queries=len(qs),
                       metrics={k: round(v, 4) for k, v in m.items()})
