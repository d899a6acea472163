"""FAQ import (CSV / XLSX) and export.

- Encodings: UTF-8, UTF-8 with BOM, CP932 (Shift_JIS as Excel writes it).
- Headers: English field names or Japanese aliases (質問, 回答, 担当課, 分類 …); unknown columns are
  ignored.
- Every bad row is reported with its line number; if there is any, nothing is written.
- ``replace=True`` swaps the whole FAQ in one transaction; otherwise rows are upserted by faq_id.
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from shared.errors import InvalidInput
from shared.text import decode_bytes

from .storage import FAQ_FIELDS, Faq

MAX_QUESTION = 500
MAX_ANSWER = 5000
MAX_FIELD = 500
MAX_ROWS = 50_000

_ALIASES = {
    "faq_id": ["faq_id", "faqid", "id", "faq番号", "番号", "管理番号", "no", "no.", "問番号"],
    "category": ["category", "分類", "カテゴリ", "カテゴリー", "区分", "大分類"],
    "question": ["question", "質問", "質問文", "問い", "問", "q", "よくある質問"],
    "answer": ["answer", "回答", "回答文", "答え", "答", "a"],
    "department": ["department", "担当課", "担当部署", "所管課", "担当", "担当部局", "課名"],
    "contact": ["contact", "連絡先", "電話番号", "電話", "問い合わせ先", "問合せ先", "お問い合わせ",
                "お問い合わせ先"],
    "url": ["url", "リンク", "関連リンク", "参考url", "関連url", "ページ"],
    "keywords": ["keywords", "keyword", "キーワード", "関連語", "検索語"],
    "updated_at": ["updated_at", "updated", "更新日", "最終更新日", "更新日時"],
}
_HEADER_MAP = {}
for _field, _names in _ALIASES.items():
    for _n in _names:
        _HEADER_MAP[_n] = _field

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_URL_RE = re.compile(r"^https?://[^\s<>\"]+$")
_CTRL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class RowError:
    line: int
    field: str
    message: str

    def to_dict(self) -> dict:
        return {"line": self.line, "field": self.field, "message": self.message}


def _norm_header(h: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", h or "")).lower()


def decode(data: bytes) -> str:
    try:
        return decode_bytes(data)[0]
    except ValueError:
        raise InvalidInput("ファイルの文字コードを判別できません。UTF-8 または Shift_JIS(CP932) で保存してください。") from None


def _rows_csv(data: bytes) -> list[tuple[int, list[str]]]:
    text = decode(data)
    reader = csv.reader(io.StringIO(text, newline=""))
    out = []
    start = 1
    try:
        for rec in reader:
            out.append((start, rec))
            start = reader.line_num + 1
    except csv.Error as e:
        raise InvalidInput(f"CSVの形式に誤りがあります（{start}行目付近）。",
                           details=[RowError(start, "", f"CSVの形式に誤りがあります: {e}").to_dict()])
    return out


def _rows_xlsx(data: bytes) -> list[tuple[int, list[str]]]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:
        raise InvalidInput("Excelファイル(.xlsx)を読み込めませんでした。")
    ws = wb.worksheets[0]
    out = []
    for i, row in enumerate(ws.iter_rows(values_only=True), start=1):
        cells = []
        for v in row:
            if v is None:
                cells.append("")
            elif isinstance(v, float) and v.is_integer():
                cells.append(str(int(v)))
            elif hasattr(v, "strftime"):
                cells.append(v.strftime("%Y-%m-%d"))
            else:
                cells.append(str(v))
        out.append((i, cells))
    wb.close()
    return out


def _check_date(s: str) -> str | None:
    s = unicodedata.normalize("NFKC", s).strip()
    m = re.match(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?(?:[ T].*)?$", s)
    if not m:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat()
    except ValueError:
        return None


def auto_id(question: str) -> str:
    return "Q" + hashlib.sha1(question.encode("utf-8")).hexdigest()[:8]


def parse(data: bytes, filename: str = "faq.csv") -> list[Faq]:
    """Parse and validate a whole file; raise InvalidInput listing every bad row."""
    name = filename.lower()
    if name.endswith(".xlsx") or data[:2] == b"PK":
        rows = _rows_xlsx(data)
    elif name.endswith((".csv", ".txt")) or not name:
        rows = _rows_csv(data)
    else:
        raise InvalidInput("CSV(.csv) または Excel(.xlsx) ファイルを指定してください。")
    rows = [(ln, r) for ln, r in rows if any((c or "").strip() for c in r)]
    if not rows:
        raise InvalidInput("ファイルにデータがありません。")
    hline, header = rows[0]
    cols: dict[int, str] = {}
    for i, h in enumerate(header):
        f = _HEADER_MAP.get(_norm_header(h))
        if f and f not in cols.values():
            cols[i] = f
    missing = [f for f in ("question", "answer") if f not in cols.values()]
    if missing:
        jp = {"question": "質問", "answer": "回答"}
        raise InvalidInput(
            "見出し行に " + "・".join(jp[m] for m in missing) + " の列がありません。",
            details=[RowError(hline, m, f"見出し行に「{jp[m]}」(または {m}) の列がありません。").to_dict()
                     for m in missing])
    body = rows[1:]
    if len(body) > MAX_ROWS:
        raise InvalidInput(f"行数が多すぎます（最大 {MAX_ROWS} 行）。")
    errors: list[RowError] = []
    faqs: list[Faq] = []
    seen: dict[str, int] = {}
    ncols = len(header)
    for line, rec in body:
        if len(rec) > ncols and any((c or "").strip() for c in rec[ncols:]):
            errors.append(RowError(line, "", f"列の数が見出し行より多くなっています（{len(rec)}列／見出し{ncols}列）。"))
            continue
        vals = {f: "" for f in FAQ_FIELDS}
        for i, f in cols.items():
            if i < len(rec):
                vals[f] = (rec[i] or "").replace("\r\n", "\n").replace("\r", "\n").strip()
        row_errs = []
        for f, v in vals.items():
            if _CTRL_RE.search(v):
                row_errs.append(RowError(line, f, "制御文字が含まれています。"))
        q, a = vals["question"], vals["answer"]
        if not q:
            row_errs.append(RowError(line, "question", "質問が空です。"))
        elif len(q) > MAX_QUESTION:
            row_errs.append(RowError(line, "question", f"質問が長すぎます（{MAX_QUESTION}文字まで）。"))
        if not a:
            row_errs.append(RowError(line, "answer", "回答が空です。"))
        elif len(a) > MAX_ANSWER:
            row_errs.append(RowError(line, "answer", f"回答が長すぎます（{MAX_ANSWER}文字まで）。"))
        for f in ("category", "department", "contact", "url", "keywords"):
            if len(vals[f]) > MAX_FIELD:
                row_errs.append(RowError(line, f, f"{f} が長すぎます（{MAX_FIELD}文字まで）。"))
        fid = unicodedata.normalize("NFKC", vals["faq_id"]).strip()
        if not fid and q:
            fid = auto_id(q)
        if fid and not _ID_RE.match(fid):
            row_errs.append(RowError(line, "faq_id", "FAQ番号に使えるのは半角英数字と _ - . のみです（64文字まで）。"))
        elif fid in seen:
            row_errs.append(RowError(line, "faq_id", f"FAQ番号 {fid} が {seen[fid]} 行目と重複しています。"))
        if vals["url"] and not _URL_RE.match(vals["url"]):
            row_errs.append(RowError(line, "url", "URL は http:// または https:// で始まる形式で入力してください。"))
        if vals["updated_at"]:
            d = _check_date(vals["updated_at"])
            if d is None:
                row_errs.append(RowError(line, "updated_at", "更新日は 2025-04-01 の形式で入力してください。"))
            else:
                vals["updated_at"] = d
        if row_errs:
            errors.extend(row_errs)
            continue
        seen[fid] = line
        vals["faq_id"] = fid
        faqs.append(Faq(**vals))
    if errors:
        raise InvalidInput(
            f"{len({e.line for e in errors})} 行に誤りがあるため、取り込みを中止しました（何も登録していません）。",
            details=[e.to_dict() for e in errors])
    if not faqs:
        raise InvalidInput("取り込むFAQがありません。")
    return faqs


def export_csv(faqs: list[dict]) -> str:
    """CSV text (the caller adds a BOM for Excel when writing a file)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FAQ_FIELDS)
    for f in faqs:
        w.writerow([f.get(k, "") or "" for k in FAQ_FIELDS])
    return buf.getvalue()


