"""Client and topic config as a careless user writes it: every value
checked by type and range, unimplemented Kafka features refused by name,
messages in the user's words."""
import logging
import os

import pytest

from broker import Consumer, Producer, config
from broker.admin import AdminClient, NewTopic
from broker.errors import ConfigError, InvalidNameError, MessageTooLargeError


def shm_of(ns):
    return sorted(f for f in os.listdir("/dev/shm") if f == "shmb." + ns or f.startswith("shmb.%s." % ns))


BAD = [("consumer", "session.timeout.ms", -5), ("producer", "linger.ms", "abc"), ("consumer", "session.timeout.ms", 0),
       ("consumer", "max.poll.interval.ms", "soon"), ("consumer", "auto.commit.interval.ms", -1),
       ("consumer", "enable.auto.commit", "maybe"), ("consumer", "enable.partition.eof", 2),
       ("consumer", "heartbeat.interval.ms", 1.5), ("consumer", "isolation.level", "dirty"),
       ("consumer", "fetch.min.bytes", 0), ("consumer", "group.id", 5), ("consumer", "on_commit", "print"),
       ("producer", "queue.buffering.max.messages", 0), ("producer", "shm.block.timeout.ms", "x"),
       ("producer", "shm.block.timeout.ms", -2), ("producer", "acks", "some"), ("producer", "linger.ms", -1),
       ("producer", "linger.ms", float("nan")), ("producer", "retries", True), ("producer", "partitioner", "mine"),
       ("producer", "compression.type", "rar"), ("producer", "on_delivery", 3), ("producer", "client.id", 7),
       ("admin", "shm.mode", "0999"), ("admin", "shm.mode", "0066"), ("admin", "shm.mode", 0o1600),
       ("admin", "statistics.interval.ms", -1), ("admin", "log_level", 9), ("admin", "shm.wait", "nap"),
       ("consumer", "partition.assignment.strategy", "bogus")]


@pytest.mark.parametrize("kind, key, value", BAD, ids=lambda x: str(x))
def test_bad_values_raise_config_error_naming_the_key(kind, key, value):
    with pytest.raises(ConfigError) as e:
        config.parse({key: value}, {}, kind)
    want = {"partition.assignment.strategy": key + ": unknown assignor",
            "partitioner": 'Invalid value for configuration property "partitioner": '}.get(key, key + " must be ")
    assert str(e.value).startswith(want), str(e.value)


def test_a_bad_value_creates_nothing(ns):
    for cls, conf in ((Consumer, {"session.timeout.ms": -5}), (Producer, {"linger.ms": "abc"})):
        with pytest.raises(ConfigError):
            cls({"shm.namespace": ns, **conf})
    assert shm_of(ns) == []


def test_values_are_normalised_as_librdkafka_reads_them():
    c = config.parse({"session.timeout.ms": "6000", "enable.auto.commit": "false", "check.crcs": "true",
                      "auto.commit.interval.ms": 100, "fetch.wait.max.ms": " 5 "}, {}, "consumer")
    assert c == {"session.timeout.ms": 6000, "enable.auto.commit": False, "check.crcs": True,
                 "auto.commit.interval.ms": 100, "fetch.wait.max.ms": 5}
    p = config.parse({"linger.ms": "0.5", "acks": "all", "shm.block.timeout.ms": -1, "shm.mode": "0660"}, {},
                     "producer")
    assert p == {"linger.ms": 0.5, "acks": -1, "shm.block.timeout.ms": -1, "shm.mode": "0660"}
    assert config.parse({"shm.mode": 0o640}, {}, "admin")["shm.mode"] == 0o640


def test_every_key_has_a_validator():
    """A key added to a kind's set without a type and range check fails here."""
    assert sorted(config.COMMON | config.PRODUCER | config.CONSUMER | config.ADMIN | config.QUEUE) == sorted(
        config.VALIDATORS)


@pytest.mark.parametrize("kind, key, value, words", [
    ("producer", "transactional.id", "tx-1", "transactions"),
    ("producer", "delivery.report.only.error", "true", "delivery reports for failed records only")])
def test_unimplemented_client_features_are_refused(kind, key, value, words):
    with pytest.raises(ConfigError, match="%s.*which shmbroker does not implement" % words):
        config.parse({key: value}, {}, kind)


