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
  result thread  reads result batches, completes futures (callbacks run here)
                 - or a thread waiting in result() does, sparing a hop;
  watcher threads (_manager.py, one per worker slot) wait on the slot's
                 death-watch mutex (_status.py, ext/shmrobust.c): the kernel
                 marks it owner-died as the worker dies, before its memory is
                 torn down; the watcher gives the dead worker's tasks back at once;
  manager thread (_manager.py) waits on the worker sentinels (the process has exited):
                 reaps it, gives back what is left of its tasks (``release(failed=True)``)
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
import functools
import itertools
import os
import pickle
import threading
import time
import types
import weakref

from shm._native import ffi, lib
from shm.errors import ClosedError, ConfigError, QueueFullError
from shm.log import BLOCK, PartitionLog
from shm.segment import unlink
from shm.workqueue import WorkQueue

from . import _serde, _worker
from ._manager import Manager, worker_crashed
from ._status import KIND_POOL, PREFIX, PoolStatus, orphans
from ._worker import INIT, OK_NONE, RES, SPILL, TASK

_seq = itertools.count()
_engines = weakref.WeakSet()
_atexit_done = [False]


def _after_fork_in_child():
    """A child forked by hand (os.fork) owns none of its parent's pools: it
    forgets them, and their workers (or multiprocessing's exit would try to
    join the parent's children)."""
    import multiprocessing.process as mpp
    children = getattr(mpp, "_children", None)
    for e in list(_engines):
        for p in list(e._workers.values()):
            if children is not None:
                children.discard(p)
    _engines.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
# shm.wait: how idle workers wait (adaptive: spin shm.pool.spin.us yielding the CPU, then sleep on the futex)
DEFAULTS = {"shm.pool.slots": 8192, "shm.pool.bytes": 1 << 23, "shm.wait": "adaptive", "shm.pool.spin.us": 20}
_IGNORED = ("bootstrap.servers", "shm.namespace", "client.id")


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


