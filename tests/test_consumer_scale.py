"""Consumers at scale and under pressure (issue 8, part 5): waits over more
than 128 partitions, the committed-offset table under group churn, records
lost to laps, and a namespace destroyed under live clients."""
import os
import time

import pytest

from broker import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, Producer, TopicPartition
from broker.admin import AdminClient, NewTopic

from conftest import CTX, deadline_wait

WIDE = 200  # partitions: more than futex_waitv's 128 words


def conf(ns, **kw):
    c = {"shm.namespace": ns}
    c.update(kw)
    return c


def make_topic(ns, name, partitions=1, **config):
    with AdminClient(conf(ns)) as a:
        a.create_topics([NewTopic(name, partitions, config=config)])[name].result()


def _wide_consumer(ns, group, ready, out):
    """Child: a consumer of every partition of "wide" (assigned, or as the
    only member of *group*); reports its idle poll(2)'s CPU time, then
    blocks in long polls until a record comes and reports when it came."""
    try:
        if group is None:
            c = Consumer(conf(ns))
            c.assign([TopicPartition("wide", p, OFFSET_END) for p in range(WIDE)])
        else:
            c = Consumer(conf(ns, **{"group.id": group, "auto.offset.reset": "latest"}))
            c.subscribe(["wide"])
            end = time.monotonic() + 30
            while len(c.assignment()) < WIDE:  # the supervisor assigns all of them to us
                assert time.monotonic() < end, "assigned %d of %d partitions" % (len(c.assignment()), WIDE)
                assert c.poll(0.05) is None
        c.poll(0.2)  # the first wait sets up; then measure an idle one
        t0, c0 = time.monotonic(), time.process_time()
        m = c.poll(2.0)
        wall, cpu = time.monotonic() - t0, time.process_time() - c0
        out.send(("idle", m is None, wall, cpu))
        ready.set()
        m = c.poll(None) if group is None else c.poll(60.0)  # the parent kills us after its deadline
        got = time.monotonic()
        out.send(("got", m.partition(), m.offset(), m.value(), got))
        c.close()
    except BaseException as exc:
        out.send(("error", repr(exc)))
        raise
    finally:
        out.close()


@pytest.mark.parametrize("group", [None, "g"], ids=["assign", "member"])
def test_a_wide_consumer_sleeps_when_idle_and_sees_partition_150_at_once(ns, group):
    make_topic(ns, "wide", WIDE, **{"retention.bytes": 4096, "shm.slots": 4})
    ready = CTX.Event()
    rd, wr = CTX.Pipe(duplex=False)
    child = CTX.Process(target=_wide_consumer, args=(ns, group, ready, wr), daemon=True)
    child.start()
    wr.close()
    try:
        assert rd.poll(60), "the consumer child did not report its idle poll"
        kind, *res = rd.recv()
        assert kind == "idle", res
        empty, wall, cpu = res
        assert empty and wall >= 1.9
        assert cpu < 0.5, "an idle poll(2) over %d partitions used %.2f s of CPU" % (WIDE, cpu)
        assert ready.wait(10)
        with Producer(conf(ns)) as p:
            sent = time.monotonic()
            p.produce("wide", b"late", partition=150)
        assert rd.poll(10), "a record on partition 150 was not seen by a consumer blocked in poll"
        kind, *res = rd.recv()
        assert kind == "got", res
        part, off, val, got = res
        assert (part, off, val) == (150, 0, b"late")
        assert got - sent < 1.0
    finally:
        child.join(5)
        if child.exitcode is None:
            child.kill()
            child.join(5)
    assert child.exitcode == 0
