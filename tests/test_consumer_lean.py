"""Consumer.poll's lean path in C (ext/fastpoll.c): installed on a plain consumer only, it hands out exactly
what the Python method hands out - in order, across batches and single records, pause/resume, seek, events,
end-of-partition events, laps and corrupt records (each counted once) - and steps aside for everything
else; close() disables it."""
import gc
import json
import struct
import time
import weakref

import pytest

from conftest import conf, deadline_wait, make_topic, with_thread

from broker.kafka import OFFSET_BEGINNING, Consumer, DeserializingConsumer, Producer, TopicPartition
from broker import groups as G
from broker.namespace import Namespace
from shm._native import _fastlog
from shm.errors import ClosedError


def _consumer(ns, lean, topic="t", parts=(0,), **kw):
    c = Consumer(conf(ns, **{"group.id": "g", "enable.auto.commit": False, **kw}))
    if not lean:
        c.poll = c._poll_py  # the Python path alone
    assert isinstance(c.poll, _fastlog.ConsumerPoll) == lean
    c.assign([TopicPartition(topic, k, OFFSET_BEGINNING) for k in parts])
    return c


def _poll_into(c, got, timeout=0.01):
    """One poll(); its message, if any, appended to *got*.  None (so a wait goes on)."""
    m = c.poll(timeout)
    if m is not None:
        got.append(m)


def _script(c, p, t):
    """A run of polls mixed with produces, pauses, seeks: what it saw, as comparable tuples."""
    seen = []

    def take(n, timeout=0.5):
        for _ in range(n):
            m = c.poll(timeout)
            seen.append(None if m is None else (m.topic(), m.partition(), m.offset(), m.value(),
                                                 m.error().code() if m.error() else None))
    for i in range(300):  # a batch: more than one fetch
        p.produce(t, b"a%d" % i)
    take(150)
    take(160, 0.05)  # the rest, then nothing
    for i in range(5):  # one at a time, caught up
        p.produce(t, b"b%d" % i)
        take(1)
    tp = TopicPartition(t, 0)
    c.pause([tp])
    p.produce(t, b"while paused")
    take(1, 0.05)
    c.resume([tp])
    take(1)
    c.seek(TopicPartition(t, 0, 3))
    take(3)
    c.seek(TopicPartition(t, 0, OFFSET_BEGINNING))
    take(2)
    return seen


def test_the_lean_path_hands_out_what_the_method_does(ns):
    runs = []
    for lean, t in ((True, "lean"), (False, "method")):
        make_topic(ns, t, 1)
        with Producer(conf(ns)) as p, _consumer(ns, lean, topic=t) as c:
            runs.append([x if x is None else x[1:] for x in _script(c, p, t)])  # (the topic's name aside)
    lean_run, py_run = runs
    assert lean_run == py_run
    assert lean_run[:150] == [(0, i, b"a%d" % i, None) for i in range(150)]
    assert lean_run[150:300] == [(0, i, b"a%d" % i, None) for i in range(150, 300)]
    assert lean_run[300:310] == [None] * 10
    assert lean_run[310:315] == [(0, 300 + i, b"b%d" % i, None) for i in range(5)]
    assert lean_run[315] is None  # paused: nothing
    assert lean_run[316] == (0, 305, b"while paused", None)
    assert lean_run[317:320] == [(0, o, b"a%d" % o, None) for o in (3, 4, 5)]
    assert lean_run[320:] == [(0, 0, b"a0", None), (0, 1, b"a1", None)]


def test_events_and_end_of_partition_come_as_from_the_method(ns):
    make_topic(ns, "t", 1)
    with Producer(conf(ns)) as p:
        for i in range(3):
            p.produce("t", b"%d" % i)
    got = []
    for lean in (True, False):
        with _consumer(ns, lean, **{"enable.partition.eof": True}) as c:
            c.incremental_assign([TopicPartition("absent", 0, OFFSET_BEGINNING)])  # an event: unknown topic
            seq = []
            for _ in range(7):
                m = c.poll(0.2)
                seq.append(None if m is None else (m.topic(), m.offset(), m.value(),
                                                    m.error().code() if m.error() else None))
            got.append(seq)
    assert got[0] == got[1]
    codes = [x[3] for x in got[0] if x is not None and x[3] is not None]
    assert len(codes) == 2  # the unknown topic, then end of partition once the three were read
    assert [x[2] for x in got[0] if x is not None and x[3] is None] == [b"0", b"1", b"2"]


