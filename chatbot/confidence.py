"""When to answer directly, when to say 「もしかして」, when to say "I can't answer that".

A direct answer needs all of:
- the fused top score ≥ ``t_score`` and its margin over #2 ≥ ``t_margin`` (and cosine ≥ ``t_dense``);
- the in-scope probability ≥ ``t_p``: a small logistic model over query-level signals (top score,
  margins, absolute cosine, how many of the query's words the FAQ knows at all, another
  municipality named, "私の…" personal-case wording), fitted on the dev set.
Below ``t_p_oos`` (or when another municipality is named) the question is treated as out of scope:
a polite reply with the general contact and no FAQ text. In between, up to three candidate FAQs
are offered. Weights, thresholds and the model are calibrated on the dev set (``calibrate``) and
stored; nothing here ever composes an answer of its own.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

import numpy as np

DEFAULT_PATH = Path(__file__).parent / "data" / "calibration.json"
FEATURES = ("top", "margin", "top_dense", "dense_margin", "top_lex_z", "coverage", "noun_cov",
            "kana_cov", "other_municipality", "personal", "n_tokens")


@dataclass
class Calibration:
    w_lex: float = 0.3
    w_dense: float = 0.7
    w_kana: float = 0.0  # hiragana-reading trigram BM25 (kana-only questions)
    t_score: float = 3.0
    t_margin: float = 0.3
    t_dense: float = 0.0
    t_oos: float = 2.0  # fused top score below which the question is out of scope
    t_p: float = 0.0  # in-scope probability needed for a direct answer
    t_p_oos: float = 0.0  # below this in-scope probability: out-of-scope reply
    oos_model: dict = field(default_factory=dict)  # {"features","mean","std","coef","intercept"}
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

    def p_in_scope(self, feats: dict | None) -> float:
        m = self.oos_model
        if not m or not feats:
            return 1.0
        x = np.array([float(feats.get(k, 0.0)) for k in m["features"]])
        z = (x - np.array(m["mean"])) / np.array(m["std"])
        return float(_sigmoid(float(z @ np.array(m["coef"]) + m["intercept"])))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def load_default() -> Calibration:
    if DEFAULT_PATH.exists():
        return Calibration.from_dict(json.loads(DEFAULT_PATH.read_text(encoding="utf-8")))
    return Calibration()


@dataclass
class Decision:
    kind: str  # answer | suggest | out_of_scope
    confidence: float  # 0..1; ≥ 0.5 only for direct answers
    p_in_scope: float = 1.0
    reason: str = ""  # why not answered: other_municipality | out_of_scope | uncertain


def decide(top: float, margin: float, top_dense: float, cal: Calibration,
           feats: dict | None = None) -> Decision:
    p = cal.p_in_scope(feats)
    conf = 1.0 / (1.0 + math.exp(-3.0 * (top - cal.t_score)))
    conf = min(conf, p) if cal.oos_model else conf
    if feats and feats.get("other_municipality"):
        return Decision("out_of_scope", round(min(conf, 0.2), 3), p, "other_municipality")
    if (top >= cal.t_score and margin >= cal.t_margin and top_dense >= cal.t_dense
            and p >= cal.t_p):
        return Decision("answer", round(max(conf, 0.5), 3), p)
    if top < cal.t_oos or p < cal.t_p_oos:
        return Decision("out_of_scope", round(min(conf, 0.3), 3), p, "out_of_scope")
    return Decision("suggest", round(min(conf, 0.499), 3), p, "uncertain")


# --- calibration -----------------------------------------------------------------------------


@dataclass
class QueryScores:
    """Raw per-query scores over the whole FAQ, enough to re-fuse with any weights."""

    gold: str  # "" = out of scope
    lex_z: np.ndarray
    dense_z: np.ndarray
    dense: np.ndarray
    ids: Sequence[str]
    static: dict = field(default_factory=dict)  # features that do not depend on the fusion
    kana_z: np.ndarray | None = None


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


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 60) -> dict:
    """Class-balanced, L2-regularised logistic regression (Newton steps) on standardised X."""
    mean = X.mean(0)
    std = X.std(0)
    std[std < 1e-6] = 1.0
    Z = np.hstack([(X - mean) / std, np.ones((len(X), 1))])
    n_pos, n_neg = max(1, int(y.sum())), max(1, int((1 - y).sum()))
    sw = np.where(y > 0, len(y) / (2 * n_pos), len(y) / (2 * n_neg))
    w = np.zeros(Z.shape[1])
    reg = np.full(Z.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = _sigmoid(Z @ w)
        g = Z.T @ (sw * (p - y)) + reg * w
        H = (Z * (sw * p * (1 - p))[:, None]).T @ Z + np.diag(reg) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return {"mean": mean.tolist(), "std": std.tolist(), "coef": w[:-1].tolist(),
            "intercept": float(w[-1])}


def _fused_feats(q: QueryScores, wl: float, wk: float = 0.0) -> tuple[dict, list[str]]:
    fused = wl * q.lex_z + (1 - wl) * q.dense_z
    if wk and q.kana_z is not None:
        fused = fused + wk * q.kana_z
    order = np.argsort(-fused, kind="stable")[:10]
    top = float(fused[order[0]])
    second = float(fused[order[1]]) if len(order) > 1 else top
    feats = dict(q.static)
    feats["top"] = top
    feats["margin"] = top - second
    return feats, [q.ids[i] for i in order]


def calibrate(qs: list[QueryScores], *, weights: Sequence[float] | None = None,
              kana_weights: Sequence[float] = (0.0, 0.1, 0.2, 0.3), model: str = "",
              features: Sequence[str] = FEATURES, min_oos_recall: float = 0.8,
              l2: float = 1.0) -> Calibration:
    """Grid-search the fusion weights and the thresholds, with the in-scope model fitted for each
    weight pair, maximising hit@1 + (OOS precision + OOS recall) / 2 among the settings that keep
    OOS recall ≥ ``min_oos_recall`` (if any do) on the given queries."""
    if not qs:
        raise ValueError("no queries to calibrate on")
    weights = list(weights) if weights is not None else [round(x, 2) for x in np.arange(0, 1.0001, 0.1)]
    if any(q.kana_z is None for q in qs):
        kana_weights = (0.0,)
    golds = [q.gold for q in qs]
    gold_in = np.array([bool(g) for g in golds])
    n_in, n_oos = int(gold_in.sum()), int((~gold_in).sum())
    features = list(features)
    best = None
    for wl, wk in [(a, b) for a in weights for b in kana_weights]:
        rows, ranked = [], []
        for q in qs:
            f, ids = _fused_feats(q, wl, wk)
            rows.append(f)
            ranked.append(ids)
        X = np.array([[r.get(k, 0.0) for k in features] for r in rows], dtype=float)
        if n_in and n_oos:
            om = dict(fit_logistic(X, gold_in.astype(float), l2=l2), features=features)
            Z = (X - np.array(om["mean"])) / np.array(om["std"])
            p = _sigmoid(Z @ np.array(om["coef"]) + om["intercept"])
        else:
            om, p = {}, np.ones(len(qs))
        tops = np.array([r["top"] for r in rows])
        margins = np.array([r["margin"] for r in rows])
        other = np.array([bool(r.get("other_municipality")) for r in rows])
        correct = np.array([bool(g) and ids[0] == g for ids, g in zip(ranked, golds)])
        base = metrics_for(ranked, ["suggest"] * len(qs), golds)
        ts_grid = np.unique(np.quantile(tops, np.linspace(0, 0.6, 31)))
        tm_grid = np.unique(np.concatenate([[0.0], np.quantile(margins, np.linspace(0, 0.4, 17))]))
        tp_grid = np.unique(np.concatenate([[0.0], np.quantile(p, np.linspace(0, 0.5, 26))]))
        for tp in tp_grid:
            okp = (p >= tp) & ~other
            for tm in tm_grid:
                okm = okp & (margins >= tm)
                for ts in ts_grid:
                    direct = okm & (tops >= ts)
                    hit1 = float((direct & correct).sum()) / n_in if n_in else 0.0
                    nd = ~direct
                    caught = int((nd & ~gold_in).sum())
                    prec = caught / int(nd.sum()) if nd.sum() else (1.0 if n_oos == 0 else 0.0)
                    rec = caught / n_oos if n_oos else 1.0
                    m = {"hit_at_1": hit1, "oos_precision": prec, "oos_recall": rec}
                    wrong = int((direct & ~correct).sum())
                    # the goal first (OOS recall ≥ 0.8), then the objective
                    key = (rec >= min_oos_recall, round(_objective(m), 6), -wrong, -ts)
                    if best is None or key > best[0]:
                        best = (key, (wl, wk), float(ts), float(tm), float(tp), om, p.copy(),
                                tops.copy(), dict(base, **m))
    _, (wl, wk), ts, tm, tp, om, p, tops, m = best
    # out-of-scope reply (rather than candidates): the in-scope probability cut that best
    # separates OOS from in-scope among everything below the direct-answer bar
    cand = np.unique(np.concatenate([p[p <= tp], [0.0]]))
    best_acc, t_p_oos = -1.0, 0.0
    for c in cand:
        acc = float(((p < c) == ~gold_in).mean())
        if acc > best_acc:
            best_acc, t_p_oos = acc, float(c)
    return Calibration(w_lex=float(wl), w_dense=float(1 - wl), w_kana=float(wk), t_score=ts, t_margin=tm, t_dense=0.0,
                       t_oos=float(min(tops.min(), ts)) - 1.0, t_p=tp, t_p_oos=t_p_oos,
                       oos_model=om, model=model, n_queries=len(qs),
                       metrics={k: round(v, 4) for k, v in m.items()})


def evaluate_scores(qs: list[QueryScores], cal: Calibration) -> dict:
    """Metrics of ``cal`` replayed on precomputed query scores (same decision as ``decide``)."""
    ranked, kinds = [], []
    for q in qs:
        f, ids = _fused_feats(q, cal.w_lex, cal.w_kana)
        ranked.append(ids)
        kinds.append(decide(f["top"], f["margin"], f.get("top_dense", 1.0), cal, f).kind)
    return metrics_for(ranked, kinds, [q.gold for q in qs])
