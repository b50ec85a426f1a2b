"""`shmbroker topics`: create, list, describe, delete (kafka-topics)."""
from . import UsageError, _attach, _conf, _props, pos_int


def cmd_topics(args):
    if args.create:
        from broker.admin import AdminClient, NewTopic
        from broker.namespace import check_topic_name, topic_geometry
        if not args.topic:
            raise UsageError("--create needs --topic")
        config = _props(args.config)
        check_topic_name(args.topic)
        topic_geometry(config)  # bad input creates no namespace
        with AdminClient(_conf(args)) as a:  # the one action that may create the namespace
            a.create_topics([NewTopic(args.topic, args.partitions, config=config)])[args.topic].result()
        print("Created topic %s." % args.topic)
        return 0
    with _attach(args) as ns:
        if args.delete:
            if not args.topic:
                raise UsageError("--delete needs --topic")
            ns.delete_topic(args.topic)
        elif args.describe:
            topics = ns.topics()
            names = [args.topic] if args.topic else sorted(topics)
            for n in names:
                t = topics.get(n) or ns.topic(n)
                cfg = "retention.bytes=%d,max.message.bytes=%d,retention.ms=%d,shm.overflow=%s,shm.slots=%d" % (
                    t.data_capacity, t.max_message_bytes, t.retention_ms, t.overflow, t.slot_count)
                print("Topic: %s\tTopicId: %d\tPartitionCount: %d\tReplicationFactor: 1\tConfigs: %s"
                      % (n, t.topic_id, t.partitions, cfg))
                for p in range(t.partitions):
                    print("\tTopic: %s\tPartition: %d\tLeader: 0\tReplicas: 0\tIsr: 0" % (n, p))
        else:
            for n in sorted(ns.topics()):
                print(n)
    return 0


def add(tool):
    """Register this module's tools (``tool`` makes a subparser)."""
    t = tool("topics", cmd_topics, "create, list, describe and delete topics (kafka-topics)")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--create", action="store_true")
    g.add_argument("--list", action="store_true")
    g.add_argument("--describe", action="store_true")
    g.add_argument("--delete", action="store_true")
    t.add_argument("--topic")
    t.add_argument("--partitions", type=pos_int, default=1)
    t.add_argument("--replication-factor", type=int, help="accepted and ignored (one host)")
    t.add_argument("--config", action="append", metavar="K=V", help="topic config, e.g. retention.bytes=1048576")
