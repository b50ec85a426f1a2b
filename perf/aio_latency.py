#!/usr/bin/env python3
"""Wake-up latency of an asyncio consumer: a record appended by another process -> `await poll()` returns.

Three designs, measured side by side in one run (alternating rounds):
  io_uring  broker.aio.AIOConsumer, shm.aio.waker=io_uring (its default where the kernel has io_uring futex
            waits, Linux >= 6.7): the loop's io_uring waits on the partition futex; the producer's wake
            completes it and the kernel wakes the loop's thread through its eventfd (skipped without)
  waker     broker.aio.AIOConsumer, shm.aio.waker=thread (the default elsewhere): a waker thread sleeps on the
            partition futex and rings the loop's eventfd
  thread    confluent's design, emulated with our own sync Consumer: a thread blocked in consumer.poll() hands
            each message to the loop with call_soon_threadsafe

A producer process appends records at a paced rate (open loop), each stamped with CLOCK_MONOTONIC (one clock
for every process on the host); the consumer's coroutine takes the difference when its await returns.

    python perf/aio_latency.py --count 2000 --rate 1000 --rounds 2

Prints p50/p90/p99/max in microseconds per design and the p50 target's verdict.
"""
import asyncio
import os
import statistics
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from perfutil import Progress, parser as new_parser, verdict  # noqa: E402

DESIGNS = ("io_uring", "waker", "thread")


def _producer(ns, topic, count, warmup, rate, size, ready_r, go_w):
    """Child: wait for the consumer's go byte, then append warmup + count records, paced."""
    from broker.kafka import Producer
    os.close(go_w)
    with Producer({"bootstrap.servers": "shm://" + ns}) as p:
        if os.read(ready_r, 1) != b"g":
            os._exit(2)
        pad = b"\0" * max(0, size - 8)
        gap = 1.0 / rate
        t0 = time.monotonic()
        for i in range(warmup + count):
            due = t0 + i * gap
            while True:
                left = due - time.monotonic()
                if left <= 0:
                    break
                if left > 0.0005:
                    time.sleep(left - 0.0003)  # pacing the stream; the last bit spins
            p.produce(topic, struct.pack("<q", time.monotonic_ns()) + pad, partition=0)
    os._exit(0)


def _start_producer(ns, topic, args):
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            _producer(ns, topic, args.count, args.warmup, args.rate, args.size, ready_r, ready_w)
        finally:
            os._exit(1)
    os.close(ready_r)
    return pid, ready_w


async def _futex_round(conf, total, go):
    from broker.aio import AIOConsumer
    from broker.aio._waker import bell_of
    from broker.kafka import OFFSET_END, TopicPartition
    lat = []
    async with AIOConsumer(conf) as c:
        await c.assign([TopicPartition("lat", 0, OFFSET_END)])
        go()
        while len(lat) < total:
            msg = await c.poll(10)
            now = time.monotonic_ns()
            if msg is None:
                raise SystemExit("no record within 10 s: the producer died?")
            lat.append(now - struct.unpack_from("<q", msg.value())[0])
        if conf["shm.aio.waker"] == "io_uring" and bell_of(asyncio.get_running_loop())._ring is None:
            raise SystemExit("the io_uring design ran without a ring")  # it waited for every paced record
    return lat


async def _thread_round(conf, total, go):
    from broker.kafka import OFFSET_END, Consumer, TopicPartition
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()
    stop = threading.Event()
    c = Consumer(conf)
    c.assign([TopicPartition("lat", 0, OFFSET_END)])

    def pump():  # confluent's AIOConsumer: a pool thread blocked in the sync poll
        while not stop.is_set():
            m = c.poll(0.1)
            if m is not None:
                loop.call_soon_threadsafe(q.put_nowait, m)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    lat = []
    try:
        go()
        while len(lat) < total:
            msg = await asyncio.wait_for(q.get(), 10)
            now = time.monotonic_ns()
            lat.append(now - struct.unpack_from("<q", msg.value())[0])
    finally:
        stop.set()
        t.join(5)
        c.close()
    return lat


