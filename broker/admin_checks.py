"""AdminClient's argument checks, as confluent-kafka makes them: a wrong
type is a TypeError, a wrong value a ValueError, both raised by the call
(never put in a future); an unknown keyword argument is a TypeError."""
from .admin_model import IsolationLevel
from .message import OFFSET_INVALID, TopicPartition

_BOOLS = ("validate_only", "include_authorized_operations", "require_stable")
_TIMEOUT_MAX = 3600.0  # librdkafka takes timeouts in ms up to 3,600,000


def options(kwargs, allowed):
    """Check the keyword arguments of an admin call; returns them."""
    for k, v in kwargs.items():
        if k not in allowed:
            raise TypeError("'%s' is an invalid keyword argument for this function (it takes %s)"
                            % (k, ", ".join(sorted(allowed)) or "none"))
        if k in ("request_timeout", "operation_timeout"):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError("%s must be a number of seconds, got %s" % (k, type(v).__name__))
            lo = -0.001 if k == "operation_timeout" else 0.0
            if not lo <= v <= _TIMEOUT_MAX:
                raise ValueError("%s must be in [0, %g] seconds, got %r" % (k, _TIMEOUT_MAX, v))
        elif k in _BOOLS:
            if not isinstance(v, bool):
                raise TypeError("%s must be True or False, got %s" % (k, type(v).__name__))
        elif k == "isolation_level":
            if not isinstance(v, IsolationLevel):
                raise TypeError("isolation_level must be an IsolationLevel, got %s" % type(v).__name__)
        elif k == "broker":
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError("broker must be an int broker id, got %s" % type(v).__name__)
    return kwargs


def items(seq, cls, what, empty_ok=False):
    """A non-empty list of *cls* objects (ValueError for a wrong element,
    as confluent's list checks)."""
    if seq is None:
        raise TypeError("%s takes a list of %s, got None" % (what, cls.__name__))
    if isinstance(seq, (str, bytes)) or not hasattr(seq, "__iter__"):
        raise TypeError("%s takes a list of %s, got %s" % (what, cls.__name__, type(seq).__name__))
    seq = list(seq)
    if not seq and not empty_ok:
        raise ValueError("%s takes a non-empty list of %s" % (what, cls.__name__))
    for x in seq:
        if not isinstance(x, cls):
            raise ValueError("%s takes a list of %s, got an element %r" % (what, cls.__name__, x))
    return seq


def names(seq, what):
    """A non-empty list of str (group ids, topic names)."""
    if not isinstance(seq, list):
        raise TypeError("%s takes a list of str, got %s" % (what, type(seq).__name__))
    if not seq:
        raise ValueError("%s takes a non-empty list" % what)
    for x in seq:
        if not isinstance(x, str):
            raise ValueError("%s takes a list of str, got an element %r" % (what, x))
    return seq


def no_duplicates(keys, what):
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate %s: %s" % (what, sorted({str(k) for k in keys if keys.count(k) > 1})))


def topic_partition(tp, what, offset=None):
    """confluent's checks of one TopicPartition in a request; *offset*:
    "none" (must be unset), "set" (>= 0) or None (any)."""
    if tp is None:
        raise ValueError("an element of %s cannot be None" % what)
    if not isinstance(tp, TopicPartition):
        raise TypeError("the elements of %s must be TopicPartition, got %s" % (what, type(tp).__name__))
    if tp.topic is None or not isinstance(tp.topic, str):
        raise TypeError("a TopicPartition in %s needs a topic name (str)" % what)
    if not tp.topic:
        raise ValueError("a TopicPartition in %s needs a non-empty topic name" % what)
    if tp.partition < 0:
        raise ValueError("a TopicPartition in %s needs a partition >= 0, got %d" % (what, tp.partition))
    if offset == "none" and tp.offset != OFFSET_INVALID:
        raise ValueError("a TopicPartition in %s must not carry an offset (got %d)" % (what, tp.offset))
    if offset == "set" and tp.offset < 0:
        raise ValueError("a TopicPartition in %s needs an offset >= 0, got %d" % (what, tp.offset))


def group_request(request, what, cgtp_cls, alter):
    """confluent's checks of list/alter_consumer_group_offsets requests
    (one group per call, as confluent supports)."""
    if request is None or not isinstance(request, list):
        raise TypeError("%s takes a list with one ConsumerGroupTopicPartitions" % what)
    if len(request) != 1:
        raise ValueError("%s takes one group per call (a list of one ConsumerGroupTopicPartitions), got %d"
                         % (what, len(request)))
    for r in request:
        if not isinstance(r, cgtp_cls):
            raise TypeError("%s takes ConsumerGroupTopicPartitions, got %s" % (what, type(r).__name__))
        if not isinstance(r.group_id, str):
            raise TypeError("group_id must be a str, got %s" % type(r.group_id).__name__)
        if not r.group_id:
            raise ValueError("group_id cannot be empty")
        tps = r.topic_partitions
        if tps is None:
            if alter:
                raise ValueError("%s needs topic_partitions with the offsets to set" % what)
            continue
        if not isinstance(tps, list):
            raise TypeError("topic_partitions must be a list of TopicPartition or None")
        if not tps:
            raise ValueError("topic_partitions cannot be empty (None: every partition of the group)")
        for tp in tps:
            topic_partition(tp, "topic_partitions", "set" if alter else "none")
