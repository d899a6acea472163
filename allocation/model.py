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
import time
from dataclasses import dataclass, field

from ortools.sat.python import cp_model
from ortools import __version__ as ORTOOLS_VERSION

from .da import deferred_acceptance
from .instance import Instance, build_instance
from .models import Placement, Priority, Result, Round

SOLVER_NAME = f"OR-Tools CP-SAT {ORTOOLS_VERSION}"
LinearExpr = cp_model.LinearExpr


@dataclass
class Built:
    model: cp_model.CpModel
    x: list  # pair -> BoolVar
    pair_app: list[int]
    pair_k: list[int]  # index into inst.options[i]
    app_pairs: list[list[int]]  # applicant -> its pairs, best first
    blocking: list  # slack literals (soft mode), one per possible coalition
    split: list  # one literal per sibling group that can split
    placed_expr: object
    rank_expr: object
    rank_max: int
    n_constraints: dict[str, int] = field(default_factory=dict)


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


def build_model(inst: Instance, *, soft: bool, names: bool = False) -> Built:
    m = cp_model.CpModel()
    apps = inst.apps
    groups = _groups(inst)
    counts: dict[str, int] = {}

    def count(rule: str, n: int = 1) -> None:
        counts[rule] = counts.get(rule, 0) + n

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
    x: list = []
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
            p = len(x)
            x.append(m.new_bool_var(f"x[{a.applicant_id},{nid}]" if names else ""))
            pair_app.append(i)
            pair_k.append(k)
            app_pairs[i].append(p)
            pair_of[(i, nid)] = p
            bucket_pairs.setdefault((nid, a.age_class), []).append(p)

    def xv(i: int, nid: str):
        p = pair_of.get((i, nid))
        return None if p is None else x[p]

    def add(rule: str, ct) -> None:
        count(rule)
        if names:
            ct.with_name(rule)

    # ---- one_place ----------------------------------------------------------------------------
    placed = []
    for i, a in enumerate(apps):
        lits = [x[p] for p in app_pairs[i]]
        if a.current_nursery:
            add("one_place", m.add_exactly_one(lits))  # the own seat is always among the options
        elif len(lits) > 1:
            add("one_place", m.add_at_most_one(lits))
        placed.append(LinearExpr.sum(lits) if lits else 0)

    # ---- capacity, with running counts used again by stability -----------------------------------
    # before[p]: number of children placed in p's bucket whom the nursery ranks above p's child
    before: list = [0] * len(x)
    for (nid, age), ps in bucket_pairs.items():
        ps.sort(key=lambda p: inst.at_priority(nid, pair_app[p]))
        _running_counts(m, x, ps, before)
        cap = inst.cap[(nid, age)]
        if len(ps) > cap:
            add("capacity", m.add(LinearExpr.sum([x[p] for p in ps]) <= cap))

    # ---- shared_cap -----------------------------------------------------------------------------
    before_shared: dict[tuple[int, int], object] = {}  # (pair, group no.) -> running count
    for nid, caps in inst.shared.items():
        for gno, (ages, cap) in enumerate(caps):
            ps = sorted((p for age in ages for p in bucket_pairs.get((nid, age), [])),
                        key=lambda p: inst.at_priority(nid, pair_app[p]))
            tmp: list = [0] * len(x)
            _running_counts(m, x, ps, tmp)
            for p in ps:
                before_shared[(p, gno)] = tmp[p]
            if len(ps) > cap:
                add("shared_cap", m.add(LinearExpr.sum([x[p] for p in ps]) <= cap))

    def refusals(nid: str, age: int, p_low: int, movers: int = 1) -> list[tuple[object, int]] | None:
        """Ways the nursery can refuse ``movers`` children of this age whose lowest-priority one
        is pair ``p_low``: (running count, seats that must be taken by higher-ranked children).
        None if it can always refuse."""
        alts = [(before[p_low], inst.cap[(nid, age)] - movers + 1)]
        for gno, (ages, cap) in enumerate(inst.shared.get(nid, [])):
            if age in ages:
                alts.append((before_shared[(p_low, gno)], cap - movers + 1))
        if any(need <= 0 for _, need in alts):
            return None
        return alts

    blocking: list = []

    def no_blocking(rule: str, alts: list[tuple[object, int]], excuse) -> None:
        """Unless ``excuse`` >= 1 (or a slack is paid), one of the refusals must hold."""
        if soft:
            b = m.new_bool_var("")
            blocking.append(b)
            excuse = excuse + b
        if len(alts) == 1:
            h, need = alts[0]
            add(rule, m.add(h + need * excuse >= need))
        else:
            zs = [m.new_bool_var("") for _ in alts]
            add(rule, m.add(LinearExpr.sum(zs) + excuse >= 1))
            for z, (h, need) in zip(zs, alts):
                add(rule, m.add(h >= need).only_enforce_if(z))

    def family_refusals(nid: str, movers_here: list[int]) -> list[tuple[object, int]] | None:
        """Ways nursery ``nid`` can refuse a family that moves in together; None: it always can."""
        if not movers_here:
            return None
        alts: list = []
        by_age: dict[int, list[int]] = {}
        for i in movers_here:
            by_age.setdefault(apps[i].age_class, []).append(i)
        for age, ms in by_age.items():
            p_low = pair_of.get((max(ms), nid))  # the lowest-priority member of this age
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

    # ---- siblings -------------------------------------------------------------------------------
    coupled: dict[int, str] = {}  # applicant -> mode, for members whose stability is per family
    split: list = []
    for g, members in groups.items():
        mode = apps[members[0]].sibling_mode
        movers = [i for i in members if not apps[i].current_nursery]
        if mode == "same_nursery":
            opts = fam_opts[g]
            together = []
            for nid in opts:
                t = m.new_bool_var("")
                together.append(t)
                for i in members:
                    v = xv(i, nid)
                    if apps[i].current_nursery == nid:
                        continue  # stays anyway when the family does not move together
                    if v is None:
                        add("same_nursery", m.add(t == 0))
                    else:
                        add("same_nursery", m.add(v == t))
            if together:
                add("same_nursery", m.add_at_most_one(together))
            for i in movers:
                add("same_nursery", m.add(placed[i] == LinearExpr.sum(together) if together else placed[i] == 0))
            for i in members:
                coupled[i] = mode
            # family blocking: for each nursery the family ranks above where it is together
            for kk, nid in enumerate(opts):
                alts = family_refusals(nid, [i for i in members if apps[i].current_nursery != nid])
                if alts:
                    no_blocking("stability_family", alts, LinearExpr.sum(together[: kk + 1]))
        elif mode == "all_or_none":
            for i in movers[1:]:
                add("all_or_none", m.add(placed[i] == placed[movers[0]]))
            if len(movers) >= 2:
                for i in movers:
                    coupled[i] = mode
                if all_or_none_independent_members(inst, movers):
                    # unplaced family blocks if every member has a listed nursery that would take it
                    w = [m.new_bool_var("") for _ in movers]
                    alt_lists = []
                    for wi, i in zip(w, movers):
                        for p in app_pairs[i]:
                            r = refusals(inst.options[i][pair_k[p]], apps[i].age_class, p)
                            if r is not None:
                                alt_lists.append((wi, r))
                    _family_unplaced(m, movers, placed, w, alt_lists, soft, blocking, count)
                else:
                    # members compete for the same seats (same age, or a shared room): the unplaced
                    # family blocks with a nursery that would take all of them together
                    for nid in common_options(inst, movers):
                        alts = family_refusals(nid, movers)
                        if alts:
                            no_blocking("stability_family", alts, placed[movers[0]])
        if mode in ("all_or_none", "independent") or any(apps[i].current_nursery for i in members):
            s = m.new_bool_var("")
            split.append(s)
            union = sorted({nid for i in members for nid in inst.options[i]})
            ref = members[0]
            for nid in union:
                vr = xv(ref, nid)
                for i in members[1:]:
                    vi = xv(i, nid)
                    if vr is None and vi is None:
                        continue
                    d = (vi if vi is not None else 0) - (vr if vr is not None else 0)
                    add("split", m.add(s >= d))
                    add("split", m.add(s >= -d))
            for i in members[1:]:
                add("split", m.add(s >= placed[i] - placed[ref]))
                add("split", m.add(s >= placed[ref] - placed[i]))

    # ---- stability for every child not bound to a family ------------------------------------------
    for i, a in enumerate(apps):
        mode = coupled.get(i)
        if mode == "same_nursery":
            continue
        ps = app_pairs[i]
        prefix = []
        for p in ps:
            prefix.append(x[p])
            r = refusals(inst.options[i][pair_k[p]], a.age_class, p)
            if r is None:
                continue
            excuse = LinearExpr.sum(prefix)
            if mode == "all_or_none":  # an unplaced family is handled as a whole
                excuse = excuse + 1 - placed[i]
            no_blocking("stability", r, excuse)

    placed_expr = LinearExpr.sum(x)
    rank_expr = LinearExpr.weighted_sum(x, pair_k)
    rank_max = sum(max((pair_k[p] for p in ps), default=0) for ps in app_pairs)
    return Built(m, x, pair_app, pair_k, app_pairs, blocking, split, placed_expr, rank_expr, rank_max, counts)


