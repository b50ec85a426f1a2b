"""AdminClient and NewTopic with confluent-kafka's shapes: every call
returns ``concurrent.futures.Future`` objects (here already completed: the
work is local and synchronous)."""
import time
import warnings

from shm.errors import KafkaError, KafkaException, TopicExistsError

from . import admin_checks as C
from . import admin_ops as O
from . import config as _config
from . import groups as G
from .admin_model import (ConsumerGroupDescription, ConsumerGroupListing, ConsumerGroupState,  # noqa: F401
                          ConsumerGroupTopicPartitions, ConsumerGroupType, DeletedRecords, DescribeClusterResult,
                          ElectionType, GroupMember, GroupMetadata, IsolationLevel, ListConsumerGroupsResult,
                          ListOffsetsResultInfo, MemberAssignment, MemberDescription, NewPartitions, Node, OffsetSpec,
                          TopicCollection, TopicDescription, TopicPartitionInfo, Uuid, host_node)
from .admin_ops import done as _done
from .admin_ops import failed as _failed
from .admin_ops import log_start, offset_for_time  # noqa: F401 (the consumer's; re-exported)
from .admin_types import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,  # noqa: F401
                          AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, ResourcePatternType,
                          ResourceType, ScramCredentialInfo, ScramMechanism, UserScramCredentialAlteration,
                          UserScramCredentialDeletion, UserScramCredentialsDescription, UserScramCredentialUpsertion)
from .admin_unsupported import NotOnOneHost
from .message import OFFSET_INVALID, TopicPartition
from .namespace import Namespace, check_topic_name, topic_geometry


_STATES = {"Stable": ConsumerGroupState.STABLE, "Empty": ConsumerGroupState.EMPTY,
           "PreparingRebalance": ConsumerGroupState.PREPARING_REBALANCING}


class NewTopic:
    """A topic for create_topics.

    :param str topic: its name
    :param int num_partitions: partitions (default 1)
    :param int replication_factor: accepted and ignored (one host is one replica)
    :param list replica_assignment: accepted and ignored
    :param dict config: topic configs (retention.bytes, retention.ms, ...)
    """

    def __init__(self, topic, num_partitions=1, replication_factor=1, replica_assignment=None, config=None):
        if not isinstance(topic, str):
            raise TypeError("topic must be a str, got %s" % type(topic).__name__)
        if config is not None and not isinstance(config, dict):
            raise TypeError("config must be a dict of topic configs, got %s" % type(config).__name__)
        self.topic = topic
        self.num_partitions = num_partitions
        self.replication_factor = replication_factor  # one host: accepted, ignored
        self.replica_assignment = replica_assignment
        self.config = dict(config or {})

    def __repr__(self):
        return "NewTopic(topic=%s,num_partitions=%d)" % (self.topic, self.num_partitions)


class PartitionMetadata:
    """A partition in list_topics' answer: the host (broker 0) is its leader, replica and in-sync replica.

    :param int pid: the partition id (the ``id`` attribute).
    """

    def __init__(self, pid):
        self.id, self.leader, self.replicas, self.isrs, self.error = pid, 0, [0], [0], None

    def __repr__(self):
        return "PartitionMetadata(%d)" % self.id


class TopicMetadata:
    """A topic in list_topics' answer.

    :param str topic: the topic. :param int partitions: its partition count (``partitions`` maps each id to its
        PartitionMetadata). :param KafkaError error: why it could not be described (an unknown topic), or None.
    """

    def __init__(self, topic, partitions, error=None):
        self.topic = topic
        self.partitions = {p: PartitionMetadata(p) for p in range(partitions)}
        self.error = error

    def __repr__(self):
        return "TopicMetadata(%s, %d partitions)" % (self.topic, len(self.partitions))


class BrokerMetadata:
    """The one broker of list_topics' answer: id 0, host ``shm://<namespace>``, port 0.

    :param str ns: the namespace.
    """

    def __init__(self, ns):
        self.id, self.host, self.port = 0, "shm://" + ns, 0

    def __repr__(self):
        return "BrokerMetadata(%d, %s)" % (self.id, self.host)


