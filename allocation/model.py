"""The CP-SAT model and the staged (lexicographic) solve.

One boolean per placeable (applicant, listed nursery). Rules, each a named block in
``build_model``:

- ``one_place``           each child at most one nursery; a transfer applicant exactly one (own seat last)
- ``capacity``            seats per (nursery, age), counting seats held by transfer applicants
- ``shared_cap``          a room shared by several age classes (rules.toml ``[[shared_cap]]``)
- ``same_nursery``        siblings all in one nursery or none (a transfer member then keeps its seat)
- ``all_or_none``         siblings all placed or none (nurseries may differ)
- ``stability``           no blocking coalition: for every listed nursery ranked above a child's result,
                          that nursery (age class, or shared room) is full with children it ranks higher.
                          One linear constraint per listed preference over the higher-priority children
                          of that bucket, written with running-count variables so the model stays linear
                          in size. Soft (one slack per coalition) only when the warm start has a blocking
                          coalition or breaks a sibling rule; then the first stage minimises them.
- ``split``               a sibling group whose members end up in different places (for the 4th objective)

Objective, lexicographic, solved in stages, each stage fixing the optimum of the previous one:
(1) fewest blocking coalitions (only when soft), (2) most children placed, then best preference
ranks, then fewest split sibling groups (one integer objective with exact weights),
(3) a fixed pseudo-random weight per (child, nursery) derived from the ids, so that the optimum is
unique and several workers return the same result (run only when siblings or shared rooms can leave
ties; on other rounds the stable, applicant-optimal result is already unique).
"""
from __future__ import annotations

import hashlib
import itertools
import math
import time
from dataclasses import dataclass, field

from ortools.sat.python import cp_model
from ortools import __version__ as ORTOOLS_VERSION

from .da import deferred_acceptance
from .instance import Instance, build_instance
from .models import Placement, Priority, Result, Round

SOLVER_NAME = f"OR-Tools CP-SAT {ORTOOLS_VERSION}"
INF = 2**62

# Linear expressions are kept as a plain list of (variable index, coefficient) plus a constant and
# written straight into the model proto: building 10^5 constraints through the operator-overloading
# API costs several times more Python time than the solve on this scale.
Terms = list[tuple[int, int]]


@dataclass
class Built:
    model: cp_model.CpModel
    x: list[int]  # pair -> variable index
    pair_app: list[int]
    pair_k: list[int]  # index into inst.options[i]
    app_pairs: list[list[int]]  # applicant -> its pairs, best first
    blocking: list[int]  # slack variables (soft mode), one per possible coalition
    split: list[int]  # one variable per sibling group that can split
    rank_max: int
    n_constraints: dict[str, int] = field(default_factory=dict)
    writer: "_Proto | None" = None

    def complete_hint(self, x_values: list[int]) -> list[int]:
        """A full, feasible assignment of every model variable from placement values (which must
        satisfy the hard rules): auxiliary variables follow from their definitions, and slacks
        are 1 exactly where the placement has a blocking coalition."""
        return self.writer.complete(self.x, x_values)


class _Proto:
    """Thin writer for variables and constraints of a CpModelProto."""

    def __init__(self) -> None:
        self.model = cp_model.CpModel()
        self.proto = self.model.proto
        self.n_vars = 0
        self.counts: dict[str, int] = {}
        self.defs: dict[int, object] = {}  # variable -> fn(values) giving its value in a hint

    def define(self, var: int, fn) -> None:
        self.defs[var] = fn

    def complete(self, x: list[int], x_values: list[int]) -> list[int]:
        vals = [0] * self.n_vars
        for v, val in zip(x, x_values):
            vals[v] = val
        for v in range(self.n_vars):  # definitions only use variables created before
            fn = self.defs.get(v)
            if fn is not None:
                vals[v] = int(fn(vals))
        return vals

    def bool_vars(self, n: int) -> list[int]:
        first = self.n_vars
        for _ in range(n):
            self.proto.variables.add().domain.extend((0, 1))
        self.n_vars += n
        return list(range(first, first + n))

    def int_var(self, lo: int, hi: int) -> int:
        self.proto.variables.add().domain.extend((lo, hi))
        self.n_vars += 1
        return self.n_vars - 1

    def linear(self, rule: str, terms: Terms, lo: int, hi: int, enforce: int | None = None) -> None:
        """lo <= sum(coeff * var) <= hi (only when ``enforce`` is true, if given)."""
        ct = self.proto.constraints.add()
        if enforce is not None:
            ct.enforcement_literal.append(enforce)
        lin = ct.linear
        lin.vars.extend(v for v, _ in terms)
        lin.coeffs.extend(c for _, c in terms)
        lin.domain.extend((lo, hi))
        self.counts[rule] = self.counts.get(rule, 0) + 1

    def at_most_one(self, rule: str, lits: list[int]) -> None:
        self.proto.constraints.add().at_most_one.literals.extend(lits)
        self.counts[rule] = self.counts.get(rule, 0) + 1

    def exactly_one(self, rule: str, lits: list[int]) -> None:
        self.proto.constraints.add().exactly_one.literals.extend(lits)
        self.counts[rule] = self.counts.get(rule, 0) + 1


