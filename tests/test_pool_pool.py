"""broker.pool.Pool against multiprocessing.Pool: the same tests run on
both (``impl``), except where ours differs by design (marked in the test's
docstring)."""
import gc
import multiprocessing as mp
import multiprocessing.pool as mpp
import sys
import threading
import warnings

import pytest

import pool_helpers as H
from pool_helpers import clean  # noqa: F401 (fixture)

from broker.errors import ClosedError, WorkerCrashedError
from broker.pool import Pool

pytestmark = pytest.mark.usefixtures("clean")


def make(impl, processes=2, *args, **kw):
    if impl == "stdlib":
        return mp.get_context("fork").Pool(processes, *args, **kw)
    return Pool(processes, *args, **kw)


@pytest.fixture(params=["stdlib", "broker"])
def impl(request):
    return request.param


def test_apply_and_apply_async(impl):
    with make(impl) as p:
        assert p.apply(H.square, (5,)) == 25
        assert p.apply(H.add, (1,), {"b": 2}) == 3
        r = p.apply_async(H.square, (6,))
        assert r.get(H.DEADLINE) == 36 and r.ready() and r.successful()


def test_async_result_not_ready_and_timeout(impl, tmp_path):
    with make(impl) as p:
        r = p.apply_async(H.block_then, (str(tmp_path / "s"), str(tmp_path / "go"), 7))
        H.wait_file(str(tmp_path / "s"))
        assert not r.ready()
        with pytest.raises(ValueError):
            r.successful()
        with pytest.raises(mp.TimeoutError):
            r.get(0.05)
        r.wait(0.05)
        assert not r.ready()
        H.announce(str(tmp_path / "go"))
        assert r.get(H.DEADLINE) == 7


def test_callbacks(impl):
    got, errs = [], []
    with make(impl) as p:
        r1 = p.apply_async(H.square, (3,), callback=got.append, error_callback=errs.append)
        r2 = p.apply_async(H.fail, ("bad",), callback=got.append, error_callback=errs.append)
        r3 = p.map_async(H.square, range(5), callback=got.append, error_callback=errs.append)
        r1.wait(H.DEADLINE), r2.wait(H.DEADLINE), r3.wait(H.DEADLINE)
        assert r1.successful() and not r2.successful() and r3.successful()
    assert sorted(got, key=str) == sorted([9, [0, 1, 4, 9, 16]], key=str)
    assert len(errs) == 1 and isinstance(errs[0], ValueError) and str(errs[0]) == "bad"


def test_exception_carries_the_remote_traceback(impl):
    with make(impl) as p:
        with pytest.raises(ValueError, match="deep") as ei:
            p.apply(H.fail, ("deep",))
        assert isinstance(ei.value.__cause__, mpp.RemoteTraceback)
        assert "raise ValueError(msg)" in str(ei.value.__cause__)


@pytest.mark.parametrize("chunksize", [None, 1, 3, 100])
def test_map_and_starmap(impl, chunksize):
    with make(impl) as p:
        assert p.map(H.square, range(40), chunksize) == [i * i for i in range(40)]
        assert p.map(H.square, (i for i in range(7)), chunksize) == [i * i for i in range(7)]
        assert p.starmap(H.add, [(i, i) for i in range(9)], chunksize) == [2 * i for i in range(9)]
        assert p.map_async(H.square, range(5), chunksize).get(H.DEADLINE) == [0, 1, 4, 9, 16]
        assert p.starmap_async(H.add, [(1, 2)], chunksize).get(H.DEADLINE) == [3]


def test_empty_iterables(impl):
    with make(impl) as p:
        assert p.map(H.square, []) == []
        assert p.starmap(H.add, []) == []
        assert list(p.imap(H.square, [])) == []
        assert list(p.imap_unordered(H.square, [])) == []
        r = p.map_async(H.square, [])
        assert r.ready() and r.get(1) == []


def test_map_error_fails_the_map(impl):
    with make(impl) as p:
        with pytest.raises(TypeError):
            p.map(H.square, [1, 2, "x", 4], chunksize=1)
        assert p.map(H.square, [3]) == [9]


@pytest.mark.parametrize("chunksize", [1, 4])
def test_imap_and_imap_unordered(impl, chunksize):
    with make(impl) as p:
        assert list(p.imap(H.square, range(30), chunksize)) == [i * i for i in range(30)]
        assert sorted(p.imap_unordered(H.square, iter(range(30)), chunksize)) == [i * i for i in range(30)]
        it = p.imap(H.square, range(3), chunksize)
        assert it.__iter__() is it or chunksize > 1


