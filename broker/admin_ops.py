"""The work behind AdminClient's topic, config, offset and cluster calls
(admin.py holds the client and its argument checks): each function takes the
Namespace and returns a value or raises KafkaException, which the client
puts into a Future (:func:`done`; :func:`failed` for an error known up front).
A topic the request names that does not exist fails as on a Kafka cluster:
the broker's ``UNKNOWN_TOPIC_OR_PART`` (3), not librdkafka's client-side
``_UNKNOWN_TOPIC`` (-188, which producing to one keeps).

Topic configs on one host: ``retention.ms`` is the topic's to change (it is
read from the registry); ``retention.bytes``, ``max.message.bytes``,
``shm.overflow`` and ``shm.slots`` shape the partition rings, fixed when they
are created: altering one to another value fails with INVALID_CONFIG (to the
value it has, it is a no-op, so describe-then-alter round trips work).  Other
Kafka topic keys are validated and ignored, as at creation."""
import concurrent.futures
import time

from shm.errors import ConfigError, KafkaError, KafkaException, UnknownTopicError

from . import config as _config
from .admin_model import (DeletedRecords, DescribeClusterResult, ListOffsetsResultInfo, TopicDescription,
                          TopicPartitionInfo, host_node, topic_uuid)
from .autocreate import NUM_PARTITIONS, auto_create_enabled, not_on_one_host
from .admin_types import AclOperation, AlterConfigOpType, ConfigEntry, ConfigSource, ResourceType
from .namespace import TOPIC_DEFAULTS, _pow2_at_least, unknown_partition

RING_KEYS = ("retention.bytes", "max.message.bytes", "shm.overflow", "shm.slots")
FIXED = {"cleanup.policy": "delete", "message.timestamp.type": "CreateTime"}  # what every topic here does
# everything the host's single node may do to its own namespace (its owner's)
ALL_OPERATIONS = [AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE,
                  AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS,
                  AclOperation.ALTER_CONFIGS]


def error(code, msg):
    return KafkaException(KafkaError(code, msg))


def broker_error(exc):
    """*exc* as a Kafka cluster answers an admin request: an unknown topic is the broker's
    ``UNKNOWN_TOPIC_OR_PART`` (still an :class:`UnknownTopicError`, with the same reason); anything else as is."""
    if isinstance(exc, UnknownTopicError) and exc.args and exc.args[0] == KafkaError._UNKNOWN_TOPIC:
        return UnknownTopicError(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, exc.args[0].str())).with_traceback(
            exc.__traceback__)
    return exc


def done(fn, *args):
    """A completed Future: fn's result, or the exception it raised (as :func:`broker_error` has it)."""
    f = concurrent.futures.Future()
    f.set_running_or_notify_cancel()
    try:
        f.set_result(fn(*args))
    except Exception as exc:  # the future carries it, as confluent-kafka's do
        f.set_exception(broker_error(exc))
    return f


def failed(exc):
    """A completed Future that raises *exc*."""
    f = concurrent.futures.Future()
    f.set_running_or_notify_cancel()
    f.set_exception(exc)
    return f


