"""4 producer processes x 3 consumer processes on a 4-partition topic:
every consumer sees every record exactly once, in order per partition and
per producer."""
from broker import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from broker.admin import AdminClient, NewTopic

from conftest import CTX

PRODUCERS, CONSUMERS, PER = 4, 3, 20000


def produce(ns, pid, start):
    p = Producer({"bootstrap.servers": "shm://" + ns})
    start.wait(30)
    for seq in range(PER):
        p.produce("t", b"%d:%d" % (pid, seq), key=b"k%d-%d" % (pid, seq % 16))
    p.close()
    return ("p", pid)


def consume(ns, start):
    c = Consumer({"bootstrap.servers": "shm://" + ns, "shm.wait": "adaptive"})
    c.assign([TopicPartition("t", i, OFFSET_BEGINNING) for i in range(4)])
    start.wait(30)
    total = PRODUCERS * PER
    seen = set()
    last_off = {}
    last_seq = {}  # (producer, key) -> seq: the order of one key's records (one partition)
    bad = []
    while len(seen) < total:
        m = c.poll(20)
        if m is None:
            bad.append("stalled at %d of %d" % (len(seen), total))
            break
        if m.error():
            bad.append(str(m.error()))
            continue
        pid, seq = map(int, m.value().split(b":"))
        if (pid, seq) in seen:
            bad.append("duplicate %d:%d" % (pid, seq))
        seen.add((pid, seq))
        if m.offset() != last_off.get(m.partition(), -1) + 1:
            bad.append("partition %d: offset %d after %d" % (m.partition(), m.offset(), last_off.get(m.partition())))
        last_off[m.partition()] = m.offset()
        k = (pid, m.key())
        if seq <= last_seq.get(k, -1):
            bad.append("producer %d key %r: seq %d after %d" % (pid, m.key(), seq, last_seq[k]))
        last_seq[k] = seq
        if len(bad) > 10:
            break
    c.close()
    return ("c", len(seen), bad[:10], sorted(last_off.items()))


def test_four_producers_three_consumers(ns, children):
    with AdminClient({"bootstrap.servers": "shm://" + ns}) as a:
        a.create_topics([NewTopic("t", 4)])["t"].result()
    start = CTX.Event()
    for _ in range(CONSUMERS):
        children.start(consume, ns, start)
    for i in range(PRODUCERS):
        children.start(produce, ns, i, start)
    start.set()
    results = children.results(timeout=240)
    cons = [r for r in results if r[0] == "c"]
    assert sorted(r[1] for r in results if r[0] == "p") == list(range(PRODUCERS))
    assert len(cons) == CONSUMERS
    ends = None
    for _, n, bad, last in cons:
        assert bad == [] and n == PRODUCERS * PER
        ends = ends or last
        assert last == ends  # every consumer read every partition to the same end
    assert sum(o + 1 for _, o in ends) == PRODUCERS * PER


def test_clients_created_before_fork_work_in_the_child(ns, children):
    import os
    with AdminClient({"bootstrap.servers": "shm://" + ns}) as a:
        a.create_topics([NewTopic("f", 1)])["f"].result()
    conf = {"bootstrap.servers": "shm://" + ns}
    reports = []
    p = Producer(conf, on_delivery=lambda err, m: reports.append(m.value()))
    c = Consumer(conf)
    c.assign([TopicPartition("f", 0, OFFSET_BEGINNING)])
    p.produce("f", b"before fork")  # its report is the parent's

    def child():
        served = p.flush()  # the parent's pending report is not run here
        p.produce("f", b"from child")
        got = [m.value() for m in (c.poll(10), c.poll(10))]
        return (served, len(p), reports[:], got, os.getpid())

    children.start(child)
    (served, pending, child_reports, got, cpid), = children.results(timeout=60)
    assert served == 0 and pending == 1 and child_reports == []
    assert got == [b"before fork", b"from child"]
    # the parent's state is untouched: its report is served once, here
    assert p.flush() == 0 and reports == [b"before fork"]
    assert [m.value() for m in (c.poll(10), c.poll(10))] == [b"before fork", b"from child"]
    p.close()
    c.close()


def test_ctrl_c_interrupts_consumer_poll(ns, children):
    import os
    import signal
    import time
    from conftest import deadline_wait
    with AdminClient({"bootstrap.servers": "shm://" + ns}) as a:
        a.create_topics([NewTopic("i", 3)])["i"].result()

    def blocked(nparts):
        c = Consumer({"bootstrap.servers": "shm://" + ns, "shm.wait": "sleep"})
        c.assign([TopicPartition("i", p, OFFSET_BEGINNING) for p in range(nparts)])
        t0 = time.monotonic()
        try:
            c.poll()  # forever
        except KeyboardInterrupt:
            return ("interrupted", time.monotonic() - t0)
        return ("returned", 0)

    from broker.namespace import Namespace
    with Namespace(ns) as nsobj:
        info = nsobj.topic("i")
        logs = [nsobj.open_partition(info, p) for p in range(3)]
    try:
        for nparts in (1, 3):  # the one-partition C poll and the futex_waitv wait
            proc = children.start(blocked, nparts)
            deadline_wait(lambda: all(l.stats()["waiters"] == 1 for l in logs[:nparts]), 10, "the consumer to sleep")
            os.kill(proc.pid, signal.SIGINT)
            what, took = children.results(timeout=10, count=1)[0]
            assert what == "interrupted"
            children.procs.clear()
    finally:
        for l in logs:
            l.close()
