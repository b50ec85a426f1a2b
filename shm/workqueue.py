"""A work queue over one block-mode partition log (ext/shmqueue.c): each
record goes to exactly one taker; the records a taker held when it died are
released (by its owner token) and taken again by others.

Two segments: the log ``NAME`` and the lease segment ``NAME.q``.  Takers and
putters in any process attach both (``WorkQueue.attach``, or unpickle).

    wq = WorkQueue.create("/myq", slot_count=1024, data_capacity=1 << 24, maxsize=0)
    wq.put(b"job")                           # returns when it is in shared memory
    off, value, attempts = wq.take(owner)    # (None, None, 0) on timeout
    wq.ack(off, owner)                       # done: the slot may be reused
    wq.release_owner(dead_owner)             # give back what a dead taker held

``owner`` is a 26-bit token, not 0: a registration token of the namespace
(broker) or a pid (standalone).
"""
import os
import time

from ._native import ffi, lib
from .errors import ClosedError, CorruptSegmentError
from .log import BLOCK, PartitionLog
from .wait import Waiter
from .segment import Segment, unlink

LEASE_SUFFIX = ".q"
_CHUNK = 0.1  # seconds: waits return to Python this often (Ctrl-C, on_wait)


def lease_name(name):
    return name + LEASE_SUFFIX


