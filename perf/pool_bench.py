#!/usr/bin/env python3
"""Process pools and queues side by side: ours against the pools and queues
people already use, same worker count, in one run.

Pools: concurrent.futures.ProcessPoolExecutor (the reference of every ratio),
multiprocessing.Pool, loky, pebble's ProcessPool, broker.pool.Executor and
broker.pool.Pool.  Queues: multiprocessing.Queue (the reference), faster-fifo
and broker.Queue.  A contender that cannot be imported is skipped with a note.

Measures (rounds alternate the contenders' order; rates are the median over
rounds, latencies the percentiles of every round's samples):
- tiny tasks a second: a no-op function submitted one by one (`submit`,
  pebble's `schedule`, `apply_async` for Pool-likes) until all results are
  in, and `map` with each chunksize of --chunksizes (the best is reported);
- round trip submit -> result on an idle pool, one task at a time;
- a numpy array of --big-mb MB as argument and result, seconds a round trip;
- kill -> the killed worker's task running again: a task stamps its pid and
  CLOCK_MONOTONIC into a shared mapping, the bench SIGKILLs that pid (only a
  child of this process) and waits for the task to stamp again.  A pool that
  does not run the task again gets one kill and the line says what happened
  instead (the exception and when, or a task lost for good) and whether the
  pool still takes work;
- queues: put -> get one-way latency of 64 B items between two processes
  (sleep-paced), and items/s of 64 B objects from one putter process to one
  getter process, one call per item.  With --pin the putter runs on CPU 0
  and the getter on CPU 1, for every queue alike: on a 2-core VM the
  scheduler's placement otherwise splits runs in two modes (here p50 about
  1.1 or 1.7 us for broker.Queue, the bare shared-word floor moving with it).

    python perf/pool_bench.py                       # the full run
    python perf/pool_bench.py --pin                 # the queues pinned
    python perf/pool_bench.py --tasks 2000 --kills 5 --big-mb 10 --json out.json

How to read it: each table gives a figure per contender and its ratio to
the reference (ProcessPoolExecutor for pools, multiprocessing.Queue for
queues; "vs" columns: times better).  The targets close the run, each
marked met or MISSED (n/a when its inputs were not measured).  A progress
line goes to stderr while a round runs, when stderr is a terminal.

Targets: submit >= 10x ProcessPoolExecutor and >= 2x
multiprocessing.Pool's apply_async; map no slower than the fastest peer;
round trip p50 <= 50 us; big array >= 5x faster than ProcessPoolExecutor;
kill -> running again p99 <= 10 ms; queue p50 >= 30x below
multiprocessing.Queue and items/s >= 3x faster-fifo.
"""
import json
import multiprocessing as mp
import os
import signal
import statistics
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.join(_HERE, "..")]

from perfutil import Progress, parser as new_parser, verdict  # noqa: E402 - before numpy (OPENBLAS_NUM_THREADS)
import numpy as np  # noqa: E402
from pool_contenders import (FLOOR, STAMP, Stamps, Stuck, check_child, pinned_getter, pool_contenders,  # noqa: E402
                             queue_contenders, recv, short, bounded, echo, full_strength, noop, pct,
                             victim)


