"""The bridge from partition futexes to asyncio event loops.

A coroutine that finds nothing to read registers a :class:`Wait`: the
partition logs and the offsets it waits for, and the extra u32 futex words
that should also end the wait (a group member's notify word).  A waker
thread (one per process; another starts only when one has no room left)
sleeps in C on every registered wait at once (``log_wait_many_xv``: one
``futex_waitv`` over all their partitions' futex words, the members' notify
words and the waker's own control word).  When it wakes it finds which
waits are satisfied, queues them for their loop and writes that loop's
eventfd; the loop, which watches the eventfd only while one of its
coroutines waits, resolves their futures.  No thread pool: the only thread
is the waker, and with nothing registered it sleeps on its control word
alone (no CPU).

The control word: registering or removing a wait bumps it (and wakes it),
so the waker's sleep ends and it sleeps again on the new set.  The waker
reads the word before taking its snapshot of the waits, so a change made
after the snapshot moves the word off the value the sleep compares with and
is never missed.

The kernel path (Linux >= 6.7, ``ext/shmaio.c``): where io_uring has
IORING_OP_FUTEX_WAITV, a loop's Bell owns a ring whose completions signal
the same eventfd, and a wait is submitted there instead - the producer's
futex wake completes it in the kernel and wakes the loop's own thread, so
no waker thread (and no GIL hand-off) sits on the way.  The waker thread
stays the fallback: an older kernel, io_uring forbidden (seccomp), a wait
on more than 128 words, or ``shm.aio.waker=thread``.

Mappings: the waker pins every log it sleeps on (``PartitionLog._pin``), so
a consumer that closes a log meanwhile leaves the unmap to the waker.  A
notify word lives in the namespace segment, which has no pin: a consumer
that closes calls ``Waker.barrier()`` after its waits are removed and before
it unmaps the segment; it returns once the waker threads have left every
sleep (and readiness check) that could touch the word.
"""
import collections
import errno
import logging
import os
import threading
import weakref

from shm._native import ffi, lib
from shm.errors import ClosedError

_SLEEP = lib.LOG_WAIT_SLEEP
_XMAX = lib.LOG_WAIT_XMAX - 1  # extra words per waker thread: one is its control word
_VMAX = lib.LOG_WAIT_MAX
_SYNC_TIMEOUT = 5.0  # a sync removal waits at most this long for the waker (it leaves in microseconds)
_RING_ENTRIES = 64  # submission entries of a loop's ring: each submission is entered at once
_RING_WORDS = 128  # futex words one io_uring wait takes (the kernel's FUTEX_WAITV_MAX)
_REAP = 64  # completions reaped a call
_log = logging.getLogger("broker.aio")


class Wait:
    """One coroutine's wait: *logs* at *offsets*, *extras* as (cdata base,
    size, offset, value) u32 words, and the *bell* of its loop with the
    *fut* it resolves."""

    __slots__ = ("logs", "offsets", "extras", "fut", "bell", "rung", "ud", "_views", "_offs", "_xb", "_xs", "_xo",
                 "_xv")

    def __init__(self, logs, offsets, extras, fut, bell):
        self.logs, self.offsets, self.extras, self.fut, self.bell = list(logs), list(offsets), list(extras), fut, bell
        if len(self.extras) > _XMAX or len(self.logs) > _VMAX:
            raise ValueError("a wait takes at most %d logs and %d extra words" % (_VMAX, _XMAX))
        self._views = None
        self.rung = False  # set by the waker as it drops the wait and rings its bell
        self.ud = 0  # its io_uring submission's user_data, while one is pending

    def _arrays(self):
        """The C arguments of this wait alone (built on first use, in the waker, logs pinned)."""
        if self._views is None:
            self._views = ffi.new("log_view *[]", [log._v for log in self.logs] or 1)
            self._offs = ffi.new("uint64_t[]", self.offsets or 1)
            x = self.extras
            self._xb = ffi.new("void *[]", [e[0] for e in x] or 1)
            self._xs = ffi.new("uint64_t[]", [e[1] for e in x] or 1)
            self._xo = ffi.new("uint64_t[]", [e[2] for e in x] or 1)
            self._xv = ffi.new("uint32_t[]", [e[3] for e in x] or 1)
        return self._views, self._offs, self._xb, self._xs, self._xo, self._xv

    def ready(self):
        """Whether a log has its offset readable or an extra word moved (no sleep; logs pinned)."""
        v, o, xb, xs, xo, xv = self._arrays()
        return lib.log_wait_many_xv(v, o, len(self.logs), 0, _SLEEP, 0, xb, xs, xo, xv, len(self.extras)) != -1


