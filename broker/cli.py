"""The ``shmbroker`` command line (also ``python -m broker``)."""
import argparse
import sys


def cmd_demo(args):
    from broker import demo
    from shm import __version__
    print("shmbroker %s" % __version__)
    r = demo.run(producers=args.producers, members=args.members, partitions=args.partitions, records=args.records,
                 rate=args.rate, strategy=args.strategy, namespace=args.namespace)
    return 0 if r["missing"] == 0 else 1


def _conf(args):
    c = {}
    if args.namespace:
        c["shm.namespace"] = args.namespace
    elif getattr(args, "bootstrap_server", None):
        c["bootstrap.servers"] = args.bootstrap_server
    return c


def _props(pairs):
    out = {}
    for kv in pairs or ():
        if "=" not in kv:
            raise SystemExit("expected key=value, got %r" % kv)
        k, v = kv.split("=", 1)
        out[k] = v
    return out


def cmd_topics(args):
    from broker.admin import AdminClient, NewTopic
    from shm.errors import KafkaException
    with AdminClient(_conf(args)) as a:
        try:
            if args.create:
                if not args.topic:
                    raise SystemExit("--create needs --topic")
                a.create_topics([NewTopic(args.topic, args.partitions or 1, config=_props(args.config))])[
                    args.topic].result()
                print("Created topic %s." % args.topic)
            elif args.delete:
                if not args.topic:
                    raise SystemExit("--delete needs --topic")
                a.delete_topics([args.topic])[args.topic].result()
            elif args.describe:
                topics = a._ns.topics()
                names = [args.topic] if args.topic else sorted(topics)
                for n in names:
                    t = topics.get(n) or a._ns.topic(n)
                    cfg = "retention.bytes=%d,max.message.bytes=%d,retention.ms=%d,shm.overflow=%s,shm.slots=%d" % (
                        t.data_capacity, t.max_message_bytes, t.retention_ms, t.overflow, t.slot_count)
                    print("Topic: %s\tTopicId: %d\tPartitionCount: %d\tReplicationFactor: 1\tConfigs: %s"
                          % (n, t.topic_id, t.partitions, cfg))
                    for p in range(t.partitions):
                        print("\tTopic: %s\tPartition: %d\tLeader: 0\tReplicas: 0\tIsr: 0" % (n, p))
            else:
                for n in sorted(a.list_topics().topics):
                    print(n)
        except KafkaException as exc:
            print("Error: %s" % exc, file=sys.stderr)
            return 1
    return 0


def cmd_console_producer(args):
    from broker import Producer
    props = _props(args.property)
    parse_key = props.get("parse.key", "false").lower() == "true"
    sep = props.get("key.separator", "\t")
    n = 0
    with Producer(_conf(args)) as p:
        for line in sys.stdin:
            line = line.rstrip("\n")
            key = None
            if parse_key:
                if sep not in line:
                    print("No key separator found on line %d: %r" % (n + 1, line), file=sys.stderr)
                    return 1
                key, line = line.split(sep, 1)
            p.produce(args.topic, line, key=key, partition=-1 if args.partition is None else args.partition)
            n += 1
        p.flush()
    return 0


