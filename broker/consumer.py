"""Consumer with confluent-kafka's API: reading (poll, consume, seek, pause,
...).  Its mixins: the assignment (assign, incremental_assign, where each
partition starts) is consumer_assign.py's Assignment; consumer groups
(subscribe, commit, committed, store_offsets, rebalance callbacks)
membership.py's GroupMember; watermarks, offsets for times and metadata
consumer_queries.py's Queries.

Reading: per partition, records are fetched in batches of up to
``_FETCH`` (one C call) and handed out one per poll(); partitions take
turns.  When nothing is ready, the consumer sleeps on every assigned
partition's futex at once (futex_waitv; the C core splits assignments of
more than 128 partitions over helper threads), in chunks so Ctrl-C
interrupts it.

Laps: a consumer that falls behind on an overwrite topic is reset by
auto.offset.reset (earliest/latest: the records skipped are counted, in
stats() and, for a group, in the namespace for `shmbroker stat`; error: an
_AUTO_OFFSET_RESET event, and the partition waits for seek()).

Destroy: `shmbroker destroy` sets a flag in the namespace segment and marks
every partition deleted; the next commit, or poll of a group member, raises
NamespaceError (a consumer outside a group checks at its next fetch or
wait: it may first hand out the rest of a batch it fetched before).
"""
import collections
import time

from shm._native import _fastlog, ffi, lib
from shm.errors import ClosedError, ConfigError, KafkaError, KafkaException, NamespaceError, UnknownTopicError
from shm.wait import Waiter

from . import config as _config
from . import latency_hist
from .membership import GroupMember, part_position
from .consumer_assign import Assignment
from .consumer_queries import Queries
from .message import OFFSET_INVALID, Message, TopicPartition, eof_event, event
from .namespace import DESTROYED_OFF, MEMBER_CONSUMER, Namespace, register_client, unregister_client
from .lifecycle import client_check
from .autocreate import WHY_SASL, auto_create, client_logger, not_on_one_host
from . import stats as _stats

_FETCH = 256
_LOG_NOT_YET, _LOG_LAPPED = lib.LOG_NOT_YET, lib.LOG_LAPPED  # (a cffi lib attribute costs a lookup each time)
_mk = tuple.__new__  # Message(...) without running Python code
_DESTROYED_W = DESTROYED_OFF // 8