def _groups(inst: Instance) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, a in enumerate(inst.apps):
        if a.sibling_group:
            groups.setdefault(a.sibling_group, []).append(i)
    return groups


def family_options(inst: Instance, members: list[int]) -> list[str]:
    """same_nursery groups: nurseries every member can be placed in, in the order of the
    highest-priority member who is not a transfer applicant (else the first member)."""
    movers = [i for i in members if not inst.apps[i].current_nursery] or members
    ref = movers[0]
    sets = [set(inst.options[i]) for i in members]
    return [nid for nid in inst.options[ref] if all(nid in s for s in sets)]


def build_model(inst: Instance, *, soft: bool) -> Built:
    w = _Proto()
    apps = inst.apps
    groups = _groups(inst)

    # nurseries a same_nursery member may use: only those the whole family can use
    allowed: dict[int, set[str]] = {}
    fam_opts: dict[str, list[str]] = {}
    for g, members in groups.items():
        if apps[members[0]].sibling_mode == "same_nursery":
            fam_opts[g] = family_options(inst, members)
            common = set(fam_opts[g])
            for i in members:
                cur = apps[i].current_nursery
                allowed[i] = common | ({cur} if cur else set())

    # ---- variables: one bool per placeable (applicant, listed nursery) -------------------------
    pair_app: list[int] = []
    pair_k: list[int] = []
    app_pairs: list[list[int]] = [[] for _ in apps]
    pair_of: dict[tuple[int, str], int] = {}
    bucket_pairs: dict[tuple[str, int], list[int]] = {}
    for i, a in enumerate(apps):
        for k, nid in enumerate(inst.options[i]):
            if i in allowed and nid not in allowed[i]:
                continue
            if inst.cap.get((nid, a.age_class), 0) <= 0:
                continue  # no seat for this age at all: cannot be placed, cannot block
            p = len(pair_app)
            pair_app.append(i)
            pair_k.append(k)
            app_pairs[i].append(p)
            pair_of[(i, nid)] = p
            bucket_pairs.setdefault((nid, a.age_class), []).append(p)
    x = w.bool_vars(len(pair_app))  # pair p is variable x[p] (== p)

    def xv(i: int, nid: str) -> int | None:
        p = pair_of.get((i, nid))
        return None if p is None else x[p]

    # ---- one_place ----------------------------------------------------------------------------
    placed: list[list[int]] = []  # per applicant: its x variables (placed = their sum)
    for i, a in enumerate(apps):
        lits = [x[p] for p in app_pairs[i]]
        if a.current_nursery:
            w.exactly_one("one_place", lits)  # the own seat is always among the options
        elif len(lits) > 1:
            w.at_most_one("one_place", lits)
        placed.append(lits)

    # ---- capacity, with running counts used again by stability -----------------------------------
    # before[p]: children placed in p's bucket whom the nursery ranks above p's child (variables,
    # each with coefficient 1)
    before: list[list[int]] = [[] for _ in pair_app]
    for (nid, age), ps in bucket_pairs.items():
        ps.sort(key=lambda p: inst.at_priority(nid, pair_app[p]))
        _running_counts(w, x, ps, before)
        cap = inst.cap[(nid, age)]
        if len(ps) > cap:
            w.linear("capacity", [(x[p], 1) for p in ps], 0, cap)

    # ---- shared_cap -----------------------------------------------------------------------------
    before_shared: dict[tuple[int, int], list[int]] = {}  # (pair, group no.) -> running count
    for nid, caps in inst.shared.items():
        for gno, (ages, cap) in enumerate(caps):
            ps = sorted((p for age in ages for p in bucket_pairs.get((nid, age), [])),
                        key=lambda p: inst.at_priority(nid, pair_app[p]))
            tmp: list[list[int]] = [[] for _ in pair_app]
            _running_counts(w, x, ps, tmp)
            for p in ps:
                before_shared[(p, gno)] = tmp[p]
            if len(ps) > cap:
                w.linear("shared_cap", [(x[p], 1) for p in ps], 0, cap)

    # ---- how a nursery may refuse ----------------------------------------------------------------
    # A refusal is (running count, need): the nursery refuses if at least ``need`` of the seats
    # are taken by children it ranks higher. A list of refusals means "any one of them".
    def refusals(nid: str, age: int, p: int) -> list[tuple[list[int], int]] | None:
        """Refusals of one child (pair p); None if the nursery can always refuse."""
        alts = [(before[p], inst.cap[(nid, age)])]
        for gno, (ages, cap) in enumerate(inst.shared.get(nid, [])):
            if age in ages:
                alts.append((before_shared[(p, gno)], cap))
        if any(need <= 0 for _, need in alts):
            return None
        return alts

    def family_refusals(nid: str, movers_here: list[int]) -> list[tuple[list[int], int]] | None:
        """Refusals of a family moving in together: per age (and shared room), the members' lowest
        priority one must fit with the others; None if the nursery can always refuse."""
        if not movers_here:
            return None
        alts: list = []
        by_age: dict[int, list[int]] = {}
        for i in movers_here:
            by_age.setdefault(apps[i].age_class, []).append(i)
        for age, ms in by_age.items():
            p_low = pair_of.get((max(ms), nid))  # positions are in priority order
            need = inst.cap.get((nid, age), 0) - len(ms) + 1
            if p_low is None or need <= 0:
                return None
            alts.append((before[p_low], need))
        for gno, (ages, cap) in enumerate(inst.shared.get(nid, [])):
            ms = [i for i in movers_here if apps[i].age_class in ages]
            if ms:
                p_low = pair_of.get((max(ms), nid))
                need = cap - len(ms) + 1
                if p_low is None or need <= 0:
                    return None
                alts.append((before_shared[(p_low, gno)], need))
        return alts

    blocking: list[int] = []

    def no_blocking(rule: str, alts: list[tuple[list[int], int]], excuse: Terms, excuse_const: int = 0) -> None:
        """Unless excuse (+ const) >= 1, or a slack is paid, one of the refusals must hold."""
        if soft:
            b = w.bool_vars(1)[0]
            blocking.append(b)
            w.define(b, lambda vals, alts=alts, excuse=excuse, const=excuse_const:
                     _value(vals, excuse) + const < 1 and not any(_refused(vals, a) for a in alts))
            excuse = excuse + [(b, 1)]
        if len(alts) == 1:  # running count + need * excuse >= need
            h, need = alts[0]
            w.linear(rule, [(v, 1) for v in h] + [(v, need * c) for v, c in excuse],
                     need * (1 - excuse_const), INF)
        else:
            zs = w.bool_vars(len(alts))
            w.linear(rule, [(z, 1) for z in zs] + excuse, 1 - excuse_const, INF)
            for z, alt in zip(zs, alts):
                w.define(z, lambda vals, alt=alt: _refused(vals, alt))
                w.linear(rule, [(v, 1) for v in alt[0]], alt[1], INF, enforce=z)

    # ---- siblings -------------------------------------------------------------------------------
    coupled: dict[int, str] = {}  # applicant -> mode, for members whose stability is per family
    split: list[int] = []
    for g, members in groups.items():
        mode = apps[members[0]].sibling_mode
        movers = [i for i in members if not apps[i].current_nursery]
        if mode == "same_nursery":
            opts = fam_opts[g]
            together = w.bool_vars(len(opts))  # the family is together at opts[k]
            for t, nid in zip(together, opts):
                first = next((xv(i, nid) for i in members if apps[i].current_nursery != nid), None)
                w.define(t, lambda vals, v=first: vals[v] if v is not None else 0)
                for i in members:
                    if apps[i].current_nursery == nid:
                        continue  # stays anyway when the family does not move together
                    v = xv(i, nid)
                    w.linear("same_nursery", [(t, 1)] + ([(v, -1)] if v is not None else []), 0, 0)
            if len(together) > 1:
                w.at_most_one("same_nursery", together)
            for i in movers:
                w.linear("same_nursery", [(v, 1) for v in placed[i]] + [(t, -1) for t in together], 0, 0)
            for i in members:
                coupled[i] = mode
            # family blocking: for each nursery the family ranks above where it is together
            for kk, nid in enumerate(opts):
                alts = family_refusals(nid, [i for i in members if apps[i].current_nursery != nid])
                if alts:
                    no_blocking("stability_family", alts, [(t, 1) for t in together[: kk + 1]])
        elif mode == "all_or_none":
            for i in movers[1:]:
                w.linear("all_or_none", [(v, 1) for v in placed[i]] + [(v, -1) for v in placed[movers[0]]], 0, 0)
            if len(movers) >= 2:
                for i in movers:
                    coupled[i] = mode
                ref_placed = [(v, 1) for v in placed[movers[0]]]
                if all_or_none_independent_members(inst, movers):
                    # unplaced family blocks if every member has a listed nursery that would take it
                    ws = w.bool_vars(len(movers))  # ws[j]: member j has no nursery that would take it
                    member_alts = [[r for p in app_pairs[i]
                                    if (r := refusals(inst.options[i][pair_k[p]], apps[i].age_class, p)) is not None]
                                   for i in movers]
                    for wj, alt_lists in zip(ws, member_alts):
                        w.define(wj, lambda vals, al=alt_lists: all(any(_refused(vals, a) for a in alts)
                                                                    for alts in al))
                    if soft:
                        b = w.bool_vars(1)[0]
                        blocking.append(b)
                        w.define(b, lambda vals, ws=ws, rp=ref_placed: sum(vals[v] for v in ws) + _value(vals, rp) < 1)
                        w.linear("stability_family", [(v, 1) for v in ws] + ref_placed + [(b, 1)], 1, INF)
                    else:
                        w.linear("stability_family", [(v, 1) for v in ws] + ref_placed, 1, INF)
                    for wj, alt_lists in zip(ws, member_alts):
                        for alts in alt_lists:
                            if len(alts) == 1:
                                w.linear("stability_family", [(v, 1) for v in alts[0][0]], alts[0][1], INF, enforce=wj)
                            else:
                                zs = w.bool_vars(len(alts))
                                w.linear("stability_family", [(z, 1) for z in zs], 1, INF, enforce=wj)
                                for z, alt in zip(zs, alts):
                                    w.define(z, lambda vals, alt=alt: _refused(vals, alt))
                                    w.linear("stability_family", [(v, 1) for v in alt[0]], alt[1], INF, enforce=z)
                elif combo_count(inst, movers) <= COMBO_LIMIT:
                    # members compete for the same seats (same age, or a shared room): the unplaced
                    # family blocks if some choice of one listed nursery per member would take them
                    # all, each nursery taking the members sent to it together
                    refused_lit: dict[tuple[frozenset[int], str], int | None] = {}

                    def refused(ms: frozenset[int], nid: str) -> int | None:
                        """Literal that forces nid to refuse the members ms together; None: it always does."""
                        key = (ms, nid)
                        if key not in refused_lit:
                            alts = family_refusals(nid, sorted(ms))
                            lit = None
                            if alts is not None:
                                lit = w.bool_vars(1)[0]
                                w.define(lit, lambda vals, alts=alts: any(_refused(vals, a) for a in alts))
                                _enforce_refusal(w, lit, alts)
                            refused_lit[key] = lit
                        return refused_lit[key]

                    clauses: list[list[int]] = []
                    for combo in itertools.product(*(inst.options[i] for i in movers)):
                        by_n: dict[str, set[int]] = {}
                        for i, nid in zip(movers, combo):
                            by_n.setdefault(nid, set()).add(i)
                        lits = [refused(frozenset(ms), nid) for nid, ms in by_n.items()]
                        if None not in lits:
                            clauses.append(lits)
                    b = None
                    if soft and clauses:
                        b = w.bool_vars(1)[0]
                        blocking.append(b)
                        w.define(b, lambda vals, cl=clauses, rp=ref_placed:
                                 _value(vals, rp) < 1 and any(not any(vals[v] for v in c) for c in cl))
                    for c in clauses:
                        w.linear("stability_family", [(v, 1) for v in c] + ref_placed + ([(b, 1)] if b else []), 1, INF)
                else:
                    # too many combinations to list: the same condition through Hall's theorem
                    # (exact, linear in the list lengths; see _hall_family_stability)
                    b = _hall_family_stability(w, inst, movers, family_refusals, ref_placed, soft)
                    if b is not None:
                        blocking.append(b)
        if mode in ("all_or_none", "independent") or any(apps[i].current_nursery for i in members):
            s = w.bool_vars(1)[0]
            split.append(s)
            union = sorted({nid for i in members for nid in inst.options[i]})
            ref = members[0]
            diffs: list[Terms] = []
            for nid in union:
                vr = xv(ref, nid)
                for i in members[1:]:
                    vi = xv(i, nid)
                    if vr is None and vi is None:
                        continue
                    diffs.append(([(vi, 1)] if vi is not None else []) + ([(vr, -1)] if vr is not None else []))
            for i in members[1:]:
                diffs.append([(v, 1) for v in placed[i]] + [(v, -1) for v in placed[ref]])
            for d in diffs:
                w.linear("split", [(s, 1)] + [(v, -c) for v, c in d], 0, INF)  # s >= d
                w.linear("split", [(s, 1)] + d, 0, INF)  # s >= -d
            w.define(s, lambda vals, diffs=diffs: any(_value(vals, d) != 0 for d in diffs))

    # ---- stability for every child not bound to a family ------------------------------------------
    for i, a in enumerate(apps):
        mode = coupled.get(i)
        if mode == "same_nursery":
            continue
        ps = app_pairs[i]
        for j, p in enumerate(ps):
            alts = refusals(inst.options[i][pair_k[p]], a.age_class, p)
            if alts is None:
                continue
            if mode == "all_or_none":
                # excused if placed here or better, or if the family is unplaced (checked as a whole):
                # excuse = prefix + 1 - placed = 1 - (placed somewhere worse)
                no_blocking("stability", alts, [(x[q], -1) for q in ps[j + 1:]], 1)
            else:
                no_blocking("stability", alts, [(x[q], 1) for q in ps[: j + 1]])

    rank_max = sum(max((pair_k[p] for p in ps), default=0) for ps in app_pairs)
    return Built(w.model, x, pair_app, pair_k, app_pairs, blocking, split, rank_max, w.counts, w)


