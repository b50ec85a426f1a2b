"""shutdown/close/terminate, garbage collection and interpreter exit of
broker.pool.Executor and Pool never hang and leave nothing behind.

Modelled on CPython's own tests (3.11 Lib/test/test_concurrent_futures.py,
split into Lib/test/test_concurrent_futures/ later, and
Lib/test/_test_multiprocessing.py): each test here names the CPython test
whose contract it checks.  Where ours behaves differently by design, the
test checks ours and says why.  Every test has a deadline (at-exit ones run
a child interpreter with a timeout; the child prints what the parent
asserts) and, after it, the ``track`` fixture asserts that no worker pid it
saw survives and that no ``/dev/shm/shmb.pool.<owner pid>.*`` remains."""
import gc
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import weakref
from concurrent.futures.process import BrokenProcessPool

import psutil
import pytest

import pool_helpers as H
from pool_helpers import clean  # noqa: F401 (fixture)

from broker.errors import ClosedError, WorkerCrashedError
from broker.pool import Executor, Pool
from shm.segment import SHM_DIR

pytestmark = pytest.mark.usefixtures("clean")
METHODS = ["fork", "spawn", "forkserver"]
HERE = os.path.dirname(os.path.abspath(__file__))


# -- tasks (module level: spawn/forkserver workers import them) -----------------------
def say(msg):
    print(msg, flush=True)


def block_then_say(started, go, msg):
    H.announce(started)
    H.wait_file(go)
    print(msg, flush=True)


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


_PRELUDE = """
import atexit, gc, itertools, os, signal, sys, time
sys.path[:0] = {path!r}
import multiprocessing as mp
import pool_helpers as H
import test_pool_exit as T
from broker.pool import Executor, Pool

def report(pool):
    print("POOL", os.getpid(), *pool.worker_pids(), flush=True)
"""


def run_child(track, body, timeout=H.DEADLINE, **fmt):
    """Run *body* (after the prelude) in a child interpreter that must exit in
    *timeout*; returns (returncode, stdout lines but POOL ones, stderr)."""
    code = _PRELUDE.format(path=[HERE] + sys.path) + textwrap.dedent(body).format(**fmt)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    return r.returncode, track.parse(r.stdout), r.stderr


# == concurrent.futures: ExecutorShutdownTest / ProcessPoolShutdownTest =================
def test_run_after_shutdown(track):
    """ExecutorShutdownTest.test_run_after_shutdown."""
    ex = track.pool(Executor(2))
    ex.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.submit(pow, 2, 5)
    with pytest.raises(RuntimeError, match="after shutdown"):
        list(ex.map(abs, [1]))


@pytest.mark.parametrize("method", METHODS)
def test_interpreter_shutdown(track, method):
    """ExecutorShutdownTest.test_interpreter_shutdown: a task still queued at
    exit runs (the atexit hook drains the executor), nothing on stderr."""
    rc, out, err = run_child(track, """
        t = Executor(5, mp_context=mp.get_context({method!r}))
        report(t)
        t.submit(T.say, "apple")
        """, method=method)
    assert rc == 0 and err == ""
    assert out == ["apple"]


def test_submit_after_interpreter_shutdown(track):
    """ExecutorShutdownTest.test_submit_after_interpreter_shutdown: an atexit
    hook registered before the executor runs after ours: submit raises."""
    rc, out, err = run_child(track, """
        @atexit.register
        def run_last():
            try:
                t.submit(id, None)
            except RuntimeError:
                print("runtime-error", flush=True)
                raise
        t = Executor(2, mp_context=mp.get_context("spawn"))
        report(t)
        t.submit(id, 42).result(60)
        """)
    assert "RuntimeError: cannot schedule new futures" in err
    assert out == ["runtime-error"]


def test_hang_issue12364(track):
    """ExecutorShutdownTest.test_hang_issue12364: shutdown() with 50 tasks
    queued returns, and every result is there."""
    ex = track.pool(Executor(2))
    fs = [ex.submit(time.sleep, 0.005) for _ in range(50)]
    finishes(ex.shutdown, "shutdown()")
    assert [f.result(0) for f in fs] == [None] * 50


