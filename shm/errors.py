"""Exceptions of shmbroker, defined at the lowest layer so the C status funnel
in ``shm`` can raise them; ``broker.errors`` re-exports every name.

Same shape as confluent-kafka: ``KafkaException(KafkaError)`` where the
``KafkaError`` carries librdkafka's numeric code.  Each specific class is a
``KafkaException`` whose message says what to do next.
"""


# librdkafka's error codes (rdkafka.h, rd_kafka_resp_err_t): negative ones are the client's own, the others
# are the Kafka protocol's.  Names and numbers are API: code written for confluent-kafka compares against them.
_CODES = """
    _BAD_MSG=-199, _BAD_COMPRESSION=-198, _DESTROY=-197, _FAIL=-196, _TRANSPORT=-195, _CRIT_SYS_RESOURCE=-194,
    _RESOLVE=-193, _MSG_TIMED_OUT=-192, _PARTITION_EOF=-191, _UNKNOWN_PARTITION=-190, _FS=-189,
    _UNKNOWN_TOPIC=-188, _ALL_BROKERS_DOWN=-187, _INVALID_ARG=-186, _TIMED_OUT=-185, _QUEUE_FULL=-184,
    _ISR_INSUFF=-183, _NODE_UPDATE=-182, _SSL=-181, _WAIT_COORD=-180, _UNKNOWN_GROUP=-179, _IN_PROGRESS=-178,
    _PREV_IN_PROGRESS=-177, _EXISTING_SUBSCRIPTION=-176, _ASSIGN_PARTITIONS=-175, _REVOKE_PARTITIONS=-174,
    _CONFLICT=-173, _STATE=-172, _UNKNOWN_PROTOCOL=-171, _NOT_IMPLEMENTED=-170, _AUTHENTICATION=-169,
    _NO_OFFSET=-168, _OUTDATED=-167, _TIMED_OUT_QUEUE=-166, _UNSUPPORTED_FEATURE=-165, _WAIT_CACHE=-164,
    _INTR=-163, _KEY_SERIALIZATION=-162, _VALUE_SERIALIZATION=-161, _KEY_DESERIALIZATION=-160,
    _VALUE_DESERIALIZATION=-159, _PARTIAL=-158, _READ_ONLY=-157, _NOENT=-156, _UNDERFLOW=-155, _INVALID_TYPE=-154,
    _RETRY=-153, _PURGE_QUEUE=-152, _PURGE_INFLIGHT=-151, _FATAL=-150, _INCONSISTENT=-149, _GAPLESS_GUARANTEE=-148,
    _MAX_POLL_EXCEEDED=-147, _UNKNOWN_BROKER=-146, _NOT_CONFIGURED=-145, _FENCED=-144, _APPLICATION=-143,
    _ASSIGNMENT_LOST=-142, _NOOP=-141, _AUTO_OFFSET_RESET=-140, _LOG_TRUNCATION=-139,
    _INVALID_DIFFERENT_RECORD=-138, _DESTROY_BROKER=-137, UNKNOWN=-1,
    NO_ERROR=0, OFFSET_OUT_OF_RANGE=1, INVALID_MSG=2, UNKNOWN_TOPIC_OR_PART=3, INVALID_MSG_SIZE=4,
    LEADER_NOT_AVAILABLE=5, NOT_LEADER_FOR_PARTITION=6, REQUEST_TIMED_OUT=7, BROKER_NOT_AVAILABLE=8,
    REPLICA_NOT_AVAILABLE=9, MSG_SIZE_TOO_LARGE=10, STALE_CTRL_EPOCH=11, OFFSET_METADATA_TOO_LARGE=12,
    NETWORK_EXCEPTION=13, COORDINATOR_LOAD_IN_PROGRESS=14, COORDINATOR_NOT_AVAILABLE=15, NOT_COORDINATOR=16,
    TOPIC_EXCEPTION=17, RECORD_LIST_TOO_LARGE=18, NOT_ENOUGH_REPLICAS=19, NOT_ENOUGH_REPLICAS_AFTER_APPEND=20,
    INVALID_REQUIRED_ACKS=21, ILLEGAL_GENERATION=22, INCONSISTENT_GROUP_PROTOCOL=23, INVALID_GROUP_ID=24,
    UNKNOWN_MEMBER_ID=25, INVALID_SESSION_TIMEOUT=26, REBALANCE_IN_PROGRESS=27, INVALID_COMMIT_OFFSET_SIZE=28,
    TOPIC_AUTHORIZATION_FAILED=29, GROUP_AUTHORIZATION_FAILED=30, CLUSTER_AUTHORIZATION_FAILED=31,
    INVALID_TIMESTAMP=32, UNSUPPORTED_SASL_MECHANISM=33, ILLEGAL_SASL_STATE=34, UNSUPPORTED_VERSION=35,
    TOPIC_ALREADY_EXISTS=36, INVALID_PARTITIONS=37, INVALID_REPLICATION_FACTOR=38, INVALID_REPLICA_ASSIGNMENT=39,
    INVALID_CONFIG=40, NOT_CONTROLLER=41, INVALID_REQUEST=42, UNSUPPORTED_FOR_MESSAGE_FORMAT=43,
    POLICY_VIOLATION=44, OUT_OF_ORDER_SEQUENCE_NUMBER=45, DUPLICATE_SEQUENCE_NUMBER=46, INVALID_PRODUCER_EPOCH=47,
    INVALID_TXN_STATE=48, INVALID_PRODUCER_ID_MAPPING=49, INVALID_TRANSACTION_TIMEOUT=50,
    CONCURRENT_TRANSACTIONS=51, TRANSACTION_COORDINATOR_FENCED=52, TRANSACTIONAL_ID_AUTHORIZATION_FAILED=53,
    SECURITY_DISABLED=54, OPERATION_NOT_ATTEMPTED=55, KAFKA_STORAGE_ERROR=56, LOG_DIR_NOT_FOUND=57,
    SASL_AUTHENTICATION_FAILED=58, UNKNOWN_PRODUCER_ID=59, REASSIGNMENT_IN_PROGRESS=60,
    DELEGATION_TOKEN_AUTH_DISABLED=61, DELEGATION_TOKEN_NOT_FOUND=62, DELEGATION_TOKEN_OWNER_MISMATCH=63,
    DELEGATION_TOKEN_REQUEST_NOT_ALLOWED=64, DELEGATION_TOKEN_AUTHORIZATION_FAILED=65, DELEGATION_TOKEN_EXPIRED=66,
    INVALID_PRINCIPAL_TYPE=67, NON_EMPTY_GROUP=68, GROUP_ID_NOT_FOUND=69, FETCH_SESSION_ID_NOT_FOUND=70,
    INVALID_FETCH_SESSION_EPOCH=71, LISTENER_NOT_FOUND=72, TOPIC_DELETION_DISABLED=73, FENCED_LEADER_EPOCH=74,
    UNKNOWN_LEADER_EPOCH=75, UNSUPPORTED_COMPRESSION_TYPE=76, STALE_BROKER_EPOCH=77, OFFSET_NOT_AVAILABLE=78,
    MEMBER_ID_REQUIRED=79, PREFERRED_LEADER_NOT_AVAILABLE=80, GROUP_MAX_SIZE_REACHED=81, FENCED_INSTANCE_ID=82,
    ELIGIBLE_LEADERS_NOT_AVAILABLE=83, ELECTION_NOT_NEEDED=84, NO_REASSIGNMENT_IN_PROGRESS=85,
    GROUP_SUBSCRIBED_TO_TOPIC=86, INVALID_RECORD=87, UNSTABLE_OFFSET_COMMIT=88, THROTTLING_QUOTA_EXCEEDED=89,
    PRODUCER_FENCED=90, RESOURCE_NOT_FOUND=91, DUPLICATE_RESOURCE=92, UNACCEPTABLE_CREDENTIAL=93,
    INCONSISTENT_VOTER_SET=94, INVALID_UPDATE_VERSION=95, FEATURE_UPDATE_FAILED=96,
    PRINCIPAL_DESERIALIZATION_FAILURE=97, UNKNOWN_TOPIC_ID=100, INCONSISTENT_TOPIC_ID=103, FENCED_MEMBER_EPOCH=110,
    UNRELEASED_INSTANCE_ID=111, UNSUPPORTED_ASSIGNOR=112, STALE_MEMBER_EPOCH=113, MISMATCHED_ENDPOINT_TYPE=114,
    UNSUPPORTED_ENDPOINT_TYPE=115, UNKNOWN_CONTROLLER_ID=116, UNKNOWN_SUBSCRIPTION_ID=117, TELEMETRY_TOO_LARGE=118,
    INVALID_REGISTRATION=119, TRANSACTION_ABORTABLE=120, INVALID_RECORD_STATE=121, SHARE_SESSION_NOT_FOUND=122,
    INVALID_SHARE_SESSION_EPOCH=123, FENCED_STATE_EPOCH=124, INVALID_VOTER_KEY=125, DUPLICATE_VOTER=126,
    VOTER_NOT_FOUND=127, INVALID_REGULAR_EXPRESSION=128, REBOOTSTRAP_REQUIRED=129, STREAMS_INVALID_TOPOLOGY=130,
    STREAMS_INVALID_TOPOLOGY_EPOCH=131, STREAMS_TOPOLOGY_FENCED=132, SHARE_SESSION_LIMIT_REACHED=133,
"""
# shmbroker's earlier names for two protocol codes, kept (the API is binding); name() gives librdkafka's
_ALIASES = {"CORRUPT_MESSAGE": 2, "INVALID_TOPIC_EXCEPTION": 17}


