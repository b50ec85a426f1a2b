"""The supervisor of a namespace: watches every registered client process
and repairs what a dead producer left half done.

- Singleton: an exclusive ``flock`` on ``/dev/shm/shmb.<ns>.sup`` held for
  its life; the kernel releases it when the supervisor dies, and the next one
  rebuilds its view from shared memory (the member table), so it keeps no
  state of its own that matters.
- Members register in the metadata segment (``Namespace.register``): pid,
  start time (from /proc, so pid reuse cannot fool us) and role.  The
  supervisor holds a pidfd for each; a pidfd becomes readable when the
  process exits, zombies included.
- A dead producer: its CLAIMED slots are tombstoned in every partition
  (``PartitionLog.repair_dead``), then offsets taken but never claimed are
  tombstoned after a short grace; sleeping readers are woken.  Idempotent.

Not yet (issue 4): auto-start by the first client, consumer groups,
rebalancing, max.poll.interval.ms.
"""
import fcntl
import logging
import os
import select
import signal
import time

from shm.errors import KafkaException, NamespaceError
from shm.log import repair_unclaimed

from .namespace import MEMBER_PRODUCER, Namespace, proc_start_ticks
from .namespace import ROLE_NAMES as ROLES

GRACE = 0.05  # seconds a claimed-but-unwritten offset gets before it is tombstoned


def log_path(ns):
    d = os.environ.get("SHMBROKER_LOG_DIR", "/tmp/shmbroker")
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, "%s.log" % ns)


class Supervisor:
    def __init__(self, namespace, to_stderr=False):
        self.ns = Namespace(namespace)
        self.name = namespace
        self._lock_path = "/dev/shm/shmb.%s.sup" % namespace
        self._lockfd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = self.ns.supervisor_pid()
            os.close(self._lockfd)
            self.ns.close()
            raise NamespaceError("a supervisor already runs for namespace %r (pid %s): one per namespace"
                                 % (namespace, other)) from None
        self.log = logging.getLogger("shmbroker.supervisor.%s" % namespace)
        self.log.setLevel(logging.INFO)
        self.log.propagate = False
        fmt = logging.Formatter("%(asctime)s supervisor[%(process)d] %(message)s")
        fh = logging.FileHandler(log_path(namespace))
        fh.setFormatter(fmt)
        self.log.addHandler(fh)
        if to_stderr:
            sh = logging.StreamHandler()
            sh.setFormatter(fmt)
            self.log.addHandler(sh)
        self.watched = {}  # pidfd -> (entry index, pid, start ticks, role)
        self.poller = select.poll()
        self.repairs = 0
        self._stop = False

    # -- members
    def _watch_new(self):
        known = {(v[0], v[1]) for v in self.watched.values()}
        for idx, pid, start, role in self.ns.members():
            if (idx, pid) in known:
                continue
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                self._dead(idx, pid, role)  # died before we looked (or while no supervisor ran)
                continue
            if proc_start_ticks(pid) != start:  # the pid was reused: the member is gone
                os.close(fd)
                self._dead(idx, pid, role)
                continue
            self.watched[fd] = (idx, pid, start, role)
            self.poller.register(fd, select.POLLIN)
            self.log.info("watching %s pid %d", ROLES.get(role, role), pid)

    def _dead(self, idx, pid, role):
        t0 = time.monotonic_ns()
        tomb = 0
        if role == MEMBER_PRODUCER:
            tomb = self.repair_producer(pid)
        self.ns.unregister(idx, pid)
        self.repairs += 1
        self.log.info("%s pid %d died: %d claims tombstoned, repaired in %.1f ms",
                      ROLES.get(role, role), pid, tomb, (time.monotonic_ns() - t0) / 1e6)

    def repair_producer(self, pid):
        """Tombstone the dead pid's claims in every partition, then offsets
        taken but never claimed that stay so past the grace."""
        logs = []
        for info in self.ns.topics().values():
            for p in range(info.partitions):
                try:
                    logs.append(self.ns.open_partition(info, p))
                except KafkaException:
                    pass  # deleted meanwhile
        try:
            n = sum(log.repair_dead(pid) for log in logs)
            return n + repair_unclaimed(logs, GRACE)
        finally:
            for log in logs:
                log.close()

    # -- loop
    def run_once(self, timeout=0.05):
        self._watch_new()
        for fd, _ in self.poller.poll(int(timeout * 1000)):
            idx, pid, start, role = self.watched.pop(fd)
            self.poller.unregister(fd)
            os.close(fd)
            self._dead(idx, pid, role)

    def run(self):
        self.log.info("supervisor of namespace %s started", self.name)
        prev = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        self.ns.set_supervisor(os.getpid())  # published once SIGTERM stops us cleanly
        try:
            while not self._stop:
                self.run_once()
        finally:
            for s, h in prev.items():
                signal.signal(s, h)
            self.close()

    def _on_signal(self, signum, frame):
        self._stop = True

    def close(self):
        for fd in list(self.watched):
            os.close(fd)
        self.watched.clear()
        if self._lockfd is not None:
            self.log.info("supervisor of namespace %s stopped", self.name)
            for h in list(self.log.handlers):
                h.close()
                self.log.removeHandler(h)
            if self.ns.supervisor_pid() == os.getpid():
                self.ns.set_supervisor(0)
            os.close(self._lockfd)  # releases the singleton lock
            self._lockfd = None
            self.ns.close()
