"""Topics, Producer and Consumer (without groups) through the Kafka API."""
import random

import pytest

from broker import (OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Producer, TopicPartition,
                    consistent, fnv1a, murmur2)
from broker.admin import AdminClient, NewTopic, OffsetSpec
from broker.errors import (ClosedError, ConfigError, InvalidNameError, MessageTooLargeError, QueueFullError,
                           TopicExistsError, UnknownTopicError)

from conftest import conf, make_topic, while_blocked


def drain(c, n, timeout=10):
    out = []
    while len(out) < n:
        m = c.poll(timeout)
        assert m is not None, "only %d of %d messages arrived" % (len(out), n)
        if m.error() is None:
            out.append(m)
    return out


def test_murmur2_matches_java_vectors_and_placement():
    # Kafka's UtilsTest.testMurmur2 vectors, through the partition formula
    vectors = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
               b"a-little-bit-longer-string": -1486304829, b"abc": 479470107,
               b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971}
    for key, h in vectors.items():
        for n in (1, 3, 7, 50, 1000):
            assert murmur2(key, n) == (h & 0x7FFFFFFF) % n
    assert murmur2(b"foobar", 50) == 16
    # 10,000 random keys against an independent pure-Python murmur2
    def ref(data):
        m, h = 0x5BD1E995, (0x9747B28C ^ len(data)) & 0xFFFFFFFF
        n4 = len(data) // 4
        for i in range(n4):
            k = int.from_bytes(data[4 * i:4 * i + 4], "little")
            k = (k * m) & 0xFFFFFFFF
            k ^= k >> 24
            k = (k * m) & 0xFFFFFFFF
            h = ((h * m) & 0xFFFFFFFF) ^ k
        t = data[4 * n4:]
        if len(t) == 3:
            h ^= t[2] << 16
        if len(t) >= 2:
            h ^= t[1] << 8
        if len(t) >= 1:
            h ^= t[0]
            h = (h * m) & 0xFFFFFFFF
        h ^= h >> 13
        h = (h * m) & 0xFFFFFFFF
        h ^= h >> 15
        return h
    rnd = random.Random(7)
    for _ in range(10000):
        k = rnd.randbytes(rnd.randrange(0, 40))
        assert murmur2(k, 97) == (ref(k) & 0x7FFFFFFF) % 97
    import zlib
    assert consistent(b"foobar", 50) == zlib.crc32(b"foobar") % 50
    h = 0x811C9DC5
    for b in b"foobar":
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    assert fnv1a(b"foobar", 50) == h % 50


def test_admin_topics(ns):
    with AdminClient(conf(ns)) as a:
        fs = a.create_topics([NewTopic("a", 3), NewTopic("b", 1, config={"retention.bytes": 8192,
                                                                         "shm.overflow": "block"})])
        assert [f.result() for f in fs.values()] == [None, None]
        with pytest.raises(TopicExistsError):
            a.create_topics([NewTopic("a", 1)])["a"].result()
        for bad in ("bad name", "x" * 250, "..", "ü"):
            with pytest.raises(InvalidNameError, match="249"):
                a.create_topics([NewTopic(bad, 1)])[bad].result()
        with pytest.raises(ConfigError, match="retention.bytez"):
            a.create_topics([NewTopic("c", 1, config={"retention.bytez": 1})])["c"].result()
        with pytest.raises(KafkaException) as ei:
            a.create_topics([NewTopic("c", 0)])["c"].result()
        assert ei.value.args[0].code() == KafkaError.INVALID_PARTITIONS
        md = a.list_topics()
        assert sorted(md.topics) == ["a", "b"] and sorted(md.topics["a"].partitions) == [0, 1, 2]
        assert a.list_topics("zzz").topics["zzz"].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        with Producer(conf(ns)) as p:
            for i in range(5):
                p.produce("a", b"%d" % i, partition=1, timestamp=1000 + i)
        res = a.list_offsets({TopicPartition("a", 1): OffsetSpec.earliest(),
                              TopicPartition("a", 2): OffsetSpec.latest()})
        assert [f.result().offset for f in res.values()] == [0, 0]
        assert a.list_offsets({TopicPartition("a", 1): OffsetSpec.for_timestamp(1003)})[
            TopicPartition("a", 1)].result().offset == 3
        assert a.delete_topics(["b"])["b"].result() is None
        with pytest.raises(UnknownTopicError):
            a.delete_topics(["b"])["b"].result()
        assert sorted(a.list_topics().topics) == ["a"]


