"""Plain data shared by the pipeline stages.

All times are seconds from the start of the recording (float). Everything here is JSON-friendly
through :func:`dataclasses.asdict` and can be rebuilt with the ``from_dict`` helpers, so a job
worker can store segments as they arrive and load them back on resume.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Word:
    start: float
    end: float
    text: str
    probability: float = 1.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Word":
        return cls(float(d["start"]), float(d["end"]), str(d["text"]),
                   float(d.get("probability", 1.0)))


@dataclass
class SpeechRegion:
    """A stretch of audio the VAD judged to be speech."""
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Segment:
    """One recognised segment, as Whisper produced it (timestamps already snapped to speech).

    ``index`` is the position in the recording's segment stream (0, 1, 2, ...); a worker that
    stores segments uses it as the key, and resumes with ``offset = last_segment.end``.
    """
    index: int
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    avg_logprob: float = 0.0
    compression_ratio: float = 1.0
    no_speech_prob: float = 0.0
    temperature: float = 0.0
    dropped: str = ""  # non-empty: reason this segment was judged a hallucination

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Segment":
        return cls(
            index=int(d["index"]), start=float(d["start"]), end=float(d["end"]),
            text=str(d["text"]), words=[Word.from_dict(w) for w in d.get("words") or []],
            avg_logprob=float(d.get("avg_logprob", 0.0)),
            compression_ratio=float(d.get("compression_ratio", 1.0)),
            no_speech_prob=float(d.get("no_speech_prob", 0.0)),
            temperature=float(d.get("temperature") or 0.0),
            dropped=str(d.get("dropped", "")),
        )


@dataclass
class Utterance:
    """One line of the minutes: a speaker turn (or part of one) with both text versions.

    ``raw_text``: 素起こし — what was said, fillers kept (punctuation restored).
    ``text``: 整文 — fillers and stutters removed, glossary applied, punctuation normalised.
    """
    start: float
    end: float
    speaker: str
    text: str
    raw_text: str
    segment_indexes: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Utterance":
        return cls(float(d["start"]), float(d["end"]), str(d.get("speaker", "")),
                   str(d.get("text", "")), str(d.get("raw_text", d.get("text", ""))),
                   [int(i) for i in d.get("segment_indexes") or []])
