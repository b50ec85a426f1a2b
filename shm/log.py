"""The partition log's Python face: one Kafka partition in a shm segment.

The C core (ext/shmlog.c) does every append, read, wait and repair in one
call; this module validates arguments, owns the mapping, and turns C status
codes into records, read statuses or exceptions (one funnel: ``_raise``).
"""
import os
import re
import threading
import time
import types
import weakref


from ._native import _fastlog, ffi, lib
from .errors import CorruptSegmentError, MessageTooLargeError, OffsetOutOfRangeError, QueueFullError
from .record import Lapped, NotYet, Record, Skipped, decode_headers, encode_headers  # noqa: F401 (re-exported)
from .segment import Segment
from .wait import WAIT_CHUNK_NS, WAIT_MODES, wait_many

OVERWRITE, BLOCK = "overwrite", "block"
_OVERFLOW = {OVERWRITE: lib.LOG_OVERWRITE, BLOCK: lib.LOG_BLOCK}
CRASH_POINTS = {
    "after_claim": lib.LOG_CP_AFTER_CLAIM,
    "after_slot_cas": lib.LOG_CP_AFTER_SLOT_CAS,
    "after_reserve": lib.LOG_CP_AFTER_RESERVE,
    "mid_copy": lib.LOG_CP_MID_COPY,
    "before_commit": lib.LOG_CP_BEFORE_COMMIT,
    "before_wake": lib.LOG_CP_BEFORE_WAKE,
}
#: test-only: "point", "point:N" or "point:N:STOP" sends SIGKILL (or SIGSTOP) to
#: the process at that step of its Nth append
CRASH_ENV = "SHMBROKER_CRASH_POINT"

MAX_SLOTS = 1 << 30
MAX_DATA = 1 << 40
MIN_DATA = 64
RECORD_OVERHEAD = lib.LOG_RECORD_OVERHEAD
_SPIN_CHUNK_NS = 1_000_000  # spins holding the GIL last at most this long
_NULL = ffi.NULL
_PARTITION_SEG = re.compile(r"^/shmb\.([A-Za-z0-9_-]+)\.(\d+)\.(\d+)$")  # broker.namespace.partition_segment


def _label(name):
    """A segment as messages name it: a broker partition in its user's
    words, any other segment by its name."""
    m = _PARTITION_SEG.match(name)
    return "partition %s of topic #%s in namespace %r" % (m[3], m[2], m[1]) if m else "partition %s" % name

_live_logs = weakref.WeakSet()
_release_lock = threading.Lock()  # a log's unmap happens once, by close() or its last waiter


def _after_fork_in_child():
    pid = os.getpid()
    for log in list(_live_logs):
        if log._v is not None:
            lib.log_view_set_pid(log._v, pid)  # the parent's owner token is not ours (a broker client sets a new one)


os.register_at_fork(after_in_child=_after_fork_in_child)


def _as_buffer(obj, what):
    """bytes pass straight to C; other bytes-like objects via from_buffer."""
    if type(obj) is bytes:
        return obj, len(obj)
    if isinstance(obj, (bytearray, memoryview)) or hasattr(obj, "__buffer__") or _is_ndarray(obj):
        mv = memoryview(obj)
        if not mv.c_contiguous:
            raise TypeError("%s must be a C-contiguous bytes-like object" % what)
        return ffi.from_buffer(mv), mv.nbytes
    raise TypeError("%s must be bytes or a bytes-like object (bytearray, memoryview, numpy array), got %s"
                    % (what, type(obj).__name__))


def _is_ndarray(obj):
    return type(obj).__module__ == "numpy" and type(obj).__name__ == "ndarray"


def _timeout_ns(timeout):
    return -1 if timeout is None or timeout < 0 else int(timeout * 1e9)


def _pow2(x):
    return isinstance(x, int) and x > 0 and x & (x - 1) == 0


