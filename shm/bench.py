"""Measurements of the partition log, each beside its baseline in one run.

Used by ``perf/ring_bench.py`` (every parameter a flag) and, until the
broker layer exists, by ``shmbroker demo``.  Latencies are one-way, from a
``perf_counter_ns`` stamp taken by the producer as it appends (the record's
own ``timestamp_ns``; the Pipe baseline packs it into its 64 bytes) to the
moment the consumer holds the record (CLOCK_MONOTONIC, comparable
across processes); warm-up samples are dropped.
"""
import ctypes
import mmap
import multiprocessing as mp
import os
import shutil
import struct
import subprocess
import sys
import time

import numpy as np

from .log import PartitionLog
from .segment import unlink

CTX = mp.get_context("fork")
STAMP = struct.Struct("<q")


def _tight_sleep_slack():
    """Ask for 1 ns timer slack so a 20 us sleep is ~20 us, not ~70 us."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK
    except Exception:
        pass


def percentiles(ns):
    a = np.asarray(ns, dtype=np.float64) / 1000.0
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "p99.9": float(np.percentile(a, 99.9)),
            "max": float(a.max()), "n": int(a.size)}


def start_child(target, *args, timeout=60):
    """Start target(*args, conn) in a forked process and wait (with a
    deadline) for it to send its first message, "ready".  Returns (proc, conn)."""
    a, b = CTX.Pipe()
    proc = CTX.Process(target=target, args=args + (b,), daemon=True)
    proc.start()
    recv(a, timeout, "%s to start" % target.__name__)
    return proc, a


def recv(conn, timeout, what):
    """conn.recv() with a deadline: a dead child raises, never hangs."""
    if not conn.poll(timeout):
        raise RuntimeError("timed out after %ss waiting for %s" % (timeout, what))
    return conn.recv()


def _pace(pace_ns):
    if pace_ns > 0:
        time.sleep(pace_ns / 1e9)


# ---- latency -----------------------------------------------------------------
def _log_consumer(name, mode, total, conn):
    log = PartitionLog.attach(name)
    lat = np.empty(total, dtype=np.int64)
    pc = time.perf_counter_ns
    conn.send("ready")
    o = 0
    poll = log.poll
    while o < total:
        r = poll(o, 10, mode)
        t = pc()  # the consumer holds the record now
        if r is None or r.status != "ok":
            raise RuntimeError("latency consumer: offset %d gave %r" % (o, r))
        lat[o] = t - r[4]  # the record's timestamp_ns, stamped by the producer
        o += 1
    conn.send(lat.tobytes())
    log.close()


def log_latency(mode="spin", samples=20000, warmup=2000, pace_us=20.0, size=64):
    """One-way latency of *size*-byte records through a partition log."""
    name = "/shmbench_lat_%d" % os.getpid()
    total = samples + warmup
    log = PartitionLog.create(name, slot_count=1 << 16, data_capacity=1 << 24, max_record=max(size, 64))
    try:
        p, a = start_child(_log_consumer, name, mode, total)
        _tight_sleep_slack()
        payload = b"\0" * size
        pc, append, pace_ns = time.perf_counter_ns, log.append, int(pace_us * 1000)
        for _ in range(total):
            _pace(pace_ns)
            append(payload, timestamp_ns=pc())
        lat = np.frombuffer(recv(a, 60, "the latency consumer"), dtype=np.int64)[warmup:]
        p.join(10)
        return percentiles(lat)
    finally:
        log.close()
        unlink(name)


def _pipe_receiver(conn, total, out):  # out: the control pipe
    lat = np.empty(total, dtype=np.int64)
    pc = time.perf_counter_ns
    out.send("ready")
    for i in range(total):
        b = conn.recv_bytes()
        t = pc()
        lat[i] = t - STAMP.unpack_from(b)[0]
    out.send(lat.tobytes())


def pipe_latency(samples=20000, warmup=2000, pace_us=20.0, size=64):
    """The same measurement through a blocking multiprocessing.Pipe."""
    total = samples + warmup
    r, w = CTX.Pipe(duplex=False)
    p, a = start_child(_pipe_receiver, r, total)
    _tight_sleep_slack()
    pad = b"\0" * (size - STAMP.size)
    pc, send, pace_ns = time.perf_counter_ns, w.send_bytes, int(pace_us * 1000)
    for _ in range(total):
        _pace(pace_ns)
        send(STAMP.pack(pc()) + pad)
    lat = np.frombuffer(recv(a, 60, "the Pipe receiver"), dtype=np.int64)[warmup:]
    p.join(10)
    return percentiles(lat)


def _pong(buf, rounds):
    mv = memoryview(buf).cast("q")
    for i in range(1, rounds + 1):
        while mv[0] != i:
            pass
        mv[1] = i


def python_floor(rounds=20000, warmup=2000):
    """Two processes ping-ponging an int64 in shared memory from Python:
    the fastest any Python-to-Python hand-off can be.  One-way = RTT / 2."""
    buf = mmap.mmap(-1, 4096)
    total = rounds + warmup
    p = CTX.Process(target=_pong, args=(buf, total), daemon=True)
    p.start()
    mv = memoryview(buf).cast("q")
    pc = time.perf_counter_ns
    rtt = np.empty(total, dtype=np.int64)
    for i in range(1, total + 1):
        t = pc()
        mv[0] = i
        while mv[1] != i:
            pass
        rtt[i - 1] = pc() - t
    p.join(10)
    mv.release()
    buf.close()
    return percentiles(rtt[warmup:] // 2)


# ---- throughput --------------------------------------------------------------
def append_throughput(size=64, records=1_000_000, batch=0, repeats=3, data=1 << 26):
    """Records/s and bytes/s appending *size*-byte records from one process
    into a log of *data* bytes, one call per record (batch=0) or *batch*
    records per call.  Best of *repeats*, median also given."""
    name = "/shmbench_tp_%d" % os.getpid()
    log = PartitionLog.create(name, slot_count=1 << 16, data_capacity=data, max_record=max(size, 64))
    try:
        rates = []
        if batch:
            arr = np.random.default_rng(1).integers(0, 255, (batch, size), dtype=np.uint8)
            calls = max(1, records // batch)
            ab = log.append_batch
            for _ in range(repeats):
                t = time.perf_counter_ns()
                for _ in range(calls):
                    ab(arr)
                rates.append(calls * batch / ((time.perf_counter_ns() - t) / 1e9))
        else:
            v = os.urandom(size)
            ap = log.append
            for _ in range(repeats):
                t = time.perf_counter_ns()
                for _ in range(records):
                    ap(v)
                rates.append(records / ((time.perf_counter_ns() - t) / 1e9))
        return {"records_per_s": max(rates), "median_records_per_s": float(np.median(rates)),
                "bytes_per_s": max(rates) * size}
    finally:
        log.close()
        unlink(name)


def read_throughput(size=64, records=500_000, batch=0, repeats=3):
    """Records/s reading back *records* records, per record or in batches."""
    name = "/shmbench_rd_%d" % os.getpid()
    log = PartitionLog.create(name, slot_count=1 << 20, data_capacity=1 << 27, max_record=max(size, 64))
    try:
        v = os.urandom(size)
        for _ in range(records):
            log.append(v)
        rates = []
        for _ in range(repeats):
            t = time.perf_counter_ns()
            if batch:
                o = 0
                while o < records:
                    recs, o, _ = log.read_batch(o, batch)
            else:
                read = log.read
                for o in range(records):
                    read(o)
            rates.append(records / ((time.perf_counter_ns() - t) / 1e9))
        return {"records_per_s": max(rates), "median_records_per_s": float(np.median(rates))}
    finally:
        log.close()
        unlink(name)


def view_read_throughput(size=65536, repeats=3, data=1 << 26):
    """Bytes/s reading back a block log's *size*-byte records through a
    reader, copying (poll_value), in place with the checksum taken there
    (poll_view, check_crcs=True) and in place unread (poll_view, the
    default: the value is handed out, not read), alternating:
    {"copy": best, "view": best, "view_unread": best, "copy_median": ...}."""
    name = "/shmbench_vw_%d" % os.getpid()
    log = PartitionLog.create(name, slot_count=1 << 16, data_capacity=data, max_record=size, overflow="block")
    try:
        v = os.urandom(size)
        records = min(1 << 15, data // (size + 64) - 2)
        for _ in range(records):
            log.append(v)
        rates = {"copy": [], "view": [], "view_unread": []}
        for _ in range(repeats):
            for how in rates:
                rd = log.reader(0, "spin", check_crcs=how == "view")
                get = rd.poll_value if how == "copy" else rd.poll_view
                t = time.perf_counter_ns()
                for _ in range(records):
                    x = get(0)
                    x[0]  # noqa: B018 (touch it, as a consumer would)
                rates[how].append(records * size / ((time.perf_counter_ns() - t) / 1e9))
                del x, get, rd  # the last view goes before the next round and the close
        out = {k: max(r) for k, r in rates.items()}
        out.update({k + "_median": float(np.median(r)) for k, r in rates.items()})
        return out
    finally:
        log.close()
        unlink(name)


def memcpy_bandwidth(size=65536, total_bytes=1 << 30, ring=1 << 26):
    """Bytes/s copying *size*-byte blocks into a *ring*-byte buffer at
    rotating positions (what an append of that size does at best)."""
    src = np.frombuffer(os.urandom(size), dtype=np.uint8)
    dst = np.empty(ring, dtype=np.uint8)
    dst[:] = 1
    n = total_bytes // size
    slots = ring // size
    best = 0.0
    for _ in range(3):
        t = time.perf_counter_ns()
        for i in range(n):
            j = (i % slots) * size
            dst[j:j + size] = src
        best = max(best, n * size / ((time.perf_counter_ns() - t) / 1e9))
    return best


# ---- syscalls ------------------------------------------------------------------
_STRACE_SCRIPT = r"""
import os, sys
from shm import PartitionLog
from shm.segment import unlink
name = "/shmbench_sc_%d" % os.getpid()
log = PartitionLog.create(name, slot_count=1 << 16, data_capacity=1 << 24, max_record=64)
v = b"x" * 64
n = int(sys.argv[1])
os.write(2, b"MARK-START\n")
for _ in range(n):
    log.append(v)
os.write(2, b"MARK-END\n")
log.close(); unlink(name)
"""


def append_syscalls(n=200_000):
    """Syscalls made between two markers while appending *n* records with no
    reader asleep (strace; None if strace is missing)."""
    if not shutil.which("strace"):
        return None
    proc = subprocess.run(["strace", "-f", "-qq", "-e", "trace=all", sys.executable, "-c", _STRACE_SCRIPT, str(n)],
                          capture_output=True, text=True, timeout=300)
    lines = proc.stderr.splitlines()
    try:
        a = next(i for i, l in enumerate(lines) if "MARK-START" in l and l.startswith("write"))
        b = next(i for i, l in enumerate(lines) if "MARK-END" in l and l.startswith("write"))
    except StopIteration:
        return None
    # lines strictly between the two marker writes (the "MARK" text lines themselves excluded)
    between = [l for l in lines[a + 1:b] if "(" in l and not l.startswith("MARK")]
    return {"appends": n, "syscalls": len(between), "calls": between[:10]}
