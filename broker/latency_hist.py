"""``shm.latency.histogram=true``: every consumer of a group counts the
produce->poll latency of each record it hands out into a histogram in
shared memory, one per (group, partition); ``shmbroker stat`` shows their
percentiles live and writes them as ``.hgrm``; ``Consumer.latency()``
returns them for the consumer's assignment.

Latency: from the record's timestamp (the producer's CLOCK_REALTIME stamp,
Kafka's CreateTime) to the moment poll()/consume() returns the record, read
from the same clock (ext/fastlog.c, lat_count).  A record the consumer
fetched but never handed out (seek, close) is not counted, so a partition's
count is exactly the records its group's consumers received.

Segment ``/shmb.<ns>.lat.<group index>`` (a group's index in the group
table; removed with its group, and with the namespace):
  0 magic (written last)  8 version  12 layout  16 slots  20 counts per slot
  24 slot bytes  28 unit magnitude  32 sub-bucket half magnitude  40 max ns
  48 group name length  64 group name[256]
  HEADER + i * SLOT_BYTES: slot i, laid out by ext/shmlat.h (key, clamped
  counts, the log-linear counters).
Slots are claimed (their key written) under the namespace lock, once per
partition assignment; the counters are only ever added to, in C, with
relaxed atomics.  Nothing read from the segment is trusted: the header must
match this build's layout exactly, keys must name a live topic's partition,
counts must be plausible, or the reader gets CorruptSegmentError.
"""
import logging
import struct
import zlib

import numpy as np

from shm._native import _fastlog, ffi, lib
from shm.errors import ConfigError, CorruptSegmentError, KafkaError, KafkaException, error_text
from shm.segment import MissingSegmentError, Segment, unlink

_L = _fastlog.lat_layout()
COUNTS, SLOT_BYTES, SLOT_WORDS = _L["counts"], _L["slot_bytes"], _L["slot_words"]
MAX_NS = _L["max_ns"]
MAGIC = b"SHMBLAT1"
VERSION = 1
HEADER = 512
SLOTS = 128  # partitions per group with a histogram (3.5 MiB a group)
SIZE = HEADER + SLOTS * SLOT_BYTES
NAME_OFF, MAX_NAME = 64, 255
_HDR = struct.Struct("<8sIIIIIIqqI")
LAYOUT = zlib.crc32(struct.pack("<9q", HEADER, SLOTS, COUNTS, SLOT_BYTES, SLOT_WORDS, _L["unit_mag"],
                                _L["sub_half_mag"], MAX_NS, NAME_OFF))
PS = (50, 99, 99.9)
_MAX_COUNT = 1 << 50  # a counter above this was not counted by us
_MAGIC_WORD = struct.unpack("<Q", MAGIC)[0]
_log = logging.getLogger("broker.latency")

# each bucket stands for its middle value when it goes into an HdrHistogram
_LOWEST = np.array([_fastlog.lat_lowest(i) for i in range(COUNTS)], dtype=np.int64)
_WIDTH = np.diff(_LOWEST, append=2 * _LOWEST[-1] - _LOWEST[-2])
MIDDLE = _LOWEST + _WIDTH // 2


def segment_name(namespace, gidx):
    return "/shmb.%s.lat.%d" % (namespace, gidx)


def option(conf, group):
    """shm.latency.histogram from a parsed consumer config: True/False
    (ConfigError if it is on without a group: histograms are per group)."""
    on = bool(conf.get("shm.latency.histogram", False))
    if on and group is None:
        raise ConfigError("shm.latency.histogram=true needs group.id: latency histograms are kept per consumer "
                          "group and partition; set group.id (any name) or drop the key")
    return on


