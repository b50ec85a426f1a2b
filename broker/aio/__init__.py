"""asyncio clients with ``confluent_kafka.aio``'s names: change ``from confluent_kafka.aio import AIOProducer,
AIOConsumer`` to ``from broker.aio import ...`` and the same code runs on shmbroker.

Unlike confluent's, nothing runs in a thread pool: reads and appends are non-blocking calls on the event
loop, and a consumer waiting for records is woken from the partitions' futexes (one waker thread per
process rings the loop's eventfd; see ``_waker.py``).
"""
from ._consumer import AIOConsumer
from ._producer import AIOProducer

__all__ = ["AIOConsumer", "AIOProducer"]
