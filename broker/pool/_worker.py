"""The worker side of an Executor or Pool (see _engine.py for the parent).

A worker attaches the pool's three segments by name, then loops: take a
task from the work queue (its lease carries this process's pid), run it,
append the result to the results log, ack the task.  Between tasks it
sleeps on the task log's futex (and the status segment's stop word).  A
watcher thread sleeps on a pidfd of the pool's owner: if the owner dies,
the worker removes the pool's segments and exits at once.  From start to
its clean exit the main thread holds its slot's death-watch mutex
(_status.py): if it dies instead, the kernel marks the mutex owner-died
and the owner's watcher of the slot hears of it early.

Records (both directions a pickle-5 ``_serde`` payload behind a header):
  task   ``<BH`` kind, length of the function's pickle (0: the function is in
         the payload), the function's pickle, then the payload:
         CALL (args, kwargs) | STAR (items,) -> [fn(*a)] | MAP (items,) -> [fn(x)]
  result ``<QB`` the task's offset, a status, then the payload:
         OK_NONE (none) | OK value | ERR (exc, traceback text) |
         ENC (pickling error, traceback text, repr of what would not pickle) |
         INIT (exc, traceback text): the initializer raised
A record over the log's max_record is spilled: kind/status | SPILL, then
the name of a segment of its own holding the rest.
"""
import os
import pickle
import select
import signal
import struct
import threading
import time
import traceback

from shm._native import ffi, lib
from shm.errors import CorruptSegmentError
from shm.log import PartitionLog
from shm.segment import SHM_DIR, Segment, unlink
from shm.workqueue import WorkQueue

from . import _serde
from ._status import IDLE, PoolStatus, WorkerSlot, EXITED

TASK = struct.Struct("<BH")
RES = struct.Struct("<QB")
CALL, STAR, MAP = 1, 2, 3
OK_NONE, OK, ERR, ENC, INIT = 0, 1, 2, 3, 4
SPILL = 0x80
_FN_CACHE_MAX = 256
_spill_n = iter(range(1 << 62))

#: the running worker (tests reach its result log through it to set crash points)
current = None


class Spec:
    """What a worker needs (pickled into it under spawn/forkserver)."""

    def __init__(self, prefix, owner, flavor, initializer, initargs, max_tasks, max_memory, wait_mode, spin_us):
        from broker.namespace import proc_start_ticks
        self.prefix, self.owner, self.flavor = prefix, owner, flavor
        self.owner_start = proc_start_ticks(owner)
        self.initializer, self.initargs = initializer, initargs
        self.max_tasks, self.max_memory = max_tasks, max_memory
        self.wait_mode, self.spin_us = wait_mode, spin_us


def spill(data, prefix):
    """Write *data* into a segment of its own; returns its name."""
    name = "%s.s%d_%d" % (prefix, os.getpid(), next(_spill_n))
    seg = Segment.create(name, max(1, len(data)))
    try:
        seg.mm[:len(data)] = data
    finally:
        seg.close()
    return name


def unspill(name):
    """The bytes a spilled record holds, mapped (the name is not removed)."""
    seg = Segment.attach(name)
    return memoryview(seg.mm)


def remove_pool_segments(prefix):
    """Unlink every segment of the pool *prefix* (idempotent; racing workers are fine)."""
    stem = prefix.lstrip("/") + "."
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return
    for f in names:
        if f.startswith(stem):
            unlink("/" + f)


def format_tb(exc):
    return '\n"""\n%s"""' % "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _watch_owner(owner, start, prefix):
    """Thread: wait for the pool's owner (pid and start time: a reused pid is
    not it) to die; then remove the pool's segments and leave (nobody is
    left to read our results)."""
    from broker.namespace import proc_start_ticks
    fd = None
    try:
        fd = os.pidfd_open(owner)
    except ProcessLookupError:
        pass  # already gone
    except (AttributeError, OSError):
        fd = -1  # no pidfd here: poll the pid
    if proc_start_ticks(owner) != start:  # after the open: the pidfd is the owner's if this holds
        fd = None
    if fd is not None and fd >= 0:
        p = select.poll()
        p.register(fd, select.POLLIN)
        while not p.poll(None):
            pass
    elif fd == -1:
        while True:
            if proc_start_ticks(owner) != start:
                break
            time.sleep(0.05)  # no pidfd: a liveness poll, 50 ms
    remove_pool_segments(prefix)
    os._exit(0)


