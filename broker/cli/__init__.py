"""The ``shmbroker`` command line (also ``python -m broker``): one module per
tool family (topics, console, groups, stat, ops, perf, portability, mirror); this one parses arguments,
dispatches, and turns every error into one line on stderr and exit 1
(usage errors print the tool's usage and exit 2, as argparse does)."""
import argparse
import os
import sys


class UsageError(Exception):
    """Flags that do not go together: the tool prints its usage."""


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
            raise UsageError("expected key=value, got %r" % kv)
        k, v = kv.split("=", 1)
        out[k] = v
    return out


def _attach(args):
    """The tool's namespace, which must exist: read-only tools never create
    one (a typo gives "no namespace ... (existing: ...)")."""
    from broker.config import resolve_namespace
    from broker.namespace import Namespace
    return Namespace(resolve_namespace(_conf(args)), create=False)


def _require_namespace(args):
    """Fail unless the namespace exists; for tools that then open a client
    (which would create it)."""
    _attach(args).close()


def nonneg_int(s):
    n = int(s)
    if n < 0:
        raise argparse.ArgumentTypeError("must be >= 0, got %d" % n)
    return n


def pos_int(s):
    n = int(s)
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1, got %d" % n)
    return n


def pos_float(s):
    x = float(s)
    if not x > 0:
        raise argparse.ArgumentTypeError("must be > 0, got %s" % s)
    return x


def _version():
    from shm import __version__
    return "shmbroker %s" % __version__


def parser():
    p = argparse.ArgumentParser(prog="shmbroker", description="Kafka's model over POSIX shared memory, on one host.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="tool", metavar="TOOL")

    def tool(name, fn, help, desc=None):
        t = sub.add_parser(name, help=help, description=desc or help)
        t.add_argument("--namespace", help="the namespace (default: $SHMBROKER_NAMESPACE or 'default-<uid>')")
        t.add_argument("--bootstrap-server", help="accepted for Kafka compatibility: shm://NAME selects a namespace")
        t.add_argument("--version", action="version", version=_version())
        t.set_defaults(fn=fn, parser=t)
        return t

    from . import console, groups, mirror, ops, perf, portability, stat, topics
    for m in (topics, console, groups, ops, stat, perf, portability, mirror):
        m.add(tool)
    return p


def main(argv=None):
    p = parser()
    args, extra = p.parse_known_args(argv)
    tp = getattr(args, "parser", p)
    if extra:
        tp.error("unrecognized arguments: %s" % " ".join(extra))  # the tool's usage, exit 2
    if not getattr(args, "fn", None):
        p.print_help()
        return 2
    from shm.errors import KafkaException, error_text
    try:
        return args.fn(args)
    except UsageError as exc:
        tp.error(str(exc))
    except KafkaException as exc:
        return _fail(error_text(exc))  # the reason in words, not the KafkaError{...} frame
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `... | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 1
    except Exception as exc:
        if os.environ.get("SHMBROKER_DEBUG"):
            raise
        return _fail("%s: %s (a bug in shmbroker: SHMBROKER_DEBUG=1 shows where)" % (type(exc).__name__, exc))


def _fail(msg):
    print("Error: %s" % " ".join(msg.split()), file=sys.stderr)  # one line
    return 1


if __name__ == "__main__":
    sys.exit(main())