def cmd_console_consumer(args):
    from broker import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
    props = _props(args.property)
    print_key = props.get("print.key", "false").lower() == "true"
    sep = props.get("key.separator", "\t")
    if args.offset not in (None, "earliest", "latest") and args.partition is None:
        raise SystemExit("--offset with a number needs --partition")
    start = OFFSET_BEGINNING if args.from_beginning or args.offset == "earliest" else (
        OFFSET_END if args.offset in (None, "latest") else int(args.offset))
    n = 0
    out = sys.stdout
    conf = _conf(args)
    if args.group:
        if args.partition is not None or args.offset not in (None,):
            raise SystemExit("--group takes the group's committed offsets: drop --partition and --offset")
        conf.update({"group.id": args.group, "auto.offset.reset": "earliest" if args.from_beginning else "latest"})
    with Consumer(conf) as c:
        parts = [args.partition] if args.partition is not None else sorted(
            c.list_topics(args.topic).topics[args.topic].partitions)
        if not parts:
            print("Error: unknown topic %s" % args.topic, file=sys.stderr)
            return 1
        if args.group:
            c.subscribe([args.topic])
        else:
            c.assign([TopicPartition(args.topic, p, start) for p in parts])
        timeout = None if args.timeout_ms is None else args.timeout_ms / 1000.0
        try:
            while args.max_messages is None or n < args.max_messages:
                m = c.poll(timeout if timeout is not None else 1.0)
                if m is None:
                    if timeout is not None:
                        break
                    continue
                if m.error():
                    print("Error: %s" % m.error(), file=sys.stderr)
                    continue
                v = m.value().decode("utf-8", "replace") if m.value() is not None else "null"
                if print_key:
                    k = m.key().decode("utf-8", "replace") if m.key() is not None else "null"
                    out.write(k + sep + v + "\n")
                else:
                    out.write(v + "\n")
                out.flush()
                n += 1
        except KeyboardInterrupt:
            pass
    print("Processed a total of %d messages" % n, file=sys.stderr)
    return 0


def cmd_serve(args):
    from broker.config import resolve_namespace
    from broker.supervisor import Supervisor
    from shm.errors import KafkaException
    ns = resolve_namespace(_conf(args))
    try:
        sup = Supervisor(ns, to_stderr=not args.quiet, create=not args.attach, lock_fd=args.lock_fd)
    except KafkaException as exc:
        print("Error: %s" % exc, file=sys.stderr)
        return 1
    sup.run()
    return 0


def _group_rows(ns, gs, gidx, group):
    """Kafka's --describe rows: one per partition the group owns or committed."""
    from broker import groups as G
    topics = ns.topics()
    by_id = {i.topic_id: i for i in topics.values()}
    members, state, _ = G.describe_group(gs, gidx, topics)
    owner = {}
    for m in members:
        for tp in m["assigned"]:
            owner[tp] = m
    committed = {(by_id[t].name, p): o for (t, p), o in gs.group_offsets(gidx).items() if t in by_id}
    laps = {(by_id[t].name, p): lost for (t, p), (lost, _) in gs.lap_losses(gidx).items() if t in by_id}
    rows = []
    for tp in sorted(set(owner) | set(committed) | set(laps)):
        info = topics.get(tp[0])
        if info is None:
            continue
        log = ns.open_partition(info, tp[1])
        try:
            end = log.watermarks()[1]
        finally:
            log.close()
        cur = committed.get(tp)
        m = owner.get(tp)
        rows.append((group, tp[0], tp[1], "-" if cur is None else cur, end, "-" if cur is None else max(0, end - cur),
                     m["member_id"] if m else "-", ("/localhost" if m else "-"), m["client_id"] if m else "-",
                     m["pid"] if m else "-", ("yes" if m["alive"] else "no") if m else "-", laps.get(tp, 0)))
    return rows, members, state


