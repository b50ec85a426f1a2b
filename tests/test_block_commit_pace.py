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
