"""broker.kafka as confluent-kafka 2.15's drop-in (issue 11): modules and names, Message, KafkaError,
produce_batch, closed clients, poll waits, commit/store_offsets checks, auto topic creation, docs,
and what needs a Kafka cluster."""
import gc
import inspect
import pickle
import re
import signal
import struct
import sys
import threading
import time
import zlib

import pytest

import broker.kafka as ck
from broker.autocreate import auto_create_enabled, set_auto_create
from broker.kafka import (KafkaError, KafkaException, Message, Producer, TopicPartition, TIMESTAMP_CREATE_TIME,
                          TIMESTAMP_LOG_APPEND_TIME, TIMESTAMP_NOT_AVAILABLE)
from broker.kafka.admin import AdminClient
from broker.namespace import Namespace

from conftest import conf, make_topic


# -- 1. modules and names
def test_names_importable_as_from_confluent_kafka():
    from broker.kafka.error import (ConsumeError, KeyDeserializationError, KeySerializationError,  # noqa: F401
                                    ProduceError, ValueDeserializationError, ValueSerializationError)
    from broker.kafka.serialization import (Deserializer, DoubleDeserializer, DoubleSerializer,  # noqa: F401
                                            IntegerDeserializer, IntegerSerializer, MessageField,
                                            SerializationContext, SerializationError, Serializer,
                                            StringDeserializer, StringSerializer)
    for name in ("SerializingProducer", "DeserializingConsumer", "murmur2", "consistent", "fnv1a", "version",
                 "libversion", "ConsumerGroupState", "ConsumerGroupTopicPartitions", "ConsumerGroupType",
                 "IsolationLevel", "TopicCollection", "ElectionType", "Uuid", "Node", "TopicPartitionInfo"):
        assert name in ck.__all__ and getattr(ck, name) is not None, name
    assert issubclass(KeyDeserializationError, ConsumeError) and issubclass(KeyDeserializationError,
                                                                            SerializationError)
    assert issubclass(ValueSerializationError, ProduceError) and issubclass(SerializationError, KafkaException)
    assert ck.IsolationLevel.READ_COMMITTED.value == 1 and ck.ElectionType.UNCLEAN.value == 1
    assert ck.ConsumerGroupType.CLASSIC > ck.ConsumerGroupType.CONSUMER
    assert sorted([ck.IsolationLevel.READ_COMMITTED, ck.IsolationLevel.READ_UNCOMMITTED])[0].value == 0


def test_partitioner_functions_match_librdkafka_values():
    # crc32 and the Java client's murmur2 (toPositive(murmur2(b"a")) % 10 == 4); fnv1a: 32-bit FNV-1a
    assert ck.consistent(b"hello", 7) == zlib.crc32(b"hello") % 7
    assert ck.murmur2(b"a", 10) == 4
    h = 0x811C9DC5
    for b in b"hello":
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    assert ck.fnv1a(b"hello", 13) == h % 13
    assert ck.fnv1a("hello", 13) == ck.fnv1a(b"hello", 13)  # str keys are UTF-8


def test_versions():
    sver, iver = ck.version()
    assert sver == ck.__version__ and iver > 0
    assert ck.libversion() == ("2.15.0", 0x020F00FF)


def test_serializers_round_trip_and_wrap_errors():
    from broker.kafka.serialization import (DoubleDeserializer, DoubleSerializer, IntegerDeserializer,
                                            IntegerSerializer, MessageField, SerializationContext,
                                            SerializationError, StringDeserializer, StringSerializer)
    ctx = SerializationContext("t", MessageField.VALUE)
    assert str(MessageField.KEY) == "key" and ctx.topic == "t" and ctx.headers is None
    assert IntegerSerializer()(-2, ctx) == struct.pack(">i", -2) and IntegerDeserializer()(b"\0\0\1\0") == 256
    assert DoubleDeserializer()(DoubleSerializer()(1.5)) == 1.5 and DoubleSerializer()(None) is None
    with pytest.raises(SerializationError, match="int32"):
        IntegerSerializer()(2 ** 31)
    with pytest.raises(SerializationError, match="4 bytes"):
        IntegerDeserializer()(b"abc")
    with pytest.raises(SerializationError) as e:
        StringSerializer("ascii")("café")
    assert isinstance(e.value.__context__, UnicodeEncodeError) and str(e.value) == str(e.value.__context__)
    with pytest.raises(LookupError):
        StringDeserializer("no_such_codec")(b"x")
    assert StringDeserializer("latin_1")("é".encode("latin_1")) == "é"