def test_a_lap_and_a_corrupt_record_are_counted_once(ns):
    make_topic(ns, "t", 1, **{"shm.slots": 16, "retention.bytes": 1 << 16})
    with Producer(conf(ns)) as p:
        for i in range(3):
            p.produce("t", b"%d" % i)
    with Namespace(ns) as n:
        log = n.open_partition(n.topic("t"), 0)
        mm = log._seg.mm
        data_off, = struct.unpack_from("<Q", mm, 48)
        pos, = struct.unpack_from("<Q", mm, 4096 + 1 * 64 + 8)
        mm[data_off + pos % log.data_capacity + 16] ^= 0xFF  # offset 1's value
        with _consumer(ns, True, **{"auto.offset.reset": "earliest"}) as c:
            assert [c.poll(1).value(), c.poll(1).value(), c.poll(0.05)] == [b"0", b"2", None]
            assert log.stats()["corrupt_skips"] == 1
            with Producer(conf(ns)) as p:
                for i in range(40):  # laps the consumer (16 slots)
                    p.produce("t", b"x%d" % i)
            m = c.poll(1)
            low = log.watermarks()[0]
            assert (m.offset(), m.value()) == (low, b"x%d" % (low - 3))
            assert log.stats()["laps_seen"] == 1
            assert c.position([TopicPartition("t", 0)])[0].offset == low + 1
        log.close()


def test_subclasses_and_statistics_keep_their_poll_over_it_and_close_disables_it(ns):
    make_topic(ns, "t", 1)
    with Producer(conf(ns)) as p:
        p.produce("t", b"v")
    d = DeserializingConsumer(conf(ns, **{"group.id": "g", "value.deserializer": lambda b, ctx: b.decode()}))
    assert not isinstance(d.poll, _fastlog.ConsumerPoll)  # its own poll() runs the deserializers ...
    d.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
    assert d.poll(1).value() == "v"  # ... over Consumer.poll, the C path
    d.close()
    docs = []
    s = Consumer(conf(ns, **{"group.id": "g", "statistics.interval.ms": 10, "stats_cb": docs.append}))
    assert not isinstance(s.poll, _fastlog.ConsumerPoll)  # statistics wrap poll() ...
    s.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
    assert s.poll(1).value() == b"v"  # ... and count what it hands out
    assert s.poll(0.05) is None and docs and json.loads(docs[-1])["rxmsgs"] == 1
    s.close()
    c = _consumer(ns, True)
    poll = c.poll
    with Producer(conf(ns)) as p:
        p.produce("t", b"v")
    assert poll(1).value() == b"v"
    ref = weakref.ref(c)
    c.close()
    with pytest.raises(ClosedError):
        poll(0)
    del c, poll
    gc.collect()
    assert ref() is None  # the consumer and its C poll (a cycle through its dict) are collected


def test_part_keeps_its_attributes(ns):
    make_topic(ns, "t", 1)
    with _consumer(ns, True) as c:
        part = c._parts[("t", 0)]
        assert (part.topic, part.partition, part.pos, part.start, part.retention_ms) == ("t", 0, 0, 0, -1)
        assert (part.paused, part.eof_sent, part.stopped) == (False, False, False)
        part.pos = 7
        assert part.pos == 7
        with pytest.raises(TypeError):
            part.paused = 1  # a bool, as the consumer sets it
        with pytest.raises(AttributeError):
            part.other = 1
        with pytest.raises(AttributeError):
            part.tp = None
        part.pos = 0


