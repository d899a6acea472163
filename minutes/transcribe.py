"""Whisper transcription as a generator of :class:`~minutes.types.Segment`, resumable at an offset.

Only speech is sent to Whisper: the VAD speech regions after ``start`` are grouped into *blocks*
of at most ``block_s`` seconds of speech; each block is concatenated (with a short silence between
regions as a pause cue) and transcribed by one ``WhisperModel.transcribe`` call (beam search, word
timestamps, previous-text conditioning with a repetition-loop guard, see
:class:`TranscribeOptions`), and every word is mapped back to its place in the recording. Blocks bound memory (Whisper's feature extractor holds the whole input) and give a
natural progress/resume granularity on a 3-hour recording.

Resume: a worker that stored segments ``0..k`` calls again with ``start=segments[k].end`` and
``first_index=k + 1``; the audio before ``start`` is not transcribed again.
"""
from __future__ import annotations

import bisect
import logging
import re
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from minutes.audio import SAMPLE_RATE, duration_of
from minutes.types import Segment, SpeechRegion, Word
from minutes.vad import detect_speech, snap_to_speech, transcription_regions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TranscribeOptions:
    language: str | None = "ja"  # None: detect from the first 30 s
    beam_size: int = 5
    word_timestamps: bool = True
    # Conditioning on the previous text helps Japanese a lot (committee bench: CER 12.7 % vs 14.7 %)
    # but can lock Whisper into a repetition loop on long audio. Guard: the prompt never crosses a
    # block, and a segment that looks like a loop (compression ratio > 2.4 or a phrase repeated 4+
    # times) makes the rest of its block be decoded again without conditioning.
    condition_on_previous_text: bool = True
    loop_guard: bool = True
    # Speech the VAD found but Whisper skipped (no segment over it) is decoded again on its own.
    fill_gaps: bool = True
    fill_min_speech_s: float = 2.0
    fill_margin_s: float = 0.5
    vad: bool = True
    block_s: float = 600.0  # seconds of speech per Whisper call
    min_gap_s: float = 2.0  # silences shorter than this stay inside one transcribed region
    vad_pad_s: float = 0.3
    join_silence_s: float = 1.0  # silence put between concatenated speech regions (a pause cue)
    # "sequential": one WhisperModel.transcribe call per block (previous-text conditioning, loop
    # guard, temperature fallback). "batched": the speech of a block is cut into windows of at most
    # ``window_s`` seconds (at VAD silences; short regions packed together) that are decoded
    # ``batch_size`` at a time by faster-whisper's BatchedInferencePipeline (no conditioning, so no
    # loop can carry over; a window whose text looks like a loop or has a very low log-probability
    # is decoded again sequentially, with temperature fallback). See :func:`_transcribe_batched`.
    mode: str = "sequential"
    batch_size: int = 8
    window_s: float = 29.5
    # batched: let Whisper place segment timestamps inside a window; without them (default: the
    # same CER here and cheaper) segments are split at the pauses between fine VAD regions
    batch_timestamps: bool = False
    fallback_logprob: float = -1.0  # batched: re-decode a window below this avg log-probability
    # batched: groups of windows decoded at once, in threads (the model should have as many
    # CTranslate2 replicas, see minutes.model); 1 = one group after another
    workers: int = 1
    # batched: a window whose first decode (``beam_size``) has an average log-probability below
    # ``rescue_logprob`` is decoded again with the wider ``rescue_beam_size`` (its encoder output
    # is reused, so this costs decoder time only); of the two texts ``rescue_select`` keeps one
    # (a wider-beam text that looks like a loop or lost speech is never kept). None: off.
    # Beam 2 + all windows rescued at beam 5 (0.0) with "kanji" selection, committee /
    # holdout_kankyo / holdout_somu clean/noisy/mp3 (bench/minutes_sweep.py): final CER mean
    # 11.96 % -> 10.45 %, better on all nine, but ~1.65x the CPU (on a loaded machine); -0.3 (the
    # less sure half of the windows): mean 11.49 %. On the idle machine (23:33-23:43 UTC, same
    # sweep) CPU per audio second 0.106 -> 0.187, and a rescue at beam 3 costs the same (0.19):
    # the second decode itself is the cost. Off by default (the 3-hour goal is RTF 0.055, 0.041
    # without); NIIZA_AI_WHISPER_RESCUE_BEAM_SIZE=5 switches it on. See :func:`_rescue_windows`.
    rescue_logprob: float | None = None
    rescue_beam_size: int = 5
    rescue_min_length: float = 0.8  # wider-beam text shorter than this share of the first: rejected
    # "wider": the wider beam's text wins (unless rejected as above); "kanji": the text with the
    # larger kanji share of its spoken length wins (ties: the wider beam) — a kana spelling of a
    # word (ギアンダイ for 議案第, しっこぶ for 執行部) is how Whisper base writes what it is unsure of
    rescue_select: str = "kanji"
    # which windows are decoded again: "logprob" (below ``rescue_logprob``) or "kana" (also below
    # ``rescue_logprob``, and the first text's kanji share is under ``rescue_kanji_share``: where
    # the narrow beam may have spelled unsure words in kana; reference windows of the bench
    # recordings: kanji share 0.39-0.58, median ~0.52)
    rescue_trigger: str = "logprob"
    rescue_kanji_share: float = 0.5