def test_cancel_futures(track, tmp_path):
    """ExecutorShutdownTest.test_cancel_futures: shutdown(cancel_futures=True)
    cancels what is queued and waits for what runs.  Ours withdraws every
    queued task (ProcessPoolExecutor keeps one more queued per worker), so
    the counts are exact here: one ran, the rest were cancelled."""
    started, go, marks = str(tmp_path / "s"), str(tmp_path / "go"), str(tmp_path / "m")
    ex = track.pool(Executor(1))
    running = ex.submit(H.block_then, started, go, "ran")
    H.wait_file(started)
    queued = [ex.submit(H.mark, marks) for _ in range(49)]
    t = threading.Thread(target=ex.shutdown, kwargs={"cancel_futures": True}, daemon=True)
    t.start()
    H.wait_until(lambda: all(f.cancelled() for f in queued), "shutdown to cancel the queued futures")
    assert t.is_alive(), "shutdown(wait=True) returned while a task was running"
    H.announce(go)
    t.join(H.DEADLINE)
    assert not t.is_alive()
    assert running.result(0) == "ran" and H.runs(marks) == 0


_AT_EXIT_BUSY = """
ex = Executor(2, mp_context=mp.get_context({method!r}))
report(ex)
f = ex.submit(T.block_then_say, {started!r}, {go!r}, "apple")
fs = [ex.submit(T.say, "pear") for _ in range(3)]
H.wait_file({started!r})
atexit.register(H.announce, {go!r})  # after the pool's hook: runs before it
{mode}
"""


@pytest.mark.parametrize("method,mode", [("fork", ""), ("fork", "ex.shutdown(wait=False)"),
                                         ("spawn", "ex.shutdown(wait=False)"),
                                         ("forkserver", "ex.shutdown(wait=False)"),
                                         ("fork", "del ex, f, fs; gc.collect()")])
def test_hang_gh83386_busy_at_exit(track, tmp_path, method, mode):
    """ExecutorShutdownTest.test_hang_gh83386 (and 3.11's test_hang_issue39205):
    shutdown(wait=False) with a task running at exit does not hang, the task
    finishes (CPython skips this one for ProcessPoolExecutor: it hangs,
    gh-83386); also with no shutdown at all, and with the executor
    garbage-collected while busy."""
    rc, out, err = run_child(track, _AT_EXIT_BUSY, method=method, mode=mode, started=str(tmp_path / "s"),
                             go=str(tmp_path / "go"))
    assert rc == 0 and err == ""
    assert sorted(out) == ["apple", "pear", "pear", "pear"]


def test_cancel_futures_wait_false(track, tmp_path):
    """ThreadPoolShutdownTest.test_cancel_futures_wait_false (CPython tests it
    only for threads: "PPE often hangs with wait=False"): at exit the running
    task finishes, the cancelled ones never run."""
    marks = str(tmp_path / "m")
    rc, out, err = run_child(track, """
        ex = Executor(1)
        report(ex)
        f = ex.submit(T.block_then_say, {started!r}, {go!r}, "apple")
        H.wait_file({started!r})
        fs = [ex.submit(H.mark, {marks!r}) for _ in range(10)]
        atexit.register(H.announce, {go!r})
        ex.shutdown(wait=False, cancel_futures=True)
        print("cancelled", sum(x.cancelled() for x in fs), flush=True)
        """, started=str(tmp_path / "s"), go=str(tmp_path / "go"), marks=marks)
    assert rc == 0 and err == ""
    assert out == ["cancelled 10", "apple"] and H.runs(marks) == 0


def test_hang_gh94440(track):
    """ExecutorShutdownTest.test_hang_gh94440: a future submitted and cancelled
    right before shutdown(wait=True) does not make it hang."""
    ex = track.pool(Executor(1))
    assert ex.submit(int).result(H.DEADLINE) == 0
    ex.submit(int).cancel()
    finishes(ex.shutdown, "shutdown(wait=True)")


def test_processes_terminate(track):
    """ProcessPoolShutdownTest.test_processes_terminate."""
    ex = track.pool(Executor(5))
    fs = [ex.submit(H.add, a, b) for a, b in ((21, 2), (6, 7), (3, 14))]
    assert len(ex.worker_pids()) == 5  # ours starts every worker at once, whatever the start method
    finishes(ex.shutdown, "shutdown()")
    assert [f.result(0) for f in fs] == [23, 13, 17]
    assert ex.worker_pids() == [] and not track.survivors()  # shutdown(wait=True) joined them


