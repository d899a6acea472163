"""Reading applicants / nurseries / results (CSV in UTF-8, UTF-8 with BOM, CP932; .xlsx) and
writing result.csv.

Every problem in the input is collected and reported at once (file, row, column, Japanese message)
as ``shared.errors.InvalidInput(details=[...])``; nothing is solved until the input is clean.
Row numbers are those a spreadsheet shows: the header is row 1, the first data row is row 2.
Messages never contain names; they contain ids and the offending cell value only.
"""
from __future__ import annotations

import csv
import io as _io
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from shared.errors import InvalidInput
from shared.text import decode_bytes

from .models import Applicant, Nursery, Placement, Result, Round, Rules
from .rules import load_rules, with_seed

# ---------------------------------------------------------------------------------------------
# header aliases


def norm_header(h: str) -> str:
    s = unicodedata.normalize("NFKC", str(h or "")).strip().lower()
    return re.sub(r"[\s\u3000]+", "", s)


def _aliases(table: dict[str, list[str]]) -> dict[str, str]:
    out = {}
    for canon, names in table.items():
        for n in [canon, *names]:
            out[norm_header(n)] = canon
    return out


APPLICANT_ALIASES = _aliases({
    "applicant_id": ["申込番号", "申込者番号", "申請番号", "受付番号", "児童番号", "児童id", "申込id", "id"],
    "age_class": ["年齢クラス", "年齢区分", "入所年齢", "入所クラス", "クラス", "年齢", "age"],
    "base_points": ["基準指数", "基本指数", "基準点"],
    "adjust_points": ["調整指数", "調整点", "加点"],
    "preferences": ["希望施設", "希望園", "希望施設一覧", "希望順", "希望"],
    "sibling_group": ["兄弟グループ", "きょうだいグループ", "兄弟姉妹グループ", "兄弟番号", "きょうだい番号"],
    "sibling_mode": ["兄弟条件", "きょうだい条件", "兄弟入所条件", "兄弟モード", "兄弟希望", "きょうだい希望"],
    "current_nursery": ["在園施設", "在籍施設", "現在の施設", "現在園", "転園元", "在園園"],
})
NURSERY_ALIASES = _aliases({
    "nursery_id": ["施設番号", "施設id", "施設コード", "園番号", "園コード", "施設"],
    "name": ["施設名", "名称", "園名", "nursery_name"],
})
RESULT_ALIASES = _aliases({
    "applicant_id": ["申込番号", "申込者番号", "申請番号", "受付番号", "児童番号", "児童id", "申込id", "id"],
    "nursery_id": ["内定施設", "入所施設", "決定施設", "利用施設", "施設番号", "施設id", "施設コード", "施設"],
    "preference_rank": ["希望順位"],
    "priority_rank": ["優先順位"],
    "reason": ["理由"],
})
_CAPACITY_RE = re.compile(r"^(?:capacity|cap|定員|空き|空|募集|募集数|受入|受入数|受入可能数|枠)?_?([0-5])"
                          r"(?:歳児?)?(?:クラス)?(?:の)?(?:capacity|定員|空き|空き数|募集|募集数|受入|受入数|受入可能数|枠)?$")
_PREF_COL_RE = re.compile(r"^(?:第([0-9]+)希望(?:施設|園)?|(?:preference|pref|希望)_?([0-9]+))$")

MODE_ALIASES = {
    "same_nursery": "same_nursery", "same": "same_nursery", "同一施設": "same_nursery", "同一園": "same_nursery",
    "同じ施設": "same_nursery", "同園": "same_nursery",
    "all_or_none": "all_or_none", "全員": "all_or_none", "全員入所": "all_or_none", "別施設可": "all_or_none",
    "同時入所": "all_or_none",
    "independent": "independent", "個別": "independent", "単独可": "independent", "個別可": "independent",
    "それぞれ": "independent",
}
_TRUE_WORDS = {"あり", "有", "有り", "はい", "yes", "true", "y", "○", "◯", "〇", "該当"}
_FALSE_WORDS = {"なし", "無", "無し", "いいえ", "no", "false", "n", "×", "-", "非該当"}
_PREF_SPLIT_RE = re.compile(r"[;；、,，|｜/／\s]+")


def _err(file: str, row: int | None, column: str, message: str) -> dict:
    return {"file": file, "row": row, "column": column, "message": message}


