"""A lazily created SudachiPy tokenizer per thread (Sudachi tokenizers are not thread-safe)."""
from __future__ import annotations

from dataclasses import dataclass

from shared.text import sudachi_tokenizer



@dataclass(frozen=True)
class Morph:
    surface: str
    pos: tuple[str, ...]
    reading: str  # katakana
    normalized: str
    begin: int  # character offsets into the tokenized text
    end: int

    @property
    def pos1(self) -> str:
        return self.pos[0]

    @property
    def pos2(self) -> str:
        return self.pos[1] if len(self.pos) > 1 else "*"

    @property
    def conj_form(self) -> str:
        return self.pos[5] if len(self.pos) > 5 else "*"


def _tokenizer():
    return sudachi_tokenizer()


def tokenize(text: str, mode: str = "C") -> list[Morph]:
    if not text:
        return []
    from sudachipy import tokenizer as sudachi_tokenizer  # noqa: PLC0415

    split = getattr(sudachi_tokenizer.Tokenizer.SplitMode, mode)
    return [
        Morph(m.surface(), tuple(m.part_of_speech()), m.reading_form(), m.normalized_form(),
              m.begin(), m.end())
        for m in _tokenizer().tokenize(text, split)
    ]