def test_context_manager_shutdown(track):
    """ProcessPoolShutdownTest.test_context_manager_shutdown."""
    with Executor(5) as e:
        track.pool(e)
        assert list(e.map(abs, range(-5, 5))) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
    assert not track.survivors() and not track.segments()


@pytest.mark.parametrize("how", ["del", "shutdown(wait=False)"])
def test_del_shutdown_and_shutdown_no_wait(track, how):
    """ProcessPoolShutdownTest.test_del_shutdown / test_shutdown_no_wait: the
    executor dropped (or shut down without waiting) while its map runs:
    its manager thread ends, its workers exit, every result was computed."""
    ex = track.pool(Executor(5))
    res = ex.map(abs, range(-5, 5))
    manager = ex._engine._manager
    if how == "del":
        ref = weakref.ref(ex)
        del ex
        gc.collect()
        assert ref() is None  # nothing of ours keeps it alive
    else:
        ex.shutdown(wait=False)
    manager.join(H.DEADLINE)
    assert not manager.is_alive()
    assert list(res) == [abs(v) for v in range(-5, 5)]


def test_shutdown_race_issue12456(track):
    """ExecutorTest.test_shutdown_race_issue12456: shutdown right after a map
    of more tasks than workers."""
    ex = track.pool(Executor(2))
    ex.map(str, [2] * 3)
    finishes(ex.shutdown, "shutdown()")


def test_no_stale_references(track):
    """ExecutorTest.test_no_stale_references: a discarded future's callable is
    not kept alive by the executor."""
    with Executor(2) as ex:
        track.pool(ex)
        obj = Dummy()
        collected = threading.Event()
        ref = weakref.ref(obj, lambda _: collected.set())
        ex.submit(obj.method)
        del obj
        assert collected.wait(H.DEADLINE), "the submitted bound method's object was kept alive"
        assert ref() is None


def test_free_reference(track):
    """ExecutorTest.test_free_reference: map's iterator holds no reference to
    the results it already yielded (both with and without chunks)."""
    with Executor(2) as ex:
        track.pool(ex)
        for chunksize in (1, 3):
            for obj in ex.map(make_dummy, range(10), chunksize=chunksize):
                wr = weakref.ref(obj)
                del obj
                gc.collect()
                assert wr() is None, "chunksize=%d: map's iterator kept a result alive" % chunksize


def test_ressources_gced_in_workers(track, tmp_path):
    """ProcessPoolExecutorTest.test_ressources_gced_in_workers: a task's
    arguments are freed in the worker once it is done (not at the next task)."""
    path = str(tmp_path / "collected")
    with Executor(1) as ex:
        track.pool(ex)
        assert ex.submit(id, AnnounceOnDel(path)).result(H.DEADLINE) > 0
        H.wait_file(path, 10)


def test_shutdown_deadlock(track, tmp_path):
    """ExecutorDeadlockTest.test_shutdown_deadlock: a worker crashing after
    shutdown(wait=True) was called does not hang it.  Ours runs the task again
    (max_attempts) then fails it with WorkerCrashedError, a BrokenProcessPool."""
    started, go = str(tmp_path / "s"), str(tmp_path / "go")
    ex = track.pool(Executor(2, max_attempts=2))
    f = ex.submit(block_then_segfault, started, go)
    H.wait_file(started)
    t = threading.Thread(target=ex.shutdown, daemon=True)
    t.start()
    H.wait_until(lambda: ex._engine.closing, "shutdown to start")
    H.announce(go)
    t.join(H.DEADLINE)
    assert not t.is_alive(), "shutdown hung after a worker crashed"
    with pytest.raises(BrokenProcessPool) as ei:
        f.result(0)
    assert isinstance(ei.value, WorkerCrashedError) and ei.value.attempts == 2


