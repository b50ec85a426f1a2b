"""librdkafka's statistics callback (``stats_cb`` with ``statistics.interval.ms`` > 0) for the clients.

librdkafka emits a JSON document every ``statistics.interval.ms``, served to ``stats_cb`` from ``poll()``
(the consumer's ``poll()``/``consume()``, the producer's ``poll()``/``flush()``).  The document here has
librdkafka's top-level fields (``name``, ``client_id``, ``type``, ``ts``, ``time``, ``age``, ``replyq``,
``msg_cnt``, ``msg_size``, ``msg_max``, ``msg_size_max``, ``simple_cnt``, ``metadata_cache_cnt``, ``tx``,
``tx_bytes``, ``rx``, ``rx_bytes``, ``txmsgs``, ``txmsg_bytes``, ``rxmsgs``, ``rxmsg_bytes``) filled with
what one host knows: no request crosses a network, so the request counters are 0 and ``brokers`` is empty;
``topics`` lists the client's topics and partitions (a consumer's positions, watermarks and lag), and a group
member has ``cgrp``.  Parsers written for librdkafka's document find the same keys; see librdkafka's
STATISTICS.md for their meaning."""
import itertools
import json
import time

from shm.errors import KafkaException

from .membership import part_position

_instances = itertools.count(1)  # librdkafka numbers its handles per process: rdkafka#producer-1, -2, ...


class Statistics:
    """The statistics of one client: :meth:`due` says when to emit, :meth:`emit` calls ``stats_cb``.

    :param dict conf: the client's parsed config (``stats_cb``, ``statistics.interval.ms``, ``client.id``).
    :param str kind: ``"producer"`` or ``"consumer"``.
    :param collect: ``collect(doc)`` adds the client's own fields to the document (a dict) before it is sent.
    """

    def __init__(self, conf, kind, collect):
        self._cb = conf["stats_cb"]
        self._interval = int(conf["statistics.interval.ms"]) / 1000.0
        self._kind = kind
        self._collect = collect
        self.client_id = conf.get("client.id", "rdkafka")
        self.name = "%s#%s-%d" % (self.client_id, kind, next(_instances))
        self._born = time.monotonic()
        self._next = self._born + self._interval
        self.txmsgs = self.txmsg_bytes = self.rxmsgs = self.rxmsg_bytes = 0

    @staticmethod
    def wanted(conf):
        """:param dict conf: a client's parsed config.
        :returns: True if it asks for statistics (a ``stats_cb`` and ``statistics.interval.ms`` > 0).
        :rtype: bool"""
        return conf.get("stats_cb") is not None and int(conf.get("statistics.interval.ms", 0) or 0) > 0

    def left(self):
        """:returns: seconds until the next document is due (0 if it is).
        :rtype: float"""
        return max(0.0, self._next - time.monotonic())

    def count_tx(self, nbytes):
        """Count one record produced of *nbytes* (key and value)."""
        self.txmsgs += 1
        self.txmsg_bytes += nbytes

    def count_rx(self, msg):
        """Count one message handed to the application (events are not counted)."""
        if msg is not None and msg.error() is None:
            self.rxmsgs += 1
            self.rxmsg_bytes += len(msg.value() or b"") + len(msg.key() or b"")

    def document(self):
        """:returns: the statistics document, as a dict (what :meth:`emit` sends as JSON).
        :rtype: dict"""
        now = time.monotonic()
        doc = {"name": self.name, "client_id": self.client_id, "type": self._kind,
               "ts": int(now * 1e6), "time": int(time.time()), "age": int((now - self._born) * 1e6),
               "replyq": 0, "msg_cnt": 0, "msg_size": 0, "msg_max": 0, "msg_size_max": 0, "simple_cnt": 0,
               "metadata_cache_cnt": 0, "brokers": {}, "topics": {},
               "tx": 0, "tx_bytes": 0, "rx": 0, "rx_bytes": 0,
               "txmsgs": self.txmsgs, "txmsg_bytes": self.txmsg_bytes,
               "rxmsgs": self.rxmsgs, "rxmsg_bytes": self.rxmsg_bytes}
        self._collect(doc)
        return doc

    def emit(self):
        """Call ``stats_cb`` with the document (a JSON str) if one is due; an exception of the callback
        propagates to the poll that served it, as confluent-kafka's does.

        :returns: True if it was called.
        :rtype: bool"""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next += self._interval
        if self._next <= now:  # a slow poller gets one document, not a backlog
            self._next = now + self._interval
        self._cb(json.dumps(self.document()))
        return True


def attach_consumer(consumer, conf):
    """Give *consumer* statistics: its ``poll()`` and ``consume()`` become wrappers (instance attributes, so a
    consumer without statistics keeps the plain methods) that wait in steps no longer than the time to the next
    document and call ``stats_cb`` when one is due.

    :param consumer: a broker.consumer.Consumer. :param dict conf: its parsed config."""
    st = Statistics(conf, "consumer", lambda doc: _consumer_fields(consumer, doc))
    cls = type(consumer)

    def poll(timeout=None):
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        while True:
            st.emit()
            left = st.left() if deadline is None else min(st.left(), max(0.0, deadline - time.monotonic()))
            msg = cls.poll(consumer, left)
            if msg is not None:
                st.count_rx(msg)
                return msg
            if deadline is not None and time.monotonic() >= deadline:
                st.emit()
                return None

    def consume(num_messages=1, timeout=-1):
        out = cls.consume(consumer, num_messages, timeout)  # its first message came through poll() above
        for msg in out[1:]:
            st.count_rx(msg)
        return out

    consumer.poll, consumer.consume, consumer._stats = poll, consume, st


def _consumer_fields(c, doc):
    """The consumer's part of the statistics document: per assigned partition its position, watermarks and
    lag (librdkafka's ``topics.<t>.partitions.<p>`` keys), and ``cgrp`` for a group member."""
    if c._closed:
        return
    topics = doc["topics"]
    fetchq = 0
    for t, p in c._assigned_keys():
        part = c._parts.get((t, p))
        entry = {"partition": p, "broker": 0 if part else -1, "leader": 0 if part else -1, "desired": True,
                 "unknown": part is None, "fetch_state": "active" if part and not part.paused else
                 ("stopped" if part is None else "paused"), "next_offset": -1001, "app_offset": -1001,
                 "committed_offset": -1001, "lo_offset": -1, "hi_offset": -1, "consumer_lag": -1,
                 "fetchq_cnt": 0, "txmsgs": 0, "rxmsgs": 0}
        if part is not None:
            pos = part_position(part)
            lo, hi = c.get_watermark_offsets(part.tp)
            entry.update(next_offset=pos, app_offset=pos, lo_offset=lo, hi_offset=hi,
                         consumer_lag=max(0, hi - pos), fetchq_cnt=len(part.buf))
            fetchq += len(part.buf)
            if c._group is not None:
                try:
                    entry["committed_offset"] = c.committed([part.tp])[0].offset
                except KafkaException:  # the group is gone (deleted): nothing committed to show
                    pass
        tentry = topics.setdefault(t, {"topic": t, "age": 0, "metadata_age": 0, "batchsize": {}, "batchcnt": {},
                                       "partitions": {}})
        tentry["partitions"][str(p)] = entry
    doc["msg_cnt"] = fetchq  # records fetched and not yet handed out
    if c._group is not None:
        doc["cgrp"] = {"state": "up", "stateage": 0, "join_state": "steady" if c._slot is not None else "init",
                       "rebalance_age": 0, "rebalance_cnt": 0, "rebalance_reason": "",
                       "assignment_size": len(c._assigned_keys())}
