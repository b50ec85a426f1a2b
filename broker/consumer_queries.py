"""The Consumer's questions about partitions (watermarks, offsets for times, lag, statistics, metadata):
a mixin of broker.consumer.Consumer, which owns the state they read (``_parts``, ``_missing``, ``_ns``)."""
from shm.errors import KafkaError, KafkaException

from . import latency_hist
from .admin import cluster_metadata, log_start, offset_for_time
from .membership import part_position
from .message import OFFSET_INVALID, TopicPartition
from .namespace import unknown_partition


class Queries:
    """Consumer methods that read partitions without moving the consumer."""

    def _log_for(self, tp):
        """(log, retention_ms, owned): the assigned partition's, or opened for the call."""
        part = self._parts.get((tp.topic, tp.partition))
        if part is not None:
            return part.log, part.retention_ms, False
        info = self._ns.topic(tp.topic)
        if not 0 <= tp.partition < info.partitions:
            raise KafkaException(unknown_partition(tp.topic, info.partitions, tp.partition))
        return self._ns.open_partition(info, tp.partition), info.retention_ms, True

    def get_watermark_offsets(self, partition, timeout=None, cached=False):
        """:param TopicPartition partition: the partition.
        :param float timeout: unused (local). :param bool cached: unused for a partition that exists (always
            current).
        :returns: (low, high) watermarks: the first retained offset and the next offset to be written;
            (OFFSET_INVALID, OFFSET_INVALID) with *cached* for an assigned partition that does not exist yet.
        :rtype: tuple
        :raises KafkaException: ``LEADER_NOT_AVAILABLE`` (as librdkafka, which finds no leader to ask) for an
            assigned partition that does not exist yet, unless *cached*."""
        self._check()
        if (partition.topic, partition.partition) in self._missing:
            if cached:
                return OFFSET_INVALID, OFFSET_INVALID
            raise KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE, "%s[%d] is assigned but does not exist "
                                            "(yet): create the topic or its partition first"
                                            % (partition.topic, partition.partition)))
        log, rms, owned = self._log_for(partition)
        try:
            return log_start(log, rms), log.watermarks()[1]
        finally:
            if owned:
                log.close()

    def offsets_for_times(self, partitions, timeout=None):
        """For each TopicPartition whose offset is a timestamp (epoch ms): the first offset at or after it (the
        high watermark if none).  A partition that cannot be looked up (unknown topic or partition) comes back
        with OFFSET_INVALID and its ``error`` set, as librdkafka reports it; the others are answered.

        :param list partitions: TopicPartitions, offset = a timestamp in ms.
        :param float timeout: unused (the lookup is local).
        :returns: TopicPartitions with the offsets.
        :rtype: list
        """
        self._check()
        out = []
        for tp in partitions:
            try:
                log, _, owned = self._log_for(tp)
            except KafkaException as exc:
                got = TopicPartition(tp.topic, tp.partition, OFFSET_INVALID)
                got.error = exc.args[0]
                out.append(got)
                continue
            try:
                out.append(TopicPartition(tp.topic, tp.partition, offset_for_time(log, tp.offset)))
            finally:
                if owned:
                    log.close()
        return out

    def lag(self):
        """{TopicPartition: high watermark - position} for the assignment."""
        self._check()
        out = {}
        for (t, p), part in self._parts.items():
            pos = part_position(part)
            out[TopicPartition(t, p)] = max(0, part.log.watermarks()[1] - pos)
        return out

    def stats(self):
        """lag()'s companion, per assigned TopicPartition: {"lag": records
        behind the high watermark, "records_lost_to_laps": records a lap of
        an overwrite topic took before this consumer read them (skipped by
        auto.offset.reset earliest/latest), "lap_resets": how many times}
        (librdkafka reports such per-partition counters in its statistics)."""
        out = {}
        for tp, lag in self.lag().items():
            lost, resets = self._laps.get((tp.topic, tp.partition), (0, 0))
            out[tp] = {"lag": lag, "records_lost_to_laps": lost, "lap_resets": resets}
        return out

    def latency(self):
        """stats()'s companion with shm.latency.histogram=true, per assigned
        TopicPartition: {"count", "p50", "p99", "p99.9", "max", ...} of the
        produce->poll latencies (us) the group's consumers measured on it."""
        return latency_hist.consumer_latency(self)

    def list_topics(self, topic=None, timeout=-1):
        """:param str topic: one topic, or None for all. :param float timeout: unused.
        :returns: the namespace's ClusterMetadata."""
        self._check()
        return cluster_metadata(self._ns, topic)
