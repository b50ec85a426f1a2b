"""A pool's status segment ``/shmb.pool.<ownerpid>.<n>.s``: what `shmbroker
stat` shows of an Executor or Pool (workers: pid, state, task count; tasks
submitted, done, retried, failed), and two futex words the pool's threads
and workers wait on.

Layout (little-endian u64 words; one writer per word):
  header, 256 bytes: magic, version | kind, owner pid, worker slots, max
  workers, then the owner's counters (submitted, done, retried, failed,
  cancelled, timeouts), the kick word (u32 futex: idle workers look again
  when it moves: tasks were given back, or the stop flag is set), the wake word (u32 futex: the owner's result thread), the done
  word (u32 futex: threads of the owner reading results in result()), the
  created time (CLOCK_MONOTONIC ns, one clock for every process), the stop
  flag.
  then one 64-byte slot per worker: pid, state, offset of its task, start
  of its task (CLOCK_MONOTONIC ns), tasks done;
  then, at the byte offset in header word 16 (64-aligned, right after the
  slots), one 128-byte death-watch slot per worker (ext/shmrobust.c): a
  robust process-shared mutex the worker's main thread holds until it
  exits cleanly, and the pid of its holder.  The kernel marks it owner-died as the worker
  dies, before it tears the worker's memory down (the sentinel comes only
  after that): the owner's watcher threads hear of a death that early.

Counters and slots are plain aligned 8-byte stores and loads (single-copy
atomic on the CPUs we build for), a monitor's view: readers tolerate a
slot caught between two tasks.  The futex words go through the C core
(shm_futex_wake32 increments and wakes; waits compare in the kernel); so
do the death-watch slots, which the C side bounds-checks again.
"""
import os
import re
import time

from shm._native import ffi, lib
from shm.errors import CorruptSegmentError
from shm.segment import SHM_DIR, Segment, unlink

MAGIC = 0x4C4F4F50424D4853  # "SHMBPOOL"
VERSION = 2  # 2: the death-watch slots
HEADER = 256
SLOT = 64
KIND_EXECUTOR, KIND_POOL = 1, 2
KINDS = {KIND_EXECUTOR: "executor", KIND_POOL: "pool"}
# header words (index into the u64 view)
W_MAGIC, W_VERSION, W_OWNER, W_SLOTS, W_MAXW = 0, 1, 2, 3, 4
W_SUBMITTED, W_DONE, W_RETRIED, W_FAILED, W_CANCELLED, W_TIMEOUTS = 5, 6, 7, 8, 9, 10
KICK_OFF = 11 * 8  # u32 futex word: moves when workers must look again (tasks given back, or stop)
WAKE_OFF = 11 * 8 + 4  # u32 futex word: wakes the owner's result thread
DONE_OFF = 12 * 8  # u32 futex word: moves when futures complete while threads wait in result()
W_CREATED = 13
W_STOP = 14  # 1: workers leave (then the kick word moves)
W_PIDNS = 15  # the owner's pid namespace (inode of /proc/self/ns/pid; 0 unknown): its pids mean something here
W_ROBUST = 16  # byte offset of the death-watch slots
ROBUST_SLOT = lib.SHM_ROBUST_SLOT
# shm_robust_watch's outcomes
OWNER_DIED, ACQUIRED, NO_HOLDER, WATCH_TIMEOUT = (lib.SHM_ROBUST_OWNER_DIED, lib.SHM_ROBUST_ACQUIRED,
                                                  lib.SHM_ROBUST_NO_HOLDER, lib.SHM_ROBUST_TIMEOUT)
# worker slot words
S_PID, S_STATE, S_OFF, S_START, S_TASKS = 0, 1, 2, 3, 4
FREE, STARTING, IDLE, RUNNING, EXITED = 0, 1, 2, 3, 4
STATES = {FREE: "free", STARTING: "starting", IDLE: "idle", RUNNING: "running", EXITED: "exited"}
PREFIX = "/shmb.pool."
_NAME_RE = re.compile(r"^shmb\.pool\.(\d+)\.(\d+)\.s$")


def status_name(prefix):
    return prefix + ".s"


