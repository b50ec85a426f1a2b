"""AdminClient and NewTopic with confluent-kafka's shapes: every call
returns ``concurrent.futures.Future`` objects (here already completed: the
work is local and synchronous)."""
import concurrent.futures
import enum
import time

from shm.errors import KafkaError, KafkaException

from . import config as _config
from . import groups as G
from .message import OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, TopicPartition
from .namespace import Namespace, unknown_partition


class ConsumerGroupState(enum.Enum):
    UNKNOWN = 0
    PREPARING_REBALANCING = 1
    COMPLETING_REBALANCING = 2
    STABLE = 3
    DEAD = 4
    EMPTY = 5


_STATES = {"Stable": ConsumerGroupState.STABLE, "Empty": ConsumerGroupState.EMPTY,
           "PreparingRebalance": ConsumerGroupState.PREPARING_REBALANCING}


class ConsumerGroupListing:
    def __init__(self, group_id, is_simple_consumer_group, state=None, type=None):
        self.group_id, self.is_simple_consumer_group, self.state, self.type = \
            group_id, is_simple_consumer_group, state, type

    def __repr__(self):
        return "ConsumerGroupListing(%s, %s)" % (self.group_id, self.state)


class ListConsumerGroupsResult:
    def __init__(self, valid=None, errors=None):
        self.valid, self.errors = valid or [], errors or []


class MemberAssignment:
    def __init__(self, topic_partitions=None):
        self.topic_partitions = topic_partitions or []


class MemberDescription:
    def __init__(self, member_id, client_id, host, assignment, group_instance_id=None, pid=None, alive=None):
        self.member_id, self.client_id, self.host, self.assignment = member_id, client_id, host, assignment
        self.group_instance_id = group_instance_id
        self.pid, self.alive = pid, alive  # native extras: the member's process and whether it lives

    def __repr__(self):
        return "MemberDescription(%s, pid %s)" % (self.member_id, self.pid)


class ConsumerGroupDescription:
    def __init__(self, group_id, is_simple_consumer_group, members, partition_assignor, state, coordinator=None,
                 authorized_operations=None):
        self.group_id, self.is_simple_consumer_group, self.members = group_id, is_simple_consumer_group, members
        self.partition_assignor, self.state, self.coordinator = partition_assignor, state, coordinator
        self.authorized_operations = authorized_operations

    def __repr__(self):
        return "ConsumerGroupDescription(%s, %s, %d members)" % (self.group_id, self.state, len(self.members))


class ConsumerGroupTopicPartitions:
    def __init__(self, group_id, topic_partitions=None):
        self.group_id, self.topic_partitions = group_id, topic_partitions

    def __repr__(self):
        return "ConsumerGroupTopicPartitions(%s, %r)" % (self.group_id, self.topic_partitions)


class NewTopic:
    def __init__(self, topic, num_partitions=1, replication_factor=1, replica_assignment=None, config=None):
        self.topic = topic
        self.num_partitions = num_partitions
        self.replication_factor = replication_factor  # one host: accepted, ignored
        self.replica_assignment = replica_assignment
        self.config = dict(config or {})

    def __repr__(self):
        return "NewTopic(topic=%s,num_partitions=%d)" % (self.topic, self.num_partitions)


class PartitionMetadata:
    def __init__(self, pid):
        self.id, self.leader, self.replicas, self.isrs, self.error = pid, 0, [0], [0], None

    def __repr__(self):
        return "PartitionMetadata(%d)" % self.id


class TopicMetadata:
    def __init__(self, topic, partitions, error=None):
        self.topic = topic
        self.partitions = {p: PartitionMetadata(p) for p in range(partitions)}
        self.error = error

    def __repr__(self):
        return "TopicMetadata(%s, %d partitions)" % (self.topic, len(self.partitions))


class BrokerMetadata:
    def __init__(self, ns):
        self.id, self.host, self.port = 0, "shm://" + ns, 0

    def __repr__(self):
        return "BrokerMetadata(%d, %s)" % (self.id, self.host)


class ClusterMetadata:
    def __init__(self, ns, topics):
        self.cluster_id = "shm-" + ns
        self.controller_id = 0
        self.brokers = {0: BrokerMetadata(ns)}
        self.topics = topics
        self.orig_broker_id = 0
        self.orig_broker_name = "shm://" + ns


