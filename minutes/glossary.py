"""用語登録: post-correction of recognised text with the clerk's glossary.

A glossary file is CSV or TSV (UTF-8, BOM allowed; Shift_JIS accepted), one entry per line, in
one of two forms (a header line is optional and recognised):

- ``term,reading`` (header ``term,reading`` / ``用語,読み``): the correct spelling and its
  reading in kana. Any run of whole morphemes in the transcript whose reading matches the term's
  reading (exactly, or within a small edit distance for long terms when the spelling is also
  close) is replaced by the term: 保育か → 保育課, 国民健康保健 → 国民健康保険.
- ``wrong,right`` (header ``wrong,right`` / ``誤,正``): a literal replacement.

A line whose second column is all kana is read as a reading; anything else as a replacement.
Lines starting with ``#`` are comments. This is deliberately *not* a Whisper prompt: a glossary in
``initial_prompt`` made base drop a whole turn in our measurements (issue #4).
"""
from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import InvalidInput
from shared.text import hiragana_to_katakana
from minutes._sudachi import tokenize

_KANA_RE = re.compile(r"^[\u3041-\u3096\u30a1-\u30faー・ 　]+$")
_HEADERS_READING = {("term", "reading"), ("用語", "読み"), ("用語", "よみ"), ("語", "読み")}
_HEADERS_REPLACE = {("wrong", "right"), ("誤", "正"), ("誤り", "正しい"), ("変換前", "変換後"),
                    ("before", "after")}
MAX_ENTRIES = 5000
# a corrected span never starts (and, when fuzzy, never ends) with these: particles stay put
_NO_START = ("補助記号", "助詞", "助動詞", "接尾辞")
_SMALL_KANA = set("ァィゥェォャュョッヮー")  # not a mora of its own: no second-kana index
_MIN_KANA_START_READING = 6  # kana of a term that may start on a kana particle (exact reading)


@dataclass(frozen=True)
class Term:
    surface: str
    reading: str  # katakana, no spaces


@dataclass
class Glossary:
    terms: list[Term] = field(default_factory=list)
    replacements: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.terms) + len(self.replacements)

    def apply(self, text: str) -> str:
        return apply(self, text)


def _kata(s: str) -> str:
    return hiragana_to_katakana(unicodedata.normalize("NFKC", s)).replace(" ", "").replace("・", "")


