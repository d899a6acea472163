"""Hallucination filter: judge each Whisper segment, keep the dropped ones listed with a reason.

Whisper invents text over silence and noise and can get stuck repeating itself. A segment is
dropped (``segment.dropped`` set to the reason; the pipeline lists it, never silently deletes it)
when:

- ``no_speech``: high no-speech probability with very low confidence or little VAD speech;
- ``compression``: gzip compression ratio above the threshold (repetitive text);
- ``repetition``: a word or phrase repeated many times in a row;
- ``outside_speech``: almost none of its time span is speech according to the VAD;
- ``stock_phrase``: the whole text is a known stock hallucination (ご視聴ありがとうございました …).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from minutes.types import Segment, SpeechRegion
from minutes.vad import speech_overlap


@dataclass(frozen=True)
class HallucinationParams:
    # Whisper's no-speech probability and avg log-prob belong to the whole 30 s decoding window,
    # not to one segment: on their own they would drop real speech sharing a window with silence.
    # So a segment is dropped as no-speech only when the VAD also finds little speech under it,
    # or when the window's confidence is very low as well (Whisper's own rule).
    no_speech_prob: float = 0.6
    no_speech_logprob: float = -1.0
    no_speech_max_speech_fraction: float = 0.5
    compression_ratio: float = 2.4
    max_repeats: int = 4  # a unit repeated this many times in a row → drop
    min_speech_fraction: float = 0.1


STOCK_PHRASES = (
    "ご視聴ありがとうございました", "ご視聴ありがとうございます", "チャンネル登録をお願いします",
    "チャンネル登録よろしくお願いします", "最後までご視聴いただきありがとうございました",
    "字幕視聴ありがとうございました", "おやすみなさい", "お疲れ様でした",
)
# Stock phrases people also say in a meeting (お疲れ様でした closes many): dropped only when
# Whisper was not sure of them as speech, i.e. unless the VAD finds speech under at least half of
# the segment, the words' mean probability is at least 0.8 and the no-speech probability is low.
SPOKEN_STOCK_PHRASES = ("お疲れ様でした", "お疲れさまでした", "おやすみなさい")
_STOCK = {re.sub(r"[\s。、!！?？]", "", unicodedata.normalize("NFKC", p)) for p in STOCK_PHRASES}
_SPOKEN_STOCK = {re.sub(r"[\s。、!！?？]", "", unicodedata.normalize("NFKC", p)) for p in SPOKEN_STOCK_PHRASES}


def _confident_speech(segment: Segment, fraction: float | None) -> bool:
    if fraction is None or fraction < 0.5 or segment.no_speech_prob >= 0.3 or not segment.words:
        return False
    return sum(w.probability for w in segment.words) / len(segment.words) >= 0.8


def _compact(text: str) -> str:
    return re.sub(r"[\s。、,.!！?？]", "", unicodedata.normalize("NFKC", text))


def max_consecutive_repeats(text: str, max_unit: int = 12) -> tuple[int, str]:
    """Largest number of back-to-back copies of any unit of 1..max_unit characters."""
    s = _compact(text)
    best, best_unit = 1, ""
    n = len(s)
    for size in range(1, min(max_unit, n // 2) + 1):
        i = 0
        while i + size <= n:
            unit = s[i:i + size]
            count = 1
            j = i + size
            while s[j:j + size] == unit:
                count += 1
                j += size
            # single characters legitimately repeat (ーー, 々): need more copies for them
            effective = count if size > 1 else count // 3
            if effective > best:
                best, best_unit = effective, unit
            i = j if count > 1 else i + 1
    return best, best_unit


def judge(segment: Segment, regions: list[SpeechRegion] | None = None,
          params: HallucinationParams | None = None) -> str:
    """The reason to drop ``segment``, or "" to keep it."""
    p = params or HallucinationParams()
    text = segment.text.strip()
    if not _compact(text):
        return "empty"
    fraction = None
    if regions is not None and segment.end > segment.start:
        fraction = speech_overlap(segment.start, segment.end, regions) / (segment.end - segment.start)
    if segment.no_speech_prob >= p.no_speech_prob and (
            segment.avg_logprob < p.no_speech_logprob
            or (fraction is not None and fraction < p.no_speech_max_speech_fraction)):
        return "no_speech"
    if segment.compression_ratio > p.compression_ratio:
        return "compression"
    repeats, _unit = max_consecutive_repeats(text)
    if repeats >= p.max_repeats:
        return "repetition"
    if _compact(text) in _STOCK and not (_compact(text) in _SPOKEN_STOCK
                                         and _confident_speech(segment, fraction)):
        return "stock_phrase"
    if fraction is not None and fraction < p.min_speech_fraction:
        return "outside_speech"
    return ""


def mark(segment: Segment, regions: list[SpeechRegion] | None = None,
         params: HallucinationParams | None = None) -> Segment:
    """Set ``segment.dropped`` (in place) and return the segment."""
    segment.dropped = judge(segment, regions, params)
    return segment
