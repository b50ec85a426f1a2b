"""Rebalance latency of consumer groups.

kill -> resume: a member of a running group is SIGKILLed; the time from the
kill to the first record a survivor consumes on one of its partitions (and
to the last of its partitions resuming).  join -> first record: a new member
replaces it; the time from its subscribe() to its first record.

A producer process appends to every partition --rate times a second (1000
by default), so a reassigned partition always has records waiting.  Members report
CLOCK_MONOTONIC stamps through an anonymous shared mapping; the victim is
SIGSTOPped before the stamp is reset and the kill is timed, so nothing it
does can be mistaken for a survivor's work.

How to read it: three lines of percentiles in milliseconds (kill -> first
record, kill -> all partitions resumed, subscribe -> first record) over the
timed kills; the warm-up kills are reported apart.  No targets; the README
compares them with a Kafka broker's session timeout.  A progress line goes
to stderr every kill when stderr is a terminal (and "N kills" to stdout
every 10 kills unless --quiet).

    python perf/rebalance_bench.py --kills 60 --members 3 --partitions 6
"""
import mmap
import os
import signal
import sys
import time

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")]

import perfutil  # noqa: E402,F401 - before numpy (OPENBLAS_NUM_THREADS)
import numpy as np  # noqa: E402

from broker import Consumer, Producer  # noqa: E402
from broker import groups as G  # noqa: E402
from broker.admin import AdminClient, NewTopic  # noqa: E402
from broker.namespace import Namespace, destroy  # noqa: E402
from broker.procs import fork, reap  # noqa: E402
from perfutil import Progress, parser as new_parser  # noqa: E402

STOP, KILL_T = 0, 1
FIRST = 8  # + partition: first record consumed on it since the reset
JOIN = 4096  # + 2 * member: subscribe() stamp, first record stamp


def parser():
    p = new_parser(__doc__)
    p.add_argument("--kills", type=int, default=60, help="timed kills (after the warm-up ones)")
    p.add_argument("--warmup", type=int, default=5, help="kills first, reported apart (fresh processes' first "
                   "rebalances: page faults after fork, first attaches)")
    p.add_argument("--members", type=int, default=3, help="consumer processes in the group")
    p.add_argument("--partitions", type=int, default=6, help="partitions of the topic")
    p.add_argument("--strategy", default="range", help="partition.assignment.strategy")
    p.add_argument("--rate", type=float, default=1000, help="records a second produced to each partition")
    p.add_argument("--namespace", default="rebalbench%d" % os.getpid(), help="the namespace the run makes and "
                   "destroys (default: rebalbench<pid>)%(default).0s")
    p.add_argument("--quiet", action="store_true", help="no 'N kills' lines")
    p.add_argument("--verbose", action="store_true", help="print every kill's numbers")
    return p


def producer_main(ns, parts, arr, rate):
    """*rate* records a second to every partition, paced on the clock."""
    period = 1e9 / rate
    with Producer({"shm.namespace": ns}) as p:
        nxt = time.monotonic_ns()
        while not arr[STOP]:
            for i in range(parts):
                p.produce("t", b"x", partition=i)
            nxt += period
            delay = nxt - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)


def member_main(ns, idx, arr, strategy):
    c = Consumer({"shm.namespace": ns, "group.id": "bench", "auto.offset.reset": "latest",
                  "partition.assignment.strategy": strategy, "auto.commit.interval.ms": 100})
    arr[JOIN + 2 * idx] = time.monotonic_ns()
    c.subscribe(["t"])
    while not arr[STOP]:
        m = c.poll(0.05)
        if m is None or m.error() is not None:
            continue
        t = time.monotonic_ns()
        p = m.partition()
        if arr[FIRST + p] == 0:
            arr[FIRST + p] = t
        if arr[JOIN + 2 * idx + 1] == 0:
            arr[JOIN + 2 * idx + 1] = t
    c.close()


def wait_for(pred, timeout, what, step=0.0005, dump=None):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise SystemExit("timed out after %ss waiting for %s%s" % (timeout, what, dump() if dump else ""))
        time.sleep(step)


def group_view(gs, gidx):
    members, state, _ = G.describe_group(gs, gidx)
    return {m["pid"]: [p for _, p in m["assigned"]] for m in members if m["state"] == "Stable"}, state


