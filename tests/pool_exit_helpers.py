"""Tasks, leak tracking and the child-interpreter runner shared by
test_pool_exit.py and test_pool_exit_pool.py (importable by spawn/forkserver
workers: tasks live at module level)."""
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import psutil
import pytest

import pool_helpers as H
from shm.segment import SHM_DIR

METHODS = ["fork", "spawn", "forkserver"]
HERE = os.path.dirname(os.path.abspath(__file__))

# -- tasks (module level: spawn/forkserver workers import them) -----------------------
def say(msg):
    sys.stdout.flush()
    os.write(1, (msg + "\n").encode())  # one write: lines of two workers never interleave


def block_then_say(started, go, msg):
    H.announce(started)
    H.wait_file(go)
    say(msg)


def block_then_segfault(started, go):
    H.announce(started)
    H.wait_file(go)
    H.segfault()


class Dummy:
    def method(self):
        return None


def make_dummy(_):
    return Dummy()


def identity(x):
    return x


class Counted:
    """Counts its live instances in this process (CPython's CountedObject)."""
    n = 0

    def __new__(cls):
        cls.n += 1
        return object.__new__(cls)

    def __del__(self):
        type(self).n -= 1


class AnnounceOnDel:
    """Creates *path* when collected in a process other than its creator's."""

    def __init__(self, path):
        self.path, self.creator = path, os.getpid()

    def __del__(self):
        if os.getpid() != self.creator:
            H.announce(self.path)


class ErrorAtPickle:
    def __reduce__(self):
        raise pickle.PicklingError("refuses to pickle")


def raise_value_error(_):
    raise ValueError("fails on purpose")


# -- leak tracking -------------------------------------------------------------------
class Track:
    """Worker pids (with their start times: pid_max is 32768 here, a pid may be
    reused within a test) and pool owners seen by a test."""

    def __init__(self):
        self.procs = {}
        self.owners = {os.getpid()}

    def add(self, pids, owner=None):
        for pid in pids:
            try:
                self.procs[pid] = psutil.Process(pid).create_time()
            except psutil.Error:
                pass  # gone already
        if owner is not None:
            self.owners.add(owner)

    def pool(self, p):
        self.add(p.worker_pids())
        return p

    def parse(self, out):
        """Read the ``POOL <owner> <pids...>`` lines a child printed; the rest."""
        rest = []
        for line in out.splitlines():
            if line.startswith("POOL "):
                nums = [int(x) for x in line.split()[1:]]
                self.add(nums[1:], nums[0])
            else:
                rest.append(line)
        return rest

    def survivors(self):
        out = []
        for pid, created in self.procs.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(pid)
            except psutil.Error:
                pass
        return out

    def segments(self, owner=None):
        stems = tuple("shmb.pool.%d." % o for o in (self.owners if owner is None else [owner]))
        return sorted(f for f in os.listdir(SHM_DIR) if f.startswith(stems))

    def check(self, timeout=H.DEADLINE):
        H.wait_until(lambda: not self.survivors(), "the pool's workers to exit (left: %s)" % self.survivors(),
                     timeout)
        H.wait_until(lambda: not self.segments(), "the pool's segments to go (left: %s)" % self.segments(), timeout)


@pytest.fixture
def track():
    t = Track()
    yield t
    t.check()


def finishes(fn, what, timeout=H.DEADLINE):
    """Run fn() in a thread; fail (not hang) if it does not return in time."""
    out = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "%s did not return within %ss" % (what, timeout)
    return out[0] if out else None


PRELUDE = """
import atexit, gc, itertools, os, signal, sys, time
sys.path[:0] = {path!r}
import multiprocessing as mp
import pool_helpers as H
import pool_exit_helpers as T
from broker.pool import Executor, Pool

def report(pool):
    print("POOL", os.getpid(), *pool.worker_pids(), flush=True)
"""


def run_child(track, body, timeout=H.DEADLINE, **fmt):
    """Run *body* (after the prelude) in a child interpreter that must exit in
    *timeout*; returns (returncode, stdout lines but POOL ones, stderr)."""
    code = PRELUDE.format(path=[HERE] + sys.path) + textwrap.dedent(body).format(**fmt)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    return r.returncode, track.parse(r.stdout), r.stderr



def readline(p, timeout):
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        raise AssertionError("the child printed nothing in %ss" % timeout)
    return p.stdout.readline()