def format_error(e: dict) -> str:
    where = e["file"]
    if e.get("row"):
        where += f" {e['row']}行目"
    if e.get("column"):
        where += f" 列「{e['column']}」"
    return f"{where}: {e['message']}"


def raise_if(errors: list[dict], what: str = "入力ファイル") -> None:
    if errors:
        raise InvalidInput(f"{what}に{len(errors)}件の誤りがあります。修正してからもう一度実行してください。",
                           details=errors)


# ---------------------------------------------------------------------------------------------
# raw tables


@dataclass
class Table:
    file: str
    headers: list[str]  # as written in the file
    rows: list[tuple[int, list[str]]]  # (sheet row number, cells as text)
    encoding: str = ""


def _cell_text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def read_table(path: str | Path, sheet: str | None = None, *, data: bytes | None = None,
               name: str | None = None) -> Table:
    path = Path(path)
    file = name or path.name
    if data is None:
        try:
            data = path.read_bytes()
        except OSError:
            raise InvalidInput(f"{file} を読み込めません。",
                               details=[_err(file, None, "", "ファイルが見つからないか読み込めません。")]) from None
    if file.lower().endswith((".xlsx", ".xlsm")) or data[:4] == b"PK\x03\x04":
        return _read_xlsx(data, file, sheet)
    try:
        text, enc = decode_bytes(data)
    except ValueError:
        raise InvalidInput(f"{file}: 文字コードを判別できません。", details=[_err(
            file, None, "", "文字コードを判別できません。UTF-8 または Shift_JIS（CP932）の CSV か、"
                            "Excel（.xlsx）で保存してください。")]) from None
    first = text.split("\n", 1)[0]
    delim = "\t" if ("\t" in first and "," not in first) else ","
    reader = csv.reader(_io.StringIO(text, newline=""), delimiter=delim)
    rows: list[tuple[int, list[str]]] = []
    headers: list[str] | None = None
    for lineno, cells in enumerate(reader, 1):
        cells = [c.strip() for c in cells]
        if headers is None:
            if not any(cells):
                continue
            headers = cells
            header_row = lineno
            continue
        if not any(cells):
            continue
        rows.append((lineno, cells))
    if headers is None:
        raise InvalidInput(f"{file}: ファイルが空です。", details=[_err(file, None, "", "見出し行がありません（ファイルが空です）。")])
    del header_row
    return Table(file, headers, rows, enc)


def _read_xlsx(data: bytes, file: str, sheet: str | None) -> Table:
    import openpyxl  # local import: only needed for Excel input

    try:
        wb = openpyxl.load_workbook(_io.BytesIO(data), read_only=True, data_only=True)
    except Exception:  # openpyxl raises many types for broken files
        raise InvalidInput(f"{file}: Excel ファイルとして読み込めません。",
                           details=[_err(file, None, "", "Excel（.xlsx）ファイルとして読み込めません。")]) from None
    try:
        if sheet is None or sheet == "":
            ws = wb.worksheets[0]
        elif sheet in wb.sheetnames:
            ws = wb[sheet]
        elif str(sheet).isdigit() and 1 <= int(sheet) <= len(wb.worksheets):
            ws = wb.worksheets[int(sheet) - 1]
        else:
            raise InvalidInput(f"{file}: シート「{sheet}」がありません。", details=[_err(
                file, None, "", f"シート「{sheet}」がありません（あるシート: {'、'.join(wb.sheetnames)}）。")])
        headers = None
        rows: list[tuple[int, list[str]]] = []
        for lineno, values in enumerate(ws.iter_rows(values_only=True), 1):
            cells = [_cell_text(v) for v in values]
            if not any(cells):
                continue
            if headers is None:
                headers = cells
                continue
            rows.append((lineno, cells))
    finally:
        wb.close()
    if headers is None:
        raise InvalidInput(f"{file}: シートが空です。", details=[_err(file, None, "", "見出し行がありません（シートが空です）。")])
    while headers and not headers[-1]:
        headers.pop()
    return Table(file, headers, rows, "xlsx")


def _map_headers(table: Table, aliases: dict[str, str]) -> dict[str, int]:
    """canonical name -> column index (first occurrence wins)."""
    out: dict[str, int] = {}
    for idx, h in enumerate(table.headers):
        canon = aliases.get(norm_header(h))
        if canon and canon not in out:
            out[canon] = idx
    return out


