"""broker.kafka.admin as confluent_kafka.admin: configs, create_partitions,
delete_records, list_offsets, describe_topics/cluster, poll, the calls one
host cannot serve, and confluent's argument checks - on real topics of a
test namespace."""
import concurrent.futures
import time

import pytest

import broker.kafka.admin as KA
from broker import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from broker.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                          AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, ConsumerGroupState,
                          ConsumerGroupTopicPartitions, ConsumerGroupType, ElectionType, IsolationLevel,
                          NewPartitions, NewTopic, OffsetSpec, ResourcePatternType, ResourceType, ScramCredentialInfo,
                          ScramMechanism, TopicCollection, UserScramCredentialDeletion, UserScramCredentialUpsertion)
from broker.message import OFFSET_BEGINNING
from broker.partitioner import get as partitioner


def conf(ns, **kw):
    c = {"bootstrap.servers": "shm://" + ns}
    c.update(kw)
    return c


def topic(a, name, partitions=1, **config):
    a.create_topics([NewTopic(name, partitions, config={k.replace("_", "."): v for k, v in config.items()})])[
        name].result()


def one(fs):
    """The result of the only future of a dict of futures."""
    assert len(fs) == 1
    return next(iter(fs.values())).result()


def fails(f, code):
    exc = f.exception(timeout=5)
    assert isinstance(exc, KafkaException), exc
    assert exc.args[0].code() == code, exc.args[0]
    return exc.args[0].str()


def poll_until(consumers, pred, what, timeout=20):
    got = []
    end = time.monotonic() + timeout
    while not pred(got):
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for %s; got %r" % (what, [(m.partition(), m.offset()) for m in got]))
        for c in consumers:
            m = c.poll(0.02)
            if m is not None:
                got.append(m)
    return got


# -- configs
def _configs(a, name):
    r = ConfigResource(ResourceType.TOPIC, name)
    return a.describe_configs([r])[r].result()


def _alter(a, name, *entries, **kw):
    r = ConfigResource("topic", name, incremental_configs=[ConfigEntry(k, v, incremental_operation=op)
                                                           for k, op, v in entries])
    return a.incremental_alter_configs([r], **kw)[r]


def test_describe_configs_values_and_sources(ns):
    with AdminClient(conf(ns)) as a:
        topic(a, "t", 2, retention_ms="60000", retention_bytes=100000)
        cfg = _configs(a, "t")
        assert cfg["retention.ms"].value == "60000"
        assert cfg["retention.ms"].source is ConfigSource.DYNAMIC_TOPIC_CONFIG and not cfg["retention.ms"].is_default
        assert not cfg["retention.ms"].is_read_only
        assert cfg["retention.bytes"].value == str(1 << 17)  # rings are powers of two
        assert cfg["retention.bytes"].is_read_only and not cfg["retention.bytes"].is_default
        assert cfg["shm.overflow"].value == "overwrite" and cfg["shm.overflow"].is_default
        assert cfg["cleanup.policy"].value == "delete" and cfg["cleanup.policy"].is_read_only
        assert cfg["max.message.bytes"].source is ConfigSource.DEFAULT_CONFIG
        b = ConfigResource(ResourceType.BROKER, "0")
        assert a.describe_configs([b])[b].result()["broker.id"].value == "0"
        bad = [ConfigResource(ResourceType.BROKER, "1"), ConfigResource(ResourceType.GROUP, "g"),
               ConfigResource(ResourceType.TOPIC, "nope")]
        fs = a.describe_configs(bad)
        assert "one host is one broker" in fails(fs[bad[0]], 42)
        assert "not supported on one host" in fails(fs[bad[1]], -170)
        fails(fs[bad[2]], KafkaError.UNKNOWN_TOPIC_OR_PART)


def test_broker_config_auto_create_follows_the_namespace(ns):
    from broker.autocreate import set_auto_create
    b = ConfigResource(ResourceType.BROKER, "0")
    with AdminClient(conf(ns)) as a:
        e = a.describe_configs([b])[b].result()["auto.create.topics.enable"]
        assert (e.value, e.is_default, e.is_read_only) == ("true", True, True)  # Kafka's default
        set_auto_create(a._ns, False)
        e = a.describe_configs([b])[b].result()["auto.create.topics.enable"]
        assert (e.value, e.is_default) == ("false", False)
        with pytest.raises(KafkaException, match="unknown topic 'nope'.*auto.create.topics.enable is off"):
            with Producer(conf(ns)) as p:
                p.produce("nope", b"v")
        assert a.describe_configs([b])[b].result()["num.partitions"].value == "1"


