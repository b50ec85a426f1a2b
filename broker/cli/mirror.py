"""``shmbroker mirror``: MirrorMaker's flags over broker/mirror.py."""
import signal


from . import UsageError, _props, pos_int
from .perf import _load_props, _one_line_errors

_BOOL = {"true": True, "false": False}


def cmd_mirror(args):
    from broker.mirror import Mirror
    cconf = _load_props(args.consumer_config)
    cconf.update(_props(args.consumer_property))
    pconf = _load_props(args.producer_config)
    pconf.update(_props(args.producer_property))
    for what, conf in (("--consumer.config", cconf), ("--producer.config", pconf)):
        if "bootstrap.servers" not in conf and "shm.namespace" not in conf:
            raise UsageError("%s has no bootstrap.servers (shm://NAMESPACE or host:port,...)" % what)
    abort = _BOOL.get(args.abort_on_send_failure.lower())
    if abort is None:
        raise UsageError("--abort.on.send.failure takes true or false, got %r" % args.abort_on_send_failure)
    m = Mirror(cconf, pconf, args.include, commit_interval_ms=args.offset_commit_interval_ms,
               num_streams=args.num_streams, abort_on_send_failure=abort)
    for sig in (signal.SIGINT, signal.SIGTERM):  # flush, commit, exit 0
        signal.signal(sig, lambda *_: m.stop())
    return m.run()


def add(tool):
    t = tool("mirror", cmd_mirror, "copy topics between namespaces and Kafka clusters (MirrorMaker)",
             "Copy every topic whose whole name matches --include from the consumer config's cluster to the "
             "producer config's: each bootstrap.servers is shm://NAMESPACE or a Kafka cluster (host:port,...; "
             "needs pip install 'shmbroker[kafka]').  Keys, values, headers, timestamps and (with equal "
             "partition counts) partitions are kept; a missing target topic is created.  At least once: the "
             "group (group.id in the consumer config) commits only what the target acknowledged, so a kill "
             "loses nothing and a restart resumes.  Ctrl-C or SIGTERM: flush, commit, exit 0.")
    t.add_argument("--consumer.config", dest="consumer_config", required=True, metavar="FILE",
                   help="source .properties (bootstrap.servers, group.id, ...)")
    t.add_argument("--producer.config", dest="producer_config", required=True, metavar="FILE",
                   help="target .properties (bootstrap.servers, ...)")
    t.add_argument("--include", "--whitelist", dest="include", required=True, metavar="REGEX",
                   help="topics whose whole name matches (Java regex syntax for the common cases)")
    t.add_argument("--offset.commit.interval.ms", dest="offset_commit_interval_ms", type=pos_int, default=60000,
                   metavar="MS", help="commit the acknowledged offsets this often (default 60000)")
    t.add_argument("--num.streams", dest="num_streams", type=pos_int, default=1, metavar="N",
                   help="consumer threads sharing the partitions (default 1)")
    t.add_argument("--abort.on.send.failure", dest="abort_on_send_failure", default="true", metavar="BOOL",
                   help="stop (exit 1) when a record cannot be sent (default true); false drops it and goes on")
    t.add_argument("--consumer-property", nargs="+", action="extend", metavar="K=V", help="source config")
    t.add_argument("--producer-property", nargs="+", action="extend", metavar="K=V", help="target config")
    _one_line_errors(t)
    return t


