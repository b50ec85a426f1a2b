"""Consumer-group membership and committed offsets, the part of Consumer
(consumer.py) that talks to the group tables (groups.py has the layout).

subscribe() claims a member slot in the namespace segment and wakes the
supervisor, which alone computes assignments.  Every poll() compares the
slot's assignment epoch with the one this consumer applied (one word load);
on a change it runs on_revoke / on_assign inside poll as confluent-kafka
does (eager for range and roundrobin, incremental for cooperative-sticky),
then publishes what it owns and acks the epoch, which lets the supervisor
hand revoked partitions on.  While it waits, it also sleeps on its slot's
notify futex, so a new assignment wakes it at once; it writes a heartbeat
every wait chunk and its last poll time on return (session.timeout.ms,
max.poll.interval.ms).
"""
import collections
import os
import time

from shm._native import lib
from shm.errors import KafkaError, KafkaException, NamespaceError, UnknownTopicError

from . import config as _config
from . import groups as G
from .message import OFFSET_INVALID, OFFSET_STORED, TopicPartition, event
from .namespace import DESTROYED_OFF, META_SIZE, unknown_partition
from .subscription import regex_risk

_DESTROYED_W = DESTROYED_OFF // 8


_NEVER = 1 << 62  # a commit time (monotonic ns) that never comes


def part_position(part):
    """An assigned partition's position: the next offset poll() hands out (its fetched batch's first, if any)."""
    return part.buf[0][2] if part.buf else part.pos


def _stored(part):
    """librdkafka's stored offset of *part* (enable.auto.offset.store): its position, or - when nothing was
    read since a seek() - the position before the seek; None if nothing was consumed since reading started."""
    at = part_position(part)
    if at != part.start:
        return at
    return part.before if part.before >= 0 else None


def _lean_state(name, doc):
    """A property kept in the instance dict under *name* whose every change calls _lean_sync."""
    def get(self):
        return self.__dict__.get(name)  # (None before __init__ set it: no slot, no rejoin)

    def put(self, value):
        self.__dict__[name] = value
        self._lean_sync()
    return property(get, put, doc=doc)


