"""Client and topic configuration: librdkafka's key names, validated.

Every key has a validator (``VALIDATORS``, ``TOPIC_VALIDATORS``) that checks
the value's type and range, as librdkafka does, and returns it normalised
(``"5000"`` -> 5000, ``"true"`` -> True).  Unknown keys raise ConfigError
naming them.  Kafka keys that mean nothing on one host (security, brokers,
batching) are accepted and ignored once their value is valid; a Kafka
feature shmbroker does not implement (log compaction, transactions, ...)
raises ConfigError saying so rather than being silently ignored."""
import difflib
import logging
import os
import re

from shm.errors import ConfigError, InvalidNameError, KafkaError

_log = logging.getLogger("broker.config")

COMMON = {"bootstrap.servers", "client.id", "shm.namespace", "shm.wait", "shm.block.timeout.ms", "error_cb",
          "logger", "shm.supervisor", "shm.mode", "stats_cb", "statistics.interval.ms", "debug", "log_level",
          "throttle_cb", "oauth_cb"}
PRODUCER = {"partitioner", "on_delivery", "acks", "request.required.acks", "linger.ms", "queue.buffering.max.ms",
            "batch.size", "batch.num.messages", "compression.type", "compression.codec", "enable.idempotence",
            "message.max.bytes", "queue.buffering.max.messages", "queue.buffering.max.kbytes", "retries",
            "message.send.max.retries", "delivery.timeout.ms", "message.timeout.ms", "request.timeout.ms",
            "max.in.flight.requests.per.connection", "max.in.flight", "sticky.partitioning.linger.ms",
            "delivery.report.only.error", "dr_cb", "dr_msg_cb", "retry.backoff.ms", "transactional.id",
            "partitioner_cb", "shm.pre.touch"}
CONSUMER = {"group.id", "auto.offset.reset", "enable.auto.commit", "auto.commit.interval.ms",
            "enable.auto.offset.store", "enable.partition.eof", "session.timeout.ms", "max.poll.interval.ms",
            "heartbeat.interval.ms", "partition.assignment.strategy", "group.instance.id", "isolation.level",
            "fetch.min.bytes", "fetch.max.bytes", "fetch.wait.max.ms", "max.partition.fetch.bytes",
            "fetch.message.max.bytes", "queued.min.messages", "queued.max.messages.kbytes", "on_commit",
            "group.protocol", "group.remote.assignor", "check.crcs", "allow.auto.create.topics",
            "shm.latency.histogram", "shm.aio.waker", "shm.pre.touch", "shm.zero.copy"}
ADMIN = set()
# broker.Queue & co (broker/pool/queue.py): the ring of each queue, with the topic keys' names
QUEUE = {"retention.bytes", "max.message.bytes", "shm.slots"}
IGNORED_PREFIXES = ("security.", "ssl.", "sasl.", "socket.", "reconnect.", "retry.", "metadata.", "topic.metadata.",
                    "api.version.", "broker.", "client.dns.", "connections.", "enable.ssl.", "enable.sasl.",
                    "allow.auto.", "ssl_", "sasl_", "topic.")
IGNORED = {"api.version.request", "client.rack", "default.topic.config", "log.thread.name", "log.queue",
           "log.connection.close", "enable.random.seed", "internal.termination.signal"}

AUTO_OFFSET_RESET = {"smallest": "earliest", "earliest": "earliest", "beginning": "earliest",
                     "largest": "latest", "latest": "latest", "end": "latest", "error": "error"}
WAIT_MODES = ("adaptive", "spin", "sleep")
_INT32 = 2 ** 31 - 1

# Names.  A namespace is part of every segment name (``shmb.<ns>.<topic id>.<partition>``), so it has no '.';
# otherwise namespaces and topics follow one rule: letters, digits, '_', '-' (and '.' in topics), never a
# leading '-' (it would read as a command-line flag) or '.'.
NAME_RULE = "start with a letter, digit or '_', then letters, digits, '_' or '-'"
_NS_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,47}$")


def check_namespace(name):
    if not isinstance(name, str) or not _NS_RE.match(name):
        raise InvalidNameError("bad namespace %r: a namespace is 1 to 48 characters: %s (no '.')"
                               % (name, NAME_RULE))
    return name


# -- validators: (key, value) -> normalised value, or ConfigError naming the key
def _bad(key, value, want):
    return ConfigError("%s must be %s, got %r" % (key, want, value))


