"""CPU per /api/chat/ask request inside the ASGI app (no sockets, no HTTP parser), by layer.

    python bench/chat_asgi_cost.py                 # medians over --rounds of --n requests
    python bench/chat_asgi_cost.py --cprofile 30   # plus the top cProfile rows (cumulative)

Calls the real app (`api.create_app` on the shipped sample FAQ in a temporary folder) with
hand-made ASGI messages, ``--concurrency`` requests at a time, and reports process CPU seconds
per request for: the whole app, ``service.ask`` alone (same questions, same connection, in this
thread), and a trivial route of the same app (framework + middleware floor). Questions are the dev
set, asked once before timing so every one is a retrieval cache hit, as in the HTTP benchmark's
"repeated questions".
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# OpenMP defaults before numpy or a model loads, as `serve` has them (an explicit OMP_NUM_THREADS
# from the environment is kept and then fixes the e5 query threads).
import chatbot.embed  # noqa: E402,F401


def _scope(path: str, method: str, body: bytes) -> dict:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())]}


async def call(app, path: str, method: str = "POST", body: bytes = b"") -> tuple[int, bytes]:
    sent = False
    status, chunks = 0, []

    async def receive():
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(_scope(path, method, body), receive, send)
    return status, b"".join(chunks)


async def drive(app, bodies: list[bytes], concurrency: int, path="/api/chat/ask", method="POST"):
    it = iter(bodies)
    bad = 0

    async def worker():
        nonlocal bad
        for b in it:
            st, data = await call(app, path, method, b)
            if st != 200:
                bad += 1

    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return bad


def cpu_per_req(fn, n: int) -> float:
    c0 = time.process_time()
    fn()
    return (time.process_time() - c0) * 1000 / n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1426)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--parts", default="app,service_ask,floor", help="which of app,service_ask,floor")
    ap.add_argument("--cprofile", type=int, default=0, help="print this many cProfile rows")
    args = ap.parse_args(argv)

    import api
    from chatbot import service
    from shared.config import load_settings
    from shared.runtime import open_database

    queries = [q.query for q in service.read_queries(ROOT / "tests" / "data" / "chat_dev_queries.csv")]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        settings = load_settings(environ={"NIIZA_AI_CHAT_RATE_PER_MINUTE": "100000000"}, home=home)
        db = open_database(settings)
        service.load_sample(db, settings, actor="bench")
        app = api.create_app(settings)
        msgs = (queries * (args.n // len(queries) + 1))[:args.n]
        bodies = [json.dumps({"message": q, "session_id": "bench"}, ensure_ascii=False).encode()
                  for q in msgs]
        loop = asyncio.new_event_loop()
        assert loop.run_until_complete(drive(app, [bodies[0]], 1)) == 0
        for q in queries:  # warm every cache
            service.ask(db, settings, q, session_id="warm")
        parts = {
            "app": lambda: loop.run_until_complete(drive(app, bodies, args.concurrency)),
            "service_ask": lambda: [service.ask(db, settings, m, session_id="bench") for m in msgs],
            "floor": lambda: loop.run_until_complete(drive(app, [b""] * len(bodies), args.concurrency,
                                                           "/api/chat/categories", "GET")),
        }
        res = {k: [] for k in args.parts.split(",")}
        for _ in range(args.rounds):
            for k in res:
                res[k].append(cpu_per_req(parts[k], len(bodies)))
        print(f"load1 {os.getloadavg()[0]:.2f}; ms of CPU per request, median of {args.rounds} "
              f"(min-max):")
        for k, v in res.items():
            print(f"  {k:12s} {statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})")
        if args.cprofile:
            import cProfile
            import pstats
            pr = cProfile.Profile()
            pr.enable()
            loop.run_until_complete(drive(app, bodies, args.concurrency))
            pr.disable()
            pstats.Stats(pr).sort_stats("cumulative").print_stats(args.cprofile)
        db.conn.close()


if __name__ == "__main__":
    main()
