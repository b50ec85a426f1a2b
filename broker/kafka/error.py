"""``confluent_kafka.error`` for shmbroker: the exceptions of the serializing clients, each a
``KafkaException`` carrying a :class:`KafkaError` (``code`` and ``name`` read it), the exception that caused it
and the message concerned."""
from shm.errors import KafkaError, KafkaException

from .serialization import SerializationError

__all__ = ["ConsumeError", "KafkaError", "KafkaException", "KeyDeserializationError", "KeySerializationError",
           "ProduceError", "SerializationError", "ValueDeserializationError", "ValueSerializationError"]


class _KafkaClientError(KafkaException):
    """An error of a client call.

    :param KafkaError kafka_error: the error.
    :param Exception exception: the exception that caused it, if any.
    :param Message kafka_message: the message concerned, if any.
    """

    def __init__(self, kafka_error, exception=None, kafka_message=None):
        super().__init__(kafka_error)
        self.exception = exception
        self.kafka_message = kafka_message

    @property
    def code(self):
        """:returns: the error's code. :rtype: int"""
        return self.args[0].code()

    @property
    def name(self):
        """:returns: the error code's name. :rtype: str"""
        return self.args[0].name()


class ConsumeError(_KafkaClientError):
    """``DeserializingConsumer.poll`` met an error event, or a deserializer failed.

    :param KafkaError kafka_error: the error. :param Exception exception: its cause.
    :param Message kafka_message: the message as read (its key and value still bytes).
    """


class KeyDeserializationError(ConsumeError, SerializationError):
    """The key deserializer failed (code ``_KEY_DESERIALIZATION``).

    :param Exception exception: what the deserializer raised. :param Message kafka_message: the message.
    """

    def __init__(self, exception=None, kafka_message=None):
        super().__init__(KafkaError(KafkaError._KEY_DESERIALIZATION, str(exception)), exception=exception,
                         kafka_message=kafka_message)


class ValueDeserializationError(ConsumeError, SerializationError):
    """The value deserializer failed (code ``_VALUE_DESERIALIZATION``).

    :param Exception exception: what the deserializer raised. :param Message kafka_message: the message.
    """

    def __init__(self, exception=None, kafka_message=None):
        super().__init__(KafkaError(KafkaError._VALUE_DESERIALIZATION, str(exception)), exception=exception,
                         kafka_message=kafka_message)


class ProduceError(_KafkaClientError):
    """``SerializingProducer.produce`` failed.

    :param KafkaError kafka_error: the error. :param Exception exception: its cause.
    """

    def __init__(self, kafka_error, exception=None):
        super().__init__(kafka_error, exception, None)


class KeySerializationError(ProduceError, SerializationError):
    """The key serializer failed (code ``_KEY_SERIALIZATION``).

    :param Exception exception: what the serializer raised.
    """

    def __init__(self, exception=None):
        super().__init__(KafkaError(KafkaError._KEY_SERIALIZATION, str(exception)), exception=exception)


class ValueSerializationError(ProduceError, SerializationError):
    """The value serializer failed (code ``_VALUE_SERIALIZATION``).

    :param Exception exception: what the serializer raised.
    """

    def __init__(self, exception=None):
        super().__init__(KafkaError(KafkaError._VALUE_SERIALIZATION, str(exception)), exception=exception)
