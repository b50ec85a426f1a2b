"""`shmbroker topics`: create, list, describe, delete (kafka-topics)."""
import sys

from . import _conf, _props


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


def add(tool):
    """Register this module's tools (``tool`` makes a subparser)."""
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
