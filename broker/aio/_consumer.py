"""AIOConsumer: confluent_kafka.aio's consumer over shmbroker, without a thread pool.

Every call runs on the event loop.  A read is the synchronous consumer's
``poll(0)`` / ``consume(n, 0)`` (never blocks); when it finds nothing, the
coroutine registers a wait with the process's waker (``_waker.py``): the
partitions it reads at their positions and, for a group member, its notify
word (a new assignment wakes it at once).  The waker's futex sleep rings the
loop's eventfd; the coroutine reads again.  Nothing is taken from a
partition except inside that synchronous read, so a cancelled ``poll``
(``asyncio.wait_for``) loses nothing: the record that arrived meanwhile is
the next poll's.

A group member's liveness is kept as the synchronous consumer keeps it:
while a coroutine waits, the member's in-poll flag is set and its heartbeat
is written every heartbeat chunk (at most 100 ms); when none waits, its
last-poll time counts against ``max.poll.interval.ms``.
"""
import asyncio
import time

from broker import groups as G
from broker.kafka import Consumer as _Consumer
from broker.kafka import KafkaException, TopicPartition
from broker.namespace import META_SIZE

from ._calls import Pending
from ._waker import Wait, bell_of, waker

_CONF_CALLBACKS = ("on_commit", "error_cb", "stats_cb", "throttle_cb", "oauth_cb")
_IDLE_CHUNK = 0.5  # a wait with no group wakes this often (a dead supervisor is restarted from here)
_MISSING_CHUNK = 0.1  # assigned partitions that do not exist yet are looked for this often


def _resolve(fut):
    if not fut.done():
        fut.set_result(False)


def _wrap_conf(conf, pending):
    """A copy of *conf* whose callbacks may be coroutine functions."""
    if conf is None:
        return conf
    conf = dict(conf)
    for k in _CONF_CALLBACKS:
        if callable(conf.get(k)):
            conf[k] = pending.wrap(conf[k])
    return conf


