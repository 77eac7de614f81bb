"""Run many seeded Raft simulations, or replay one.

    python tests/sim/run_seeds.py --seeds 10000          # seeds 0..9999
    python tests/sim/run_seeds.py --seeds 500 --start 20000 --jobs 2
    python tests/sim/run_seeds.py --seed 1234 -v         # replay one seed with a trace

Prints a summary (runs, safety violations, liveness failures, worst recovery time, totals)
and, for every failing seed, the error and the command that replays it. Exit status 1 when
any seed failed.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sim_cluster import LivenessViolation, SafetyViolation, run_seed


def _one(seed: int) -> tuple[int, str, str, dict[str, int]]:
    try:
        return seed, "ok", "", run_seed(seed)
    except SafetyViolation as exc:
        return seed, "safety", str(exc), {}
    except LivenessViolation as exc:
        return seed, "liveness", str(exc), {}
    except Exception:  # any other crash of the core or the simulator is a failure too
        return seed, "error", traceback.format_exc(), {}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=1000, help="how many seeds to run")
    p.add_argument("--start", type=int, default=0, help="first seed")
    p.add_argument("--seed", type=int, help="replay this one seed")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument("-v", "--verbose", action="store_true", help="print the trace of --seed")
    args = p.parse_args(argv)

    if args.seed is not None:
        try:
            result = run_seed(args.seed, trace=args.verbose)
        except (SafetyViolation, LivenessViolation) as exc:
            print(f"FAIL seed {args.seed}: {exc}")
            return 1
        print(f"ok seed {args.seed}: {result}")
        return 0

    seeds = range(args.start, args.start + args.seeds)
    began = time.perf_counter()
    counts = {"ok": 0, "safety": 0, "liveness": 0, "error": 0}
    failures: list[tuple[int, str, str]] = []
    totals: dict[str, int] = {}
    worst_recovery = (0, -1)
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(_one, seeds, chunksize=20))
    else:
        results = [_one(s) for s in seeds]
    for seed, kind, text, stats in results:
        counts[kind] += 1
        if kind != "ok":
            failures.append((seed, kind, text))
            continue
        for k, v in stats.items():
            if k != "recovery_ticks":
                totals[k] = totals.get(k, 0) + v
        worst_recovery = max(worst_recovery, (stats["recovery_ticks"], seed))
    elapsed = time.perf_counter() - began

    for seed, kind, text in failures:
        print(f"--- seed {seed}: {kind}\n{text}")
        print(f"replay: python tests/sim/run_seeds.py --seed {seed} -v")
    print(
        f"seeds {args.start}..{args.start + args.seeds - 1}: {len(results)} runs in "
        f"{elapsed:.1f}s; ok={counts['ok']} safety_violations={counts['safety']} "
        f"liveness_failures={counts['liveness']} errors={counts['error']}"
    )
    if counts["ok"]:
        print(
            f"worst recovery after heal: {worst_recovery[0]} ticks (seed {worst_recovery[1]}); "
            + " ".join(f"{k}={v}" for k, v in sorted(totals.items()))
        )
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