def test_incremental_alter_configs_round_trip(ns):
    with AdminClient(conf(ns)) as a:
        topic(a, "t")
        assert _configs(a, "t")["retention.ms"].value == "-1"
        assert _alter(a, "t", ("retention.ms", AlterConfigOpType.SET, "5000")).result() is None
        e = _configs(a, "t")["retention.ms"]
        assert (e.value, e.source, e.is_default) == ("5000", ConfigSource.DYNAMIC_TOPIC_CONFIG, False)
        assert a._ns.topic("t").retention_ms == 5000  # what every client reads
        # validate_only changes nothing
        _alter(a, "t", ("retention.ms", AlterConfigOpType.SET, "7000"), validate_only=True).result()
        assert _configs(a, "t")["retention.ms"].value == "5000"
        # the ring's keys: to the value they have is a no-op, to another a clear error
        _alter(a, "t", ("retention.bytes", AlterConfigOpType.SET, str(64 << 20))).result()
        msg = fails(_alter(a, "t", ("retention.bytes", AlterConfigOpType.SET, "1000000")), KafkaError.INVALID_CONFIG)
        assert "read-only" in msg and "create a new topic" in msg
        fails(_alter(a, "t", ("shm.overflow", AlterConfigOpType.SET, "block")), KafkaError.INVALID_CONFIG)
        # a change that fails applies nothing of its resource
        fails(_alter(a, "t", ("retention.ms", AlterConfigOpType.SET, "9000"),
                     ("max.message.bytes", AlterConfigOpType.SET, "10")), KafkaError.INVALID_CONFIG)
        assert _configs(a, "t")["retention.ms"].value == "5000"
        assert "unknown topic config" in fails(_alter(a, "t", ("retention.mss", AlterConfigOpType.SET, "1")),
                                               KafkaError.INVALID_CONFIG)
        fails(_alter(a, "t", ("retention.ms", AlterConfigOpType.SET, "soon")), KafkaError.INVALID_CONFIG)
        fails(_alter(a, "t", ("retention.ms", AlterConfigOpType.APPEND, "1")), KafkaError.INVALID_CONFIG)
        fails(_alter(a, "t", ("cleanup.policy", AlterConfigOpType.SET, "compact")), KafkaError.INVALID_CONFIG)
        fails(_alter(a, "t", ("retention.ms", AlterConfigOpType.SET, "1"),
                     ("retention.ms", AlterConfigOpType.DELETE, None)), KafkaError._INVALID_ARG)
        # DELETE reverts to the default
        _alter(a, "t", ("retention.ms", AlterConfigOpType.DELETE, None)).result()
        assert _configs(a, "t")["retention.ms"].is_default
        fails(_alter(a, "nope", ("retention.ms", AlterConfigOpType.SET, "1")), KafkaError.UNKNOWN_TOPIC_OR_PART)


def test_alter_configs_replaces_and_delta_round_trip(ns):
    with AdminClient(conf(ns)) as a:
        topic(a, "t", retention_ms="60000", retention_bytes=1 << 20)
        r = ConfigResource("topic", "t", set_config={"retention.ms": "1234"})
        with pytest.warns(DeprecationWarning):
            assert a.alter_configs([r])[r].result() is None
        assert _configs(a, "t")["retention.ms"].value == "1234"
        with pytest.warns(DeprecationWarning):
            a.alter_configs([ConfigResource("topic", "t")])[ConfigResource("topic", "t")].result()
        assert _configs(a, "t")["retention.ms"].value == "-1"  # not given: back to its default
        # describe, set every non-default value back with one change: what the delta example does
        r = ConfigResource("topic", "t", set_config={"retention.ms": "777"})
        for k, e in _configs(a, "t").items():
            if not e.is_default:
                r.set_config(k, e.value, overwrite=False)
        assert r.set_config_dict["retention.bytes"] == str(1 << 20)
        with pytest.warns(DeprecationWarning):
            a.alter_configs([r])[r].result()
        assert _configs(a, "t")["retention.ms"].value == "777"
        b = ConfigResource("broker", "0", set_config={"log.retention.ms": "1"})
        with pytest.warns(DeprecationWarning):
            fails(a.alter_configs([b])[b], 44)


