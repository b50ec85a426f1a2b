"""Per-process state of the queues (broker/pool/queue.py): this process's
registration in each namespace, the queues it attached and created, the
items its handles hold, and what it does at exit.

- One member entry (role MEMBER_QUEUE) and one owner token per process and
  namespace, shared by every queue handle there: the token marks the items
  the process holds and its appends in progress, and the supervisor, which
  watches the entry, releases and repairs them when the process dies.  A
  forked child registers anew (its own token) at its first put or get.
- One attachment per queue and process (WorkQueue, locks), shared by the
  handles unpickled here (a Pool task's argument attaches once per worker).
- Exit: ``multiprocessing.util.Finalize`` (priority -10): it runs at
  interpreter exit (multiprocessing's own atexit hook runs it, after
  non-daemon children were joined) and in multiprocessing's children, which
  leave through ``os._exit`` after running it.  It finishes (acks) every
  item this process's handles hold, removes the queues this process created,
  then unregisters: a process that exits normally gives nothing back.
"""
import itertools
import os
import threading
import weakref
from collections import deque
from multiprocessing import util as _mputil

from pickle import dumps as _dumps
from pickle import loads as _loads

from shm._native import _fastlog
from shm.errors import ClosedError
from shm.segment import MissingSegmentError, exists
from shm.workqueue import WorkQueue

from ..lifecycle import client_check

FastQueue = _fastlog.FastQueue
from ..namespace import MEMBER_QUEUE, Namespace
from . import _serde
from ._queues import remove_queue

_gen = 0                                     # bumped in a forked child
_members = {}                                # namespace name -> Member (its pid says whose)
_attached = weakref.WeakValueDictionary()    # queue name -> Attached
_created = {}                                # queue name -> Created (this process's queues)
_handles = weakref.WeakSet()                 # live handles: their held items are finished at exit
_numbers = itertools.count()
_hook_pid = _exit_pid = 0
_get_ident = threading.get_ident


def fork_gen():
    return _gen


def next_queue_number():
    return next(_numbers)


def track(handle):
    _handles.add(handle)


class Member:
    """This process's registration in one namespace."""

    def __init__(self, ns, conf):
        self.ns = ns
        self.pid = os.getpid()
        self.idx = ns.register(MEMBER_QUEUE)  # before any lease or claim carries the token
        self.token = ns.owner_token()
        self.sup_check = client_check(conf, ns.name)
        _install_exit_hook()
        if self.sup_check is not None:
            self.sup_check()  # a supervisor must watch us before we take anything


def member(ns_name, mode, conf, create=False):
    """This process's Member of namespace *ns_name* (registering it now)."""
    m = _members.get(ns_name)
    if m is not None and m.pid == os.getpid():
        return m
    _forget_destroyed()
    m = _members.get(ns_name)
    ns = m.ns if m is not None else Namespace(ns_name, create=create, mode=mode)  # forked: the mapping is ours too
    m = _members[ns_name] = Member(ns, conf)
    return m


def _forget_destroyed():
    """Unmap the namespaces destroyed under us (`shmbroker destroy`): the
    registrations there are gone with them."""
    for name, m in list(_members.items()):
        if m.ns.destroyed():
            del _members[name]
            if m.pid == os.getpid():
                m.ns.close()


class Attached:
    """A queue's segments mapped in this process."""

    def __init__(self, wq, name, ns_name, mode, maxsize, supervisor):
        self.wq, self.name, self.ns_name, self.mode = wq, name, ns_name, mode
        self.maxsize, self.supervisor = maxsize, supervisor
        self.max_record = wq.log.max_record
        self.take_lock = threading.Lock()
        self.put_lock = threading.Lock()
        self._member = None
        self._gen = -1

    def bind(self):
        """This process's Member, its token set on the log (claims carry it)."""
        if self._gen == _gen:
            return self._member
        m = member(self.ns_name, self.mode, {"shm.supervisor": self.supervisor})
        try:
            self.wq.log.set_owner(m.token)
        except ClosedError:
            raise self.removed_error() from None
        self.wq.log.on_wait = m.sup_check
        self._member, self._gen = m, _gen
        return m

    def removed(self):
        return not exists(self.name)

    def removed_error(self):
        return ClosedError("queue %s no longer exists: the process that created it closed it or exited (a queue "
                           "lives as long as its creator), or namespace %r was destroyed. Create queues in a "
                           "process that outlives their users" % (self.name, self.ns_name))


