"""Consumer groups in the namespace segment: the group table, one slot per
group member, committed offsets, and the assignors.

Who writes what (so nothing needs a lock on the data path):
- a member (a subscribed Consumer) claims a free slot by CAS on its pid word,
  fills in its subscription, then sets it ACTIVE and wakes the supervisor;
  it writes its progress words (heartbeat, last poll) and, after it applied
  an assignment, the list of partitions it *owns* and the epoch it acked;
- the supervisor alone writes assignments (KIP-848 style, coordinator-side):
  the member's *assigned* list under a seqlock, then the assignment epoch
  (= that list's even sequence number, so a supervisor that died between the
  two leaves epoch != sequence and its successor tells the member again),
  then a wake on the member's notify futex;
- committed offsets are 16-byte ``{owner token, offset + 1}`` pairs.  The
  supervisor hands a partition's pair to its new owner (``shm_pair_own``)
  before telling it; a commit is a CAS that succeeds only while the caller
  still owns the pair (``shm_pair_commit``).  So a member that was replaced
  (dead, stopped past max.poll.interval.ms, or revoked) cannot commit: the
  fencing is one atomic step, with no window between check and store.

Hand-over: a partition moves to a new member only once no live member owns
it - the old owner acked an assignment without it (after its on_revoke and
its commit), or died.  A member's ownership before it acks its newest epoch
is taken as owned + assigned (it may already be reading what it was given).

Member slot (GMEMBER bytes), offsets inside the slot:
  0 pid (claim word)  8 start ticks  16 group index + 1  24 state
  32 incarnation  40 assignment epoch  48 acked epoch  56 notify (u32)
  64 heartbeat ns  72 last poll return ns  80 in poll  88 session ms
  96 max poll ms  104 strategies  112 n assigned  120 n owned
  128 subscription seq  136 down deadline ns  144 assigned seq
  152 owned seq  160 join ns  168 instance len  176 client id len
  184 subscription len  192 instance id[128]  320 client id[64]
  384 subscription[640]  1024 assigned[MAX_ASSIGN]  4608 owned[MAX_ASSIGN]
Group entry (GENTRY bytes): 0 seq  8 state  16 generation  24 strategy
  32 name len  40 name[255].
Commit entry (CENTRY bytes): 0 key  8 commit time ns  16 owner  24 offset + 1
  32 records lost to laps  40 offset resets after a lap.
Times are CLOCK_MONOTONIC nanoseconds (shared by every process on the host).

The commit table is open addressing with linear probing, keyed by
(group, topic id, partition).  Lookups take no lock and stop at a free (0)
key.  A new key is inserted under the namespace lock, into the first
deleted or free entry of its probe chain: the entry's fields first, the key
last.  Deleting a group (under the lock, no member left) turns its entries'
owner words, then keys, into DELETED_KEY, and then frees (key 0) every
deleted entry that ends a chain, so chains stay short and the table never
fills with the dead.  The owner word of an entry nobody owns is the entry's
own key (never 0): a commit is a CAS expecting its own token or key, so a
committer that found an entry before its group was deleted, and stalled
while the entry went to another key, fails its CAS instead of writing into
the new key's offset.
"""
import os
import struct
import time

import numpy as np

from shm._native import ffi, lib
from shm.errors import ConfigError, KafkaError, KafkaException, NamespaceError
from shm.segment import unlink

from .namespace import (CENTRY, COMMITS_OFF, GENTRY, GMEMBER, GMEMBER_OFF, GTABLE_OFF, MAX_COMMITS, MAX_GMEMBERS,
                        MAX_GROUPS, META_SIZE, proc_start_ticks)

