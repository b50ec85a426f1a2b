"""Crash matrix of broker.pool.Executor and Pool with real processes: a
worker SIGKILLed mid-task, before and while it writes its result, after it
wrote it; poison tasks; task_timeout; max_memory_per_child; the parent
SIGKILLed; every start method; big numpy arguments and results."""
import multiprocessing as mp
import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import psutil
import pytest

import pool_helpers as H
from pool_helpers import clean  # noqa: F401 (fixture)

from broker.errors import TaskTimeoutError, WorkerCrashedError
from conftest import UNDER_ASAN
from broker.pool import Executor, Pool

pytestmark = pytest.mark.usefixtures("clean")
METHODS = ["fork", "spawn", "forkserver"]


def gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_when_started(started):
    pid = int(H.wait_file(started))
    os.kill(pid, signal.SIGKILL)
    return pid


def stats(pool):
    return pool._engine.status.snapshot()["tasks"]


def test_sigkill_mid_task_reruns_it(tmp_path):
    marks, started = str(tmp_path / "m"), str(tmp_path / "s")
    with Executor(2) as ex:
        f = ex.submit(H.first_run_blocks, marks, started, "v")
        others = [ex.submit(H.busy_square, i, 0.1) for i in range(200)]
        killed = kill_when_started(started)
        value, pid = f.result(H.DEADLINE)
        assert value == "v" and pid != killed and H.runs(marks) == 2
        assert [o.result(H.DEADLINE) for o in others] == [i * i for i in range(200)]
        H.wait_until(lambda: len(ex.worker_pids()) == 2 and killed not in ex.worker_pids(), "a replacement")
        assert ex.submit(H.getpid).result(H.DEADLINE) != killed
        st = stats(ex)
        assert st["retried"] == 1 and st["failed"] == 0 and st["done"] == 202


def test_pool_sigkill_mid_task_reruns_it(tmp_path):
    marks, started = str(tmp_path / "m"), str(tmp_path / "s")
    with Pool(2) as p:
        r = p.apply_async(H.first_run_blocks, (marks, started, "v"))
        m = p.map_async(H.busy_square, range(100), 3)
        killed = kill_when_started(started)
        assert r.get(H.DEADLINE) == ("v", r.get()[1]) and r.get()[1] != killed
        assert m.get(H.DEADLINE) == [i * i for i in range(100)]
        assert stats(p)["retried"] == 1


def test_kill_during_map_and_imap(tmp_path):
    with Pool(2) as p:
        items = [(str(tmp_path / "m"), str(tmp_path / "s"), i) if i == 17 else i for i in range(40)]
        r = p.map_async(_item, items, 4)
        kill_when_started(str(tmp_path / "s"))
        assert r.get(H.DEADLINE) == list(range(40))
        items = [(str(tmp_path / "m2"), str(tmp_path / "s2"), i) if i == 5 else i for i in range(20)]
        it = p.imap(_item, items)
        kill_when_started(str(tmp_path / "s2"))
        assert list(it) == list(range(20))


def _item(x):
    return H.first_run_blocks_item(x) if isinstance(x, tuple) else x


# claimed (slot untouched), slot CLAIMED, half copied, filled but not committed: the dead worker's
# result is repaired into a tombstone (the result reader must not stall) and the task runs again;
# committed but not acked: the result counts; whether the task also runs again depends on which the
# parent saw first, the result or the death (a re-run's duplicate result is ignored)
@pytest.mark.parametrize("point", ["after_claim", "after_slot_cas", "mid_copy", "before_commit", "before_wake"])
def test_killed_while_writing_its_result(tmp_path, point):
    marks = str(tmp_path / "m")
    with Executor(2) as ex:
        f = ex.submit(H.crash_at, marks, point, "value")
        assert f.result(H.DEADLINE) == "value"
        H.wait_until(lambda: H.runs(marks) >= 1, "the first run's mark")
        with open(marks) as fh:
            crashed = int(fh.readline())
        H.wait_until(lambda: len(ex.worker_pids()) == 2 and crashed not in ex.worker_pids(),
                     "the crashed worker's replacement (its death handled)")
        retried = stats(ex)["retried"]
        assert retried == 1 or (point == "before_wake" and retried == 0)
        H.wait_until(lambda: H.runs(marks) == 1 + retried, "the re-run (the worker died before its ack)")
        assert [ex.submit(H.square, i).result(H.DEADLINE) for i in range(20)] == [i * i for i in range(20)]
        fs = [ex.submit(H.square, i) for i in range(300)]  # the result log wraps past the repaired slot
        assert [x.result(H.DEADLINE) for x in fs] == [i * i for i in range(300)]
        st = stats(ex)
        assert st["retried"] == retried and st["failed"] == 0 and H.runs(marks) == 1 + retried