def _value(vals: list[int], terms: Terms) -> int:
    return sum(vals[v] * c for v, c in terms)


def _refused(vals: list[int], alt: tuple[list[int], int]) -> bool:
    h, need = alt
    return sum(vals[v] for v in h) >= need


def _running_counts(w: _Proto, x: list[int], ps: list[int], out: list[list[int]]) -> None:
    """out[p] = variables whose sum counts the pairs before p in ``ps``: a few x's after a
    running-count variable, so each expression stays short and the model linear in size."""
    run: list[int] = []
    for pos, p in enumerate(ps):
        out[p] = run
        run = run + [x[p]]
        if len(run) > 20 and pos + 1 < len(ps):
            v = w.int_var(0, pos + 1)
            w.linear("running_count", [(v, 1)] + [(u, -1) for u in run], 0, 0)
            w.define(v, lambda vals, run=tuple(run): sum(vals[u] for u in run))
            run = [v]


def _hint_values(built: Built, hint: list[int | None]) -> list[int]:
    values = [0] * len(built.x)
    for i, k in enumerate(hint):
        if k is not None:
            for p in built.app_pairs[i]:
                if built.pair_k[p] == k:
                    values[p] = 1
    return values


def _set_hint(built: Built, values: list[int]) -> None:
    """Hint every variable (a complete, feasible hint: CP-SAT starts from it at once)."""
    hint = built.model.proto.solution_hint
    hint.vars.clear()
    hint.values.clear()
    hint.vars.extend(range(len(values)))
    hint.values.extend(values)