class Engine(Manager):
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
        self._startup_deaths = self._start_fails = 0  # workers that died before they were ready, in a row
        self._restart_at = 0.0  # no replacement before this (monotonic): a back-off after such deaths
        self._unclaimed = None  # (offsets, when) of result slots claimed by a dead worker, to tombstone
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._give_lock = threading.Lock()  # a dead worker's give-back: its watcher's or the manager's
        self._watchers = []
        self._watch_stop = False
        self.watch_error = None  # a watcher that stopped: the status segment was corrupt (CorruptSegmentError)
        self.notices = [0] * workers  # deaths each slot's watcher heard of (one writer per item)
        self.clean_exits = [0] * workers  # clean exits each slot's watcher heard of (the worker let go)
        self.false_notices = 0  # owner-died reports of a worker the kernel says is not exiting (ignored)
        self.early_retried = 0  # of `retried`, the tasks given back on a watcher's notice (before the sentinel)
        self._feeder = None
        self._rlock = threading.Lock()  # one reader of the results log at a time
        self._roff = 0  # the next result offset (under _rlock)
        self._helpers = 0  # threads reading results in result() (under _lock)
        self._no_helpers = threading.Event()
        self._no_helpers.set()
        if ctx.get_start_method() == "forkserver":
            from multiprocessing import forkserver
            forkserver.ensure_running()  # first, while we have no segments: its start takes ~0.1 s
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
            self._watchers = [self._thread(functools.partial(self._watch_slot, slot), "watch-%d" % slot)
                              for slot in range(workers)]
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
        for dead in orphans():  # pools whose owner and workers all died: nobody else removes them
            _worker.remove_pool_segments(dead)
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

    def _forget(self):
        _engines.discard(self)

    def _register_exit(self):
        _engines.add(self)
        if not _atexit_done[0]:
            _atexit_done[0] = True
            atexit.register(_at_exit)  # after multiprocessing's own: runs before it (LIFO)

    # ------------------------------------------------------------------ submit
    def encode(self, kind, fn, payload):
        """The task record for fn over payload, and its segments."""
        try:
            heads = self._fn_cache.get(fn)
        except TypeError:  # unhashable callable
            heads = None
        if heads is None:
            if _by_name(fn):  # its pickle is its name: made once
                fnb = pickle.dumps(fn, 5)
                heads = [TASK.pack(k, len(fnb)) + fnb for k in range(4)]  # by kind (CALL, STAR, MAP)
                if len(self._fn_cache) >= 512:
                    self._fn_cache.clear()
                self._fn_cache[fn] = heads
            else:
                heads = _NO_FN
                payload = (fn,) + payload
        bufs = []
        stream = _dumps(payload, 5, buffer_callback=bufs.append)
        if bufs:
            data, segs = _serde.assemble(stream, bufs, self.prefix)
            rec = heads[kind] + data
        else:
            segs = []
            rec = heads[kind] + _stream_head(len(stream)) + stream
        if len(rec) > self._max_record:
            name = _worker.spill(rec, self.prefix)
            segs.append(name)
            rec = TASK.pack(kind | SPILL, 0) + name.encode()
        return rec, segs

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
                if self.finished:
                    return self._closed(sink)
                try:
                    off = self._put(data)
                except QueueFullError:
                    pass
                else:
                    sink._off = off
                    self._tasks[off] = sink
                    return
        if self.terminating:
            return self._closed(sink)
        self._backlog.append((data, sink))
        self._start_feeder()

    def _closed(self, sink):
        _serde.discard(sink._segs)
        sink._engine_fail(ClosedError("the pool was terminated before this task could run"))

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
            while not self.finished and not self.terminating:  # terminate: _shut_down fails the backlog
                if not self._backlog:
                    self._feed_event.wait(0.1)
                    self._feed_event.clear()
                    continue
                try:
                    data, sink = self._backlog[0]
                except IndexError:  # emptied meanwhile (_fail_all)
                    continue
                if sink._engine_cancelled():
                    with self._lock:
                        if self._backlog and self._backlog[0][1] is sink:
                            self._backlog.popleft()
                    _serde.discard(sink._segs)
                    self._poke()
                    continue
                with self._lock:
                    if not self._backlog or self._backlog[0][1] is not sink:
                        continue
                    try:
                        off = self._put(data)
                    except QueueFullError:
                        off = None
                        self._feeding = True
                    else:
                        sink._off = off
                        self._tasks[off] = sink
                        self._backlog.popleft()
                if off is not None:
                    continue
                try:
                    off = wq.log.append(data)  # waits for room, at most 0.1 s
                except QueueFullError:
                    with self._lock:
                        self._feeding = False
                        dups, self._early = self._early, {}
                    for st, val in dups.values():
                        self._drop(st, val)
                    continue
                with self._lock:
                    early = self._early.pop(off, None)
                    dups, self._early = self._early, {}  # anything else is a re-run's duplicate
                    self._feeding = False
                    ours = bool(self._backlog) and self._backlog[0][1] is sink
                    if ours:
                        self._backlog.popleft()
                        sink._off = off
                        if early is None:
                            self._tasks[off] = sink
                for st, val in dups.values():
                    self._drop(st, val)
                if not ours:  # failed meanwhile (_fail_all): withdraw it (or ignore its result)
                    with self._lock:
                        if not self.finished:
                            self.wq.cancel(off)
                elif early is not None:
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
        if self._helpers and not self.finished:
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
        # a spin here holds a core (the GIL is released, no yield): only when workers leave one free
        spare = (os.cpu_count() or 1) > self.nworkers + 1 and self.conf["shm.wait"] != "sleep"
        spin = int(self.conf["shm.pool.spin.us"] * 1000) if spare else 0
        mode = lib.LOG_WAIT_ADAPTIVE
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
        # a short spin first (shm.pool.spin.us): a tiny task's result comes within it, and the thread
        # waits anyway; then the futex (a spin without a yield: only the waiting thread's own core)
        mode = lib.LOG_WAIT_SLEEP if self.conf["shm.wait"] == "sleep" else lib.LOG_WAIT_ADAPTIVE
        spin = 0 if mode == lib.LOG_WAIT_SLEEP else int(self.conf["shm.pool.spin.us"] * 1000)
        with self._lock:
            if self.finished:
                return  # the mappings are going: wait on the future as usual
            self._helpers += 1
            self._no_helpers.clear()
        try:
            while not sink._engine_done() and not self.finished:
                d = status.done_value()
                if rlock.acquire(False):
                    batch = None
                    try:
                        batch = self._read_locked()
                    finally:
                        rlock.release()
                        if batch is not None:  # even on Ctrl-C: popped futures must complete
                            self._handle(batch, True)
                    if batch is not None:
                        continue
                if sink._engine_done():
                    return
                left = 100_000_000 if end is None else min(100_000_000, int((end - time.monotonic()) * 1e9))
                if left <= 0:
                    return
                offs[0] = self._roff
                lib.log_wait_many_ex(views, offs, 1, left, mode, spin, dbase, dsize, doff, d)
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

_NO_FN = [TASK.pack(k, 0) for k in range(4)]  # task heads by kind, the function in the payload
_dumps = pickle.dumps
_stream_head = _serde.stream_head


def _by_name(fn):
    """Functions pickled as a name alone (module functions, builtins of a
    module), whose pickle may be cached; not bound methods (their object
    travels too)."""
    t = type(fn)
    if t is types.FunctionType:
        return True
    return t is types.BuiltinFunctionType and isinstance(getattr(fn, "__self__", None), (types.ModuleType,
                                                                                          type(None)))


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
