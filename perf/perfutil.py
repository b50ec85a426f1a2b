"""What every script in perf/ shares: a --help that keeps the module
docstring's layout and shows each flag's default, a progress line on stderr
(only when stderr is a terminal), and the wording of a target's verdict."""
import argparse
import os
import sys
import time

# The benchmarks use no BLAS: one OpenBLAS thread, so the pool numpy starts at import does not spin on the
# other core (it busy-waits for work a fraction of a second) while a measurement runs.  Each script imports
# this module before numpy; the processes it starts inherit the setting.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written, and "(default: X)" after every flag's help."""


def pin(cpu):
    """Run this process on CPU *cpu* alone (None: leave it where the scheduler puts it)."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def parser(doc):
    return argparse.ArgumentParser(description=doc, formatter_class=HelpFormatter)


def verdict(ok):
    """A target's word: met, MISSED (capitals, so a missed one stands out), or n/a."""
    return "n/a" if ok is None else ("met" if ok else "MISSED")


class Progress:
    """``progress("round 2/5: ...")`` rewrites one line on stderr while a long run goes on;
    ``progress.done()`` clears it.  Silent when stderr is not a terminal (logs, pipes, CI)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.on = self.stream.isatty()
        self.t0 = time.monotonic()

    def __call__(self, text):
        if self.on:
            self.stream.write("\r[%4.0f s] %s\x1b[K" % (time.monotonic() - self.t0, text[:150]))
            self.stream.flush()

    def done(self):
        if self.on:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
