"""The early notice of a pool worker's death (ext/shmrobust.c, _status.py,
_manager.py): the worker's main thread holds its slot's robust mutex; the
kernel marks it owner-died before it tears the dead worker's memory down,
so the parent's watcher gives the task back before the sentinel fires.
Here: a re-run that starts while the killed worker still has its process
table entry, exact retry counts with both paths handling each death, clean
exits told apart from deaths, and corrupt death-watch slots (a clear error,
never a crash)."""
import multiprocessing as mp
import os
import platform
import signal
import struct
import sys
import threading

import pytest

import pool_helpers as H
from pool_helpers import clean  # noqa: F401 (fixture)

from broker.errors import CorruptSegmentError, WorkerCrashedError
from broker.pool import Executor, Pool
from broker.pool._manager import exiting
from broker.pool._status import (ACQUIRED, KIND_EXECUTOR, NO_HOLDER, OWNER_DIED, ROBUST_SLOT, W_ROBUST, W_SLOTS,
                                 WATCH_TIMEOUT, PoolStatus)
from shm._native import ffi, lib
from shm.segment import unlink

pytestmark = pytest.mark.usefixtures("clean")
METHODS = ["fork", "spawn", "forkserver"]
MS = 1_000_000  # ns
LONG = int(H.DEADLINE * 1e9)
# glibc's pthread_mutex_t on 64-bit Linux: int __lock, __count, __owner, __nusers, then __kind at byte 16
GLIBC64 = platform.libc_ver()[0] == "glibc" and sys.maxsize > 2 ** 32 and sys.platform == "linux"


def stats(pool):
    return pool._engine.status.snapshot()["tasks"]


def kill_when_started(started):
    pid = int(H.wait_file(started))
    os.kill(pid, signal.SIGKILL)
    return pid


def warm(ex, d):
    """Both workers run a task of pool_helpers at once (each blocks until
    both have started): under spawn/forkserver each has imported it (and
    pytest with it), so a re-run starts without that delay."""
    go = os.path.join(d, "go")
    fs = [ex.submit(H.block_then, os.path.join(d, "w%d" % i), go, i) for i in range(2)]
    for i in range(2):
        H.wait_file(os.path.join(d, "w%d" % i))
    H.announce(go)
    assert [f.result(H.DEADLINE) for f in fs] == [0, 1]


def replaced(ex, killed):
    """The sentinel's _on_exit has run for *killed* (reaped, a replacement started)."""
    return lambda: len(ex.worker_pids()) == 2 and killed not in ex.worker_pids()


@pytest.mark.parametrize("method", METHODS)
def test_rerun_starts_before_the_killed_worker_is_reaped(tmp_path, method):
    """A worker holding 1 GB of its own memory is SIGKILLed mid-task: the
    kernel takes long to tear that down, and only then is the sentinel
    readable (and the worker reaped).  The re-run on the other worker looks
    the killed pid up as it starts: still in the process table proves the
    task was given back on the watcher's notice, not the sentinel's."""
    marks, started = str(tmp_path / "m"), str(tmp_path / "s")
    with Executor(2, mp_context=mp.get_context(method)) as ex:
        warm(ex, str(tmp_path))
        f = ex.submit(H.hog_then_block, marks, started, 1 << 30, "v")
        killed = kill_when_started(started)
        value, pid, state = f.result(H.DEADLINE)
        e = ex._engine
        assert value == "v" and pid != killed and H.runs(marks) == 2
        assert state is not None, "the re-run started after pid %d was reaped: given back by the sentinel " \
            "(notices %s, early re-runs %d)" % (killed, e.notices, e.early_retried)
        H.wait_until(replaced(ex, killed), "the killed worker's reaping and replacement")
        assert stats(ex)["retried"] == 1 and e.early_retried == 1 and sum(e.notices) == 1
        assert stats(ex)["failed"] == 0 and e.false_notices == 0 and e.watch_error is None