def test_features_we_have_are_accepted():
    assert config.parse({"delivery.report.only.error": "false", "enable.idempotence": True}, {}, "producer")
    assert config.parse({"allow.auto.create.topics": False, "isolation.level": "read_committed"}, {}, "consumer")


@pytest.mark.parametrize("key, value, words", [
    ("cleanup.policy", "compact", "log compaction"), ("cleanup.policy", "compact,delete", "log compaction"),
    ("message.timestamp.type", "LogAppendTime", "broker-side timestamps"),
    ("retention.ms", -5, "retention.ms must be an integer"), ("retention.bytes", "lots", "retention.bytes must be"),
    ("shm.overflow", "drop", "shm.overflow must be one of overwrite, block"),
    ("min.insync.replicas", "two", "min.insync.replicas must be"),
    ("retention.byte", 4096, "No such configuration property: 'retention.byte' for a topic (did you mean "
                             "'retention.bytes'?)")])
def test_topic_config_is_checked(ns, key, value, words):
    with AdminClient({"shm.namespace": ns}) as a:
        with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
            a.create_topics([NewTopic("t", 1, config={key: value})])["t"].result()
        assert a.list_topics().topics == {}
        a.create_topics([NewTopic("ok", 1, config={"cleanup.policy": "delete", "min.insync.replicas": "2",
                                                   "message.timestamp.type": "CreateTime"})])["ok"].result()
        assert list(a.list_topics().topics) == ["ok"]


def test_unknown_key_message_speaks_to_users():
    with pytest.raises(ConfigError) as e:
        config.parse({"linger.msec": 5}, {}, "producer")
    msg = str(e.value)
    assert "'linger.msec'" in msg and "did you mean 'linger.ms'" in msg and ".md" not in msg
    with pytest.raises(ConfigError, match="'group.id' is a consumer key: a producer does not take it"):
        config.parse({"group.id": "g"}, {}, "producer")


def test_non_shm_bootstrap_servers_is_logged_once(caplog):
    caplog.set_level(logging.INFO, logger="broker.config")
    bs = "kafka-%d.example:9092" % os.getpid()
    for _ in range(3):
        assert config.resolve_namespace({"bootstrap.servers": bs, "shm.namespace": "sbtx"}) == "sbtx"
    told = [r for r in caplog.records if bs in r.getMessage()]
    assert len(told) == 1 and told[0].levelno == logging.INFO and "ignored" in told[0].getMessage()
    assert config.resolve_namespace({"bootstrap.servers": "shm://sbty"}) == "sbty"
    assert len([r for r in caplog.records if "sbty" in r.getMessage()]) == 0


@pytest.mark.parametrize("name", ["-h", "-x", "a.b", "", "x" * 49, "a b", "é", None, 5])
def test_bad_namespace_names(name):
    with pytest.raises(InvalidNameError):
        config.check_namespace(name)
    with pytest.raises(InvalidNameError):
        config.parse({"shm.namespace": name}, {}, "admin")


@pytest.mark.parametrize("name", ["a", "_a", "A9-b_c", "x" * 48, "0"])
def test_good_namespace_names(name):
    assert config.check_namespace(name) == name


@pytest.mark.parametrize("name", ["-t", ".t", ".", "..", "", "x" * 250, "a b"])
def test_topic_names_follow_the_same_rule(ns, name):
    with AdminClient({"shm.namespace": ns}) as a:
        with pytest.raises(InvalidNameError, match="start with a letter, digit or '_'"):
            a.create_topics([NewTopic(name, 1)])[name].result()


def test_too_large_message_names_no_internals(ns):
    with AdminClient({"shm.namespace": ns}) as a:
        a.create_topics([NewTopic("t", 1, config={"retention.bytes": 4096, "max.message.bytes": 100})])["t"].result()
    with Producer({"shm.namespace": ns, "shm.supervisor": "off"}) as p:
        with pytest.raises(MessageTooLargeError) as e:
            p.produce("t", b"x" * 200, partition=0)
    msg = str(e.value)
    assert "max_record" not in msg and "/shmb." not in msg, msg
    assert "max.message.bytes" in msg and "namespace %r" % ns in msg