def _running_counts(m: cp_model.CpModel, x: list, ps: list[int], out: list) -> None:
    """out[p] = sum of x over the pairs before p in ``ps`` (a linear expression or 0)."""
    run = None
    size = 0
    for pos, p in enumerate(ps):
        out[p] = 0 if run is None else run
        if run is None:
            run = x[p]
        elif size < 6:
            run = run + x[p]
        else:  # keep expressions short: a running-count variable every few steps
            v = m.new_int_var(0, pos + 1, "")
            m.add(v == run + x[p])
            run = v
            size = 0
        size += 1


def _family_unplaced(m, movers, placed, w, alt_lists, soft, blocking, count) -> None:
    if soft:
        b = m.new_bool_var("")
        blocking.append(b)
        m.add(LinearExpr.sum(w) + placed[movers[0]] + b >= 1)
    else:
        m.add(LinearExpr.sum(w) + placed[movers[0]] >= 1)
    count("stability_family")
    for wi, alts in alt_lists:
        if len(alts) == 1:
            h, need = alts[0]
            m.add(h >= need).only_enforce_if(wi)
        else:
            zs = [m.new_bool_var("") for _ in alts]
            m.add(LinearExpr.sum(zs) >= 1).only_enforce_if(wi)
            for z, (h, need) in zip(zs, alts):
                m.add(h >= need).only_enforce_if(z)
        count("stability_family")


