"""confluent_kafka._model's names (examples import ConsumerGroupType from
there): the same classes as broker.admin's, re-exported."""
from broker.admin import ConsumerGroupState, ConsumerGroupTopicPartitions  # noqa: F401
from broker.admin_model import (ConsumerGroupType, ElectionType, IsolationLevel, Node, TopicCollection,  # noqa: F401
                                TopicPartitionInfo)

__all__ = ["ConsumerGroupState", "ConsumerGroupTopicPartitions", "ConsumerGroupType", "ElectionType",
           "IsolationLevel", "Node", "TopicCollection", "TopicPartitionInfo"]
