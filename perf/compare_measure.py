"""perf/compare.py's measurements: one producer process and one consumer
process per measurement, both forked and ended by pid by the parent, which
waits on each with a deadline and kills (SIGKILL, by pid) a child that
passes it.  A child that fails sends its traceback to the parent.

Protocol of a measurement (the same for every peer): the consumer starts
and says "ready"; the producer starts and says "ready"; the parent tells the
producer "warm" and it sends the warm-up records; the consumer reads them and
says "warm"; the parent tells the producer "go" and the timed part runs; each
child sends its result.

- latency_run: open loop.  Record i of the timed part is due at start + i /
  rate (broker.latency.Pacer); the producer packs its due time and its real
  send time into the first 16 bytes; the consumer records now - due (the
  latency corrected for coordinated omission: a stall counts for every record
  it held back, as wrk2 and JLBH count it) and now - sent (uncorrected) into
  broker.latency Stages (HdrHistograms), sent back encoded.
- throughput_run: the producer sends records back to back for a time, then
  an end record (first byte 1); the consumer counts them; records/s is
  counted from the producer's first send to the consumer's last record.
- floors: the pure-Python shared-memory ping-pong (shm.bench.python_floor),
  the same ping-pong in C (compiled with cc into a temporary directory; skipped
  without a compiler), and memcpy bandwidth (shm.bench.memcpy_bandwidth).
"""
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import signal
import struct
import subprocess
import shutil
import sys
import time
import traceback

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.join(_HERE, "..") not in sys.path:
    sys.path.insert(1, os.path.join(_HERE, ".."))

from broker.latency import Pacer, Stage  # noqa: E402
from compare_peers import BY_NAME  # noqa: E402
import perfutil  # noqa: E402

CTX = mp.get_context("fork")
STAMPS = struct.Struct("<qq")  # due time, send time (monotonic ns)


class Failed(RuntimeError):
    """A measurement did not complete (a child failed, or a deadline passed)."""


class Env:
    """What peers' setup() may use: the fork context and a private temporary directory."""

    def __init__(self, tmp):
        self.ctx, self.tmp = CTX, tmp


def _tight_slack():
    from shm.bench import _tight_sleep_slack
    _tight_sleep_slack()


def _child(fn, conn, pin, args):
    """A child's body: fn(conn, *args); any failure goes to the parent as ("error", traceback)."""
    try:
        perfutil.pin(pin)
        fn(conn, *args)
    except BaseException:
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            pass
    finally:
        conn.close()
        os._exit(0)  # no atexit handlers of the parent's in a forked child


def _expect(conn, what, timeout):
    if not conn.poll(timeout):
        raise TimeoutError("no %r from the parent within %.0f s" % (what, timeout))
    got = conn.recv()
    if got != what:
        raise RuntimeError("expected %r from the parent, got %r" % (what, got))


