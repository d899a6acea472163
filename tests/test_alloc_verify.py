"""The independent verifier on hand-made results: each violation type and quality measure."""
from __future__ import annotations

from allocation.models import Applicant, Nursery, Round
from allocation.rules import parse_rules
from allocation.verify import verify_assignment


def nursery(nid, caps):
    return Nursery(nid, nid, tuple(caps))


def app(aid, age, pts, prefs, group=None, mode=None, current=None):
    return Applicant(aid, age, pts, 0, tuple(prefs), group, mode, current)


NURS = [nursery("N1", [1, 1, 0, 0, 0, 0]), nursery("N2", [1, 2, 0, 0, 0, 0])]


def kinds(rep):
    return sorted(v["kind"] for v in rep.violations)


def test_clean_result_passes():
    rnd = Round([app("A", 0, 40, ["N1", "N2"]), app("B", 0, 30, ["N1", "N2"])], NURS)
    rep = verify_assignment(rnd, {"A": "N1", "B": "N2"})
    assert rep.ok and rep.blocking_count == 0 and rep.placed == 2 and rep.by_rank == {"第1希望": 1, "第2希望": 1}


def test_capacity_and_unlisted_nursery():
    rnd = Round([app("A", 0, 40, ["N1"]), app("B", 0, 30, ["N1"]), app("C", 1, 20, ["N1"])], NURS)
    rep = verify_assignment(rnd, {"A": "N1", "B": "N1", "C": "N2"})
    assert kinds(rep) == ["capacity", "not_listed"]
    assert any("受入可能数1を超えています" in v["message"] for v in rep.violations)


def test_shared_cap_violation():
    rules = parse_rules('[[shared_cap]]\nnursery_id = "N2"\nages = [0, 1]\ncapacity = 2\n')
    rnd = Round([app("A", 0, 40, ["N2"]), app("B", 1, 30, ["N2"]), app("C", 1, 20, ["N2"])], NURS, rules)
    rep = verify_assignment(rnd, {"A": "N2", "B": "N2", "C": "N2"})
    assert kinds(rep) == ["shared_cap"]
    ok = verify_assignment(rnd, {"A": "N2", "B": "N2", "C": None})
    assert ok.ok and ok.blocking_count == 0


def test_transfer_fallback():
    rnd = Round([app("T", 1, 10, ["N2", "N1"], current="N1"), app("U", 1, 10, ["N1"], current="N2")], NURS)
    assert kinds(verify_assignment(rnd, {"T": None, "U": "N2"})) == ["transfer_lost_seat"]
    rnd2 = Round([app("T", 1, 10, ["N2", "N1", "X"], current="N1")], NURS + [nursery("X", [0, 5, 0, 0, 0, 0])])
    assert kinds(verify_assignment(rnd2, {"T": "X"})) == ["transfer_worse"]
    # the seat a transfer leaves counts as capacity for others
    rnd3 = Round([app("T", 1, 10, ["N2"], current="N1"), app("A", 1, 40, ["N1"]), app("B", 1, 30, ["N1"])],
                 [nursery("N1", [0, 1, 0, 0, 0, 0]), nursery("N2", [0, 1, 0, 0, 0, 0])])
    rep = verify_assignment(rnd3, {"T": "N2", "A": "N1", "B": "N1"})
    assert rep.ok and rep.blocking_count == 0 and rep.transfers_moved == 1


def test_sibling_modes():
    rnd = Round([app("S0", 0, 40, ["N1", "N2"], "G", "same_nursery"), app("S1", 1, 40, ["N1", "N2"], "G", "same_nursery")],
                NURS)
    assert kinds(verify_assignment(rnd, {"S0": "N1", "S1": "N2"})) == ["same_nursery"]
    assert kinds(verify_assignment(rnd, {"S0": "N1", "S1": None})) == ["same_nursery"]
    assert verify_assignment(rnd, {"S0": "N1", "S1": "N1"}).ok
    rnd2 = Round([app("S0", 0, 40, ["N1"], "G", "all_or_none"), app("S1", 1, 40, ["N2"], "G", "all_or_none")], NURS)
    assert kinds(verify_assignment(rnd2, {"S0": "N1", "S1": None})) == ["all_or_none"]
    rep = verify_assignment(rnd2, {"S0": "N1", "S1": "N2"})
    assert rep.ok and rep.split_groups == ["G"]