def test_shutdown_deadlock_pickle(track):
    """ExecutorDeadlockTest.test_shutdown_deadlock_pickle (bpo-39104): a task
    that fails to pickle, then shutdown(wait=False): the future fails, the
    manager thread ends."""
    with Executor(2) as ex:
        track.pool(ex)
        assert ex.submit(id, 42).result(H.DEADLINE) > 0
        manager = ex._engine._manager
        f = ex.submit(id, ErrorAtPickle())
        ex.shutdown(wait=False)
        with pytest.raises(pickle.PicklingError):
            f.result(H.DEADLINE)
    manager.join(H.DEADLINE)
    assert not manager.is_alive()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_max_tasks_early_shutdown(track, method):
    """ProcessPoolExecutorTest.test_max_tasks_early_shutdown (and
    _TestPoolWorkerLifetime.test_pool_worker_lifetime_early_close for Pool):
    shutdown while workers still have to be replaced.  Ours allows
    max_tasks_per_child with fork too (CPython refuses it)."""
    import multiprocessing as mp
    ex = Executor(3, mp_context=mp.get_context(method), max_tasks_per_child=1)
    track.pool(ex)
    fs = [ex.submit(H.tag_pid, i * i) for i in range(6)]
    finishes(ex.shutdown, "shutdown()")
    got = [f.result(0) for f in fs]
    assert [v for v, _ in got] == [i * i for i in range(6)]
    track.add(pid for _, pid in got)
    assert len({pid for _, pid in got}) == 6  # one task per worker
    with Pool(3, maxtasksperchild=1) as p:
        track.pool(p)
        rs = [p.apply_async(H.tag_pid, (i,)) for i in range(6)]
        p.close()
        finishes(p.join, "Pool.join()")
        got = [r.get(0) for r in rs]
    assert [v for v, _ in got] == list(range(6))
    track.add(pid for _, pid in got)


@pytest.mark.parametrize("shutdown,drop", [(True, False), (True, True), (False, True)])
def test_stranded_worker_exit(track, tmp_path, shutdown, drop):
    """ProcessPoolExecutorTest.test_shutdown_no_wait_max_tasks_gh119592 and
    test_gc_during_max_tasks_worker_exit_gh152967: the only worker leaves at
    its max_tasks_per_child limit after shutdown(wait=False) and/or after the
    executor was garbage-collected.  CPython fails the remaining futures of a
    collected executor ("garbage collected"); ours, by design, runs them:
    a collected executor finishes its tasks, as at interpreter exit."""
    started, go = str(tmp_path / "s"), str(tmp_path / "go")
    ex = track.pool(Executor(1, max_tasks_per_child=1))
    futs = [ex.submit(H.block_then, started, go, 0)] + [ex.submit(H.tag_pid, i) for i in (1, 2)]
    manager = ex._engine._manager
    H.wait_file(started)
    if shutdown:
        ex.shutdown(wait=False)
    if drop:
        ref = weakref.ref(ex)
        del ex
        gc.collect()
        assert ref() is None
    H.announce(go)
    assert futs[0].result(H.DEADLINE) == 0
    got = [f.result(H.DEADLINE) for f in futs[1:]]
    track.add(pid for _, pid in got)
    assert [v for v, _ in got] == [1, 2] and got[0][1] != got[1][1]
    manager.join(H.DEADLINE)
    assert not manager.is_alive()


# == multiprocessing: _TestPool / _TestPoolWorkerLifetime ==============================
def test_pool_terminate(track):
    """_TestPool.test_terminate: terminate() and join() with 10,000 "forever"
    tasks queued (more than the task ring holds: the feeder thread has a
    backlog) return.  Ours fails the unfinished result with ClosedError
    (multiprocessing's get() would wait for ever)."""
    p = track.pool(Pool(3))
    r = p.map_async(time.sleep, [600] * 10_000, chunksize=1)
    H.wait_until(lambda: p._engine.status.snapshot()["workers"][0]["state"] == "running", "a task to start")
    finishes(p.terminate, "terminate()")
    finishes(p.join, "join()")
    with pytest.raises(ClosedError, match="terminated"):
        r.get(0)


def test_pool_empty_iterable(track):
    """_TestPool.test_empty_iterable (issue 12157)."""
    p = track.pool(Pool(1))
    assert p.map(H.square, []) == []
    assert list(p.imap(H.square, [])) == []
    assert list(p.imap_unordered(H.square, [])) == []
    assert p.map_async(H.square, []).get(H.DEADLINE) == []
    p.close()
    finishes(p.join, "join()")


