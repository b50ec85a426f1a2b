#!/usr/bin/env python3
"""The partition log alone (shm.PartitionLog, no broker layer): latency and
throughput, each beside its baseline measured in the same run.

Measures:
- one-way latency of --size-byte records from a producer process to a
  consumer process, the producer sleeping --pace-us between records, for
  each wait mode (spin, adaptive, sleep), beside the Python floor (two
  processes ping-ponging an int64 in shared memory: the fastest any
  Python-to-Python hand-off can be) and a blocking multiprocessing.Pipe;
  rounds alternate the methods and the round with the median p50 stands for
  each;
- appends per second from one process, 64 B one call per record and in
  batches, reads back, 64 KiB appends against memcpy's bandwidth, and
  64 KiB reads of a block log copied (poll_value) and in place (poll_view);
- system calls during appends with no reader asleep (strace, if installed).

How to read it: the ratios are the point (spin p50 over the floor, sleep p50
over the Pipe's, 64 KiB appends as a share of memcpy); absolute figures move
with the machine.  Targets: spin p50 <= 5x the Python floor; sleep p50 <=
Pipe p50; >= 3 M records/s per record and >= 20 M records/s batched at 64 B;
64 KiB appends at >= 25 % of memcpy; 0 system calls per append with no reader
asleep.  Each is printed as met or MISSED.

    python perf/ring_bench.py                 # everything, default sizes
    python perf/ring_bench.py --only latency --samples 50000 --pace-us 20
"""
import json
import sys