@dataclass(frozen=True)
class Progress:
    done_s: float  # recording time up to which the audio has been processed
    total_s: float
    segments: int  # segments yielded so far in this call
    elapsed_s: float  # wall time of this call
    start_s: float = 0.0  # where this call started (resume offset)

    @property
    def fraction(self) -> float:
        return 1.0 if self.total_s <= 0 else min(1.0, max(0.0, self.done_s / self.total_s))

    @property
    def eta_s(self) -> float | None:
        worked = self.done_s - self.start_s
        if worked <= 1.0 or self.elapsed_s <= 0:
            return None
        return max(0.0, (self.total_s - self.done_s) * self.elapsed_s / worked)


ProgressCallback = Callable[[Progress], None]


@dataclass
class _Piece:
    orig_start: float  # seconds in the recording
    cat_start: float  # seconds in the concatenated block
    duration: float

    @property
    def cat_end(self) -> float:
        return self.cat_start + self.duration


def plan_blocks(regions: list[SpeechRegion], start: float, block_s: float) -> list[list[SpeechRegion]]:
    """Regions after ``start`` (clipped), grouped into blocks of at most ``block_s`` speech seconds."""
    blocks: list[list[SpeechRegion]] = []
    current: list[SpeechRegion] = []
    used = 0.0
    for r in regions:
        if r.end <= start:
            continue
        lo = max(r.start, start)
        while r.end - lo > 1e-6:
            room = block_s - used
            if room <= 0.5:  # block full
                blocks.append(current)
                current, used = [], 0.0
                room = block_s
            hi = min(r.end, lo + room)
            current.append(SpeechRegion(lo, hi))
            used += hi - lo
            lo = hi
    if current:
        blocks.append(current)
    return blocks


def _to_original(t: float, pieces: list[_Piece], idx: int) -> float:
    p = pieces[idx]
    return p.orig_start + min(max(t - p.cat_start, 0.0), p.duration)


def _piece_index(t: float, pieces: list[_Piece]) -> int:
    for i, p in enumerate(pieces):
        if t < p.cat_end:
            return i
    return len(pieces) - 1


