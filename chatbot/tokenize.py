"""Japanese tokenisation for lexical retrieval.

Pipeline: ``shared.text.normalize`` → staff synonym table (phrase level, longest match first,
mapping every variant to its canonical term) → SudachiPy split mode C plus the extra pieces of
split mode A → ``normalized_form`` → katakana folded to hiragana → function words dropped.
The same function is applied to FAQ text at index time and to the resident's query, so both
sides always agree.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from shared.text import katakana_to_hiragana, sudachi_tokenizer
from shared.text import normalize as shared_normalize

# Parts of speech that carry no retrieval meaning.
_DROP_POS = {"助詞", "助動詞", "補助記号", "空白", "記号"}
# Light verbs / fillers that appear in almost every polite question (normalized forms).
_STOP = {
    "為る", "出来る", "下さる", "貰う", "居る", "有る", "成る", "呉れる", "頂く", "致す", "御座る",
    "思う", "教える", "言う", "良い", "欲しい", "事", "物", "此れ", "其れ", "あれ", "の", "ん",
    "よう", "様", "方", "ため", "為", "こと", "もの", "とき", "時", "について", "どう", "如何",
    "何", "なに", "です", "ます", "ござる", "御", "お", "ご", "さん", "様", "って", "ね", "よ",
}
_PUNCT_RE = re.compile(r"[\s\W_]+", re.UNICODE)


def _sudachi():
    """Per-thread Sudachi tokenizer over one process-wide dictionary (shared/text.py)."""
    return sudachi_tokenizer()


def normalize(text: str) -> str:
    """Shared normalisation (NFKC, width, whitespace, long vowels, common 表記ゆれ)."""
    return shared_normalize(text or "")


kata_to_hira = katakana_to_hiragana


@dataclass
class Synonyms:
    """Staff-editable synonym table: canonical ``term`` → variants.

    Applied at phrase level before tokenisation, on queries and FAQ text alike. Variants are
    matched longest first; the canonical terms themselves are part of the pattern so that a
    variant inside a longer canonical word is left alone (マイナンバー inside マイナンバーカード).
    """

    table: Mapping[str, list[str]] = field(default_factory=dict)

    def __post_init__(self):
        mapping: dict[str, str] = {}
        for term, variants in self.table.items():
            canon = normalize(term)
            if not canon:
                continue
            mapping.setdefault(canon, canon)
            for v in variants:
                nv = normalize(v)
                if nv and nv not in mapping:
                    mapping[nv] = canon
        self._map = mapping
        keys = sorted(mapping, key=len, reverse=True)
        self._re = re.compile("|".join(re.escape(k) for k in keys)) if keys else None

    def apply(self, normalized_text: str) -> str:
        if self._re is None:
            return normalized_text
        return self._re.sub(lambda m: self._map[m.group(0)], normalized_text)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str]]) -> "Synonyms":
        """Rows of (term, "a;b;c")."""
        table: dict[str, list[str]] = {}
        for term, syns in rows:
            parts = [p.strip() for p in re.split(r"[;；]", syns or "") if p.strip()]
            table.setdefault(term.strip(), []).extend(parts)
        return cls(table)

    def __len__(self) -> int:
        return len(self.table)


_EMPTY = Synonyms({})


def _clean(tok: str) -> str:
    return _PUNCT_RE.sub("", kata_to_hira(tok))


@dataclass
class Analysis:
    tokens: list[str]
    nouns: list[str]  # content nouns (mode C), folded like tokens
    places: list[str]  # place names (固有名詞・地名), folded
    other_municipality: bool = False  # names a city/ward/town/village/prefecture other than Niiza


# The city itself and its prefecture when the loaded FAQ does not say which city it is
# (``home_places``): the bundled sample is Niiza's.
_HOME_PLACES = ("新座", "埼玉")
_MUNI_SUFFIX = ("市", "区", "町", "村", "都", "府", "道")


def _municipalities(ms) -> list[str]:
    """Place names (固有名詞・地名) written as a municipality (新座市, 新座 + 市), without the suffix."""
    out = []
    for i, m in enumerate(ms):
        pos = m.part_of_speech()
        if pos[1] == "固有名詞" and pos[2] == "地名":
            surf = m.surface()
            nxt = ms[i + 1].surface() if i + 1 < len(ms) else ""
            if surf.endswith(_MUNI_SUFFIX) and len(surf) > 1:
                out.append(surf[:-1])
            elif nxt.startswith(_MUNI_SUFFIX):
                out.append(surf)
    return out


def home_places(texts: Iterable[str]) -> tuple[str, ...]:
    """Which municipality the FAQ is about: the one its texts name in the most entries, if at
    least twice as many as any other (a neighbouring city mentioned in passing is not the
    home). A question naming the home city is not "another municipality"; without this, another
    city's FAQ imported with `faq import` would send every question naming that city to the
    out-of-scope reply. Falls back to Niiza when the FAQ names no city."""
    from collections import Counter

    from sudachipy import tokenizer as st

    df: Counter = Counter()
    tk = _sudachi()
    for text in texts:
        norm = normalize(text)
        if norm:
            df.update(set(_municipalities(list(tk.tokenize(norm, st.Tokenizer.SplitMode.C)))))
    top = df.most_common(2)
    if not top or (len(top) > 1 and top[0][1] < 2 * top[1][1]):
        return _HOME_PLACES
    return (top[0][0],)


def analyze(text: str, synonyms: Synonyms | None = None,
            home: tuple[str, ...] | None = None) -> Analysis:
    """Tokens plus the noun / place-name information used by the out-of-scope features.
    ``home``: the FAQ's own city (``home_places``); other municipalities named set
    ``other_municipality``."""
    from sudachipy import tokenizer as st

    home = home or _HOME_PLACES
    norm = (synonyms or _EMPTY).apply(normalize(text))
    toks, nouns, places = [], [], []
    other = False
    if not norm.strip():
        return Analysis(toks, nouns, places)
    ms = list(_sudachi().tokenize(norm, st.Tokenizer.SplitMode.C))
    for i, m in enumerate(ms):
        pos = m.part_of_speech()
        if pos[1] == "固有名詞" and pos[2] == "地名":
            surf = m.surface()
            nxt = ms[i + 1].surface() if i + 1 < len(ms) else ""
            if (surf.endswith(_MUNI_SUFFIX) or nxt.startswith(_MUNI_SUFFIX)) and \
                    not surf.startswith(home):
                other = True
        if pos[0] in _DROP_POS:
            continue
        nf = m.normalized_form()
        if nf in _STOP or m.surface() in _STOP:
            continue
        t = _clean(nf)
        if not t:
            continue
        toks.append(t)
        if pos[0] == "名詞":
            nouns.append(t)
            if pos[1] == "固有名詞" and pos[2] == "地名":
                places.append(t)
        pieces = m.split(st.Tokenizer.SplitMode.A)
        if len(pieces) > 1:
            for p in pieces:
                if p.part_of_speech()[0] in _DROP_POS or p.normalized_form() in _STOP:
                    continue
                pt = _clean(p.normalized_form())
                if pt and pt != t:
                    toks.append(pt)
    return Analysis(toks, nouns, places, other)


def tokens(text: str, synonyms: Synonyms | None = None) -> list[str]:
    """Content-word tokens (split mode C, plus the finer mode-A pieces) in text order."""
    return analyze(text, synonyms).tokens


def token_text(text: str, synonyms: Synonyms | None = None) -> str:
    """Space-joined tokens, the form stored in the FTS5 index."""
    return " ".join(tokens(text, synonyms))


def warm_up() -> None:
    tokens("住民票")


_READ_DROP = {"補助記号", "空白", "記号"}
_HIRA_RE = re.compile(r"[^ぁ-ゖーa-z0-9]")


def reading(text: str, synonyms: Synonyms | None = None) -> str:
    """Hiragana reading of the whole text (Sudachi ``reading_form``), without spaces or symbols.

    Indexed as character trigrams, it lets kana-only questions (「いんかん とうろく」) meet the
    kanji FAQ (印鑑登録) whatever Sudachi made of the kana's word boundaries."""
    norm = (synonyms or _EMPTY).apply(normalize(text))
    if not norm.strip():
        return ""
    out = []
    for m in _sudachi().tokenize(norm, _mode_c()):
        if m.part_of_speech()[0] in _READ_DROP:
            continue
        r = m.reading_form() if any("一" <= c <= "龥" or c == "々" for c in m.surface()) else m.surface()
        out.append(_HIRA_RE.sub("", kata_to_hira(r)))
    return "".join(out)


