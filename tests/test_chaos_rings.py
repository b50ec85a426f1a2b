"""Chaos on tiny rings that wrap: random SIGKILL and SIGSTOP of producers,
group consumers and the supervisor while records of 0 B to 4 KiB flow
through an overwrite topic and a block topic of 64 KiB per partition.

Asserts: no partition counted a corrupt skip and no consumer got a torn
record; every record a producer saw committed to the block topic is
consumed by the group (nothing lost); appends and group commits never stall
for long (the longest stalls are printed); destroy leaves nothing in
/dev/shm.  SHMBROKER_RING_CHAOS_SECONDS sets the length (20 s in the suite;
issue 8's closing run used 600).

Children write what they did to their own files (buffered, flushed before
each commit: a killed child loses only what the log redelivers anyway)."""
import collections
import os
import random
import signal
import struct
import time
import zlib

from broker import Consumer, KafkaException, Producer
from broker.admin import AdminClient, NewTopic
from broker.namespace import Namespace, destroy
from broker.procs import fork, reap

from conftest import deadline_wait
from test_group_crash import live_supervisor

SECONDS = float(os.environ.get("SHMBROKER_RING_CHAOS_SECONDS", "20"))
TOPICS = {"ow": "overwrite", "bl": "block"}
PARTS = 2
MAXREC = 4096
KEY = struct.Struct("<III")  # producer id, seq, crc32 of the value
SIZES = [(0, 0), (1, 64), (200, 300), (1000, MAXREC - KEY.size)]


def conf(ns, **kw):
    c = {"shm.namespace": ns}
    c.update(kw)
    return c


def producer_main(ns, ident, out, stop):
    rng = random.Random(ident)
    f = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    done = []
    with Producer(conf(ns, **{"shm.block.timeout.ms": 120000})) as p:
        seq = 0
        while not os.path.exists(stop):
            lo, hi = rng.choice(SIZES)
            value = rng.randbytes(rng.randint(lo, hi))
            topic = rng.choice(list(TOPICS))
            p.produce(topic, value, key=KEY.pack(ident, seq, zlib.crc32(value)), partition=rng.randrange(PARTS))
            if topic == "bl":
                done.append(b"%d\n" % seq)  # produce returned: the record is in the log
                if len(done) >= 20:
                    os.write(f, b"".join(done))
                    del done[:]
            seq += 1
    os.write(f, b"".join(done) + b"END\n")


def consumer_main(ns, out, stop):
    f = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    lines = []
    c = Consumer(conf(ns, **{"group.id": "g", "auto.offset.reset": "earliest", "enable.auto.commit": False,
                             "max.poll.interval.ms": 1000, "session.timeout.ms": 1000}))
    c.subscribe(list(TOPICS))
    pending = 0
    try:
        while not os.path.exists(stop):
            m = c.poll(0.05)
            if m is not None and m.error() is not None:
                lines.append(b"V %d\n" % m.error().code())
            elif m is not None:
                key, value = m.key(), m.value() or b""
                ident, seq, crc = KEY.unpack(key)
                if zlib.crc32(value) != crc:
                    lines.append(b"X %s %d %d\n" % (m.topic().encode(), m.partition(), m.offset()))
                elif m.topic() == "bl":
                    lines.append(b"M %d %d\n" % (ident, seq))
                pending += 1
            # commit every 10 records, and whatever is left when idle (block-topic
            # producers wait for the group's commits, as a Kafka client's timer would)
            if pending >= 10 or (m is None and pending):
                pending = 0
                os.write(f, b"".join(lines))  # before the commit: what it covers is on file
                del lines[:]
                try:
                    c.commit(asynchronous=False)
                except KafkaException as exc:
                    lines.append(b"F %d\n" % exc.args[0].code())
        os.write(f, b"".join(lines))
        c.close()
    except BaseException as exc:
        os.write(f, b"".join(lines) + ("E %r\n" % (exc,)).encode())
        raise


def ring_state(logs):
    """What a stall report needs: per partition the claim, the finished
    watermark, the floor, and the tag of the oldest unfinished offset."""
    out = {}
    for k, log in logs.items():
        st = log.stats()
        o = st["done"]
        tag = struct.unpack_from("<Q", log._seg.mm, 4096 + (o % log.slot_count) * 64)[0]
        out["%s-%d" % k] = dict(high=st["high"], done=o, floor=st["floor"], room_waits=st["room_waits"],
                                block_waits=st["block_waits"], tombstones=st["tombstones"],
                                oldest=(tag >> 28, (tag >> 2) & ((1 << 26) - 1), tag & 3))
    return out


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        return [line for line in f.read().split(b"\n") if line]


