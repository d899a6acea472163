"""Several `niiza-ai serve` variants side by side, new-question rounds interleaved, one table.

    python bench/chat_http_variants.py '{"1 worker": {}, "2 workers": {"workers": 2}}' 4
    # an older version (a `git archive <commit>` unpacked in /tmp/base) without uvloop/httptools
    # (a sitecustomize.py in /tmp/nouvloop setting sys.modules['uvloop'] = sys.modules['httptools'] = None):
    python bench/chat_http_variants.py '{"base": {"cwd": "/tmp/base", "env": {"PYTHONPATH": "/tmp/nouvloop"}}, "new": {}}' 4

Every variant (``cwd``: the source tree to serve from, ``env``: extra environment, ``workers``)
runs its own server on the shipped sample FAQ; each round asks every dev question with a wording
suffix no round used before (new to every server), the variants in alternating order, so a
shared machine's load hits all of them alike. Prints per variant the median answers/s (and each
round's), the server's user + system CPU per answer and the p95 latency."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_spec = importlib.util.spec_from_file_location("bench_chatbot", ROOT / "bench" / "chatbot.py")
bc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bc)  # also sets the OpenMP defaults as `serve` has them

TICK = os.sysconf("SC_CLK_TCK")
SUFFIXES = ["", "について教えてください", "はどうすればいいですか", "について知りたい", "の件で質問です",
            "を確認したい", "についての質問", "の手続き"]


def user_sys_s(pid: int) -> tuple[float, float]:
    """utime, stime (seconds) of a process and its direct children (uvicorn workers)."""
    pids = [pid]
    try:
        pids += [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    u = s = 0.0
    for p in pids:
        f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        u, s = u + int(f[11]) / TICK, s + int(f[12]) / TICK
    return u, s


def main(argv: list[str]) -> None:
    import httpx

    from chatbot import service
    from shared.config import load_settings
    from shared.runtime import open_database

    variants = json.loads(argv[0])  # {"name": {"cwd": ..., "env": {...}, "workers": 1}}
    rounds = int(argv[1]) if len(argv) > 1 else 4
    clients = int(argv[2]) if len(argv) > 2 else 50
    home = Path(tempfile.mkdtemp()) / "home"
    settings = load_settings(environ={}, home=home)
    db = open_database(settings)
    service.load_sample(db, settings, actor="bench")
    db.conn.close()
    qs = [q.query for q in service.read_queries(bc.DEV)]
    res: dict[str, list] = {k: [] for k in variants}
    servers = {}
    try:
        for name, v in variants.items():
            bc.ROOT = Path(v["cwd"]) if v.get("cwd") else ROOT  # the tree `serve` runs from
            servers[name] = bc.start_server(home, v.get("workers", 1), v.get("env", {}))
            bc.ROOT = ROOT
            httpx.post(servers[name][1] + "/api/chat/ask", json={"message": "住民票"}, timeout=60)
        for r in range(rounds):
            for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
                proc, base = servers[name]
                time.sleep(0.5)
                a = user_sys_s(proc.pid)
                out = asyncio.run(bc._http_load(base, [q + SUFFIXES[r % len(SUFFIXES)] for q in qs],
                                                clients))
                b = user_sys_s(proc.pid)
                n = out["n"]
                res[name].append((out["rps"], (b[0] - a[0]) * 1000 / n, (b[1] - a[1]) * 1000 / n,
                                  out["p95"], out["errors"]))
    finally:
        for proc, _base in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (2-core machine shared with other work)")
    print("| variant | answers/s, median (rounds) | server CPU per answer, user + sys | p95 | errors |")
    print("|---|---:|---:|---:|---:|")
    for name, rs in res.items():
        med = lambda i: statistics.median(x[i] for x in rs)  # noqa: E731
        print(f"| {name} | {med(0):.0f} ({', '.join(str(round(x[0])) for x in rs)}) | "
              f"{med(1):.2f} + {med(2):.2f} ms | {med(3):.0f} ms | {sum(x[4] for x in rs)} |")


if __name__ == "__main__":
    main(sys.argv[1:])
