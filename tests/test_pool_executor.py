"""broker.pool.Executor against concurrent.futures.ProcessPoolExecutor: the
same tests run on both (``impl``), except where ours differs by design
(marked in the test's docstring)."""
import asyncio
import concurrent.futures as cf
import gc
import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures.process import BrokenProcessPool

import pytest

import pool_helpers as H
from pool_helpers import clean  # noqa: F401 (fixture)

from broker.errors import ConfigError, WorkerCrashedError
from broker.pool import Executor
from shm.workqueue import WorkQueue

pytestmark = pytest.mark.usefixtures("clean")
FORK = mp.get_context("fork")


def make(impl, max_workers=2, **kw):
    if impl == "stdlib":
        if kw.get("max_tasks_per_child") and "mp_context" not in kw:
            kw["mp_context"] = mp.get_context("spawn")
        return cf.ProcessPoolExecutor(max_workers, **kw)
    return Executor(max_workers, **kw)


@pytest.fixture(params=["stdlib", "broker"])
def impl(request):
    return request.param


def test_submit_result_and_remote_traceback(impl):
    with make(impl) as ex:
        assert ex.submit(H.square, 7).result(H.DEADLINE) == 49
        assert ex.submit(H.add, 2, b=3).result(H.DEADLINE) == 5
        f = ex.submit(H.fail, "no good")
        with pytest.raises(ValueError, match="no good") as ei:
            f.result(H.DEADLINE)
        cause = ei.value.__cause__
        assert type(cause).__name__.endswith("RemoteTraceback")
        assert 'raise ValueError(msg)' in str(cause) and "Traceback" in str(cause)
        assert isinstance(f.exception(), ValueError)


def test_map_orders_results(impl):
    with make(impl) as ex:
        assert list(ex.map(H.square, range(50))) == [i * i for i in range(50)]
        assert list(ex.map(H.add, range(10), range(100, 110), chunksize=3)) == [100 + 2 * i for i in range(10)]
        assert list(ex.map(H.square, [])) == []
        with pytest.raises(ValueError):
            ex.map(H.square, range(3), chunksize=0)


def test_map_raises_the_first_error_in_order(impl):
    with make(impl) as ex:
        it = ex.map(H.square, [1, 2, "x", 4])
        assert next(it) == 1 and next(it) == 4
        with pytest.raises(TypeError):
            next(it)


def test_map_timeout(impl, tmp_path):
    go = str(tmp_path / "go")
    with make(impl, 1) as ex:
        it = ex.map(H.block_then, [str(tmp_path / "s")], [go], [1], timeout=0.2)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            next(it)
        assert time.monotonic() - t0 < 10
        H.announce(go)


def test_as_completed_and_wait(impl, tmp_path):
    go = str(tmp_path / "go")
    with make(impl) as ex:
        slow = ex.submit(H.block_then, str(tmp_path / "s"), go, "slow")
        fast = [ex.submit(H.square, i) for i in range(5)]
        done = {f.result() for f in cf.as_completed(fast, timeout=H.DEADLINE)}
        assert done == {0, 1, 4, 9, 16}
        d, nd = cf.wait(fast + [slow], timeout=H.DEADLINE, return_when=cf.FIRST_COMPLETED)
        assert d and slow in nd
        H.announce(go)
        d, nd = cf.wait(fast + [slow], timeout=H.DEADLINE)
        assert not nd and slow.result() == "slow"


def test_asyncio_run_in_executor(impl):
    with make(impl) as ex:
        async def main():
            loop = asyncio.get_running_loop()
            return await asyncio.gather(*(loop.run_in_executor(ex, H.square, i) for i in range(10)))
        assert asyncio.run(asyncio.wait_for(main(), H.DEADLINE)) == [i * i for i in range(10)]


def test_submit_after_shutdown(impl):
    ex = make(impl)
    assert ex.submit(H.square, 2).result(H.DEADLINE) == 4
    ex.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(H.square, 2)
    ex.shutdown()  # twice is fine


