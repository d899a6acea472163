"""整文 (clean-up): the readable version of a transcript line.

The 素起こし (``raw_text``) keeps everything that was said; the 整文 (``text``) drops fillers
(えー/あのー/えっと/まあ …), stutters and immediately repeated words, and normalises punctuation.
Rules are conservative: a filler is removed only at a phrase boundary (start, after 。、 or a
pause) or in its elongated form (あのー, えーと), which is never a content word.
"""
from __future__ import annotations

import re

from minutes._sudachi import tokenize
from minutes.punctuate import normalize_punctuation

# Elongated fillers: never content words, removed anywhere (with a following comma).
_ELONGATED = r"(?:えっ?とー+|え[ーぇ]+っ?と?ー*|えーっと|ええ[ーっ]*と|あのー+|あのう+|そのー+|そのう+|まー+|う[ーう]+ん|んー+|あー+|あ[ーっ]?の[ーぉ]+)"
# Short fillers: removed only at a boundary (start, after 。、 or space) and before 、 / a pause,
# or (for まあ/えっと) before any word at the start of a sentence.
# 絵: Whisper base often writes the filler え as 絵 (絵、本議案は…); only removed before a comma.
_SHORT_BEFORE_COMMA = r"(?:えっと|ええと|えと|え|絵|あの|その|まあ(?!ま)|ま|あ|ん)"
_SHORT_AT_START = r"(?:えっと|ええと|えと|まあ(?!ま))"
_B = r"(?:^|(?<=[。、\s]))"

_RE_ELONGATED = re.compile(_ELONGATED + r"[、\s]*")
_RE_SHORT_COMMA = re.compile(_B + _SHORT_BEFORE_COMMA + r"[、\s]+")
_RE_SHORT_START = re.compile(_B + _SHORT_AT_START + r"(?=[^、。\s])")

FILLERS = ("えー", "えーと", "えっと", "ええと", "あのー", "あの", "そのー", "まあ", "まー", "うーん", "え")


def remove_fillers(text: str) -> str:
    s = _RE_ELONGATED.sub("", text)
    prev = None
    while prev != s:  # "えー、あの、" → both go
        prev = s
        s = _RE_SHORT_COMMA.sub("", s)
        s = _RE_SHORT_START.sub("", s)
        s = re.sub(r"^[、\s]+|(?<=。)[、\s]+", "", s)
    return s


def collapse_repeats(text: str) -> str:
    """Drop an immediately repeated phrase of whole morphemes ("保育所の、保育所の" → "保育所の").

    The repeated unit must be at least 2 characters and contain a content word, so grammatical
    reduplication inside one morpheme (一人一人, いろいろ, ますます) is untouched.
    """
    morphs = tokenize(text)
    if len(morphs) < 2:
        return text
    surfaces = [m.surface for m in morphs]
    keep = [True] * len(morphs)
    i = 0
    n = len(morphs)
    while i < n:
        removed = False
        for k in range(min(6, (n - i) // 2), 0, -1):
            unit = surfaces[i:i + k]
            j = i + k
            # optional comma between the copies
            gap = 1 if j < n and surfaces[j] == "、" else 0
            if surfaces[j + gap:j + gap + k] != unit:
                continue
            if len("".join(unit)) < 2 or not any(m.pos1 in ("名詞", "動詞", "形容詞", "副詞", "代名詞")
                                                for m in morphs[i:i + k]):
                continue
            for t in range(i, j + gap):
                keep[t] = False
            i = j + gap
            removed = True
            break
        if not removed:
            i += 1
    if all(keep):
        return text
    return "".join(s for s, k in zip(surfaces, keep) if k)


# Whisper writes the 一 of common compounds as the digit 1 (1時預かり, 1般, 1緒に).
_ICHI_COMPOUNDS = ("時預", "時保育", "時的", "時金", "般", "緒", "層", "律", "括", "定", "環", "応",
                   "致", "斉", "連", "切", "旦", "生懸命", "部改正", "部変更", "部を改正", "部を変更")
_ICHI_RE = re.compile(r"(?<![0-9０-９.,])[1１](?=(?:" + "|".join(_ICHI_COMPOUNDS) + r"))")


def normalize_orthography(text: str) -> str:
    """Spelling fixes that are not style: 1般 → 一般, 1時預かり → 一時預かり."""
    return _ICHI_RE.sub("一", text)


def clean_text(raw_text: str) -> str:
    """整文 version of a 素起こし line."""
    s = remove_fillers(raw_text)
    s = collapse_repeats(s)
    s = normalize_punctuation(s)
    return s