class AIOConsumer:
    """confluent_kafka.aio's ``AIOConsumer``: the methods of :class:`broker.kafka.Consumer` as coroutines.

    ``await poll(timeout)`` and ``await consume(num_messages, timeout)`` wait without blocking the loop and
    without a thread pool: the partitions' futexes wake it.  Rebalance callbacks (``on_assign``,
    ``on_revoke``, ``on_lost``) and the ``on_commit``, ``error_cb``, ``stats_cb`` callbacks may be coroutine
    functions; they get this AIOConsumer.  Also ``async with`` and ``async for msg in consumer``.

    :param dict consumer_conf: the consumer's configuration (``group.id`` required, as in confluent-kafka).
        One key of its own: ``shm.aio.waker`` - ``auto`` (default: io_uring futex waits where the kernel has
        them, Linux >= 6.7, else the waker thread), ``io_uring`` (those, or an OSError at the first wait where
        the kernel has none), ``thread`` (always the waker thread).
    :param int max_workers: accepted for confluent-kafka's signature; no thread runs calls here.
    :param executor: accepted for confluent-kafka's signature; unused.
    :raises ValueError: if *max_workers* is below 1 (as confluent-kafka) or ``group.id`` is missing.
    """

    def __init__(self, consumer_conf, max_workers=2, executor=None):
        if executor is None and max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._pending = Pending()
        self._c = _Consumer(_wrap_conf(consumer_conf, self._pending))  # it checks shm.aio.waker too
        self._how = (consumer_conf or {}).get("shm.aio.waker", "auto")
        self._waits = {}  # future -> (what holds it: the loop's ring or a waker thread, Wait) of each waiting now
        self._waiting = 0
        self._closed = False

    # -- reading
    async def poll(self, timeout=-1):
        """The next message or event, waiting up to *timeout* seconds (-1 or None: until one comes).

        :returns: a Message, or None on timeout or when :meth:`close` ran while this waited.
        :raises RuntimeError: if the consumer was closed before."""
        c = self._c
        return await self._read(lambda: c.poll(0), timeout)

    async def consume(self, num_messages=1, timeout=-1):
        """Up to *num_messages* messages, waiting up to *timeout* seconds for the first.

        :returns: a list (empty on timeout or when :meth:`close` ran while this waited).
        :raises ValueError: if *num_messages* is not in [0, 1000000]."""
        c = self._c
        if num_messages == 0:
            return c.consume(0, 0)  # the closed check, and nothing to read
        got = await self._read(lambda: c.consume(num_messages, 0), timeout)  # it checks num_messages
        return got or []

    async def _read(self, now, timeout):
        """Call *now()* (a read that never blocks) until it returns something, *timeout* passes or the
        consumer is closed."""
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        while True:
            got = now()
            if self._pending.tasks:  # rebalance callbacks that suspended: they finish before we return
                try:
                    await self._pending.settle()
                except BaseException:  # cancelled (or a callback raised): what we read is read again
                    self._unread(got)
                    raise
            if got is not None and (type(got) is not list or got):  # (a Message's truth is its value's length)
                return got
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return got
            if not await self._wait(left):
                await asyncio.sleep(0)  # something changed under us: read again, after the loop's other work
            if self._closed:
                return None

    def _unread(self, got):
        """Give back what a read returned that never reached the caller: each partition goes back to the
        first offset it handed out."""
        first = {}
        for m in ([got] if got is not None and not isinstance(got, list) else got or []):
            if m.error() is None and (m.topic(), m.partition()) not in first:
                first[(m.topic(), m.partition())] = m.offset()
        for (t, p), off in first.items():
            try:
                self._c.seek(TopicPartition(t, p, off))
            except KafkaException:
                pass  # revoked meanwhile: its next owner reads it from the group's commit

    def _spec(self):
        """What the consumer waits for: (logs, offsets, extra words, chunk seconds), or None to read again now."""
        c = self._c
        c._ns.check_alive()
        if c._sup_check is not None:
            c._sup_check()  # a client restarts a dead supervisor
        if c._events or c._commit_events or c._rejoin:
            return None
        parts = [p for p in c._parts.values() if not p.paused and not p.stopped]
        chunk = _MISSING_CHUNK if c._missing else _IDLE_CHUNK
        extras = []
        if c._slot is not None:
            gw, gs = c._gw, c._gs
            gw[c._w_hb] = time.monotonic_ns()
            gw[c._w_inpoll] = 1
            off = gs.notify_word(c._slot)
            nval = gw[off // 8] & 0xFFFFFFFF  # little-endian: the u32 is the low half
            if gw[c._w_epoch] != c._seen_epoch or gw[c._w_state] != G.ACTIVE:
                return None
            extras.append((gs.buf, META_SIZE, off, nval))
            chunk = min(chunk, c._hb_ns / 1e9)
        return [p.log for p in parts], [p.pos for p in parts], extras, chunk

    async def _wait(self, left):
        """Sleep until a partition may have a record, the group moved, *left* seconds (None: a chunk) passed
        or the consumer was closed.  :returns: False if it did not sleep (read again at once)."""
        spec = self._spec()
        if spec is None:
            return False
        logs, offsets, extras, chunk = spec
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        timer = loop.call_later(chunk if left is None else min(left, chunk), _resolve, fut)
        bell = w = None
        if logs or extras:
            bell = bell_of(loop)
            w = Wait(logs, offsets, extras, fut, bell)
            bell.enter()
            try:
                self._waits[fut] = (bell.add(w, self._how), w)
            except BaseException:  # shm.aio.waker=io_uring on a kernel without
                bell.leave()
                timer.cancel()
                raise
        self._waiting += 1
        try:
            await fut
        finally:
            self._waiting -= 1
            timer.cancel()
            if w is not None:
                t, _ = self._waits.pop(fut, (None, None))
                if t is not None:
                    t.remove(w)
                bell.leave()
            if not self._waiting:
                self._idle()
        return True

    def _idle(self):
        """No coroutine waits any more: the member's time between polls starts (max.poll.interval.ms)."""
        c = self._c
        if not c._closed and c._slot is not None:
            c._gw[c._w_last] = time.monotonic_ns()
            c._gw[c._w_inpoll] = 0

    def _kick(self):
        """Waiting coroutines read again (the assignment or a position changed)."""
        for fut in list(self._waits):
            _resolve(fut)

    def __aiter__(self):
        return self

    async def __anext__(self):
        """``async for msg in consumer``: messages (and events) until the consumer is closed."""
        while not self._closed:
            msg = await self.poll(-1)
            if msg is not None:
                return msg
        raise StopAsyncIteration

    # -- group
    async def subscribe(self, topics, on_assign=None, on_revoke=None, on_lost=None):
        """Join the group; the callbacks get ``(this AIOConsumer, partitions)`` and may be coroutine functions.

        :raises TypeError: for a callback that is not callable."""
        for cb in (on_assign, on_revoke, on_lost):
            if cb is not None and not callable(cb):
                raise TypeError("rebalance callbacks must be callable")
        w = self._pending.wrap
        self._c.subscribe(topics, on_assign=w(on_assign, self), on_revoke=w(on_revoke, self),
                          on_lost=w(on_lost, self))
        self._kick()

    async def unsubscribe(self):
        """Leave the group (on_revoke runs) and drop the assignment."""
        self._c.unsubscribe()
        self._kick()
        await self._pending.settle()

    async def commit(self, message=None, offsets=None, asynchronous=True):
        """As :meth:`broker.kafka.Consumer.commit` (a commit is local: it never waits)."""
        r = self._c.commit(message=message, offsets=offsets, asynchronous=asynchronous)
        return r

    async def store_offsets(self, message=None, offsets=None):
        return self._c.store_offsets(message=message, offsets=offsets)

    async def committed(self, partitions, timeout=-1):
        return self._c.committed(partitions, timeout)

    async def consumer_group_metadata(self):
        return self._c.consumer_group_metadata()

    async def memberid(self):
        return self._c.memberid()

    # -- assignment and positions (each wakes waiting coroutines: they wait on the new set)
    async def assign(self, partitions):
        self._c.assign(partitions)
        self._kick()

    async def unassign(self):
        self._c.unassign()
        self._kick()

    async def incremental_assign(self, partitions):
        self._c.incremental_assign(partitions)
        self._kick()

    async def incremental_unassign(self, partitions):
        self._c.incremental_unassign(partitions)
        self._kick()

    async def assignment(self):
        return self._c.assignment()

    async def position(self, partitions):
        return self._c.position(partitions)

    async def seek(self, partition):
        self._c.seek(partition)
        self._kick()

    async def pause(self, partitions):
        self._c.pause(partitions)
        self._kick()

    async def resume(self, partitions):
        self._c.resume(partitions)
        self._kick()

    # -- queries
    async def list_topics(self, topic=None, timeout=-1):
        return self._c.list_topics(topic, timeout)

    async def get_watermark_offsets(self, partition, timeout=None, cached=False):
        return self._c.get_watermark_offsets(partition, timeout, cached)

    async def offsets_for_times(self, partitions, timeout=None):
        return self._c.offsets_for_times(partitions, timeout)

    async def set_sasl_credentials(self, username, password):
        return self._c.set_sasl_credentials(username, password)

    # -- life
    async def close(self):
        """Commit (auto-commit), leave the group (on_revoke runs), detach.  A coroutine waiting in poll() or
        consume() returns None (or []) at once; later calls raise RuntimeError.  Closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        for fut, (t, w) in list(self._waits.items()):
            t.remove(w)
            _resolve(fut)
        self._waits.clear()
        waker().barrier()  # no waker thread still sleeps on our notify word (or checks it): it may be unmapped
        # (an io_uring wait reads its words only as it is submitted: a cancelled one never again)
        self._c.close()
        await self._pending.settle()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
