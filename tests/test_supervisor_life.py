"""The supervisor's life: restarted by any waiting client, gone when idle,
visible as shmbroker, started isolated from the client's directory, never
killed or stalled by what it reads from the namespace segment, and never
two at once.

Supervisors here are started by clients (detached, not our children), so
their liveness is checked through /proc and the singleton lock; the ``ns``
fixture's destroy() stops whatever runs at the end, and the idle timeout
(short in this module) ends any straggler."""
import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from broker import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from broker import groups as G
from broker.admin import AdminClient, NewTopic
from broker.namespace import MEMBER, MEMBER_PRODUCER, MEMBERS_OFF, META_SIZE, Namespace, proc_start_ticks
from broker.procs import fork
from broker.supervisor import log_path, supervisor_alive, wait_supervisor
from shm._native import lib
from shm.log import CRASH_ENV

from conftest import deadline_wait, wait_child
from test_supervisor import stop

IDLE_ENV = "SHMBROKER_SUPERVISOR_IDLE"


@pytest.fixture(autouse=True)
def short_idle(monkeypatch):
    """Clients start supervisors here (inherited env): leftovers end soon."""
    monkeypatch.delenv("SHMBROKER_SUPERVISOR", raising=False)
    monkeypatch.setenv(IDLE_ENV, "20")


def conf(ns, **kw):
    c = {"shm.namespace": ns}
    c.update(kw)
    return c


@pytest.fixture
def topic(ns):
    with AdminClient(conf(ns)) as a:
        a.create_topics([NewTopic("t", 1)])["t"].result()
    return ns


def running(pid):
    return bool(pid) and proc_start_ticks(pid) != 0  # a zombie counts as gone


def current_supervisor(ns):
    """The pid of the namespace's live supervisor, or None."""
    with Namespace(ns, create=False) as n:
        pid = n.supervisor_pid()
    return pid if running(pid) and supervisor_alive(ns) else None


def kill_supervisor(ns):
    pid = wait_supervisor(ns)
    os.kill(pid, signal.SIGKILL)
    deadline_wait(lambda: not running(pid) and not supervisor_alive(ns), 10, "the supervisor to die")
    return pid


def read_ready(fd, what):
    assert select.select([fd], [], [], 30)[0], "timed out waiting for " + what
    return os.read(fd, 1)


def member(c, deadline=10):
    """Poll a subscribed consumer until the supervisor gave it partitions."""
    end = time.monotonic() + deadline
    while not c.assignment():
        assert time.monotonic() < end, "no assignment within %ss" % deadline
        c.poll(0.05)
    return c.assignment()


# -- survivors restart it
@pytest.mark.parametrize("wait", ["adaptive", "spin"])
def test_waiting_assign_consumer_restarts_a_dead_supervisor(topic, kids, wait):
    """The supervisor is SIGKILLed, then a producer dies mid-append: an
    assign() consumer waiting behind the dead offset brings a supervisor
    back, which repairs the claim, and the consumer gets past it (spin
    mode too: its poll spins in C, checking the supervisor between chunks)."""
    ns = topic
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    def doomed():
        p = Producer(conf(ns))  # every client exists before the supervisor dies
        os.write(ready_w, b"r")
        os.read(go_r, 1)
        os.environ[CRASH_ENV] = "before_commit:2"  # SIGKILL inside the second append
        p.produce("t", b"first", partition=0)
        p.produce("t", b"dies", partition=0)

    kids.append(fork(doomed))
    read_ready(ready_r, "the producer")
    with Consumer(conf(ns, **{"shm.wait": wait})) as c, Producer(conf(ns)) as p:
        c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
        old = kill_supervisor(ns)
        os.write(go_w, b"g")
        st = wait_child(kids[0])
        assert os.WIFSIGNALED(st) and os.WTERMSIG(st) == signal.SIGKILL
        p.produce("t", b"after", partition=0)  # offset 2, behind the dead claim at 1
        assert c.poll(10).value() == b"first"
        t0 = time.monotonic()
        m = c.poll(10)
        took = time.monotonic() - t0
        assert m is not None and m.value() == b"after", "the consumer never got past the dead offset"
        assert took < 8, took  # a check every 0.5 s, then a Python start-up (slow on a loaded host)
        new = current_supervisor(ns)
        assert new not in (None, old)
        assert c._parts[("t", 0)].log.stats()["tombstones"] == 1
    for fd in (ready_r, ready_w, go_r, go_w):
        os.close(fd)


