#!/usr/bin/env python3
"""A/B two builds of shmbroker on this noisy machine with the project's own
benchmarks: rounds alternate the trees (order swapped every round), each
round runs perf/ring_bench.py (spin latency against the Python floor, append
throughput per record and batched, 64 KiB appends against memcpy) and
perf/broker_bench.py (produce -> poll p50 and throughput) in each tree, and
the medians of the rounds are compared side by side.

    python perf/ab_bench.py /path/to/tree_a /path/to/tree_b --rounds 5

How to read it: a line per round and tree, then a table of the medians of
the rounds, A and B side by side, and B's change against A ("+" is better
for B, whichever way the figure goes).  No targets.  A progress line goes
to stderr while a tree runs, when stderr is a terminal.

Each tree must hold a built shm/ (`pip install -e .` or `python setup.py
build_ext --inplace` in a checkout of the commit to measure); its own
perf/ scripts run against its own packages (PYTHONPATH and cwd = the tree).
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

from perfutil import Progress, parser as new_parser

METRICS = [  # (key, label, higher is better)
    ("spin_over_floor", "ring: spin p50 / Python floor (x)", False),
    ("append_64", "ring: append 64 B per record (M rec/s)", True),
    ("append_64_batch", "ring: append 64 B batch of 1024 (M rec/s)", True),
    ("append_64k_share", "ring: append 64 KiB, share of memcpy (%)", True),
    ("broker_p50", "broker: produce->poll p50, spin (us)", False),
    ("broker_produce", "broker: produce (M rec/s)", True),
    ("broker_e2e", "broker: produce->poll end to end (M rec/s)", True),
]


def run_tree(tree, args):
    env = dict(os.environ, PYTHONPATH=tree)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        js = os.path.join(tmp, "ring.json")
        cmd = [sys.executable, "perf/ring_bench.py", "--only", "latency", "--only", "throughput", "--modes", "spin",
               "--rounds", "1", "--samples", str(args.samples), "--records", str(args.records),
               "--repeats", str(args.repeats), "--json", js]
        p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=1200)
        if p.returncode:
            raise SystemExit("ring_bench failed in %s:\n%s" % (tree, p.stderr))
        with open(js) as f:
            r = json.load(f)
    out["spin_over_floor"] = r["spin_over_floor"]
    out["append_64"] = r["append_64"]["median_records_per_s"] / 1e6
    out["append_64_batch"] = r["append_64_batch"]["median_records_per_s"] / 1e6
    out["append_64k_share"] = 100 * r["append_64k"]["bytes_per_s"] / r["memcpy_64k"]
    cmd = [sys.executable, "perf/broker_bench.py", "--rounds", "1", "--modes", "spin", "--samples", str(args.samples),
           "--records", str(args.records), "--queue-records", "20000"]
    p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=1200)
    if p.returncode:
        raise SystemExit("broker_bench failed in %s:\n%s" % (tree, p.stderr))
    out["broker_p50"] = float(re.search(r"broker wait=spin\s+p50\s+([\d.]+)", p.stdout).group(1))
    m = re.search(r"broker produce ([\d.]+) M rec/s; produce->poll end to end ([\d.]+) M rec/s", p.stdout)
    out["broker_produce"], out["broker_e2e"] = float(m.group(1)), float(m.group(2))
    return out


def main(argv=None):
    ap = new_parser(__doc__)
    ap.add_argument("a", help="tree A (a checkout with a built shm/)")
    ap.add_argument("b", help="tree B")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    ap.add_argument("--samples", type=int, default=20000, help="latency samples per run")
    ap.add_argument("--records", type=int, default=1_000_000, help="64 B records per throughput run")
    ap.add_argument("--repeats", type=int, default=3, help="throughput repeats per run (their median is taken)")
    ap.add_argument("--json", help="also write every round's figures here%(default).0s")
    args = ap.parse_args(argv)
    trees = [("A", os.path.abspath(args.a)), ("B", os.path.abspath(args.b))]
    got = {"A": [], "B": []}
    progress = Progress()
    for r in range(args.rounds):
        for name, path in (trees if r % 2 == 0 else trees[::-1]):
            progress("round %d/%d: tree %s" % (r + 1, args.rounds, name))
            res = run_tree(path, args)
            progress.done()
            got[name].append(res)
            print("round %d %s: %s" % (r + 1, name, "  ".join("%s %.2f" % (k, res[k]) for k, _, _ in METRICS)),
                  flush=True)
    print("\nmedians of %d alternating rounds (A = %s, B = %s)" % (args.rounds, trees[0][1], trees[1][1]))
    print("%-46s %10s %10s %9s" % ("", "A", "B", "B vs A"))
    for key, label, higher in METRICS:
        a = statistics.median(x[key] for x in got["A"])
        b = statistics.median(x[key] for x in got["B"])
        change = (b / a - 1) * 100 if higher else (a / b - 1) * 100  # + is better for B
        print("%-46s %10.2f %10.2f %+8.1f%%" % (label, a, b, change))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"trees": dict(trees), "rounds": got}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
