"""Message, TopicPartition and the offset constants, shaped as
confluent-kafka's so code moves between the two with an import change."""
import functools
import time

from shm._native import _fastlog
from shm.errors import KafkaError

OFFSET_BEGINNING = -2
OFFSET_END = -1
OFFSET_STORED = -1000
OFFSET_INVALID = -1001
TIMESTAMP_NOT_AVAILABLE = 0
TIMESTAMP_CREATE_TIME = 1
TIMESTAMP_LOG_APPEND_TIME = 2


@functools.total_ordering
class TopicPartition:
    """A topic partition and an offset.  Equality, order and hash use topic and partition only, as
    confluent-kafka's do.

    :param str topic: the topic.
    :param int partition: the partition (-1: none).
    :param int offset: an offset, or one of the logical offsets ``OFFSET_BEGINNING`` (-2), ``OFFSET_END`` (-1),
        ``OFFSET_STORED`` (-1000: the group's committed offset) and ``OFFSET_INVALID`` (-1001, the default).
    :param str metadata: commit metadata.
    :param int leader_epoch: the leader epoch (one host: None).

    Attributes ``topic``, ``partition``, ``offset``, ``metadata``, ``leader_epoch`` and ``error`` (the
    partition's KafkaError in a result, else None).
    """

    def __init__(self, topic, partition=-1, offset=OFFSET_INVALID, metadata=None, leader_epoch=None):
        if not isinstance(topic, str):
            raise TypeError("topic must be a str, got %s" % type(topic).__name__)
        self.topic = topic
        self.partition = int(partition)
        self.offset = int(offset)
        self.metadata = metadata
        self.leader_epoch = leader_epoch
        self.error = None

    def _key(self):
        """:returns: (topic, partition): what equality, order and hash use."""
        return (self.topic, self.partition)

    def __eq__(self, other):
        if not isinstance(other, TopicPartition):
            return NotImplemented
        return self._key() == other._key()

    def __lt__(self, other):
        if not isinstance(other, TopicPartition):
            return NotImplemented
        return self._key() < other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return "TopicPartition{topic=%s,partition=%d,offset=%d,leader_epoch=%s,error=%s}" % (
            self.topic, self.partition, self.offset, self.leader_epoch, self.error)

    __str__ = __repr__


def _need_message(obj):
    if not isinstance(obj, Message):
        raise TypeError("descriptor needs a Message, got %s" % type(obj).__name__)


def _set(msg, i, v):
    """Override field *i* of *msg* with *v* (the tuple itself is immutable)."""
    _need_message(msg)
    ov = msg[9]
    if ov is None:
        ov = {}
        _fastlog.set_overrides(msg, ov)
    ov[i] = v