# ---- pool measures -------------------------------------------------------------------------
def pool_round(c, a, st, ctx, big, out):
    T = a.timeout
    c.start(a.workers, ctx)
    try:
        full_strength(c, st, a.workers, T)
        c.wait_all([c.submit(noop, i) for i in range(a.warmup)], T)
        mono = time.monotonic_ns
        if "tasks" in a.sections:
            tasks_measures(c, a, out)
        if big is not None:
            for _ in range(a.big_rounds):
                t0 = mono()
                r = c.result(c.submit(echo, big), T)
                dt = mono() - t0
                if r.nbytes != big.nbytes or r[-1] != big[-1] or r[len(r) // 2] != big[len(big) // 2]:
                    raise RuntimeError("%s gave back a different array" % c.name)
                del r
                out["big"].append(dt / 1e9)
    finally:
        c.close(T)


def tasks_measures(c, a, out):
    T, mono = a.timeout, time.monotonic_ns
    t0 = mono()
    c.wait_all([c.submit(noop, i) for i in range(a.tasks)], T)
    out["submit"].append(a.tasks / ((mono() - t0) / 1e9))
    for cs in a.chunksizes:
        t0 = mono()
        r = c.map(noop, range(a.tasks), cs, T)
        dt = mono() - t0
        if len(r) != a.tasks or r[-1] != a.tasks - 1:
            raise RuntimeError("%s map gave %d results" % (c.name, len(r)))
        out["map"].setdefault(str(cs), []).append(a.tasks / (dt / 1e9))
    for i in range(a.rtt_warmup + a.rtt_samples):
        t0 = mono()
        c.result(c.submit(noop, i), T)
        if i >= a.rtt_warmup:
            out["rtt"].append(mono() - t0)


def kill_run(c, a, st, ctx):
    """SIGKILL the worker running a victim task; how long until it runs again
    (or what the pool does instead).  Returns a dict for the table."""
    T, n = a.timeout, a.kills + a.kill_warmup
    gaps, res = [], {"reruns": 0, "kills": 0}
    st.reset_victims()
    c.start(a.workers, ctx)
    try:
        for i in range(n):
            full_strength(c, st, a.workers, T)
            base = st.victims0 + 4 * i
            h = c.submit(victim, st.path, base, T)
            end = time.monotonic() + T
            while st.v[base] < 1:
                if time.monotonic() > end:
                    raise Stuck("%s: victim task never started" % c.name)
                time.sleep(0.0002)
            pid = st.v[base + 1]
            check_child(pid)
            t_kill = time.monotonic_ns()
            os.kill(pid, signal.SIGKILL)
            res["kills"] += 1
            end = time.monotonic() + (T if res["reruns"] else a.lost_timeout)
            outcome = None
            while outcome is None:
                if st.v[base] >= 2:
                    gap = st.v[base + 2] - t_kill
                    st.v[base + 3] = 1
                    c.result(h, T)
                    if i >= a.kill_warmup:
                        gaps.append(gap)
                    res["reruns"] += 1
                    outcome = "rerun"
                elif c.done(h):
                    t = (time.monotonic_ns() - t_kill) / 1e6
                    try:
                        c.result(h, 0)
                        outcome = "result without a re-run after %.1f ms" % t
                    except Exception as e:
                        outcome = "%s after %.1f ms" % (type(e).__name__, t)
                elif time.monotonic() > end:
                    c.lost = True
                    outcome = "task lost: no result, no error after %.1f s" % (a.lost_timeout if res["reruns"] == 0 else T)
                else:
                    time.sleep(0.0002)
            st.v[base + 3] = 1
            if outcome != "rerun":
                res["outcome"] = outcome
                try:
                    c.result(c.submit(noop, 1), a.lost_timeout)
                    res["after"] = "pool takes new tasks"
                except Exception as e:
                    res["after"] = "pool broken (%s)" % type(e).__name__
                break
        else:
            res["outcome"] = "re-run on another worker"
    finally:
        c.close(T)
    res["gap"] = pct(gaps)
    res["gaps_ms"] = [g / 1e6 for g in gaps]
    return res


# ---- queues --------------------------------------------------------------------------------
def queue_run(make, a, ctx, latency):
    q = make()
    n = a.queue_samples + a.queue_warmup if latency else a.queue_items
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=pinned_getter, args=(a.pins[1], q, n, latency, a.timeout, w), daemon=True)
    p.start()
    try:
        if recv(r, a.timeout, "the getter starting") != "ready":
            raise RuntimeError("getter did not start")
        put, mono, pad, pace = q.put, time.monotonic_ns, b"\0" * 56, a.pace_us / 1e6
        item = b"\0" * 64
        t0 = mono()
        for _ in range(n):
            if latency:
                time.sleep(pace)
                put(STAMP.pack(mono()) + pad, True, a.timeout)
            else:
                put(item, True, a.timeout)
        t_put = mono() - t0
        status, val = recv(r, a.timeout, "the getter finishing")
        if status != "ok":
            raise RuntimeError("getter: %s" % val)
        if latency:
            return np.frombuffer(val, dtype=np.int64)[a.queue_warmup:]
        return n / ((val - t0) / 1e9), n / (t_put / 1e9)
    finally:
        p.join(a.timeout)
        if p.is_alive():
            p.kill()
            p.join(a.timeout)
        if hasattr(q, "close"):
            q.close()
        if hasattr(q, "join_thread"):
            bounded(q.join_thread, a.timeout, "queue feeder join")



# ---- the run -------------------------------------------------------------------------------
POOLS = {"ppe": "ProcessPoolExecutor", "mp-pool": "multiprocessing.Pool", "loky": "loky",
         "pebble": "pebble.ProcessPool", "executor": "broker.pool.Executor", "pool": "broker.pool.Pool"}
QUEUES = {"mp-queue": "multiprocessing.Queue", "floor": FLOOR, "faster-fifo": "faster-fifo", "queue": "broker.Queue",
          "queue-spin": "broker.Queue spin"}
REF, QREF = "ProcessPoolExecutor", "multiprocessing.Queue"


