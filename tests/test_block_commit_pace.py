"""Auto-commit on a block topic keeps pace with its producers: a block topic holds producers at the
slowest group's committed offset, so one commit an auto.commit.interval.ms would let a producer write one
ring an interval.  A consumer with enable.auto.commit also commits once it has read a quarter of the ring
past its last commit (ext/shmlog.c, log_floor_wanted) - the rule, the three poll paths that apply it (the
C lean path, the Python path of several partitions, a group member's), and where it does not apply (an
interval of 0, manual commits, overwrite topics)."""
import time

import pytest

from broker import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from broker.errors import QueueFullError

from conftest import conf, make_topic
from test_consumer_lean import _Thread, _assigned, _consumer, _member


def _part(c, topic="t", partition=0):
    return c._parts[(topic, partition)]


def _paced(c, topic="t"):
    """The rule alone: auto-commit is off (nothing commits by itself), the part marked as auto-commit would."""
    part = _part(c, topic)
    part.pace = True
    return part


def _read(c, n, timeout=5):
    out = []
    for _ in range(n):
        m = c.poll(timeout)
        assert m is not None and m.error() is None, m
        out.append(m.offset())
    return out


def test_a_quarter_of_the_slots_read_wants_a_commit(ns):
    """64 slots: the position 16 past the committed offset wants a commit, 15 does not - counted from what
    was handed out, not from the fetched batch; a commit there ends the want.  An overwrite topic never
    wants one, nor a part auto-commit does not pace."""
    make_topic(ns, "t", 1, **{"shm.slots": 64, "shm.overflow": "block"})
    make_topic(ns, "o", 1, **{"shm.slots": 64})
    with Producer(conf(ns)) as p:
        for i in range(40):
            p.produce("t", b"%d" % i)
            p.produce("o", b"%d" % i)
    c = _consumer(ns, True)
    o = _consumer(ns, True, topic="o")
    try:
        assert _read(c, 1) == [0]
        part = _part(c)
        assert not part.pace  # (auto-commit is off)
        assert _read(c, 15) == list(range(1, 16))
        assert not part.floor_wanted()
        part.pace = True
        assert part.floor_wanted()
        c.seek(TopicPartition("t", 0, 1))
        assert part.buf == type(part.buf)()
        assert len(_read(c, 1)) == 1  # position 2: a fresh fetch
        assert len(part.buf) == 38  # the whole batch fetched: its records are not consumed yet
        assert not part.floor_wanted()
        assert _read(c, 13) == list(range(2, 15))  # position 15
        assert not part.floor_wanted()
        assert _read(c, 1) == [15]  # position 16: a quarter of 64 slots
        assert part.floor_wanted()
        c.commit(asynchronous=False)
        assert c.committed([TopicPartition("t", 0)])[0].offset == 16
        assert not part.floor_wanted()
        assert _read(c, 16) == list(range(16, 32))
        assert part.floor_wanted()
        assert _read(o, 40) == list(range(40))
        assert not _paced(o, "o").floor_wanted()
    finally:
        c.close()
        o.close()


def test_a_quarter_of_the_bytes_read_wants_a_commit(ns):
    """A ring that fills by bytes first (64 KiB of data, 65536 slots): the commit is wanted from the first
    record whose end is a quarter of the data ring past the committed record's end."""
    make_topic(ns, "t", 1, **{"shm.overflow": "block", "retention.bytes": 65536})
    c = _consumer(ns, True)
    ends = []
    with Producer(conf(ns)) as p:
        log = _part(c).log
        for i in range(40):
            p.produce("t", b"x" * 1000)
            ends.append(log.stats()["bytes_claimed"])
    quarter = (65536 + 3) // 4
    first = next(k for k, end in enumerate(ends) if end >= quarter) + 1  # the position that wants it
    assert 2 < first < 40
    try:
        part = _paced(c)
        assert _read(c, first - 1) == list(range(first - 1))
        assert part.pos - len(part.buf) == first - 1
        assert not part.floor_wanted()
        _read(c, 1)
        assert part.floor_wanted()
    finally:
        c.close()