# slot fields
PID, START, GROUP, STATE, INCARN, EPOCH, ACK, NOTIFY = 0, 8, 16, 24, 32, 40, 48, 56
HEARTBEAT, LAST_POLL, IN_POLL, SESSION_MS, MAXPOLL_MS, STRATS, N_ASSIGNED, N_OWNED = 64, 72, 80, 88, 96, 104, 112, 120
SUB_SEQ, DOWN_DEADLINE, ASSIGN_SEQ, OWNED_SEQ, JOIN_NS = 128, 136, 144, 152, 160
INSTANCE_LEN, CLIENT_LEN, SUB_LEN, INSTANCE, CLIENT, SUB = 168, 176, 184, 192, 320, 384
ASSIGNED, OWNED = 1024, 4608
MAX_ASSIGN = (GMEMBER - OWNED) // 8
MAX_SUB = ASSIGNED - SUB
# slot states
FREE, ACTIVE, FENCED, DOWN = 0, 1, 2, 3
STATE_NAMES = {FREE: "free", ACTIVE: "Stable", FENCED: "fenced", DOWN: "down (static)"}
# commit entries: fields, and key values that are not keys (real keys are >= 1 << 52)
C_TIME, C_OWNER, C_VALUE, C_LOST, C_RESETS = 8, 16, 24, 32, 40
FREE_KEY, DELETED_KEY = 0, 1
STRATEGIES = ("range", "roundrobin", "cooperative-sticky")
COOPERATIVE = 2

_MAX_GROUP_NAME = 249


def now_ns():
    return time.monotonic_ns()


def tp_id(topic_id, partition):
    """One partition of one topic as a 64-bit word (topic ids are never reused)."""
    return (topic_id << 16) | partition


def parse_strategies(value):
    """librdkafka's partition.assignment.strategy: a comma list -> indexes."""
    out = []
    for name in str(value or "range,roundrobin").split(","):
        name = name.strip()
        if not name:
            continue
        if name not in STRATEGIES:
            raise ConfigError("partition.assignment.strategy: unknown assignor %r; use range, roundrobin or "
                              "cooperative-sticky" % name)
        out.append(STRATEGIES.index(name))
    if not out:
        out = [0, 1]
    if COOPERATIVE in out and len(set(out)) > 1:
        raise ConfigError("partition.assignment.strategy: cooperative-sticky cannot be mixed with eager assignors")
    return out[:7]


def pack_strategies(idx):
    word = 0
    for i, s in enumerate(idx):
        word |= (s + 1) << (4 * i)
    return word


def unpack_strategies(word):
    out = []
    while word & 0xF:
        out.append((word & 0xF) - 1)
        word >>= 4
    return [s for s in out if 0 <= s < len(STRATEGIES)]


