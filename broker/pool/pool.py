"""``broker.pool.Pool``: ``multiprocessing.Pool``'s API over shmbroker's
work queue (see _engine.py).

Differences from multiprocessing.Pool, by design: a worker that dies
mid-task is replaced and its task runs again (never lost, never a hang);
only a task whose workers died ``max_attempts`` times fails, with
WorkerCrashedError.  ``terminate()`` (and garbage collection of a running
pool) fails every unfinished result with ClosedError instead of leaving its
``get()`` waiting forever; a callback that raises is logged, the pool goes
on.  A failing initializer fails the pool's tasks instead of restarting
workers forever.
"""
import collections
import itertools
import logging
import multiprocessing
import multiprocessing.pool as _mpp
import os
import threading
import time
import warnings
import weakref

from shm.errors import ClosedError

from ._engine import Engine, check_positive
from ._progress import progress as _progress
from ._status import KIND_POOL
from ._worker import CALL, ERR, MAP, OK, OK_NONE, STAR

__all__ = ["Pool", "ApplyResult", "AsyncResult", "MapResult", "IMapIterator"]
_log = logging.getLogger("broker.pool")
RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"


class _Repr:
    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


def _outcome(st, payload):
    """(success, value) of a worker's result, exceptions as multiprocessing
    gives them: the worker's traceback as a RemoteTraceback __cause__, an
    unpicklable value as MaybeEncodingError."""
    if st == OK or st == OK_NONE:
        return True, payload
    if st == ERR:
        exc, tb = payload
        exc.__cause__ = _mpp.RemoteTraceback(tb)
        return False, exc
    exc, tb, what = payload  # ENC
    return False, _mpp.MaybeEncodingError(exc, _Repr(what))


def _run_callback(cb, value):
    try:
        cb(value)
    except Exception:
        _log.exception("a pool callback raised (the pool goes on)")


_ev_lock = threading.Lock()


class _LazyEvent:
    """threading.Event's is_set/set/wait, whose Event (a Condition and two
    locks, ~5 us to make) is made only when a thread must block on it:
    most results are read by the thread that waits (help_until) or are done
    before anyone looks."""

    __slots__ = ("_flag", "_ev")

    def __init__(self):
        self._flag = False
        self._ev = None

    def is_set(self):
        return self._flag

    def set(self):
        with _ev_lock:  # a waiter makes its Event under this lock only while the flag is down
            self._flag = True
            ev = self._ev
        if ev is not None:
            ev.set()

    def wait(self, timeout=None):
        if self._flag:
            return True
        with _ev_lock:
            if self._flag:
                return True
            ev = self._ev
            if ev is None:
                ev = self._ev = threading.Event()
        return ev.wait(timeout)


class ApplyResult:
    """The result of apply_async (multiprocessing.pool.ApplyResult's API)."""

    _off = None
    _segs = ()

    def __init__(self, engine, callback=None, error_callback=None):
        # every attribute, set here: the engine's later stores of _off and _segs are then no new names
        # (in CPython 3.11 a new name may build the instance's dict, racy against the results thread:
        # see executor.py)
        self._off, self._segs = None, ()
        self._engine = engine
        self._event = _LazyEvent()
        self._callback, self._error_callback = callback, error_callback
        self._success = None
        self._value = None

    def ready(self):
        return self._event.is_set()

    def successful(self):
        if not self.ready():
            raise ValueError("{0!r} not ready".format(self))
        return self._success

    def wait(self, timeout=None):
        if not self._event.is_set():
            end = None if timeout is None else time.monotonic() + timeout
            self._engine.help_until(self, timeout)  # reads results in this thread meanwhile
            self._event.wait(None if end is None else max(0.0, end - time.monotonic()))

    def get(self, timeout=None):
        self.wait(timeout)
        if not self.ready():
            raise multiprocessing.TimeoutError
        if self._success:
            return self._value
        raise self._value

    def _set(self, success, value):
        if self._event.is_set():
            return
        self._success, self._value = success, value
        try:
            if success and self._callback is not None:
                _run_callback(self._callback, value)
            elif not success and self._error_callback is not None:
                _run_callback(self._error_callback, value)
        finally:
            self._event.set()

    # engine sink protocol
    def _engine_result(self, st, payload):
        self._set(*_outcome(st, payload))

    def _engine_fail(self, exc):
        self._set(False, exc)

    def _engine_done(self):
        return self._event.is_set()

    def _engine_cancelled(self):
        return False


AsyncResult = ApplyResult


class _Chunk:
    """One task of a map: delivers its list to its parent result."""

    __slots__ = ("parent", "index", "_off", "_segs")

    def __init__(self, parent, index):
        self.parent, self.index = parent, index
        self._off, self._segs = None, ()

    def _engine_result(self, st, payload):
        self.parent._chunk(self.index, *_outcome(st, payload))

    def _engine_fail(self, exc):
        self.parent._chunk(self.index, False, exc)

    def _engine_done(self):
        return self.parent._chunk_done(self.index)

    def _engine_cancelled(self):
        return self.parent._given_up()