class Bell:
    """One event loop's doorbell: an eventfd (a pipe where there is none)
    the loop watches while at least one of its coroutines waits."""

    def __init__(self, loop):
        self._loop = weakref.ref(loop)
        if hasattr(os, "eventfd"):
            self._rfd = self._wfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # Python 3.9: a pipe
            self._rfd, self._wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.ready = collections.deque()  # Waits the waker found satisfied
        self.waiting = 0
        self._watched = False  # the loop watches the eventfd
        self._unwatch_due = False
        fds = {self._rfd, self._wfd}
        weakref.finalize(loop, _close_fds, fds)
        self._ring = None  # its _Ring, made on the first wait that may use one
        self._ring_err = None  # why it could not be made (an errno)

    def add(self, wait, how="auto"):
        """Register *wait* (made with this bell) on the loop's ring, else with the waker thread.
        :returns: what holds it: its ``remove(wait)`` drops it."""
        if how != "thread" and len(wait.logs) + len(wait.extras) <= _RING_WORDS:
            ring = self._ring_for(how == "io_uring")
            if ring is not None and ring.add(wait):
                return ring
        return waker().add(wait)

    def _ring_for(self, required):
        if self._ring is not None and self._ring.pid != os.getpid():
            self._ring = None  # a forked child: the ring is the parent's
            self._ring_err = None
        if self._ring is None and self._ring_err is None:
            try:
                self._ring = _Ring(self._wfd)
            except OSError as e:
                self._ring_err = e.errno
                _log.debug("asyncio waits use the waker thread: io_uring futex waits unavailable (%s)",
                           os.strerror(e.errno))
        if self._ring is None and required:
            raise OSError(self._ring_err, "shm.aio.waker=io_uring: this kernel gives no io_uring futex waits (%s; "
                                          "they need Linux >= 6.7 and io_uring allowed): use shm.aio.waker=auto"
                          % os.strerror(self._ring_err))
        return self._ring

    def enter(self):
        """A coroutine of this loop starts waiting (on the loop)."""
        if not self._watched:
            self._loop().add_reader(self._rfd, self._rung)
            self._watched = True
        self.waiting += 1

    def leave(self):
        """It stopped (on the loop).  The eventfd is unwatched at the loop's next turn if no other wait began
        by then: a stream of records, each ending one wait and starting the next, keeps it watched."""
        self.waiting -= 1
        if self.waiting == 0 and not self._unwatch_due:
            loop = self._loop()
            if loop is not None and not loop.is_closed():
                self._unwatch_due = True
                loop.call_soon(self._unwatch)

    def _unwatch(self):
        self._unwatch_due = False
        if self.waiting == 0 and self._watched:
            loop = self._loop()
            if loop is not None and not loop.is_closed():
                loop.remove_reader(self._rfd)
            self._watched = False

    def ring(self, wait):
        """From the waker: *wait* is satisfied."""
        self.ready.append(wait)  # deque appends are atomic
        try:
            os.write(self._wfd, b"\1\0\0\0\0\0\0\0")  # eventfd adds 1; a pipe just gets bytes
        except BlockingIOError:
            pass  # a full pipe is readable already

    def _rung(self):
        try:
            while os.read(self._rfd, 4096) and self._rfd != self._wfd:
                pass  # a pipe: drain it (an eventfd is reset by one read)
        except BlockingIOError:
            pass
        if self._ring is not None:
            self._ring.reap()
        ready = self.ready
        while ready:
            fut = ready.popleft().fut
            if not fut.done():
                fut.set_result(True)


