#!/usr/bin/env python3
"""Partition-log benchmark: latency and throughput, each beside its baseline
measured in the same run (Python floor, multiprocessing.Pipe, memcpy).

    python perf/ring_bench.py                 # everything, default sizes
    python perf/ring_bench.py --only latency --samples 50000 --pace-us 20

Targets (issue 2): spin p50 <= 5x the Python floor; sleep p50 <= Pipe p50;
>= 3 M rec/s per record and >= 20 M rec/s batched at 64 B; 64 KiB appends at
>= 25 % of memcpy bandwidth; 0 syscalls per append with no reader asleep.
"""
import argparse
import json
import sys

from shm import bench


def fmt_lat(name, p):
    return "%-26s p50 %7.2f  p90 %7.2f  p99 %8.2f  p99.9 %8.2f  max %9.1f us  (n=%d)" % (
        name, p["p50"], p["p90"], p["p99"], p["p99.9"], p["max"], p["n"])


def run(args, out=print):
    res = {}
    only = set(args.only or ["latency", "throughput", "syscalls"])
    if "latency" in only:
        out("== one-way latency, %d B records, producer sleep-paced every ~%.0f us, %d alternating rounds ==" % (
            args.size, args.pace_us, args.rounds))
        names = ["python_floor"] + ["log_" + m for m in args.modes] + ["pipe"]
        rounds = {n: [] for n in names}
        for rnd in range(args.rounds):
            rounds["python_floor"].append(bench.python_floor(args.samples, args.warmup))
            for mode in args.modes:
                rounds["log_" + mode].append(bench.log_latency(mode, args.samples, args.warmup, args.pace_us, args.size))
            rounds["pipe"].append(bench.pipe_latency(args.samples, args.warmup, args.pace_us, args.size))
            out("round %d p50 (us): %s" % (rnd + 1, "  ".join("%s %.2f" % (n, rounds[n][-1]["p50"]) for n in names)))
        label = {"python_floor": "python floor (int64 ping)", "pipe": "multiprocessing.Pipe"}
        for n in names:
            # the round with the median p50 stands for the method
            runs = sorted(rounds[n], key=lambda p: p["p50"])
            res[n] = runs[len(runs) // 2]
            out(fmt_lat(label.get(n, "log wait=" + n[4:]), res[n]))

        def ratio(a, b):
            rs = sorted(x["p50"] / y["p50"] for x, y in zip(rounds[a], rounds[b]))
            return rs[len(rs) // 2], rs
        if "log_spin" in rounds:
            r, rs = ratio("log_spin", "python_floor")
            res["spin_over_floor"] = r
            out("spin p50 / python floor p50 = %.2fx median of rounds %s  (target <= 5x: %s)"
                % (r, ["%.2f" % x for x in rs], "PASS" if r <= 5 else "FAIL"))
        if "log_sleep" in rounds:
            r, rs = ratio("log_sleep", "pipe")
            res["sleep_over_pipe"] = r
            out("sleep p50 / Pipe p50       = %.2fx median of rounds %s  (target <= 1x: %s)"
                % (r, ["%.2f" % x for x in rs], "PASS" if r <= 1 else "FAIL"))
    if "throughput" in only:
        out("== throughput, one producer process (best of %d; median in brackets) ==" % args.repeats)
        t = res["append_64"] = bench.append_throughput(64, args.records, 0, args.repeats)
        out("append 64 B per record     %6.2f M rec/s  [%.2f]  (target >= 3)" % (t["records_per_s"] / 1e6, t["median_records_per_s"] / 1e6))
        t = res["append_64_batch"] = bench.append_throughput(64, args.records * 10, args.batch, args.repeats)
        out("append 64 B batch of %-5d %6.2f M rec/s  [%.2f]  (target >= 20)" % (args.batch, t["records_per_s"] / 1e6, t["median_records_per_s"] / 1e6))
        t = res["read_64"] = bench.read_throughput(64, args.records // 2, 0, args.repeats)
        out("read 64 B per record       %6.2f M rec/s  [%.2f]" % (t["records_per_s"] / 1e6, t["median_records_per_s"] / 1e6))
        t = res["read_64_batch"] = bench.read_throughput(64, args.records // 2, args.batch, args.repeats)
        out("read_batch 64 B            %6.2f M rec/s  [%.2f]" % (t["records_per_s"] / 1e6, t["median_records_per_s"] / 1e6))
        mc = res["memcpy_64k"] = bench.memcpy_bandwidth(65536)
        t = res["append_64k"] = bench.append_throughput(65536, args.big_records, 0, args.repeats)
        tb = res["append_64k_batch"] = bench.append_throughput(65536, args.big_records, 16, args.repeats)
        out("memcpy 64 KiB blocks       %6.2f GB/s" % (mc / 1e9))
        out("append 64 KiB per record   %6.2f GB/s = %4.0f%% of memcpy  (%.0f rec/s; target >= 25%%)"
            % (t["bytes_per_s"] / 1e9, 100 * t["bytes_per_s"] / mc, t["records_per_s"]))
        out("append 64 KiB batch of 16  %6.2f GB/s = %4.0f%% of memcpy" % (tb["bytes_per_s"] / 1e9, 100 * tb["bytes_per_s"] / mc))
    if "syscalls" in only:
        s = res["syscalls"] = bench.append_syscalls(args.syscall_appends)
        if s is None:
            out("syscalls: strace not available")
        else:
            out("syscalls during %d appends, no reader asleep: %d  (strace -f)" % (s["appends"], s["syscalls"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", choices=["latency", "throughput", "syscalls"])
    p.add_argument("--samples", type=int, default=20000, help="latency samples per mode (after warm-up)")
    p.add_argument("--warmup", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3, help="alternating latency rounds (the median is reported)")
    p.add_argument("--pace-us", type=float, default=20.0, help="producer sleep between latency records")
    p.add_argument("--size", type=int, default=64, help="latency record size in bytes")
    p.add_argument("--modes", nargs="+", default=["spin", "adaptive", "sleep"], choices=["spin", "adaptive", "sleep"])
    p.add_argument("--records", type=int, default=1_000_000, help="64 B records per throughput repeat")
    p.add_argument("--big-records", type=int, default=20000, help="64 KiB records per throughput repeat")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--syscall-appends", type=int, default=200_000)
    p.add_argument("--json", help="also write the results here")
    return p


def main(argv=None):
    run(parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
