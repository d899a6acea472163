"""rules.toml (同一指数の場合の判定基準 and round options) and the priority order they define.

Format (every key optional)::

    lottery_seed = 20260401                 # seeded lottery after all tie-break columns
    default_sibling_mode = "same_nursery"   # for rows with a sibling_group but no sibling_mode
    tie_break = ["single_parent desc", "income_tax asc", "waiting_months desc"]
    # or, equivalently, one table per rule:
    # [[tie_break]]
    # column = "single_parent"
    # direction = "desc"

    [[shared_cap]]          # a room shared by several age classes of one nursery
    nursery_id = "N001"
    ages = [1, 2]
    capacity = 6

The order is: total points (基準指数 + 調整指数) descending, then each tie-break column in the
given direction (blank cells rank last), then the lottery: a number derived from
SHA-256(seed, applicant_id), so it does not depend on the row order of the input file.
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

from shared.errors import InvalidInput

from .models import SIBLING_MODES, Applicant, Priority, Rules, SharedCap, TieRule

POINTS_LABEL = "指数"
LOTTERY_LABEL = "抽選"

_DIRECTIONS = {"asc": "asc", "ascending": "asc", "昇順": "asc", "小さい順": "asc",
               "desc": "desc", "descending": "desc", "降順": "desc", "大きい順": "desc"}


def _err(file: str, message: str, column: str = "") -> dict:
    return {"file": file, "row": None, "column": column, "message": message}


def parse_rules(text: str, file: str = "rules.toml") -> Rules:
    """Parse rules text; every problem is reported at once as ``InvalidInput``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{file}: ルールファイルの書式に誤りがあります（{exc}）。",
                           details=[_err(file, f"TOML の書式エラー: {exc}")]) from None
    errors: list[dict] = []
    rules_list: list[TieRule] = []
    raw_tb = next((data[k] for k in ("tie_break", "tiebreak", "tie_breaks", "tie_break_rules", "tiebreaks")
                   if k in data), [])
    seed_in_table = None
    if isinstance(raw_tb, dict):
        # [tie_break] columns = [...] (seed = ...) — or a single {column, direction} table
        lists = [raw_tb[k] for k in ("columns", "rules", "order", "keys") if k in raw_tb]
        seed_in_table = next((raw_tb[k] for k in ("lottery_seed", "seed") if k in raw_tb), None)
        raw_tb = lists[0] if lists else [raw_tb]
    if not isinstance(raw_tb, list):
        errors.append(_err(file, "tie_break は配列で指定してください。", "tie_break"))
        raw_tb = []
    for i, item in enumerate(raw_tb, 1):
        if isinstance(item, str):
            parts = item.split()
            column = " ".join(parts[:-1]) if len(parts) > 1 else (parts[0] if parts else "")
            direction = parts[-1] if len(parts) > 1 else "desc"
        elif isinstance(item, dict):
            column = str(next((item[k] for k in ("column", "name", "field", "key") if k in item), "")).strip()
            direction = str(next((item[k] for k in ("direction", "order", "dir", "sort") if k in item), "desc"))
        else:
            errors.append(_err(file, f"tie_break の{i}番目の書式が正しくありません。", "tie_break"))
            continue
        d = _DIRECTIONS.get(direction.strip().lower())
        if not column:
            errors.append(_err(file, f"tie_break の{i}番目に列名がありません。", "tie_break"))
        elif d is None:
            errors.append(_err(file, f"tie_break の{i}番目（{column}）の並び順「{direction}」は asc か desc で"
                                     "指定してください。", "tie_break"))
        else:
            rules_list.append(TieRule(column, d))
    lottery = data.get("lottery") if isinstance(data.get("lottery"), dict) else {}
    seed = next((v for v in (data.get("lottery_seed"), lottery.get("seed"), lottery.get("lottery_seed"),
                             seed_in_table, data.get("seed"), data.get("random_seed")) if v is not None), 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        errors.append(_err(file, "lottery_seed は整数で指定してください。", "lottery_seed"))
        seed = 0
    mode = data.get("default_sibling_mode", "same_nursery")
    if mode not in SIBLING_MODES:
        errors.append(_err(file, f"default_sibling_mode「{mode}」は same_nursery / all_or_none / "
                                 "independent のいずれかで指定してください。", "default_sibling_mode"))
        mode = "same_nursery"
    caps: list[SharedCap] = []
    raw_caps = data.get("shared_cap", data.get("shared_caps", []))
    if isinstance(raw_caps, dict):
        raw_caps = [raw_caps]
    for i, item in enumerate(raw_caps if isinstance(raw_caps, list) else [], 1):
        if not isinstance(item, dict):
            errors.append(_err(file, f"shared_cap の{i}番目の書式が正しくありません。", "shared_cap"))
            continue
        nid = str(item.get("nursery_id", "")).strip()
        ages = item.get("ages")
        cap = item.get("capacity")
        ok = True
        if not nid:
            errors.append(_err(file, f"shared_cap の{i}番目に nursery_id がありません。", "shared_cap"))
            ok = False
        if (not isinstance(ages, list) or len(ages) < 2 or
                any(not isinstance(a, int) or isinstance(a, bool) or not 0 <= a <= 5 for a in ages)
                or len(set(ages)) != len(ages)):
            errors.append(_err(file, f"shared_cap の{i}番目の ages は 0〜5 の異なる年齢クラスを2つ以上"
                                     "並べてください。", "shared_cap"))
            ok = False
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
            errors.append(_err(file, f"shared_cap の{i}番目の capacity は0以上の整数で指定してください。",
                               "shared_cap"))
            ok = False
        if ok:
            caps.append(SharedCap(nid, tuple(sorted(ages)), cap))
    if errors:
        raise InvalidInput(f"{file}: ルールファイルに{len(errors)}件の誤りがあります。", details=errors)
    canonical = json.dumps({"tie_break": [[r.column, r.direction] for r in rules_list],
                            "lottery_seed": seed, "default_sibling_mode": mode,
                            "shared_cap": [[c.nursery_id, list(c.ages), c.capacity] for c in caps]},
                           ensure_ascii=False, sort_keys=True)
    return Rules(tuple(rules_list), seed, tuple(caps), mode, canonical)


def load_rules(path: str | Path | None) -> Rules:
    if path is None:
        return parse_rules("", "rules.toml")
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError:
        raise InvalidInput(f"ルールファイル {path.name} を読み込めません。",
                           details=[_err(path.name, "ファイルが見つからないか読み込めません。")]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path.name}: ルールファイルは UTF-8 で保存してください。",
                           details=[_err(path.name, "文字コードを読み取れません（UTF-8 で保存してください）。")]
                           ) from None
    return parse_rules(text, path.name)