def _int(lo, hi):
    def check(key, v):
        if isinstance(v, bool):
            raise _bad(key, v, "an integer in [%d, %d]" % (lo, hi))
        try:
            n = int(v.strip()) if isinstance(v, str) else int(v) if isinstance(v, int) else None
        except ValueError:
            n = None
        if n is None or not lo <= n <= hi:
            raise _bad(key, v, "an integer in [%d, %d]" % (lo, hi))
        return n
    return check


def _num(lo, hi):
    def check(key, v):
        try:
            x = float(v) if isinstance(v, (int, float, str)) and not isinstance(v, bool) else None
        except ValueError:
            x = None
        if x is None or not lo <= x <= hi:  # NaN fails both comparisons
            raise _bad(key, v, "a number in [%g, %g]" % (lo, hi))
        return int(x) if x == int(x) else x
    return check


_TRUE, _FALSE = ("true", "t", "1", "yes", "on"), ("false", "f", "0", "no", "off")


def _bool(key, v):
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
        return v.strip().lower() in _TRUE
    raise _bad(key, v, "true or false")


def _enum(*values, aliases=None):
    def check(key, v):
        if isinstance(v, str) and (v in values or (aliases and v in aliases)):
            return v
        raise _bad(key, v, "one of %s" % ", ".join(values + tuple(aliases or ())))
    return check


def _str(key, v):
    if not isinstance(v, str):
        raise _bad(key, v, "a string")
    return v


def _callable(key, v):
    if v is not None and not callable(v):
        raise _bad(key, v, "a function")
    return v


def _any(key, v):
    return v


def _namespace(key, v):
    return check_namespace(v)  # InvalidNameError, as the name's other paths raise


def _mode(key, v):
    """shm.mode: permission bits of the namespace's segments and lock files,
    an octal string ("0660") or an int (0o660); the owner keeps read-write."""
    try:
        m = int(v, 8) if isinstance(v, str) else v if isinstance(v, int) and not isinstance(v, bool) else None
    except ValueError:
        m = None
    if m is None or not 0 <= m <= 0o777 or m & 0o600 != 0o600:
        raise _bad(key, v, "octal permission bits with owner read-write, like \"0600\" (the default) or \"0660\"")
    return v


def _partitioner(key, v):
    """librdkafka's wording (``Invalid value for configuration property "partitioner": murmur``), then ours."""
    from .partitioner import PARTITIONERS
    if isinstance(v, str) and v in PARTITIONERS:
        return v
    raise ConfigError("Invalid value for configuration property \"%s\": %s: use one of %s"
                      % (key, v, ", ".join(sorted(PARTITIONERS))))


def _partitioner_cb(key, v):
    """librdkafka takes a partitioner callback only through rd_kafka_topic_conf_set_partitioner_cb(), which
    confluent-kafka does not expose: its Producer refuses the key with this wording, and so do we."""
    raise ConfigError(KafkaError(KafkaError._INVALID_ARG, "Property \"%s\" must be set through dedicated "
                                 ".._set_..() function: confluent-kafka has none for it; name a built-in "
                                 "partitioner (partitioner=murmur2_random, ...) or pass partition= to produce()"
                                 % key))


def _strategies(key, v):
    _str(key, v)
    from .groups import parse_strategies
    parse_strategies(v)  # raises ConfigError naming the key
    return v


def _acks(key, v):
    return -1 if v == "all" else _int(-1, 1000)(key, v)


def _not_implemented(feature, what_to_do, allowed=()):
    """A key whose every value but *allowed* asks for a Kafka feature that
    shmbroker does not implement."""
    def check(key, v):
        norm = v.strip().lower() if isinstance(v, str) else v
        for a in allowed:
            if norm == a or (isinstance(a, bool) and isinstance(norm, str) and norm in (_TRUE if a else _FALSE)):
                return v
        raise ConfigError("%s=%r asks for %s, which shmbroker does not implement: %s"
                          % (key, v, feature, what_to_do))
    return check


