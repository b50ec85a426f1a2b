"""The ``shmbroker`` command line (also ``python -m broker``): one module per
tool family; this one parses arguments and dispatches."""
import argparse
import sys


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


def main(argv=None):
    p = argparse.ArgumentParser(prog="shmbroker", description="Kafka's model over POSIX shared memory, on one host.")
    sub = p.add_subparsers(dest="tool", metavar="TOOL")

    def tool(name, fn, help, desc=None):
        t = sub.add_parser(name, help=help, description=desc or help)
        t.add_argument("--namespace", help="the namespace (default: $SHMBROKER_NAMESPACE or 'default')")
        t.add_argument("--bootstrap-server", help="accepted for Kafka compatibility: shm://NAME selects a namespace")
        t.set_defaults(fn=fn)
        return t

    from . import console, groups, ops, stat, topics
    for m in (topics, console, groups, ops, stat):
        m.add(tool)
    args = p.parse_args(argv)
    if not getattr(args, "fn", None):
        p.print_help()
        return 2
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