def test_retention_ms_change_moves_the_earliest_offset(ns):
    with AdminClient(conf(ns)) as a, Producer(conf(ns)) as p:
        topic(a, "t")
        now = int(time.time() * 1000)
        for i in range(10):
            p.produce("t", b"%d" % i, timestamp=now - 3_600_000 if i < 6 else now)
        p.flush()
        tp = TopicPartition("t", 0)
        assert one(a.list_offsets({tp: OffsetSpec.earliest()})).offset == 0
        _alter(a, "t", ("retention.ms", AlterConfigOpType.SET, "60000")).result()
        assert one(a.list_offsets({tp: OffsetSpec.earliest()})).offset == 6
        with Consumer(conf(ns, **{"auto.offset.reset": "earliest"})) as c:  # assigned after the change
            c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
            got = poll_until([c], lambda g: len(g) >= 4, "the retained records")
        assert [m.offset() for m in got] == [6, 7, 8, 9]


# -- create_partitions
def test_create_partitions_grows_the_topic(ns):
    with AdminClient(conf(ns)) as a:
        topic(a, "t", 2)
        assert one(a.create_partitions([NewPartitions("t", 5)])) is None
        assert sorted(a.list_topics().topics["t"].partitions) == [0, 1, 2, 3, 4]
        assert len(a.describe_topics(TopicCollection(["t"]))["t"].result().partitions) == 5
        assert "must be higher" in fails(a.create_partitions([NewPartitions("t", 5)])["t"], KafkaError.INVALID_PARTITIONS)
        fails(a.create_partitions([NewPartitions("t", 3)])["t"], KafkaError.INVALID_PARTITIONS)
        fails(a.create_partitions([NewPartitions("t", 5000)])["t"], KafkaError.INVALID_PARTITIONS)
        fails(a.create_partitions([NewPartitions("nope", 3)])["nope"], KafkaError.UNKNOWN_TOPIC_OR_PART)
        fails(a.create_partitions([NewPartitions("t", 7, replica_assignment=[[1], [2]])])["t"], 39)
        assert one(a.create_partitions([NewPartitions("t", 8)], validate_only=True)) is None
        assert len(a.list_topics().topics["t"].partitions) == 5  # validate_only made nothing
        tp = TopicPartition("t", 4)
        assert one(a.list_offsets({tp: OffsetSpec.latest()})).offset == 0


def test_running_producer_and_group_consumer_use_new_partitions(ns):
    with AdminClient(conf(ns)) as a:
        topic(a, "t", 2)
        p = Producer(conf(ns))
        c = Consumer(conf(ns, **{"group.id": "g", "auto.offset.reset": "earliest"}))
        try:
            c.subscribe(["t"])
            p.produce("t", b"before", partition=1)
            p.flush()
            poll_until([c], lambda g: any(m.error() is None for m in g), "the first record")
            assert sorted(x.partition for x in c.assignment()) == [0, 1]
            keys = [b"k%d" % i for i in range(64)]
            place = partitioner("murmur2_random")
            assert max(place(k, 2) for k in keys) == 1
            a.create_partitions([NewPartitions("t", 4)])["t"].result()
            # the running producer: keyed records spread over 4 partitions (the placement changes, as on Kafka)
            for k in keys:
                p.produce("t", b"v", key=k)
            p.produce("t", b"lean", partition=3)  # an explicit new partition
            p.poll(0)
            want = {place(k, 4) for k in keys}
            assert {2, 3} <= want
            lw = {q: one(a.list_offsets({TopicPartition("t", q): OffsetSpec.latest()})).offset for q in range(4)}
            assert lw[3] == sum(place(k, 4) == 3 for k in keys) + 1
            assert lw[2] == sum(place(k, 4) == 2 for k in keys)
            # the running group member: the new partitions are assigned to it and read
            got = poll_until([c], lambda g: sum(m.error() is None and m.partition() in (2, 3) for m in g)
                             >= lw[2] + lw[3], "every record of new partitions 2 and 3")
            assert sorted(x.partition for x in c.assignment()) == [0, 1, 2, 3]
            assert [m.offset() for m in got if m.error() is None and m.partition() == 3] == list(range(lw[3]))
            assert b"lean" in [m.value() for m in got if m.error() is None and m.partition() == 3]
        finally:
            c.close()
            p.close()