COMBO_LIMIT = 400  # all_or_none families: listed-nursery combinations checked exactly up to this


def combo_count(inst: Instance, movers: list[int]) -> int:
    return math.prod(len(inst.options[i]) for i in movers)


def _enforce_refusal(w: _Proto, lit: int, alts: list[tuple[list[int], int]]) -> None:
    """lit -> one of the refusals holds."""
    if len(alts) == 1:
        w.linear("stability_family", [(v, 1) for v in alts[0][0]], alts[0][1], INF, enforce=lit)
        return
    zs = w.bool_vars(len(alts))
    w.linear("stability_family", [(z, 1) for z in zs], 1, INF, enforce=lit)
    for z, alt in zip(zs, alts):
        w.define(z, lambda vals, alt=alt: _refused(vals, alt))
        w.linear("stability_family", [(v, 1) for v in alt[0]], alt[1], INF, enforce=z)


def _set_partitions(items: list) -> list[list[tuple]]:
    """Every partition of ``items`` into non-empty blocks (tuples keep the order of ``items``)."""
    if not items:
        return [[]]
    first, rest = items[0], items[1:]
    out = []
    for part in _set_partitions(rest):
        out.append([(first,)] + part)
        for k in range(len(part)):
            out.append(part[:k] + [(first,) + part[k]] + part[k + 1:])
    return out


