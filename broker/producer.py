"""Producer with confluent-kafka's API.  A record is in its partition, and
visible to readers, when produce() returns; delivery reports (callbacks)
are queued and served by poll()/flush(), as librdkafka does."""
import collections
import os
import time
import types

from shm._native import _fastlog

from shm.errors import (ClosedError, KafkaError, KafkaException, MessageTooLargeError, QueueFullError,
                        UnknownTopicError)

from . import config as _config
from . import partitioner as _partitioner
from .admin import cluster_metadata
from .message import OFFSET_INVALID, RecordMetadata, make_message
from .lifecycle import client_check
from .namespace import (MEMBER_PRODUCER, TOPICS_GEN_OFF, Namespace, register_client, unregister_client,
                        unknown_partition)
from .autocreate import WHY_SASL, WHY_TRANSACTIONS, auto_create, client_logger, not_on_one_host
from .stats import Statistics

_POLL_CHUNK = 0.02  # an idle poll(timeout) sleeps in chunks this long: Ctrl-C and other threads' reports wake it


_fork_gen = 0  # bumped in a forked child: cheaper than os.getpid() per call


def _after_fork():
    global _fork_gen
    _fork_gen += 1


os.register_at_fork(after_in_child=_after_fork)


def _as_bytes(x, what):
    if x is None or type(x) is bytes:
        return x
    if isinstance(x, str):
        return x.encode("utf-8")
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    raise TypeError("%s must be str, bytes or None, got %s" % (what, type(x).__name__))