def _hint_values(built: Built, hint: list[int | None]) -> list[int]:
    values = [0] * len(built.x)
    for i, k in enumerate(hint):
        if k is not None:
            for p in built.app_pairs[i]:
                if built.pair_k[p] == k:
                    values[p] = 1
    return values


def _set_hint(built: Built, values: list[int]) -> None:
    m = built.model
    m.clear_hints()
    for v, val in zip(built.x, values):
        m.add_hint(v, val)


def all_or_none_independent_members(inst: Instance, movers: list[int]) -> bool:
    """True when no two moving members can compete for a seat: distinct age classes and no
    shared room among their options."""
    ages = [inst.apps[i].age_class for i in movers]
    return len(set(ages)) == len(ages) and not any(nid in inst.shared for i in movers for nid in inst.options[i])


def common_options(inst: Instance, members: list[int]) -> list[str]:
    sets = [set(inst.options[i]) for i in members]
    return [nid for nid in inst.options[members[0]] if all(nid in s for s in sets)]


def tie_weight(applicant_id: str, nursery_id: str) -> int:
    d = hashlib.sha256(f"{applicant_id}\x1f{nursery_id}".encode()).digest()
    return 1 + (int.from_bytes(d[:4], "big") & 0xFFFFF)


# ---------------------------------------------------------------------------------------------


