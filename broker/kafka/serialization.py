"""``confluent_kafka.serialization`` for shmbroker: the serializer contract (a callable ``(obj, ctx) -> bytes``)
and the string, integer and double serdes, byte-compatible with the Java client's (big-endian int32 and
IEEE 754 binary64), so records written here read the same through a Kafka cluster."""
import enum
import struct

from shm.errors import KafkaException

__all__ = ["Deserializer", "DoubleDeserializer", "DoubleSerializer", "IntegerDeserializer", "IntegerSerializer",
           "MessageField", "SerializationContext", "SerializationError", "Serializer", "StringDeserializer",
           "StringSerializer"]

_INT32 = struct.Struct(">i")
_DOUBLE = struct.Struct(">d")


class MessageField(str, enum.Enum):
    """Which part of a message a serializer works on.

    :cvar NONE: neither (``'none'``). :cvar KEY: the key (``'key'``). :cvar VALUE: the value (``'value'``).
    """

    NONE = "none"
    KEY = "key"
    VALUE = "value"

    def __str__(self):
        return str(self.value)


class SerializationContext:
    """What a serializer is told about the data it converts.

    :param str topic: the topic produced to or consumed from.
    :param MessageField field: the part of the message (key or value).
    :param list headers: the message's headers, or None.
    """

    def __init__(self, topic, field, headers=None):
        self.topic = topic
        self.field = field
        self.headers = headers

    def __repr__(self):
        return "SerializationContext(topic=%r, field=%s)" % (self.topic, self.field)


class SerializationError(KafkaException):
    """A serializer or deserializer failed.

    :param str message: what went wrong (the original exception is the ``__context__``)."""


class Serializer:
    """Base of serializers: subclasses implement ``__call__(obj, ctx)`` returning bytes (or None for a Kafka
    null).

    :raises NotImplementedError: when called on the base class itself.
    """

    __slots__ = ()

    def __call__(self, obj, ctx=None):
        """:param obj: the object to convert. :param SerializationContext ctx: where it goes.
        :returns: bytes, or None.
        :raises SerializationError: if *obj* cannot be converted."""
        raise NotImplementedError("subclasses of Serializer implement __call__(obj, ctx)")


class Deserializer:
    """Base of deserializers: subclasses implement ``__call__(value, ctx)`` returning an object.

    :raises NotImplementedError: when called on the base class itself.
    """

    __slots__ = ()

    def __call__(self, value, ctx=None):
        """:param bytes value: the bytes to convert (None: a Kafka null). :param SerializationContext ctx: where
        they come from.
        :returns: the object.
        :raises SerializationError: if *value* cannot be converted."""
        raise NotImplementedError("subclasses of Deserializer implement __call__(value, ctx)")


def _pack(st, obj, what):
    if obj is None:
        return None
    try:
        return st.pack(obj)
    except struct.error as exc:
        raise SerializationError("cannot serialize %r as %s: %s" % (obj, what, exc)) from exc


def _unpack(st, value, what):
    if value is None:
        return None
    try:
        return st.unpack(value)[0]
    except (struct.error, TypeError) as exc:
        raise SerializationError("cannot deserialize %d bytes as %s: %s (a %s is %d bytes)"
                                 % (len(value) if hasattr(value, "__len__") else -1, what, exc, what, st.size)
                                 ) from exc


class DoubleSerializer(Serializer):
    """A float as IEEE 754 binary64, big-endian (Kafka's DoubleSerializer).

    :returns: 8 bytes, or None for None."""

    def __call__(self, obj, ctx=None):
        """:param float obj: the number. :param ctx: unused. :returns: 8 bytes or None.
        :raises SerializationError: if *obj* is not a number."""
        return _pack(_DOUBLE, obj, "a double")


class DoubleDeserializer(Deserializer):
    """8 big-endian bytes as a float (Kafka's DoubleDeserializer).

    :returns: a float, or None for None."""

    def __call__(self, value, ctx=None):
        """:param bytes value: 8 bytes. :param ctx: unused. :returns: the float or None.
        :raises SerializationError: if *value* is not 8 bytes."""
        return _unpack(_DOUBLE, value, "double")


class IntegerSerializer(Serializer):
    """An int as a big-endian signed int32 (Kafka's IntegerSerializer).

    :returns: 4 bytes, or None for None."""

    def __call__(self, obj, ctx=None):
        """:param int obj: the number, in [-2**31, 2**31). :param ctx: unused. :returns: 4 bytes or None.
        :raises SerializationError: if *obj* is not an int32."""
        return _pack(_INT32, obj, "an int32")


class IntegerDeserializer(Deserializer):
    """4 big-endian bytes as an int (Kafka's IntegerDeserializer).

    :returns: an int, or None for None."""

    def __call__(self, value, ctx=None):
        """:param bytes value: 4 bytes. :param ctx: unused. :returns: the int or None.
        :raises SerializationError: if *value* is not 4 bytes."""
        return _unpack(_INT32, value, "int32")


class StringSerializer(Serializer):
    """A str encoded with a codec.

    :param str codec: any Python codec name (default ``utf_8``); an unknown one raises ``LookupError`` when used.
    """

    __slots__ = ("codec",)

    def __init__(self, codec="utf_8"):
        self.codec = codec

    def __call__(self, obj, ctx=None):
        """:param str obj: the text. :param ctx: unused. :returns: the encoded bytes, or None for None.
        :raises SerializationError: if the codec cannot encode *obj* (its message is the codec's)."""
        if obj is None:
            return None
        try:
            return obj.encode(self.codec)
        except UnicodeError as exc:
            raise SerializationError(str(exc))


class StringDeserializer(Deserializer):
    """Bytes decoded with a codec.

    :param str codec: any Python codec name (default ``utf_8``); an unknown one raises ``LookupError`` when used.
    """

    __slots__ = ("codec",)

    def __init__(self, codec="utf_8"):
        self.codec = codec

    def __call__(self, value, ctx=None):
        """:param bytes value: the bytes. :param ctx: unused. :returns: the text, or None for None.
        :raises SerializationError: if the codec cannot decode *value* (its message is the codec's)."""
        if value is None:
            return None
        try:
            return value.decode(self.codec)
        except UnicodeError as exc:
            raise SerializationError(str(exc))
