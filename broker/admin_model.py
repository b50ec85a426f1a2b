"""confluent_kafka's model types that the admin API takes and returns
(``confluent_kafka._model`` and the admin result classes): nodes, topic
descriptions, offset specs, isolation levels, ... with confluent's names,
enum values and string forms.  One host is one node: id 0, host
``shm://<namespace>``, port 0."""
import base64
import enum
import hashlib


class OrderedEnum(enum.Enum):
    """An Enum whose members sort by value, as confluent-kafka's enums do (only ``<`` is defined there too).

    :cvar members: ``a < b`` when both are members of the same enum and a's value is below b's."""

    def __lt__(self, other):
        """:returns: whether this member's value is below *other*'s (same enum only)."""
        if type(other) is not type(self):
            return NotImplemented
        return self.value < other.value


class IsolationLevel(OrderedEnum):
    """Which records a read may see.  Every record is committed when produce() returns here (no transactions),
    so both levels read the same.

    :cvar READ_UNCOMMITTED: 0, every record. :cvar READ_COMMITTED: 1, records of committed transactions only.
    """
    READ_UNCOMMITTED = 0  #: every record
    READ_COMMITTED = 1  #: records of committed transactions only


class ElectionType(OrderedEnum):
    """The kind of a leader election (one host has one replica: nothing to elect, elect_leaders is refused).

    :cvar PREFERRED: 0. :cvar UNCLEAN: 1.
    """
    PREFERRED = 0
    UNCLEAN = 1


class ConsumerGroupType(OrderedEnum):
    """A consumer group's protocol.

    :cvar UNKNOWN: 0. :cvar CONSUMER: 1, KIP-848's ``consumer`` protocol (the coordinator assigns: shmbroker's
        groups). :cvar CLASSIC: 2, the classic one.
    """
    UNKNOWN = 0
    CONSUMER = 1  #: KIP-848 (the coordinator assigns: shmbroker's groups)
    CLASSIC = 2


class ConsumerGroupState(OrderedEnum):
    """A consumer group's state, as list_consumer_groups and describe_consumer_groups report it.

    :cvar UNKNOWN: 0, not known (``UNKOWN``: confluent-kafka's deprecated misspelt alias of it).
    :cvar PREPARING_REBALANCING: 1, a member joined or left: the assignment is being recomputed.
    :cvar COMPLETING_REBALANCING: 2, the new assignment is being handed out.
    :cvar STABLE: 3, every member has its partitions. :cvar DEAD: 4, the group is gone.
    :cvar EMPTY: 5, no members (committed offsets may remain).
    """
    UNKNOWN = 0
    UNKOWN = 0  #: deprecated alias of UNKNOWN (confluent-kafka keeps the misspelling)
    PREPARING_REBALANCING = 1
    COMPLETING_REBALANCING = 2
    STABLE = 3
    DEAD = 4
    EMPTY = 5


class ConsumerGroupTopicPartitions:
    """A group and some of its partitions: the request and the answer of list_consumer_group_offsets and
    alter_consumer_group_offsets.

    :param str group_id: the group.
    :param list topic_partitions: TopicPartition objects (with offsets, to alter), or None for every partition
        the group has committed.
    """

    def __init__(self, group_id, topic_partitions=None):
        self.group_id, self.topic_partitions = group_id, topic_partitions

    def __repr__(self):
        return "ConsumerGroupTopicPartitions(%s, %r)" % (self.group_id, self.topic_partitions)


class Node:
    """A broker node (for shmbroker: the namespace, id 0).

    :param int id: node id (0: this host)
    :param str host: host name (``shm://<namespace>``)
    :param int port: port (0)
    :param str rack: rack, or None
    """

    def __init__(self, id, host, port, rack=None):
        self.id, self.id_string, self.host, self.port, self.rack = id, str(id), host, port, rack

    def __str__(self):
        return "(%s) %s:%s %s" % (self.id, self.host, self.port, "(Rack - %s)" % self.rack if self.rack else "")

    def __repr__(self):
        return "Node(id=%r, host=%r, port=%r, rack=%r)" % (self.id, self.host, self.port, self.rack)


