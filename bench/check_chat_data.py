"""Validate the chatbot sample data and evaluation query sets.

Usage: python bench/check_chat_data.py   (exit status 1 on any problem)

Checks: the CSVs parse with the expected headers; FAQ ids are unique and well formed; required
fields are filled; answers have 2-5 sentences; contacts, URLs and dates look right; every query's
faq_id exists; out-of-scope rows have an empty faq_id and style `oos`; no query is duplicated
within or across the dev and holdout sets, and no query copies an FAQ question verbatim; and the
minimum counts of the chatbot issue are met. Prints counts per category and per style.
"""
from __future__ import annotations

import csv
import re
import sys
import unicodedata
from collections import Counter
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAQ = ROOT / "chatbot/data/sample_faq.csv"
SYN = ROOT / "chatbot/data/synonyms.csv"
DEV = ROOT / "tests/data/chat_dev_queries.csv"
HOLD = ROOT / "tests/data/chat_holdout_queries.csv"
HOLD2 = ROOT / "tests/data/chat_holdout2_queries.csv"  # second holdout, written later

FAQ_HEADER = ["faq_id", "category", "question", "answer", "department", "contact", "url",
              "keywords", "updated_at"]
Q_HEADER = ["query", "faq_id", "style", "note"]
STYLES = {"polite", "plain", "keywords", "oos"}

errors: list[str] = []


def err(msg: str) -> None:
    errors.append(msg)


def read(path: Path, header: list[str]) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        text = f.read()
    if text.startswith("\ufeff"):
        err(f"{path.name}: has a BOM")
    reader = csv.reader(text.splitlines(keepends=True))
    rows = list(reader)
    if rows[0] != header:
        err(f"{path.name}: header {rows[0]} != {header}")
    out = []
    for n, r in enumerate(rows[1:], 2):
        if len(r) != len(header):
            err(f"{path.name}: record {n} has {len(r)} fields")
            continue
        out.append(dict(zip(header, r)))
    return out


def norm(s: str) -> str:
    return re.sub(r"[\s、。？?！!]", "", unicodedata.normalize("NFKC", s))


def sentences(answer: str) -> int:
    return len([s for s in re.split(r"[。！？]", answer) if s.strip()])


def check_faq() -> dict[str, dict[str, str]]:
    rows = read(FAQ, FAQ_HEADER)
    ids = Counter(r["faq_id"] for r in rows)
    for i, c in ids.items():
        if c > 1:
            err(f"faq: duplicate id {i}")
    qs = Counter(norm(r["question"]) for r in rows)
    for q, c in qs.items():
        if c > 1:
            err(f"faq: duplicate question {q}")
    for r in rows:
        fid = r["faq_id"]
        if not re.fullmatch(r"F\d{4}", fid):
            err(f"faq: bad id {fid!r}")
        for k in FAQ_HEADER:
            if not r[k].strip():
                err(f"faq {fid}: empty {k}")
        n = sentences(r["answer"])
        if not 2 <= n <= 5:
            err(f"faq {fid}: answer has {n} sentences")
        if not re.fullmatch(r"048-4(77|81)-\d{4}", r["contact"]):
            err(f"faq {fid}: contact {r['contact']!r}")
        if not r["url"].startswith("https://www.city.niiza.lg.jp/"):
            err(f"faq {fid}: url {r['url']!r}")
        try:
            d = date.fromisoformat(r["updated_at"])
            if d.year != 2026:
                err(f"faq {fid}: updated_at not in 2026")
        except ValueError:
            err(f"faq {fid}: updated_at {r['updated_at']!r}")
        if any(not k.strip() for k in r["keywords"].split(";")):
            err(f"faq {fid}: empty keyword")
        if "<" in r["answer"] or ">" in r["answer"]:
            err(f"faq {fid}: raw markup in answer")
    return {r["faq_id"]: r for r in rows}


