"""A lazily created SudachiPy tokenizer per thread (Sudachi tokenizers are not thread-safe)."""
from __future__ import annotations

import threading
from dataclasses import dataclass

_local = threading.local()
_dict_lock = threading.Lock()
_dictionary = None


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
    global _dictionary
    tok = getattr(_local, "tok", None)
    if tok is None:
        from sudachipy import dictionary  # noqa: PLC0415

        with _dict_lock:
            if _dictionary is None:
                _dictionary = dictionary.Dictionary(dict="core")
        tok = _dictionary.tokenizer()
        _local.tok = tok
    return tok


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
