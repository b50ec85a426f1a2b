"""The small model classes of ``confluent_kafka`` (its ``_model`` and ``Uuid``), for ``broker.kafka``: the
admin API's model classes are broker.admin_model's (one definition each), plus the share consumer's
:class:`AcknowledgeType` and :class:`Messages`.

On one host there is one "broker" (the namespace) and no replication: a :class:`Node` is that broker,
:class:`TopicPartitionInfo` lists it as leader, replica and in-sync replica."""
from broker.admin_model import (ConsumerGroupState, ConsumerGroupTopicPartitions, ConsumerGroupType,  # noqa: F401
                                ElectionType, IsolationLevel, Node, OrderedEnum, TopicCollection, TopicPartitionInfo,
                                Uuid)

__all__ = ["AcknowledgeType", "ConsumerGroupState", "ConsumerGroupTopicPartitions", "ConsumerGroupType",
           "ElectionType", "IsolationLevel", "Messages", "Node", "TopicCollection", "TopicPartitionInfo", "Uuid"]


class AcknowledgeType(OrderedEnum):
    """How a share consumer acknowledges a record; ``int()`` gives librdkafka's number.

    :cvar ACCEPT: 1, processed. :cvar RELEASE: 2, give it to another member. :cvar REJECT: 3, never again.
    """

    ACCEPT = 1
    RELEASE = 2
    REJECT = 3

    def __int__(self):
        return self.value

    __index__ = __int__


class Messages:
    """A batch of :class:`Message` objects (what a share consumer's poll returns): a read-only sequence.

    :param messages: the messages.
    """

    def __init__(self, messages=()):
        self._records = list(messages)

    def records(self):
        """:returns: the messages, as a new list. :rtype: list"""
        return list(self._records)

    def count(self):
        """:returns: how many messages. :rtype: int"""
        return len(self._records)

    def is_empty(self):
        """:returns: True if there is no message. :rtype: bool"""
        return not self._records

    def __len__(self):
        return len(self._records)

    def __iter__(self):
        return iter(self._records)

    def __getitem__(self, index):
        got = self._records[index]
        return Messages(got) if isinstance(index, slice) else got

    def __repr__(self):
        return "Messages(%d)" % len(self._records)
