#!/usr/bin/env python3
"""One hop between two processes, measured by ping-pong: the steady A/B
instrument for changes to the record path.

Two pinned processes bounce a 64-byte record back and forth N times through
each channel; one way = round trip / 2.  Channels:
  floor  an int64 in shared memory, written and spun on from Python (what
         compare.py calls the Python floor);
  raw    a partition log each way: PartitionLog.append, LogReader.poll_value
         (spin);
  kafka  a topic each way: Producer.produce, Consumer.poll (spin), value().
Rounds alternate the channels, so each round compares them on the same
machine state; the ratios (raw / floor, kafka / raw) are taken within a
round, then the median over rounds is printed.

How to read it: a closed loop has no pacer and no idle spin between records,
so its figures are lower and far steadier than compare.py's open-loop
polling rows (whose p50 moves by 2x from run to run on a shared VM); use it
to tell whether a change to append or poll moved a hop by tens of
nanoseconds, and compare.py for the table of record.  p99 shows page faults
unless --pre-touch maps the rings first (shm.pre.touch).

    python perf/hop_latency.py --rounds 5 --records 30000
"""
import os
import statistics
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(1, os.path.join(_HERE, ".."))

import perfutil  # noqa: E402  (before numpy: one BLAS thread)
import multiprocessing as mp  # noqa: E402
import numpy as np  # noqa: E402

CTX = mp.get_context("fork")
SIZE = 64
SLOTS = 1 << 16  # of each ring
CHANNELS = ("floor", "raw", "kafka")


def _ends(channel, me, env, pre_touch):
    """(send(), recv()) of one side: side 0 sends on its out channel and receives on its in channel."""
    out_, in_ = (0, 1) if me == 0 else (1, 0)
    v = b"\0" * SIZE
    if channel == "floor":
        mv = memoryview(env["mm"]).cast("q")
        return _floor_ends(mv, me)
    if channel == "raw":
        from shm import PartitionLog
        outl = PartitionLog.attach(env["logs"][out_], populate=pre_touch)
        inl = PartitionLog.attach(env["logs"][in_], populate=pre_touch)
        outl.block_timeout = 60.0
        reader = inl.reader(0, "spin", floor_every=1024)
        ap, poll = outl.append, reader.poll_value

        def recv():
            if poll(30.0) is None:
                raise TimeoutError("no record within 30 s")
        return (lambda: ap(v)), recv, (outl, inl)
    from broker import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
    conf = {"shm.namespace": env["ns"], "shm.pre.touch": pre_touch}
    p = Producer(dict(conf, **{"shm.block.timeout.ms": 60000}))
    c = Consumer(dict(conf, **{"shm.wait": "spin", "group.id": "hop%d" % me, "enable.auto.commit": False}))
    c.assign([TopicPartition(env["topics"][in_], 0, OFFSET_BEGINNING)])
    produce, poll, topic = p.produce, c.poll, env["topics"][out_]

    def recv():
        m = poll(30.0)
        if m is None:
            raise TimeoutError("no record within 30 s")
        m.value()
    return (lambda: produce(topic, v)), recv, (p, c)


def _floor_ends(mv, me):
    """The int64 ping-pong: side 0 writes i to word 0 and waits for word 1 == i; side 1 the mirror."""
    k = [0]
    if me == 0:
        def send():
            k[0] += 1
            mv[0] = k[0]

        def recv():
            i = k[0]
            while mv[1] != i:
                pass
    else:
        def recv():
            i = k[0] + 1
            while mv[0] != i:
                pass
            k[0] = i

        def send():
            mv[1] = k[0]
    return send, recv, ()


def _side(conn, channel, me, env, n, pre_touch, cpu):
    try:
        perfutil.pin(cpu)
        send, recv, keep = _ends(channel, me, env, pre_touch)
        conn.send("ready")
        conn.recv()
        clock = time.monotonic_ns
        if me == 0:
            rtt = np.empty(n, dtype=np.int64)
            for i in range(n):
                t = clock()
                send()
                recv()
                rtt[i] = clock() - t
            conn.send(rtt)
        else:
            for _ in range(n):
                recv()
                send()
            conn.send(None)
        for x in keep:
            x.close()
    except BaseException as exc:  # the parent reports it
        conn.send(RuntimeError("%s side %d: %s: %s" % (channel, me, type(exc).__name__, exc)))


def _take(conn, timeout, late):
    """A side's next message; its failure raised here, as is its silence for *timeout* s (*late* says)."""
    if not conn.poll(timeout):
        raise RuntimeError(late)
    got = conn.recv()
    if isinstance(got, Exception):
        raise got
    return got


