"""shm.latency.histogram: produce->poll latency per consumer group and
partition in shared memory (broker/latency_hist.py, ext/shmlat.h): exact
counts, percentiles inside independently measured bounds, the C hot paths
and their bounds checks, off means nothing, corrupt segments give one clear
line, `stat` lines and `--hgrm` files."""
import collections
import itertools
import logging
import os
import random
import re
import subprocess
import sys
import time

import pytest

from broker import Consumer, Producer, TopicPartition
from broker.admin import AdminClient, NewTopic
from broker.namespace import destroy
from shm import PartitionLog
from shm._native import _fastlog
from shm.errors import ConfigError, CorruptSegmentError, KafkaException

from broker import latency_hist as LH

_n = itertools.count()
L = _fastlog.lat_layout()
HGRM_ROW = re.compile(r"^\s*(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+)(?:\s+(\d+\.\d+|inf))?$")
STAT_ROW = re.compile(r"^(\S+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+\.\d)\s+(\d+\.\d)\s+(\d+\.\d)\s+(\d+\.\d)(  \(.*\))?$")
STAT_HEADER = ["GROUP", "TOPIC", "PARTITION", "LAT-COUNT", "P50-US", "P99-US", "P99.9-US", "MAX-US"]


@pytest.fixture
def lns():
    """A namespace for one test; afterwards destroyed and checked: no segment of it is left."""
    name = "sbtlat%d_%d" % (os.getpid(), next(_n))
    try:
        yield name
    finally:
        destroy(name)
        left = [f for f in os.listdir("/dev/shm") if f.startswith("shmb.%s" % name)]
        assert not left, left


def lat_files(ns):
    return sorted(f for f in os.listdir("/dev/shm") if f.startswith("shmb.%s.lat." % ns))


def make_topic(ns, name, partitions=1, **config):
    with AdminClient({"shm.namespace": ns}) as a:
        for f in a.create_topics([NewTopic(name, partitions, config={k: str(v) for k, v in config.items()}
                                           or None)]).values():
            f.result()


