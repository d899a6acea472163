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


# Whisper base often writes the filler えー as a lone kanji read エ/エイ or a Latin letter
# (絵、定刻となりました / A 処遇改善 / 営質疑がないようですので). Such a word is taken for the filler
# when it stands at the start of a phrase (first word of the segment, or after a pause or a mark)
# and Whisper itself was unsure of it: it is then written えー in the 素起こし (and 整文 drops it).
_MISHEARD_E = frozenset("絵映英栄営衛江恵AEae")
_MISHEARD_E_MAX_PROB = 0.7
_PHRASE_PAUSE_S = 0.3
_WORD_MARKS = "。、，,.？?！! 　"


def _phrase_start(words, k: int) -> bool:
    if k == 0:
        return True
    prev, cur = words[k - 1], words[k]
    return (cur.start - prev.end >= _PHRASE_PAUSE_S or prev.text.rstrip().endswith(tuple(_WORD_MARKS))
            or cur.text[:1].isspace())


def misheard_filler(words, k: int) -> bool:
    """True when word ``k`` of a segment is the filler えー that Whisper wrote as 絵/英/営/A …
    (a one-character word at a phrase start, probability below 0.7)."""
    w = words[k]
    core = w.text.strip().rstrip(_WORD_MARKS)
    if len(core) != 1 or core not in _MISHEARD_E or w.probability >= _MISHEARD_E_MAX_PROB:
        return False
    if not _phrase_start(words, k):
        return False
    if core.isascii():
        return True
    # a kanji that makes a word with what follows is content (英語, 営業, 絵本): Sudachi decides
    following = "".join(x.text for x in words[k:k + 4]).strip()
    morphs = tokenize(following)
    return bool(morphs) and morphs[0].surface == core


def fix_misheard_fillers(segment):
    """A copy of ``segment`` whose misheard fillers (:func:`misheard_filler`) read えー; the
    segment itself when there are none (or its words do not spell its text)."""
    from dataclasses import replace  # noqa: PLC0415

    words = segment.words
    hits = [k for k in range(len(words)) if misheard_filler(words, k)]
    if not hits or "".join(w.text for w in words).strip() != segment.text.strip():
        return segment
    new_words = list(words)
    for k in hits:
        w = words[k]
        core = w.text.strip().rstrip(_WORD_MARKS)
        lead = w.text[:len(w.text) - len(w.text.lstrip())]
        tail = w.text.strip()[len(core):]
        new_words[k] = replace(w, text=lead + "えー" + tail)
    return replace(segment, words=new_words, text="".join(w.text for w in new_words).strip())


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


# Kanji numerals before a counter → Arabic digits (公用文, horizontal writing: 八割 → 8割,
# 百二十人 → 120人). A lone 一 only before counters where it is a count (一時/一人/一日/一部 … are
# words); never after a kanji that makes a word of it (数十人, 同一人), except the ones that head
# a count (第/約/各/年/月/週 …); no 分/度/次 (十分, 二度と, 二次).
_KANSUJI = "〇一二三四五六七八九十百千"  # 万/億 stay as units: 二万人 → 2万人
_COUNTERS = ("割", "人", "回", "件", "個", "か所", "箇所", "カ所", "ヶ所", "号", "歳", "円", "世帯",
             "年度", "年", "か月", "カ月", "ヶ月", "月", "日間", "日", "時間", "時", "名", "台", "校",
             "倍", "％", "%", "パーセント", "点", "条", "項", "万", "億")
_ONE_COUNTERS = ("割", "件", "号", "か所", "箇所", "カ所", "ヶ所", "世帯", "名", "台", "校", "倍", "％",
                 "%", "パーセント", "万", "億", "か月", "カ月", "ヶ月", "年度")
_KANSUJI_RE = re.compile(
    r"(?:(?<=[第約計各毎満年月週日全万億])|(?<![\u3400-\u9fff々]))([" + _KANSUJI + r"]+)(?=("
    + "|".join(_COUNTERS) + r"))(?!日[市町月])(?!月[日見])")
_DIGIT = {c: i for i, c in enumerate("〇一二三四五六七八九")}


def kansuji_value(s: str) -> int | None:
    """二〇二五 / 百二十 / 三千五百 → int; None when it is not a well-formed number."""
    if not s:
        return None
    if all(c in _DIGIT for c in s):  # positional: 二〇二五
        return int("".join(str(_DIGIT[c]) for c in s)) if len(s) == 1 or s[0] != "〇" else None
    section, digit = 0, None
    for c in s:
        if c in _DIGIT:
            if digit is not None:
                return None
            digit = _DIGIT[c]
        elif c in "十百千":
            section += (1 if digit is None else digit) * {"十": 10, "百": 100, "千": 1000}[c]
            digit = None
    return section + (digit or 0)


def _kansuji_sub(m: re.Match) -> str:
    num, counter = m.group(1), m.group(2)
    if num == "一" and counter not in _ONE_COUNTERS:
        return num
    value = kansuji_value(num)
    return num if value is None else str(value)


# 公用文 spellings (公用文作成の考え方): 形式名詞 and 補助用言 in kana. Only forms that cannot be
# something else: の通り → のとおり (not 通りを/通りが: a street), 従来通り → 従来どおり,
# 宜しく → よろしく, ～ば良い → ～ばよい, 他に/他の (the start of a phrase) → ほかに/ほかの;
# 題 before a number of a 号 → 第 (議案題15号).
_KOYOBUN = [
    (re.compile(r"の通り(?![をがはのもへ沿])"), "のとおり"),
    (re.compile(r"(?<=従来|予定|計画|例年|前年|規定|想定|指示|希望|要望|説明|期待|文字|方針)通り"), "どおり"),
    (re.compile(r"宜しく"), "よろしく"),
    (re.compile(r"(?:(?<=[ばて])|(?<=ても)|(?<=でも))良(?=い|く|かっ|けれ)"), "よ"),
    (re.compile(r"(?:^|(?<=[。、\s]))他(?=に|の)"), "ほか"),
    (re.compile(r"題(?=[0-9０-９" + _KANSUJI + r"]+号)"), "第"),
]


def normalize_orthography(text: str) -> str:
    """Spelling fixes that are not style: 1般 → 一般, 1時預かり → 一時預かり; 公用文 spellings
    (八割 → 8割, の通り → のとおり, 宜しく → よろしく …)."""
    s = _ICHI_RE.sub("一", text)
    s = _KANSUJI_RE.sub(_kansuji_sub, s)
    for pattern, repl in _KOYOBUN:
        s = pattern.sub(repl, s)
    return s


def clean_text(raw_text: str) -> str:
    """整文 version of a 素起こし line."""
    s = remove_fillers(raw_text)
    s = collapse_repeats(s)
    s = normalize_punctuation(s)
    return s
