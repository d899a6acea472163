"""Mask personal values in residents' messages before anything is stored or logged."""
from __future__ import annotations

import re
import unicodedata

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
# 12 digits (マイナンバー), possibly grouped 4-4-4 with spaces or hyphens
_TWELVE = re.compile(r"(?<!\d)\d{4}[\s\-]?\d{4}[\s\-]?\d{4}(?!\d)")
# Japanese phone numbers: 0X-XXXX-XXXX, 0XX-XXX-XXXX, 090XXXXXXXX, (048)477-1111, +81 …
_PHONE = re.compile(
    r"(?<!\d)(?:\+81[\s\-]?\d{1,4}|0\d{1,4}|\(0\d{1,4}\))[\s\-()]?\d{1,4}[\s\-]?\d{3,4}(?!\d)")

_DASHES = re.compile(r"(?<=\d)[ー―‐−–—](?=\d)")

MASK_EMAIL = "[メール]"
MASK_NUMBER = "[番号]"
MASK_PHONE = "[電話番号]"


def mask_pii(text: str) -> str:
    """Replace e-mail addresses, 12-digit numbers and phone numbers with placeholders.

    Works on the NFKC form so full-width digits (０９０－…) are caught too."""
    s = unicodedata.normalize("NFKC", text or "")
    s = _DASHES.sub("-", s)
    s = _EMAIL.sub(MASK_EMAIL, s)
    s = _TWELVE.sub(MASK_NUMBER, s)
    s = _PHONE.sub(lambda m: MASK_PHONE if sum(c.isdigit() for c in m.group(0)) >= 10 else m.group(0), s)
    return s