def host_node(ns_name):
    """The one Node of a namespace.

    :returns: Node 0 at ``shm://<ns_name>``, port 0."""
    return Node(0, "shm://" + ns_name, 0)


class TopicCollection:
    """Topics named for describe_topics.

    :param list topic_names: topic names (str)
    """

    def __init__(self, topic_names):
        self.topic_names = topic_names

    def __repr__(self):
        return "TopicCollection(%r)" % (self.topic_names,)


class TopicPartitionInfo:
    """A partition of a TopicDescription.  One host has no replication: the host is leader, replica and
    in-sync replica.

    :param int id: partition id
    :param Node leader: the leader (the host)
    :param list replicas: replica Nodes
    :param list isr: in-sync replica Nodes
    """

    def __init__(self, id, leader, replicas, isr):
        self.id, self.leader, self.replicas, self.isr = id, leader, replicas, isr

    def __repr__(self):
        return "TopicPartitionInfo(id=%r, leader=%r)" % (self.id, self.leader)


class Uuid:
    """A 128-bit id (Kafka's topic ids), shown as 22 characters of URL-safe base64, as Kafka shows them.

    :param int most_significant_bits: high 64 bits (signed or unsigned)
    :param int least_significant_bits: low 64 bits (signed or unsigned)
    """

    def __init__(self, most_significant_bits, least_significant_bits):
        self._msb, self._lsb = int(most_significant_bits) & (2 ** 64 - 1), int(least_significant_bits) & (2 ** 64 - 1)

    def get_most_significant_bits(self):
        """:returns: the high 64 bits (signed, as Java's and librdkafka's). :rtype: int"""
        return self._msb - (1 << 64) if self._msb >> 63 else self._msb

    def get_least_significant_bits(self):
        """:returns: the low 64 bits (signed, as Java's and librdkafka's). :rtype: int"""
        return self._lsb - (1 << 64) if self._lsb >> 63 else self._lsb

    def __int__(self):
        return (self._msb << 64) | self._lsb

    def __str__(self):
        return base64.urlsafe_b64encode(int(self).to_bytes(16, "big")).decode().rstrip("=")

    def __repr__(self):
        return "Uuid(%s)" % self

    def __hash__(self):
        return hash(int(self))

    def __eq__(self, other):
        if not isinstance(other, Uuid):
            return NotImplemented
        return int(self) == int(other)


def topic_uuid(ns_name, info):
    """A stable id for one incarnation of a topic (namespace, name, id)."""
    d = hashlib.blake2b(("%s\0%s\0%d" % (ns_name, info.name, info.topic_id)).encode(), digest_size=16).digest()
    return Uuid(int.from_bytes(d[:8], "big"), int.from_bytes(d[8:], "big"))


class TopicDescription:
    """What describe_topics returns for a topic.

    :param str name: topic name
    :param Uuid topic_id: topic id
    :param bool is_internal: always False here
    :param list partitions: TopicPartitionInfo objects
    :param list authorized_operations: AclOperation values, if asked for
    """

    def __init__(self, name, topic_id, is_internal, partitions, authorized_operations=None):
        self.name, self.topic_id, self.is_internal = name, topic_id, is_internal
        self.partitions, self.authorized_operations = partitions, authorized_operations

    def __repr__(self):
        return "TopicDescription(%s, %d partitions)" % (self.name, len(self.partitions))


class DescribeClusterResult:
    """What describe_cluster returns.

    :param Node controller: the controller (the host)
    :param list nodes: every Node (the host)
    :param str cluster_id: cluster id (``shm-<namespace>``)
    :param list authorized_operations: AclOperation values, if asked for
    """

    def __init__(self, controller, nodes, cluster_id=None, authorized_operations=None):
        self.controller, self.nodes, self.cluster_id = controller, nodes, cluster_id
        self.authorized_operations = authorized_operations