def transcribe(
    model,
    audio: np.ndarray,
    *,
    options: TranscribeOptions | None = None,
    regions: list[SpeechRegion] | None = None,
    start: float = 0.0,
    first_index: int = 0,
    on_progress: ProgressCallback | None = None,
) -> Iterator[Segment]:
    """Yield segments of ``audio`` (16 kHz mono float32) from ``start`` seconds on.

    ``model`` is a ``faster_whisper.WhisperModel`` (see :func:`minutes.model.get_model`).
    ``regions``: fine VAD regions (from :func:`minutes.vad.detect_speech`); computed when None and
    ``options.vad``. Yielded segments carry word timestamps snapped to speech and consecutive
    ``index`` values from ``first_index``. Hallucination filtering is a separate step.
    """
    opts = options or TranscribeOptions()
    total = duration_of(audio)
    t0 = time.monotonic()
    if opts.vad:
        if regions is None:
            regions = detect_speech(audio)
        spans = transcription_regions(regions, total, min_gap_s=opts.min_gap_s, pad_s=opts.vad_pad_s)
    else:
        regions = []
        spans = [SpeechRegion(0.0, total)]
    blocks = plan_blocks(spans, start, opts.block_s)
    index = first_index
    count = 0

    def report(done: float) -> None:
        if on_progress is not None:
            on_progress(Progress(done_s=done, total_s=total, segments=count,
                                 elapsed_s=time.monotonic() - t0, start_s=start))

    def run_block(block: list[SpeechRegion], cond: bool, fallback: bool = True):
        """Yield (segment, processed-up-to time) for one block; restart without conditioning
        from the first segment that looks like a repetition loop. ``fallback=False``: one
        deterministic decode (temperature 0 only), no sampling at rising temperatures."""
        pieces: list[_Piece] = []
        arrays = []
        cat = 0.0
        gap = np.zeros(int(opts.join_silence_s * SAMPLE_RATE), dtype=np.float32)
        for r in block:
            a = audio[int(r.start * SAMPLE_RATE):int(r.end * SAMPLE_RATE)]
            if a.size == 0:
                continue
            if arrays and gap.size:
                arrays.append(gap)
                cat += gap.size / SAMPLE_RATE
            arrays.append(a)
            pieces.append(_Piece(r.start, cat, a.size / SAMPLE_RATE))
            cat += a.size / SAMPLE_RATE
        if not arrays:
            return
        chunk = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        del arrays
        fw_segments, _info = model.transcribe(
            chunk,
            language=opts.language,
            task="transcribe",
            beam_size=opts.beam_size,
            word_timestamps=opts.word_timestamps,
            condition_on_previous_text=cond,
            vad_filter=False,
            without_timestamps=False,
            **({} if fallback else {"temperature": 0.0}),
        )
        try:
            for s in fw_segments:
                seg = _convert(s, pieces, -1)
                if cond and opts.loop_guard and _looks_like_loop(seg):
                    log.info("repetition loop at %.1f s: re-decoding the rest of the block "
                             "without previous-text conditioning", seg.start)
                    rest = [SpeechRegion(max(r.start, seg.start), r.end) for r in block
                            if r.end > seg.start + 0.05]
                    yield from run_block(rest, False, fallback)
                    return
                yield seg, _to_original(s.end, pieces, _piece_index(s.end, pieces))
        finally:
            close = getattr(fw_segments, "close", None)
            if close is not None:
                close()

    def gap_regions(lo: float, hi: float) -> list[SpeechRegion]:
        """Fine speech regions inside (lo, hi) when they add up to a real stretch of speech."""
        lo, hi = lo + opts.fill_margin_s, hi - opts.fill_margin_s  # timestamps are imprecise
        if not regions or not opts.fill_gaps or hi - lo < opts.fill_min_speech_s:
            return []
        out = [SpeechRegion(max(r.start, lo), min(r.end, hi)) for r in regions
               if r.end > lo + 0.05 and r.start < hi - 0.05]
        out = [r for r in out if r.end - r.start > 0.1]
        if sum(r.end - r.start for r in out) < opts.fill_min_speech_s:
            return []
        return out

    def redecode(missed: list[SpeechRegion], where: str):
        """Speech Whisper skipped, decoded again on its own (unconditioned), snapped to speech.

        One deterministic decode, without faster-whisper's temperature fallback: what Whisper
        skipped once is mostly unclear speech, and sampling at temperatures up to 1.0 (best_of
        5 each) cost ~10 s for 20 s of it on holdout_somu (RTF 0.117 → 0.06 without) and gave a
        different, sometimes looping, text on every run."""
        log.info("re-decoding %.1f s of skipped speech %s", sum(r.end - r.start for r in missed), where)
        for gseg, gdone in run_block(missed, False, fallback=False):
            if regions:
                snap_to_speech(gseg, regions)
            yield gseg, gdone

    def emit(seg: Segment):
        nonlocal index, count
        seg.index = index
        index += 1
        count += 1
        return seg

    report(start)
    if opts.mode == "batched":
        yield from _batched(model, audio, opts, blocks, regions or [], run_block, gap_regions,
                            redecode, emit, report, total)
        report(total)
        return
    if opts.mode != "sequential":
        raise ValueError(f"unknown transcription mode {opts.mode!r} (sequential | batched)")
    for block in blocks:
        covered = block[0].start
        for seg, done in run_block(block, opts.condition_on_previous_text):
            if regions:
                snap_to_speech(seg, regions)
            # Whisper sometimes jumps over speech (a timestamp ending that skips the rest of its
            # 30 s window): decode skipped speech on its own before going on.
            missed = gap_regions(covered, seg.start)
            if missed:
                for gseg, gdone in redecode(missed, f"before {seg.start:.1f} s"):
                    yield emit(gseg)
                    report(min(total, gdone))
            covered = max(covered, seg.end)
            yield emit(seg)
            report(min(total, done))
        missed = gap_regions(covered, block[-1].end)
        if missed:
            for gseg, gdone in redecode(missed, "at the end of a block"):
                yield emit(gseg)
                report(min(total, gdone))
        report(block[-1].end)
    report(total)


