"""The minutes draft (議事録案): header, 発言 record by speaker, and an extractive 要点 section.

The header (会議名, 日時, 場所, 出席者, 議題) is filled by the clerk. 要点 lists sentences that carry
decisions (決定, 承認, 可決, 了承 …) and assignments/deadlines (までに, 次回, 検討する, 担当 …),
taken verbatim from the 整文 text with their speaker and time, so every point can be checked
against the audio.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from minutes.types import Segment, Utterance

DECISION_CUES = ("決定", "承認", "可決", "了承", "否決", "採択", "決しました", "決めました", "異議なし",
                 "ご異議なし", "賛成多数", "全会一致", "認められ")
ACTION_CUES = ("までに", "次回", "検討する", "検討して", "検討いたします", "担当", "期限", "締切",
               "お願いします", "対応する", "対応いたします", "報告する", "報告いたします", "確認する",
               "確認いたします", "予定です")
_SENTENCE_RE = re.compile(r"[^。]+。?")


@dataclass
class MinutesHeader:
    title: str = ""  # 会議名
    date: str = ""  # 日時
    place: str = ""  # 場所
    attendees: list[str] = field(default_factory=list)  # 出席者
    agenda: list[str] = field(default_factory=list)  # 議題

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "MinutesHeader":
        d = d or {}

        def as_list(v):
            if v is None:
                return []
            if isinstance(v, str):
                return [x.strip() for x in re.split(r"[、,\n]", v) if x.strip()]
            return [str(x) for x in v]

        return cls(str(d.get("title", "")), str(d.get("date", "")), str(d.get("place", "")),
                   as_list(d.get("attendees")), as_list(d.get("agenda")))


@dataclass
class KeyPoint:
    kind: str  # "決定" | "担当・期限"
    text: str
    speaker: str
    start: float


@dataclass
class MinutesDraft:
    header: MinutesHeader
    utterances: list[Utterance]
    key_points: list[KeyPoint]
    duration_s: float
    model: str
    dropped: list[Segment] = field(default_factory=list)  # hallucination-filtered segments
    language: str = "ja"

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration_s": round(self.duration_s, 3),
            "model": self.model,
            "language": self.language,
            "header": asdict(self.header),
            "utterances": [
                {"start": round(u.start, 3), "end": round(u.end, 3), "speaker": u.speaker,
                 "text": u.text, "raw_text": u.raw_text, "segments": u.segment_indexes}
                for u in self.utterances
            ],
            "key_points": [asdict(k) for k in self.key_points],
            "dropped": [
                {"index": s.index, "start": s.start, "end": s.end, "reason": s.dropped,
                 "text": s.text}
                for s in self.dropped
            ],
        }


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_RE.findall(text) if s.strip("。 ")]


def classify(sentence: str) -> str:
    """"決定", "担当・期限" or "" for a sentence."""
    if any(c in sentence for c in DECISION_CUES) and not sentence.rstrip("。").endswith(("か", "ませんか")):
        return "決定"
    if any(c in sentence for c in ACTION_CUES):
        return "担当・期限"
    return ""


def extract_key_points(utterances: Sequence[Utterance]) -> list[KeyPoint]:
    points: list[KeyPoint] = []
    for u in utterances:
        for s in sentences(u.text):
            kind = classify(s)
            if kind:
                points.append(KeyPoint(kind, s, u.speaker, u.start))
    return points


def build_draft(utterances: Sequence[Utterance], *, duration_s: float, model: str,
                header: MinutesHeader | None = None, dropped: Sequence[Segment] = (),
                language: str = "ja") -> MinutesDraft:
    return MinutesDraft(header=header or MinutesHeader(), utterances=list(utterances),
                        key_points=extract_key_points(utterances), duration_s=duration_s,
                        model=model, dropped=list(dropped), language=language)