def _pace(ns, how, n=1280, slots=64, wait="adaptive"):
    """Produce n records (20 rings) to a block topic from a thread while the consumer reads them with an
    auto-commit interval longer than the test: every ring the producer gets is freed by a commit of pace.
    Returns the on_commit reports (partition -> offsets committed, in order) and the offsets committed at
    the end (close() commits the final positions)."""
    parts = 2 if how == "two" else 1
    make_topic(ns, "t", parts, **{"shm.slots": slots, "shm.overflow": "block"})
    reports = []
    kw = {"enable.auto.commit": True, "auto.commit.interval.ms": 600000, "shm.wait": wait,
          "on_commit": lambda err, tps: reports.append((err, [(x.partition, x.offset) for x in tps]))}
    if how == "member":
        c, _ = _member(ns, ["t"], **kw)
        _assigned(c, 1, "the assignment")
    else:
        c = _consumer(ns, True, parts=tuple(range(parts)), **kw)
    try:
        def produce():
            with Producer(conf(ns, **{"shm.block.timeout.ms": 20000})) as p:
                for i in range(n):
                    p.produce("t", b"%d" % i, partition=i % parts)
        got, end = {k: [] for k in range(parts)}, time.monotonic() + 30
        with _Thread(produce) as th:
            while sum(map(len, got.values())) < n:
                assert time.monotonic() < end, "read %s of %d: the producer waits for a commit" % (
                    sum(map(len, got.values())), n)
                m = c.poll(10)
                assert m is not None and m.error() is None, m
                got[m.partition()].append(int(m.value()))
            th.join(10)
            assert th.error is None, th.error
        for k in range(parts):
            assert got[k] == list(range(k, n, parts))
        c.poll(0)  # hands out the last reports
    finally:
        c.close()
    assert all(err is None for err, _ in reports), reports
    by_part = {}
    for _, tps in reports:
        for k, off in tps:
            by_part.setdefault(k, []).append(off)
    with Consumer(conf(ns, **{"group.id": "g", "enable.auto.commit": False})) as other:
        final = [x.offset for x in other.committed([TopicPartition("t", k) for k in range(parts)])]
    return by_part, final


@pytest.mark.parametrize("how,wait", [("solo", "adaptive"), ("solo", "spin"), ("solo", "sleep"),
                                      ("two", "adaptive"), ("member", "adaptive")])
def test_auto_commit_keeps_pace_with_a_block_producer(ns, how, wait):
    """20 rings through a 64-slot block topic in 30 s with a 10-minute auto-commit interval: only commits
    made as the consumer reads let the producer on (before, it waited out shm.block.timeout.ms).  Each
    partition's commits rise, at least one a ring and not one a poll: one each quarter ring read, and one
    when the consumer has read all there is while the producer waits (a producer thread of this process
    waits for the GIL as well); close() commits the end."""
    n, parts = 1280, 2 if how == "two" else 1
    per = n // parts
    by_part, final = _pace(ns, how, n=n, wait=wait)
    assert final == [per] * parts
    assert sorted(by_part) == list(range(parts))
    for k, offs in by_part.items():
        assert per // 64 - 1 <= len(offs) <= per // 16 + per // 64, (len(offs), offs[:20])
        assert offs == sorted(set(offs)), offs


@pytest.mark.parametrize("auto", [{"enable.auto.commit": True, "auto.commit.interval.ms": 0},
                                  {"enable.auto.commit": True, "enable.auto.offset.store": False},
                                  {"enable.auto.commit": False}])
def test_no_paced_commit_without_periodic_auto_commit(ns, auto):
    """auto.commit.interval.ms=0 (no periodic commit, as librdkafka), offsets the user stores, or manual
    commits: the consumer commits nothing of itself, however much of a block ring it read - the producer
    stays held (QueueFullError once shm.block.timeout.ms passes) until the user commits."""
    make_topic(ns, "t", 1, **{"shm.slots": 64, "shm.overflow": "block"})
    c = _consumer(ns, True, **auto)
    p = Producer(conf(ns, **{"shm.block.timeout.ms": 200}))
    try:
        for i in range(64):
            p.produce("t", b"%d" % i)
        assert _read(c, 64) == list(range(64))
        assert not _part(c).pace and not _part(c).floor_wanted()
        assert c.poll(0.05) is None
        with pytest.raises(QueueFullError):
            p.produce("t", b"held")
        assert c.committed([TopicPartition("t", 0)])[0].offset in (None, -1001)
        c.commit(offsets=[TopicPartition("t", 0, 64)], asynchronous=False)
        p.produce("t", b"freed")
        assert c.poll(5).value() == b"freed"
    finally:
        p.close()
        c.close()