def read_file(path: str | Path) -> tuple[bytes, str]:
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"ファイルが見つかりません: {p}")
    return p.read_bytes(), p.name


BUNDLED_SYNONYMS = Path(__file__).parent / "data" / "synonyms.csv"


def read_synonyms(data: bytes) -> list[tuple[str, list[str]]]:
    """Rows (term, [variants]) of a synonym CSV (columns ``term``, ``synonyms``; variants
    separated by ``;``)."""
    rows = []
    for rec in csv.DictReader(io.StringIO(decode(data))):
        term = (rec.get("term") or "").strip()
        syns = [s.strip() for s in (rec.get("synonyms") or "").replace("；", ";").split(";")
                if s.strip()]
        if term:
            rows.append((term, syns))
    return rows


def seed_synonyms(db, path: Path = BUNDLED_SYNONYMS) -> int:
    """Load the bundled general synonym table (chatbot/data/synonyms.csv: general Japanese
    administrative vocabulary, abbreviations and colloquial words, nothing city-specific) into a
    brand-new database: only when both the synonym table and the FAQ table are empty, so
    another city's first `faq import` gets the same synonyms as the sample FAQ, while a table
    staff have edited (or emptied on purpose, with FAQs loaded) is never touched. Call it before
    the FAQs are written (the index is tokenised with the synonyms). Returns the rows loaded."""
    from . import storage

    if not path.exists():
        return 0
    conn = db.conn
    if conn.execute("SELECT 1 FROM chat_synonym LIMIT 1").fetchone() or \
            conn.execute("SELECT 1 FROM chat_faq LIMIT 1").fetchone():
        return 0
    return storage.set_synonyms(db, read_synonyms(path.read_bytes()))