def test_retried_counts_stay_exact_over_kills(tmp_path):
    """Each death is handled twice - the watcher's notice gives the task
    back, the sentinel's _on_exit reaps and finds nothing left - and counts
    once; a task killed at every run fails after max_attempts with the exit
    code (that last attempt is the sentinel's to end)."""
    with Executor(2, max_attempts=3) as ex:
        e = ex._engine
        for k in range(1, 5):
            marks, started = str(tmp_path / ("m%d" % k)), str(tmp_path / ("s%d" % k))
            f = ex.submit(H.hog_then_block, marks, started, 256 << 20, k)  # a slow teardown: the notice comes first
            killed = kill_when_started(started)
            assert f.result(H.DEADLINE)[0] == k
            H.wait_until(replaced(ex, killed), "the sentinel's handling of pid %d" % killed)
            H.wait_until(lambda: sum(e.notices) == k, "the watcher's notice of pid %d" % killed)
            st = stats(ex)
            assert st["retried"] == k and st["failed"] == 0 and H.runs(marks) == 2
        assert e.early_retried >= 1  # the double handling was exercised (normally all 4)
        stem = str(tmp_path / "poison")
        f = ex.submit(H.announce_run_and_block, stem)
        for run in range(3):
            killed = kill_when_started("%s.%d" % (stem, run))
        with pytest.raises(WorkerCrashedError) as ei:
            f.result(H.DEADLINE)
        assert ei.value.attempts == 3 and ei.value.exitcode == -signal.SIGKILL and ei.value.pid == killed
        H.wait_until(replaced(ex, killed), "the sentinel's handling of the last attempt")
        st = stats(ex)
        assert st["retried"] == 4 + 2 and st["failed"] == 1 and H.runs(stem + ".marks") == 3
        assert e.false_notices == 0 and ex.submit(H.square, 7).result(H.DEADLINE) == 49


def test_clean_exit_is_not_a_death(tmp_path):
    """max_tasks_per_child: each worker lets its mutex go as it exits; its
    watcher hears a clean exit, nothing is given back or re-run."""
    marks = str(tmp_path / "m")
    with Executor(2, max_tasks_per_child=1) as ex:
        pids = [ex.submit(H.mark_and_getpid, marks).result(H.DEADLINE) for _ in range(8)]
        e = ex._engine
        H.wait_until(lambda: sum(e.clean_exits) == 8, "the watchers to hear the 8 clean exits")
        st = stats(ex)
        assert len(set(pids)) == 8 and H.runs(marks) == 8
        assert e.notices == [0, 0] and e.early_retried == 0 and st["retried"] == 0 and st["failed"] == 0
    with Pool(2, maxtasksperchild=1) as p:
        assert len(set(p.map(H.getpid, range(6), 1))) == 6
        e = p._engine
        H.wait_until(lambda: sum(e.clean_exits) == 6, "the watchers to hear the 6 clean exits")
        assert e.notices == [0, 0] and stats(p)["retried"] == 0


@pytest.fixture
def status():
    name = "/sbt%d_deathwatch" % os.getpid()
    st = PoolStatus.create(name, KIND_EXECUTOR, 2, 2)
    try:
        yield st
    finally:
        st.close()
        unlink(name)


def _in_thread(fn):
    """Run *fn* in a thread of its own (a robust mutex belongs to a thread);
    returns what it returned, or raises what it raised."""
    out = {}

    def run():
        try:
            out["v"] = fn()
        except BaseException as e:  # reported to the test
            out["e"] = e
    t = threading.Thread(target=run)
    t.start()
    t.join(H.DEADLINE)
    assert not t.is_alive(), "the thread did not finish"
    if "e" in out:
        raise out["e"]
    return out["v"]