def attached(name, ns_name, mode, maxsize, supervisor, wq=None):
    """The Attached of queue *name* in this process (attaching it now)."""
    a = _attached.get(name)
    if a is not None and a.maxsize == maxsize and wq is None:
        if a.removed():  # mapped here still, but gone: as a new attach would say
            raise a.removed_error()
        return a
    if wq is None:
        try:
            wq = WorkQueue.attach(name, maxsize, mode)
        except MissingSegmentError:
            a = Attached.__new__(Attached)
            a.name, a.ns_name = name, ns_name
            raise a.removed_error() from None
    a = Attached(wq, name, ns_name, mode, maxsize, supervisor)
    _attached[name] = a
    return a


class Held:
    """The items one handle holds in this process, per thread, oldest first:
    (offset, token, big-buffer segments).  The common case, one item of one
    thread, sits in ``solo`` as (thread ident, item); a second item (of any
    thread) moves it into ``items``, {thread ident: deque of items}.  Both
    change only under ``lock``."""

    def __init__(self, att, ack_on_get=True):
        self.att = att
        self.pid = os.getpid()
        self.items = {}  # never rebound: FastQueue takes the fast path only while it is empty
        self.lock = threading.Lock()
        # the one-call put and get (ext/fastqueue.c); it keeps ``solo``
        m = att.bind()
        wq = att.wq
        self.fq = FastQueue(wq.log._fast, wq._qaddr, wq._q, m.token, ack_on_get, att.max_record, _dumps, _loads,
                            att.put_lock, self.lock, self.add, self.items, wq.log._users, wq.log._release_if_idle)

    @property
    def solo(self):
        return self.fq.solo

    @solo.setter
    def solo(self, value):
        self.fq.solo = value

    def _spill(self):
        """Move solo into items (under the lock)."""
        s = self.solo
        if s is not None:
            self.items.setdefault(s[0], deque()).appendleft(s[1])
            self.solo = None  # after: a look without the lock sees the item in one place or the other

    def add(self, off, segs, token=None):
        """The calling thread took *off* (with owner *token*, the bound
        member's if None)."""
        item = (off, self.att.bind().token if token is None else token, segs)
        tid = _get_ident()
        with self.lock:
            if self.solo is None and not self.items:
                self.solo = (tid, item)
                return
            self._spill()
            d = self.items.get(tid)
            if d is None:
                self.items[tid] = d = deque()
            d.append(item)

    def _ack(self, item):
        off, token, segs = item
        try:
            ok = self.att.wq.ack(off, token)
        except ClosedError:
            return  # the queue was closed or removed under us: nothing to finish
        if ok:
            _serde.discard(segs)  # done: its big buffers go (a mapping in use stays valid)

    def _pop_thread(self):
        """The calling thread's items, no longer held here (a list, maybe empty)."""
        tid = _get_ident()
        with self.lock:
            s = self.solo
            if s is not None and s[0] == tid:
                self.solo = None
                return [s[1]]
            return self.items.pop(tid, None) or []

    def finish_thread(self):
        """Finish what the calling thread took (its next get)."""
        if self.solo is None and not self.items:  # nothing held by any thread (read without the lock)
            return
        for item in self._pop_thread():
            self._ack(item)

    def pop_solo(self):
        """For a get's fused ack (WorkQueue.take_fast): the calling thread's
        only held item, if it has no big-buffer segments, as (offset,
        token), no longer held here (the caller acks it); else (-1, 0),
        whatever the thread held finished here."""
        if self.solo is None and not self.items:
            return -1, 0
        d = self._pop_thread()
        if len(d) == 1 and not d[0][2]:
            return d[0][0], d[0][1]
        for item in d:
            self._ack(item)
        return -1, 0

    def ack(self, off, token):
        """Finish an item popped by pop_solo whose fused ack did not run."""
        self._ack((off, token, ()))

    def finish_one(self):
        """Finish the oldest item of the calling thread, else the oldest of
        any; False if none is held."""
        with self.lock:
            item = self._pop_oldest()
        if item is None:
            return False
        self._ack(item)
        return True

    def _pop_oldest(self):
        """finish_one's pick (under the lock), or None."""
        s = self.solo
        if s is not None and not self.items:  # the one item held: the oldest of any
            self.solo = None
            return s[1]
        self._spill()
        d = self.items.get(_get_ident())
        if not d:
            ds = [x for x in self.items.values() if x]
            d = min(ds, key=lambda x: x[0][0]) if ds else None
        if not d:
            return None
        item = d.popleft()
        if not d:  # emptied: drop empty deques, so the next lone item goes to solo again
            for k in [k for k, v in self.items.items() if not v]:
                del self.items[k]  # in place: FastQueue watches this dict
        return item

    def finish(self):
        """Finish everything (close, exit, a dropped handle); only in the
        process that took the items."""
        if self.pid != os.getpid():
            return
        with self.lock:
            self._spill()
            items = dict(self.items)
            self.items.clear()
        for d in items.values():
            for item in d:
                self._ack(item)