def warm_start(inst: Instance) -> list[int | None]:
    """DA, then repaired so that sibling rules hold (broken families are left unplaced)."""
    match = deferred_acceptance(inst)
    apps = inst.apps
    for g, members in _groups(inst).items():
        mode = apps[members[0]].sibling_mode
        movers = [i for i in members if not apps[i].current_nursery]
        if mode == "same_nursery":
            opts = set(family_options(inst, members))
            places = {inst.options[i][match[i]] if match[i] is not None else None for i in movers}
            moved = {inst.options[i][match[i]] for i in members
                     if apps[i].current_nursery and match[i] is not None
                     and inst.options[i][match[i]] != apps[i].current_nursery}
            ok = len(places | moved) == 1 and None not in places and places <= opts
            if not ok:
                for i in members:
                    cur = apps[i].current_nursery
                    match[i] = inst.options[i].index(cur) if cur else None
        elif mode == "all_or_none" and any(match[i] is None for i in movers):
            for i in movers:
                match[i] = None
    return match


def solve(rnd: Round, *, time_limit: float = 60.0, workers: int = 2, priority: Priority | None = None,
          log: bool = False) -> Result:
    from .verify import verify_assignment  # independent checker, used to decide hard/soft

    t0 = time.perf_counter()
    inst = build_instance(rnd, priority)
    hint = warm_start(inst)
    hint_assignment = {a.applicant_id: (inst.options[i][hint[i]] if hint[i] is not None else None)
                       for i, a in enumerate(inst.apps)}
    hint_report = verify_assignment(rnd, hint_assignment, inst.priority)
    soft = not hint_report.ok or hint_report.blocking_count > 0
    t1 = time.perf_counter()
    deadline = t0 + time_limit
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = max(1, workers)
    solver.parameters.random_seed = 0
    solver.parameters.log_search_progress = log
    stage_times: dict[str, float] = {}
    built = build_model(inst, soft=False)
    values = _hint_values(built, hint)
    t_build = time.perf_counter() - t1
    status_all = "OPTIMAL"
    objective: dict[str, int] = {}
    last_status = ""

    def stage(name: str, expr, share: float = 1.0) -> int | None:
        nonlocal status_all, values, last_status
        m = built.model
        _set_hint(built, values)
        m.minimize(expr)
        solver.parameters.max_time_in_seconds = max(0.5, share * (deadline - time.perf_counter()))
        st = solver.solve(m)
        stage_times[name] = solver.wall_time
        last_status = solver.status_name(st)
        if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None
        if st != cp_model.OPTIMAL:
            status_all = "FEASIBLE"
        sol = solver.response_proto.solution
        values = [sol[v.index] for v in built.x]
        val = int(round(solver.objective_value))
        m.add(expr == val)
        return val

    def main_objective():
        # most placed, then best ranks, then fewest split sibling groups, as one exact integer
        w_rank = len(built.split) + 1
        w_placed = (built.rank_max + 1) * w_rank
        return (-w_placed) * built.placed_expr + w_rank * built.rank_expr + LinearExpr.sum(built.split)

    # With a stable, rule-abiding warm start (always so without siblings) the hard model is
    # feasible. Otherwise try it anyway (a stable result usually exists and is found quickly);
    # if it has none, or none is found in time, rebuild with slacks and minimise coalitions first.
    ok = stage("placed_rank_split", main_objective(), 1.0 if not soft else 0.6) is not None
    if not ok and soft:
        tb = time.perf_counter()
        built = build_model(inst, soft=True)
        values = _hint_values(built, hint)
        t_build += time.perf_counter() - tb
        val = stage("blocking", LinearExpr.sum(built.blocking), 0.5)
        ok = val is not None and stage("placed_rank_split", main_objective(), 0.7) is not None
        objective["blocking"] = val if val is not None else -1
    else:
        objective["blocking"] = 0
        soft = False
    if not ok:
        status_all = "WARM_START_ONLY" if last_status in ("UNKNOWN", "MODEL_INVALID") else last_status
    if ok and (_groups(inst) or inst.shared or soft):
        weights = [tie_weight(inst.apps[built.pair_app[p]].applicant_id,
                              inst.options[built.pair_app[p]][built.pair_k[p]]) for p in range(len(built.x))]
        val = stage("tie", LinearExpr.weighted_sum(built.x, weights))
        if val is None:
            status_all = "FEASIBLE"
        objective["tie"] = val if val is not None else -1
    t3 = time.perf_counter()
    placements: dict[str, Placement] = {}
    chosen: dict[int, int] = {built.pair_app[p]: p for p, v in enumerate(values) if v}
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
