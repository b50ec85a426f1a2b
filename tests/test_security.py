"""Host security: the supervisor's logs (per-user directory, no symlinks,
mode 0600, rotation, removed by destroy, never fatal), segments and lock
files private to their creator unless shared on purpose (shm.mode), the
per-user default namespace, segments allocated at creation (a full
/dev/shm is an error, not a SIGBUS), and first clients that never see a
namespace segment half created.

We run as root: "another user" is made by chown to uid 65534."""
import errno
import mmap
import os
import re
import stat

import posix_ipc
import pytest

from broker import Producer
from broker.admin import AdminClient, NewTopic
from broker.config import resolve_namespace
from broker.errors import ConfigError, KafkaError, NamespaceError
from broker.namespace import META_SIZE, Namespace, destroy, format_meta
from broker.logs import log_path, open_log
from broker.supervisor import Supervisor, ensure_supervisor
from shm.segment import Segment, exists, shm_free

from conftest import deadline_wait, wait_child

NOBODY = 65534


@pytest.fixture(autouse=True)
def env(monkeypatch, tmp_path):
    """No auto-started supervisors; logs in a directory of this test."""
    monkeypatch.setenv("SHMBROKER_SUPERVISOR", "off")
    monkeypatch.setenv("SHMBROKER_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("SHMBROKER_MODE", raising=False)


@pytest.fixture
def umask():
    """Set a umask for one test (restored after)."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def shm_files(ns):
    stem = "shmb.%s" % ns
    return sorted(f for f in os.listdir("/dev/shm") if f == stem or f.startswith(stem + "."))


def partition_files(ns):
    return [f for f in shm_files(ns) if re.match(r"shmb\.%s\.\d+\.\d+$" % re.escape(ns), f)]


def fmode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- logs

def test_log_symlink_is_not_followed(ns, tmp_path):
    """A symlink planted where the log goes: the target is untouched and the
    supervisor still runs (without a log file)."""
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.symlink(victim, log_path(ns))
    sup = Supervisor(ns)
    try:
        with Producer({"shm.namespace": ns}):
            sup.run_once(0)
            assert [v[1] for v in sup.watched.values()] == [os.getpid()]  # it works, without a log file
    finally:
        sup.close()
    assert victim.read_text() == "precious\n"
    assert os.path.islink(log_path(ns))


def test_log_dir_of_another_user_is_not_used(ns, tmp_path, monkeypatch):
    """A log directory owned by someone else (a squatter's /tmp/shmbroker):
    nothing is written there, and the supervisor starts all the same."""
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o777)
    os.chmod(logs, 0o777)
    os.chown(logs, NOBODY, NOBODY)
    monkeypatch.delenv("SHMBROKER_SUPERVISOR")  # the client starts the real, detached supervisor
    with Producer({"shm.namespace": ns}) as p:
        with Namespace(ns) as n:
            deadline_wait(lambda: n.supervisor_pid() != 0, 30, "the supervisor to start")
        assert p._ns.supervisor_pid() != 0
    assert os.listdir(logs) == []


def test_log_files_private_whatever_the_umask(ns, tmp_path, umask):
    umask(0)
    sup = Supervisor(ns)
    sup.close()
    logs = str(tmp_path / "logs")
    assert fmode(logs) == 0o700
    assert fmode(log_path(ns)) == 0o600
    assert "stopped" in open(log_path(ns)).read()


def test_log_rotation_bounds_the_files(ns, tmp_path):
    import logging
    h = open_log(ns, max_bytes=4096, backups=2)
    log = logging.getLogger("test_security.rotation.%s" % ns)
    log.propagate = False
    log.addHandler(h)
    try:
        for i in range(1000):
            log.warning("line %04d %s", i, "x" * 60)
    finally:
        log.removeHandler(h)
        h.close()
    files = sorted(os.listdir(tmp_path / "logs"))
    assert files == ["%s.log" % ns, "%s.log.1" % ns, "%s.log.2" % ns]
    for f in files:
        path = str(tmp_path / "logs" / f)
        assert os.path.getsize(path) <= 4096 and fmode(path) == 0o600
    assert "line 0999" in open(log_path(ns)).read()


def test_destroy_removes_the_logs(ns, tmp_path):
    sup = Supervisor(ns)
    sup.close()
    assert os.path.exists(log_path(ns))
    destroy(ns)
    assert not os.path.exists(log_path(ns)) and shm_files(ns) == []


# -- segments and lock files

def test_namespace_private_by_default(ns, umask):
    umask(0)  # 0600 whatever the umask
    with AdminClient({"shm.namespace": ns}) as a:
        a.create_topics([NewTopic("t", 2, config={"retention.bytes": 4096})])["t"].result()
    names = shm_files(ns)
    assert len(names) == 3
    assert {f: fmode("/dev/shm/" + f) for f in names} == {f: 0o600 for f in names}


@pytest.mark.parametrize("mode", [0o600, 0o666])
def test_squatted_namespace_refused(ns, mode):
    """Another user created the namespace first (private or open to all): a
    client refuses it, naming the owner and the mode."""
    seg = Segment.create("/shmb.%s" % ns, META_SIZE, mode)
    format_meta(seg.mm)
    seg.close()
    os.chown("/dev/shm/shmb.%s" % ns, NOBODY, NOBODY)
    with pytest.raises(NamespaceError, match=r"namespace '%s' is owned by .*uid %d.* mode %04o.*shm.mode"
                       % (ns, NOBODY, mode)):
        Producer({"shm.namespace": ns})


def test_our_namespace_open_to_others_refused(ns):
    with Namespace(ns):
        pass
    os.chmod("/dev/shm/shmb.%s" % ns, 0o666)
    with pytest.raises(NamespaceError, match="mode 0666"):
        AdminClient({"shm.namespace": ns})


def test_shared_mode_is_explicit_on_both_sides(ns, umask):
    umask(0o077)
    conf = {"shm.namespace": ns, "shm.mode": "0660"}
    with AdminClient(conf) as a:
        a.create_topics([NewTopic("t", 1, config={"retention.bytes": 4096})])["t"].result()
    assert {fmode("/dev/shm/" + f) for f in shm_files(ns)} == {0o660}
    os.chown("/dev/shm/shmb.%s" % ns, NOBODY, os.getegid())  # another member of our group made it
    with pytest.raises(NamespaceError, match="mode 0660"):
        Producer({"shm.namespace": ns})  # not shared on purpose by this client
    with Producer(dict(conf)) as p:
        p.produce("t", b"shared", partition=0)
    with pytest.raises(ConfigError, match="shm.mode"):
        Producer({"shm.namespace": ns, "shm.mode": "0644"})


def test_squatted_partition_refused(ns):
    with AdminClient({"shm.namespace": ns}) as a:
        a.create_topics([NewTopic("t", 1, config={"retention.bytes": 4096})])["t"].result()
    part = partition_files(ns)[0]
    os.chown("/dev/shm/" + part, NOBODY, NOBODY)
    with Producer({"shm.namespace": ns}) as p:
        with pytest.raises(NamespaceError, match="partition 0 of topic 't'.*uid %d" % NOBODY):
            p.produce("t", b"x", partition=0)


def test_squatted_lock_file_refused(ns, monkeypatch):
    with Namespace(ns):
        pass
    lock = "/dev/shm/shmb.%s.sup" % ns
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o666)
    os.fchmod(fd, 0o666)
    os.fchown(fd, NOBODY, NOBODY)
    os.close(fd)
    monkeypatch.delenv("SHMBROKER_SUPERVISOR")
    with pytest.raises(NamespaceError, match=r"supervisor lock .*uid %d.*0666" % NOBODY):
        ensure_supervisor(ns)


def test_symlinked_lock_file_refused(ns, tmp_path, monkeypatch):
    with Namespace(ns):
        pass
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.chmod(victim, 0o644)
    os.symlink(victim, "/dev/shm/shmb.%s.sup" % ns)
    monkeypatch.delenv("SHMBROKER_SUPERVISOR")
    with pytest.raises(NamespaceError, match="symbolic link"):
        ensure_supervisor(ns)
    assert victim.read_text() == "precious" and fmode(str(victim)) == 0o644


def test_default_namespace_is_per_user(monkeypatch):
    monkeypatch.delenv("SHMBROKER_NAMESPACE", raising=False)
    assert resolve_namespace({}) == "default-%d" % os.geteuid()
    monkeypatch.setenv("SHMBROKER_NAMESPACE", "x")
    assert resolve_namespace({}) == "x"


# -- allocation at creation

def test_topic_bigger_than_free_memory_refused(ns):
    free = shm_free()
    each = 1 << 40
    parts = min(4096, free // each + 1)
    with AdminClient({"shm.namespace": ns}) as a:
        fut = a.create_topics([NewTopic("huge", parts, config={"retention.bytes": each})])["huge"]
        with pytest.raises(ConfigError, match=r"needs .* of shared memory .* free") as info:
            fut.result()
        assert info.value.args[0].code() == KafkaError.INVALID_CONFIG
        assert "huge" not in a.list_topics().topics
    assert partition_files(ns) == []


def test_segment_bigger_than_free_memory_refused(logs):
    name = logs.name()
    with pytest.raises(ConfigError, match="not enough shared memory"):
        Segment.create(name, shm_free() + (1 << 30))
    assert not exists(name)


def test_segment_bigger_than_available_memory_refused_before_any_page(logs, monkeypatch):
    """/dev/shm can be as large as memory: a segment over what memory has
    left is refused up front (filling the tmpfs would wake the OOM killer
    before ENOSPC)."""
    import shm.segment as seg
    monkeypatch.setattr(seg, "mem_available", lambda: 1 << 20)
    name = logs.name()
    with pytest.raises(ConfigError, match=r"not enough shared memory: 2\.0 MiB needed.*1\.0 MiB of memory available"):
        Segment.create(name, 2 << 20)
    assert not exists(name)
    Segment.create(name, 1 << 19).close()  # under it: made
    assert exists(name)


def test_failed_partition_leaves_nothing(ns, monkeypatch):
    """The third of four partitions cannot be allocated: the two made before
    it are removed, the topic does not exist, and it can be created later."""
    real, calls = os.posix_fallocate, []

    def fallocate(fd, off, size):
        calls.append(size)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, off, size)

    with AdminClient({"shm.namespace": ns}) as a:
        monkeypatch.setattr(os, "posix_fallocate", fallocate)
        with pytest.raises(ConfigError, match="topic 't' needs"):
            a.create_topics([NewTopic("t", 4, config={"retention.bytes": 4096})])["t"].result()
        monkeypatch.undo()
        assert len(calls) == 3 and partition_files(ns) == [] and "t" not in a.list_topics().topics
        a.create_topics([NewTopic("t", 4, config={"retention.bytes": 4096})])["t"].result()
    assert len(partition_files(ns)) == 4


# -- first clients of a new namespace

def _fds_open_on(pid, path):
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == path:
                return True
        except OSError:
            pass
    return False


def test_attach_waits_for_a_creator_still_allocating(ns):
    """A creator between creating the object and sizing it: an attacher
    waits for it (deterministic form of the 1-in-200 race)."""
    meta = "/shmb.%s" % ns
    shm = posix_ipc.SharedMemory(meta, posix_ipc.O_CREX, mode=0o600, size=0)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            shm.close_fd()  # only the parent holds the creator's fd
            os.write(w, b"r")
            with Namespace(ns) as n:
                code = 0 if n.topics() == {} else 2
        finally:
            os._exit(code)
    os.close(w)
    assert os.read(r, 1) == b"r"
    os.close(r)
    status = []

    def inside_or_done():
        if _fds_open_on(pid, "/dev/shm" + meta):
            return True
        p, st = os.waitpid(pid, os.WNOHANG)
        if p == pid:
            status.append(st)
        return bool(status)

    try:
        deadline_wait(inside_or_done, 20, "the attacher to open the segment")
        os.posix_fallocate(shm.fd, 0, META_SIZE)  # what the creator does next
        mm = mmap.mmap(shm.fd, META_SIZE)
        format_meta(mm)
        mm.close()
    finally:
        shm.close_fd()
    st = status[0] if status else wait_child(pid)
    assert os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0, "the attacher failed on an unfinished segment"


def test_concurrent_first_clients(ns):
    """30 processes open a new namespace at once, 5 times over: every one
    gets it (no 'is empty', no 'no valid magic')."""
    names = ["%sr%d" % (ns, r) for r in range(5)]
    try:
        for name in names:
            r, w = os.pipe()
            pids = []
            for _ in range(30):
                pid = os.fork()
                if pid == 0:
                    code = 1
                    try:
                        os.close(w)
                        os.read(r, 1)  # all released at once
                        with Namespace(name) as n:
                            code = 0 if n.topics() == {} else 2
                    finally:
                        os._exit(code)
                pids.append(pid)
            os.close(r)
            os.close(w)
            codes = [os.WEXITSTATUS(wait_child(pid)) for pid in pids]
            assert codes == [0] * 30
    finally:
        for name in names:
            destroy(name)
    assert all(shm_files(name) == [] for name in names)