def cluster_metadata(ns, topic=None):
    if topic is not None:
        try:
            t = ns.topic(topic)
        except KafkaException as exc:
            return ClusterMetadata(ns.name, {topic: TopicMetadata(topic, 0, exc.args[0])})
        return ClusterMetadata(ns.name, {topic: TopicMetadata(topic, t.partitions)})
    return ClusterMetadata(ns.name, {n: TopicMetadata(n, t.partitions) for n, t in ns.topics().items()})


class OffsetSpec:
    """Which offset list_offsets returns: earliest, latest, or the first at
    or after a timestamp (epoch ms)."""

    def __init__(self, kind, timestamp=None):
        self.kind, self.timestamp = kind, timestamp

    @classmethod
    def earliest(cls):
        return cls("earliest")

    @classmethod
    def latest(cls):
        return cls("latest")

    @classmethod
    def for_timestamp(cls, timestamp):
        return cls("timestamp", int(timestamp))


class ListOffsetsResultInfo:
    def __init__(self, offset, timestamp, leader_epoch=None):
        self.offset, self.timestamp, self.leader_epoch = offset, timestamp, leader_epoch

    def __repr__(self):
        return "ListOffsetsResultInfo(offset=%d, timestamp=%d)" % (self.offset, self.timestamp)


def _done(fn, *args):
    f = concurrent.futures.Future()
    try:
        f.set_result(fn(*args))
    except Exception as exc:  # the future carries it, as confluent-kafka's do
        f.set_exception(exc)
    return f


