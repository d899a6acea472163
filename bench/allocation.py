"""Benchmark of the nursery allocation solver on generated rounds; prints a table.

    python bench/allocation.py                 # all sizes, with and without siblings/transfers
    python bench/allocation.py --sizes 600:33,3000:62 --workers 2 --time-limit 120

Each case runs in its own process so that peak memory (max RSS) is per case. Columns:
build = instance + warm start + CP-SAT model construction, solve = CP-SAT stages, verify =
independent verifier, total = build + solve + verify (+ input preparation inside the solver),
DA = deferred acceptance alone on the same input (and its placed count / blocking coalitions).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_SIZES = "600:33,3000:62,8000:311,30000:800"


def one(children: int, nurseries: int, families: bool, workers: int, time_limit: float, seed: int) -> dict:
    from allocation.da import deferred_acceptance
    from allocation.generate import generate, to_round
    from allocation.instance import build_instance
    from allocation.model import solve
    from allocation.verify import verify_assignment

    gen = generate(children, nurseries, siblings=0.08 if families else 0.0,
                   transfers=0.05 if families else 0.0, seed=seed)
    rnd = to_round(gen)
    t0 = time.perf_counter()
    res = solve(rnd, time_limit=time_limit, workers=workers)
    t1 = time.perf_counter()
    rep = verify_assignment(rnd, res.assignment())
    t2 = time.perf_counter()
    inst = build_instance(rnd)
    match = deferred_acceptance(inst)
    t3 = time.perf_counter()
    da = {a.applicant_id: (inst.options[i][match[i]] if match[i] is not None else None)
          for i, a in enumerate(inst.apps)}
    da_rep = verify_assignment(rnd, da)
    build = res.timings["prepare"] + res.timings["build"]
    return {"children": children, "nurseries": nurseries, "families": families,
            "pairs": sum(len(a.options) for a in rnd.applicants),
            "build": build, "solve": res.timings["solve"], "verify": t2 - t1, "total": t2 - t0,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "placed": rep.placed, "blocking": rep.blocking_count, "violations": len(rep.violations),
            "split": len(rep.split_groups), "status": res.status,
            "da_s": t3 - t2, "da_placed": da_rep.placed, "da_blocking": da_rep.blocking_count,
            "da_valid": da_rep.ok, "same_as_da": sum(1 for k, v in res.assignment().items() if da[k] == v)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=DEFAULT_SIZES)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", choices=["families", "plain"], default=None)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        c, n, f = args.one.split(":")
        print(json.dumps(one(int(c), int(n), f == "1", args.workers, args.time_limit, args.seed)))
        return
    rows = []
    header = ("children", "nurs", "sib/tr", "pairs", "build s", "solve s", "verify s", "total s", "peak MB",
              "placed", "blocking", "status", "DA s", "DA placed", "DA blocking", "=DA")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for size in args.sizes.split(","):
        c, n = size.split(":")
        for fam in (True, False):
            if args.only == "families" and not fam or args.only == "plain" and fam:
                continue
            out = subprocess.run([sys.executable, __file__, "--one", f"{c}:{n}:{int(fam)}", "--workers",
                                  str(args.workers), "--time-limit", str(args.time_limit), "--seed", str(args.seed)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print(f"| {c} | {n} | {'yes' if fam else 'no'} | failed: {out.stderr.strip()[-300:]} |")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(r)
            da_note = "" if r["da_valid"] else " (breaks sibling rules)"
            print(f"| {r['children']} | {r['nurseries']} | {'8%/5%' if fam else 'none'} | {r['pairs']} | "
                  f"{r['build']:.2f} | {r['solve']:.2f} | {r['verify']:.2f} | {r['total']:.2f} | {r['peak_mb']:.0f} | "
                  f"{r['placed']} | {r['blocking']} | {r['status']} | {r['da_s']:.2f} | {r['da_placed']} | "
                  f"{r['da_blocking']}{da_note} | {r['same_as_da']} |", flush=True)


if __name__ == "__main__":
    main()
