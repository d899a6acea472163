"""The verifier's exact joint check for unplaced ``all_or_none`` families whose members compete for
seats (same age class, or a shared room), whatever the lengths of their preference lists."""
from __future__ import annotations

import itertools
import random

from allocation.models import Applicant, Nursery, Round
from allocation.rules import parse_rules
from allocation.verify import _joint_assignment, verify_assignment


def nursery(nid, caps):
    return Nursery(nid, nid, tuple(caps))


def app(aid, age, pts, prefs, group=None, mode=None, current=None):
    return Applicant(aid, age, pts, 0, tuple(prefs), group, mode, current)


def long_round(free: dict[str, int], *, n: int = 25, twin_age: int = 0, extra=(), rules=None):
    """``n`` nurseries with one seat per age each; every seat is taken by a higher-priority child
    (placed at its first choice) except ``free[nid]`` seats of age ``twin_age``. Twins list all
    ``n`` nurseries (n * n combinations, above the former limit of 400), in opposite orders."""
    nids = [f"N{k:02d}" for k in range(n)]
    nurs = [nursery(nid, [1 + free.get(nid, 0) if age == twin_age else 1 for age in range(6)]) for nid in nids]
    apps, result = [], {}
    for nid in nids:  # fill one seat per nursery (the twins' age) with a child the nursery ranks higher
        aid = f"H{nid}"
        apps.append(app(aid, twin_age, 90, [nid]))
        result[aid] = nid
    apps += [app("T0", twin_age, 40, nids, "G", "all_or_none"),
             app("T1", twin_age, 40, nids[::-1], "G", "all_or_none")]
    result.update({"T0": None, "T1": None})
    for a, where in extra:
        apps.append(a)
        result[a.applicant_id] = where
    return Round(apps, nurs, rules) if rules else Round(apps, nurs), result


def coalitions(rep):
    return [(b["applicant_ids"], b["nursery_id"]) for b in rep.blocking]


def test_long_lists_joint_through_two_nurseries_blocks():
    # 25 x 25 = 625 combinations; no nursery has two free seats, but N07 and N19 have one each:
    # the twins would both be taken, one in each. (The former 400-combination fallback only counted
    # one nursery taking both, and so missed this coalition.)
    rnd, result = long_round({"N07": 1, "N19": 1})
    rep = verify_assignment(rnd, result)
    assert rep.ok
    assert coalitions(rep) == [(["T0", "T1"], "N07・N19")]  # the chosen nurseries, in id order
    assert rep.blocking[0]["empty_seat"]


def test_long_lists_displaceable_child_counts_as_a_seat():
    # N03 has no free seat but admitted X, whom it ranks below the twins; N20 has a free seat
    x = app("X", 0, 10, ["N03"])
    rnd, result = long_round({"N03": 1, "N20": 1}, extra=[(x, "N03")])
    rep = verify_assignment(rnd, result)
    assert rep.ok
    (ids, nids), = coalitions(rep)
    assert ids == ["T0", "T1"] and sorted(nids.split("・")) == ["N03", "N20"]


def test_long_lists_only_one_free_seat_does_not_block():
    # both twins want the only nursery with a free seat: one seat cannot take two children
    rnd, result = long_round({"N11": 1})
    rep = verify_assignment(rnd, result)
    assert rep.ok and rep.blocking_count == 0
    # but the single free seat is still reported as wanted
    assert [(e["nursery_id"], e["free"]) for e in rep.empty_seats] == [("N11", 1)]


def test_long_lists_one_nursery_with_two_seats_blocks():
    rnd, result = long_round({"N05": 2})
    rep = verify_assignment(rnd, result)
    assert coalitions(rep) == [(["T0", "T1"], "N05")]


def test_displaced_child_still_competes():
    # N1 (2 seats of age 0): O (between the twins in priority) and one free seat. A plain seat count
    # ("free or displaceable") would give T_hi the seat of O and T_lo the free one, but the nursery
    # would keep O over T_lo: it does not take both, and nowhere else has room -> no coalition.
    nurs = [nursery("N1", [2, 0, 0, 0, 0, 0]), nursery("N2", [1, 0, 0, 0, 0, 0])]
    apps = [app("T_hi", 0, 60, ["N1", "N2"], "G", "all_or_none"), app("T_lo", 0, 20, ["N2", "N1"], "G", "all_or_none"),
            app("O", 0, 40, ["N1"]), app("H", 0, 90, ["N2"])]
    rep = verify_assignment(Round(apps, nurs), {"T_hi": None, "T_lo": None, "O": "N1", "H": "N2"})
    assert rep.ok and rep.blocking_count == 0
    # with O below both twins, N1 would take both
    apps[2] = app("O", 0, 10, ["N1"])
    rep = verify_assignment(Round(apps, nurs), {"T_hi": None, "T_lo": None, "O": "N1", "H": "N2"})
    assert coalitions(rep) == [(["T_hi", "T_lo"], "N1")]