def test_serializing_clients_round_trip(ns):
    from broker.kafka.error import KeySerializationError, ValueDeserializationError
    from broker.kafka.serialization import IntegerDeserializer, IntegerSerializer, StringDeserializer, \
        StringSerializer
    make_topic(ns, "s")
    p = ck.SerializingProducer(conf(ns, **{"key.serializer": StringSerializer(),
                                           "value.serializer": IntegerSerializer()}))
    p.produce("s", key="k1", value=7)
    p.produce("s", key="k2", value=-1)
    with pytest.raises(KeySerializationError) as e:
        p.produce("s", key=12, value=1)  # a str serializer given an int
    assert e.value.code == KafkaError._KEY_SERIALIZATION and isinstance(e.value.exception, AttributeError)
    p.close()
    c = ck.DeserializingConsumer(conf(ns, **{"group.id": "g", "auto.offset.reset": "earliest",
                                             "key.deserializer": StringDeserializer(),
                                             "value.deserializer": IntegerDeserializer()}))
    c.assign([TopicPartition("s", 0)])
    got = [c.poll(10) for _ in range(2)]
    assert [(m.key(), m.value()) for m in got] == [("k1", 7), ("k2", -1)]
    with pytest.raises(NotImplementedError, match="poll"):
        c.consume()
    c.close()
    bad = ck.DeserializingConsumer(conf(ns, **{"group.id": "g2", "auto.offset.reset": "earliest",
                                               "value.deserializer": StringDeserializer("ascii")}))
    with Producer(conf(ns)) as raw:
        raw.produce("s", b"\xff")
    bad.assign([TopicPartition("s", 0, 2)])
    with pytest.raises(ValueDeserializationError) as e:
        bad.poll(10)
    assert e.value.kafka_message.value() == b"\xff" and e.value.code == KafkaError._VALUE_DESERIALIZATION
    bad.close()


def test_model_classes():
    u = ck.Uuid(1, 2)
    assert str(u) == "AAAAAAAAAAEAAAAAAAAAAg" and u == ck.Uuid(1, 2) and hash(u) == hash(ck.Uuid(1, 2))
    assert (u.get_most_significant_bits(), u.get_least_significant_bits()) == (1, 2)
    assert str(ck.Uuid(-1, -1)) == "_____________________w"
    n = ck.Node(0, "shm://x", 0)
    assert str(n).startswith("(0) shm://x:0")
    info = ck.TopicPartitionInfo(3, n, [n], [n])
    assert (info.id, info.leader, info.isr) == (3, n, [n])
    assert ck.TopicCollection(["a"]).topic_names == ["a"]
    assert int(ck.AcknowledgeType.REJECT) == 3
    m = ck.Messages([Message("t"), Message("u")])
    assert len(m) == m.count() == 2 and not m.is_empty() and [x.topic() for x in m[1:]] == ["u"]


# -- 2. Message
def test_message_constructor_11_arguments():
    err = KafkaError(KafkaError._PARTITION_EOF)
    m = Message("t", 1, 2, b"k", b"vv", [("h", b"1")], err, (TIMESTAMP_LOG_APPEND_TIME, 5), 0.5, 3, 4)
    assert (m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.headers(), m.error()) == \
        ("t", 1, 2, b"k", b"vv", [("h", b"1")], err)
    assert (m.timestamp(), m.latency(), m.leader_epoch(), m.delivery_count(), len(m)) == \
        ((TIMESTAMP_LOG_APPEND_TIME, 5), 0.5, 3, 4, 2)
    k = Message(topic="t", partition=1, offset=2, timestamp=(TIMESTAMP_CREATE_TIME, 9), leader_epoch=0)
    assert k.timestamp() == (TIMESTAMP_CREATE_TIME, 9) and k.leader_epoch() == 0 and k.timestamp_ns() == 9_000_000
    e = Message()  # nothing: confluent-kafka's empty message
    assert (e.topic(), e.partition(), e.offset(), e.timestamp(), e.latency(), e.leader_epoch(), len(e)) == \
        (None, None, None, (TIMESTAMP_NOT_AVAILABLE, 0), None, None, 0)
    assert Message("t", -1, -5, latency=-1.0).partition() is None  # negatives mean none
    with pytest.raises(TypeError, match="tuple of"):
        Message("t", timestamp=5)