def consumer(ns, group="g", on=True, **kw):
    conf = {"shm.namespace": ns, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    if on is not None:
        conf["shm.latency.histogram"] = on
    conf.update(kw)
    return Consumer(conf)


def run(ns, *args):
    env = dict(os.environ, SHMBROKER_NAMESPACE=ns)
    return subprocess.run([sys.executable, "-m", "broker", *args], capture_output=True, text=True, env=env,
                          timeout=60)


class Bounds:
    """Each delivered record's latency, bounded independently: the hand-out
    happens inside the poll()/consume() call that returns the record, so
    it is between (call start - timestamp) and (call end - timestamp) on
    the records' clock (wall time, as the producer stamps them)."""

    def __init__(self):
        self.lo, self.hi = [], []
        self.per_tp = collections.Counter()

    def call(self, fn, *args):
        t0 = time.time_ns()
        out = fn(*args)
        t1 = time.time_ns()
        msgs = out if isinstance(out, list) else [out] if out is not None else []
        msgs = [m for m in msgs if m.error() is None]
        for m in msgs:
            self.lo.append(t0 - m.timestamp_ns())
            self.hi.append(t1 - m.timestamp_ns())
            self.per_tp[m.partition()] += 1
        return msgs

    def check(self, s):
        """A latency() / stat summary (us) lies inside the bounds (allowing
        the histogram's resolution: 1/128 of the value, 8 ns, plus the
        HdrHistogram's 3 digits it goes through)."""
        lo, hi = min(self.lo) / 1e3, max(self.hi) / 1e3
        assert lo * 0.99 - 0.02 <= s["min"] <= s["p50"] <= s["p99"] <= s["p99.9"] <= s["max"] <= hi * 1.01 + 0.02, \
            (lo, hi, s)


# -- the C side
def test_bucket_index_is_hdrhistogram_log_linear():
    """Every value lands in the bucket whose range holds it; buckets are at
    most 1% of their value wide from 1 us up (1/128 from 1024 ns: 2 significant digits), 8 ns
    at the bottom; out-of-range values clamp to 0 and 60 s."""
    assert L["counts"] == 3456 and L["slot_bytes"] == (L["slot_words"] + L["counts"]) * 8
    lowest = [_fastlog.lat_lowest(i) for i in range(L["counts"])]
    assert lowest[0] == 0 and all(a < b for a, b in zip(lowest, lowest[1:]))
    rng = random.Random(5)
    values = [0, 1, 7, 8, 2047, 2048, 2049, 999, 1000, 1001, L["max_ns"]] + \
             [int(10 ** rng.uniform(0, 10.77)) for _ in range(3000)]
    for v in values:
        i = _fastlog.lat_index(v)
        top = lowest[i + 1] if i + 1 < L["counts"] else 2 * lowest[i]
        assert lowest[i] <= v < top, (v, i)
        if v >= 1000:
            assert top - lowest[i] <= v / (128 if v >= 1024 else 100)
        else:
            assert top - lowest[i] <= 8
    assert _fastlog.lat_index(-5) == 0 and _fastlog.lat_index(10 ** 12) == _fastlog.lat_index(L["max_ns"])
    assert _fastlog.lat_index(L["max_ns"]) < L["counts"]
    with pytest.raises(ValueError):
        _fastlog.lat_lowest(L["counts"])


def test_fastlog_hot_paths_and_bounds_checks(logs):
    """next_message and LatQueue.popleft (C) and lat_record (the Python
    paths' call) count each record handed out once; read_messages (a fetch)
    counts nothing; set_latency checks the slot against the buffer; None,
    invalidate (close) stop counting."""
    import numpy as np
    log = logs.create(slot_count=64, data_capacity=1 << 16)
    fast = log._fast
    buf = bytearray(512 + L["slot_bytes"])
    counts = np.frombuffer(buf, np.uint64, L["counts"], 512 + L["slot_words"] * 8)
    words = np.frombuffer(buf, np.uint64, L["slot_words"], 512)
    for bad_off in (-8, 4, len(buf) - L["slot_bytes"] + 8, 1 << 40):
        with pytest.raises((ValueError, OverflowError)):
            fast.set_latency(buf, bad_off)
    with pytest.raises(ValueError, match="does not fit"):
        fast.set_latency(bytearray(100), 0)
    with pytest.raises(BufferError):
        fast.set_latency(bytes(len(buf)), 0)  # read-only
    with pytest.raises(TypeError):
        fast.set_latency(buf)
    t0 = time.time_ns()
    for i in range(8):
        log.append(b"v%d" % i)
    fast.lat_record(time.time_ns())  # no slot yet: nothing
    assert int(counts.sum()) == 0
    fast.set_latency(buf, 512)
    m, nxt, _ = fast.next_message(0, 0, 1, "t", 0, collections.deque())
    assert m.offset() == 0 and nxt == 1 and int(counts.sum()) == 1
    msgs, nxt, _ = fast.read_messages(1, 256, "t", 0)
    assert len(msgs) == 7 and int(counts.sum()) == 1  # fetched, not handed out
    q = _fastlog.LatQueue(fast)
    q.extend(msgs)
    assert isinstance(q, collections.deque) and q[0].offset() == 1 and len(q) == 7
    got = [q.popleft().offset() for _ in range(3)]
    assert got == [1, 2, 3] and int(counts.sum()) == 4
    q.clear()  # dropped (a seek, a close): never counted
    assert not q and int(counts.sum()) == 4
    with pytest.raises(IndexError):
        q.popleft()
    fast.lat_record(time.time_ns() + 10 ** 9)  # a timestamp from the future: clamped to 0, counted apart
    fast.lat_record(time.time_ns() - 100 * 10 ** 9)  # older than 60 s: clamped to 60 s, counted apart
    t1 = time.time_ns()
    assert int(counts.sum()) == 6 and int(words[L["below"]]) == 1 and int(words[L["above"]]) == 1
    assert counts[0] == 1 and counts[_fastlog.lat_index(L["max_ns"])] == 1
    idx = [i for i in np.flatnonzero(counts).tolist() if i not in (0, _fastlog.lat_index(L["max_ns"]))]
    assert sum(int(counts[i]) for i in idx) == 4
    assert all(_fastlog.lat_lowest(i) <= t1 - t0 for i in idx)  # each no longer than append to now
    fast.set_latency(None)
    fast.lat_record(time.time_ns())
    assert int(counts.sum()) == 6
    fast.set_latency(buf, 512)
    del counts, words
    with pytest.raises(BufferError):
        buf.extend(b"x")  # exported to the FastLog
    log.close()  # invalidates the view: the buffer is released, nothing more is counted
    buf.extend(b"x")  # resizable again: nobody exports it
    fast.lat_record(time.time_ns())
    assert int(np.frombuffer(buf, np.uint64, L["counts"], 512 + L["slot_words"] * 8).sum()) == 6


# -- the consumer
@pytest.mark.parametrize("wait", ["adaptive", "spin", "sleep"])
def test_counts_exact_and_percentiles_bounded_live_producer(lns, children, wait):
    """A producer process writes while the consumer polls (the C spin path,
    the futex-sleep fallback, fetched batches): per partition, the count is
    exactly the records delivered; percentiles are ordered and inside the
    latencies measured around each call."""
    make_topic(lns, "t", 2)
    n = 400

    def produce(ns):
        with Producer({"shm.namespace": ns}) as p:
            for i in range(n):
                p.produce("t", b"x" * 64, partition=i % 2)
                end = time.monotonic() + 2e-5  # a trickle, so polls find records one at a time
                while time.monotonic() < end:
                    pass
        return n

    with consumer(lns, **{"shm.wait": wait}) as c:
        c.assign([TopicPartition("t", 0, 0), TopicPartition("t", 1, 0)])
        children.start(produce, lns)
        b = Bounds()
        end = time.monotonic() + 60
        while sum(b.per_tp.values()) < n and time.monotonic() < end:
            b.call(c.poll, 1.0)
        assert children.results(timeout=60) == [n]
        lat = c.latency()
        assert {tp.partition: s["count"] for tp, s in lat.items()} == {0: 200, 1: 200} == dict(b.per_tp)
        for s in lat.values():
            b.check(s)
            assert s["out_of_range"] == 0


def test_counts_exact_with_batches_retention_and_undelivered(lns):
    """consume(n), poll() over fetched batches, a retention.ms topic (the
    Python read path), a seek that drops a fetched batch, and a close with
    records fetched but not handed out: the count is the records delivered."""
    make_topic(lns, "t", 3, **{"retention.ms": 600000})
    with Producer({"shm.namespace": lns}) as p:
        for i in range(300):
            p.produce("t", b"y" * 64, partition=i % 3)
    b = Bounds()
    with consumer(lns) as c:
        c.assign([TopicPartition("t", p, 0) for p in range(3)])
        for _ in range(20):
            b.call(c.poll, 5.0)  # the first poll of a partition fetches its 100 records
        c.seek(TopicPartition("t", 0, 0))  # its fetched rest is dropped, then read again
        while sum(b.per_tp.values()) < 250:
            b.call(c.consume, 40, 5.0)
        delivered = dict(b.per_tp)
        lat = c.latency()
    assert sum(delivered.values()) >= 250
    assert {tp.partition: s["count"] for tp, s in lat.items()} == delivered
    for s in lat.values():
        b.check(s)
    # another consumer of the group on the same partitions adds to the same histograms
    with consumer(lns) as c2:
        c2.assign([TopicPartition("t", 1, 0)])
        more = b.call(c2.consume, 100, 5.0)
        assert len(more) == 100
        assert c2.latency()[TopicPartition("t", 1)]["count"] == delivered[1] + 100


def test_subscribe_counts_per_partition(lns):
    make_topic(lns, "s", 2)
    with Producer({"shm.namespace": lns}) as p:
        for i in range(50):
            p.produce("s", b"z", partition=i % 2)
    with consumer(lns, group="gs") as c:
        c.subscribe(["s"])
        b = Bounds()
        end = time.monotonic() + 30
        while sum(b.per_tp.values()) < 50 and time.monotonic() < end:
            b.call(c.poll, 0.5)
        lat = c.latency()
        assert sorted(tp.partition for tp in lat) == [0, 1]
        assert {tp.partition: s["count"] for tp, s in lat.items()} == dict(b.per_tp) == {0: 25, 1: 25}
        for s in lat.values():
            b.check(s)
    assert lat_files(lns) == ["shmb.%s.lat.0" % lns]


def test_off_creates_nothing(lns):
    make_topic(lns, "t", 1)
    with Producer({"shm.namespace": lns}) as p:
        for _ in range(20):
            p.produce("t", b"q")
    for on in (None, False, "false"):
        with consumer(lns, on=on) as c:
            c.assign([TopicPartition("t", 0, 0)])
            assert len(c.consume(20, 5.0)) == 20
            assert type(c._parts[("t", 0)].buf) is collections.deque  # the plain hand-out path
            with pytest.raises(KafkaException, match="shm.latency.histogram=true"):
                c.latency()
    assert lat_files(lns) == []
    r = run(lns, "stat", "--count", "1")
    assert r.returncode == 0 and "LAT-COUNT" not in r.stdout
    r = run(lns, "stat", "--hgrm", os.devnull)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "shm.latency.histogram=true" in r.stderr


def test_config_errors(lns):
    with pytest.raises(ConfigError, match="shm.latency.histogram must be true or false, got 'maybe'"):
        consumer(lns, on="maybe")
    with pytest.raises(ConfigError, match="needs group.id"):
        Consumer({"shm.namespace": lns, "shm.latency.histogram": True})
    with pytest.raises(ConfigError, match="consumer key"):
        Producer({"shm.namespace": lns, "shm.latency.histogram": True})


def test_stat_lines_hgrm_and_group_delete(lns, tmp_path):
    make_topic(lns, "t", 2)
    with Producer({"shm.namespace": lns}) as p:
        for i in range(90):
            p.produce("t", b"w" * 64, partition=0 if i < 60 else 1)
    b = Bounds()
    with consumer(lns) as c:
        c.assign([TopicPartition("t", 0, 0), TopicPartition("t", 1, 0)])
        while sum(b.per_tp.values()) < 90:
            b.call(c.consume, 90, 5.0)
    r = run(lns, "stat", "--count", "1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    at = [i for i, l in enumerate(lines) if l.split() == STAT_HEADER]
    assert len(at) == 1
    rows = [STAT_ROW.match(l) for l in lines[at[0] + 1:at[0] + 3]]
    assert all(rows), lines
    assert [(m[1], m[2], int(m[3]), int(m[4])) for m in rows] == [("g", "t", 0, 60), ("g", "t", 1, 30)]
    for m in rows:
        b.check({"min": float(m[5]) - 0.05, "p50": float(m[5]), "p99": float(m[6]), "p99.9": float(m[7]),
                 "max": float(m[8])})
    h = tmp_path / "lat.hgrm"
    r = run(lns, "stat", "--hgrm", str(h), "--group", "g")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Wrote %s: 90 records, produce->poll latency of g t[0], g t[1]\n" % h
    text = h.read_text()
    rows = [m for m in map(HGRM_ROW.match, text.splitlines()) if m]
    assert rows and int(rows[-1][3]) == 90 and float(rows[-1][2]) == 1.0
    assert all(float(a[1]) <= float(z[1]) and int(a[3]) <= int(z[3]) for a, z in zip(rows, rows[1:]))
    assert re.search(r"#\[Max\s+=\s+[\d.]+, TotalCount\s+=\s+90\.000\]", text)
    assert max(b.hi) / 1e3 * 1.01 + 0.02 >= float(rows[-1][1]) >= min(b.lo) / 1e3 * 0.99 - 0.02
    r = run(lns, "stat", "--hgrm", str(h), "--group", "g", "--topic", "t", "--partition", "1")
    assert r.returncode == 0 and "30 records" in r.stdout and "g t[1]" in r.stdout
    r = run(lns, "stat", "--hgrm", str(h), "--group", "nope")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no consumer group 'nope'" in r.stderr
    r = run(lns, "stat", "--hgrm", str(h), "--topic", "t")
    assert r.returncode == 2 and "give --group too" in r.stderr
    assert lat_files(lns) == ["shmb.%s.lat.0" % lns]
    with AdminClient({"shm.namespace": lns}) as a:
        for f in a.delete_consumer_groups(["g"]).values():
            f.result()
    assert lat_files(lns) == []  # gone with its group


def _corrupt(ns, off, data):
    path = "/dev/shm/shmb.%s.lat.0" % ns
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(data)


@pytest.mark.parametrize("damage", ["header", "count", "size"])
def test_corrupt_segment_is_one_clear_line(lns, damage, tmp_path):
    make_topic(lns, "t", 1)
    with Producer({"shm.namespace": lns}) as p:
        p.produce("t", b"a")
    with consumer(lns) as c:
        c.assign([TopicPartition("t", 0, 0)])
        assert len(c.consume(1, 5.0)) == 1
    if damage == "header":
        _corrupt(lns, 12, b"\xff\xff\xff\xff")  # the layout word
        want = "damaged or from another shmbroker release"
    elif damage == "count":
        _corrupt(lns, LH.HEADER + L["slot_words"] * 8 + 8 * 100, (1 << 60).to_bytes(8, "little"))
        want = "holds more than 2\\*\\*50"
    else:
        os.truncate("/dev/shm/shmb.%s.lat.0" % lns, 4096)
        want = "4096 bytes"
    r = run(lns, "stat", "--count", "1")
    assert r.returncode == 0, r.stderr  # the rest of the view is there
    bad = [l for l in r.stdout.splitlines() if "latency histogram unreadable" in l]
    assert len(bad) == 1 and re.search(want, bad[0]) and bad[0].startswith("g "), r.stdout
    assert "TOPIC" in r.stdout and r.stderr == ""
    r = run(lns, "stat", "--hgrm", str(tmp_path / "x.hgrm"), "--group", "g")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and re.search(want, r.stderr), r.stderr
    assert r.stderr.startswith("Error: ") and "Traceback" not in r.stderr
    with consumer(lns) as c:  # a consumer meets it at its assignment: a clear exception, never a crash
        if damage == "count":  # the header is fine: it counts on; latency() reports the damage
            c.assign([TopicPartition("t", 0, 0)])
            with pytest.raises(CorruptSegmentError, match=want):
                c.latency()
        else:
            with pytest.raises(CorruptSegmentError, match=want):
                c.assign([TopicPartition("t", 0, 0)])


def test_slot_table_full_then_reused_after_topic_delete(lns, caplog):
    """A group's segment times LH.SLOTS partitions; more are not timed (one
    warning); a deleted topic's slots are emptied and reused."""
    make_topic(lns, "wide", LH.SLOTS + 2, **{"retention.bytes": 4096})
    with consumer(lns) as c, caplog.at_level(logging.WARNING, logger="broker.latency"):
        c.assign([TopicPartition("wide", p, 0) for p in range(LH.SLOTS + 2)])
        warned = [r for r in caplog.records if "partition slots is in use" in r.getMessage()]
        assert len(warned) == 1
        timed = sum(type(part.buf) is not collections.deque for part in c._parts.values())
        assert timed == LH.SLOTS
    with Producer({"shm.namespace": lns}) as p:
        p.produce("wide", b"x", partition=0)
    with consumer(lns) as c:
        c.assign([TopicPartition("wide", 0, 0)])
        assert len(c.consume(1, 5.0)) == 1
        assert c.latency()[TopicPartition("wide", 0)]["count"] == 1
    with AdminClient({"shm.namespace": lns}) as a:
        for f in a.delete_topics(["wide"]).values():
            f.result()
    make_topic(lns, "next", 1)
    with Producer({"shm.namespace": lns}) as p:
        for _ in range(3):
            p.produce("next", b"x")
    with consumer(lns) as c:
        c.assign([TopicPartition("next", 0, 0)])
        assert len(c.consume(3, 5.0)) == 3
        assert c.latency()[TopicPartition("next", 0)]["count"] == 3  # a reused slot starts empty
