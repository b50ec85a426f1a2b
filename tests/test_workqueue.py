"""The work queue core (ext/shmqueue.c through shm/workqueue.py): each item
goes to exactly one taker under concurrent takers in several processes,
release_owner gives a dead taker's items back with an attempt count,
maxsize and the ring bound block puts exactly, the floor lets a tiny ring
go round many laps, and a damaged lease segment raises a clear error."""
import mmap
import os
import random
import struct
import time

import pytest

from shm.errors import CorruptSegmentError, QueueFullError
from shm.segment import exists
from shm.workqueue import WorkQueue, lease_name

from conftest import while_blocked

Q_HEAD_OFF = 64  # shmlog.h: the lease header's take position
Q_N_OFF = 16     # shmqueue.c struct q_header: n (slot count)
Q_LEASES = 256   # shmlog.h Q_HEADER_SIZE: the lease words follow the header


@pytest.fixture
def wq(logs):
    """A factory of work queues under the test's segment prefix (the logs
    fixture removes every segment with that prefix, leases included)."""
    made = []

    def make(**kw):
        q = WorkQueue.create(logs.name(), **kw)
        made.append(q)
        return q
    yield make
    for q in made:
        q.destroy()
        assert not exists(q.name) and not exists(lease_name(q.name))


# -- exactly once under concurrent takers -------------------------------------
def _putter(name, tag, count):
    q = WorkQueue.attach(name)
    try:
        for i in range(count):
            q.put(b"%s:%d:" % (tag, i) + b"x" * (i % 97), timeout=60)
    finally:
        q.close()
    return count


def _taker(name):
    """Take and ack until a STOP item; returns [(offset, value)] in take order."""
    q = WorkQueue.attach(name)
    me = os.getpid()
    got = []
    try:
        while True:
            off, val, attempts = q.take(me, timeout=60)
            assert off is not None, "nothing to take for 60 s"
            assert attempts == 0
            assert q.ack(off, me)
            if val == b"STOP":
                return got
            got.append((off, val))
    finally:
        q.close()


def test_exactly_once_under_concurrent_takers(wq, children):
    per_putter, putters, takers = 3000, 2, 3
    q = wq(slot_count=64, data_capacity=1 << 13)  # ~6000 items: about 100 laps of the ring
    for t in range(takers):
        children.start(_taker, q.name)
    for p in range(putters):
        children.start(_putter, q.name, b"p%d" % p, per_putter)
    # the putters report first (their counts); then the STOPs end the takers
    deadline = time.monotonic() + 120
    for _ in range(putters):
        kind, val = children.q.get(timeout=max(0.1, deadline - time.monotonic()))
        assert (kind, val) == ("ok", per_putter), val
    for _ in range(takers):
        q.put(b"STOP", timeout=30)
    taken = children.results(timeout=120, count=takers)
    seen = {}
    for got in taken:
        last = {}
        for off, val in got:
            assert off not in seen, "offset %d delivered twice" % off
            seen[off] = val
            tag, seq, _ = val.split(b":")
            assert int(seq) > last.get(tag, -1), "a taker saw %s out of order" % tag
            last[tag] = int(seq)
    values = sorted(seen.values())
    expect = sorted(b"p%d:%d:" % (p, i) + b"x" * (i % 97) for p in range(putters) for i in range(per_putter))
    assert values == expect  # every item exactly once
    st = q.stats()
    total = putters * per_putter + takers
    assert (st["taken"], st["acked"], st["in_flight"], st["released"], st["lost_acks"]) == (total, total, 0, 0, 0)
    assert st["floor"] == st["claimed"] == st["head"] == total


# -- release_owner and attempts -------------------------------------------------
def test_release_owner_gives_back_and_counts_attempts(wq):
    q = wq(slot_count=4, data_capacity=1 << 10)
    for v in (b"a", b"b", b"c"):
        q.put(v)
    A, B, C = 101, 102, 103
    assert q.take(A, timeout=0)[:2] == (0, b"a")
    assert q.take(A, timeout=0)[:2] == (1, b"b")
    assert q.take(B, timeout=0) == (2, b"c", 0)
    assert q.take(C, timeout=0) == (None, None, 0)
    assert sorted(q.held(A)) == [0, 1] and q.held(B) == [2]
    assert q.qsize() == 0
    assert sorted(q.release_owner(A)) == [0, 1]
    assert q.release_owner(A) == []  # idempotent
    assert q.held(A) == [] and q.attempts(0) == 1 and q.attempts(1) == 1 and q.attempts(2) == 0
    assert q.qsize() >= 2
    assert q.take(C, timeout=0) == (0, b"a", 1)
    assert q.ack(0, A) is False  # A was declared dead: its late ack is refused...
    assert q.attempts(0) == 1    # ...and does not reset C's count
    assert q.ack(0, C) is True
    assert q.take(C, timeout=0) == (1, b"b", 1)
    assert q.ack(1, C)
    # a plain give-back is not a failed attempt; a failed one is
    assert q.release(2, B) is True and q.attempts(2) == 0
    assert q.release(2, B) is False  # not held any more
    assert q.take(C, timeout=0) == (2, b"c", 0)
    assert q.release(2, C, failed=True) and q.attempts(2) == 1
    assert q.take(B, timeout=0) == (2, b"c", 1)
    assert q.ack(2, B)
    st = q.stats()
    assert (st["taken"], st["acked"], st["released"], st["lost_acks"], st["in_flight"]) == (7, 3, 4, 1, 0)
    assert st["floor"] == 3
    # the slot's next lap starts from zero attempts (offset 4 reuses slot 0)
    for v in (b"d", b"e"):
        q.put(v, timeout=0)
    assert q.take(C, timeout=0) == (3, b"d", 0)
    assert q.take(C, timeout=0) == (4, b"e", 0)


