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