def test_message_setters_type_checks_equality_pickle():
    m = Message("t", 0, 1, b"k", b"v")
    m.set_key("key")
    m.set_value({"a": 1})
    m.set_headers([("x", None)])
    m.set_topic("u")
    m.set_error(KafkaError(KafkaError._FAIL))
    assert (m.topic(), m.key(), m.value(), m.headers(), m.error().code()) == \
        ("u", "key", {"a": 1}, [("x", None)], KafkaError._FAIL)
    for bad in (None, object()):
        for meth in ("topic", "value", "key", "headers", "error", "partition", "offset", "leader_epoch",
                     "timestamp", "latency"):
            with pytest.raises(TypeError):
                getattr(Message, meth)(bad)
        with pytest.raises(TypeError):
            Message.set_value(bad, b"x")
        with pytest.raises(TypeError):
            Message.__init__(bad)
    with pytest.raises(TypeError):
        len(Message(value=1))
    a, b = Message("t", 0, 1, b"k", b"v", latency=1.0), Message("t", 0, 1, b"k", b"v", latency=2.0)
    assert a == b and a != Message("t", 0, 2, b"k", b"v") and a != 1  # latency aside
    with pytest.raises(TypeError):
        a < b  # noqa: B015
    with pytest.raises(TypeError):
        hash(a)
    r = pickle.loads(pickle.dumps(m))
    assert type(r) is Message and r == m and r.value() == {"a": 1}
    assert Message().__reduce__() == (Message, (None, -1, -1001, None, None, None, None, (0, 0), -1.0, -1, -1))

    class Sub(Message):
        def __init__(self, *args):
            super().__init__(*args)
            self.extra = 1
    s = Sub("t", 1)
    assert type(s) is Sub and s.extra == 1 and s.partition() == 1

    # Message's own dealloc (shm._fastlog, set_message_type) keeps its instances for reuse and drops each one's
    # reference to its type, also as the base dealloc of a subclass: the types' counts come back where they were
    class Slotted(Message):
        __slots__ = ()
    del s
    gc.collect()
    before = [sys.getrefcount(t) for t in (Message, Sub, Slotted)]
    for i in range(3000):
        kept = [Message("t", i), Sub("t", i), Slotted("t", i), Message("t", i, headers=[("k", b"v")])]
        kept[1].me = kept[1]  # a cycle: freed by the collector
        del kept
    gc.collect()
    assert [sys.getrefcount(t) for t in (Message, Sub, Slotted)] == before


def test_message_from_poll_and_events(ns):
    make_topic(ns, "m")
    with Producer(conf(ns)) as p:
        p.produce("m", b"v", key=b"k", timestamp=1234)
    c = ck.Consumer(conf(ns, **{"group.id": "g", "auto.offset.reset": "earliest", "enable.partition.eof": True}))
    c.assign([TopicPartition("m", 0)])
    m = c.poll(10)
    assert (m.value(), m.timestamp(), m.timestamp_ns()) == (b"v", (TIMESTAMP_CREATE_TIME, 1234), 1234_000_000)
    eof = c.poll(10)
    assert eof.error().code() == KafkaError._PARTITION_EOF and eof.timestamp() == (TIMESTAMP_NOT_AVAILABLE, -1)
    c.close()