class _Ring:
    """A loop's io_uring (ext/shmaio.c): each wait is one vectored futex wait the kernel completes; the
    completions signal the bell's eventfd.  Used by the loop's thread only."""

    def __init__(self, efd):
        err = ffi.new("int *")
        r = lib.aio_ring_open(_RING_ENTRIES, efd, err)
        if r == ffi.NULL:
            raise OSError(err[0], os.strerror(err[0]))
        self._r = ffi.gc(r, lib.aio_ring_close)  # closing the ring cancels what is still pending
        self.pid = os.getpid()
        self._pending = {}  # user_data -> Wait
        self._next = 0
        self._uds = ffi.new("uint64_t[]", _REAP)
        self._res = ffi.new("int32_t[]", _REAP)
        self.broken = None

    def add(self, wait):
        """Submit *wait*; a wait satisfied already is resolved at once.  :returns: False if the ring
        cannot take it (the caller uses the waker thread)."""
        if self.broken is not None:
            return False
        pinned = []
        try:
            for log in wait.logs:
                log._pin()
                pinned.append(log)
            v, o, xb, xs, xo, xv = wait._arrays()
            self._next += 1
            ud = self._next
            r = lib.aio_ring_wait(self._r, ud, v, o, len(wait.logs), xb, xs, xo, xv, len(wait.extras))
        except (ClosedError, AttributeError):
            r = 0  # a log closed under it: its consumer looks again
        finally:
            for log in pinned:
                log._unpin()
            wait._views = None  # the arrays point into the logs' mappings: never kept past the pin
        if r == -1:
            wait.ud = ud
            self._pending[ud] = wait
            return True
        if r >= 0 or r == -2:
            wait.rung = True
            if not wait.fut.done():
                wait.fut.set_result(True)
            return True
        if r == lib.AIO_E_RING:
            self._broke("the ring refused a submission")
        return False

    def remove(self, wait):
        """Drop *wait*: its pending submission is cancelled (the kernel no longer looks at its words)."""
        ud = wait.ud
        if ud and self._pending.pop(ud, None) is not None:
            wait.ud = 0
            if lib.aio_ring_cancel(self._r, ud) < 0:
                self._broke("a cancel was refused")

    def reap(self):
        uds, res = self._uds, self._res
        while True:
            n = lib.aio_ring_reap(self._r, uds, res, _REAP)
            for i in range(n):
                w = self._pending.pop(uds[i], None)
                if w is None:
                    continue  # a cancel's own completion, or the one it cancelled
                rc = res[i]
                if rc < 0 and rc not in (-errno.EAGAIN, -errno.ECANCELED, -errno.EINTR):
                    self._broke(os.strerror(-rc))
                w.ud = 0
                w.rung = True
                if not w.fut.done():
                    w.fut.set_result(True)
            if n < _REAP:
                return

    def _broke(self, why):
        """Later waits use the waker thread (those pending here still complete or are cancelled)."""
        if self.broken is None:
            self.broken = why
            _log.warning("asyncio waits use the waker thread from now on: io_uring %s", why)


_ring_ok = None


def ring_available():
    """Whether this kernel gives io_uring futex waits (probed once a process)."""
    global _ring_ok
    if _ring_ok is None:
        efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) if hasattr(os, "eventfd") else -1
        try:
            _Ring(efd)
            _ring_ok = True
        except OSError:
            _ring_ok = False
        finally:
            if efd >= 0:
                os.close(efd)
    return _ring_ok