def parse(data: str) -> Glossary:
    """Parse glossary text (CSV or TSV)."""
    lines = [ln for ln in data.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return Glossary()
    dialect = "excel-tab" if "\t" in lines[0] else "excel"
    rows = list(csv.reader(io.StringIO("\n".join(lines)), dialect=dialect))
    g = Glossary()
    mode = None
    first = tuple(c.strip().lower() for c in rows[0][:2]) if rows[0] else ()
    if first in _HEADERS_READING:
        mode, rows = "reading", rows[1:]
    elif first in _HEADERS_REPLACE:
        mode, rows = "replace", rows[1:]
    for n, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if len(cells) < 2 or not cells[0] or not cells[1]:
            raise InvalidInput(f"用語登録ファイルの{n}行目が読み取れません。「用語,読み」または「誤,正」の形で書いてください。",
                               log_message=f"glossary row {n} malformed")
        a, b = cells[0], cells[1]
        as_reading = mode == "reading" or (mode is None and _KANA_RE.match(b) and not _KANA_RE.match(a))
        if as_reading:
            if not _KANA_RE.match(b):
                raise InvalidInput(f"用語登録ファイルの{n}行目の読みは、ひらがなかカタカナで書いてください。",
                                   log_message=f"glossary row {n} reading not kana")
            g.terms.append(Term(a, _kata(b)))
        else:
            g.replacements.append((a, b))
        if len(g) > MAX_ENTRIES:
            raise InvalidInput(f"用語登録は{MAX_ENTRIES}件までです。", log_message="glossary too long")
    # longest first, so that 文教厚生委員会 wins over 委員会
    g.terms.sort(key=lambda t: -len(t.reading))
    g.replacements.sort(key=lambda r: -len(r[0]))
    return g


def load(path: Path | str) -> Glossary:
    raw = Path(path).read_bytes()
    for enc in ("utf-8-sig", "cp932"):
        try:
            return parse(raw.decode(enc))
        except UnicodeDecodeError:
            continue
    raise InvalidInput("用語登録ファイルの文字コードを判別できません。UTF-8 で保存してください。",
                       log_message="glossary encoding")


def _edit_distance(a: str, b: str, limit: int) -> int:
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        row_min = cur[0]
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            row_min = min(row_min, cur[j])
        if row_min > limit:
            return limit + 1
        prev = cur
    return prev[-1]


def _allowed_distance(reading_len: int) -> int:
    if reading_len >= 12:
        return 3
    if reading_len >= 9:
        return 2
    if reading_len >= 7:
        return 1
    return 0


def _surface_close(a: str, b: str) -> bool:
    """Spellings share at least half of their characters (multiset) and have similar length."""
    if abs(len(a) - len(b)) > 2:
        return False
    common = sum(min(a.count(c), b.count(c)) for c in set(a))
    return common * 2 >= max(len(a), len(b))


def _best_window(t: Term, i: int, morphs, readings, surfaces, term_surfaces,
                 exact_only: bool = False) -> tuple[int, Term] | None:
    """The morpheme window starting at ``i`` that spells ``t`` (exactly, by reading, or fuzzily)."""
    limit = 0 if exact_only else _allowed_distance(len(t.reading))
    ends_in_kana = bool(_KANA_RE.match(t.surface[-1]))
    acc = ""
    fuzzy: tuple[int, int, int] | None = None  # (distance, length gap, j)
    for j in range(i, min(len(morphs), i + 12)):
        if morphs[j].pos1 == "補助記号":
            break
        acc += readings[j]
        if len(acc) > len(t.reading) + limit:
            break
        if len(acc) < len(t.reading) - limit:
            continue
        surface = "".join(surfaces[i:j + 1])
        if surface == t.surface:
            return (j, t)
        if surface in term_surfaces or any(ts in surface for ts in term_surfaces):
            continue  # contains a correctly spelled term: leave it alone
        if acc == t.reading:
            return (j, t)
        if not limit:
            continue
        # a fuzzy window ends like the term: same final kana, or (noun terms) not on a particle
        if ends_in_kana and surface[-1] != t.surface[-1]:
            continue
        if not ends_in_kana and morphs[j].pos1 in _NO_START:
            continue
        d = _edit_distance(acc, t.reading, limit)
        if d <= limit and _surface_close(surface, t.surface):
            key = (d, abs(len(acc) - len(t.reading)), j)
            if fuzzy is None or key < fuzzy:
                fuzzy = key
    return (fuzzy[2], t) if fuzzy else None


def _match_terms(text: str, terms: list[Term]) -> str:
    morphs = [m for m in tokenize(text)]
    if not morphs:
        return text
    readings = [_kata(m.reading if m.reading and m.pos1 != "補助記号" else m.surface) for m in morphs]
    surfaces = [m.surface for m in morphs]
    n = len(morphs)
    out: list[str] = []
    i = 0
    term_surfaces = {t.surface for t in terms}
    # candidate terms by first reading kana / first character (keeps long glossaries fast)
    order = {t: k for k, t in enumerate(terms)}
    by_reading: dict[str, list[Term]] = {}
    by_surface: dict[str, list[Term]] = {}
    # Terms long enough for a fuzzy match, also by their second kana: Whisper often mishears a
    # term's first consonant, more so in noise (暫時休憩 heard as だんじきゅうけい), and the
    # first-kana index alone never offers the term for such a window.
    by_second: dict[str, list[Term]] = {}
    for t in terms:
        by_reading.setdefault(t.reading[:1], []).append(t)
        by_surface.setdefault(t.surface[:1], []).append(t)
        if _allowed_distance(len(t.reading)) and len(t.reading) > 1 and t.reading[1] not in _SMALL_KANA:
            by_second.setdefault(t.reading[1], []).append(t)
    while i < n:
        best = None  # (j, term)
        if morphs[i].pos1 not in _NO_START:
            candidates = by_reading.get(readings[i][:1], []) + by_surface.get(surfaces[i][:1], [])
            for t in sorted(set(candidates), key=order.__getitem__):
                best = _best_window(t, i, morphs, readings, surfaces, term_surfaces)
                if best:
                    break
            second = (readings[i] + (readings[i + 1] if i + 1 < n else ""))[1:2]
            if not best and second and second not in _SMALL_KANA:
                # only when nothing matched by the first kana, and only an unambiguous term
                # (警戒いたします is as close to 開会いたします as to 閉会いたします: left alone)
                found = [m for t in sorted(set(by_second.get(second, [])), key=order.__getitem__)
                         if (m := _best_window(t, i, morphs, readings, surfaces, term_surfaces))]
                if len({m[1].surface for m in found}) == 1:
                    best = found[0]
        elif _KANA_RE.match(surfaces[i]):
            # A term Whisper wrote in kana is often cut into particles by Sudachi (かけつすべき →
            # か/けつ/す/べき): a kana "particle" may start a term when the whole reading matches
            # exactly and is long enough not to be a coincidence.
            for t in by_reading.get(readings[i][:1], []):
                if len(t.reading) >= _MIN_KANA_START_READING:
                    best = _best_window(t, i, morphs, readings, surfaces, term_surfaces, exact_only=True)
                    if best:
                        break
        if best:
            j, t = best
            out.append(t.surface)
            i = j + 1
        else:
            out.append(surfaces[i])
            i += 1
    return "".join(out)


def apply(glossary: Glossary | None, text: str) -> str:
    """Correct ``text`` with the glossary (replacements first, then reading-matched terms)."""
    if not glossary or not text:
        return text
    s = text
    for wrong, right in glossary.replacements:
        s = s.replace(wrong, right)
    if glossary.terms:
        s = _match_terms(s, glossary.terms)
    return s


_council: Glossary | None = None


def council_terms() -> Glossary:
    """The built-in council/committee set phrases (``minutes/data/council_terms.csv``)."""
    global _council
    if _council is None:
        from importlib import resources  # noqa: PLC0415

        _council = parse(resources.files("minutes").joinpath("data/council_terms.csv")
                         .read_text(encoding="utf-8"))
    return _council