@pytest.mark.parametrize("how", ["release_owner", "release"])
def test_a_release_wakes_a_sleeping_taker(wq, monkeypatch, how):
    """The taker sleeps at the old head (offset 1); the item given back is
    below it.  Its sleep lasts 60 s a chunk here: only the release's wake
    can end it within while_blocked's 10 s."""
    monkeypatch.setattr("shm.workqueue._CHUNK", 60.0)
    q = wq(slot_count=8, data_capacity=1 << 10)
    q.put(b"job")
    assert q.take(7, timeout=0)[0] == 0
    got = while_blocked(lambda: q.take(8, timeout=30), lambda: q.log.stats()["waiters"] == 1,
                        "a taker asleep on the empty queue",
                        lambda: q.release_owner(7) if how == "release_owner" else q.release(0, 7, failed=True))
    assert got == (0, b"job", 1)


# -- maxsize and the ring bound -------------------------------------------------
def test_maxsize_and_ring_block_puts_exactly(wq):
    q = wq(slot_count=8, data_capacity=1 << 10, maxsize=3)
    full = pytest.raises(QueueFullError)
    for i in range(3):
        assert q.put(b"%d" % i, timeout=0) == i
    with full:
        q.put(b"x", timeout=0)
    assert q.qsize() == 3
    t0 = time.monotonic()
    with full:
        q.put(b"x", timeout=0.2)
    assert 0.2 <= time.monotonic() - t0 < 5
    assert q.take(1, timeout=0)[0] == 0  # a take frees room at once, without an ack
    assert q.put(b"3", timeout=0) == 3
    with full:
        q.put(b"x", timeout=0)
    for o in (1, 2, 3):
        assert q.take(1, timeout=0)[0] == o
    assert q.qsize() == 0
    for o in (4, 5, 6):
        assert q.put(b"%d" % o, timeout=0) == o
    for o in (4, 5, 6):
        assert q.take(1, timeout=0)[0] == o
    assert q.put(b"7", timeout=0) == 7  # the ring's 8th unfinished item: the last free slot
    assert q.qsize() == 1
    with full:
        q.put(b"x", timeout=0)  # room under maxsize, none in the ring: 0..7 are unfinished
    assert q.ack(1, 1)
    with full:
        q.put(b"x", timeout=0)  # 1 is done but 0 is not: the floor stays
    assert q.ack(0, 1)
    assert q.stats()["floor"] == 2
    assert q.put(b"8", timeout=0) == 8
    assert q.put(b"9", timeout=0) == 9
    with full:
        q.put(b"x", timeout=0)  # maxsize (7, 8, 9 untaken) and the ring (floor 2 + 8) at once
    assert q.qsize() == 3
    # a blocked put goes on when a take makes room
    blocked = lambda: q.log.stats()["block_waits"] > waits  # noqa: E731
    waits = q.log.stats()["block_waits"]
    assert q.take(1, timeout=0)[0] == 7
    assert q.ack(7, 1) is True
    # 7 taken: maxsize has room, the ring does not (floor 2: 2..9 unfinished)
    off = while_blocked(lambda: q.put(b"10", timeout=30), blocked, "a put waiting for the ring",
                        lambda: q.ack(2, 1))
    assert off == 10


