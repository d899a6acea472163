"""Independent verifier: checks any result (ours or a manual selection) against the rules.

It shares no code with the model or DA (only the data classes and the priority definition):
occupants are counted from the assignment itself, and each rule is checked directly.

Hard rules (a violation makes the result invalid): listed nurseries only, capacity per age class
(seats held by transfer applicants included), shared rooms, transfer fallback (a transfer applicant
keeps the current seat unless placed higher), sibling modes.

Quality measures: blocking coalitions, empty seats someone wanted, split sibling groups.
A *blocking coalition* is a child (or a sibling family that must move together) and a nursery the
child ranks above the result that would take them: a free seat, or a child there whom the nursery
ranks lower (lower priority; a transfer applicant ranks first at the nursery it already attends).
- ``same_nursery`` families block as a whole: the nursery must fit every member who would move there.
- ``all_or_none`` families: a placed member blocks alone (the family stays placed); an unplaced
  family blocks when every member has some listed nursery that would take that member, jointly:
  there is a choice of one listed nursery per member such that each chosen nursery would take all
  the members sent to it together. This is decided exactly (``_joint_assignment``: every way of
  grouping the members, then a bipartite matching of the groups to distinct nurseries), whatever the
  lengths of the preference lists.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from .models import Round, Priority
from .rules import compute_priority

AGE_LABEL = "{}歳児"


@dataclass
class Report:
    ok: bool
    violations: list[dict] = field(default_factory=list)
    blocking: list[dict] = field(default_factory=list)
    empty_seats: list[dict] = field(default_factory=list)
    split_groups: list[str] = field(default_factory=list)
    placed: int = 0
    applicants: int = 0
    by_rank: dict[str, int] = field(default_factory=dict)
    transfers_moved: int = 0

    @property
    def blocking_count(self) -> int:
        return len(self.blocking)

    def summary(self) -> dict:
        return {"ok": self.ok, "applicants": self.applicants, "placed": self.placed,
                "unplaced": self.applicants - self.placed, "by_rank": self.by_rank,
                "violations": len(self.violations), "blocking_coalitions": self.blocking_count,
                "empty_seats_wanted": sum(e["wanted_by"] for e in self.empty_seats),
                "buckets_with_wanted_empty_seats": len(self.empty_seats),
                "split_sibling_groups": len(self.split_groups), "transfers_moved": self.transfers_moved}

    def to_dict(self) -> dict:
        return {**self.summary(), "violation_list": self.violations, "blocking_list": self.blocking,
                "empty_seat_list": self.empty_seats, "split_group_list": self.split_groups}


def verify_assignment(rnd: Round, assignment: dict[str, str | None], priority: Priority | None = None) -> Report:
    prio = priority or compute_priority(rnd.applicants, rnd.rules)
    rank = prio.rank
    apps = rnd.applicants
    nurseries = rnd.nursery_by_id
    rep = Report(ok=True, applicants=len(apps))

    def where(aid: str) -> str | None:
        return assignment.get(aid)

    def nkey(nid: str, aid: str) -> tuple[int, int]:
        """Nursery ``nid``'s order: its own transfer applicants first, then global priority."""
        return (0 if rnd.by_id[aid].current_nursery == nid else 1, rank[aid])

    def violation(kind: str, ids: list[str], nid: str | None, message: str) -> None:
        rep.violations.append({"kind": kind, "applicant_ids": ids, "nursery_id": nid, "message": message})

    # seats: vacancies plus the seats transfer applicants hold now
    held: dict[tuple[str, int], int] = {}
    for a in apps:
        if a.current_nursery:
            held[(a.current_nursery, a.age_class)] = held.get((a.current_nursery, a.age_class), 0) + 1

    def seats(nid: str, age: int) -> int:
        n = nurseries.get(nid)
        return (n.capacity[age] if n else 0) + held.get((nid, age), 0)

    shared = {}
    for c in rnd.rules.shared_caps:
        shared.setdefault(c.nursery_id, []).append(
            (set(c.ages), c.capacity + sum(held.get((c.nursery_id, age), 0) for age in c.ages)))

    # ---- hard rules, per child
    occupants: dict[tuple[str, int], list[str]] = {}
    for a in apps:
        nid = where(a.applicant_id)
        if nid is None:
            if a.current_nursery:
                violation("transfer_lost_seat", [a.applicant_id], a.current_nursery,
                          f"転園希望の{a.applicant_id}が在園施設{a.current_nursery}の席を失っています（転園先が決まらない場合は在園継続です）。")
            continue
        rep.placed += 1
        if nid in a.preferences:
            r = a.preferences.index(nid) + 1
            label = f"第{r}希望"
        else:
            label = "在園継続"
        rep.by_rank[label] = rep.by_rank.get(label, 0) + 1
        if nid not in a.preferences and nid != a.current_nursery:
            violation("not_listed", [a.applicant_id], nid, f"{a.applicant_id}は希望していない施設{nid}に配置されています。")
        elif a.current_nursery and nid != a.current_nursery:
            if a.current_nursery in a.preferences and a.preferences.index(nid) > a.preferences.index(a.current_nursery):
                violation("transfer_worse", [a.applicant_id], nid,
                          f"転園希望の{a.applicant_id}が在園施設より希望順位の低い{nid}に配置されています。")
            else:
                rep.transfers_moved += 1
        occupants.setdefault((nid, a.age_class), []).append(a.applicant_id)
    for (nid, age), occ in sorted(occupants.items()):
        if len(occ) > seats(nid, age):
            violation("capacity", sorted(occ, key=rank.get), nid,
                      f"{nid}の{AGE_LABEL.format(age)}が受入可能数{seats(nid, age)}を超えています（{len(occ)}人）。")
    for nid, groups in shared.items():
        for ages, cap in groups:
            n_in = sum(len(occupants.get((nid, age), [])) for age in ages)
            if n_in > cap:
                violation("shared_cap", [], nid, f"{nid}の共有枠（{'・'.join(map(str, sorted(ages)))}歳児）が"
                                                 f"上限{cap}を超えています（{n_in}人）。")
    # ---- siblings
    fam_order: dict[str, list[str]] = {}
    for g, members in sorted(rnd.sibling_groups().items()):
        mode = members[0].sibling_mode
        movers = [a for a in members if not a.current_nursery]
        places = [where(a.applicant_id) for a in members]
        ids = [a.applicant_id for a in members]
        all_same = len(set(places)) == 1 and places[0] is not None
        if not all_same and any(p is not None for p in places):
            rep.split_groups.append(g)  # not all in one nursery, and not all unplaced
        if mode == "same_nursery":
            stay = (all(where(a.applicant_id) is None for a in movers)
                    and all(where(a.applicant_id) == a.current_nursery for a in members if a.current_nursery))
            if not (all_same or stay):
                violation("same_nursery", ids, None, f"兄弟グループ{g}（同一施設希望）が別々の施設に配置されているか、"
                                                     "一部だけが入所しています。")
            fam_order[g] = _family_order(members, rank)
        elif mode == "all_or_none" and len(movers) >= 2:
            got = [where(a.applicant_id) is not None for a in movers]
            if any(got) and not all(got):
                violation("all_or_none", ids, None, f"兄弟グループ{g}（全員入所希望）の一部だけが入所しています。")
    rep.ok = not rep.violations
    rep.by_rank = dict(sorted(rep.by_rank.items(), key=lambda kv: (kv[0] == "在園継続", len(kv[0]), kv[0])))

    # ---- blocking coalitions
    occ_sorted: dict[tuple[str, int], list[tuple[int, int]]] = {
        key: sorted(nkey(key[0], aid) for aid in occ) for key, occ in occupants.items()}
    occ_ids: dict[tuple[str, int], list[str]] = {
        key: sorted(occ, key=lambda aid, n=key[0]: nkey(n, aid)) for key, occ in occupants.items()}

    def higher(nid: str, ages, key: tuple[int, int]) -> int:
        """Children placed at nid (these ages) whom nid ranks above ``key``."""
        return sum(bisect.bisect_left(occ_sorted.get((nid, age), []), key) for age in ages)

    def fits(nid: str, movers: list) -> bool:
        """Would nid take all ``movers``, displacing only children it ranks lower?"""
        by_age: dict[int, list] = {}
        for a in movers:
            by_age.setdefault(a.age_class, []).append(a)
        for age, ms in by_age.items():
            low = max(nkey(nid, a.applicant_id) for a in ms)
            if higher(nid, [age], low) + len(ms) > seats(nid, age):
                return False
        for ages, cap in shared.get(nid, []):
            ms = [a for a in movers if a.age_class in ages]
            if ms:
                low = max(nkey(nid, a.applicant_id) for a in ms)
                if higher(nid, ages, low) + len(ms) > cap:
                    return False
        return True

    def better_options(a) -> list[str]:
        opts = list(a.options)
        cur = where(a.applicant_id)
        if cur in opts:
            return opts[: opts.index(cur)]
        return opts

    def coalition(ids: list[str], nid: str, movers: list) -> dict:
        age_set = {a.age_class for a in movers}
        low = max(nkey(nid, a.applicant_id) for a in movers)
        over = [aid for age in sorted(age_set) for aid in occ_ids.get((nid, age), []) if nkey(nid, aid) > low]
        return {"applicant_ids": ids, "nursery_id": nid, "ages": sorted(age_set),
                "passed_over_for": over, "empty_seat": not over}

    groups = rnd.sibling_groups()
    for a in apps:
        g = a.sibling_group
        mode = a.sibling_mode if g else None
        if mode == "same_nursery":
            continue
        if mode == "all_or_none" and not a.current_nursery and len(
                [m for m in groups[g] if not m.current_nursery]) >= 2 and where(a.applicant_id) is None:
            continue  # an unplaced all_or_none family is checked as a whole below
        for nid in better_options(a):
            if fits(nid, [a]):
                rep.blocking.append(coalition([a.applicant_id], nid, [a]))
    for g, members in sorted(groups.items()):
        mode = members[0].sibling_mode
        movers = [a for a in members if not a.current_nursery]
        if mode == "all_or_none" and len(movers) >= 2 and all(where(a.applicant_id) is None for a in movers):
            ages = [a.age_class for a in movers]
            independent = len(set(ages)) == len(ages) and not any(
                nid in shared for a in movers for nid in a.options)
            if independent:  # every member has a listed nursery that would take it
                targets = []
                for a in movers:
                    t = next((nid for nid in a.options if fits(nid, [a])), None)
                    if t is None:
                        break
                    targets.append(t)
                else:
                    c = coalition([a.applicant_id for a in movers], targets[0], movers[:1])
                    c["nursery_id"] = "・".join(dict.fromkeys(targets))
                    rep.blocking.append(c)
            else:
                # members compete for seats (same age, or a shared room): exact joint check
                found = _joint_assignment(movers, fits)
                if found is not None:
                    first = next(iter(found))
                    c = coalition([a.applicant_id for a in movers], first, found[first])
                    c["nursery_id"] = "・".join(found)
                    rep.blocking.append(c)
        elif mode == "same_nursery":
            order = fam_order[g]
            places = {where(a.applicant_id) for a in members}
            together = places.pop() if len(places) == 1 else None
            above = order[: order.index(together)] if together in order else order
            for nid in above:
                moving = [a for a in members if a.current_nursery != nid]
                if moving and fits(nid, moving):
                    rep.blocking.append(coalition([a.applicant_id for a in members], nid, moving))
    # ---- empty seats someone wanted
    wanted: dict[tuple[str, int], list[str]] = {}
    for a in apps:
        for nid in better_options(a):
            wanted.setdefault((nid, a.age_class), []).append(a.applicant_id)
    for (nid, age), ids in sorted(wanted.items()):
        free = seats(nid, age) - len(occupants.get((nid, age), []))
        for ages, cap in shared.get(nid, []):
            if age in ages:
                free = min(free, cap - sum(len(occupants.get((nid, x), [])) for x in ages))
        if free > 0:
            rep.empty_seats.append({"nursery_id": nid, "age": age, "free": free, "wanted_by": len(ids),
                                    "applicant_ids": sorted(ids, key=rank.get)})
    return rep


