"""Exceptions of shmbroker, defined at the lowest layer so the C status funnel
in ``shm`` can raise them; ``broker.errors`` re-exports every name.

Same shape as confluent-kafka: ``KafkaException(KafkaError)`` where the
``KafkaError`` carries librdkafka's numeric code.  Each specific class is a
``KafkaException`` whose message says what to do next.
"""


class KafkaError:
    """An error code with librdkafka's numbering, as confluent_kafka.KafkaError."""

    _PARTITION_EOF = -191
    _UNKNOWN_TOPIC = -188
    _TIMED_OUT = -185
    _QUEUE_FULL = -184
    _INVALID_ARG = -186
    _STATE = -172
    _FATAL = -150
    _MAX_POLL_EXCEEDED = -147
    _AUTO_OFFSET_RESET = -140
    _UNKNOWN_PARTITION = -190
    _FAIL = -196
    _NO_OFFSET = -168
    _ASSIGN_PARTITIONS = -175
    _REVOKE_PARTITIONS = -174
    UNKNOWN = -1
    NO_ERROR = 0
    OFFSET_OUT_OF_RANGE = 1
    CORRUPT_MESSAGE = 2
    UNKNOWN_TOPIC_OR_PART = 3
    MSG_SIZE_TOO_LARGE = 10
    INVALID_TOPIC_EXCEPTION = 17
    TOPIC_ALREADY_EXISTS = 36
    INVALID_PARTITIONS = 37
    INVALID_CONFIG = 40
    ILLEGAL_GENERATION = 22
    UNKNOWN_MEMBER_ID = 25
    REBALANCE_IN_PROGRESS = 27
    NON_EMPTY_GROUP = 68
    GROUP_ID_NOT_FOUND = 69
    FENCED_INSTANCE_ID = 82
    FENCED_MEMBER_EPOCH = 110

    _NAMES = None

    def __init__(self, code, reason=None, fatal=False, retriable=False, txn_requires_abort=False):
        self._code = int(code)
        self._reason = reason
        self._fatal = fatal
        self._retriable = retriable
        self._txn = txn_requires_abort

    @classmethod
    def _name_of(cls, code):
        if cls._NAMES is None:
            cls._NAMES = {v: k for k, v in vars(KafkaError).items()
                          if isinstance(v, int) and k.lstrip("_").isupper()}
        return cls._NAMES.get(code, "ERR_%d" % code)

    def code(self):
        return self._code

    def name(self):
        return self._name_of(self._code)

    def str(self):
        return self._reason if self._reason is not None else self.name()

    def fatal(self):
        return self._fatal

    def retriable(self):
        return self._retriable

    def txn_requires_abort(self):
        return self._txn

    def __str__(self):
        return self.str()

    def __repr__(self):
        return "KafkaError{code=%s,val=%d,str=\"%s\"}" % (self.name(), self._code, self.str())

    def __eq__(self, other):
        if isinstance(other, KafkaError):
            return self._code == other._code
        if isinstance(other, int):
            return self._code == other
        return NotImplemented

    def __hash__(self):
        return hash(self._code)


class KafkaException(Exception):
    """Raised for Kafka errors; ``args[0]`` is a :class:`KafkaError`."""

    code = KafkaError._FAIL

    def __init__(self, *args, **kwargs):
        if args and isinstance(args[0], KafkaError):
            super().__init__(*args, **kwargs)
        else:
            msg = args[0] if args else None
            super().__init__(KafkaError(self.code, msg), *args[1:], **kwargs)

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class UnknownTopicError(KafkaException):
    code = KafkaError._UNKNOWN_TOPIC


class TopicExistsError(KafkaException):
    code = KafkaError.TOPIC_ALREADY_EXISTS


class MessageTooLargeError(KafkaException):
    code = KafkaError.MSG_SIZE_TOO_LARGE


class OffsetOutOfRangeError(KafkaException):
    code = KafkaError.OFFSET_OUT_OF_RANGE


class InvalidNameError(KafkaException):
    code = KafkaError.INVALID_TOPIC_EXCEPTION


class ConfigError(KafkaException):
    code = KafkaError.INVALID_CONFIG


class CorruptSegmentError(KafkaException):
    code = KafkaError.CORRUPT_MESSAGE


class NamespaceError(KafkaException):
    code = KafkaError._STATE


class ClosedError(KafkaException):
    code = KafkaError._STATE


class QueueFullError(KafkaException, BufferError):
    """No room in a partition within ``shm.block.timeout.ms``: a ``block`` partition stayed full, or a
    slower producer (stopped, preempted) still writes where the record would go."""

    code = KafkaError._QUEUE_FULL


class TaskTimeoutError(KafkaException, TimeoutError):
    """A pool task ran longer than its ``task_timeout``: its worker was killed (each time it was tried)."""

    code = KafkaError._TIMED_OUT


def _worker_crashed_error():
    """WorkerCrashedError is also a ``concurrent.futures.process.BrokenProcessPool``; that module
    imports multiprocessing (~30 ms), so the class is made on first use (PEP 562), not at import."""
    from concurrent.futures.process import BrokenProcessPool

    class WorkerCrashedError(KafkaException, BrokenProcessPool):
        """A pool worker died (killed, crashed, ``os._exit``) running a task, as often as the pool's
        ``max_attempts`` allows; ``pid``, ``exitcode`` (negative: the signal) and ``attempts`` say how.
        Also a ``BrokenProcessPool``, so code written for ProcessPoolExecutor catches it, but the pool
        itself goes on."""

        code = KafkaError._FAIL
        pid = exitcode = attempts = None

    WorkerCrashedError.__module__ = __name__
    WorkerCrashedError.__qualname__ = "WorkerCrashedError"
    return WorkerCrashedError


_lazy_lock = __import__("threading").Lock()


def __getattr__(name):
    if name == "WorkerCrashedError":
        with _lazy_lock:  # one class, whichever thread asks first
            cls = globals().get(name)
            if cls is None:
                cls = globals()[name] = _worker_crashed_error()
        return cls
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


__all__ = [
    "KafkaError", "KafkaException", "UnknownTopicError", "TopicExistsError", "MessageTooLargeError",
    "OffsetOutOfRangeError", "InvalidNameError", "ConfigError", "CorruptSegmentError", "NamespaceError",
    "ClosedError", "QueueFullError", "WorkerCrashedError", "TaskTimeoutError",
]
