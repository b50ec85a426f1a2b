"""Client configuration: librdkafka's key names, validated.  Unknown keys
raise ConfigError naming them (as librdkafka does); Kafka keys that mean
nothing on one host (security, brokers, batching) are accepted and ignored."""
import os
import re

from shm.errors import ConfigError, InvalidNameError

COMMON = {"bootstrap.servers", "client.id", "shm.namespace", "shm.mode", "shm.wait", "shm.block.timeout.ms", "error_cb",
          "logger", "shm.supervisor", "stats_cb", "statistics.interval.ms", "debug", "log_level", "throttle_cb", "oauth_cb"}
PRODUCER = {"partitioner", "on_delivery", "acks", "request.required.acks", "linger.ms", "queue.buffering.max.ms",
            "batch.size", "batch.num.messages", "compression.type", "compression.codec", "enable.idempotence",
            "message.max.bytes", "queue.buffering.max.messages", "queue.buffering.max.kbytes", "retries",
            "message.send.max.retries", "delivery.timeout.ms", "message.timeout.ms", "request.timeout.ms",
            "max.in.flight.requests.per.connection", "max.in.flight", "sticky.partitioning.linger.ms",
            "delivery.report.only.error", "dr_cb", "dr_msg_cb", "retry.backoff.ms", "transactional.id"}
CONSUMER = {"group.id", "auto.offset.reset", "enable.auto.commit", "auto.commit.interval.ms",
            "enable.auto.offset.store", "enable.partition.eof", "session.timeout.ms", "max.poll.interval.ms",
            "heartbeat.interval.ms", "partition.assignment.strategy", "group.instance.id", "isolation.level",
            "fetch.min.bytes", "fetch.max.bytes", "fetch.wait.max.ms", "max.partition.fetch.bytes",
            "fetch.message.max.bytes", "queued.min.messages", "queued.max.messages.kbytes", "on_commit",
            "group.protocol", "group.remote.assignor", "check.crcs", "allow.auto.create.topics"}
ADMIN = set()
IGNORED_PREFIXES = ("security.", "ssl.", "sasl.", "socket.", "reconnect.", "retry.", "metadata.", "topic.metadata.",
                    "api.version.", "broker.", "client.dns.", "connections.", "enable.ssl.", "enable.sasl.",
                    "allow.auto.", "ssl_", "sasl_", "topic.")
IGNORED = {"api.version.request", "client.rack", "default.topic.config"}

AUTO_OFFSET_RESET = {"smallest": "earliest", "earliest": "earliest", "beginning": "earliest",
                     "largest": "latest", "latest": "latest", "end": "latest", "error": "error"}
WAIT_MODES = ("adaptive", "spin", "sleep")
_NS_RE = re.compile(r"^[A-Za-z0-9_-]{1,48}$")


def check_namespace(name):
    if not isinstance(name, str) or not _NS_RE.match(name):
        raise InvalidNameError("bad namespace %r: use 1-48 of [A-Za-z0-9_-]" % (name,))
    return name


def resolve_namespace(conf):
    """shm.namespace, else bootstrap.servers=shm://NAME, else env
    SHMBROKER_NAMESPACE, else 'default-<uid>' (per user: users never collide)."""
    ns = conf.get("shm.namespace")
    if ns is None:
        bs = conf.get("bootstrap.servers")
        if isinstance(bs, str) and bs.startswith("shm://"):
            ns = bs[len("shm://"):].strip("/")
    if ns is None:
        ns = os.environ.get("SHMBROKER_NAMESPACE", "default-%d" % os.geteuid())
    return check_namespace(ns)


def parse(config, kwargs, kind):
    """Merge *config* and *kwargs*; validate keys for *kind* ('producer',
    'consumer' or 'admin'); return a plain dict."""
    conf = {}
    if config is not None:
        if not isinstance(config, dict):
            raise TypeError("config must be a dict, got %s" % type(config).__name__)
        conf.update(config)
    conf.update(kwargs)
    allowed = COMMON | {"producer": PRODUCER, "consumer": CONSUMER, "admin": ADMIN}[kind]
    for k in conf:
        if not isinstance(k, str):
            raise ConfigError("config keys must be str, got %r" % (k,))
        if k in allowed or k in IGNORED or k.startswith(IGNORED_PREFIXES):
            continue
        hint = " (a consumer key)" if k in CONSUMER else " (a producer key)" if k in PRODUCER else ""
        raise ConfigError("No such configuration property: %r%s for a %s; see ../shared/API.md for the keys "
                          "shmbroker takes" % (k, hint, kind))
    if conf.get("shm.wait", "adaptive") not in WAIT_MODES:
        raise ConfigError("shm.wait must be one of %s, got %r" % (", ".join(WAIT_MODES), conf["shm.wait"]))
    if conf.get("shm.supervisor", "auto") not in ("auto", "off"):
        raise ConfigError("shm.supervisor must be 'auto' (start one when none runs) or 'off', got %r"
                          % (conf["shm.supervisor"],))
    if "auto.offset.reset" in conf and conf["auto.offset.reset"] not in AUTO_OFFSET_RESET:
        raise ConfigError("auto.offset.reset must be one of %s, got %r"
                          % (", ".join(sorted(AUTO_OFFSET_RESET)), conf["auto.offset.reset"]))
    return conf


def ms_to_s(v, default=None):
    if v is None:
        return default
    v = float(v)
    return None if v < 0 else v / 1000.0


def as_bool(v):
    if isinstance(v, str):
        return v.lower() in ("true", "1", "yes")
    return bool(v)