def test_a_group_ahead_of_the_floor_commits_once_not_each_poll(ns):
    """Another group holds the floor lower (it committed 0 and reads no more): our commits free nothing for
    the producer, so after its first one (made before it knew) our consumer makes no paced commit - not one
    a poll - and the producer stays held by the slow group."""
    make_topic(ns, "t", 1, **{"shm.slots": 64, "shm.overflow": "block"})
    with Consumer(conf(ns, **{"group.id": "slow", "enable.auto.commit": False})) as slow:
        slow.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
        slow.commit(offsets=[TopicPartition("t", 0, 0)], asynchronous=False)
    reports = []
    c = _consumer(ns, True, **{"group.id": "fast", "enable.auto.commit": True, "auto.commit.interval.ms": 600000,
                               "on_commit": lambda err, tps: reports.append([(x.partition, x.offset) for x in tps])})
    p = Producer(conf(ns, **{"shm.block.timeout.ms": 200}))
    try:
        for i in range(64):
            p.produce("t", b"%d" % i)
        assert _read(c, 64) == list(range(64))
        assert c.poll(0.05) is None
        assert reports == [[(0, 16)]]
        with pytest.raises(QueueFullError):
            p.produce("t", b"held by the slow group")
    finally:
        p.close()
        c.close()


def _count_python_commits(c):
    """Count the commits the Python path makes (membership._commit_list), the C path's left uncounted."""
    calls = [0]
    py = c._commit_list

    def counted(offsets, asynchronous):
        calls[0] += 1
        return py(offsets, asynchronous)
    c._commit_list = counted
    return calls


def _ring_read_by_auto_commit(ns):
    """63 records in a 64-slot block topic, and an assign()ed consumer of them with a 10-minute auto-commit
    interval (paced commits only), its Python commits counted."""
    make_topic(ns, "t", 1, **{"shm.slots": 64, "shm.overflow": "block"})
    with Producer(conf(ns)) as p:
        for i in range(63):
            p.produce("t", b"%d" % i)
    c = _consumer(ns, True, **{"enable.auto.commit": True, "auto.commit.interval.ms": 600000})
    return c, _count_python_commits(c)


@pytest.mark.parametrize("how", ["solo", "member"])
def test_paced_commits_are_made_by_the_c_path(ns, how):
    """Without an on_commit callback, poll()'s C path makes the paced commits itself once the first (a
    Python one) armed it (Part.set_commit): 20 rings pass through a 64-slot block topic with one or two
    Python commits.  Each commit seen in the group's entry stores what a Python commit would - never past
    the record being handed out (its offset: that record is not consumed yet) - and rises, one each quarter
    ring or so; the floor follows, so the producer never waits out its timeout."""
    n = 1280
    make_topic(ns, "t", 1, **{"shm.slots": 64, "shm.overflow": "block"})
    kw = {"enable.auto.commit": True, "auto.commit.interval.ms": 600000}
    if how == "member":
        c, _ = _member(ns, ["t"], **kw)
        _assigned(c, 1, "the assignment")
    else:
        c = _consumer(ns, True, **kw)
    calls = _count_python_commits(c)
    gs = c._groups()
    topic_id = c._ns.topic("t").topic_id
    seen, got = [], []
    try:
        def produce():
            with Producer(conf(ns, **{"shm.block.timeout.ms": 20000})) as p:
                for i in range(n):
                    p.produce("t", b"%d" % i)
        end = time.monotonic() + 30
        with _Thread(produce) as th:
            while len(got) < n:
                assert time.monotonic() < end, "read %d of %d: the producer waits for a commit" % (len(got), n)
                m = c.poll(10)
                assert m is not None and m.error() is None, m
                got.append(m.offset())
                at = gs.committed(c._gidx, topic_id, 0)
                if at is not None and (not seen or seen[-1] != at):
                    assert at <= m.offset(), (at, m.offset())
                    seen.append(at)
            th.join(10)
            assert th.error is None, th.error
        assert got == list(range(n))
        assert _part(c).commit_armed
        assert 1 <= calls[0] <= 2, calls[0]
        assert n // 64 - 1 <= len(seen) <= n // 16 + n // 64, (len(seen), seen[:20])
        assert seen == sorted(seen), seen
        assert seen[-1] >= n - 64  # the last ring's commits came as the others did
        assert _part(c).log.stats()["floor"] == seen[-1] or _part(c).log.stats()["floor"] >= n - 64
    finally:
        c.close()
    with Consumer(conf(ns, **{"group.id": "g", "enable.auto.commit": False})) as other:
        assert other.committed([TopicPartition("t", 0)])[0].offset == n  # close() commits the end