class NewPartitions:
    """A topic's new partition count for create_partitions.

    :param str topic: the topic
    :param int new_total_count: the partition count after the call (higher than now)
    :param list replica_assignment: one list of broker ids per new partition (only [0] exists here)
    """

    def __init__(self, topic, new_total_count, replica_assignment=None):
        if not isinstance(topic, str):
            raise TypeError("topic must be a str, got %s" % type(topic).__name__)
        if isinstance(new_total_count, bool) or not isinstance(new_total_count, int):
            raise TypeError("new_total_count must be an int, got %s" % type(new_total_count).__name__)
        if replica_assignment is not None and not isinstance(replica_assignment, list):
            raise TypeError("replica_assignment must be a list of lists of broker ids, or None")
        self.topic, self.new_total_count, self.replica_assignment = topic, new_total_count, replica_assignment

    def __repr__(self):
        return "NewPartitions(topic=%s,new_total_count=%d)" % (self.topic, self.new_total_count)

    def __hash__(self):
        return hash(self.topic)

    def __eq__(self, other):
        return isinstance(other, NewPartitions) and (self.topic, self.new_total_count) == (
            other.topic, other.new_total_count)


class DeletedRecords:
    """What delete_records returns for a partition.

    :param int low_watermark: the partition's low watermark after the deletion
    """

    def __init__(self, low_watermark):
        self.low_watermark = low_watermark

    def __repr__(self):
        return "DeletedRecords(low_watermark=%d)" % self.low_watermark


class OffsetSpec:
    """Which offset list_offsets returns: ``earliest()``, ``latest()``,
    ``max_timestamp()`` (the record with the highest timestamp) or
    ``for_timestamp(ms)`` (the first record at or after it).  ``OffsetSpec(n)``
    is the spec of value n (-2 earliest, -1 latest, -3 max timestamp, n >= 0 a
    timestamp)."""

    _values = {}

    def __new__(cls, index):
        if index < 0:
            return cls._values[index]
        return cls.for_timestamp(index)

    @classmethod
    def earliest(cls):
        """:returns: the spec of the low watermark"""
        return cls._values[-2]

    @classmethod
    def latest(cls):
        """:returns: the spec of the high watermark"""
        return cls._values[-1]

    @classmethod
    def max_timestamp(cls):
        """:returns: the spec of the record with the largest timestamp"""
        return cls._values[-3]

    @classmethod
    def for_timestamp(cls, timestamp):
        """:param int timestamp: epoch milliseconds
        :returns: the spec of the first record at or after it"""
        return TimestampSpec(timestamp)

    def __lt__(self, other):
        if not isinstance(other, OffsetSpec):
            return NotImplemented
        return self._value < other._value

    def __repr__(self):
        return "%s(%d)" % (type(self).__name__, self._value)


class TimestampSpec(OffsetSpec):
    """The first record whose timestamp is at or after *timestamp* ms.

    :param int timestamp: epoch milliseconds
    """

    def __new__(cls, timestamp):
        return object.__new__(cls)

    def __init__(self, timestamp):
        self.timestamp = timestamp

    @property
    def _value(self):
        return self.timestamp


class _FixedSpec(OffsetSpec):
    def __new__(cls):
        return object.__new__(cls)

    @property
    def _value(self):
        return self.VALUE


class EarliestSpec(_FixedSpec):
    """The low watermark."""
    VALUE = -2


class LatestSpec(_FixedSpec):
    """The high watermark."""
    VALUE = -1


class MaxTimestampSpec(_FixedSpec):
    """The record with the largest timestamp."""
    VALUE = -3


OffsetSpec._values.update({-2: EarliestSpec(), -1: LatestSpec(), -3: MaxTimestampSpec()})


class ListOffsetsResultInfo:
    """What list_offsets returns for a partition.

    :param int offset: the offset
    :param int timestamp: its record's timestamp in ms (-1 for earliest/latest)
    :param int leader_epoch: leader epoch (None here)
    """

    def __init__(self, offset, timestamp, leader_epoch=None):
        self.offset, self.timestamp = offset, timestamp
        self.leader_epoch = None if leader_epoch is None or leader_epoch < 0 else leader_epoch

    def __repr__(self):
        return "ListOffsetsResultInfo(offset=%d, timestamp=%d)" % (self.offset, self.timestamp)