def robust_area(slots):
    """Byte offset of the death-watch slots: right after the worker slots (64-aligned)."""
    return HEADER + slots * SLOT


class PoolStatus:
    """The mapped status segment of one pool (creator: the pool's owner)."""

    def __init__(self, seg):
        self.seg = seg
        self.name = seg.name
        self.mv = memoryview(seg.mm).cast("Q")
        if self.mv[W_MAGIC] != MAGIC or self.mv[W_VERSION] >> 32 != VERSION:
            self.close()
            raise ValueError("%s is not a shmbroker pool status segment" % seg.name)
        self.slots = int(self.mv[W_SLOTS])
        self.robust = int(self.mv[W_ROBUST])
        if not 0 < self.slots <= lib.SHM_ROBUST_MAX_SLOTS or self.robust != robust_area(self.slots) \
                or self.robust + self.slots * ROBUST_SLOT > seg.size:
            self.close()
            raise CorruptSegmentError("%s: its %d worker slots do not fit its %d bytes: the segment is corrupt "
                                      "(or of another shmbroker version); close the pool and start a new one"
                                      % (seg.name, self.slots, seg.size))
        self.cbuf = ffi.from_buffer(seg.mm)

    @classmethod
    def create(cls, name, kind, slots, max_workers):
        area = robust_area(slots)
        size = area + slots * ROBUST_SLOT
        seg = Segment.create(name, size)
        try:
            buf = ffi.from_buffer(seg.mm)
            try:
                for i in range(slots):
                    if lib.shm_robust_init(buf, size, area, slots, i) != lib.LOG_OK:
                        raise OSError("cannot make the robust mutexes of a pool's status segment here "
                                      "(pthread_mutexattr_setrobust failed)")
            finally:
                ffi.release(buf)
            mv = memoryview(seg.mm).cast("Q")
            mv[W_VERSION] = VERSION << 32 | kind
            mv[W_OWNER] = os.getpid()
            mv[W_SLOTS] = slots
            mv[W_MAXW] = max_workers
            mv[W_CREATED] = time.monotonic_ns()
            mv[W_PIDNS] = pid_namespace()
            mv[W_ROBUST] = area
            mv[W_MAGIC] = MAGIC  # last: attachers check it
            mv.release()
            return cls(seg)
        except BaseException:
            seg.close()
            unlink(name)
            raise

    @classmethod
    def attach(cls, name):
        seg = Segment.attach(name)
        try:
            return cls(seg)
        except BaseException:
            seg.close()
            raise

    def close(self):
        if getattr(self, "cbuf", None) is not None:
            ffi.release(self.cbuf)
            self.cbuf = None
        if self.mv is not None:
            self.mv.release()
            self.mv = None
        self.seg.close()

    # -- futex words
    def kick_value(self):
        return lib.shm_load64(self.cbuf, self.seg.size, KICK_OFF) & 0xFFFFFFFF

    def wake_value(self):
        return lib.shm_load64(self.cbuf, self.seg.size, KICK_OFF) >> 32

    def stopped(self):
        return self.mv[W_STOP] != 0

    def stop(self):
        """Tell every worker to leave: the flag, then the kick word (a
        worker that read the word before the flag was set wakes)."""
        lib.shm_store64(self.cbuf, self.seg.size, W_STOP * 8, 1)  # release, then the kick's RMW: a worker that
        # reads the moved kick word (acquire) sees the flag
        self.kick()

    def kick(self):
        """Idle workers look for tasks again (some were given back)."""
        if self.cbuf is not None:  # not closed
            lib.shm_futex_wake32(self.cbuf, self.seg.size, KICK_OFF)

    def wake(self):
        if self.cbuf is not None:  # not closed
            lib.shm_futex_wake32(self.cbuf, self.seg.size, WAKE_OFF)

    def kick_notify(self):
        """``notify`` for log_wait_many_ex: the kick word."""
        return (self.cbuf, self.seg.size, KICK_OFF)

    def wake_notify(self):
        return (self.cbuf, self.seg.size, WAKE_OFF)

    def done_value(self):
        return lib.shm_load64(self.cbuf, self.seg.size, DONE_OFF) & 0xFFFFFFFF

    def done_notify(self):
        return (self.cbuf, self.seg.size, DONE_OFF)

    def bump_done(self):
        if self.cbuf is not None:  # not closed
            lib.shm_futex_wake32(self.cbuf, self.seg.size, DONE_OFF)

    # -- death watch (ext/shmrobust.c)
    def _robust_check(self, i, rc):
        if rc == lib.LOG_E_BAD_ARG:
            raise CorruptSegmentError("%s: death-watch slot %d is outside the segment's %d slots or %d bytes: the "
                                      "segment is corrupt; close the pool and start a new one"
                                      % (self.name, i, self.slots, self.seg.size))
        if rc == lib.LOG_E_BAD_LAYOUT:
            raise CorruptSegmentError("%s: the mutex of death-watch slot %d is not one this pool made (its bytes "
                                      "were overwritten): a dead worker of that slot is noticed only once it has "
                                      "exited; close the pool and start a new one to get the early notice back"
                                      % (self.name, i))
        return rc

    def hold(self, i, pid, timeout=2.0):
        """A worker: lock slot *i*'s death-watch mutex and publish *pid* as
        its holder.  Held until let_go (a clean exit); while held the
        mapping must stay (the thread's robust list points into it: the
        kernel could not mark the mutex owner-died, and it would stay locked
        for good).  It first waits for the watcher to hear the slot's last
        holder's end (the holder word cleared).  True if held; False if that
        or the mutex took longer than *timeout* seconds (no early notice for
        this worker)."""
        if not 0 <= i < self.slots:
            raise IndexError("worker slot %d of %d" % (i, self.slots))
        rc = lib.shm_robust_hold(self.cbuf, self.seg.size, self.robust, self.slots, i, pid, int(timeout * 1e9))
        if rc == lib.LOG_E_TIMEOUT:
            return False
        self._robust_check(i, rc)
        return True

    def let_go(self, i):
        """The holder of slot *i*, exiting cleanly: unlock (its watcher hears
        a clean exit, not a death)."""
        self._robust_check(i, lib.shm_robust_let_go(self.cbuf, self.seg.size, self.robust, self.slots, i))

    def watcher(self, i):
        """A wait function for slot *i*'s watcher thread: ``wait(timeout_ns)``
        -> (OWNER_DIED | ACQUIRED | NO_HOLDER | WATCH_TIMEOUT, pid); blocks in
        C without the GIL."""
        if not 0 <= i < self.slots:
            raise IndexError("worker slot %d of %d" % (i, self.slots))
        out = ffi.new("uint32_t *")
        call, cbuf, size, area, slots = lib.shm_robust_watch, self.cbuf, self.seg.size, self.robust, self.slots
        check = self._robust_check

        def wait(timeout_ns):
            rc = check(i, call(cbuf, size, area, slots, i, timeout_ns, out))
            return rc, int(out[0])
        return wait

    def clear_holder(self, i):
        """Forget slot *i*'s last holder (its watcher is gone, and that
        worker has exited): the next worker's hold() then does not wait for
        a watcher to hear of it."""
        if not 0 <= i < self.slots:
            raise IndexError("worker slot %d of %d" % (i, self.slots))
        if self.cbuf is not None:
            lib.shm_robust_clear(self.cbuf, self.seg.size, self.robust, self.slots, i)

    def unwatch(self, i):
        """Wake slot *i*'s watcher if it waits for a holder (the pool stops)."""
        if self.cbuf is not None:
            lib.shm_robust_wake(self.cbuf, self.seg.size, self.robust, self.slots, i)

    # -- owner's counters
    def publish(self, submitted, done, retried, failed, cancelled, timeouts):
        mv = self.mv
        mv[W_SUBMITTED], mv[W_DONE], mv[W_RETRIED] = submitted, done, retried
        mv[W_FAILED], mv[W_CANCELLED], mv[W_TIMEOUTS] = failed, cancelled, timeouts

    # -- worker slots
    def slot_base(self, i):
        if not 0 <= i < self.slots:
            raise IndexError("worker slot %d of %d" % (i, self.slots))
        return (HEADER + i * SLOT) // 8

    def set_slot(self, i, pid, state):
        b = self.slot_base(i)
        mv = self.mv
        mv[b + S_TASKS] = 0
        mv[b + S_OFF] = 0
        mv[b + S_START] = 0
        mv[b + S_STATE] = state
        mv[b + S_PID] = pid

    def running(self, i):
        """(pid, state, offset, start_ns, tasks) of slot *i*."""
        b = self.slot_base(i)
        return tuple(int(x) for x in self.mv[b:b + 5])

    def snapshot(self):
        mv = self.mv
        kind = int(mv[W_VERSION]) & 0xFFFFFFFF
        workers = []
        for i in range(self.slots):
            pid, state, off, start, tasks = self.running(i)
            if pid:
                workers.append({"slot": i, "pid": pid, "state": STATES.get(state, "?"), "offset": off,
                                "start_ns": start, "tasks": tasks})
        c = {k: int(mv[w]) for k, w in (("submitted", W_SUBMITTED), ("done", W_DONE), ("retried", W_RETRIED),
                                        ("failed", W_FAILED), ("cancelled", W_CANCELLED),
                                        ("timeouts", W_TIMEOUTS))}
        c["running"] = sum(1 for w in workers if w["state"] == "running")
        c["queued"] = max(0, c["submitted"] - c["done"] - c["failed"] - c["cancelled"] - c["running"])
        return {"name": self.name, "kind": KINDS.get(kind, "?"), "owner": int(mv[W_OWNER]),
                "max_workers": int(mv[W_MAXW]), "age_s": (time.monotonic_ns() - int(mv[W_CREATED])) / 1e9,
                "stopping": self.stopped(), "workers": workers, "tasks": c}


