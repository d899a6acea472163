"""Punctuation (句読点) restoration and normalisation for Japanese Whisper output.

Whisper base often returns Japanese without 。、 (or with spaces between phrases), and sometimes
with ASCII ``,.?`` marks. :func:`punctuate` keeps the marks Whisper produced (normalised to 。、)
and adds missing ones from two cues:

- morphology (SudachiPy): a sentence-final polite form (です/ます/でした/ました/ません/ましょう/
  でしょう/ください/ございます …, optionally followed by か/ね/よ) not followed by a particle or
  auxiliary ends a sentence → 。; a filler (感動詞・フィラー) or conjunction at the start → 、;
- pauses from word timestamps (or spaces in the text): a long pause after a non-particle → 。,
  a short pause before a content word → 、 (never inside a compound particle: に|ついて, と|して).

Writing conventions applied on top (公用文/記者ハンドブック style, as in council minutes):

- a filler (感動詞・フィラー) is set off by 、 on both sides, so that 整文 can drop it cleanly;
- a connective at the start of a sentence (また, なお, それでは, 次に, よって …) is followed by 、;
- 。 never follows a case/binding/conjunctive particle (…までに。市の → …までに、市の): Whisper's
  own 。 there, and the mark closing a speaker turn that was cut mid-sentence, become 、;
- questions end with 。 like any sentence (the convention of council minutes), not ？.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from minutes._sudachi import Morph, tokenize
from minutes.types import Word

PUNCT = "。、"
_ASCII_MAP = str.maketrans({",": "、", "，": "、", ".": "。", "．": "。", "?": "。", "？": "。",
                            "!": "。", "！": "。", "｡": "。", "､": "、"})
_JA = r"\u3040-\u30ff\u3400-\u9fff\uff66-\uff9f々〆ー"
_SPACE_BETWEEN_JA = re.compile(rf"(?<=[{_JA}0-9０-９])[ \u3000]+(?=[{_JA}0-9０-９])")
_MULTI = re.compile(r"([。、])[。、]+")

# Polite sentence-final forms (surface of the last auxiliary/verb token).
_FINAL_SURFACES = {
    "です", "ます", "ません", "ましょう", "でしょう", "ください", "下さい", "ございます",
    "いたします", "致します", "まいります", "参ります",
}
_PAST_FINAL = {"た": {"まし", "でし"}, "ん": {"ませ"}}
_SENTENCE_PARTICLES = {"か", "ね", "よ", "な", "よね"}
_CONJ_STARTERS = ("しかし", "それでは", "では", "また", "なお", "次に", "ただいま", "ただ今",
                  "それから", "したがって", "ですので", "つきましては", "以上", "続きまして")
# Sentence-initial connectives followed by 、 (besides Sudachi's 接続詞, which covers また/なお/しかし/
# さらに/ただし/一方 …): multi-morpheme ones that Sudachi splits.
_CONNECTIVES = ("それでは", "では", "次に", "よって", "したがって", "従って", "つきましては",
                "続きまして", "ですので", "ですから", "だから", "そこで", "最後に", "ところで",
                "要するに", "その上で", "そのうえで", "その結果", "このため", "そのため", "これにより")
# Particles after which a sentence cannot end (a 。 there is a 、): case, binding, conjunctive
# and adverbial particles. 終助詞 (か/ね/よ) and 準体助詞 (の: ~のか) may end a sentence.
_NON_FINAL_PARTICLES = ("格助詞", "係助詞", "接続助詞", "副助詞")
# Compound particles (複合辞): no pause comma between their parts.
_COMPOUND_PARTICLES = {
    "に": ("つい", "つき", "おい", "おけ", "よっ", "より", "よる", "よれ", "対し", "対す", "関し",
          "関す", "とっ", "向け", "伴", "基づ", "沿っ", "わたっ", "あたっ", "当たっ", "際し"),
    "と": ("し", "する", "いう", "いっ", "いい", "なっ", "なる"),
    "を": ("もっ", "通じ", "通し", "めぐっ", "踏まえ", "含め", "除"),
}


@dataclass(frozen=True)
class PunctuationParams:
    comma_pause_s: float = 0.45  # pause → 、 (before a content word), at a typical speech rate
    period_pause_s: float = 0.9  # pause → 。 (after a non-particle)
    # The comma pause scales with the speaker's rate (seconds per mora measured on the turn's
    # words): a pause of about `comma_pause_s / typical_mora_s` morae, kept within the bounds.
    typical_mora_s: float = 0.13
    comma_pause_min_s: float = 0.3
    comma_pause_max_s: float = 0.7


_NUM_SEP = re.compile(r"(?<=\d)([,，.．])(?=\d)")


def _to_ja_marks(text: str) -> str:
    """ASCII/full-width marks → 。、, except thousands separators and decimal points (3,000 / 2.5)."""
    protected = _NUM_SEP.sub(lambda m: "\x00" if m.group(1) in ",，" else "\x01", text)
    return protected.translate(_ASCII_MAP).replace("\x00", ",").replace("\x01", ".")


def normalize_punctuation(text: str) -> str:
    """ASCII/half-width marks → 。、, ？！ → 。, no spaces between Japanese, no doubled marks."""
    s = _to_ja_marks(text)
    s = _SPACE_BETWEEN_JA.sub(" ", s)  # keep one space as a pause hint; callers may drop it
    s = re.sub(r"\s*([。、])\s*", r"\1", s)
    s = _MULTI.sub(lambda m: "。" if "。" in m.group(0) else "、", s)
    s = s.lstrip("、。 ").strip()
    return s


def _is_final(morphs: Sequence[Morph], i: int) -> bool:
    m = morphs[i]
    if m.surface in _FINAL_SURFACES and m.pos1 in ("助動詞", "動詞"):
        return True
    prev = morphs[i - 1].surface if i > 0 else ""
    if m.surface in _PAST_FINAL and prev in _PAST_FINAL[m.surface]:
        return True
    if m.pos1 == "助詞" and m.pos2 == "終助詞" and m.surface in _SENTENCE_PARTICLES and i > 0:
        return _is_final(morphs, i - 1) or morphs[i - 1].surface in ("ん", "た")
    return False


def _continues(m: Morph) -> bool:
    """True if ``m`` grammatically continues the previous word (no boundary before it)."""
    return m.pos1 in ("助詞", "助動詞", "接尾辞", "補助記号") or (m.pos1 == "動詞" and m.pos2 == "非自立可能"
                                                            and m.surface in ("する", "し", "さ"))


def _cannot_end(m: Morph) -> bool:
    """True if no sentence ends with ``m``: a case/binding/conjunctive/adverbial particle, or a
    verb or auxiliary in its 連用形 (実施し / 見直し — the clause goes on)."""
    if m.pos1 == "助詞":
        return m.pos2 in _NON_FINAL_PARTICLES and m.surface not in _SENTENCE_PARTICLES
    return m.pos1 in ("動詞", "助動詞") and m.conj_form.startswith("連用形")


def _compound_particle(m: Morph, next_text: str) -> bool:
    """``m`` is the first part of a compound particle (に|ついて, と|して, を|もって)."""
    return m.pos1 == "助詞" and next_text.startswith(_COMPOUND_PARTICLES.get(m.surface, ()))


def _connective_ends_at(s: str, sent_start: int, m: Morph) -> bool:
    """A sentence-initial connective (また / それでは / 次に …) ends with ``m``."""
    if m.begin == sent_start and m.pos1 == "接続詞":
        return True
    return s[sent_start:m.end] in _CONNECTIVES


def _char_pauses(text: str, words: Sequence[Word] | None) -> list[float]:
    """Pause (s) after each character of ``text`` (spaces in the text count as 0.5 s)."""
    pauses = [0.0] * len(text)
    if words:
        joined = "".join(w.text for w in words)
        if joined.replace(" ", "") == text.replace(" ", ""):
            # map each non-space char of text to its word
            owner: list[int] = []
            for wi, w in enumerate(words):
                owner.extend([wi] * len(w.text.replace(" ", "")))
            k = 0
            for ci, ch in enumerate(text):
                if ch == " ":
                    continue
                wi = owner[k]
                nxt = owner[k + 1] if k + 1 < len(owner) else None
                if nxt is not None and nxt != wi:
                    pauses[ci] = max(0.0, words[nxt].start - words[wi].end)
                k += 1
    for ci, ch in enumerate(text):
        if ch == " " and ci > 0:
            pauses[ci - 1] = max(pauses[ci - 1], 0.5)
    return pauses


_SMALL_KANA = set("ァィゥェォャュョヮぁぃぅぇぉゃゅょゎ")


def mora_seconds(words: Sequence[Word] | None) -> float | None:
    """Seconds per mora of ``words`` (word durations over the morae of their Sudachi readings);
    None when there is too little speech to tell (under 20 morae)."""
    if not words:
        return None
    text = "".join(w.text for w in words).replace(" ", "")
    speech_s = sum(max(0.0, w.end - w.start) for w in words)
    morae = sum(sum(1 for ch in (m.reading or m.surface) if ch not in _SMALL_KANA)
                for m in tokenize(text) if m.pos1 != "補助記号")
    if morae < 20 or speech_s <= 0:
        return None
    return speech_s / morae


def comma_pause(params: PunctuationParams, words: Sequence[Word] | None) -> float:
    """Pause (s) that makes a 、 for this speaker: ``comma_pause_s`` scaled by the speech rate."""
    mora_s = mora_seconds(words)
    if mora_s is None:
        return params.comma_pause_s
    scaled = params.comma_pause_s * mora_s / params.typical_mora_s
    return min(params.comma_pause_max_s, max(params.comma_pause_min_s, scaled))


def punctuate(text: str, words: Sequence[Word] | None = None, *, end_of_turn: bool = True,
              params: PunctuationParams | None = None) -> str:
    """Return ``text`` with 。、 restored (existing marks kept and normalised).

    ``words``: Whisper word timestamps of this text (pauses are read from them when their
    concatenation matches the text). ``end_of_turn``: the text ends a speaker turn, so it ends
    with 。 unless it already ends with a mark.
    """
    p = params or PunctuationParams()
    raw = _to_ja_marks(text).strip()
    if not raw:
        return ""
    pauses_with_spaces = _char_pauses(raw, words)
    # remove spaces, carrying their pause hint onto the previous char
    chars: list[str] = []
    pauses: list[float] = []
    for ch, pa in zip(raw, pauses_with_spaces):
        if ch in " \u3000":
            if pauses:
                pauses[-1] = max(pauses[-1], 0.5, pa)
            continue
        chars.append(ch)
        pauses.append(pa)
    s = "".join(chars)
    morphs = tokenize(s)
    comma_s = comma_pause(p, words)
    out: list[str] = []
    sent_start = 0  # offset in s where the current sentence starts
    last_word: Morph | None = None  # last morph that is not a mark
    for i, m in enumerate(morphs):
        if m.pos1 == "補助記号":
            if m.surface == "。" and last_word is not None and _cannot_end(last_word):
                out.append("、")  # Whisper's 。 after a particle: the sentence goes on
            else:
                out.append(m.surface)
                if m.surface == "。":
                    sent_start = m.end
            continue
        out.append(m.surface)
        last_word = m
        nxt = morphs[i + 1] if i + 1 < len(morphs) else None
        if nxt is None:
            break
        if nxt.surface in PUNCT or nxt.pos2 in ("句点", "読点"):
            continue
        pause = max(pauses[m.end - 1], 0.0) if m.end - 1 < len(pauses) else 0.0
        next_text = s[nxt.begin:]
        if _is_final(morphs, i) and (not _continues(nxt) or next_text.startswith(_CONJ_STARTERS)):
            if nxt.pos2 == "終助詞":
                continue
            out.append("。")
            sent_start = nxt.begin
        elif m.pos1 == "感動詞" and m.pos2 == "フィラー":
            if nxt.pos1 != "感動詞":
                out.append("、")
        elif nxt.pos1 == "感動詞" and nxt.pos2 == "フィラー":
            out.append("、")  # a filler is set off on both sides (…ですので、まあ、修理が)
        elif _connective_ends_at(s, sent_start, m) and not _continues(nxt):
            out.append("、")
        elif _compound_particle(m, next_text):
            continue
        elif pause >= p.period_pause_s and m.pos1 not in ("助詞", "接頭辞") and not _continues(nxt) \
                and not _cannot_end(m):
            out.append("。")
            sent_start = nxt.begin
        elif pause >= comma_s and not _continues(nxt) and m.pos1 != "接頭辞":
            out.append("、")
    result = "".join(out)
    if end_of_turn and result and result[-1] not in PUNCT:
        # a turn cut mid-sentence (speaker split, interruption) does not end with 。
        result += "、" if last_word is not None and _cannot_end(last_word) else "。"
    return normalize_punctuation(result)


# --- evaluation -------------------------------------------------------------------------------

def punctuation_positions(text: str) -> tuple[str, list[tuple[int, str]]]:
    """(text without 。、 and spaces, [(index of the char before the mark, mark)])."""
    plain: list[str] = []
    marks: list[tuple[int, str]] = []
    for ch in normalize_punctuation(text):
        if ch in PUNCT:
            if plain:
                marks.append((len(plain) - 1, ch))
        elif not ch.isspace():
            plain.append(ch)
    return "".join(plain), marks