def _looks_like_loop(seg: Segment) -> bool:
    from minutes.hallucination import max_consecutive_repeats  # noqa: PLC0415

    return seg.compression_ratio > 2.4 or max_consecutive_repeats(seg.text)[0] >= 4


def _convert(s, pieces: list[_Piece], index: int) -> Segment:
    words: list[Word] = []
    for w in s.words or []:
        i = _piece_index((w.start + w.end) / 2, pieces)  # both ends in the same piece
        words.append(Word(round(float(_to_original(w.start, pieces, i)), 3),
                          round(float(_to_original(w.end, pieces, i)), 3),
                          str(w.word), round(float(w.probability), 4)))
    if words:
        start, end = words[0].start, words[-1].end
    else:
        start = _to_original(s.start, pieces, _piece_index(s.start, pieces))
        end_i = _piece_index(max(s.start, s.end - 1e-3), pieces)
        end = _to_original(s.end, pieces, end_i)
    return Segment(
        index=index, start=round(float(start), 3), end=round(float(max(end, start)), 3),
        text=s.text.strip(), words=words,
        avg_logprob=round(float(s.avg_logprob), 4),
        compression_ratio=round(float(s.compression_ratio), 4),
        no_speech_prob=round(float(s.no_speech_prob), 4),
        temperature=float(s.temperature or 0.0),
    )


# --- batched mode -------------------------------------------------------------------------------

def split_long_region(r: SpeechRegion, fine: list[SpeechRegion], limit: float) -> list[SpeechRegion]:
    """Cut ``r`` into parts of at most ``limit`` seconds, at silences between fine VAD regions
    (the longest silence in the second half of each part; a hard cut only when there is none)."""
    out: list[SpeechRegion] = []
    lo = r.start
    starts = [f.start for f in fine]
    while r.end - lo > limit:
        hi = lo + limit
        best: tuple[float, float] | None = None  # (silence length, cut point)
        best_any: tuple[float, float] | None = None
        i = max(0, bisect.bisect_right(starts, lo) - 1)
        while i + 1 < len(fine) and fine[i].end < hi:
            gs, ge = fine[i].end, fine[i + 1].start
            mid = (gs + ge) / 2
            if ge > gs and lo + 1.0 < mid <= hi:
                cand = (ge - gs, mid)
                if mid > lo + limit / 2 and (best is None or cand > best):
                    best = cand
                if best_any is None or cand > best_any:
                    best_any = cand
            i += 1
        cut = (best or best_any or (0.0, hi))[1]
        out.append(SpeechRegion(round(lo, 3), round(cut, 3)))
        lo = cut
    if r.end - lo > 1e-3:
        out.append(SpeechRegion(round(lo, 3), r.end))
    return out