class Created:
    __slots__ = ("pid", "mode", "shared")

    def __init__(self, mode):
        self.pid, self.mode, self.shared = os.getpid(), mode, False


def created(name, mode, handle):
    """*handle* created queue *name*: it is removed when this process exits,
    or when the handle is closed or dropped if it was never shared."""
    _created[name] = Created(mode)
    fin = weakref.finalize(handle, creator_closed, name)
    fin.atexit = False  # exit is the exit hook's (after multiprocessing joined our children)


def shared(name):
    """Queue *name* was pickled here: another process may have it now."""
    c = _created.get(name)
    if c is not None:
        c.shared = True


def creator_closed(name):
    c = _created.get(name)
    if c is not None and c.pid == os.getpid() and not c.shared:
        del _created[name]
        remove_queue(name, c.mode)


def _before_fork():
    for c in _created.values():
        c.shared = True  # the child has the handle


def _after_fork_in_child():
    global _gen
    _gen += 1
    for a in list(_attached.values()):
        a.take_lock = threading.Lock()  # a parent thread may have held them at the fork
        a.put_lock = threading.Lock()


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _install_exit_hook():
    global _hook_pid
    if _hook_pid != os.getpid():
        _hook_pid = os.getpid()
        _mputil.Finalize(None, at_exit, exitpriority=-10)


def at_exit():
    """Finish what this process holds, remove the queues it created, and
    unregister (in that order: a process gone from the member table holds
    nothing).  Once per process."""
    global _exit_pid
    pid = os.getpid()
    if _exit_pid == pid:
        return
    _exit_pid = pid
    for h in list(_handles):
        held = getattr(h, "_held", None)
        if held is not None:
            try:
                held.finish()
            except Exception:  # exiting: what is not finished is released by the supervisor
                pass
    for name, c in list(_created.items()):
        if c.pid == pid:
            del _created[name]
            try:
                remove_queue(name, c.mode)
            except Exception:  # the supervisor removes it when it sees us gone
                pass
    for m in list(_members.values()):
        if m.pid == pid:
            try:
                m.ns.unregister(m.idx, pid)
            except Exception:  # the namespace was closed or destroyed: nothing to leave
                pass
