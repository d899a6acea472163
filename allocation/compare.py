"""Batch comparison of two results for the same round (the tool's and a manual selection)."""
from __future__ import annotations

from .explain import explain
from .models import Priority, Round
from .rules import compute_priority
from .verify import verify_assignment


def compare(rnd: Round, tool: dict[str, str | None], manual: dict[str, str | None],
            priority: Priority | None = None) -> dict:
    prio = priority or compute_priority(rnd.applicants, rnd.rules)
    sides = {}
    explanations = {}
    for label, assignment in (("tool", tool), ("manual", manual)):
        rep = verify_assignment(rnd, assignment, prio)
        ex, table = explain(rnd, assignment, prio)
        explanations[label] = ex
        sides[label] = {**rep.summary(), "violation_list": rep.violations, "blocking_list": rep.blocking,
                        "empty_seat_list": rep.empty_seats, "split_group_list": rep.split_groups,
                        "cutoff_table": table}
    same = sum(1 for a in rnd.applicants if tool.get(a.applicant_id) == manual.get(a.applicant_id))
    n = len(rnd.applicants)
    diffs = []
    for aid in prio.order:
        a = rnd.by_id[aid]
        t, m = tool.get(aid), manual.get(aid)
        if t == m:
            continue
        diffs.append({
            "applicant_id": aid, "priority_rank": prio.rank[aid], "points": a.points, "age_class": a.age_class,
            "tool_nursery_id": t, "tool_preference_rank": a.preferences.index(t) + 1 if t in a.preferences else None,
            "manual_nursery_id": m,
            "manual_preference_rank": a.preferences.index(m) + 1 if m in a.preferences else None,
            "tool_explanation": explanations["tool"][aid].text(),
            "manual_explanation": explanations["manual"][aid].text(),
        })
    return {"applicants": n, "same": same, "agreement_pct": round(100.0 * same / n, 2) if n else 100.0,
            "differences": len(diffs), "tool": sides["tool"], "manual": sides["manual"], "difference_list": diffs}