def test_imap_next_timeout(impl, tmp_path):
    with make(impl) as p:
        it = p.imap(_block_one, [(str(tmp_path / "s"), str(tmp_path / "go"), 4)])
        with pytest.raises(mp.TimeoutError):
            it.next(0.05)
        H.announce(str(tmp_path / "go"))
        assert it.next(H.DEADLINE) == 4
        with pytest.raises(StopIteration):
            it.next(H.DEADLINE)


def _block_one(args):
    return H.block_then(*args)


def test_imap_error_raises_at_its_position(impl):
    with make(impl) as p:
        it = p.imap(H.square, [1, "x", 3])
        assert next(it) == 1
        with pytest.raises(TypeError):
            next(it)
        assert next(it) == 9


def test_imap_iterable_that_raises(impl):
    def gen():
        yield 1
        yield 2
        raise RuntimeError("the input broke")
    with make(impl) as p:
        it = p.imap(H.square, gen())
        assert next(it) == 1 and next(it) == 4
        with pytest.raises(RuntimeError, match="the input broke"):
            next(it)
        with pytest.raises(StopIteration):
            next(it)


def test_unpicklable_result_is_maybe_encoding_error(impl):
    with make(impl) as p:
        with pytest.raises(mpp.MaybeEncodingError) as ei:
            p.apply(H.make_lock)
        assert "Error sending result" in str(ei.value) and "lock" in str(ei.value)
        assert p.apply(H.square, (2,)) == 4


def test_unpicklable_argument(impl):
    with make(impl) as p:
        with pytest.raises(TypeError, match="pickle"):
            p.apply(H.takes, (H.make_lock(),))
        with pytest.raises(TypeError, match="pickle"):
            p.map(H.takes, [1, H.make_lock()])
        assert p.apply(H.square, (3,)) == 9


def test_initializer_and_maxtasksperchild(impl):
    with make(impl, 1, H.set_global, ("x",), 2) as p:
        pids = [p.apply(H.getpid) for _ in range(4)]
        assert p.apply(H.get_global) == "x"  # the initializer ran in the third worker too
    assert pids[0] == pids[1] != pids[2] == pids[3]  # two tasks per worker


def test_close_and_join(impl):
    p = make(impl)
    r = p.map_async(H.square, range(20))
    with pytest.raises(ValueError):
        p.join()  # still running
    p.close()
    with pytest.raises(ValueError, match="Pool not running"):
        p.apply_async(H.square, (1,))
    p.join()
    assert r.get(1) == [i * i for i in range(20)]


def test_terminate_and_context_manager(impl):
    with make(impl) as p:
        assert p.apply(H.square, (2,)) == 4
    with pytest.raises(ValueError, match="Pool not running"):
        p.apply(H.square, (2,))
    with pytest.raises(ValueError):
        p.__enter__()
    p.join()
    q = make(impl)
    q.terminate()
    q.join()


def test_bad_arguments(impl):
    with pytest.raises(ValueError):
        make(impl, 0)
    with pytest.raises(ValueError):
        make(impl, 1, None, (), 0)
    with pytest.raises(TypeError):
        make(impl, 1, 5)
    with make(impl) as p:
        with pytest.raises(ValueError):
            list(p.imap(H.square, [1], 0))


def test_terminate_fails_unfinished_results(tmp_path):
    """ours: multiprocessing.Pool leaves their get() waiting for ever."""
    p = Pool(1)
    r = p.apply_async(H.block_forever, (str(tmp_path / "s"),))
    queued = p.apply_async(H.square, (3,))
    H.wait_file(str(tmp_path / "s"))
    p.terminate()
    for x in (r, queued):
        with pytest.raises(ClosedError, match="terminated"):
            x.get(H.DEADLINE)


def test_initializer_failure_fails_the_tasks():
    """ours: multiprocessing.Pool restarts failing workers for ever (a hang)."""
    with Pool(2, H.bad_init) as p:
        with pytest.raises(WorkerCrashedError, match="initializer"):
            p.apply_async(H.square, (1,)).get(H.DEADLINE)
        with pytest.raises(WorkerCrashedError):
            p.apply(H.square, (1,))


def test_callback_that_raises_is_logged(caplog):
    """ours: multiprocessing's result thread dies on it (later results hang)."""
    def bad(_):
        raise RuntimeError("callback broke")
    with Pool(1) as p:
        r = p.apply_async(H.square, (2,), callback=bad)
        assert r.get(H.DEADLINE) == 4
        assert p.apply(H.square, (3,)) == 9
    assert "callback broke" in caplog.text


def test_garbage_collected_running_pool_is_terminated(tmp_path):
    """ours as multiprocessing's: a ResourceWarning, then terminate (and
    ours fails the unfinished results instead of leaving them waiting)."""
    p = Pool(1)
    r = p.apply_async(H.block_forever, (str(tmp_path / "s"),))
    H.wait_file(str(tmp_path / "s"))
    pids = p.worker_pids()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        del p
        gc.collect()
    assert any(issubclass(x.category, ResourceWarning) for x in w)
    del w  # its warning holds the pool (source=)
    gc.collect()
    with pytest.raises(ClosedError):
        r.get(H.DEADLINE)
    H.wait_until(lambda: not any(_alive(pid) for pid in pids), "the workers to exit")