def hop(channel, env, n, warm, pre_touch, pins):
    """One-way ns (RTT / 2) of *n* round trips after *warm* untimed ones."""
    kids = []
    env["mm"][:16] = bytes(16)  # the floor's two words start at 0 every round
    try:
        for me in (1, 0):
            a, b = CTX.Pipe()
            p = CTX.Process(target=_side, args=(b, channel, me, env, n + warm, pre_touch, pins[me]), daemon=True)
            p.start()
            kids.append((p, a))
        for p, a in kids:
            _take(a, 60, "%s: a side did not start in 60 s" % channel)
        for p, a in kids:
            a.send("go")
        out = None
        for p, a in kids:
            got = _take(a, 120, "%s: no result in 120 s" % channel)
            if got is not None:
                out = got[warm:] / 2
        return out
    finally:
        for p, a in kids:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)


def main():
    ap = perfutil.parser(__doc__)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of all channels (medians are over them)")
    ap.add_argument("--records", type=int, default=30000, help="timed round trips a channel a round")
    ap.add_argument("--warmup", type=int, default=3000, help="untimed round trips before them")
    ap.add_argument("--channels", default=",".join(CHANNELS), help="which of %s" % ",".join(CHANNELS))
    ap.add_argument("--pre-touch", action="store_true", help="map the rings whole first (shm.pre.touch)")
    ap.add_argument("--no-pin", action="store_true", help="leave the two processes where the scheduler puts them")
    a = ap.parse_args()
    chans = [c.strip() for c in a.channels.split(",") if c.strip()]
    bad = [c for c in chans if c not in CHANNELS]
    if bad or a.rounds < 1 or a.records < 1 or a.warmup < 0:
        ap.error("--channels from %s; --rounds and --records >= 1" % ",".join(CHANNELS) if bad
                 else "--rounds and --records must be >= 1, --warmup >= 0")
    if a.records + a.warmup > SLOTS:  # the rings are block topics that nobody frees: a round must fit in one
        ap.error("--records + --warmup must be <= %d (a ring's slots), got %d" % (SLOTS, a.records + a.warmup))
    pins = (None, None) if a.no_pin or (os.cpu_count() or 1) < 2 else (0, 1)
    import mmap
    from broker.admin import AdminClient, NewTopic
    from broker.lifecycle import IDLE_ENV
    from broker.namespace import destroy
    from shm import PartitionLog
    from shm.segment import unlink
    tag = "hop%d" % os.getpid()
    os.environ[IDLE_ENV] = "0"  # the namespace's supervisor stays up between rounds (destroyed at the end)
    ring = {"slot_count": SLOTS, "data_capacity": 1 << 26, "max_record": SIZE, "overflow": "block"}
    env = {"mm": mmap.mmap(-1, 4096), "logs": ["/%s_%d" % (tag, i) for i in (0, 1)], "ns": tag, "topics": ["ab", "ba"]}
    res = {c: [] for c in chans}
    prog = perfutil.Progress()
    try:
        for name in env["logs"]:
            PartitionLog.create(name, **ring).close()
        conf = {"retention.bytes": ring["data_capacity"], "shm.slots": ring["slot_count"], "shm.overflow": "block"}
        with AdminClient({"shm.namespace": tag}) as ad:
            for t in env["topics"]:
                ad.create_topics([NewTopic(t, 1, config=conf)])[t].result()
        for r in range(a.rounds):
            for c in (chans if r % 2 == 0 else chans[::-1]):
                prog("round %d/%d: %s" % (r + 1, a.rounds, c))
                res[c].append(hop(c, env, a.records, a.warmup, a.pre_touch, pins))
                # a fresh ring each round: recreate the logs' and topics' contents by name
                if c == "raw":
                    for name in env["logs"]:
                        unlink(name)
                        PartitionLog.create(name, **ring).close()
                elif c == "kafka":
                    with AdminClient({"shm.namespace": tag}) as ad:
                        for t in env["topics"]:
                            ad.delete_topics([t])[t].result()
                            ad.create_topics([NewTopic(t, 1, config=conf)])[t].result()
    finally:
        prog.done()
        for name in env["logs"]:
            unlink(name)
        destroy(tag)
    print("one hop, ping-pong of %d B, one way (RTT / 2), ns: median over %d rounds (range)%s%s" % (
        SIZE, a.rounds, ", pinned to CPUs 0 and 1" if pins[0] is not None else "",
        ", rings pre-touched" if a.pre_touch else ""))
    p50 = {}
    for c in chans:
        qs = np.array([np.percentile(x, [50, 90, 99]) for x in res[c]])
        p50[c] = qs[:, 0]
        print("  %-6s p50 %6.0f (%.0f-%.0f)  p90 %6.0f  p99 %7.0f" % (
            c, np.median(qs[:, 0]), qs[:, 0].min(), qs[:, 0].max(), np.median(qs[:, 1]), np.median(qs[:, 2])))
    for a_, b_ in (("raw", "floor"), ("kafka", "raw")):
        if a_ in p50 and b_ in p50:
            print("  %s / %s: %.2fx (median of the rounds' ratios)" % (
                a_, b_, statistics.median((p50[a_] / p50[b_]).tolist())))


if __name__ == "__main__":
    main()