def test_pool_context(track):
    """_TestPool.test_context: the with block terminates the pool; join()
    after it returns; the pool refuses new work."""
    with Pool(2) as p:
        track.pool(p)
        assert p.map_async(H.square, range(10)).get(H.DEADLINE) == [i * i for i in range(10)]
    finishes(p.join, "join()")
    with pytest.raises(ValueError, match="Pool not running"):
        p.map_async(H.square, range(10))


def test_pool_enter(track):
    """_TestPool.test_enter (bpo-35477): __enter__ of a pool that is not
    running raises."""
    pool = track.pool(Pool(1))
    with pool:
        pass
    with pytest.raises(ValueError, match="Pool not running"):
        with pool:
            pass
    finishes(pool.join, "join()")


def test_pool_release_task_refs(track):
    """_TestPool.test_release_task_refs (issue 29861): arguments and results
    are not kept alive once the map is done."""
    with Pool(2) as p:
        track.pool(p)
        objs = [Counted() for _ in range(10)]
        refs = [weakref.ref(o) for o in objs]
        out = p.map(identity, objs)
        assert len(out) == 10 and Counted.n == 20  # the results are copies
        del objs, out
        gc.collect()
        assert {wr() for wr in refs} == {None}
        assert Counted.n == 0


def test_pool_map_no_failfast(track):
    """_TestPool.test_map_no_failfast (issue 23992): a map that fails, then
    close() and join(): join does not deadlock."""
    with pytest.raises(ValueError, match="fails on purpose"):
        with Pool(2) as p:
            track.pool(p)
            try:
                p.map(raise_value_error, [0, 1], 1)
            finally:
                p.close()
                finishes(p.join, "join()")


def test_pool_resource_warning(track):
    """_TestPool.test_resource_warning: a pool collected in state RUN warns."""
    pool = track.pool(Pool(1))
    pool.terminate()
    pool.join()
    pool._state = "RUN"  # as CPython's test: force the state to get the warning
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        pool = None
        gc.collect()
    assert any(issubclass(x.category, ResourceWarning) and "unclosed running" in str(x.message) for x in w)