def _hall_family_stability(w: _Proto, inst: Instance, movers: list[int], family_refusals, ref_placed: Terms,
                           soft: bool) -> int | None:
    """An unplaced ``all_or_none`` family whose members compete for seats must not block, written
    without listing every combination of nurseries (the enumeration above is L^k in size).

    The family blocks iff, for some grouping P of the members into blocks (the members sent to one
    nursery), the blocks can be matched to distinct nurseries that would take them. By Hall's
    theorem no such matching exists iff some set S of blocks is accepted, all together, by fewer
    than |S| nurseries. So per grouping P: placed, or one literal h(P, S) holding, where
    h(P, S) -> sum over nurseries of u(S, n) <= |S| - 1, u(S, n) >= "n takes some block of S",
    and "n takes block B" is 1 - r(B, n) with r(B, n) -> n refuses B together (family_refusals).
    Returns the slack (soft mode) or None."""
    r_lit: dict[tuple[tuple[int, ...], str], int] = {}

    def accepted(block: tuple[int, ...]) -> list[tuple[str, int]]:
        """(nursery, r) for every nursery that every member of block listed and that may take it."""
        out = []
        for nid in common_options(inst, list(block)):
            key = (block, nid)
            if key not in r_lit:
                alts = family_refusals(nid, sorted(block))
                if alts is None:
                    r_lit[key] = -1  # always refuses
                else:
                    r = w.bool_vars(1)[0]
                    w.define(r, lambda vals, alts=alts: any(_refused(vals, a) for a in alts))
                    _enforce_refusal(w, r, alts)
                    r_lit[key] = r
            if r_lit[key] >= 0:
                out.append((nid, r_lit[key]))
        return out

    h_of: dict[frozenset, int] = {}

    def hall(blocks: frozenset) -> int:
        """Literal h: the blocks in ``blocks`` are accepted by fewer nurseries than there are blocks."""
        if blocks not in h_of:
            by_n: dict[str, list[int]] = {}
            for blk in sorted(blocks):
                for nid, r in accepted(blk):
                    by_n.setdefault(nid, []).append(r)
            us = []
            for nid, rs in by_n.items():
                u = w.bool_vars(1)[0]
                w.define(u, lambda vals, rs=tuple(rs): any(not vals[r] for r in rs))
                for r in rs:  # u >= 1 - r
                    w.linear("stability_family", [(u, 1), (r, 1)], 1, INF)
                us.append(u)
            h = w.bool_vars(1)[0]
            w.define(h, lambda vals, us=tuple(us), k=len(blocks): sum(vals[u] for u in us) <= k - 1)
            w.linear("stability_family", [(u, 1) for u in us], 0, len(blocks) - 1, enforce=h)
            h_of[blocks] = h
        return h_of[blocks]

    per_partition: list[list[int]] = []
    for part in _set_partitions(sorted(movers)):
        subsets = [frozenset(c) for n in range(1, len(part) + 1) for c in itertools.combinations(part, n)]
        per_partition.append([hall(sub) for sub in subsets])
    b = None
    if soft:
        b = w.bool_vars(1)[0]
        w.define(b, lambda vals, pp=per_partition, rp=ref_placed:
                 _value(vals, rp) < 1 and any(not any(vals[h] for h in hs) for hs in pp))
    for hs in per_partition:
        w.linear("stability_family", [(h, 1) for h in hs] + ref_placed + ([(b, 1)] if b is not None else []), 1, INF)
    return b