def test_shared_room_members_of_different_ages_long_lists():
    # a 1歳 and a 2歳 sibling; every nursery's 1-2歳 room is shared (one seat each); only N02 and N17
    # have a free seat in that room: the siblings block through the two of them jointly
    n = 22
    nids = [f"N{k:02d}" for k in range(n)]
    toml = "".join(f'[[shared_cap]]\nnursery_id = "{nid}"\nages = [1, 2]\ncapacity = {2 if nid in ("N02", "N17") else 1}\n'
                   for nid in nids)
    rules = parse_rules(toml)
    nurs = [nursery(nid, [0, 2, 2, 0, 0, 0]) for nid in nids]
    apps = [app(f"H{nid}", 1, 90, [nid]) for nid in nids]
    result = {a.applicant_id: a.preferences[0] for a in apps}
    apps += [app("S1", 1, 40, nids, "G", "all_or_none"), app("S2", 2, 40, nids[::-1], "G", "all_or_none")]
    result.update({"S1": None, "S2": None})
    rep = verify_assignment(Round(apps, nurs, rules), result)
    assert rep.ok
    (ids, where), = coalitions(rep)
    assert ids == ["S1", "S2"] and sorted(where.split("・")) == ["N02", "N17"]
    # only N02 has a free seat in the shared room: not both
    toml1 = toml.replace('nursery_id = "N17"\nages = [1, 2]\ncapacity = 2', 'nursery_id = "N17"\nages = [1, 2]\ncapacity = 1')
    rep1 = verify_assignment(Round(apps, nurs, parse_rules(toml1)), result)
    assert rep1.ok and rep1.blocking_count == 0


def test_triplets_need_three_seats_across_nurseries():
    nids = [f"N{k:02d}" for k in range(12)]  # 12^3 = 1728 combinations
    nurs = [nursery(nid, [2 if nid in ("N01", "N09") else 1, 0, 0, 0, 0, 0]) for nid in nids]
    apps = [app(f"H{nid}", 0, 90, [nid]) for nid in nids]
    result = {a.applicant_id: a.preferences[0] for a in apps}
    trip = [app(f"T{k}", 0, 40, random.Random(k).sample(nids, len(nids)), "G", "all_or_none") for k in range(3)]
    result.update({a.applicant_id: None for a in trip})
    # two free seats in all for three children: no coalition
    assert verify_assignment(Round(apps + trip, nurs), result).blocking_count == 0
    # a third free seat (N05) makes it one
    nurs3 = [nursery(n.nursery_id, [2 if n.nursery_id == "N05" else n.capacity[0], 0, 0, 0, 0, 0]) for n in nurs]
    rep = verify_assignment(Round(apps + trip, nurs3), result)
    (ids, where), = coalitions(rep)
    assert ids == ["T0", "T1", "T2"] and sorted(where.split("・")) == ["N01", "N05", "N09"]


def _brute(movers, fits):
    for combo in itertools.product(*(a.options for a in movers)):
        by_n: dict[str, list] = {}
        for a, nid in zip(movers, combo):
            by_n.setdefault(nid, []).append(a)
        if all(fits(nid, ms) for nid, ms in by_n.items()):
            return True
    return False


def test_joint_assignment_equals_enumeration_on_random_families():
    """Against plain enumeration of every combination, with a random (monotone) ``fits``: per
    nursery, a seat count, and a cut-off below which a member is refused."""
    rng = random.Random(5)
    checked = 0
    for trial in range(600):
        k = rng.randint(2, 5)
        nids = [f"N{j}" for j in range(rng.randint(1, 6))]
        movers = [app(f"M{j}", rng.choice([0, 0, 1]), 0, rng.sample(nids, rng.randint(1, len(nids))), "G",
                      "all_or_none") for j in range(k)]
        level = {a.applicant_id: j for j, a in enumerate(movers)}
        seats = {(nid, age): rng.randint(0, 3) for nid in nids for age in (0, 1)}
        cut = {nid: rng.randint(0, k) for nid in nids}
        room = {nid: rng.choice([None, rng.randint(1, 4)]) for nid in nids}

        def fits(nid, ms):
            if any(level[a.applicant_id] >= cut[nid] + 2 for a in ms):
                return False
            for age in (0, 1):
                if sum(a.age_class == age for a in ms) > seats[(nid, age)]:
                    return False
            return room[nid] is None or len(ms) <= room[nid]

        got = _joint_assignment(movers, fits)
        assert (got is not None) == _brute(movers, fits), trial
        if got is not None:
            checked += 1
            assert sorted(a.applicant_id for ms in got.values() for a in ms) == sorted(level)
            assert all(nid in a.options for nid, ms in got.items() for a in ms)
            assert all(fits(nid, ms) for nid, ms in got.items())
    assert checked > 50
