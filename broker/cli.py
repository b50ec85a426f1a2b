"""The ``shmbroker`` command line (also ``python -m broker``)."""
import argparse
import sys


def cmd_demo(args):
    # Until the broker layer (topics, groups, supervisor) lands, the main job
    # is the partition-log benchmark in a short run.
    import importlib.util
    import os
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "perf", "ring_bench.py")
    spec = importlib.util.spec_from_file_location("ring_bench", here)
    if spec is None or not os.path.exists(here):
        print("perf/ring_bench.py not found beside the package: run from a source checkout", file=sys.stderr)
        return 2
    rb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rb)
    argv = ["--samples", str(args.samples), "--records", str(args.records), "--big-records", "5000",
            "--repeats", "2", "--syscall-appends", "50000"]
    from shm import __version__
    print("shmbroker %s demo: partition-log latency and throughput, each beside its baseline" % __version__)
    rb.run(rb.parser().parse_args(argv))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="shmbroker", description="Kafka's model over POSIX shared memory, on one host.")
    sub = p.add_subparsers(dest="tool", metavar="TOOL")
    d = sub.add_parser("demo", help="the main job: a short end-to-end run with its measurements",
                       description="Run the main job: partition-log latency percentiles and throughput, each "
                                   "beside its baseline (Python floor, Pipe, memcpy).")
    d.add_argument("--namespace", default=None, help="namespace to run in (unused until topics exist)")
    d.add_argument("--samples", type=int, default=10000, help="latency samples per wait mode")
    d.add_argument("--records", type=int, default=500000, help="records per throughput repeat")
    d.set_defaults(fn=cmd_demo)
    args = p.parse_args(argv)
    if not getattr(args, "fn", None):
        p.print_help()
        return 2
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