def test_blocking_coalitions_and_empty_seats():
    rnd = Round([app("A", 0, 40, ["N1"]), app("B", 0, 30, ["N1", "N2"]), app("C", 1, 50, ["N1", "N2"])], NURS)
    # B (30) took N1 although A (40) wanted it: blocking pair (A, N1), A passed over for B
    rep = verify_assignment(rnd, {"A": None, "B": "N1", "C": "N2"})
    assert rep.ok
    assert [(b["applicant_ids"], b["nursery_id"], b["passed_over_for"]) for b in rep.blocking] == [
        (["A"], "N1", ["B"]), (["C"], "N1", [])]
    # C's first choice N1 has a free 1歳 seat: an empty seat someone wanted
    assert rep.empty_seats == [{"nursery_id": "N1", "age": 1, "free": 1, "wanted_by": 1, "applicant_ids": ["C"]}]
    good = verify_assignment(rnd, {"A": "N1", "B": "N2", "C": "N1"})
    assert good.ok and good.blocking_count == 0 and good.empty_seats == []


def test_family_coalition_needs_room_for_all():
    nurs = [nursery("N1", [1, 1, 0, 0, 0, 0])]
    # a same_nursery pair of 0歳 twins cannot block a nursery with one 0歳 seat
    rnd = Round([app("T0", 0, 40, ["N1"], "G", "same_nursery"), app("T1", 0, 40, ["N1"], "G", "same_nursery"),
                 app("X", 0, 10, ["N1"])], nurs)
    assert verify_assignment(rnd, {"T0": None, "T1": None, "X": "N1"}).blocking_count == 0
    # a 0歳 + 1歳 family can: both seats would be theirs if X (lower) were not there
    rnd2 = Round([app("F0", 0, 40, ["N1"], "G", "same_nursery"), app("F1", 1, 40, ["N1"], "G", "same_nursery"),
                  app("X", 0, 10, ["N1"])], nurs)
    rep = verify_assignment(rnd2, {"F0": None, "F1": None, "X": "N1"})
    assert [(b["applicant_ids"], b["nursery_id"]) for b in rep.blocking] == [(["F0", "F1"], "N1")]


def test_transfer_priority_at_own_nursery():
    # T (low points) keeps its seat at N1 against A (high points): no blocking
    rnd = Round([app("T", 1, 5, ["N2"], current="N1"), app("A", 1, 40, ["N1"])],
                [nursery("N1", [0, 0, 0, 0, 0, 0]), nursery("N2", [0, 0, 0, 0, 0, 0])])
    rep = verify_assignment(rnd, {"T": "N1", "A": None})
    assert rep.ok and rep.blocking_count == 0


def test_twins_all_or_none_need_two_seats():
    nurs = [nursery("N1", [1, 0, 0, 0, 0, 0]), nursery("N2", [1, 0, 0, 0, 0, 0])]
    twins = [app("T0", 0, 40, ["N1", "N2"], "G", "all_or_none"), app("T1", 0, 40, ["N1", "N2"], "G", "all_or_none")]
    # one 0歳 seat free in total: the unplaced twins cannot both be taken, so no coalition
    rnd = Round(twins + [app("X", 0, 50, ["N2"])], nurs)
    assert verify_assignment(rnd, {"T0": None, "T1": None, "X": "N2"}).blocking_count == 0
    # two seats in two nurseries: they would both be taken, one in each nursery
    rnd2 = Round(twins + [app("X", 0, 10, ["N2"])], nurs)
    rep = verify_assignment(rnd2, {"T0": None, "T1": None, "X": "N2"})
    assert [(b["applicant_ids"], b["nursery_id"]) for b in rep.blocking] == [(["T0", "T1"], "N1・N2")]
