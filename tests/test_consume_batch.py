"""consume(n) hands out a fetched batch in bulk (what poll() would return one by one, in the same order), and
the Messages the consumer builds are left out of the cyclic GC while they hold only atoms - tracked again as
soon as something is hung on them, so a cycle through one is still collected - and a Message that dies is kept
for the next one (ext/fastmsg.c): a reused one is as good as new."""
import gc
import sys
import weakref

import pytest

from conftest import conf, make_topic

from broker.kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition


def _fill(ns, parts, per, headers=None):
    with Producer(conf(ns)) as p:
        for i in range(per):
            for k in range(parts):
                p.produce("t", b"%d:%d" % (k, i), partition=k, headers=headers)


def _consumer(ns, parts):
    c = Consumer(conf(ns, **{"group.id": "g", "enable.auto.commit": False}))
    c.assign([TopicPartition("t", k, OFFSET_BEGINNING) for k in range(parts)])
    return c


def test_consume_in_bulk_gives_what_polls_give(ns):
    make_topic(ns, "t", 3)
    _fill(ns, 3, 700)  # more than one fetch (256) a partition
    with _consumer(ns, 3) as c:
        polled = []
        while True:
            m = c.poll(0.5)
            if m is None:
                break
            polled.append((m.partition(), m.offset(), m.value()))
    with _consumer(ns, 3) as c:
        got, sizes = [], [1, 100, 300, 7, 1000, 255, 256, 2100]
        for n in sizes:
            ms = c.consume(n, 0.5)
            assert 0 < len(ms) <= n
            got += [(m.partition(), m.offset(), m.value()) for m in ms]
            if len(got) == 2100:
                break
            m = c.poll(0.5)  # a poll between consumes takes the next one
            got.append((m.partition(), m.offset(), m.value()))
        assert c.consume(10, 0.1) == []
    assert got == polled
    assert len(got) == 2100 and len(set(got)) == 2100
    for k in range(3):
        assert [o for p, o, _ in got if p == k] == list(range(700))


def test_consumed_messages_leave_the_gc_until_something_is_hung_on_them(ns):
    make_topic(ns, "t", 1)
    _fill(ns, 1, 3)
    _fill(ns, 1, 1, headers=[("h", b"1")])
    with _consumer(ns, 1) as c:
        a, b, d, h = c.consume(4, 5)
    assert h.headers() == [("h", b"1")]
    assert not gc.is_tracked(a) and not gc.is_tracked(b) and not gc.is_tracked(d)
    assert gc.is_tracked(h)  # its headers are a list: left tracked

    class Box:
        pass

    box = Box()
    a.set_value(box)  # a cycle: a -> its overrides -> box -> a
    box.msg = a
    assert gc.is_tracked(a)
    with pytest.raises(AttributeError):  # no instance dict, as confluent-kafka's Message
        d.note = "attribute"
    assert not gc.is_tracked(d)
    gone = weakref.ref(box)
    del a, box
    gc.collect()
    assert gone() is None, "the cycle through a consumed Message was not collected"
    assert not gc.is_tracked(b) and b.value() == b"0:1"


def test_reused_messages_are_as_good_as_new(ns):
    make_topic(ns, "t", 1)
    with Producer(conf(ns)) as p:
        for i in range(3000):  # headers on every third: a reused Message is tracked again only then
            p.produce("t", b"v%d" % i, key=b"k%d" % i if i % 2 else None,
                      headers=[("n", b"%d" % i)] if i % 3 == 0 else None)
    with _consumer(ns, 1) as c:
        seen, before = 0, set()
        for rnd in range(6):  # each round's Messages die before the next is read: the next reuse them
            ms = c.consume(500, 5)
            ids = {id(m) for m in ms}
            for m in ms:
                i = m.offset()
                assert (m.topic(), m.partition(), m.value()) == ("t", 0, b"v%d" % i)
                assert m.key() == (b"k%d" % i if i % 2 else None)
                assert m.headers() == ([("n", b"%d" % i)] if i % 3 == 0 else None)
                assert m.error() is None and m.timestamp()[1] > 0 and m.leader_epoch() is None
                assert gc.is_tracked(m) == (i % 3 == 0)
                assert sys.getrefcount(m) == 3  # the list, the loop variable, the call's argument
            assert [m.offset() for m in ms] == list(range(seen, seen + len(ms))) and len(ms) == 500
            seen += len(ms)
            kept = ms[7]
            kept.set_value(b"mine")  # an override on a Message that may have been reused
            assert gc.is_tracked(kept) and kept.value() == b"mine" and kept.key() == (b"k%d" % kept.offset()
                                                                                     if kept.offset() % 2 else None)
            del ms, m
            if rnd:
                assert ids & before, "no Message of the round before was reused"
            before = ids - {id(kept)}
            assert kept.value() == b"mine"  # the others' reuse did not touch a live one
        assert c.consume(1, 0.2) == []
