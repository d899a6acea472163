"""Plain data for one allocation round.

Vocabulary
- *bucket*: one (nursery, age class) pair with its own number of seats.
- *shared cap*: an extra limit over several age classes of one nursery (a room used by 1-2歳児).
- *priority*: points (基準指数 + 調整指数), then the city's tie-break rules, then a seeded lottery.
  ``priority_rank`` 1 is the highest. At a nursery, a transfer applicant (転園) who currently holds a
  seat there ranks above everyone for that seat: they keep it unless placed somewhere they prefer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

AGES = (0, 1, 2, 3, 4, 5)
SIBLING_MODES = ("same_nursery", "all_or_none", "independent")


@dataclass(frozen=True)
class Applicant:
    applicant_id: str
    age_class: int
    base_points: float
    adjust_points: float
    preferences: tuple[str, ...]
    sibling_group: str | None = None
    sibling_mode: str | None = None
    current_nursery: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    row: int = field(default=0, compare=False)  # 1-based sheet row (header = 1) for messages

    @property
    def points(self) -> float:
        return self.base_points + self.adjust_points

    @property
    def is_transfer(self) -> bool:
        return bool(self.current_nursery)

    @property
    def options(self) -> tuple[str, ...]:
        """Nurseries this applicant can be placed in, best first.

        A transfer applicant never takes anything worse than the current seat: the list is cut
        after the current nursery, or the current nursery is added as the last option.
        """
        prefs = self.preferences
        cur = self.current_nursery
        if not cur:
            return prefs
        if cur in prefs:
            return prefs[: prefs.index(cur) + 1]
        return prefs + (cur,)


@dataclass(frozen=True)
class Nursery:
    nursery_id: str
    name: str
    capacity: tuple[int, int, int, int, int, int]  # vacancies per age class 0..5 for this round
    row: int = field(default=0, compare=False)


@dataclass(frozen=True)
class SharedCap:
    """At most ``capacity`` new placements over ``ages`` of ``nursery_id`` (seats left by
    transfer applicants who move away are added to it, as to the age buckets)."""
    nursery_id: str
    ages: tuple[int, ...]
    capacity: int


@dataclass(frozen=True)
class TieRule:
    column: str
    direction: str  # "asc" | "desc"

    @property
    def label(self) -> str:
        return f"{self.column} {'降順' if self.direction == 'desc' else '昇順'}"


@dataclass(frozen=True)
class Rules:
    tie_break: tuple[TieRule, ...] = ()
    lottery_seed: int = 0
    shared_caps: tuple[SharedCap, ...] = ()
    default_sibling_mode: str = "same_nursery"
    source: str = ""  # canonical text of the rules, for audit hashes


@dataclass
class Round:
    applicants: list[Applicant]
    nurseries: list[Nursery]
    rules: Rules = field(default_factory=Rules)

    def __post_init__(self) -> None:
        self.by_id = {a.applicant_id: a for a in self.applicants}
        self.nursery_by_id = {n.nursery_id: n for n in self.nurseries}

    def sibling_groups(self) -> dict[str, list[Applicant]]:
        groups: dict[str, list[Applicant]] = {}
        for a in self.applicants:
            if a.sibling_group:
                groups.setdefault(a.sibling_group, []).append(a)
        return groups


@dataclass(frozen=True)
class Priority:
    """The strict order used everywhere, and how it was decided."""
    rank: dict[str, int]  # applicant_id -> 1-based priority rank
    order: list[str]  # applicant ids, highest priority first
    keys: dict[str, tuple]  # applicant_id -> sort key (lower sorts first)
    tie_rule: dict[str, str]  # applicant_id -> rule that put them below the previous applicant
    lottery: dict[str, int]  # applicant_id -> lottery number
    labels: tuple[str, ...]  # human label for each key position


@dataclass
class Placement:
    applicant_id: str
    nursery_id: str | None
    preference_rank: int | None  # 1 = 第1希望; None when unplaced or kept an unlisted current seat
    priority_rank: int | None
    reason: str = ""


@dataclass
class Result:
    placements: dict[str, Placement]
    status: str = ""  # OPTIMAL / FEASIBLE / DA / MANUAL ...
    objective: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    solver: str = ""
    seed: int = 0

    def assignment(self) -> dict[str, str | None]:
        return {k: p.nursery_id for k, p in self.placements.items()}