def all_or_none_independent_members(inst: Instance, movers: list[int]) -> bool:
    """True when no two moving members can compete for a seat: distinct age classes and no
    shared room among their options."""
    ages = [inst.apps[i].age_class for i in movers]
    return len(set(ages)) == len(ages) and not any(nid in inst.shared for i in movers for nid in inst.options[i])


def common_options(inst: Instance, members: list[int]) -> list[str]:
    sets = [set(inst.options[i]) for i in members]
    return [nid for nid in inst.options[members[0]] if all(nid in s for s in sets)]


def _restricted_improvement(built: Built, values: list[int], solver: cp_model.CpSolver, seconds: float,
                            stage_times: dict[str, float]) -> list[int]:
    """A quick better start for the coalition stage: only the coalitions of the current hint may
    stay (every other slack fixed to 0), which leaves a much smaller problem. Any solution of it is
    a solution of the full model."""
    model = built.model.clone()
    proto = model.proto
    for b in built.blocking:
        if not values[b]:
            ct = proto.constraints.add().linear
            ct.vars.append(b)
            ct.coeffs.append(1)
            ct.domain.extend((0, 0))
    proto.objective.vars.extend(built.blocking)
    proto.objective.coeffs.extend([1] * len(built.blocking))
    proto.solution_hint.vars.extend(range(len(values)))
    proto.solution_hint.values.extend(values)
    solver.parameters.max_time_in_seconds = max(0.5, seconds)
    st = solver.solve(model)
    stage_times["blocking_local"] = solver.wall_time
    if st in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return list(solver.response_proto.solution)
    return values