def parser():
    p = new_parser(__doc__)
    p.add_argument("--workers", type=int, default=2, help="worker processes of every pool")
    p.add_argument("--tasks", type=int, default=20000, help="no-op tasks per submit and per map run")
    p.add_argument("--chunksizes", type=int, nargs="+", default=[1, 8, 64, 512], help="map chunksizes tried")
    p.add_argument("--warmup", type=int, default=500, help="no-op tasks run before timing a pool")
    p.add_argument("--rtt-samples", type=int, default=2000, help="round trips timed per round")
    p.add_argument("--rtt-warmup", type=int, default=200, help="round trips dropped first")
    p.add_argument("--big-mb", type=float, default=100, help="MiB of the numpy argument and result")
    p.add_argument("--big-rounds", type=int, default=3, help="big round trips per pool per round")
    p.add_argument("--kills", type=int, default=50, help="kills timed for a pool that re-runs the task")
    p.add_argument("--kill-warmup", type=int, default=2, help="kills first, not counted")
    p.add_argument("--lost-timeout", type=float, default=2.0,
                   help="seconds after a kill before a task neither re-run nor failed is called lost")
    p.add_argument("--queue-samples", type=int, default=20000, help="put->get latency samples per round")
    p.add_argument("--queue-warmup", type=int, default=2000, help="put->get samples dropped first")
    p.add_argument("--pace-us", type=float, default=20.0, help="sleep between latency puts")
    p.add_argument("--pin", action="store_true", help="queues: the putter (this process, with what it starts "
                   "meanwhile) on CPU 0, the getter on CPU 1, as perf/compare.py --pin")
    p.add_argument("--queue-items", type=int, default=200000, help="64 B items per throughput run")
    p.add_argument("--ff-bytes", type=int, default=64 << 20, help="faster-fifo's max_size_bytes")
    p.add_argument("--rounds", type=int, default=3, help="rounds; the contenders' order reverses each round")
    p.add_argument("--start-method", choices=["default", "fork", "spawn", "forkserver"], default="default",
                   help="for every pool but loky (its own) and for the queue getters")
    p.add_argument("--pools", nargs="+", choices=sorted(POOLS), default=sorted(POOLS), help="pools to measure")
    p.add_argument("--queues", nargs="+", choices=sorted(QUEUES), default=sorted(QUEUES), help="queues to measure")
    p.add_argument("--sections", nargs="+", choices=["tasks", "big", "kill", "queue"],
                   default=["tasks", "big", "kill", "queue"], help="which measures")
    p.add_argument("--timeout", type=float, default=120.0, help="deadline of every wait, seconds")
    p.add_argument("--namespace", default="poolbench%d" % os.getpid(), help="broker.Queue's namespace (default: "
                   "poolbench<pid>)%(default).0s")
    p.add_argument("--json", metavar="FILE", help="write every figure and the flags here%(default).0s")
    return p


def _ratio(x, ref, higher_better=True):
    if not x or not ref:
        return "-"
    return "%.2fx" % (x / ref if higher_better else ref / x)


def _fmt(x, spec):
    return "-" if x is None else spec % x


def pool_table(res, ref):
    print("\n%-22s %11s %7s %13s %7s %9s %9s %7s %9s %7s" % (
        "pool", "submit/s", "vs PPE", "map/s (cs)", "vs PPE", "rtt p50", "rtt p99", "vs PPE", "big s/rt", "vs PPE"))
    r0 = res.get(ref, {})
    for name, r in res.items():
        print("%-22s %11s %7s %13s %7s %9s %9s %7s %9s %7s" % (
            name, _fmt(r.get("submit"), "%.0f"), _ratio(r.get("submit"), r0.get("submit")),
            "-" if not r.get("map") else "%.0f (%s)" % (r["map"], r["map_cs"]),
            _ratio(r.get("map"), r0.get("map")),
            _fmt(r["rtt"] and r["rtt"]["p50"], "%.0f us"), _fmt(r["rtt"] and r["rtt"]["p99"], "%.0f us"),
            _ratio(r["rtt"] and r["rtt"]["p50"], r0.get("rtt") and r0["rtt"]["p50"], False),
            _fmt(r.get("big"), "%.3f"), _ratio(r.get("big"), r0.get("big"), False)))
    print("(vs PPE: times better than ProcessPoolExecutor: rates x/PPE, times PPE/x; map: the best of chunksizes "
          "tried; submit: apply_async for Pool-likes, schedule for pebble)")


