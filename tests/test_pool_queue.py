"""broker.Queue, JoinableQueue, SimpleQueue.

API parity: the same test functions run against multiprocessing's queues
and ours.  Then what is ours by design: any start method and Pool
arguments, numpy arrays of 1 MB and 100 MB, and crashes with real
processes (a SIGKILLed getter's item is delivered again, a getter that
exits normally is not, a SIGKILLed creator's segments are removed, a putter
killed mid-put is passed over), each synchronised on events with deadlines.
"""
import gc
import multiprocessing as mp
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import broker
from broker.admin import AdminClient, NewTopic
from broker.errors import ClosedError
from broker.logs import log_path
from broker.namespace import MEMBER_QUEUE, TOKEN_BASE, TOKEN_SPAN, Namespace, destroy
from broker.pool import _queues
from shm.segment import Segment, exists
from shm.workqueue import WorkQueue

from conftest import deadline_wait

METHODS = ["fork", "spawn", "forkserver"]
DEADLINE = 30


@pytest.fixture(autouse=True)
def nothing_left():
    """After each test (and its namespace's destroy): no segment of this
    run's test namespaces, no supervisor of theirs, no child of ours."""
    yield
    stem = "shmb.sbtns%d_" % os.getpid()
    assert [f for f in os.listdir("/dev/shm") if f.startswith(stem)] == []
    deadline_wait(lambda: _supervisors() == [], 10, "the test namespaces' supervisors to exit")  # one that
    # was starting when destroy() ran was not told: it sees the namespace gone within a tick
    assert mp.active_children() == []


def _supervisors():
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if b"sbtns%d_" % os.getpid() in f.read():
                    out.append(int(pid))
        except OSError:
            pass
    return out


# -- the two implementations -----------------------------------------------------
class MpImpl:
    name = "multiprocessing"
    # its timed waits are semaphores with a CLOCK_REALTIME deadline: measured on CLOCK_MONOTONIC they can end
    # a little early (0.1993 s for a 0.2 s put, once in CI)
    early = 0.005

    def Queue(self, maxsize=0, ctx=None):
        return (ctx or mp).Queue(maxsize)

    def JoinableQueue(self, maxsize=0, ctx=None):
        return (ctx or mp).JoinableQueue(maxsize)

    def SimpleQueue(self, ctx=None):
        return (ctx or mp).SimpleQueue()


class BrokerImpl:
    name = "broker"
    early = 0.0  # CLOCK_MONOTONIC deadlines: never early

    def __init__(self, ns):
        self.conf = {"shm.namespace": ns, "shm.supervisor": "off"}  # no crash here: no supervisor to start

    def Queue(self, maxsize=0, ctx=None):
        return broker.Queue(maxsize, **self.conf)

    def JoinableQueue(self, maxsize=0, ctx=None):
        return broker.JoinableQueue(maxsize, **self.conf)

    def SimpleQueue(self, ctx=None):
        return broker.SimpleQueue(**self.conf)


@pytest.fixture(params=["multiprocessing", "broker"])
def impl(request, ns):
    yield MpImpl() if request.param == "multiprocessing" else BrokerImpl(ns)
    gc.collect()  # handles dropped by the test: their finalizers run while the namespace exists


def settle(pred, what):
    """multiprocessing's empty() lags its feeder thread: wait for *pred*."""
    deadline_wait(pred, 10, what)


OBJECTS = [None, 0, -7, 2 ** 80, 1.5, "text", "ünïcode", b"", b"bytes", bytearray(b"ba"), (1, (2, 3)), [1, [2]],
           {"a": {"b": [1, 2]}}, {1, 2}, ValueError("boom"), np.arange(10), np.zeros((3, 4), dtype=np.float32)]