def _get(cells: list[str], idx: int | None) -> str:
    if idx is None or idx >= len(cells):
        return ""
    return cells[idx].strip()


def parse_number(text: str) -> float | None:
    s = unicodedata.normalize("NFKC", text).strip().replace(",", "")
    if s in ("",):
        return None
    try:
        v = float(s)
    except ValueError:
        raise ValueError(text) from None
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(text)
    return int(v) if v.is_integer() else v


def parse_flagish(text: str) -> float | None:
    s = unicodedata.normalize("NFKC", text).strip().lower()
    if s == "":
        return None
    if s in _TRUE_WORDS:
        return 1
    if s in _FALSE_WORDS:
        return 0
    return parse_number(s)


# ---------------------------------------------------------------------------------------------
# nurseries


def parse_nurseries(table: Table) -> tuple[list[Nursery], list[dict]]:
    f = table.file
    errors: list[dict] = []
    cols = _map_headers(table, NURSERY_ALIASES)
    cap_cols: dict[int, int] = {}
    for idx, h in enumerate(table.headers):
        m = _CAPACITY_RE.match(norm_header(h))
        if m and int(m.group(1)) not in cap_cols:
            cap_cols[int(m.group(1))] = idx
    if "nursery_id" not in cols:
        errors.append(_err(f, 1, "nursery_id", "必須の列「nursery_id（施設番号）」がありません。"))
    if not cap_cols:
        errors.append(_err(f, 1, "capacity_0", "受入可能数の列（capacity_0〜capacity_5）が1つもありません。"))
    if errors:
        return [], errors
    out: list[Nursery] = []
    seen: dict[str, int] = {}
    for rowno, cells in table.rows:
        nid = unicodedata.normalize("NFKC", _get(cells, cols["nursery_id"])).strip()
        ok = True
        if not nid:
            errors.append(_err(f, rowno, table.headers[cols["nursery_id"]], "施設番号が空です。"))
            ok = False
        elif nid in seen:
            errors.append(_err(f, rowno, table.headers[cols["nursery_id"]],
                               f"施設番号「{nid}」が重複しています（{seen[nid]}行目と同じ）。"))
            ok = False
        else:
            seen[nid] = rowno
        caps = [0] * 6
        for age, idx in cap_cols.items():
            raw = _get(cells, idx)
            try:
                v = parse_number(raw)
            except ValueError:
                errors.append(_err(f, rowno, table.headers[idx], f"受入可能数「{raw}」が数値ではありません。"))
                ok = False
                continue
            if v is None:
                v = 0
            if v != int(v):
                errors.append(_err(f, rowno, table.headers[idx], f"受入可能数「{raw}」は整数で指定してください。"))
                ok = False
            elif v < 0:
                errors.append(_err(f, rowno, table.headers[idx], f"受入可能数「{raw}」が負の値です。"))
                ok = False
            else:
                caps[age] = int(v)
        if ok:
            name = _get(cells, cols.get("name")) or nid
            out.append(Nursery(nid, name, tuple(caps), rowno))  # type: ignore[arg-type]
    return out, errors


# ---------------------------------------------------------------------------------------------
# applicants


def _parse_age(text: str) -> int:
    s = unicodedata.normalize("NFKC", text).strip()
    m = re.fullmatch(r"([0-9]+)(?:\.0+)?\s*(?:歳児?(?:クラス)?)?", s)
    if not m:
        raise ValueError(text)
    return int(m.group(1))