def test_spin_mode_spins_in_c_for_the_whole_timeout_letting_threads_run(ns):
    """shm.wait=spin: the C path spins in 1 ms chunks until the timeout, releasing the GIL between chunks (an
    appending thread of this process gets in) - and returns None when the timeout passes."""
    import time
    make_topic(ns, "t", 1)
    with _consumer(ns, True, **{"shm.wait": "spin"}) as c, Producer(conf(ns)) as p:
        t0 = time.monotonic()
        assert c.poll(0.3) is None
        took = time.monotonic() - t0
        assert 0.3 <= took < 5, took
        m = with_thread(lambda: p.produce("t", b"from a thread"), lambda: c.poll(30))
        assert m is not None and m.value() == b"from a thread"


@pytest.mark.parametrize("lean", [True, False])
def test_after_a_lap_poll_waits_out_its_timeout_and_a_nan_timeout_is_refused(ns, lean):
    """Lapped (auto.offset.reset=latest: it jumps to the end), poll() goes on waiting for the rest of its
    timeout rather than returning None at once; a nan timeout raises, it never spins for ever."""
    import time
    make_topic(ns, "t", 1, **{"shm.slots": 16, "retention.bytes": 1 << 16})
    with _consumer(ns, lean, **{"auto.offset.reset": "latest", "shm.wait": "spin"}) as c:
        with Producer(conf(ns)) as p:
            for i in range(40):
                p.produce("t", b"%d" % i)
        t0 = time.monotonic()
        assert c.poll(0.3) is None
        took = time.monotonic() - t0
        assert 0.25 <= took < 5, took
        assert c.position([TopicPartition("t", 0)])[0].offset == 40
        with pytest.raises(ValueError):
            c.poll(float("nan"))