def test_a_c_commit_stores_the_batch_position_exactly(ns):
    """A fetched batch being handed out: the C commit stores its next record's offset (what
    membership._stored says), at each quarter ring read - 16, 32, 48 - with no Python commit after the
    one that armed it, and none a poll."""
    c, calls = _ring_read_by_auto_commit(ns)
    tp = [TopicPartition("t", 0)]
    try:
        assert _read(c, 16) == list(range(16))
        assert c.committed(tp)[0].offset in (None, -1001) and not _part(c).commit_armed
        assert _read(c, 1) == [16]  # the paced commit of 16 (Python: it arms the C path)
        assert c.committed(tp)[0].offset == 16 and _part(c).commit_armed and calls[0] == 1
        assert _read(c, 16) == list(range(17, 33))  # the poll handing out 32 commits 32, in C
        assert c.committed(tp)[0].offset == 32 and calls[0] == 1
        assert _read(c, 15) == list(range(33, 48))
        assert c.committed(tp)[0].offset == 32
        assert _read(c, 1) == [48]
        assert c.committed(tp)[0].offset == 48 and calls[0] == 1
        assert _part(c).log.stats()["floor"] == 48
    finally:
        c.close()


def test_a_c_commit_the_entry_refuses_goes_to_python(ns):
    """The group's entry owned by someone else (here: a stale owner word, as a member that is gone leaves):
    the C commit is refused and the Python path makes it - it frees what a gone owner held and commits."""
    from broker import groups as G
    c, calls = _ring_read_by_auto_commit(ns)
    tp = [TopicPartition("t", 0)]
    try:
        assert _read(c, 17) == list(range(17))
        assert calls[0] == 1 and _part(c).commit_armed
        gs, topic_id = c._groups(), c._ns.topic("t").topic_id
        off = gs.commit_entry(c._gidx, topic_id, 0, create=False)
        key = gs.commit_key(c._gidx, topic_id, 0)
        assert gs.cas(off + G.C_OWNER, key, 12345)  # a token no live member has
        assert _read(c, 16) == list(range(17, 33))
        assert calls[0] == 2  # refused in C, made by Python, which arms the C path again
        assert c.committed(tp)[0].offset == 32 and _part(c).commit_armed
        assert gs.load(off + G.C_OWNER) == key
        assert _read(c, 16) == list(range(33, 49))
        assert c.committed(tp)[0].offset == 48 and calls[0] == 2  # in C again
    finally:
        c.close()


def test_a_c_commit_one_record_at_a_time_stores_the_position(ns):
    """Records read as they come, one a poll (the lean path's own read, no fetched batch): the C commit
    stores the position - the next offset to read - at each quarter ring."""
    make_topic(ns, "t", 1, **{"shm.slots": 64, "shm.overflow": "block"})
    c = _consumer(ns, True, **{"enable.auto.commit": True, "auto.commit.interval.ms": 600000})
    calls = _count_python_commits(c)
    tp = [TopicPartition("t", 0)]
    try:
        with Producer(conf(ns)) as p:
            for i in range(49):
                p.produce("t", b"%d" % i)
                p.flush()
                assert _read(c, 1) == [i]
                assert not _part(c).buf
                got = c.committed(tp)[0].offset  # committed when record i was read: its position, i
                assert got == i // 16 * 16 if i >= 16 else got in (None, -1001), (i, got)
        assert calls[0] == 1 and _part(c).commit_armed  # 16 in Python (it armed the C path), 32 and 48 in C
    finally:
        c.close()


def test_a_c_commit_after_destroy_goes_to_python_which_raises(ns):
    """`shmbroker destroy` while a fetched batch is handed out: the next paced commit is not made in C into
    the gone namespace; the Python path raises NamespaceError, as a commit there does."""
    from broker.errors import NamespaceError
    from broker.namespace import destroy
    c, calls = _ring_read_by_auto_commit(ns)
    try:
        assert _read(c, 32) == list(range(32))
        gs, topic_id = c._groups(), c._ns.topic("t").topic_id
        assert gs.committed(c._gidx, topic_id, 0) == 16 and calls[0] == 1 and _part(c).commit_armed
        destroy(ns)
        with pytest.raises(NamespaceError, match="was destroyed"):
            c.poll(1)  # offset 32 is fetched: its position wants a commit, a quarter past 16
        assert gs.committed(c._gidx, topic_id, 0) == 16
    finally:
        c.close()