def log_start(log, retention_ms):
    """The topic's low watermark: the ring's, moved past records older than
    retention.ms (Kafka deletes those; here they are skipped)."""
    lo, hi = log.watermarks()
    if retention_ms is None or retention_ms < 0:
        return lo
    return max(lo, offset_for_time(log, time.time_ns() // 1_000_000 - retention_ms))


def offset_for_time(log, ts_ms):
    """The first offset whose timestamp is >= ts_ms (binary search over the
    retained records; timestamps are assumed non-decreasing, as with
    CreateTime from one clock), or the high watermark."""
    lo, hi = log.watermarks()
    target = ts_ms * 1_000_000
    a, b = lo, hi
    while a < b:
        m = (a + b) // 2
        r = log.read(m)
        o = m
        while r.status in ("tombstone", "corrupt") and o + 1 < b:
            o += 1
            r = log.read(o)
        if r.status != "ok":
            a = m + 1
            continue
        if r.timestamp_ns >= target:
            b = m
        else:
            a = o + 1
    return a


class AdminClient:
    def __init__(self, config=None, **kwargs):
        self._conf = _config.parse(config, kwargs, "admin")
        self._ns = Namespace(_config.resolve_namespace(self._conf), mode=self._conf.get("shm.mode"))

    def create_topics(self, new_topics, operation_timeout=0, request_timeout=-1, validate_only=False):
        names = [nt.topic for nt in new_topics]
        if len(set(names)) != len(names):
            raise ValueError("duplicate topics in create_topics: %s" % sorted({n for n in names if names.count(n) > 1}))
        out = {}
        for nt in new_topics:
            if validate_only:
                out[nt.topic] = _done(lambda nt=nt: None)
            else:
                out[nt.topic] = _done(lambda nt=nt: (self._ns.create_topic(nt.topic, nt.num_partitions, nt.config),
                                                     None)[1])
        return out

    def delete_topics(self, topics, operation_timeout=0, request_timeout=-1):
        if len(set(topics)) != len(topics):
            raise ValueError("duplicate topics in delete_topics")
        return {t: _done(lambda t=t: (self._ns.delete_topic(t), None)[1]) for t in topics}

    def list_topics(self, topic=None, timeout=-1):
        return cluster_metadata(self._ns, topic)

    def list_offsets(self, topic_partition_offsets, isolation_level=None, request_timeout=-1):
        out = {}
        for tp, spec in topic_partition_offsets.items():
            out[tp] = _done(self._list_offset, tp, spec)
        return out

    def _list_offset(self, tp, spec):
        info = self._ns.topic(tp.topic)
        if not 0 <= tp.partition < info.partitions:
            raise KafkaException(unknown_partition(tp.topic, info.partitions, tp.partition))
        log = self._ns.open_partition(info, tp.partition)
        try:
            lo, hi = log_start(log, info.retention_ms), log.watermarks()[1]
            kind = spec.kind if isinstance(spec, OffsetSpec) else {OFFSET_BEGINNING: "earliest",
                                                                   OFFSET_END: "latest"}.get(spec)
            if kind == "earliest":
                return ListOffsetsResultInfo(lo, -1)
            if kind == "latest":
                return ListOffsetsResultInfo(hi, -1)
            if kind == "timestamp":
                o = offset_for_time(log, spec.timestamp)
                r = log.read(o) if o < hi else None
                return ListOffsetsResultInfo(o, r.timestamp_ns // 1_000_000 if r is not None and r.status == "ok"
                                             else -1)
            raise ValueError("list_offsets takes OffsetSpec values, got %r" % (spec,))
        finally:
            log.close()

    # -- consumer groups
    def _groups(self):
        if getattr(self, "_gs", None) is None:
            self._gs = G.Groups(self._ns)
        return self._gs

    def _gidx(self, group_id):
        i = self._groups().group_index(group_id, create=False)
        if i is None:
            raise KafkaException(KafkaError(KafkaError.GROUP_ID_NOT_FOUND, "consumer group %r does not exist in "
                                            "namespace %r" % (group_id, self._ns.name)))
        return i

    def list_consumer_groups(self, request_timeout=-1, states=None, types=None):
        def run():
            gs = self._groups()
            out = []
            for name, i in sorted(gs.groups().items()):
                _, state, _ = G.describe_group(gs, i)
                st = _STATES.get(state, ConsumerGroupState.UNKNOWN)
                if states and st not in states:
                    continue
                out.append(ConsumerGroupListing(name, False, st))
            return ListConsumerGroupsResult(out)
        return _done(run)

    def describe_consumer_groups(self, group_ids, request_timeout=-1, include_authorized_operations=False):
        def one(g):
            gs = self._groups()
            members, state, strat = G.describe_group(gs, self._gidx(g))
            md = [MemberDescription(m["member_id"], m["client_id"], "localhost/%d" % m["pid"],
                                    MemberAssignment([TopicPartition(t, p) for t, p in m["assigned"]]),
                                    m["instance"], m["pid"], m["alive"]) for m in members]
            return ConsumerGroupDescription(g, False, md, strat, _STATES.get(state, ConsumerGroupState.UNKNOWN))
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

    def list_consumer_group_offsets(self, list_consumer_group_offsets_request, require_stable=False,
                                    request_timeout=-1):
        return {r.group_id: _done(lambda r=r: ConsumerGroupTopicPartitions(
            r.group_id, self._group_offsets(r.group_id, r.topic_partitions))) for r in list_consumer_group_offsets_request}

    def alter_consumer_group_offsets(self, alter_consumer_group_offsets_request, request_timeout=-1):
        """Set committed offsets of a group that has no active member (as
        Kafka requires: stop the consumers first)."""
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
                info = self._ns.topic(tp.topic)
                if not 0 <= tp.partition < info.partitions:
                    raise KafkaException(unknown_partition(tp.topic, info.partitions, tp.partition))
                if tp.offset < 0:
                    raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "offset for %s[%d] must be >= 0, got %d"
                                                    % (tp.topic, tp.partition, tp.offset)))
                if not gs.commit(gidx, info.topic_id, tp.partition, tp.offset, 0):
                    raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS, "a member of %r owns %s[%d]: "
                                                    "stop it first" % (r.group_id, tp.topic, tp.partition)))
                done.append(TopicPartition(tp.topic, tp.partition, tp.offset))
            return ConsumerGroupTopicPartitions(r.group_id, done)
        return {r.group_id: _done(run, r) for r in alter_consumer_group_offsets_request}

    def delete_consumer_groups(self, group_ids, request_timeout=-1):
        def run(g):
            self._groups().delete_group(self._gidx(g))
        return {g: _done(run, g) for g in group_ids}

    def close(self):
        if getattr(self, "_gs", None) is not None:
            self._gs.close()
            self._gs = None
        self._ns.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["AdminClient", "NewTopic", "ConsumerGroupState", "ConsumerGroupListing", "ListConsumerGroupsResult",
           "ConsumerGroupDescription", "MemberDescription", "MemberAssignment", "ConsumerGroupTopicPartitions", "OffsetSpec", "ListOffsetsResultInfo", "ClusterMetadata", "TopicMetadata",
           "PartitionMetadata", "BrokerMetadata", "TopicPartition"]