class MapResult(ApplyResult):
    """map_async's result: ready when every chunk is, or at the first error
    (whose queued siblings are then withdrawn)."""

    def __init__(self, engine, nchunks, length, chunksize, callback=None, error_callback=None):
        super().__init__(engine, callback, error_callback)
        self._lock = threading.Lock()
        self._chunksize = chunksize
        self._values = [None] * length
        self._left = nchunks
        self._done = set()
        self.chunks = [_Chunk(self, i) for i in range(nchunks)]
        if nchunks == 0:
            self._success, self._value = True, []
            self._event.set()

    def _chunk(self, i, success, value):
        with self._lock:
            if self._event.is_set() or i in self._done:
                return
            self._done.add(i)
            if success:
                self._values[i * self._chunksize:(i + 1) * self._chunksize] = value
                self._left -= 1
                if self._left:
                    return
                value = self._values
        self._set(success, value)
        if not success:
            for c in self.chunks:
                if c.index not in self._done:
                    self._engine.cancel_queued(c)

    def _chunk_done(self, i):
        return self._event.is_set() or i in self._done

    def _given_up(self):
        return self._event.is_set() and not self._success


class IMapIterator:
    """imap's iterator (``next(timeout)`` raises multiprocessing.TimeoutError);
    items are chunks' lists when chunksize > 1 (Pool.imap flattens them)."""

    def __init__(self, ordered=True, bar=None, chunksize=1):
        self._cond = threading.Condition(threading.Lock())
        self._ordered = ordered
        self._items = {} if ordered else collections.deque()
        self._index = 0
        self._length = None
        self._bar, self._chunksize = bar, chunksize
        self._sent = 0  # items the feeder sent; it stays at most `room` ahead of next()
        self._feeder_waits = False

    def __iter__(self):
        return self

    def next(self, timeout=None):
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._ordered and self._index in self._items:
                    success, value = self._items.pop(self._index)
                    break
                if not self._ordered and self._items:
                    success, value = self._items.popleft()
                    break
                if self._length is not None and self._index >= self._length:
                    self._close_bar()
                    raise StopIteration from None
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise multiprocessing.TimeoutError from None
                self._cond.wait(left)
            self._index += 1
            if self._feeder_waits:
                self._cond.notify_all()
        if success:
            return value
        raise value

    __next__ = next

    def _put(self, i, success, value):
        with self._cond:
            if self._ordered:
                self._items[i] = (success, value)
            else:
                self._items.append((success, value))
            self._cond.notify_all()  # the feeder may wait on it too (_wait_room): notify() could wake only it
        if self._bar is not None:
            self._bar.update(len(value) if success and self._chunksize > 1 else 1)

    def _wait_room(self, room, engine):
        """The feeder: wait while *room* items are sent and not yet consumed
        (an endless or huge input does not fill memory)."""
        with self._cond:
            self._sent += 1
            while self._sent - self._index > room and not engine.terminating:
                self._feeder_waits = True
                self._cond.wait(0.1)
            self._feeder_waits = False

    def _set_length(self, n):
        with self._cond:
            self._length = n
            self._cond.notify_all()  # the feeder may wait on it too (_wait_room): notify() could wake only it

    def _close_bar(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _ISink:
    __slots__ = ("it", "i", "done", "_off", "_segs")

    def __init__(self, it, i):
        self.it, self.i, self.done = it, i, False
        self._off, self._segs = None, ()

    def _engine_result(self, st, payload):
        self.done = True
        self.it._put(self.i, *_outcome(st, payload))

    def _engine_fail(self, exc):
        self.done = True
        self.it._put(self.i, False, exc)

    def _engine_done(self):
        return self.done

    def _engine_cancelled(self):
        return False


def _feed(engine, jobs):
    """The task handler thread: feeds imap's iterables (lazily, in order)."""
    room = engine.conf["shm.pool.slots"]  # tasks of one imap sent and not yet consumed, at most
    for job in iter(jobs.get, None):
        it, kind, fn, iterable, chunksize = job
        i = -1
        try:
            src = iter(iterable)
            while True:
                if engine.terminating:
                    raise ClosedError("the pool was terminated before this item was sent")
                chunk = list(itertools.islice(src, chunksize))
                if not chunk:
                    break
                it._wait_room(room, engine)
                i += 1
                s = _ISink(it, i)
                if chunksize == 1:
                    engine.submit(CALL, fn, ((chunk[0],), None), s)
                else:
                    engine.submit(kind, fn, (chunk,), s)
        except Exception as e:  # the iterable raised: its item fails, the iteration ends there
            i += 1
            it._put(i, False, e)
        it._set_length(i + 1)
    engine.close()  # after close(): the pool drains and stops


class Pool:
    """A process pool with multiprocessing.Pool's API whose workers may die
    without losing a task.  Config keys as for broker.pool.Executor."""

    _state = None

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None, context=None, *,
                 max_attempts=3, task_timeout=None, **config):
        if processes is None:
            processes = os.cpu_count() or 1
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None:
            if not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0:
                raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        check_positive("max_attempts", max_attempts, allow_none=False)
        check_positive("task_timeout", task_timeout, kind=float)
        self._processes = processes
        self._ctx = context if context is not None else multiprocessing.get_context()
        self._engine = Engine(KIND_POOL, processes, self._ctx, initializer, tuple(initargs), maxtasksperchild,
                              max_attempts, task_timeout, None, config)
        self._jobs = None  # the task handler's queue (imap), made on first use
        self._handler = None
        self._hlock = threading.Lock()
        # garbage-collected while running: terminated, as multiprocessing's is
        self._finalizer = weakref.finalize(self, self._engine.terminate)
        self._state = RUN

    def __repr__(self):
        return "<%s.%s state=%s pool_size=%d>" % (type(self).__module__, type(self).__qualname__, self._state,
                                                  self._processes)

    def __del__(self):
        if getattr(self, "_state", None) == RUN:
            warnings.warn("unclosed running broker.pool.Pool %r" % self, ResourceWarning, source=self)

    def _check_running(self):
        if self._state != RUN:
            raise ValueError("Pool not running")
        if self._engine.broken is not None:
            raise self._engine.broken

    # -- one call
    def apply(self, func, args=(), kwds={}):
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        self._check_running()
        r = ApplyResult(self._engine, callback, error_callback)
        self._engine.submit(CALL, func, (args, dict(kwds) or None), r)
        return r

    # -- map family
    def _map_async(self, kind, func, iterable, chunksize, callback, error_callback):
        self._check_running()
        if not hasattr(iterable, "__len__"):
            iterable = list(iterable)
        if chunksize is None:
            chunksize, extra = divmod(len(iterable), self._processes * 4)
            if extra:
                chunksize += 1
        n = len(iterable)
        if n == 0:
            return MapResult(self._engine, 0, 0, 1, callback, error_callback)
        if chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        items = list(iterable)
        nchunks = (n + chunksize - 1) // chunksize
        r = MapResult(self._engine, nchunks, n, chunksize, callback, error_callback)
        for i, c in enumerate(r.chunks):
            self._engine.submit(kind, func, (items[i * chunksize:(i + 1) * chunksize],), c)
        return r

    def map(self, func, iterable, chunksize=None):
        return self._map_async(MAP, func, iterable, chunksize, None, None).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_async(MAP, func, iterable, chunksize, callback, error_callback)

    def starmap(self, func, iterable, chunksize=None):
        return self._map_async(STAR, func, iterable, chunksize, None, None).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_async(STAR, func, iterable, chunksize, callback, error_callback)

    def _imap(self, ordered, func, iterable, chunksize, progress):
        self._check_running()
        if chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        bar = None
        if progress:
            total = len(iterable) if hasattr(iterable, "__len__") else None
            bar = _progress(total, getattr(func, "__name__", "imap"))
        it = IMapIterator(ordered, bar, chunksize)
        with self._hlock:
            if self._handler is None:
                import queue
                self._jobs = queue.SimpleQueue()
                self._handler = threading.Thread(target=_feed, args=(self._engine, self._jobs), daemon=True,
                                                 name="shmbroker-pool-tasks")
                self._handler.start()
            self._jobs.put((it, MAP, func, iterable, chunksize))
        if chunksize == 1:
            return it
        return (item for chunk in it for item in chunk)

    def imap(self, func, iterable, chunksize=1, progress=False):
        """Like multiprocessing's; ``progress=True`` draws a progress bar."""
        return self._imap(True, func, iterable, chunksize, progress)

    def imap_unordered(self, func, iterable, chunksize=1, progress=False):
        return self._imap(False, func, iterable, chunksize, progress)

    # -- lifecycle
    def close(self):
        if self._state == RUN:
            self._state = CLOSE
            with self._hlock:
                if self._handler is not None:
                    self._jobs.put(None)  # the handler closes the engine once its iterables are fed
                    return
            self._engine.close()

    def terminate(self):
        self._state = TERMINATE
        with self._hlock:
            if self._handler is not None:
                self._jobs.put(None)
        self._engine.terminate()
        self._engine.join()
        self._finalizer.detach()

    def join(self):
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._handler is not None:
            self._handler.join()
        self._engine.join()

    def __enter__(self):
        if self._state != RUN:
            raise ValueError("Pool not running")
        return self

    def __exit__(self, *exc):
        self.terminate()

    # -- introspection
    @property
    def name(self):
        return self._engine.prefix

    def worker_pids(self):
        return self._engine.worker_pids()
