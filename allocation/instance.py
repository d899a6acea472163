"""Index structures shared by the deferred-acceptance pass and the CP-SAT model.

(The verifier deliberately does not use this module: it recomputes everything from the raw round.)
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .models import Applicant, Priority, Round
from .rules import compute_priority


@dataclass
class Instance:
    rnd: Round
    priority: Priority
    apps: list[Applicant]  # in priority order (index = position, 0 = highest priority)
    index: dict[str, int]
    options: list[tuple[str, ...]]  # per applicant: placeable nurseries, best first
    cap: dict[tuple[str, int], int]  # (nursery, age) -> seats incl. seats held by transfer applicants
    shared: dict[str, list[tuple[frozenset[int], int]]]  # nursery -> [(ages, seats incl. transfer seats)]
    transfer_at: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    def at_priority(self, nid: str, i: int) -> tuple[int, int]:
        """Sort key of applicant ``i`` at nursery ``nid`` (lower = preferred by the nursery)."""
        return (0 if self.apps[i].current_nursery == nid else 1, i)


def build_instance(rnd: Round, priority: Priority | None = None) -> Instance:
    priority = priority or compute_priority(rnd.applicants, rnd.rules)
    apps = [rnd.by_id[aid] for aid in priority.order]
    index = {a.applicant_id: i for i, a in enumerate(apps)}
    cap: dict[tuple[str, int], int] = {}
    for n in rnd.nurseries:
        for age in range(6):
            cap[(n.nursery_id, age)] = n.capacity[age]
    transfer_at: dict[tuple[str, int], list[int]] = {}
    for i, a in enumerate(apps):
        if a.current_nursery:
            key = (a.current_nursery, a.age_class)
            cap[key] = cap.get(key, 0) + 1
            transfer_at.setdefault(key, []).append(i)
    shared: dict[str, list[tuple[frozenset[int], int]]] = {}
    for c in rnd.rules.shared_caps:
        extra = sum(len(transfer_at.get((c.nursery_id, age), [])) for age in c.ages)
        shared.setdefault(c.nursery_id, []).append((frozenset(c.ages), c.capacity + extra))
    options = [a.options for a in apps]
    return Instance(rnd, priority, apps, index, options, cap, shared, transfer_at)