class Worker:
    def __init__(self, spec, slot):
        self.spec = spec
        self.pid = os.getpid()
        self.index = slot
        p = spec.prefix
        self.status = PoolStatus.attach(p + ".s")
        # before it takes any task: our slot's death-watch mutex, held by this (main) thread until close(),
        # so the owner hears of our death before the kernel tears our memory down (_status.py,
        # ext/shmrobust.c).  Not held (a corrupt segment): the owner hears of it by the sentinel only.
        try:
            self.held = self.status.hold(slot, self.pid)
        except CorruptSegmentError:
            self.held = False
        try:
            self.slot = WorkerSlot(self.status, slot, self.pid)
            self.wq = WorkQueue.attach(p + ".t")
            self.rlog = PartitionLog.attach(p + ".r")
        except BaseException:
            self._let_go()
            raise
        self.rlog.block_timeout = None  # results wait for room; the owner watcher ends us if nobody reads
        self.fns = {}

    def _let_go(self):
        """Unlock the death-watch mutex (a clean exit, not a death), then
        unmap the status segment: never unmapped while held, or the kernel
        could not mark it owner-died and it would stay locked for good (a
        spawn worker's interpreter exit would unmap it)."""
        if self.held:
            self.held = False
            try:
                self.status.let_go(self.index)
            except CorruptSegmentError:
                return  # overwritten meanwhile: leave the mapping (the process exits soon)
        self.status.close()

    def close(self):
        try:
            self.slot.state(EXITED)
            self.wq.close()
            self.rlog.close()
        finally:
            self._let_go()

    # -- results
    def send(self, off, status, payload=None):
        """Encode and append one result; a value that will not pickle
        becomes an ENC result naming why."""
        if status == OK_NONE:
            self.rlog.append(RES.pack(off, OK_NONE))
            return
        try:
            data, _ = _serde.dumps(payload, self.spec.prefix)
        except Exception as e:
            what = payload if status == OK else payload[0]
            try:
                data, _ = _serde.dumps((e, format_tb(e), _repr(what)), self.spec.prefix)
            except Exception as e2:  # the pickling error itself will not pickle
                data, _ = _serde.dumps((RuntimeError("%s: %s" % (type(e).__name__, e)), format_tb(e2),
                                        _repr(what)), self.spec.prefix)
            status = ENC
        head = RES.pack(off, status)
        if len(data) + RES.size > self.rlog.max_record:
            self.rlog.append(RES.pack(off, status | SPILL) + spill(data, self.spec.prefix).encode())
        else:
            self.rlog.append(head + data)

    # -- tasks
    def decode(self, data):
        kind, fnlen = TASK.unpack_from(data, 0)
        if kind & SPILL:
            data = unspill(bytes(data[TASK.size:]).decode())
            kind, fnlen = TASK.unpack_from(data, 0)
        mv = memoryview(data)
        payload, _ = _serde.loads(mv[TASK.size + fnlen:])
        if fnlen:
            key = bytes(mv[TASK.size:TASK.size + fnlen])
            fn = self.fns.get(key)
            if fn is None:
                fn = pickle.loads(key)
                if len(self.fns) >= _FN_CACHE_MAX:
                    self.fns.clear()
                self.fns[key] = fn
        else:
            fn, payload = payload[0], payload[1:]
        return kind, fn, payload

    def run(self):
        spec, slot, pid = self.spec, self.slot, self.pid
        if spec.initializer is not None:
            try:
                spec.initializer(*spec.initargs)
            except BaseException as e:
                self.send(0, INIT, (e, format_tb(e)))
                return 1
        slot.state(IDLE)
        wq, log = self.wq, self.wq.log
        take, take_fast, ack, send = wq.try_take, wq.take_fast, wq.ack, self.send
        views = ffi.new("log_view *[]", [log._v])
        offs = ffi.new("uint64_t[]", 1)
        status = self.status
        xbase, xsize, xoff = status.kick_notify()
        kick = status.kick_value
        wait, chunk = lib.log_wait_many_ex, 100_000_000
        mode = {"adaptive": lib.LOG_WAIT_SLEEP, "sleep": lib.LOG_WAIT_SLEEP, "spin": lib.LOG_WAIT_SPIN}[spec.wait_mode]
        spin = spec.spin_us / 1e6 if spec.wait_mode == "adaptive" else 0.0
        yield_ = os.sched_yield
        clock = time.monotonic
        max_tasks, max_mem = spec.max_tasks, spec.max_memory
        last_mem = 0
        done = -1  # the task whose result is sent: acked in the C call that takes the next (take_fast)
        while True:
            r = take_fast(pid, done, pid)  # one C call, the GIL kept; data: a writable bytearray
            done = -1
            if r is None and spin:  # a short spin that yields the CPU to whoever can run (2 cores, a busy parent)
                end = clock() + spin
                while r is None and clock() < end:
                    yield_()
                    r = take_fast(pid)
            if r is None:
                k = kick()  # before the last look: a kick after it wakes the wait below
                off, rec, _ = take(pid)
                if off is None:
                    if status.stopped():
                        return 0
                    offs[0] = rec
                    wait(views, offs, 1, chunk, mode, 0, xbase, xsize, xoff, k)
                    continue
                p = log._rbuf + rec.key_len + rec.hdr_len
                data = bytearray(ffi.buffer(p, rec.val_len))  # writable: inline numpy arrays come back writable
            else:
                off, data, _ = r
                r = None
            slot.start(off)
            t0 = time.monotonic()
            try:
                kind, fn, payload = self.decode(data)
                if kind == CALL:
                    args, kw = payload
                    r = fn(*args, **kw) if kw else fn(*args)
                elif kind == STAR:
                    r = [fn(*a) for a in payload[0]]
                else:
                    r = [fn(x) for x in payload[0]]
                payload = args = kw = None  # the arguments are freed now, not at the next task
                if r is None:
                    send(off, OK_NONE)
                else:
                    send(off, OK, r)
                r = None
            except BaseException as e:
                payload = args = kw = None
                send(off, ERR, (e, format_tb(e)))
                e = None
            done = off
            slot.finish()
            if max_tasks is not None and slot.tasks >= max_tasks:
                ack(off, pid)
                return 0
            if max_mem is not None:
                now = time.monotonic()
                if now - last_mem >= 0.005 or now - t0 >= 0.001:  # psutil costs ~15 us: not per tiny task
                    last_mem = now
                    if _over(max_mem):
                        ack(off, pid)
                        return 0


