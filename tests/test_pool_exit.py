"""shutdown/close/terminate, garbage collection and interpreter exit of
broker.pool.Executor and Pool never hang and leave nothing behind.

Modelled on CPython's own tests (3.11 Lib/test/test_concurrent_futures.py,
split into Lib/test/test_concurrent_futures/ later, and
Lib/test/_test_multiprocessing.py): each test here names the CPython test
whose contract it checks.  Where ours behaves differently by design, the
test checks ours and says why.  Every test has a deadline (at-exit ones run
a child interpreter with a timeout; the child prints what the parent
asserts) and, after it, the ``track`` fixture asserts that no worker pid it
saw survives and that no ``/dev/shm/shmb.pool.<owner pid>.*`` remains.
Pool's own (multiprocessing's tests) are in test_pool_exit_pool.py."""
import gc
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures.process import BrokenProcessPool

import pytest

import pool_helpers as H
from pool_helpers import clean  # noqa: F401 (fixture)
from pool_exit_helpers import (HERE, METHODS, PRELUDE, AnnounceOnDel, Dummy, ErrorAtPickle,  # noqa: F401
                               block_then_segfault, finishes, make_dummy, readline, run_child, track)

from broker.errors import WorkerCrashedError
from broker.pool import Executor, Pool

pytestmark = pytest.mark.usefixtures("clean")


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
    code = PRELUDE.format(path=[HERE] + sys.path) + _OWNER.format(method=method, cls=cls)
    with open(tmp_path / "err", "w") as errf:
        p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=errf, text=True)
    try:
        line = readline(p, H.DEADLINE)
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
    code = PRELUDE.format(path=[HERE] + sys.path) + _OWNER.format(method="fork", cls="executor")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        mine = set(track.procs)
        track.parse(readline(p, H.DEADLINE))
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
