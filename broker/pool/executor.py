"""``broker.pool.Executor``: a ``concurrent.futures.Executor`` over
shmbroker's work queue (see _engine.py).

Differences from ProcessPoolExecutor, by design: a worker that dies
(SIGKILL, segfault, OOM killer, ``os._exit``) is replaced and its task runs
again; only a task whose workers died ``max_attempts`` times fails, with
WorkerCrashedError (a BrokenProcessPool); the other futures never notice.
A future stays PENDING while its task is queued or running (``cancel()``
succeeds while no worker has taken it, and marks it RUNNING otherwise).
"""
import concurrent.futures
import multiprocessing
import os
import threading
import time
import weakref
from _thread import RLock as _RLock
from collections import deque as _deque
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING, RUNNING, InvalidStateError

from ._engine import Engine, check_positive
from ._progress import progress as _progress
from ._status import KIND_EXECUTOR
from ._worker import CALL, MAP, OK, OK_NONE, STAR

__all__ = ["Executor", "RemoteTraceback"]


class RemoteTraceback(Exception):
    """The worker's traceback, as the ``__cause__`` of a task's exception."""

    def __init__(self, tb):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return self.tb


_cond_lock = threading.Lock()


class _FutureBase(concurrent.futures.Future):
    """A Future whose queued task can be withdrawn by cancel(), and whose
    result() reads the pool's results itself while it waits."""

    _off = None
    _segs = ()
    _engine = None

    # a FINISHED future never changes again: read it without the condition
    def done(self):
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)

    def result(self, timeout=None):
        if self._state != FINISHED:
            timeout = self._help(timeout)
        if self._state == FINISHED:
            if self._exception is not None:
                try:
                    raise self._exception
                finally:
                    self = None  # no reference cycle through the traceback, as Future.result
            return self._result
        return super().result(timeout)

    def exception(self, timeout=None):
        if self._state != FINISHED:
            timeout = self._help(timeout)
        if self._state == FINISHED:
            return self._exception
        return super().exception(timeout)

    def _help(self, timeout):
        """Wait by reading results in this thread; the timeout left."""
        eng = self._engine
        if eng is None or self._state not in (PENDING, RUNNING):
            return timeout
        if timeout is None:
            eng.help_until(self, None)
            return None
        end = time.monotonic() + timeout
        eng.help_until(self, timeout)
        return max(0.0, end - time.monotonic())

    def cancel(self):
        with self._condition:
            if self._state == PENDING and self._engine is not None and not self._engine.cancel_queued(self):
                self._state = RUNNING  # a worker has it
                return False
        if not super().cancel():
            return False
        if self._engine is not None:
            self._engine.completed()
        return True

    def _engine_done(self):
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)

    def _engine_cancelled(self):
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def _engine_result(self, st, payload):
        try:
            if st == OK or st == OK_NONE:
                self.set_result(payload)
            else:
                exc = payload[0]
                exc.__cause__ = RemoteTraceback(payload[1])
                self.set_exception(exc)
        except InvalidStateError:
            pass  # cancelled meanwhile

    def _engine_fail(self, exc):
        try:
            self.set_exception(exc)
        except InvalidStateError:
            pass


class _Condition(threading.Condition):
    """threading.Condition over an RLock in 3 objects, not 9 (its __init__
    stores 5 bound methods of the lock; these delegate instead): cf.wait
    and as_completed make one for every future they are given."""

    def __init__(self):
        self._lock = _RLock()
        self._waiters = _deque()

    def acquire(self, blocking=True, timeout=-1):
        return self._lock.acquire(blocking, timeout)

    def release(self):
        self._lock.release()

    def _release_save(self):
        return self._lock._release_save()

    def _acquire_restore(self, x):
        self._lock._acquire_restore(x)

    def _is_owned(self):
        return self._lock._is_owned()


class _Finished:
    """The condition of a future that finished before anyone asked for one:
    its state never changes again, so there is nothing to lock, wait for or
    notify (cf.wait still takes, waits on and releases it)."""

    def acquire(self, blocking=True, timeout=-1):
        return True

    def release(self):
        pass

    def __enter__(self):
        return True

    def __exit__(self, *exc):
        return None

    def wait(self, timeout=None):
        return True

    def wait_for(self, predicate, timeout=None):
        return predicate()

    def notify(self, n=1):
        pass

    def notify_all(self):
        pass


_FINISHED = _Finished()