def test_message_construction_stays_cheap(monkeypatch):
    """The consumer and producer build Messages without __new__'s checks (a
    plain tuple construction): make_message works with __new__ refusing."""
    from broker.message import make_message

    def refuse(*a, **k):
        raise AssertionError("Message.__new__ ran on the fast path")
    monkeypatch.setattr(Message, "__new__", refuse)
    m = make_message("t", 0, 1, None, b"v", None, None, 5, None)
    assert type(m) is Message and (m.topic(), m.partition(), m.offset(), m.value()) == ("t", 0, 1, b"v")


# -- 3. KafkaError and produce_batch
def test_kafka_error_table():
    assert (KafkaError.MEMBER_ID_REQUIRED, KafkaError._ALL_BROKERS_DOWN, KafkaError._WAIT_COORD,
            KafkaError._NO_OFFSET, KafkaError.SHARE_SESSION_LIMIT_REACHED) == (79, -187, -180, -168, 133)
    assert KafkaError.INVALID_TOPIC_EXCEPTION == KafkaError.TOPIC_EXCEPTION == 17  # our older name kept
    assert KafkaError.CORRUPT_MESSAGE == KafkaError.INVALID_MSG == 2
    assert KafkaError(17).name() == "TOPIC_EXCEPTION" and KafkaError(-191).name() == "_PARTITION_EOF"
    assert KafkaError(12345).name() == "ERR_12345?" and KafkaError(12345).str() == "Err-12345?"
    names = [n for n, v in vars(KafkaError).items() if isinstance(v, int) and not n.startswith("__")]
    assert len(names) >= 190 and all(n in KafkaError.__doc__ for n in names)
    e = KafkaError(KafkaError.MEMBER_ID_REQUIRED, "why", fatal=True, retriable=True, txn_requires_abort=True)
    assert e.fatal() and e.retriable() and e.txn_requires_abort() and e == 79 and e.str() == "why"
    x = KafkaException(KafkaError._FAIL, "reason")
    assert x.args[0].code() == KafkaError._FAIL and str(x) == "reason"


def test_kafka_error_and_exception_print_as_confluents():
    import broker.errors as be
    from shm.errors import error_text
    e = KafkaError(KafkaError.MEMBER_ID_REQUIRED, "who are you")
    want = 'KafkaError{code=MEMBER_ID_REQUIRED,val=79,str="who are you"}'
    assert str(e) == repr(e) == want and "%s" % e == want and e.str() == "who are you"
    fatal = KafkaError(KafkaError._FATAL, "gone", fatal=True)
    assert str(fatal) == repr(fatal) == 'KafkaError{FATAL,code=_FATAL,val=-150,str="gone"}'
    assert str(KafkaError(12345)) == 'KafkaError{code=ERR_12345?,val=12345,str="Err-12345?"}'
    x = KafkaException(e)  # confluent-kafka's way: prints the error's form
    assert str(x) == want and x.args == (e,) and repr(x) == "KafkaException(%s)" % want
    assert error_text(x) == "who are you" and error_text(e) == "who are you"
    words = "topic 'x' does not exist: create it first"
    classes = [KafkaException] + [getattr(be, n) for n in be.__all__ if n not in ("KafkaError", "KafkaException")]
    assert len(classes) == 13
    for cls in classes:
        assert issubclass(cls, KafkaException)
        mine = cls(words)  # shmbroker's way: the message, as written
        assert str(mine) == words and error_text(mine) == words, cls
        assert mine.args[0].code() == cls.code and mine.args[0].str() == words, cls
        theirs = cls(KafkaError(cls.code, words))
        assert str(theirs) == 'KafkaError{code=%s,val=%d,str="%s"}' % (KafkaError(cls.code).name(), cls.code, words)
        assert error_text(theirs) == words, cls
        for exc in (mine, theirs):  # pickled (a pool's result, a queue's error): prints the same
            back = pickle.loads(pickle.dumps(exc))
            assert type(back) is cls and str(back) == str(exc) and back.args[0] == exc.args[0], cls
    assert str(KafkaException(KafkaError._FAIL, "reason")) == "reason"
    assert str(KafkaException(KafkaError._FAIL)) == 'KafkaError{code=_FAIL,val=-196,str="_FAIL"}'
    assert str(KafkaException()) == "" and error_text(be.ClosedError()) == "_STATE"  # no words: the code's name
    assert error_text(ValueError("plain")) == "plain"


