"""broker.kafka behaving as librdkafka where confluent-kafka's offline tests look (issue 11): partitioner
errors, partitioner_cb, assigned partitions that do not exist yet, a bad partition at produce(), and the
statistics callback."""
import json
import time

import pytest

import broker.kafka as ck
from broker.kafka import KafkaError, KafkaException, TopicPartition
from broker.kafka.admin import AdminClient, NewPartitions

from conftest import conf, make_topic


def poll_until(c, pred, timeout, what):
    """Poll *c* until pred(msg) holds for a message; fail after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = c.poll(0.1)
        if m is not None and pred(m):
            return m
    pytest.fail("no %s within %.0f s" % (what, timeout))


# -- configuration
def test_bad_partitioner_says_librdkafkas_words_and_the_choices(ns):
    with pytest.raises(KafkaException) as e:
        ck.Producer(conf(ns, partitioner="murmur"))
    msg = str(e.value)
    assert msg.startswith('Invalid value for configuration property "partitioner": murmur: use one of ')
    assert "murmur2_random" in msg and "consistent_random" in msg


def test_partitioner_cb_is_refused_as_confluent_kafka_refuses_it(ns):
    # confluent-kafka 2.15 raises KafkaException(_INVALID_ARG) 'Property "partitioner_cb" must be set through
    # dedicated .._set_..() function' at Producer(): librdkafka takes the callback only through a C setter
    with pytest.raises(KafkaException, match='Property "partitioner_cb" must be set through dedicated') as e:
        ck.Producer(conf(ns, partitioner_cb=lambda key, n: 0))
    assert e.value.args[0].code() == KafkaError._INVALID_ARG and "partitioner=" in str(e.value)


# -- assigned partitions that do not exist
def test_assigned_partition_of_a_missing_topic_stays_and_is_read_once_created(ns):
    commits = []
    c = ck.Consumer(conf(ns, **{"group.id": "g", "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                "on_commit": lambda err, ps: commits.append((err, ps))}))
    want = [TopicPartition("later", 1), TopicPartition("later", 0)]
    c.assign(want)
    assert c.assignment() == want
    ev = c.poll(1)
    assert ev.error().code() == KafkaError._UNKNOWN_TOPIC and ev.topic() == "later"
    assert c.get_watermark_offsets(want[0], cached=True) == (ck.OFFSET_INVALID, ck.OFFSET_INVALID)
    with pytest.raises(KafkaException) as e:
        c.get_watermark_offsets(want[0], cached=False)
    assert e.value.args[0].code() == KafkaError.LEADER_NOT_AVAILABLE and "does not exist" in str(e.value)
    with pytest.raises(KafkaException, match="Erroneous state") as e:
        c.seek(TopicPartition("later", 0, 5))  # librdkafka: nothing is being fetched there
    assert e.value.args[0].code() == KafkaError._STATE
    assert [tp.offset for tp in c.position(want)] == [ck.OFFSET_INVALID] * 2
    assert [tp.offset for tp in c.committed(want)] == [ck.OFFSET_INVALID] * 2  # OffsetFetch: none committed
    with pytest.raises(KafkaException) as e:
        c.commit(asynchronous=False)
    assert e.value.args[0].code() == KafkaError._NO_OFFSET
    c.poll(0)  # serves on_commit: the whole assignment, offsets invalid
    assert [(err.code(), [(tp.topic, tp.partition) for tp in ps]) for err, ps in commits] == \
        [(KafkaError._NO_OFFSET, [("later", 1), ("later", 0)])]
    c.pause([want[1]])  # a paused placeholder stays paused once it exists
    make_topic(ns, "later", 2)
    with ck.Producer(conf(ns)) as p:
        p.produce("later", b"on-1", partition=1)
        p.produce("later", b"on-0", partition=0)
    m = poll_until(c, lambda m: m.error() is None, 10, "record of the topic created after assign()")
    assert (m.partition(), m.value()) == (1, b"on-1")
    assert c.poll(0.2) is None  # partition 0 is paused
    c.resume([want[1]])
    m = poll_until(c, lambda m: m.error() is None, 10, "record of the resumed partition")
    assert (m.partition(), m.value()) == (0, b"on-0")
    c.unassign()
    assert c.assignment() == []
    c.close()


def test_assigned_partition_past_the_count_is_read_once_the_topic_grows(ns):
    make_topic(ns, "grow", 1)
    c = ck.Consumer(conf(ns, **{"group.id": "g", "auto.offset.reset": "earliest"}))
    c.assign([TopicPartition("grow", 0), TopicPartition("grow", 2)])
    ev = c.poll(1)
    assert ev.error().code() == KafkaError._UNKNOWN_PARTITION
    assert sorted((tp.topic, tp.partition) for tp in c.assignment()) == [("grow", 0), ("grow", 2)]
    with AdminClient(conf(ns)) as a:
        a.create_partitions([NewPartitions("grow", 3)])["grow"].result()
    with ck.Producer(conf(ns)) as p:
        p.produce("grow", b"third", partition=2)
    m = poll_until(c, lambda m: m.error() is None, 10, "record of the partition added after assign()")
    assert (m.partition(), m.offset(), m.value()) == (2, 0, b"third")
    c.close()


# -- a partition that does not exist, at produce()
def test_bad_partition_fails_in_the_report_then_raises_once_the_topic_is_known(ns):
    make_topic(ns, "two", 2)
    reports = []
    p = ck.Producer(conf(ns))
    p.produce("two", b"lost", partition=9, on_delivery=lambda err, msg: reports.append((err, msg)))
    assert p.flush() == 0
    [(err, msg)] = reports
    assert err.code() == KafkaError._UNKNOWN_PARTITION and msg.error() is err
    assert (msg.topic(), msg.partition(), msg.offset(), msg.value()) == ("two", 9, ck.OFFSET_INVALID, b"lost")
    # the producer knows the topic now (librdkafka: its metadata came): produce() itself says so
    with pytest.raises(KafkaException) as e:
        p.produce("two", b"x", partition=2, on_delivery=lambda err, msg: reports.append((err, msg)))
    assert e.value.args[0].code() == KafkaError._UNKNOWN_PARTITION and "has 2 partitions" in str(e.value)
    p.produce("two", b"kept", partition=1)
    p.close()
    assert len(reports) == 1
    with ck.Consumer(conf(ns, **{"group.id": "g"})) as c:
        assert [c.get_watermark_offsets(TopicPartition("two", i)) for i in (0, 1)] == [(0, 0), (0, 1)]


# -- statistics
def _stats_producer(ns, docs, interval=50, **kw):
    return ck.Producer(conf(ns, stats_cb=lambda s: docs.append(json.loads(s)),
                            **{"statistics.interval.ms": interval}, **kw))


def test_producer_stats_cb_gets_librdkafkas_fields_at_the_interval(ns):
    docs = []
    t0 = time.monotonic()
    p = _stats_producer(ns, docs, **{"client.id": "me", "queue.buffering.max.messages": 77})
    for i in range(3):
        p.produce("st", b"abcd", key=b"k")
    deadline = time.monotonic() + 10
    while len(docs) < 3 and time.monotonic() < deadline:
        p.poll(0.5)  # an idle poll waits out its timeout, serving statistics meanwhile
    took = time.monotonic() - t0
    assert 3 <= len(docs) <= took / 0.05 + 1, (len(docs), took)  # a fixed-rate timer: never more often
    d = docs[-1]
    for key in ("name", "client_id", "type", "ts", "time", "age", "replyq", "msg_cnt", "msg_size", "msg_max",
                "msg_size_max", "simple_cnt", "metadata_cache_cnt", "tx", "tx_bytes", "rx", "rx_bytes",
                "txmsgs", "txmsg_bytes", "rxmsgs", "rxmsg_bytes"):
        assert key in d, key
    assert d["name"].startswith("me#producer-") and d["client_id"] == "me" and d["type"] == "producer"
    assert (d["txmsgs"], d["txmsg_bytes"], d["msg_max"], d["brokers"]) == (3, 15, 77, {})
    assert list(d["topics"]) == ["st"] and list(d["topics"]["st"]["partitions"]) == ["0"]
    assert docs[0]["ts"] < docs[1]["ts"] < docs[2]["ts"] and docs[0]["age"] < docs[2]["age"]  # microseconds
    assert abs(d["time"] - time.time()) < 60
    p.close()


def test_stats_cb_exception_propagates_from_poll(ns):
    def boom(s):
        raise RuntimeError("from stats_cb")

    p = ck.Producer(conf(ns, stats_cb=boom, **{"statistics.interval.ms": 10}))
    with pytest.raises(RuntimeError, match="from stats_cb"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            p.poll(0.1)
    p.close()


def test_no_interval_no_statistics(ns):
    p = ck.Producer(conf(ns, stats_cb=lambda s: pytest.fail("called without statistics.interval.ms")))
    p.produce("quiet", b"x")
    assert p.poll(0.1) == 0
    p.close()


def test_consumer_stats_cb_from_poll_and_consume(ns):
    make_topic(ns, "cs", 1)
    with ck.Producer(conf(ns)) as p:
        for i in range(5):
            p.produce("cs", b"vv", key=b"k")
    docs = []
    c = ck.Consumer(conf(ns, **{"group.id": "g", "auto.offset.reset": "earliest", "statistics.interval.ms": 50,
                                "stats_cb": lambda s: docs.append(json.loads(s))}))
    c.assign([TopicPartition("cs", 0), TopicPartition("absent", 0)])
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 5 and time.monotonic() < deadline:
        got += [m for m in c.consume(3, 0.2) if m.error() is None]
    assert len(got) == 5
    n = len(docs)
    while len(docs) < n + 1 and time.monotonic() < deadline:
        assert c.poll(0.3) is None  # idle: statistics still come, between waits
    d = docs[-1]
    assert d["type"] == "consumer" and d["name"].startswith("rdkafka#consumer-")
    assert (d["rxmsgs"], d["rxmsg_bytes"], d["brokers"]) == (5, 15, {})
    part = d["topics"]["cs"]["partitions"]["0"]
    assert (part["next_offset"], part["hi_offset"], part["lo_offset"], part["consumer_lag"]) == (5, 5, 0, 0)
    absent = d["topics"]["absent"]["partitions"]["0"]
    assert absent["unknown"] is True and absent["desired"] is True
    assert d["cgrp"]["assignment_size"] == 2
    c.close()