def test_pre_touch_maps_the_partitions_a_client_opens(ns):
    """shm.pre.touch=true: a producer's and a consumer's partitions are mapped whole when opened (no page
    fault on a later append or read); without it (the default) the first touch of each page faults."""
    from test_log_edges import faults_touching_every_page, shm_huge_pages
    huge = shm_huge_pages()
    make_topic(ns, "t", 1, **{"retention.bytes": 1 << 22})
    for touch in (False, True):
        with Producer(conf(ns, **{"shm.pre.touch": touch})) as p, \
                Consumer(conf(ns, **{"group.id": "g", "shm.pre.touch": touch})) as c:
            p.produce("t", b"v%d" % touch, partition=0)
            c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
            m = c.poll(5.0)
            assert m is not None and m.value() == b"v0" and m.error() is None
            for log in (p._topics["t"][1][0], c._parts[("t", 0)].log):
                faults, pages = faults_touching_every_page(log)
                assert pages >= 1024
                # (without: a fault per 16 pages at least - the kernel maps up to 16 around one - and a margin)
                assert (faults <= pages * 0.02) if touch else (huge or faults >= pages // 32), (touch, faults, pages)


# ---- group members (subscribe) --------------------------------------------------------------
def _member(ns, topics, group="g", lean=True, **kw):
    """A subscribed consumer, and a count of the polls its C path handed back to Python (the member's
    path, _poll_member)."""
    c = Consumer(conf(ns, **{"group.id": group, "auto.offset.reset": "earliest", **kw}))
    assert isinstance(c.poll, _fastlog.ConsumerPoll)
    if not lean:
        c.poll = c._poll_py  # the Python path alone
    back = [0]
    py = c._poll_member

    def counted(timeout):
        back[0] += 1
        return py(timeout)
    c._poll_member = counted  # _poll_py looks it up per call
    c.subscribe(topics)
    return c, back


def _assigned(c, n, what):
    deadline_wait(lambda: c.poll(0.01) is None and len(c.assignment()) == n, 20, what)


def _take(c, n, timeout=5):
    out = []
    for _ in range(n):
        m = c.poll(timeout)
        assert m is not None and m.error() is None, m
        out.append((m.offset(), m.value()))
    return out


def test_a_group_member_polls_through_the_lean_path(ns):
    """A subscribed consumer (a Kafka user's default) reads in C once its assignment is applied - fetched
    batches and its one partition's records - handing out what the Python path does, and keeps the
    member's last-poll word there (max.poll.interval.ms counts from each poll)."""
    runs = []
    for lean, t in ((True, "lean"), (False, "method")):
        make_topic(ns, t, 1)
        c, back = _member(ns, [t], lean=lean, **{"enable.auto.commit": False})
        try:
            _assigned(c, 1, "the assignment of topic %s" % t)
            with Producer(conf(ns)) as p:
                for i in range(600):
                    p.produce(t, b"v%d" % i)
            mark = G.now_ns() - 10**9 + 7  # a second ago: no fence for it (max.poll.interval.ms is 300 s)
            c._gw[c._w_last] = mark
            before = back[0]
            runs.append(_take(c, 600))
            if lean:
                assert back[0] == before  # none of the 600 polls went through Python
                assert c._gw[c._w_last] > mark  # the C path wrote the last-poll word
            else:
                assert back[0] >= 600
        finally:
            c.close()
    assert runs[0] == runs[1] == [(i, b"v%d" % i) for i in range(600)]


def test_a_member_in_the_lean_path_is_not_fenced_while_it_polls(ns):
    """max.poll.interval.ms against a member whose polls all run in C: it polls (a record, some work,
    the next) for three intervals and keeps its partition; once it stops polling, it loses it."""
    make_topic(ns, "t", 1)
    c, back = _member(ns, ["t"], **{"enable.auto.commit": False, "max.poll.interval.ms": 500,
                                    "session.timeout.ms": 1000})
    try:
        _assigned(c, 1, "the assignment")
        with Producer(conf(ns)) as p:
            for i in range(20000):
                p.produce("t", b"%d" % i)
        before = back[0]
        end = time.monotonic() + 1.5  # five intervals
        n = 0
        while time.monotonic() < end:
            m = c.poll(5)
            assert m is not None and m.error() is None, m  # a fenced member would get its event here
            assert m.offset() == n
            n += 1
            time.sleep(0.001)  # the application's work between polls
        assert back[0] == before  # every poll ran in C
        assert c._gw[c._w_state] == G.ACTIVE and len(c.assignment()) == 1
        # no poll now: the supervisor's check is live, and fences it
        deadline_wait(lambda: c._gw[c._w_state] == G.FENCED, 20, "the supervisor to fence the idle member")
    finally:
        c.close()


def _stream_committing(c, tp, seconds, total=20000):
    """Poll tp's stream of *total* records from offset 0 for *seconds* (a millisecond of the application's
    work between polls; never an empty poll), then check a commit was made mid-stream; returns the count
    read."""
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        m = c.poll(5)
        assert m is not None and m.error() is None and m.offset() == n, m
        n += 1
        time.sleep(0.001)
    assert n < total  # still in the stream
    done = c.committed([tp])[0].offset
    assert 0 < done <= n, (done, n)
    return n


def test_auto_commit_runs_for_a_member_in_the_lean_path(ns):
    """enable.auto.commit: while the C path hands out a stream of records (no poll comes back empty, so
    none runs the Python path for another reason), it hands a poll back to Python once a commit is due,
    which commits the position; then the C path takes over again until the next."""
    make_topic(ns, "t", 1)
    c, back = _member(ns, ["t"], **{"enable.auto.commit": True, "auto.commit.interval.ms": 50})
    tp = TopicPartition("t", 0)
    try:
        _assigned(c, 1, "the assignment")
        with Producer(conf(ns)) as p:
            for i in range(20000):
                p.produce("t", b"%d" % i)
        first = c._cpoll.next_commit
        assert first > 0
        t0, before = time.monotonic(), back[0]
        n = _stream_committing(c, tp, 0.4)  # eight intervals
        assert c._cpoll.next_commit > first  # renewed: the C path is in use again
        took = time.monotonic() - t0
        assert 0 < back[0] - before <= took / 0.05 + 3, (back[0] - before, took)  # one hand-back a commit
    finally:
        c.close()


def test_a_new_assignment_reaches_a_member_reading_in_the_lean_path(ns):
    """The supervisor hands a member a new assignment (a topic it subscribed to appears) while the C path
    reads its one partition's stream: the member sees the new epoch at its next poll and takes the new
    partition on without draining the stream first."""
    make_topic(ns, "t", 1)
    c, back = _member(ns, ["t", "u"], **{"enable.auto.commit": False})
    try:
        _assigned(c, 1, "t[0] alone")
        with Producer(conf(ns)) as p:
            for i in range(20000):
                p.produce("t", b"%d" % i)
            assert [o for o, _ in _take(c, 10)] == list(range(10))
            make_topic(ns, "u", 1)
            p.produce("u", b"u0")
        n, got_u, end = 10, [], time.monotonic() + 20
        while not got_u:
            assert time.monotonic() < end, "the member never read u[0] (%d records of t read)" % n
            m = c.poll(5)
            assert m is not None and m.error() is None, m
            if m.topic() == "u":
                got_u.append(m.value())
            else:
                assert m.offset() == n
                n += 1
            time.sleep(0.0005)  # the application's work between polls
        assert got_u == [b"u0"] and n < 20000  # taken on mid-stream
        assert sorted((x.topic, x.partition) for x in c.assignment()) == [("t", 0), ("u", 0)]
    finally:
        c.close()


def test_a_rebalance_reaches_a_member_reading_in_the_lean_path(ns):
    """A second member joins while the first hands out fetched batches in C: the first sees the new
    epoch at its next poll, revokes, and both end with one partition; nothing is read twice."""
    make_topic(ns, "t", 2)
    revoked = []
    a = Consumer(conf(ns, **{"group.id": "g", "auto.offset.reset": "earliest", "enable.auto.commit": True}))
    a.subscribe(["t"], on_revoke=lambda c, parts: revoked.extend(parts))
    b = None
    try:
        _assigned(a, 2, "both partitions to the first member")
        with Producer(conf(ns)) as p:
            for i in range(4000):
                p.produce("t", b"%d" % i, partition=i % 2)
        seen = {}
        for _ in range(10):
            m = a.poll(5)
            seen[(m.partition(), m.offset())] = m.value()
        b = Consumer(conf(ns, **{"group.id": "g", "auto.offset.reset": "earliest", "enable.auto.commit": True}))
        b.subscribe(["t"])

        def settled():
            for c in (a, b):
                m = c.poll(0.01)
                if m is not None and m.error() is None:
                    key = (m.partition(), m.offset())
                    assert key not in seen, key
                    seen[key] = m.value()
            return len(a.assignment()) == 1 and len(b.assignment()) == 1
        deadline_wait(settled, 30, "one partition each")
        assert revoked
        assert a._cpoll.next_commit > 0  # the first member is back in the C path
    finally:
        a.close()
        if b is not None:
            b.close()


def test_a_lapped_member_waits_in_poll_as_a_member(ns):
    """A member lapped on an overwrite topic (auto.offset.reset=latest): the C spin reports the lap, the
    member jumps to the head and waits there as a member - in poll (its slot's in-poll word set, so
    max.poll.interval.ms does not run) and woken by the next record."""
    from conftest import while_blocked
    make_topic(ns, "t", 1, **{"shm.slots": 16, "retention.bytes": 1 << 16})
    c, back = _member(ns, ["t"], **{"enable.auto.commit": False, "auto.offset.reset": "latest"})
    try:
        _assigned(c, 1, "the assignment")
        with Producer(conf(ns)) as p:
            for i in range(100):  # laps the 16 slots: offset 0, where the member stands, is gone
                p.produce("t", b"old%d" % i)
            got = while_blocked(lambda: c.poll(10), lambda: c._gw[c._w_inpoll] == 1,
                                "the lapped member waiting in poll", lambda: p.produce("t", b"new"))
        assert got is not None and got.error() is None and got.value() == b"new" and got.offset() == 100
        st = c.stats()[TopicPartition("t", 0)]
        assert st["lap_resets"] == 1 and st["records_lost_to_laps"] == 100
    finally:
        c.close()


# ---- enable.auto.commit for assign() ---------------------------------------------------------
@pytest.mark.parametrize("lean", [True, False])
def test_auto_commit_runs_for_an_assigned_consumer(ns, lean):
    """assign() with a group.id and enable.auto.commit: the positions are committed every
    auto.commit.interval.ms while records stream (as Java's and librdkafka's consumers do), by the C path
    handing a poll back once one is due or by the Python path; close() commits the final position."""
    tp = _filled(ns, 20000)
    c = _consumer(ns, lean, **{"enable.auto.commit": True, "auto.commit.interval.ms": 50})
    try:
        n = _stream_committing(c, tp, 0.4)  # eight intervals
        if lean:
            assert c._cpoll.next_commit > 0
    finally:
        c.close()
    with Consumer(conf(ns, **{"group.id": "g", "enable.auto.commit": False})) as other:
        assert other.committed([tp])[0].offset == n  # close() committed where it stood


def test_without_auto_commit_or_group_an_assigned_consumer_commits_nothing(ns):
    tp = _filled(ns, 50)
    with _consumer(ns, True, **{"enable.auto.commit": False, "auto.commit.interval.ms": 10}) as c:
        assert c._cpoll.next_commit == -1
        assert len(_take_plain(c, 50)) == 50
        deadline = time.monotonic() + 0.1  # ten intervals of polls with nothing to read
        while time.monotonic() < deadline:
            assert c.poll(0.01) is None
    import broker
    none = broker.Consumer(conf(ns, **{"auto.commit.interval.ms": 10}))  # no group.id: nothing to commit to
    try:
        assert none._cpoll.next_commit == -1 and not none._plain_commits
        none.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
        assert len(_take_plain(none, 50)) == 50
    finally:
        none.close()
    with Consumer(conf(ns, **{"group.id": "g", "enable.auto.commit": False})) as other:
        assert other.committed([tp])[0].offset is None or other.committed([tp])[0].offset < 0


def _filled(ns, n):
    """Topic t, one partition, holding records b"0" .. b"n-1"; its TopicPartition."""
    make_topic(ns, "t", 1)
    with Producer(conf(ns)) as p:
        for i in range(n):
            p.produce("t", b"%d" % i)
    return TopicPartition("t", 0)


def _take_plain(c, n):
    out = []
    for _ in range(n):
        m = c.poll(5)
        assert m is not None and m.error() is None, m
        out.append(m.offset())
    return out


@pytest.mark.parametrize("subscribe", [False, True])
def test_auto_commit_frees_a_block_topic_while_the_consumer_waits(ns, subscribe):
    """A block topic holds its producer until the group commits; a consumer that read everything there was
    and now waits inside poll() still makes its auto-commits (as librdkafka's background commits would),
    so the producer goes on - it was stuck until poll's timeout ran out."""
    make_topic(ns, "t", 1, **{"shm.slots": 64, "shm.overflow": "block"})
    kw = {"enable.auto.commit": True, "auto.commit.interval.ms": 20, "shm.wait": "adaptive"}
    if subscribe:
        c, _ = _member(ns, ["t"], **kw)
        _assigned(c, 1, "the assignment")
    else:
        c = _consumer(ns, True, **kw)
    n = 1000  # about 16 rings
    try:
        def produce():
            with Producer(conf(ns, **{"shm.block.timeout.ms": 20000})) as p:
                for i in range(n):
                    p.produce("t", b"%d" % i)
        got, end = [], time.monotonic() + 15
        with _Thread(produce) as th:
            while len(got) < n:
                assert time.monotonic() < end, "read %d of %d: the producer waits for a commit" % (len(got), n)
                m = c.poll(5)  # longer than the test takes: only an auto-commit inside it lets the producer go on
                assert m is not None and m.error() is None, m
                got.append(int(m.value()))
            th.join(10)
            assert th.error is None, th.error
        assert got == list(range(n))
    finally:
        c.close()


class _Thread:
    """A thread running fn, its exception kept for the test's own thread."""

    def __init__(self, fn):
        import threading
        self.error = None

        def run():
            try:
                fn()
            except BaseException as exc:  # reported by the test
                self.error = exc
        self.t = threading.Thread(target=run, daemon=True)

    def __enter__(self):
        self.t.start()
        return self

    def join(self, timeout):
        self.t.join(timeout)
        assert not self.t.is_alive(), "the producer thread did not end"

    def __exit__(self, *exc):
        self.t.join(30)


def test_auto_commit_interval_zero_commits_only_at_close(ns):
    """auto.commit.interval.ms=0 (librdkafka: no periodic commit): nothing is committed while it polls,
    the final position at close()."""
    tp = _filled(ns, 50)
    c = _consumer(ns, True, **{"enable.auto.commit": True, "auto.commit.interval.ms": 0})
    try:
        assert len(_take_plain(c, 50)) == 50
        end = time.monotonic() + 0.1
        while time.monotonic() < end:
            assert c.poll(0.01) is None
        assert c.committed([tp])[0].offset is None or c.committed([tp])[0].offset < 0
    finally:
        c.close()
    with Consumer(conf(ns, **{"group.id": "g", "enable.auto.commit": False})) as other:
        assert other.committed([tp])[0].offset == 50


def test_auto_commit_reports_only_what_moved_and_skips_stopped_partitions(ns):
    """An assign()ed consumer's auto-commits with on_commit: one report for the position that moved, none
    for the empty ones after it (librdkafka's empty auto-commits are silent); a partition stopped by
    auto.offset.reset=error (no position) is never committed."""
    make_topic(ns, "t", 2)
    with Producer(conf(ns)) as p:
        for i in range(10):
            p.produce("t", b"%d" % i, partition=0)
            p.produce("t", b"%d" % i, partition=1)
    reports = []
    c = Consumer(conf(ns, **{"group.id": "g", "enable.auto.commit": True, "auto.commit.interval.ms": 10,
                             "auto.offset.reset": "error",
                             "on_commit": lambda err, parts: reports.append((err, [(x.partition, x.offset)
                                                                                     for x in parts]))}))
    try:
        c.assign([TopicPartition("t", 0, OFFSET_BEGINNING), TopicPartition("t", 1)])  # 1: no commit, reset=error
        got = []
        deadline_wait(lambda: _poll_into(c, got) or len(
            [m for m in got if m.error() is None]) == 10, 10, "the ten records of partition 0")
        assert [m.offset() for m in got if m.error() is None] == list(range(10))
        deadline_wait(lambda: c.poll(0.01) is None and reports and reports[-1] == (None, [(0, 10)]), 10,
                      "the auto-commit of offset 10 reported")
        k = len(reports)
        end = time.monotonic() + 0.2  # twenty intervals, nothing new
        while time.monotonic() < end:
            m = c.poll(0.01)
            assert m is None or m.error() is not None, m
        assert len(reports) == k, reports[k:]  # no report of an empty auto-commit
        assert all(err is None and len(parts) == 1 and parts[0][0] == 0 for err, parts in reports), reports
        committed = {x.partition: x.offset for x in c.committed([TopicPartition("t", 0), TopicPartition("t", 1)])}
        assert committed[0] == 10 and (committed[1] is None or committed[1] < 0), committed
    finally:
        c.close()


def test_an_assigned_consumer_commits_the_partitions_it_drops(ns):
    """assign() with auto-commit: the positions of partitions dropped by incremental_unassign, unassign or
    a new assign() are committed as they go (librdkafka does), not lost until the next interval."""
    make_topic(ns, "t", 2)
    with Producer(conf(ns)) as p:
        for i in range(3):
            p.produce("t", b"%d" % i, partition=0)
            p.produce("t", b"%d" % i, partition=1)
    c = _consumer(ns, True, parts=(0, 1), **{"enable.auto.commit": True, "auto.commit.interval.ms": 600000})
    try:
        seen = sorted((m.partition(), m.offset()) for m in (c.poll(5) for _ in range(6)))
        assert seen == [(p, o) for p in (0, 1) for o in range(3)]
        t0, t1 = TopicPartition("t", 0), TopicPartition("t", 1)
        assert [x.offset for x in c.committed([t0, t1])] in ([None, None], [-1001, -1001])
        c.incremental_unassign([t0])
        assert c.committed([t0])[0].offset == 3
        c.assign([TopicPartition("t", 0, 3)])  # replaces partition 1: committed as it goes
        assert c.committed([t1])[0].offset == 3
    finally:
        c.close()


def test_auto_commit_of_a_deleted_topic_does_not_raise_from_poll(ns):
    """A topic deleted while its fetched batch is handed out: an auto-commit due meanwhile (a failure logged),
    poll() goes on handing out the batch, then reports the deletion as Kafka does - it does not raise."""
    from broker.admin import AdminClient
    make_topic(ns, "t", 1)
    with Producer(conf(ns)) as p:
        for i in range(300):
            p.produce("t", b"%d" % i)
    c = _consumer(ns, True, **{"enable.auto.commit": True, "auto.commit.interval.ms": 1})
    try:
        m = c.poll(5)
        assert m is not None and m.offset() == 0
        with AdminClient(conf(ns)) as a:
            a.delete_topics(["t"])["t"].result()
        end = time.monotonic() + 0.01
        while time.monotonic() < end:  # a commit comes due
            pass
        out = []
        deadline_wait(lambda: _poll_into(c, out) or any(
            m.error() is not None for m in out), 10, "the deletion reported")
        assert all(m.error() is None for m in out[:-1]) and out[-1].error() is not None
    finally:
        c.close()


def test_a_seek_does_not_unstore_what_was_consumed(ns):
    """librdkafka's stored offset: seek() moves the position, not the offset a commit stores.  Consumed to
    5, then seek(0): commit() commits 5, and close()'s auto-commit of the assigned consumer too (before,
    the position after the seek equalled where reading restarted and counted as nothing consumed: commit()
    raised _NO_OFFSET and close committed nothing).  After a record is read again, its position is stored."""
    from broker.kafka import KafkaException
    make_topic(ns, "t", 1)
    with Producer(conf(ns)) as p:
        for i in range(10):
            p.produce("t", b"%d" % i)
    tp = TopicPartition("t", 0)
    c = _consumer(ns, True, **{"enable.auto.commit": True, "auto.commit.interval.ms": 0})
    try:
        assert [c.poll(5).offset() for _ in range(5)] == list(range(5))
        c.seek(TopicPartition("t", 0, 0))
        c.commit(asynchronous=False)
        assert c.committed([tp])[0].offset == 5
        c.seek(TopicPartition("t", 0, 2))  # nothing read since the last seek: still 5 stored
        with pytest.raises(KafkaException) as exc:  # ... and committed: nothing new
            c.commit(asynchronous=False)
        assert exc.value.args[0].code() == -168  # _NO_OFFSET
        assert c.poll(5).offset() == 2
        c.commit(asynchronous=False)
        assert c.committed([tp])[0].offset == 3
        c.seek(TopicPartition("t", 0, 8))
        assert c.poll(5).offset() == 8
        c.seek(TopicPartition("t", 0, 0))
    finally:
        c.close()  # commits what it had consumed to: 9
    with Consumer(conf(ns, **{"group.id": "g", "enable.auto.commit": False})) as other:
        assert other.committed([tp])[0].offset == 9


def test_a_member_that_sought_back_commits_what_it_read_as_it_leaves(ns):
    """The same stored offset on a group member's way out: read to 5, seek(0), close() - the revoke's
    commit stores 5, not 0 (which would move the group's offset back)."""
    make_topic(ns, "t", 1)
    with Producer(conf(ns)) as p:
        for i in range(10):
            p.produce("t", b"%d" % i)
    c = Consumer(conf(ns, **{"group.id": "g", "enable.auto.commit": True, "auto.commit.interval.ms": 0,
                             "auto.offset.reset": "earliest"}))
    try:
        c.subscribe(["t"])
        got = []
        deadline_wait(lambda: _poll_into(c, got) or len(got) == 5, 10, "five records")
        assert [(m.error(), m.offset()) for m in got] == [(None, i) for i in range(5)]
        c.seek(TopicPartition("t", 0, 0))
        from broker.kafka import KafkaException
        with pytest.raises(KafkaException):
            c.seek(TopicPartition("t", 0, -7))  # refused before anything moved
        assert c.position([TopicPartition("t", 0)])[0].offset == 0
    finally:
        c.close()
    with Consumer(conf(ns, **{"group.id": "g", "enable.auto.commit": False})) as other:
        assert other.committed([TopicPartition("t", 0)])[0].offset == 5