def test_failed_delivery_report_prints_as_confluent(ns):
    make_topic(ns, "r")
    reports = []
    p = Producer(conf(ns, **{"message.max.bytes": 1000}))
    msgs = [{"value": b"y" * 2000, "callback": lambda err, m: reports.append(err)}]
    assert p.produce_batch("r", msgs) == 0
    err = msgs[0]["_error"]
    assert err.code() == KafkaError.MSG_SIZE_TOO_LARGE and err.str().startswith("Message failed: ")
    assert str(err) == 'KafkaError{code=MSG_SIZE_TOO_LARGE,val=10,str="%s"}' % err.str()
    assert "message.max.bytes" in err.str() and "KafkaError{" not in err.str()
    assert p.poll(0) == 0 and reports == []  # a record refused at produce() has no delivery report
    p.close()


def test_produce_batch(ns):
    make_topic(ns, "b", 2)
    reports = []
    p = Producer(conf(ns, on_delivery=lambda err, m: reports.append(("default", m.value(), m.partition()))))
    own = lambda err, m: reports.append(("own", m.value(), m.partition()))  # noqa: E731
    msgs = [{"value": b"a", "key": "k"}, {"value": "é"}, {}, {"value": b"c", "partition": 0, "callback": own}]
    assert p.produce_batch("b", msgs, partition=1) == 4
    assert not any("_error" in m for m in msgs)
    assert p.poll(0) == 4  # in order; the batch's partition applies to each (librdkafka's batch call)
    assert reports == [("default", b"a", 1), ("default", "é".encode(), 1), ("default", None, 1), ("own", b"c", 1)]
    assert p.produce_batch("b", []) == 0
    for bad, words in ((("b", "notalist"), "messages must be a list"), (("b", [{}, 5]), "index 1 must be a dict"),
                       (("b", [{"value": 1}]), "value at index 0"), (("b", [{"key": [1]}]), "key at index 0"),
                       (("b", [{"partition": "x"}]), "partition at index 0"), ((None, [{}]), "topic")):
        with pytest.raises(TypeError, match=words):
            p.produce_batch(*bad)
    with pytest.raises(NotImplementedError, match="timestamps"):
        p.produce_batch("b", [{"value": b"x", "timestamp": 5}])
    small = Producer(conf(ns, **{"message.max.bytes": 1000}))
    mixed = [{"value": b"x"}, {"value": b"y" * 2000}, {"value": b"z"}]
    assert small.produce_batch("b", mixed) == 2
    assert "_error" not in mixed[0] and mixed[1]["_error"].code() == KafkaError.MSG_SIZE_TOO_LARGE
    with pytest.raises(KafkaException, match="message.max.bytes"):
        small.produce("b", b"y" * 2000)
    small.close()
    p.close()
    with pytest.raises(RuntimeError, match="Producer has been closed"):
        p.produce_batch("b", [{}])


# -- 4. behaviour
def test_closed_clients_raise_runtime_error(ns):
    make_topic(ns, "c")
    c = ck.Consumer(conf(ns, **{"group.id": "g"}))
    c.close()
    c.close()  # again: nothing, as confluent-kafka 2.15
    tp = TopicPartition("c", 0)
    for call in (c.poll, c.consume, c.unsubscribe, c.assignment, c.commit, c.unassign, c.memberid,
                 lambda: c.subscribe(["c"]), lambda: c.assign([tp]), lambda: c.committed([tp]),
                 lambda: c.position([tp]), lambda: c.seek(tp), lambda: c.get_watermark_offsets(tp),
                 lambda: c.store_offsets(offsets=[tp]), lambda: c.offsets_for_times([tp])):
        with pytest.raises(RuntimeError, match="^Consumer closed$"):
            call()
    p = Producer(conf(ns))
    assert p.close() is True and p.close() is True
    for call in (lambda: p.produce("c", b"x"), p.poll, p.flush, p.purge, p.list_topics, p.init_transactions):
        with pytest.raises(RuntimeError, match="Producer has been closed"):
            call()