def _family_order(members: list, rank: dict[str, int]) -> list[str]:
    """Nurseries every member can be placed in, in the order of the highest-priority member who is
    not a transfer applicant (the same definition the model documents)."""
    movers = sorted((a for a in members if not a.current_nursery), key=lambda a: rank[a.applicant_id])
    ref = movers[0] if movers else min(members, key=lambda a: rank[a.applicant_id])
    sets = [set(a.options) for a in members]
    return [nid for nid in ref.options if all(nid in s for s in sets)]


def _set_partitions(items: list) -> list[list[list]]:
    """Every partition of ``items`` into non-empty blocks (Bell(5) = 52 for a family of five)."""
    if not items:
        return [[]]
    first, rest = items[0], items[1:]
    out = []
    for part in _set_partitions(rest):
        out.append([[first]] + part)
        for k in range(len(part)):
            out.append(part[:k] + [[first] + part[k]] + part[k + 1:])
    return out


def _match_blocks(cands: list[list[str]]) -> list[str] | None:
    """A distinct nursery for every block (``cands[j]``: nurseries that would take block j), by
    augmenting paths (Kuhn); None if there is none."""
    owner: dict[str, int] = {}

    def augment(j: int, seen: set[str]) -> bool:
        for nid in cands[j]:
            if nid in seen:
                continue
            seen.add(nid)
            if nid not in owner or augment(owner[nid], seen):
                owner[nid] = j
                return True
        return False

    for j in range(len(cands)):
        if not augment(j, set()):
            return None
    got = {j: nid for nid, j in owner.items()}
    return [got[j] for j in range(len(cands))]


