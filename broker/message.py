"""Message, TopicPartition and the offset constants, shaped as
confluent-kafka's so code moves between the two with an import change."""
import functools
import time

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


class Message:
    """A consumed record, a delivery report, or an event (error() set)."""

    __slots__ = ("_topic", "_partition", "_offset", "_key", "_value", "_headers", "_error", "_ts_ns", "_latency")

    def __init__(self, topic=None, partition=None, offset=None, key=None, value=None, headers=None, error=None,
                 timestamp_ns=0, latency=None):
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._key = key
        self._value = value
        self._headers = headers
        self._error = error
        self._ts_ns = timestamp_ns
        self._latency = latency

    def topic(self):
        return self._topic

    def partition(self):
        return self._partition

    def offset(self):
        return self._offset

    def key(self):
        return self._key

    def value(self):
        return self._value

    def headers(self):
        return self._headers

    def error(self):
        return self._error

    def timestamp(self):
        """(TIMESTAMP_CREATE_TIME, epoch ms), or (TIMESTAMP_NOT_AVAILABLE, -1)."""
        if not self._ts_ns:
            return (TIMESTAMP_NOT_AVAILABLE, -1)
        return (TIMESTAMP_CREATE_TIME, self._ts_ns // 1_000_000)

    def timestamp_ns(self):
        return self._ts_ns

    def latency(self):
        """Seconds from produce() to the delivery report (producer side)."""
        return self._latency

    def leader_epoch(self):
        return None

    def set_headers(self, headers):
        self._headers = headers

    def set_key(self, key):
        self._key = key

    def set_value(self, value):
        self._value = value

    def __len__(self):
        return len(self._value) if self._value is not None else 0

    def __repr__(self):
        if self._error is not None:
            return "Message(topic=%r, partition=%r, offset=%r, error=%r)" % (
                self._topic, self._partition, self._offset, self._error)
        return "Message(topic=%r, partition=%r, offset=%r, key=%r, len=%d)" % (
            self._topic, self._partition, self._offset, self._key, len(self))


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
