#!/usr/bin/env python3
"""A/B the spin latency of two builds of shmbroker on this noisy machine:
rounds alternate the trees (order swapped every round), and each round
measures the Python floor and the spin-mode p50 side by side, so the ratio
is compared, never absolute times from different moments.

    python perf/ab_latency.py /path/to/tree_a /path/to/tree_b --rounds 6

How to read it: a line per round and tree (floor, spin p50, their ratio),
then each tree's median ratio: the lower median is the faster build; single
rounds vary a lot on a shared machine, so trust the medians of many rounds.
No targets.  Each tree must hold a built shm/ (e.g. `python setup.py build_ext --inplace`
in a copy of the repository at another commit).
"""
import json
import statistics
import subprocess
import sys

from perfutil import Progress, parser as new_parser

CODE = r'''
import sys, json
sys.path.insert(0, sys.argv[1])
from shm import bench
f = bench.python_floor(int(sys.argv[2]) // 2, 500)["p50"]
s = bench.log_latency("spin", int(sys.argv[2]), 800)["p50"]
print(json.dumps([f, s]))
'''


def main(argv=None):
    ap = new_parser(__doc__)
    ap.add_argument("a", help="tree A (a checkout with a built shm/)")
    ap.add_argument("b", help="tree B")
    ap.add_argument("--rounds", type=int, default=6, help="alternating rounds")
    ap.add_argument("--samples", type=int, default=8000, help="spin latency samples per round (the floor: half)")
    args = ap.parse_args(argv)
    trees = [("A", args.a), ("B", args.b)]
    ratios = {"A": [], "B": []}
    progress = Progress()
    for r in range(args.rounds):
        for name, path in (trees if r % 2 == 0 else trees[::-1]):
            progress("round %d/%d: tree %s" % (r + 1, args.rounds, name))
            out = subprocess.run([sys.executable, "-c", CODE, path, str(args.samples)], capture_output=True,
                                 text=True, cwd=path, timeout=600)
            if out.returncode:
                print(out.stderr, file=sys.stderr)
                return 1
            progress.done()
            f, s = json.loads(out.stdout.strip().splitlines()[-1])
            ratios[name].append(s / f)
            print("round %d %s: floor %.3f us, spin p50 %.3f us, ratio %.2f" % (r + 1, name, f, s, s / f), flush=True)
    for name, path in trees:
        print("%s %s: median ratio %.2f  %s" % (name, path, statistics.median(ratios[name]),
                                               ["%.2f" % x for x in sorted(ratios[name])]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
