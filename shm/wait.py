"""Waiting for records on several partition logs at once: one sleep on all
their futexes (the C core's log_wait_many_ex: futex_waitv, in groups past
its 128 words), in chunks so Ctrl-C and close() interrupt it, optionally
also on a futex word of another segment.  PartitionLog.wait is the
one-log case; a consumer keeps one Waiter per assignment."""
import time

from ._native import ffi, lib

WAIT_MODES = {"adaptive": lib.LOG_WAIT_ADAPTIVE, "spin": lib.LOG_WAIT_SPIN, "sleep": lib.LOG_WAIT_SLEEP}
WAIT_CHUNK_NS = 100_000_000  # long waits return to Python this often (Ctrl-C, close)

NOTIFIED = -2  # wait_many: the extra (notify) word moved


class Waiter:
    """The arguments of one log_wait_many_ex call, built once for a fixed
    set of logs (a consumer's assignment) and reused for every wait."""

    def __init__(self, logs, notify=None, idle=None):
        n = len(logs)
        if n > lib.LOG_WAIT_MAX or (n == 0 and notify is None):
            raise ValueError("wait_many takes 1 to %d logs (0 with notify) and as many offsets" % lib.LOG_WAIT_MAX)
        self.logs = list(logs)
        for log in self.logs:
            log._check_open()
        self._views = ffi.new("log_view *[]", [log._v for log in logs] or 1)
        self._offs = ffi.new("uint64_t[]", n or 1)
        self._notify = notify[:3] if notify is not None else (ffi.NULL, 0, 0)
        self.idle = idle  # called after each chunk that passed with nothing (see PartitionLog.on_wait)

    def wait(self, offsets, timeout=None, mode="adaptive", spin_us=50, notify_val=0):
        """See wait_many."""
        logs, n = self.logs, len(self.logs)
        if len(offsets) != n:
            raise ValueError("wait takes one offset per log")
        m = WAIT_MODES.get(mode)
        if m is None:
            raise ValueError("wait mode must be one of %s, got %r" % (", ".join(WAIT_MODES), mode))
        for i, log in enumerate(logs):
            self._offs[i] = offsets[i]
        xbase, xsize, xoff = self._notify
        deadline = None if timeout is None or timeout < 0 else time.monotonic_ns() + int(timeout * 1e9)
        spin = int(spin_us * 1000)
        while True:
            left = WAIT_CHUNK_NS if deadline is None else max(0, min(WAIT_CHUNK_NS, deadline - time.monotonic_ns()))
            pinned = 0
            try:
                for log in logs:  # each chunk: another thread may close a log meanwhile (it then raises here)
                    log._pin()
                    pinned += 1
                r = lib.log_wait_many_ex(self._views, self._offs, n, left, m, spin, xbase, xsize, xoff, notify_val)
            finally:
                for log in logs[:pinned]:
                    log._unpin()
            if r >= 0 or r == NOTIFIED:
                return r
            if r != -1:
                if logs:
                    logs[0]._raise(r)
                raise ValueError("bad notify word %r" % (self._notify[1:],))
            if self.idle is not None:
                self.idle()
            if deadline is not None and time.monotonic_ns() >= deadline:
                return None
            spin = 0


def wait_many(logs, offsets, timeout=None, mode="adaptive", spin_us=50, notify=None, idle=None):
    """Block until one of *logs* has its offset in *offsets* readable;
    returns its index, or None on timeout.  One sleep on all their futexes
    (futex_waitv; past 128 words, groups of them sleep in helper threads of
    the C call), in chunks so Ctrl-C interrupts it.  *notify*: an extra
    u32 futex word ``(cdata buffer, size, offset, value)`` in another
    segment; when it moves off value, returns NOTIFIED (logs may then be
    empty).  *idle*: called after each chunk of the wait that passed with
    nothing."""
    return Waiter(logs, notify, idle).wait(offsets, timeout, mode, spin_us, notify[3] if notify is not None else 0)
