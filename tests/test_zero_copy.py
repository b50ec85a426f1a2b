"""shm.zero.copy: a consumer's values from a block topic are read-only memoryviews - of the record where it
lies in the ring for values of 4 KiB and more that come first in a fetch (not copied, and checksummed there
only with check.crcs: a consumer that keeps up reads each as it comes), of a copy for shorter ones, for long
ones fetched behind others and for a value that wraps the ring's end - valid until the next poll()/consume()
(or a commit past them).
Overwrite topics keep bytes: their producers may reuse a record's bytes at any time."""
import mmap

import pytest

from broker import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from broker.errors import ConfigError, QueueFullError

from conftest import conf, make_topic

LONG = 4096  # values this long and more are read in place (ext/fastlog.c's DIRECT_MIN)


def _consumer(ns, topic="t", **kw):
    c = Consumer(conf(ns, **{"group.id": "g", "enable.auto.commit": False, "shm.zero.copy": True, **kw}))
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    return c


def _records():
    return [(b"a" * 70000, b"k1", None), (b"short", None, [("h", b"v")]), (None, b"tomb", None),
            (bytes(range(256)) * 16, None, None), (b"", b"empty", None)]


@pytest.mark.parametrize("lean", [True, False])
def test_block_values_are_read_only_views_of_the_ring(ns, lean):
    """Values of 4 KiB and more read as they come are views of the mapping (their .obj the ring's mmap),
    shorter ones views of a copy, a null value None; keys, headers and offsets as without the option;
    through the C poll path and the Python one."""
    make_topic(ns, "t", 1, **{"shm.overflow": "block"})
    c = _consumer(ns)
    if not lean:
        c.poll = c._poll_py
    p = Producer(conf(ns))
    try:
        for i, (v, k, h) in enumerate(_records()):
            p.produce("t", v, key=k, headers=h)  # read as it comes: first in its fetch
            m = c.poll(5)
            assert m is not None and m.error() is None, m
            assert (m.offset(), m.key(), m.headers()) == (i, k, h)
            got = m.value()
            if v is None:
                assert got is None
                continue
            assert isinstance(got, memoryview) and got.readonly
            assert bytes(got) == v
            assert isinstance(got.obj, mmap.mmap if len(v) >= LONG else bytes), (len(v), type(got.obj))
            with pytest.raises(TypeError):
                got[0] = 1
        for v, k, h in _records():  # fetched together: a long value behind others comes copied
            p.produce("t", v, key=k, headers=h)
        got = [c.poll(5).value() for _ in _records()]
        assert [None if g is None else bytes(g) for g in got] == [v for v, _, _ in _records()]
        assert [type(g.obj) for g in got if g is not None] == [mmap.mmap, bytes, bytes, bytes]
    finally:
        p.close()
        c.close()


def test_overwrite_topics_and_the_default_keep_bytes(ns):
    make_topic(ns, "o", 1)
    make_topic(ns, "t", 1, **{"shm.overflow": "block"})
    with Producer(conf(ns)) as p:
        p.produce("o", b"b" * 70000)
        p.produce("t", b"c" * 70000)
    for c in (_consumer(ns, "o"), _consumer(ns, "t", **{"shm.zero.copy": False})):
        try:
            v = c.poll(5).value()
            assert type(v) is bytes and len(v) == 70000
        finally:
            c.close()


def test_a_view_outlives_the_consumer(ns):
    """The views handed out keep the ring mapped: a consumer closed (its logs released) does not pull the
    memory from under a value still held."""
    make_topic(ns, "t", 1, **{"shm.overflow": "block"})
    want = bytes(range(256)) * 300
    with Producer(conf(ns)) as p:
        p.produce("t", want)
    c = _consumer(ns)
    v = c.poll(5).value()
    assert isinstance(v.obj, mmap.mmap)
    c.close()
    assert bytes(v) == want
    v.release()


def test_a_value_that_wraps_the_ring_comes_as_a_view_of_a_copy(ns):
    """A 64 KiB ring: the fourth 20000-byte record wraps its end - it comes whole, as a view of a copy."""
    make_topic(ns, "t", 1, **{"shm.overflow": "block", "retention.bytes": 65536})
    vals = [bytes([i]) * 20000 for i in range(6)]
    c = _consumer(ns)
    try:
        with Producer(conf(ns, **{"shm.block.timeout.ms": 5000})) as p:
            for v in vals[:3]:
                p.produce("t", v)
            got = []
            for _ in range(3):
                m = c.poll(5)
                got.append((bytes(m.value()), type(m.value().obj)))
            c.commit(m, asynchronous=False)  # frees the ring for the next three
            for v in vals[3:]:
                p.produce("t", v)
        for _ in range(3):
            m = c.poll(5)
            got.append((bytes(m.value()), type(m.value().obj)))
        assert [g[0] for g in got] == vals
        kinds = [g[1] for g in got]
        assert kinds[:3] == [mmap.mmap] * 3
        assert bytes in kinds[3:] and mmap.mmap in kinds[3:], kinds  # the wrapping one copied, the others not
    finally:
        c.close()