def cmd_consumer_groups(args):
    from broker import TopicPartition
    from broker.admin import AdminClient, ConsumerGroupTopicPartitions
    from shm.errors import KafkaException
    try:
        a = AdminClient(_conf(args))
    except KafkaException as exc:
        print("Error: %s" % exc, file=sys.stderr)
        return 1
    try:
        gs = a._groups()
        if args.list:
            for name in sorted(gs.groups()):
                print(name)
            return 0
        if not args.group:
            raise SystemExit("--describe, --reset-offsets and --delete need --group G")
        gidx = gs.group_index(args.group, create=False)
        if gidx is None:
            print("Error: Consumer group '%s' does not exist." % args.group, file=sys.stderr)
            return 1
        if args.describe:
            rows, members, state = _group_rows(a._ns, gs, gidx, args.group)
            if state == "Empty":
                print("\nConsumer group '%s' has no active members.\n" % args.group)
            else:
                print()
            fmt = "%-16s %-16s %-10s %-15s %-15s %-8s %-24s %-11s %-12s %-8s %s"
            print(fmt % ("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID",
                         "HOST", "CLIENT-ID", "PID", "ALIVE"))
            for r in rows:
                print(fmt % r[:11])  # (r[11], records lost to laps, is for stat)
            return 0
        if args.delete:
            a.delete_consumer_groups([args.group])[args.group].result()
            print("Deletion of requested consumer groups ('%s') was successful." % args.group)
            return 0
        if args.reset_offsets:
            modes = [m for m in ("to_earliest", "to_latest", "to_offset", "shift_by") if getattr(args, m) not in
                     (None, False)]
            if len(modes) != 1:
                raise SystemExit("--reset-offsets takes one of --to-earliest, --to-latest, --to-offset N, --shift-by N")
            if not args.topic and not args.all_topics:
                raise SystemExit("--reset-offsets needs --topic T or --all-topics")
            topics = a._ns.topics()
            names = sorted(topics) if args.all_topics else [args.topic]
            committed = {(tp.topic, tp.partition): tp.offset for tp in a._group_offsets(args.group)}
            plan = []
            for t in names:
                if t not in topics:
                    print("Error: unknown topic %s" % t, file=sys.stderr)
                    return 1
                for p in range(topics[t].partitions):
                    log = a._ns.open_partition(topics[t], p)
                    try:
                        lo, hi = log.watermarks()
                    finally:
                        log.close()
                    new = lo if args.to_earliest else hi if args.to_latest else args.to_offset \
                        if args.to_offset is not None else committed.get((t, p), lo) + args.shift_by
                    plan.append(TopicPartition(t, p, min(max(new, lo), hi)))
            fmt = "%-16s %-16s %-10s %s"
            print("\n" + fmt % ("GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"))
            for tp in plan:
                print(fmt % (args.group, tp.topic, tp.partition, tp.offset))
            if args.execute:
                a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(args.group, plan)])[args.group].result()
            else:
                print("\n(dry run: add --execute to apply)")
            return 0
        raise SystemExit("one of --list, --describe, --reset-offsets, --delete")
    except KafkaException as exc:
        print("Error: %s" % exc, file=sys.stderr)
        return 1
    finally:
        a.close()


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


def cmd_stat(args):
    import time
    from broker.config import resolve_namespace
    from broker.namespace import Namespace
    from shm.errors import KafkaException
    try:
        ns = Namespace(resolve_namespace(_conf(args)), create=False)
    except KafkaException as exc:
        print("Error: %s" % exc, file=sys.stderr)
        return 1
    tty = sys.stdout.isatty()
    prev, prev_t = {}, None
    n = 0
    try:
        while args.count is None or n < args.count:
            parts, members, sup, groups = stat_snapshot(ns)
            now = time.monotonic()
            out = []
            if tty:
                out.append("\x1b[H\x1b[2J")  # refresh in place
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
            print("\n".join(out), flush=True)
            prev_t = now
            n += 1
            if args.count is None or n < args.count:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    finally:
        ns.close()
    return 0