@pytest.mark.parametrize("poison,code", [(H.kill_self, -signal.SIGKILL), ((H.exit_hard, 3), 3),
                                         (H.segfault, -signal.SIGABRT if UNDER_ASAN else -signal.SIGSEGV)])
def test_poison_task_fails_after_max_attempts(poison, code):
    fn, args = (poison[0], poison[1:]) if isinstance(poison, tuple) else (poison, ())
    with Executor(2, max_attempts=2) as ex:
        before = [ex.submit(H.busy_square, i, 0.2) for i in range(50)]
        f = ex.submit(fn, *args)
        after = [ex.submit(H.square, i) for i in range(50)]
        with pytest.raises(WorkerCrashedError) as ei:
            f.result(H.DEADLINE)
        e = ei.value
        assert isinstance(e, BrokenProcessPool)
        assert e.attempts == 2 and e.exitcode == code and e.pid > 0
        assert ("pid %d" % e.pid) in str(e) and "tried 2 time(s)" in str(e)
        assert [x.result(H.DEADLINE) for x in before] == [i * i for i in range(50)]
        assert [x.result(H.DEADLINE) for x in after] == [i * i for i in range(50)]
        assert ex.submit(H.square, 9).result(H.DEADLINE) == 81
        st = stats(ex)
        assert st["failed"] == 1 and st["retried"] == 1


def test_pool_poison_task():
    with Pool(2, max_attempts=3) as p:
        with pytest.raises(WorkerCrashedError, match="tried 3 time"):
            p.apply(H.kill_self)
        with pytest.raises(WorkerCrashedError):
            p.map(H.exit_hard, [0, 0], 1)  # os._exit(0) mid-task is a crash too
        assert p.map(H.square, range(10)) == [i * i for i in range(10)]


def test_task_timeout(tmp_path):
    with Executor(1, task_timeout=0.3, max_attempts=2) as ex:
        t0 = time.monotonic()
        f = ex.submit(H.block_forever, str(tmp_path / "s"))
        with pytest.raises(TaskTimeoutError) as ei:
            f.result(H.DEADLINE)
        took = time.monotonic() - t0
        assert isinstance(ei.value, TimeoutError)
        assert 0.6 <= took < 10 and "task_timeout=0.3s 2 time(s)" in str(ei.value)
        assert ex.submit(H.square, 3).result(H.DEADLINE) == 9  # the pool goes on
        assert stats(ex)["timeouts"] == 2


def test_task_timeout_then_success(tmp_path):
    marks, started = str(tmp_path / "m"), str(tmp_path / "s")
    with Executor(2, task_timeout=0.3) as ex:
        quick = [ex.submit(H.busy_square, i, 0.5) for i in range(100)]
        value, _ = ex.submit(H.first_run_blocks, marks, started, 11).result(H.DEADLINE)
        assert value == 11 and H.runs(marks) == 2
        assert [q.result(H.DEADLINE) for q in quick] == [i * i for i in range(100)]
    with Pool(1, task_timeout=0.3, max_attempts=1) as p:
        with pytest.raises(TaskTimeoutError):
            p.apply(H.block_forever, (str(tmp_path / "s2"),))