def test_consume_hands_out_views_valid_until_the_next_call(ns):
    """consume(n) of a block topic whose consumer auto-commits every quarter ring: the n views it returns
    hold their records until the next call - no commit inside the call frees them for the producer."""
    import threading
    make_topic(ns, "t", 1, **{"shm.overflow": "block", "retention.bytes": 65536})  # 12 records: a quarter is 3
    c = _consumer(ns, **{"enable.auto.commit": True, "auto.commit.interval.ms": 600000})
    total, errors = 160, []

    def produce():
        try:
            with Producer(conf(ns, **{"shm.block.timeout.ms": 20000})) as p:
                for i in range(total):
                    p.produce("t", bytes([i % 251]) * 5000)
        except BaseException as exc:  # reported below
            errors.append(exc)
    t = threading.Thread(target=produce, daemon=True)
    t.start()
    seen = 0
    try:
        while seen < total:
            ms = c.consume(8, 10)
            assert ms, "nothing within 10 s after %d" % seen
            vals = [m.value() for m in ms]
            for m, v in zip(ms, vals):  # read after the whole batch was handed out
                assert m.error() is None and m.offset() == seen
                assert bytes(v) == bytes([seen % 251]) * 5000, seen
                seen += 1
    finally:
        t.join(30)
        c.close()
    assert not t.is_alive() and errors == []


def test_a_bad_value_or_no_group_is_refused(ns):
    with pytest.raises(ConfigError) as e:
        Consumer(conf(ns, **{"group.id": "g", "shm.zero.copy": "maybe"}))
    assert "shm.zero.copy" in str(e.value)
    with pytest.raises(ConfigError) as e:
        Consumer(conf(ns, **{"shm.zero.copy": True}))
    assert "group.id" in str(e.value)


def test_a_value_read_after_a_wait_is_a_view_too(ns):
    """The path that reads after poll() slept (a Record, in Python) hands out a view as the C paths do."""
    make_topic(ns, "t", 1, **{"shm.overflow": "block"})
    c = _consumer(ns, **{"shm.wait": "sleep"})
    try:
        assert c.poll(0.01) is None
        with Producer(conf(ns)) as p:
            p.produce("t", b"z" * 9000)
        part = c._parts[("t", 0)]
        m = c._poll_rest(part, None, 0, 5)  # what poll() runs once its wait ends
        assert isinstance(m.value(), memoryview) and bytes(m.value()) == b"z" * 9000 and part.pos == 1
    finally:
        c.close()


def test_the_group_holds_what_it_views_before_its_first_commit(ns):
    """A zero-copy consumer's group holds the ring from its assignment, before it ever commits: another
    group's commits past a record it holds a view of do not let producers overwrite it."""
    make_topic(ns, "t", 1, **{"shm.overflow": "block", "retention.bytes": 65536})
    p = Producer(conf(ns, **{"shm.block.timeout.ms": 300}))
    c = _consumer(ns)
    try:
        for i in range(12):
            p.produce("t", bytes([i]) * 5000)
        held = c.poll(5).value()
        assert isinstance(held.obj, mmap.mmap) and bytes(held) == b"\0" * 5000
        with Consumer(conf(ns, **{"group.id": "other", "enable.auto.commit": False})) as other:
            other.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
            for _ in range(12):
                m = other.poll(5)
            other.commit(m, asynchronous=False)
        with pytest.raises(QueueFullError):
            for i in range(12, 24):
                p.produce("t", bytes([i]) * 5000)
        assert bytes(held) == b"\0" * 5000
    finally:
        p.close()
        c.close()


@pytest.mark.parametrize("check", [False, True])
def test_check_crcs_sums_a_view_where_it_lies(ns, check):
    """check.crcs (off by default, as librdkafka's): with it, a value read in place is checksummed there and a
    flipped byte skips the record (the log counts it); without it, the value is handed out as it lies - its
    bytes are the ring's, live, so a sum when it is handed out would say nothing of what is read later."""
    make_topic(ns, "t", 1, **{"shm.overflow": "block"})
    c = _consumer(ns, **{"check.crcs": check})
    p = Producer(conf(ns))
    try:
        for i, v in enumerate((b"x" * 5000, b"y" * 5000, b"z" * 5000)):
            p.produce("t", v)
            p.flush(5)
            if i == 1:
                mm = c._parts[("t", 0)].log._seg.mm
                at = mm.find(b"y" * 5000)
                assert at > 0 and mm.find(b"y" * 5000, at + 1) == -1
                mm[at + 4999] ^= 0x01  # 'y' becomes 'x'
            if i == 1 and check:
                continue  # the corrupt record is passed over: the next poll returns the third
            m = c.poll(5)
            assert m is not None and m.error() is None, m
            got = m.value()
            assert isinstance(got, memoryview) and isinstance(got.obj, mmap.mmap)
            assert (m.offset(), bytes(got)) == (i, v[:-1] + (b"x" if i == 1 else v[-1:]))
        assert c.poll(0.05) is None
        stats = c._parts[("t", 0)].log.stats()
        assert stats["corrupt_skips"] == (1 if check else 0)
        assert c.position([TopicPartition("t", 0)])[0].offset == 3
    finally:
        p.close()
        c.close()
