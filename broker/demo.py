"""``shmbroker demo``: the main job.  Producers and a consumer group in
separate processes on one namespace; midway one member is SIGKILLed; the
supervisor hands its partitions to the survivors, which resume from its
last commit.  Live progress, then the measured kill -> resume time,
end-to-end latency percentiles, throughput, and a count of every record
proving nothing was lost (the killed member's uncommitted tail is read twice:
at-least-once, as Kafka promises).

Processes report through an anonymous shared mapping made before fork:
a per-record delivery counter (so a SIGKILLed member's work still counts),
latency samples per member, and a few stamps.  Cleans up after itself.
"""
import mmap
import os
import signal
import struct
import sys
import time

import numpy as np

from .admin import AdminClient, NewTopic
from .consumer import Consumer
from .namespace import destroy
from .procs import fork, reap
from .producer import Producer
from . import groups as G

_REC = struct.Struct("<IIq")  # producer id, sequence, send stamp (CLOCK_MONOTONIC ns)
STOP, KILL_T = 0, 1
FIRST = 16  # + partition: the first record a survivor consumed there after the kill
CONSUMED = 512  # + member: records consumed
SAMPLES = 32768  # latency samples per member (every 16th first delivery): a ring before the kill, one after
HALF = SAMPLES // 2


class Shared:
    def __init__(self, producers, per_producer, members):
        self.n = producers * per_producer
        self.per = per_producer
        ctl = 8 * (1024 + members * SAMPLES)
        self.mm = mmap.mmap(-1, ctl + self.n)
        self.ctl = np.frombuffer(self.mm, dtype=np.int64, count=1024)
        self.lat = np.frombuffer(self.mm, dtype=np.int64, count=members * SAMPLES, offset=8 * 1024).reshape(
            members, SAMPLES)
        self.seen = np.frombuffer(self.mm, dtype=np.uint8, count=self.n, offset=ctl)


def _producer(ns, sh, pid_, rate, parts):
    """Paced at *rate* records/s (0: as fast as it can), one partition after another."""
    period = 0 if rate <= 0 else 1e9 / rate
    body = bytearray(64)  # 64-byte records: id, sequence, stamp, padding
    with Producer({"shm.namespace": ns}) as p:
        t0 = time.monotonic_ns()
        for seq in range(sh.per):
            if period and seq % 64 == 0:  # pace in small bursts: sleeps are coarse
                ahead = t0 + seq * period - time.monotonic_ns()
                if ahead > 0:
                    time.sleep(ahead / 1e9)
            _REC.pack_into(body, 0, pid_, seq, time.monotonic_ns())
            p.produce("demo", bytes(body), partition=(seq + pid_) % parts)


def _member(ns, sh, idx, strategy):
    c = Consumer({"shm.namespace": ns, "group.id": "demo", "auto.offset.reset": "earliest",
                  "partition.assignment.strategy": strategy, "auto.commit.interval.ms": 200})
    c.subscribe(["demo"])
    # plain memoryviews: a numpy scalar operation per record would cost more than the broker
    ctl = memoryview(sh.mm)[:8 * 1024].cast("q")
    lat = memoryview(sh.mm)[8 * (1024 + idx * SAMPLES):8 * (1024 + (idx + 1) * SAMPLES)].cast("q")
    seen = memoryview(sh.mm)[len(sh.mm) - sh.n:]
    per = sh.per
    unpack = _REC.unpack_from
    clock = time.monotonic_ns
    n = 0
    while not ctl[STOP]:
        batch = c.consume(256, 0.05)
        killed = ctl[KILL_T]
        for m in batch:
            if m.error() is not None:
                continue
            pid_, seq, t = unpack(m.value())
            k = pid_ * per + seq
            v = seen[k]
            if v < 255:
                seen[k] = v + 1
            if not v and n & 15 == 0:  # first deliveries: a re-read record's age is not a latency
                lat[(HALF if killed else 0) + (n >> 4) % HALF] = clock() - t
            n += 1
            if killed and not ctl[FIRST + m.partition()]:
                now = clock()
                if now > killed:
                    ctl[FIRST + m.partition()] = now
        ctl[CONSUMED + idx] = n
    del ctl, lat, seen
    c.close()


def _assignment(gs, gidx):
    members, _, _ = G.describe_group(gs, gidx)
    return {m["pid"]: [p for _, p in m["assigned"]] for m in members if m["state"] == "Stable"}