# -- floor and reuse over many laps ---------------------------------------------
def test_tiny_ring_goes_round_many_laps(wq):
    rng = random.Random(5)
    q = wq(slot_count=4, data_capacity=256, max_record=96)
    me, other = 11, 12
    expect = {}
    nxt = 0
    released = 0
    for _ in range(1500):
        k = rng.randint(1, 3)
        for _ in range(k):
            v = bytes([nxt % 251]) * rng.randint(0, 60)  # 3 records of <= 80 B fill <= 240 of the 256
            assert q.put(v, timeout=0) == nxt
            expect[nxt] = v
            nxt += 1
        held = []
        for _ in range(k):
            off, val, att = q.take(me, timeout=0)
            assert val == expect[off]
            held.append(off)
        if rng.random() < 0.2:  # a give-back: taken again (by someone else) with its attempt counted
            off = rng.choice(held)
            assert q.release(off, me, failed=True)
            released += 1
            held.remove(off)
            assert q.take(other, timeout=0)[::2] == (off, 1)
            assert q.ack(off, other)
        rng.shuffle(held)  # acks in any order: the floor follows the finished prefix
        for off in held:
            assert q.ack(off, me)
            del expect[off]
        assert q.take(me, timeout=0)[0] is None
    assert not expect or set(expect) <= set(range(nxt))
    st = q.stats()
    assert st["floor"] == st["claimed"] == st["head"] == nxt > 2000  # > 500 laps of 4 slots
    assert (st["acked"], st["released"], st["in_flight"], st["lost_acks"]) == (nxt, released, 0, 0)
    assert q.log.stats()["corrupt_skips"] == 0


# -- a damaged lease segment ------------------------------------------------------
def _poke(name, off, fmt, value):
    with open("/dev/shm" + name, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)
        struct.pack_into(fmt, mm, off, value)
        mm.close()


def test_corrupt_lease_header_is_refused_at_attach(wq):
    q = wq(slot_count=8, data_capacity=1 << 10)
    name = q.name
    _poke(lease_name(name), 0, "<Q", 0x1234)  # magic
    with pytest.raises(CorruptSegmentError, match=r"\.q: not a shmbroker work queue lease segment"):
        WorkQueue.attach(name)
    _poke(lease_name(name), 0, "<Q", 0x3145555142484d53)  # the magic back: attach works again
    WorkQueue.attach(name).close()
    _poke(lease_name(name), Q_N_OFF, "<Q", 16)  # a slot count the header check does not cover
    with pytest.raises(CorruptSegmentError, match="lease segment"):
        WorkQueue.attach(name)


def test_lease_segment_of_another_log_is_refused(wq):
    a = wq(slot_count=8, data_capacity=1 << 10)
    b = wq(slot_count=16, data_capacity=1 << 10)
    os.rename("/dev/shm" + lease_name(b.name), "/dev/shm" + lease_name(a.name))  # 16 leases for an 8-slot log
    with pytest.raises(CorruptSegmentError, match="lease segment"):
        WorkQueue.attach(a.name)


def test_hostile_head_raises_instead_of_waiting(wq):
    q = wq(slot_count=8, data_capacity=1 << 10)
    q.put(b"a")
    _poke(lease_name(q.name), Q_HEAD_OFF, "<Q", 1 << 40)
    with pytest.raises(CorruptSegmentError, match=r"\.q: the work queue's lease segment is damaged"):
        q.take(1, timeout=5)


def test_garbage_leases_never_crash_or_hang(wq):
    rng = random.Random(9)
    q = wq(slot_count=8, data_capacity=1 << 10)
    for i in range(6):
        q.put(b"%d" % i)
    with open("/dev/shm" + lease_name(q.name), "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)
        for i in range(8):
            struct.pack_into("<Q", mm, Q_LEASES + 8 * i, rng.getrandbits(64))
        mm.close()
    got = []
    t0 = time.monotonic()
    while True:
        try:
            off, val, _ = q.take(3, timeout=0)
        except CorruptSegmentError:
            break
        if off is None:
            break
        got.append((off, val))
        assert len(got) <= 6
    assert time.monotonic() - t0 < 5
    assert all(val == b"%d" % off for off, val in got)  # whatever it hands out is a real item
    assert len(q.release_owner(3)) <= 6 and len(q.held(3)) == 0
    q.stats()


def test_close_while_another_thread_waits_for_an_item(wq):
    """A take waiting in C on both the log and the lease word (wait_item)
    while another thread closes the queue: the waiter returns (ClosedError
    on its next call), and both mappings go when it leaves."""
    from broker.errors import ClosedError
    q = wq(slot_count=8, data_capacity=1024)
    seq = q.release_seq()
    at = q.log.watermarks()[1]
    def call():
        try:
            return q.wait_item(at, seq, 10, "sleep")
        except ClosedError as e:
            return e
    out = while_blocked(call, lambda: q.log.stats()["waiters"] == 1 and len(q.log._users) == 1,
                        "the taker to sleep in C", q.close)
    assert isinstance(out, ClosedError), out  # its wait chunk ended, the next one found the queue closed
    assert q.closed and q.log._cbuf is None and q._qseg._closed
    with pytest.raises(ClosedError):
        q.wait_item(at, seq, 0)