def trigrams(s: str, limit: int = 80) -> list[str]:
    grams = list(dict.fromkeys(s[i:i + 3] for i in range(len(s) - 2)))
    return grams[:limit]


def _mode_c():
    from sudachipy import tokenizer as st

    return st.Tokenizer.SplitMode.C


_KANJI_RE = re.compile(r"[一-龥々]")
_HIRA_ONLY_RE = re.compile(r"[ぁ-ゖー]+")
_KATA_ONLY_RE = re.compile(r"[ァ-ヶー]+")
# a run of hiragana that starts the text or follows a space: a word typed in kana, not the
# okurigana or particles after a kanji word (申請|したい, 払え|ばいいでしょうか)
_KANA_WORD_RE = re.compile(r"(?:(?<=^)|(?<=\s))[ぁ-ゖー]{3,}")


class KanaLexicon:
    """Hiragana reading → the word as the FAQ writes it in kanji, to rewrite words a resident
    typed in kana (「しゅっせいとどけ」 → 出生届, 「かいご にんてい」 → 介護 認定).

    Built from the FAQ texts given (questions and keywords): every noun of Sudachi's split
    modes C and A written with kanji, keyed by its reading (at least ``min_len`` kana), the most
    frequent writing wins; nouns the FAQ itself writes in hiragana (ごみ, ふるさと, おむつ) map to
    themselves so they are never rewritten; plus the synonym table's kana-only variants
    (「こくほ」 → 国民健康保険). Only a run of hiragana at the start of the text or after a space
    is looked at (a word typed in kana, not the okurigana or particles after a kanji word), and
    only from its first character: the longest known reading, then the next one right after it,
    until none matches; the rest is left as typed. Katakana words typed in hiragana
    (「かーど」) become the FAQ's katakana the same way. The lexical side and the query embedding then
    both see the FAQ's kanji word (e5 reads kana-only Japanese poorly)."""

    MAX_READING = 16
    HOMOPHONE_MIN_READING = 5
    _NOUNS = ("名詞", "接尾辞")

    def __init__(self, texts: Iterable[str] = (), synonyms: Synonyms | None = None,
                 min_len: int = 3):
        from collections import Counter, defaultdict

        from sudachipy import tokenizer as st

        self.min_len = min_len
        seen: dict[str, Counter] = defaultdict(Counter)
        keep: set[str] = set()
        surfaces: set[str] = set()  # every noun (split modes C and A) as the FAQ writes it
        tk = _sudachi()
        for text in texts:
            norm = normalize(text)
            if not norm:
                continue
            for m in tk.tokenize(norm, st.Tokenizer.SplitMode.C):
                pieces = [m]
                if _KANJI_RE.search(m.surface()):
                    sub = m.split(st.Tokenizer.SplitMode.A)
                    if len(sub) > 1:
                        pieces.extend(sub)
                for p in pieces:
                    if p.part_of_speech()[0] not in self._NOUNS:
                        continue
                    surf = p.surface()
                    surfaces.add(surf)
                    if _HIRA_ONLY_RE.fullmatch(surf):
                        if len(surf) >= 2:
                            keep.add(surf)
                    elif _KATA_ONLY_RE.fullmatch(surf):  # カード ← かーど typed in hiragana
                        if len(surf) >= min_len:
                            seen[kata_to_hira(surf)][surf] += 1
                    elif _KANJI_RE.search(surf):
                        rd = kata_to_hira(p.reading_form())
                        if len(rd) >= min_len and _HIRA_ONLY_RE.fullmatch(rd) and rd != surf:
                            seen[rd][surf] += 1
        self._map = {rd: c.most_common(1)[0][0] for rd, c in seen.items()}
        self._surfaces = frozenset(surfaces)
        # reading → the FAQ's kanji word, for homophone typos (暗唱番号 → 暗証番号)
        self._homo = {rd: w for rd, w in self._map.items()
                      if len(rd) >= self.HOMOPHONE_MIN_READING and _KANJI_RE.search(w)}
        for variant, canon in (synonyms._map.items() if synonyms else ()):
            if len(variant) >= min_len and _HIRA_ONLY_RE.fullmatch(variant) and variant != canon:
                self._map[variant] = canon
        for w in keep:  # the FAQ's own hiragana words stay as they are
            self._map[w] = w

    def __len__(self) -> int:
        return len(self._map)

    def _rewrite(self, run: str) -> str:
        out, i, n = [], 0, len(run)
        while i < n:
            for j in range(min(n, i + self.MAX_READING), i + 1, -1):
                t = self._map.get(run[i:j])
                if t is not None and (j - i >= self.min_len or t == run[i:j]):
                    out.append(t)
                    i = j
                    break
            else:
                break
        return "".join(out) + run[i:]

    def convert(self, normalized_text: str) -> str:
        if not self._map:
            return normalized_text
        out = _KANA_WORD_RE.sub(lambda m: self._rewrite(m.group(0)), normalized_text)
        if self._homo and _KANJI_RE.search(out):
            out = self._homophones(out)
        return out

    def _homophones(self, text: str) -> str:
        """Kanji words the FAQ never writes, rewritten as the FAQ's word with the same reading
        when the two differ only in some of their kanji (an IME conversion slip: 暗唱番号 →
        暗証番号, 介穫 → 介護). Only nouns whose reading has at least
        ``HOMOPHONE_MIN_READING`` kana, of the same length as the FAQ's word and sharing a
        character with it: short readings have too many genuine homophones (公演 / 公園)."""
        from sudachipy import tokenizer as st

        ms = _sudachi().tokenize(text, st.Tokenizer.SplitMode.C)
        out, changed = [], False
        for m in ms:
            surf = m.surface()
            if (len(surf) >= 2 and surf not in self._surfaces and _KANJI_RE.search(surf)
                    and m.part_of_speech()[0] == "名詞"):
                t = self._homo.get(kata_to_hira(m.reading_form()))
                if t is not None and t != surf and len(t) == len(surf) and set(t) & set(surf):
                    out.append(t)
                    changed = True
                    continue
            out.append(surf)
        return "".join(out) if changed else text


def has_kana_word(normalized_text: str) -> bool:
    """Whether ``KanaLexicon.convert`` could change anything: a word typed in hiragana, or a
    kanji word that may be a homophone slip of the FAQ's word (any kanji)."""
    return (_KANA_WORD_RE.search(normalized_text) is not None
            or _KANJI_RE.search(normalized_text) is not None)


_DISTINCT_RE = re.compile(r"[一-龥々ァ-ヴー]")


def distinct_chars(text: str) -> frozenset:
    """Kanji / katakana characters of the text and the pairs of them written next to each other
    (「夜間」→ 夜, 間, 夜間). Used to tell near-neighbour FAQs apart: a question's characters that
    only one of the top few FAQs' questions contains (``confidence.rerank_distinct``). No
    dictionary: it works on typos and words Sudachi splits differently."""
    s = normalize(text)
    singles = _DISTINCT_RE.findall(s)
    pairs = (a + b for a, b in zip(s, s[1:]) if _DISTINCT_RE.match(a) and _DISTINCT_RE.match(b))
    return frozenset(singles).union(pairs)
