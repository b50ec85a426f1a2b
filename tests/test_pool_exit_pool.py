"""multiprocessing.Pool's terminate/close/join/GC/interpreter-exit contracts
checked against broker.pool.Pool, on Lib/test/_test_multiprocessing.py's
pool tests (each test names the one it models; see test_pool_exit.py for
the rules every test here follows: a deadline, no worker or segment left)."""
import gc
import time
import warnings
import weakref

import pytest

import pool_helpers as H
from pool_helpers import clean  # noqa: F401 (fixture)
from pool_exit_helpers import Counted, finishes, identity, raise_value_error, run_child, track  # noqa: F401

from broker.errors import ClosedError
from broker.pool import Pool

pytestmark = pytest.mark.usefixtures("clean")


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