def tie_weight(applicant_id: str, nursery_id: str) -> int:
    d = hashlib.sha256(f"{applicant_id}\x1f{nursery_id}".encode()).digest()
    return 1 + (int.from_bytes(d[:4], "big") & 0xFFFFF)


# ---------------------------------------------------------------------------------------------


def warm_start(inst: Instance) -> list[int | None]:
    """DA that keeps the sibling rules: families that DA splits are taken out (their transfer
    members keep their seats) and DA is run again for everyone else, until no family is split.
    The result keeps every hard rule and is stable except, at most, for the families taken out."""
    apps = inst.apps
    groups = _groups(inst)
    fam_opts = {g: set(family_options(inst, m)) for g, m in groups.items()
                if apps[m[0]].sibling_mode == "same_nursery"}
    start: dict[int, int] = {}
    out: set[str] = set()
    for _ in range(12):
        match = deferred_acceptance(inst, start)
        broken = [g for g, members in groups.items() if g not in out
                  and not _family_ok(inst, members, match, fam_opts.get(g))]
        if not broken:
            return match
        for g in broken:
            out.add(g)
            for i in groups[g]:
                start[i] = len(inst.options[i]) - (1 if apps[i].current_nursery else 0)
    for g, members in groups.items():  # did not settle: take out what is still split
        if not _family_ok(inst, members, match, fam_opts.get(g)):
            for i in members:
                cur = apps[i].current_nursery
                match[i] = len(inst.options[i]) - 1 if cur else None
    return match


def _family_ok(inst: Instance, members: list[int], match: list[int | None], same_opts: set[str] | None) -> bool:
    apps = inst.apps
    mode = apps[members[0]].sibling_mode
    place = [inst.options[i][match[i]] if match[i] is not None else None for i in members]
    movers = [j for j, i in enumerate(members) if not apps[i].current_nursery]
    if mode == "same_nursery":
        apart = (all(place[j] is None for j in movers)
                 and all(place[j] == apps[i].current_nursery for j, i in enumerate(members) if apps[i].current_nursery))
        together = len(set(place)) == 1 and place[0] is not None and place[0] in same_opts
        return apart or together
    if mode == "all_or_none":
        got = [place[j] is not None for j in movers]
        return all(got) or not any(got)
    return True


STAGE_LABELS = {"placed_rank_split": "入所数・希望順位の最適化", "blocking": "優先順位の逆転が最少の配置の探索",
                "tie": "結果を一つに定める最終計算"}


