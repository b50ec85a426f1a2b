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

- A dead queue client (broker.Queue & co, pool/_queues.py): in every queue
  of the namespace its puts in progress are tombstoned and the items it held
  released to other getters (sleeping getters are woken); the queues it
  created are removed.  Every QUEUE_SWEEP, queues whose creator is no
  registered member (it died while no supervisor ran) are removed too.

- Consumer groups (groups.py says who writes what): the supervisor is the
  only writer of assignments.  It reconciles every group when a client wakes
  it (join, leave, ack, subscription change; a futex in the namespace
  segment, watched by a thread that writes to a self-pipe), when a member
  dies, and every 50 ms (heartbeats, max.poll.interval.ms, static members'
  session.timeout.ms, new topics for regex subscriptions).
- Lifecycle (lifecycle.py): started by a client when none is alive (at its
  start, and from its waits), isolated from the client's directory, named
  ``shmbroker``; or in the foreground by ``shmbroker serve``.  It exits after
  its idle time with no registered client, and steps down if its lock file
  no longer names the file it locked (deleted, maybe re-created by a second
  supervisor): exactly one runs.  Leaving for either reason, it starts a
  successor if a client registered meanwhile.
- It trusts nothing it reads from the namespace segment: member entries are
  validated (Namespace.members), subscriptions matched on a budget
  (subscription.py), a group whose data is bad is skipped; what it skips is
  logged once, and no bad entry stops it.
