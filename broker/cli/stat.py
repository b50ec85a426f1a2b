"""`shmbroker stat`: live counters of every partition and member (like AeronStat)."""
import os
import sys

from . import _attach, nonneg_int, pos_float
from .groups import _group_rows

_procs = {}  # pid -> psutil.Process, kept between refreshes so cpu_percent() measures the interval


def _proc_view(pid):
    """(status, cpu %, rss MiB, command) of a client process, through psutil
    ('stopped' shows a SIGSTOPped member)."""
    import psutil
    try:
        p = _procs.get(pid)
        if p is None:
            p = _procs[pid] = psutil.Process(pid)
        with p.oneshot():
            return (p.status(), p.cpu_percent(), p.memory_info().rss / 2**20, p.name())
    except (psutil.Error, OSError):
        _procs.pop(pid, None)
        return ("gone", 0.0, 0.0, "-")


def stat_snapshot(ns):
    """Rows for `stat`: every partition's counters and every member."""
    from broker.namespace import ROLE_NAMES, proc_start_ticks
    parts = []
    for name, info in sorted(ns.topics().items()):
        for p in range(info.partitions):
            log = ns.open_partition(info, p)
            try:
                st = log.stats()
            finally:
                log.close()
            parts.append((name, p, st))
    members = [(pid, ROLE_NAMES.get(role, str(role)), proc_start_ticks(pid) == start) + _proc_view(pid)
               for _, pid, start, role in ns.members()]
    from broker import groups as G
    gs = G.Groups(ns)
    try:
        groups = [(name,) + _group_rows(ns, gs, gidx, name) for name, gidx in sorted(gs.groups().items())]
    finally:
        gs.close()
    return parts, members, ns.supervisor_pid(), groups


def pool_lines(prev, now, prev_t):
    """The pool section: every Executor/Pool on the host (they belong to no
    namespace), its tasks and rate, and each worker with CPU and RSS."""
    from broker.pool._status import pool_snapshots
    snaps = pool_snapshots()
    if not snaps:
        return []
    out = ["%-24s %-8s %8s %7s %7s %7s %10s %7s %6s %9s" % (
        "POOL", "KIND", "OWNER", "WORKERS", "QUEUED", "RUNNING", "DONE", "RETRIED", "FAILED", "RATE/S"),
           "  %-8s %-9s %8s %6s %8s  %s" % ("PID", "STATE", "TASKS", "CPU%", "RSS-MiB", "STATUS")]
    for s in snaps:
        t = s["tasks"]
        key = ("pool", s["name"])
        rate = ((t["done"] - prev[key]) / (now - prev_t)) if key in prev and prev_t and now > prev_t else 0.0
        prev[key] = t["done"]
        owner = "%d%s" % (s["owner"], "" if s["owner_alive"] else "(gone)")
        out.append("%-24s %-8s %8s %7d %7d %7d %10d %7d %6d %9.0f" % (
            s["name"][:-2], s["kind"], owner, len(s["workers"]), t["queued"], t["running"], t["done"],
            t["retried"], t["failed"], rate))
        for w in s["workers"]:
            status, cpu, rss, _ = _proc_view(w["pid"])
            out.append("  %-8d %-9s %8d %6.1f %8.1f  %s" % (w["pid"], w["state"], w["tasks"], cpu, rss, status))
    return out


def latency_lines(ns):
    """The produce->poll latency section (consumers with shm.latency.histogram=true)."""
    from broker import groups as G
    from broker.latency_hist import stat_lines
    gs = G.Groups(ns)
    try:
        names = gs.groups()
    finally:
        gs.close()
    return stat_lines(ns, names)


def write_hgrm(args):
    """`stat --hgrm FILE`: the selected latency histograms, merged, as HdrHistogram's percentile text (us)."""
    from broker import groups as G
    from broker.latency_hist import merged
    from . import UsageError, _fail
    if args.group is None and (args.topic is not None or args.partition is not None):
        raise UsageError("--topic and --partition select within a group: give --group too")
    ns = _attach(args)
    try:
        gs = G.Groups(ns)
        try:
            names = gs.groups()
        finally:
            gs.close()
        st, picked = merged(ns, names, args.group, args.topic, args.partition)
    finally:
        ns.close()
    if not picked:
        return _fail("no latency histogram matches in namespace %s: consumers record them with "
                     "shm.latency.histogram=true in their config" % ns.name)
    try:
        st.write_hgrm(args.hgrm)
    except ModuleNotFoundError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail("cannot write %s: %s" % (args.hgrm, exc.strerror or exc))
    print("Wrote %s: %d records, produce->poll latency of %s" % (args.hgrm, st.count, ", ".join(
        "%s %s[%d]" % x for x in picked)))
    return 0