def test_a_c_commit_to_a_moved_entry_goes_to_python_which_arms_it_again(ns):
    """The group's entry is not where the C path was told (a group deleted and made again puts it
    elsewhere): the C commit finds another key there, leaves the commit to Python and disarms; Python's
    commit arms it with the entry it found, and the next quarter is committed in C again."""
    from broker.namespace import CENTRY
    c, calls = _ring_read_by_auto_commit(ns)
    try:
        assert _read(c, 17) == list(range(17))
        gs, topic_id = c._groups(), c._ns.topic("t").topic_id
        ctx = list(gs.commit_ctx(c._gidx, topic_id, 0, 0))
        ctx[2] += CENTRY  # the next entry of the table: free, another key
        _part(c).set_commit(tuple(ctx))
        assert _read(c, 16) == list(range(17, 33))
        assert calls[0] == 2 and _part(c).commit_armed
        assert _read(c, 16) == list(range(33, 49))
        assert calls[0] == 2 and c.committed([TopicPartition("t", 0)])[0].offset == 48
    finally:
        c.close()


def test_a_group_change_disarms_the_c_commit(ns):
    """_lean_sync (a member slot taken or given up, a rejoin, a new assignment applied) disarms the C
    commits, whose owner word may have changed: the next Python commit arms them again."""
    c, calls = _ring_read_by_auto_commit(ns)
    try:
        assert _read(c, 17) == list(range(17))
        assert _part(c).commit_armed
        c._lean_sync()
        assert not _part(c).commit_armed
        assert _read(c, 16) == list(range(17, 33))
        assert calls[0] == 2 and _part(c).commit_armed
        assert c.committed([TopicPartition("t", 0)])[0].offset == 32
    finally:
        c.close()


def test_set_commit_checks_the_entry_lies_in_the_mapping(ns):
    make_topic(ns, "t", 1, **{"shm.slots": 64, "shm.overflow": "block"})
    c = _consumer(ns, True, **{"enable.auto.commit": True, "auto.commit.interval.ms": 600000})
    try:
        part = _part(c)
        ctx = list(c._groups().commit_ctx(c._gidx, c._ns.topic("t").topic_id, 0, 0) or
                   (c._ns_map[0], 1 << 20, 4096, 1 << 52, 1 << 52, 8, 16, 8192, 64, 64, 24, 1, 4))
        size, entry = ctx[1], ctx[2]
        for k, bad in ((1, entry), (2, size - 16), (2, entry + 4), (5, size), (6, 8), (0, 0)):
            wrong = list(ctx)
            wrong[k] = bad
            with pytest.raises(ValueError, match="outside the mapping"):
                part.set_commit(tuple(wrong))
        with pytest.raises(TypeError):
            part.set_commit([1, 2])
        assert not part.commit_armed
        part.set_commit(tuple(ctx))
        assert part.commit_armed
        part.set_commit(None)
        assert not part.commit_armed
    finally:
        c.close()


@pytest.mark.parametrize("how,wait", [("solo", "adaptive"), ("solo", "sleep"), ("two", "sleep"),
                                      ("member", "adaptive")])
def test_a_consumer_asleep_leaves_the_whole_ring_to_a_large_claim(ns, how, wait):
    """The consumer has read 10 records of a 64-slot block ring (under a quarter: no paced commit yet) and
    sleeps in poll(); a producer then claims 60 at once (send_batch), more than the rest of the ring past
    the floor.  The consumer committed what it read before it slept, so the claim fits at once - before,
    it waited for the auto-commit interval (10 minutes here: QueueFullError after shm.block.timeout.ms; a
    group member's waits are cut to heartbeat chunks of at most 100 ms, whose ends saw the waiting
    producer)."""
    import numpy as np
    from conftest import while_blocked
    parts = (0, 1) if how == "two" else (0,)
    make_topic(ns, "t", len(parts), **{"shm.slots": 64, "shm.overflow": "block"})
    kw = {"enable.auto.commit": True, "auto.commit.interval.ms": 600000, "shm.wait": wait}
    if how == "member":
        c, _ = _member(ns, ["t"], **kw)
        _assigned(c, 1, "the assignment")
    else:
        c = _consumer(ns, True, parts=parts, **kw)
    p = Producer(conf(ns, **{"shm.block.timeout.ms": 5000}))
    try:
        for i in range(10):
            p.produce("t", b"%d" % i, partition=0)
        assert [int(m.value()) for m in (c.poll(5) for _ in range(10))] == list(range(10))
        log = _part(c).log

        def claim():
            p.send_batch("t", np.full((60, 8), 7, dtype=np.uint8), 0)
        m = while_blocked(lambda: c.poll(20), lambda: log.stats()["waiters"] > 0, "the consumer asleep in poll",
                          claim)
        assert m is not None and m.error() is None and m.offset() == 10
        assert c.committed([TopicPartition("t", 0)])[0].offset == 10
    finally:
        p.close()
        c.close()