def test_producer_poll_waits_out_its_timeout(ns):
    p = Producer(conf(ns))
    t0 = time.monotonic()
    assert p.poll(0.3) == 0
    assert time.monotonic() - t0 >= 0.29
    assert p.poll(0) == 0
    # a report queued by another thread ends the wait early
    make_topic(ns, "w")
    got = []
    start = threading.Event()

    def other():
        start.wait(10)
        p.produce("w", b"x", on_delivery=lambda err, m: got.append(m.value()))
    th = threading.Thread(target=other)
    th.start()
    t0 = time.monotonic()
    start.set()
    assert p.poll(30) == 1 and got == [b"x"]
    assert time.monotonic() - t0 < 10
    th.join(10)
    p.close()


def test_producer_poll_is_interruptible(ns):
    p = Producer(conf(ns))
    fired = []

    def handler(signum, frame):
        fired.append(signum)
        raise KeyboardInterrupt
    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            p.poll(30)
        assert time.monotonic() - t0 < 5 and fired == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    p.close()


def test_commit_and_store_offsets_checks(ns):
    make_topic(ns, "o")
    commits = []
    c = ck.Consumer(conf(ns, **{"group.id": "g", "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                "on_commit": lambda err, parts: commits.append((err, parts))}))
    with pytest.raises(ValueError, match="mutually exclusive"):
        c.store_offsets(message=Message("o", 0, 1), offsets=[TopicPartition("o", 0, 1)])
    with pytest.raises(ValueError, match="expected either"):
        c.store_offsets()
    with pytest.raises(ValueError, match="mutually exclusive"):
        c.commit(message=Message("o", 0, 1), offsets=[TopicPartition("o", 0, 1)])
    c.assign([TopicPartition("o", 0)])
    assert c.commit(asynchronous=True) is None  # nothing consumed: no raise, on_commit gets _NO_OFFSET
    with pytest.raises(KafkaException) as e:
        c.commit(asynchronous=False)
    assert e.value.args[0].code() == KafkaError._NO_OFFSET
    assert c.poll(0.05) is None
    assert [err.code() for err, _ in commits] == [KafkaError._NO_OFFSET] * 2
    assert commits[0][1] == [TopicPartition("o", 0)]
    with Producer(conf(ns)) as p:
        p.produce("o", b"x")
    assert c.poll(10).value() == b"x"
    assert c.commit(asynchronous=False) == [TopicPartition("o", 0, 1)]
    with pytest.raises(KafkaException) as e:  # committed already: nothing new
        c.commit(asynchronous=False)
    assert e.value.args[0].code() == KafkaError._NO_OFFSET
    c.close()


def test_offsets_for_times_errors_per_partition(ns):
    make_topic(ns, "f")
    with Producer(conf(ns)) as p:
        p.produce("f", b"x", timestamp=5000)
    c = ck.Consumer(conf(ns, **{"group.id": "g"}))
    got = c.offsets_for_times([TopicPartition("f", 0, 4000), TopicPartition("f", 7, 0),
                               TopicPartition("nosuch", 0, 0)])
    assert (got[0].offset, got[0].error) == (0, None)
    assert got[1].offset == ck.OFFSET_INVALID and got[1].error.code() == KafkaError._UNKNOWN_PARTITION
    assert got[2].error.code() == KafkaError._UNKNOWN_TOPIC
    c.close()


def test_auto_topic_creation(ns):
    with Namespace(ns) as n:
        assert auto_create_enabled(n)  # on by default, as Kafka's auto.create.topics.enable
    p = Producer(conf(ns))
    p.produce("fresh", b"x")  # created on first produce, with one partition
    with AdminClient(conf(ns)) as a:
        md = a.list_topics()
    assert len(md.topics["fresh"].partitions) == 1
    # a consumer creates what it subscribes to or assigns only with allow.auto.create.topics (librdkafka: false)
    c = ck.Consumer(conf(ns, **{"group.id": "g"}))
    c.assign([TopicPartition("notyet", 0)])
    ev = c.poll(1)
    # the event says so; as librdkafka, the partition stays assigned (read once the topic exists)
    assert ev.error().code() == KafkaError._UNKNOWN_TOPIC and c.assignment() == [TopicPartition("notyet", 0)]
    c.close()
    c = ck.Consumer(conf(ns, **{"group.id": "g", "allow.auto.create.topics": True}))
    c.subscribe(["bysub"])
    c.assign([TopicPartition("byassign", 0)])
    with AdminClient(conf(ns)) as a:
        assert {"bysub", "byassign"} <= set(a.list_topics().topics)
    c.close()
    with Namespace(ns) as n:
        set_auto_create(n, False)
        assert not auto_create_enabled(n)
    from broker.errors import UnknownTopicError
    with pytest.raises(UnknownTopicError, match="auto.create.topics.enable is off"):
        p.produce("other", b"x")
    with Namespace(ns) as n:
        set_auto_create(n, True)
    p.produce("other", b"x")
    p.close()


# -- 5. docs
def _public_members(obj):
    for name, member in inspect.getmembers(obj):
        if name.startswith("_") or isinstance(member, (int, str)):
            continue
        if any(member is getattr(base, name, None) for base in (tuple, str)):
            continue  # (Message is a tuple: count and index are tuple's; MessageField is a str)
        yield name, member


@pytest.mark.parametrize("module", ["broker.kafka", "broker.kafka.admin", "broker.kafka.serialization",
                                    "broker.kafka.error"])
def test_every_public_name_documented_with_a_field(module):
    mod = __import__(module, fromlist=["__all__"])
    missing = []
    for name in mod.__all__:
        obj = getattr(mod, name)
        if isinstance(obj, int):  # a constant: named in the module's documentation (librdkafka's, for .admin)
            assert mod is not ck or name in ck.__doc__, name
            continue
        if inspect.ismodule(obj):
            continue
        if not re.search(":", obj.__doc__ or ""):
            missing.append(name)
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            for mname, member in _public_members(obj):
                if callable(member) and not re.search(":", getattr(member, "__doc__", None) or ""):
                    if not (inspect.isclass(obj) and issubclass(obj, __import__("enum").Enum)):
                        missing.append("%s.%s" % (name, mname))
    assert missing == []


# -- 6. what needs a Kafka cluster
def test_cluster_only_features_raise_clear_errors(ns):
    p = Producer(conf(ns))
    for call in (p.init_transactions, p.begin_transaction, p.commit_transaction, p.abort_transaction,
                 lambda: p.send_offsets_to_transaction([], None), lambda: p.set_sasl_credentials("u", "p")):
        with pytest.raises(KafkaException, match="not supported on one host") as e:
            call()
        assert e.value.args[0].code() == KafkaError._NOT_IMPLEMENTED
    p.close()
    c = ck.Consumer(conf(ns, **{"group.id": "g"}))
    assert c.consumer_group_metadata().group_id == "g"
    with pytest.raises(KafkaException, match="SASL credentials: not supported on one host"):
        c.set_sasl_credentials("u", "p")
    c.close()
    from broker.errors import ConfigError
    with pytest.raises(ConfigError, match="transactions"):
        Producer(conf(ns, **{"transactional.id": "t"}))


def test_confluent_constructor_contract(ns):
    with pytest.raises(TypeError, match="expected configuration dict"):
        ck.Producer()
    with pytest.raises(TypeError, match="expected configuration dict"):
        ck.Consumer()
    with pytest.raises(ValueError, match="group.id must be set"):
        ck.Consumer(conf(ns))
    p = ck.Producer(conf(ns, **{"bootstrap.servers": None, "shm.namespace": ns}))  # None unsets a key
    assert bool(p) and len(p) == 0
    with pytest.raises(TypeError):
        p.produce("h", b"v", headers={"n": 1234})
    with pytest.raises(TypeError):
        p.produce("h", b"v", headers=("a", "b"))
    p.close()