class KafkaError:
    """An error or event code with librdkafka's numbering, as ``confluent_kafka.KafkaError``.

    :param int error: the code, one of the constants below.
    :param str reason: what happened, in words (default: the code's name).
    :param bool fatal: the client cannot go on (never set by shmbroker itself).
    :param bool retriable: the operation may succeed if tried again.
    :param bool txn_requires_abort: a transaction must be aborted (transactions need a Kafka cluster).

    Instances compare equal to their code (``err == KafkaError._PARTITION_EOF``).
    """

    _NAMES = None  # {code: librdkafka's name}, built on first use

    def __init__(self, code, reason=None, fatal=False, retriable=False, txn_requires_abort=False):
        self._code = int(code)
        self._reason = reason
        self._fatal = bool(fatal)
        self._retriable = bool(retriable)
        self._txn = bool(txn_requires_abort)

    @classmethod
    def _name_of(cls, code):
        """:returns: librdkafka's name of *code* (``ERR_<n>?`` for a code it does not know)."""
        if cls._NAMES is None:
            cls._NAMES = {v: k for k, v in _parse_codes()}
        return cls._NAMES.get(code, "ERR_%d?" % code)

    def code(self):
        """:returns: the error code (an int, one of the class constants).
        :rtype: int"""
        return self._code

    def name(self):
        """:returns: the code's name, as librdkafka spells it (``_PARTITION_EOF``).
        :rtype: str"""
        return self._name_of(self._code)

    def str(self):
        """:returns: the reason given at creation, else a short description of the code.
        :rtype: str"""
        if self._reason is not None:
            return self._reason
        if self._code not in _CODE_SET:
            return "Err-%d?" % self._code
        return self.name()

    def fatal(self):
        """:returns: True if the error is fatal (the client must be closed).
        :rtype: bool"""
        return self._fatal

    def retriable(self):
        """:returns: True if the failed operation may be tried again.
        :rtype: bool"""
        return self._retriable

    def txn_requires_abort(self):
        """:returns: True if the current transaction must be aborted.
        :rtype: bool"""
        return self._txn

    def __repr__(self):
        """confluent-kafka's form, ``KafkaError{code=NAME,val=N,str="reason"}`` (``{FATAL,code=...`` for a fatal
        error); ``str()`` is the same, as there.  :meth:`str` is the reason alone."""
        return "KafkaError{%scode=%s,val=%d,str=\"%s\"}" % ("FATAL," if self._fatal else "", self.name(), self._code,
                                                            self.str())

    __str__ = __repr__

    def __eq__(self, other):
        if isinstance(other, KafkaError):
            return self._code == other._code
        if isinstance(other, int):
            return self._code == other
        return NotImplemented

    def __lt__(self, other):
        if isinstance(other, KafkaError):
            return self._code < other._code
        if isinstance(other, int):
            return self._code < other
        return NotImplemented

    def __hash__(self):
        return hash(self._code)


