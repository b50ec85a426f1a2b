"""The worker manager shared by broker.pool.Executor and broker.pool.Pool.

The parent owns everything; no supervisor, no namespace.  Segments, all
named ``/shmb.pool.<parent pid>.<n>.*`` so `shmbroker stat` and cleanup
find them:
  ``.t`` (+ ``.t.q``) a WorkQueue of tasks: each record goes to one worker,
        leased by its pid; a dead worker's tasks are given back by pid;
  ``.r`` a block-mode log of results, appended by workers, read only by
        the parent's result thread (which raises its floor as it reads);
  ``.s`` the status segment (_status.py);
  ``.b*``/``.s*`` big buffers and spilled records (_serde, _worker.spill).

Threads of the parent (daemons; they never reference the Executor/Pool,
so those can be garbage-collected while busy):
  result thread  reads result batches, completes futures (callbacks run here);
  manager thread waits on the worker sentinels (a death is seen at once):
                 gives the dead worker's tasks back (``release(failed=True)``)
                 or, at max_attempts, ends them (``ack``) and fails their
                 futures with WorkerCrashedError/TaskTimeoutError; tombstones
                 the dead worker's half-written result; starts a replacement;
                 kills workers over task_timeout; drains and stops the pool;
  feeder thread  (only while the task ring is full) puts the backlog.

Hot path of submit: one pickle of the arguments (the function's pickle is
cached), one append (no syscall unless a worker sleeps), one lock for the
offset -> future map.  A task is known by its offset in the task log for
its whole life (a retry keeps it), so results carry it.
"""
import atexit
import collections
import itertools
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
import time
import types
import weakref

from shm.errors import ClosedError, ConfigError, QueueFullError, TaskTimeoutError
from shm._native import ffi, lib
from shm.log import BLOCK, PartitionLog
from shm.segment import unlink
from shm.workqueue import WorkQueue

from . import _serde, _worker
from ._status import KIND_EXECUTOR, KIND_POOL, PREFIX, STARTING, PoolStatus, RUNNING, EXITED
from ._worker import CALL, ENC, ERR, INIT, OK, OK_NONE, RES, SPILL, TASK

_seq = itertools.count()
_engines = weakref.WeakSet()
_atexit_done = [False]
_CACHEABLE = (types.FunctionType, types.BuiltinFunctionType)
DEFAULTS = {"shm.pool.slots": 8192, "shm.pool.bytes": 1 << 23, "shm.wait": "adaptive", "shm.pool.spin.us": 20}
_IGNORED = ("bootstrap.servers", "shm.namespace", "client.id")
STARTUP_DEATHS = 3  # workers dying before they are ready, in a row: the pool is broken


def worker_crashed(msg, pid=None, exitcode=None, attempts=None):
    from shm.errors import WorkerCrashedError
    e = WorkerCrashedError(msg)
    e.pid, e.exitcode, e.attempts = pid, exitcode, attempts
    return e


def describe_exit(code):
    if code is None:
        return "an unknown exit"
    if code < 0:
        try:
            return "signal %d (%s)" % (-code, signal.Signals(-code).name)
        except ValueError:
            return "signal %d" % -code
    return "exit code %d" % code


def parse_config(config):
    conf = dict(DEFAULTS)
    for k, v in config.items():
        if k in _IGNORED:
            continue
        if k not in DEFAULTS:
            raise ConfigError("No such configuration property: %r for a pool; a pool takes %s"
                              % (k, ", ".join(sorted(DEFAULTS))))
        conf[k] = v
    for k in ("shm.pool.slots", "shm.pool.bytes"):
        v = conf[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < 16 or v & (v - 1):
            raise ConfigError("%s must be a power of two >= 16, got %r" % (k, v))
    if conf["shm.pool.bytes"] < 1 << 16:
        raise ConfigError("shm.pool.bytes must be at least 65536, got %r" % conf["shm.pool.bytes"])
    if conf["shm.wait"] not in ("adaptive", "spin", "sleep"):
        raise ConfigError("shm.wait must be adaptive, spin or sleep, got %r" % (conf["shm.wait"],))
    s = conf["shm.pool.spin.us"]
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s <= 10000:
        raise ConfigError("shm.pool.spin.us must be a number of microseconds in [0, 10000], got %r" % (s,))
    return conf


def check_positive(name, v, allow_none=True, kind=int):
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int) or v <= 0:
        raise ValueError("%s must be a positive %s%s, got %r"
                         % (name, "number" if kind is float else "int", " or None" if allow_none else "", v))
    return v