def same(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and (a == b).all()
    if isinstance(a, Exception):
        return type(a) is type(b) and a.args == b.args
    return type(a) is type(b) and a == b


# -- parity ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["Queue", "JoinableQueue", "SimpleQueue"])
def test_objects_round_trip_in_order(impl, kind):
    q = getattr(impl, kind)()
    for obj in OBJECTS:
        q.put(obj)
    got = [q.get() for _ in OBJECTS]
    assert all(same(a, b) for a, b in zip(OBJECTS, got)), got
    q.close()


def test_get_raises_empty_at_once_or_after_its_timeout(impl):
    q = impl.Queue()
    for call in (q.get_nowait, lambda: q.get(False), lambda: q.get(False, 5), lambda: q.get(timeout=0),
                 lambda: q.get(True, -1)):
        t0 = time.monotonic()
        with pytest.raises(queue.Empty):
            call()
        assert time.monotonic() - t0 < 1
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    assert 0.2 - impl.early <= time.monotonic() - t0 < 5
    q.put("x")
    assert q.get(timeout=5) == "x"
    q.close()


def test_maxsize_full_and_put_timeouts(impl):
    q = impl.Queue(2)
    q.put(1)
    q.put(2)
    assert q.full() and q.qsize() == 2
    for call in (lambda: q.put_nowait(3), lambda: q.put(3, False), lambda: q.put(3, False, 5),
                 lambda: q.put(3, timeout=0), lambda: q.put(3, True, -1)):
        t0 = time.monotonic()
        with pytest.raises(queue.Full):
            call()
        assert time.monotonic() - t0 < 1
    t0 = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.2)
    assert 0.2 - impl.early <= time.monotonic() - t0 < 5
    assert q.get() == 1
    assert not q.full() and q.qsize() == 1
    q.put_nowait(3)
    assert [q.get(), q.get()] == [2, 3]
    q.close()


def test_qsize_empty_full(impl):
    q = impl.Queue()
    assert (q.qsize(), q.empty(), q.full()) == (0, True, False)
    for i in range(3):
        q.put(i)
    assert q.qsize() == 3 and not q.full()
    settle(lambda: not q.empty(), "the items to show")
    assert [q.get(timeout=5) for _ in range(3)] == [0, 1, 2]
    assert q.qsize() == 0 and q.empty()
    unbounded = impl.Queue(-5)  # <= 0: no bound
    for i in range(100):
        unbounded.put(i)
    assert not unbounded.full() and unbounded.qsize() == 100
    q.close()
    unbounded.close()


def test_close(impl):
    q = impl.Queue()
    with pytest.raises(AssertionError, match="not closed"):
        q.join_thread()
    q.put("kept")
    q.close()
    q.close()  # twice is fine
    with pytest.raises(ValueError, match="is closed"):
        q.put(1)
    with pytest.raises(ValueError, match="is closed"):
        q.get()
    with pytest.raises(ValueError, match="is closed"):
        q.get_nowait()
    assert q.qsize() == 1  # counted after close, as multiprocessing does
    q.join_thread()
    q.cancel_join_thread()


def test_joinable_task_done_and_join(impl):
    q = impl.JoinableQueue()
    with pytest.raises(ValueError, match="task_done\\(\\) called too many times"):
        q.task_done()
    q.put("a")
    q.put("b")
    assert [q.get(timeout=5), q.get(timeout=5)] == ["a", "b"]
    q.task_done()
    joined = threading.Event()
    t = threading.Thread(target=lambda: (q.join(), joined.set()), daemon=True)
    t.start()
    assert not joined.wait(0.3), "join() returned with an item unfinished"
    q.task_done()
    assert joined.wait(10), "join() did not return once every item was done"
    t.join(10)
    with pytest.raises(ValueError, match="task_done\\(\\) called too many times"):
        q.task_done()
    q.join()  # nothing unfinished: at once
    q.close()


def test_simple_queue(impl):
    q = impl.SimpleQueue()
    assert q.empty()
    q.put([1, 2])
    settle(lambda: not q.empty(), "the item to show")
    assert q.get() == [1, 2] and q.empty()
    q.close()
    for call in (q.get, lambda: q.put(1), q.empty):
        with pytest.raises(OSError, match="handle is closed"):
            call()


def _echo(q_in, q_out, n):
    for _ in range(n):
        x = q_in.get(timeout=DEADLINE)
        q_out.put((os.getpid(), x * 2))


def _reap(procs):
    for p in procs:
        p.join(DEADLINE)
        if p.exitcode is None:
            p.kill()
            p.join(5)


