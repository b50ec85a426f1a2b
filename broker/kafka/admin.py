"""confluent_kafka.admin's names, for ``broker.kafka`` (``import
broker.kafka.admin as admin`` where code has ``confluent_kafka.admin``)."""
from broker.admin import *  # noqa: F401,F403
from broker.admin import __all__ as _names
from broker.admin_model import ConsumerGroupType as _ConsumerGroupType  # noqa: F401 (confluent's private aliases)
from broker.admin_model import ElectionType as _ElectionType  # noqa: F401
from broker.admin_model import IsolationLevel as _IsolationLevel  # noqa: F401
from broker.admin_model import TopicCollection as _TopicCollection  # noqa: F401
from broker.admin_model import TimestampSpec, EarliestSpec, LatestSpec, MaxTimestampSpec  # noqa: F401

# librdkafka's constants, as confluent_kafka.admin exports them
CONFIG_SOURCE_UNKNOWN_CONFIG, CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG, CONFIG_SOURCE_DYNAMIC_BROKER_CONFIG = 0, 1, 2
CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG, CONFIG_SOURCE_STATIC_BROKER_CONFIG = 3, 4
CONFIG_SOURCE_DEFAULT_CONFIG, CONFIG_SOURCE_GROUP_CONFIG = 5, 8
RESOURCE_UNKNOWN, RESOURCE_ANY, RESOURCE_TOPIC, RESOURCE_GROUP, RESOURCE_BROKER, RESOURCE_TRANSACTIONAL_ID = range(6)

__all__ = list(_names) + ["CONFIG_SOURCE_UNKNOWN_CONFIG", "CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG",
                          "CONFIG_SOURCE_DYNAMIC_BROKER_CONFIG", "CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG",
                          "CONFIG_SOURCE_STATIC_BROKER_CONFIG", "CONFIG_SOURCE_DEFAULT_CONFIG",
                          "CONFIG_SOURCE_GROUP_CONFIG", "RESOURCE_UNKNOWN", "RESOURCE_ANY", "RESOURCE_TOPIC",
                          "RESOURCE_GROUP", "RESOURCE_BROKER", "RESOURCE_TRANSACTIONAL_ID"]