class Consumer(Assignment, GroupMember, Queries):
    """A consumer with confluent-kafka's API: manual assignment or a consumer group (subscribe).

    :param dict config: librdkafka's keys (``group.id``, ``auto.offset.reset``, ``enable.auto.commit``, ...) and
        shmbroker's (``shm.namespace``, ``shm.wait``, ...); keyword arguments are merged in.
    :raises ConfigError: for an unknown key or a bad value.
    """

    def __init__(self, config=None, **kwargs):
        conf = _config.parse(config, kwargs, "consumer")
        self._conf = conf
        self._zero_copy = _config.as_bool(conf.get("shm.zero.copy", False))
        self._check_crcs = _config.as_bool(conf.get("check.crcs", False))  # views' values summed when handed out
        if self._zero_copy and conf.get("group.id") is None:
            raise ConfigError("shm.zero.copy needs a group.id: the group's committed offsets are what keep "
                              "producers off a record while you hold its view")
        self._ns = Namespace(_config.resolve_namespace(conf), mode=conf.get("shm.mode"),
                             pre_touch=conf.get("shm.pre.touch", False))  # (validated to a bool by parse)
        self._reset = _config.AUTO_OFFSET_RESET[conf.get("auto.offset.reset", "latest")]
        self._eof = _config.as_bool(conf.get("enable.partition.eof", False))
        self._auto_create = _config.as_bool(conf.get("allow.auto.create.topics", False))  # librdkafka's default
        self._log = client_logger(conf, "consumer")
        self._wait_mode = conf.get("shm.wait", "adaptive")
        # the first spin, in C, before waiting: adaptive spins 50 us, spin in 1 ms chunks
        self._spin_ns = {"adaptive": 50_000, "spin": 1_000_000, "sleep": 0}[self._wait_mode]
        self._parts = {}  # (topic, partition) -> _Part
        # (topic, partition) -> [offset, paused]: assigned, but the topic or partition does not exist (yet); as
        # librdkafka, it stays in the assignment and is read once it exists
        self._missing = {}
        self._missing_gen = None
        self._order = []  # keys, in turn order
        self._block = []  # the assigned parts that auto-commit paces (Part.pace: block topics' producers wait)
        self._turn = 0
        self._events = collections.deque()
        self._topics = {}  # name -> TopicInfo seen at assign
        self._cur = None  # the partition whose fetched batch is being handed out
        self._solo = None  # see _set_solo
        self._closed = False
        self._init_group(conf)
        self._lat = latency_hist.Recorder(self) if latency_hist.option(conf, self._group) else None
        self._waiter = None  # (partition set, Waiter) of the last wait
        self._laps = {}  # (topic, partition) -> [records lost to laps, resets]
        self._nsw = memoryview(self._ns.seg.mm).cast("Q")  # the destroyed flag, read per fetched batch
        register_client(self, MEMBER_CONSUMER)
        self._sup_check = client_check(conf, self._ns.name)  # from our waits: a dead supervisor is restarted
        if self._sup_check is not None:
            self._sup_check()
        # poll()'s lean path in C (ext/fastpoll.c): a fetched batch's next Message, or the one assigned
        # partition's next records; everything else comes back to _poll_py.  It reads the destroyed flag where
        # the namespace is mapped: close() disables it before that goes.
        base = int(ffi.cast("uintptr_t", ffi.from_buffer(self._ns.seg.mm)))
        self._ns_map = (base, len(self._ns.seg.mm))  # where a group member's words are, for the C path
        flag = base + DESTROYED_OFF
        self._cpoll = _fastlog.ConsumerPoll(self.__dict__, self._poll_py, self._poll_after, self._events,
                                            self._commit_events, flag,
                                            -1 if self._wait_mode == "spin" else self._spin_ns, _FETCH, self._eof,
                                            self._sup_check)
        self._lean_sync()
        if _stats.Statistics.wanted(conf):
            _stats.attach_consumer(self, conf)
        elif type(self).poll is Consumer.poll:
            self.poll = self._cpoll  # no Python frame a call

    # -- assignment
    def _check(self):
        """:raises ClosedError: (a RuntimeError) if the consumer is closed."""
        if self._closed:
            raise ClosedError("Consumer closed")

    def _topic_info(self, name):
        """:returns: the TopicInfo of *name*, created first if ``allow.auto.create.topics`` and the namespace
            allow it.
        :raises UnknownTopicError: if it does not exist (and is not created)."""
        if self._auto_create:
            return auto_create(self._ns, name, self._log)
        return self._ns.topic(name)

    # -- reading
    @staticmethod
    def _jump(part, pos):
        """Move to *pos*, or stop reading the partition (None: reset=error)
        until seek()."""
        part.stopped = pos is None
        if pos is not None:
            part.pos = pos

    def _fill(self, part):
        """Fetch a batch of Messages into part.buf; returns an event Message or None."""
        if self._nsw[_DESTROYED_W]:  # one word load a batch: `shmbroker destroy` ran
            self._ns.check_alive()
        tp = part.tp
        try:
            if part.retention_ms < 0:  # the common case: Messages built in C, one call a batch
                msgs, nxt, rc = part.log._fast.read_messages(part.pos, _FETCH, tp.topic, tp.partition)
                if msgs is None:
                    part.log._raise(rc)
                # the stop's status object only when it matters: a lap (a batch that ended at the head, as
                # most do, needs none)
                stop = part.log._status(rc, nxt) if rc == _LOG_LAPPED else None
            else:
                recs, nxt, stop = part.log.read_batch(part.pos, _FETCH)
                msgs = self._unexpired(part, recs, nxt)
                if msgs is None:
                    return None
        except UnknownTopicError as exc:
            self._remove((tp.topic, tp.partition))
            return event(tp.topic, tp.partition, part.pos, exc.args[0])
        if msgs:
            part.buf.extend(msgs)
            part.eof_sent = False
            part.pos = nxt
            return None
        part.pos = nxt  # skipped tombstones (or expired records)
        if stop is not None and stop.status == "lapped":
            self._jump(part, self._reset_to(part.log, tp, stop.offset, part.retention_ms, lapped=True))
            return None
        if self._eof and not part.eof_sent:
            part.eof_sent = True
            return eof_event(tp.topic, tp.partition, part.pos)
        return None

    def _unexpired(self, part, recs, nxt):
        """retention.ms: the batch's records still retained, as Messages (None:
        handled here - a jump by auto.offset.reset, or all expired)."""
        if recs:
            cutoff = time.time_ns() - part.retention_ms * 1_000_000
            if recs[0][4] < cutoff:
                # the head of the batch is past retention.ms: deleted, as Kafka would have
                if self._reset != "earliest":
                    self._jump(part, self._reset_to(part.log, part.tp, recs[0][0], part.retention_ms))
                    return None
                recs = [r for r in recs if r[4] >= cutoff]
                if not recs:
                    part.pos = nxt
                    return None
        t, p, value = part.tp.topic, part.tp.partition, self._value
        return [_mk(Message, (t, p, r[0], r[2], value(part, r[1]), r[3], None, r[4], None, None)) for r in recs]

    def _value(self, part, v):
        """A value read by a Python path (a Record's bytes) as the C paths hand it out: with shm.zero.copy, a
        block topic's as a view (of this copy)."""
        return memoryview(v) if v is not None and self._zero_copy and part.log._view_base is not None else v

    def _next(self):
        """One message (or event) if any partition has one ready."""
        cur = self._cur
        if cur is not None and cur.buf and not self._events:  # the common case: a fetched batch
            return cur.buf.popleft()
        self._cur = None
        if self._events:
            return self._events.popleft()
        order = self._order
        n = len(order)
        for i in range(n):
            key = order[(self._turn + i) % n]
            part = self._parts[key]
            if part.paused or part.stopped:
                continue
            if not part.buf:
                ev = self._fill(part)
                if ev is not None:
                    self._turn = (self._turn + i + 1) % max(n, 1)
                    return ev
                if not part.buf:
                    if self._events:
                        return self._events.popleft()
                    continue
            m = part.buf.popleft()
            self._turn = (self._turn + i + 1) % n  # after this batch, the next partition's turn
            if part.buf and not part.paused:
                self._cur = part
            return m
        return None

    def _wait(self, timeout):
        self._ns.check_alive()
        parts = [p for p in self._parts.values() if not p.paused and not p.stopped]
        if self._slot is not None:
            return self._wait_member(parts, timeout)
        if not parts:
            if timeout is None:
                timeout = 0.1  # nothing assigned: still return now and then
            if self._sup_check is not None:
                self._sup_check()
            time.sleep(min(timeout, 0.1))
            return
        try:
            self._waiter_for(parts).wait([p.pos for p in parts], timeout, self._wait_mode)
        except UnknownTopicError:
            pass  # the next _fill reports which

    def _waiter_for(self, parts, notify=None):
        """The Waiter of this set of partitions, built again only when it changes."""
        key = tuple(id(p) for p in parts)
        if self._waiter is None or self._waiter[0] != key:
            self._waiter = (key, Waiter([p.log for p in parts], notify, self._sup_check))
        return self._waiter[1]

    def _poll_one(self, part, timeout):
        """One active partition: spin, then read every ready record in one C call (the first is handed out,
        the others wait in part.buf, as a fetched batch); then, if nothing came, the log's own wait (futex
        sleeps)."""
        if self._nsw[_DESTROYED_W]:  # one word load: `shmbroker destroy` ran
            self._ns.check_alive()
        spin = self._spin_ns if timeout is None else min(self._spin_ns, int(timeout * 1e9))
        r = part.fast.next_message(part.pos, spin, _FETCH, part.topic, part.partition, part.buf)
        if r is not None and r[0] is not None:
            part.pos = r[1]
            part.eof_sent = False
            if part.buf:
                self._cur = part
            return r[0]
        return self._poll_after(part, r, spin, timeout)

    def _poll_after(self, part, r, spun, timeout):
        """_poll_one's continuation (the C poll's too, ext/fastpoll.c) when its read found nothing:
        _poll_rest, and a deleted topic reported as the general path reports it."""
        try:
            return self._poll_rest(part, r, spun, None if timeout is None or timeout < 0 else timeout)
        except UnknownTopicError:
            return self._next()  # _fill reports the deletion

    def _poll_rest(self, part, r, spun, timeout):
        """_poll_one after its C call read nothing: *r* is None (nothing came within *spun* ns) or (None,
        next offset, status code)."""
        if timeout is not None:
            timeout = max(0.0, timeout - spun / 1e9)
        if r is not None:
            part.pos, rc = r[1], r[2]
            # nothing read: an error, a lap, a skipped record (pos moved past it), or a producer still copying
            if rc < 0:
                return self._next()  # the general path raises it (or reports a deleted topic)
            if rc == _LOG_LAPPED:  # handled here: a second read would count the lap twice
                self._jump(part, self._reset_to(part.log, part.tp, part.pos, part.retention_ms, lapped=True))
            if rc != _LOG_NOT_YET and self._slot is None:
                return self._next_or_wait(timeout)
        if self._slot is not None:  # a member (the C path's): in poll, its wait watching for a new assignment
            return self._poll_member(timeout)
        # adaptive has spun its share above: now sleep (spin mode keeps spinning); with auto-commit, waking for
        # each commit due (a block topic's producers wait for commits; librdkafka makes them in the background)
        mode = "sleep" if self._wait_mode == "adaptive" else self._wait_mode
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            chunk = self._commit_wait(left) if self._plain_commits else left
            r = part.log.poll(part.pos, chunk, mode)
            if r is not None:
                break
            if chunk == left:  # (the whole timeout, not a commit's time)
                return None
        if r.status == "ok":
            part.pos = r[0] + 1
            part.eof_sent = False
            if self._lat is not None:
                part.log._fast.lat_record(r[4])
            return _mk(Message, (part.tp.topic, part.tp.partition, r[0], r[2], self._value(part, r[1]), r[3], None,
                                 r[4], None, None))
        return self._next()  # a status: the general path handles it

    def _next_or_wait(self, timeout):
        """After a lap or a skipped record: the next message or event, waiting the rest of *timeout* (None: no
        limit) for one - not None at once while time is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        msg = self._next()
        if msg is not None or timeout == 0:
            return msg
        return self._wait_next(deadline)

    def poll(self, timeout=None):
        """The next message, an event (error() set), or None after *timeout*
        seconds (None or -1: wait forever)."""
        return self._cpoll(timeout)  # the C lean path, _poll_py for the rest (a plain consumer calls it directly)

    def _poll_py(self, timeout=None):
        """poll() in Python: what the C lean path (ext/fastpoll.c) hands back."""
        cur = self._cur  # a fetched batch being handed out: nothing else to do (a closed consumer has none)
        if cur is not None and cur.buf and not self._events and self._slot is None and not (
                self._plain_commits and self._commit_due()):
            return cur.buf.popleft()
        self._check()
        if self._missing:
            self._promote()
        if self._slot is not None or self._commit_events or self._rejoin:
            return self._poll_member(timeout)
        if self._plain_commits:  # assign() with a group.id and enable.auto.commit
            self._auto_commit_tick()
        return self._poll(timeout)

    def _poll(self, timeout):
        order = self._order
        if len(order) == 1 and not self._events and not self._missing:
            # one partition (the common case of a latency-critical reader): straight to its read and wait, in
            # C; the general path below for everything else (an end-of-partition event due included)
            part = self._parts[order[0]]
            if (not part.paused and not part.stopped and not part.buf and part.retention_ms < 0
                    and (part.eof_sent or not self._eof)):
                return self._poll_one(part, None if timeout is None or timeout < 0 else timeout)
        msg = self._next()
        if msg is not None:
            return msg
        if timeout == 0:
            return None
        return self._wait_next(None if timeout is None or timeout < 0 else time.monotonic() + timeout)

    def _wait_next(self, deadline):
        """Wait for the next message or event until *deadline* (time.monotonic(); None: no limit)."""
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            if self._plain_commits:  # enable.auto.commit: made while waiting too (block topics' producers wait)
                left = self._commit_wait(left)
            if self._missing:  # look for them now and then
                self._wait(0.1 if left is None else min(left, 0.1))
                self._promote()
            else:
                self._wait(left)
            msg = self._next()
            if msg is not None:
                return msg

    def consume(self, num_messages=1, timeout=-1):
        """Up to *num_messages* messages, waiting at most *timeout* for the first.

        :param int num_messages: at most this many, in [0, 1000000].
        :param float timeout: seconds to wait for the first (-1: forever).
        :returns: the messages (events included), maybe none.
        :rtype: list
        :raises ValueError: if *num_messages* is out of range."""
        self._check()
        if not isinstance(num_messages, int) or not 0 <= num_messages <= 1000000:
            raise ValueError("num_messages must be between 0 and 1000000 (1M)")
        if num_messages == 0:
            return []
        first = self.poll(timeout)
        if first is None:
            return []
        out = [first]
        nxt = self._next
        while len(out) < num_messages:
            cur = self._cur
            if cur is not None and cur.buf and not self._events and self._lat is None:
                # what _next would pop, in bulk (with shm.latency.histogram each popleft counts its message)
                buf, want = cur.buf, num_messages - len(out)
                if len(buf) <= want:
                    out.extend(buf)
                    buf.clear()
                else:
                    out.extend([buf.popleft() for _ in range(want)])
                continue
            m = nxt()
            if m is None:
                break
            out.append(m)
        return out

    def __iter__(self):
        while not self._closed:
            msg = self.poll(0.1)
            if msg is not None:
                yield msg

    # -- positions
    def _part(self, tp):
        part = self._parts.get((tp.topic, tp.partition))
        if part is None:
            raise KafkaException(KafkaError(KafkaError._STATE, "Local: Erroneous state: %s[%d] is not assigned to this "
                                            "consumer: assign() it first" % (tp.topic, tp.partition)))
        return part

    def seek(self, partition):
        """Move an assigned partition's position.

        :param TopicPartition partition: the partition and its new offset (or a logical one).
        :raises KafkaException: ``_STATE`` if it is not assigned."""
        self._check()
        part = self._part(partition)
        to = self._start_offset(part.log, partition.offset, part.tp, part.retention_ms)  # may raise: nothing moved
        at = part_position(part)
        if at != part.start:  # consumed since reading (re)started: that stays the offset to commit
            part.before = at
        self._cur = None
        part.buf.clear()
        part.eof_sent = False
        self._jump(part, to)
        part.start = part.pos

    def position(self, partitions):
        """:param list partitions: TopicPartitions.
        :returns: them with the next offset to read (OFFSET_INVALID if not assigned).
        :rtype: list"""
        self._check()
        out = []
        for tp in partitions:
            part = self._parts.get((tp.topic, tp.partition))
            off = OFFSET_INVALID if part is None else part_position(part)
            out.append(TopicPartition(tp.topic, tp.partition, off))
        return out

    def pause(self, partitions):
        """Stop reading assigned partitions until :meth:`resume`.

        :param list partitions: TopicPartitions."""
        self._check()
        self._cur = None
        for tp in partitions:
            if (tp.topic, tp.partition) in self._missing:
                self._missing[(tp.topic, tp.partition)][1] = True
            else:
                self._part(tp).paused = True

    def resume(self, partitions):
        """Read paused partitions again.

        :param list partitions: TopicPartitions."""
        self._check()
        for tp in partitions:
            if (tp.topic, tp.partition) in self._missing:
                self._missing[(tp.topic, tp.partition)][1] = False
            else:
                self._part(tp).paused = False

    def consumer_group_metadata(self):
        """:returns: an opaque description of this consumer's group, for ``send_offsets_to_transaction`` (which
            needs a Kafka cluster).
        :rtype: ConsumerGroupMetadata"""
        self._check()
        return ConsumerGroupMetadata(self._group, self.memberid())

    def set_sasl_credentials(self, username, password):
        """SASL authenticates to brokers over a network; one host has none.

        :raises KafkaException: ``_NOT_IMPLEMENTED``, always."""
        self._check()
        raise not_on_one_host("SASL credentials", WHY_SASL)

    def close(self):
        """Commit (with auto-commit), leave the group at once, detach.  Closing again does nothing.

        :rtype: None"""
        if not self._closed:
            cpoll = self.__dict__.get("_cpoll")
            if cpoll is not None:
                cpoll.disable()  # it reads the namespace's mapping, closed below
            if self._slot is not None:
                try:
                    self._leave()
                finally:
                    self._slot = None
            else:
                try:
                    self._commit_leaving(list(self._parts))  # assign()ed: the final auto-commit, as Kafka's clients
                except NamespaceError:
                    pass  # destroyed: nothing to commit to, and close() still lets go of everything
            for key in list(self._parts):
                self._remove(key)
            unregister_client(self)
            if self._lat is not None:
                self._lat.close()
            if self._gs is not None:
                self._gw.release()
                self._gs.close()
            self._nsw.release()
            self._ns.close()
            self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ConsumerGroupMetadata:
    """What ``Consumer.consumer_group_metadata()`` returns.

    :param str group_id: the group. :param str member_id: this member's id, or None."""

    __slots__ = ("group_id", "member_id")

    def __init__(self, group_id, member_id=None):
        self.group_id, self.member_id = group_id, member_id

    def __repr__(self):
        return "ConsumerGroupMetadata(%r, %r)" % (self.group_id, self.member_id)
