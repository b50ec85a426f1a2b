"""A namespace: one independent broker on the host.  Its metadata segment
``/shmb.<ns>`` holds the topic registry, the member registry (client
processes the supervisor watches) and the group tables (groups.py); each
partition is its own segment ``/shmb.<ns>.<topic_id>.<partition>``.

Concurrency: mutations (create/delete topic) hold an ``flock`` on the
metadata segment, which the kernel releases when the holder dies.  Readers
take no lock: every topic entry has a sequence word, odd while it is being
written (a per-entry seqlock through the C core's atomics), so a reader
retries a torn read and a writer that died mid-update leaves one entry
unreadable until the next writer repairs it, never a hung reader.
"""
import collections
import contextlib
import difflib
import fcntl
import os
import re
import struct
import time
import weakref

import numpy as np
import posix_ipc

from shm._native import ffi, lib
from shm.errors import (ConfigError, CorruptSegmentError, InvalidNameError, KafkaError, KafkaException,
                        NamespaceError, TopicExistsError, UnknownTopicError)
from shm.log import PartitionLog
from shm.segment import MissingSegmentError, Segment, human, shm_free, unlink

from .config import NAME_RULE, check_namespace, topic_config
from .logs import remove_logs

MAGIC = b"SHMBMETA"
VERSION = 2
HEADER = 4096
MAX_TOPICS = 256
ENTRY = 512
TOPICS_OFF = HEADER
GROUPS_OFF = TOPICS_OFF + MAX_TOPICS * ENTRY  # the supervisor, members, groups, commits (groups.py)
GROUPS_SIZE = 2 << 20
META_SIZE = GROUPS_OFF + GROUPS_SIZE
NEXT_ID_OFF = 64
TOPICS_GEN_OFF = 72  # bumped after every topic create/delete: readers cache the registry until it moves
DESTROYED_OFF = 80  # set by destroy() before it unlinks anything: live clients raise NamespaceError
TOKEN_OFF = 88  # counter of registration tokens handed out (the owners that claims carry)
AUTO_CREATE_OFF = 96  # auto.create.topics.enable (broker/autocreate.py): 0 default (on, as Kafka's), 1 off, 2 on
TOKEN_BASE = 1 << 22  # pids are below it, so a token never equals a pid
TOKEN_SPAN = (1 << 26) - TOKEN_BASE  # the C core's tag holds 26 owner bits
SUP_OFF = GROUPS_OFF  # the running supervisor's pid (0: none)
SUP_FUTEX_OFF = GROUPS_OFF + 8  # u32: clients bump it and wake the supervisor (group changes)
MEMBERS_OFF = GROUPS_OFF + 64
MAX_MEMBERS = 1024
MEMBER = 32  # pid (claimed by CAS), role, start ticks (written last), registration token
MEMBER_PRODUCER, MEMBER_CONSUMER = 1, 2
MEMBER_QUEUE = 3  # a process using broker.Queue & co: its token owns leases and claims in the queues
ROLE_NAMES = {MEMBER_PRODUCER: "producer", MEMBER_CONSUMER: "consumer", MEMBER_QUEUE: "queue"}
PID_LIMIT = 1 << 22  # Linux's highest possible pid (PID_MAX_LIMIT)

# Groups (groups.py): a group table, one slot per group member (a Consumer
# that subscribed), and committed offsets; layout in groups.py's docstring.
GTABLE_OFF = GROUPS_OFF + 36864
MAX_GROUPS = 64
GENTRY = 512
GMEMBER_OFF = GTABLE_OFF + MAX_GROUPS * GENTRY
MAX_GMEMBERS = 128
GMEMBER = 8192
COMMITS_OFF = GMEMBER_OFF + MAX_GMEMBERS * GMEMBER
MAX_COMMITS = 16384
CENTRY = 48
assert MEMBERS_OFF + MAX_MEMBERS * MEMBER <= GTABLE_OFF
assert MAX_COMMITS & (MAX_COMMITS - 1) == 0  # shm_commit_floor probes with a mask
assert COMMITS_OFF + MAX_COMMITS * CENTRY <= GROUPS_OFF + GROUPS_SIZE and COMMITS_OFF % 4096 == 0