class GroupHistograms:
    """The latency segment of one group, attached (``open``)."""

    def __init__(self, seg, label):
        self.seg, self.label = seg, label
        self._cbuf = None
        try:
            self._check()
        except BaseException:
            seg.close()
            raise
        self._cbuf = ffi.from_buffer(seg.mm)

    @classmethod
    def open(cls, ns, gidx, group, create=False):
        """Attach group *group*'s (index *gidx*) segment of Namespace *ns*;
        with *create*, make it (or replace one left by a deleted group that
        had this index, or by a creator that died) under the namespace lock.
        None if it does not exist and *create* is false."""
        name = segment_name(ns.name, gidx)
        label = "the latency histograms of group %r (%s)" % (group, name)
        if not create:
            try:
                g = cls(Segment.attach(name, None, label), label)
            except MissingSegmentError:
                return None
            g.check_group(group)
            return g
        with ns._locked():
            try:
                g = cls(Segment.attach(name, ns.mode, label), label)
            except MissingSegmentError:
                g = None
            except CorruptSegmentError as exc:
                if "unfinished" not in str(exc):
                    raise
                unlink(name)  # a creator died formatting it (creators hold the lock): made again below
                g = None
            if g is not None and g.group() == group:
                return g
            if g is not None:  # another group had this index: its histograms went with it
                g.close()
                unlink(name)
            seg = Segment.create(name, SIZE, ns.mode)
            try:
                raw = group.encode()[:MAX_NAME]
                _HDR.pack_into(seg.mm, 0, b"\0" * 8, VERSION, LAYOUT, SLOTS, COUNTS, SLOT_BYTES, _L["unit_mag"],
                               _L["sub_half_mag"], MAX_NS, len(raw))
                seg.mm[NAME_OFF:NAME_OFF + len(raw)] = raw
                buf = ffi.from_buffer(seg.mm)
                lib.shm_store64(buf, SIZE, 0, _MAGIC_WORD)  # last (release): pairs with _check's acquire load
                ffi.release(buf)
                return cls(seg, label)
            except BaseException:
                seg.close()
                unlink(name)
                raise

    def _check(self):
        seg, what = self.seg, self.label
        if seg.size != SIZE:
            raise CorruptSegmentError("%s is damaged (%d bytes, expected %d): remove it (rm /dev/shm%s; it holds "
                                      "only latency counts)" % (what, seg.size, SIZE, seg.name))
        buf = ffi.from_buffer(seg.mm)
        try:
            magic = lib.shm_load64(buf, seg.size, 0)  # acquire: pairs with the creator's release store
        finally:
            ffi.release(buf)
        if magic == 0:
            raise CorruptSegmentError("%s is unfinished (its creator died making it): a consumer with "
                                      "shm.latency.histogram=true makes it again" % what)
        fields = _HDR.unpack_from(seg.mm, 0)
        if fields[:-1] != (MAGIC, VERSION, LAYOUT, SLOTS, COUNTS, SLOT_BYTES, _L["unit_mag"], _L["sub_half_mag"],
                           MAX_NS) or not 0 < fields[-1] <= MAX_NAME:
            raise CorruptSegmentError("%s is damaged or from another shmbroker release (bad header): remove it "
                                      "(rm /dev/shm%s; it holds only latency counts)" % (what, seg.name))

    def group(self):
        n = _HDR.unpack_from(self.seg.mm, 0)[-1]
        return bytes(self.seg.mm[NAME_OFF:NAME_OFF + n]).decode("utf-8", "replace")

    def check_group(self, group):
        if self.group() != group.encode()[:MAX_NAME].decode("utf-8", "replace"):
            raise CorruptSegmentError("%s belongs to group %r: it is stale (its group was deleted); a consumer "
                                      "with shm.latency.histogram=true replaces it" % (self.label, self.group()))

    def close(self):
        if self._cbuf is not None:
            ffi.release(self._cbuf)
            self._cbuf = None
        try:
            self.seg.close()
        except BufferError:  # a FastLog still points into it: the mapping goes when that does
            pass

    # -- slots
    def _key(self, i):
        return lib.shm_load64(self._cbuf, SIZE, HEADER + i * SLOT_BYTES)

    def slot_of(self, topic_id, partition):
        """The offset of the slot of (topic id, partition), or None."""
        key = (topic_id << 16) | partition
        for i in range(SLOTS):
            if self._key(i) == key:
                return HEADER + i * SLOT_BYTES
        return None

    def claim(self, ns, topic_id, partition):
        """The offset of the slot of (topic id, partition), claimed if new
        (a free slot, else one of a deleted topic, emptied); None if every
        slot is taken by a live partition."""
        key = (topic_id << 16) | partition
        off = self.slot_of(topic_id, partition)
        if off is not None:
            return off
        with ns._locked():  # the only writers of keys hold it
            live = {t.topic_id for t in ns.topics().values()}
            free = stale = None
            for i in range(SLOTS):
                k = self._key(i)
                if k == key:
                    return HEADER + i * SLOT_BYTES
                if k == 0 and free is None:
                    free = i
                elif k and (k >> 16) not in live and stale is None:
                    stale = i
            i = free if free is not None else stale
            if i is None:
                return None
            off = HEADER + i * SLOT_BYTES
            if i == stale:  # a deleted topic's counts: gone with it
                words = np.frombuffer(self.seg.mm, np.uint64, SLOT_BYTES // 8, off)
                words[1:] = 0
                del words
            lib.shm_store64(self._cbuf, SIZE, off, key)  # release: after the zeroing
            return off

    def keys(self):
        """[(slot offset, topic id, partition)] of the claimed slots."""
        out = []
        for i in range(SLOTS):
            k = self._key(i)
            if k:
                out.append((HEADER + i * SLOT_BYTES, k >> 16, k & 0xFFFF))
        return out

    def read(self, off):
        """(counts array, latencies clamped to 0, latencies clamped to 60 s)
        of the slot at *off*: a snapshot (relaxed counters, see ext/shmlat.h)."""
        words = np.frombuffer(self.seg.mm, np.uint64, SLOT_BYTES // 8, off).copy()
        counts = words[SLOT_WORDS:]
        below, above = int(words[_L["below"]]), int(words[_L["above"]])
        if counts.max(initial=0) >= _MAX_COUNT or max(below, above) >= _MAX_COUNT:
            raise CorruptSegmentError("%s is damaged (a counter of slot %d holds more than 2**50): remove it "
                                      "(rm /dev/shm%s)" % (self.label, (off - HEADER) // SLOT_BYTES, self.seg.name))
        return counts, below, above


def to_stage(counts, stage=None, name="produce->poll"):
    """A broker.latency.Stage (an HdrHistogram, ns) holding *counts*: each
    bucket's count at the bucket's middle value; added into *stage* if given."""
    from .latency import Stage
    st = Stage(name) if stage is None else stage
    idx = np.flatnonzero(counts)
    for v, n in zip(MIDDLE[idx].tolist(), counts[idx].tolist()):
        st.record(v, n)
    return st


def summary(stage, clamped=0):
    """count and p50/p99/p99.9/max in microseconds (Stage.summary's keys),
    plus ``out_of_range``: latencies below 0 or above 60 s, counted as 0 / 60 s."""
    out = stage.summary(PS)
    out["out_of_range"] = clamped
    return out


class Recorder:
    """A Consumer's side: opens its group's segment at its first assigned
    partition and points each assigned partition's C reader at its slot."""

    def __init__(self, consumer):
        self._c = consumer
        self._g = None
        self._full_told = False

    def _groups(self):
        if self._g is None:
            c = self._c
            gs = c._groups()
            self._g = GroupHistograms.open(c._ns, c._gidx, c._group, create=True)
            self._gs = gs
        return self._g

    def attach(self, part, info):
        """Count *part*'s handed-out records (a _Part of the Consumer)."""
        g = self._groups()
        off = g.claim(self._c._ns, info.topic_id, part.tp.partition)
        if off is None:
            if not self._full_told:
                self._full_told = True
                _log.warning("%s: every one of its %d partition slots is in use; %s[%d] and further partitions "
                             "are not timed", g.label, SLOTS, part.tp.topic, part.tp.partition)
            return
        part.log._fast.set_latency(g.seg.mm, off)
        part.buf = _fastlog.LatQueue(part.log._fast)  # counts each record as poll()/consume() hands it out

    def latency(self):
        from .message import TopicPartition
        g = self._groups()
        out = {}
        for (t, p) in list(self._c._order):
            info = self._c._ns.topic(t)
            off = g.slot_of(info.topic_id, p)
            if off is None:
                continue
            counts, below, above = g.read(off)
            out[TopicPartition(t, p)] = summary(to_stage(counts), below + above)
        return out

    def close(self):
        if self._g is not None:
            self._g.close()
            self._g = None


def consumer_latency(consumer):
    """Consumer.latency()'s body."""
    consumer._check()
    if consumer._lat is None:
        raise KafkaException(KafkaError(KafkaError._STATE, "latency() needs shm.latency.histogram=true in the "
                                        "Consumer's config (and a group.id)"))
    return consumer._lat.latency()


# -- `shmbroker stat`
def _text(exc):
    """An exception's message, the way the CLI prints it."""
    return error_text(exc) if isinstance(exc, KafkaException) else "%s: %s" % (type(exc).__name__, exc)


def group_latencies(ns, groups):
    """For `stat`: [(group, topic, partition, summary)] for every
    partition of every group in *groups* ({name: index}) that has a
    histogram, and [(group, error message)] for unreadable segments."""
    by_id = {t.topic_id: t for t in ns.topics().values()}
    rows, errors = [], []
    for name, gidx in sorted(groups.items()):
        try:
            g = GroupHistograms.open(ns, gidx, name)
        except (CorruptSegmentError, KafkaException) as exc:
            errors.append((name, _text(exc)))
            continue
        if g is None:
            continue
        try:
            for off, tid, p in g.keys():
                t = by_id.get(tid)
                if t is None or p >= t.partitions:
                    continue  # a deleted topic's slot (reused when needed)
                counts, below, above = g.read(off)
                rows.append((name, t.name, p, counts, below + above))
        except CorruptSegmentError as exc:
            errors.append((name, _text(exc)))
        finally:
            g.close()
    return rows, errors


def stat_lines(ns, groups):
    """The latency section of `stat`: one line per group and partition."""
    rows, errors = group_latencies(ns, groups)
    if not rows and not errors:
        return []
    out = ["%-16s %-16s %9s %12s %10s %10s %10s %10s" % ("GROUP", "TOPIC", "PARTITION", "LAT-COUNT", "P50-US",
                                                          "P99-US", "P99.9-US", "MAX-US")]
    for name, topic, p, counts, clamped in sorted(rows, key=lambda r: r[:3]):
        s = summary(to_stage(counts), clamped)
        out.append("%-16s %-16s %9d %12d %10.1f %10.1f %10.1f %10.1f%s" % (
            name, topic, p, s["count"], s["p50"], s["p99"], s["p99.9"], s["max"],
            "  (%d out of range)" % clamped if clamped else ""))
    for name, msg in errors:
        out.append("%-16s latency histogram unreadable: %s" % (name, msg))
    return out


def merged(ns, groups, group=None, topic=None, partition=None):
    """(Stage, [(group, topic, partition)]): the histograms selected, merged."""
    if group is not None:
        if group not in groups:
            raise KafkaException(KafkaError(KafkaError.GROUP_ID_NOT_FOUND, "no consumer group %r in namespace %r "
                                            "(`shmbroker consumer-groups --list` lists them)" % (group, ns.name)))
        groups = {group: groups[group]}
    rows, errors = group_latencies(ns, groups)
    if errors:
        raise CorruptSegmentError("group %r: %s" % errors[0])
    from .latency import Stage
    st = Stage("produce->poll")
    picked = []
    for name, t, p, counts, _ in rows:
        if (topic is None or t == topic) and (partition is None or p == partition):
            to_stage(counts, st)
            picked.append((name, t, p))
    return st, picked
