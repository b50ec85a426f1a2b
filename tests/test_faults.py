"""Fault injection: a producer SIGKILLed at each named step of append, and
a producer SIGSTOPped mid-append (slow, not dead: it loses nothing)."""
import os
import signal
import threading

import pytest

from shm import CRASH_POINTS, Lapped, NotYet, PartitionLog, Record, Skipped
from shm.log import CRASH_ENV

from conftest import deadline_wait, wait_child

CLAIMED_POINTS = ["after_slot_cas", "after_reserve", "mid_copy", "before_commit"]


def fork_producer(name, crash, values, report_fd=None):
    """Fork a child that attaches and appends *values* with crash point
    *crash* set; it writes each offset it got to *report_fd*."""
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.environ[CRASH_ENV] = crash
            log = PartitionLog.attach(name)
            for v in values:
                o = log.append(v)
                if report_fd is not None:
                    os.write(report_fd, b"%d\n" % o)
            code = 0
        finally:
            os._exit(code)
    return pid


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_killed_producer_repaired(logs, point):
    log = logs.create(slot_count=16, data_capacity=4096, max_record=64)
    for i in range(3):
        log.append(b"pre%d" % i)
    pid = fork_producer(log.name, point + ":3", [b"child%d" % i for i in range(10)])
    status = wait_child(pid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    # the child appended offsets 3 and 4 and died inside its append of 5
    assert [log.read(o).value for o in (3, 4)] == [b"child0", b"child1"]
    assert log.watermarks()[1] == 6
    dead = log.read(5)
    waiter = []
    if point == "before_wake":
        assert isinstance(dead, Record) and dead.value == b"child2"  # committed: nothing to repair
    else:
        assert isinstance(dead, NotYet)
        t = threading.Thread(target=lambda: waiter.append(log.wait(5, timeout=30, mode="sleep")))
        t.start()
        deadline_wait(lambda: log.stats()["waiters"] == 1, 10, "a reader asleep on the dead offset")
    # the supervisor's repair: claims of the dead pid, then unclaimed offsets
    expected = 0 if point == "before_wake" else 1
    by_pid = log.repair_dead(pid)
    by_grace = log.repair_unclaimed(grace=0.01)
    assert (by_pid, by_grace) == ((0, 1) if point == "after_claim" else (expected, 0))
    assert log.repair_dead(pid) == 0 and log.repair_unclaimed(grace=0.01) == 0  # idempotent
    if point != "before_wake":
        t.join(10)
        assert waiter == [True]  # the repair woke the sleeping reader
        assert isinstance(log.read(5), Skipped) and log.read(5).reason == "tombstone"
    st = log.stats()
    assert st["tombstones"] == expected
    # readers pass the dead claim; other producers continue (wrapping the index)
    recs, nxt, stop = log.read_batch(0, 100)
    assert [r.offset for r in recs] == [o for o in range(6) if o != 5 or not expected]
    for i in range(40):
        assert log.append(b"post%d" % i) == 6 + i
    assert [log.read(o).value for o in range(30, 46)] == [b"post%d" % i for i in range(24, 40)]
    assert log.stats()["tombstones"] == expected


@pytest.mark.parametrize("point", CLAIMED_POINTS)
def test_producer_self_repairs_dead_previous_lap(logs, point):
    """Without a supervisor, a producer that needs the slot of a dead
    producer's claim tombstones it itself (the owner is provably dead)."""
    log = logs.create(slot_count=16, data_capacity=4096, max_record=64)
    pid = fork_producer(log.name, point + ":1", [b"dies"])
    status = wait_child(pid)
    assert os.WIFSIGNALED(status)
    assert isinstance(log.read(0), NotYet)
    for i in range(1, 20):  # offset 16 reuses slot 0
        assert log.append(b"v%d" % i) == i
    assert log.stats()["tombstones"] == 1
    assert isinstance(log.read(0), Lapped)
    assert [log.read(o).value for o in range(4, 20)] == [b"v%d" % i for i in range(4, 20)]


@pytest.mark.parametrize("point", ["after_claim", "after_slot_cas", "mid_copy", "before_commit"])
def test_stopped_producer_loses_nothing(logs, point):
    log = logs.create(slot_count=16, data_capacity=4096, max_record=64)
    r, w = os.pipe()
    try:
        pid = fork_producer(log.name, point + ":1:STOP", [b"slow"], report_fd=w)
        status = wait_child(pid, stopped=True)
        assert os.WIFSTOPPED(status)
        # the supervisor's grace repair may take an offset that was never
        # claimed in its slot, never a CLAIMED slot of a live process
        taken = log.repair_unclaimed(grace=0.01)
        assert taken == (1 if point == "after_claim" else 0)
        assert log.repair_unclaimed(grace=0.01) == 0
        for i in range(3):
            log.append(b"other%d" % i)
        got = []
        t = threading.Thread(target=lambda: got.append(log.wait(0, timeout=30, mode="sleep")))
        t.start()
        os.kill(pid, signal.SIGCONT)
        status = wait_child(pid)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        off = int(os.read(r, 64).split()[0])
        t.join(10)
        assert got == [True]
    finally:
        os.close(r)
        os.close(w)
    # its record arrived: at its first offset, or at a new one if the first was taken
    assert off == (4 if point == "after_claim" else 0)
    assert log.read(off).value == b"slow"
    assert log.stats()["retries"] == (1 if point == "after_claim" else 0)
    assert log.stats()["tombstones"] == taken


def test_stopped_claim_is_waited_for_not_stolen(logs):
    log = logs.create(slot_count=16, data_capacity=4096, max_record=64)
    pid = fork_producer(log.name, "mid_copy:1:STOP", [b"slow"])
    try:
        assert os.WIFSTOPPED(wait_child(pid, stopped=True))
        done = []
        t = threading.Thread(target=lambda: done.extend(log.append(b"p%d" % i) for i in range(1, 17)))
        t.start()
        # offset 16 needs slot 0, held by the stopped producer: the appender
        # waits for room before it claims (so a timeout would leave nothing)
        deadline_wait(lambda: log.stats()["room_waits"] == 1, 10, "the producer to wait for slot 0")
        assert t.is_alive() and log.watermarks()[1] == 16 and log.stats()["tombstones"] == 0
    finally:
        os.kill(pid, signal.SIGCONT)
    assert os.WIFEXITED(wait_child(pid))
    t.join(10)
    assert done == list(range(1, 17))
    assert log.stats()["tombstones"] == 0
    assert [log.read(o).value for o in range(1, 17)] == [b"p%d" % i for i in range(1, 17)]


def test_log_inherited_across_fork_claims_as_child(logs):
    """A PartitionLog opened before fork() works in the child and its claims
    carry the child's pid, so repair after the child's death finds them."""
    log = logs.create(slot_count=16, data_capacity=4096, max_record=64)
    log.append(b"parent")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            log.append(b"child ok")  # the inherited object, fast path included
            log.set_crash_point("before_commit")
            log.append(b"child dies")
        finally:
            os._exit(code)
    status = wait_child(pid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert log.read(1).value == b"child ok"
    assert log.repair_dead(os.getpid()) == 0  # nothing was claimed as the parent
    assert log.repair_dead(pid) == 1
    assert log.read(2).reason == "tombstone"
    assert log.append(b"parent again") == 3