def plan_windows(block: list[SpeechRegion], fine: list[SpeechRegion], window_s: float,
                 join_silence_s: float) -> list[list[SpeechRegion]]:
    """Regions of a block → windows (lists of regions) packed for batched decoding.

    The block's regions are cut into the fine VAD regions inside them (speech between pauses), so
    the silences are left out; consecutive pieces are packed into one window as long as their
    concatenation, with the real pause between them capped at ``join_silence_s``
    (:func:`join_silences`), stays within ``window_s``. Whisper encodes a whole 30 s window whatever
    its content, so tight packing is what makes batched decoding cheap. A piece longer than the
    window is cut (at a silence where there is one, see :func:`split_long_region`).
    """
    pieces: list[SpeechRegion] = []
    starts = [f.start for f in fine]
    for r in block:
        inner = []
        if fine:
            k = max(0, bisect.bisect_right(starts, r.start) - 1)
            while k < len(fine) and fine[k].start < r.end:
                lo, hi = max(fine[k].start, r.start), min(fine[k].end, r.end)
                if hi - lo > 0.05:
                    inner.append(SpeechRegion(round(lo, 3), round(hi, 3)))
                k += 1
        for piece in inner or [r]:
            pieces.extend(split_long_region(piece, fine, window_s))
    windows: list[list[SpeechRegion]] = []
    cur: list[SpeechRegion] = []
    length = 0.0
    for r in pieces:
        d = r.end - r.start
        join = min(max(r.start - cur[-1].end, 0.0), join_silence_s) if cur else 0.0
        if cur and length + join + d > window_s:
            windows.append(cur)
            cur, length, join = [], 0.0, 0.0
        length += join + d
        cur.append(r)
    if cur:
        windows.append(cur)
    return windows


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


_SENTENCE_END = tuple("。．.？?！!")


_TRAILING_PARTICLE = re.compile(r"[かねよなわ][。？！、?!]?")


def _convert_split(s, pieces: list[_Piece], *, pause_s: float = 0.5, sentence_pause_s: float = 0.0,
                   max_s: float = 10.0) -> list[Segment]:
    """One batched Whisper segment (a whole window when decoded without timestamps) → segments.

    A new segment starts where the words cross from one concatenated piece (a fine VAD region) to
    the next and the real pause between them is at least ``pause_s`` (inside a piece longer than
    ``max_s``, e.g. without VAD: the gap between the words), or the last word ends a
    sentence (。？！, Whisper's own punctuation) after ``sentence_pause_s``, or the segment is already
    ``max_s`` long: about the sentence-sized segments Whisper's timestamps give in the sequential
    mode. Fragments at every short pause would make units too short for the speaker clustering.
    """
    if not s.words:
        return [_convert(s, pieces, -1)]
    groups: list[list[tuple[int, object]]] = []  # [(piece index, word)]
    for w in s.words:
        if groups and w.end - w.start <= 0.02 and _TRAILING_PARTICLE.fullmatch(str(w.word).strip()):
            # the aligner gave a sentence-final particle no time and put it at the start of the
            # next speech region (「…いつになります」|「かえっと…」): it ends the words before it
            prev_i, prev_w = groups[-1][-1]
            groups[-1].append((prev_i, SimpleNamespace(start=prev_w.end, end=prev_w.end, word=w.word,
                                                       probability=w.probability)))
            continue
        i = _piece_index((w.start + w.end) / 2, pieces)
        if groups:
            prev_i, prev_w = groups[-1][-1]
            if prev_i == i:  # same piece (no VAD silence between): only a long gap between words
                # or a long segment, and only in a piece longer than max_s (no VAD, or a long region)
                pause = w.start - prev_w.end
                if pieces[i].duration <= max_s or pause < pause_s and _to_original(w.start, pieces, i) - _to_original(
                        groups[-1][0][1].start, pieces, groups[-1][0][0]) < max_s:
                    groups[-1].append((i, w))
                    continue
                groups.append([(i, w)])
                continue
            prev = pieces[prev_i]
            pause = pieces[i].orig_start - (prev.orig_start + prev.duration)
            first_i, first_w = groups[-1][0]
            span = _to_original(w.start, pieces, i) - _to_original(first_w.start, pieces, first_i)
            sentence_end = str(prev_w.word).strip().endswith(_SENTENCE_END)
            if not (pause >= pause_s or span >= max_s or (sentence_end and pause >= sentence_pause_s)):
                groups[-1].append((i, w))
                continue
        groups.append([(i, w)])
    out: list[Segment] = []
    for group in groups:
        words = [Word(round(float(_to_original(w.start, pieces, i)), 3),
                      round(float(_to_original(w.end, pieces, i)), 3),
                      str(w.word), round(float(w.probability), 4)) for i, w in group]
        text = "".join(w.text for w in words).strip()
        if not text:
            continue
        out.append(Segment(
            index=-1, start=words[0].start, end=max(words[-1].end, words[0].start), text=text,
            words=words, avg_logprob=round(float(s.avg_logprob), 4),
            compression_ratio=round(_compression_ratio(text), 4),
            no_speech_prob=round(float(s.no_speech_prob), 4), temperature=0.0))
    return out