def _repr(x):
    try:
        r = repr(x)
    except Exception as e:
        r = "<%s object (repr failed: %s)>" % (type(x).__name__, e)
    return r if len(r) <= 400 else r[:400] + "..."


_proc = None


def _over(limit):
    """Is this worker's own memory over *limit* bytes?  RSS first (~15 us);
    only over it the USS (the pages no other process shares, ~0.5 ms from
    smaps), since a forked worker's RSS counts the parent's pages it shares
    copy-on-write: a big parent must not get every worker recycled."""
    global _proc
    import psutil
    if _proc is None:
        _proc = psutil.Process()
    if _proc.memory_info().rss <= limit:
        return False
    return _proc.memory_full_info().uss > limit


def worker_main(spec, slot):
    """The target of every worker process."""
    global current
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the owner's to handle; it stops us
    threading.Thread(target=_watch_owner, args=(spec.owner, spec.owner_start, spec.prefix), daemon=True,
                     name="shmbroker-pool-owner-watch").start()
    try:
        w = current = Worker(spec, slot)
    except Exception:
        from broker.namespace import proc_start_ticks
        if proc_start_ticks(spec.owner) != spec.owner_start:  # the owner died while we started (our
            remove_pool_segments(spec.prefix)  # watcher removed some segments first): no traceback
            os._exit(0)
        if not os.path.exists(SHM_DIR + spec.prefix + ".s"):
            os._exit(0)  # the pool is gone already (closed while we started)
        raise
    try:
        code = w.run()
    finally:
        w.close()
    if code:
        os._exit(code)