class Message(_fastlog.MessageBase):
    """A consumed record, a delivery report, or an event (``error()`` set).

    ``Message(topic, partition, offset, key, value, headers, error, timestamp, latency, leader_epoch,
    delivery_count)``, every argument optional, as confluent-kafka's (for tests and mocks): *timestamp* is a
    ``(type, epoch ms)`` tuple, negative partition, offset, latency and leader_epoch mean "none".

    :param str topic: the topic. :param int partition: the partition. :param int offset: the offset.

    Inside it is a tuple (topic, partition, offset, key, value, headers, error, timestamp, latency, overrides)
    that the consumer builds without running Python code (timestamp: epoch ns from a partition, 0 for an
    event, None or a ``(type, ms)`` tuple for a Message made by hand); the ``set_*`` methods keep an override
    in a dict in the last item ({field index: value}; 9: leader_epoch, 10: delivery_count).  No instance
    dict: nothing else is set on a Message, as on confluent-kafka's.
    Messages compare equal field by field (latency aside), are not ordered, not hashable, and pickle.
    """

    __slots__ = ()

    def __new__(cls, topic=None, partition=None, offset=None, key=None, value=None, headers=None, error=None,
                timestamp=None, latency=None, leader_epoch=None, delivery_count=None):
        if timestamp is not None:
            if not isinstance(timestamp, tuple) or len(timestamp) != 2:
                raise TypeError("timestamp must be a tuple of (int, int): (timestamp type, epoch ms), got %r"
                                % (timestamp,))
            timestamp = (int(timestamp[0]), int(timestamp[1]))
        if type(partition) is int and partition < 0:
            partition = None
        if type(offset) is int and offset < 0:
            offset = None
        if latency is not None and latency < 0:
            latency = None
        m = tuple.__new__(cls, (topic, partition, offset, key, value, headers, error, timestamp, latency, None))
        if (leader_epoch is not None and leader_epoch >= 0) or (delivery_count is not None and delivery_count > 0):
            _fastlog.set_overrides(m, {9: leader_epoch if leader_epoch is not None and leader_epoch >= 0 else None,
                                       10: delivery_count if delivery_count is not None and delivery_count > 0
                                       else None})
        return m

    def __init__(self, *args, **kwargs):
        """Fields are set by ``__new__`` (a tuple); this only checks the type, as confluent-kafka does.

        :raises TypeError: if *self* is not a Message."""
        _need_message(self)

    def _get(self, i):
        """:returns: field *i*, or the value a ``set_*`` method gave it."""
        ov = self[9]
        if i > 8:
            return None if ov is None else ov.get(i)
        return self[i] if ov is None or i not in ov else ov[i]

    def timestamp(self):
        """:returns: ``(TIMESTAMP_CREATE_TIME, epoch ms)`` for a record; ``(TIMESTAMP_NOT_AVAILABLE, -1)`` for
            an event; ``(TIMESTAMP_NOT_AVAILABLE, 0)`` for a Message made without one; a Message made by hand
            keeps the type it was given (``TIMESTAMP_LOG_APPEND_TIME`` too).
        :rtype: (int, int)"""
        ts = self[7]
        if ts:
            return (TIMESTAMP_CREATE_TIME, ts // 1_000_000) if type(ts) is int else ts
        return (TIMESTAMP_NOT_AVAILABLE, -1) if ts == 0 else (TIMESTAMP_NOT_AVAILABLE, 0)

    def timestamp_ns(self):
        """Native extra: the producer's timestamp in epoch nanoseconds (0 if none).

        :rtype: int"""
        ts = self[7]
        if type(ts) is int:
            return ts
        if ts is None or ts[0] == TIMESTAMP_NOT_AVAILABLE:
            return 0
        return ts[1] * 1_000_000

    def leader_epoch(self):
        """:returns: the partition leader's epoch (one host has no leaders: None unless given).
        :rtype: int"""
        _need_message(self)
        return self._get(9)

    def delivery_count(self):
        """:returns: how many times a share group delivered the record (None: not from a share group).
        :rtype: int"""
        _need_message(self)
        return self._get(10)

    def set_topic(self, topic):
        """Set the topic.

        :param str topic: the new topic."""
        _set(self, 0, topic)

    def set_headers(self, headers):
        """Replace the headers (a serializer's job, as ``DeserializingConsumer``'s).

        :param list headers: the new headers."""
        _set(self, 5, headers)

    def set_key(self, key):
        """Replace the key (a deserializer's job).

        :param key: the new key, any object."""
        _set(self, 3, key)

    def set_value(self, value):
        """Replace the value (a deserializer's job).

        :param value: the new value, any object."""
        _set(self, 4, value)

    def set_error(self, error):
        """Set the error.

        :param KafkaError error: the new error (None: a record)."""
        _set(self, 6, error)

    def _fields(self):
        """:returns: the 11 constructor arguments that rebuild this Message (confluent-kafka's pickled form)."""
        p, o, lat = self[1], self[2], self[8]
        le, dc = self._get(9), self._get(10)
        return (self.topic(), -1 if p is None else p, OFFSET_INVALID if o is None else o, self.key(), self.value(),
                self.headers(), self.error(), self.timestamp(), -1.0 if lat is None else lat,
                -1 if le is None else le, -1 if dc is None else dc)

    def __reduce__(self):
        return (type(self), self._fields())

    def __eq__(self, other):
        if self is other:
            return True
        if not isinstance(other, Message):
            return NotImplemented
        a, b = self._fields(), other._fields()
        return a[:8] == b[:8] and a[9] == b[9]  # latency aside, as confluent-kafka

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __lt__(self, other):
        return NotImplemented

    __le__ = __gt__ = __ge__ = __lt__
    __hash__ = None

    def __len__(self):
        v = self.value()
        return len(v) if v is not None else 0

    def __bool__(self):
        return True  # a message is an event even with an empty value

    def __repr__(self):
        if self.error() is not None:
            return "Message(topic=%r, partition=%r, offset=%r, error=%r)" % (self.topic(), self[1], self[2],
                                                                             self.error())
        v = self.value()
        return "Message(topic=%r, partition=%r, offset=%r, key=%r, len=%s)" % (
            self.topic(), self[1], self[2], self.key(), len(v) if isinstance(v, (bytes, str)) else "?")

    __str__ = __repr__


def make_message(topic, partition, offset, key, value, headers, error, timestamp_ns, latency):
    """A Message from our own paths, without running ``__new__``'s checks.

    :returns: the Message (*timestamp_ns*: epoch ns, 0 for an event)."""
    return tuple.__new__(Message, (topic, partition, offset, key, value, headers, error, timestamp_ns, latency, None))


def event(topic, partition, offset, error):
    """:returns: an event Message (``error()`` set, timestamp ``(TIMESTAMP_NOT_AVAILABLE, -1)``)."""
    return tuple.__new__(Message, (topic, partition, offset, None, None, None, error, 0, None, None))


_fastlog.set_message_type(Message)  # the C poll builds these directly


class RecordMetadata:
    """What the native ``Producer.send`` returns."""

    __slots__ = ("topic", "partition", "offset", "timestamp_ns")

    def __init__(self, topic, partition, offset, timestamp_ns):
        self.topic, self.partition, self.offset, self.timestamp_ns = topic, partition, offset, timestamp_ns

    def __repr__(self):
        return "RecordMetadata(topic=%r, partition=%d, offset=%d)" % (self.topic, self.partition, self.offset)


def eof_event(topic, partition, offset):
    """:returns: the ``_PARTITION_EOF`` event of a partition read to its end."""
    return event(topic, partition, offset, KafkaError(KafkaError._PARTITION_EOF, "Broker: No more messages"))


def wall_ns():
    """Kafka CreateTime is epoch time (never used for timeouts)."""
    return time.time_ns()