_ms = _int(0, _INT32)
_COMPRESSION = _enum("none", "gzip", "snappy", "lz4", "zstd")
VALIDATORS = {
    # every client
    "bootstrap.servers": _str, "client.id": _str, "shm.namespace": _namespace, "shm.wait": _enum(*WAIT_MODES),
    "shm.block.timeout.ms": _int(-1, _INT32), "shm.supervisor": _enum("auto", "off"), "shm.mode": _mode,
    "error_cb": _callable, "stats_cb": _callable, "throttle_cb": _callable, "oauth_cb": _callable, "logger": _any,
    "statistics.interval.ms": _int(0, 86400000), "debug": _str, "log_level": _int(0, 7),
    # producers
    "partitioner": _partitioner, "partitioner_cb": _partitioner_cb, "on_delivery": _callable, "dr_cb": _callable,
    "dr_msg_cb": _callable,
    "acks": _acks, "request.required.acks": _acks, "linger.ms": _num(0, 900000),
    "queue.buffering.max.ms": _num(0, 900000), "batch.size": _int(1, _INT32), "batch.num.messages": _int(1, 1000000),
    "compression.type": _COMPRESSION, "compression.codec": _COMPRESSION, "enable.idempotence": _bool,
    "message.max.bytes": _int(1000, 1000000000), "queue.buffering.max.messages": _int(1, _INT32),
    "queue.buffering.max.kbytes": _int(1, _INT32), "retries": _int(0, _INT32),
    "message.send.max.retries": _int(0, _INT32), "delivery.timeout.ms": _ms, "message.timeout.ms": _ms,
    "request.timeout.ms": _int(1, 900000), "max.in.flight.requests.per.connection": _int(1, 1000000),
    "max.in.flight": _int(1, 1000000), "sticky.partitioning.linger.ms": _int(0, 900000),
    "retry.backoff.ms": _int(1, 300000),
    "delivery.report.only.error": _not_implemented(
        "delivery reports for failed records only", "every produce() succeeds or raises at once here; drop the key",
        allowed=(False,)),
    "transactional.id": _not_implemented(
        "transactions", "a record is visible when produce() returns; drop the key"),
    # consumers
    "group.id": _str, "auto.offset.reset": _enum(*AUTO_OFFSET_RESET), "enable.auto.commit": _bool,
    "auto.commit.interval.ms": _int(0, 86400000), "enable.auto.offset.store": _bool, "enable.partition.eof": _bool,
    "session.timeout.ms": _int(1, 3600000), "max.poll.interval.ms": _int(1, 86400000),
    "heartbeat.interval.ms": _int(1, 3600000), "partition.assignment.strategy": _strategies,
    "group.instance.id": _str, "isolation.level": _enum("read_committed", "read_uncommitted"),
    "fetch.min.bytes": _int(1, 100000000), "fetch.max.bytes": _int(0, _INT32), "fetch.wait.max.ms": _int(0, 300000),
    "max.partition.fetch.bytes": _int(1, 1000000000), "fetch.message.max.bytes": _int(1, 1000000000),
    "queued.min.messages": _int(1, 10000000), "queued.max.messages.kbytes": _int(1, 2097151),
    "on_commit": _callable, "group.protocol": _enum("classic", "consumer"), "group.remote.assignor": _str,
    "check.crcs": _bool,
    # produce->poll latency per group and partition, in shared memory (broker/latency_hist.py)
    "shm.latency.histogram": _bool,
    "shm.pre.touch": _bool,  # map every page of a partition when the client opens it (no page faults later)
    "shm.zero.copy": _bool,  # block topics' values as read-only memoryviews of the ring (broker/consumer.py)
    "shm.aio.waker": _enum("auto", "io_uring", "thread"),  # broker.aio's AIOConsumer (the sync one ignores it)
    "allow.auto.create.topics": _bool,  # with the namespace's auto.create.topics.enable (broker/autocreate.py)
}

