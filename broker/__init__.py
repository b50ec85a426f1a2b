"""shmbroker: Kafka's model for processes on one host, over shared memory.

``from broker import Producer, Consumer, ...`` - the names, signatures and
semantics of confluent-kafka (see ../shared/API.md)."""
from shm._version import __version__
from shm.errors import KafkaError, KafkaException

from .consumer import Consumer
from .message import (OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, OFFSET_STORED, TIMESTAMP_CREATE_TIME,
                      TIMESTAMP_LOG_APPEND_TIME, TIMESTAMP_NOT_AVAILABLE, Message, RecordMetadata, TopicPartition)
from .partitioner import consistent, fnv1a, murmur2
from .pool.queue import JoinableQueue, Queue, SimpleQueue
from .producer import Producer

__all__ = ["__version__", "Producer", "Consumer", "Message", "TopicPartition", "RecordMetadata", "KafkaError",
           "KafkaException", "OFFSET_BEGINNING", "OFFSET_END", "OFFSET_STORED", "OFFSET_INVALID",
           "TIMESTAMP_NOT_AVAILABLE", "TIMESTAMP_CREATE_TIME", "TIMESTAMP_LOG_APPEND_TIME", "murmur2",
           "consistent", "fnv1a", "Queue", "JoinableQueue", "SimpleQueue"]