def test_shutdown_cancel_futures(impl, tmp_path):
    started, go = str(tmp_path / "s"), str(tmp_path / "go")
    ex = make(impl, 1)
    running = ex.submit(H.block_then, started, go, "ran")
    H.wait_file(started)
    queued = [ex.submit(H.mark, str(tmp_path / "m")) for _ in range(20)]
    ex.shutdown(wait=False, cancel_futures=True)
    H.announce(go)
    assert running.result(H.DEADLINE) == "ran"
    cancelled = [f.cancelled() for f in queued]
    assert all(cancelled[2:])  # ProcessPoolExecutor keeps one call queued beyond the running one
    ex.shutdown(wait=True)
    if impl == "broker":  # ProcessPoolExecutor leaves the two it had queued "running" for ever
        assert all(cancelled) and H.runs(str(tmp_path / "m")) == 0


def test_cancel_a_queued_future(impl, tmp_path):
    started, go = str(tmp_path / "s"), str(tmp_path / "go")
    with make(impl, 1) as ex:
        first = ex.submit(H.block_then, started, go, 1)
        H.wait_file(started)
        fs = [ex.submit(H.mark, str(tmp_path / "m")) for _ in range(10)]
        assert fs[-1].cancel() and fs[-1].cancelled() and fs[-1].done()
        with pytest.raises(cf.CancelledError):
            fs[-1].result()
        H.announce(go)
        assert first.result(H.DEADLINE) == 1
        for f in fs[:-1]:
            f.result(H.DEADLINE)
        assert not first.cancel()  # done
    assert H.runs(str(tmp_path / "m")) == 9


def test_cancel_of_a_running_task_fails(tmp_path):
    """ours: a future stays PENDING while queued; cancel() of a task a worker
    holds fails and marks it RUNNING."""
    started, go = str(tmp_path / "s"), str(tmp_path / "go")
    with Executor(1) as ex:
        f = ex.submit(H.block_then, started, go, 5)
        H.wait_file(started)
        assert not f.running()
        assert not f.cancel() and f.running()
        H.announce(go)
        assert f.result(H.DEADLINE) == 5


def test_initializer(impl):
    with make(impl, 2, initializer=H.set_global, initargs=("ready",)) as ex:
        assert {ex.submit(H.get_global).result(H.DEADLINE) for _ in range(6)} == {"ready"}


def test_initializer_failure_breaks_the_pool(impl):
    with make(impl, 2, initializer=H.bad_init) as ex:
        for _ in range(2):  # the future fails, or submit raises once the pool knows
            with pytest.raises(BrokenProcessPool):
                ex.submit(H.square, 3).result(H.DEADLINE)


def test_initializer_failure_names_the_error():
    with Executor(1, initializer=H.bad_init) as ex:
        with pytest.raises(WorkerCrashedError, match="initializer raised RuntimeError: initializer fails") as ei:
            ex.submit(H.square, 3).result(H.DEADLINE)
        assert "raise RuntimeError" in str(ei.value.__cause__)


def test_max_tasks_per_child(impl):
    with make(impl, 1, max_tasks_per_child=1) as ex:
        pids = [ex.submit(H.getpid).result(H.DEADLINE) for _ in range(3)]
    assert len(set(pids)) == 3


def test_unpicklable_argument_fails_that_future(impl):
    with make(impl) as ex:
        f = ex.submit(H.takes, H.make_lock())
        with pytest.raises(TypeError, match="pickle"):
            f.result(H.DEADLINE)
        assert ex.submit(H.square, 4).result(H.DEADLINE) == 16


def test_unpicklable_result_fails_that_future(impl):
    with make(impl) as ex:
        f = ex.submit(H.make_lock)
        with pytest.raises(TypeError, match="pickle"):
            f.result(H.DEADLINE)
        assert ex.submit(H.square, 5).result(H.DEADLINE) == 25


def test_argument_that_fails_to_unpickle_in_the_worker():
    """ours: the worker reports it on that future, the pool goes on."""
    with Executor(1) as ex:
        f = ex.submit(H.takes, _Unloadable())
        with pytest.raises(RuntimeError, match="cannot be loaded") as ei:
            f.result(H.DEADLINE)
        assert "_load" in str(ei.value.__cause__)
        assert ex.submit(H.square, 6).result(H.DEADLINE) == 36


