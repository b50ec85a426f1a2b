"""consume(n) hands out a fetched batch in bulk (what poll() would return one by one, in the same order), and
the Messages the consumer builds are left out of the cyclic GC while they hold only atoms - tracked again as
soon as something is hung on them, so a cycle through one is still collected."""
import gc
import weakref

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
    d.note = "attribute"
    assert gc.is_tracked(d)
    gone = weakref.ref(box)
    del a, box
    gc.collect()
    assert gone() is None, "the cycle through a consumed Message was not collected"
    assert not gc.is_tracked(b) and b.value() == b"0:1"