# -- delete_records
def _fill(ns, name, n, partition=0):
    with Producer(conf(ns)) as p:
        for i in range(n):
            p.produce(name, b"%d" % i, partition=partition)
        p.flush()


def test_delete_records_moves_the_low_watermark(ns):
    with AdminClient(conf(ns)) as a:
        topic(a, "t", 2)
        _fill(ns, "t", 10)
        tp = TopicPartition("t", 0, 4)
        assert one(a.delete_records([tp])).low_watermark == 4
        assert one(a.list_offsets({TopicPartition("t", 0): OffsetSpec.earliest()})).offset == 4
        assert one(a.delete_records([TopicPartition("t", 0, 2)])).low_watermark == 4  # never back
        with Consumer(conf(ns)) as c:
            assert c.get_watermark_offsets(TopicPartition("t", 0)) == (4, 10)
        msg = fails(a.delete_records([TopicPartition("t", 0, 11)])[TopicPartition("t", 0)],
                    KafkaError.OFFSET_OUT_OF_RANGE)
        assert "[4, 10)" in msg
        fails(a.delete_records([TopicPartition("t", 7, 1)])[TopicPartition("t", 7)], KafkaError._UNKNOWN_PARTITION)
        fails(a.delete_records([TopicPartition("nope", 0, 1)])[TopicPartition("nope", 0)],
              KafkaError.UNKNOWN_TOPIC_OR_PART)
        # OFFSET_END: every record; the other partition is untouched
        assert one(a.delete_records([TopicPartition("t", 0, -1)])).low_watermark == 10
        assert one(a.list_offsets({TopicPartition("t", 1): OffsetSpec.earliest()})).offset == 0
        _fill(ns, "t", 3)
        assert one(a.list_offsets({TopicPartition("t", 0): OffsetSpec.earliest()})).offset == 10
        assert one(a.list_offsets({TopicPartition("t", 0): OffsetSpec.latest()})).offset == 13


def test_reader_below_deleted_records_is_reset(ns):
    with AdminClient(conf(ns)) as a:
        topic(a, "t")
        _fill(ns, "t", 10)
        early = Consumer(conf(ns, **{"auto.offset.reset": "earliest"}))
        strict = Consumer(conf(ns, **{"auto.offset.reset": "error"}))
        try:
            early.assign([TopicPartition("t", 0, 2)])
            strict.assign([TopicPartition("t", 0, 2)])
            a.delete_records([TopicPartition("t", 0, 6)])[TopicPartition("t", 0)].result()
            got = poll_until([early], lambda g: len(g) >= 4, "the records left")
            assert [m.offset() for m in got] == [6, 7, 8, 9]
            ev = poll_until([strict], lambda g: len(g) >= 1, "an auto.offset.reset event")[0]
            assert ev.error() is not None and ev.error().code() == KafkaError._AUTO_OFFSET_RESET
        finally:
            early.close()
            strict.close()
        # a group whose commit is below the new start resumes there
        with Consumer(conf(ns, **{"group.id": "g", "auto.offset.reset": "earliest"})) as c:
            c.assign([TopicPartition("t", 0, 1)])
            c.commit(offsets=[TopicPartition("t", 0, 1)], asynchronous=False)
        a.delete_records([TopicPartition("t", 0, 8)])[TopicPartition("t", 0)].result()
        with Consumer(conf(ns, **{"group.id": "g", "auto.offset.reset": "earliest"})) as c:
            c.subscribe(["t"])
            got = poll_until([c], lambda g: sum(m.error() is None for m in g) >= 2, "the group's records")
        assert [m.offset() for m in got if m.error() is None] == [8, 9]


def test_delete_records_frees_a_block_mode_ring(ns):
    with AdminClient(conf(ns)) as a:
        topic(a, "b", retention_bytes=4096, shm_overflow="block", shm_slots=16)
        with Producer(conf(ns, **{"shm.block.timeout.ms": 50})) as p:
            n = 0
            with pytest.raises(BufferError):
                for n in range(100):
                    p.produce("b", b"x" * 64, partition=0)
            assert 0 < n < 100
            a.delete_records([TopicPartition("b", 0, n)])[TopicPartition("b", 0)].result()
            for _ in range(n):  # room again: nothing holds the deleted records
                p.produce("b", b"y" * 64, partition=0)
        lo = one(a.list_offsets({TopicPartition("b", 0): OffsetSpec.earliest()})).offset
        assert lo == n