"""
import fcntl
import logging
import os
import select
import signal
import threading
import time

from shm._native import lib
from shm.errors import KafkaException, NamespaceError
from shm.log import repair_unclaimed

from . import groups as G
from .lifecycle import (ensure_supervisor, holds_lock, idle_timeout, lock_path, open_lock,  # noqa: F401
                        set_process_name, supervisor_alive, unlink_if, wait_supervisor)
from .logs import log_path, open_log  # noqa: F401 (log_path: re-exported)
from .namespace import (MAX_GROUPS, META_SIZE, MEMBER_PRODUCER, MEMBER_QUEUE, SUP_FUTEX_OFF, Namespace,
                        proc_start_ticks)
from .namespace import ROLE_NAMES as ROLES
from .pool import _queues as Q
from .subscription import Matcher

TICK = 0.05  # seconds between periodic group checks
QUEUE_SWEEP = 1.0  # seconds between looks for queues whose creator is gone
# Test-only crash point: SHMBROKER_SUP_CRASH=after_list:FLAGFILE SIGKILLs the
# supervisor after it rewrote a member's assignment list and before it told
# the member (the new epoch), once: only while FLAGFILE exists (it is removed).
_CRASH = os.environ.get("SHMBROKER_SUP_CRASH", "").partition(":")


def _crash_point(name):
    if _CRASH[0] == name and _CRASH[2]:
        try:
            os.unlink(_CRASH[2])
        except FileNotFoundError:
            return
        os.kill(os.getpid(), signal.SIGKILL)

GRACE = 0.05  # seconds a claimed-but-unwritten offset gets before it is tombstoned


class Supervisor:
    def __init__(self, namespace, to_stderr=False, create=True, lock_fd=None, mode=None, idle=None):
        """*lock_fd*: the singleton lock, already taken by the client that
        started us (ensure_supervisor), inherited; its mode (the one that
        client accepted the namespace with) is the namespace's *mode*.
        *idle*: seconds with no registered client before it exits (0: never;
        None: lifecycle.idle_timeout())."""
        self.idle_timeout = idle_timeout(idle, "--idle-timeout")
        try:
            if lock_fd is not None:
                mode = os.fstat(lock_fd).st_mode & 0o777
            self.ns = Namespace(namespace, create=create, mode=mode)  # first: a destroyed namespace is not brought back
        except BaseException:
            if lock_fd is not None:  # started for a namespace destroyed meanwhile: leave nothing behind
                unlink_if(lock_path(namespace), lock_fd)
                os.close(lock_fd)
            raise
        self.name = namespace
        self._ns_ino = os.fstat(self.ns._lockfd).st_ino
        if lock_fd is not None:
            self._lockfd = lock_fd
            return self._setup(to_stderr)
        try:
            self._lockfd = open_lock(namespace, self.ns.mode)
        except BaseException:
            self.ns.close()
            raise
        try:
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = self.ns.supervisor_pid()
            os.close(self._lockfd)
            self.ns.close()
            raise NamespaceError("a supervisor already runs for namespace %r (pid %s): one per namespace"
                                 % (namespace, other)) from None
        self._setup(to_stderr)

    def _setup(self, to_stderr):
        namespace = self.name
        self.log = logging.getLogger("shmbroker.supervisor.%s" % namespace)
        self.log.setLevel(logging.INFO)
        self.log.propagate = False
        fmt = logging.Formatter("%(asctime)s supervisor[%(process)d] %(message)s")
        try:
            fh = open_log(namespace)
        except OSError as exc:  # no log file: the supervisor runs all the same
            fh, problem = logging.NullHandler(), exc
        else:
            problem = None
        fh.setFormatter(fmt)
        self.log.addHandler(fh)
        if to_stderr:
            sh = logging.StreamHandler()
            sh.setFormatter(fmt)
            self.log.addHandler(sh)
        if problem is not None:
            self.log.warning("no log file for namespace %s: %s", namespace, problem)
        self.watched = {}  # pidfd -> (entry index, pid, start ticks, role)
        self.poller = select.poll()
        self.repairs = 0
        self.rebalances = 0
        self._stop = False
        self.groups = G.Groups(self.ns)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.poller.register(self._wake_r, select.POLLIN)
        self._waker = None
        self._next_tick = 0
        self._next_sweep = 0
        self._rstats = [0, 0, 0]  # reconcile passes, total ns, max ns
        self._idle_since = time.monotonic_ns()
        self._handoff = False  # leaving on our own: start a successor if a client registered meanwhile
        self._noted = set()  # what was logged once (bad entries, errors)
        self.matcher = Matcher(lambda pattern, why: self._note(
            ("regex", pattern), "a subscription regex %r is ignored: %s" % (pattern, why)))

    def _note(self, key, msg, *args, exc_info=False):
        """Log *msg* once per *key* (bad data is met again on every pass)."""
        if key in self._noted:
            return
        if len(self._noted) >= 4096:
            self._noted.clear()
        self._noted.add(key)
        self.log.warning(msg, *args, exc_info=exc_info)

    # -- members
    def _watch_new(self):
        """Watch new registrations; stop watching closed ones (a process
        whose clients all closed is no longer ours to wait for)."""
        bad = []
        members = self.ns.members(bad)
        current = {(idx, pid) for idx, pid, _, _ in members}
        for fd, (idx, pid, _, _) in list(self.watched.items()):
            if (idx, pid) not in current:
                self._unwatch(fd)
        known = {(v[0], v[1]) for v in self.watched.values()}
        for idx, pid, start, role in members:
            if (idx, pid) in known:
                continue
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                self._dead(idx, pid, role)  # died before we looked (or while no supervisor ran)
                continue
            except OSError as exc:  # out of descriptors, say: the next pass tries again
                self._note(("pidfd", str(exc)), "cannot watch pid %d: %s", pid, exc)
                continue
            if proc_start_ticks(pid) != start:  # the pid was reused: the member is gone
                os.close(fd)
                self._dead(idx, pid, role)
                continue
            self.watched[fd] = (idx, pid, start, role)
            self.poller.register(fd, select.POLLIN)
            self.log.info("watching %s pid %d", ROLES.get(role, role), pid)
        for idx, pid, why in bad:
            self._note(("member", idx, pid), "member entry %d of the namespace segment: %s", idx, why)

    def _unwatch(self, fd):
        self.poller.unregister(fd)
        os.close(fd)
        return self.watched.pop(fd)

    def _dead(self, idx, pid, role):
        t0 = time.monotonic_ns()
        tomb = 0
        if not self.ns.registered(idx, pid):  # closed before it exited: nothing half done
            gone = self.member_died(pid)
            self.log.info("%s pid %d exited (closed cleanly)%s", ROLES.get(role, role), pid,
                          ", %d group slots released" % gone if gone else "")
            return
        queued = ""
        if role == MEMBER_PRODUCER:  # by the entry's token: a process that reused the pid is not touched
            tomb = self.repair_producer(self.ns.member_token(idx) or pid)
        elif role == MEMBER_QUEUE and self.ns.member_token(idx):  # tokens only: a pid owns no lease
            try:
                tomb, released, removed = Q.member_died(self.ns.name, self.ns.member_token(idx), self.ns.mode,
                                                        self._note)
                queued = ", %d queue items released, %d queues it created removed" % (released, len(removed))
            except Exception as exc:  # bad queue data must not stop the rest (each queue was tried on its own)
                self._note(("queues", repr(exc)), "queue repair for pid %d failed: %r", pid, exc, exc_info=True)
        self.ns.unregister(idx, pid)
        self.repairs += 1
        gone = self.member_died(pid)
        self.log.info("%s pid %d died: %d claims tombstoned, %d group slots released%s, repaired in %.1f ms",
                      ROLES.get(role, role), pid, tomb, gone, queued, (time.monotonic_ns() - t0) / 1e6)

    def sweep_queues(self):
        """Remove queues whose creator is no registered member."""
        live = lambda: {self.ns.member_token(i) for i, _, _, _ in self.ns.members()}  # noqa: E731
        try:
            removed = Q.sweep(self.ns.name, live, self.ns.mode, self._note)
        except Exception as exc:  # nothing it reads may stop the pass (groups are reconciled next)
            self._note(("sweep", repr(exc)), "looking for orphaned queues failed (carrying on): %r", exc)
            return
        for name in removed:
            self.log.info("queue %s removed: its creator is gone", name)

    def repair_producer(self, owner):
        """Tombstone a dead registration's claims (by its token) in every
        partition, then offsets taken but never claimed that stay so past
        the grace."""
        logs = []
        for info in self.ns.topics().values():
            for p in range(info.partitions):
                try:
                    logs.append(self.ns.open_partition(info, p))
                except KafkaException:
                    pass  # deleted meanwhile
        try:
            n = sum(log.repair_dead(owner) for log in logs)
            return n + repair_unclaimed(logs, GRACE)
        finally:
            for log in logs:
                log.close()

    # -- groups
    def member_died(self, pid):
        """Release the group slots of a dead process: a static member's slot
        goes DOWN (its partitions wait session.timeout.ms for it), others
        are freed at once.  Returns how many."""
        gs = self.groups
        n = 0
        for slot, spid, state in gs.slots():
            if spid == pid and state != G.DOWN:
                self._release(slot, pid)
                n += 1
        return n

    def _release(self, slot, pid):
        gs = self.groups
        o = gs.slot_off(slot)
        if gs.load(o + G.INSTANCE_LEN) and gs.load(o + G.STATE) == G.ACTIVE:
            session_ms = min(gs.load(o + G.SESSION_MS), 1 << 31)  # as read: bounded
            gs.store(o + G.DOWN_DEADLINE, G.now_ns() + session_ms * 1_000_000)
            gs.store(o + G.N_OWNED, 0)
            gs.store(o + G.STATE, G.DOWN)
            self.log.info("static member %s (pid %d) is down: its partitions wait %d ms for it",
                          gs.text(slot, G.INSTANCE, G.INSTANCE_LEN), pid, session_ms)
        else:
            gs.free_slot(slot, pid)

    def _check_members(self, now):
        """Expire what no pidfd reports: slots of processes that died while
        no supervisor ran (or before registering), static members past their
        session, members that stopped polling."""
        gs = self.groups
        for slot, pid, state in gs.slots():
            o = gs.slot_off(slot)
            if state == G.DOWN:
                if now > gs.load(o + G.DOWN_DEADLINE) and gs.cas(o + G.PID, pid, 0):
                    gs.store(o + G.STATE, G.FREE)
                    gs.store(o + G.N_ASSIGNED, 0)
                    gs.store(o + G.GROUP, 0)
                    self.log.info("static member %s did not return within session.timeout.ms: released",
                                  gs.text(slot, G.INSTANCE, G.INSTANCE_LEN))
                continue
            start = gs.load(o + G.START)
            if state == G.FREE:  # a join in progress, or a joiner that died half way
                if start and not G.alive(pid, start):
                    gs.free_slot(slot, pid)
                continue
            if not G.alive(pid, start):
                self._release(slot, pid)
                continue
            if state != G.ACTIVE:
                continue
            if gs.load(o + G.IN_POLL):
                late, limit, what = now - gs.load(o + G.HEARTBEAT), gs.load(o + G.SESSION_MS), "session.timeout.ms"
            else:
                late, limit, what = now - gs.load(o + G.LAST_POLL), gs.load(o + G.MAXPOLL_MS), "max.poll.interval.ms"
            if late > limit * 1_000_000:
                gs.store(o + G.STATE, G.FENCED)
                gs.notify(slot)
                self.log.info("member pid %d slot %d exceeded %s (%d ms): removed from its group, its "
                              "partitions reassigned", pid, slot, what, limit)

    def reconcile(self):
        """Compute and hand out every group's assignment."""
        gs = self.groups
        topics = None
        by_group = {}
        for slot, pid, state in gs.slots():
            if state in (G.ACTIVE, G.DOWN):
                by_group.setdefault(gs.load(gs.slot_off(slot) + G.GROUP) - 1, []).append((slot, state))
        for gidx, slots in by_group.items():
            if not 0 <= gidx < MAX_GROUPS:
                if gidx >= 0:
                    self._note(("group", gidx), "member slots %s name group index %d (at most %d): skipped",
                               [s for s, _ in slots], gidx, MAX_GROUPS - 1)
                continue
            if topics is None:
                topics = self.ns.topics()
            try:
                self._reconcile_group(gidx, slots, topics)
            except Exception as exc:  # bad data in one group must not stop the others
                self._note(("reconcile", gidx, repr(exc)), "group %d skipped: %r", gidx, exc, exc_info=True)

    def _reconcile_group(self, gidx, slots, topics):
        gs = self.groups
        by_id = {info.topic_id: info for info in topics.values()}
        members, strats, info, torn = [], [], {}, set()
        for slot, state in slots:
            o = gs.slot_off(slot)
            inst = gs.text(slot, G.INSTANCE, G.INSTANCE_LEN)
            # static members first (by instance id, so a restart finds the same place), then by join time
            key = "%s\0%03d" % (inst, slot) if inst else "~shm-%020d-%03d" % (gs.load(o + G.JOIN_NS), slot)
            match = self.matcher.predicate(gs.text(slot, G.SUB, G.SUB_LEN))
            subs = {t for t in topics if match(t)}
            members.append((key, subs))
            if state == G.ACTIVE:
                strats.append(G.unpack_strategies(gs.load(o + G.STRATS)))
            assigned = gs.read_list(slot, "assigned")
            if assigned is None:  # left mid-write by a supervisor that died: rewrite it below
                torn.add(slot)
                assigned = []
            info[key] = (slot, state, assigned)
        if not strats:
            return  # only static members that are down: nothing to hand out
        members.sort()
        strategy = G.choose_strategy(strats)
        parts = {t: range(topics[t].partitions) for _, s in members for t in s}
        previous = {k: {(by_id[tp >> 16].name, tp & 0xFFFF) for tp in v[2] if tp >> 16 in by_id}
                    for k, v in info.items()}
        target = G.run_assignor(strategy, members, parts, previous)
        # who may still be reading what: acked owned lists, plus the newest
        # assignment of a member that has not acked it yet
        holder = {}
        for key, (slot, state, assigned) in info.items():
            if state != G.ACTIVE:
                continue
            o = gs.slot_off(slot)
            owned = gs.read_list(slot, "owned")
            held = set(assigned) | set(owned or ()) if owned is None or gs.load(o + G.ACK) != gs.load(o + G.EPOCH) \
                else set(owned)
            for tp in held:
                holder.setdefault(tp, slot)
        changed = False
        gs.set_strategy(gidx, strategy)  # before any member hears of it
        for key, (slot, state, assigned) in info.items():
            if state != G.ACTIVE:
                continue
            o = gs.slot_off(slot)
            want = [G.tp_id(topics[t].topic_id, p) for t, p in target.get(key, ())]
            give = sorted(tp for tp in want if holder.get(tp, slot) == slot)
            epoch = gs.load(o + G.EPOCH)
            if give == sorted(assigned) and epoch and epoch == gs.load(o + G.ASSIGN_SEQ) and slot not in torn:
                continue  # told already
            token = gs.token(slot)
            for tp in give:
                if tp not in assigned or gs.owner(gidx, tp >> 16, tp & 0xFFFF) != token:
                    gs.set_owner(gidx, tp >> 16, tp & 0xFFFF, token)  # before it is told: its commits count
            gs.write_list(slot, "assigned", give)
            if epoch:
                _crash_point("after_list")  # a re-tell: the member works on an older list
            gs.store(o + G.EPOCH, gs.load(o + G.ASSIGN_SEQ))  # the epoch is the list's sequence, after the list
            gs.notify(slot)
            changed = True
        if changed:
            gs.bump_generation(gidx)
            self.rebalances += 1

    # -- loop
    def _start_waker(self):
        """A thread asleep on the namespace's supervisor futex; each wake
        becomes a byte on the self-pipe that the main poll() watches."""
        def run():
            seen = self._futex_word()
            while not self._stop:
                word = self._futex_word()
                if word == seen:
                    lib.shm_futex_wait32(self.ns._cbuf, META_SIZE, SUP_FUTEX_OFF, word, 200_000_000)
                    continue
                seen = word
                try:
                    os.write(self._wake_w, b"w")
                except BlockingIOError:
                    pass  # a wake is pending already
        self._waker = threading.Thread(target=run, name="shmbroker-sup-waker", daemon=True)
        self._waker.start()

    def _futex_word(self):
        return lib.shm_load64(self.ns._cbuf, META_SIZE, SUP_FUTEX_OFF) & 0xFFFFFFFF

    def run_once(self, timeout=TICK):
        self._watch_new()
        events = self.poller.poll(int(timeout * 1000))
        woke = False
        for fd, _ in events:
            if fd == self._wake_r:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
                woke = True
                continue
            idx, pid, start, role = self._unwatch(fd)
            self._dead(idx, pid, role)
            woke = True
        now = G.now_ns()
        if woke or now >= self._next_tick:
            if now >= self._next_tick:
                if self._destroyed() or self._lock_lost() or self._idle(now):
                    return
                self._check_members(now)
                self._next_tick = now + int(TICK * 1e9)
                if now >= self._next_sweep:
                    self._next_sweep = now + int(QUEUE_SWEEP * 1e9)
                    self.sweep_queues()
            t0 = time.monotonic_ns()
            self.reconcile()
            dt = time.monotonic_ns() - t0
            self._rstats[0] += 1
            self._rstats[1] += dt
            self._rstats[2] = max(self._rstats[2], dt)

    def run(self):
        self.log.info("supervisor of namespace %s started (pid %d, idle timeout %s)", self.name, os.getpid(),
                      "%g s" % self.idle_timeout if self.idle_timeout else "none")
        set_process_name()
        prev = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        self.ns.set_supervisor(os.getpid())  # published once SIGTERM stops us cleanly
        self._start_waker()
        try:
            while not self._stop:
                try:
                    self.run_once()
                except Exception as exc:  # nothing it reads may stop it: logged once, and on to the next pass
                    self._note(("pass", repr(exc)), "a pass failed (carrying on): %r", exc, exc_info=True)
                    time.sleep(TICK)  # no hot loop if it fails again
        finally:
            for s, h in prev.items():
                signal.signal(s, h)
            self.close()

    def _destroyed(self):
        """Was our namespace destroyed (or replaced) under us?  Then stop, and
        remove the lock file if it is ours."""
        try:
            gone = os.stat("/dev/shm" + self.ns.meta_name).st_ino != self._ns_ino
        except FileNotFoundError:
            gone = True
        if gone:
            self.log.info("namespace %s was destroyed: stopping", self.name)
            self._stop = True
            unlink_if(lock_path(self.name), self._lockfd)
        return gone

    def _lock_lost(self):
        """Does our lock file's path name another file, or none?  (Deleted:
        a second supervisor may have locked a new one.)  Then step down."""
        if holds_lock(self.name, self._lockfd):
            return False
        self.log.warning("the lock file %s was deleted or replaced, so another supervisor may run: stepping down",
                         lock_path(self.name))
        self._stop = self._handoff = True
        return True

    def _idle(self, now):
        """No registered client for the idle time: exit (topics and records
        stay; the next client starts a supervisor)."""
        if self.watched or not self.idle_timeout:
            self._idle_since = now
            return False
        if now - self._idle_since < self.idle_timeout * 1e9:
            return False
        self.log.info("no registered client for %g s: exiting (the namespace's topics and records stay)",
                      self.idle_timeout)
        self._stop = self._handoff = True
        return True

    def _on_signal(self, signum, frame):
        self._stop = True
        try:
            os.write(self._wake_w, b"s")
        except OSError:
            pass

    def close(self):
        self._stop = True
        for fd in list(self.watched):
            os.close(fd)
        self.watched.clear()
        if self._waker is not None:
            self.ns.wake_supervisor()
            self._waker.join(2)
            self._waker = None
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._wake_r = self._wake_w = None
        if self._lockfd is not None:
            n, total, mx = self._rstats
            self.log.info("supervisor of namespace %s stopped: %d rebalances, %d reconcile passes (mean %.2f ms, "
                          "max %.2f ms)", self.name, self.rebalances, n, total / max(n, 1) / 1e6, mx / 1e6)
            if self.ns.supervisor_pid() == os.getpid():
                self.ns.set_supervisor(0)
            os.close(self._lockfd)  # releases the singleton lock
            self._lockfd = None
            if self._handoff:
                self._hand_off()
            for h in list(self.log.handlers):
                h.close()
                self.log.removeHandler(h)
            self.groups.close()
            self.ns.close()

    def _hand_off(self):
        """Leaving on our own (idle, or stepping down), the lock released: a
        client that registered meanwhile may have found it still taken and
        started nobody, so start a successor for it (unless one runs)."""
        try:
            if self.ns.members() and ensure_supervisor(self.name):
                self.log.info("a client registered meanwhile: started a successor")
        except Exception as exc:
            self.log.warning("could not start a successor (%r): the next client's wait starts one", exc)