def with_seed(rules: Rules, seed: int | None) -> Rules:
    """The rules with the lottery seed overridden (``--seed``)."""
    if seed is None or seed == rules.lottery_seed:
        return rules
    src = json.loads(rules.source) if rules.source else {}
    src["lottery_seed"] = seed
    return Rules(rules.tie_break, seed, rules.shared_caps, rules.default_sibling_mode,
                 json.dumps(src, ensure_ascii=False, sort_keys=True))


def lottery_number(seed: int, applicant_id: str) -> int:
    digest = hashlib.sha256(f"{seed}\x1f{applicant_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _points_key(points: float) -> float:
    return -round(points, 6)


def _rule_key(value, direction: str) -> tuple:
    if value is None:
        return (1, 0.0)  # blank ranks last whatever the direction
    return (0, -value if direction == "desc" else value)


def compute_priority(applicants: list[Applicant], rules: Rules) -> Priority:
    keys: dict[str, tuple] = {}
    lottery: dict[str, int] = {}
    for a in applicants:
        lot = lottery_number(rules.lottery_seed, a.applicant_id)
        lottery[a.applicant_id] = lot
        keys[a.applicant_id] = ((_points_key(a.points),)
                                + tuple(_rule_key(a.extra.get(r.column), r.direction) for r in rules.tie_break)
                                + (lot, a.applicant_id))
    order = sorted(keys, key=keys.__getitem__)
    rank = {aid: i + 1 for i, aid in enumerate(order)}
    labels = (POINTS_LABEL,) + tuple(r.label for r in rules.tie_break) + (LOTTERY_LABEL, LOTTERY_LABEL)
    tie_rule: dict[str, str] = {}
    prev = None
    for aid in order:
        tie_rule[aid] = "" if prev is None else _first_difference(keys[prev], keys[aid], labels)
        prev = aid
    return Priority(rank, order, keys, tie_rule, lottery, labels)


def _first_difference(k1: tuple, k2: tuple, labels: tuple[str, ...]) -> str:
    for pos, (u, v) in enumerate(zip(k1, k2)):
        if u != v:
            return labels[pos]
    return LOTTERY_LABEL


def deciding_rule(priority: Priority, a: str, b: str) -> str:
    """The rule that orders applicants ``a`` and ``b`` (指数, a tie-break column, or 抽選)."""
    return _first_difference(priority.keys[a], priority.keys[b], priority.labels)