# Topic configs (NewTopic.config).  The first five shape the partition rings (their ranges are checked with
# the ring's geometry in broker.namespace.topic_geometry); the others are Kafka's and mean nothing for a ring
# in shared memory: accepted when valid, except values asking for what shmbroker does not do.
TOPIC_VALIDATORS = {
    "retention.bytes": _int(1, 2 ** 62), "max.message.bytes": _int(0, 2 ** 62), "retention.ms": _int(-1, 2 ** 62),
    "shm.overflow": _enum("overwrite", "block"), "shm.slots": _int(1, 2 ** 62),
    "cleanup.policy": _not_implemented(
        "log compaction", "a topic keeps its newest records up to retention.bytes (cleanup.policy=delete)",
        allowed=("delete",)),
    "message.timestamp.type": _not_implemented(
        "broker-side timestamps", "records carry the producer's timestamp (CreateTime)", allowed=("createtime",)),
    "min.insync.replicas": _int(1, _INT32), "segment.bytes": _int(14, _INT32), "segment.ms": _int(1, 2 ** 62),
    "compression.type": _enum("producer", "uncompressed", "none", "gzip", "snappy", "lz4", "zstd"),
    "unclean.leader.election.enable": _bool, "flush.messages": _int(1, 2 ** 62), "flush.ms": _int(0, 2 ** 62),
    "index.interval.bytes": _int(0, _INT32), "delete.retention.ms": _int(0, 2 ** 62),
    "file.delete.delay.ms": _int(0, 2 ** 62), "preallocate": _bool,
}
TOPIC_RING_KEYS = ("retention.bytes", "max.message.bytes", "retention.ms", "shm.overflow", "shm.slots")
VALIDATORS.update({k: TOPIC_VALIDATORS[k] for k in QUEUE})  # only where allowed: a queue's config


def _unknown(key, known, what):
    near = difflib.get_close_matches(key, sorted(known), n=1)
    return ConfigError("No such configuration property: %r for %s%s; the keys shmbroker takes are listed in "
                       "broker.config" % (key, what, " (did you mean %r?)" % near[0] if near else ""))


def topic_config(config):
    """NewTopic.config -> {key: value} of the keys that shape the rings,
    each checked by type (other valid Kafka keys are dropped)."""
    out = {}
    for k, v in (config or {}).items():
        check = TOPIC_VALIDATORS.get(k)
        if check is None:
            raise _unknown(k, TOPIC_VALIDATORS, "a topic")
        v = check(k, v)
        if k in TOPIC_RING_KEYS:
            out[k] = v
    return out


_told_bootstrap = set()


def resolve_namespace(conf):
    """shm.namespace, else bootstrap.servers=shm://NAME, else env
    SHMBROKER_NAMESPACE, else 'default-<uid>' (per user: users never collide)."""
    ns = conf.get("shm.namespace")
    bs = conf.get("bootstrap.servers")
    if ns is None and isinstance(bs, str) and bs.startswith("shm://"):
        ns = bs[len("shm://"):].strip("/")
    if ns is None:
        ns = os.environ.get("SHMBROKER_NAMESPACE", "default-%d" % os.geteuid())
    ns = check_namespace(ns)
    if isinstance(bs, str) and not bs.startswith("shm://") and bs not in _told_bootstrap:
        _told_bootstrap.add(bs)  # once per value and process: nobody should think they reached Kafka
        _log.info("bootstrap.servers=%r is not shm://NAME: ignored; this client uses shmbroker namespace %r on "
                  "this host", bs, ns)
    return ns


def parse(config, kwargs, kind):
    """Merge *config* and *kwargs*; check every key for *kind* ('producer',
    'consumer', 'admin' or 'queue') and every value by type and range; return a plain
    dict of normalised values."""
    conf = {}
    if config is not None:
        if not isinstance(config, dict):
            raise TypeError("config must be a dict, got %s" % type(config).__name__)
        conf.update(config)
    conf.update(kwargs)
    for k in [k for k, v in conf.items() if v is None and isinstance(k, str) and not k.startswith("shm.")]:
        del conf[k]  # None unsets a librdkafka key, as its NULL (shmbroker's own keys still want a value)
    allowed = COMMON | {"producer": PRODUCER, "consumer": CONSUMER, "admin": ADMIN, "queue": QUEUE}[kind]
    for k in list(conf):
        if not isinstance(k, str):
            raise ConfigError("config keys must be str, got %r" % (k,))
        if k in allowed:
            conf[k] = VALIDATORS[k](k, conf[k])
        elif k in IGNORED or k.startswith(IGNORED_PREFIXES):
            continue
        elif k in CONSUMER or k in PRODUCER:
            whose = " and ".join(w for w, keys in (("producer", PRODUCER), ("consumer", CONSUMER)) if k in keys)
            raise ConfigError("%r is a %s key: %s %s does not take it"
                              % (k, whose, "an" if kind[0] in "aeiou" else "a", kind))
        else:
            raise _unknown(k, allowed, "a %s" % kind)
    return conf


def ms_to_s(v, default=None):
    if v is None:
        return default
    v = float(v)
    return None if v < 0 else v / 1000.0


def as_bool(v):
    if isinstance(v, str):
        return v.lower() in _TRUE
    return bool(v)