def parse_applicants(table: Table, nursery_ids: set[str] | None, rules: Rules
                     ) -> tuple[list[Applicant], list[dict]]:
    """``nursery_ids`` None: the nursery file itself was unusable; nursery references are not checked."""
    f = table.file
    errors: list[dict] = []
    cols = _map_headers(table, APPLICANT_ALIASES)
    pref_cols: list[tuple[int, int]] = []
    for idx, h in enumerate(table.headers):
        m = _PREF_COL_RE.match(norm_header(h))
        if m:
            pref_cols.append((int(m.group(1) or m.group(2)), idx))
    pref_cols.sort()
    for req, label in (("applicant_id", "applicant_id（申込番号）"), ("age_class", "age_class（年齢クラス）"),
                       ("base_points", "base_points（基準指数）")):
        if req not in cols:
            errors.append(_err(f, 1, req, f"必須の列「{label}」がありません。"))
    if "preferences" not in cols and not pref_cols:
        errors.append(_err(f, 1, "preferences", "必須の列「preferences（希望施設）」がありません。"))
    normalized_headers = {norm_header(h): i for i, h in reversed(list(enumerate(table.headers)))}
    tie_cols: dict[str, int] = {}
    for r in rules.tie_break:
        key = norm_header(r.column)
        idx = normalized_headers.get(key)
        if idx is None and key in APPLICANT_ALIASES and APPLICANT_ALIASES[key] in cols:
            idx = cols[APPLICANT_ALIASES[key]]
        if idx is None:
            errors.append(_err(f, 1, r.column, f"判定基準（rules.toml）で指定された列「{r.column}」がありません。"))
        else:
            tie_cols[r.column] = idx
    if errors:
        return [], errors

    def col(name: str) -> str:
        return table.headers[cols[name]] if name in cols else name

    out: list[Applicant] = []
    seen: dict[str, int] = {}
    for rowno, cells in table.rows:
        ok = True
        aid = _get(cells, cols["applicant_id"])
        if not aid:
            errors.append(_err(f, rowno, col("applicant_id"), "申込番号が空です。"))
            ok = False
        elif aid in seen:
            errors.append(_err(f, rowno, col("applicant_id"), f"申込番号「{aid}」が重複しています（{seen[aid]}行目と同じ）。"))
            ok = False
        else:
            seen[aid] = rowno
        raw_age = _get(cells, cols["age_class"])
        age = -1
        try:
            age = _parse_age(raw_age)
            if not 0 <= age <= 5:
                raise ValueError
        except ValueError:
            errors.append(_err(f, rowno, col("age_class"),
                               f"年齢クラス「{raw_age}」が範囲外です。0〜5（0歳児〜5歳児）で指定してください。"))
            ok = False
        points = []
        for name, label, required in (("base_points", "基準指数", True), ("adjust_points", "調整指数", False)):
            raw = _get(cells, cols.get(name))
            try:
                v = parse_number(raw)
                if v is None:
                    if required:
                        raise ValueError
                    v = 0
                points.append(v)
            except ValueError:
                errors.append(_err(f, rowno, col(name), f"{label}「{raw}」が数値ではありません。"))
                ok = False
        prefs: list[str] = []
        if "preferences" in cols:
            raw = _get(cells, cols["preferences"])
            prefs.extend(p for p in _PREF_SPLIT_RE.split(unicodedata.normalize("NFKC", raw).strip()) if p)
        for _, idx in pref_cols:
            v = unicodedata.normalize("NFKC", _get(cells, idx)).strip()
            if v:
                prefs.append(v)
        pref_col = col("preferences") if "preferences" in cols else table.headers[pref_cols[0][1]]
        seen_p: set[str] = set()
        for p in prefs:
            if nursery_ids is not None and p not in nursery_ids:
                errors.append(_err(f, rowno, pref_col, f"希望施設「{p}」は施設一覧にありません。"))
                ok = False
            if p in seen_p:
                errors.append(_err(f, rowno, pref_col, f"希望施設「{p}」が2回以上書かれています。"))
                ok = False
            seen_p.add(p)
        group = _get(cells, cols.get("sibling_group")) or None
        raw_mode = _get(cells, cols.get("sibling_mode"))
        mode = None
        if raw_mode:
            mode = MODE_ALIASES.get(norm_header(raw_mode))
            if mode is None:
                errors.append(_err(f, rowno, col("sibling_mode"), f"兄弟条件「{raw_mode}」は same_nursery（同一施設）/ "
                                   "all_or_none（全員入所）/ independent（個別）のいずれかで指定してください。"))
                ok = False
            elif not group:
                errors.append(_err(f, rowno, col("sibling_mode"), "兄弟条件がありますが兄弟グループが空です。"))
                ok = False
        if group and mode is None and not raw_mode:
            mode = rules.default_sibling_mode
        current = unicodedata.normalize("NFKC", _get(cells, cols.get("current_nursery"))).strip() or None
        if current and nursery_ids is not None and current not in nursery_ids:
            errors.append(_err(f, rowno, col("current_nursery"), f"在園施設（転園元）「{current}」は施設一覧にありません。"))
            ok = False
        extra: dict = {}
        for r in rules.tie_break:
            idx = tie_cols[r.column]
            raw = _get(cells, idx)
            try:
                extra[r.column] = parse_flagish(raw)
            except ValueError:
                errors.append(_err(f, rowno, table.headers[idx], f"判定基準の値「{raw}」が数値ではありません。"))
                ok = False
        if ok:
            out.append(Applicant(aid, age, points[0], points[1], tuple(prefs), group, mode if group else None,
                                 current, extra, rowno))
    # sibling groups: at least two members, one mode
    groups: dict[str, list[Applicant]] = {}
    for a in out:
        if a.sibling_group:
            groups.setdefault(a.sibling_group, []).append(a)
    group_rows: dict[str, list[tuple[int, str | None]]] = {}
    gi = cols.get("sibling_group")
    mi = cols.get("sibling_mode")
    if gi is not None:
        for rowno, cells in table.rows:
            g = _get(cells, gi)
            if g:
                rm = _get(cells, mi)
                group_rows.setdefault(g, []).append(
                    (rowno, MODE_ALIASES.get(norm_header(rm)) if rm else rules.default_sibling_mode))
    bad_groups: set[str] = set()
    for g, members in group_rows.items():
        if len(members) < 2:
            errors.append(_err(f, members[0][0], col("sibling_group"),
                               f"兄弟グループ「{g}」の申込が1件しかありません（2人以上で指定してください）。"))
            bad_groups.add(g)
        modes = {m for _, m in members}
        if len(modes) > 1:
            for rowno, m in members:
                errors.append(_err(f, rowno, col("sibling_mode"), f"兄弟グループ「{g}」の兄弟条件が揃っていません"
                                   f"（{'・'.join(sorted(str(x) for x in modes))}が混在）。"))
            bad_groups.add(g)
    if bad_groups:
        out = [a for a in out if a.sibling_group not in bad_groups]
    return out, errors