@pytest.mark.skipif(UNDER_ASAN, reason="ASan's shadow memory inflates every worker's RSS and USS")
def test_max_memory_per_child():
    with Executor(1, max_memory_per_child=150 << 20) as ex:
        p1 = ex.submit(H.hog, 200 << 20).result(H.DEADLINE)
        p2 = ex.submit(H.getpid).result(H.DEADLINE)
        assert p1 != p2  # recycled after the hog
        assert ex.submit(H.getpid).result(H.DEADLINE) == p2  # small tasks stay on the same worker
    with Executor(1) as ex:
        p1 = ex.submit(H.hog, 200 << 20).result(H.DEADLINE)
        assert ex.submit(H.getpid).result(H.DEADLINE) == p1


def _own_a_pool(method, w, cls):
    """In a forked child: a pool with running tasks; report, then wait to be killed."""
    if method == "forkserver":
        # a forkserver an earlier test started belongs to the parent (waitpid on it fails here, in
        # CPython's ensure_running); forget it so this process starts its own
        from multiprocessing import forkserver
        fs = forkserver._forkserver
        fs._forkserver_pid = fs._forkserver_address = fs._forkserver_alive_fd = None
    ctx = mp.get_context(method)
    d = os.environ["SBT_POOL_DIR"]
    if cls == "pool":
        pool = Pool(2, context=ctx)
        for i in range(2):
            pool.apply_async(H.block_forever, (os.path.join(d, "s%d" % i),))
    else:
        pool = Executor(2, mp_context=ctx)
        for i in range(2):
            pool.submit(H.block_forever, os.path.join(d, "s%d" % i))
    pids = [int(H.wait_file(os.path.join(d, "s%d" % i))) for i in range(2)]
    os.write(w, ("%s %s\n" % (pool.name, " ".join(map(str, pids)))).encode())
    while True:
        time.sleep(1)  # until SIGKILL


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("cls", ["executor", "pool"])
def test_parent_sigkill_workers_exit_and_clean_up(tmp_path, method, cls, kids):
    os.environ["SBT_POOL_DIR"] = str(tmp_path)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            _own_a_pool(method, w, cls)
        except BaseException:  # the parent shows why
            import traceback
            os.write(w, ("ERROR " + traceback.format_exc().replace("\n", " | ") + "\n").encode())
        finally:
            os._exit(1)
    kids.append(pid)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.readline()
    line = text.split()
    assert line and line[0] != "ERROR", "the pool's owner did not report: %s" % text
    prefix, workers = line[0], [int(x) for x in line[1:]]
    stem = prefix.lstrip("/") + "."
    assert any(f.startswith(stem) for f in os.listdir("/dev/shm"))
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    H.wait_until(lambda: all(gone(p) for p in workers), "the workers to exit after their owner died", 10)
    H.wait_until(lambda: not any(f.startswith(stem) for f in os.listdir("/dev/shm")),
                 "the workers to remove the pool's segments", 10)
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("method", METHODS)
def test_every_start_method(tmp_path, method):
    ctx = mp.get_context(method)
    marks, started = str(tmp_path / "m"), str(tmp_path / "s")
    with Executor(2, mp_context=ctx, initializer=H.set_global, initargs=(method,)) as ex:
        assert ex.submit(H.get_global).result(H.DEADLINE) == method
        f = ex.submit(H.first_run_blocks, marks, started, method)
        killed = kill_when_started(started)
        assert f.result(H.DEADLINE)[0] == method and f.result()[1] != killed
        assert list(ex.map(H.square, range(20), chunksize=3)) == [i * i for i in range(20)]
    with Pool(2, context=ctx) as p:
        assert p.map(H.square, range(20)) == [i * i for i in range(20)]
        assert sorted(p.imap_unordered(H.square, range(5))) == [0, 1, 4, 9, 16]