class WorkerSlot:
    """A worker's own slot: the stores of its hot loop, nothing else."""

    __slots__ = ("mv", "b", "tasks")

    def __init__(self, status, i, pid):
        self.mv = status.mv
        self.b = status.slot_base(i)
        self.tasks = 0
        status.set_slot(i, pid, STARTING)

    def state(self, st):
        self.mv[self.b + S_STATE] = st

    def start(self, off):
        mv, b = self.mv, self.b
        mv[b + S_START] = time.monotonic_ns()  # before the offset: a reader that sees the new offset sees this start
        mv[b + S_OFF] = off
        mv[b + S_STATE] = RUNNING

    def finish(self):
        self.tasks += 1
        mv, b = self.mv, self.b
        mv[b + S_TASKS] = self.tasks
        mv[b + S_STATE] = IDLE


def list_pools():
    """Status segment names of the pools on this host, oldest owner first."""
    out = []
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return out
    for f in names:
        m = _NAME_RE.match(f)
        if m:
            out.append((int(m[1]), int(m[2]), "/" + f))
    return [n for _, _, n in sorted(out)]


def pool_snapshots():
    """snapshot() of every pool whose status segment we can read; a pool
    whose owner is gone is marked so (its workers remove it)."""
    snaps = []
    for name in list_pools():
        try:
            st = PoolStatus.attach(name)
        except Exception:
            continue  # removed meanwhile, or not ours
        try:
            s = st.snapshot()
        finally:
            st.close()
        s["owner_alive"] = _alive(s["owner"])
        snaps.append(s)
    return snaps


def pid_namespace():
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def orphans():
    """Prefixes of the pools whose owner and workers are all dead (killed
    together, or the owner killed before it started a worker): nobody is
    left to remove them.  Only pools of our pid namespace are judged."""
    from broker.namespace import proc_start_ticks  # 0: no such process, or a zombie (it has exited)
    me = pid_namespace()
    out = []
    for name in list_pools() if me else ():
        owner = int(_NAME_RE.match(name[1:])[1])
        if owner == os.getpid() or proc_start_ticks(owner):
            continue
        try:
            st = PoolStatus.attach(name)  # a pool being made (no magic yet) is skipped: its owner is alive
        except Exception:
            continue
        try:
            if int(st.mv[W_PIDNS]) != me or int(st.mv[W_OWNER]) != owner:
                continue
            if any(pid and proc_start_ticks(pid) for pid in (st.running(i)[0] for i in range(st.slots))):
                continue  # a worker lives: it removes the pool itself (it watches the owner)
        finally:
            st.close()
        out.append(name[:-2])
    return out


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True