def cmd_destroy(args):
    from broker.namespace import destroy
    ns = args.namespace or __import__("broker.config", fromlist=["x"]).resolve_namespace(_conf(args))
    removed = destroy(ns)
    print("Removed namespace %s: %d segments" % (ns, len(removed)))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="shmbroker", description="Kafka's model over POSIX shared memory, on one host.")
    sub = p.add_subparsers(dest="tool", metavar="TOOL")

    def tool(name, fn, help, desc=None):
        t = sub.add_parser(name, help=help, description=desc or help)
        t.add_argument("--namespace", help="the namespace (default: $SHMBROKER_NAMESPACE or 'default')")
        t.add_argument("--bootstrap-server", help="accepted for Kafka compatibility: shm://NAME selects a namespace")
        t.set_defaults(fn=fn)
        return t

    t = tool("topics", cmd_topics, "create, list, describe and delete topics (kafka-topics)")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--create", action="store_true")
    g.add_argument("--list", action="store_true")
    g.add_argument("--describe", action="store_true")
    g.add_argument("--delete", action="store_true")
    t.add_argument("--topic")
    t.add_argument("--partitions", type=int)
    t.add_argument("--replication-factor", type=int, help="accepted and ignored (one host)")
    t.add_argument("--config", action="append", metavar="K=V", help="topic config, e.g. retention.bytes=1048576")

    t = tool("console-producer", cmd_console_producer, "produce lines of stdin to a topic (kafka-console-producer)")
    t.add_argument("--topic", required=True)
    t.add_argument("--partition", type=int)
    t.add_argument("--property", action="append", metavar="K=V", help="parse.key=true, key.separator=SEP")

    t = tool("console-consumer", cmd_console_consumer, "print a topic's records (kafka-console-consumer)")
    t.add_argument("--topic", required=True)
    t.add_argument("--partition", type=int)
    t.add_argument("--offset", help="earliest, latest or a number (with --partition)")
    t.add_argument("--from-beginning", action="store_true")
    t.add_argument("--max-messages", type=int)
    t.add_argument("--group", help="consume as a member of this consumer group (offsets committed automatically)")
    t.add_argument("--timeout-ms", type=int, help="exit after this long without a message")
    t.add_argument("--property", action="append", metavar="K=V", help="print.key=true, key.separator=SEP")

    t = tool("consumer-groups", cmd_consumer_groups, "list, describe, reset and delete consumer groups "
             "(kafka-consumer-groups)")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--list", action="store_true")
    g.add_argument("--describe", action="store_true", help="offsets, lag and owner of every partition (+ PID, ALIVE)")
    g.add_argument("--reset-offsets", action="store_true", help="with --to-*/--shift-by; a dry run without --execute")
    g.add_argument("--delete", action="store_true")
    t.add_argument("--group")
    t.add_argument("--topic")
    t.add_argument("--all-topics", action="store_true")
    t.add_argument("--to-earliest", action="store_true")
    t.add_argument("--to-latest", action="store_true")
    t.add_argument("--to-offset", type=int)
    t.add_argument("--shift-by", type=int)
    t.add_argument("--execute", action="store_true")
    t.add_argument("--dry-run", action="store_true", help="the default: show the plan only")

    tool("destroy", cmd_destroy, "remove every segment of a namespace, a corrupted one too")
    t = tool("stat", cmd_stat, "live counters of every partition and member (like AeronStat)")
    t.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    t.add_argument("--count", type=int, help="print this many snapshots, then exit")
    sv = tool("serve", cmd_serve, "run the namespace's supervisor in the foreground (one per namespace)",
              "Run the supervisor: it watches every registered client process, repairs a dead producer's "
              "half-written records at once and assigns consumer groups' partitions (rebalancing the moment "
              "a member dies). Clients start one by themselves when none runs. Stops on SIGTERM or Ctrl-C.")
    sv.add_argument("--quiet", action="store_true", help="log only to the namespace's log file, not stderr")
    sv.add_argument("--attach", action="store_true", help="only for an existing namespace (how clients start it)")
    sv.add_argument("--lock-fd", type=int, help=argparse.SUPPRESS)  # the singleton lock, taken by the starter
    d = tool("demo", cmd_demo, "the main job: producers and a consumer group, one member killed midway",
             "Run the main job: producer processes and a consumer group of processes on one namespace; "
             "midway one member is SIGKILLed and its partitions resume on the survivors. Prints live progress, "
             "then the kill -> resume time, end-to-end latency percentiles, throughput and a count proving "
             "nothing was lost. Removes its namespace at the end.")
    d.add_argument("--records", type=int, default=400000, help="records in all")
    d.add_argument("--producers", type=int, default=2)
    d.add_argument("--members", type=int, default=3, help="consumer processes in the group")
    d.add_argument("--partitions", type=int, default=4)
    d.add_argument("--rate", type=int, default=50000, help="records/s per producer (0: as fast as possible)")
    d.add_argument("--strategy", default="cooperative-sticky", help="partition.assignment.strategy")
    args = p.parse_args(argv)
    if not getattr(args, "fn", None):
        p.print_help()
        return 2
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
