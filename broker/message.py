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
    """A topic partition and an offset.  Equality, order and hash use topic
    and partition only, as confluent-kafka's do."""

    __slots__ = ("topic", "partition", "offset", "metadata", "leader_epoch", "error")

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


class Message(tuple):
    """A consumed record, a delivery report, or an event (error() set).

    A tuple (topic, partition, offset, key, value, headers, error,
    timestamp_ns, latency) so the consumer builds one without running
    Python code; set_key/set_value/set_headers keep an override."""

    _ov = None  # {field index: value} once a set_* method was called

    def __new__(cls, topic=None, partition=None, offset=None, key=None, value=None, headers=None, error=None,
                timestamp_ns=0, latency=None):
        return tuple.__new__(cls, (topic, partition, offset, key, value, headers, error, timestamp_ns, latency))

    def _get(self, i):
        ov = self._ov
        return self[i] if ov is None or i not in ov else ov[i]

    def _set(self, i, v):
        if self._ov is None:
            self._ov = {}
        self._ov[i] = v

    def topic(self):
        return self[0]

    def partition(self):
        return self[1]

    def offset(self):
        return self[2]

    def key(self):
        return self[3] if self._ov is None else self._get(3)

    def value(self):
        return self[4] if self._ov is None else self._get(4)

    def headers(self):
        return self[5] if self._ov is None else self._get(5)

    def error(self):
        return self[6]

    def timestamp(self):
        """(TIMESTAMP_CREATE_TIME, epoch ms), or (TIMESTAMP_NOT_AVAILABLE, -1)."""
        ts = self[7]
        if not ts:
            return (TIMESTAMP_NOT_AVAILABLE, -1)
        return (TIMESTAMP_CREATE_TIME, ts // 1_000_000)

    def timestamp_ns(self):
        return self[7]

    def latency(self):
        """Seconds from produce() to the delivery report (producer side)."""
        return self[8]

    def leader_epoch(self):
        return None

    def set_headers(self, headers):
        self._set(5, headers)

    def set_key(self, key):
        self._set(3, key)

    def set_value(self, value):
        self._set(4, value)

    def __len__(self):
        v = self.value()
        return len(v) if v is not None else 0

    def __bool__(self):
        return True  # a message is an event even with an empty value

    def __repr__(self):
        if self[6] is not None:
            return "Message(topic=%r, partition=%r, offset=%r, error=%r)" % (self[0], self[1], self[2], self[6])
        return "Message(topic=%r, partition=%r, offset=%r, key=%r, len=%d)" % (
            self[0], self[1], self[2], self.key(), len(self))


_fastlog.set_message_type(Message)  # the C poll builds these directly


class RecordMetadata:
    """What the native ``Producer.send`` returns."""

    __slots__ = ("topic", "partition", "offset", "timestamp_ns")

    def __init__(self, topic, partition, offset, timestamp_ns):
        self.topic, self.partition, self.offset, self.timestamp_ns = topic, partition, offset, timestamp_ns

    def __repr__(self):
        return "RecordMetadata(topic=%r, partition=%d, offset=%d)" % (self.topic, self.partition, self.offset)


def eof_event(topic, partition, offset):
    return Message(topic, partition, offset, error=KafkaError(KafkaError._PARTITION_EOF, "Broker: No more messages"))


def wall_ns():
    """Kafka CreateTime is epoch time (never used for timeouts)."""
    return time.time_ns()