class _Unloadable:
    def __reduce__(self):
        return (_load, ())


def _load():
    raise RuntimeError("this argument cannot be loaded")


def test_submit_from_a_done_callback(impl):
    with make(impl) as ex:
        out = cf.Future()
        ex.submit(H.square, 3).add_done_callback(lambda f: out.set_result(ex.submit(H.square, f.result())))
        assert out.result(H.DEADLINE).result(H.DEADLINE) == 81


def test_result_of_another_future_inside_a_callback(tmp_path):
    """ours: the callback's result() reads results itself (ProcessPoolExecutor
    deadlocks here: its only result reader runs the callback)."""
    with Executor(2) as ex:
        out = cf.Future()
        second = ex.submit(H.block_then, str(tmp_path / "s"), str(tmp_path / "go"), "second")
        H.wait_file(str(tmp_path / "s"))

        def cb(_):
            H.announce(str(tmp_path / "go"))
            out.set_result(second.result(H.DEADLINE))
        ex.submit(H.square, 2).add_done_callback(cb)
        assert out.result(H.DEADLINE) == "second"


def test_garbage_collected_while_busy(impl, tmp_path):
    go = str(tmp_path / "go")
    ex = make(impl)
    fs = [ex.submit(H.block_then, str(tmp_path / ("s%d" % i)), go, i) for i in range(4)]
    del ex
    gc.collect()
    H.announce(go)
    assert [f.result(H.DEADLINE) for f in fs] == [0, 1, 2, 3]


_EXIT_SCRIPT = """
import sys
sys.path[:0] = {path!r}
import pool_helpers as H
from concurrent.futures import ProcessPoolExecutor
from broker.pool import Executor
cls = Executor if {impl!r} == "broker" else ProcessPoolExecutor
ex = cls(2)
fs = [ex.submit(H.mark, {marks!r}) for _ in range(20)]
{shutdown}
"""


@pytest.mark.parametrize("shutdown", ["", "ex.shutdown(wait=False)"])
def test_interpreter_exit_finishes_the_tasks(impl, tmp_path, shutdown):
    marks = str(tmp_path / "m")
    script = _EXIT_SCRIPT.format(path=[os.path.dirname(__file__)] + sys.path, impl=impl, marks=marks,
                                 shutdown=shutdown)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                       timeout=H.DEADLINE)
    assert r.returncode == 0, r.stderr
    assert H.runs(marks) == 20
    assert "Traceback" not in r.stderr


