"""The small model classes of ``confluent_kafka`` (its ``_model`` and ``Uuid``), for ``broker.kafka``.

On one host there is one "broker" (the namespace) and no replication: a :class:`Node` is that broker,
:class:`TopicPartitionInfo` lists it as leader, replica and in-sync replica."""
import base64
import enum
import functools

__all__ = ["AcknowledgeType", "ConsumerGroupType", "ElectionType", "IsolationLevel", "Messages", "Node",
           "TopicCollection", "TopicPartitionInfo", "Uuid"]


def _ordered_by_value(cls):
    """Order an Enum's members by value (confluent-kafka's enums sort).

    :returns: the class."""
    def __lt__(self, other):
        if self.__class__ is not other.__class__:
            return NotImplemented
        return self.value < other.value
    __lt__.__doc__ = ":returns: whether this member's value is below *other*'s."
    cls.__lt__ = __lt__
    return functools.total_ordering(cls)


class Node:
    """A broker of the cluster (for shmbroker: the namespace, id 0).

    :param int id: the broker id. :param str host: its host. :param int port: its port.
    :param str rack: its rack, or None.
    """

    def __init__(self, id, host, port, rack=None):
        self.id = id
        self.id_string = str(id)
        self.host = host
        self.port = port
        self.rack = rack

    def __str__(self):
        return "(%s) %s:%s %s" % (self.id, self.host, self.port, self.rack or "")

    def __repr__(self):
        return "Node(id=%r, host=%r, port=%r, rack=%r)" % (self.id, self.host, self.port, self.rack)


class TopicCollection:
    """A list of topic names, as some admin calls take.

    :param list topic_names: the topic names.
    """

    def __init__(self, topic_names):
        self.topic_names = topic_names

    def __repr__(self):
        return "TopicCollection(%r)" % (self.topic_names,)


class TopicPartitionInfo:
    """A partition as ``describe_topics`` shows it.

    :param int id: the partition. :param Node leader: its leader. :param list replicas: its replica Nodes.
    :param list isr: its in-sync replica Nodes.
    """

    def __init__(self, id, leader, replicas, isr):
        self.id = id
        self.leader = leader
        self.replicas = replicas
        self.isr = isr

    def __repr__(self):
        return "TopicPartitionInfo(id=%r, leader=%r)" % (self.id, self.leader)


@_ordered_by_value
class ConsumerGroupType(enum.Enum):
    """The protocol of a consumer group.

    :cvar UNKNOWN: 0. :cvar CONSUMER: 1, KIP-848's ``consumer`` protocol. :cvar CLASSIC: 2, the classic one.
    """

    UNKNOWN = 0
    CONSUMER = 1
    CLASSIC = 2


@_ordered_by_value
class IsolationLevel(enum.Enum):
    """Which offsets a list_offsets call sees.

    :cvar READ_UNCOMMITTED: 0, every record. :cvar READ_COMMITTED: 1, those of committed transactions (every
        record here: shmbroker has no transactions).
    """

    READ_UNCOMMITTED = 0
    READ_COMMITTED = 1


@_ordered_by_value
class ElectionType(enum.Enum):
    """The kind of a leader election (one host has no replicas: elections are not supported).

    :cvar PREFERRED: 0. :cvar UNCLEAN: 1.
    """

    PREFERRED = 0
    UNCLEAN = 1


@_ordered_by_value
class AcknowledgeType(enum.Enum):
    """How a share consumer acknowledges a record; ``int()`` gives librdkafka's number.

    :cvar ACCEPT: 1, processed. :cvar RELEASE: 2, give it to another member. :cvar REJECT: 3, never again.
    """

    ACCEPT = 1
    RELEASE = 2
    REJECT = 3

    def __int__(self):
        return self.value

    __index__ = __int__


class Messages:
    """A batch of :class:`Message` objects (what a share consumer's poll returns): a read-only sequence.

    :param messages: the messages.
    """

    def __init__(self, messages=()):
        self._records = list(messages)

    def records(self):
        """:returns: the messages, as a new list. :rtype: list"""
        return list(self._records)

    def count(self):
        """:returns: how many messages. :rtype: int"""
        return len(self._records)

    def is_empty(self):
        """:returns: True if there is no message. :rtype: bool"""
        return not self._records

    def __len__(self):
        return len(self._records)

    def __iter__(self):
        return iter(self._records)

    def __getitem__(self, index):
        got = self._records[index]
        return Messages(got) if isinstance(index, slice) else got

    def __repr__(self):
        return "Messages(%d)" % len(self._records)


class Uuid:
    """A 128-bit id (a topic id) as two signed 64-bit halves, shown as Kafka does (URL-safe base64, no padding).

    :param int most_significant_bits: the high 64 bits. :param int least_significant_bits: the low 64 bits.
    """

    def __init__(self, most_significant_bits, least_significant_bits):
        self._msb = int(most_significant_bits)
        self._lsb = int(least_significant_bits)

    def get_most_significant_bits(self):
        """:returns: the high 64 bits. :rtype: int"""
        return self._msb

    def get_least_significant_bits(self):
        """:returns: the low 64 bits. :rtype: int"""
        return self._lsb

    def __str__(self):
        raw = (self._msb & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big") + (self._lsb & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    __repr__ = __str__

    def __eq__(self, other):
        if not isinstance(other, Uuid):
            return NotImplemented
        return (self._msb, self._lsb) == (other._msb, other._lsb)

    def __hash__(self):
        return hash((self._msb, self._lsb))