def check_synonyms() -> int:
    rows = read(SYN, ["term", "synonyms"])
    terms = Counter(r["term"] for r in rows)
    for t, c in terms.items():
        if c > 1:
            err(f"synonyms: duplicate term {t}")
    seen: dict[str, str] = {}
    for r in rows:
        syns = [s for s in r["synonyms"].split(";")]
        if not syns or any(not s.strip() for s in syns):
            err(f"synonyms {r['term']}: empty synonym")
        for s in syns:
            if s == r["term"]:
                err(f"synonyms {r['term']}: lists itself")
            if s in seen and seen[s] != r["term"]:
                err(f"synonyms: {s} maps to both {seen[s]} and {r['term']}")
            seen[s] = r["term"]
    return len(rows)


def check_queries(path: Path, faqs: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    rows = read(path, Q_HEADER)
    faq_q = {norm(f["question"]) for f in faqs.values()}
    seen = Counter(norm(r["query"]) for r in rows)
    for q, c in seen.items():
        if c > 1:
            err(f"{path.name}: duplicate query {q}")
    for n, r in enumerate(rows, 2):
        if r["style"] not in STYLES:
            err(f"{path.name}:{n}: style {r['style']!r}")
        if r["style"] == "oos":
            if r["faq_id"]:
                err(f"{path.name}:{n}: oos row with faq_id")
        elif r["faq_id"] not in faqs:
            err(f"{path.name}:{n}: unknown faq_id {r['faq_id']!r}")
        if not r["query"].strip():
            err(f"{path.name}:{n}: empty query")
        if norm(r["query"]) in faq_q:
            err(f"{path.name}:{n}: query copies an FAQ question")
    return rows


def summary(name: str, rows: list[dict[str, str]], faqs: dict[str, dict[str, str]]) -> tuple[int, int, int]:
    styles = Counter(r["style"] for r in rows)
    covered = {r["faq_id"] for r in rows if r["faq_id"]}
    cats = Counter(faqs[r["faq_id"]]["category"] for r in rows if r["faq_id"] in faqs)
    inscope = sum(1 for r in rows if r["faq_id"])
    print(f"\n{name}: {len(rows)} queries, {inscope} in scope over {len(covered)} FAQs, "
          f"{styles['oos']} out of scope")
    print("  styles: " + ", ".join(f"{k}={styles[k]}" for k in ("polite", "plain", "keywords", "oos")))
    print("  by category: " + ", ".join(f"{k}={v}" for k, v in cats.most_common()))
    return inscope, len(covered), styles["oos"]


def main() -> int:
    faqs = check_faq()
    n_syn = check_synonyms()
    dev = check_queries(DEV, faqs)
    hold = check_queries(HOLD, faqs)
    hold2 = check_queries(HOLD2, faqs) if HOLD2.exists() else []
    sets = {"dev": dev, "holdout": hold, "holdout2": hold2}
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            overlap = {norm(r["query"]) for r in sets[a]} & {norm(r["query"]) for r in sets[b]}
            for q in sorted(overlap):
                err(f"query in both {a} and {b}: {q}")

    cats = Counter(f["category"] for f in faqs.values())
    print(f"sample_faq.csv: {len(faqs)} FAQs in {len(cats)} categories")
    for c, n in cats.most_common():
        print(f"  {c}: {n}")
    print(f"synonyms.csv: {n_syn} rows")
    d_in, d_cov, d_oos = summary("chat_dev_queries.csv", dev, faqs)
    h_in, h_cov, h_oos = summary("chat_holdout_queries.csv", hold, faqs)
    if hold2:
        h2_in, _h2_cov, h2_oos = summary("chat_holdout2_queries.csv", hold2, faqs)
        if h2_in + h2_oos < 150 or h2_oos < 30:
            err(f"holdout2: {h2_in + h2_oos} queries, {h2_oos} out of scope (< 150 / < 30)")

    if len(faqs) < 150:
        err(f"only {len(faqs)} FAQs (< 150)")
    if d_in < 300:
        err(f"dev: only {d_in} in-scope queries (< 300)")
    if d_cov < 150:
        err(f"dev: only {d_cov} FAQs covered (< 150)")
    if d_oos < 60:
        err(f"dev: only {d_oos} out-of-scope queries (< 60)")
    if h_oos < 20:
        err(f"holdout: only {h_oos} out-of-scope queries (< 20)")

    if errors:
        print(f"\n{len(errors)} problem(s):", file=sys.stderr)
        for e in errors:
            print("  " + e, file=sys.stderr)
        return 1
    print("\nOK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
