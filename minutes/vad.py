"""Voice activity detection (faster-whisper's bundled Silero VAD, ONNX) and timestamp snapping.

One VAD pass gives *fine* speech regions (short silences split them). From those:

- :func:`transcription_regions` merges regions separated by less than ``min_gap_s`` and pads them,
  reproducing faster-whisper's own ``vad_filter`` defaults (2 s minimum silence, 400 ms padding);
  only this audio is sent to Whisper.
- :func:`snap_to_speech` moves segment/word boundaries that Whisper placed in silence onto the
  nearest speech, so click-to-play lands on speech (Whisper stretches segments across silence).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from minutes.audio import SAMPLE_RATE
from minutes.types import Segment, SpeechRegion


@dataclass(frozen=True)
class VadParams:
    threshold: float = 0.5
    min_speech_ms: int = 0
    min_silence_ms: int = 300
    pad_ms: int = 100


def detect_speech(audio: np.ndarray, params: VadParams | None = None, *,
                  chunk_s: float = 600.0, workers: int = 2) -> list[SpeechRegion]:
    """Fine speech regions (seconds) of 16 kHz mono audio.

    Long audio is processed in ``chunk_s`` pieces (Silero's batched input is ~2x the audio in
    memory); regions that meet at a piece boundary are joined. Pieces are independent (Silero's
    state starts afresh in each), so ``workers`` of them run at once in threads (onnxruntime
    releases the GIL; one thread per session run): same regions, about half the wall time of a
    long recording on two cores.
    """
    from minutes._fw import faster_whisper  # noqa: PLC0415

    faster_whisper()
    from faster_whisper.vad import VadOptions, get_speech_timestamps  # noqa: PLC0415

    p = params or VadParams()
    if audio.size == 0:
        return []
    opts = VadOptions(threshold=p.threshold, min_speech_duration_ms=p.min_speech_ms,
                      min_silence_duration_ms=p.min_silence_ms, speech_pad_ms=p.pad_ms)
    step = max(int(chunk_s * SAMPLE_RATE), SAMPLE_RATE)
    offsets = [o for o in range(0, audio.shape[0], step) if audio[o:o + step].shape[0] >= 512]

    def run(offset: int) -> list[dict]:
        return get_speech_timestamps(audio[offset:offset + step], opts, sampling_rate=SAMPLE_RATE)

    if workers > 1 and len(offsets) > 1:
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vad") as pool:
            found = list(pool.map(run, offsets))
    else:
        found = [run(o) for o in offsets]
    regions: list[SpeechRegion] = []
    join_gap = (p.min_silence_ms + 2 * p.pad_ms) / 1000
    for offset, chunks in zip(offsets, found):
        base = offset / SAMPLE_RATE
        for c in chunks:
            r = SpeechRegion(round(base + c["start"] / SAMPLE_RATE, 3), round(base + c["end"] / SAMPLE_RATE, 3))
            if regions and offset and r.start - regions[-1].end < join_gap and \
                    abs(regions[-1].end - base) < join_gap and abs(r.start - base) < join_gap:
                regions[-1] = SpeechRegion(regions[-1].start, max(regions[-1].end, r.end))
            else:
                regions.append(r)
    return regions


def transcription_regions(regions: list[SpeechRegion], duration: float, *, min_gap_s: float = 2.0,
                          pad_s: float = 0.3) -> list[SpeechRegion]:
    """Merge fine regions into the (coarser) regions Whisper transcribes."""
    merged: list[SpeechRegion] = []
    for r in regions:
        if merged and r.start - merged[-1].end < min_gap_s:
            merged[-1] = SpeechRegion(merged[-1].start, max(merged[-1].end, r.end))
        else:
            merged.append(SpeechRegion(r.start, r.end))
    out: list[SpeechRegion] = []
    for i, r in enumerate(merged):
        lo = max(0.0, r.start - pad_s)
        hi = min(duration, r.end + pad_s)
        if i > 0:  # never reach past the middle of the silence before
            lo = max(lo, (merged[i - 1].end + r.start) / 2)
        if i + 1 < len(merged):
            hi = min(hi, (r.end + merged[i + 1].start) / 2)
        if hi > lo:
            out.append(SpeechRegion(round(lo, 3), round(hi, 3)))
    return out


def speech_overlap(start: float, end: float, regions: list[SpeechRegion]) -> float:
    """Seconds of [start, end] covered by speech regions (regions sorted, non-overlapping)."""
    if end <= start:
        return 0.0
    starts = [r.start for r in regions]
    i = max(0, bisect.bisect_right(starts, start) - 1)
    total = 0.0
    while i < len(regions) and regions[i].start < end:
        total += max(0.0, min(end, regions[i].end) - max(start, regions[i].start))
        i += 1
    return total


def _snap_start(t: float, regions: list[SpeechRegion], starts: list[float]) -> float:
    """If t is in silence, move it forward to the start of the next speech region."""
    i = bisect.bisect_right(starts, t) - 1
    if i >= 0 and regions[i].start <= t <= regions[i].end:
        return t
    if i + 1 < len(regions):
        return regions[i + 1].start
    return t


def _snap_end(t: float, regions: list[SpeechRegion], starts: list[float]) -> float:
    """If t is in silence, move it back to the end of the previous speech region."""
    i = bisect.bisect_right(starts, t) - 1
    if i < 0:
        return t
    if regions[i].start <= t <= regions[i].end:
        return t
    return regions[i].end


def snap_to_speech(segment: Segment, regions: list[SpeechRegion]) -> Segment:
    """Move boundaries that lie in silence onto speech (in place; returns the segment).

    Words are snapped the same way; the segment then spans its first to last word. Nothing moves
    when no region overlaps the segment at all (the hallucination filter judges that case).
    """
    if not regions or speech_overlap(segment.start, segment.end, regions) <= 0:
        return segment
    starts = [r.start for r in regions]
    for w in segment.words:
        s = _snap_start(w.start, regions, starts)
        e = _snap_end(w.end, regions, starts)
        if e > s:
            w.start, w.end = round(s, 3), round(e, 3)
    if segment.words:
        s = min(w.start for w in segment.words)
        e = max(w.end for w in segment.words)
    else:
        s = _snap_start(segment.start, regions, starts)
        e = _snap_end(segment.end, regions, starts)
    if e > s:
        segment.start, segment.end = round(s, 3), round(e, 3)
    return segment
