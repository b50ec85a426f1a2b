"""``broker.Queue``, ``broker.JoinableQueue``, ``broker.SimpleQueue``:
multiprocessing's queues over a work queue in shared memory
(shm/workqueue.py), so an item taken by a process that dies is not lost.

    q = broker.Queue(maxsize=0, **config)   # config as for a Producer: shm.namespace, ...
    q.put(obj)                              # returns once obj is in shared memory (no feeder thread)
    obj = q.get(timeout=1.0)                # queue.Empty, queue.Full as multiprocessing raises them

What differs from multiprocessing, by design:
- Each item goes to exactly one getter, and stays *held* by it until the
  getting thread's next ``get()`` (Queue, SimpleQueue) or ``task_done()``
  (JoinableQueue).  A getter process that dies (SIGKILL, a crash) before
  that gives its items back: the namespace's supervisor sees the death and
  they are delivered again to another getter.  A process that exits
  normally (or closes the queue) has finished what it took.
- A queue is picklable anywhere: into ``Process`` and ``Pool`` arguments
  under every start method, into another queue's items.  Only its segment
  names travel; the receiving process maps the same memory.
- ``put`` fails at once on an unpicklable object (no feeder thread to fail
  later), and a queue is bounded by its ring even with maxsize=0: ``put``
  waits while the ring (config ``shm.slots`` items, ``retention.bytes``
  bytes) is full of unfinished items.
- The creator owns the queue: its segments are removed when the creating
  process exits (or dies: the supervisor removes them), or when the creator
  closes or drops a queue it never shared.  Other processes then get
  ClosedError saying so.  ``q.close()`` in another process only stops that
  handle, as in multiprocessing.

Every process that puts or gets registers in the namespace (one member entry
and owner token per process, pool/_qstate.py), so the supervisor watches it:
its token marks the items it holds (leases) and its appends in progress.
"""
import time
import weakref
from queue import Empty, Full

from shm.errors import ClosedError, CorruptSegmentError, NamespaceError, QueueFullError, UnknownTopicError
from shm.wait import WAIT_MODES
from shm.segment import MissingSegmentError
from shm.workqueue import WorkQueue

from .. import config as _config
from ..namespace import topic_geometry
from . import _qstate as S
from . import _serde
from ._queues import queue_name

__all__ = ["Queue", "JoinableQueue", "SimpleQueue", "Empty", "Full"]

DEFAULT_BYTES = 8 << 20  # a queue's ring of data, unless retention.bytes says otherwise
MAX_MAXSIZE = 1 << 20
_JOIN_POLL = (0.0002, 0.005)
_CHUNK = 0.1  # a get waits in chunks of this many seconds (Ctrl-C, the supervisor check); FQ_CHUNK_NS in C
_monotonic = time.monotonic
_SPIN_NS = 50_000  # adaptive waits spin this long before they sleep on the futex


