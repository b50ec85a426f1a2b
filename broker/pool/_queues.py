"""A namespace's queues (broker.Queue & co), found by their segment names,
and what the supervisor and ``destroy`` do to them.

A queue is three kinds of segment, every name under the namespace's prefix
(so ``shmbroker destroy`` removes them with it):

    /shmb.<ns>.q<token>_<n>             the log (a block-mode partition log)
    /shmb.<ns>.q<token>_<n>.q           its leases (shm/workqueue.py)
    /shmb.<ns>.q<token>_<n>.b<pid>_<k>  an item's big buffer (broker/pool/_serde.py)

``<token>`` is the registration token of the process that created the queue
(it registers first, so a queue never exists before its creator's member
entry): a queue whose token no live member has lost its creator and is
removed.  Queues are not topics: they are not in the topic registry, so
``list_topics()`` and ``shmbroker topics`` never show them.

The supervisor trusts nothing here: a name is used only if it matches the
pattern exactly and its token is in the tokens' range; a segment that does
not attach (damaged, another user's) is reported through ``note`` and
skipped.
"""
import os
import re

from shm.errors import KafkaException
from shm.log import PartitionLog, repair_unclaimed
from shm.segment import SHM_DIR, unlink
from shm.workqueue import LEASE_SUFFIX, WorkQueue

from ..namespace import TOKEN_BASE, TOKEN_SPAN

_LOG = re.compile(r"^shmb\.([A-Za-z0-9_-]{1,48})\.q(\d{7,8})_(\d{1,12})$")
GRACE = 0.05  # seconds a claimed-but-unwritten offset of a dead putter gets (as for producers)


def queue_name(namespace, token, n):
    return "/shmb.%s.q%d_%d" % (namespace, token, n)


def creator_token(name):
    """The creator's token in a queue's log name, or None if it is not one."""
    m = _LOG.match(name.lstrip("/"))
    if m is None:
        return None
    tok = int(m[2])
    return tok if TOKEN_BASE <= tok < TOKEN_BASE + TOKEN_SPAN else None


def queues(namespace):
    """[(log segment name, creator token)] of every queue of *namespace*."""
    out = []
    for f in os.listdir(SHM_DIR):
        m = _LOG.match(f)
        if m is None or m[1] != namespace:
            continue
        tok = creator_token(f)
        if tok is not None:
            out.append(("/" + f, tok))
    return sorted(out)


def segments(name):
    """Every segment of queue *name* that exists: log, leases, buffers."""
    stem = name.lstrip("/")
    return ["/" + f for f in os.listdir(SHM_DIR)
            if f == stem or f == stem + LEASE_SUFFIX or f.startswith(stem + ".b")]


def _mark_deleted(name, mode=None):
    """Tell the queue's users it is gone: puts fail, sleeping getters wake
    and raise (the log's deleted flag, as a deleted topic's)."""
    try:
        log = PartitionLog.attach(name, mode)
    except KafkaException:
        return False
    try:
        log.mark_deleted()
    finally:
        log.close()
    return True


def remove_queue(name, mode=None, note=None):
    """Mark queue *name* deleted, then unlink all its segments; returns the
    names removed.  A segment that cannot be removed (another user's) is
    reported through *note* (else raised)."""
    _mark_deleted(name, mode)
    gone = []
    for seg in [name, name + LEASE_SUFFIX] + segments(name):
        if seg in gone:
            continue
        try:
            unlink(seg)
        except Exception as exc:  # posix_ipc.PermissionsError is no OSError
            if note is None:
                raise
            note(("unlink", seg), "queue segment %s cannot be removed (%s): skipped", seg, exc)
            continue
        gone.append(seg)
    return gone


def mark_queues_deleted(namespace):
    """destroy()'s part for queues: every queue of *namespace* is marked
    deleted before its segments go, so live users are told."""
    for name, _ in queues(namespace):
        _mark_deleted(name)


def _open(name, mode, note):
    try:
        return WorkQueue.attach(name, 0, mode)
    except (KafkaException, OSError, ValueError) as exc:
        note(("queue", name, type(exc).__name__), "queue %s cannot be opened (%s): skipped", name, exc)
        return None


def member_died(namespace, token, mode, note):
    """A registered queue client with *token* died: in every queue of
    *namespace*, tombstone the items it was putting (so getters pass them)
    and release the items it held (taken again by others; sleeping getters
    are woken); then remove the queues it created.  Idempotent.  Returns
    (tombstoned, released, [queues removed])."""
    tomb = released = 0
    opened = []
    try:
        for name, creator in queues(namespace):
            wq = _open(name, mode, note)
            if wq is None:
                continue
            opened.append(wq)
            try:
                tomb += wq.log.repair_dead(token)
                released += len(wq.release_owner(token))
            except (KafkaException, ValueError) as exc:
                note(("queue", name, repr(exc)), "queue %s: repair failed (%r): skipped", name, exc)
        logs = [wq.log for wq in opened]
        if logs:
            tomb += repair_unclaimed(logs, GRACE)
    finally:
        for wq in opened:
            wq.close()
    removed = [name for name, creator in queues(namespace) if creator == token]
    for name in removed:
        remove_queue(name, mode, note)
    return tomb, released, removed


def sweep(namespace, live_tokens, mode, note):
    """Remove the queues whose creator is no live member (it died while no
    supervisor ran, say).  *live_tokens* is called after the scan: a queue
    is created only after its creator registered, so a creator alive at the
    scan is in the tokens read after it.  Returns the queues removed."""
    found = queues(namespace)
    if not found:
        return []
    live = live_tokens()
    removed = [name for name, creator in found if creator not in live]
    for name in removed:
        remove_queue(name, mode, note)
    return removed