def test_produce_consume_roundtrip(ns):
    make_topic(ns, "t", 4)
    reports = []
    with Producer(conf(ns)) as p, Consumer(conf(ns, **{"auto.offset.reset": "earliest"})) as c:
        for i in range(40):
            p.produce("t", "v%d" % i, key="k%d" % (i % 5), headers=[("i", b"%d" % i)],
                      on_delivery=lambda err, msg: reports.append((err, msg)))
        assert len(p) == 40 and p.flush() == 0 and len(p) == 0
        assert all(err is None for err, _ in reports)
        # keys land where Java's murmur2 puts them
        for _, m in reports:
            assert m.partition() == murmur2(m.key(), 4)
        c.assign([TopicPartition("t", i, OFFSET_BEGINNING) for i in range(4)])
        got = drain(c, 40)
        by_value = {m.value(): m for m in got}
        assert sorted(by_value) == sorted(b"v%d" % i for i in range(40))
        for _, r in reports:
            m = by_value[r.value()]
            assert (m.partition(), m.offset(), m.key(), m.headers()) == (r.partition(), r.offset(), r.key(),
                                                                         [("i", r.value()[1:])])
            assert m.timestamp()[0] == 1
        # per partition: offsets consecutive, in order
        for part in range(4):
            offs = [m.offset() for m in got if m.partition() == part]
            assert offs == list(range(len(offs)))
        assert c.poll(0) is None
        assert sum(c.lag().values()) == 0


def test_consumer_positions_seek_pause_eof(ns):
    make_topic(ns, "t", 2)
    with Producer(conf(ns)) as p, Consumer(conf(ns, **{"enable.partition.eof": True})) as c:
        for i in range(10):
            p.produce("t", b"%d" % i, partition=i % 2)
        c.assign([TopicPartition("t", 0, 2), TopicPartition("t", 1, OFFSET_END)])
        assert c.position([TopicPartition("t", 0), TopicPartition("t", 1)])[1].offset == 5
        msgs = [c.poll(1) for _ in range(5)]
        data = [(m.partition(), m.offset()) for m in msgs if m.error() is None]
        eofs = [(m.partition(), m.offset()) for m in msgs if m.error() is not None]
        assert data == [(0, 2), (0, 3), (0, 4)] and sorted(eofs) == [(0, 5), (1, 5)]
        assert all(m.error().code() == KafkaError._PARTITION_EOF for m in msgs if m.error())
        assert c.get_watermark_offsets(TopicPartition("t", 0)) == (0, 5)
        c.seek(TopicPartition("t", 1, 3))
        assert [(m.partition(), m.offset()) for m in drain(c, 2)] == [(1, 3), (1, 4)]
        c.pause([TopicPartition("t", 1)])
        p.produce("t", b"x", partition=1)
        p.produce("t", b"y", partition=0)
        m = drain(c, 1)[0]
        assert (m.partition(), m.value()) == (0, b"y")
        rest = []
        while (m := c.poll(0.05)) is not None:
            rest.append(m)
        assert all(m.error() is not None for m in rest)  # nothing from the paused partition
        c.resume([TopicPartition("t", 1)])
        assert drain(c, 1)[0].value() == b"x"
        assert c.offsets_for_times([TopicPartition("t", 0, 0)])[0].offset == 0
        c.incremental_unassign([TopicPartition("t", 0)])
        assert c.assignment() == [TopicPartition("t", 1)]


def test_overwrite_reader_falls_behind(ns):
    # a tiny ring: the reader is lapped; what it does get is intact and consecutive
    make_topic(ns, "t", 1, **{"retention.bytes": 4096, "shm.slots": 16})
    with Producer(conf(ns)) as p:
        for reset, expect_first in (("earliest", None), ("latest", "high"), ("error", "error")):
            with Consumer(conf(ns, **{"auto.offset.reset": reset})) as c:
                c.assign([TopicPartition("t", 0, OFFSET_END)])
                start = c.position([TopicPartition("t", 0)])[0].offset
                for i in range(100):
                    p.produce("t", b"%08d" % (start + i))
                lo, hi = c.get_watermark_offsets(TopicPartition("t", 0))
                assert lo > start  # lapped
                m = c.poll(1)
                if reset == "earliest":
                    msgs = [m] + drain(c, hi - lo - 1)
                    offs = [x.offset() for x in msgs]
                    assert offs == list(range(offs[0], hi)) and offs[0] >= lo
                    assert all(x.value() == b"%08d" % x.offset() for x in msgs)
                elif reset == "latest":
                    assert m is None  # jumped to the end
                    p.produce("t", b"%08d" % hi)
                    assert drain(c, 1)[0].offset() == hi
                else:
                    assert m.error().code() == KafkaError._AUTO_OFFSET_RESET
                    c.seek(TopicPartition("t", 0, OFFSET_BEGINNING))
                    assert c.poll(1).offset() >= lo


