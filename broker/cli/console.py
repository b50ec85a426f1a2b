"""`shmbroker console-producer` and `console-consumer` (the Kafka console tools)."""
import sys

from . import UsageError, _attach, _conf, _props, nonneg_int


def _topic_partitions(args):
    """The topic's partitions to use, checked against the existing namespace and topic (neither is created)."""
    from broker.namespace import unknown_partition
    from shm.errors import KafkaException
    with _attach(args) as ns:
        n = ns.topic(args.topic).partitions
    if args.partition is None:
        return list(range(n))
    if not 0 <= args.partition < n:
        raise KafkaException(unknown_partition(args.topic, n, args.partition))
    return [args.partition]


def cmd_console_producer(args):
    from broker import Producer
    props = _props(args.property)
    parse_key = props.get("parse.key", "false").lower() == "true"
    sep = props.get("key.separator", "\t")
    _topic_partitions(args)
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
    if args.offset not in (None, "earliest", "latest"):
        if not args.offset.isdigit():
            raise UsageError("--offset takes earliest, latest or an offset (a number >= 0), got %r" % args.offset)
        if args.partition is None:
            raise UsageError("--offset with a number needs --partition")
    start = OFFSET_BEGINNING if args.from_beginning or args.offset == "earliest" else (
        OFFSET_END if args.offset in (None, "latest") else int(args.offset))
    n = 0
    out = sys.stdout
    conf = _conf(args)
    if args.group:
        if args.partition is not None or args.offset not in (None,):
            raise UsageError("--group takes the group's committed offsets: drop --partition and --offset")
        conf.update({"group.id": args.group, "auto.offset.reset": "earliest" if args.from_beginning else "latest"})
    parts = _topic_partitions(args)
    with Consumer(conf) as c:
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
                    print("Error: %s" % m.error().str(), file=sys.stderr)
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


def add(tool):
    """Register this module's tools (``tool`` makes a subparser)."""
    t = tool("console-producer", cmd_console_producer, "produce lines of stdin to a topic (kafka-console-producer)")
    t.add_argument("--topic", required=True)
    t.add_argument("--partition", type=int)
    t.add_argument("--property", action="append", metavar="K=V", help="parse.key=true, key.separator=SEP")

    t = tool("console-consumer", cmd_console_consumer, "print a topic's records (kafka-console-consumer)")
    t.add_argument("--topic", required=True)
    t.add_argument("--partition", type=int)
    t.add_argument("--offset", help="earliest, latest or a number (with --partition)")
    t.add_argument("--from-beginning", action="store_true")
    t.add_argument("--max-messages", type=nonneg_int)
    t.add_argument("--group", help="consume as a member of this consumer group (offsets committed automatically)")
    t.add_argument("--timeout-ms", type=nonneg_int, help="exit after this long without a message")
    t.add_argument("--property", action="append", metavar="K=V", help="print.key=true, key.separator=SEP")