def plan_groups(windows: list, batch_size: int, workers: int = 1) -> list[list]:
    """Windows → consecutive groups of at most ``batch_size`` (as few as that allows, sizes within
    one of each other), decoded one group per call.

    With ``workers`` > 1 groups are decoded concurrently, so the number of groups is rounded up to
    a multiple of ``workers`` (when there are enough windows) and the windows are spread evenly
    over them: 10 windows at batch 4 on 2 workers are 3+3+2+2, not 4+4+2 (whose last group would
    leave a core idle).
    """
    n = len(windows)
    if n == 0:
        return []
    batch_size = max(1, batch_size)
    count = -(-n // batch_size)
    if workers > 1:
        count = min(n, -(-count // workers) * workers)
    size, extra = divmod(n, count)
    out, i = [], 0
    for k in range(count):
        j = i + size + (1 if k < extra else 0)
        out.append(windows[i:j])
        i = j
    return out


def _batched(model, audio: np.ndarray, opts: TranscribeOptions, blocks, fine: list[SpeechRegion],
             run_block, gap_regions, redecode, emit, report, total: float) -> Iterator[Segment]:
    """Batched decoding: each block's windows in groups of at most ``batch_size``, one
    BatchedInferencePipeline call per group, then per window a sequential re-decode when it looks
    like a loop / failed, and skipped speech re-decoded (:func:`_decode_group`).

    With ``opts.workers`` > 1, that many groups are decoded at once in threads (CTranslate2
    releases the GIL; the model needs as many replicas, ``WhisperModel(num_workers=…)``), so that
    one group's Python work (features, word alignment post-processing, splitting) overlaps
    another's encoder/decoder, and both cores stay busy. Groups are yielded in order; at most
    ``workers`` groups are in flight, so stopping early waits for at most those.
    """
    def groups():
        for block in blocks:
            windows = plan_windows(block, fine, opts.window_s, opts.join_silence_s)
            yield from plan_groups(windows, opts.batch_size, opts.workers)

    def decode(group):
        return _decode_group(model, audio, opts, group, fine, run_block, gap_regions, redecode)

    def finish(group, out):
        for seg in out:
            yield emit(seg)
            report(min(seg.end, total))
        report(min(group[-1][-1].end, total))

    if opts.workers <= 1:
        for group in groups():
            yield from finish(group, decode(group))
        return
    from collections import deque  # noqa: PLC0415
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    pool = ThreadPoolExecutor(max_workers=opts.workers, thread_name_prefix="whisper-batch")
    pending: deque = deque()
    try:
        it = groups()
        for group in it:
            pending.append((group, pool.submit(decode, group)))
            if len(pending) < opts.workers:
                continue
            group0, fut = pending.popleft()
            yield from finish(group0, fut.result())
        while pending:
            group0, fut = pending.popleft()
            yield from finish(group0, fut.result())
    finally:
        for _group, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True)  # a group already running finishes (bounded: one group)


class _WindowByWindowEncoder:
    """A ``WhisperModel`` whose ``encode`` runs the encoder one 30 s window at a time.

    The encoder's self-attention holds batch × heads × 1500² floats (72 MB per window for base)
    while it runs; a batch encoded at once makes that batch-sized, and with two groups decoded
    concurrently both peaks can meet. One window at a time costs the same CPU (the matrices are
    already large), and the outputs (1500 × d_model each) are stacked for the batched decoder.
    Everything else is the wrapped model's.
    """

    def __init__(self, model):
        self._model = model
        # window features (digest) -> encoder output: a window decoded a second time (a wider
        # beam, see _rescue_windows) is not encoded again
        self._cache: dict[bytes, np.ndarray] = {}

    def __getattr__(self, name):
        return getattr(self._model, name)

    def _encode_one(self, feats: np.ndarray) -> np.ndarray:
        import hashlib  # noqa: PLC0415

        key = hashlib.blake2b(np.ascontiguousarray(feats).tobytes(), digest_size=16).digest()
        out = self._cache.get(key)
        if out is None:
            out = np.asarray(self._model.encode(feats))
            self._cache[key] = out
        return out

    def encode(self, features: np.ndarray):
        import ctranslate2  # noqa: PLC0415

        if features.ndim == 2:
            features = features[None]
        outs = [self._encode_one(features[i:i + 1]) for i in range(features.shape[0])]
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate(outs)))