# Why a future's instance dict is never built: in CPython 3.11 an object's
# attributes live in inline values until something builds its __dict__ (a
# read of obj.__dict__, or a store of a name its class's shared keys cannot
# take - seen here for _exception once some 20 futures were alive).  Building
# it allocates, the allocation may run a garbage collection, whose finalizers
# may hand the GIL to another thread; a second thread building the same
# object's dict meanwhile makes two dicts over one values array, and one of
# them later writes into freed memory (a segfault in Executor.map's
# add_done_callback while the results thread completed the future).  So a
# future gets every attribute it will ever have in __init__, in one order,
# and the lazy parts are plain attributes (None until made), never new names.
class _CondSlot:
    """A non-data descriptor: ``_condition`` is made on its first read
    (under _cond_lock) and kept in ``_cond``.  A future already FINISHED
    gets the shared no-op one."""

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        c = obj._cond
        if c is None:
            # made before the lock: nothing allocates under _cond_lock (3.11 may collect garbage in an
            # allocation, and a finalizer touching a future would wait for the lock its own thread holds)
            new = _FINISHED if obj._state == FINISHED else _Condition()  # FINISHED never changes again
            with _cond_lock:
                c = obj._cond
                if c is None:
                    c = obj._cond = _FINISHED if obj._state == FINISHED else new
        return c


class _LazyList:
    """A non-data descriptor: the list is made on its first read (under
    _cond_lock: two threads reading at once get the same list) and kept in
    a second attribute."""

    def __init__(self, made):
        self.made = made

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        v = getattr(obj, self.made)
        if v is None:
            new = []  # made before the lock (see _CondSlot)
            with _cond_lock:
                v = getattr(obj, self.made)
                if v is None:
                    v = new
                    setattr(obj, self.made, v)
        return v


class _LazyCondition:
    """Mixin: the Future's ``_condition`` is made on first use (wait,
    result, callbacks), so a burst of submits leaves 3 objects per future
    for the garbage collector to walk instead of 10.  A future nobody has
    touched is completed under ``_cond_lock`` without one: nobody can wait
    on it or have added a callback (both take the condition).  Used only
    when Future's attributes are the ones we know (checked at import)."""

    def __init__(self):
        # every attribute a future will have, in one order (see above: no name is added later)
        self._state = PENDING
        self._engine = None
        self._off = None
        self._segs = ()
        self._result = None
        self._exception = None
        self._cond = self._waiters_made = self._done_callbacks_made = None  # made on first use

    # made on first use (most futures of a burst are completed untouched): two lists and two
    # attributes fewer a future for the garbage collector, whose passes cost a fifth of a burst
    _condition = _CondSlot()
    _waiters = _LazyList("_waiters_made")
    _done_callbacks = _LazyList("_done_callbacks_made")

    def _finish_untouched(self, result, exception):
        """Complete without a condition if none exists; False otherwise."""
        if self._cond is not None:
            return False
        with _cond_lock:
            if self._cond is not None:
                return False
            st = self._state
            if st not in (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED):
                self._result, self._exception = result, exception
                self._state = FINISHED
                return True
        # outside the lock: the message's repr(self) reads the condition, which may take the lock to make it
        raise InvalidStateError("%s: %r" % (st, self))

    def set_result(self, result):
        if not self._finish_untouched(result, None):
            super().set_result(result)

    def set_exception(self, exception):
        if not self._finish_untouched(None, exception):
            super().set_exception(exception)


_KNOWN = {"_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"}
_Future = type("_Future", (_LazyCondition, _FutureBase) if set(vars(concurrent.futures.Future())) == _KNOWN
               else (_FutureBase,), {"__module__": __name__})


def _validate(max_workers, initializer, max_tasks_per_child, max_attempts, task_timeout, max_memory):
    if max_workers is None:
        max_workers = os.cpu_count() or 1
    elif isinstance(max_workers, bool) or not isinstance(max_workers, int):
        raise TypeError("max_workers must be an int, got %r" % (max_workers,))
    elif max_workers <= 0:
        raise ValueError("max_workers must be greater than 0")
    if initializer is not None and not callable(initializer):
        raise TypeError("initializer must be a callable")
    if max_tasks_per_child is not None:
        if isinstance(max_tasks_per_child, bool) or not isinstance(max_tasks_per_child, int):
            raise TypeError("max_tasks_per_child must be an integer")
        if max_tasks_per_child <= 0:
            raise ValueError("max_tasks_per_child must be >= 1")
    check_positive("max_attempts", max_attempts, allow_none=False)
    check_positive("task_timeout", task_timeout, kind=float)
    check_positive("max_memory_per_child", max_memory)
    return max_workers