class ConsumerGroupListing:
    """A group in list_consumer_groups' answer.

    :param str group_id: the group
    :param bool is_simple_consumer_group: False (every group here has members that subscribe)
    :param ConsumerGroupState state: its state
    :param ConsumerGroupType type: its protocol (CONSUMER: the coordinator assigns); also ``group_type``
    """

    def __init__(self, group_id, is_simple_consumer_group, state=None, type=None):
        self.group_id, self.is_simple_consumer_group, self.state, self.type = \
            group_id, is_simple_consumer_group, state, type
        self.group_type = type

    def __repr__(self):
        return "ConsumerGroupListing(%s, %s)" % (self.group_id, self.state)


class ListConsumerGroupsResult:
    """What list_consumer_groups' future holds.

    :param list valid: ConsumerGroupListing objects. :param list errors: KafkaException objects (none here).
    """

    def __init__(self, valid=None, errors=None):
        self.valid, self.errors = valid or [], errors or []


class MemberAssignment:
    """The partitions a group member is assigned.

    :param list topic_partitions: TopicPartition objects.
    """

    def __init__(self, topic_partitions=None):
        self.topic_partitions = topic_partitions or []


class MemberDescription:
    """A member in describe_consumer_groups' answer.

    :param str member_id: its member id. :param str client_id: its client.id.
    :param str host: ``localhost/<pid>``. :param MemberAssignment assignment: its partitions.
    :param str group_instance_id: its group.instance.id, or None.
    :param int pid: native extra: the member's process. :param bool alive: native extra: whether it lives.
    """

    def __init__(self, member_id, client_id, host, assignment, group_instance_id=None, pid=None, alive=None):
        self.member_id, self.client_id, self.host, self.assignment = member_id, client_id, host, assignment
        self.group_instance_id = group_instance_id
        self.pid, self.alive = pid, alive  # native extras: the member's process and whether it lives

    def __repr__(self):
        return "MemberDescription(%s, pid %s)" % (self.member_id, self.pid)


class ConsumerGroupDescription:
    """A group in describe_consumer_groups' answer.

    :param str group_id: the group. :param bool is_simple_consumer_group: False here.
    :param list members: MemberDescription objects. :param str partition_assignor: the assignment strategy.
    :param ConsumerGroupState state: its state. :param Node coordinator: the host.
    :param list authorized_operations: AclOperation values, if asked for.
    """

    def __init__(self, group_id, is_simple_consumer_group, members, partition_assignor, state, coordinator=None,
                 authorized_operations=None):
        self.group_id, self.is_simple_consumer_group, self.members = group_id, is_simple_consumer_group, members
        self.partition_assignor, self.state, self.coordinator = partition_assignor, state, coordinator
        self.authorized_operations = authorized_operations

    def __repr__(self):
        return "ConsumerGroupDescription(%s, %s, %d members)" % (self.group_id, self.state, len(self.members))


class GroupMember:
    """A member in list_groups' GroupMetadata (the legacy API).

    :param str id: member id. :param str client_id: its client.id. :param str client_host: its host.
    :param bytes metadata: protocol metadata. :param bytes assignment: protocol assignment.
    """

    def __init__(self, id=None, client_id=None, client_host=None, metadata=None, assignment=None):
        self.id, self.client_id, self.client_host = id, client_id, client_host
        self.metadata, self.assignment = metadata, assignment


class GroupMetadata:
    """A group in list_groups' answer (the legacy API).

    :param BrokerMetadata broker: its coordinator (the host). :param str id: the group.
    :param KafkaError error: None. :param str state: its state name. :param str protocol_type: "consumer".
    :param str protocol: its assignment strategy. :param list members: GroupMember objects.
    """

    def __init__(self, broker=None, id=None, error=None, state=None, protocol_type="consumer", protocol=None,
                 members=None):
        self.broker, self.id, self.error, self.state = broker, id, error, state
        self.protocol_type, self.protocol, self.members = protocol_type, protocol, members or []

    def __repr__(self):
        return "GroupMetadata(%s)" % self.id

    def __str__(self):
        return self.id
