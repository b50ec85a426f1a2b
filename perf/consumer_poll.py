#!/usr/bin/env python3
"""What one Consumer.poll() + value() costs, by how the consumer gets its
partitions: assign() (manual) or subscribe() (a group member, a Kafka
user's usual loop), with enable.auto.commit off and on.

One process, no producer running: a topic of one partition is filled with
N 64-byte records first, then each kind of consumer reads all of them, one
poll() and one value() a record, timed as a whole.  Rounds alternate the
kinds, so each round compares them on the same machine state; the figures
are the median over rounds (with the range), in ns a record.

How to read it: every kind should cost about the same.  A subscribed
consumer pays, per poll, a check of its group slot (a new assignment? a
commit due?) and a store of its last-poll time (max.poll.interval.ms); a
kind far above assign()'s means its polls leave the C path for Python.

    python perf/consumer_poll.py --records 300000 --rounds 5
"""
import os
import statistics
import sys
import time
import uuid

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(1, os.path.join(_HERE, ".."))

import perfutil  # noqa: E402  (before numpy: one BLAS thread)

KINDS = ("assign", "assign+auto-commit", "subscribe", "subscribe+auto-commit")


def read_all(ns, kind, group, n):
    """ns a record reading offsets 1..n-1 (the first poll, which may wait for the assignment, untimed)."""
    from broker import OFFSET_BEGINNING, Consumer, TopicPartition
    c = Consumer({"shm.namespace": ns, "group.id": group, "enable.auto.commit": kind.endswith("auto-commit"),
                  "auto.commit.interval.ms": 100, "auto.offset.reset": "earliest", "shm.pre.touch": True})
    try:
        if kind.startswith("assign"):
            c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
        else:
            c.subscribe(["t"])
        poll = c.poll
        m = poll(30.0)
        if m is None or m.error() is not None or m.offset() != 0:
            raise RuntimeError("%s: the first record did not come: %r" % (kind, m))
        t0 = time.perf_counter_ns()
        for _ in range(n - 1):
            m = poll(5.0)
            m.value()
        t1 = time.perf_counter_ns()
        if m.offset() != n - 1:
            raise RuntimeError("%s: read up to offset %d of %d" % (kind, m.offset(), n - 1))
        return (t1 - t0) / (n - 1)
    finally:
        c.close()


def main():
    ap = perfutil.parser(__doc__)
    ap.add_argument("--records", type=int, default=300000, help="records in the topic, each read by every kind")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of all kinds (medians are over them)")
    ap.add_argument("--cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else None,
                    help="the CPU to run on (-1: leave it to the scheduler)")
    a = ap.parse_args()
    if a.records < 2 or a.rounds < 1:
        ap.error("--records must be >= 2 and --rounds >= 1")
    perfutil.pin(None if a.cpu is None or a.cpu < 0 else a.cpu)
    from broker import Producer
    from broker.admin import AdminClient, NewTopic
    from broker.lifecycle import IDLE_ENV
    from broker.namespace import destroy
    ns = "cpoll" + uuid.uuid4().hex[:8]
    os.environ[IDLE_ENV] = "0"  # its supervisor stays up between the kinds (destroyed at the end)
    res = {k: [] for k in KINDS}
    prog = perfutil.Progress()
    try:
        slots = 1 << max(10, (a.records - 1).bit_length())
        with AdminClient({"shm.namespace": ns}) as ad:
            ad.create_topics([NewTopic("t", 1, config={"shm.slots": slots, "retention.bytes": slots * 128})])["t"].result()
        with Producer({"shm.namespace": ns}) as p:
            v = b"x" * 64
            for _ in range(a.records):
                p.produce("t", v)
        for r in range(a.rounds):
            for k in (KINDS if r % 2 == 0 else KINDS[::-1]):
                prog("round %d/%d: %s" % (r + 1, a.rounds, k))
                res[k].append(read_all(ns, k, "g%d%s" % (r, k), a.records))
    finally:
        prog.done()
        destroy(ns)
    print("Consumer.poll() + value(), 64 B records, ns a record: median over %d round(s) (range)" % a.rounds)
    base = statistics.median(res["assign"])
    for k in KINDS:
        med = statistics.median(res[k])
        print("  %-22s %7.1f (%.1f-%.1f)  %.2fx assign()'s" % (k, med, min(res[k]), max(res[k]), med / base))


if __name__ == "__main__":
    main()