def test_chaos_on_wrapping_rings(ns, tmp_path):
    admin = AdminClient(conf(ns))
    for name, mode in TOPICS.items():
        admin.create_topics([NewTopic(name, PARTS, config={
            "retention.bytes": 65536, "max.message.bytes": MAXREC, "shm.overflow": mode})])[name].result()
    rng = random.Random(int(os.environ.get("SHMBROKER_CHAOS_SEED", "11")))
    pstop, cstop = str(tmp_path / "pstop"), str(tmp_path / "cstop")
    kids, producers, members, paths = set(), {}, {}, []
    ids = iter(range(1, 1 << 30))

    def spawn_producer():
        ident = next(ids)
        pid = fork(producer_main, ns, ident, str(tmp_path / ("p%d" % ident)), pstop)
        producers[pid] = ident
        kids.add(pid)

    def spawn_member():
        path = str(tmp_path / ("c%d" % next(ids)))
        paths.append(path)
        pid = fork(consumer_main, ns, path, cstop)
        members[pid] = path
        kids.add(pid)

    n = Namespace(ns, create=False)
    logs = {(t, p): n.open_partition(n.topic(t), p) for t in TOPICS for p in range(PARTS)}
    events = collections.Counter()
    stopped = {}  # pid -> when to SIGCONT
    last_move = {"appends": time.monotonic(), "commits": time.monotonic()}
    seen = {"appends": -1, "commits": -1}
    stalls = {"appends": 0.0, "commits": 0.0}

    def sample():
        now = time.monotonic()
        for pid, when in list(stopped.items()):
            if now >= when:
                os.kill(pid, signal.SIGCONT)
                del stopped[pid]
        for kind, val in (("appends", sum(log.watermarks()[1] for log in logs.values())),
                          ("commits", sum(logs[("bl", p)].floor for p in range(PARTS)))):
            if val != seen[kind]:
                seen[kind], last_move[kind] = val, now
            stalls[kind] = max(stalls[kind], now - last_move[kind])

    try:
        for _ in range(3):
            spawn_member()
        for _ in range(3):
            spawn_producer()
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            action = rng.choice(["kill_producer", "stop_producer", "kill_member", "stop_member", "kill_supervisor"])
            running = [pid for pid in (producers if "producer" in action else members) if pid not in stopped]
            if action == "kill_supervisor":
                sup = live_supervisor(ns)
                if sup:
                    os.kill(sup, signal.SIGKILL)
                    events[action] += 1
            elif running:
                victim = rng.choice(running)
                if action.startswith("kill"):
                    os.kill(victim, signal.SIGKILL)
                    assert reap(victim, 10)
                    kids.discard(victim)
                    if victim in producers:
                        del producers[victim]
                        spawn_producer()
                    else:
                        del members[victim]
                        spawn_member()
                else:
                    os.kill(victim, signal.SIGSTOP)
                    stopped[victim] = time.monotonic() + rng.uniform(0.05, 1.5)
                events[action] += 1
            pause = time.monotonic() + rng.uniform(0.02, 0.4)  # chaos timing, not synchronisation
            while time.monotonic() < pause:
                sample()
                time.sleep(0.005)
            assert stalls["appends"] < 30 and stalls["commits"] < 30, (stalls, events, ring_state(logs))
        for pid in list(stopped):
            os.kill(pid, signal.SIGCONT)
        stopped.clear()
        # wind down: producers finish, then the group consumes every block-topic record on file
        open(pstop, "w").close()
        for pid in list(producers):
            assert reap(pid, 60), "producer %d did not finish: %s" % (pid, ring_state(logs))
            kids.discard(pid)
        for ident in producers.values():
            lines = read_lines(str(tmp_path / ("p%d" % ident)))
            assert lines and lines[-1] == b"END", "producer %d did not end cleanly" % ident
        produced = set()
        for path in tmp_path.glob("p[0-9]*"):
            ident = int(path.name[1:])
            produced |= {(ident, int(x)) for x in read_lines(str(path)) if x != b"END"}

        def consumed():
            got = set()
            for path in paths:
                for line in read_lines(path):
                    if line.startswith(b"M "):
                        _, a, b = line.split()
                        got.add((int(a), int(b)))
            return got
        deadline_wait(lambda: produced <= consumed(), 120, "the group to consume every block-topic record")
        open(cstop, "w").close()
        for pid in list(members):
            assert reap(pid, 60, kill=True), "member %d did not finish" % pid
            kids.discard(pid)
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        for pid in kids:  # on failure: no child outlives the test
            reap(pid, 0, kill=True)

    bad = [line for path in paths for line in read_lines(path) if line[:1] in (b"X", b"E")]
    assert bad == [], bad[:10]
    st = {k: log.stats() for k, log in logs.items()}
    for log in logs.values():
        log.close()
    n.close()
    assert sum(s["corrupt_skips"] for s in st.values()) == 0, st
    assert sum(s["bytes_claimed"] for k, s in st.items() if k[0] == "ow") > 4 * 65536  # the rings wrapped
    assert all(events[k] > 0 for k in ("kill_producer", "stop_producer", "kill_member", "stop_member",
                                        "kill_supervisor")), events
    print("ring chaos: %.0f s, %d events %s, %d block-topic records produced and consumed, "
          "%d appends in all, tombstones %d, room waits %d, block waits %d, laps seen %d, "
          "max stall: appends %.2f s, group commits %.2f s"
          % (SECONDS, sum(events.values()), dict(events), len(produced), sum(s["high"] for s in st.values()),
             sum(s["tombstones"] for s in st.values()), sum(s["room_waits"] for s in st.values()),
             sum(s["block_waits"] for s in st.values()), sum(s["laps_seen"] for s in st.values()),
             stalls["appends"], stalls["commits"]))
    destroy(ns)
    assert not [f for f in os.listdir("/dev/shm") if ns in f]