def _decode_group(model, audio: np.ndarray, opts: TranscribeOptions, group: list[list[SpeechRegion]],
                  fine: list[SpeechRegion], run_block, gap_regions, redecode) -> list[Segment]:
    """Decode one group of windows (thread-safe: no shared mutable state); segments in order,
    ``index`` not yet set."""
    from faster_whisper import BatchedInferencePipeline  # noqa: PLC0415

    pieces: list[_Piece] = []
    arrays: list[np.ndarray] = []
    clips: list[dict] = []
    clip_window: list[int] = []
    cat_samples = 0
    for wi, win in enumerate(group):
        w0 = cat_samples
        prev_end = None
        for r in win:
            a = audio[int(r.start * SAMPLE_RATE):int(r.end * SAMPLE_RATE)]
            if a.size == 0:
                continue
            if cat_samples > w0 and prev_end is not None:
                # the real pause, capped (same rule as plan_windows)
                n = int(min(max(r.start - prev_end, 0.0), opts.join_silence_s) * SAMPLE_RATE)
                if n:
                    arrays.append(np.zeros(n, dtype=np.float32))
                    cat_samples += n
            prev_end = r.end
            arrays.append(a)
            pieces.append(_Piece(r.start, cat_samples / SAMPLE_RATE, a.size / SAMPLE_RATE))
            cat_samples += a.size
        if cat_samples > w0:
            clips.append({"start": w0 / SAMPLE_RATE, "end": cat_samples / SAMPLE_RATE})
            clip_window.append(wi)
    if not clips:
        return []
    chunk = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    del arrays
    encoder = _WindowByWindowEncoder(model)
    # each batched segment carries its window's offset as ``seek`` (in 10 ms frames)
    seeks = [int(int(c["start"] * SAMPLE_RATE) / SAMPLE_RATE * 100) for c in clips]

    def decode(sub: list[int], beam_size: int) -> dict[int, list]:
        """Clips ``sub`` (indexes into clips) → {window index: faster-whisper segments}."""
        # one pipeline object per call: it keeps per-call state (last_speech_timestamp)
        fw_segments, _info = BatchedInferencePipeline(encoder).transcribe(
            chunk, language=opts.language, task="transcribe", beam_size=beam_size,
            batch_size=len(sub), word_timestamps=opts.word_timestamps,
            without_timestamps=not opts.batch_timestamps, clip_timestamps=[clips[k] for k in sub],
            vad_filter=False, log_progress=False)
        found: dict[int, list] = {}
        for s in fw_segments:
            wi = clip_window[max(0, bisect.bisect_right(seeks, s.seek) - 1)]
            found.setdefault(wi, []).append(s)
        return found

    by_window = decode(list(range(len(clips))), opts.beam_size)
    if opts.rescue_logprob is not None and opts.rescue_beam_size > opts.beam_size:
        by_window = _rescue_windows(opts, by_window, clip_window, decode)
    out: list[Segment] = []
    for wi, win in enumerate(group):
        fws = by_window.get(wi, [])
        text = "".join(s.text for s in fws)
        failed = fws and opts.loop_guard and (
            _compression_ratio(text) > 2.4
            or _looks_like_loop(Segment(-1, 0.0, 0.0, text, compression_ratio=0.0))
            or (fws[0].avg_logprob < opts.fallback_logprob and fws[0].no_speech_prob < 0.6))
        if failed:
            log.info("batched window at %.1f s looks like a loop or failed: re-decoding it "
                     "sequentially", win[0].start)
            segs = [seg for seg, _done in run_block(win, False)]
        else:
            segs = [seg for s in fws for seg in _convert_split(s, pieces)]
        if fine:
            for seg in segs:
                snap_to_speech(seg, fine)
        segs.sort(key=lambda x: x.start)
        # speech the window's decode skipped: decoded again on its own
        covered = win[0].start
        missed: list[SpeechRegion] = []
        for seg in segs + [None]:
            nxt = win[-1].end if seg is None else seg.start
            missed.extend(gap_regions(covered, nxt))
            if seg is not None:
                covered = max(covered, seg.end)
        if missed:
            segs.extend(gseg for gseg, _done in redecode(missed, "in a batched window"))
            segs.sort(key=lambda x: x.start)
        out.extend(segs)
    return out