class ClusterMetadata:
    """What list_topics returns: the namespace as a one-broker cluster (id ``shm-<namespace>``).

    :param str ns: the namespace. :param dict topics: {name: TopicMetadata}.
    """

    def __init__(self, ns, topics):
        self.cluster_id = "shm-" + ns
        self.controller_id = 0
        self.brokers = {0: BrokerMetadata(ns)}
        self.topics = topics
        self.orig_broker_id = 0
        self.orig_broker_name = "shm://" + ns


def cluster_metadata(ns, topic=None):
    """list_topics' answer (every client's): a missing *topic* is a TopicMetadata whose ``error`` is the
    broker's UNKNOWN_TOPIC_OR_PART, as a Kafka cluster's metadata response has it."""
    if topic is not None:
        try:
            t = ns.topic(topic)
        except KafkaException as exc:
            return ClusterMetadata(ns.name, {topic: TopicMetadata(topic, 0, O.broker_error(exc).args[0])})
        return ClusterMetadata(ns.name, {topic: TopicMetadata(topic, t.partitions)})
    return ClusterMetadata(ns.name, {n: TopicMetadata(n, t.partitions) for n, t in ns.topics().items()})


_TIMEOUTS = ("request_timeout", "operation_timeout")


class AdminClient(NotOnOneHost):
    """confluent_kafka.admin.AdminClient over a namespace: every call does
    its work at once and returns completed concurrent.futures.Future objects
    (a dict of them keyed as confluent's are), with confluent's argument checks.

    :param dict conf: client config (``bootstrap.servers=shm://NS`` or ``shm.namespace``)
    """

    def __init__(self, conf, **kwargs):
        self._conf = _config.parse(conf, kwargs, "admin")
        self._ns = Namespace(_config.resolve_namespace(self._conf), mode=self._conf.get("shm.mode"))
        self._gs = None

    # -- topics
    def create_topics(self, new_topics, **kwargs):
        """Create topics.

        :param list new_topics: NewTopic objects
        :param float operation_timeout: accepted (the work is done at once)
        :param float request_timeout: accepted
        :param bool validate_only: check only, create nothing
        :returns: {topic: Future of None}
        """
        C.options(kwargs, _TIMEOUTS + ("validate_only",))
        new_topics = C.items(new_topics, NewTopic, "create_topics")
        C.no_duplicates([nt.topic for nt in new_topics], "topics in create_topics")
        validate = kwargs.get("validate_only", False)

        def one(nt):
            if validate:
                check_topic_name(nt.topic)
                topic_geometry(nt.config)
                if nt.topic in self._ns.topics():
                    raise TopicExistsError("topic %r already exists in namespace %r" % (nt.topic, self._ns.name))
                return None
            self._ns.create_topic(nt.topic, nt.num_partitions, nt.config)
        return {nt.topic: _done(one, nt) for nt in new_topics}

    def delete_topics(self, topics, **kwargs):
        """Delete topics.

        :param list topics: topic names
        :param float operation_timeout: accepted
        :param float request_timeout: accepted
        :returns: {topic: Future of None}
        """
        C.options(kwargs, _TIMEOUTS)
        C.names(topics, "delete_topics")
        C.no_duplicates(topics, "topics in delete_topics")
        return {t: _done(lambda t=t: (self._ns.delete_topic(t), None)[1]) for t in topics}

    def list_topics(self, topic=None, timeout=-1):
        """:param str topic: one topic, or None for all
        :param float timeout: accepted
        :returns: ClusterMetadata"""
        return cluster_metadata(self._ns, topic)

    def create_partitions(self, new_partitions, **kwargs):
        """Grow topics to a new partition count (new partition segments;
        running producers and group consumers see them at once).

        :param list new_partitions: NewPartitions objects
        :param float operation_timeout: accepted
        :param float request_timeout: accepted
        :param bool validate_only: check only
        :returns: {topic: Future of None}
        """
        C.options(kwargs, _TIMEOUTS + ("validate_only",))
        if new_partitions is None:
            raise TypeError("create_partitions takes a list of NewPartitions, got None")
        new_partitions = C.items(new_partitions, NewPartitions, "create_partitions")
        C.no_duplicates([n.topic for n in new_partitions], "topics in create_partitions")
        validate = kwargs.get("validate_only", False)

        def one(n):
            if n.replica_assignment is not None and any(r != [0] for r in n.replica_assignment):
                raise O.error(KafkaError.INVALID_REPLICA_ASSIGNMENT, "replica_assignment %r: one host has one "
                              "broker, id 0 (use [[0], ...] or None)" % (n.replica_assignment,))
            self._ns.add_partitions(n.topic, n.new_total_count, validate_only=validate)
        return {n.topic: _done(one, n) for n in new_partitions}

    def delete_records(self, topic_partition_offsets, **kwargs):
        """Delete the records below each offset (OFFSET_END: all): the low
        watermark moves there, and a reader below it gets auto.offset.reset,
        as after retention.

        :param list topic_partition_offsets: TopicPartition objects with the offsets
        :param float operation_timeout: accepted
        :param float request_timeout: accepted
        :returns: {TopicPartition: Future of DeletedRecords}
        """
        if not isinstance(topic_partition_offsets, list):
            raise TypeError("Expected Request to be a list, got '%s'" % type(topic_partition_offsets).__name__)
        for tp in topic_partition_offsets:
            if not isinstance(tp, TopicPartition):
                raise TypeError("Element of the request list must be of type 'TopicPartition' got '%s'"
                                % type(tp).__name__)
            C.topic_partition(tp, "delete_records")
            if tp.offset < 0 and tp.offset != -1:
                raise ValueError("the offset of %s[%d] in delete_records must be >= 0, or -1 (OFFSET_END) for "
                                 "every record; got %d" % (tp.topic, tp.partition, tp.offset))
        C.options(kwargs, _TIMEOUTS)
        C.no_duplicates(topic_partition_offsets, "partitions in delete_records")
        return {tp: _done(O.delete_records, self._ns, tp) for tp in topic_partition_offsets}

    def list_offsets(self, topic_partition_offsets, **kwargs):
        """Offsets of partitions by OffsetSpec (earliest, latest,
        max_timestamp, for_timestamp).  Both isolation levels read the same
        here: every record is committed when produce() returns.

        :param dict topic_partition_offsets: {TopicPartition: OffsetSpec}
        :param IsolationLevel isolation_level: accepted
        :param float request_timeout: accepted
        :returns: {TopicPartition: Future of ListOffsetsResultInfo}
        """
        if not isinstance(topic_partition_offsets, dict):
            raise TypeError("list_offsets takes a dict {TopicPartition: OffsetSpec}, got %s"
                            % type(topic_partition_offsets).__name__)
        for tp, spec in topic_partition_offsets.items():
            if tp is None or not isinstance(tp, TopicPartition):
                raise TypeError("list_offsets keys must be TopicPartition, got %r" % (tp,))
            C.topic_partition(tp, "list_offsets")
            if not isinstance(spec, OffsetSpec):
                raise TypeError("list_offsets values must be OffsetSpec, got %r" % (spec,))
        C.options(kwargs, ("request_timeout", "isolation_level"))
        return {TopicPartition(tp.topic, tp.partition, spec._value): _done(O.list_offset, self._ns, tp, spec._value)
                for tp, spec in topic_partition_offsets.items()}

    def describe_topics(self, topics, **kwargs):
        """:param TopicCollection topics: the topics
        :param bool include_authorized_operations: also list what this client may do
        :param float request_timeout: accepted
        :returns: {topic: Future of TopicDescription}"""
        if not isinstance(topics, TopicCollection):
            raise TypeError("describe_topics takes a TopicCollection, got %s" % type(topics).__name__)
        if not isinstance(topics.topic_names, list):
            raise TypeError("TopicCollection.topic_names must be a list of str")
        for t in topics.topic_names:
            if not isinstance(t, str):
                raise TypeError("topic names must be str, got %r" % (t,))
            if not t:
                raise ValueError("topic names cannot be empty")
        C.options(kwargs, ("request_timeout", "include_authorized_operations"))
        ops = kwargs.get("include_authorized_operations", False)
        return {t: _done(O.describe_topic, self._ns, t, ops) for t in topics.topic_names}

    def describe_cluster(self, **kwargs):
        """:param bool include_authorized_operations: also list what this client may do
        :param float request_timeout: accepted
        :returns: Future of DescribeClusterResult (one node: this host)"""
        C.options(kwargs, ("request_timeout", "include_authorized_operations"))
        return _done(O.describe_cluster, self._ns, kwargs.get("include_authorized_operations", False))

    # -- configs
    def _resources(self, resources, what):
        resources = C.items(resources, ConfigResource, what)
        C.no_duplicates(resources, "resources in %s" % what)
        return resources

    def describe_configs(self, resources, **kwargs):
        """:param list resources: ConfigResource objects (topics; the broker "0")
        :param float request_timeout: accepted
        :returns: {ConfigResource: Future of {name: ConfigEntry}}"""
        C.options(kwargs, ("request_timeout",))
        return {r: _done(O.describe_configs, self._ns, r) for r in self._resources(resources, "describe_configs")}

    def alter_configs(self, resources, **kwargs):
        """Replace configs: keys not given revert to their defaults (deprecated
        in confluent-kafka: use incremental_alter_configs).

        :param list resources: ConfigResource objects with set_config values
        :param float request_timeout: accepted
        :param bool validate_only: check only
        :returns: {ConfigResource: Future of None}"""
        warnings.warn("alter_configs has been deprecated. Use incremental_alter_configs instead.",
                      category=DeprecationWarning, stacklevel=2)
        C.options(kwargs, ("request_timeout", "validate_only"))
        v = kwargs.get("validate_only", False)
        return {r: _done(O.alter_configs, self._ns, r, False, v) for r in self._resources(resources, "alter_configs")}

    def incremental_alter_configs(self, resources, **kwargs):
        """Change the given configs only (retention.ms; the rings' keys are
        read-only).

        :param list resources: ConfigResource objects with incremental_configs
        :param float request_timeout: accepted
        :param bool validate_only: check only
        :param int broker: accepted
        :returns: {ConfigResource: Future of None}"""
        if resources is None or isinstance(resources, str):
            raise TypeError("incremental_alter_configs takes a list of ConfigResource")
        resources = self._resources(resources, "incremental_alter_configs")
        C.options(kwargs, ("request_timeout", "validate_only", "broker"))
        out = {}
        for r in resources:
            entries = r.incremental_configs
            if not entries:
                raise ValueError("%r has no incremental_configs to apply" % (r,))
            for e in entries:
                if not isinstance(e, ConfigEntry):
                    raise TypeError("incremental_configs takes ConfigEntry objects, got %r" % (e,))
                if not isinstance(e.name, str):
                    raise TypeError("a ConfigEntry's name must be a str, got %r" % (e.name,))
                if not isinstance(e.incremental_operation, AlterConfigOpType):
                    raise TypeError("ConfigEntry %s needs an incremental_operation (AlterConfigOpType), got %r"
                                    % (e.name, e.incremental_operation))
            names = [e.name for e in entries]
            if len(set(names)) != len(names):
                out[r] = _failed(O.error(KafkaError._INVALID_ARG, "duplicate ConfigEntry names in %r: %s"
                                         % (r, sorted({n for n in names if names.count(n) > 1}))))
                continue
            out[r] = _done(O.alter_configs, self._ns, r, True, kwargs.get("validate_only", False))
        return out

    # -- consumer groups
    def _groups(self):
        if self._gs is None:
            self._gs = G.Groups(self._ns)
        return self._gs

    def _gidx(self, group_id):
        i = self._groups().group_index(group_id, create=False)
        if i is None:
            raise KafkaException(KafkaError(KafkaError.GROUP_ID_NOT_FOUND, "consumer group %r does not exist in "
                                            "namespace %r" % (group_id, self._ns.name)))
        return i

    def list_consumer_groups(self, **kwargs):
        """:param set states: only groups in these ConsumerGroupState values
        :param set types: only groups of these ConsumerGroupType values (also ``group_types``)
        :param float request_timeout: accepted
        :returns: Future of ListConsumerGroupsResult"""
        C.options(kwargs, ("request_timeout", "states", "types", "group_types"))
        states = kwargs.get("states")
        if states is not None:
            if not isinstance(states, set) or not all(isinstance(s, ConsumerGroupState) for s in states):
                raise TypeError("states must be a set of ConsumerGroupState")
        types = kwargs.get("types", kwargs.get("group_types"))
        if types is not None:
            if not isinstance(types, set) or not all(isinstance(t, ConsumerGroupType) for t in types):
                raise TypeError("types must be a set of ConsumerGroupType")

        def run():
            gs = self._groups()
            out = []
            for name, i in sorted(gs.groups().items()):
                _, state, _ = G.describe_group(gs, i)
                st = _STATES.get(state, ConsumerGroupState.UNKNOWN)
                if (states and st not in states) or (types and ConsumerGroupType.CONSUMER not in types):
                    continue
                out.append(ConsumerGroupListing(name, False, st, ConsumerGroupType.CONSUMER))
            return ListConsumerGroupsResult(out)
        return _done(run)

    def list_groups(self, group=None, timeout=-1):
        """The legacy group listing.

        :param str group: one group, or None for all
        :param float timeout: accepted
        :returns: list of GroupMetadata"""
        gs = self._groups()
        out = []
        for name, i in sorted(gs.groups().items()):
            if group is not None and name != group:
                continue
            members, state, strat = G.describe_group(gs, i)
            out.append(GroupMetadata(BrokerMetadata(self._ns.name), name, None, state, "consumer", strat, [
                GroupMember(m["member_id"], m["client_id"], "localhost/%d" % m["pid"]) for m in members]))
        return out

    def describe_consumer_groups(self, group_ids, **kwargs):
        """:param list group_ids: group ids
        :param bool include_authorized_operations: also list what this client may do
        :param float request_timeout: accepted
        :returns: {group_id: Future of ConsumerGroupDescription}"""
        if not isinstance(group_ids, list):
            raise TypeError("describe_consumer_groups takes a list of group ids")
        C.names(group_ids, "describe_consumer_groups")
        C.options(kwargs, ("request_timeout", "include_authorized_operations"))
        ops = [AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE] \
            if kwargs.get("include_authorized_operations") else None

        def one(g):
            gs = self._groups()
            members, state, strat = G.describe_group(gs, self._gidx(g))
            md = [MemberDescription(m["member_id"], m["client_id"], "localhost/%d" % m["pid"],
                                    MemberAssignment([TopicPartition(t, p) for t, p in m["assigned"]]),
                                    m["instance"], m["pid"], m["alive"]) for m in members]
            return ConsumerGroupDescription(g, False, md, strat, _STATES.get(state, ConsumerGroupState.UNKNOWN),
                                            host_node(self._ns.name), ops)
        return {g: _done(one, g) for g in group_ids}

    def _group_offsets(self, group_id, partitions=None):
        gs = self._groups()
        gidx = self._gidx(group_id)
        topics = self._ns.topics()
        by_id = {i.topic_id: i.name for i in topics.values()}
        if partitions is None:
            return sorted(TopicPartition(by_id[t], p, o) for (t, p), o in gs.group_offsets(gidx).items() if t in by_id)
        out = []
        for tp in partitions:
            info = topics.get(tp.topic)
            c = gs.committed(gidx, info.topic_id, tp.partition) if info is not None else None
            out.append(TopicPartition(tp.topic, tp.partition, OFFSET_INVALID if c is None else c))
        return out

    def list_consumer_group_offsets(self, list_consumer_group_offsets_request, **kwargs):
        """:param list list_consumer_group_offsets_request: one ConsumerGroupTopicPartitions
        :param bool require_stable: accepted
        :param float request_timeout: accepted
        :returns: {group_id: Future of ConsumerGroupTopicPartitions}"""
        C.group_request(list_consumer_group_offsets_request, "list_consumer_group_offsets",
                        ConsumerGroupTopicPartitions, alter=False)
        C.options(kwargs, ("request_timeout", "require_stable"))
        return {r.group_id: _done(lambda r=r: ConsumerGroupTopicPartitions(
            r.group_id, self._group_offsets(r.group_id, r.topic_partitions))) for r in list_consumer_group_offsets_request}

    def alter_consumer_group_offsets(self, alter_consumer_group_offsets_request, **kwargs):
        """Set committed offsets of a group that has no active member (as
        Kafka requires: stop the consumers first).

        :param list alter_consumer_group_offsets_request: one ConsumerGroupTopicPartitions with offsets
        :param float request_timeout: accepted
        :returns: {group_id: Future of ConsumerGroupTopicPartitions}"""
        C.group_request(alter_consumer_group_offsets_request, "alter_consumer_group_offsets",
                        ConsumerGroupTopicPartitions, alter=True)
        C.options(kwargs, ("request_timeout",))

        def run(r):
            gs = self._groups()
            gidx = gs.group_index(r.group_id)
            members, state, _ = G.describe_group(gs, gidx)
            if state != "Empty":
                raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS, "group %r has active members "
                                                "(%s): stop them before altering its offsets"
                                                % (r.group_id, ", ".join(str(m["pid"]) for m in members))))
            done = []
            for tp in r.topic_partitions or ():
                info = O.check_partition(self._ns, tp)
                if not gs.commit(gidx, info.topic_id, tp.partition, tp.offset, 0):
                    raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS, "a member of %r owns %s[%d]: "
                                                    "stop it first" % (r.group_id, tp.topic, tp.partition)))
                done.append(TopicPartition(tp.topic, tp.partition, tp.offset))
            return ConsumerGroupTopicPartitions(r.group_id, done)
        return {r.group_id: _done(run, r) for r in alter_consumer_group_offsets_request}

    def delete_consumer_groups(self, group_ids, **kwargs):
        """:param list group_ids: groups with no active member
        :param float request_timeout: accepted
        :returns: {group_id: Future of None}"""
        if not isinstance(group_ids, list):
            raise TypeError("delete_consumer_groups takes a list of group ids")
        C.names(group_ids, "delete_consumer_groups")
        C.options(kwargs, ("request_timeout",))

        def run(g):
            self._groups().delete_group(self._gidx(g))
        return {g: _done(run, g) for g in group_ids}

    # -- client
    def poll(self, timeout):
        """Serve callbacks (none are queued by an admin client here); waits
        out *timeout* seconds (None or < 0: until interrupted), in short sleeps
        so Ctrl-C interrupts it.

        :param float timeout: seconds
        :returns: the number of callbacks served (0)"""
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
            raise TypeError("timeout must be a number of seconds, got %s" % type(timeout).__name__)
        end = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        while True:
            left = 0.1 if end is None else min(0.1, end - time.monotonic())
            if left <= 0:
                return 0
            time.sleep(left)

    def close(self):
        """Detach from the namespace (the AdminClient is unusable afterwards).

        :returns: None."""
        if self._gs is not None:
            self._gs.close()
            self._gs = None
        self._ns.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["AdminClient", "NewTopic", "NewPartitions", "ConsumerGroupState", "ConsumerGroupListing",
           "ListConsumerGroupsResult", "ConsumerGroupDescription", "MemberDescription", "MemberAssignment",
           "ConsumerGroupTopicPartitions", "OffsetSpec", "ListOffsetsResultInfo", "ClusterMetadata", "TopicMetadata",
           "PartitionMetadata", "BrokerMetadata", "GroupMetadata", "GroupMember", "TopicPartition", "ConfigResource",
           "ConfigEntry", "ConfigSource", "ResourceType", "ResourcePatternType", "AlterConfigOpType", "AclBinding",
           "AclBindingFilter", "AclOperation", "AclPermissionType", "ScramMechanism", "ScramCredentialInfo",
           "UserScramCredentialAlteration", "UserScramCredentialUpsertion", "UserScramCredentialDeletion",
           "UserScramCredentialsDescription", "DeletedRecords", "TopicDescription", "DescribeClusterResult",
           "IsolationLevel", "ElectionType", "ConsumerGroupType", "TopicCollection", "Node", "TopicPartitionInfo",
           "Uuid", "KafkaException", "KafkaError", "OFFSET_INVALID"]