def summarize_pool(raw):
    out = {"submit": statistics.median(raw["submit"]) if raw["submit"] else None, "map": None, "map_cs": None,
           "map_by_chunksize": {cs: statistics.median(v) for cs, v in raw["map"].items()},
           "rtt": pct(raw["rtt"]), "big": statistics.median(raw["big"]) if raw["big"] else None,
           "rounds": {"submit": raw["submit"], "map": raw["map"], "big": raw["big"]}}
    if out["map_by_chunksize"]:
        out["map_cs"], out["map"] = max(out["map_by_chunksize"].items(), key=lambda kv: kv[1])
    return out


def targets(pools, kills, queues):
    print("\n== targets ==")
    ppe, mpp = pools.get(REF, {}), pools.get("multiprocessing.Pool", {})
    peers = [r["map"] for n, r in pools.items() if not n.startswith("broker") and r.get("map")]

    def line(what, ok):
        print("%-68s %s" % (what, verdict(ok)))
    for name in ("broker.pool.Executor", "broker.pool.Pool"):
        r = pools.get(name)
        if r is None and name not in kills:
            print("%s: not measured (not importable or not selected)" % name)
            continue
        r = r or {}
        s, rtt = r.get("submit"), r.get("rtt")
        line("%s submit >= 10x ProcessPoolExecutor" % name, s and ppe.get("submit") and s >= 10 * ppe["submit"])
        line("%s submit >= 2x multiprocessing.Pool apply_async" % name,
             s and mpp.get("submit") and s >= 2 * mpp["submit"])
        line("%s map >= fastest peer's map" % name, r.get("map") and peers and r["map"] >= max(peers))
        line("%s round trip p50 <= 50 us" % name, rtt and rtt["p50"] <= 50)
        line("%s big array >= 5x faster than PPE" % name, r.get("big") and ppe.get("big")
             and ppe["big"] >= 5 * r["big"])
        k = kills.get(name, {}).get("gap")
        line("%s kill -> running again p99 <= 10 ms" % name, k and k["p99"] <= 10000)
    mq, ff = queues.get(QREF, {}), queues.get("faster-fifo", {})
    for name in ("broker.Queue", "broker.Queue spin"):
        q = queues.get(name)
        if q is None:
            print("%s: not measured (not importable or not selected)" % name)
            continue
        line("%s put->get p50 >= 30x below multiprocessing.Queue" % name,
             q.get("lat") and mq.get("lat") and mq["lat"]["p50"] >= 30 * q["lat"]["p50"])
        line("%s items/s >= 3x faster-fifo" % name, q.get("rate") and ff.get("rate") and q["rate"] >= 3 * ff["rate"])