def _joint_assignment(movers: list, fits) -> dict[str, list] | None:
    """Exact test of whether an unplaced ``all_or_none`` family blocks: a listed nursery for every
    member such that each chosen nursery would take the members sent to it together
    (``fits(nid, members)``). Returns {nursery: members sent there} (nurseries in id order), or
    None.

    Members sent to one nursery form a block; blocks go to distinct nurseries. For each way of
    grouping the members into blocks, each block's candidates are the nurseries every member of it
    listed and that would take the block together; a bipartite matching (augmenting paths) then
    finds distinct nurseries for the blocks if they exist. ``fits`` is monotone (a nursery that
    takes a group takes any part of it), so nurseries that refuse a member alone are dropped first.
    Polynomial in the list lengths; the number of groupings depends only on the family size.
    (A plain seat count per (nursery, age) would not be exact: a child displaced by a higher
    member still competes with a lower one, and shared rooms couple age classes.)"""
    alone = [[nid for nid in a.options if fits(nid, [a])] for a in movers]
    if not all(alone):
        return None
    idx = list(range(len(movers)))
    cand_cache: dict[tuple[int, ...], list[str]] = {}

    def cands(block: tuple[int, ...]) -> list[str]:
        if block not in cand_cache:
            if len(block) == 1:
                cand_cache[block] = alone[block[0]]
            else:
                others = [set(alone[j]) for j in block[1:]]
                ms = [movers[j] for j in block]
                cand_cache[block] = [nid for nid in alone[block[0]]
                                     if all(nid in s for s in others) and fits(nid, ms)]
        return cand_cache[block]

    # fewest blocks last: the singletons partition first (the usual witness, and the cheapest)
    for part in sorted(_set_partitions(idx), key=lambda p: -len(p)):
        blocks = [tuple(sorted(b)) for b in part]
        lists = [cands(b) for b in blocks]
        if not all(lists):
            continue
        chosen = _match_blocks(lists)
        if chosen is not None:
            return {nid: [movers[j] for j in b] for nid, b in sorted(zip(chosen, blocks))}
    return None
