"""AIOProducer: confluent_kafka.aio's producer over shmbroker.

An append is one synchronous call into shared memory that never waits, so
``produce`` runs it on the loop and returns a future already resolved with
the delivered Message (or the error), as confluent's resolves at the
delivery report.  The one append that would wait, a ``block``-mode
partition that is full, is tried without waiting and retried from the loop
(a short backoff, up to ``shm.block.timeout.ms``), so the loop never blocks.
"""
import asyncio
import time

from broker.config import ms_to_s
from broker.kafka import Producer as _Producer
from shm.errors import KafkaException, QueueFullError

from ._calls import Pending

_CONF_CALLBACKS = ("on_delivery", "dr_cb", "dr_msg_cb", "error_cb", "stats_cb", "throttle_cb", "oauth_cb")
_BACKOFF = (0.0005, 0.02)  # a full block-mode partition is retried after 0.5 ms, doubling up to 20 ms
_DEFAULT_BLOCK_MS = 60000


class AIOProducer:
    """confluent_kafka.aio's ``AIOProducer``: ``fut = await producer.produce(topic, value, key=...)``, then
    ``msg = await fut`` is the delivered Message (topic, partition, offset, key, value, headers, timestamp).

    :param dict producer_conf: the producer's configuration; its callbacks may be coroutine functions.
    :param int max_workers: accepted for confluent-kafka's signature; no thread runs calls here.
    :param executor: accepted for confluent-kafka's signature; unused.
    :param int batch_size: accepted; records are appended at once (nothing to batch).
    :param float buffer_timeout: accepted; nothing is buffered.
    """

    def __init__(self, producer_conf, max_workers=4, executor=None, batch_size=1000, buffer_timeout=1.0):
        self._pending = Pending()
        conf = dict(producer_conf or {})
        for k in _CONF_CALLBACKS:
            if callable(conf.get(k)):
                conf[k] = self._pending.wrap(conf[k])
        self._block_timeout = ms_to_s(conf.get("shm.block.timeout.ms", _DEFAULT_BLOCK_MS))
        conf["shm.block.timeout.ms"] = 0  # an append never waits on the loop: produce() retries instead
        self._p = _Producer(conf)
        self._default_cb = conf.get("on_delivery") or conf.get("dr_msg_cb") or conf.get("dr_cb")  # wrapped
        self._closed = False

    async def produce(self, topic, value=None, key=None, partition=-1, on_delivery=None, callback=None,
                      timestamp=0, headers=None):
        """Append a record.

        :returns: an asyncio Future of the delivered Message (already resolved); a failed record's future
            raises its KafkaException (or BufferError), as confluent's does.
        :raises RuntimeError: if the producer is closed."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        user_cb = on_delivery or callback

        def report(err, msg):
            if user_cb is not None:
                self._pending.call(user_cb, err, msg)
            elif self._default_cb is not None:
                self._default_cb(err, msg)
            if not fut.done():
                if err is not None:
                    fut.set_exception(KafkaException(err))
                else:
                    fut.set_result(msg)

        p = self._p
        p._check()
        end = None if self._block_timeout is None else time.monotonic() + self._block_timeout
        pause = _BACKOFF[0]
        while True:
            try:
                p.produce(topic, value, key, partition, on_delivery=report, timestamp=timestamp, headers=headers)
                break
            except QueueFullError as exc:  # a full block-mode partition (reports never queue up here)
                if end is not None and time.monotonic() + pause > end:
                    fut.set_exception(exc)
                    return fut
                await asyncio.sleep(pause)
                pause = min(pause * 2, _BACKOFF[1])
            except Exception as exc:  # noqa: BLE001 - confluent's future carries every failure
                fut.set_exception(exc)
                return fut
        p.poll(0)  # the delivery report: resolves fut
        if self._pending.tasks:
            await self._pending.settle()
        return fut

    async def poll(self, timeout=0):
        """Serve delivery reports (every one is served as its record is appended, so this never waits).

        :returns: how many ran."""
        n = self._p.poll(0)
        await self._pending.settle()
        return n

    async def flush(self, timeout=-1):
        """Serve every delivery report.  :returns: how many are left (0)."""
        n = self._p.flush(timeout)
        await self._pending.settle()
        return n

    async def purge(self, in_queue=True, in_flight=True, blocking=True):
        """Nothing is ever queued or in flight here: every record is in its partition when produce() returns."""
        return self._p.purge(in_queue, in_flight, blocking)

    async def list_topics(self, topic=None, timeout=-1):
        return self._p.list_topics(topic, timeout)

    # -- what needs a Kafka cluster: raise KafkaException(_NOT_IMPLEMENTED), as broker.kafka's
    async def init_transactions(self, timeout=-1):
        return self._p.init_transactions(timeout)

    async def begin_transaction(self):
        return self._p.begin_transaction()

    async def send_offsets_to_transaction(self, positions, group_metadata, timeout=-1):
        return self._p.send_offsets_to_transaction(positions, group_metadata, timeout)

    async def commit_transaction(self, timeout=-1):
        return self._p.commit_transaction(timeout)

    async def abort_transaction(self, timeout=-1):
        return self._p.abort_transaction(timeout)

    async def set_sasl_credentials(self, username, password):
        return self._p.set_sasl_credentials(username, password)

    async def close(self):
        """Serve the last reports and detach.  Closing again does nothing."""
        if not self._closed:
            self._closed = True
            self._p.close()
            await self._pending.settle()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