def cmd_stat(args):
    import time
    from shm.errors import KafkaException
    if args.hgrm is not None:
        return write_hgrm(args)
    try:
        ns = _attach(args)
    except KafkaException:
        from broker.pool._status import list_pools
        named = args.namespace is not None or getattr(args, "bootstrap_server", None) or "SHMBROKER_NAMESPACE" in os.environ
        if named or not list_pools():
            raise  # a namespace asked for by name must exist, pools or not
        ns = None  # no namespace, but pools: show them
    tty = sys.stdout.isatty()
    prev, prev_t = {}, None
    n = 0
    try:
        while args.count is None or n < args.count:
            now = time.monotonic()
            out = []
            if tty:
                out.append("\x1b[H\x1b[2J")  # refresh in place
            if ns is None:
                out.extend(pool_lines(prev, now, prev_t) or ["no namespace and no pool"])
                print("\n".join(out), flush=True)
                prev_t = now
                n += 1
                if args.count is None or n < args.count:
                    time.sleep(args.interval)
                continue
            parts, members, sup, groups = stat_snapshot(ns)
            out.append("namespace %s  supervisor %s" % (ns.name, sup or "none"))
            out.append("%-24s %9s %12s %12s %11s %7s %10s %7s %6s" % (
                "TOPIC", "PARTITION", "LOW", "HIGH", "RATE/S", "WAITERS", "TOMBSTONES", "REPAIRS", "LAPS"))
            for name, p, st in parts:
                key = (name, p)
                rate = ((st["high"] - prev[key]) / (now - prev_t)) if key in prev and now > prev_t else 0.0
                prev[key] = st["high"]
                out.append("%-24s %9d %12d %12d %11.0f %7d %10d %7d %6d" % (
                    name, p, st["low"], st["high"], rate, st["waiters"], st["tombstones"], st["repairs"],
                    st["laps_seen"]))
            out.append("%-8s %-9s %-6s %-9s %6s %8s %s" % ("PID", "ROLE", "ALIVE", "STATUS", "CPU%", "RSS-MiB",
                                                             "COMMAND"))
            for pid, role, alive, status, cpu, rss, cmd in members:
                out.append("%-8d %-9s %-6s %-9s %6.1f %8.1f %s" % (pid, role, "yes" if alive else "no", status, cpu,
                                                                   rss, cmd))
            if groups:
                out.append("%-16s %-16s %9s %12s %12s %8s %10s %-8s %s" % ("GROUP", "TOPIC", "PARTITION", "COMMITTED",
                                                                           "END", "LAG", "LAPS-LOST", "PID", "STATE"))
            for name, rows, gmembers, state in groups:
                for r in rows:
                    out.append("%-16s %-16s %9d %12s %12d %8s %10d %-8s %s" % (name, r[1], r[2], r[3], r[4], r[5],
                                                                               r[11], r[9], state))
            out.extend(latency_lines(ns))
            out.extend(pool_lines(prev, now, prev_t))
            print("\n".join(out), flush=True)
            prev_t = now
            n += 1
            if args.count is None or n < args.count:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    finally:
        if ns is not None:
            ns.close()
    return 0


def add(tool):
    """Register this module's tools (``tool`` makes a subparser)."""
    t = tool("stat", cmd_stat, "live counters of every partition and member (like AeronStat), and of every "
             "process pool (broker.pool.Executor/Pool) on the host")
    t.add_argument("--interval", type=pos_float, default=1.0, help="seconds between refreshes")
    t.add_argument("--count", type=nonneg_int, help="print this many snapshots, then exit")
    t.add_argument("--hgrm", metavar="FILE", help="write the produce->poll latency histograms of consumers with "
                   "shm.latency.histogram=true (merged; --group, --topic, --partition select) as HdrHistogram's "
                   "percentile distribution (values in us) to FILE, and exit")
    t.add_argument("--group", help="with --hgrm: only this consumer group")
    t.add_argument("--topic", help="with --hgrm and --group: only this topic")
    t.add_argument("--partition", type=nonneg_int, help="with --hgrm, --group and --topic: only this partition")