# -- list_offsets, describe_topics, describe_cluster
def test_list_offsets_specs(ns):
    with AdminClient(conf(ns)) as a, Producer(conf(ns)) as p:
        topic(a, "t", 2)
        for i, ts in enumerate((1000, 2000, 3000, 4000)):
            p.produce("t", b"%d" % i, partition=0, timestamp=ts)
        for ts in (500, 9000, 7000):
            p.produce("t", b"x", partition=1, timestamp=ts)
        p.flush()
        t0, t1 = TopicPartition("t", 0), TopicPartition("t", 1)
        r = a.list_offsets({t0: OffsetSpec.for_timestamp(2500), t1: OffsetSpec.max_timestamp()},
                           isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=5)
        assert [(k.partition, k.offset) for k in sorted(r)] == [(0, 2500), (1, -3)]
        assert (r[t0].result().offset, r[t0].result().timestamp) == (2, 3000)
        assert (r[t1].result().offset, r[t1].result().timestamp) == (1, 9000)
        assert one(a.list_offsets({t0: OffsetSpec.for_timestamp(1000)})).offset == 0
        assert one(a.list_offsets({t0: OffsetSpec.for_timestamp(5000)})).offset == -1
        assert one(a.list_offsets({t0: OffsetSpec(-1)})).offset == 4
        assert one(a.list_offsets({t0: OffsetSpec(-2)})).offset == 0
        assert one(a.list_offsets({t0: OffsetSpec(4000)})).timestamp == 4000
        fails(a.list_offsets({TopicPartition("t", 5): OffsetSpec.latest()})[TopicPartition("t", 5)],
              KafkaError._UNKNOWN_PARTITION)
        assert a.list_offsets({}) == {}


def test_describe_topics_and_cluster(ns):
    with AdminClient(conf(ns)) as a:
        topic(a, "t", 3)
        d = a.describe_topics(TopicCollection(["t", "nope"]), include_authorized_operations=True)
        t = d["t"].result()
        assert (t.name, t.is_internal, [x.id for x in t.partitions]) == ("t", False, [0, 1, 2])
        assert {x.leader.id for x in t.partitions} == {0} and all(len(x.isr) == 1 for x in t.partitions)
        assert AclOperation.WRITE in t.authorized_operations
        assert len(str(t.topic_id)) == 22
        fails(d["nope"], KafkaError.UNKNOWN_TOPIC_OR_PART)
        again = a.describe_topics(TopicCollection(["t"]))["t"].result()
        assert again.topic_id == t.topic_id and again.authorized_operations is None
        a.delete_topics(["t"])["t"].result()
        topic(a, "t", 1)
        assert a.describe_topics(TopicCollection(["t"]))["t"].result().topic_id != t.topic_id  # a new incarnation
        assert a.describe_topics(TopicCollection([])) == {}
        c = a.describe_cluster().result()
        assert c.cluster_id == "shm-" + ns and [n.id for n in c.nodes] == [0] and c.controller.host == "shm://" + ns
        assert c.authorized_operations is None
        assert AclOperation.DESCRIBE in a.describe_cluster(include_authorized_operations=True).result(
            ).authorized_operations


def test_groups_listing_shapes(ns):
    with AdminClient(conf(ns)) as a:
        topic(a, "t")
        with Consumer(conf(ns, **{"group.id": "g"})) as c:
            c.subscribe(["t"])
            poll_until([c], lambda g: bool(c.assignment()), "an assignment", timeout=20)
            lst = a.list_consumer_groups(states={ConsumerGroupState.STABLE},
                                         types={ConsumerGroupType.CONSUMER}).result().valid
            assert [(x.group_id, x.group_type) for x in lst] == [("g", ConsumerGroupType.CONSUMER)]
            assert a.list_consumer_groups(types={ConsumerGroupType.CLASSIC}).result().valid == []
            groups = a.list_groups()
            assert [(g.id, len(g.members)) for g in groups] == [("g", 1)]
            d = a.describe_consumer_groups(["g"], include_authorized_operations=True)["g"].result()
            assert d.coordinator.id == 0 and AclOperation.READ in d.authorized_operations


