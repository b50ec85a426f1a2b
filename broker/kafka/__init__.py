"""Drop-in for code written against confluent-kafka:
``from broker.kafka import Producer, Consumer, ...`` with librdkafka's
defaults (partitioner ``consistent_random``)."""
from broker import consumer as _consumer
from broker import producer as _producer
from broker.message import (OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, OFFSET_STORED,  # noqa: F401
                            TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, TIMESTAMP_NOT_AVAILABLE, Message,
                            TopicPartition)
from shm.errors import KafkaError, KafkaException  # noqa: F401


class Producer(_producer.Producer):
    DEFAULT_PARTITIONER = "consistent_random"  # librdkafka's default


Consumer = _consumer.Consumer

__all__ = ["Producer", "Consumer", "Message", "TopicPartition", "KafkaError", "KafkaException", "OFFSET_BEGINNING",
           "OFFSET_END", "OFFSET_STORED", "OFFSET_INVALID", "TIMESTAMP_NOT_AVAILABLE", "TIMESTAMP_CREATE_TIME",
           "TIMESTAMP_LOG_APPEND_TIME"]
