"""Synthetic rounds for tests, demos and benchmarks (deterministic for a seed).

Shape, loosely after a Saitama-area city: children's age mix weighted to 0-2歳児; 0-2 seats scarce
(about 60 % of demand) and 3-5 seats spare; nurseries scattered over a 10 km square with a
popularity term; each family lists nurseries by distance, popularity and taste, 1-10 of them;
points concentrated on the maximum (two full-time working parents) so ties are common and the
tie-break columns matter; sibling households applying together; transfer applicants (転園) who
hold a seat now. ``manual`` adds a plausible hand-made selection with a few human-style errors.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

AGE_WEIGHTS = np.array([0.27, 0.34, 0.19, 0.09, 0.06, 0.05])
SEAT_RATIO = np.array([0.55, 0.6, 0.65, 1.5, 1.6, 1.8])  # seats / applicants per age class
MODES = ("same_nursery", "all_or_none", "independent")
MODE_WEIGHTS = (0.7, 0.2, 0.1)
TIE_COLUMNS = ("single_parent", "income_tax", "waiting_months")
RULES_TOML = """# 同一指数の場合の判定基準（上から順に適用し、なお同順位なら抽選）
tie_break = ["single_parent desc", "income_tax asc", "waiting_months desc"]
lottery_seed = {seed}
"""


@dataclass
class Generated:
    applicants: list[dict]
    nurseries: list[dict]
    rules_text: str
    manual: list[dict] | None = None


def generate(children: int, nurseries: int, *, siblings: float = 0.08, transfers: float = 0.05,
             seed: int = 0, manual: bool = False) -> Generated:
    rng = np.random.default_rng(seed)
    m = max(1, nurseries)
    nx = rng.uniform(0, 10, size=(m, 2))
    popularity = rng.normal(0, 1, size=m)
    size = rng.lognormal(0, 0.4, size=m)
    nids = [f"N{j + 1:03d}" for j in range(m)]

    # ---- households: singles and sibling groups (siblings = share of children in a group)
    ages: list[int] = []
    group_of: list[str | None] = []
    mode_of: list[str | None] = []
    home_idx: list[int] = []
    homes = []
    n_sib_children = int(round(children * siblings))
    g = 0
    while len(ages) < n_sib_children and n_sib_children - len(ages) >= 2:
        k = 3 if rng.random() < 0.12 and n_sib_children - len(ages) >= 3 else 2
        g += 1
        mode = MODES[rng.choice(3, p=MODE_WEIGHTS)]
        hh = len(homes)
        homes.append(rng.uniform(0, 10, size=2))
        first = int(rng.choice(6, p=AGE_WEIGHTS))
        for s in range(k):
            ages.append(int(min(5, max(0, first + (s if rng.random() < 0.5 else -s)))) if s else first)
            group_of.append(f"G{g:04d}")
            mode_of.append(mode)
            home_idx.append(hh)
    while len(ages) < children:
        homes.append(rng.uniform(0, 10, size=2))
        ages.append(int(rng.choice(6, p=AGE_WEIGHTS)))
        group_of.append(None)
        mode_of.append(None)
        home_idx.append(len(homes) - 1)
    ages = ages[:children]
    n = len(ages)
    homes_arr = np.array(homes) if homes else np.zeros((0, 2))

    # ---- household points and tie-break values (shared by siblings)
    hh_count = len(homes)
    base = np.where(rng.random(hh_count) < 0.55, 40, rng.integers(24, 40, size=hh_count))
    adjust = np.where(rng.random(hh_count) < 0.75, 0, rng.integers(1, 6, size=hh_count))
    single = (rng.random(hh_count) < 0.12).astype(int)
    tax = (rng.integers(0, 40, size=hh_count) * 5000)
    waiting = rng.integers(0, 13, size=hh_count)

    # ---- preferences: distance, popularity and taste; the list length varies
    lengths = np.clip(rng.poisson(3.5, size=hh_count) + 1, 1, 10)
    prefs_hh: list[list[int]] = []
    for start in range(0, hh_count, 2000):
        h = homes_arr[start:start + 2000]
        d = np.sqrt(((h[:, None, :] - nx[None, :, :]) ** 2).sum(-1))
        score = -d + 0.6 * popularity[None, :] + rng.gumbel(0, 0.5, size=d.shape)
        top = np.argsort(-score, axis=1)[:, :10]
        for r in range(h.shape[0]):
            prefs_hh.append([int(j) for j in top[r, :lengths[start + r]]])

    # ---- transfers: a child aged 1-5 who holds a seat near home and lists better ones
    current: list[int | None] = [None] * n
    cand = [i for i in range(n) if ages[i] >= 1 and group_of[i] is None]
    n_tr = min(len(cand), int(round(n * transfers)))
    for i in rng.choice(cand, size=n_tr, replace=False) if n_tr else []:
        hp = prefs_hh[home_idx[i]]
        d = np.sqrt(((nx - homes_arr[home_idx[i]]) ** 2).sum(-1))
        near = [int(j) for j in np.argsort(d)[:12] if int(j) not in hp[:2]]
        cur = near[int(rng.integers(0, min(4, len(near))))] if near else hp[-1]
        current[i] = cur

    # ---- seats: scarce for 0-2, spare for 3-5
    count = np.bincount(np.array(ages, dtype=int), minlength=6) if n else np.zeros(6, int)
    caps = np.zeros((m, 6), dtype=int)
    w = size / size.sum()
    for a in range(6):
        total = int(round(count[a] * SEAT_RATIO[a]))
        caps[:, a] = rng.multinomial(total, w) if total > 0 else 0

    applicants = []
    for i in range(n):
        h = home_idx[i]
        prefs = [nids[j] for j in prefs_hh[h]]
        if current[i] is not None:
            cur = nids[current[i]]
            prefs = [p for p in prefs if p != cur]
            if rng.random() < 0.3:
                prefs.append(cur)  # some list their current nursery last
        applicants.append({
            "applicant_id": f"A{i + 1:06d}", "age_class": ages[i], "base_points": int(base[h]),
            "adjust_points": int(adjust[h]), "preferences": ";".join(prefs),
            "sibling_group": group_of[i] or "", "sibling_mode": mode_of[i] or "",
            "current_nursery": nids[current[i]] if current[i] is not None else "",
            "single_parent": int(single[h]), "income_tax": int(tax[h]), "waiting_months": int(waiting[h]),
        })
    # shuffle rows so the file order carries no information
    order = rng.permutation(n)
    applicants = [applicants[i] for i in order]
    nursery_rows = [{"nursery_id": nids[j], "name": f"保育園{j + 1:03d}",
                     **{f"capacity_{a}": int(caps[j, a]) for a in range(6)}} for j in range(m)]
    out = Generated(applicants, nursery_rows, RULES_TOML.format(seed=seed))
    if manual:
        out.manual = manual_selection(out, seed)
    return out


def manual_selection(gen: Generated, seed: int) -> list[dict]:
    """What staff might produce by hand: the official order with a few ties swapped, in one pass
    (so seats freed by transfer applicants go only to those handled later), families placed
    together at their first member's turn, a few applications forgotten, a few preference lists
    misread, one double booking."""
    from .io import parse_applicants, parse_nurseries, Table
    from .rules import parse_rules
    from .models import Round

    rng = np.random.default_rng(seed + 7919)
    rules = parse_rules(gen.rules_text)
    nt = _table("nurseries.csv", gen.nurseries)
    at = _table("applicants.csv", gen.applicants)
    nurseries, _ = parse_nurseries(nt)
    applicants, _ = parse_applicants(at, {x.nursery_id for x in nurseries}, rules)
    rnd = Round(applicants, nurseries, rules)
    seats = {(x.nursery_id, a): x.capacity[a] for x in nurseries for a in range(6)}  # free seats now
    # hand order: the official order, but about 3 % of tied applicants swapped with their neighbour
    from .rules import compute_priority

    official = [rnd.by_id[aid] for aid in compute_priority(applicants, rules).order]
    order = list(official)
    for j in range(len(order) - 1):
        if order[j].points == order[j + 1].points and rng.random() < 0.03:
            order[j], order[j + 1] = order[j + 1], order[j]
    result: dict[str, str | None] = {a.applicant_id: None for a in applicants}
    # transfer applicants hold their seat until handled
    for a in applicants:
        if a.current_nursery:
            result[a.applicant_id] = a.current_nursery
    done: set[str] = set()
    groups = rnd.sibling_groups()
    for a in order:
        if a.applicant_id in done:
            continue
        fam = groups.get(a.sibling_group, [a]) if a.sibling_group else [a]
        done.update(x.applicant_id for x in fam)
        if rng.random() < 0.006 and not any(x.current_nursery for x in fam):
            continue  # forgotten application
        mode = a.sibling_mode if a.sibling_group else None
        if mode == "same_nursery" or mode == "all_or_none":
            common = [nid for nid in a.preferences if all(nid in x.preferences for x in fam)]
            for nid in common:
                need: dict[int, int] = {}
                for x in fam:
                    if result[x.applicant_id] != nid:
                        need[x.age_class] = need.get(x.age_class, 0) + 1
                if all(seats[(nid, age)] >= k for age, k in need.items()):
                    for x in fam:
                        _move(result, seats, x, nid)
                    break
            continue
        for x in fam:
            prefs = list(x.options)
            if rng.random() < 0.01 and len(prefs) > 1:
                prefs = prefs[1:] + prefs[:1]  # misread preference order
            for nid in prefs:
                if result[x.applicant_id] == nid:
                    break
                if seats[(nid, x.age_class)] > 0:
                    _move(result, seats, x, nid)
                    break
    # one double booking: an unplaced child put into a full first choice
    if len(applicants) >= 200:
        for a in order[len(order) // 3:]:
            if result[a.applicant_id] is None and not a.sibling_group and a.preferences:
                result[a.applicant_id] = a.preferences[0]
                break
    return [{"applicant_id": aid, "nursery_id": nid or ""} for aid, nid in result.items()]


def _move(result, seats, a, nid) -> None:
    old = result[a.applicant_id]
    if old == nid:
        return
    if old is not None:
        seats[(old, a.age_class)] += 1
    seats[(nid, a.age_class)] -= 1
    result[a.applicant_id] = nid


def _table(name: str, rows: list[dict]):
    from .io import Table

    headers = list(rows[0].keys()) if rows else []
    return Table(name, headers, [(r + 2, [str(row[h]) for h in headers]) for r, row in enumerate(rows)])


def write(gen: Generated, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in (("applicants.csv", gen.applicants), ("nurseries.csv", gen.nurseries),
                       ("manual.csv", gen.manual)):
        if rows is None:
            continue
        path = out / name
        with path.open("w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()) if rows else ["applicant_id"],
                               lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        written.append(path)
    path = out / "rules.toml"
    path.write_text(gen.rules_text, encoding="utf-8")
    written.append(path)
    return written


def to_round(gen: Generated):
    """The generated data as a validated Round, without touching the disk."""
    from .io import parse_applicants, parse_nurseries, raise_if
    from .models import Round
    from .rules import parse_rules

    rules = parse_rules(gen.rules_text)
    nurseries, e1 = parse_nurseries(_table("nurseries.csv", gen.nurseries))
    applicants, e2 = parse_applicants(_table("applicants.csv", gen.applicants),
                                      {x.nursery_id for x in nurseries}, rules)
    raise_if(e1 + e2)
    return Round(applicants, nurseries, rules)