class Engine:
    """Workers, the task queue, results.  ``flavor`` is KIND_EXECUTOR or
    KIND_POOL (how results wrap exceptions is the sinks' business)."""

    def __init__(self, flavor, workers, ctx, initializer, initargs, max_tasks, max_attempts, task_timeout,
                 max_memory, config):
        self.flavor = flavor
        self.nworkers = workers
        self.ctx = ctx
        self.max_attempts = max_attempts
        self.task_timeout = task_timeout
        self.conf = conf = parse_config(config)
        self._lock = threading.Lock()
        self._tasks = {}  # offset -> sink, registered under _lock with the put
        self._backlog = collections.deque()  # (data, sink) while the ring is full
        self._early = {}  # results that came before the feeder registered its put
        self._feeding = False
        self.submitted = self.done = self.retried = self.failed = self.cancelled = self.timeouts = 0
        self.broken = None  # an exception once the pool cannot run tasks
        self.closing = False  # no new tasks; stop once all are done
        self.terminating = False
        self.finished = False
        self._fn_cache = {}
        self._workers = {}  # slot -> Process
        self._timed_out = {}  # pid -> offset killed for task_timeout
        self._startup_deaths = 0
        self._unclaimed = None  # (offsets, when) of result slots claimed by a dead worker, to tombstone
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._feeder = None
        self._rlock = threading.Lock()  # one reader of the results log at a time
        self._roff = 0  # the next result offset (under _rlock)
        self._helpers = 0  # threads reading results in result() (under _lock)
        self._no_helpers = threading.Event()
        self._no_helpers.set()
        self.prefix = self._create_segments(flavor, workers, conf)
        try:
            self._spec = _worker.Spec(self.prefix, os.getpid(), flavor, initializer, initargs, max_tasks,
                                      max_memory, conf["shm.wait"], conf["shm.pool.spin.us"])
            self._read = self.rlog.read_batch
            self._put = self.wq.log.append  # non-blocking (block_timeout 0): QueueFullError when the ring is full
            self.wq.log.block_timeout = 0
            self._max_record = self.wq.log.max_record
            self._feed_event = threading.Event()
            self._register_exit()
            for slot in range(workers):
                self._start_worker(slot)
        except BaseException:
            self._kill_all()
            self._destroy()
            raise
        self._result_thread = self._thread(self._result_loop, "results")
        self._manager = self._thread(self._manage, "manager")

    # ------------------------------------------------------------------ setup
    def _create_segments(self, flavor, workers, conf):
        while True:
            prefix = "%s%d.%d" % (PREFIX, os.getpid(), next(_seq))
            try:
                self.status = PoolStatus.create(prefix + ".s", flavor, max(workers, 1), workers)
                break
            except Exception as e:
                if "already exists" not in str(e):
                    raise
        try:
            slots, nbytes = conf["shm.pool.slots"], conf["shm.pool.bytes"]
            self.wq = WorkQueue.create(prefix + ".t", slot_count=slots, data_capacity=nbytes,
                                       max_record=min(1 << 20, nbytes // 4))
            self.rlog = PartitionLog.create(prefix + ".r", slot_count=max(16, slots // 2), data_capacity=nbytes,
                                            max_record=min(1 << 20, nbytes // 4), overflow=BLOCK)
        except BaseException:
            self.status.close()
            _worker.remove_pool_segments(prefix)
            raise
        return prefix

    def _thread(self, fn, name):
        t = threading.Thread(target=fn, name="shmbroker-pool-%s" % name, daemon=True)
        t.start()
        return t

    def _register_exit(self):
        _engines.add(self)
        if not _atexit_done[0]:
            _atexit_done[0] = True
            atexit.register(_at_exit)  # after multiprocessing's own: runs before it (LIFO)

    def _start_worker(self, slot):
        p = self.ctx.Process(target=_worker.worker_main, args=(self._spec, slot), daemon=False,
                             name="shmbroker-pool-worker-%d" % slot)
        p.start()
        self._workers[slot] = p
        return p

    # ------------------------------------------------------------------ submit
    def encode(self, kind, fn, payload):
        """The task record for fn over payload, and its segments."""
        fnb = self._fn_cache.get(fn) if type(fn) in _CACHEABLE else None
        if fnb is None:
            if type(fn) in _CACHEABLE:
                fnb = pickle.dumps(fn, 5)
                if len(self._fn_cache) >= 512:
                    self._fn_cache.clear()
                self._fn_cache[fn] = fnb
            else:
                fnb = b""
                payload = (fn,) + payload
        data, segs = _serde.dumps(payload, self.prefix)
        rec = TASK.pack(kind, len(fnb)) + fnb + data
        if len(rec) > self._max_record:
            name = _worker.spill(rec, self.prefix)
            segs.append(name)
            rec = TASK.pack(kind | SPILL, 0) + name.encode()
        return rec, segs

    def check_open(self):
        if self.broken is not None:
            raise self.broken
        if self.closing or self.terminating:
            raise RuntimeError("cannot schedule new tasks after shutdown")

    def submit(self, kind, fn, payload, sink):
        """Queue one task; its outcome goes to sink._engine_result/_engine_fail.
        Never blocks: a full ring sends it to the backlog (feeder thread)."""
        try:
            data, segs = self.encode(kind, fn, payload)
        except Exception as e:  # unpicklable: this task fails, the pool goes on
            sink._engine_fail(e)
            return
        sink._segs = segs
        self.submitted += 1
        if not self._backlog:
            with self._lock:
                try:
                    off = self._put(data)
                except QueueFullError:
                    pass
                else:
                    sink._off = off
                    self._tasks[off] = sink
                    return
        self._backlog.append((data, sink))
        self._start_feeder()

    def _start_feeder(self):
        if self._feeder is None:
            with self._lock:
                if self._feeder is None:
                    self._feeder = self._thread(self._feed_loop, "feeder")
        self._feed_event.set()

    def _feed_loop(self):
        """Put the backlog, in order, waiting for room (outside the lock:
        results that come before the registration wait in _early)."""
        wq = WorkQueue.attach(self.wq.name)  # its own log view: blocking puts
        wq.log.block_timeout = 0.1
        try:
            while not self.finished:
                if not self._backlog:
                    self._feed_event.wait(0.1)
                    self._feed_event.clear()
                    continue
                data, sink = self._backlog[0]
                if sink._engine_cancelled() or self.terminating:
                    self._backlog.popleft()
                    _serde.discard(sink._segs)
                    self._poke()
                    continue
                with self._lock:
                    try:
                        off = self._put(data)
                    except QueueFullError:
                        off = None
                        self._feeding = True
                    else:
                        sink._off = off
                        self._tasks[off] = sink
                if off is not None:
                    self._backlog.popleft()
                    continue
                try:
                    off = wq.log.append(data)
                except QueueFullError:
                    with self._lock:
                        self._feeding = False
                        self._early.clear()
                    continue
                with self._lock:
                    early = self._early.pop(off, None)
                    self._early.clear()  # anything else there is a re-run's duplicate
                    self._feeding = False
                    sink._off = off
                    if early is None:
                        self._tasks[off] = sink
                self._backlog.popleft()
                if early is not None:
                    self._deliver([(sink, early[0], early[1])])
                    self.completed()
                elif sink._engine_cancelled():
                    self.cancel_queued(sink)
        finally:
            wq.close()

    def cancel_queued(self, sink):
        """Withdraw a queued task (no worker has taken it): True if it will
        never run; False if a worker has it or it is done."""
        with self._lock:
            off = getattr(sink, "_off", None)
            if off is None:
                return True  # still in the backlog: the feeder drops it
            if self._tasks.get(off) is not sink or self.finished or not self.wq.cancel(off):
                return False
            del self._tasks[off]
            self.cancelled += 1
        _serde.discard(sink._segs)
        self._poke()
        return True

    def completed(self):
        """Futures were completed outside the result path: wake threads
        reading results in result() (they wait on the log and the done word)."""
        if self._helpers:
            self.status.bump_done()

    def outstanding(self):
        return len(self._tasks) + len(self._backlog) + (1 if self._feeding else 0)

    # ------------------------------------------------------------------ results
    # Results are read by one thread at a time (_rlock): the result thread,
    # or a thread waiting in a future's result() ("helping": it reads the
    # log itself, sparing the hop through the result thread).  Futures are
    # completed outside _rlock, so a callback may wait for another future.
    def _read_locked(self):
        """Read one batch (caller holds _rlock): None if nothing came, else
        (sinks to complete, an initializer failure record or None)."""
        recs, nxt, _ = self._read(self._roff, 512)
        if nxt == self._roff:
            return None
        self.rlog.set_floor(nxt)  # copied out: workers may reuse it
        self._roff = nxt
        got, broken = [], None
        unpack = RES.unpack_from
        with self._lock:
            tasks = self._tasks
            for rec in recs:
                val = rec[1]
                toff, st = unpack(val, 0)
                if st & ~SPILL == INIT:
                    broken = val
                    continue
                sink = tasks.pop(toff, None)
                if sink is None:
                    if self._feeding:
                        self._early[toff] = (st, val)
                    else:
                        self._drop(st, val)  # a re-run's duplicate: its future is done
                    continue
                got.append((sink, st, val))
            self.done += len(got)
            idle = not tasks
        self._publish()
        if self.closing and idle:
            self._poke()
        return got, broken

    def _handle(self, batch, helper=False):
        got, broken = batch
        if broken is not None:
            st, payload = self._decode(RES.unpack_from(broken, 0)[1], broken)
            exc, tb = payload
            self._break(worker_crashed("the pool's initializer raised %s: %s; every task of this pool fails. "
                                       "Fix the initializer and start a new pool" % (type(exc).__name__, exc)),
                        cause=_remote(exc, tb))
        if got:
            self._deliver(got)
            if self._helpers > helper:
                self.status.bump_done()  # threads reading in result() wait on the log and this word

    def _result_loop(self):
        status = self.status
        views = ffi.new("log_view *[]", [self.rlog._v])
        offs = ffi.new("uint64_t[]", 1)
        xbase, xsize, xoff = status.wake_notify()
        wait, chunk = lib.log_wait_many_ex, 100_000_000
        spin, mode = int(self.conf["shm.pool.spin.us"] * 1000), lib.LOG_WAIT_ADAPTIVE
        rlock = self._rlock
        while not self.finished:
            if self._helpers:  # a thread in result() reads meanwhile: stay out of its way
                self._no_helpers.wait(0.1)
                continue
            with rlock:
                batch = self._read_locked()
            if batch is not None:
                self._handle(batch)
                continue
            v = status.wake_value()
            if self.finished:
                return
            offs[0] = self._roff
            wait(views, offs, 1, chunk, mode, spin, xbase, xsize, xoff, v)  # GIL released

    def help_until(self, sink, timeout):
        """Read results in the calling thread until *sink* is done, *timeout*
        seconds pass, or the pool is finished."""
        end = None if timeout is None else time.monotonic() + timeout
        status, rlock = self.status, self._rlock
        views = ffi.new("log_view *[]", [self.rlog._v])
        offs = ffi.new("uint64_t[]", 1)
        dbase, dsize, doff = status.done_notify()
        with self._lock:
            self._helpers += 1
            self._no_helpers.clear()
        try:
            while not sink._engine_done() and not self.finished:
                d = status.done_value()
                if rlock.acquire(False):
                    try:
                        batch = self._read_locked()
                    finally:
                        rlock.release()
                    if batch is not None:
                        self._handle(batch, True)
                        continue
                if sink._engine_done():
                    return
                left = 100_000_000 if end is None else min(100_000_000, int((end - time.monotonic()) * 1e9))
                if left <= 0:
                    return
                offs[0] = self._roff
                lib.log_wait_many_ex(views, offs, 1, left, lib.LOG_WAIT_SLEEP, 0, dbase, dsize, doff, d)
        finally:
            with self._lock:
                self._helpers -= 1
                if not self._helpers:
                    self._no_helpers.set()

    def _decode(self, st, val):
        if st & SPILL:
            name = bytes(val[RES.size:]).decode()
            data = _worker.unspill(name)
            unlink(name)
            payload, segs = _serde.loads(data)
        else:
            payload, segs = _serde.loads(bytearray(val)[RES.size:])  # writable: inline numpy arrays too
        _serde.discard(segs)  # our mappings stay valid
        return st & ~SPILL, payload

    def _drop(self, st, val):
        if st & SPILL or (st != OK_NONE and b".b" in val):
            try:
                self._decode(st, val)  # unmaps and removes its segments
            except Exception:
                pass

    def _deliver(self, got):
        for sink, st, val in got:
            _serde.discard(sink._segs)
            if st == OK_NONE:
                sink._engine_result(OK_NONE, None)
                continue
            try:
                st, payload = self._decode(st, val)
            except Exception as e:
                sink._engine_fail(e)
                continue
            sink._engine_result(st, payload)

    # ------------------------------------------------------------------ manager
    def _poke(self):
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # full: the manager wakes anyway; closed: it is gone

    def _manage(self):
        try:
            self._manage_loop()
        finally:
            self._shut_down()

    def _manage_loop(self):
        wait = multiprocessing.connection.wait
        stop_at = None
        while True:
            timeout = None
            if self.task_timeout is not None:
                timeout = min(0.05, max(0.002, self.task_timeout / 8))
            if self._unclaimed is not None:
                timeout = max(0.0, min(timeout or 1.0, self._unclaimed[1] - time.monotonic()))
            if stop_at is not None:
                timeout = 0.05
            procs = dict(self._workers)
            ready = wait([p.sentinel for p in procs.values()] + [self._wake_r], timeout)
            if self._wake_r in ready:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            for slot, p in procs.items():
                if p.sentinel in ready or p.exitcode is not None:
                    self._on_exit(slot, p)
            if self._unclaimed is not None and time.monotonic() >= self._unclaimed[1]:
                seen, self._unclaimed = self._unclaimed[0], None
                for o in self.rlog.scan_unclaimed():
                    if o in seen:
                        self.rlog.tombstone_unclaimed(o)
            if self.terminating or self.broken is not None or (self.closing and self.outstanding() == 0):
                if stop_at is None:
                    stop_at = time.monotonic() + 5.0
                    self.status.stop()
                    if self.terminating or self.broken is not None:
                        for p in self._workers.values():
                            _signal(p, signal.SIGTERM)
                if not self._workers:
                    return
                if time.monotonic() > stop_at:
                    for p in self._workers.values():
                        _signal(p, signal.SIGKILL)
                continue
            if self.task_timeout is not None:
                self._check_timeouts()
            for slot in range(self.nworkers):
                if slot not in self._workers and self.broken is None:
                    try:
                        self._start_worker(slot)
                    except Exception as e:
                        self._break(worker_crashed("cannot start a pool worker: %s: %s" % (type(e).__name__, e)))
            self._publish()

    def _on_exit(self, slot, p):
        p.join()
        code, pid = p.exitcode, p.pid
        del self._workers[slot]
        try:
            _, state, _, _, _ = self.status.running(slot)
        except Exception:
            state = None
        timed = self._timed_out.pop(pid, None)
        held = [] if self.terminating else self.wq.held(pid)  # terminate: _shut_down fails what is left
        for o in held:
            self._give_back(o, pid, code, timed == o)
        if held:
            self.status.kick()  # idle workers sleep until a new task: the given-back ones are older
        self.rlog.repair_dead(pid)  # its half-written result (claimed, not committed): a tombstone
        un = self.rlog.scan_unclaimed()
        if un:  # offsets it took but never claimed: tombstoned if still so after a grace
            self._unclaimed = (set(un), time.monotonic() + 0.05)
        self.status.set_slot(slot, pid, EXITED)
        if state == STARTING and code != 0 and not self.terminating and not (self.closing and self.status.stopped()):
            self._startup_deaths += 1
            if self._startup_deaths >= STARTUP_DEATHS:
                self._break(worker_crashed(
                    "%d pool workers in a row died while starting (last: pid %d, %s): check the initializer "
                    "and that the worker can import what it needs (spawn/forkserver)"
                    % (self._startup_deaths, pid, describe_exit(code)), pid, code))
        elif state != STARTING:
            self._startup_deaths = 0
        self._publish()

    def _give_back(self, o, pid, code, timed):
        wq = self.wq
        with self._lock:
            sink = self._tasks.get(o)
            feeding = self._feeding
        if sink is None and not feeding:
            wq.ack(o, pid)  # its result came: nothing to re-run
            return
        attempts = wq.attempts(o) + 1
        if sink is None or attempts < self.max_attempts:
            wq.release(o, pid, failed=True)  # runs again on another worker
            self.retried += 1
            return
        with self._lock:
            if self._tasks.get(o) is sink:
                del self._tasks[o]
            else:
                sink = None
        wq.ack(o, pid)
        if sink is None:
            return
        self.failed += 1
        _serde.discard(sink._segs)
        if timed:
            err = TaskTimeoutError("task ran over task_timeout=%gs %d time(s) (max_attempts=%d); its worker "
                                   "(last pid %d) was killed each time" % (self.task_timeout, attempts,
                                                                           self.max_attempts, pid))
            err.pid, err.exitcode, err.attempts = pid, code, attempts
        else:
            err = worker_crashed(
                "the worker running this task died: pid %d, %s; the task was tried %d time(s) (max_attempts=%d) "
                "and its worker died each time, so it likely kills the process (segfault, os._exit, out of "
                "memory). The pool goes on" % (pid, describe_exit(code), attempts, self.max_attempts),
                pid, code, attempts)
        sink._engine_fail(err)
        self.completed()
        if self.closing:
            self._poke()

    def _check_timeouts(self):
        now = time.monotonic_ns()
        limit = int(self.task_timeout * 1e9)
        for slot, p in list(self._workers.items()):
            pid, state, off, start, _ = self.status.running(slot)
            if state == RUNNING and pid == p.pid and start and now - start > limit and pid not in self._timed_out:
                _, state2, off2, start2, _ = self.status.running(slot)
                if (state2, off2, start2) != (state, off, start):
                    continue  # moved on meanwhile
                self._timed_out[pid] = off
                self.timeouts += 1
                _signal(p, signal.SIGKILL)

    def _break(self, err, cause=None):
        """The pool cannot run tasks (initializer fails, workers die at
        start): every outstanding task fails with *err*."""
        if cause is not None:
            err.__cause__ = cause
        if self.broken is None:
            self.broken = err
        self._fail_all(self.broken)
        self._poke()

    def _fail_all(self, err):
        with self._lock:
            sinks = list(self._tasks.values())
            self._tasks.clear()
            backlog = [s for _, s in self._backlog]
            self._backlog.clear()
        for s in sinks + backlog:
            _serde.discard(s._segs)
            self.failed += 1
            s._engine_fail(err)
        self.completed()

    def _publish(self):
        try:
            self.status.publish(self.submitted, self.done, self.retried, self.failed, self.cancelled,
                                self.timeouts)
        except Exception:
            pass  # closed meanwhile

    def _kill_all(self):
        for p in list(self._workers.values()):
            _signal(p, signal.SIGKILL)
            p.join(5)
        self._workers.clear()

    def _shut_down(self):
        """Manager thread's last act: workers are gone; stop the threads,
        remove every segment."""
        self._kill_all()
        self.finished = True
        if self.outstanding():  # terminate, or a bug: never leave a future waiting
            self._fail_all(self.broken or ClosedError("the pool was terminated before this task finished"))
        try:
            self.status.wake()
            self.status.bump_done()
        except Exception:
            pass
        self._result_thread.join(10)
        self._feed_event.set()
        if self._feeder is not None:
            self._feeder.join(10)
        self._destroy()

    def _destroy(self):
        for obj in ("wq", "rlog", "status"):
            o = getattr(self, obj, None)
            if o is not None:
                o.close()
        _worker.remove_pool_segments(self.prefix)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1
        _engines.discard(self)

    # ------------------------------------------------------------------ control
    def close(self):
        """No new tasks; the workers stop once every task is done."""
        self.closing = True
        self._poke()

    def terminate(self):
        """Stop now: workers are killed, unfinished tasks fail."""
        self.terminating = True
        self.closing = True
        self._poke()

    def join(self, timeout=None):
        if self._manager is not threading.current_thread():
            self._manager.join(timeout)
        return not self._manager.is_alive()

    def worker_pids(self):
        return [p.pid for p in list(self._workers.values())]


def _signal(p, sig):
    try:
        os.kill(p.pid, sig)
    except (ProcessLookupError, TypeError):
        pass


def _remote(exc, tb):
    from .executor import RemoteTraceback
    return RemoteTraceback(tb)


def _at_exit():
    """Interpreter exit: executors finish their tasks (as
    ProcessPoolExecutor does), pools are terminated (as multiprocessing's)."""
    for e in list(_engines):
        if e.flavor == KIND_POOL:
            e.terminate()
        else:
            e.close()
    for e in list(_engines):
        e.join()