# ---------------------------------------------------------------------------------------------
# whole round


def load_round(applicants: str | Path, nurseries: str | Path, rules: str | Path | Rules | None = None, *,
               seed: int | None = None, applicants_sheet: str | None = None, nurseries_sheet: str | None = None,
               applicants_data: bytes | None = None, nurseries_data: bytes | None = None) -> Round:
    """Read and validate both files; raise ``InvalidInput`` listing every error found."""
    rules_obj = rules if isinstance(rules, Rules) else load_rules(rules)
    rules_obj = with_seed(rules_obj, seed)
    errors: list[dict] = []
    nursery_list: list[Nursery] = []
    nursery_ids: set[str] | None = None
    try:
        nt = read_table(nurseries, nurseries_sheet, data=nurseries_data)
        nursery_list, errs = parse_nurseries(nt)
        errors.extend(errs)
        if not any(e["row"] == 1 for e in errs):
            nursery_ids = {n.nursery_id for n in nursery_list} | {
                unicodedata.normalize("NFKC", _get(c, _map_headers(nt, NURSERY_ALIASES).get("nursery_id"))).strip()
                for _, c in nt.rows}
    except InvalidInput as exc:
        errors.extend(exc.details or [])
    app_list: list[Applicant] = []
    try:
        at = read_table(applicants, applicants_sheet, data=applicants_data)
        app_list, errs = parse_applicants(at, nursery_ids, rules_obj)
        errors.extend(errs)
    except InvalidInput as exc:
        errors.extend(exc.details or [])
    if nursery_ids is not None:
        ids = {n.nursery_id for n in nursery_list}
        for c in rules_obj.shared_caps:
            if c.nursery_id not in ids:
                errors.append(_err("rules.toml", None, "shared_cap",
                                   f"共有枠の施設「{c.nursery_id}」は施設一覧にありません。"))
    raise_if(errors)
    return Round(app_list, nursery_list, rules_obj)


# ---------------------------------------------------------------------------------------------
# results (ours or a manual selection)