def test_blocked_producer_restarts_a_dead_supervisor(ns):
    """A block-mode append waiting for the floor checks on the supervisor
    between chunks of its wait."""
    with AdminClient(conf(ns)) as a:
        a.create_topics([NewTopic("b", 1, config={"retention.bytes": 4096, "shm.slots": 8,
                                                  "shm.overflow": "block"})])["b"].result()
    with Producer(conf(ns, **{"shm.block.timeout.ms": 30000})) as p:
        for i in range(8):
            p.produce("b", b"%d" % i, partition=0)  # the ring is full now: the next append waits
        old = kill_supervisor(ns)
        with Namespace(ns) as n:
            log = n.open_partition(n.topic("b"), 0)
        done = []
        t = threading.Thread(target=lambda: done.append(p.produce("b", b"8", partition=0)), daemon=True)
        t.start()
        try:
            deadline_wait(lambda: current_supervisor(ns) not in (None, old), 10, "a new supervisor")
            assert not done and log.watermarks()[1] == 8, "the append did not wait"
        finally:
            log.set_floor(8)  # room: the append finishes (before the producer unmaps the ring under it)
            t.join(30)
        try:
            assert done and log.watermarks()[1] == 9
        finally:
            log.close()


# -- it exits when idle
def test_idle_supervisor_exits_and_the_next_client_starts_one(topic, monkeypatch):
    ns = topic
    monkeypatch.setenv(IDLE_ENV, "0.5")
    with Producer(conf(ns)) as p:
        first = wait_supervisor(ns)
        p.produce("t", b"kept", partition=0)
        end = time.monotonic() + 1.5  # three idle times: a registered client keeps it
        while time.monotonic() < end:
            assert running(first) and supervisor_alive(ns), "the supervisor left while a client was registered"
            time.sleep(0.01)
    deadline_wait(lambda: not running(first) and not supervisor_alive(ns), 10, "the idle supervisor to exit")
    assert "no registered client for 0.5 s" in open(log_path(ns)).read()
    with Consumer(conf(ns)) as c:  # topics and records stayed; a new client brings a new supervisor
        second = wait_supervisor(ns)
        assert second != first
        c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
        assert c.poll(10).value() == b"kept"


def test_idle_exit_starts_a_successor_for_a_client_that_registered_meanwhile(topic):
    """A client registering while the supervisor decides to leave finds the
    lock still taken and starts nobody: the leaving one starts a successor."""
    from broker.supervisor import Supervisor
    ns = topic
    sup = Supervisor(ns, idle=0.05)
    try:
        deadline_wait(lambda: sup.run_once(0.01) or sup._stop, 10, "the idle decision")
        p = Producer(conf(ns, **{"shm.supervisor": "off"}))  # starts nobody itself
    finally:
        sup.close()
    try:
        deadline_wait(lambda: current_supervisor(ns) is not None, 10, "a successor")
        assert "started a successor" in open(log_path(ns)).read()
    finally:
        p.close()


