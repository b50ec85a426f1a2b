"""Shared fixtures: a unique shm namespace per test, removed afterwards, and
helpers for child processes that report to the parent with deadlines."""
import faulthandler
import itertools
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback

# numpy (imported by shm) starts OpenBLAS's thread pool unless told not to: idle threads that spin on the
# 2 cores beside the tests, and that every fork() of the tests copies mid-whatever-they-hold
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

from shm import PartitionLog  # noqa: E402
from shm.segment import unlink  # noqa: E402

_counter = itertools.count()

#: the sanitizer pass (ext/sanitize.sh) preloads libasan: C++ extensions
#: (matplotlib's) cannot throw under it, ASan's own SIGSEGV handler ends a
#: crashing process, and its shadow memory inflates every process's RSS
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")

try:  # the perf tools' plots: the [perf] extra's matplotlib
    if UNDER_ASAN:
        raise ImportError("matplotlib's C++ extension cannot run under the ASan preload")
    import matplotlib  # noqa: F401
    HAVE_MPL = True
except ImportError:
    HAVE_MPL = False


def conf(ns, **kw):
    """A client config for namespace *ns*."""
    c = {"bootstrap.servers": "shm://" + ns}
    c.update(kw)
    return c


def make_topic(ns, name="t", partitions=1, **config):
    from broker.admin import AdminClient, NewTopic
    with AdminClient(conf(ns)) as a:
        a.create_topics([NewTopic(name, partitions, config=config)])[name].result()


class LogFactory:
    """Creates partition logs under a prefix unique to one test; ``cleanup``
    closes and unlinks every one of them (and anything else under the prefix)."""

    def __init__(self):
        self.prefix = "/sbt%d_%d" % (os.getpid(), next(_counter))
        self.logs = []
        self.names = []
        self._n = itertools.count()

    def name(self):
        n = "%s_%d" % (self.prefix, next(self._n))
        self.names.append(n)
        return n

    def create(self, **kw):
        log = PartitionLog.create(self.name(), **kw)
        self.logs.append(log)
        return log

    def cleanup(self):
        for log in self.logs:
            log.close()
        for n in self.names:
            unlink(n)
        stem = self.prefix.lstrip("/")
        for f in os.listdir("/dev/shm"):
            if f.startswith(stem + "_"):
                unlink("/" + f)


@pytest.fixture
def logs():
    f = LogFactory()
    try:
        yield f
    finally:
        f.cleanup()


def deadline_wait(pred, timeout, what):
    """Poll *pred* (an event check, not a sleep-for-sync) until true or fail."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            faulthandler.dump_traceback(file=sys.stderr)
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(0.001)


def with_thread(action, wait, timeout=30):
    """Start *action* in a thread of this process, then call *wait* - a call that ends once *action* ran, so
    it proves the waiting call lets other threads run.  Returns wait's result; the thread must have ended,
    and its failure, if any, fails the test."""
    import threading
    errors = []

    def run():
        try:
            action()
        except BaseException as exc:  # reported to the test
            errors.append(exc)
    t = threading.Thread(target=run)
    t.start()
    got = wait()
    t.join(timeout)
    assert not t.is_alive(), "the thread's action did not end within %s s" % timeout
    assert errors == [], errors
    return got


def wait_child(pid, stopped=False, timeout=30):
    """waitpid for a forked child to exit (or, with stopped=True, to stop),
    with a deadline; on timeout the child is killed and the test fails."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        p, status = os.waitpid(pid, os.WUNTRACED if stopped else os.WNOHANG)
        if p == pid:
            return status
        time.sleep(0.001)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("child %d did not %s in %ss" % (pid, "stop" if stopped else "exit", timeout))


def while_blocked(call, blocked, what, action, timeout=10):
    """Run *call* in a thread; once *blocked()* says it is waiting, run
    *action*; return what *call* returned (it must finish within *timeout*)."""
    import threading
    out = []
    t = threading.Thread(target=lambda: out.append(call()), daemon=True)
    t.start()
    deadline_wait(blocked, timeout, what)
    assert not out, "%s: the call returned before it blocked" % what
    action()
    t.join(timeout)
    assert out, "%s: the call did not finish after the action" % what
    return out[0]


CTX = mp.get_context("fork")


def _child_main(fn, args, q):
    try:
        res = fn(*args)
        q.put(("ok", res))
    except BaseException:
        q.put(("error", traceback.format_exc()))
        raise


class Children:
    """Start child processes that report (ok, result) or (error, traceback)
    through a queue; ``results`` waits with a deadline, kills stragglers."""

    def __init__(self):
        self.q = CTX.Queue()
        self.procs = []

    def start(self, fn, *args):
        p = CTX.Process(target=_child_main, args=(fn, args, self.q), daemon=True)
        p.start()
        self.procs.append(p)
        return p

    def results(self, timeout=120, count=None):
        count = len(self.procs) if count is None else count
        out = []
        end = time.monotonic() + timeout
        try:
            while len(out) < count:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("children did not report within %ss (%d of %d)" % (timeout, len(out), count))
                try:
                    kind, val = self.q.get(timeout=min(left, 1.0))
                except Exception:
                    dead = [p for p in self.procs if p.exitcode not in (None, 0)]
                    if dead:
                        raise AssertionError("child %d died with exit code %s" % (dead[0].pid, dead[0].exitcode))
                    continue
                if kind == "error":
                    raise AssertionError("child failed:\n" + val)
                out.append(val)
            return out
        finally:
            self.reap()

    def reap(self):
        for p in self.procs:
            p.join(timeout=5)
            if p.exitcode is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
                p.join(timeout=5)


@pytest.fixture
def children():
    c = Children()
    try:
        yield c
    finally:
        c.reap()


@pytest.fixture
def ns():
    """A unique namespace for one test; every segment of it is removed after."""
    from broker.namespace import destroy
    name = "sbtns%d_%d" % (os.getpid(), next(_counter))
    try:
        yield name
    finally:
        destroy(name)  # its supervisor's log files too


@pytest.fixture
def kids():
    """pids of forked children; each is SIGCONTed and SIGKILLed after the test."""
    pids = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