class Groups:
    """The group tables of one attached Namespace."""

    def __init__(self, ns):
        self.ns = ns
        self.buf = ns._cbuf
        self.mm = ns.seg.mm
        self._words = np.frombuffer(self.mm, dtype=np.uint64, count=MAX_COMMITS * CENTRY // 8,
                                    offset=COMMITS_OFF).reshape(MAX_COMMITS, CENTRY // 8)
        self._slot_words = np.frombuffer(self.mm, dtype=np.uint64, count=MAX_GMEMBERS * GMEMBER // 8,
                                         offset=GMEMBER_OFF)

    def close(self):
        """Drop our views of the segment (before the Namespace closes it)."""
        self._words = self._slot_words = None

    # -- words
    def load(self, off):
        return lib.shm_load64(self.buf, META_SIZE, off)

    def store(self, off, val):
        lib.shm_store64(self.buf, META_SIZE, off, val)

    def cas(self, off, exp, new):
        return lib.shm_cas64(self.buf, META_SIZE, off, exp, new)

    @staticmethod
    def slot_off(i):
        return GMEMBER_OFF + i * GMEMBER

    # -- group table
    def _gname(self, i):
        off = GTABLE_OFF + i * GENTRY

        def read():
            n = self.load(off + 32)
            return self.load(off + 8), n, bytes(self.mm[off + 40:off + 40 + min(n, 255)])
        got = self.ns.seq_read(off, read)
        if got is None:
            return None
        state, n, name = got[1]
        return name.decode("utf-8", "replace") if state == 1 and 0 < n <= 255 else None

    def _used_groups(self):
        """Indexes of group entries whose state word is set (a plain scan;
        each is then read under its seqlock)."""
        states = np.frombuffer(self.mm, dtype=np.uint64, count=MAX_GROUPS * GENTRY // 8, offset=GTABLE_OFF)
        used = np.flatnonzero(states[1::GENTRY // 8].copy()).tolist()  # a snapshot: nonzero() on live words can fail
        del states
        return used

    def groups(self):
        """{name: index} of every group."""
        out = {}
        for i in self._used_groups():
            n = self._gname(i)
            if n is not None:
                out[n] = i
        return out

    def find_group(self, name):
        for i in self._used_groups():
            if self._gname(i) == name:
                return i
        return None

    def group_index(self, name, create=True):
        """The table index of group *name* (created under the namespace lock)."""
        check_group_name(name)
        i = self.find_group(name)
        if i is not None or not create:
            return i
        with self.ns._locked():
            i = self.find_group(name)
            if i is not None:
                return i
            for i in range(MAX_GROUPS):
                off = GTABLE_OFF + i * GENTRY
                if self.load(off + 8) == 1 and self._gname(i) is not None:
                    continue
                raw = name.encode()
                with self.ns.seq_write(off):
                    self.store(off + 32, len(raw))
                    self.mm[off + 40:off + 40 + len(raw)] = raw
                    self.store(off + 16, 0)
                    self.store(off + 8, 1)
                return i
        raise NamespaceError("namespace %r has %d consumer groups, its maximum: delete one (`shmbroker "
                             "consumer-groups --delete --group G`)" % (self.ns.name, MAX_GROUPS))

    def delete_group(self, gidx):
        """Remove a group with no live members and its committed offsets."""
        with self.ns._locked():
            for i in range(MAX_GMEMBERS):
                o = self.slot_off(i)
                if self.load(o + PID) and self.load(o + GROUP) == gidx + 1 and self.load(o + STATE) != FREE:
                    raise KafkaException(KafkaError(KafkaError.NON_EMPTY_GROUP, "group %r has active members: "
                                                    "close them first" % self._gname(gidx)))
            w = self._words
            mine = (w[:, 0] >> np.uint64(52)) == np.uint64(gidx + 1)
            for e in np.nonzero(mine)[0]:
                off = COMMITS_OFF + int(e) * CENTRY
                lib.shm_pair_own(self.buf, META_SIZE, off + C_OWNER, DELETED_KEY)  # first: stale commits now fail
                self.store(off, DELETED_KEY)
            self._free_chain_ends()
            off = GTABLE_OFF + gidx * GENTRY
            with self.ns.seq_write(off):
                self.store(off + 8, 0)
                self.store(off + 32, 0)
            from .latency_hist import segment_name
            unlink(segment_name(self.ns.name, gidx))  # its latency histograms (shm.latency.histogram) go with it

    def _free_chain_ends(self):
        """Under the lock: free every deleted entry that no probe chain
        needs (the next entry is free), walking backwards from a free one.
        No lookup is misled: a chain never continues past a free entry."""
        keys = self._words[:, 0].copy()
        free = np.flatnonzero(keys == FREE_KEY)
        if not len(free):
            return
        i = int(free[0])
        for _ in range(MAX_COMMITS - 1):
            i = (i - 1) % MAX_COMMITS
            nxt = keys[(i + 1) % MAX_COMMITS]
            if keys[i] == DELETED_KEY and nxt == FREE_KEY:
                self.store(COMMITS_OFF + i * CENTRY, FREE_KEY)
                keys[i] = FREE_KEY

    def set_strategy(self, gidx, strategy):
        off = GTABLE_OFF + gidx * GENTRY
        if self.load(off + 24) != strategy + 1:
            self.store(off + 24, strategy + 1)

    def bump_generation(self, gidx):
        lib.shm_fetch_add64(self.buf, META_SIZE, GTABLE_OFF + gidx * GENTRY + 16, 1)

    def generation(self, gidx):
        off = GTABLE_OFF + gidx * GENTRY
        return self.load(off + 16), self.load(off + 24) - 1

    # -- committed offsets
    @staticmethod
    def commit_key(gidx, topic_id, partition):
        return ((gidx + 1) << 52) | ((topic_id & ((1 << 40) - 1)) << 12) | (partition & 0xFFF)

    @staticmethod
    def key_tp(key):
        """commit_key's (topic_id, partition)."""
        return (key >> 12) & ((1 << 40) - 1), key & 0xFFF

    @staticmethod
    def home(key):
        """The table index where the probe for *key* starts."""
        return (key * 0x9E3779B97F4A7C15 >> 20) % MAX_COMMITS  # as ext/shmlog.c's shm_commit_floor probes

    def commit_entry(self, gidx, topic_id, partition, create=True):
        """Byte offset of the commit entry (inserted if new), or None."""
        key = self.commit_key(gidx, topic_id, partition)
        h = self.home(key)
        for k in range(MAX_COMMITS):
            off = COMMITS_OFF + ((h + k) % MAX_COMMITS) * CENTRY
            cur = self.load(off)
            if cur == key:
                return off
            if cur == FREE_KEY:
                break
        if not create:
            return None
        with self.ns._locked():  # inserts are serialised: one entry per key, placed in a reused hole
            hole = None
            for k in range(MAX_COMMITS):
                off = COMMITS_OFF + ((h + k) % MAX_COMMITS) * CENTRY
                cur = self.load(off)
                if cur == key:
                    return off
                if cur in (FREE_KEY, DELETED_KEY) and hole is None:
                    hole = off
                if cur == FREE_KEY:
                    break
            if hole is None:
                raise NamespaceError("namespace %r holds %d committed offsets, its maximum: delete unused groups "
                                     "(`shmbroker consumer-groups --delete --group G`)" % (self.ns.name, MAX_COMMITS))
            for f in (C_TIME, C_VALUE, C_LOST, C_RESETS):
                self.store(hole + f, 0)
            self.store(hole + C_OWNER, key)  # nobody owns it yet
            self.store(hole + 0, key)  # last (release): lookups find it complete
            return hole

    def committed(self, gidx, topic_id, partition):
        """The committed offset, or None."""
        off = self.commit_entry(gidx, topic_id, partition, create=False)
        if off is None:
            return None
        v = self.load(off + C_VALUE)
        return v - 1 if v else None

    def commit(self, gidx, topic_id, partition, offset, token):
        """Commit *offset* if *token* still owns the partition: True, or
        False when fenced.  Token 0 (a consumer outside the group's
        membership, or an admin) commits what no live member owns."""
        key = self.commit_key(gidx, topic_id, partition)
        off = self.commit_entry(gidx, topic_id, partition)
        for _ in range(4):
            if lib.shm_pair_commit(self.buf, META_SIZE, off + C_OWNER, token or key, offset + 1) == 1:
                self.store(off + C_TIME, now_ns())
                return True
            if self.load(off) != key:  # the group was deleted under us: look it up again
                off = self.commit_entry(gidx, topic_id, partition)
                continue
            owner = self.load(off + C_OWNER)
            if token or self.token_live(owner):
                return False
            self.cas(off + C_OWNER, owner, key)  # its member is gone: free it
        return False

    def count_lap(self, gidx, topic_id, partition, lost):
        """A member of the group lost *lost* records to a lap (reset past them)."""
        off = self.commit_entry(gidx, topic_id, partition)
        lib.shm_fetch_add64(self.buf, META_SIZE, off + C_LOST, lost)
        lib.shm_fetch_add64(self.buf, META_SIZE, off + C_RESETS, 1)

    def lap_losses(self, gidx):
        """{(topic_id, partition): (records lost to laps, resets)} of a group."""
        out = {}
        for key, off in self._entries_of(gidx):
            lost, resets = self.load(off + C_LOST), self.load(off + C_RESETS)
            if resets and self.load(off) == key:
                out[self.key_tp(key)] = (lost, resets)
        return out

    def _entries_of(self, gidx):
        w = self._words
        mine = (w[:, 0] >> np.uint64(52)) == np.uint64(gidx + 1)
        for e in np.nonzero(mine)[0]:
            off = COMMITS_OFF + int(e) * CENTRY
            yield self.load(off), off

    def token_live(self, token):
        """Is *token* the current token of an active member slot?"""
        slot = (token >> 32) - 1
        if not 0 <= slot < MAX_GMEMBERS:
            return False
        o = self.slot_off(slot)
        return self.load(o + PID) != 0 and self.load(o + STATE) == ACTIVE and self.token(slot) == token

    def set_owner(self, gidx, topic_id, partition, token):
        """Hand the partition's commits to member *token* (0: to nobody)."""
        off = self.commit_entry(gidx, topic_id, partition)
        lib.shm_pair_own(self.buf, META_SIZE, off + C_OWNER, token or self.commit_key(gidx, topic_id, partition))

    def owner(self, gidx, topic_id, partition):
        """The owning member's token, 0 if none."""
        off = self.commit_entry(gidx, topic_id, partition, create=False)
        if off is None:
            return 0
        owner = self.load(off + C_OWNER)
        return 0 if owner == self.load(off) else owner

    def group_offsets(self, gidx):
        """{(topic_id, partition): committed offset} of a group."""
        out = {}
        for key, off in self._entries_of(gidx):
            v = self.load(off + C_VALUE)
            if key >> 52 == gidx + 1 and v:
                out[self.key_tp(key)] = v - 1
        return out

    @staticmethod
    def floor_key(topic_id, partition):
        """commit_key's low bits, which every group's entry for the partition shares (shm_commit_floor's)."""
        return ((topic_id & ((1 << 40) - 1)) << 12) | (partition & 0xFFF)

    def commit_ctx(self, gidx, topic_id, partition, token):
        """What Part.set_commit needs to make this group's commits of the partition in C (poll()'s paced
        auto-commits: ext/fastpart.c's part_commit does commit() and floor_for's work), or None while the
        group has no entry for it."""
        off = self.commit_entry(gidx, topic_id, partition, create=False)
        if off is None:
            return None
        key = self.commit_key(gidx, topic_id, partition)
        return (int(ffi.cast("uintptr_t", self.buf)), META_SIZE, off, key, token or key, C_TIME, C_OWNER,
                COMMITS_OFF, MAX_COMMITS, CENTRY, C_VALUE, self.floor_key(topic_id, partition), MAX_GROUPS)

    def floor_for(self, topic_id, partition):
        """Block mode: the lowest offset any group of the topic committed
        (a group that was assigned it but never committed counts as 0), or
        None when no group has it: one probe a group (ext/shmlog.c), not a
        scan of the table."""
        low = self.floor_key(topic_id, partition)
        out = ffi.new("uint64_t[1]")  # a call's own: cffi lets other threads run during it
        if lib.shm_commit_floor(self.buf, META_SIZE, COMMITS_OFF, MAX_COMMITS, CENTRY, C_VALUE, low, MAX_GROUPS,
                                out) != 1:
            return None
        return out[0] - 1 if out[0] else 0

    # -- member slots
    def read_list(self, slot, which, with_seq=False):
        """A consistent snapshot of a slot's assigned or owned list (seqlock),
        or None if it keeps changing; with_seq: (seq, list)."""
        o = self.slot_off(slot)
        seq_off, n_off, list_off = (ASSIGN_SEQ, N_ASSIGNED, ASSIGNED) if which == "assigned" else \
            (OWNED_SEQ, N_OWNED, OWNED)
        got = self.ns.seq_read(o + seq_off, lambda: list(struct.unpack_from(
            "<%dQ" % min(self.load(o + n_off), MAX_ASSIGN), self.mm, o + list_off)))
        if got is None or with_seq:
            return got
        return got[1]

    def write_list(self, slot, which, items):
        o = self.slot_off(slot)
        seq_off, n_off, list_off = (ASSIGN_SEQ, N_ASSIGNED, ASSIGNED) if which == "assigned" else \
            (OWNED_SEQ, N_OWNED, OWNED)
        items = list(items)[:MAX_ASSIGN]
        with self.ns.seq_write(o + seq_off):
            struct.pack_into("<%dQ" % len(items), self.mm, o + list_off, *items)
            self.store(o + n_off, len(items))

    def text(self, slot, field, len_field):
        o = self.slot_off(slot)
        n = min(self.load(o + len_field), {SUB: MAX_SUB, INSTANCE: 128, CLIENT: 64}[field])
        return bytes(self.mm[o + field:o + field + n]).decode("utf-8", "replace")

    def set_text(self, slot, field, len_field, text, limit):
        raw = text.encode()
        if len(raw) > limit:
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "too long for a group member slot (%d bytes, "
                                            "at most %d): %r" % (len(raw), limit, text[:80])))
        o = self.slot_off(slot)
        self.mm[o + field:o + field + len(raw)] = raw
        self.store(o + len_field, len(raw))

    def slots(self, gidx=None):
        """[(slot, pid, state)] of claimed member slots (of one group)."""
        out = []
        used = np.flatnonzero(self._slot_words[::GMEMBER // 8].copy()).tolist()  # a snapshot; hits are re-read
        for i in used:
            o = self.slot_off(i)
            pid = self.load(o + PID)
            if not pid:
                continue
            if gidx is not None and self.load(o + GROUP) != gidx + 1:
                continue
            out.append((i, pid, self.load(o + STATE)))
        return out

    def claim_slot(self, gidx, instance_id):
        """Claim a member slot for this process: a DOWN slot of the same
        static member (it keeps its partitions), else a free one."""
        pid = os.getpid()
        start = proc_start_ticks(pid)
        if instance_id:
            for i in range(MAX_GMEMBERS):
                o = self.slot_off(i)
                old = self.load(o + PID)
                if old and self.load(o + STATE) == DOWN and self.load(o + GROUP) == gidx + 1 and \
                        self.text(i, INSTANCE, INSTANCE_LEN) == instance_id and self.cas(o + PID, old, pid):
                    self.store(o + START, start)  # at once: the supervisor checks pid and start together
                    return i, True
        for i in range(MAX_GMEMBERS):
            o = self.slot_off(i)
            if self.load(o + PID) == 0 and self.cas(o + PID, 0, pid):
                self.store(o + START, start)
                return i, False
        raise NamespaceError("namespace %r has %d consumer-group members, its maximum: close some consumers"
                             % (self.ns.name, MAX_GMEMBERS))

    def free_slot(self, slot, pid):
        """Release a slot (by its owner, or the supervisor for a dead one)."""
        o = self.slot_off(slot)
        if self.load(o + PID) != pid:
            return False
        self.store(o + STATE, FREE)
        self.store(o + N_ASSIGNED, 0)
        self.store(o + N_OWNED, 0)
        self.store(o + GROUP, 0)
        self.store(o + START, 0)  # the next claimer's start ticks are not confused with ours
        return self.cas(o + PID, pid, 0)

    def token(self, slot):
        return ((slot + 1) << 32) | (self.load(self.slot_off(slot) + INCARN) & 0xFFFFFFFF)

    def notify(self, slot):
        lib.shm_futex_wake32(self.buf, META_SIZE, self.slot_off(slot) + NOTIFY)

    def notify_word(self, slot):
        return self.slot_off(slot) + NOTIFY


def describe_group(gs, gidx, topics=None):
    """(members, state, strategy) of a group: members as dicts with slot,
    pid, state, member_id, client_id, instance, assigned [(topic, p)]."""
    by_id = {i.topic_id: i.name for i in (topics or gs.ns.topics()).values()}
    members = []
    settling = False
    for slot, pid, state in gs.slots(gidx):
        if state == FREE:
            continue
        o = gs.slot_off(slot)
        ids = gs.read_list(slot, "assigned") or []
        epoch, ack = gs.load(o + EPOCH), gs.load(o + ACK)
        settling |= state == ACTIVE and (epoch == 0 or epoch != ack or epoch != gs.load(o + ASSIGN_SEQ))
        members.append({"slot": slot, "pid": pid, "state": STATE_NAMES.get(state, "?"),
                        "member_id": "shm-%d-%d-%d" % (pid, slot, gs.load(o + INCARN) & 0xFFFFFFFF),
                        "client_id": gs.text(slot, CLIENT, CLIENT_LEN),
                        "instance": gs.text(slot, INSTANCE, INSTANCE_LEN) or None,
                        "assigned": sorted((by_id[t >> 16], t & 0xFFFF) for t in ids if t >> 16 in by_id),
                        "alive": state == ACTIVE and alive(pid, gs.load(o + START))})
    gen, strat = gs.generation(gidx)
    active = [m for m in members if m["state"] == "Stable"]
    state = "Empty" if not active else "PreparingRebalance" if settling else "Stable"
    return members, state, STRATEGIES[strat] if 0 <= strat < len(STRATEGIES) else ""


def check_group_name(name):
    if not isinstance(name, str) or not name or len(name.encode()) > _MAX_GROUP_NAME or "\0" in name:
        raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "group.id must be a non-empty string of at most "
                                        "%d bytes, got %r" % (_MAX_GROUP_NAME, name)))
    return name


# ---- assignors: members are (key, subscribed set of (topic, partition)) -----
def assign_range(members, parts_by_topic):
    """Kafka's RangeAssignor: per topic, consecutive ranges; the first
    members (in key order) get one more when it does not divide."""
    out = {k: [] for k, _ in members}
    for topic in sorted(parts_by_topic):
        subs = [k for k, s in members if topic in s]
        if not subs:
            continue
        parts = sorted(parts_by_topic[topic])
        q, r = divmod(len(parts), len(subs))
        at = 0
        for i, k in enumerate(subs):
            n = q + (1 if i < r else 0)
            out[k].extend((topic, p) for p in parts[at:at + n])
            at += n
    return out


def assign_roundrobin(members, parts_by_topic):
    """Kafka's RoundRobinAssignor: every (topic, partition) in order, dealt
    to members in turn, skipping those not subscribed to the topic."""
    out = {k: [] for k, _ in members}
    keys = [k for k, _ in members]
    subs = dict(members)
    i = 0
    for topic in sorted(parts_by_topic):
        for p in sorted(parts_by_topic[topic]):
            for j in range(len(keys)):
                k = keys[(i + j) % len(keys)]
                if topic in subs[k]:
                    out[k].append((topic, p))
                    i = (i + j + 1) % len(keys)
                    break
    return out


def assign_sticky(members, parts_by_topic, previous):
    """Cooperative-sticky: keep every member's current partitions where it
    still subscribes, then balance (counts differ by at most one among
    members that could take a partition), moving only what must move."""
    subs = dict(members)
    keys = [k for k, _ in members]
    valid = {(t, p) for t, ps in parts_by_topic.items() for p in ps}
    out = {k: [] for k in keys}
    taken = set()
    for k in keys:
        for tp in sorted(previous.get(k, ())):
            if tp in valid and tp[0] in subs[k] and tp not in taken:
                out[k].append(tp)
                taken.add(tp)
    free = sorted(valid - taken)

    def eligible(tp):
        return [k for k in keys if tp[0] in subs[k]]

    # the quota: total partitions over members able to hold any
    able = [k for k in keys if subs[k]]
    if able:
        total = len(valid)
        q, r = divmod(total, len(able))
        # members over the quota give back their last partitions
        for k in sorted(able, key=lambda k: -len(out[k])):
            cap = q + (1 if r > 0 else 0)
            if len(out[k]) > cap:
                free.extend(out[k][cap:])
                del out[k][cap:]
            if len(out[k]) == q + 1 and r > 0:
                r -= 1
        for tp in sorted(free):
            cands = eligible(tp)
            if cands:
                k = min(cands, key=lambda k: (len(out[k]), keys.index(k)))
                out[k].append(tp)
        # a last pass: move from the fullest to the emptiest while it helps
        for _ in range(total):
            hi = max(able, key=lambda k: len(out[k]))
            lo = min(able, key=lambda k: len(out[k]))
            if len(out[hi]) - len(out[lo]) <= 1:
                break
            movable = [tp for tp in out[hi] if tp[0] in subs[lo]]
            if not movable:
                break
            tp = movable[-1]
            out[hi].remove(tp)
            out[lo].append(tp)
    return out


def run_assignor(strategy, members, parts_by_topic, previous):
    if strategy == 0:
        return assign_range(members, parts_by_topic)
    if strategy == 1:
        return assign_roundrobin(members, parts_by_topic)
    return assign_sticky(members, parts_by_topic, previous)


def choose_strategy(lists):
    """The first strategy of the first member that every member supports."""
    if not lists:
        return 0
    for s in lists[0]:
        if all(s in l for l in lists):
            return s
    return lists[0][0] if lists[0] else 0


def alive(pid, start):
    return pid and start and proc_start_ticks(pid) == start
