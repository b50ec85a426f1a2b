"""shmbroker: Kafka's model for processes on one host, over shared memory."""
from shm._version import __version__
from shm.errors import KafkaError, KafkaException

__all__ = ["__version__", "KafkaError", "KafkaException"]