def _parse_codes():
    """[(name, code)] of librdkafka's table, in its order."""
    out = []
    for item in _CODES.replace("\n", " ").split(","):
        item = item.strip()
        if item:
            name, num = item.split("=")
            out.append((name, int(num)))
    return out


for _name, _num in _parse_codes() + sorted(_ALIASES.items()):
    setattr(KafkaError, _name, _num)
_CODE_SET = frozenset(n for _, n in _parse_codes())
KafkaError.__doc__ += "\n    Codes (librdkafka's names and numbers; the ones starting with ``_`` are the client's own)::\n\n" + \
    "".join("        %s = %d\n" % nc for nc in _parse_codes()) + \
    "\n    Also ``CORRUPT_MESSAGE`` (= ``INVALID_MSG``) and ``INVALID_TOPIC_EXCEPTION`` (= ``TOPIC_EXCEPTION``).\n"
del _name, _num


class KafkaException(Exception):
    """Raised for Kafka errors.

    :param args: a :class:`KafkaError` (confluent-kafka's way), or a message in words (the class's code is
        used), or a code and a reason.  ``args[0]`` is always a :class:`KafkaError`.

    ``str()`` of one made from a :class:`KafkaError` is that error's confluent form
    (``KafkaError{code=...,val=...,str="..."}``), as in confluent-kafka; of one made from a message (or a code
    and a reason), that message as given."""

    code = KafkaError._FAIL
    _words = None  # the message it was made from, if any: str() gives it back unchanged

    def __init__(self, *args, **kwargs):
        if args and isinstance(args[0], KafkaError):
            super().__init__(*args, **kwargs)
        elif args and type(args[0]) is int and len(args) <= 2:  # KafkaException(KafkaError._FAIL, "reason")
            reason = args[1] if len(args) > 1 else None
            super().__init__(KafkaError(args[0], reason), **kwargs)
            self._words = reason
        else:
            msg = args[0] if args else None
            super().__init__(KafkaError(self.code, msg), *args[1:], **kwargs)
            self._words = msg if args else ""  # KafkaException(): "", as confluent-kafka's

    def __str__(self):
        if self._words is not None:
            return str(self._words)
        return str(self.args[0]) if self.args else ""


def error_text(exc):
    """*exc* in words, for one line a user reads (the CLI, logs): a Kafka exception's reason without the
    ``KafkaError{...}`` frame, any other exception's ``str()``.

    :rtype: str"""
    if isinstance(exc, KafkaException):
        if not exc._words and exc.args and isinstance(exc.args[0], KafkaError):
            return exc.args[0].str()
    elif isinstance(exc, KafkaError):
        return exc.str()
    else:  # confluent-kafka's KafkaError, or an exception carrying one (a mirror's Kafka side)
        err = exc.args[0] if isinstance(exc, BaseException) and exc.args else exc
        words = getattr(err, "str", None)
        if callable(words) and not isinstance(err, str):
            return words()
    return str(exc)


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


class ClosedError(KafkaException, RuntimeError):
    """A closed client (or queue, log, pool) was used.  Also a ``RuntimeError``, as confluent-kafka raises for a
    closed Consumer or Producer."""

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
