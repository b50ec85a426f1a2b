"""Drop-in for code written against confluent-kafka: ``from broker.kafka import Producer, Consumer, ...`` (and
``broker.kafka.admin``, ``.serialization``, ``.error``) with librdkafka's defaults (partitioner
``consistent_random``, ``allow.auto.create.topics`` false).  Alias it (``sys.modules["confluent_kafka"]``) or
change the import, and the same code runs on a Kafka cluster.

Module-level names: :class:`Producer`, :class:`Consumer`, :class:`SerializingProducer`,
:class:`DeserializingConsumer`, :class:`Message`, :class:`TopicPartition`, :class:`KafkaError`,
:class:`KafkaException`, the partitioners :func:`murmur2`, :func:`consistent`, :func:`fnv1a`, :func:`version`,
:func:`libversion`, and the offset and timestamp constants: ``OFFSET_BEGINNING`` (-2), ``OFFSET_END`` (-1),
``OFFSET_STORED`` (-1000), ``OFFSET_INVALID`` (-1001), ``TIMESTAMP_NOT_AVAILABLE`` (0),
``TIMESTAMP_CREATE_TIME`` (1), ``TIMESTAMP_LOG_APPEND_TIME`` (2).
"""
from broker import consumer as _consumer
from broker import partitioner as _partitioner
from broker import producer as _producer
from broker.message import (OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, OFFSET_STORED, TIMESTAMP_CREATE_TIME,
                            TIMESTAMP_LOG_APPEND_TIME, TIMESTAMP_NOT_AVAILABLE, Message, TopicPartition)
from shm._version import __version__
from shm.errors import KafkaError, KafkaException

from ._model import (AcknowledgeType, ConsumerGroupState, ConsumerGroupTopicPartitions, ConsumerGroupType,
                     ElectionType, IsolationLevel, Messages, Node, TopicCollection, TopicPartitionInfo, Uuid)
from .serializing import DeserializingConsumer, SerializingProducer


def _need_config(config, kwargs):
    """:raises TypeError: if no configuration is given (confluent-kafka requires one)."""
    if config is None and not kwargs:
        raise TypeError("expected configuration dict")


class Producer(_producer.Producer):
    """confluent-kafka's Producer over shmbroker (see :class:`broker.Producer`), with librdkafka's default
    partitioner ``consistent_random``.

    :param dict config: the configuration (required, as in confluent-kafka); keyword arguments are merged in.
    :raises TypeError: without any configuration.
    """

    @property
    def DEFAULT_PARTITIONER(self):
        """:returns: the partitioner when the config names none: librdkafka's ``consistent_random``."""
        return "consistent_random"

    def __init__(self, config=None, **kwargs):
        _need_config(config, kwargs)
        super().__init__(config, **kwargs)


class Consumer(_consumer.Consumer):
    """confluent-kafka's Consumer over shmbroker (see :class:`broker.Consumer`).

    :param dict config: the configuration (required, with ``group.id``, as in confluent-kafka).
    :raises TypeError: without any configuration.
    :raises ValueError: without ``group.id``.
    """

    def __init__(self, config=None, **kwargs):
        _need_config(config, kwargs)
        merged = dict(config or {}, **kwargs)
        if merged.get("group.id") is None:
            raise ValueError("Failed to create consumer: group.id must be set")
        super().__init__(config, **kwargs)


def murmur2(key, partition_count):
    """The Java client's partition for *key* (librdkafka's ``murmur2``).

    :param bytes key: the key (str is UTF-8 encoded; None hashes as empty).
    :param int partition_count: the topic's partition count.
    :returns: the partition. :rtype: int"""
    return _partitioner.murmur2(key, partition_count)


def consistent(key, partition_count):
    """librdkafka's ``consistent`` partition for *key*: CRC32 modulo the count.

    :param bytes key: the key. :param int partition_count: the topic's partition count.
    :returns: the partition. :rtype: int"""
    return _partitioner.consistent(key, partition_count)


def fnv1a(key, partition_count):
    """librdkafka's ``fnv1a`` partition for *key*: FNV-1a modulo the count.

    :param bytes key: the key. :param int partition_count: the topic's partition count.
    :returns: the partition. :rtype: int"""
    return _partitioner.fnv1a(key, partition_count)


def version():
    """shmbroker's version.

    :returns: (version string, version as an int ``0xMMmmpp00``).
    :rtype: tuple"""
    parts = [int(x) for x in __version__.split(".")[:3] if x.isdigit()] + [0, 0, 0]
    return (__version__, (parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8))


def libversion():
    """The librdkafka release whose API and behaviour broker.kafka follows (there is no librdkafka here).

    :returns: (version string, version int), as confluent-kafka's ``libversion()``.
    :rtype: tuple"""
    return ("2.15.0", 0x020F00FF)


class ThrottleEvent:
    """A broker throttled a request (what a ``throttle_cb`` gets; one host never throttles, so shmbroker never
    sends one).

    :param str broker_name: the broker. :param int broker_id: its id. :param float throttle_time: seconds.
    """

    def __init__(self, broker_name, broker_id, throttle_time):
        self.broker_name = broker_name
        self.broker_id = broker_id
        self.throttle_time = throttle_time

    def __str__(self):
        return "%s/%d throttled for %d ms" % (self.broker_name, self.broker_id, int(self.throttle_time * 1000))


__all__ = ["AcknowledgeType", "Consumer", "ConsumerGroupState", "ConsumerGroupTopicPartitions", "ConsumerGroupType",
           "DeserializingConsumer", "ElectionType", "IsolationLevel", "KafkaError", "KafkaException", "Message",
           "Messages", "Node", "OFFSET_BEGINNING", "OFFSET_END", "OFFSET_INVALID", "OFFSET_STORED", "Producer",
           "SerializingProducer", "TIMESTAMP_CREATE_TIME", "TIMESTAMP_LOG_APPEND_TIME", "TIMESTAMP_NOT_AVAILABLE",
           "ThrottleEvent", "TopicCollection", "TopicPartition", "TopicPartitionInfo", "Uuid", "admin", "consistent",
           "error", "fnv1a", "libversion", "murmur2", "serialization", "version"]

from . import admin, error, serialization  # noqa: E402  (submodules, as confluent_kafka's attributes)
