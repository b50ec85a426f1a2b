"""The partitions a Consumer reads: its assignment (assign, incremental_assign/unassign, assignment), each
partition opened where reading starts (the offset asked for, the group's committed one, or auto.offset.reset),
the partitions assigned before their topic exists started once it does, and laps counted.  A mixin of
broker.consumer.Consumer, which owns the state (``_parts``, ``_order``, ``_missing``, ``_block``) and reads
them (poll, consume)."""
from shm._native import _fastlog
from shm.errors import KafkaError, KafkaException, UnknownTopicError

from .admin import log_start
from .message import OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, OFFSET_STORED, TopicPartition, event
from .namespace import unknown_partition

# one assigned partition: tp, log, pos, paused, eof_sent, stopped, buf (its fetched batch), retention_ms, start
# (where reading (re)started: a commit of it commits nothing consumed), and fast/topic/partition (log._fast,
# tp.topic, tp.partition); a C struct (ext/fastpart.c), so poll()'s lean path reads and moves it directly
_Part = _fastlog.Part


class Assignment:
    """Consumer methods that change which partitions it reads, and where each starts."""

    def _start_offset(self, log, offset, tp, retention_ms=-1):
        lo, hi = log_start(log, retention_ms), log.watermarks()[1]
        if offset == OFFSET_BEGINNING:
            return lo
        if offset == OFFSET_END:
            return hi
        if offset in (OFFSET_STORED, OFFSET_INVALID):  # the group's committed offset, else auto.offset.reset
            c = self._committed_offset(tp) if self._group is not None else None
            if c is None:
                return self._reset_to(log, tp, None, retention_ms)
            if c < lo:  # overwritten since (lapped): as if out of range
                return self._reset_to(log, tp, c, retention_ms, lapped=True)
            return min(c, hi) if c > hi else c
        if offset < 0:
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "invalid offset %d for %s" % (offset, tp)))
        return offset  # out of range is handled on read, by auto.offset.reset

    def _reset_to(self, log, tp, at, retention_ms=-1, lapped=False):
        """auto.offset.reset: where to go when *at* is not available (None:
        reset=error, an _AUTO_OFFSET_RESET event is queued).  *lapped*: *at*
        was overwritten, so the records skipped from it are counted as lost."""
        lo, hi = log_start(log, retention_ms), log.watermarks()[1]
        if self._reset == "error":
            self._events.append(event(tp.topic, tp.partition, at, KafkaError(
                KafkaError._AUTO_OFFSET_RESET, "offset %s of %s[%d] is %s (the partition holds [%d, %d)) and "
                "auto.offset.reset=error: seek() to resume" % (at, tp.topic, tp.partition, "overwritten" if lapped
                                                                 else "out of range", lo, hi))))
            return None
        if self._reset == "earliest":
            pos = max(lo, at + 1) if at is not None and at >= lo else lo
        else:
            pos = hi
        if lapped and at is not None and pos > at:
            self._count_lap(tp, pos - at)
        return pos

    def _count_lap(self, tp, lost):
        """Records lost to a lap: in our stats() and, for a group, in the
        namespace (`shmbroker stat`, per group and partition)."""
        st = self._laps.setdefault((tp.topic, tp.partition), [0, 0])
        st[0] += lost
        st[1] += 1
        if self._group is not None:
            info = self._topics.get(tp.topic) or self._ns.topic(tp.topic)
            self._groups().count_lap(self._gidx, info.topic_id, tp.partition, lost)

    def _add(self, tp):
        self._add_part(tp)
        self._set_solo()

    def _add_part(self, tp):
        key = (tp.topic, tp.partition)
        if key in self._parts or key in self._missing:
            return
        try:
            info = self._topic_info(tp.topic)
        except UnknownTopicError as exc:
            self._events.append(event(tp.topic, tp.partition, None, exc.args[0]))
            self._missing[key] = [tp.offset, False]
            return
        if not 0 <= tp.partition < info.partitions:
            self._events.append(event(tp.topic, tp.partition, None,
                                      unknown_partition(tp.topic, info.partitions, tp.partition)))
            self._missing[key] = [tp.offset, False]
            return
        log = self._ns.open_partition(info, tp.partition)
        log.on_wait = self._sup_check
        part = _Part(TopicPartition(tp.topic, tp.partition), log, 0, info.retention_ms)
        if self._zero_copy and info.overflow == "block":  # values as views of the ring (README: shm.zero.copy)
            # the group holds the floor from now (an entry never committed counts as 0): no other group's
            # commit lets producers reuse a record we hold a view of
            self._groups().commit_entry(self._gidx, info.topic_id, tp.partition)
            log._fast.set_view_base(log.view_base(), self._check_crcs)
        self._jump(part, self._start_offset(log, tp.offset, part.tp, info.retention_ms))
        part.start = part.pos
        if self._lat is not None:
            self._lat.attach(part, info)  # shm.latency.histogram
        self._parts[key] = part
        self._order.append(key)
        if info.overflow == "block" and self._paced():
            part.pace = True
            self._block.append(part)

    def _promote(self):
        """Start reading the assigned partitions that did not exist, once they do (a topic created, a
        partition added: the namespace's topic generation moved)."""
        gen = self._ns.topics_generation()
        if gen == self._missing_gen:
            return
        self._missing_gen = gen
        topics = self._ns.topics()
        for (t, p), (offset, paused) in list(self._missing.items()):
            info = topics.get(t)
            if info is not None and p < info.partitions:
                del self._missing[(t, p)]
                self._add(TopicPartition(t, p, offset))
                if (t, p) in self._parts:
                    self._parts[(t, p)].paused = paused

    def _remove(self, key):
        self._missing.pop(key, None)
        part = self._parts.pop(key, None)
        self._cur = None
        self._waiter = None
        if part is not None:
            self._order.remove(key)
            if part in self._block:
                self._block.remove(part)
            part.log.close()
        self._set_solo()

    def _set_solo(self):
        """poll()'s shortcut: the part when the assignment is one partition that is read (nothing missing)
        without retention.ms; else None.  Kept by _add and _remove, the only changes of the assignment."""
        part = self._parts[self._order[0]] if len(self._order) == 1 and not self._missing else None
        self._solo = None if part is None or part.retention_ms >= 0 else part
        self._lean_sync()

    def assign(self, partitions):
        """Replace the assignment (manual: no group rebalancing).

        :param list partitions: TopicPartitions; each offset is where to start (OFFSET_STORED/INVALID: the
            committed offset, else auto.offset.reset)."""
        self._check()
        self._commit_leaving(list(self._parts))
        for key in list(self._parts) + list(self._missing):
            self._remove(key)
        for tp in partitions:
            self._add(tp)

    def incremental_assign(self, partitions):
        """Add partitions to the assignment.

        :param list partitions: TopicPartitions, offsets as in :meth:`assign`."""
        self._check()
        for tp in partitions:
            self._add(tp)

    def incremental_unassign(self, partitions):
        """Remove partitions from the assignment.

        :param list partitions: TopicPartitions."""
        self._check()
        self._commit_leaving([(tp.topic, tp.partition) for tp in partitions])
        for tp in partitions:
            self._remove((tp.topic, tp.partition))

    def unassign(self):
        """Drop the whole assignment.

        :raises RuntimeError: if the consumer is closed."""
        self.assign([])

    def assignment(self):
        """:returns: the assigned TopicPartitions, those whose topic or partition does not exist yet included
            (as librdkafka's).
        :rtype: list"""
        self._check()
        return [TopicPartition(t, p) for t, p in self._assigned_keys()]

    def _assigned_keys(self):
        """:returns: the (topic, partition) keys of the assignment: read ones, then missing ones."""
        return self._order + list(self._missing) if self._missing else self._order