@pytest.mark.parametrize("nbytes", [1 << 20, 100 << 20])
def test_numpy_arguments_and_results(nbytes):
    a = np.resize(np.arange(251, dtype=np.uint8), nbytes)
    want = float(a.sum(dtype=np.float64))
    with Executor(2) as ex:
        s, doubled = ex.submit(H.array_sum_and_double, a).result(H.DEADLINE)
        assert s == want and doubled.shape == a.shape and np.array_equal(doubled, a * 2)
        doubled[0] = 7  # writable in the parent too
        got = ex.submit(H.make_array, nbytes).result(H.DEADLINE)
        assert got.nbytes == nbytes and got[255] == 255 and got.flags.writeable
    with Pool(1) as p:
        s, doubled = p.apply(H.array_sum_and_double, (a,))
        assert s == want and np.array_equal(doubled, a * 2)


def test_numpy_argument_survives_a_kill(tmp_path):
    """A big argument lives in its own segment until the task is done: the
    re-run maps it again."""
    a = np.full(4 << 20, 3, dtype=np.uint8)
    with Executor(2) as ex:
        f = ex.submit(_sum_after_first_run, str(tmp_path / "m"), str(tmp_path / "s"), a)
        kill_when_started(str(tmp_path / "s"))
        assert f.result(H.DEADLINE) == 3 * (4 << 20)


def _sum_after_first_run(marks, started, a):
    H.first_run_blocks(marks, started, None)
    return int(a.sum(dtype=np.int64))


def test_repeated_kills_lose_nothing():
    with Executor(2, max_attempts=10) as ex:
        fs = [ex.submit(H.busy_square, i, 1.0) for i in range(600)]
        kills, killed = 0, set()
        while kills < 6 and not all(f.done() for f in fs):
            # a killed worker stays "running" in its slot until the pool has reaped it: a kill of its zombie
            # (which os.kill allows) would count without touching a task - each pid is killed once
            busy = [w["pid"] for w in ex._engine.status.snapshot()["workers"]
                    if w["state"] == "running" and w["pid"] not in killed]
            if not busy:
                time.sleep(0.001)  # a poll: between tasks, or a replacement still starting
                continue
            try:
                os.kill(busy[0], signal.SIGKILL)
            except ProcessLookupError:
                continue  # gone meanwhile (the slot lags its exit)
            killed.add(busy[0])
            kills += 1
            H.wait_until(lambda: gone(busy[0]), "the victim to die")
        assert [f.result(H.DEADLINE) for f in fs] == [i * i for i in range(600)]
        assert kills >= 3 and stats(ex)["retried"] >= 1 and stats(ex)["failed"] == 0


def test_workers_that_die_while_starting_break_the_pool():
    """An initializer that kills its process (no exception to report): after
    three such deaths in a row the pool's tasks fail, no endless respawn."""
    with Executor(1, initializer=H.exit_hard, initargs=(3,)) as ex:
        with pytest.raises(WorkerCrashedError, match="3 pool workers in a row died while starting") as ei:
            ex.submit(H.square, 2).result(H.DEADLINE)
        assert ei.value.exitcode == 3
        with pytest.raises(WorkerCrashedError):
            ex.submit(H.square, 2)


@pytest.mark.skipif(UNDER_ASAN, reason="ASan's shadow memory inflates every worker's RSS and USS")
def test_max_memory_counts_the_workers_own_pages():
    """A forked worker's RSS counts the parent's pages it shares copy-on-write:
    a parent of 200 MB must not get a 150 MB limit's worker recycled after
    every task."""
    big = np.ones((200 << 20) // 8)  # touched: resident in the parent, shared with forked workers
    with Executor(1, max_memory_per_child=150 << 20, mp_context=mp.get_context("fork")) as ex:
        pids = {ex.submit(H.getpid).result(H.DEADLINE) for _ in range(5)}
        assert len(pids) == 1, "a worker under the limit was recycled: %s" % sorted(pids)
    assert big[0] == 1.0  # (a worker's own 200 MB still count: test_max_memory_per_child)
