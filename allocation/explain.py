"""Explanations for every applicant and the per-nursery, per-age cut-off table (ボーダー指数).

Works on any assignment (ours or a manual selection); it recomputes what it needs from the
assignment, like the verifier. Text is Japanese and contains ids and points only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .models import Priority, Round
from .rules import compute_priority, deciding_rule

MODE_JA = {"same_nursery": "同一施設", "all_or_none": "全員入所", "independent": "個別"}


def fmt_points(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


@dataclass
class Explanation:
    applicant_id: str
    priority_rank: int
    points: float
    tie_rule: str
    nursery_id: str | None
    preference_rank: int | None
    reason: str
    details: list[dict] = field(default_factory=list)  # per nursery ranked above the result

    def to_dict(self) -> dict:
        return {"applicant_id": self.applicant_id, "priority_rank": self.priority_rank,
                "points": self.points, "tie_rule": self.tie_rule, "nursery_id": self.nursery_id,
                "preference_rank": self.preference_rank, "reason": self.reason, "details": self.details}

    def text(self) -> str:
        order = f"優先順位 {self.priority_rank}位（指数 {fmt_points(self.points)}"
        order += f"、直前の申込者との順位は「{self.tie_rule}」で決定）" if self.tie_rule else "）"
        lines = [self.reason, order]
        lines += [d["text"] for d in self.details]
        return "\n".join(lines)


def explain(rnd: Round, assignment: dict[str, str | None], priority: Priority | None = None
            ) -> tuple[dict[str, Explanation], list[dict]]:
    prio = priority or compute_priority(rnd.applicants, rnd.rules)
    rank = prio.rank
    names = {n.nursery_id: n.name for n in rnd.nurseries}

    def nkey(nid: str, aid: str) -> tuple[int, int]:
        return (0 if rnd.by_id[aid].current_nursery == nid else 1, rank[aid])

    held: dict[tuple[str, int], int] = {}
    for a in rnd.applicants:
        if a.current_nursery:
            held[(a.current_nursery, a.age_class)] = held.get((a.current_nursery, a.age_class), 0) + 1
    admitted: dict[tuple[str, int], list[str]] = {}  # new placements (not transfer applicants staying)
    stays: dict[tuple[str, int], int] = {}
    for a in rnd.applicants:
        nid = assignment.get(a.applicant_id)
        if nid is None:
            continue
        if nid == a.current_nursery:
            stays[(nid, a.age_class)] = stays.get((nid, a.age_class), 0) + 1
        else:
            admitted.setdefault((nid, a.age_class), []).append(a.applicant_id)
    for ids in admitted.values():
        ids.sort(key=lambda aid: rank[aid])
    # who wanted each bucket more than what they got (waiting list, nursery order)
    waiting: dict[tuple[str, int], list[str]] = {}
    listing: dict[tuple[str, int], int] = {}
    first_choice: dict[tuple[str, int], int] = {}
    for a in rnd.applicants:
        opts = list(a.options)
        got = assignment.get(a.applicant_id)
        above = opts[: opts.index(got)] if got in opts else opts
        for j, nid in enumerate(a.preferences):
            listing[(nid, a.age_class)] = listing.get((nid, a.age_class), 0) + 1
            if j == 0:
                first_choice[(nid, a.age_class)] = first_choice.get((nid, a.age_class), 0) + 1
        for nid in above:
            waiting.setdefault((nid, a.age_class), []).append(a.applicant_id)
    for key, ids in waiting.items():
        ids.sort(key=lambda aid, n=key[0]: nkey(n, aid))
    wait_pos = {(key, aid): pos + 1 for key, ids in waiting.items() for pos, aid in enumerate(ids)}

    def seats(nid: str, age: int) -> int:
        return rnd.nursery_by_id[nid].capacity[age] + held.get((nid, age), 0)

    def border(nid: str, age: int) -> str | None:
        ids = admitted.get((nid, age))
        return max(ids, key=lambda aid: nkey(nid, aid)) if ids else None

    # ---- cut-off table
    table = []
    for n in rnd.nurseries:
        for age in range(6):
            key = (n.nursery_id, age)
            if seats(*key) == 0 and not listing.get(key):
                continue
            b = border(*key)
            nxt = waiting.get(key, [])
            row = {"nursery_id": n.nursery_id, "name": n.name, "age": age, "vacancies": n.capacity[age],
                   "transfer_seats": held.get(key, 0), "stays": stays.get(key, 0),
                   "admitted": len(admitted.get(key, [])),
                   "free": seats(*key) - stays.get(key, 0) - len(admitted.get(key, [])),
                   "applicants": listing.get(key, 0), "first_choice": first_choice.get(key, 0),
                   "waiting": len(nxt), "border_points": None, "border_rank": None, "border_rule": ""}
            if b is not None:
                row["border_points"] = rnd.by_id[b].points
                row["border_rank"] = rank[b]
                below = [aid for aid in nxt if nkey(n.nursery_id, aid) > nkey(n.nursery_id, b)]
                if below and rnd.by_id[below[0]].points == rnd.by_id[b].points:
                    row["border_rule"] = deciding_rule(prio, b, below[0])
            table.append(row)

    # ---- per applicant
    groups = rnd.sibling_groups()
    out: dict[str, Explanation] = {}
    for a in rnd.applicants:
        aid = a.applicant_id
        got = assignment.get(aid)
        pref_rank = a.preferences.index(got) + 1 if got in a.preferences else None
        fam = f"兄弟グループ{a.sibling_group}（{MODE_JA.get(a.sibling_mode or '', '')}）" if a.sibling_group else ""
        if got is None:
            if not a.preferences:
                reason = "保留（希望施設の記載なし）"
            else:
                reason = "保留（希望施設はいずれも満員）"
        elif got == a.current_nursery:
            reason = "在園施設で継続" + (f"（第{pref_rank}希望）" if pref_rank else "（転園先なし）")
        elif a.current_nursery:
            reason = f"第{pref_rank}希望に転園"
        else:
            reason = f"第{pref_rank}希望に内定"
        opts = list(a.options)
        above = opts[: opts.index(got)] if got in opts else opts
        details = []
        sibling_blocked = False
        for nid in above:
            key = (nid, a.age_class)
            name = names.get(nid, nid)
            d = {"nursery_id": nid, "name": name, "preference_rank": a.preferences.index(nid) + 1
                 if nid in a.preferences else None}
            head = f"第{d['preference_rank']}希望 {name}（{nid}）: " if d["preference_rank"] else f"{name}（{nid}）: "
            b = border(*key)
            free = seats(*key) - stays.get(key, 0) - len(admitted.get(key, []))
            if seats(*key) == 0:
                d.update(kind="no_vacancy", text=head + f"{a.age_class}歳児の募集がありません（空きなし）。")
            elif free > 0:
                sibling_blocked = sibling_blocked or bool(a.sibling_group)
                why = (f"{fam}の条件により入所できませんでした。" if a.sibling_group
                       else "空きが残っていますが配置されていません（要確認）。")
                d.update(kind="free_seat", free=free, text=head + f"空きが{free}席あります。{why}")
            elif b is None:
                d.update(kind="full_with_stays", text=head + "在園児の継続で満員です（空きなし）。")
            elif nkey(nid, aid) < nkey(nid, b):
                sibling_blocked = sibling_blocked or bool(a.sibling_group)
                why = (f"{fam}の条件により入所できませんでした。" if a.sibling_group
                       else "本来は入所できる順位です（要確認）。")
                d.update(kind="above_border", border_points=rnd.by_id[b].points, border_rank=rank[b],
                         text=head + f"ボーダー指数{fmt_points(rnd.by_id[b].points)}（{rank[b]}位）より上位ですが、{why}")
            else:
                bp = rnd.by_id[b].points
                gap = bp - a.points
                rule = deciding_rule(prio, b, aid)
                pos = wait_pos.get((key, aid), 1)
                if gap > 0:
                    change = f"あと{fmt_points(gap)}点高ければ同点（同点の場合は判定基準で決定）、" \
                             f"{fmt_points(gap)}点を超えれば入所できました"
                else:
                    change = f"同点のため判定基準「{rule}」で下位となりました。判定基準で上回れば入所できました"
                seat_txt = ("あと1席あれば入所できました" if pos == 1
                            else f"あと{pos}席あれば入所できました（目安。待機順{pos}番目）")
                decided = f"、同点は「{rule}」で決定" if gap <= 0 else ""
                d.update(kind="below_border", border_points=bp, border_rank=rank[b], decided_by=rule,
                         points_needed=gap if gap > 0 else 0, seats_needed=pos,
                         text=head + f"ボーダー指数{fmt_points(bp)}（{rank[b]}位{decided}）。"
                                     f"あなたは{fmt_points(a.points)}点（{rank[aid]}位）。{change}。{seat_txt}。")
            details.append(d)
        if got is None and sibling_blocked:
            reason = f"保留（{fam}の条件による）"
        elif got is None and a.preferences and all(d.get("kind") == "no_vacancy" for d in details):
            reason = "保留（希望施設に該当年齢の募集なし）"
        if a.sibling_group and got is not None and len(groups.get(a.sibling_group, [])) > 1:
            others = [assignment.get(x.applicant_id) for x in groups[a.sibling_group] if x.applicant_id != aid]
            if any(o != got for o in others):
                reason += "（兄弟は別の結果）"
        out[aid] = Explanation(aid, rank[aid], a.points, prio.tie_rule.get(aid, ""), got, pref_rank, reason, details)
    return out, table


CUTOFF_COLUMNS = ["nursery_id", "name", "age", "vacancies", "transfer_seats", "stays", "admitted", "free",
                  "applicants", "first_choice", "waiting", "border_points", "border_rank", "border_rule"]
CUTOFF_HEADERS_JA = ["施設番号", "施設名", "年齢クラス", "募集数", "転園で空く可能性のある席", "在園継続", "新規入所",
                     "残り", "希望者", "第1希望者", "待機", "ボーダー指数", "ボーダー順位", "同点時の決定基準"]


def cutoff_csv_text(table: list[dict]) -> str:
    """The cut-off table for publishing (UTF-8 with BOM so that Excel opens it; Japanese headers)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CUTOFF_HEADERS_JA)
    for r in table:
        w.writerow(["" if r[c] is None else (fmt_points(r[c]) if c == "border_points" else r[c])
                    for c in CUTOFF_COLUMNS])
    return "\ufeff" + buf.getvalue()