# -- what one host does not have
def test_unsupported_calls_fail_clearly(ns):
    acl = AclBinding(ResourceType.TOPIC, "t", ResourcePatternType.LITERAL, "User:u", "*", AclOperation.READ,
                     AclPermissionType.ALLOW)
    flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                           AclPermissionType.ANY)
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096)
    with AdminClient(conf(ns)) as a:
        futures = [*a.create_acls([acl]).values(), a.describe_acls(flt), *a.delete_acls([flt]).values()]
        for f in futures:
            assert "ACLs: not supported on one host" in fails(f, 54)
        futures = [a.describe_user_scram_credentials(), *a.describe_user_scram_credentials(["u"]).values(),
                   *a.alter_user_scram_credentials([UserScramCredentialUpsertion("u", info, b"pw"),
                                                    UserScramCredentialDeletion("v", ScramMechanism.SCRAM_SHA_512)
                                                    ]).values(),
                   a.elect_leaders(ElectionType.PREFERRED, [TopicPartition("t", 0)])]
        for f in futures:
            assert "not supported on one host" in fails(f, -170)
        with pytest.raises(KafkaException, match="SASL: not supported on one host"):
            a.set_sasl_credentials("u", "p")


def test_poll_waits_out_its_timeout(ns):
    with AdminClient(conf(ns)) as a:
        t0 = time.monotonic()
        assert a.poll(0.2) == 0
        assert time.monotonic() - t0 >= 0.2
        with pytest.raises(TypeError):
            a.poll("soon")
        with pytest.raises(TypeError):
            a.poll()