def test_serve_idle_timeout_flag(topic):
    ns = topic
    proc = subprocess.Popen([sys.executable, "-m", "broker", "serve", "--namespace", ns, "--idle-timeout", "0.3"],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "no registered client for 0.3 s" in proc.stderr.read()
    bad = subprocess.run([sys.executable, "-m", "broker", "serve", "--namespace", ns, "--idle-timeout", "-1"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "--idle-timeout" in bad.stderr


def test_bad_idle_env_is_a_config_error(ns, monkeypatch):
    from broker.errors import ConfigError
    monkeypatch.setenv(IDLE_ENV, "soon")
    with pytest.raises(ConfigError, match=IDLE_ENV):
        Producer(conf(ns))


# -- it shows up as ours, started isolated
def test_supervisor_shows_up_as_shmbroker(topic):
    ns = topic
    with Producer(conf(ns)):
        pid = wait_supervisor(ns)
        # pgrep as the shell would run it: not under the sanitizer pass's LD_PRELOAD (it hangs there)
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        by_args = subprocess.run(["pgrep", "-f", "shmbroker"], capture_output=True, text=True, env=env,
                                 timeout=30).stdout.split()
        by_name = subprocess.run(["pgrep", "shmbroker"], capture_output=True, text=True, env=env,
                                 timeout=30).stdout.split()
        assert str(pid) in by_args and str(pid) in by_name
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().decode().split("\0")
        assert "shmbroker" in argv and "serve" in argv and ns in argv
        assert os.readlink("/proc/%d/cwd" % pid) == "/"


def test_no_code_from_the_working_directory(topic, tmp_path, monkeypatch):
    ns = topic
    ran = tmp_path / "planted-code-ran"
    (tmp_path / "broker").mkdir()
    (tmp_path / "broker" / "__init__.py").write_text("")
    (tmp_path / "broker" / "__main__.py").write_text("open(%r, 'w').close()\n" % str(ran))
    monkeypatch.chdir(tmp_path)
    with Producer(conf(ns)):
        pid = wait_supervisor(ns, timeout=15)
    assert not ran.exists(), "the supervisor ran code from the client's working directory"
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        assert b"-I" in f.read().split(b"\0")


# -- bad metadata never kills it
def test_out_of_range_member_pid_neither_kills_nor_stops_it(topic):
    ns = topic
    with Namespace(ns) as n:
        off = next(MEMBERS_OFF + i * MEMBER for i in range(64)
                   if lib.shm_load64(n._cbuf, META_SIZE, MEMBERS_OFF + i * MEMBER) == 0)
        lib.shm_store64(n._cbuf, META_SIZE, off + 8, MEMBER_PRODUCER)
        lib.shm_store64(n._cbuf, META_SIZE, off + 16, 12345)
        lib.shm_store64(n._cbuf, META_SIZE, off, 1 << 40)  # no process has such a pid
        with Consumer(conf(ns, **{"group.id": "g"})) as c:
            sup = wait_supervisor(ns)
            c.subscribe(["t"])
            assert member(c) == [TopicPartition("t", 0)]
            deadline_wait(lambda: lib.shm_load64(n._cbuf, META_SIZE, off) == 0, 10, "the bad entry to be freed")
            assert current_supervisor(ns) == sup  # the same one: it never died
    assert "member entry" in open(log_path(ns)).read()


def test_catastrophic_regex_subscription_does_not_stall_it(topic):
    """A subscription written by a client that skipped the client-side
    check (an older release, or a hostile one) is matched on a budget."""
    ns = topic
    evil_topic = "a" * 40 + "b"
    with AdminClient(conf(ns)) as a:
        a.create_topics([NewTopic(evil_topic, 1)])[evil_topic].result()
    with Consumer(conf(ns, **{"group.id": "g1"})) as bad, Consumer(conf(ns, **{"group.id": "g2"})) as good:
        sup = wait_supervisor(ns)
        bad.subscribe(["^a"])
        assert member(bad) == [TopicPartition(evil_topic, 0)]
        gs = bad._gs
        with bad._ns.seq_write(gs.slot_off(bad._slot) + G.SUB_SEQ):
            gs.set_text(bad._slot, G.SUB, G.SUB_LEN, "^(a+)+$", G.MAX_SUB)
        bad._ns.wake_supervisor()
        t0 = time.monotonic()
        good.subscribe(["t"])
        assert member(good) == [TopicPartition("t", 0)]
        assert time.monotonic() - t0 < 5
        end = time.monotonic() + 10
        while bad.assignment():  # the pattern that ran out of budget matches nothing
            assert time.monotonic() < end, "the bad pattern still has partitions"
            bad.poll(0.05)
        assert current_supervisor(ns) == sup
    assert "^(a+)+$" in open(log_path(ns)).read()


@pytest.mark.parametrize("pattern", ["^(a+)+$", "^(a*)*b", "^(x|xx)+$", "^(a)\\1$"])
def test_risky_regex_subscription_refused_by_the_client(ns, pattern):
    with Consumer(conf(ns, **{"group.id": "g", "shm.supervisor": "off"})) as c:
        with pytest.raises(KafkaException) as ei:
            c.subscribe([pattern])
        assert ei.value.args[0].code() == KafkaError._INVALID_ARG
        assert repr(pattern) in str(ei.value)
        c.subscribe(["^orders\\..*", "^[a-z]+-[0-9]{1,3}$", "^(ab|cd)x*$"])  # ordinary patterns pass


# -- exactly one
def test_deleted_lock_file_leaves_exactly_one(topic, monkeypatch):
    from broker.lifecycle import lock_path
    ns = topic
    monkeypatch.setenv("SHMBROKER_SUPERVISOR", "off")  # only the two below
    procs = []

    def start():
        proc = subprocess.Popen([sys.executable, "-m", "broker", "serve", "--namespace", ns],
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        with Namespace(ns) as n:
            deadline_wait(lambda: n.supervisor_pid() == proc.pid or proc.poll() is not None, 30, "the supervisor")
        assert proc.poll() is None
        return proc

    try:
        first = start()
        os.unlink(lock_path(ns))
        second = start()  # takes a new lock file: the first must notice and step down
        assert first.wait(10) == 0
        assert "stepping down" in first.stderr.read()
        assert second.poll() is None and current_supervisor(ns) == second.pid
    finally:
        for proc in procs:
            stop(proc)
