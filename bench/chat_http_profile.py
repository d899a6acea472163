"""CPU per answered request of `niiza-ai serve` on /api/chat/ask, robust to a shared machine.

    python bench/chat_http_profile.py                      # 1 worker, repeated + new questions, 3 rounds
    python bench/chat_http_profile.py --workers 2 --rounds 5
    python bench/chat_http_profile.py --py-spy prof.txt    # also sample the GIL holder with py-spy (raw)

Starts a real server on the shipped sample FAQ (as `bench/chatbot.py --latency-only` does), asks
every dev question once (so the retrieval caches hold them), then for each round drives
``--clients`` keep-alive clients (the lean asyncio client of bench/chatbot.py) and reads, from
/proc, the utime+stime of the server process tree and of this client process before and after.
Wall-clock answers/s depend on what else runs on the machine; server CPU ms per answer do not
(much), so compare code versions by the latter.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# OpenMP defaults before numpy or a model loads, as `serve` has them (an explicit OMP_NUM_THREADS
# from the environment is kept and then fixes the e5 query threads).
import chatbot.embed  # noqa: E402,F401

TICK = os.sysconf("SC_CLK_TCK")


def tree_pids(pid: int) -> list[int]:
    """A process and its descendants (uvicorn worker processes)."""
    out = [pid]
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            kids = Path(f"/proc/{pid}/task/{t}/children").read_text().split()
        except OSError:
            continue
        for k in kids:
            out += tree_pids(int(k))
    return out


def cpu_s(pid: int) -> float:
    """utime + stime of one process (all its threads), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14, 15 of proc(5)


def tree_cpu_s(pid: int) -> float:
    return sum(cpu_s(p) for p in tree_pids(pid))


def self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _bench_chatbot():
    """bench/chatbot.py, loaded by path (its module name would shadow the ``chatbot`` package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_chatbot", ROOT / "bench" / "chatbot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def start_server(home: Path, workers: int, extra_env: dict | None = None) -> tuple[subprocess.Popen, str]:
    return _bench_chatbot().start_server(home, workers, extra_env)


def http_load(base: str, queries: list[str], clients: int) -> dict:
    """The lean asyncio load generator of bench/chatbot.py."""
    return asyncio.run(_bench_chatbot()._http_load(base, queries, clients))


def measure(proc, base: str, queries: list[str], clients: int) -> dict:
    s0, c0, t0 = tree_cpu_s(proc.pid), self_cpu_s(), time.perf_counter()
    r = http_load(base, queries, clients)
    s1, c1, t1 = tree_cpu_s(proc.pid), self_cpu_s(), time.perf_counter()
    n = r["n"]
    return {**r, "wall_s": t1 - t0, "server_cpu_ms_per_req": (s1 - s0) * 1000 / n,
            "client_cpu_ms_per_req": (c1 - c0) * 1000 / n, "load1": os.getloadavg()[0]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2, help="dev set passes per repeated-question round")
    ap.add_argument("--new", action=argparse.BooleanOptionalAction, default=True,
                    help="also one round of new questions (first time the server sees them)")
    ap.add_argument("--py-spy", type=Path, help="record the server with py-spy (raw format) during round 1")
    ap.add_argument("--server-env", action="append", default=[], metavar="K=V",
                    help="extra environment variable for the server only (e.g. PYTHONPATH=...)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from chatbot import service
    from shared.config import load_settings
    from shared.runtime import open_database

    queries = [q.query for q in service.read_queries(ROOT / "tests" / "data" / "chat_dev_queries.csv")]
    out = {"workers": args.workers, "clients": args.clients, "load1_start": os.getloadavg()[0],
           "rounds": []}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        settings = load_settings(environ={}, home=home)
        db = open_database(settings)
        service.load_sample(db, settings, actor="bench")
        db.conn.close()
        proc, base = start_server(home, args.workers,
                                  dict(kv.split("=", 1) for kv in args.server_env))
        try:
            import httpx
            httpx.post(base + "/api/chat/ask", json={"message": "住民票"}, timeout=60)
            if args.new:
                out["new"] = measure(proc, base, queries, args.clients)
            else:  # still warm the caches with every question
                http_load(base, queries, args.clients)
            for i in range(args.rounds):
                spy = None
                if args.py_spy and i == 0:
                    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw", "--rate", "200", "--subprocesses", "--gil", "-o",
                                            str(args.py_spy), "--pid", str(proc.pid)],
                                           stdout=subprocess.DEVNULL, stderr=sys.stderr)
                    time.sleep(1.0)
                out["rounds"].append(measure(proc, base, queries * args.repeat, args.clients))
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait(timeout=60)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    out["load1_end"] = os.getloadavg()[0]
    rs = out["rounds"]
    med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
    print(f"workers={args.workers} clients={args.clients} load1 {out['load1_start']:.2f}->{out['load1_end']:.2f}")
    for name, r in ([("new", out["new"])] if "new" in out else []) + [(f"rep{i+1}", r) for i, r in enumerate(rs)]:
        print(f"  {name:5s} n={r['n']:5d} {r['rps']:6.1f}/s p50 {r['p50']:6.1f} p95 {r['p95']:6.1f} ms "
              f"server {r['server_cpu_ms_per_req']:.2f} ms CPU/req, client {r['client_cpu_ms_per_req']:.2f}"
              f" errors {r['errors']} load1 {r['load1']:.2f}")
    print(f"  repeated median: {med('rps'):.1f}/s p95 {med('p95'):.1f} ms, server "
          f"{med('server_cpu_ms_per_req'):.2f} ms CPU/req, client {med('client_cpu_ms_per_req'):.2f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
