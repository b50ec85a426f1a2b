#!/usr/bin/env python3
"""The broker's Kafka API end to end: Producer.produce in one process ->
Consumer.poll in another, beside multiprocessing.Queue measured in the same
run.

Measures:
- one-way latency of 64 B records: the producer sleeps --pace-us between
  records and stamps perf_counter_ns into each, the consumer stamps it on
  arrival (the ring benchmark's method), for each --modes wait mode; rounds
  alternate the broker and the Queue;
- throughput, one call per record: produce alone, and produce -> poll end to
  end (the consumer's last record), against the Queue's put -> get.

How to read it: the ratio of the Queue's p50 to the broker's is the point
(printed per mode with each round's ratio); the throughput lines give
records/s.  Targets: p50 at least 30x below multiprocessing.Queue; at least
1 M records/s through produce/poll, one call per record.  Each is printed as
met or MISSED.  perf/compare.py measures the same against every other peer.

    python perf/broker_bench.py --samples 20000 --records 1000000
"""
import os
import struct
import sys
import time

from perfutil import Progress, parser as new_parser, verdict  # before numpy (OPENBLAS_NUM_THREADS)

import numpy as np  # noqa: E402
from shm.bench import CTX, _tight_sleep_slack, percentiles, recv, start_child

STAMP = struct.Struct("<q")


def _setup(ns, records):
    from broker.admin import AdminClient, NewTopic
    with AdminClient({"shm.namespace": ns}) as a:
        # big enough to hold a whole throughput run (bytes and index slots), so nothing is lapped
        slots = 1 << max(6, (records + 1).bit_length())
        a.create_topics([NewTopic("bench", 1, config={"retention.bytes": max(1 << 24, records * 96),
                                                      "shm.slots": slots})])["bench"].result()


def _consumer(ns, total, mode, latency, conn):
    from broker import OFFSET_BEGINNING, Consumer, TopicPartition
    c = Consumer({"shm.namespace": ns, "shm.wait": mode})
    c.assign([TopicPartition("bench", 0, OFFSET_BEGINNING)])
    pc = time.perf_counter_ns
    lat = np.empty(total if latency else 1, dtype=np.int64)
    conn.send("ready")
    poll = c.poll
    n, t_first = 0, 0
    while n < total:
        m = poll(10)
        t = pc()
        if m is None:
            raise RuntimeError("consumer stalled at %d" % n)
        if latency:
            lat[n] = t - STAMP.unpack_from(m.value())[0]
        elif n == 0:
            t_first = t
        n += 1
    conn.send((lat.tobytes(), t_first, pc()))
    c.close()


def broker_run(total, latency, pace_us, mode="adaptive"):
    from broker import Producer
    from broker.namespace import destroy
    from broker.supervisor import wait_supervisor
    ns = "bench%d" % os.getpid()
    try:
        _setup(ns, total)
        wait_supervisor(ns)  # its start-up (a Python process importing us) must not overlap the timing
        proc, a = start_child(_consumer, ns, total, mode, latency)
        p = Producer({"shm.namespace": ns})
        p.produce("bench", b"\0" * 64)  # open the topic before timing
        pc, produce, pad = time.perf_counter_ns, p.produce, b"\0" * 56
        _tight_sleep_slack()
        t0 = pc()
        if latency:
            for _ in range(total - 1):
                time.sleep(pace_us / 1e6)
                produce("bench", STAMP.pack(pc()) + pad)
        else:
            v = b"\0" * 64
            for _ in range(total - 1):
                produce("bench", v)
        t_prod = pc() - t0
        lat, t_first, t_last = recv(a, 120, "the consumer to finish")
        proc.join(10)
        p.close()
        return np.frombuffer(lat, dtype=np.int64), t_prod, t_last - t0
    finally:
        destroy(ns)


