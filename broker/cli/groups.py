"""`shmbroker consumer-groups` (kafka-consumer-groups)."""
from . import UsageError, _conf, _require_namespace


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


def _describe(a, gs, group):
    rows, members, state = _group_rows(a._ns, gs, gs.group_index(group, create=False), group)
    if state == "Empty":
        print("\nConsumer group '%s' has no active members.\n" % group)
    else:
        print()
    fmt = "%-16s %-16s %-10s %-15s %-15s %-8s %-24s %-11s %-12s %-8s %s"
    print(fmt % ("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID",
                 "HOST", "CLIENT-ID", "PID", "ALIVE"))
    for r in rows:
        print(fmt % r[:11])  # (r[11], records lost to laps, is for stat)


def _reset(a, args, groups):
    from broker import TopicPartition
    from broker.admin import ConsumerGroupTopicPartitions
    modes = [m for m in ("to_earliest", "to_latest", "to_offset", "shift_by") if getattr(args, m) not in (None, False)]
    if len(modes) != 1:
        raise UsageError("--reset-offsets takes one of --to-earliest, --to-latest, --to-offset N, --shift-by N")
    if not args.topic and not args.all_topics:
        raise UsageError("--reset-offsets needs --topic T or --all-topics")
    topics = a._ns.topics()
    names = sorted(topics) if args.all_topics else [args.topic]
    for t in names:
        a._ns.topic(t)  # an unknown topic raises, before any plan is shown
    fmt = "%-16s %-16s %-10s %s"
    print("\n" + fmt % ("GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"))
    for group in groups:
        committed = {(tp.topic, tp.partition): tp.offset for tp in a._group_offsets(group)}
        plan = []
        for t in names:
            for p in range(topics[t].partitions):
                log = a._ns.open_partition(topics[t], p)
                try:
                    lo, hi = log.watermarks()
                finally:
                    log.close()
                new = lo if args.to_earliest else hi if args.to_latest else args.to_offset \
                    if args.to_offset is not None else committed.get((t, p), lo) + args.shift_by
                plan.append(TopicPartition(t, p, min(max(new, lo), hi)))
        for tp in plan:
            print(fmt % (group, tp.topic, tp.partition, tp.offset))
        if args.execute:
            a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, plan)])[group].result()
    if not args.execute:
        print("\n(dry run: add --execute to apply)")


def cmd_consumer_groups(args):
    from broker.admin import AdminClient
    from shm.errors import KafkaError, KafkaException
    if args.group and args.all_groups:
        raise UsageError("give --group G or --all-groups, not both")
    if not (args.list or args.describe or args.reset_offsets or args.delete):
        raise UsageError("one of --list, --describe, --reset-offsets, --delete")
    if not (args.list or args.group or args.all_groups):
        raise UsageError("--describe, --reset-offsets and --delete need --group G or --all-groups")
    _require_namespace(args)  # then the admin client attaches to it (a typo creates nothing)
    with AdminClient(_conf(args)) as a:
        gs = a._groups()
        if args.list:
            for name in sorted(gs.groups()):
                print(name)
            return 0
        if args.all_groups:
            groups = sorted(gs.groups())
        elif args.group:
            if gs.group_index(args.group, create=False) is None:
                raise KafkaException(KafkaError(KafkaError.GROUP_ID_NOT_FOUND,
                                                "Consumer group '%s' does not exist." % args.group))
            groups = [args.group]
        if args.describe:
            for g in groups:
                _describe(a, gs, g)
        elif args.delete:
            for g, f in a.delete_consumer_groups(groups).items():
                f.result()
            print("Deletion of requested consumer groups (%s) was successful." % ", ".join("'%s'" % g for g in groups))
        else:
            _reset(a, args, groups)
    return 0


def add(tool):
    """Register this module's tools (``tool`` makes a subparser)."""
    t = tool("consumer-groups", cmd_consumer_groups, "list, describe, reset and delete consumer groups "
             "(kafka-consumer-groups)")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--list", action="store_true")
    g.add_argument("--describe", action="store_true", help="offsets, lag and owner of every partition (+ PID, ALIVE)")
    g.add_argument("--reset-offsets", action="store_true", help="with --to-*/--shift-by; a dry run without --execute")
    g.add_argument("--delete", action="store_true")
    t.add_argument("--group")
    t.add_argument("--all-groups", action="store_true", help="--describe, --reset-offsets or --delete every group")
    t.add_argument("--topic")
    t.add_argument("--all-topics", action="store_true")
    t.add_argument("--to-earliest", action="store_true")
    t.add_argument("--to-latest", action="store_true")
    t.add_argument("--to-offset", type=int)
    t.add_argument("--shift-by", type=int)
    t.add_argument("--execute", action="store_true")
    t.add_argument("--dry-run", action="store_true", help="the default: show the plan only")