def one_round(design, ns, args):
    conf = {"bootstrap.servers": "shm://" + ns, "group.id": "lat", "shm.wait": args.wait}
    pid, go_w = _start_producer(ns, "lat", args)

    def go():
        os.write(go_w, b"g")

    try:
        fn = _thread_round if design == "thread" else _futex_round
        conf["shm.aio.waker"] = "thread" if design == "waker" else "io_uring"
        lat = asyncio.run(fn(conf, args.warmup + args.count, go))
    finally:
        os.close(go_w)
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("the producer process failed (status %d)" % status)
    return lat[args.warmup:]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main(argv=None):
    ap = new_parser(__doc__)
    ap.add_argument("--count", type=int, default=5000, help="records measured per round and design")
    ap.add_argument("--warmup", type=int, default=200, help="records per round not measured")
    ap.add_argument("--rate", type=float, default=1000.0, help="records per second (paced, open loop)")
    ap.add_argument("--size", type=int, default=64, help="record value bytes (at least the 8-byte stamp)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; each runs every design, order alternating")
    ap.add_argument("--designs", default=",".join(DESIGNS), help="which designs, comma-separated")
    ap.add_argument("--wait", default="sleep", choices=("adaptive", "sleep"),
                    help="the thread design's shm.wait (sleep: no spinning, as a futex wait)")
    ap.add_argument("--target-us", type=float, default=100.0, help="the p50 target of AIOConsumer's default design")
    ap.add_argument("--namespace", default=None, help="namespace to use (default: a fresh one, removed after)")
    args = ap.parse_args(argv)
    designs = [d for d in args.designs.split(",") if d]
    for d in designs:
        if d not in DESIGNS:
            ap.error("unknown design %r: one of %s" % (d, ", ".join(DESIGNS)))
    if args.count <= 0 or args.rate <= 0 or args.rounds <= 0:
        ap.error("--count, --rate and --rounds must be positive")

    from broker.aio._waker import ring_available
    if "io_uring" in designs and not ring_available():
        print("skipping io_uring: this kernel gives no io_uring futex waits (Linux >= 6.7, io_uring allowed)")
        designs.remove("io_uring")
    default = "io_uring" if ring_available() else "waker"
    from broker.admin import AdminClient, NewTopic
    from broker.lifecycle import wait_supervisor
    from broker.namespace import destroy
    ns = args.namespace or "aiolat%d" % os.getpid()
    progress = Progress()
    results = {d: [] for d in designs}
    try:
        with AdminClient({"bootstrap.servers": "shm://" + ns}) as a:
            a.create_topics([NewTopic("lat", 1)])["lat"].result()
        wait_supervisor(ns)
        for r in range(args.rounds):
            order = designs if r % 2 == 0 else designs[::-1]
            for d in order:
                progress("round %d/%d: %s" % (r + 1, args.rounds, d))
                results[d].extend(one_round(d, ns, args))
    finally:
        progress.done()
        if args.namespace is None:
            destroy(ns)

    print("record appended by another process -> await poll() returns; %d records x %d rounds at %.0f/s, "
          "%d B" % (args.count, args.rounds, args.rate, args.size))
    print("%-9s %10s %10s %10s %10s %10s" % ("design", "p50 us", "p90 us", "p99 us", "max us", "mean us"))
    for d in designs:
        xs = [x / 1000 for x in results[d]]
        print("%-9s %10.1f %10.1f %10.1f %10.1f %10.1f" % (d, pct(xs, .5), pct(xs, .9), pct(xs, .99), max(xs),
                                                           statistics.fmean(xs)))
    if default in results:
        p50 = pct([x / 1000 for x in results[default]], .5)
        print("target: AIOConsumer's default here (%s) p50 <= %.0f us: %s (%.1f us)" % (
            default, args.target_us, verdict(p50 <= args.target_us), p50))


if __name__ == "__main__":
    main()