def run(producers=2, members=3, partitions=4, records=400_000, rate=50_000, strategy="cooperative-sticky",
        out=sys.stdout, namespace=None, settle=0.5):
    """Returns a dict of what it printed (for tests)."""
    ns = namespace or "demo%d" % os.getpid()
    per = records // producers
    sh = Shared(producers, per, members)
    say = lambda *a: print(*a, file=out, flush=True)  # noqa: E731
    pids = []
    result = {}
    try:
        with AdminClient({"shm.namespace": ns}) as a:
            a.create_topics([NewTopic("demo", partitions)])["demo"].result()
        say("shmbroker demo: %d producers -> topic 'demo' (%d partitions) -> consumer group 'demo' of %d "
            "processes (%s)" % (producers, partitions, members, strategy))
        say("  %d records of 64 B, each producer paced at %s records/s; one member is SIGKILLed midway"
            % (records, "{:,}".format(rate) if rate else "full speed"))
        mpids = [fork(_member, ns, sh, i, strategy) for i in range(members)]
        pids += mpids
        from .namespace import Namespace
        nsx = Namespace(ns)
        gs = G.Groups(nsx)
        end = time.monotonic() + 30
        while True:
            gidx = gs.group_index("demo", create=False)
            view = _assignment(gs, gidx) if gidx is not None else {}
            if sorted(p for v in view.values() for p in v) == list(range(partitions)) and len(view) == members:
                break
            if time.monotonic() > end:
                raise SystemExit("the group did not form within 30 s")
            time.sleep(0.01)
        say("  group formed: %s; producers start %.1f s later" % (
            ", ".join("pid %d <- %s" % (pid, v) for pid, v in sorted(view.items())), settle))
        time.sleep(settle)  # fresh processes' first moments after fork are slow (page faults): not the broker's
        t0 = time.monotonic()
        ppids = [fork(_producer, ns, sh, i, rate, partitions) for i in range(producers)]
        pids += ppids
        killed = None
        victim_parts = []
        last_print = t0
        deadline = t0 + 120
        while True:
            now = time.monotonic()
            done = int(np.count_nonzero(sh.seen))
            if killed is None and done >= sh.n // 2:
                view = _assignment(gs, gidx)
                killed = mpids[0]
                victim_parts = view.get(killed, [])
                os.kill(killed, signal.SIGSTOP)  # frozen first: nothing it does is taken for a survivor's
                sh.ctl[KILL_T] = time.monotonic_ns()
                os.kill(killed, signal.SIGKILL)
                os.waitpid(killed, 0)
                say("  t=%5.2fs  SIGKILL consumer pid %d (partitions %s) with %s records consumed"
                    % (now - t0, killed, victim_parts, "{:,}".format(done)))
            if killed and victim_parts and "resume" not in result and all(sh.ctl[FIRST + p] for p in victim_parts):
                first = min(sh.ctl[FIRST + p] for p in victim_parts) - sh.ctl[KILL_T]
                last = max(sh.ctl[FIRST + p] for p in victim_parts) - sh.ctl[KILL_T]
                result["resume"] = (first / 1e6, last / 1e6)
                say("  t=%5.2fs  its partitions resumed on the survivors: first record after %.1f ms, all %d "
                    "after %.1f ms" % (time.monotonic() - t0, first / 1e6, len(victim_parts), last / 1e6))
            if now - last_print >= 0.5:
                last_print = now
                say("  t=%5.2fs  consumed %9s of %s distinct  members %s" % (
                    now - t0, "{:,}".format(done), "{:,}".format(sh.n),
                    " ".join("{:,}".format(int(sh.ctl[CONSUMED + i])) for i in range(members))))
            if done == sh.n and all(reap(p) for p in ppids):
                break
            if now > deadline:
                raise SystemExit("not everything was consumed within 120 s: %d of %d" % (done, sh.n))
            time.sleep(0.005)
        took = time.monotonic() - t0
        sh.ctl[STOP] = 1
        for p in mpids[1:]:
            os.waitpid(p, 0)
        twice = int(np.count_nonzero(sh.seen > 1))
        missing = int(np.count_nonzero(sh.seen == 0))
        result.update(records=sh.n, missing=missing, twice=twice, seconds=took, rate=sh.n / took)
        for name, part in (("before", sh.lat[:, :HALF]), ("after", sh.lat[:, HALF:])):
            lat = part.ravel()  # every member's samples, the killed one's too
            lat = lat[lat > 0] / 1e3
            if len(lat):
                result[name] = (len(lat), float(np.percentile(lat, 50)), float(np.percentile(lat, 99)),
                                float(np.percentile(lat, 99.9)))
        say("results")
        say("  nothing lost: %s of %s records consumed at least once; %s twice (the killed member's "
            "uncommitted tail, re-read from its last commit)" % ("{:,}".format(sh.n - missing),
                                                                "{:,}".format(sh.n), "{:,}".format(twice)))
        if "resume" in result:
            say("  kill -> resume: %.1f ms to the first record on its partitions, %.1f ms to all of them"
                % result["resume"])
        for name, what in (("before", "before the kill"), ("after", "after the kill, while the survivors also "
                                                           "re-read the dead member's uncommitted tail")):
            if name in result:
                say("  end-to-end latency %s (produce -> consume, first deliveries, 64 B, %d samples): p50 %.1f us"
                    "  p99 %.1f us  p99.9 %.1f us" % ((what,) + result[name]))
        say("  throughput: %s records/s end to end (%.2f s for %s records)" % (
            "{:,}".format(int(result["rate"])), took, "{:,}".format(sh.n)))
        if missing:
            say("  LOST %d records" % missing)
        gs.close()
        nsx.close()
        return result
    finally:
        sh.ctl[STOP] = 1
        for p in pids:
            reap(p, 5.0, kill=True)
        destroy(ns)