# ---- the children --------------------------------------------------------------------------
def _producer(conn, peer, spec, job):
    _tight_slack()
    batch = job.get("batch")
    send, close = (BY_NAME[peer].batch_sender(spec) if batch else BY_NAME[peer].sender(spec))
    size, clock, T = job["size"], time.monotonic_ns, job["stall"]
    conn.send(("ready",))
    _expect(conn, "warm", T)
    filler = b"\0" * size
    if job["kind"] == "latency":
        # the stamps and the zero padding in one pack, the send stamp the pacer's last clock reading: all a
        # peer's latency counts from its due time is the send and the receive, not this loop's own steps
        pack = struct.Struct("%s%dx" % (STAMPS.format, size - STAMPS.size)).pack
        pacer = Pacer(job["rate"], spin_us=job["spin_us"])
        pacer.start()
        for i in range(job["warm"]):
            send(pack(*pacer.wait_stamp(i)))
        _expect(conn, "go", T)
        pacer = Pacer(job["rate"], spin_us=job["spin_us"])
        t0 = pacer.start()
        stamp = pacer.wait_stamp
        for i in range(job["n"]):
            send(pack(*stamp(i)))
        t1 = clock()
        close()
        conn.send(("done", {"t0": t0, "t1": t1, "sent": job["n"]}))
        return
    end_rec = b"\1" + filler[1:]
    if batch:
        arr = np.zeros((batch, size), dtype=np.uint8)
        for _ in range(max(1, job["warm"] // batch)):
            send(arr)
        send(np.frombuffer(filler, dtype=np.uint8).reshape(1, size))
    else:
        for _ in range(job["warm"]):
            send(filler)
    _expect(conn, "go", T)
    limit = job["seconds"] * 1e9
    cap = job["max_records"]
    n = 0
    t0 = clock()
    if batch:
        while n < cap:
            send(arr)
            n += batch
            if clock() - t0 >= limit:
                break
    else:
        while n < cap:
            send(filler)
            n += 1
            if not n & 63 and clock() - t0 >= limit:
                break
    if batch:
        send(np.frombuffer(end_rec, dtype=np.uint8).reshape(1, size))
    else:
        send(end_rec)
    n += 1
    t1 = clock()
    close()
    conn.send(("done", {"t0": t0, "t1": t1, "sent": n}))


def _consumer(conn, peer, spec, job):
    batch, mode, T = job.get("batch"), job["mode"], job["stall"]
    p = BY_NAME[peer]
    made = p.batch_receiver(spec, mode, batch, job["size"]) if batch else p.receiver(spec, mode)
    recv, close, value = made if len(made) == 3 else made + (None,)  # value: what gets a record's bytes from it
    clock = time.monotonic_ns
    conn.send(("ready",))
    got = 0
    warm = job["warm"] if not batch else max(1, job["warm"] // batch) * batch + 1
    while got < warm:
        r = recv(T)
        if r is None:
            raise TimeoutError("%s: warm-up record %d did not come within %.0f s" % (peer, got, T))
        if value is not None:
            r = value(r)
        got += r[0] if batch else 1
    conn.send(("warm",))
    cpu0 = time.process_time()
    if job["kind"] == "latency":
        n = job["n"]
        corr, raw = [0] * n, [0] * n
        unpack = STAMPS.unpack_from
        for i in range(n):
            b = recv(T)
            if value is not None and b is not None:
                b = value(b)
            now = clock()
            if b is None:
                raise TimeoutError("%s: record %d of %d did not come within %.0f s" % (peer, i, n, T))
            due, sent = unpack(b)
            corr[i] = now - due
            raw[i] = now - sent
            if not i:
                t_first = now
        cpu = time.process_time() - cpu0
        close()
        out = {"t_first": t_first, "t_last": now, "got": n, "cpu": cpu}
        for name, vals in (("corrected", corr), ("uncorrected", raw)):
            st = Stage(name)
            for v in vals:
                st.record(v)
            out[name] = st.encode()
        conn.send(("done", out))
        return
    n = 0
    if batch:
        while True:
            r = recv(T)
            if r is None:
                raise TimeoutError("%s: no record within %.0f s after %d" % (peer, T, n))
            n += r[0]
            if r[1]:
                break
    else:
        while True:
            b = recv(T)
            if b is None:
                raise TimeoutError("%s: no record within %.0f s after %d" % (peer, T, n))
            if value is not None:
                b = value(b)
            n += 1
            if b[0]:
                break
    now = clock()
    cpu = time.process_time() - cpu0
    close()
    conn.send(("done", {"t_last": now, "got": n, "cpu": cpu}))


# ---- the parent's side ---------------------------------------------------------------------
class _Kid:
    def __init__(self, fn, pin, args):
        self.conn, theirs = CTX.Pipe()
        self.proc = CTX.Process(target=_child, args=(fn, theirs, pin, args), daemon=True)
        self.proc.start()
        theirs.close()
        self.pid = self.proc.pid
        self.name = fn.__name__.strip("_")

    def get(self, want, deadline):
        left = deadline - time.monotonic()
        if left <= 0 or not self.conn.poll(left):
            raise Failed("the %s (pid %d) sent no %r in time" % (self.name, self.pid, want))
        try:
            msg = self.conn.recv()
        except EOFError:
            raise Failed("the %s (pid %d) exited (code %s) before %r" % (self.name, self.pid, self.proc.exitcode,
                                                                          want)) from None
        if msg[0] == "error":
            raise Failed("the %s failed:\n%s" % (self.name, msg[1]))
        if msg[0] != want:
            raise Failed("the %s sent %r, expected %r" % (self.name, msg[0], want))
        return msg[1] if len(msg) > 1 else None

    def end(self, timeout):
        """Join by pid within *timeout*; SIGKILL (this child's pid only) if it is still there."""
        self.proc.join(timeout)
        if self.proc.exitcode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.join(10)
        self.conn.close()


def _run(peer, spec, job, pins, deadline_s):
    """The two children through the protocol; returns (producer result, consumer result)."""
    deadline = time.monotonic() + deadline_s
    kids = []
    try:
        cons = _Kid(_consumer, pins[1], (peer, spec, job))
        kids.append(cons)
        cons.get("ready", deadline)
        prod = _Kid(_producer, pins[0], (peer, spec, job))
        kids.append(prod)
        prod.get("ready", deadline)
        prod.conn.send("warm")
        while True:  # the consumer's "warm", unless the producer failed on the way
            ready = mpc.wait([cons.conn, prod.conn], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise Failed("warm-up of %s did not end in time" % peer)
            if cons.conn in ready:
                cons.get("warm", deadline)
                break
            prod.get("done", deadline)  # raises: only an error can come now
        prod.conn.send("go")
        p = prod.get("done", deadline)
        c = cons.get("done", deadline)
        return p, c
    finally:
        for k in kids:
            k.end(max(1.0, min(10.0, deadline - time.monotonic())))


def latency_run(peer, mode, env, size, rate, n, warm, opts):
    """Open-loop latency at *rate*: corrected and uncorrected Stages, the rate reached, consumer CPU/record."""
    p = BY_NAME[peer]
    spec = p.setup(env, size)
    try:
        spec["records"] = n + warm  # (a peer may skip freeing ring space for a run its ring holds whole)
        job = {"kind": "latency", "size": size, "rate": rate, "n": n, "warm": warm, "mode": mode,
               "spin_us": opts.pace_spin_us, "stall": opts.stall_timeout}
        est = (n + warm) / rate
        pr, cr = _run(peer, spec, job, opts.pins, est * 3 + opts.stall_timeout + 30)
    finally:
        p.teardown(spec)
    # the rate held: the slower of the producer's sends and the consumer's arrivals (a consumer that
    # falls behind receives at its own pace, below the offered rate)
    sent = (n - 1) / max(1e-9, (pr["t1"] - pr["t0"]) / 1e9)
    got = (n - 1) / max(1e-9, (cr["t_last"] - cr["t_first"]) / 1e9)
    reached = min(sent, got) if n > 1 else rate
    return {"corrected": Stage.decode(cr["corrected"], "corrected"),
            "uncorrected": Stage.decode(cr["uncorrected"], "uncorrected"),
            "rate": rate, "reached": reached, "saturated": reached < opts.saturation * rate,
            "cpu_us": cr["cpu"] / n * 1e6, "records": n}


def throughput_run(peer, mode, env, size, seconds, warm, opts, batch=None):
    """Records/s and bytes/s of *size*-byte records end to end, consumer CPU/record."""
    p = BY_NAME[peer]
    spec = p.setup(env, size)
    try:
        job = {"kind": "throughput", "size": size, "seconds": seconds, "warm": warm, "mode": mode,
               "stall": opts.stall_timeout, "max_records": max(1000, int(opts.tp_bytes // size)), "batch": batch}
        pr, cr = _run(peer, spec, job, opts.pins, seconds * 20 + opts.stall_timeout + 30)
    finally:
        p.teardown(spec)
    if cr["got"] != pr["sent"]:
        raise Failed("%s: %d records sent, %d received" % (peer, pr["sent"], cr["got"]))
    span = (cr["t_last"] - pr["t0"]) / 1e9
    return {"records_per_s": cr["got"] / span, "bytes_per_s": cr["got"] * size / span,
            "producer_records_per_s": pr["sent"] / ((pr["t1"] - pr["t0"]) / 1e9),
            "cpu_us": cr["cpu"] / cr["got"] * 1e6, "records": cr["got"], "seconds": span}


# ---- floors ----------------------------------------------------------------------------------
C_FLOOR = r"""
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static long now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000L + t.tv_nsec; }
static int cmp(const void *a, const void *b) { long x = *(const long *)a, y = *(const long *)b; return x < y ? -1 : x > y; }
/* two processes ping-pong a counter through a shared page; prints one-way p50 p90 p99 p99.9 (RTT / 2), ns */
int main(int argc, char **argv) {
    long n = atol(argv[1]), warm = atol(argv[2]), total = n + warm, end = now() + 60000000000L;
    _Atomic long *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    _Atomic long *ping = p, *pong = p + 16; /* own cache lines */
    long *rtt = malloc(sizeof(long) * total);
    if (p == MAP_FAILED || !rtt) return 1;
    pid_t pid = fork();
    if (pid == 0) {
        for (long i = 1; i <= total; i++) {
            for (long k = 0; atomic_load_explicit(ping, memory_order_acquire) != i; k++)
                if (!(k & 0xfffff) && now() > end) _exit(2);
            atomic_store_explicit(pong, i, memory_order_release);
        }
        _exit(0);
    }
    for (long i = 1; i <= total; i++) {
        long t0 = now();
        atomic_store_explicit(ping, i, memory_order_release);
        for (long k = 0; atomic_load_explicit(pong, memory_order_acquire) != i; k++)
            if (!(k & 0xfffff) && now() > end) return 2;
        rtt[i - 1] = now() - t0;
    }
    waitpid(pid, NULL, 0);
    qsort(rtt + warm, n, sizeof(long), cmp);
    long *r = rtt + warm;
    printf("%ld %ld %ld %ld\n", r[n / 2] / 2, r[n * 9 / 10] / 2, r[n * 99 / 100] / 2, r[n * 999 / 1000] / 2);
    return 0;
}
"""


def c_floor(tmp, rounds, warm):
    """The C ping-pong's one-way percentiles (us), or a reason it could not run."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return "no C compiler (cc) found"
    src, exe = os.path.join(tmp, "cfloor.c"), os.path.join(tmp, "cfloor")
    if not os.path.exists(exe):
        with open(src, "w") as f:
            f.write(C_FLOOR)
        r = subprocess.run([cc, "-O2", "-std=c11", "-o", exe, src], capture_output=True, text=True, timeout=120)
        if r.returncode:
            return "cc failed: %s" % r.stderr.strip().splitlines()[-1:]
    r = subprocess.run([exe, str(rounds), str(warm)], capture_output=True, text=True, timeout=120)
    if r.returncode:
        return "the C ping-pong failed (exit %d)" % r.returncode
    p50, p90, p99, p999 = (int(x) / 1e3 for x in r.stdout.split())
    return {"p50": p50, "p90": p90, "p99": p99, "p99.9": p999}


def python_floor(rounds, warm):
    from shm.bench import python_floor as floor
    return floor(rounds, warm)


CACHE_RING = 1 << 22  # the in-cache memcpy's ring


def memcpy(size, total_bytes, ring):
    """Bytes/s copying *size*-byte blocks into a *ring*-byte buffer (at least 16 blocks)."""
    from shm.bench import memcpy_bandwidth
    return memcpy_bandwidth(size, total_bytes=max(size * 16, total_bytes), ring=max(ring, 16 * size))