class Producer:
    """A producer with confluent-kafka's API: ``produce()`` appends the record to its partition at once;
    delivery reports (callbacks) run from ``poll()``/``flush()``.

    :param dict config: librdkafka's keys (``partitioner``, ``on_delivery``, ``message.max.bytes``, ...) and
        shmbroker's (``shm.namespace``, ``shm.block.timeout.ms``, ...); keyword arguments are merged in.
    :raises ConfigError: for an unknown key or a bad value.
    """

    DEFAULT_PARTITIONER = "murmur2_random"  # the Java client's placement

    def __init__(self, config=None, **kwargs):
        conf = _config.parse(config, kwargs, "producer")
        self._conf = conf
        self._ns = Namespace(_config.resolve_namespace(conf), mode=conf.get("shm.mode"),
                             pre_touch=conf.get("shm.pre.touch", False))  # (validated to a bool by parse)
        self._partition_for = _partitioner.get(conf.get("partitioner", self.DEFAULT_PARTITIONER))
        self._default_cb = conf.get("on_delivery") or conf.get("dr_msg_cb") or conf.get("dr_cb")
        self._block_timeout = _config.ms_to_s(conf.get("shm.block.timeout.ms", 60000))
        self._max_pending = int(conf.get("queue.buffering.max.messages", 100000))
        self._max_bytes = conf.get("message.max.bytes")  # librdkafka checks key + value against it at produce()
        self._log = client_logger(conf, "producer")
        self._pending = collections.deque()
        self._topics = {}  # name -> (TopicInfo, [PartitionLog])
        self._lean = {}  # name -> (partitions, [PartitionLog]) when no default callback is set
        self._gen = _fork_gen
        self._nsw = memoryview(self._ns.seg.mm).cast("Q")  # the registry generation, read by _refresh_topics
        self._topics_gen = self._nsw[TOPICS_GEN_OFF // 8]
        self._closed = False
        register_client(self, MEMBER_PRODUCER)  # the supervisor repairs our claims if we die
        self._sup_check = client_check(conf, self._ns.name)  # also from waiting appends and flush()
        if self._sup_check is not None:
            self._sup_check()
        self._no_key = conf.get("partitioner", self.DEFAULT_PARTITIONER) in (
            "random", "murmur2_random", "consistent_random", "fnv1a_random")  # a NULL key goes anywhere
        self._stats = Statistics(conf, "producer", self._stats_fields) if Statistics.wanted(conf) else None
        if self._stats is None:  # (statistics count every record: the method below does)
            # produce()'s lean path in C (ext/fastlog.c): (topic, value[, partition=]) of an open
            # topic with no callbacks; everything else comes back to the method below
            self.produce = _fastlog.Produce(self._lean, types.MethodType(type(self).produce, self), self._no_key)

    # -- topics
    def _handle(self, topic):
        h = self._topics.get(topic)
        if h is None:
            if not isinstance(topic, str):
                raise TypeError("topic must be a str, got %s" % type(topic).__name__)
            try:
                info = self._ns.topic(topic)
            except UnknownTopicError:
                info = auto_create(self._ns, topic, self._log)  # auto.create.topics.enable, as a Kafka broker
            logs = [self._ns.open_partition(info, p) for p in range(info.partitions)]
            for log in logs:
                log.block_timeout = self._block_timeout
                log.on_wait = self._sup_check
            h = self._topics[topic] = (info, logs)
            if self._default_cb is None and self._max_bytes is None:
                self._lean[topic] = (info.partitions, tuple(log._fast for log in logs))
        return h

    def _forget(self, topic):
        self._lean.pop(topic, None)
        info, logs = self._topics.pop(topic, (None, ()))
        for log in logs:
            log.close()

    def _refresh_topics(self):
        """Drop the handle of a topic that create_partitions grew, so the
        partitioner spreads over the new count (Kafka's producer sees new
        partitions at its next metadata refresh; here at the next poll(),
        flush() or produce() that is not the lean path)."""
        gen = self._nsw[TOPICS_GEN_OFF // 8]
        if gen != self._topics_gen:
            self._topics_gen = gen
            now = self._ns.topics()
            for t, (info, _) in list(self._topics.items()):
                cur = now.get(t)
                if cur is not None and cur.topic_id == info.topic_id and cur.partitions != info.partitions:
                    self._forget(t)

    def _check(self):
        """:raises ClosedError: (a RuntimeError) if the producer is closed."""
        if self._closed:
            raise ClosedError("Producer has been closed")
        if self._gen != _fork_gen:  # forked: the parent's delivery reports are not ours
            self._pending.clear()
            self._gen = _fork_gen

    def _append(self, topic, value, key, partition, headers, ts_ns):
        """:returns: (partition, offset).

        Append to the chosen partition; one retry if the topic was deleted
        and created again under us.  Returns (partition, offset)."""
        for attempt in (0, 1):
            info, logs = self._handle(topic)
            n = info.partitions
            if partition is None or partition < 0:
                p = self._partition_for(key, n)
            elif partition >= n:
                raise KafkaException(unknown_partition(topic, n, partition))
            else:
                p = partition
            log = logs[p]
            try:
                if key is None and not headers:
                    return p, log.append(value, timestamp_ns=ts_ns)  # the C fast path
                return p, log.append(value, key=key, headers=headers, timestamp_ns=ts_ns)
            except UnknownTopicError:
                self._forget(topic)  # deleted: look it up again once
                if attempt:
                    raise
        raise AssertionError("unreachable")

    # -- confluent-kafka API
    def produce(self, topic, value=None, key=None, partition=-1, on_delivery=None, callback=None, timestamp=0,
                headers=None):
        """Append a record to *topic*; it is readable when this returns.

        :param str topic: the topic (created on first use if the namespace's ``auto.create.topics.enable`` is on).
        :param value: the value (str is UTF-8 encoded, bytes-like, or None).
        :param key: the key (same types); it picks the partition through the ``partitioner``.
        :param int partition: the partition, or -1 for the partitioner's choice.
        :param on_delivery: ``cb(err, msg)`` run from ``poll()``/``flush()`` (alias *callback*).
        :param int timestamp: CreateTime in epoch ms (0: now).
        :param headers: a list of (str, bytes|str|None) pairs or a dict.
        :raises BufferError: (QueueFullError) if ``queue.buffering.max.messages`` reports wait, or a ``block``
            partition stayed full for ``shm.block.timeout.ms``.
        :raises KafkaException: MessageTooLargeError, an unknown partition, ...
        """
        self._check()
        self._refresh_topics()
        value = _as_bytes(value, "value")
        key = _as_bytes(key, "key")
        if self._max_bytes is not None and len(value or b"") + len(key or b"") > self._max_bytes:
            raise MessageTooLargeError("a record of %d bytes (key and value) is over this producer's "
                                       "message.max.bytes=%d: raise it or send smaller records"
                                       % (len(value or b"") + len(key or b""), self._max_bytes))
        cb = on_delivery or callback or self._default_cb
        if cb is not None and len(self._pending) >= self._max_pending:
            raise QueueFullError("%d delivery reports are waiting: call poll() or flush() to serve them "
                                 "(queue.buffering.max.messages)" % len(self._pending))
        t0 = time.monotonic_ns()
        ts_ns = int(timestamp) * 1_000_000 if timestamp else time.time_ns()
        if partition is not None and partition >= 0 and self._unknown_partition(topic, partition):
            if cb is not None:  # librdkafka: a record queued before the topic's metadata came fails in its report
                err = unknown_partition(topic, self._topics[topic][0].partitions, partition)
                self._pending.append((cb, make_message(topic, partition, OFFSET_INVALID, key, value, headers, err,
                                                       ts_ns, (time.monotonic_ns() - t0) / 1e9)))
            return
        p, off = self._append(topic, value, key, partition, headers, ts_ns)
        if self._stats is not None:
            self._stats.count_tx(len(value or b"") + len(key or b""))
        if cb is not None:
            msg = make_message(topic, p, off, key, value, headers, None, ts_ns, (time.monotonic_ns() - t0) / 1e9)
            self._pending.append((cb, msg))

    def _unknown_partition(self, topic, partition):
        """Whether *partition* is past *topic*'s partitions, as librdkafka's producer sees it: for a topic this
        producer already knows (its metadata came), produce() raises ``_UNKNOWN_PARTITION``; the first record
        to a topic new to it goes through, as librdkafka queues it until the metadata comes, and then fails in
        its delivery report (returns True).

        :raises KafkaException: ``_UNKNOWN_PARTITION`` for a known topic."""
        known = topic in self._topics
        n = self._handle(topic)[0].partitions
        if partition < n:
            return False
        if known:
            raise KafkaException(unknown_partition(topic, n, partition))
        return True

    def _serve(self):
        """Run the queued delivery callbacks (and the statistics callback when due).

        :returns: how many ran."""
        if self._stats is not None:
            self._stats.emit()
        n = 0
        pending = self._pending
        while pending:
            cb, msg = pending.popleft()
            cb(msg[6], msg)  # the record's error: None, or why it was not appended
            n += 1
        return n

    def _stats_fields(self, doc):
        """The producer's part of the statistics document (see broker.stats)."""
        doc["msg_cnt"] = len(self._pending)  # reports waiting for poll(): librdkafka's queued messages
        doc["msg_max"] = self._max_pending
        doc["msg_size_max"] = self._max_bytes or 0
        doc["topics"] = {t: {"topic": t, "age": 0, "metadata_age": 0, "batchsize": {}, "batchcnt": {},
                             "partitions": {str(p): {"partition": p, "broker": 0, "leader": 0, "desired": False,
                                                     "unknown": False} for p in range(info.partitions)}}
                         for t, (info, _) in self._topics.items()}

    def poll(self, timeout=-1):
        """Serve queued delivery reports.  With none queued, wait up to *timeout* for one (another thread's
        produce() may queue it), as librdkafka's poll does; Ctrl-C interrupts the wait.

        :param float timeout: seconds to wait when idle (-1 or None: until a report comes; 0: never).
        :returns: the number of callbacks served.
        :rtype: int
        """
        self._check()
        self._refresh_topics()
        n = self._serve()
        if n or timeout == 0:
            return n
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        while not self._pending:
            left = _POLL_CHUNK if deadline is None else min(_POLL_CHUNK, deadline - time.monotonic())
            if left <= 0:
                return 0
            if self._stats is not None:
                left = min(left, self._stats.left())
                if self._stats.emit():
                    continue
            time.sleep(left)
            self._check()
        return self._serve()

    def flush(self, timeout=-1):
        """Serve every delivery report (records are delivered when produce() returns: nothing else to wait for).

        :param float timeout: unused: flush never waits.
        :returns: the number of reports still queued (0).
        :rtype: int
        """
        self._check()
        if self._sup_check is not None:
            self._sup_check()
        self._refresh_topics()
        self._serve()
        return len(self._pending)

    def __len__(self):
        return len(self._pending)

    def __bool__(self):
        return True  # a producer is true even with no report queued (len() is 0)

    def list_topics(self, topic=None, timeout=-1):
        """:param str topic: one topic, or None for all. :param float timeout: unused.
        :returns: the namespace's :class:`ClusterMetadata`."""
        self._check()
        return cluster_metadata(self._ns, topic)

    def purge(self, in_queue=True, in_flight=True, blocking=True):
        """librdkafka's purge of undelivered records: every record here is in its partition when produce()
        returns, so there is nothing to purge; queued delivery reports stay.

        :param bool in_queue: unused. :param bool in_flight: unused. :param bool blocking: unused."""
        self._check()

    def produce_batch(self, topic, messages, partition=-1, callback=None, on_delivery=None):
        """Produce a list of records, each a dict with optional ``value``, ``key``, ``partition``, ``headers``
        and ``callback``; as confluent-kafka's, a record that fails gets an ``'_error'`` entry (a
        :class:`KafkaError`) in its dict and the others go on.

        :param str topic: the topic. :param list messages: the records.
        :param int partition: the partition of every record (-1: the partitioner's choice).  As in
            confluent-kafka 2.15 (librdkafka's batch call without ``RD_KAFKA_MSG_F_PARTITION``), a record's own
            ``partition`` is type-checked but not used: produce() it alone to pick its partition.
        :param callback: the default delivery callback (alias *on_delivery*).
        :returns: the number of records appended.
        :rtype: int
        :raises TypeError: if *messages* is not a list of dicts or a field has the wrong type (nothing is sent).
        :raises NotImplementedError: for a ``timestamp`` field, as confluent-kafka's batch mode.
        """
        if not isinstance(topic, str):
            raise TypeError("topic must be a str, got %s" % type(topic).__name__)
        if not isinstance(messages, list):
            raise TypeError("messages must be a list")
        if type(partition) is not int:
            raise TypeError("partition must be an int, got %s" % type(partition).__name__)
        if not messages:
            return 0
        self._check()
        default_cb = callback or on_delivery
        for i, m in enumerate(messages):  # all checked before any is sent
            if not isinstance(m, dict):
                raise TypeError("Message at index %d must be a dict" % i)
            for f in ("value", "key"):
                v = m.get(f)
                if v is not None and not isinstance(v, (bytes, str)):
                    raise TypeError("Message %s at index %d must be bytes or str, got %s" % (f, i, type(v).__name__))
            p = m.get("partition")
            if p is not None and type(p) is not int:
                raise TypeError("Message partition at index %d must be int" % i)
            if m.get("timestamp") is not None:
                raise NotImplementedError("Message timestamps are not currently supported in batch mode: "
                                          "use produce(..., timestamp=) for record %d" % i)
        good = 0
        for m in messages:
            try:  # a record's own 'partition' is checked above but, as librdkafka's batch call, the batch's applies
                self.produce(topic, m.get("value"), m.get("key"), partition,
                             on_delivery=m.get("callback") or default_cb, headers=m.get("headers"))
            except (KafkaException, BufferError) as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else KafkaError(
                    KafkaError._QUEUE_FULL if isinstance(exc, BufferError) else KafkaError._FAIL, str(exc))
                m["_error"] = KafkaError(err.code(), "Message failed: %s" % err.str())
            else:
                good += 1
        return good

    # -- what needs a Kafka cluster
    def init_transactions(self, timeout=-1):
        """Transactions need a Kafka cluster.

        :raises KafkaException: ``_NOT_IMPLEMENTED``, always."""
        self._check()
        raise not_on_one_host("Transactions", WHY_TRANSACTIONS)

    def begin_transaction(self):
        """Transactions need a Kafka cluster.

        :raises KafkaException: ``_NOT_IMPLEMENTED``, always."""
        self._check()
        raise not_on_one_host("Transactions", WHY_TRANSACTIONS)

    def send_offsets_to_transaction(self, positions, group_metadata, timeout=-1):
        """Transactions need a Kafka cluster.

        :raises KafkaException: ``_NOT_IMPLEMENTED``, always."""
        self._check()
        raise not_on_one_host("Transactions", WHY_TRANSACTIONS)

    def commit_transaction(self, timeout=-1):
        """Transactions need a Kafka cluster.

        :raises KafkaException: ``_NOT_IMPLEMENTED``, always."""
        self._check()
        raise not_on_one_host("Transactions", WHY_TRANSACTIONS)

    def abort_transaction(self, timeout=-1):
        """Transactions need a Kafka cluster.

        :raises KafkaException: ``_NOT_IMPLEMENTED``, always."""
        self._check()
        raise not_on_one_host("Transactions", WHY_TRANSACTIONS)

    def set_sasl_credentials(self, username, password):
        """SASL authenticates to brokers over a network; one host has none.

        :raises KafkaException: ``_NOT_IMPLEMENTED``, always."""
        self._check()
        raise not_on_one_host("SASL credentials", WHY_SASL)

    # -- native extras
    def send(self, topic, value, key=None, partition=None, headers=None, timestamp_ns=None):
        """Native extra: append one record, no callback.

        :param str topic: the topic. :param value: the value. :param key: the key.
        :param int partition: the partition (None: the partitioner's). :param headers: the headers.
        :param int timestamp_ns: epoch ns (None: now).
        :returns: its RecordMetadata (topic, partition, offset, timestamp_ns)."""
        self._check()
        value, key = _as_bytes(value, "value"), _as_bytes(key, "key")
        ts = timestamp_ns if timestamp_ns is not None else time.time_ns()
        p, off = self._append(topic, value, key, partition, headers, ts)
        if self._stats is not None:
            self._stats.count_tx(len(value or b"") + len(key or b""))
        return RecordMetadata(topic, p, off, ts)

    def send_batch(self, topic, values, partition):
        """Native extra: append a batch to one partition with consecutive offsets.

        :param str topic: the topic. :param values: bytes-likes, or a 2-D uint8 array (one row a record).
        :param int partition: the partition.
        :returns: the first offset.
        :rtype: int"""
        self._check()
        info, logs = self._handle(topic)
        if not isinstance(partition, int) or not 0 <= partition < info.partitions:
            raise KafkaException(unknown_partition(topic, info.partitions, partition))
        return logs[partition].append_batch(values)

    def close(self, timeout=-1):
        """Serve the queued delivery reports and detach (again: nothing happens).

        :returns: True.
        :rtype: bool"""
        if not self._closed:
            self.flush()
            for t in list(self._topics):
                self._forget(t)
            unregister_client(self)
            self._nsw.release()
            self._ns.close()
            self._closed = True
            self.__dict__.pop("produce", None)
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
