"""``SerializingProducer`` and ``DeserializingConsumer``: the clients that run the key and value (de)serializers
named in their config (``key.serializer``, ``value.serializer``, ``key.deserializer``, ``value.deserializer``)."""
from broker import consumer as _consumer
from broker import producer as _producer

from .error import ConsumeError, KeyDeserializationError, KeySerializationError, ValueDeserializationError, \
    ValueSerializationError
from .serialization import MessageField, SerializationContext

_SER_KEYS = ("key.serializer", "value.serializer")
_DESER_KEYS = ("key.deserializer", "value.deserializer")


def _split(conf, keys):
    """:returns: (the config without *keys*, [their values])."""
    if not isinstance(conf, dict):
        raise TypeError("expected configuration dict, got %s" % type(conf).__name__)
    rest = dict(conf)
    return rest, [rest.pop(k, None) for k in keys]


class SerializingProducer(_producer.Producer):
    """A Producer whose ``produce()`` runs the configured serializers on the key and value first.

    :param dict conf: a Producer config plus ``key.serializer`` and ``value.serializer`` (callables
        ``(obj, ctx) -> bytes``, e.g. :class:`StringSerializer`); without one, that field must already be bytes
        or str.
    """

    @property
    def DEFAULT_PARTITIONER(self):
        """:returns: the partitioner when the config names none: librdkafka's ``consistent_random``."""
        return "consistent_random"

    def __init__(self, conf):
        rest, (self._key_serializer, self._value_serializer) = _split(conf, _SER_KEYS)
        super().__init__(rest)
        self.__dict__.pop("produce", None)  # not the C fast path: its arguments are (topic, value), ours (topic, key, value)

    def produce(self, topic, key=None, value=None, partition=-1, on_delivery=None, timestamp=0, headers=None):
        """Serialize *key* and *value*, then produce.

        :param str topic: the topic. :param key: the key object. :param value: the value object.
        :param int partition: the partition (-1: the partitioner's). :param on_delivery: ``cb(err, msg)``.
        :param int timestamp: CreateTime in epoch ms (0: now). :param headers: the headers.
        :raises KeySerializationError: if the key serializer fails.
        :raises ValueSerializationError: if the value serializer fails.
        """
        ctx = SerializationContext(topic, MessageField.KEY, headers)
        if self._key_serializer is not None:
            try:
                key = self._key_serializer(key, ctx)
            except Exception as exc:
                raise KeySerializationError(exc) from exc
        ctx.field = MessageField.VALUE
        if self._value_serializer is not None:
            try:
                value = self._value_serializer(value, ctx)
            except Exception as exc:
                raise ValueSerializationError(exc) from exc
        super().produce(topic, value, key, partition=partition, on_delivery=on_delivery, timestamp=timestamp,
                        headers=headers)


class DeserializingConsumer(_consumer.Consumer):
    """A Consumer whose ``poll()`` runs the configured deserializers and raises on error events.

    :param dict conf: a Consumer config plus ``key.deserializer`` and ``value.deserializer`` (callables
        ``(bytes, ctx) -> object``); without one, that field stays bytes.
    """

    def __init__(self, conf):
        rest, (self._key_deserializer, self._value_deserializer) = _split(conf, _DESER_KEYS)
        super().__init__(rest)

    def poll(self, timeout=-1):
        """The next message, deserialized.

        :param float timeout: seconds to wait (-1: forever).
        :returns: a :class:`Message` whose key and value are the deserializers' results, or None on timeout.
        :raises ConsumeError: for an error event (the message is ``kafka_message``).
        :raises KeyDeserializationError: if the key deserializer fails.
        :raises ValueDeserializationError: if the value deserializer fails.
        """
        msg = super().poll(timeout)
        if msg is None:
            return None
        if msg.error() is not None:
            raise ConsumeError(msg.error(), kafka_message=msg)
        ctx = SerializationContext(msg.topic(), MessageField.VALUE, msg.headers())
        value = msg.value()
        if self._value_deserializer is not None:
            try:
                value = self._value_deserializer(value, ctx)
            except Exception as exc:
                raise ValueDeserializationError(exception=exc, kafka_message=msg) from exc
        key = msg.key()
        ctx.field = MessageField.KEY
        if self._key_deserializer is not None:
            try:
                key = self._key_deserializer(key, ctx)
            except Exception as exc:
                raise KeyDeserializationError(exception=exc, kafka_message=msg) from exc
        msg.set_key(key)
        msg.set_value(value)
        return msg

    def consume(self, num_messages=1, timeout=-1):
        """Not available here, as in confluent-kafka: use :meth:`poll`.

        :raises NotImplementedError: always."""
        raise NotImplementedError("DeserializingConsumer.consume() is not implemented (as in confluent-kafka): "
                                  "call poll() in a loop")