def load_assignment(path: str | Path, rnd: Round, *, sheet: str | None = None, data: bytes | None = None,
                    name: str | None = None) -> dict[str, str | None]:
    """applicant_id -> nursery_id (None = not placed). Applicants missing from the file are unplaced."""
    t = read_table(path, sheet, data=data, name=name)
    f = t.file
    cols = _map_headers(t, RESULT_ALIASES)
    errors: list[dict] = []
    for req, label in (("applicant_id", "applicant_id（申込番号）"), ("nursery_id", "nursery_id（施設番号）")):
        if req not in cols:
            errors.append(_err(f, 1, req, f"必須の列「{label}」がありません。"))
    raise_if(errors, f)
    out: dict[str, str | None] = {}
    seen: dict[str, int] = {}
    for rowno, cells in t.rows:
        aid = _get(cells, cols["applicant_id"])
        nid = unicodedata.normalize("NFKC", _get(cells, cols["nursery_id"])).strip() or None
        if not aid:
            errors.append(_err(f, rowno, t.headers[cols["applicant_id"]], "申込番号が空です。"))
            continue
        if aid in seen:
            errors.append(_err(f, rowno, t.headers[cols["applicant_id"]],
                               f"申込番号「{aid}」が重複しています（{seen[aid]}行目と同じ）。"))
            continue
        seen[aid] = rowno
        if aid not in rnd.by_id:
            errors.append(_err(f, rowno, t.headers[cols["applicant_id"]], f"申込番号「{aid}」は申込一覧にありません。"))
            continue
        if nid is not None and nid not in rnd.nursery_by_id:
            errors.append(_err(f, rowno, t.headers[cols["nursery_id"]], f"施設「{nid}」は施設一覧にありません。"))
            continue
        out[aid] = nid
    raise_if(errors, f)
    for a in rnd.applicants:
        out.setdefault(a.applicant_id, None)
    return out


def load_priority_ranks(path: str | Path, rnd: Round, *, sheet: str | None = None) -> dict[str, int] | None:
    """The ``priority_rank`` column of a result file (as this tool writes it), if it is present,
    complete and a permutation of 1..n; else None."""
    t = read_table(path, sheet)
    cols = _map_headers(t, RESULT_ALIASES)
    if "priority_rank" not in cols or "applicant_id" not in cols:
        return None
    ranks: dict[str, int] = {}
    for _, cells in t.rows:
        aid = _get(cells, cols["applicant_id"])
        try:
            ranks[aid] = int(_get(cells, cols["priority_rank"]))
        except ValueError:
            return None
    if set(ranks) != set(rnd.by_id) or sorted(ranks.values()) != list(range(1, len(ranks) + 1)):
        return None
    return ranks


def priority_from_ranks(ranks: dict[str, int]):
    """A Priority that follows given ranks (the tie-break labels are unknown: 順位)."""
    from .models import Priority

    order = sorted(ranks, key=ranks.__getitem__)
    return Priority(rank=dict(ranks), order=order, keys={a: (r,) for a, r in ranks.items()},
                    tie_rule={a: "" for a in ranks}, lottery={a: 0 for a in ranks}, labels=("順位",))


RESULT_COLUMNS = ["applicant_id", "nursery_id", "preference_rank", "priority_rank", "reason"]


def result_rows(result: Result, rnd: Round) -> list[dict]:
    rows = []
    for a in rnd.applicants:
        p = result.placements[a.applicant_id]
        rows.append({"applicant_id": a.applicant_id, "nursery_id": p.nursery_id or "",
                     "preference_rank": "" if p.preference_rank is None else p.preference_rank,
                     "priority_rank": "" if p.priority_rank is None else p.priority_rank,
                     "reason": p.reason})
    return rows


def result_csv_text(result: Result, rnd: Round) -> str:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(result_rows(result, rnd))
    return buf.getvalue()


def write_result_csv(path: str | Path, result: Result, rnd: Round) -> None:
    Path(path).write_text(result_csv_text(result, rnd), encoding="utf-8")


def result_xlsx_bytes(result: Result, rnd: Round) -> bytes:
    return rows_xlsx_bytes(result_rows(result, rnd))


def rows_xlsx_bytes(rows: list[dict]) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "result"
    ws.append(RESULT_COLUMNS)
    for r in rows:
        ws.append(["" if r.get(c) is None else r.get(c) for c in RESULT_COLUMNS])
    for row in ws.iter_rows(min_row=2):
        for cell in row:  # openpyxl stores a str starting with "=" as a formula: keep it text
            if cell.data_type == "f":
                cell.data_type = "s"
    buf = _io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def placement_from_assignment(rnd: Round, assignment: dict[str, str | None], priority_rank: dict[str, int],
                              reason: str = "") -> dict[str, Placement]:
    out = {}
    for a in rnd.applicants:
        nid = assignment.get(a.applicant_id)
        rank = a.preferences.index(nid) + 1 if nid in a.preferences else None
        out[a.applicant_id] = Placement(a.applicant_id, nid, rank, priority_rank.get(a.applicant_id), reason)
    return out