class PartitionLog:
    """One partition ring in shared memory.  Create once (the creator owns
    the name), attach from any process, ``close()`` to unmap, ``unlink()``
    (creator/destroy only) to remove."""

    def __init__(self, seg):
        self._seg = seg
        # threads inside a C call that may block on this mapping (a wait, a
        # block-mode append): one entry each, list ops being atomic under the
        # GIL.  close() leaves the unmap to the last of them (_unpin).
        self._users = []
        self._closing = False
        self._on_release = []  # unmaps that go with this one (a work queue's leases)
        self._view_base = None  # a read-only memoryview of the mapping for readers' poll_view (block mode)
        self._cbuf = ffi.from_buffer(seg.mm)
        v = lib.log_view_new()
        if v == ffi.NULL:
            raise MemoryError("log_view_new")
        self._v = ffi.gc(v, lib.log_view_free)
        rc = lib.log_attach(self._v, self._cbuf, seg.size, os.getpid())
        if rc != lib.LOG_OK:
            self._release()
            self._raise(rc)
        self.name = seg.name
        self.max_record = int(lib.log_max_record(self._v))
        st = self.stats()
        self.slot_count, self.data_capacity = st["slot_count"], st["data_capacity"]
        self.overflow = BLOCK if st["overflow"] == lib.LOG_BLOCK else OVERWRITE
        self._block_timeout = None
        self._chunk_ns = WAIT_CHUNK_NS  # an append's first call waits at most this long
        #: called between the chunks of a long wait inside append (e.g. to restart a dead supervisor)
        self.on_wait = None
        self._rbuf = ffi.new("char[]", max(self.max_record, 1))
        self._rec = ffi.new("log_rec *")
        self._batch = ffi.new("log_batch *")
        self._append = lib.log_append
        # the per-record fast path (ext/fastlog.c); falls back to the methods below
        self._fast = _fastlog.FastLog(int(ffi.cast("uintptr_t", self._v)), max(self.max_record, 1), Record,
                                      types.MethodType(PartitionLog.append, self),
                                      types.MethodType(PartitionLog.read, self), decode_headers,
                                      types.MethodType(PartitionLog._status, self))
        self.append = self._fast.append
        self.read = self._fast.read
        cp = os.environ.get(CRASH_ENV)
        if cp:
            parts = cp.split(":")
            self.set_crash_point(parts[0], int(parts[1]) if len(parts) > 1 else 1,
                                 parts[2] if len(parts) > 2 else "KILL")
        _live_logs.add(self)

    # -- lifecycle
    @classmethod
    def create(cls, name, slot_count=4096, data_capacity=1 << 22, max_record=None, overflow=OVERWRITE,
               start_offset=0, mode=0o600, populate=False):
        """A new log *name* (*populate*: its pages mapped here at once, as attach's)."""
        if not _pow2(slot_count) or not 2 <= slot_count <= MAX_SLOTS:
            raise ValueError("slot_count must be a power of two in [2, 2**30], got %r" % (slot_count,))
        if not _pow2(data_capacity) or not MIN_DATA <= data_capacity <= MAX_DATA:
            raise ValueError("data_capacity must be a power of two in [64, 2**40] bytes, got %r" % (data_capacity,))
        limit = data_capacity - RECORD_OVERHEAD
        if max_record is None:
            max_record = min(1 << 20, limit)
        if not isinstance(max_record, int) or not 0 <= max_record <= limit:
            raise ValueError("max_record must be in [0, data_capacity - %d] = [0, %d], got %r"
                             % (RECORD_OVERHEAD, limit, max_record))
        if overflow not in _OVERFLOW:
            raise ValueError("overflow must be 'overwrite' or 'block', got %r" % (overflow,))
        if not isinstance(start_offset, int) or not 0 <= start_offset <= 1 << 62:
            raise ValueError("start_offset must be in [0, 2**62], got %r" % (start_offset,))
        size = lib.log_segment_size(slot_count, data_capacity)
        seg = Segment.create(name, size, mode, populate)
        try:
            buf = ffi.from_buffer(seg.mm)
            rc = lib.log_format(buf, size, slot_count, data_capacity, max_record, _OVERFLOW[overflow],
                                start_offset, os.getpid())
            ffi.release(buf)
            if rc != lib.LOG_OK:
                cls._raise_status(rc, name)
            return cls(seg)
        except BaseException:
            seg.close()
            seg.unlink()
            raise

    @classmethod
    def attach(cls, name, mode=None, what=None, populate=False):
        """Map the log *name* (*populate*: every page now, so appends and reads never take a page fault)."""
        seg = Segment.attach(name, mode, what, populate)  # with mode: owner and mode checked (shm.segment.owner_problem)
        try:
            return cls(seg)
        except BaseException:
            seg.close()
            raise

    def _stop_fast(self):
        """No new fast call uses the view: cached bound methods now take the
        slow path, which sees _closing and raises ClosedError."""
        fast = self.__dict__.pop("_fast", None)
        if fast is not None:
            fast.invalidate()
        self.__dict__.pop("append", None)
        self.__dict__.pop("read", None)

    def _release(self):
        self._closing = True
        _live_logs.discard(self)
        self._stop_fast()
        self._v = None  # the view only points into the mapping; freed by gc
        if self._view_base is not None:
            # views poll_view handed out keep the mapping until the last of them goes (Segment.close)
            self._view_base.release()
            self._view_base = None
        if self._cbuf is not None:
            ffi.release(self._cbuf)
            self._cbuf = None
        self._seg.close()
        hooks, self._on_release = self._on_release, []
        for unmap in hooks:
            unmap()

    def close(self, then=None):
        """Unmap.  Records already appended stay in the segment.  A thread
        of this process waiting on the log in C (a read wait, a block-mode
        append) keeps the mapping until that call returns, then raises
        ClosedError: the unmap is left to it, so it never reads unmapped
        memory.  *then*: another unmap to do with this one."""
        with _release_lock:
            if then is not None:
                if self._cbuf is None:
                    then()
                    return
                self._on_release.append(then)
            if self._closing:
                return
            self._closing = True
            self._stop_fast()
            if not self._users:
                self._release()

    def _pin(self):
        """Before a C call that may block on the mapping (GIL released)."""
        if self._closing:
            self._check_open()
        self._users.append(None)

    def _unpin(self):
        self._users.pop()
        if self._closing:
            self._release_if_idle()

    def _release_if_idle(self):
        """After a pinned call saw the log closing: the last one out unmaps."""
        with _release_lock:
            if self._closing and not self._users and self._cbuf is not None:
                self._release()

    def unlink(self):
        self._seg.unlink()

    def destroy(self):
        self.close()
        self.unlink()

    @property
    def closed(self):
        return self._closing

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        return (PartitionLog.attach, (self.name,))

    @property
    def block_timeout(self):
        """Seconds a block-mode append waits for the floor (None: forever)."""
        return self._block_timeout

    @block_timeout.setter
    def block_timeout(self, seconds):
        self._check_open()
        self._block_timeout = seconds
        t = _timeout_ns(seconds)
        self._chunk_ns = WAIT_CHUNK_NS if t < 0 else min(t, WAIT_CHUNK_NS)

    def _wait_more(self, call):
        """An append's first call (of at most ``_chunk_ns``) timed out: call
        *call(timeout_ns)* again in chunks until it is done or the rest of
        ``block_timeout`` has passed.  A call that times out has claimed
        nothing, so Python runs between chunks: Ctrl-C, signal handlers and
        ``on_wait`` (every wait in append so has the caller's deadline)."""
        t = _timeout_ns(self._block_timeout)
        end = None if t < 0 else time.monotonic_ns() + t - self._chunk_ns
        while True:
            if self.on_wait is not None:
                self.on_wait()
            left = WAIT_CHUNK_NS if end is None else min(WAIT_CHUNK_NS, end - time.monotonic_ns())
            if left <= 0:
                return lib.LOG_E_TIMEOUT
            self._check_open()  # closed by another thread between chunks
            r = call(left)
            if r != lib.LOG_E_TIMEOUT:
                return r

    def set_crash_point(self, point, countdown=1, signal="KILL"):
        """Test only: send SIGKILL (or SIGSTOP) to this process at *point* of
        its *countdown*-th append."""
        import signal as _signal
        if point not in CRASH_POINTS:
            raise ValueError("unknown crash point %r: one of %s" % (point, ", ".join(CRASH_POINTS)))
        if signal not in ("KILL", "STOP"):
            raise ValueError("crash signal must be KILL or STOP, got %r" % (signal,))
        lib.log_set_crash_point(self._v, CRASH_POINTS[point], int(countdown), getattr(_signal, "SIG" + signal))

    # -- status funnel
    @staticmethod
    def _raise_status(rc, name, what=""):
        name = _label(name)
        if rc == lib.LOG_E_TOO_LARGE:
            raise MessageTooLargeError(
                "%s is over the maximum record size of %s: raise the topic's max.message.bytes "
                "when creating it, or split the record" % (what or "record", name))
        if rc == lib.LOG_E_TIMEOUT:
            raise QueueFullError(
                "%s had no room in time: it is full (shm.overflow=block) and no consumer group committed "
                "past its oldest record, or a slower producer (stopped or preempted) still writes where this "
                "record would go. Consume and commit, resume that producer, or raise shm.block.timeout.ms" % name)
        if rc in (lib.LOG_E_BAD_MAGIC, lib.LOG_E_BAD_VERSION, lib.LOG_E_BAD_LAYOUT, lib.LOG_E_BAD_SIZE):
            why = {lib.LOG_E_BAD_MAGIC: "bad magic (not a shmbroker partition, or creation unfinished)",
                   lib.LOG_E_BAD_VERSION: "layout version from another shmbroker release",
                   lib.LOG_E_BAD_LAYOUT: "header geometry or layout hash does not check out",
                   lib.LOG_E_BAD_SIZE: "segment smaller than its header says"}[rc]
            raise CorruptSegmentError(
                "%s: %s. Remove it (`shmbroker destroy` for a namespace, or unlink it) "
                "and create it again" % (name, why))
        if rc == lib.LOG_E_DELETED:
            from .errors import UnknownTopicError
            raise UnknownTopicError(
                "%s belongs to a deleted topic: create the topic again and re-open "
                "the producer or consumer" % name)
        if rc == lib.LOG_E_OFFSET:
            raise OffsetOutOfRangeError("offset out of range for %s" % name)
        if rc == lib.LOG_E_BUFFER:
            raise CorruptSegmentError("%s: a record is larger than its header allows" % name)
        raise ValueError("%s: invalid argument (status %d)" % (name, rc))

    #: called (it may raise instead) before a deleted partition raises UnknownTopicError;
    #: the broker sets it to its namespace's destroyed check
    on_deleted = None

    def _raise(self, rc, what=""):
        if rc == lib.LOG_E_DELETED and self.on_deleted is not None:
            self.on_deleted()
        self._raise_status(rc, self._seg.name, what)

    def _check_open(self):
        if self._closing:
            from .errors import ClosedError
            raise ClosedError("partition log %s is closed: attach it again" % self._seg.name)

    # -- append
    def append(self, value, key=None, headers=None, timestamp_ns=None):
        """Append one record; returns its offset.  ``value``/``key`` are
        bytes-like or None (Kafka's null)."""
        v = self._v
        if v is None:
            self._check_open()
        if timestamp_ns is not None and (not isinstance(timestamp_ns, int) or isinstance(timestamp_ns, bool)
                                         or not -(1 << 63) <= timestamp_ns < 1 << 63):
            raise TypeError("timestamp_ns must be an int64 of nanoseconds, got %r" % (timestamp_ns,))
        if value is None:
            val, vl = _NULL, -1
        else:
            val, vl = _as_buffer(value, "value")
        if key is None:
            k, kl = _NULL, -1
        else:
            k, kl = _as_buffer(key, "key")
        h = encode_headers(headers) if headers else b""
        ts = timestamp_ns or 0
        self._pin()  # a full ring in block mode waits in the call
        try:
            r = self._append(v, val, vl, k, kl, h or _NULL, len(h), ts, self._chunk_ns)
            if r == lib.LOG_E_TIMEOUT:
                r = self._wait_more(lambda ns: self._append(v, val, vl, k, kl, h or _NULL, len(h), ts, ns))
        finally:
            self._unpin()
        if r < 0:
            self._raise(r, "record of %d bytes (key %d, headers %d)" % (max(vl, 0), max(kl, 0), len(h)))
        return r

    def append_batch(self, values, timestamp_ns=None):
        """Append many values (a sequence of bytes-like objects or a 2-D
        uint8 numpy array, one row a record) in one C call; consecutive
        offsets; returns the first."""
        self._check_open()
        if _is_ndarray(values):
            import numpy as np
            if values.ndim != 2 or values.dtype != np.uint8:
                raise TypeError("append_batch takes a 2-D uint8 array (one row a record), got %s %s"
                                % (values.ndim, values.dtype))
            arr = np.ascontiguousarray(values)
            n, row = arr.shape
            if n == 0:
                raise ValueError("append_batch needs at least one record")
            buf = ffi.from_buffer(arr)
            call = lambda ns: lib.log_append_batch(self._v, buf, _NULL, row, n, timestamp_ns or 0, ns)  # noqa: E731
        else:
            if isinstance(values, (bytes, bytearray, str)):
                raise TypeError("append_batch takes a sequence of records, not one %s" % type(values).__name__)
            vals = list(values)
            if not vals:
                raise ValueError("append_batch needs at least one record")
            for x in vals:
                if type(x) is not bytes and not isinstance(x, (bytearray, memoryview)):
                    _as_buffer(x, "batch record")  # raises TypeError for non-bytes-like
            lens = ffi.new("uint32_t[]", [len(x) if type(x) is bytes else memoryview(x).nbytes for x in vals])
            n = len(vals)
            data = b"".join(vals)
            call = lambda ns: lib.log_append_batch(self._v, data, lens, 0, n, timestamp_ns or 0, ns)  # noqa: E731
        self._pin()
        try:
            r = call(self._chunk_ns)
            if r == lib.LOG_E_TIMEOUT:
                r = self._wait_more(call)
        finally:
            self._unpin()
        if r < 0:
            self._raise(r, "batch of %d records" % n)
        return r

    # -- read
    def _record(self, rec, buf):
        kl, hl, vl, fl = rec.key_len, rec.hdr_len, rec.val_len, rec.flags
        key = None if fl & lib.LOG_FLAG_KEY_NULL else ffi.unpack(buf, kl)
        value = None if fl & lib.LOG_FLAG_VALUE_NULL else ffi.unpack(buf + kl + hl, vl)
        headers = decode_headers(ffi.unpack(buf + kl, hl)) if hl else None
        return Record(rec.offset, value, key, headers, rec.timestamp_ns)

    def read(self, offset):
        """Record, or NotYet / Lapped(low) / Skipped(tombstone|corrupt)."""
        self._check_open()
        if not isinstance(offset, int) or offset < 0:
            raise ValueError("offset must be a non-negative int, got %r" % (offset,))
        rc = lib.log_read(self._v, offset, self._rec, self._rbuf, self.max_record)
        if rc == lib.LOG_OK:
            return self._record(self._rec, self._rbuf)
        return self._status(rc, offset)

    def _status(self, rc, offset):
        if rc == lib.LOG_NOT_YET:
            return NotYet(offset)
        if rc == lib.LOG_LAPPED:
            return Lapped(offset, self.watermarks()[0])
        if rc == lib.LOG_TOMBSTONE:
            return Skipped(offset, "tombstone")
        if rc == lib.LOG_CORRUPT_RECORD:
            return Skipped(offset, "corrupt")
        self._raise(rc)

    def read_batch(self, offset, max_records=1024):
        """Up to *max_records* consecutive records from *offset*, skipping
        tombstones (and counted corrupt records).  Returns ``(records,
        next_offset, stop)`` where stop is None (more may be ready), NotYet
        or Lapped."""
        self._check_open()
        if not isinstance(offset, int) or offset < 0:
            raise ValueError("offset must be a non-negative int, got %r" % (offset,))
        if not isinstance(max_records, int) or max_records <= 0:
            raise ValueError("max_records must be a positive int, got %r" % (max_records,))
        recs, nxt, rc = self._fast.read_batch(offset, max_records)
        if recs is None:
            self._raise(rc)
        return recs, nxt, (None if rc == lib.LOG_OK else self._status(rc, nxt))

    def read_batch_array(self, offset, max_records, row_len):
        """Values of up to *max_records* records straight into a new
        (n, row_len) uint8 array.  Returns ``(rows, lens, offsets, next_offset, stop)``."""
        import numpy as np
        self._check_open()
        rows = np.zeros((max_records, row_len), dtype=np.uint8)
        lens = np.zeros(max_records, dtype=np.uint32)
        offs = np.zeros(max_records, dtype=np.uint64)
        b = self._batch
        rc = lib.log_read_batch_rows(self._v, offset, max_records, ffi.from_buffer(rows), row_len,
                                     ffi.from_buffer("uint32_t[]", lens), ffi.from_buffer("uint64_t[]", offs), b)
        if rc == lib.LOG_E_BUFFER:
            raise ValueError("a record at offset %d is longer than row_len=%d" % (offset, row_len))
        if rc != lib.LOG_OK:
            self._raise(rc)
        n = b.count
        stop = None if b.stop == lib.LOG_OK else self._status(b.stop, b.next_offset)
        return rows[:n], lens[:n], offs[:n], b.next_offset, stop

    def wait(self, offset, timeout=None, mode="adaptive", spin_us=50):
        """Block until *offset* is readable (committed, tombstoned or
        lapped).  Returns True, or False on timeout.  Sleeps on the
        partition's futex in chunks, so Ctrl-C interrupts it."""
        return wait_many([self], [offset], timeout, mode, spin_us, idle=self.on_wait) == 0

    def poll(self, offset, timeout=None, mode="adaptive", spin_us=50):
        """Wait for *offset* and read it: a Record, a status (Lapped,
        Skipped...), or None on timeout.  ``spin`` spins the whole timeout,
        ``adaptive`` spins *spin_us* then sleeps on the futex, ``sleep``
        sleeps at once."""
        fast = self.__dict__.get("_fast")
        if fast is not None and mode in WAIT_MODES:  # a record already there: one C call, no clock
            r = fast.poll(offset, 0)
            if r is not None:
                return r
        self._check_open()
        if mode not in WAIT_MODES:
            raise ValueError("wait mode must be one of %s, got %r" % (", ".join(WAIT_MODES), mode))
        start = time.monotonic_ns()
        total = None if timeout is None or timeout < 0 else int(timeout * 1e9)
        fast = self._fast
        spin = total if mode == "spin" else (0 if mode == "sleep" else min(int(spin_us * 1000),
                                                                  1 << 62 if total is None else total))
        while True:
            # spin in <= 1 ms chunks: the GIL is held while spinning
            left = spin if spin is not None else _SPIN_CHUNK_NS
            r = fast.poll(offset, min(left, _SPIN_CHUNK_NS))
            if r is not None:
                return r
            if self.on_wait is not None:
                self.on_wait()
            elapsed = time.monotonic_ns() - start
            if total is not None and elapsed >= total:
                return None
            if spin is None or elapsed < spin:
                continue
            rest = None if total is None else (total - elapsed) / 1e9
            if not self.wait(offset, rest, "sleep"):
                return None
            return self.read(offset)

    def reader(self, offset=0, mode="adaptive", spin_us=50, floor_every=0, check_crcs=False):
        """A cursor from *offset* that keeps its position and waits in C:
        ``poll(timeout=None)`` returns the next Record, ``poll_value(timeout=None)``
        just its value (bytes; b"" for a null value), each None after *timeout*
        seconds.  In a block-mode log, ``poll_view(timeout=None)`` returns the
        value without copying it: a read-only memoryview of its bytes in the
        log, valid until this reader's next poll - the reader
        keeps the floor at or below it until then (with *floor_every*; nothing
        else may move the floor past it meanwhile: another reader's
        floor_every, trim).  A value that wraps the ring's end, or that the
        floor has passed already, comes as a view of a copy.  A view's slot
        and record header are checked; its value is checksummed where it lies
        only with *check_crcs* (librdkafka's ``check.crcs``, off by default
        as there): the bytes are the log's, live, so a sum taken when the
        view is handed out says nothing of what you read from it later - a
        producer that was stopped, repaired as dead and then resumed would
        write its old bytes under it (a copying read, always checked, catches
        that).  A reader passes over
        tombstones and corrupt records (counted in ``skipped``) and, if
        producers lapped it, moves up to the oldest record held (counting the
        ones it missed in ``lost``); ``position`` is the next offset (set it
        to seek).  *mode* and *spin_us* as for poll().  With
        *floor_every* > 0 it moves a block-mode log's floor to its position
        every that many records (set_floor: producers may reuse the space)."""
        self._check_open()
        if mode not in WAIT_MODES:
            raise ValueError("wait mode must be one of %s, got %r" % (", ".join(WAIT_MODES), mode))
        if not isinstance(offset, int) or offset < 0:
            raise ValueError("offset must be a non-negative int, got %r" % (offset,))
        if not isinstance(floor_every, int) or floor_every < 0:
            raise ValueError("floor_every must be a non-negative int, got %r" % (floor_every,))
        if not isinstance(check_crcs, bool):
            raise TypeError("check_crcs must be True or False, got %r" % (check_crcs,))
        if not isinstance(spin_us, (int, float)) or not 0 <= spin_us <= 1e12:
            raise ValueError("spin_us must be a non-negative number of microseconds, got %r" % (spin_us,))
        spin_ns = -1 if mode == "spin" else (0 if mode == "sleep" else int(spin_us * 1000))

        def sleep(off, timeout):
            return self.wait(off, timeout, "sleep")

        def idle():  # between spin chunks, as poll() calls it
            if self.on_wait is not None:
                self.on_wait()
        return _fastlog.LogReader(self._fast, offset, spin_ns, floor_every, sleep, self._check_open, idle,
                                  self.view_base(), check_crcs)  # None for an overwrite log: poll_view refuses

    def view_base(self):
        """A read-only memoryview of this block-mode log's whole mapping, whose slices readers hand out as
        values in place (poll_view, a Consumer's shm.zero.copy); made once, released by close() (the slices
        handed out keep the mapping until the last goes).  None for an overwrite log: its producers may
        overwrite a record while a view of it is held."""
        if self.overflow == BLOCK and self._view_base is None:
            with _release_lock:  # made once, and never after close() released it
                self._check_open()
                if self._view_base is None:
                    mv = memoryview(self._seg.mm)
                    self._view_base = mv.toreadonly()  # the same buffer; its slices cannot write the ring
                    mv.release()
        return self._view_base

    def watermarks(self):
        """(low, high): the oldest offset still held, the next to be written."""
        self._check_open()
        lo, hi = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        lib.log_watermarks(self._v, lo, hi)
        return lo[0], hi[0]

    def stats(self):
        """Counters and watermarks.  ``appends`` counts offsets claimed
        (tombstoned ones included); the others are named as in log_stats."""
        self._check_open()
        st = ffi.new("log_stats *")
        lib.log_get_stats(self._v, st)
        d = {f: getattr(st, f) for f in dir(st)}
        d["appends"] = d["high"] - d["start_offset"]
        return d

    # -- retention floor (block mode)
    def set_floor(self, offset):
        """Let block-mode producers overwrite records below *offset* (every
        group has committed past them)."""
        rc = self._fast.set_floor(offset) if "_fast" in self.__dict__ else None  # keeps the GIL (ext/fastlog.c)
        if rc is None:
            self._check_open()
            rc = lib.log_set_floor(self._v, offset)
        if rc != lib.LOG_OK:
            self._raise(rc)

    @property
    def floor(self):
        self._check_open()
        return lib.log_get_floor(self._v)

    # -- Kafka's DeleteRecords
    def trim(self, offset):
        """Delete the records below *offset* (at most the high watermark):
        reads below it see Lapped, the low watermark becomes at least
        *offset*.  Only moves forward; returns the new low watermark."""
        self._check_open()
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValueError("trim offset must be a non-negative int, got %r" % (offset,))
        rc = lib.log_trim(self._v, offset)
        if rc == lib.LOG_E_OFFSET:
            raise OffsetOutOfRangeError("cannot delete records below offset %d of %s: its high watermark is %d"
                                        % (offset, _label(self._seg.name), self.watermarks()[1]))
        if rc != lib.LOG_OK:
            self._raise(rc)
        return self.watermarks()[0]

    def mark_deleted(self):
        """Topic deletion: later appends raise UnknownTopicError, readers at
        the end are woken and told."""
        self._check_open()
        lib.log_mark_deleted(self._v)

    # -- repair (the supervisor's entry points)
    def set_owner(self, token):
        """Claims of this view carry *token* (a registration token >= 2**22
        from the namespace, or a pid) instead of this process's pid."""
        self._check_open()
        if lib.log_view_set_owner(self._v, token) != lib.LOG_OK:
            raise ValueError("owner token must be in [1, 2**26), got %r" % (token,))

    def repair_dead(self, owner):
        """Tombstone every slot CLAIMED by *owner* (a dead process's pid or
        registration token); returns how many."""
        self._check_open()
        r = lib.log_repair_dead(self._v, owner)
        if r < 0:
            self._raise(r)
        return r

    def scan_unclaimed(self, max_count=4096):
        self._check_open()
        out = ffi.new("uint64_t[]", max_count)
        n = lib.log_scan_unclaimed(self._v, out, max_count)
        return [out[i] for i in range(n)]

    def tombstone_unclaimed(self, offset):
        self._check_open()
        rc = lib.log_tombstone_unclaimed(self._v, offset)
        if rc < 0:
            self._raise(rc)
        return rc == lib.LOG_OK

    def repair_unclaimed(self, grace=0.05):
        """Tombstone offsets taken but never claimed that stay so for
        *grace* seconds (call after a producer died); returns how many."""
        return repair_unclaimed([self], grace)


def repair_unclaimed(logs, grace=0.05):
    """For every log: tombstone offsets taken but never claimed that are
    still so after one shared *grace* (seconds); returns how many."""
    first = [set(log.scan_unclaimed()) for log in logs]
    if not any(first):
        return 0
    time.sleep(grace)  # a live producer between claim and slot CAS needs microseconds
    return sum(log.tombstone_unclaimed(o) for log, seen in zip(logs, first)
               for o in log.scan_unclaimed() if o in seen)
