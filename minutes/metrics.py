"""Evaluation helpers shared by the tests and ``bench/minutes.py``: CER and punctuation F1.

CER: character error rate after NFKC and removing punctuation and spaces
(``shared.text.strip_punctuation``), Levenshtein distance / reference length.
Punctuation F1: marks (。、) are placed on the reference's characters through a character
alignment of hypothesis and reference, then compared as (position, mark) pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

from shared.text import strip_punctuation
from minutes.punctuate import punctuation_positions


def _distance_table(hyp: str, ref: str) -> list[list[int]]:
    """Levenshtein table: ``d[i][j]`` = edits between ``hyp[:i]`` and ``ref[:j]``."""
    n, m = len(hyp), len(ref)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        hi = hyp[i - 1]
        row, prev = d[i], d[i - 1]
        for j in range(1, m + 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (hi != ref[j - 1]))
    return d


def _align(hyp: str, ref: str) -> tuple[int, list[int | None]]:
    """Edit distance and, for each hyp char, the ref index it aligns to (None: inserted)."""
    n, m = len(hyp), len(ref)
    d = _distance_table(hyp, ref)
    mapping: list[int | None] = [None] * n
    i, j = n, m
    while i > 0 and j > 0:
        if d[i][j] == d[i - 1][j - 1] + (hyp[i - 1] != ref[j - 1]):
            mapping[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif d[i][j] == d[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    return d[n][m], mapping


def cer(hyp: str, ref: str) -> float:
    h, r = strip_punctuation(hyp), strip_punctuation(ref)
    if not r:
        return 0.0 if not h else 1.0
    dist, _ = _align(h, r)
    return dist / len(r)


@dataclass(frozen=True)
class CharErrors:
    """Edit operations of the CER alignment: substitutions, deletions (ref chars missing from the
    hypothesis), insertions (hyp chars not in the reference), and the reference length."""
    substitutions: int
    deletions: int
    insertions: int
    ref_chars: int

    @property
    def cer(self) -> float:
        return (self.substitutions + self.deletions + self.insertions) / self.ref_chars if self.ref_chars else 0.0


def error_ops(hyp: str, ref: str) -> list[tuple[str, str, str]]:
    """Alignment of the stripped texts as (op, ref part, hyp part) runs; op is "=" (equal),
    "S" (substituted), "D" (deleted) or "I" (inserted). Runs of one op are merged."""
    h, r = strip_punctuation(hyp), strip_punctuation(ref)
    n, m = len(h), len(r)
    d = _distance_table(h, r)
    ops: list[tuple[str, str, str]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i][j] == d[i - 1][j - 1] + (h[i - 1] != r[j - 1]):
            op, rc, hc = ("=" if h[i - 1] == r[j - 1] else "S"), r[j - 1], h[i - 1]
            i, j = i - 1, j - 1
        elif i > 0 and d[i][j] == d[i - 1][j] + 1:
            op, rc, hc = "I", "", h[i - 1]
            i -= 1
        else:
            op, rc, hc = "D", r[j - 1], ""
            j -= 1
        if ops and ops[-1][0] == op:
            ops[-1] = (op, rc + ops[-1][1], hc + ops[-1][2])
        else:
            ops.append((op, rc, hc))
    ops.reverse()
    return ops


def char_errors(hyp: str, ref: str) -> CharErrors:
    """CER split into substitutions / deletions / insertions (same alignment cost as :func:`cer`)."""
    counts = {"S": 0, "D": 0, "I": 0, "=": 0}
    for op, rp, hp in error_ops(hyp, ref):
        counts[op] += max(len(rp), len(hp))
    return CharErrors(counts["S"], counts["D"], counts["I"], len(strip_punctuation(ref)))


@dataclass(frozen=True)
class PunctScore:
    precision: float
    recall: float
    f1: float
    tp: int
    n_hyp: int
    n_ref: int


def punctuation_f1(hyp: str, ref: str, *, match_mark: bool = True) -> PunctScore:
    """F1 of 。、 placement. ``match_mark=False`` counts any mark at the right place."""
    h_plain, h_marks = punctuation_positions(hyp)
    r_plain, r_marks = punctuation_positions(ref)
    _, mapping = _align(h_plain, r_plain)
    projected = set()
    for idx, mark in h_marks:
        # the mark follows hyp char idx; if that char is an insertion, use the previous aligned one
        k = idx
        while k >= 0 and mapping[k] is None:
            k -= 1
        if k >= 0:
            projected.add((mapping[k], mark if match_mark else "*"))
    ref_set = {(i, m if match_mark else "*") for i, m in r_marks}
    tp = len(projected & ref_set)
    p = tp / len(projected) if projected else 0.0
    r = tp / len(ref_set) if ref_set else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return PunctScore(p, r, f, tp, len(projected), len(ref_set))
