"""Task functions and fixtures shared by the pool tests (importable by
spawn/forkserver workers: tasks live at module level).

Synchronisation between a test and its tasks goes through files in a
per-test directory: a task announces itself by creating a file (its pid
inside) and blocks until the test creates another; every wait has a
deadline."""
import os
import signal
import time

import psutil
import pytest

from shm.segment import SHM_DIR

DEADLINE = 30.0


# -- file events ---------------------------------------------------------------
def announce(path, text=None):
    tmp = path + ".tmp%d" % os.getpid()
    with open(tmp, "w") as f:
        f.write(str(os.getpid()) if text is None else text)
    os.rename(tmp, path)  # atomic: a reader sees all of it or nothing


def wait_file(path, timeout=DEADLINE):
    """Block until *path* exists (a deadline, polling); returns its text."""
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise TimeoutError("%s did not appear within %ss" % (path, timeout))
        time.sleep(0.001)
    with open(path) as f:
        return f.read()


def runs(path):
    """How many times tasks marked *path* (one line each)."""
    try:
        with open(path) as f:
            return len(f.read().splitlines())
    except FileNotFoundError:
        return 0


def mark(path):
    with open(path, "a") as f:
        f.write("%d\n" % os.getpid())


# -- tasks -------------------------------------------------------------------------
def square(x):
    return x * x


def add(a, b):
    return a + b


def noop():
    return None


def getpid(*_):
    return os.getpid()


def fail(msg):
    raise ValueError(msg)


def block_then(started, go, value):
    """Announce *started* (with our pid), wait for *go*, return *value*."""
    announce(started)
    wait_file(go)
    return value


def block_forever(started):
    announce(started)
    while True:
        time.sleep(1)  # a hung task: only a kill ends it


def first_run_blocks(marks, started, value):
    """The first run marks and blocks (to be killed); any later run returns (value, pid)."""
    first = runs(marks) == 0
    mark(marks)
    if first:
        announce(started)
        while True:
            time.sleep(1)
    return value, os.getpid()


def hog_then_block(marks, started, nbytes, value):
    """The first run writes *nbytes* of its own memory, announces *started*
    and blocks (to be killed); a re-run returns (value, its pid, the state of
    the killed pid as the re-run started: None if it was reaped already, else
    psutil's status - the process exiting or a zombie)."""
    global _HOG
    first = runs(marks) == 0
    mark(marks)
    if first:
        _HOG = b"\1" * nbytes  # written: private pages the kernel tears down when the process dies
        announce(started)
        while True:
            time.sleep(1)
    with open(started) as f:
        killed = int(f.read())
    try:
        state = psutil.Process(killed).status()
    except psutil.NoSuchProcess:
        state = None
    return value, os.getpid(), state


def announce_run_and_block(stem):
    """Every run announces ``<stem>.<run>`` (0, 1, ...) and blocks: killed at each."""
    n = runs(stem + ".marks")
    mark(stem + ".marks")
    announce("%s.%d" % (stem, n))
    while True:
        time.sleep(1)


def mark_and_getpid(marks):
    mark(marks)
    return os.getpid()


def crash_at(marks, point, value):
    """The first run arms a crash point of this worker's result log (SIGKILL
    while it writes its result); a re-run returns (value, runs)."""
    first = runs(marks) == 0
    mark(marks)
    if first:
        from broker.pool import _worker
        _worker.current.rlog.set_crash_point(point, 1)
    return value


def kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def exit_hard(code):
    os._exit(code)


def segfault():
    import ctypes
    import faulthandler
    faulthandler.disable()  # pytest's, inherited by forked workers: no dump on the test's stderr
    ctypes.string_at(0)


def make_lock():
    import threading
    return threading.Lock()


def takes(arg):
    return type(arg).__name__


def set_global(value):
    global INIT_VALUE
    INIT_VALUE = value


INIT_VALUE = None


def get_global():
    return INIT_VALUE


def bad_init():
    raise RuntimeError("initializer fails on purpose")


def hog(nbytes):
    """Keep *nbytes* of resident memory in this worker."""
    global _HOG
    _HOG = bytearray(b"\1" * nbytes)
    return os.getpid()


def array_sum_and_double(a):
    import numpy as np
    assert a.flags.writeable
    a *= 1  # writable in place
    return float(np.asarray(a, dtype=np.float64).sum()), a * 2


def make_array(n):
    import numpy as np
    return np.arange(n, dtype=np.uint8)


def tag_pid(x):
    return x, os.getpid()


# -- leak checks ---------------------------------------------------------------
_HELPERS = ("forkserver", "resource_tracker")


def pool_segments():
    return {f for f in os.listdir(SHM_DIR) if f.startswith("shmb.pool.")}


def our_children():
    """Child processes, minus multiprocessing's long-lived helpers
    (the forkserver and the resource tracker outlive a test by design)."""
    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        if not any(h in cmd for h in _HELPERS):
            out.add(p.pid)
    return out


def wait_until(pred, what, timeout=DEADLINE):
    from conftest import deadline_wait
    deadline_wait(pred, timeout, what)


@pytest.fixture
def clean():
    """/dev/shm and the process table as before the test (with a deadline:
    a pool's workers leave just after its shutdown returns)."""
    segs, kids = pool_segments(), our_children()
    yield
    wait_until(lambda: pool_segments() <= segs, "the test's pool segments to go (left: %s)"
               % sorted(pool_segments() - segs), 20)
    left = our_children() - kids
    if left:
        try:
            wait_until(lambda: not (our_children() - kids), "the test's processes to exit", 20)
        finally:
            for pid in our_children() - kids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def busy_square(x, ms=2.0):
    """x*x after ~ms of CPU (long enough for a kill to land mid-task)."""
    end = time.monotonic() + ms / 1000.0
    while time.monotonic() < end:
        pass
    return x * x


def first_run_blocks_item(args):
    """Pool.map flavour of first_run_blocks: (marks, started, value) -> value."""
    marks, started, value = args
    return first_run_blocks(marks, started, value)[0]


def make_list(n):
    return list(range(n))


class LockedError(Exception):
    """An exception that will not pickle (it holds a lock)."""

    def __init__(self):
        super().__init__("holds a lock")
        import threading
        self.lock = threading.Lock()


def raise_unpicklable():
    raise LockedError()
