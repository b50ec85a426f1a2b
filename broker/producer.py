"""Producer with confluent-kafka's API.  A record is in its partition, and
visible to readers, when produce() returns; delivery reports (callbacks)
are queued and served by poll()/flush(), as librdkafka does."""
import collections
import os
import time
import types

from shm._native import _fastlog

from shm.errors import ClosedError, KafkaException, QueueFullError, UnknownTopicError

from . import config as _config
from . import partitioner as _partitioner
from .admin import cluster_metadata
from .message import Message, RecordMetadata
from .lifecycle import client_check
from .namespace import (MEMBER_PRODUCER, TOPICS_GEN_OFF, Namespace, register_client, unregister_client,
                        unknown_partition)


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
    DEFAULT_PARTITIONER = "murmur2_random"  # the Java client's placement

    def __init__(self, config=None, **kwargs):
        conf = _config.parse(config, kwargs, "producer")
        self._conf = conf
        self._ns = Namespace(_config.resolve_namespace(conf), mode=conf.get("shm.mode"))
        self._partition_for = _partitioner.get(conf.get("partitioner", self.DEFAULT_PARTITIONER))
        self._default_cb = conf.get("on_delivery") or conf.get("dr_msg_cb") or conf.get("dr_cb")
        self._block_timeout = _config.ms_to_s(conf.get("shm.block.timeout.ms", 60000))
        self._max_pending = int(conf.get("queue.buffering.max.messages", 100000))
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
        # produce()'s lean path in C (ext/fastlog.c): (topic, value[, partition=]) of an open
        # topic with no callbacks; everything else comes back to the method below
        self.produce = _fastlog.Produce(self._lean, types.MethodType(type(self).produce, self), self._no_key)

    # -- topics
    def _handle(self, topic):
        h = self._topics.get(topic)
        if h is None:
            if not isinstance(topic, str):
                raise TypeError("topic must be a str, got %s" % type(topic).__name__)
            info = self._ns.topic(topic)
            logs = [self._ns.open_partition(info, p) for p in range(info.partitions)]
            for log in logs:
                log.block_timeout = self._block_timeout
                log.on_wait = self._sup_check
            h = self._topics[topic] = (info, logs)
            if self._default_cb is None:
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
        if self._closed:
            raise ClosedError("this Producer is closed: create a new one")
        if self._gen != _fork_gen:  # forked: the parent's delivery reports are not ours
            self._pending.clear()
            self._gen = _fork_gen

    def _append(self, topic, value, key, partition, headers, ts_ns):
        """Append to the chosen partition; one retry if the topic was deleted
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
        self._check()
        self._refresh_topics()
        value = _as_bytes(value, "value")
        key = _as_bytes(key, "key")
        cb = on_delivery or callback or self._default_cb
        if cb is not None and len(self._pending) >= self._max_pending:
            raise QueueFullError("%d delivery reports are waiting: call poll() or flush() to serve them "
                                 "(queue.buffering.max.messages)" % len(self._pending))
        t0 = time.monotonic_ns()
        ts_ns = int(timestamp) * 1_000_000 if timestamp else time.time_ns()
        p, off = self._append(topic, value, key, partition, headers, ts_ns)
        if cb is not None:
            msg = Message(topic, p, off, key, value, headers, None, ts_ns, (time.monotonic_ns() - t0) / 1e9)
            self._pending.append((cb, msg))

    def poll(self, timeout=-1):
        """Serve queued delivery reports; returns how many.  Delivery is
        synchronous here, so nothing new arrives while waiting: it never
        sleeps."""
        self._check()
        self._refresh_topics()
        n = 0
        pending = self._pending
        while pending:
            cb, msg = pending.popleft()
            cb(None, msg)
            n += 1
        return n

    def flush(self, timeout=-1):
        """Serve every delivery report; returns the number still queued (0)."""
        if self._sup_check is not None:
            self._sup_check()
        self.poll(0)
        return len(self._pending)

    def __len__(self):
        return len(self._pending)

    def list_topics(self, topic=None, timeout=-1):
        self._check()
        return cluster_metadata(self._ns, topic)

    def purge(self, in_queue=True, in_flight=True, blocking=True):
        self._pending.clear()

    # -- native extras
    def send(self, topic, value, key=None, partition=None, headers=None, timestamp_ns=None):
        """Append one record and return its RecordMetadata (no callback)."""
        self._check()
        value, key = _as_bytes(value, "value"), _as_bytes(key, "key")
        ts = timestamp_ns if timestamp_ns is not None else time.time_ns()
        p, off = self._append(topic, value, key, partition, headers, ts)
        return RecordMetadata(topic, p, off, ts)

    def send_batch(self, topic, values, partition):
        """Append a batch (bytes-likes or a 2-D uint8 array, one row a
        record) to one partition with consecutive offsets; the first."""
        self._check()
        info, logs = self._handle(topic)
        if not isinstance(partition, int) or not 0 <= partition < info.partitions:
            raise KafkaException(unknown_partition(topic, info.partitions, partition))
        return logs[partition].append_batch(values)

    def close(self, timeout=-1):
        if not self._closed:
            self.flush()
            for t in list(self._topics):
                self._forget(t)
            unregister_client(self)
            self._nsw.release()
            self._ns.close()
            self._closed = True
            self.__dict__.pop("produce", None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