class Executor(concurrent.futures.Executor):
    """A process pool whose workers may die without breaking it.

    ``Executor(max_workers=None, *, mp_context=None, initializer=None,
    initargs=(), max_tasks_per_child=None, max_attempts=3, task_timeout=None,
    max_memory_per_child=None, **config)``; config keys: ``shm.pool.slots``
    (task ring slots), ``shm.pool.bytes`` (ring bytes), ``shm.wait``,
    ``shm.pool.spin.us``."""

    def __init__(self, max_workers=None, *, mp_context=None, initializer=None, initargs=(),
                 max_tasks_per_child=None, max_attempts=3, task_timeout=None, max_memory_per_child=None, **config):
        self._max_workers = _validate(max_workers, initializer, max_tasks_per_child, max_attempts, task_timeout,
                                      max_memory_per_child)
        ctx = mp_context if mp_context is not None else multiprocessing.get_context()
        self._mp_context = ctx
        self._shutdown_lock = threading.Lock()
        self._shutdown_thread = False
        self._engine = Engine(KIND_EXECUTOR, self._max_workers, ctx, initializer, tuple(initargs),
                              max_tasks_per_child, max_attempts, task_timeout, max_memory_per_child, config)
        # garbage-collected while busy: the tasks finish, then the workers stop
        self._finalizer = weakref.finalize(self, self._engine.close)

    def submit(self, fn, /, *args, **kwargs):
        if self._shutdown_thread:
            raise RuntimeError("cannot schedule new futures after shutdown")
        eng = self._engine
        if eng.broken is not None:
            raise eng.broken
        if eng.closing:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        f = _Future()
        f._engine = eng
        eng.submit(CALL, fn, (args, kwargs or None), f)
        return f

    submit.__doc__ = concurrent.futures.Executor.submit.__doc__

    def map(self, fn, *iterables, timeout=None, chunksize=1, progress=False):
        """Like ``Executor.map``; ``chunksize`` items go to a worker as one
        task; ``progress=True`` draws a progress bar (tqdm if installed)."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        end = None if timeout is None else timeout + time.monotonic()
        # one iterable: chunks of plain items, fn(x) (MAP); several: tuples of arguments, fn(*a) (STAR)
        kind = MAP if len(iterables) == 1 else STAR
        items = list(iterables[0]) if kind == MAP else list(zip(*iterables))
        bar = _progress(len(items), getattr(fn, "__name__", "map")) if progress else None
        fs, sizes = [], []
        try:
            if chunksize == 1:
                for args in items:
                    fs.append(self.submit(fn, args) if kind == MAP else self.submit(fn, *args))
                    sizes.append(1)
            else:
                for i in range(0, len(items), chunksize):
                    chunk = items[i:i + chunksize]
                    fs.append(self._submit_chunk(fn, chunk, kind))
                    sizes.append(len(chunk))
        except BaseException:
            for f in fs:
                f.cancel()
            if bar is not None:
                bar.close()
            raise
        if bar is not None:
            for f, n in zip(fs, sizes):
                f.add_done_callback(lambda _f, n=n: bar.update(n))
        return self._results(fs, end, chunksize > 1, bar)

    def _submit_chunk(self, fn, chunk, kind=STAR):
        if self._shutdown_thread:
            raise RuntimeError("cannot schedule new futures after shutdown")
        eng = self._engine
        if eng.broken is not None:
            raise eng.broken
        f = _Future()
        f._engine = eng
        eng.submit(kind, fn, (chunk,), f)
        return f

    @staticmethod
    def _results(fs, end, chunked, bar):
        try:
            fs.reverse()
            while fs:
                f = fs.pop()
                try:
                    r = f.result() if end is None else f.result(end - time.monotonic())
                except BaseException:
                    f.cancel()
                    raise
                del f  # no reference to a result once yielded: the caller may free it
                r = r if chunked else [r]
                r.reverse()
                while r:
                    yield r.pop()
        finally:
            for f in fs:
                f.cancel()
            if bar is not None:
                bar.close()

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._shutdown_lock:
            self._shutdown_thread = True
        eng = self._engine
        if cancel_futures:
            with eng._lock:
                pending = list(eng._tasks.values()) + [s for _, s in eng._backlog]
            for f in pending:
                f.cancel()
        eng.close()
        if wait:
            eng.join()

    shutdown.__doc__ = concurrent.futures.Executor.shutdown.__doc__

    # -- introspection (tests, `shmbroker stat`)
    @property
    def name(self):
        """The pool's segment prefix (``/shmb.pool.<pid>.<n>``)."""
        return self._engine.prefix

    def worker_pids(self):
        return self._engine.worker_pids()