def test_bad_input_and_errors(ns):
    make_topic(ns, "t", 2, **{"retention.bytes": 8192})
    with pytest.raises(ConfigError, match="bogus.key"):
        Producer(conf(ns, **{"bogus.key": 1}))
    with pytest.raises(ConfigError, match="partitioner"):
        Producer(conf(ns, partitioner="nope"))
    Producer(conf(ns, **{"security.protocol": "SASL_SSL", "linger.ms": 5, "acks": "all"})).close()  # ignored
    with pytest.raises(ConfigError, match="auto.offset.reset"):
        Consumer(conf(ns, **{"auto.offset.reset": "sometimes"}))
    p = Producer(conf(ns))
    p.produce("t", b"first", partition=0)
    _no_auto_create(ns)
    with pytest.raises(UnknownTopicError, match="auto.create.topics.enable is off: create it"):
        p.produce("nosuch", b"x")
    with pytest.raises(KafkaException, match="partition 5"):
        p.produce("t", b"x", partition=5)
    with pytest.raises(MessageTooLargeError):
        p.produce("t", b"x" * 9000)
    with pytest.raises(TypeError):
        p.produce("t", 12345)
    c = Consumer(conf(ns))
    c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
    assert drain(c, 1)[0].value() == b"first"  # nothing before the errors was lost
    with pytest.raises(KafkaException, match="assign"):
        c.seek(TopicPartition("t", 1, 0))
    with pytest.raises(KafkaException, match="group.id"):
        c.subscribe(["t"])
    c.close()
    with pytest.raises(ClosedError):
        c.poll(0)
    p.close()
    with pytest.raises(ClosedError):
        p.produce("t", b"x")


def _no_auto_create(ns):
    """Turn the namespace's auto.create.topics.enable off (tests of the unknown-topic errors)."""
    from broker.autocreate import set_auto_create
    from broker.namespace import Namespace
    with Namespace(ns) as n:
        set_auto_create(n, False)


def test_deleted_topic_gives_clear_error(ns):
    make_topic(ns, "t", 1)
    _no_auto_create(ns)  # else the producer creates it again, as a Kafka broker would
    p = Producer(conf(ns))
    c = Consumer(conf(ns))
    p.produce("t", b"a")
    c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
    assert drain(c, 1)[0].value() == b"a"
    got = while_blocked(lambda: c.poll(10), lambda: c._parts[("t", 0)].log.stats()["waiters"] >= 1,
                        "the consumer to sleep", lambda: AdminClient(conf(ns)).delete_topics(["t"])["t"].result())
    assert got.error().code() == KafkaError._UNKNOWN_TOPIC
    with pytest.raises(UnknownTopicError):
        p.produce("t", b"b")
    make_topic(ns, "t", 1)  # created again: the producer finds the new one
    p.produce("t", b"c")
    c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
    assert drain(c, 1)[0].value() == b"c"
    p.close()
    c.close()


def test_block_topic_raises_buffer_error(ns):
    make_topic(ns, "b", 1, **{"retention.bytes": 4096, "shm.slots": 8, "shm.overflow": "block"})
    with Producer(conf(ns, **{"shm.block.timeout.ms": 50})) as p:
        for i in range(8):
            p.produce("b", b"x")
        with pytest.raises(BufferError):
            p.produce("b", b"y")
        with pytest.raises(QueueFullError):
            p.produce("b", b"y")


def test_send_and_send_batch(ns):
    import numpy as np
    make_topic(ns, "t", 2)
    with Producer(conf(ns)) as p, Consumer(conf(ns)) as c:
        md = p.send("t", b"one", partition=1, timestamp_ns=5_000_000)
        assert (md.topic, md.partition, md.offset, md.timestamp_ns) == ("t", 1, 0, 5_000_000)
        assert p.send_batch("t", [b"a", b"b"], 1) == 1
        assert p.send_batch("t", np.zeros((3, 4), dtype=np.uint8), 1) == 3
        c.assign([TopicPartition("t", 1, OFFSET_BEGINNING)])
        msgs = drain(c, 6)
        assert [m.value() for m in msgs] == [b"one", b"a", b"b"] + [b"\0" * 4] * 3
        assert msgs[0].timestamp() == (1, 5)


def test_wait_on_many_partitions_wakes_on_any(ns):
    make_topic(ns, "t", 8)
    with Producer(conf(ns)) as p, Consumer(conf(ns, **{"shm.wait": "sleep"})) as c:
        c.assign([TopicPartition("t", i, OFFSET_END) for i in range(8)])
        logs = [c._parts[("t", i)].log for i in range(8)]
        got = while_blocked(lambda: c.poll(10), lambda: all(l.stats()["waiters"] == 1 for l in logs),
                            "the consumer to sleep on all 8", lambda: p.produce("t", b"z", partition=6))
        assert (got.partition(), got.value()) == (6, b"z")


