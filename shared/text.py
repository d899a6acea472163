"""Japanese text normalisation shared by the chatbot (queries, FAQ) and minutes (glossary, CER).

``normalize`` is deliberately conservative: it never changes meaning, only spelling variants
that residents and speech recognisers produce for the same word.
"""
from __future__ import annotations

import re
import unicodedata

# Dash-like characters that follow katakana and mean the long-vowel mark (ー).
_LONG_VOWEL_LIKE = "ｰ\\-‐‑‒–—―−－"
_KATAKANA = "ァ-ヺー"
_LONG_VOWEL_RE = re.compile(f"(?<=[{_KATAKANA}])[{re.escape(_LONG_VOWEL_LIKE)}]+")
_REPEATED_LONG_RE = re.compile("ー{2,}")
_SPACE_RE = re.compile(r"\s+")
# Kanji that look like katakana, typed by mistake inside katakana words (コンビ二, センタ一,
# カ口リー, 力ード): replaced when the word around them is katakana — after a katakana and not
# followed by a kanji or digit (ホ一ム, コンビ二), or before a katakana and not after a kanji
# (力ード). A kanji word next to katakana keeps its kanji: データ一覧, ガス工事, 出口ドア, and a
# numeral before つ/ケ/カ stays a numeral (ボタン一つ, 一ヶ月, 二カ所, 八ヶ岳).
_KANJI_LOOKALIKE = {"一": "ー", "二": "ニ", "口": "ロ", "力": "カ", "工": "エ", "夕": "タ",
                    "卜": "ト", "八": "ハ"}
_LOOKALIKE_CLASS = "".join(_KANJI_LOOKALIKE)
_LOOKALIKE_RE = re.compile(
    f"(?:(?<=[{_KATAKANA}])[{_LOOKALIKE_CLASS}](?![\u3400-\u9fff0-9つケカヶヵ])"
    f"|(?<![\u3400-\u9fff])[{_LOOKALIKE_CLASS}](?![ケカヶヵ])(?=[{_KATAKANA}]))")
# Wave dashes and tildes between numbers/words: unify to one form (used in ranges 9時〜17時).
_WAVE_RE = re.compile("[~〜～]")

# Common 表記ゆれ (okurigana and small-kana variants) mapped to one spelling. Longest first.
_VARIANTS: list[tuple[str, str]] = sorted(
    [
        ("申し込み", "申込"), ("申込み", "申込"), ("申し込", "申込"),
        ("受け付け", "受付"), ("受付け", "受付"),
        ("問い合わせ", "問合せ"), ("問い合せ", "問合せ"), ("問合わせ", "問合せ"),
        ("取り扱い", "取扱"), ("取扱い", "取扱"),
        ("引っ越し", "引越"), ("引越し", "引越"), ("ひっこし", "引越"),
        ("手続き", "手続"),
        ("振り込み", "振込"), ("振込み", "振込"),
        ("繰り越し", "繰越"),
        ("受け取り", "受取"), ("受取り", "受取"),
        ("締め切り", "締切"), ("〆切", "締切"), ("締切り", "締切"),
        ("貸し出し", "貸出"), ("貸出し", "貸出"),
        ("払い戻し", "払戻"), ("払戻し", "払戻"),
        ("書き換え", "書換"), ("書換え", "書換"),
        ("届け出", "届出"),
        ("ヶ", "ケ"), ("ヵ", "カ"),
        ("ヴァ", "バ"), ("ヴィ", "ビ"), ("ヴェ", "ベ"), ("ヴォ", "ボ"), ("ヴ", "ブ"),
    ],
    key=lambda p: -len(p[0]),
)
_VARIANT_RE = re.compile("|".join(re.escape(a) for a, _ in _VARIANTS))
_VARIANT_MAP = dict(_VARIANTS)


def normalize(text: str, *, lowercase: bool = True, variants: bool = True) -> str:
    """Normalise Japanese text for matching.

    - NFKC: full-width ASCII → half-width, half-width kana → full-width, ① → 1, ㈱ → (株)
    - long-vowel marks: dashes/tildes after katakana → ー, ーー → ー
    - kanji typed for look-alike katakana inside katakana words → katakana (コンビ二 → コンビニ)
    - whitespace: any run (incl. ideographic space) → one ASCII space, trimmed
    - common okurigana 表記ゆれ (申し込み → 申込, 手続き → 手続, ...) when ``variants``
    - ASCII lower-cased when ``lowercase``
    """
    if not text:
        return ""
    s = text.replace("\u301c", "~").replace("\uff5e", "~")  # keep wave dash distinct before NFKC
    s = unicodedata.normalize("NFKC", s)
    s = _LONG_VOWEL_RE.sub("ー", s)
    s = _LOOKALIKE_RE.sub(lambda m: _KANJI_LOOKALIKE[m.group(0)], s)
    s = _REPEATED_LONG_RE.sub("ー", s)
    s = _WAVE_RE.sub("~", s)
    if variants:
        s = _VARIANT_RE.sub(lambda m: _VARIANT_MAP[m.group(0)], s)
    s = _SPACE_RE.sub(" ", s).strip()
    if lowercase:
        s = s.lower()
    return s


_PUNCT_RE = re.compile(r"[\s\u3000、。，．,.・！!？?「」『』（）()【】\[\]…‥:：;；\"'”“’‘-]")


def strip_punctuation(text: str) -> str:
    """NFKC and remove punctuation and spaces (for character error rate and loose matching)."""
    return _PUNCT_RE.sub("", unicodedata.normalize("NFKC", text))


def hiragana_to_katakana(text: str) -> str:
    return "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in text)


def katakana_to_hiragana(text: str) -> str:
    return "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in text)


# --- SudachiPy, shared by the chatbot (tokenising) and minutes (punctuation, glossary) ---------

import threading

_sudachi_lock = threading.Lock()
_sudachi_local = threading.local()
_sudachi_dictionary = None


def sudachi_tokenizer():
    """A SudachiPy tokenizer for this thread over one process-wide core dictionary.

    Sudachi tokenizers are not thread-safe, the dictionary is (and costs ~100 MB), so the
    dictionary loads once, lazily, and each thread gets its own tokenizer.
    """
    global _sudachi_dictionary
    tok = getattr(_sudachi_local, "tok", None)
    if tok is None:
        with _sudachi_lock:
            if _sudachi_dictionary is None:
                from sudachipy import dictionary

                _sudachi_dictionary = dictionary.Dictionary(dict="core")
        tok = _sudachi_dictionary.tokenizer()
        _sudachi_local.tok = tok
    return tok


# --- files exported by Japanese office systems --------------------------------------------------

def decode_bytes(raw: bytes) -> tuple[str, str]:
    """Text of a CSV/TSV file and the encoding found.

    UTF-8 (with or without BOM), UTF-16 with BOM, else CP932 (Shift_JIS, what Japanese core
    systems and Excel export); ValueError if none fits.
    """
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8"), "utf-8-sig"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16"), "utf-16"
    if b"\x00" in raw:
        raise ValueError("binary or UTF-16 without BOM")
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = raw.decode("cp932")
    except UnicodeDecodeError:
        raise ValueError("unknown encoding") from None
    # Python's cp932 maps unused bytes to private-use / control characters instead of failing
    if any(unicodedata.category(c) in ("Co", "Cc") and c not in "\t\r\n" for c in text):
        raise ValueError("unknown encoding")
    return text, "cp932"