from perfutil import Progress, parser as new_parser, verdict
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
        progress = Progress()
        for rnd in range(args.rounds):
            progress("latency round %d/%d" % (rnd + 1, args.rounds))
            rounds["python_floor"].append(bench.python_floor(args.samples, args.warmup))
            for mode in args.modes:
                rounds["log_" + mode].append(bench.log_latency(mode, args.samples, args.warmup, args.pace_us, args.size))
            rounds["pipe"].append(bench.pipe_latency(args.samples, args.warmup, args.pace_us, args.size))
            progress.done()
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
                % (r, ["%.2f" % x for x in rs], verdict(r <= 5)))
        if "log_sleep" in rounds:
            r, rs = ratio("log_sleep", "pipe")
            res["sleep_over_pipe"] = r
            out("sleep p50 / Pipe p50       = %.2fx median of rounds %s  (target <= 1x: %s)"
                % (r, ["%.2f" % x for x in rs], verdict(r <= 1)))
    if "throughput" in only:
        out("== throughput, one producer process (best of %d; median in brackets) ==" % args.repeats)
        progress = Progress()
        progress("throughput: appends of 64 B")
        t = res["append_64"] = bench.append_throughput(64, args.records, 0, args.repeats)
        progress.done()
        out("append 64 B per record     %6.2f M rec/s  [%.2f]  (target >= 3: %s)" % (
            t["records_per_s"] / 1e6, t["median_records_per_s"] / 1e6, verdict(t["records_per_s"] >= 3e6)))
        progress("throughput: batched appends of 64 B")
        t = res["append_64_batch"] = bench.append_throughput(64, args.records * 10, args.batch, args.repeats)
        progress.done()
        out("append 64 B batch of %-5d %6.2f M rec/s  [%.2f]  (target >= 20: %s)" % (
            args.batch, t["records_per_s"] / 1e6, t["median_records_per_s"] / 1e6, verdict(t["records_per_s"] >= 20e6)))
        progress("throughput: reads, memcpy, 64 KiB appends")
        t = res["read_64"] = bench.read_throughput(64, args.records // 2, 0, args.repeats)
        out("read 64 B per record       %6.2f M rec/s  [%.2f]" % (t["records_per_s"] / 1e6, t["median_records_per_s"] / 1e6))
        t = res["read_64_batch"] = bench.read_throughput(64, args.records // 2, args.batch, args.repeats)
        out("read_batch 64 B            %6.2f M rec/s  [%.2f]" % (t["records_per_s"] / 1e6, t["median_records_per_s"] / 1e6))
        ring = args.big_ring_mib << 20
        mc = res["memcpy_64k"] = bench.memcpy_bandwidth(65536, ring=ring)
        t = res["append_64k"] = bench.append_throughput(65536, args.big_records, 0, args.repeats, ring)
        tb = res["append_64k_batch"] = bench.append_throughput(65536, args.big_records, 16, args.repeats, ring)
        progress.done()
        out("memcpy 64 KiB blocks       %6.2f GB/s  (into a %d MiB ring, as the appends below)" % (
            mc / 1e9, args.big_ring_mib))
        out("append 64 KiB per record   %6.2f GB/s = %4.0f%% of memcpy  (%.0f rec/s; target >= 25%%: %s)"
            % (t["bytes_per_s"] / 1e9, 100 * t["bytes_per_s"] / mc, t["records_per_s"],
               verdict(t["bytes_per_s"] >= 0.25 * mc)))
        out("append 64 KiB batch of 16  %6.2f GB/s = %4.0f%% of memcpy" % (tb["bytes_per_s"] / 1e9, 100 * tb["bytes_per_s"] / mc))
        progress("throughput: 64 KiB reads, copied and in place")
        r = res["read_64k"] = bench.view_read_throughput(65536, args.repeats)
        progress.done()
        out("read 64 KiB, poll_value    %6.2f GB/s  [%.2f]  (a copy into a bytes object)" % (
            r["copy"] / 1e9, r["copy_median"] / 1e9))
        out("read 64 KiB, poll_view     %6.2f GB/s  [%.2f]  (in place, checksummed there - check_crcs=True: "
            "%.2fx the copy)" % (r["view"] / 1e9, r["view_median"] / 1e9, r["view"] / r["copy"]))
        out("read 64 KiB, poll_view     %6.2f GB/s  [%.2f]  (in place, handed out unread - the default: the "
            "reader's cost per record, not a bandwidth)" % (r["view_unread"] / 1e9, r["view_unread_median"] / 1e9))
    if "syscalls" in only:
        s = res["syscalls"] = bench.append_syscalls(args.syscall_appends)
        if s is None:
            out("syscalls: strace not available")
        else:
            out("syscalls during %d appends, no reader asleep: %d  (strace -f; target 0: %s)"
                % (s["appends"], s["syscalls"], verdict(s["syscalls"] == 0)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


def parser():
    p = new_parser(__doc__)
    p.add_argument("--only", action="append", choices=["latency", "throughput", "syscalls"],
                   help="measure only this (repeatable; default: all three)%(default).0s")
    p.add_argument("--samples", type=int, default=20000, help="latency samples per mode (after warm-up)")
    p.add_argument("--warmup", type=int, default=2000, help="latency samples dropped first")
    p.add_argument("--rounds", type=int, default=3, help="alternating latency rounds (the median is reported)")
    p.add_argument("--pace-us", type=float, default=20.0, help="producer sleep between latency records")
    p.add_argument("--size", type=int, default=64, help="latency record size in bytes")
    p.add_argument("--modes", nargs="+", default=["spin", "adaptive", "sleep"], choices=["spin", "adaptive", "sleep"],
                   help="the consumer's wait modes")
    p.add_argument("--records", type=int, default=1_000_000, help="64 B records per throughput repeat")
    p.add_argument("--big-records", type=int, default=20000, help="64 KiB records per throughput repeat")
    p.add_argument("--big-ring-mib", type=int, default=64, help="the ring the 64 KiB appends and memcpy write into "
                   "(MiB, a power of two >= 2): one larger than the CPU's cache streams through memory")
    p.add_argument("--batch", type=int, default=1024, help="records per append_batch call")
    p.add_argument("--repeats", type=int, default=3, help="throughput repeats (the best is reported, the median "
                   "in brackets)")
    p.add_argument("--syscall-appends", type=int, default=200_000, help="appends traced for system calls")
    p.add_argument("--json", help="also write the results here%(default).0s")
    return p


def main(argv=None):
    p = parser()
    a = p.parse_args(argv)
    if a.big_ring_mib < 2 or a.big_ring_mib & (a.big_ring_mib - 1):
        p.error("--big-ring-mib must be a power of two >= 2 (a batch of 16 records of 64 KiB is 1 MiB), got %d"
                % a.big_ring_mib)
    run(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