@pytest.mark.parametrize("method", METHODS)
def test_queues_as_process_arguments(impl, method):
    ctx = mp.get_context(method)
    q_in, q_out = impl.Queue(ctx=ctx), impl.Queue(ctx=ctx)
    procs = [ctx.Process(target=_echo, args=(q_in, q_out, 3)) for _ in range(2)]
    try:
        for p in procs:
            p.start()
        for i in range(6):
            q_in.put(i)
        got = [q_out.get(timeout=DEADLINE) for _ in range(6)]
    finally:
        _reap(procs)
    assert sorted(x for _, x in got) == [0, 2, 4, 6, 8, 10]
    assert {pid for pid, _ in got} == {p.pid for p in procs}  # each took its 3
    assert [p.exitcode for p in procs] == [0, 0]
    q_in.close()
    q_out.close()


# -- ours by design: Pool arguments, big arrays ---------------------------------
def _pool_task(args):
    q, i = args
    item = q.get(timeout=DEADLINE)
    q.put(("done", i, item))
    return os.getpid()


@pytest.mark.parametrize("method", METHODS)
def test_queue_in_pool_arguments(ns, method):
    """multiprocessing refuses its queues as Pool arguments; ours travel by
    name.  Each worker's items are finished when it exits (Pool.join)."""
    q = broker.Queue(**{"shm.namespace": ns})
    for i in range(4):
        q.put(i * 10)
    with mp.get_context(method).Pool(2) as pool:
        pids = pool.map(_pool_task, [(q, i) for i in range(4)], chunksize=1)
        assert len(pids) == 4
        pool.close()
        pool.join()
    done = sorted(q.get(timeout=DEADLINE) for _ in range(4))
    assert [d[1] for d in done] == [0, 1, 2, 3] and sorted(d[2] for d in done) == [0, 10, 20, 30]
    st = q._att.wq.stats()
    assert st["in_flight"] == 1 and st["released"] == 0  # the last reply, held by this process
    q.close()
    assert q._att.wq.stats()["in_flight"] == 0  # workers finished theirs at exit, we at close


def _double_array(q_in, q_out):
    a = q_in.get(timeout=DEADLINE)
    assert a.flags.writeable
    a += 1  # in place: the buffer is the item's own
    q_out.put(a)


def _buffer_segments(q):
    return [s for s in _queues.segments(q._att.name) if ".b" in s]