def _alive(pid):
    import psutil
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_imap_progress(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with Pool(2) as p:
        assert list(p.imap(H.square, range(12), 5, progress=True)) == [i * i for i in range(12)]
        assert sorted(p.imap_unordered(H.square, iter(range(4)), progress=True)) == [0, 1, 4, 9]
    err = capsys.readouterr().err
    assert "square: 12/12 100%" in err and "square: 4 " in err


def test_map_from_many_threads():
    with Pool(2) as p:
        out = {}

        def run(k):
            out[k] = p.map(H.square, range(k, k + 50), 7)
        ts = [threading.Thread(target=run, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(H.DEADLINE)
    assert out == {k: [i * i for i in range(k, k + 50)] for k in range(4)}


def test_unpicklable_exception_is_maybe_encoding_error(impl):
    with make(impl) as p:
        with pytest.raises(mpp.MaybeEncodingError, match="cannot pickle"):
            p.apply(H.raise_unpicklable)
        assert p.apply(H.square, (2,)) == 4


_EXIT_SCRIPT = """
import multiprocessing as mp, sys
sys.path[:0] = {path!r}
import pool_helpers as H
from broker.pool import Pool
p = Pool(2) if {impl!r} == "broker" else mp.get_context("fork").Pool(2)
print(p.apply(H.getpid), flush=True)
r = p.apply_async(H.block_forever, ({started!r},))
H.wait_file({started!r})
"""


def test_interpreter_exit_terminates_a_busy_pool(impl, tmp_path):
    import os
    import subprocess
    import textwrap
    started = str(tmp_path / "s")
    script = _EXIT_SCRIPT.format(path=[os.path.dirname(__file__)] + sys.path, impl=impl, started=started)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                       timeout=H.DEADLINE)
    assert r.returncode == 0, r.stderr
    worker = int(r.stdout.split()[0])
    blocked = int(H.wait_file(started))
    H.wait_until(lambda: not _alive(worker) and not _alive(blocked), "the pool's workers to exit")


def test_terminate_stops_an_endless_imap():
    """ours: the endless input stops being read, its iterator ends with
    ClosedError (multiprocessing's keeps feeding, and next() waits for ever)."""
    import itertools
    p = Pool(2)
    it = p.imap(H.square, itertools.count())
    assert [it.next(H.DEADLINE) for _ in range(5)] == [0, 1, 4, 9, 16]
    p.terminate()
    with pytest.raises(ClosedError):
        for _ in range(10 ** 9):
            it.next(H.DEADLINE)
    p._handler.join(H.DEADLINE)
    assert not p._handler.is_alive()


def test_imap_reads_its_input_as_it_is_consumed():
    """ours: at most shm.pool.slots items of an imap are sent ahead of next()
    (multiprocessing's reads the whole input at once, endless or not)."""
    import itertools
    read = []

    def source():
        for i in itertools.count():
            read.append(i)
            yield i
    with Pool(2, **{"shm.pool.slots": 16}) as p:
        it = p.imap(H.square, source())
        assert [it.next(H.DEADLINE) for _ in range(40)] == [i * i for i in range(40)]
        H.wait_until(lambda: len(read) >= 40 + 16, "the feeder to fill its room")
        assert len(read) <= 40 + 16 + 2


def test_a_result_wakes_next_while_the_feeder_also_waits():
    """The imap iterator's condition has two kinds of waiters: next() for a
    result and the feeder for room.  A result must wake next() even when the
    feeder has waited longer (a plain notify() woke only the oldest waiter:
    next() without a timeout then hung for good)."""
    from broker.pool.pool import IMapIterator

    class Engine:
        terminating = False
    it = IMapIterator()
    feeder = threading.Thread(target=it._wait_room, args=(0, Engine()), daemon=True)
    feeder.start()
    H.wait_until(lambda: it._feeder_waits and len(it._cond._waiters) == 1, "the feeder to wait for room")
    got = []
    # no timeout: a timed next() would find the item when its own wait ends, hiding the lost wakeup
    reader = threading.Thread(target=lambda: got.append(it.next()), daemon=True)
    reader.start()
    H.wait_until(lambda: len(it._cond._waiters) == 2, "next() to wait beside the feeder")
    it._put(0, True, 42)
    reader.join(H.DEADLINE)
    assert got == [42], "next() was not woken by the result"
    Engine.terminating = True  # the feeder's wait ends
    feeder.join(H.DEADLINE)
    assert not feeder.is_alive()