class WorkQueue:
    """A partition log plus its leases.  ``maxsize`` (0: the ring's own
    bound, slot_count) is kept by each handle: every handle that puts must be
    opened with the same one (it travels with pickling)."""

    def __init__(self, log, qseg, maxsize=0):
        self.log = log
        self._qseg = qseg
        self._qbuf = ffi.from_buffer(qseg.mm)
        q = lib.q_view_new()
        if q == ffi.NULL:
            raise MemoryError("q_view_new")
        self._q = ffi.gc(q, lib.q_view_free)
        rc = lib.q_attach(self._q, self._qbuf, qseg.size, log.slot_count)
        if rc != lib.LOG_OK:
            self._close_maps()
            raise CorruptSegmentError("%s: not a shmbroker work queue lease segment (status %d): remove it and "
                                      "create the queue again" % (qseg.name, rc))
        self.name = log.name
        self.maxsize = int(maxsize)
        if self.maxsize:
            rc = lib.log_view_set_limit(log._v, self._qbuf, qseg.size, lib.Q_HEAD_OFF,
                                        min(self.maxsize, log.slot_count))
            if rc != lib.LOG_OK:
                self._close_maps()
                raise ValueError("maxsize %d does not fit the queue's ring of %d slots" % (maxsize, log.slot_count))
        self._start = log.stats()["start_offset"]
        self._rec = ffi.new("log_rec *")
        self._att = ffi.new("uint32_t *")
        self._at = ffi.new("uint64_t *")
        self._stats = ffi.new("q_stats *")
        self._qaddr = int(ffi.cast("uintptr_t", self._q))
        self._qtake = log._fast.qtake
        self._waiter = None  # wait_item's, made on first use

    # -- lifecycle
    @classmethod
    def create(cls, name, slot_count=1024, data_capacity=1 << 24, max_record=None, maxsize=0, mode=0o600):
        if maxsize and not 0 < maxsize <= slot_count:
            raise ValueError("maxsize must be in [0, slot_count=%d], got %r" % (slot_count, maxsize))
        log = PartitionLog.create(name, slot_count, data_capacity, max_record, overflow=BLOCK, mode=mode)
        try:
            size = lib.q_segment_size(slot_count)
            qseg = Segment.create(lease_name(name), size, mode)
            try:
                rc = lib.q_format(ffi.from_buffer(qseg.mm), size, slot_count, log.watermarks()[1])
                if rc != lib.LOG_OK:
                    raise ValueError("cannot format the lease segment (status %d)" % rc)
                return cls(log, qseg, maxsize)
            except BaseException:
                qseg.close()
                unlink(lease_name(name))
                raise
        except BaseException:
            log.destroy()
            raise

    @classmethod
    def attach(cls, name, maxsize=0, mode=None):
        log = PartitionLog.attach(name, mode)
        try:
            qseg = Segment.attach(lease_name(name), mode)
        except BaseException:
            log.close()
            raise
        try:
            return cls(log, qseg, maxsize)
        except BaseException:
            log.close()
            qseg.close()
            raise

    def __reduce__(self):
        return (WorkQueue.attach, (self.name, self.maxsize))

    def _close_maps(self):
        qbuf, qseg = self._qbuf, self._qseg
        self._qbuf = None

        def unmap():  # with the log's unmap: a thread waiting on both (wait_item) keeps both
            if qbuf is not None:
                ffi.release(qbuf)
            qseg.close()
        self.log.close(then=unmap)

    def close(self):
        if self._qbuf is not None:
            # first: no fast take (qtake, FastQueue) may use the leases once they are unmapped below
            fast = self.log.__dict__.get("_fast")
            if fast is not None:
                fast.invalidate()
            if self.maxsize and not self.log.closed:
                lib.log_view_set_limit(self.log._v, ffi.NULL, 0, 0, 0)
            self._q = None
            self._close_maps()

    @property
    def closed(self):
        return self._qbuf is None

    def destroy(self):
        """Close and remove both segments (the creator, or a cleanup)."""
        self.close()
        unlink(self.name)
        unlink(lease_name(self.name))

    def _check(self):
        if self._qbuf is None:
            raise ClosedError("work queue %s is closed" % self.name)

    # -- put
    def put(self, value, key=None, headers=None, timeout=None):
        """Append one item; waits while the queue holds maxsize untaken items
        or the ring is full of unfinished ones (QueueFullError after
        *timeout* seconds; None: forever).  Returns its offset."""
        self._check()
        log = self.log
        if timeout != log._block_timeout:
            log.block_timeout = timeout  # the setter costs: only on a change
        if key is None and headers is None:
            return log.append(value)  # one argument: the C fast path (ext/fastlog.c) takes a bytes value
        return log.append(value, key, headers)

    def put_batch(self, values, timeout=None):
        self._check()
        self.log.block_timeout = timeout
        return self.log.append_batch(values)

    # -- take
    def try_take(self, owner, buf=None, cap=None):
        """One take without waiting: ``(offset, rec, attempts)`` with the
        record in ``rec``/the read buffer, or ``(None, wait_at, 0)``."""
        log = self.log
        r = lib.q_take(self._q, log._v, owner, self._rec, log._rbuf if buf is None else buf,
                       log.max_record if cap is None else cap, self._att, self._at)
        if r >= 0:
            return r, self._rec, self._att[0]
        if r == lib.LOG_E_WOULD_BLOCK:
            return None, self._at[0], 0
        self._take_error(r)

    def _take_error(self, r):
        if r == lib.LOG_E_BAD_LAYOUT:  # the leases or their head word cannot be ours: a hostile segment
            raise CorruptSegmentError("%s: the work queue's lease segment is damaged (its take position or leases "
                                      "are impossible for the log): remove the queue and create it again"
                                      % self._qseg.name)
        self.log._raise(r)

    def take_fast(self, owner, ack_off=-1, ack_owner=0):
        """A getter's step in one C call, never waiting: ack *ack_off* (held
        by *ack_owner*; none if < 0; its outcome is not told), then take the
        next item for *owner*: ``(offset, value bytearray, attempts)``, or
        None if there is none now (``take`` waits for one)."""
        q = self._q  # held: the address stays valid through the call
        if q is None:
            self._check()
        r = self._qtake(self._qaddr, owner, ack_off, ack_owner)
        if r.__class__ is tuple:
            return r
        if r is None:
            raise ClosedError("work queue %s is closed" % self.name)
        if r != lib.LOG_E_WOULD_BLOCK:
            self._take_error(r)
        return None

    def take(self, owner, timeout=None, on_wait=None, writable=False):
        """Take the next item for *owner*: ``(offset, value bytes, attempts)``
        (a bytearray with *writable*)
        where attempts counts the takers that died holding it; ``(None,
        None, 0)`` if nothing came within *timeout* seconds (None: wait
        forever).  Sleeps on the log's futex in chunks."""
        self._check()
        # first a bare attempt (the common case: an item is there); only a
        # miss reads the release word, before the attempt the sleep follows
        off, at, attempts = self.try_take(owner)
        if off is not None:
            return off, self._value(at, writable), attempts
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            seq = self.release_seq()  # before the attempt: a release after it ends the sleep below
            off, at, attempts = self.try_take(owner)
            if off is not None:
                return off, self._value(at, writable), attempts
            left = _CHUNK if deadline is None else min(_CHUNK, deadline - time.monotonic())
            if left <= 0:
                return None, None, 0
            # a new record at `at`, or a release (an item given back below it)
            if not self.wait_item(at, seq, left) and on_wait is not None:
                on_wait()

    def _value(self, rec, writable):
        """The value of the record try_take left in the read buffer."""
        p = self.log._rbuf + rec.key_len + rec.hdr_len
        return bytearray(ffi.buffer(p, rec.val_len)) if writable else ffi.unpack(p, rec.val_len)

    def release_seq(self):
        """The release word, read before a take attempt whose miss
        ``wait_item`` follows (a release after the read ends that wait)."""
        self._check()
        return lib.shm_load64(self._qbuf, self._qseg.size, lib.Q_RELEASE_OFF) & 0xFFFFFFFF

    def wait_item(self, at, seq, timeout, mode="adaptive", spin_us=50):
        """Wait up to *timeout* seconds for the record at *at* (a missed
        take's wait offset) or a release after *seq* was read: True when
        either came (a take may now succeed), False on timeout."""
        self._check()
        w, self._waiter = self._waiter, None  # one made per queue, reused (a second thread makes its own)
        if w is None:
            w = Waiter([self.log], (self._qbuf, self._qseg.size, lib.Q_RELEASE_OFF))
        try:
            return w.wait([at], timeout, mode, spin_us, seq) is not None
        finally:
            self._waiter = w

    def ack(self, offset, owner):
        """Done with *offset*: True, or False if it had been released (its
        taker was declared dead) and belongs to another taker now."""
        self._check()
        return lib.q_ack(self._q, self.log._v, offset, owner) == lib.LOG_OK

    def release(self, offset, owner, failed=False):
        """Give back one item *owner* holds (to be taken again); *failed*
        counts it as a failed attempt.  True if it was held."""
        self._check()
        return lib.q_release(self._q, self.log._v, offset, owner, 1 if failed else 0) == lib.LOG_OK

    def release_owner(self, owner):
        """Give back every item *owner* (a dead taker) holds; returns their
        offsets.  Each counts as a failed attempt."""
        self._check()
        cap = min(self.log.slot_count, 1 << 16)
        buf = ffi.new("uint64_t[]", cap)
        n = lib.q_release_owner(self._q, self.log._v, owner, buf, cap)
        if n < 0:
            self.log._raise(n)
        return [buf[i] for i in range(min(n, cap))]

    def cancel(self, offset):
        """Withdraw *offset* while no taker has it: True, and it is never
        taken (its slot frees like an acked one); False if a taker holds
        it, it is done, or it is not in the queue."""
        self._check()
        return lib.q_cancel(self._q, self.log._v, offset) == lib.LOG_OK

    def attempts(self, offset):
        """How often *offset* was given back as a failed attempt."""
        self._check()
        return int(lib.q_attempts(self._q, offset))

    def held(self, owner, max_count=4096):
        """Offsets *owner* holds now."""
        self._check()
        buf = ffi.new("uint64_t[]", max_count)
        n = lib.q_held(self._q, self.log._v, owner, buf, max_count)
        if n < 0:
            self.log._raise(n)
        return [buf[i] for i in range(n)]

    def stats(self):
        """Counters and positions: head (next to take), taken, acked,
        released, skipped, lost_acks, in_flight (taken, not done), plus the
        log's floor and claim offset."""
        self._check()
        lib.q_get_stats(self._q, self.log._v, self._stats)
        s = self._stats
        out = {k: int(getattr(s, k)) for k in ("head", "taken", "acked", "released", "skipped", "lost_acks",
                                                "in_flight")}
        out["floor"] = int(lib.log_get_floor(self.log._v))
        out["claimed"] = int(lib.log_claimed(self.log._v))
        return out

    def unfinished(self):
        """Items put (or being put) and not yet done: acked, or skipped as a
        dead putter's tombstone.  An item a dead taker held is unfinished
        until another taker acks it.  Never low: the counters are read
        before the claim, and each is raised after its item is done."""
        self._check()
        st = ffi.new("q_stats *")  # its own: join() may poll while another thread asks stats()
        lib.q_get_stats(self._q, ffi.NULL, st)  # counters only (no scan of the leases)
        done = st.acked + st.skipped
        return max(0, lib.log_claimed(self.log._v) - self._start - done)

    def qsize(self):
        """Items put and not yet taken (approximate while others work)."""
        self._check()
        h = lib.shm_load64(self._qbuf, self._qseg.size, lib.Q_HEAD_OFF)
        c = lib.log_claimed(self.log._v)
        return max(0, c - h)


def default_owner():
    """A standalone taker's owner token: its pid."""
    return os.getpid()
