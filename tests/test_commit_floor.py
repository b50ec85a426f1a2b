"""The block-mode floor of a partition (ext/shmlog.c's shm_commit_floor, through
Groups.floor_for): one probe a group in the commit table, checked against a scan
of the whole table, on a real namespace and on random and hostile tables."""
import struct

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from broker import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from broker.admin import AdminClient, NewTopic
from broker.groups import C_VALUE, Groups
from broker.namespace import CENTRY, MAX_GROUPS, Namespace
from shm._native import ffi, lib

from conftest import conf

MASK52 = (1 << 52) - 1


def scan_floor(words, low):
    """The reference: every live key of the partition, whoever its group (the table as numpy words)."""
    keys = words[:, 0]
    mask = ((keys & np.uint64(MASK52)) == np.uint64(low)) & (keys > np.uint64(1))
    if not mask.any():
        return None
    return int(words[mask, C_VALUE // 8].min())


def c_floor(buf, n, low, max_groups=MAX_GROUPS, off=0, esize=CENTRY, value_off=C_VALUE, size=None):
    out = ffi.new("uint64_t[1]")
    rc = lib.shm_commit_floor(ffi.from_buffer(buf), len(buf) if size is None else size, off, n, esize, value_off,
                              low, max_groups, out)
    return rc, out[0]


def test_floor_is_the_lowest_commit_of_every_group(ns):
    with AdminClient(conf(ns)) as a:
        a.create_topics([NewTopic("q", 2, config={"shm.overflow": "block"}),
                         NewTopic("other", 1, config={"shm.overflow": "block"})])["q"].result()
    p = Producer(conf(ns))
    for i in range(50):
        p.produce("q", b"%d" % i, partition=0)
        p.produce("q", b"%d" % i, partition=1)
        p.produce("other", b"%d" % i)
    p.flush()
    space = Namespace(ns)
    gs = Groups(space)
    try:
        q, other = space.topic("q"), space.topic("other")
        assert gs.floor_for(q.topic_id, 0) is None  # no group yet
        commits = {"g1": (30, 7), "g2": (12, 40), "g3": (25, 25)}
        consumers = []
        for g, (at0, at1) in commits.items():
            c = Consumer(conf(ns, **{"group.id": g, "enable.auto.commit": False}))
            consumers.append(c)
            c.assign([TopicPartition("q", 0, OFFSET_BEGINNING), TopicPartition("q", 1, OFFSET_BEGINNING)])
            c.commit(offsets=[TopicPartition("q", 0, at0), TopicPartition("q", 1, at1)], asynchronous=False)
        late = Consumer(conf(ns, **{"group.id": "g4", "enable.auto.commit": False}))
        consumers.append(late)
        late.assign([TopicPartition("other", 0, OFFSET_BEGINNING)])
        late.commit(offsets=[TopicPartition("other", 0, 44)], asynchronous=False)
        words = gs._words  # the table, as numpy words
        for tid, part, want in ((q.topic_id, 0, 12), (q.topic_id, 1, 7), (other.topic_id, 0, 44)):
            low = ((tid & ((1 << 40) - 1)) << 12) | part
            assert gs.floor_for(tid, part) == want
            assert scan_floor(words, low) - 1 == want  # the whole table's scan agrees
        del words  # (a view of the segment: it must go before the segment closes)
        # a group's commit moving up moves the floor only when it was the lowest
        consumers[1].commit(offsets=[TopicPartition("q", 0, 28)], asynchronous=False)
        assert gs.floor_for(q.topic_id, 0) == 25
        consumers[0].commit(offsets=[TopicPartition("q", 1, 45)], asynchronous=False)
        assert gs.floor_for(q.topic_id, 1) == 25
        for c in consumers:
            c.close()
        with AdminClient(conf(ns)) as a:  # a deleted group no longer holds the floor back
            a.delete_consumer_groups(["g3"])["g3"].result()
        assert gs.floor_for(q.topic_id, 0) == 28
        assert gs.floor_for(q.topic_id, 1) == 40
    finally:
        gs.close()
        space.close()
        p.close()


def _table(n, entries, deleted):
    """A commit table built as groups.py inserts: linear probing from Groups.home, keys last."""
    words = np.zeros((n, CENTRY // 8), dtype=np.uint64)
    for key, value in entries:
        h = Groups.home(key) % n
        for k in range(n):
            i = (h + k) % n
            if words[i, 0] in (0, 1) or words[i, 0] == key:
                words[i, C_VALUE // 8] = value
                words[i, 0] = key
                break
    for key in deleted:
        hit = np.flatnonzero(words[:, 0] == np.uint64(key))
        words[hit, 0] = 1  # deleted: the chain through it stays whole
    return words


keys_st = st.lists(st.tuples(st.integers(0, 7), st.integers(0, 3), st.integers(0, 2), st.integers(0, 1000)),
                   max_size=40)


@settings(max_examples=300, deadline=None)
@given(keys_st, st.lists(st.integers(0, 39), max_size=10), st.sampled_from([8, 16, 64]))
def test_floor_matches_a_scan_of_random_tables(entries, dels, n):
    made = {}
    for gidx, tid, part, value in entries:
        made[((gidx + 1) << 52) | (tid << 12) | part] = value
    made = list(made.items())[:n - 1]  # a table always keeps a free entry
    deleted = [made[i][0] for i in dels if i < len(made)]
    words = _table(n, made, deleted)
    buf = bytearray(words.tobytes())
    for tid in range(4):
        for part in range(3):
            low = (tid << 12) | part
            want = scan_floor(words, low)
            rc, got = c_floor(buf, n, low, max_groups=8)
            assert (rc, got if rc else None) == ((0, None) if want is None else (1, want))


def test_a_hostile_table_ends_and_bad_geometry_is_refused():
    n = 64
    words = np.full((n, CENTRY // 8), 7, dtype=np.uint64)  # no free entry, no matching key: every chain is full
    words[:, 0] = np.arange(2, n + 2, dtype=np.uint64) << np.uint64(52)
    buf = bytearray(words.tobytes())
    assert c_floor(buf, n, 5) == (0, 0)
    key = (1 << 52) | 5  # group 0's key, found wherever it sits
    struct.pack_into("<Q", buf, 17 * CENTRY, key)
    struct.pack_into("<Q", buf, 17 * CENTRY + C_VALUE, 99)
    assert c_floor(buf, n, 5) == (1, 99)
    for kw in ({"n": 48}, {"n": 128}, {"n": 0}, {"esize": 44}, {"esize": 8}, {"value_off": CENTRY},
               {"off": 4}, {"off": len(buf) + 8}, {"size": len(buf) - 8}, {"max_groups": 5000}):
        args = {"n": n}
        args.update(kw)
        n_ = args.pop("n")
        assert c_floor(buf, n_, 5, **args)[0] == lib.LOG_E_BAD_ARG, kw
    assert c_floor(buf, n, 1 << 52)[0] == lib.LOG_E_BAD_ARG  # a key's low part is 52 bits
