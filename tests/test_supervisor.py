"""The supervisor: a singleton per namespace that repairs a dead producer's
claims at once (readers pass them without anyone calling repair by hand),
also for deaths that happened while no supervisor ran; a stopped producer is
slow, not dead, and is left alone."""
import os
import signal
import subprocess
import sys

import pytest

from broker import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from broker.admin import AdminClient, NewTopic
from broker.errors import NamespaceError
from broker.namespace import Namespace
from broker.supervisor import Supervisor
from shm.log import CRASH_ENV

from conftest import deadline_wait, wait_child


@pytest.fixture(autouse=True)
def no_auto_supervisor(monkeypatch):
    """These tests start (or hold back) the supervisor themselves: clients
    (here and in forked children) must not start one."""
    monkeypatch.setenv("SHMBROKER_SUPERVISOR", "off")


def start_supervisor(ns):
    proc = subprocess.Popen([sys.executable, "-m", "broker", "serve", "--namespace", ns],
                            stderr=subprocess.PIPE, text=True)
    with Namespace(ns) as n:
        deadline_wait(lambda: n.supervisor_pid() == proc.pid or proc.poll() is not None, 30, "the supervisor")
    assert proc.poll() is None, proc.stderr.read()
    return proc


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    return proc.stderr.read()


def producer_child(ns, crash, values):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if crash:
                os.environ[CRASH_ENV] = crash
            p = Producer({"shm.namespace": ns})
            for v in values:
                p.produce("t", v, partition=0)
            code = 0
        finally:
            os._exit(code)
    return pid


@pytest.fixture
def topic(ns):
    with AdminClient({"shm.namespace": ns}) as a:
        a.create_topics([NewTopic("t", 1)])["t"].result()
    return ns


def test_singleton(topic):
    sup = start_supervisor(topic)
    try:
        with pytest.raises(NamespaceError, match="already runs"):
            Supervisor(topic)
    finally:
        err = stop(sup)
    assert "started" in err and "stopped" in err
    s = Supervisor(topic)  # the lock went with the old one
    s.close()


@pytest.mark.parametrize("point", ["after_claim", "mid_copy", "before_commit"])
@pytest.mark.parametrize("supervisor_first", [True, False])
def test_dead_producer_repaired_by_supervisor(topic, point, supervisor_first):
    ns = topic
    sup = start_supervisor(ns) if supervisor_first else None
    try:
        pid = producer_child(ns, point + ":3", [b"c0", b"c1", b"c2", b"c3"])
        st = wait_child(pid)
        assert os.WIFSIGNALED(st) and os.WTERMSIG(st) == signal.SIGKILL
        if sup is None:  # the death happened while no supervisor ran: the next one repairs it
            sup = start_supervisor(ns)
        with Producer({"shm.namespace": ns}) as p, Consumer({"shm.namespace": ns}) as c:
            c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
            p.produce("t", b"after", partition=0)
            got = [c.poll(10) for _ in range(3)]
            assert [m.value() for m in got] == [b"c0", b"c1", b"after"]  # offset 2 tombstoned, passed
            log = c._parts[("t", 0)].log
            deadline_wait(lambda: log.stats()["repairs"] >= 1, 10, "the repair to finish")
            assert log.stats()["tombstones"] == 1
    finally:
        err = stop(sup)
    assert "producer pid %d died: 1 claims tombstoned" % pid in err


def test_stopped_producer_left_alone(topic):
    ns = topic
    sup = start_supervisor(ns)
    try:
        pid = producer_child(ns, "mid_copy:1:STOP", [b"slow"])
        assert os.WIFSTOPPED(wait_child(pid, stopped=True))
        with Consumer({"shm.namespace": ns}) as c:
            c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
            deadline_wait(lambda: "watching producer pid %d" % pid in open(
                __import__("broker.supervisor", fromlist=["x"]).log_path(ns)).read(), 10, "the supervisor to watch it")
            assert c.poll(0.3) is None  # alive but stopped: waited for, not tombstoned
            os.kill(pid, signal.SIGCONT)
            assert os.WIFEXITED(wait_child(pid))
            m = c.poll(10)
            assert m.value() == b"slow" and c._parts[("t", 0)].log.stats()["tombstones"] == 0
    finally:
        stop(sup)


def test_destroy_stops_the_supervisor(topic):
    from broker.namespace import destroy
    sup = start_supervisor(topic)
    try:
        removed = destroy(topic)
        assert sup.wait(10) == 0  # it stopped on SIGTERM, cleanly
        assert "/shmb.%s" % topic in removed
    finally:
        stop(sup)


def test_stale_entry_of_a_reused_pid_spares_the_live_process(topic, kids):
    """Invariant 11: a member entry left by a dead process whose pid the
    kernel has handed to a live producer (same pid, another start time) is
    repaired by its own registration token: the live producer's claim,
    mid-append, is not tombstoned, and its record arrives."""
    from broker.namespace import MAX_MEMBERS, MEMBER, MEMBER_PRODUCER, MEMBERS_OFF, TOKEN_BASE, proc_start_ticks
    from shm._native import lib
    from shm import NotYet
    ns = topic
    sup = start_supervisor(ns)
    try:
        pid = producer_child(ns, "mid_copy:1:STOP", [b"live"])
        kids.append(pid)  # continued and reaped whatever happens
        assert os.WIFSTOPPED(wait_child(pid, stopped=True))
        with Namespace(ns) as n, Consumer({"shm.namespace": ns}) as c:
            c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
            assert c.poll(0.05) is None
            log = c._parts[("t", 0)].log
            assert isinstance(log.read(0), NotYet)  # CLAIMED by the stopped, live child
            # the stale entry: the child's pid, an earlier incarnation's start time and token
            for i in range(MAX_MEMBERS):
                off = MEMBERS_OFF + i * MEMBER
                if lib.shm_cas64(n._cbuf, n.seg.size, off, 0, pid):
                    break
            lib.shm_store64(n._cbuf, n.seg.size, off + 8, MEMBER_PRODUCER)
            lib.shm_store64(n._cbuf, n.seg.size, off + 24, TOKEN_BASE + 999_999)
            lib.shm_store64(n._cbuf, n.seg.size, off + 16, proc_start_ticks(pid) - 1)
            n.wake_supervisor()
            deadline_wait(lambda: all(m[0] != i for m in n.members()), 10, "the supervisor to drop the stale entry")
            assert isinstance(log.read(0), NotYet) and log.stats()["tombstones"] == 0
            os.kill(pid, signal.SIGCONT)
            st = wait_child(pid)
            assert os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0
            m = c.poll(10)
            assert m is not None and (m.offset(), m.value()) == (0, b"live")
            assert log.stats()["tombstones"] == 0
    finally:
        err = stop(sup)
    assert "producer pid %d died: 0 claims tombstoned" % pid in err