# -- topic configs
def _ring_defaults(info):
    slots = min(max(info.data_capacity // 256, 64), 1 << 20)
    return {"retention.bytes": TOPIC_DEFAULTS["retention.bytes"], "retention.ms": TOPIC_DEFAULTS["retention.ms"],
            "max.message.bytes": min(1 << 20, info.data_capacity - 16), "shm.overflow": "overwrite",
            "shm.slots": slots}


def topic_values(info):
    return {"retention.ms": info.retention_ms, "retention.bytes": info.data_capacity,
            "max.message.bytes": info.max_message_bytes, "shm.overflow": info.overflow, "shm.slots": info.slot_count}


def describe_topic_configs(info):
    """{name: ConfigEntry} of a topic: the values shmbroker implements."""
    defaults = _ring_defaults(info)
    out = {}
    for k, v in topic_values(info).items():
        dflt = v == defaults[k]
        out[k] = ConfigEntry(k, str(v), ConfigSource.DEFAULT_CONFIG if dflt else ConfigSource.DYNAMIC_TOPIC_CONFIG,
                             is_read_only=k in RING_KEYS, is_default=dflt)
    for k, v in FIXED.items():
        out[k] = ConfigEntry(k, v, ConfigSource.DEFAULT_CONFIG, is_read_only=True, is_default=True)
    return out


def describe_broker_configs(ns):
    """{name: ConfigEntry} of the host's one broker: the topic defaults under
    Kafka's broker names and the namespace's auto.create.topics.enable,
    read-only (as on Kafka, where they are static broker configs)."""
    vals = {"broker.id": "0", "log.retention.bytes": str(TOPIC_DEFAULTS["retention.bytes"]),
            "log.retention.ms": str(TOPIC_DEFAULTS["retention.ms"]), "message.max.bytes": str(1 << 20),
            "log.cleanup.policy": "delete", "num.partitions": str(NUM_PARTITIONS), "default.replication.factor": "1",
            "auto.create.topics.enable": "true" if auto_create_enabled(ns) else "false"}
    return {k: ConfigEntry(k, v, ConfigSource.STATIC_BROKER_CONFIG, is_read_only=True,
                           is_default=(k, v) != ("auto.create.topics.enable", "false"))
            for k, v in vals.items()}


def _normalise(info, name, value):
    """A topic config value checked by its validator (INVALID_CONFIG)."""
    check = _config.TOPIC_VALIDATORS.get(name)
    if check is None:
        near = [k for k in _config.TOPIC_VALIDATORS if k.split(".")[-1] == name.split(".")[-1]]
        raise error(KafkaError.INVALID_CONFIG, "unknown topic config %r for topic %r%s" % (
            name, info.name, " (did you mean %r?)" % near[0] if near else ""))
    if value is None:
        raise error(KafkaError.INVALID_CONFIG, "%s of topic %r needs a value (to reset it, use "
                    "AlterConfigOpType.DELETE)" % (name, info.name))
    try:
        return check(name, value)
    except ConfigError as exc:
        raise error(KafkaError.INVALID_CONFIG, "topic %r: %s" % (info.name, exc.args[0].str())) from None


def _same_ring_value(info, name, v):
    cur = topic_values(info)[name]
    if name == "retention.bytes":
        return _pow2_at_least(v) == cur  # rings are powers of two: created rounded up
    return v == cur


def plan_topic_alter(info, changes, incremental):
    """The topic's new retention.ms after *changes* [(name, AlterConfigOpType,
    value)], or raise: every change is checked before any is applied.
    alter_configs (not incremental) reverts retention.ms to its default
    unless it is set; the ring's keys cannot move."""
    rms = info.retention_ms if incremental else TOPIC_DEFAULTS["retention.ms"]
    for name, op, value in changes:
        if op in (AlterConfigOpType.APPEND, AlterConfigOpType.SUBTRACT):
            v = _normalise(info, name, value)
            if name == "cleanup.policy" and op is AlterConfigOpType.APPEND and v == "delete":
                continue  # already so
            raise error(KafkaError.INVALID_CONFIG, "%s %s: only SET and DELETE apply to %s here (it is not a list "
                        "config of this topic)" % (op.name, name, name))
        if op is AlterConfigOpType.DELETE:
            if name not in _config.TOPIC_VALIDATORS:
                _normalise(info, name, None)  # raises: unknown key
            if name == "retention.ms":
                rms = TOPIC_DEFAULTS["retention.ms"]
            elif name in RING_KEYS and topic_values(info)[name] != _ring_defaults(info)[name]:
                raise _read_only(info, name)
            continue
        v = _normalise(info, name, value)
        if name == "retention.ms":
            rms = v
        elif name in RING_KEYS and not _same_ring_value(info, name, v):
            raise _read_only(info, name)
    return rms


def _read_only(info, name):
    return error(KafkaError.INVALID_CONFIG, "%s of topic %r is read-only: it is the size of the partition rings in "
                 "shared memory, fixed when the topic was created (%s); create a new topic with the value you want "
                 "and move to it" % (name, info.name, topic_values(info)[name]))


def alter_topic(ns, name, changes, incremental, validate_only):
    info = ns.topic(name)
    rms = plan_topic_alter(info, changes, incremental)
    if not validate_only and rms != info.retention_ms:
        ns.set_retention_ms(name, rms)


# -- partitions and records
def check_partition(ns, tp):
    info = ns.topic(tp.topic)
    if not 0 <= tp.partition < info.partitions:
        raise KafkaException(unknown_partition(tp.topic, info.partitions, tp.partition))
    return info


def delete_records(ns, tp):
    """Move the partition's low watermark up to tp.offset (OFFSET_END: the
    high watermark); returns DeletedRecords."""
    info = check_partition(ns, tp)
    log = ns.open_partition(info, tp.partition)
    try:
        lo, hi = log.watermarks()
        off = hi if tp.offset == -1 else tp.offset
        if off < 0 or off > hi:
            raise error(KafkaError.OFFSET_OUT_OF_RANGE, "cannot delete records of %s[%d] below offset %d: the "
                        "partition holds [%d, %d); give an offset up to %d, or -1 (OFFSET_END) for all"
                        % (tp.topic, tp.partition, tp.offset, lo, hi, hi))
        return DeletedRecords(log.trim(off))
    finally:
        log.close()


def log_start(log, retention_ms):
    """The partition's low watermark: the ring's (after overwrite and
    delete_records), moved past records older than retention.ms (Kafka deletes
    those; here they are skipped)."""
    lo, hi = log.watermarks()
    if retention_ms is None or retention_ms < 0:
        return lo
    return max(lo, offset_for_time(log, time.time_ns() // 1_000_000 - retention_ms))


def _first_ok(log, o, end):
    """The first readable record at or after *o* (below *end*), or None."""
    while o < end:
        r = log.read(o)
        if r.status == "ok":
            return r
        o += 1
    return None


def offset_for_time(log, ts_ms):
    """The first offset whose timestamp is >= ts_ms (binary search over the
    retained records; timestamps are assumed non-decreasing, as with
    CreateTime from one clock), or the high watermark."""
    lo, hi = log.watermarks()
    target = ts_ms * 1_000_000
    a, b = lo, hi
    while a < b:
        m = (a + b) // 2
        r = _first_ok(log, m, b)
        if r is None:
            b = m
        elif r.timestamp_ns >= target:
            b = m
        else:
            a = r.offset + 1
    return a


def max_timestamp(log, lo, hi):
    """(offset, timestamp ms) of the retained record with the largest
    timestamp (the first such), or (-1, -1) if none is held."""
    best = (-1, -1)
    o = lo
    while o < hi:
        recs, nxt, stop = log.read_batch(o, 1024)
        for r in recs:
            ts = r[4] // 1_000_000
            if ts > best[1]:
                best = (r[0], ts)
        if nxt <= o or (stop is not None and stop.status == "not_yet"):
            break
        o = nxt if stop is None or stop.status != "lapped" else max(nxt + 1, log.watermarks()[0])
    return best


def list_offset(ns, tp, value):
    """ListOffsetsResultInfo of *tp* for OffsetSpec value *value* (-2
    earliest, -1 latest, -3 max timestamp, >= 0 a timestamp in ms)."""
    info = check_partition(ns, tp)
    log = ns.open_partition(info, tp.partition)
    try:
        lo, hi = log_start(log, info.retention_ms), log.watermarks()[1]
        if value == -2:
            return ListOffsetsResultInfo(lo, -1)
        if value == -1:
            return ListOffsetsResultInfo(hi, -1)
        if value == -3:
            o, ts = max_timestamp(log, lo, hi)
            return ListOffsetsResultInfo(o, ts)
        if value < 0:
            raise error(KafkaError._INVALID_ARG, "unknown OffsetSpec value %d" % value)
        o = max(offset_for_time(log, value), lo)
        r = _first_ok(log, o, hi)
        if r is None:  # no record at or after it: Kafka answers offset -1
            return ListOffsetsResultInfo(-1, -1)
        return ListOffsetsResultInfo(r.offset, r.timestamp_ns // 1_000_000)
    finally:
        log.close()


def describe_topic(ns, name, with_ops):
    info = ns.topic(name)
    node = host_node(ns.name)
    parts = [TopicPartitionInfo(p, node, [node], [node]) for p in range(info.partitions)]
    return TopicDescription(name, topic_uuid(ns.name, info), False, parts, list(ALL_OPERATIONS) if with_ops else None)


def describe_cluster(ns, with_ops):
    node = host_node(ns.name)
    return DescribeClusterResult(node, [node], "shm-" + ns.name,
                                 [AclOperation.DESCRIBE, AclOperation.ALTER, AclOperation.DESCRIBE_CONFIGS,
                                  AclOperation.ALTER_CONFIGS, AclOperation.CREATE] if with_ops else None)


def describe_configs(ns, res):
    if res.restype is ResourceType.TOPIC:
        return describe_topic_configs(ns.topic(res.name))
    if res.restype is ResourceType.BROKER:
        if str(res.name) != "0":
            raise error(KafkaError.INVALID_REQUEST, "no broker %r: one host is one broker, id 0" % (res.name,))
        return describe_broker_configs(ns)
    raise not_on_one_host("describe_configs of a %s resource" % res.restype.name,
                          "only topics (and the broker, id 0) have configs here")


def alter_configs(ns, res, incremental, validate_only):
    if incremental:
        changes = [(e.name, e.incremental_operation, e.value) for e in res.incremental_configs]
    else:
        changes = [(k, AlterConfigOpType.SET, v) for k, v in res.set_config_dict.items()]
    if res.restype is ResourceType.TOPIC:
        return alter_topic(ns, res.name, changes, incremental, validate_only)
    if res.restype is ResourceType.BROKER:
        raise error(KafkaError.POLICY_VIOLATION, "broker configs are fixed on one host: set topic configs "
                    "(retention.ms) on each topic instead")
    raise not_on_one_host("altering the configs of a %s resource" % res.restype.name, "only topics have configs here")