@pytest.mark.parametrize("size", [1 << 20, 100 << 20])
def test_numpy_arrays_round_trip(ns, size):
    q_in = broker.Queue(**{"shm.namespace": ns})
    q_out = broker.Queue(**{"shm.namespace": ns})
    a = np.arange(size // 8, dtype=np.int64)
    ctx = mp.get_context("fork")
    p = ctx.Process(target=_double_array, args=(q_in, q_out))
    p.start()
    try:
        q_in.put(a)
        b = q_out.get(timeout=DEADLINE)
    finally:
        _reap([p])
    assert p.exitcode == 0
    assert b.flags.writeable and b.dtype == a.dtype and b.shape == a.shape
    assert np.array_equal(b, a + 1)
    b[0] = -1  # ours to change
    assert _buffer_segments(q_in) == []  # the child finished its item at exit: its buffer went
    q_out.close()  # ours is finished now
    assert _buffer_segments(q_out) == []
    assert b[-1] == a[-1] + 1  # a removed segment stays mapped while the array lives


def test_big_pickles_and_many_buffers_round_trip(ns):
    q = broker.Queue(**{"shm.namespace": ns, "retention.bytes": 1 << 20, "max.message.bytes": 64 << 10})
    blob = os.urandom(3 << 20)  # a bytes object pickles in-band: the stream goes to a segment
    arrays = [np.full(20_000, i, dtype=np.int32) for i in range(20)]  # 80 KB each, 1.6 MB together
    q.put(blob)
    q.put(arrays)
    assert q.get(timeout=5) == blob
    got = q.get(timeout=5)
    assert all(np.array_equal(x, y) and x.flags.writeable for x, y in zip(got, arrays))
    q.close()
    assert _buffer_segments(q) == []


def test_unpicklable_put_raises_and_leaves_nothing(ns):
    q = broker.Queue(**{"shm.namespace": ns})
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        q.put(lambda: 0)
    with pytest.raises(TypeError):
        q.put([np.ones(1 << 18), threading.Lock()])  # its big buffer was written before the lock failed
    assert q.qsize() == 0 and _buffer_segments(q) == []
    q.put("fine")
    assert q.get(timeout=5) == "fine"
    q.close()


def test_bad_config_is_refused(ns):
    with pytest.raises(broker.KafkaException, match="No such configuration property: 'group.idd'"):
        broker.Queue(**{"shm.namespace": ns, "group.idd": "x"})
    with pytest.raises(broker.KafkaException, match="'group.id' is a consumer key"):
        broker.Queue(**{"shm.namespace": ns, "group.id": "x"})
    with pytest.raises(ValueError, match="does not fit a ring of shm.slots=64"):
        broker.Queue(100, **{"shm.namespace": ns, "shm.slots": 64})
    q = broker.Queue(3, config={"shm.namespace": ns, "shm.slots": 8, "retention.bytes": 4096})
    assert q._att.wq.log.slot_count == 8 and q._att.wq.log.data_capacity == 4096
    q.close()


def test_queues_are_not_topics(ns):
    q = broker.Queue(**{"shm.namespace": ns, "shm.supervisor": "off"})
    admin = AdminClient({"shm.namespace": ns})
    admin.create_topics([NewTopic("t", 1)])["t"].result(10)
    assert set(admin.list_topics(timeout=5).topics) == {"t"}
    q.close()


# -- ownership: the creator's -----------------------------------------------------
def test_creator_close_removes_an_unshared_queue_only(ns):
    conf = {"shm.namespace": ns, "shm.supervisor": "off"}
    q = broker.Queue(**conf)
    name = q._att.name
    assert exists(name)
    q.close()
    assert not exists(name) and _queues.segments(name) == []
    q = broker.Queue(**conf)
    name = q._att.name
    del q
    gc.collect()
    assert not exists(name)  # dropped, never shared: nobody else can have it
    q = broker.Queue(**conf)
    other = pickle.loads(pickle.dumps(q))  # shared now: it lives until this process exits
    q.close()
    other.put(1)
    assert other.get(timeout=5) == 1
    other.close()
    assert exists(q._att.name)


def _create_and_hand_over(ns, conn, hold):
    q = broker.Queue(**{"shm.namespace": ns})
    q.put(np.ones(1 << 18))  # 2 MB: a buffer segment too
    conn.send(q)
    assert hold.wait(DEADLINE)  # SIGKILLed here, or let go to exit normally


@pytest.mark.parametrize("death", ["exit", "sigkill"])
def test_a_gone_creator_takes_its_queue_along(ns, death):
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe()
    hold = ctx.Event()
    p = ctx.Process(target=_create_and_hand_over, args=(ns, b, hold))
    p.start()
    try:
        q = a.recv()
        name = q._att.name
        assert len(_queues.segments(name)) == 3  # log, leases, the item's buffer
        if death == "sigkill":
            os.kill(p.pid, signal.SIGKILL)  # the supervisor removes them
        else:
            hold.set()  # it exits, removing them itself
    finally:
        _reap([p])
    assert p.exitcode == (-signal.SIGKILL if death == "sigkill" else 0)
    deadline_wait(lambda: _queues.segments(name) == [], DEADLINE, "the dead creator's queue to go")
    with pytest.raises(ClosedError, match="no longer exists: the process that created it"):
        q.put(1)
    with pytest.raises(ClosedError, match="no longer exists"):
        pickle.loads(pickle.dumps(q))


# -- crashes: getters, putters ----------------------------------------------------
def test_plain_interpreter_exit_finishes_held_items(ns):
    """Not a multiprocessing child: a script that unpickles the queue, gets
    an item and ends; its interpreter exit (atexit) finishes the item."""
    q = broker.Queue(**{"shm.namespace": ns, "shm.supervisor": "off"})
    q.put("job")
    script = ("import pickle, sys; q = pickle.loads(sys.stdin.buffer.read()); print(q.get(timeout=%d))" % DEADLINE)
    r = subprocess.run([sys.executable, "-c", script], input=pickle.dumps(q), capture_output=True,
                       timeout=DEADLINE, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0 and r.stdout == b"job\n", r.stderr.decode()
    st = q._att.wq.stats()
    assert (st["acked"], st["in_flight"]) == (1, 0)
    with Namespace(ns, create=False) as n:
        assert {pid for _, pid, _, role in n.members() if role == MEMBER_QUEUE} == {os.getpid()}  # it left
    q.close()


def _get_and_hold(q, got, hold):
    item = q.get(timeout=DEADLINE)
    got.put(item)
    hold.wait(DEADLINE)  # SIGKILLed here


def _get_and_exit(q, got):
    got.put(q.get(timeout=DEADLINE))


def _item_of_a_killed_getter(q, item, method="fork"):
    """Put *item*, let a child (started with *method*) get it and hold it,
    check that nobody else can get it meanwhile, SIGKILL the child, and
    return what this process gets next: the supervisor gives the item back."""
    ctx = mp.get_context(method)
    got, hold = ctx.Queue(), ctx.Event()
    q.put(item)
    p = ctx.Process(target=_get_and_hold, args=(q, got, hold))
    p.start()
    try:
        assert got.get(timeout=DEADLINE) == item
        with pytest.raises(queue.Empty):
            q.get_nowait()  # held by the child
        os.kill(p.pid, signal.SIGKILL)
        return q.get(timeout=DEADLINE)
    finally:
        _reap([p])


@pytest.mark.parametrize("method", METHODS)
def test_sigkilled_getter_item_goes_to_another(ns, method):
    q = broker.Queue(**{"shm.namespace": ns})
    assert _item_of_a_killed_getter(q, {"job": 1}, method) == {"job": 1}
    st = q._att.wq.stats()
    assert (st["released"], st["taken"], st["in_flight"]) == (1, 2, 1)
    assert q._att.wq.attempts(0) == 1
    q.close()


def test_getter_that_exits_normally_keeps_its_item(ns):
    ctx = mp.get_context("fork")
    q = broker.Queue(**{"shm.namespace": ns})
    got, hold = ctx.Queue(), ctx.Event()
    q.put("a")
    p1 = ctx.Process(target=_get_and_exit, args=(q, got))
    p1.start()
    _reap([p1])
    assert p1.exitcode == 0 and got.get(timeout=DEADLINE) == "a"
    st = q._att.wq.stats()
    assert (st["acked"], st["in_flight"]) == (1, 0)  # finished at its exit
    # a second getter, killed: once its item is back, the supervisor has seen both exits
    q.put("b")
    p2 = ctx.Process(target=_get_and_hold, args=(q, got, hold))
    p2.start()
    try:
        assert got.get(timeout=DEADLINE) == "b"
        os.kill(p2.pid, signal.SIGKILL)
        assert q.get(timeout=DEADLINE) == "b"
    finally:
        _reap([p2])
    with pytest.raises(queue.Empty):
        q.get(timeout=0)  # "a" never came back
    assert q._att.wq.stats()["released"] == 1
    q.close()


def test_joinable_item_of_a_killed_getter_stays_unfinished(ns):
    q = broker.JoinableQueue(**{"shm.namespace": ns})
    assert _item_of_a_killed_getter(q, "t") == "t"  # the child took it without task_done
    assert q._att.wq.unfinished() == 1
    joined = threading.Event()
    threading.Thread(target=lambda: (q.join(), joined.set()), daemon=True).start()
    assert not joined.wait(0.3)
    q.task_done()
    assert joined.wait(10)
    q.close()


def _put_and_die(q):
    q._att.bind()
    q._att.wq.log.set_crash_point("before_commit", 1)
    q.put("doomed")  # SIGKILLed inside the append, its slot claimed


def test_putter_killed_mid_put_is_passed_over(ns):
    ctx = mp.get_context("fork")
    q = broker.Queue(**{"shm.namespace": ns})
    q.put("first")
    p = ctx.Process(target=_put_and_die, args=(q,))
    p.start()
    _reap([p])
    assert p.exitcode == -signal.SIGKILL
    q.put("after")
    assert [q.get(timeout=DEADLINE), q.get(timeout=DEADLINE)] == ["first", "after"]
    assert q._att.wq.stats()["skipped"] == 1
    q.close()


def _get_one_and_exit(q, out):
    out.put(q.get(timeout=DEADLINE))


def test_forked_child_does_not_finish_its_parents_item(ns):
    ctx = mp.get_context("fork")
    q = broker.Queue(**{"shm.namespace": ns, "shm.supervisor": "off"})
    q.put("A")
    q.put("B")
    assert q.get(timeout=5) == "A"  # held by this process
    out = ctx.Queue()
    p = ctx.Process(target=_get_one_and_exit, args=(q, out))  # inherits the handle holding A
    p.start()
    _reap([p])
    assert p.exitcode == 0 and out.get(timeout=DEADLINE) == "B"
    st = q._att.wq.stats()
    assert (st["acked"], st["in_flight"]) == (1, 1)  # the child finished B, not our A
    q.close()
    assert q._att.wq.stats()["in_flight"] == 0


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(DEADLINE)
    assert out, "the thread did not finish"
    return out[0]


def test_a_get_finishes_only_its_own_threads_item(ns):
    q = broker.Queue(**{"shm.namespace": ns, "shm.supervisor": "off"})
    for x in "abc":
        q.put(x)
    assert q.get(timeout=5) == "a"
    assert _in_thread(lambda: q.get(timeout=5)) == "b"  # held by that (finished) thread
    assert q.get(timeout=5) == "c"  # finishes "a", not "b"
    st = q._att.wq.stats()
    assert (st["acked"], st["in_flight"]) == (1, 2)
    q.close()
    assert q._att.wq.stats()["in_flight"] == 0


def test_task_done_in_another_thread_finishes_the_oldest(ns):
    q = broker.JoinableQueue(**{"shm.namespace": ns, "shm.supervisor": "off"})
    for x in "ab":
        q.put(x)
    assert [q.get(timeout=5), q.get(timeout=5)] == ["a", "b"]
    _in_thread(q.task_done)  # a worker thread that got nothing itself
    assert q._att.wq.held(q._att.bind().token) == [1]  # "a" (offset 0) was finished
    q.task_done()
    q.join()
    q.close()


def test_destroyed_namespace_wakes_a_getter(ns):
    q = broker.Queue(**{"shm.namespace": ns, "shm.supervisor": "off"})
    err = []

    def getter():
        try:
            q.get(timeout=DEADLINE)
        except Exception as exc:
            err.append(exc)
    t = threading.Thread(target=getter, daemon=True)
    t.start()
    deadline_wait(lambda: q._att.wq.log.stats()["waiters"] == 1, 10, "the getter to sleep")
    destroy(ns)
    t.join(10)
    assert not t.is_alive() and isinstance(err[0], ClosedError), err


def test_supervisor_sweeps_orphans_and_skips_bad_segments(ns):
    """A queue whose creator token no member has (it died while no
    supervisor ran) is removed; a name that is not a queue, and a queue
    segment that does not attach, are left alone and do not stop the
    supervisor from releasing a killed getter's item."""
    q = broker.Queue(**{"shm.namespace": ns})
    orphan = "/shmb.%s.q%d_0" % (ns, TOKEN_BASE + TOKEN_SPAN - 1)
    WorkQueue.create(orphan, slot_count=8, data_capacity=4096).close()
    junk = "/shmb.%s.qjunk" % ns
    bad = "/shmb.%s.q%d_999" % (ns, q._att.bind().token)  # ours (alive), but garbage
    for name in (junk, bad):
        seg = Segment.create(name, 4096)
        seg.mm[:8] = b"garbage!"
        seg.close()
    deadline_wait(lambda: not exists(orphan) and not exists(orphan + ".q"), DEADLINE, "the orphan to be removed")
    assert exists(junk) and exists(bad)
    assert _item_of_a_killed_getter(q, "x") == "x"

    def logged(*lines):
        with open(log_path(ns)) as f:
            text = f.read()
        return all(line in text for line in lines)
    # the release is logged after the getter has its item back
    deadline_wait(lambda: logged("1 queue items released"), 10, "the supervisor's log of the death")
    assert logged("queue %s cannot be opened" % bad, "queue %s removed: its creator is gone" % orphan)
    q.close()


# -- the one-call put and get (ext/fastqueue.c) hand every uncommon shape to the Python path
class _FailsToUnpickle:
    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise RuntimeError("refused to unpickle")


class _GetsWhileUnpickled:
    """Unpickling it gets the next item of the queue it names (a get inside a get)."""

    def __init__(self, q):
        self.q = q

    def __reduce__(self):
        return (_get_next, (self.q,))


def _get_next(q):
    return ("inner", q.get(timeout=5))


def test_an_item_that_fails_to_unpickle_is_taken_and_finished_by_the_next_get(ns):
    q = broker.Queue(**{"shm.namespace": ns, "shm.supervisor": "off"})
    q.put(_FailsToUnpickle())
    q.put("next")
    with pytest.raises(RuntimeError, match="refused to unpickle"):
        q.get(timeout=5)
    st = q._att.wq.stats()
    assert (st["acked"], st["in_flight"]) == (0, 1)  # taken (as multiprocessing consumes it), held
    assert q.get(timeout=5) == "next"
    st = q._att.wq.stats()
    assert (st["acked"], st["in_flight"]) == (1, 1)
    q.close()
    assert q._att.wq.stats()["in_flight"] == 0


def test_a_get_inside_unpickling_takes_the_next_item(ns):
    q = broker.Queue(**{"shm.namespace": ns, "shm.supervisor": "off"})
    q.put(_GetsWhileUnpickled(q))
    q.put("second")
    q.put("third")
    assert q.get(timeout=5) == ("inner", "second")
    assert q.get(timeout=5) == "third"
    st = q._att.wq.stats()
    assert st["acked"] == 2 and st["in_flight"] == 1  # the outer get and the inner one both finished later
    q.close()
    assert q._att.wq.stats()["in_flight"] == 0


@pytest.mark.parametrize("mode", ["adaptive", "spin", "sleep"])
def test_shm_wait_modes_deliver_to_a_waiting_getter(ns, mode):
    q = broker.Queue(**{"shm.namespace": ns, "shm.supervisor": "off", "shm.wait": mode})
    q2 = pickle.loads(pickle.dumps(q))
    assert q2._wait_mode == mode  # travels with the handle
    ready, out = threading.Event(), []

    def getter():
        ready.set()
        out.append([q.get(timeout=10) for _ in range(3)])

    t = threading.Thread(target=getter)
    t.start()
    assert ready.wait(10)
    for x in (1, "two", b"3" * 3000):
        q.put(x)
    t.join(15)
    assert not t.is_alive() and out == [[1, "two", b"3" * 3000]]
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    q.close()


class _Bytes(bytes):
    pass


def test_bytes_items_travel_unpickled_and_subclasses_pickled(ns):
    """A bytes object that fits the ring is its own record (no pickle, the
    raw form of _serde); a bytes subclass, or bytes too large for the ring,
    are pickled as any object.  Both the one-call path and the Python path
    (a second held item of another thread sends gets there) read both."""
    from broker.pool import _serde
    q = broker.Queue(**{"shm.namespace": ns, "retention.bytes": 1 << 16, "max.message.bytes": 4096})
    limit = q._att.max_record
    fits, over = os.urandom(limit - 8), os.urandom(limit - 7)
    items = [b"", b"x", fits, over, _Bytes(b"sub"), bytearray(b"ba")]
    for x in items:
        q.put(x)
    raw = q._att.wq.log.read(q._att.wq.log.watermarks()[0] + 2).value
    assert raw[:1] == b"\xb6" and raw[8:] == fits  # the record is the bytes, behind the 8-byte header
    got = [q.get(timeout=5) for _ in items]
    assert all(same(a, b) for a, b in zip(items, got)), [type(g) for g in got]
    # the Python path: an item held by another thread sends this thread's gets there
    other = threading.Thread(target=lambda: q.put(b"held") or q.get(timeout=5))
    q.put(b"one")
    other.start()
    other.join(10)
    assert not other.is_alive()
    q.put(b"two")
    assert q._held.items or q._held.solo is not None
    assert q._held.fq.get() is NotImplemented  # another thread's item is held: not the one-call path
    got = q.get(timeout=5)  # the Python path (_serde.loads) reads the raw record
    assert type(got) is bytes and got == b"held"  # "one" went to the other thread
    # _serde writes and reads the same form; a malformed raw record is refused clearly
    data, segs = _serde.dumps(b"abc", "/unused", limit=limit)
    assert data[:1] == b"\xb6" and segs == [] and _serde.loads(data) == (b"abc", [])
    with pytest.raises(_serde.SerdeError, match="raw bytes is malformed"):
        _serde.loads(data[:-1])
    q.close()