def test_retention_ms_expires_old_records(ns):
    import time
    make_topic(ns, "t", 1, **{"retention.ms": 60_000})
    now_ms = time.time_ns() // 1_000_000
    with Producer(conf(ns)) as p:
        for i in range(5):
            p.produce("t", b"old%d" % i, timestamp=now_ms - 3_600_000)  # an hour old: past retention
        for i in range(3):
            p.produce("t", b"new%d" % i)
    with AdminClient(conf(ns)) as a:
        assert a.list_offsets({TopicPartition("t", 0): OffsetSpec.earliest()})[
            TopicPartition("t", 0)].result().offset == 5
    with Consumer(conf(ns, **{"auto.offset.reset": "earliest"})) as c:
        assert c.get_watermark_offsets(TopicPartition("t", 0)) == (5, 8)
        c.assign([TopicPartition("t", 0, 0)])  # positioned on expired records
        assert [m.value() for m in drain(c, 3)] == [b"new0", b"new1", b"new2"]
    with Consumer(conf(ns, **{"auto.offset.reset": "error"})) as c:
        c.assign([TopicPartition("t", 0, 1)])
        m = c.poll(1)
        assert m.error().code() == KafkaError._AUTO_OFFSET_RESET
        c.seek(TopicPartition("t", 0, OFFSET_BEGINNING))  # the beginning is the first live record
        assert drain(c, 1)[0].value() == b"new0"


def test_null_key_placement_per_partitioner(ns):
    make_topic(ns, "t", 4)
    counts = {}
    for name in ("murmur2_random", "murmur2", "consistent", "fnv1a", "random"):
        with Producer(conf(ns, partitioner=name)) as p:
            before = [Consumer(conf(ns)).get_watermark_offsets(TopicPartition("t", i))[1] for i in range(4)]
            for _ in range(400):
                p.produce("t", b"x")  # NULL key: the C lean path or the Python partitioner
            after = [Consumer(conf(ns)).get_watermark_offsets(TopicPartition("t", i))[1] for i in range(4)]
            counts[name] = [a - b for a, b in zip(after, before)]
    for name in ("murmur2_random", "random"):
        assert sum(counts[name]) == 400 and min(counts[name]) > 40, (name, counts[name])  # spread out
    # librdkafka: NULL keys hash as empty to one partition
    assert counts["murmur2"][murmur2(b"", 4)] == 400
    assert counts["consistent"][consistent(b"", 4)] == 400
    assert counts["fnv1a"][fnv1a(b"", 4)] == 400
    with Producer(conf(ns)) as p:
        p.produce("t", b"y", partition=3)  # the lean path with partition=
        with pytest.raises(KafkaException, match="partition 9"):
            p.produce("t", b"y", partition=9)
        produce = p.produce
    with pytest.raises(ClosedError):
        produce("t", b"z")  # a cached bound method after close


def test_kafka_dropin_defaults_and_more_api(ns):
    import zlib
    from broker import kafka
    from broker.kafka.admin import AdminClient as KAdmin, NewTopic as KNewTopic
    with KAdmin(conf(ns)) as a:
        a.create_topics([KNewTopic("k", 5)])["k"].result()
    reports = []
    with kafka.Producer(conf(ns)) as p:  # librdkafka's default: consistent_random (crc32 of the key)
        for i in range(30):
            p.produce("k", b"v%d" % i, key=b"key%d" % i, timestamp=1000 + 10 * i,
                      callback=lambda err, m: reports.append(m))
        assert p.poll(0) == 30 and p.poll(0) == 0
        assert all(m.partition() == zlib.crc32(m.key()) % 5 for m in reports)
        assert all(m.timestamp() == (1, 1000 + 10 * i) for i, m in enumerate(reports))
        assert all(m.latency() is not None and m.latency() >= 0 for m in reports)
        assert sorted(p.list_topics().topics) == ["k"]
    with kafka.Consumer(conf(ns, **{"auto.offset.reset": "smallest", "group.id": "g"})) as c:  # group.id: required
        c.assign([TopicPartition("k", 0)])
        c.incremental_assign([TopicPartition("k", q) for q in range(1, 5)])
        assert sorted(c.assignment()) == [TopicPartition("k", q) for q in range(5)]
        got = []
        while len(got) < 30:
            batch = c.consume(7, 1)
            assert 0 < len(batch) <= 7
            got += batch
        assert sorted(m.value() for m in got) == sorted(b"v%d" % i for i in range(30))
        assert c.consume(5, 0.01) == []
        # offsets_for_times: the first offset at or after each timestamp, per partition
        for m in reports:
            tp = TopicPartition("k", m.partition(), m.timestamp()[1])
            assert c.offsets_for_times([tp])[0].offset == m.offset()
        last = max(reports, key=lambda m: m.timestamp()[1])
        beyond = c.offsets_for_times([TopicPartition("k", last.partition(), 10 ** 12)])[0]
        assert beyond.offset == c.get_watermark_offsets(TopicPartition("k", last.partition()))[1]
