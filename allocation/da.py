"""Applicant-proposing deferred acceptance (DA).

Without transfer applicants every nursery ranks applicants by the same global priority, and DA
reduces to serial dictatorship: in priority order, each child takes the best listed nursery with a
free seat. Transfer applicants rank first at their current nursery (they keep that seat unless
placed higher), which is why the general proposing form is used. Sibling constraints are ignored
here: DA is the warm start for CP-SAT and the cross-check on sibling-free rounds.
"""
from __future__ import annotations

import heapq

from .instance import Instance


def deferred_acceptance(inst: Instance, start: dict[int, int] | None = None) -> list[int | None]:
    """Returns, per applicant position, the index into ``inst.options[i]`` (None = unplaced).

    ``start``: applicant -> first option index it may propose to (``len(options)``: takes no part)."""
    n = len(inst.apps)
    nxt = [0] * n
    for i, k in (start or {}).items():
        nxt[i] = k
    match: list[int | None] = [None] * n
    # plain buckets: max-heap on nursery priority (store negative keys) of held applicants
    held: dict[tuple[str, int], list[tuple[tuple[int, int], int]]] = {}
    # nurseries with shared caps: held sets, re-chosen greedily on each proposal
    held_shared: dict[str, list[int]] = {}
    free = list(range(n - 1, -1, -1))  # stack; order does not change the DA outcome

    while free:
        i = free.pop()
        opts = inst.options[i]
        if nxt[i] >= len(opts):
            continue
        k = nxt[i]
        nxt[i] += 1
        nid = opts[k]
        age = inst.apps[i].age_class
        if nid in inst.shared:
            group = held_shared.setdefault(nid, [])
            group.append(i)
            chosen = _choose(inst, nid, group)
            rejected = [j for j in group if j not in chosen]
            held_shared[nid] = [j for j in group if j in chosen]
            match[i] = k
            for j in rejected:
                match[j] = None
                free.append(j)
            continue
        cap = inst.cap.get((nid, age), 0)
        if cap <= 0:
            free.append(i)
            continue
        heap = held.setdefault((nid, age), [])
        key = inst.at_priority(nid, i)
        if len(heap) < cap:
            heapq.heappush(heap, ((-key[0], -key[1]), i))
            match[i] = k
        else:
            worst_neg, j = heap[0]
            if (-worst_neg[0], -worst_neg[1]) > key:  # i is preferred to the worst held
                heapq.heapreplace(heap, ((-key[0], -key[1]), i))
                match[i] = k
                match[j] = None
                free.append(j)
            else:
                free.append(i)
    return match


def _choose(inst: Instance, nid: str, proposers: list[int]) -> set[int]:
    """Greedy choice of a nursery with shared caps: in its priority order, admit whoever fits."""
    used_age = [0] * 6
    used_group = [0] * len(inst.shared[nid])
    chosen = set()
    for i in sorted(proposers, key=lambda j: inst.at_priority(nid, j)):
        age = inst.apps[i].age_class
        if used_age[age] >= inst.cap.get((nid, age), 0):
            continue
        groups = [g for g, (ages, _) in enumerate(inst.shared[nid]) if age in ages]
        if any(used_group[g] >= inst.shared[nid][g][1] for g in groups):
            continue
        used_age[age] += 1
        for g in groups:
            used_group[g] += 1
        chosen.add(i)
    return chosen