def pct(xs):
    a = np.array(xs) / 1e6
    return "p50 %6.2f ms  p90 %6.2f ms  p99 %6.2f ms  max %6.2f ms  (n=%d)" % (
        np.percentile(a, 50), np.percentile(a, 90), np.percentile(a, 99), a.max(), len(a))


def run(args):
    ns = args.namespace
    mm = mmap.mmap(-1, 1 << 16)
    arr = np.frombuffer(mm, dtype=np.int64)
    pids = []
    try:
        with AdminClient({"shm.namespace": ns}) as a:
            a.create_topics([NewTopic("t", args.partitions)])["t"].result()
        pids.append(fork(producer_main, ns, args.partitions, arr, args.rate))
        members = {}
        nxt = 0
        for _ in range(args.members):
            members[fork(member_main, ns, nxt, arr, args.strategy)] = nxt
            nxt += 1
        pids.extend(members)
        n = Namespace(ns)
        gs = G.Groups(n)
        wait_for(lambda: gs.group_index("bench", create=False) is not None, 30, "the group")
        gidx = gs.group_index("bench", create=False)

        def stable():
            view, state = group_view(gs, gidx)
            return state == "Stable" and set(view) == set(members) and \
                sorted(p for ps in view.values() for p in ps) == list(range(args.partitions))
        wait_for(stable, 30, "the group to form")
        first, last, joins = [], [], []
        progress = Progress()
        for k in range(args.warmup + args.kills):
            if k == args.warmup:
                warm = (first, last, joins)
                first, last, joins = [], [], []
            view, _ = group_view(gs, gidx)
            victim = sorted(view)[k % len(view)]
            its = view[victim]
            os.kill(victim, signal.SIGSTOP)  # frozen: it can no longer stamp anything
            for p in its:
                arr[FIRST + p] = 0
            t_kill = time.monotonic_ns()
            os.kill(victim, signal.SIGKILL)
            os.waitpid(victim, 0)
            del members[victim]
            wait_for(lambda: all(arr[FIRST + p] for p in its), 10, "the victim's partitions to resume")
            first.append(min(arr[FIRST + p] for p in its) - t_kill)
            last.append(max(arr[FIRST + p] for p in its) - t_kill)
            idx = nxt
            nxt += 1
            pid = fork(member_main, ns, idx, arr, args.strategy)
            members[pid] = idx
            pids.append(pid)
            wait_for(lambda: arr[JOIN + 2 * idx + 1] != 0, 10, "the new member's first record",
                     dump=lambda: "; group: %r" % (G.describe_group(gs, gidx),))
            joins.append(arr[JOIN + 2 * idx + 1] - arr[JOIN + 2 * idx])
            wait_for(stable, 30, "the group to settle", step=0.01)  # not timed: a slower check leaves the CPUs alone
            if args.verbose:
                print("  kill %3d: first %.2f ms, all %.2f ms, join %.2f ms" % (k, first[-1] / 1e6, last[-1] / 1e6,
                                                                           joins[-1] / 1e6), flush=True)
            elif not args.quiet and (k + 1) % 10 == 0:
                progress.done()
                print("  %d kills" % (k + 1), flush=True)
            progress("kill %d/%d" % (k + 1, args.warmup + args.kills))
        progress.done()
        gs.close()
        n.close()
        if args.warmup:
            print("warm-up (%d kills, not in the figures below): kill -> first record max %.2f ms, subscribe -> "
                  "first record max %.2f ms" % (args.warmup, max(warm[0]) / 1e6, max(warm[2]) / 1e6))
        print("rebalance (%d members, %d partitions, %s, %g records/s per partition), %d kills:" % (
            args.members, args.partitions, args.strategy, args.rate, args.kills))
        print("  kill -> first record on a dead member's partition: %s" % pct(first))
        print("  kill -> all its partitions resumed:               %s" % pct(last))
        print("  subscribe -> first record (new member):            %s" % pct(joins))
        return {"first": first, "last": last, "joins": joins}
    finally:
        arr[STOP] = 1
        for pid in pids:
            reap(pid, 5.0, kill=True)
        destroy(ns)


if __name__ == "__main__":
    run(parser().parse_args())