def solve(rnd: Round, *, time_limit: float = 60.0, workers: int = 2, priority: Priority | None = None,
          log: bool = False, progress=None) -> Result:
    """``progress(label, fraction)``, if given, is called as stages start (Japanese labels)."""
    t0 = time.perf_counter()
    inst = build_instance(rnd, priority)
    hint = warm_start(inst)
    # Without siblings or shared rooms, DA is stable, so the model with hard stability is
    # feasible. Otherwise a stable result may not exist: the hard model is tried first anyway.
    soft = bool(_groups(inst)) or bool(inst.shared)
    t1 = time.perf_counter()
    deadline = t0 + time_limit
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = max(1, workers)
    solver.parameters.random_seed = 0
    solver.parameters.log_search_progress = log
    stage_times: dict[str, float] = {}
    built = build_model(inst, soft=False)
    values = built.complete_hint(_hint_values(built, hint))
    t_build = time.perf_counter() - t1
    status_all = "OPTIMAL"
    objective: dict[str, int] = {}
    last_status = ""

    def stage(name: str, terms: Terms, share: float = 1.0) -> int | None:
        """Minimise sum(terms); on success fix that value for the next stages."""
        nonlocal status_all, values, last_status
        if progress is not None:
            progress(STAGE_LABELS.get(name, name), {"placed_rank_split": 0.3, "blocking": 0.25, "tie": 0.7}.get(name, 0.5))
        m = built.model
        _set_hint(built, values)
        m.clear_objective()
        obj = m.proto.objective
        obj.vars.extend(v for v, _ in terms)
        obj.coeffs.extend(c for _, c in terms)
        solver.parameters.max_time_in_seconds = max(0.5, share * (deadline - time.perf_counter()))
        st = solver.solve(m)
        stage_times[name] = solver.wall_time
        last_status = solver.status_name(st)
        if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None
        if st != cp_model.OPTIMAL:
            status_all = "FEASIBLE"
        sol = solver.response_proto.solution
        values = list(sol)
        val = int(round(solver.objective_value))
        ct = m.proto.constraints.add().linear
        ct.vars.extend(v for v, _ in terms)
        ct.coeffs.extend(c for _, c in terms)
        ct.domain.extend((val, val))
        return val

    def main_objective() -> Terms:
        # most placed, then best ranks, then fewest split sibling groups, as one exact integer
        w_rank = len(built.split) + 1
        w_placed = (built.rank_max + 1) * w_rank
        return ([(v, w_rank * k - w_placed) for v, k in zip(built.x, built.pair_k)]
                + [(s, 1) for s in built.split])

    # With a stable, rule-abiding warm start (always so without siblings) the hard model is
    # feasible. Otherwise try it anyway (a stable result usually exists and is found quickly);
    # if it has none, or none is found in time, rebuild with slacks and minimise coalitions first.
    ok = stage("placed_rank_split", main_objective(), 1.0 if not soft else 0.7) is not None
    # slacks only help when the hard model has no solution (usually proved quickly); a time-out on
    # a large round is better answered with the warm start than with a bigger model
    if not ok and soft and (last_status == "INFEASIBLE" or deadline - time.perf_counter() > 0.3 * time_limit):
        tb = time.perf_counter()
        built = build_model(inst, soft=True)
        values = built.complete_hint(_hint_values(built, hint))
        t_build += time.perf_counter() - tb
        values = _restricted_improvement(built, values, solver, 0.3 * (deadline - time.perf_counter()),
                                         stage_times)
        val = stage("blocking", [(b, 1) for b in built.blocking], 0.8)
        ok = val is not None and stage("placed_rank_split", main_objective(), 0.8) is not None
        objective["blocking"] = val if val is not None else -1
    else:
        objective["blocking"] = 0 if ok else -1  # -1: not minimised (see the verifier's count)
        soft = False
    if not ok:
        if soft and objective.get("blocking", -1) >= 0:
            status_all = "FEASIBLE"  # coalitions minimised as far as time allowed; later stages cut short
        else:  # nothing better than the warm start (which keeps every hard rule) was found in time
            status_all = "WARM_START_ONLY" if last_status in ("UNKNOWN", "MODEL_INVALID") else last_status
    if ok and (_groups(inst) or inst.shared or soft):
        weights = [tie_weight(inst.apps[built.pair_app[p]].applicant_id,
                              inst.options[built.pair_app[p]][built.pair_k[p]]) for p in range(len(built.x))]
        val = stage("tie", list(zip(built.x, weights)))
        if val is None:
            status_all = "FEASIBLE"
        objective["tie"] = val if val is not None else -1
    t3 = time.perf_counter()
    placements: dict[str, Placement] = {}
    chosen: dict[int, int] = {built.pair_app[p]: p for p in range(len(built.x)) if values[p]}
    for i, a in enumerate(inst.apps):
        p = chosen.get(i)
        nid = inst.options[i][built.pair_k[p]] if p is not None else None
        rank = a.preferences.index(nid) + 1 if nid is not None and nid in a.preferences else None
        placements[a.applicant_id] = Placement(a.applicant_id, nid, rank, inst.priority.rank[a.applicant_id])
    objective["placed"] = sum(1 for p in placements.values() if p.nursery_id)
    objective["rank_sum"] = sum(built.pair_k[p] for p in chosen.values())
    res = Result(placements, status_all,
                 objective, {"prepare": t1 - t0, "build": t_build, "solve": t3 - t1 - t_build}, SOLVER_NAME,
                 rnd.rules.lottery_seed)
    res.timings["soft"] = float(soft)
    res.timings.update({f"stage_{k}": v for k, v in stage_times.items()})
    return res