def test_pool_unref_while_busy(track, tmp_path):
    """A Pool garbage-collected while an imap runs (CPython's pools are
    terminated by their finalizer): terminated; ours fails what is left
    with ClosedError instead of leaving next() waiting."""
    p = track.pool(Pool(2))
    it = p.imap(H.block_forever, [str(tmp_path / ("s%d" % i)) for i in range(5)])
    H.wait_file(str(tmp_path / "s0"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del p
        gc.collect()
    with pytest.raises(ClosedError):
        it.next(H.DEADLINE)


def _in_process(q):
    with Pool(2) as p:
        q.put(("pids", p.worker_pids()))
        q.put(("map", p.map(H.square, range(5))))


def test_pool_in_process(track):
    """TestStdinBadfiledescriptor.test_pool_in_process: a pool made and used
    inside a multiprocessing.Process (non-daemonic)."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=_in_process, args=(q,))
    proc.start()
    kind, pids = q.get(timeout=H.DEADLINE)
    track.add(pids, proc.pid)
    assert q.get(timeout=H.DEADLINE) == ("map", [0, 1, 4, 9, 16])
    proc.join(H.DEADLINE)
    assert proc.exitcode == 0


def test_worker_finalization_via_atexit_handler_of_multiprocessing(track):
    """_TestPoolWorkerLifetime.test_worker_finalization_via_atexit_handler_of_multiprocessing
    (bpo-38744, bpo-39360): a pool kept in a global object at exit."""
    rc, out, err = run_child(track, """
        problem = None
        class A:
            def __init__(self):
                self.pool = Pool(processes=1)
        def test():
            global problem
            problem = A()
            problem.pool.map(float, tuple(range(10)))
        test()
        report(problem.pool)
        """)
    assert rc == 0 and err == "" and out == []


_POOL_AT_EXIT = """
p = Pool(2, context=mp.get_context({method!r}))
report(p)
r = p.apply_async(H.block_forever, ({started!r},))
it = p.imap(H.square, itertools.count())
print(next(it), next(it), next(it), flush=True)
H.wait_file({started!r})
{mode}
"""


@pytest.mark.parametrize("method,mode", [("fork", ""), ("spawn", ""), ("forkserver", ""), ("fork", "p.close()"),
                                         ("fork", "del p; gc.collect()")])
def test_pool_busy_at_exit(track, tmp_path, method, mode):
    """A Pool running a task that never ends and an endless imap at exit
    (closed, or dropped, or neither): as multiprocessing's, it is terminated
    at exit; the interpreter leaves at once, quietly."""
    rc, out, err = run_child(track, _POOL_AT_EXIT, method=method, mode=mode, started=str(tmp_path / "s"))
    assert rc == 0 and err == ""
    assert out == ["0 1 4"]
    track.add([int(H.wait_file(str(tmp_path / "s")))])


# == the owner SIGKILLed while its workers start (spawn/forkserver) ====================
_OWNER = """
cls = Executor if {cls!r} == "executor" else Pool
ctx = mp.get_context({method!r})
pool = cls(2, mp_context=ctx) if cls is Executor else cls(2, context=ctx)
report(pool)
sys.stdin.read()  # until SIGKILL
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("cls", ["executor", "pool"])
def test_owner_killed_before_workers_are_ready(track, tmp_path, method, cls):
    """The owner SIGKILLed right after the constructor returns, its workers
    still starting (importing): they exit, the pool's segments go, and no
    worker writes a traceback on the way out."""
    code = _PRELUDE.format(path=[HERE] + sys.path) + _OWNER.format(method=method, cls=cls)
    with open(tmp_path / "err", "w") as errf:
        p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=errf, text=True)
    try:
        line = _readline(p, H.DEADLINE)
        track.parse(line)
        assert len(track.procs) == 2 and track.segments(), "the owner did not report its pool: %r" % line
    finally:
        p.kill()
        p.wait(H.DEADLINE)
        p.stdin.close()
        p.stdout.close()
    track.check()
    with open(tmp_path / "err") as f:
        assert f.read() == ""


def _readline(p, timeout):
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        raise AssertionError("the child printed nothing in %ss" % timeout)
    return p.stdout.readline()


_DIES_STARTING = """
ctx = mp.get_context({method!r})
def start(self):  # the owner is killed as it starts its first worker: no worker ever runs
    print("POOL", os.getpid(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
ctx.Process.start = start
Executor(2, mp_context=ctx)
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_owner_killed_before_its_first_worker_starts(track, method):
    """The owner SIGKILLed inside the constructor, its segments made and no
    worker started (forkserver: while the fork server itself starts): no
    process is left to remove them; the next pool made on the host does."""
    rc, out, err = run_child(track, _DIES_STARTING, method=method)
    assert rc == -signal.SIGKILL and out == [] and err == ""
    (owner,) = track.owners - {os.getpid()}
    assert track.segments(owner), "the owner died before making its pool's segments"
    with Executor(1) as ex:  # its construction removes the pools whose owner and workers are all dead
        track.pool(ex)
        assert not track.segments(owner)


def test_owner_and_workers_killed_together(track, tmp_path):
    """The owner and its workers SIGKILLed at once (a cgroup's kill, the OOM
    killer): nobody is left to remove the pool; the next pool made on the
    host does.  A pool whose owner is alive is left alone."""
    live = track.pool(Executor(1))  # ours, its owner alive: the sweep leaves it alone
    code = _PRELUDE.format(path=[HERE] + sys.path) + _OWNER.format(method="fork", cls="executor")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        mine = set(track.procs)
        track.parse(_readline(p, H.DEADLINE))
        workers = set(track.procs) - mine
        assert len(workers) == 2
        os.kill(p.pid, signal.SIGSTOP)  # the owner sees none of its workers die
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        os.kill(p.pid, signal.SIGKILL)
        os.kill(p.pid, signal.SIGCONT)
    finally:
        p.kill()
        p.wait(H.DEADLINE)
        p.stdin.close()
        p.stdout.close()
    H.wait_until(lambda: not set(track.survivors()) & workers, "the workers to die")
    assert track.segments(p.pid), "the pool's segments went with nobody to remove them"
    with Executor(1) as ex:
        track.pool(ex)
        assert not track.segments(p.pid)
        assert live.submit(H.square, 3).result(H.DEADLINE) == 9
    live.shutdown()