def test_death_watch_protocol_in_one_process(status):
    """Threads stand in for workers: a thread that ends holding the mutex is
    heard as owner-died with its published pid; one that lets go, as a clean
    exit; the slot is reused after each (the watcher clears the holder)."""
    watch = status.watcher(0)
    assert watch(MS) == (NO_HOLDER, 0)
    assert _in_thread(lambda: status.hold(0, 4242)) is True  # the thread ends holding it
    assert watch(LONG) == (OWNER_DIED, 4242)
    assert watch(MS) == (NO_HOLDER, 0)  # cleared: not reported twice

    def hold_and_let_go():
        status.hold(0, 4343)
        status.let_go(0)
    _in_thread(hold_and_let_go)
    assert watch(LONG) == (ACQUIRED, 4343)
    go, held = threading.Event(), threading.Event()

    def hold_until_go():
        status.hold(0, 4444)
        held.set()
        assert go.wait(H.DEADLINE)
    t = threading.Thread(target=hold_until_go)
    t.start()
    try:
        assert held.wait(H.DEADLINE)
        assert watch(MS) == (WATCH_TIMEOUT, 0)  # the holder lives
        assert status.hold(0, 4545, timeout=0.01) is False  # a second holder times out, holds nothing
    finally:
        go.set()
        t.join(H.DEADLINE)
    assert watch(LONG) == (OWNER_DIED, 4444)


def test_next_holder_waits_until_the_last_end_is_heard(status):
    """A worker that starts before the watcher heard its slot's previous
    worker end must not take the mutex: it would overwrite that pid, and the
    clean exit or the death would go unheard.  It waits until the watcher
    clears the holder, then holds."""
    watch = status.watcher(0)

    def hold_and_let_go():
        status.hold(0, 4646)
        status.let_go(0)
    _in_thread(hold_and_let_go)  # a clean exit, not heard yet: the mutex is free
    assert status.hold(0, 4747, timeout=0.05) is False  # free, but its last holder's end is unheard
    assert watch(LONG) == (ACQUIRED, 4646)
    assert _in_thread(lambda: status.hold(0, 4949)) is True  # heard: it holds, and ends holding it
    assert status.hold(0, 5050, timeout=0.05) is False  # a death, not heard yet
    # a next holder waiting while the watcher hears the death: woken when the holder is cleared
    out, started = {}, threading.Event()

    def hold_waiting():
        started.set()
        out["held"] = status.hold(0, 5151, timeout=H.DEADLINE)
        status.let_go(0)
    t = threading.Thread(target=hold_waiting)
    t.start()
    try:
        assert started.wait(H.DEADLINE)
        t.join(0.05)  # (a bounded join: it must still be waiting, the death unheard)
        assert t.is_alive() and out == {}
        assert watch(LONG) == (OWNER_DIED, 4949)
    finally:
        t.join(H.DEADLINE)
    assert not t.is_alive() and out == {"held": True}
    assert watch(LONG) == (ACQUIRED, 5151)
    assert watch(MS) == (NO_HOLDER, 0)
    # a pool whose watcher of the slot stopped clears the last holder itself before the next worker
    _in_thread(hold_and_let_go)
    assert status.hold(0, 5252, timeout=0.05) is False
    status.clear_holder(0)
    assert _in_thread(lambda: status.hold(0, 5353, timeout=0.05)) is True
    assert watch(LONG) == (OWNER_DIED, 5353)


def test_exiting_asks_the_kernel(kids):
    """The manager acts on an owner-died report only for a worker the kernel
    says is exiting (a corrupt mutex word cannot make it give back a live
    worker's tasks)."""
    assert exiting(os.getpid()) is False
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(w, b"x")
            while True:
                signal.pause()  # until killed
        finally:
            os._exit(1)
    kids.append(pid)
    os.close(w)
    assert os.read(r, 1) == b"x"
    os.close(r)
    assert exiting(pid) is False
    os.kill(pid, signal.SIGKILL)
    H.wait_until(lambda: exiting(pid), "the killed child to exit (a zombie)")