def _queue_consumer(q, total, conn):
    pc = time.perf_counter_ns
    lat = np.empty(total, dtype=np.int64)
    conn.send("ready")
    for i in range(total):
        v = q.get()
        lat[i] = pc() - STAMP.unpack_from(v)[0]
    conn.send((lat.tobytes(), pc()))


def queue_run(total, latency, pace_us):
    q = CTX.Queue()
    proc, a = start_child(_queue_consumer, q, total)
    pc, put, pad = time.perf_counter_ns, q.put, b"\0" * 56
    _tight_sleep_slack()
    t0 = pc()
    for _ in range(total):
        if latency:
            time.sleep(pace_us / 1e6)
        put(STAMP.pack(pc()) + pad)
    lat, t_last = recv(a, 300, "the queue consumer to finish")
    proc.join(10)
    return np.frombuffer(lat, dtype=np.int64), t_last - t0


def fmt(name, p):
    return "%-30s p50 %8.2f  p90 %8.2f  p99 %9.2f  p99.9 %9.2f us  (n=%d)" % (
        name, p["p50"], p["p90"], p["p99"], p["p99.9"], p["n"])


def main(argv=None):
    ap = new_parser(__doc__)
    ap.add_argument("--samples", type=int, default=20000, help="latency samples per run (after warm-up)")
    ap.add_argument("--warmup", type=int, default=2000, help="latency samples dropped first")
    ap.add_argument("--pace-us", type=float, default=20.0, help="producer sleep between latency records")
    ap.add_argument("--records", type=int, default=1_000_000, help="records per throughput run")
    ap.add_argument("--queue-records", type=int, default=200_000, help="records for multiprocessing.Queue's run")
    ap.add_argument("--rounds", type=int, default=3, help="alternating latency rounds")
    ap.add_argument("--modes", nargs="+", default=["adaptive", "spin"], choices=["adaptive", "spin", "sleep"],
                    help="the consumer's shm.wait modes")
    args = ap.parse_args(argv)
    n = args.samples + args.warmup
    print("== produce -> poll one-way latency, 64 B, sleep-paced ~%.0f us, %d rounds ==" % (args.pace_us, args.rounds))
    ratios = {m: [] for m in args.modes}
    progress = Progress()
    for r in range(args.rounds):
        progress("latency round %d/%d" % (r + 1, args.rounds))
        q = percentiles(queue_run(n, True, args.pace_us)[0][args.warmup:])
        line = ["mp.Queue %.2f" % q["p50"]]
        for mode in args.modes:
            b = percentiles(broker_run(n, True, args.pace_us, mode)[0][args.warmup:])
            ratios[mode].append(q["p50"] / b["p50"])
            line.append("broker %s %.2f" % (mode, b["p50"]))
            if r == args.rounds - 1:
                print(fmt("broker wait=%s" % mode, b))
        progress.done()
        print("round %d p50 (us): %s" % (r + 1, "  ".join(line)))
    print(fmt("multiprocessing.Queue", q))
    for mode, rs in ratios.items():
        med = sorted(rs)[len(rs) // 2]
        print("mp.Queue p50 / broker %s p50 = %.1fx  median of %s  (target >= 30x: %s)"
              % (mode, med, ["%.1f" % x for x in rs], verdict(med >= 30)))
    print("== throughput, one producer process -> one consumer process, 64 B, one call per record ==")
    progress("throughput: broker")
    _, t_prod, t_all = broker_run(args.records, False, 0)
    progress.done()
    e2e = args.records / (t_all / 1e9)
    print("broker produce %.2f M rec/s; produce->poll end to end %.2f M rec/s  (target >= 1: %s)"
          % (args.records / (t_prod / 1e9) / 1e6, e2e / 1e6, verdict(e2e >= 1e6)))
    progress("throughput: multiprocessing.Queue")
    _, tq = queue_run(args.queue_records, False, 0)
    progress.done()
    print("multiprocessing.Queue put->get end to end %.2f M rec/s" % (args.queue_records / (tq / 1e9) / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