class GroupMember:
    """Mixin of Consumer: the group's side.  Uses the Consumer's _ns, _conf,
    _parts, _order, _topics, _add, _remove, _next, _wait and _waiter_for."""

    def _init_group(self, conf):
        self._group = conf.get("group.id")
        if self._group is not None:
            G.check_group_name(self._group)
        self._auto_commit = _config.as_bool(conf.get("enable.auto.commit", True))
        self._auto_store = _config.as_bool(conf.get("enable.auto.offset.store", True))
        # 0: no periodic commit (librdkafka's meaning), only those before a revoke and at close()
        self._commit_every = int(conf.get("auto.commit.interval.ms", 5000)) * 1_000_000 or _NEVER
        self._session_ms = int(conf.get("session.timeout.ms", 45000))
        self._maxpoll_ms = int(conf.get("max.poll.interval.ms", 300000))
        self._instance = conf.get("group.instance.id") or ""
        self._strategies = G.parse_strategies(conf.get("partition.assignment.strategy"))
        self._on_commit = conf.get("on_commit")
        self._hb_ns = max(1_000_000, min(100_000_000, self._session_ms * 1_000_000 // 3))
        self._gs = None  # Groups, once a group is used
        self._gidx = None
        self._slot = None  # our member slot while subscribed
        self._sub = None  # (topics list, on_assign, on_revoke, on_lost)
        self._stored = {}  # (topic, partition) -> offset to commit (store_offsets)
        # enable.auto.commit: for a member from its join, for an assign()ed consumer with a group.id from now
        # (as Java's and librdkafka's: their positions are committed too, every auto.commit.interval.ms)
        self._plan_commit()
        self._plain_commits = self._auto_commit and self._group is not None
        self._commit_events = collections.deque()
        self._rejoin = False

    # _slot and _rejoin are properties: every change tells poll()'s C lean path (_lean_sync)
    _slot = _lean_state("_slot_", "Our member slot while subscribed (None: no group membership).")
    _rejoin = _lean_state("_rejoin_", "A forked or fenced member joins again at its next poll.")

    def _lean_sync(self):
        """Tell poll()'s C lean path (ext/fastpoll.c) what it may do alone: hand out fetched batches, and
        read the one assigned partition (_solo) while no rejoin is due, when no group slot is held - or
        when one is and its assignment is applied: then the C path also checks, per call, that the
        supervisor has nothing new for us (the slot's state and epoch words), keeps the slot's last-poll
        word, and hands the call back here once an auto-commit is due (cpoll.next_commit)."""
        d = self.__dict__
        cpoll = d.get("_cpoll")
        if cpoll is None:
            return
        held = "_slot_" in d and d["_slot_"] is not None
        plain = "_slot_" in d and not held  # (not yet set: the Python path)
        member = None
        if held and d.get("_synced") and not d.get("_rejoin_", True):
            addr, size = d["_ns_map"]
            member = (addr, size, d["_w_state"] * 8, d["_w_epoch"] * 8, d["_w_last"] * 8, G.ACTIVE, d["_seen_epoch"])
        lean = plain or member is not None
        cpoll.set_lean(plain, d.get("_solo") if lean and not d.get("_rejoin_", True) else None, member)
        for part in d.get("_block", ()):  # the C commits' owner may have changed: the next Python commit re-arms
            part.set_commit(None)
        commits = member is not None and d["_auto_commit"] or plain and d["_plain_commits"]
        cpoll.next_commit = d["_next_commit"] if commits else -1

    def _groups(self):
        if self._gs is None:
            if self._group is None:
                raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "this needs a consumer group: set "
                                                "group.id in the Consumer's config"))
            gs = G.Groups(self._ns)
            try:
                gidx = gs.group_index(self._group)  # (the table may be full: nothing kept then)
            except BaseException:
                gs.close()
                raise
            self._gw = memoryview(self._ns.seg.mm).cast("Q")  # plain word reads for the per-poll checks
            self._gs, self._gidx = gs, gidx
        return self._gs

    def subscribe(self, topics, on_assign=None, on_revoke=None, on_lost=None):
        """Join the group (or change the subscription): topic names, or
        regexes starting with '^'.  Partitions come from the supervisor;
        the callbacks run inside poll()."""
        self._check()
        if isinstance(topics, str) or not isinstance(topics, (list, tuple)) or not topics:
            raise TypeError("subscribe() takes a non-empty list of topic names or ^regexes, got %r" % (topics,))
        for t in topics:
            if not isinstance(t, str):
                raise TypeError("topic names must be str, got %r" % (t,))
            if t.startswith("^"):
                why = regex_risk(t)
                if why:
                    raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "bad subscription regex %r: %s"
                                                    % (t, why)))
            else:
                from .namespace import check_topic_name
                check_topic_name(t)
        for cb in (on_assign, on_revoke, on_lost):
            if cb is not None and not callable(cb):
                raise TypeError("rebalance callbacks must be callable")
        gs = self._groups()
        if self._auto_create:  # allow.auto.create.topics: as a Kafka broker creates them on a subscribe
            for t in topics:
                if not t.startswith("^"):
                    self._topic_info(t)
        self._sub = (list(topics), on_assign, on_revoke, on_lost)
        if self._slot is None:
            if self._order:
                self.unassign()  # subscribe replaces a manual assignment
            self._join()
        else:  # a new subscription: the supervisor recomputes
            with self._ns.seq_write(gs.slot_off(self._slot) + G.SUB_SEQ):
                gs.set_text(self._slot, G.SUB, G.SUB_LEN, "\n".join(topics), G.MAX_SUB)
            self._ns.wake_supervisor()

    def _join(self):
        gs = self._gs
        slot, static = gs.claim_slot(self._gidx, self._instance)
        o = gs.slot_off(slot)
        try:
            if not static:
                gs.store(o + G.STATE, G.FREE)
            gs.set_text(slot, G.INSTANCE, G.INSTANCE_LEN, self._instance, 128)
            gs.set_text(slot, G.CLIENT, G.CLIENT_LEN, str(self._conf.get("client.id", "rdkafka"))[:64], 64)
            gs.set_text(slot, G.SUB, G.SUB_LEN, "\n".join(self._sub[0]), G.MAX_SUB)
        except BaseException:
            gs.free_slot(slot, os.getpid())
            raise
        now = G.now_ns()
        for f, v in ((G.GROUP, self._gidx + 1), (G.SESSION_MS, self._session_ms), (G.MAXPOLL_MS, self._maxpoll_ms),
                     (G.STRATS, G.pack_strategies(self._strategies)), (G.HEARTBEAT, now), (G.LAST_POLL, now),
                     (G.IN_POLL, 0), (G.EPOCH, 0), (G.ACK, 0), (G.N_OWNED, 0), (G.JOIN_NS, now)):
            gs.store(o + f, v)
        if not static:
            gs.store(o + G.N_ASSIGNED, 0)
        lib.shm_fetch_add64(gs.buf, META_SIZE, o + G.INCARN, 1)
        gs.store(o + G.STATE, G.ACTIVE)  # last: the supervisor now counts us
        self._synced = False  # (before _slot: the lean path takes no member until its assignment is applied)
        self._slot = slot
        self._waiter = None  # a new notify word
        self._token = gs.token(slot)
        self._seen_epoch = 0
        self._w_epoch = (o + G.EPOCH) // 8
        self._w_state = (o + G.STATE) // 8
        self._w_hb = (o + G.HEARTBEAT) // 8
        self._w_last = (o + G.LAST_POLL) // 8
        self._w_inpoll = (o + G.IN_POLL) // 8
        self._plan_commit()
        self._ns.wake_supervisor()

    def _leave(self, revoke=True):
        """Leave the group at once: commit (auto-commit), on_revoke, free the
        slot so the supervisor hands our partitions on."""
        if self._slot is None:
            return
        if revoke and self._synced:
            self._revoke([TopicPartition(t, p) for t, p in self._order], lost=False)
        gs = self._gs
        gs.write_list(self._slot, "owned", [])
        gs.free_slot(self._slot, os.getpid())
        self._slot = None
        self._waiter = None
        self._ns.wake_supervisor()

    def unsubscribe(self):
        """Leave the group (on_revoke runs) and drop the assignment.

        :raises RuntimeError: if the consumer is closed."""
        self._check()
        self._leave()
        self._sub = None
        for key in list(self._parts):
            self._remove(key)

    def _group_tick(self):
        """Per poll: a new assignment epoch, or our slot taken from us (or
        the namespace destroyed)."""
        gw = self._gw
        if gw[_DESTROYED_W]:
            self._ns.check_alive()
        if gw[self._w_state] != G.ACTIVE:  # the supervisor never frees a live member's slot: still ours
            self._fenced()
            return
        epoch = gw[self._w_epoch]
        if epoch != self._seen_epoch:
            self._sync(epoch)
        if self._auto_commit and self._synced:
            self._auto_commit_tick()

    def _commit_wait(self, left):
        """Before a wait: an auto-commit now if one is due, and the paced parts' positions (_commit_idle);
        *left* (seconds; None: no limit) cut to the next one's time."""
        self._auto_commit_tick()
        self._commit_idle()
        due = max(0.0, (self._next_commit - time.monotonic_ns()) / 1e9)
        return due if left is None or left > due else left

    def _auto_commit_tick(self):
        """enable.auto.commit: commit the positions that moved once auto.commit.interval.ms has passed since
        the last (asynchronously: a refusal goes to on_commit; nothing moved, nothing to report, as
        librdkafka's empty auto-commits) - or sooner when a block topic's producers need it (_commit_due)."""
        if self._commit_due():
            self._commit_moved(asynchronous=True)
            self._plan_commit()  # from now, after it: a commit slower than the interval does not run back to back
            self._cpoll.next_commit = self._next_commit  # poll()'s C path hands the next one back here

    def _commit_idle(self):
        """About to wait for records: commit each block topic's partition read past its last commit while its
        group holds the floor (Part.commit_idle, in C once armed; what it leaves, here).  A consumer asleep
        does not see a producer start to wait, so what it read and left uncommitted (up to a quarter ring)
        would hold a claim larger than the rest of the ring (a send_batch of most of it) until the interval."""
        rest = {(p.topic, p.partition) for p in self._block if p.commit_idle()}
        if rest:
            self._commit_moved(asynchronous=True, only=rest)

    def _commit_due(self):
        """auto.commit.interval.ms has passed - or a block topic's producers need this group's commit of what
        it read (shm.overflow=block holds them at the slowest group's committed offset, so one commit an
        interval would cap them at a ring per interval): once a quarter of the ring is read past the floor
        while this group holds it, as a raw reader moves the floor, or all there is while a producer waits
        (Part.floor_wanted, on the parts _paced() marks)."""
        return time.monotonic_ns() >= self._next_commit or any(p.floor_wanted() for p in self._block)

    def _paced(self):
        """Does auto-commit keep pace with block rings (_commit_due)?  With enable.auto.commit and a group,
        auto.commit.interval.ms not 0 (librdkafka's: no periodic commit; the user commits) and
        enable.auto.offset.store (else the user says what to commit)."""
        return self._auto_commit and self._group is not None and self._commit_every != _NEVER and self._auto_store

    def _plan_commit(self):
        """The next auto-commit one auto.commit.interval.ms from now (never, for an interval of 0)."""
        self._next_commit = min(_NEVER, time.monotonic_ns() + self._commit_every)

    def _commit_moved(self, asynchronous, only=None):
        """Commit the positions that moved since their last commit; an error other than the namespace's
        end is logged, not raised: poll() and close() go on (a deleted topic is reported by its read)."""
        try:
            offs = self._moved_positions(only)
            if offs:
                self._commit_list(offs, asynchronous)
        except NamespaceError:
            raise
        except KafkaException as exc:
            self._log.warning("auto-commit of group %r failed: %s", self._group, exc)

    def _moved_positions(self, only=None):
        """The positions to commit, as librdkafka's stored offsets: a partition with nothing consumed since
        reading (re)started commits what it had consumed before its last seek(), if anything; none at
        its committed offset."""
        self._groups()
        return [tp for tp in self._positions(only, consumed=True) if tp.offset != self._committed_offset(tp)]

    def _commit_leaving(self, keys):
        """An assign()ed consumer with auto-commit: the positions of partitions it is about to drop
        (unassign, a new assign, close), as librdkafka commits them."""
        if self._plain_commits and self._slot is None and keys:
            self._commit_moved(asynchronous=False, only=set(keys))

    def _fenced(self):
        """The supervisor removed us (max.poll.interval.ms or session
        timeout passed): our partitions are gone; rejoin."""
        lost = [TopicPartition(t, p) for t, p in self._order]
        self._gs.free_slot(self._slot, os.getpid())
        self._slot = None
        for key in list(self._parts):
            self._remove(key)
        cb = self._sub[3] or self._sub[2]
        if cb is not None and lost:
            cb(self, lost)
        self._events.append(event(None, None, None, KafkaError(
            KafkaError._MAX_POLL_EXCEEDED, "Application maximum poll interval (%d ms) exceeded or session timed "
            "out: this member left the group and its partitions were reassigned; it rejoins now"
            % self._maxpoll_ms)))
        self._join()

    def _sync(self, epoch):
        """Apply assignment *epoch*: callbacks, positions, then ack."""
        gs = self._gs
        got = gs.read_list(self._slot, "assigned", with_seq=True)
        if got is None or got[0] != epoch:
            return  # being rewritten: the next poll sees the newer epoch
        ids = got[1]
        by_id = {info.topic_id: info for info in self._ns.topics().values()}
        new = []
        for tp in ids:
            info = by_id.get(tp >> 16)
            if info is not None:
                self._topics[info.name] = info
                new.append(TopicPartition(info.name, tp & 0xFFFF))
        new_keys = {(x.topic, x.partition) for x in new}
        old = [TopicPartition(t, p) for t, p in self._order]
        _, on_assign, on_revoke, _ = self._sub
        cooperative = G.COOPERATIVE in self._strategies
        if cooperative:
            gone = [x for x in old if (x.topic, x.partition) not in new_keys]
            added = [x for x in new if (x.topic, x.partition) not in self._parts]
            if gone:
                self._revoke(gone, lost=False)
            for x in added:
                self._add(TopicPartition(x.topic, x.partition, OFFSET_STORED))
            if added or not self._synced:
                if on_assign is not None:
                    on_assign(self, added)
        else:
            if old:
                self._revoke(old, lost=False, keep=new_keys)
            for x in new:
                self._add(TopicPartition(x.topic, x.partition, OFFSET_STORED))
            if on_assign is not None:
                on_assign(self, new)
        self._synced = True
        self._seen_epoch = epoch
        gs.write_list(self._slot, "owned", ids)
        gs.store(gs.slot_off(self._slot) + G.ACK, epoch)
        self._lean_sync()  # the C path takes this epoch as nothing new
        self._ns.wake_supervisor()

    def _revoke(self, parts, lost, keep=()):
        """on_revoke (after an auto-commit of them), then drop those not in keep."""
        if self._auto_commit and not lost:
            try:
                self._commit_positions(asynchronous=False, only={(x.topic, x.partition) for x in parts})
            except KafkaException:
                pass  # fenced already: nothing of ours to commit
        cb = self._sub[2] if self._sub else None
        if cb is not None:
            cb(self, parts)
        for x in parts:
            if (x.topic, x.partition) not in keep:
                self._remove((x.topic, x.partition))
                self._stored.pop((x.topic, x.partition), None)

    def _committed_offset(self, tp):
        gs = self._groups()
        info = self._topics.get(tp.topic) or self._ns.topic(tp.topic)
        return gs.committed(self._gidx, info.topic_id, tp.partition)

    def _positions(self, only=None, consumed=False):
        """The offsets a commit of the assignment (or *only* of it) stores; *consumed*: none for a partition
        with nothing consumed since reading started (else its start)."""
        out = []
        for (t, p), part in self._parts.items():
            if only is not None and (t, p) not in only or part.stopped:  # stopped: no position (reset=error)
                continue
            if self._auto_store:
                at = _stored(part)
                if at is None and consumed:
                    continue
                out.append(TopicPartition(t, p, part.start if at is None else at))
            elif (t, p) in self._stored:
                out.append(TopicPartition(t, p, self._stored[(t, p)]))
        return out

    def _commit_positions(self, asynchronous, only=None):
        offs = self._positions(only)
        if offs:
            return self._commit_list(offs, asynchronous)
        return []

    def _commit_list(self, offsets, asynchronous):
        self._ns.check_alive()
        gs = self._groups()
        token = self._token if self._slot is not None else 0
        done, fenced = [], []
        for tp in offsets:
            if tp.offset < 0:
                continue
            info = self._topics.get(tp.topic) or self._ns.topic(tp.topic)
            if not 0 <= tp.partition < info.partitions:
                raise KafkaException(unknown_partition(tp.topic, info.partitions, tp.partition))
            part = self._parts.get((tp.topic, tp.partition))
            if gs.commit(self._gidx, info.topic_id, tp.partition, tp.offset, token):
                done.append(TopicPartition(tp.topic, tp.partition, tp.offset))
                if part is not None:
                    part.committed = tp.offset  # (pacing counts from it: Part.floor_wanted)
                    if part.pace and not part.commit_armed and self._on_commit is None:
                        # poll()'s C path makes the paced commits from now (each a tenth of this one's cost);
                        # it leaves to us what it cannot do (a refusal, a moved entry: the commit reports it)
                        part.set_commit(gs.commit_ctx(self._gidx, info.topic_id, tp.partition, token))
                if info.overflow == "block":
                    self._advance_floor(info, tp.partition)
            else:
                fenced.append(tp)
                if part is not None:
                    part.pace = False  # not ours to commit: no paced retries (the interval's report it)
        err = None
        if fenced:
            err = KafkaError(KafkaError.ILLEGAL_GENERATION if token else KafkaError.UNKNOWN_MEMBER_ID,
                             "commit refused for %s: %s" % (", ".join("%s[%d]" % (x.topic, x.partition) for x in fenced),
                                                           "this member no longer owns them (it was replaced or they "
                                                           "were revoked)" if token else "a group member owns them; "
                                                           "commit from that member, or after it leaves"))
        if self._on_commit is not None:
            self._commit_events.append((err, done + fenced))
        if err is not None and not asynchronous:
            raise KafkaException(err)
        return done

    def _advance_floor(self, info, partition):
        """Block mode: producers may overwrite what every group committed past."""
        floor = self._gs.floor_for(info.topic_id, partition)
        if floor is None:
            return
        part = self._parts.get((info.name, partition))
        log = part.log if part is not None else self._ns.open_partition(info, partition)
        try:
            log.set_floor(min(floor, log.watermarks()[1]))
        finally:
            if part is None:
                log.close()

    def commit(self, message=None, offsets=None, asynchronous=True):
        """Commit a message's offset + 1, the given offsets, or the current positions.  A member commits only
        partitions it owns (a replaced member is refused: ILLEGAL_GENERATION).

        :param Message message: commit its offset + 1.
        :param list offsets: TopicPartitions to commit.
        :param bool asynchronous: return at once (on_commit runs from poll()); False: return the result.
        :returns: the committed TopicPartitions (synchronous), else None.
        :raises ValueError: if both *message* and *offsets* are given.
        :raises KafkaException: ``_NO_OFFSET`` (synchronous) when there is nothing new to commit, as librdkafka.
        """
        self._check()
        if message is not None and offsets is not None:
            raise ValueError("message and offsets are mutually exclusive")
        if message is not None:
            if message.error() is not None:
                raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "Cannot commit offsets for message with "
                                                "error: '%s'" % message.error().str()))
            offs = [TopicPartition(message.topic(), message.partition(), message.offset() + 1)]
        elif offsets is not None:
            offs = list(offsets)
        else:
            offs = self._moved_positions()
            if not offs:  # librdkafka: nothing consumed (or stored) since the last commit
                err = KafkaError(KafkaError._NO_OFFSET, "Local: No offset stored: nothing consumed since the last "
                                 "commit")
                if self._on_commit is not None:
                    self._commit_events.append((err, [TopicPartition(t, p, OFFSET_INVALID)
                                                            for t, p in self._assigned_keys()]))
                if asynchronous:
                    return None
                raise KafkaException(err)
        done = self._commit_list(offs, asynchronous)
        return None if asynchronous else done

    def store_offsets(self, message=None, offsets=None):
        """Store offsets for the next (auto-)commit; needs enable.auto.offset.store=false to matter, as in
        librdkafka.

        :param Message message: store its offset + 1.
        :param list offsets: TopicPartitions to store.
        :raises ValueError: unless exactly one of *message* and *offsets* is given.
        """
        self._check()
        if message is not None and offsets is not None:
            raise ValueError("message and offsets are mutually exclusive")
        if message is None and offsets is None:
            raise ValueError("expected either message or offsets")
        if message is not None:
            self._stored[(message.topic(), message.partition())] = message.offset() + 1
        for tp in offsets or ():
            self._stored[(tp.topic, tp.partition)] = tp.offset

    def committed(self, partitions, timeout=None):
        """:param list partitions: TopicPartitions.
        :param float timeout: unused (local).
        :returns: them with the group's committed offsets (OFFSET_INVALID where none, a topic that does not
            exist included: Kafka's OffsetFetch answers so).
        :rtype: list"""
        self._check()
        out = []
        for tp in partitions:
            try:
                c = self._committed_offset(tp)
            except UnknownTopicError:
                c = None
            out.append(TopicPartition(tp.topic, tp.partition, OFFSET_INVALID if c is None else c))
        return out

    def _serve_commit_callbacks(self):
        while self._commit_events:
            err, parts = self._commit_events.popleft()
            self._on_commit(err, parts)

    def _wait_member(self, parts, timeout):
        """Wait for data or for the supervisor (a new assignment), in
        heartbeat-sized chunks."""
        gs = self._gs
        now = time.monotonic_ns()
        self._gw[self._w_hb] = now  # (the namespace was checked alive by _wait: no supervisor restart after destroy)
        if self._sup_check is not None:  # a client restarts a dead supervisor
            self._sup_check()
        off = gs.notify_word(self._slot)
        nval = self._gw[off // 8] & 0xFFFFFFFF  # little-endian: the u32 is the low half
        if self._gw[self._w_epoch] != self._seen_epoch or self._gw[self._w_state] != G.ACTIVE:
            return
        chunk = self._hb_ns / 1e9
        if self._auto_commit and self._synced:  # its commits come due while it waits (block topics wait for them)
            chunk = self._commit_wait(chunk)
        timeout = chunk if timeout is None else min(timeout, chunk)
        try:
            self._waiter_for(parts, (gs.buf, META_SIZE, off)).wait([p.pos for p in parts], timeout, self._wait_mode,
                                                                   notify_val=nval)
        except UnknownTopicError:
            pass

    def _after_fork(self):
        """In a forked child: the group slot is the parent's; this copy
        rejoins as a member of its own at its next poll."""
        if self._slot is not None:
            self._slot = None
            self._rejoin = True
            for key in list(self._parts):
                self._remove(key)

    def _poll_member(self, timeout):
        if self._commit_events and self._on_commit is not None:
            self._serve_commit_callbacks()
        if self._rejoin:
            self._rejoin = False
            self._join()
        if self._slot is None:
            return self._poll(timeout)
        gw = self._gw
        gw[self._w_inpoll] = 1
        try:
            self._group_tick()
            deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
            while True:
                msg = self._next()
                if msg is not None:
                    return msg
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._wait(left)
                self._group_tick()
        finally:
            gw[self._w_last] = time.monotonic_ns()
            gw[self._w_inpoll] = 0

    def memberid(self):
        """:returns: this member's id in its group (None when not subscribed).
        :rtype: str"""
        self._check()
        if self._slot is None:
            return None
        return "shm-%d-%d-%d" % (os.getpid(), self._slot, self._token & 0xFFFFFFFF)