# -- confluent's argument checks
def test_argument_checks(ns):
    with pytest.raises(TypeError):
        AdminClient()
    tp = TopicPartition("t", 0, 10)
    acl = AclBinding(ResourceType.TOPIC, "t", ResourcePatternType.LITERAL, "User:u", "*", AclOperation.READ,
                     AclPermissionType.ALLOW)
    flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                           AclPermissionType.ANY)
    with AdminClient(conf(ns)) as a:
        bad = [
            (TypeError, lambda: a.create_topics(None)),
            (ValueError, lambda: a.create_topics([])),
            (ValueError, lambda: a.create_topics(["t"])),
            (TypeError, lambda: a.create_topics([NewTopic("t")], validate_only="maybe")),
            (ValueError, lambda: a.create_topics([NewTopic("t")], request_timeout=-5)),
            (ValueError, lambda: a.create_topics([NewTopic("t")], operation_timeout=-4.5)),
            (TypeError, lambda: a.create_topics([NewTopic("t")], unknown_operation=1)),
            (TypeError, lambda: NewTopic("t", 1, 1, config=["not", "a dict"])),
            (ValueError, lambda: a.delete_topics([None, "t"])),
            (ValueError, lambda: a.delete_topics([])),
            (TypeError, lambda: a.delete_topics(["t"], validate_only=True)),
            (TypeError, lambda: a.create_partitions(None)),
            (ValueError, lambda: a.create_partitions([])),
            (ValueError, lambda: a.create_partitions([None, NewPartitions("t", 2)])),
            (TypeError, lambda: NewPartitions("t", "2")),
            (ValueError, lambda: a.describe_configs([])),
            (ValueError, lambda: a.describe_configs([None, ConfigResource("topic", "t")])),
            (ValueError, lambda: ConfigResource("no such type", "t")),
            (ValueError, lambda: ConfigResource(ResourceType.TOPIC, None)),
            (TypeError, lambda: a.incremental_alter_configs(None)),
            (TypeError, lambda: a.incremental_alter_configs("t")),
            (ValueError, lambda: a.incremental_alter_configs([])),
            (ValueError, lambda: a.incremental_alter_configs([ConfigResource("topic", "t")])),
            (TypeError, lambda: a.incremental_alter_configs([ConfigResource("topic", "t", incremental_configs=[
                ConfigEntry("retention.ms", "1", incremental_operation="SET")])])),
            (TypeError, lambda: a.incremental_alter_configs([ConfigResource("topic", "t", incremental_configs=[
                ConfigEntry(5, "1", incremental_operation=AlterConfigOpType.SET)])])),
            (TypeError, lambda: a.incremental_alter_configs([ConfigResource("topic", "t", incremental_configs="x")])),
            (TypeError, lambda: a.delete_records(None)),
            (TypeError, lambda: a.delete_records(["t"])),
            (ValueError, lambda: a.delete_records([TopicPartition("")])),
            (ValueError, lambda: a.delete_records([TopicPartition("t")])),
            (ValueError, lambda: a.delete_records([tp, TopicPartition("t", 0, 3)])),
            (TypeError, lambda: a.list_offsets(None)),
            (TypeError, lambda: a.list_offsets({tp: OffsetSpec.earliest()}, isolation_level=1)),
            (TypeError, lambda: a.list_offsets({tp: OffsetSpec.earliest()}, request_timeout="x")),
            (ValueError, lambda: a.list_offsets({tp: OffsetSpec.earliest()}, request_timeout=-1)),
            (ValueError, lambda: a.list_offsets({TopicPartition("", 0): OffsetSpec.earliest()})),
            (ValueError, lambda: a.list_offsets({TopicPartition("t", -1): OffsetSpec.earliest()})),
            (TypeError, lambda: a.list_offsets({"t": OffsetSpec.latest()})),
            (TypeError, lambda: a.list_offsets({tp: "latest"})),
            (TypeError, lambda: a.describe_topics(["t"])),
            (TypeError, lambda: a.describe_topics(TopicCollection([3]))),
            (ValueError, lambda: a.describe_topics(TopicCollection(["ok", ""]))),
            (TypeError, lambda: a.describe_topics(TopicCollection([]), include_authorized_operations="yes")),
            (TypeError, lambda: a.describe_cluster(unknown_operation=1)),
            (TypeError, lambda: a.describe_consumer_groups("g")),
            (ValueError, lambda: a.describe_consumer_groups([])),
            (TypeError, lambda: a.delete_consumer_groups("g")),
            (TypeError, lambda: a.list_consumer_groups(states=[ConsumerGroupState.EMPTY])),
            (TypeError, lambda: a.list_consumer_groups(group_types=[ConsumerGroupType.CLASSIC])),
            (ValueError, lambda: a.list_consumer_group_offsets([])),
            (TypeError, lambda: a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(1)])),
            (ValueError, lambda: a.list_consumer_group_offsets([ConsumerGroupTopicPartitions("g", [tp])])),
            (ValueError, lambda: a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions("g")])),
            (ValueError, lambda: a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
                "g", [TopicPartition("t", 0, -1001)])])),
            (TypeError, lambda: a.create_acls(None)),
            (ValueError, lambda: a.create_acls([acl, acl])),
            (ValueError, lambda: a.create_acls([None, acl])),
            (TypeError, lambda: a.describe_acls(acl)),
            (ValueError, lambda: a.delete_acls([acl])),
            (ValueError, lambda: AclBinding(ResourceType.ANY, "t", ResourcePatternType.LITERAL, "u", "*",
                                            AclOperation.READ, AclPermissionType.ALLOW)),
            (ValueError, lambda: AclBinding(ResourceType.TOPIC, None, ResourcePatternType.LITERAL, "u", "*",
                                            AclOperation.READ, AclPermissionType.ALLOW)),
            (TypeError, lambda: a.describe_user_scram_credentials([None])),
            (ValueError, lambda: a.describe_user_scram_credentials([""])),
            (ValueError, lambda: a.alter_user_scram_credentials([])),
            (TypeError, lambda: a.alter_user_scram_credentials([UserScramCredentialUpsertion(
                "u", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 1), "not bytes")])),
            (ValueError, lambda: a.alter_user_scram_credentials([UserScramCredentialUpsertion(
                "u", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 0), b"pw")])),
            (TypeError, lambda: a.elect_leaders("PREFERRED")),
            (ValueError, lambda: a.elect_leaders(ElectionType.UNCLEAN, [TopicPartition("t", -1)])),
        ]
        for exc, call in bad:
            with pytest.raises(exc):
                call()
        # the filter may hold ANY and None where a binding may not
        assert flt.name is None and flt.restype is ResourceType.ANY
        assert AclBinding("topic", "t", "literal", "u", "*", "read", "allow").operation is AclOperation.READ
        assert ConfigResource("BROKER", "0").restype is ResourceType.BROKER
        assert isinstance(a.describe_user_scram_credentials(), concurrent.futures.Future)