def test_corrupt_death_watch_slots_raise_not_crash(status):
    base = status.robust + ROBUST_SLOT  # slot 1
    status.seg.mm[base:base + 64] = b"\xff" * 64  # its mutex
    status.seg.mm[base + 64:base + 68] = struct.pack("<I", 12345)  # a holder
    with pytest.raises(CorruptSegmentError, match="death-watch slot 1 is not one this pool made"):
        status.watcher(1)(MS)
    with pytest.raises(CorruptSegmentError, match="death-watch slot 1"):
        status.hold(1, os.getpid(), 0.01)
    with pytest.raises(CorruptSegmentError, match="death-watch slot 1"):
        status.let_go(1)
    assert status.watcher(0)(MS) == (NO_HOLDER, 0)  # the other slot is fine
    # the C side checks what it is given, whatever the header says
    out = ffi.new("uint32_t *")
    cbuf, size, area = status.cbuf, status.seg.size, status.robust
    for args in [(size, area, 2, 2), (size, area, 2, 7), (size, area + 8, 2, 0), (size, size, 1, 0),
                 (size, area, 1 << 40, 0), (area + ROBUST_SLOT, area, 2, 1), (size, 1 << 62, 2, 0)]:
        assert lib.shm_robust_watch(cbuf, *args, MS, out) == lib.LOG_E_BAD_ARG, args
        assert lib.shm_robust_hold(cbuf, *args, 1, MS) == lib.LOG_E_BAD_ARG, args
        assert lib.shm_robust_let_go(cbuf, *args) == lib.LOG_E_BAD_ARG, args
    # a header whose slots do not fit: attaching refuses
    for word, value in ((W_ROBUST, area + 64), (W_SLOTS, 1 << 40), (W_SLOTS, 0)):
        old = status.mv[word]
        status.mv[word] = value
        try:
            with pytest.raises(CorruptSegmentError, match="worker slots do not fit"):
                PoolStatus.attach(status.name)
        finally:
            status.mv[word] = old


@pytest.mark.skipif(not GLIBC64, reason="overwrites glibc's 64-bit pthread_mutex_t __kind")
def test_pool_goes_on_with_a_corrupt_death_watch_slot(tmp_path):
    """Slot 0's mutex is overwritten while its worker holds it: its watcher
    stops with a clear warning, its deaths are heard from the sentinel only,
    and the pool goes on (the replacement runs without the mutex)."""
    with Executor(2) as ex:
        e = ex._engine
        kind, holder = e.status.robust + 16, e.status.robust + 64
        # slot 0's worker holds it first (corrupted before, its hold fails and the watcher, with no holder to
        # watch, never looks at the mutex: seen under load)
        H.wait_until(lambda: struct.unpack_from("<I", e.status.seg.mm, holder)[0] != 0, "slot 0's worker to hold")
        with pytest.warns(RuntimeWarning, match="death-watch slot 0 is not one this pool made"):
            e.status.seg.mm[kind:kind + 4] = struct.pack("<i", 0x7FFF)
            H.wait_until(lambda: e.watch_error is not None, "slot 0's watcher to find the corrupt mutex")
        assert isinstance(e.watch_error, CorruptSegmentError)
        for k in range(2):  # whichever worker takes it: one slot's notice, the other's sentinel
            marks, started = str(tmp_path / ("m%d" % k)), str(tmp_path / ("s%d" % k))
            f = ex.submit(H.first_run_blocks, marks, started, k)
            killed = kill_when_started(started)
            assert f.result(H.DEADLINE)[0] == k and H.runs(marks) == 2
            H.wait_until(replaced(ex, killed), "the sentinel's handling of pid %d" % killed)
        assert stats(ex)["retried"] == 2 and e.false_notices == 0
        assert [ex.submit(H.square, i).result(H.DEADLINE) for i in range(10)] == [i * i for i in range(10)]