_HDR = struct.Struct("<8sIIIII")  # magic, version, layout, max_topics, entry size, creator pid
# seq, state, partitions, topic_id, slots, data capacity, max message bytes, retention ms, overflow, name len, name
_ENT = struct.Struct("<QIIQQQQqII256s")
LAYOUT = ((_HDR.size << 16) ^ (_ENT.size << 4) ^ MAX_TOPICS ^ (ENTRY << 20) ^ GROUPS_SIZE
          ^ (MAX_GROUPS << 8) ^ (GMEMBER << 2) ^ (MAX_GMEMBERS << 24) ^ (MAX_COMMITS << 9) ^ (CENTRY << 26)) & 0xFFFFFFFF
FREE, ACTIVE = 0, 1
OVERFLOWS = ("overwrite", "block")

_TOPIC_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,248}$")  # config.NAME_RULE, and dots
TOPIC_DEFAULTS = {"retention.bytes": 64 << 20, "max.message.bytes": None, "retention.ms": -1,
                  "shm.overflow": "overwrite", "shm.slots": None}

TopicInfo = collections.namedtuple(
    "TopicInfo", "name topic_id partitions slot_count data_capacity max_message_bytes retention_ms overflow")


def unknown_partition(topic, partitions, partition):
    """The KafkaError for a partition a topic does not have."""
    return KafkaError(KafkaError._UNKNOWN_PARTITION, "topic %r has %d partitions: partition %r does not exist "
                      "(they are numbered from 0)" % (topic, partitions, partition))


def check_topic_name(name):
    if not isinstance(name, str) or not _TOPIC_RE.match(name) or name in (".", ".."):
        raise InvalidNameError(
            "invalid topic name %r: a topic name is 1 to 249 characters: %s or '.'" % (name, NAME_RULE))
    return name


def _pow2_at_least(n):
    p = 1
    while p < n:
        p <<= 1
    return p


