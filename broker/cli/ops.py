"""`shmbroker serve`, `destroy` and `demo`: a namespace's supervisor, its removal, the main job."""
import argparse

from . import _conf, nonneg_int, pos_int


def cmd_demo(args):
    from broker import demo
    from broker import config
    from shm import __version__
    if args.namespace is not None:
        config.check_namespace(args.namespace)  # bad input fails here, before any process starts
    config.parse({"partition.assignment.strategy": args.strategy}, {}, "consumer")
    print("shmbroker %s" % __version__)
    r = demo.run(producers=args.producers, members=args.members, partitions=args.partitions, records=args.records,
                 rate=args.rate, strategy=args.strategy, namespace=args.namespace)
    return 0 if r["missing"] == 0 else 1


def cmd_serve(args):
    from broker.config import resolve_namespace
    from broker.supervisor import Supervisor
    ns = resolve_namespace(_conf(args))
    Supervisor(ns, to_stderr=not args.quiet, create=not args.attach, lock_fd=args.lock_fd,
               idle=args.idle_timeout).run()
    return 0


def cmd_destroy(args):
    from broker.config import resolve_namespace
    from broker.namespace import destroy
    ns = resolve_namespace(_conf(args))
    removed = destroy(ns)
    print("Removed namespace %s: %d segments" % (ns, len(removed)))
    return 0


def add(tool):
    """Register this module's tools (``tool`` makes a subparser)."""
    tool("destroy", cmd_destroy, "remove every segment of a namespace, a corrupted one too")
    sv = tool("serve", cmd_serve, "run the namespace's supervisor in the foreground (one per namespace)",
              "Run the supervisor: it watches every registered client process, repairs a dead producer's "
              "half-written records at once and assigns consumer groups' partitions (rebalancing the moment "
              "a member dies). Clients start one by themselves when none runs. Stops on SIGTERM or Ctrl-C, "
              "or after --idle-timeout with no client.")
    sv.add_argument("--quiet", action="store_true", help="log only to the namespace's log file, not stderr")
    sv.add_argument("--attach", action="store_true", help="only for an existing namespace (how clients start it)")
    sv.add_argument("--idle-timeout", metavar="SECONDS", help="exit after this long with no registered client "
                    "(0: never; default $SHMBROKER_SUPERVISOR_IDLE, else 30); clients start a new one when needed")
    sv.add_argument("--lock-fd", type=int, help=argparse.SUPPRESS)  # the singleton lock, taken by the starter
    d = tool("demo", cmd_demo, "the main job: producers and a consumer group, one member killed midway",
             "Run the main job: producer processes and a consumer group of processes on one namespace; "
             "midway one member is SIGKILLed and its partitions resume on the survivors. Prints live progress, "
             "then the kill -> resume time, end-to-end latency percentiles, throughput and a count proving "
             "nothing was lost. Removes its namespace at the end.")
    d.add_argument("--records", type=pos_int, default=400000, help="records in all")
    d.add_argument("--producers", type=pos_int, default=2)
    d.add_argument("--members", type=pos_int, default=3, help="consumer processes in the group")
    d.add_argument("--partitions", type=pos_int, default=4)
    d.add_argument("--rate", type=nonneg_int, default=50000, help="records/s per producer (0: as fast as possible)")
    d.add_argument("--strategy", default="cooperative-sticky", help="partition.assignment.strategy")
