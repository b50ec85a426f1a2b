"""Kafka's topic auto-creation, and the small helpers the confluent-kafka surface shares.

A Kafka broker creates a topic the first time a producer writes to it, or a consumer that allows it
(``allow.auto.create.topics``) subscribes to or assigns it, unless the broker's ``auto.create.topics.enable``
is false.  Here the broker is the namespace: the setting is a word in its metadata segment, on by default
as on Kafka; :func:`set_auto_create` changes it for every client of the namespace.  An auto-created topic
has Kafka's defaults: one partition (``num.partitions=1``) and the default topic configuration."""
import logging

from shm._native import lib
from shm.errors import KafkaError, KafkaException, TopicExistsError, UnknownTopicError

from .namespace import AUTO_CREATE_OFF, META_SIZE

_log = logging.getLogger("broker.kafka")
NUM_PARTITIONS = 1  # Kafka's num.partitions default


def auto_create_enabled(ns):
    """:param Namespace ns: the namespace.
    :returns: whether its ``auto.create.topics.enable`` is on (the default).
    :rtype: bool"""
    return lib.shm_load64(ns._cbuf, META_SIZE, AUTO_CREATE_OFF) != 1


def set_auto_create(ns, enabled):
    """Set the namespace's ``auto.create.topics.enable`` for all its clients.

    :param Namespace ns: the namespace. :param bool enabled: create topics on first use."""
    lib.shm_store64(ns._cbuf, META_SIZE, AUTO_CREATE_OFF, 2 if enabled else 1)


def auto_create(ns, topic, log=None):
    """The TopicInfo of *topic*, created with Kafka's defaults if it does not exist and the namespace allows it.

    :param Namespace ns: the namespace. :param str topic: the topic. :param log: a logger for the creation.
    :returns: the topic's TopicInfo.
    :raises UnknownTopicError: if the topic does not exist and ``auto.create.topics.enable`` is off."""
    try:
        return ns.topic(topic)
    except UnknownTopicError:
        if not auto_create_enabled(ns):
            raise UnknownTopicError("unknown topic %r in namespace %r and the namespace's auto.create.topics.enable "
                                    "is off: create it first (AdminClient.create_topics or `shmbroker topics "
                                    "--create --topic %s`)" % (topic, ns.name, topic)) from None
    try:
        info = ns.create_topic(topic, NUM_PARTITIONS)
    except TopicExistsError:  # another client created it first
        return ns.topic(topic)
    (log or _log).info("created topic %r in namespace %r on first use (auto.create.topics.enable)", topic, ns.name)
    return info


def client_logger(conf, kind):
    """The ``logger`` a client was given (else shmbroker's); a client given one logs its creation to it at
    DEBUG, as librdkafka logs to it.

    :param dict conf: the client's config. :param str kind: "producer", "consumer" or "admin".
    :returns: the logger."""
    log = conf.get("logger")
    if log is None:
        return _log
    log.debug("shmbroker %s created on namespace %r (client.id %r)", kind, conf.get("shm.namespace") or
              conf.get("bootstrap.servers") or "default", conf.get("client.id", "rdkafka"))
    return log


# why a feature cannot exist on one host, for not_on_one_host
WHY_TRANSACTIONS = "a record is in its partition when produce() returns: there is nothing to commit or abort"
WHY_SASL = "clients reach the namespace through shared memory, without authentication; shm.mode sets who may use it"


def not_on_one_host(what, why, code=KafkaError._NOT_IMPLEMENTED):
    """The one error of a Kafka feature that needs a cluster (clients and AdminClient alike).

    :param str what: the feature asked for. :param str why: why one host cannot have it.
    :param int code: the KafkaError code (``_NOT_IMPLEMENTED``; ``SECURITY_DISABLED`` for ACLs, as Kafka's).
    :returns: the KafkaException to raise (or to put in a Future)."""
    return KafkaException(KafkaError(code, "%s: not supported on one host (shmbroker): %s; the same call works "
                                     "once the code runs against a Kafka cluster" % (what, why)))