def main(argv=None):
    a = parser().parse_args(argv)
    if not 1 <= a.workers <= 1024:
        raise SystemExit("--workers must be between 1 and 1024")
    if a.pin and not (hasattr(os, "sched_setaffinity") and {0, 1} <= os.sched_getaffinity(0)):
        raise SystemExit("--pin needs CPUs 0 and 1 available to this process")
    a.pins = (0, 1) if a.pin else (None, None)
    ctx = None if a.start_method == "default" else mp.get_context(a.start_method)
    qctx = ctx or mp.get_context()
    from shm.bench import _tight_sleep_slack
    _tight_sleep_slack()
    report = {"flags": vars(a), "skipped": {}, "pools": {}, "kills": {}, "queues": {}}
    progress = Progress()
    cands, skipped = pool_contenders()
    want = {POOLS[k] for k in a.pools}
    cands = [c for c in cands if c.name in want]
    for name, e in skipped:
        if name in want:
            print("skipping %s: not importable (%s)" % (name, short(e)))
            report["skipped"][name] = short(e)
    st = Stamps(a.workers, a.kills + a.kill_warmup + 1)
    ns_used = False
    try:
        big = None
        if "big" in a.sections:
            big = np.arange(int(a.big_mb * (1 << 20)) // 8, dtype=np.float64)
        if cands and ({"tasks", "big"} & set(a.sections)):
            print("== pools: %d workers, %d no-op tasks, %d rounds (order reverses each round), start method %s =="
                  % (a.workers, a.tasks, a.rounds, a.start_method), flush=True)
            raw = {c.name: {"submit": [], "map": {}, "rtt": [], "big": []} for c in cands}
            for rnd in range(a.rounds):
                for c in (cands if rnd % 2 == 0 else cands[::-1]):
                    t0 = time.monotonic()
                    progress("round %d/%d: %s" % (rnd + 1, a.rounds, c.name))
                    pool_round(c, a, st, ctx, big, raw[c.name])
                    progress.done()
                    print("round %d %-22s %.1f s" % (rnd + 1, c.name, time.monotonic() - t0), flush=True)
            report["pools"] = {n: summarize_pool(r) for n, r in raw.items()}
            pool_table(report["pools"], REF)
        del big
        if cands and "kill" in a.sections:
            print("\n== kill -> the killed worker's task running again (%d kills after %d warm-up for a pool that "
                  "re-runs it; one kill otherwise) ==" % (a.kills, a.kill_warmup), flush=True)
            print("%-22s %9s %9s %9s %5s  %s" % ("pool", "p50 ms", "p99 ms", "max ms", "n", "what happens"))
            for c in cands:
                progress("kills: %s" % c.name)
                k = report["kills"][c.name] = kill_run(c, a, st, ctx)
                progress.done()
                g = k["gap"]
                what = k["outcome"] + ("; " + k["after"] if "after" in k else "")
                print("%-22s %9s %9s %9s %5s  %s" % (c.name, _fmt(g and g["p50"] / 1000, "%.2f"),
                      _fmt(g and g["p99"] / 1000, "%.2f"), _fmt(g and g["max"] / 1000, "%.2f"),
                      g["n"] if g else "-", what), flush=True)
        if "queue" in a.sections:
            qs, qskip = queue_contenders(a, qctx, a.namespace)
            qwant = {QUEUES[k] for k in a.queues}
            qs = [q for q in qs if q[0] in qwant]
            for name, e in qskip:
                if name in qwant:
                    print("skipping %s: not importable (%s)" % (name, short(e)))
                    report["skipped"][name] = short(e)
            ns_used = any(n.startswith("broker.Queue") for n, _ in qs)
            print("\n== queues: put->get 64 B between two processes (paced %.0f us), items/s one putter -> one "
                  "getter, %d rounds%s ==" % (a.pace_us, a.rounds, ", putter on CPU 0, getter on CPU 1" if a.pin
                                               else ""), flush=True)
            raw = {n: {"lat": [], "rate": [], "put_rate": []} for n, _ in qs}
            cpus = os.sched_getaffinity(0) if a.pin else None
            try:
                if a.pin:
                    os.sched_setaffinity(0, {a.pins[0]})
                for rnd in range(a.rounds):
                    for n, make in (qs if rnd % 2 == 0 else qs[::-1]):
                        progress("queues round %d/%d: %s" % (rnd + 1, a.rounds, n))
                        raw[n]["lat"].extend(queue_run(make, a, qctx, True).tolist())
                        if n != FLOOR:  # latency only: it keeps one item
                            got, put = queue_run(make, a, qctx, False)
                            raw[n]["rate"].append(got)
                            raw[n]["put_rate"].append(put)
                        progress.done()
            finally:
                if cpus is not None:
                    os.sched_setaffinity(0, cpus)
            for n, r in raw.items():
                report["queues"][n] = {"lat": pct(r["lat"]),
                                       "rate": statistics.median(r["rate"]) if r["rate"] else None,
                                       "put_rate": statistics.median(r["put_rate"]) if r["put_rate"] else None,
                                       "rounds": r["rate"]}
            q0 = report["queues"].get(QREF, {})
            print("%-22s %10s %10s %10s %12s %12s %10s" % ("queue", "p50", "p99", "vs mp.Q", "items/s", "puts/s",
                                                           "vs mp.Q"))
            for n, r in report["queues"].items():
                print("%-22s %7.1f us %7.1f us %10s %12s %12s %10s" % (
                    n, r["lat"]["p50"], r["lat"]["p99"], _ratio(r["lat"]["p50"], q0.get("lat") and q0["lat"]["p50"],
                                                                False),
                    _fmt(r["rate"], "%.0f"), _fmt(r["put_rate"], "%.0f"), _ratio(r["rate"], q0.get("rate"))))
            print("(vs mp.Q: times better than multiprocessing.Queue: latency mp.Q/x, items/s x/mp.Q; %s: a stamp "
                  "in a shared word, spun on in Python - the least any Python queue pays here, latency only)"
                  % FLOOR)
        targets(report["pools"], report["kills"], report["queues"])
    finally:
        st.close()
        cleanup(a.namespace if ns_used else None)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
        print("wrote %s" % a.json)
    return 0


def cleanup(ns):
    """Destroy our queue namespace; report and remove any pool segment of ours left behind."""
    if ns:
        from broker.namespace import destroy
        destroy(ns)
    left = [f for f in os.listdir("/dev/shm")
            if f.startswith("shmb.pool.%d." % os.getpid()) or f.startswith("sbbench.%d." % os.getpid())]
    for f in left:
        print("note: segment /%s left behind: removed" % f)
        os.unlink("/dev/shm/" + f)


if __name__ == "__main__":
    sys.exit(main())