def _close_fds(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


_bells = weakref.WeakKeyDictionary()


def bell_of(loop):
    """The Bell of event loop *loop* (made on first use)."""
    b = _bells.get(loop)
    if b is None:
        b = _bells[loop] = Bell(loop)
    return b


class _WakerThread:
    """One thread sleeping on the union of its registered waits."""

    def __init__(self):
        self._lock = threading.Lock()
        self._moved = threading.Condition(self._lock)
        self._waits = []
        self._views = 0
        self._extras = 0
        self._snapshots = 0  # how many snapshots the thread took (sync removals wait for the next)
        self._ctl = ffi.new("uint32_t[1]")  # the control futex word
        self._thread = threading.Thread(target=self._run, name="shmbroker-aio-waker", daemon=True)
        self._thread.start()

    def try_add(self, wait):
        """Register *wait* if this thread has room for it.  :returns: whether it did."""
        with self._lock:
            if self._extras + len(wait.extras) > _XMAX or self._views + len(wait.logs) > _VMAX:
                return False
            self._waits.append(wait)
            self._views += len(wait.logs)
            self._extras += len(wait.extras)
            lib.shm_futex_wake32(self._ctl, 4, 0)
            return True

    def remove(self, wait):
        """Drop *wait* (the thread may still be in a sleep that includes it: see :meth:`barrier`)."""
        if wait.rung:  # dropped by the thread already (the common case: no lock to take)
            return
        with self._lock:
            try:
                self._waits.remove(wait)
            except ValueError:
                return
            self._views -= len(wait.logs)
            self._extras -= len(wait.extras)
            lib.shm_futex_wake32(self._ctl, 4, 0)

    def barrier(self):
        """Return once the thread has left every sleep it was in (or about to start): the waits removed
        before this call are out of its hands, their words may be unmapped."""
        if threading.current_thread() is self._thread:
            return
        with self._lock:
            seen = self._snapshots
            lib.shm_futex_wake32(self._ctl, 4, 0)
            if not self._moved.wait_for(lambda: self._snapshots > seen, _SYNC_TIMEOUT):
                raise RuntimeError("the asyncio waker thread did not answer within %.0f s" % _SYNC_TIMEOUT)

    def _take(self):
        """The next snapshot (lock held): the control word's value first (a change after it moves the word),
        then the waits."""
        cval = self._ctl[0]
        self._snapshots += 1
        self._moved.notify_all()
        return cval, list(self._waits)

    def _run(self):
        ctl = self._ctl
        with self._lock:
            cval, waits = self._take()
        while True:
            if not waits:
                lib.shm_futex_wait32(ctl, 4, 0, cval, -1)
                with self._lock:
                    cval, waits = self._take()
                continue
            rung = self._sleep(waits, cval)
            # ring under the lock, only what is still registered: a coroutine that removed its wait (and
            # then maybe ended its loop, whose eventfd closes with it) is never rung after its remove().
            # The next snapshot is taken in the same breath, so the thread goes back to sleep (releasing the
            # GIL) right after the eventfd write, as the loop it woke wants the GIL.
            with self._lock:
                for w in rung:
                    try:
                        self._waits.remove(w)
                    except ValueError:
                        continue  # removed by its coroutine meanwhile
                    self._views -= len(w.logs)
                    self._extras -= len(w.extras)
                    w.rung = True
                    w.bell.ring(w)
                cval, waits = self._take()

    def _sleep(self, waits, cval):
        """One sleep over *waits*.  :returns: those satisfied (or whose logs were closed)."""
        pinned, live, rung = [], [], []
        try:
            for w in waits:
                try:
                    for log in w.logs:
                        log._pin()
                        pinned.append(log)
                except (ClosedError, AttributeError):
                    rung.append(w)  # a log closed under it: its consumer looks again
                    continue
                live.append(w)
            if not rung:
                views, offs, xb, xs, xo, xv = [], [], [self._ctl], [4], [0], [cval]
                for w in live:
                    views.extend(log._v for log in w.logs)
                    offs.extend(w.offsets)
                    for base, size, off, val in w.extras:
                        xb.append(base)
                        xs.append(size)
                        xo.append(off)
                        xv.append(val)
                r = lib.log_wait_many_xv(ffi.new("log_view *[]", views or 1), ffi.new("uint64_t[]", offs or 1),
                                         len(views), -1, _SLEEP, 0, ffi.new("void *[]", xb),
                                         ffi.new("uint64_t[]", xs), ffi.new("uint64_t[]", xo),
                                         ffi.new("uint32_t[]", xv), len(xb))
                if r < -2:  # a bad argument: ring them all, their consumers raise what is wrong
                    rung.extend(live)
                elif r >= 0 and len(live) == 1:  # the common case: one waiter, and its log is readable
                    rung.extend(live)
                else:
                    rung.extend(w for w in live if w.ready())
        finally:
            for log in pinned:
                log._unpin()
        return rung


class Waker:
    """The process's waker threads (usually one)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._threads = []
        self._pid = os.getpid()

    def add(self, wait):
        """Register *wait*: its bell rings once it is satisfied.  :returns: the thread holding it (its
        ``remove(wait, sync=False)`` drops it)."""
        with self._lock:
            for t in self._threads:
                if t.try_add(wait):
                    return t
            t = _WakerThread()
            self._threads.append(t)
            t.try_add(wait)  # a Wait alone always fits
        return t

    def barrier(self):
        """Every thread's :meth:`_WakerThread.barrier`: call it after removing waits whose extra words are
        about to be unmapped."""
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.barrier()


_waker = None
_waker_lock = threading.Lock()


def waker():
    """This process's Waker (a forked child makes its own: threads do not survive fork)."""
    global _waker
    w = _waker
    if w is None or w._pid != os.getpid():
        with _waker_lock:
            if _waker is None or _waker._pid != os.getpid():
                _waker = Waker()
            w = _waker
    return w