def test_progress_bar(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # the plain line, whether tqdm is installed or not
    with Executor(2) as ex:
        assert list(ex.map(H.square, range(30), chunksize=4, progress=True)) == [i * i for i in range(30)]
    err = capsys.readouterr().err
    assert "square: 30/30 100%" in err and err.endswith("\n")


def test_bad_arguments(impl):
    with pytest.raises(ValueError):
        make(impl, 0)
    with pytest.raises(TypeError):
        make(impl, 1, initializer=5)


def test_our_bad_arguments():
    with pytest.raises(ConfigError, match="shm.pool.slots"):
        Executor(1, **{"shm.pool.slotz": 8})
    with pytest.raises(ConfigError, match="power of two"):
        Executor(1, **{"shm.pool.slots": 1000})
    for kw in ({"max_attempts": 0}, {"task_timeout": -1}, {"max_memory_per_child": 0}, {"max_tasks_per_child": 0}):
        with pytest.raises(ValueError):
            Executor(1, **kw)


def test_a_full_ring_backlogs_without_blocking(tmp_path):
    """ours: with a 16-slot task ring, 200 submits return at once (the rest
    wait in the parent) and all run."""
    started, go = str(tmp_path / "s"), str(tmp_path / "go")
    with Executor(1, **{"shm.pool.slots": 16}) as ex:
        first = ex.submit(H.block_then, started, go, "first")
        H.wait_file(started)
        fs = [ex.submit(H.square, i) for i in range(200)]
        assert ex._engine._backlog  # the ring is full
        assert fs[150].cancel()
        H.announce(go)
        assert first.result(H.DEADLINE) == "first"
        assert [f.result(H.DEADLINE) for f in fs if not f.cancelled()] == [i * i for i in range(200) if i != 150]


def test_segments_are_named_for_stat_and_removed(tmp_path):
    from broker.pool._status import pool_snapshots
    with Executor(2) as ex:
        prefix = ex.name
        assert prefix.startswith("/shmb.pool.%d." % os.getpid())
        assert ex.submit(H.square, 3).result(H.DEADLINE) == 9
        snap = [s for s in pool_snapshots() if s["name"] == prefix + ".s"]
        assert len(snap) == 1 and snap[0]["kind"] == "executor" and snap[0]["owner"] == os.getpid()
        assert sorted(w["pid"] for w in snap[0]["workers"]) == sorted(ex.worker_pids())
        assert snap[0]["tasks"]["submitted"] == 1 and snap[0]["tasks"]["done"] == 1
        assert any(f.startswith(prefix[1:] + ".") for f in os.listdir("/dev/shm"))
    assert not any(f.startswith(prefix[1:] + ".") for f in os.listdir("/dev/shm"))


def test_stat_shows_pools(tmp_path, ns):
    from broker import Producer
    from broker.cli import main
    Producer({"shm.namespace": ns}).close()  # the namespace exists
    with Executor(2) as ex:
        assert ex.submit(H.square, 3).result(H.DEADLINE) == 9
        r = subprocess.run([sys.executable, "-m", "broker", "stat", "--namespace", ns, "--count", "1"],
                           capture_output=True, text=True, timeout=H.DEADLINE)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        head = [i for i, ln in enumerate(lines) if ln.startswith("POOL ")]
        assert head, r.stdout
        row = [ln for ln in lines if ln.startswith(ex.name)]
        assert row and "executor" in row[0]
        for pid in ex.worker_pids():
            assert any(ln.split()[:1] == [str(pid)] for ln in lines), r.stdout
    assert main is not None


def test_workqueue_cancel(tmp_path):
    wq = WorkQueue.create("/sbt%d_wqc" % os.getpid(), slot_count=8, data_capacity=1 << 12)
    try:
        offs = [wq.put(b"x%d" % i) for i in range(4)]
        assert wq.cancel(offs[1]) and not wq.cancel(offs[1])
        o, v, _ = wq.take(7, timeout=1)
        assert (o, v) == (offs[0], b"x0")
        assert not wq.cancel(o)  # a taker holds it
        o2, v2, _ = wq.take(7, timeout=1)
        assert (o2, v2) == (offs[2], b"x2")  # the cancelled one is never taken
        assert wq.ack(o, 7)
        assert wq.stats()["floor"] == offs[2]  # done prefix: 0 acked, 1 cancelled
        assert not wq.cancel(offs[3] + 5)  # not in the queue
    finally:
        wq.destroy()


def test_records_over_the_ring_record_size_spill(impl):
    """Pickles over 1 MiB without out-of-band buffers (a long list) travel
    in segments of their own, both ways."""
    big = list(range(400_000))
    with make(impl) as ex:
        assert ex.submit(len, big).result(H.DEADLINE) == 400_000
        assert ex.submit(H.make_list, 400_000).result(H.DEADLINE) == big


def test_unpicklable_exception(impl):
    with make(impl) as ex:
        with pytest.raises(TypeError, match="pickle"):
            ex.submit(H.raise_unpicklable).result(H.DEADLINE)
        assert ex.submit(H.square, 2).result(H.DEADLINE) == 4


def test_many_threads_wait_on_the_same_futures(impl):
    import threading
    with make(impl) as ex:
        fs = [ex.submit(H.square, i) for i in range(400)]
        out, errs = [], []

        def waiter(k):
            try:
                if k % 2:
                    out.append(sum(f.result(H.DEADLINE) for f in fs))
                else:
                    done, _ = cf.wait(fs, timeout=H.DEADLINE)
                    out.append(sum(f.result() for f in done))
            except BaseException as e:  # reported below
                errs.append(e)
        ts = [threading.Thread(target=waiter, args=(k,)) for k in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(H.DEADLINE)
        assert not errs and out == [sum(i * i for i in range(400))] * 6


def test_waits_from_two_threads_over_finished_and_pending_futures():
    """A future finished before anyone asked for its condition shares a no-op
    one (executor._Finished); cf.wait takes futures' conditions in id order,
    so two threads waiting on overlapping sets must still never deadlock,
    and every wait must see every result."""
    import threading
    with Executor(2) as ex:
        done = [ex.submit(H.square, i) for i in range(50)]
        assert [f.result(H.DEADLINE) for f in done] == [i * i for i in range(50)]
        pending = [ex.submit(H.busy_square, i, 0.002) for i in range(50)]
        mixed = done + pending
        out, errors = [], []

        def waiter(fs):
            try:
                for _ in range(20):
                    d, nd = cf.wait(fs, timeout=H.DEADLINE)
                    assert not nd
                    out.append(sorted(f.result() for f in d))
                    assert sorted(f.result() for f in cf.as_completed(fs, timeout=H.DEADLINE)) == out[-1]
            except BaseException as e:  # noqa: B036 - reported to the test
                errors.append(e)

        ts = [threading.Thread(target=waiter, args=(x,)) for x in (mixed, mixed[::-1])]
        for t in ts:
            t.start()
        for t in ts:
            t.join(H.DEADLINE)
        assert not any(t.is_alive() for t in ts) and not errors
        assert len(out) == 40 and all(r == sorted([i * i for i in range(50)] * 2) for r in out)
        called = []
        done[0].add_done_callback(called.append)  # a finished future calls it at once
        assert called == [done[0]] and done[0].cancel() is False and done[0].done()


def test_completing_a_finished_future_again_raises_at_once():
    """set_result/set_exception on a future completed without a condition
    raise InvalidStateError (its message's repr reads the condition: made
    outside the lock the completion holds, not a deadlock)."""
    from broker.pool.executor import _Future
    f = _Future()
    f.set_result(1)
    out = {}

    def again():
        for call in (lambda: f.set_result(2), lambda: f.set_exception(ValueError())):
            try:
                call()
            except cf.InvalidStateError as e:
                out.setdefault("errors", []).append(str(e))
    t = threading.Thread(target=again, daemon=True)
    t.start()
    t.join(H.DEADLINE)
    assert not t.is_alive(), "completing a finished future again hung"
    assert len(out["errors"]) == 2 and all("FINISHED" in e for e in out["errors"]), out
    assert f.result() == 1


def test_futures_make_their_lists_and_condition_only_when_used(tmp_path):
    """A burst of futures completed before anyone looks at them carries no
    condition and no waiter or callback list (fewer objects for the
    garbage collector); cf.wait, as_completed and callbacks still work on
    them, and on futures waited for before they finish."""
    with Executor(1) as ex:
        fs = [ex.submit(abs, -i) for i in range(200)]
        H.wait_until(lambda: all(f._state == "FINISHED" for f in fs), "every future to finish")
        # (what the descriptors made; not vars(f), which would build each future's __dict__)
        untouched = [f for f in fs if (f._cond, f._waiters_made, f._done_callbacks_made) == (None, None, None)]
        assert len(untouched) > 100, len(untouched)  # most were completed by the results thread untouched
        done, todo = cf.wait(fs, H.DEADLINE)
        assert len(done) == 200 and not todo
        assert sorted(f.result() for f in cf.as_completed(fs, H.DEADLINE)) == list(range(200))
        seen = []
        fs[0].add_done_callback(lambda f: seen.append(f.result()))  # finished: called at once
        assert seen == [0]
        started, go = str(tmp_path / "started"), str(tmp_path / "go")
        g = ex.submit(H.block_then, started, go, 7)
        H.wait_file(started)
        g.add_done_callback(lambda f: seen.append(f.result()))  # before it finishes
        H.announce(go)
        assert cf.wait([g], H.DEADLINE).done == {g} and g.result() == 7
        H.wait_until(lambda: seen == [0, 7], "the callback of a future completed after it was added")
    # none of this built a future's __dict__ (3.11 builds it from the inline values on first read, and two
    # threads doing so at once corrupt the heap): the collector sees the attributes' values, not a dict
    assert not [f for f in fs + [g] if any(type(r) is dict for r in gc.get_referents(f))]
