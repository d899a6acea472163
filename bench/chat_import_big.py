"""A real 20,000-entry FAQ import through the CLI, end to end, on a fresh data folder.

    python bench/chat_import_big.py                  # 20,000 entries
    python bench/chat_import_big.py --n 2000 --keep /tmp/big

`bench/chatbot.py` times the lexical index in full and extrapolates the embedding from 500 entries;
this script does what an operator does instead: writes a CSV with N synthetic entries (the sample
FAQ's questions and answers recombined, as in `bench/chatbot.py`), runs `niiza-ai faq import` on a
new NIIZA_AI_HOME (encoder build included, since a new server has none) and then `niiza-ai faq eval`
on the dev queries for per-question latency on the big FAQ. It prints wall time, CPU time and
peak RSS (os.wait4 on each child) for each step.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLI = str(Path(sys.executable).with_name("niiza-ai"))


def write_csv(path: Path, n: int) -> None:
    from chatbot import importer, service

    base = importer.parse(service.SAMPLE_FAQ.read_bytes(), "sample_faq.csv")
    rnd = random.Random(7)
    places = ["本庁舎", "第二庁舎", "東北出張所", "栗原出張所", "野火止", "大和田", "片山", "石神", "馬場"]
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["faq_id", "category", "question", "answer", "department", "contact", "url",
                    "keywords"])
        for i in range(n):
            a, b = rnd.choice(base), rnd.choice(base)
            w.writerow([f"S{i:05d}", b.category, f"{rnd.choice(places)}で{a.question}（{i}）",
                        a.answer + "\n" + b.answer[:80], a.department, a.contact, "", a.keywords])


def run(cmd: list[str], env: dict) -> dict:
    """Run one CLI step; wall, CPU and peak RSS of the child."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        _, status, ru = os.wait4(p.pid, 0)  # this child's own rusage (CPU, peak RSS)
        wall = time.perf_counter() - t0
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise SystemExit(f"{cmd[1:3]} failed ({rc}):\n{stderr[-2000:]}")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_mb": ru.ru_maxrss / 1024,
            "stdout": stdout}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--keep", help="keep the data folder here (deleted first if it exists)")
    args = ap.parse_args()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="niiza-big-"))
    if tmp.exists() and args.keep:
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    home = tmp / "home"
    src = tmp / f"faq_{args.n}.csv"
    write_csv(src, args.n)
    env = {**os.environ, "NIIZA_AI_HOME": str(home)}
    env.pop("NIIZA_AI_CHAT_EMBEDDING", None)
    rows = []
    try:
        imp = run([CLI, "faq", "import", str(src)], env)
        rows.append((f"`faq import` {args.n:,} entries (new home, encoder build included)", imp))
        ev = run([CLI, "faq", "eval", str(ROOT / "tests/data/chat_dev_queries.csv"), "--json"], env)
        m = json.loads(ev["stdout"].strip().splitlines()[-1])
        rows.append(("`faq eval` dev queries on it (start-up + all queries)", ev))
        db_mb = (home / "niiza-ai.db").stat().st_size / 1e6 if (home / "niiza-ai.db").exists() else float("nan")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    print()
    print("| step | wall | CPU | peak RSS |")
    print("|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['wall_s']:.0f} s | {r['cpu_s']:.0f} s | {r['peak_mb']:,.0f} MB |")
    print(f"| per question on the {args.n:,}-entry FAQ: p50 / p95 | {m['p50_ms']:.1f} / {m['p95_ms']:.1f} ms | | |")
    print(f"| database size | {db_mb:,.0f} MB | | |")
    print()
    print("import output:", imp["stdout"].strip()[-300:])


if __name__ == "__main__":
    main()