def test_a_missing_topic_is_the_brokers_unknown_topic_or_part(ns):
    """Admin calls on a topic that does not exist fail as a Kafka cluster answers them: code
    UNKNOWN_TOPIC_OR_PART (3), still an UnknownTopicError; produce() keeps librdkafka's client-side -188."""
    from broker.autocreate import set_auto_create
    from broker.errors import UnknownTopicError
    from broker.namespace import Namespace
    tp = TopicPartition("nope", 0)
    with AdminClient(conf(ns)) as a:
        topic(a, "t")
        r = ConfigResource(ResourceType.TOPIC, "nope")
        rs = ConfigResource(ResourceType.TOPIC, "nope", set_config={"retention.ms": "1"})
        with pytest.warns(DeprecationWarning):
            altered = a.alter_configs([rs])[rs]
        futures = {"describe_configs": a.describe_configs([r])[r], "alter_configs": altered,
                   "incremental_alter_configs": _alter(a, "nope", ("retention.ms", AlterConfigOpType.SET, "1")),
                   "create_partitions": a.create_partitions([NewPartitions("nope", 2)])["nope"],
                   "delete_records": a.delete_records([TopicPartition("nope", 0, 0)])[tp],
                   "describe_topics": a.describe_topics(TopicCollection(["nope"]))["nope"],
                   "delete_topics": a.delete_topics(["nope"])["nope"],
                   "list_offsets": a.list_offsets({tp: OffsetSpec.latest()})[TopicPartition("nope", 0, -1)]}
        for call, f in futures.items():
            exc = f.exception(timeout=5)
            assert isinstance(exc, UnknownTopicError), (call, exc)
            assert exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART == 3, (call, exc)
            assert "'nope'" in exc.args[0].str(), (call, exc.args[0].str())
            # made from a KafkaError, it prints as confluent-kafka's admin errors do
            assert str(exc) == 'KafkaError{code=UNKNOWN_TOPIC_OR_PART,val=3,str="%s"}' % exc.args[0].str(), call
        md = a.list_topics(topic="nope").topics["nope"]
        assert md.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART and md.partitions == {}
        assert a.describe_topics(TopicCollection(["t"]))["t"].result().name == "t"  # the others still answer
    with Namespace(ns) as n:
        set_auto_create(n, False)
    with Producer(conf(ns)) as p:
        assert p.list_topics("nope").topics["nope"].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        with pytest.raises(UnknownTopicError) as ei:
            p.produce("nope", b"x")
        assert ei.value.args[0].code() == KafkaError._UNKNOWN_TOPIC  # librdkafka's own code at produce()
        assert str(ei.value).startswith("unknown topic 'nope' in namespace") and "KafkaError{" not in str(ei.value)


def test_kafka_admin_module_names():
    for name in ("AdminClient", "NewPartitions", "ConfigResource", "ConfigEntry", "ConfigSource", "ResourceType",
                 "AlterConfigOpType", "DeletedRecords", "OffsetSpec", "AclBinding", "AclBindingFilter",
                 "ResourcePatternType", "AclOperation", "AclPermissionType", "UserScramCredentialAlteration",
                 "ScramMechanism", "ScramCredentialInfo", "UserScramCredentialsDescription", "TopicDescription",
                 "DescribeClusterResult", "_ConsumerGroupType", "_ElectionType"):
        assert hasattr(KA, name), name
    assert KA.CONFIG_SOURCE_DEFAULT_CONFIG == ConfigSource.DEFAULT_CONFIG.value == 5
    assert KA.RESOURCE_BROKER == ResourceType.BROKER.value == 4
    assert OffsetSpec.earliest() is OffsetSpec(-2) and OffsetSpec(5).timestamp == 5
    for name in ("create_acls", "describe_acls", "delete_acls", "elect_leaders", "alter_user_scram_credentials",
                 "describe_user_scram_credentials", "set_sasl_credentials", "describe_cluster", "describe_topics",
                 "list_groups", "poll", "create_partitions", "delete_records", "incremental_alter_configs"):
        assert callable(getattr(KA.AdminClient, name)), name