def _ring(maxsize, conf):
    """(slots, data bytes, max record) of a new queue's ring."""
    ring = {k: conf.pop(k) for k in list(conf) if k in _config.QUEUE}
    ring.setdefault("retention.bytes", DEFAULT_BYTES)
    ring.setdefault("shm.slots", None)
    want_slots = ring["shm.slots"]
    slots, data, maxmsg, _, _ = topic_geometry(dict(ring, **{"shm.slots": want_slots or 64}))
    if want_slots is None:  # an index slot per 512 data bytes, and twice maxsize (items in flight need room too)
        slots = max(min(max(data // 512, 64), 1 << 20), 2 * maxsize)
        slots = 1 << (slots - 1).bit_length()
    elif maxsize > slots:
        raise ValueError("maxsize=%d does not fit a ring of shm.slots=%d items: raise shm.slots (twice maxsize "
                         "leaves room for items being worked on)" % (maxsize, slots))
    return slots, data, maxmsg


def _wait(block, timeout):
    """multiprocessing's (block, timeout) as seconds to wait: None forever,
    0 not at all (a negative timeout counts as 0, as its semaphores do)."""
    if not block:
        return 0.0
    return None if timeout is None else max(0.0, float(timeout))


class _QueueBase:
    _ack_on_get = True  # Queue, SimpleQueue: a get() finishes the item the same thread took before

    def __init__(self, maxsize, config):
        conf = dict(config.pop("config", None) or {})
        conf.update(config)
        conf = _config.parse(None, conf, "queue")
        maxsize = 0 if maxsize is None or maxsize <= 0 else int(maxsize)  # <= 0: unbounded, as multiprocessing
        if maxsize > MAX_MAXSIZE:
            raise ValueError("maxsize=%d is over %d, the largest ring a queue has: use maxsize=0 (bounded by "
                             "the ring only) or a smaller bound" % (maxsize, MAX_MAXSIZE))
        slots, data, maxmsg = _ring(maxsize, conf)
        ns_name = _config.resolve_namespace(conf)
        member = S.member(ns_name, conf.get("shm.mode"), conf, create=True)  # first: the name carries our token
        for _ in range(16):
            name = queue_name(ns_name, member.token, S.next_queue_number())
            try:
                wq = WorkQueue.create(name, slot_count=slots, data_capacity=data, max_record=maxmsg,
                                      maxsize=maxsize, mode=member.ns.mode)
                break
            except NamespaceError:  # a leftover of an earlier process with our token: a new number
                continue
        else:
            raise NamespaceError("cannot create a queue in namespace %r: its names are taken (leftovers?): "
                                 "`shmbroker destroy --namespace %s` if nothing uses it" % (ns_name, ns_name))
        S.created(name, member.ns.mode, self)
        self._setup(S.attached(name, ns_name, member.ns.mode, maxsize, conf.get("shm.supervisor", "auto"), wq),
                    conf.get("shm.wait", "adaptive"), creator=True)

    def _setup(self, att, wait_mode, creator=False):
        self._att = att
        self._wait_mode = wait_mode
        self._wmode = WAIT_MODES[wait_mode]
        self._maxsize = att.maxsize
        self._closed = False
        self._creator = creator
        self._gen = -1
        self._held = None
        S.track(self)

    # -- pickling: the names, attached again on the other side
    def __reduce__(self):
        a = self._att
        S.shared(a.name)
        return (_rebuild, (type(self), a.name, a.ns_name, a.mode, a.maxsize, a.supervisor, self._wait_mode))

    def __repr__(self):
        return "<%s.%s %s maxsize=%d%s>" % (type(self).__module__.replace(".pool.queue", ""), type(self).__name__,
                                          self._att.name, self._maxsize, " closed" if self._closed else "")

    # -- items this handle holds: {thread ident: deque([(offset, segments)])}, per process
    def _mine(self):
        """This process's held items (a new set after a fork: the parent's
        are the parent's to finish)."""
        if self._gen != S.fork_gen():
            self._held = S.Held(self._att, self._ack_on_get)
            weakref.finalize(self, self._held.finish)  # a dropped handle finished its items
            self._gen = S.fork_gen()
        return self._held

    def _removed(self):
        return self._att.removed_error()

    def _closed_error(self):
        return ValueError("Queue %r is closed" % (self,))

    # -- put / get
    def _put(self, obj, wait, pre=NotImplemented):
        """The Python path of a put; *pre*: what FastQueue.put made of obj
        (the record, or the pickle stream and its buffers)."""
        a = self._att
        if a._gen != S._gen:
            a.bind()  # registered: our appends carry our token
        if pre is NotImplemented:
            data, segs = _serde.dumps(obj, a.name, limit=a.max_record, mode=a.mode)
        elif pre.__class__ is bytes:
            data, segs = pre, []
        else:
            data, segs = _serde.assemble(pre[0], pre[1], a.name, limit=a.max_record, mode=a.mode)
        lock = a.put_lock
        try:
            # uncontended (the common case): the cheap try; else wait for it as before
            if not lock.acquire(False) and not lock.acquire(timeout=-1 if wait is None else wait):
                raise QueueFullError("another thread of this process is waiting to put")
            try:
                a.wq.put(data, timeout=wait)
            finally:
                lock.release()
        except QueueFullError:
            _serde.discard(segs)
            if self._maxsize:
                raise Full from None
            raise Full("the queue's ring is full of unfinished items (maxsize=0 is bounded by the ring): get and "
                       "finish items, or create the queue with a larger retention.bytes / shm.slots") from None
        except UnknownTopicError:
            _serde.discard(segs)
            raise self._removed() from None
        except BaseException:
            _serde.discard(segs)
            raise

    def _get(self, wait, r=None, deadline=NotImplemented):
        """A get; *r*: what FastQueue.get returned to the caller, if it
        called it; *deadline*: the caller's (time.monotonic()), if it set one."""
        a = self._att
        m = a._member if a._gen == S._gen else a.bind()
        held = self._held if self._gen == S._gen else self._mine()
        # Queue, SimpleQueue: the item this thread took before is finished
        # in the same C call that takes the next one
        if r is None:
            r = held.fq.get()  # one C call (ext/fastqueue.c), the previous item finished in it
        if r.__class__ is tuple:
            return r[0] if len(r) == 1 else self._decode(held, m, *r)
        if deadline is NotImplemented:
            deadline = None if wait is None else time.monotonic() + wait
        if r.__class__ is int:  # nothing there now
            if wait == 0:
                raise Empty
            r = self._wait_fast(held, r, deadline)
            if r.__class__ is tuple:
                return r[0] if len(r) == 1 else self._decode(held, m, *r)
            if r.__class__ is int:
                raise Empty
            if deadline is not None:
                wait = max(0.0, deadline - time.monotonic())
        # the Python path: another thread's item or turn, big-buffer segments, an error to raise
        ack_off, ack_tok = held.pop_solo() if self._ack_on_get else (-1, 0)
        lock = a.take_lock
        try:
            got = lock.acquire(False) or lock.acquire(timeout=-1 if wait is None else wait)
        except BaseException:  # Ctrl-C in the wait: the popped item is still finished
            got = False
            raise
        finally:
            if not got and ack_off >= 0:
                held.ack(ack_off, ack_tok)
        if not got:
            raise Empty
        try:
            r = a.wq.take_fast(m.token, ack_off, ack_tok)  # acks ack_off whatever it returns or raises
            if r is None:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                off, data, _ = a.wq.take(m.token, timeout=left, on_wait=m.sup_check, writable=True)
            else:
                off, data, _ = r
        except UnknownTopicError:
            raise self._removed() from None
        except CorruptSegmentError as exc:
            raise CorruptSegmentError("%s: remove the queue (its creator closes it, or `shmbroker destroy`)"
                                      % exc) from None
        finally:
            lock.release()
        if off is None:
            raise Empty
        return self._decode(held, m, off, data)

    def _wait_fast(self, held, at, deadline):
        """Wait for an item, then take it with FastQueue.get: its result
        (a tuple), an int (nothing came by *deadline*), or NotImplemented
        (the Python path's turn: another thread's item, a closed queue)."""
        fq, check, mode = held.fq, self._att._member.sup_check, self._wmode
        r = at
        try:
            while True:
                left = _CHUNK if deadline is None else deadline - _monotonic()
                if left <= 0:
                    return r
                r = fq.get(left, mode, _SPIN_NS)  # waits in C (a chunk at most) for the item or a release, then takes it
                if r.__class__ is not int:
                    return r
                if check is not None:
                    check()  # nothing came: is the supervisor there (dead getters' items)?
        except ClosedError:
            return NotImplemented

    def _decode(self, held, m, off, data):
        """The object of a taken item's record, now held by this thread."""
        try:
            obj, segs = _serde.loads(data)
        except MissingSegmentError:
            held.add(off, [], m.token)
            raise self._removed() from None
        except BaseException:
            held.add(off, _serde.segments(data), m.token)  # taken all the same (multiprocessing too consumes it)
            raise
        held.add(off, segs, m.token)
        return obj

    def _qsize(self):
        try:
            return self._att.wq.qsize()
        except ClosedError:
            raise self._closed_error() from None

    def _close(self):
        if self._closed:
            return
        self._closed = True
        if self._held is not None and self._gen == S.fork_gen():
            self._held.finish()  # this process is done with what it took through this handle
        if self._creator:
            S.creator_closed(self._att.name)


class Queue(_QueueBase):
    """multiprocessing.Queue's API over shared memory; see the module
    docstring for what differs."""

    def __init__(self, maxsize=0, **config):
        _QueueBase.__init__(self, maxsize, config)

    def put(self, obj, block=True, timeout=None):
        if self._closed:
            raise self._closed_error()
        r = (self._held if self._gen == S._gen else self._mine()).fq.put(obj)  # one C call (ext/fastqueue.c)
        if r is not None:
            self._put(obj, _wait(block, timeout), r)

    def get(self, block=True, timeout=None):
        if self._closed:
            raise self._closed_error()
        if self._gen == S._gen:  # the common case in one C call (ext/fastqueue.c), waiting in it
            if not block:
                r, deadline = self._held.fq.get(), None
            elif timeout is None:
                r, deadline = self._held.fq.get(_CHUNK, self._wmode, _SPIN_NS), None
            else:
                deadline = _monotonic() + timeout
                r = self._held.fq.get(timeout, self._wmode, _SPIN_NS)  # waits a chunk at most
            if r.__class__ is tuple and len(r) == 1:
                return r[0]
            return self._get(_wait(block, timeout), r, deadline)
        return self._get(_wait(block, timeout))

    def put_nowait(self, obj):
        return self.put(obj, False)

    def get_nowait(self):
        return self.get(False)

    def qsize(self):
        """Items put and not yet taken (approximate while others work, as in
        multiprocessing)."""
        return self._qsize()

    def empty(self):
        return self._qsize() == 0

    def full(self):
        return bool(self._maxsize) and self._qsize() >= self._maxsize

    def close(self):
        """No more puts or gets through this handle; the items it took are
        finished.  The creator's close removes the queue if it was never
        shared (nobody else can have it); else it goes when the creator
        exits."""
        self._close()

    def join_thread(self):
        if not self._closed:
            raise AssertionError("Queue {0!r} not closed".format(self))
        # nothing to wait for: put returned once the item was in shared memory

    def cancel_join_thread(self):
        pass  # no feeder thread, so nothing is ever left unsent


class JoinableQueue(Queue):
    """multiprocessing.JoinableQueue: ``task_done()`` finishes the oldest
    item the calling thread took (else the oldest this handle took);
    ``join()`` waits until every item put is finished.  The unfinished count
    lives in shared memory (items put minus items finished), so an item
    whose getter died is still unfinished until another getter finishes it.
    Unlike multiprocessing's, ``task_done()`` is called in the process that
    got the item (it finishes that very item)."""

    _ack_on_get = False

    def __init__(self, maxsize=0, **config):
        Queue.__init__(self, maxsize, **config)

    def task_done(self):
        if not self._mine().finish_one():
            raise ValueError("task_done() called too many times (this process holds no item of %r: call it "
                             "once per item it got)" % (self,))

    def join(self):
        a = self._att
        pause = _JOIN_POLL[0]
        check = a.bind().sup_check  # a dead getter's items come back only while a supervisor runs
        while True:
            try:
                if a.wq.unfinished() <= 0:
                    return
            except ClosedError:
                raise self._closed_error() from None
            if a.wq.log.closed or a.removed():
                raise self._removed()
            if check is not None:
                check()
            time.sleep(pause)
            pause = min(pause * 2, _JOIN_POLL[1])


class SimpleQueue(_QueueBase):
    """multiprocessing.SimpleQueue: get, put, empty, close; any operation
    after close raises OSError, as its pipe does."""

    def __init__(self, **config):
        _QueueBase.__init__(self, 0, config)

    def _closed_error(self):
        return OSError("handle is closed")

    def get(self):
        if self._closed:
            raise self._closed_error()
        if self._gen == S._gen:  # as Queue.get
            r = self._held.fq.get(_CHUNK, self._wmode, _SPIN_NS)
            return r[0] if r.__class__ is tuple and len(r) == 1 else self._get(None, r, None)
        return self._get(None)

    def put(self, obj):
        if self._closed:
            raise self._closed_error()
        r = (self._held if self._gen == S._gen else self._mine()).fq.put(obj)  # as Queue.put
        if r is not None:
            self._put(obj, None, r)

    def empty(self):
        if self._closed:
            raise self._closed_error()
        return self._qsize() == 0

    def close(self):
        self._close()


def _rebuild(cls, name, ns_name, mode, maxsize, supervisor, wait_mode="adaptive"):
    """Unpickle a queue handle: attach the same segments (ClosedError if the
    queue was removed meanwhile)."""
    obj = cls.__new__(cls)
    obj._setup(S.attached(name, ns_name, mode, maxsize, supervisor), wait_mode)
    return obj