def topic_geometry(config):
    """NewTopic.config -> (slot_count, data_capacity, max_message_bytes,
    retention_ms, overflow), validated."""
    conf = dict(TOPIC_DEFAULTS)
    conf.update(topic_config(config))
    try:
        data = int(conf["retention.bytes"])
        maxmsg = None if conf["max.message.bytes"] is None else int(conf["max.message.bytes"])
        rms = int(conf["retention.ms"])
    except (TypeError, ValueError) as exc:
        raise ConfigError("topic config values must be integers: %s" % exc) from None
    if not 4096 <= data <= 1 << 40:
        raise ConfigError("retention.bytes must be in [4096, 2**40] (the ring's data capacity per partition), "
                          "got %d" % data)
    data = _pow2_at_least(data)  # rings are powers of two: rounded up
    if maxmsg is None:  # Kafka's 1 MiB, or what the ring can hold
        maxmsg = min(1 << 20, data - 16)
    if not 0 <= maxmsg <= data - 16:
        raise ConfigError("max.message.bytes must be in [0, retention.bytes - 16] = [0, %d], got %d"
                          % (data - 16, maxmsg))
    if conf["shm.overflow"] not in OVERFLOWS:
        raise ConfigError("shm.overflow must be 'overwrite' or 'block', got %r" % (conf["shm.overflow"],))
    slots = conf["shm.slots"]
    if slots is None:  # an index slot per 256 data bytes, within [64, 2**20]
        slots = min(max(data // 256, 64), 1 << 20)
    slots = int(slots)
    if slots < 2 or slots & (slots - 1) or slots > 1 << 30:
        raise ConfigError("shm.slots must be a power of two in [2, 2**30], got %r" % (slots,))
    return slots, data, maxmsg, rms, conf["shm.overflow"]


MODES = (0o600, 0o660, 0o606, 0o666)
ANY_MODE = "any"  # destroy and stop_supervisor only: no owner or mode check
_modes = {}  # namespace name -> the mode this process accepted it with (ensure_supervisor's lock file)


def check_mode(mode):
    """shm.mode (an int, or an octal string such as "0660"); None: env
    SHMBROKER_MODE, else 0600 (private to its creator)."""
    if mode is None:
        mode = os.environ.get("SHMBROKER_MODE", 0o600)
    if mode == ANY_MODE:
        return mode
    try:
        m = int(mode, 8) if isinstance(mode, str) else int(mode) if not isinstance(mode, bool) else -1
    except (TypeError, ValueError):
        m = -1
    if m not in MODES:
        raise ConfigError("shm.mode must be 0600 (private to its creator, the default), 0660 (shared with the "
                          "creator's group) or 0606/0666 (shared with every user), got %r" % (mode,))
    return m


def namespace_mode(name):
    """The mode this process accepted namespace *name* with (default 0600)."""
    return _modes.get(name, check_mode(None))


def format_meta(mm):
    """Write a new metadata segment's header into *mm*, magic last."""
    _HDR.pack_into(mm, 0, b"\0" * 8, VERSION, LAYOUT, MAX_TOPICS, ENTRY, os.getpid())
    buf = ffi.from_buffer(mm)
    lib.shm_store64(buf, META_SIZE, NEXT_ID_OFF, 1)
    # magic last (release: pairs with the attacher's acquire load)
    lib.shm_store64(buf, META_SIZE, 0, struct.unpack("<Q", MAGIC)[0])
    ffi.release(buf)


class Namespace:
    """The metadata segment of one namespace, attached (created if new).
    *mode* is shm.mode: the creator's segments get it, and an existing
    namespace is accepted only with exactly it (owned by this user unless
    it is a shared mode); see shm.segment.owner_problem."""

    def __init__(self, name, create=True, mode=None, pre_touch=False):
        self.name = check_namespace(name)
        self.mode = check_mode(mode)
        self.pre_touch = pre_touch  # open_partition maps every page at once (a client's shm.pre.touch)
        self.meta_name = "/shmb.%s" % name
        self.seg = self._open(create)
        try:
            # the flock file: the same inode as the segment we mapped, never a symlink planted in its place
            self._lockfd = os.open("/dev/shm" + self.meta_name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            if os.fstat(self._lockfd).st_ino != self.seg.ino:
                os.close(self._lockfd)
                raise FileNotFoundError
        except OSError:
            self.seg.close()
            raise NamespaceError("namespace %r was removed or replaced while it was being opened: try again"
                                 % self.name) from None
        self._cbuf = ffi.from_buffer(self.seg.mm)
        self._token = self._token_pid = 0
        self._logs = weakref.WeakSet()  # partitions opened here: they carry our token
        if self.mode != ANY_MODE:
            _modes[self.name] = self.mode

    # -- segment
    def _open(self, create):
        what = "namespace %r" % self.name
        if create and self.mode != ANY_MODE:
            try:
                seg = Segment.create(self.meta_name, META_SIZE, self.mode)
            except NamespaceError:
                pass
            else:
                format_meta(seg.mm)
                return seg
        try:
            seg = Segment.attach(self.meta_name, None if self.mode == ANY_MODE else self.mode, what)
        except CorruptSegmentError:
            raise CorruptSegmentError("namespace %r is empty (its creator died creating it): `shmbroker destroy "
                                      "--namespace %s` and start again" % (self.name, self.name)) from None
        except MissingSegmentError:
            raise NamespaceError("no namespace %r (existing: %s): check the name; a producer, consumer or "
                                 "`shmbroker topics --create` creates one" % (self.name, namespace_list(self.name))
                                 ) from None
        try:
            self._check(seg)
        except BaseException:
            seg.close()
            raise
        return seg

    def _check(self, seg):
        if seg.size < META_SIZE:
            raise CorruptSegmentError("namespace %r is damaged (%d bytes of metadata, expected %d): `shmbroker "
                                      "destroy --namespace %s` and start again" % (self.name, seg.size, META_SIZE, self.name))
        buf = ffi.from_buffer(seg.mm)
        try:
            end = time.monotonic() + 2.0
            while lib.shm_load64(buf, seg.size, 0) != struct.unpack("<Q", MAGIC)[0]:
                if time.monotonic() > end:  # a creator still writing gets 2 s
                    raise CorruptSegmentError("namespace %r is damaged or was never finished: `shmbroker destroy "
                                              "--namespace %s` and start again" % (self.name, self.name))
                time.sleep(0.001)
        finally:
            ffi.release(buf)
        _, version, layout, maxt, ent, _ = _HDR.unpack_from(seg.mm, 0)
        if version != VERSION or layout != LAYOUT or maxt != MAX_TOPICS or ent != ENTRY:
            raise CorruptSegmentError("namespace %r has another layout (version %d): it belongs to another "
                                      "shmbroker release; `shmbroker destroy --namespace %s`" % (self.name, version, self.name))

    def close(self):
        if self._cbuf is not None:
            ffi.release(self._cbuf)
            self._cbuf = None
            os.close(self._lockfd)
            self.seg.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextlib.contextmanager
    def _locked(self):
        fcntl.flock(self._lockfd, fcntl.LOCK_EX)  # released by the kernel if we die
        try:
            yield
        finally:
            fcntl.flock(self._lockfd, fcntl.LOCK_UN)

    # -- entries
    def _entry_off(self, i):
        return TOPICS_OFF + i * ENTRY

    def seq_read(self, off, read):
        """The reader's side of the seqlock word at *off*: (seq, read()) from
        a moment no writer was inside, or None if it keeps changing (a writer
        died mid-update: the next writer repairs it)."""
        for _ in range(1000):
            s1 = lib.shm_load64(self._cbuf, META_SIZE, off)
            if s1 & 1:
                continue
            v = read()
            if lib.shm_load64(self._cbuf, META_SIZE, off) == s1:
                return s1, v
        return None

    def _read_entry(self, i):
        """A stable snapshot of entry i, or None while it is being written."""
        off = self._entry_off(i)
        got = self.seq_read(off, lambda: _ENT.unpack_from(self.seg.mm, off))
        return None if got is None else got[1]

    def _decode(self, e):
        _, state, parts, tid, slots, data, maxmsg, rms, ovf, nlen, name = e
        if state != ACTIVE or not 0 < nlen <= 249 or ovf > 1 or not 0 < parts <= 4096 or not 0 < tid < 1 << 40:
            return None
        return TopicInfo(name[:nlen].decode("ascii", "replace"), tid, parts, slots, data, maxmsg, rms, OVERFLOWS[ovf])

    def topics(self):
        """{name: TopicInfo} of every topic (cached until a topic is created
        or deleted: one word load when nothing changed)."""
        gen = lib.shm_load64(self._cbuf, META_SIZE, TOPICS_GEN_OFF)  # before the entries: a change after it refreshes
        cache = getattr(self, "_tcache", None)
        if cache is not None and cache[0] == gen:
            return dict(cache[1])
        self.check_alive()  # destroy() bumps the generation too
        out, torn = self._scan_topics()
        if not torn:
            self._tcache = (gen, out)
        return dict(out)

    def _scan_topics(self):
        """({name: TopicInfo}, whether an entry was torn): one pass over the
        registry, no cache and no destroyed check (mark_destroyed needs it)."""
        out = {}
        torn = False
        for i in range(MAX_TOPICS):
            e = self._read_entry(i)
            torn |= e is None
            t = self._decode(e) if e else None
            if t:
                out[t.name] = t
        return out, torn

    def topic(self, name):
        """TopicInfo of *name*, or raise UnknownTopicError."""
        t = self.topics().get(name)
        if t is not None:
            return t
        raise UnknownTopicError("unknown topic %r in namespace %r: create it first (AdminClient.create_topics or "
                                "`shmbroker topics --create --topic %s`)" % (name, self.name, name))

    @contextlib.contextmanager
    def seq_write(self, off):
        """The writer's side of the seqlock word at *off*: odd while the
        block is written, even again after.  A word left odd by a writer that
        died mid-update is repaired (the caller is the only writer now)."""
        seq = lib.shm_load64(self._cbuf, META_SIZE, off)
        seq += seq & 1
        lib.shm_store64(self._cbuf, META_SIZE, off, seq + 1)  # odd: writing
        yield
        lib.shm_store64(self._cbuf, META_SIZE, off, seq + 2)  # even: stable (release: after the block)

    def _write_entry(self, i, fields):
        off = self._entry_off(i)
        with self.seq_write(off):
            self.seg.mm[off + 8:off + _ENT.size] = _ENT.pack(0, *fields)[8:]

    # -- members (client processes) and the supervisor
    def owner_token(self):
        """This process's registration token here: the owner its claims
        carry, so the supervisor repairs exactly a dead registration's claims
        and never those of a process that got its pid (invariant 11).  A new
        one after fork; every partition opened here carries it."""
        pid = os.getpid()
        if self._token_pid != pid:
            n = lib.shm_fetch_add64(self._cbuf, META_SIZE, TOKEN_OFF, 1)
            self._token, self._token_pid = TOKEN_BASE + n % TOKEN_SPAN, pid
            for log in list(self._logs):
                if not log.closed:
                    log.set_owner(self._token)
        return self._token

    def register(self, role):
        """Claim a member entry for this process; returns its index."""
        pid, start = os.getpid(), proc_start_ticks(os.getpid())
        token = self.owner_token()
        for i in range(MAX_MEMBERS):
            off = MEMBERS_OFF + i * MEMBER
            if lib.shm_load64(self._cbuf, META_SIZE, off) == 0 and lib.shm_cas64(self._cbuf, META_SIZE, off, 0, pid):
                lib.shm_store64(self._cbuf, META_SIZE, off + 8, role)
                lib.shm_store64(self._cbuf, META_SIZE, off + 24, token)
                lib.shm_store64(self._cbuf, META_SIZE, off + 16, start)  # last: the entry is complete
                return i
        raise NamespaceError("namespace %r has %d registered client processes, its maximum: close some clients"
                             % (self.name, MAX_MEMBERS))

    def member_token(self, idx):
        """The registration token of member entry *idx* (0: none recorded)."""
        tok = lib.shm_load64(self._cbuf, META_SIZE, MEMBERS_OFF + idx * MEMBER + 24)
        return tok if TOKEN_BASE <= tok < TOKEN_BASE + TOKEN_SPAN else 0  # nothing read is trusted

    def registered(self, idx, pid):
        """Does member entry *idx* still name *pid*?"""
        return lib.shm_load64(self._cbuf, META_SIZE, MEMBERS_OFF + idx * MEMBER) == pid

    def unregister(self, idx, pid):
        off = MEMBERS_OFF + idx * MEMBER
        if lib.shm_load64(self._cbuf, META_SIZE, off) == pid:
            lib.shm_store64(self._cbuf, META_SIZE, off + 16, 0)
            lib.shm_store64(self._cbuf, META_SIZE, off + 24, 0)
            lib.shm_cas64(self._cbuf, META_SIZE, off, pid, 0)

    def members(self, bad=None):
        """[(index, pid, start ticks, role)] of complete, valid registrations;
        an entry half-written by a process that died registering is freed,
        and so is one whose pid no process can have.  Entries skipped as bad
        are reported in the list *bad*, if given, as (index, pid, why)."""
        out = []
        bad = [] if bad is None else bad
        words = np.frombuffer(self.seg.mm, dtype=np.uint64, count=MAX_MEMBERS * MEMBER // 8, offset=MEMBERS_OFF)
        used = np.flatnonzero(words[::MEMBER // 8].copy()).tolist()  # a snapshot; each hit is re-read below
        del words
        for i in used:
            off = MEMBERS_OFF + i * MEMBER
            pid = lib.shm_load64(self._cbuf, META_SIZE, off)
            if not pid:
                continue
            start = lib.shm_load64(self._cbuf, META_SIZE, off + 16)
            role = lib.shm_load64(self._cbuf, META_SIZE, off + 8)
            if pid > PID_LIMIT:  # written by no client of ours: free it
                bad.append((i, pid, "pid %d is out of range (at most %d): freed" % (pid, PID_LIMIT)))
                lib.shm_cas64(self._cbuf, META_SIZE, off, pid, 0)
            elif not start:
                if not proc_start_ticks(pid):
                    lib.shm_cas64(self._cbuf, META_SIZE, off, pid, 0)
            elif role not in ROLE_NAMES:
                bad.append((i, pid, "unknown role %d: skipped" % role))
            else:
                out.append((i, pid, start, role))
        return out

    def set_supervisor(self, pid):
        lib.shm_store64(self._cbuf, META_SIZE, SUP_OFF, pid)

    def supervisor_pid(self):
        return lib.shm_load64(self._cbuf, META_SIZE, SUP_OFF)

    def wake_supervisor(self):
        """Tell the supervisor a group changed (join, leave, ack)."""
        lib.shm_futex_wake32(self._cbuf, META_SIZE, SUP_FUTEX_OFF)

    def partition_segment(self, topic_id, p):
        return "/shmb.%s.%d.%d" % (self.name, topic_id, p)

    def create_topic(self, name, partitions=1, config=None):
        check_topic_name(name)
        if not isinstance(partitions, int) or not 1 <= partitions <= 4096:
            raise KafkaException(KafkaError(KafkaError.INVALID_PARTITIONS,
                                            "num_partitions must be in [1, 4096], got %r" % (partitions,)))
        slots, data, maxmsg, rms, ovf = topic_geometry(config)
        each = lib.log_segment_size(slots, data)
        if partitions * each > shm_free():  # allocated below: a topic that does not fit is refused now
            raise self._no_room(name, partitions, each)
        with self._locked():
            free = None
            for i in range(MAX_TOPICS):
                e = self._read_entry(i)
                if e is None or e[1] != FREE:
                    if e is not None and e[10][:e[9]] == name.encode():
                        raise TopicExistsError("topic %r already exists in namespace %r" % (name, self.name))
                    if e is None and free is None:
                        free = i  # half-written by a dead writer: reusable under the lock
                    continue
                if free is None:
                    free = i
            if free is None:
                raise NamespaceError("namespace %r holds %d topics, its maximum: delete one first"
                                     % (self.name, MAX_TOPICS))
            tid = lib.shm_fetch_add64(self._cbuf, META_SIZE, NEXT_ID_OFF, 1)
            made = []
            try:
                for p in range(partitions):
                    seg = self.partition_segment(tid, p)
                    unlink(seg)  # a leftover of a creator that died before publishing this id
                    try:
                        log = PartitionLog.create(seg, slot_count=slots, data_capacity=data, max_record=maxmsg,
                                                  overflow=ovf, mode=self.mode)
                    except ConfigError:  # its memory could not be allocated (it removed itself)
                        raise self._no_room(name, partitions, each) from None
                    made.append(seg)
                    log.close()
                self._write_entry(free, (ACTIVE, partitions, tid, slots, data, maxmsg, rms, OVERFLOWS.index(ovf),
                                         len(name), name.encode()))
                lib.shm_fetch_add64(self._cbuf, META_SIZE, TOPICS_GEN_OFF, 1)  # after the entry: readers refresh
            except BaseException:
                for seg in made:
                    unlink(seg)
                raise
        return TopicInfo(name, tid, partitions, slots, data, maxmsg, rms, ovf)

    def topics_generation(self):
        """The registry's generation: it moves on every topic create,
        delete, growth or config change (clients compare it to their cache)."""
        return lib.shm_load64(self._cbuf, META_SIZE, TOPICS_GEN_OFF)

    def _find_entry(self, name):
        """(index, raw entry) of active topic *name*; the caller holds the lock."""
        for i in range(MAX_TOPICS):
            e = self._read_entry(i)
            if e is not None and e[1] == ACTIVE and e[10][:e[9]] == name.encode():
                return i, e
        raise UnknownTopicError("unknown topic %r in namespace %r: create it first (AdminClient.create_topics or "
                                "`shmbroker topics --create --topic %s`)" % (name, self.name, name))

    def add_partitions(self, name, total, validate_only=False):
        """Grow topic *name* to *total* partitions (Kafka's CreatePartitions):
        new partition segments with the topic's geometry, then the entry.
        Keyed records of the new count land by the partitioner over *total*,
        as on Kafka.  Returns the new TopicInfo."""
        check_topic_name(name)
        with self._locked():
            i, e = self._find_entry(name)
            t = self._decode(e)
            if not isinstance(total, int) or isinstance(total, bool) or not t.partitions < total <= 4096:
                why = ("topic %r already has %d partitions: the new total must be higher (partitions are never "
                       "removed, as on Kafka)" % (name, t.partitions)) if isinstance(total, int) and \
                    total <= t.partitions else "a topic has at most 4096 partitions, got %r" % (total,)
                raise KafkaException(KafkaError(KafkaError.INVALID_PARTITIONS, why))
            each = lib.log_segment_size(t.slot_count, t.data_capacity)
            if (total - t.partitions) * each > shm_free():
                raise self._no_room(name, total - t.partitions, each)
            if validate_only:
                return t._replace(partitions=total)
            made = []
            try:
                for p in range(t.partitions, total):
                    seg = self.partition_segment(t.topic_id, p)
                    unlink(seg)  # a leftover of a grower that died before publishing the count
                    try:
                        log = PartitionLog.create(seg, slot_count=t.slot_count, data_capacity=t.data_capacity,
                                                  max_record=t.max_message_bytes, overflow=t.overflow, mode=self.mode)
                    except ConfigError:
                        raise self._no_room(name, total - t.partitions, each) from None
                    made.append(seg)
                    log.close()
                self._write_entry(i, (ACTIVE, total) + tuple(e[3:]))
                lib.shm_fetch_add64(self._cbuf, META_SIZE, TOPICS_GEN_OFF, 1)  # after the entry: readers refresh
            except BaseException:
                for seg in made:
                    unlink(seg)
                raise
        self.wake_supervisor()  # groups subscribed to the topic get the new partitions now
        return t._replace(partitions=total)

    def set_retention_ms(self, name, retention_ms):
        """Change topic *name*'s retention.ms (the one topic config that is
        not the ring's shape); returns the new TopicInfo."""
        check_topic_name(name)
        with self._locked():
            i, e = self._find_entry(name)
            fields = list(e[1:])
            fields[6] = int(retention_ms)
            self._write_entry(i, tuple(fields))
            lib.shm_fetch_add64(self._cbuf, META_SIZE, TOPICS_GEN_OFF, 1)  # after the entry: readers refresh
        return self._decode(self._read_entry(i))

    @staticmethod
    def _no_room(name, partitions, each):
        return ConfigError("topic %r needs %s of shared memory (%d partition%s of %s: retention.bytes plus its "
                           "index) but /dev/shm has %s free: lower retention.bytes or the partition count, or "
                           "delete topics or namespaces you no longer need"
                           % (name, human(partitions * each), partitions, "s" if partitions > 1 else "", human(each),
                              human(shm_free())))

    def delete_topic(self, name):
        check_topic_name(name)
        with self._locked():
            for i in range(MAX_TOPICS):
                e = self._read_entry(i)
                if e is None or e[1] != ACTIVE or e[10][:e[9]] != name.encode():
                    continue
                t = self._decode(e)
                for p in range(t.partitions):
                    seg = self.partition_segment(t.topic_id, p)
                    try:
                        log = PartitionLog.attach(seg)
                    except KafkaException:
                        pass
                    else:
                        log.mark_deleted()  # clients still using it get UnknownTopicError
                        log.close()
                    unlink(seg)
                self._write_entry(i, (FREE, 0, 0, 0, 0, 0, 0, 0, 0, b""))
                lib.shm_fetch_add64(self._cbuf, META_SIZE, TOPICS_GEN_OFF, 1)  # after the entry: readers refresh
                return t
        raise UnknownTopicError("cannot delete topic %r: it does not exist in namespace %r" % (name, self.name))

    def open_partition(self, info, p):
        self.check_alive()  # never attach a new namespace's segment of the same name
        log = PartitionLog.attach(self.partition_segment(info.topic_id, p),
                                  None if self.mode == ANY_MODE else self.mode,
                                  "partition %d of topic %r in namespace %r" % (p, info.name, self.name),
                                  populate=self.pre_touch)
        log.on_deleted = self.check_alive  # a deleted partition may mean a destroyed namespace
        self._logs.add(log)
        if self._token_pid == os.getpid():  # a registered client: its claims carry its token
            log.set_owner(self._token)
        return log

    def destroyed(self):
        return lib.shm_load64(self._cbuf, META_SIZE, DESTROYED_OFF) != 0

    def check_alive(self):
        """Raise NamespaceError if `shmbroker destroy` removed this namespace
        while we were attached (called on slow paths only)."""
        if self._cbuf is not None and self.destroyed():
            raise NamespaceError("namespace %r was destroyed (`shmbroker destroy`) while this client was using it: "
                                 "close this client and create a new one, which starts the namespace afresh"
                                 % self.name)

    def mark_destroyed(self):
        """destroy()'s first step: set the flag, then mark every partition
        deleted (appends fail, sleeping readers wake), so every live client
        learns it at its next call instead of working on unlinked segments."""
        lib.shm_store64(self._cbuf, META_SIZE, DESTROYED_OFF, 1)
        lib.shm_fetch_add64(self._cbuf, META_SIZE, TOPICS_GEN_OFF, 1)  # cached registries refresh and see it
        for info in self._scan_topics()[0].values():
            for p in range(info.partitions):
                try:
                    log = PartitionLog.attach(self.partition_segment(info.topic_id, p))
                except KafkaException:
                    continue
                try:
                    log.mark_deleted()
                finally:
                    log.close()
        from .pool._queues import mark_queues_deleted  # the queues' users are told too
        mark_queues_deleted(self.name)


_clients = weakref.WeakSet()


def register_client(client, role):
    """Register *client* (a Producer or Consumer with ._ns) as a member of
    its namespace, so the supervisor watches this process; again after fork."""
    client._member = client._ns.register(role)
    client._member_role = role
    _clients.add(client)


def unregister_client(client):
    _clients.discard(client)
    if getattr(client, "_member", None) is not None:
        client._ns.unregister(client._member, os.getpid())
        client._member = None


def _reregister_after_fork():
    for c in list(_clients):
        if getattr(c, "_member", None) is not None and not c._closed:
            try:
                c._member = c._ns.register(c._member_role)  # the parent keeps its own entry
            except NamespaceError:
                c._member = None
            if hasattr(c, "_after_fork"):
                c._after_fork()


os.register_at_fork(after_in_child=_reregister_after_fork)


def proc_start_ticks(pid):
    """A process's start time in clock ticks since boot (/proc/<pid>/stat
    field 22): with the pid, it names one process (pid reuse changes it).
    0 if there is no such process."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return 0
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return 0  # a zombie has exited: only its parent's wait is missing
    return int(fields[19])


def stop_supervisor(name, timeout=5.0):
    """SIGTERM the namespace's supervisor (the pid its segment records, if
    that process is a supervisor of this namespace) and wait for it to go."""
    try:
        ns = Namespace(name, create=False, mode=ANY_MODE)  # only to read the pid, checked below
    except KafkaException:
        return None
    try:
        pid = ns.supervisor_pid()
    finally:
        ns.close()
    if not pid or pid > 1 << 22:
        return None
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    if b"serve" not in argv or name.encode() not in argv:
        return None  # not ours: the pid was reused
    os.kill(pid, 15)
    end = time.monotonic() + timeout
    while proc_start_ticks(pid) and time.monotonic() < end:
        time.sleep(0.005)
    return pid


def namespaces():
    """Names of the namespaces on this host (their metadata segments)."""
    return sorted(f[5:] for f in os.listdir("/dev/shm") if f.startswith("shmb.") and "." not in f[5:])


def namespace_list(near=None, limit=8):
    """The existing namespaces for a message, the ones like *near* first."""
    names = namespaces()
    first = difflib.get_close_matches(near, names, n=3, cutoff=0.6) if near else []
    names = first + [n for n in names if n not in first]
    more = len(names) - limit
    return "none" if not names else ", ".join(names[:limit]) + (" and %d more" % more if more > 0 else "")


def destroy(name):
    """Remove every segment of namespace *name* (a corrupted one too);
    returns the names removed."""
    check_namespace(name)
    try:
        ns = Namespace(name, create=False, mode=ANY_MODE)  # whatever shm.mode it was shared with: tell its clients
    except KafkaException:
        pass  # none, corrupted, or not readable by us: nobody we could tell
    else:
        try:
            ns.mark_destroyed()
        finally:
            ns.close()
    stop_supervisor(name)
    stem = "shmb.%s" % name
    removed = []
    for f in sorted(os.listdir("/dev/shm")):
        if f == stem or f.startswith(stem + "."):
            try:
                unlink("/" + f)
            except posix_ipc.PermissionsError as exc:  # another user's
                raise NamespaceError("cannot destroy namespace %r: %s is not yours (%s); only its owner can "
                                     "remove it" % (name, f, exc)) from None
            removed.append("/" + f)
    remove_logs(name)
    return removed