def _window_text(fws: list) -> str:
    return "".join(s.text for s in fws).strip()


def _spoken_length(text: str) -> int:
    """About the number of kana the text is read with: a kanji counts two (ギアンダイ and 議案第
    are as long), punctuation and spaces nothing."""
    n = 0
    for ch in text:
        if _is_kanji(ch):
            n += 2
        elif ch.isalnum():
            n += 1
    return n


def _window_logprob(fws: list) -> float:
    """A batched window's average log-probability (every segment of it carries the same)."""
    return min(float(s.avg_logprob) for s in fws)


def _rescue_windows(opts: TranscribeOptions, by_window: dict[int, list], clip_window: list[int],
                    decode) -> dict[int, list]:
    """Windows whose first decode is unsure (average log-probability below
    ``opts.rescue_logprob``) decoded again with ``opts.rescue_beam_size``, in one batch.

    A narrow beam is what makes batched decoding cheap, and on a confident window a wider one
    changes little; where the narrow beam is unsure it often settles on a kana spelling or a
    near-homophone that a wider search avoids, and on other windows the wider beam is the one
    that falls into a kana spelling. So (``rescue_select="kanji"``) the text with the larger kanji
    share of its spoken length is kept, the wider one on a tie; a wider text that looks like a
    loop or is much shorter (lost speech) is never kept. ``"wider"``: the wider text whenever it
    is not rejected."""
    sub = [k for k, wi in enumerate(clip_window)
           if by_window.get(wi) and _window_logprob(by_window[wi]) < opts.rescue_logprob
           and (opts.rescue_trigger != "kana" or _kana_spelled(_window_text(by_window[wi]), opts))]
    if not sub:
        return by_window
    second = decode(sub, opts.rescue_beam_size)
    out = dict(by_window)
    for k in sub:
        wi = clip_window[k]
        t1, t2 = _window_text(by_window[wi]), _window_text(second.get(wi, []))
        n1, n2 = _spoken_length(t1), _spoken_length(t2)
        if not t2 or n2 < opts.rescue_min_length * n1:
            log.info("wider-beam re-decode shortened a window (%d -> %d): first kept", n1, n2)
            continue
        if _compression_ratio(t2) > 2.4 or _looks_like_loop(Segment(-1, 0.0, 0.0, t2)):
            continue
        if opts.rescue_select == "kanji" and _kanji_share(t1) > _kanji_share(t2) + 1e-9:
            continue
        out[wi] = second[wi]
    return out


def _is_kanji(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def _kana_spelled(text: str, opts: TranscribeOptions) -> bool:
    """A window text with less kanji than usual: the narrow beam may have spelled words in kana."""
    return _kanji_share(text) < opts.rescue_kanji_share


def _kanji_share(text: str) -> float:
    """Share of the spoken length (:func:`_spoken_length`) written in kanji."""
    n = _spoken_length(text)
    return 2 * sum(_is_kanji(ch) for ch in text) / n if n else 0.0
