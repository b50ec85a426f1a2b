"""The contenders of perf/pool_bench.py behind one face, what their
workers run, and the bench's process and segment hygiene (every wait has a
deadline; only our own children are killed; the stamp file is removed).

Worker functions live here, not in the script, so every start method and
loky's pickling find them by the same import name.
"""
import concurrent.futures as cf
import mmap
import multiprocessing as mp
import os
import signal
import struct
import threading
import time

import numpy as np
import psutil

import perfutil


STAMP = struct.Struct("<q")
_MAPS = {}  # path -> int64 view, one per process (workers map the stamp file once)


class Stuck(RuntimeError):
    """A wait passed its deadline."""


# ---- what the workers run ------------------------------------------------------------------
def noop(x):
    return x


def echo(a):
    return a


def _view(path):
    v = _MAPS.get(path)
    if v is None:
        fd = os.open(path, os.O_RDWR)
        try:
            v = _MAPS[path] = memoryview(mmap.mmap(fd, 0)).cast("q")
        finally:
            os.close(fd)
    return v


def _wait_flag(v, i, want, limit_s, what):
    end = time.monotonic() + limit_s
    while v[i] != want:
        if time.monotonic() > end:
            raise Stuck("%s: no signal after %.0f s" % (what, limit_s))
        time.sleep(0.0002)


def barrier(path, gen, k, n, limit_s):
    """Task k of n: returns its pid once all n run at once (every worker is up)."""
    v = _view(path)
    v[k] = gen
    end = time.monotonic() + limit_s
    while any(v[j] != gen for j in range(n)):
        if time.monotonic() > end:
            raise Stuck("barrier %d: only %d of %d workers ran" % (gen, sum(v[j] == gen for j in range(n)), n))
        time.sleep(0.0002)
    return os.getpid()


def victim(path, base, limit_s):
    """Stamp (pid, monotonic_ns) then count a start; wait until released."""
    v = _view(path)
    v[base + 1] = os.getpid()
    v[base + 2] = time.monotonic_ns()
    v[base] += 1  # published last: the bench reads pid and stamp once the count moves
    _wait_flag(v, base + 3, 1, limit_s, "victim")
    return os.getpid()


# ---- contenders ----------------------------------------------------------------------------
class Contender:
    """One pool behind a common face: kind is 'executor' (Futures), 'pebble'
    (Futures from schedule) or 'pool' (AsyncResults)."""

    def __init__(self, name, kind, factory, soft=None, hard=None):
        self.name, self.kind, self.factory = name, kind, factory
        self.pool, self.pids, self.lost = None, set(), False
        self.soft = soft or {"pool": lambda p: (p.close(), p.join()),
                             "pebble": lambda p: (p.close(), p.join()),
                             "executor": lambda p: p.shutdown(wait=True, cancel_futures=True)}[kind]
        self.hard = hard or {"pool": lambda p: (p.terminate(), p.join()),
                             "pebble": lambda p: (p.stop(), p.join()),
                             "executor": lambda p: p.shutdown(wait=False, cancel_futures=True)}[kind]

    def start(self, workers, ctx):
        self.before = _children()  # before the pool: multiprocessing.Pool starts its workers at once
        self.pool, self.pids, self.lost = self.factory(workers, ctx), set(), False

    def submit(self, fn, *args):
        if self.kind == "pool":
            return self.pool.apply_async(fn, args)
        if self.kind == "pebble":
            return self.pool.schedule(fn, args=args)
        return self.pool.submit(fn, *args)

    def done(self, h):
        return h.ready() if self.kind == "pool" else h.done()

    def result(self, h, timeout):
        try:
            return h.get(timeout) if self.kind == "pool" else h.result(timeout)
        except (mp.TimeoutError, cf.TimeoutError):
            raise Stuck("%s: no result after %.0f s" % (self.name, timeout)) from None

    def wait_all(self, hs, timeout):
        end = time.monotonic() + timeout
        if self.kind == "pool":
            for h in hs:
                h.wait(max(0.0, end - time.monotonic()))
                if not h.ready():
                    raise Stuck("%s: tasks unfinished after %.0f s" % (self.name, timeout))
                h.get(0)
            return
        done, todo = cf.wait(hs, timeout)
        if todo:
            raise Stuck("%s: %d tasks unfinished after %.0f s" % (self.name, len(todo), timeout))
        for h in hs:
            h.result(0)

    def map(self, fn, items, chunksize, timeout):
        if self.kind == "pool":
            return self.result(self.pool.map_async(fn, items, chunksize), timeout)
        if self.kind == "pebble":
            mf = self.pool.map(fn, items, chunksize=chunksize)
            if cf.wait(mf.futures, timeout)[1]:
                raise Stuck("%s: map unfinished after %.0f s" % (self.name, timeout))
            return list(mf.result(0))
        return list(self.pool.map(fn, items, chunksize=chunksize, timeout=timeout))

    def close(self, timeout):
        """Shut the pool down within *timeout*, else stop it hard; then
        SIGKILL (and report) any process it started that is still alive.  A
        pool that lost a task (self.lost) is stopped hard at once: a
        multiprocessing.Pool's join() waits for that task for ever."""
        notes = []
        try:
            if self.lost:
                raise Stuck("it lost a task")
            bounded(lambda: self.soft(self.pool), timeout, "%s shutdown" % self.name)
        except Exception as e:
            if not self.lost:
                notes.append("shutdown: %s" % short(e))
            try:
                bounded(lambda: self.hard(self.pool), timeout, "%s hard stop" % self.name)
            except Exception as e2:
                notes.append("hard stop: %s" % short(e2))
        self.pool = None
        left = _leftovers(self.before | {os.getpid()}, self.pids, timeout)
        if left:
            notes.append("killed %d process(es) still alive after shutdown: %s" % (len(left), left))
        for n in notes:
            print("  note: %s: %s" % (self.name, n), flush=True)
        return notes


def pool_contenders():
    def ppe(n, ctx):
        return cf.ProcessPoolExecutor(n, mp_context=ctx)

    def mppool(n, ctx):
        return (ctx or mp).Pool(n)

    out, skipped = [Contender("ProcessPoolExecutor", "executor", ppe),
                    Contender("multiprocessing.Pool", "pool", mppool)], []
    try:
        import loky
        out.append(Contender("loky", "executor", lambda n, ctx: loky.ProcessPoolExecutor(n),
                             soft=lambda p: p.shutdown(wait=True),
                             hard=lambda p: p.shutdown(wait=False, kill_workers=True)))
    except ImportError as e:
        skipped.append(("loky", e))
    try:
        import pebble
        out.append(Contender("pebble.ProcessPool", "pebble",
                             lambda n, ctx: pebble.ProcessPool(n, context=ctx or mp)))
    except ImportError as e:
        skipped.append(("pebble.ProcessPool", e))
    for name, attr, kind in (("broker.pool.Executor", "Executor", "executor"), ("broker.pool.Pool", "Pool", "pool")):
        try:
            import broker.pool
            cls = getattr(broker.pool, attr)
        except (ImportError, AttributeError) as e:
            skipped.append((name, e))
            continue
        if kind == "executor":
            out.append(Contender(name, kind, lambda n, ctx, cls=cls: cls(n, mp_context=ctx)))
        else:
            out.append(Contender(name, kind, lambda n, ctx, cls=cls: cls(n, context=ctx)))
    return out, skipped


# ---- helpers -------------------------------------------------------------------------------
def bounded(fn, timeout, what):
    """fn() in a daemon thread with a deadline; its exception is re-raised."""
    box = []

    def run():
        try:
            fn()
        except BaseException as e:  # noqa: B036 - handed to the caller
            box.append(e)
    t = threading.Thread(target=run, daemon=True, name=what)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise Stuck("%s did not return within %.0f s" % (what, timeout))
    if box:
        raise box[0]


def short(e):
    return "%s: %s" % (type(e).__name__, str(e).splitlines()[0][:120] if str(e) else "")


def _children():
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _is_helper(pid):  # long-lived helpers multiprocessing and loky keep for the whole process
    try:
        cmd = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return True
    return any(s in cmd for s in ("resource_tracker", "semaphore_tracker", "forkserver"))


def _leftovers(before, known, timeout):
    """Children started since *before* (and known worker pids) still alive
    after *timeout*: SIGKILLed and reaped.  Only our own children."""
    end = time.monotonic() + timeout
    while True:
        mine = _children()
        alive = sorted(p for p in (mine - before) | (set(known) & mine) if not _is_helper(p))
        if not alive or time.monotonic() > end:
            break
        time.sleep(0.01)
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
        try:
            psutil.Process(pid).wait(timeout)
        except psutil.Error:
            pass
    return alive


def check_child(pid):
    """Refuse to kill a pid this process did not start (a pool's worker is
    our child, or our grandchild through a forkserver)."""
    if pid not in _children():
        raise RuntimeError("pid %d is not a process this bench started: not killing it" % pid)


def pct(ns):
    a = np.asarray(ns, dtype=np.float64) / 1000.0
    if not a.size:
        return None
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max()), "n": int(a.size)}


class Stamps:
    """A file in /dev/shm the workers map: barrier slots, then 4 words a victim."""

    def __init__(self, workers, victims):
        self.path = "/dev/shm/sbbench.%d.stamps" % os.getpid()
        self.victims0 = (workers + 7) // 8 * 8
        size = max(mmap.PAGESIZE, (self.victims0 + 4 * victims) * 8)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            self.mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.v = memoryview(self.mm).cast("q")
        self.gen = 0

    def reset_victims(self):
        self.mm[self.victims0 * 8:] = bytes(len(self.mm) - self.victims0 * 8)

    def close(self):
        self.v.release()
        self.mm.close()
        os.unlink(self.path)


def full_strength(c, st, workers, timeout):
    """Every worker up and idle: `workers` barrier tasks meet, their pids noted."""
    st.gen += 1
    hs = [c.submit(barrier, st.path, st.gen, k, workers, timeout) for k in range(workers)]
    c.wait_all(hs, timeout)
    pids = {c.result(h, 0) for h in hs}
    c.pids |= pids
    return pids



# ---- queues --------------------------------------------------------------------------------
def queue_getter(q, n, latency, timeout, conn):
    try:
        get, mono = q.get, time.monotonic_ns
        conn.send("ready")
        if latency:
            lat = np.empty(n, dtype=np.int64)
            for i in range(n):
                v = get(True, timeout)
                lat[i] = mono() - STAMP.unpack_from(v)[0]
            conn.send(("ok", lat.tobytes()))
        else:
            for _ in range(n):
                get(True, timeout)
            conn.send(("ok", mono()))
    except BaseException as e:  # noqa: B036 - reported to the parent
        conn.send(("error", short(e)))


def pinned_getter(cpu, *args):
    """queue_getter on CPU *cpu* (None: where the scheduler puts it)."""
    perfutil.pin(cpu)
    queue_getter(*args)


def recv(conn, timeout, what):
    if not conn.poll(timeout):
        raise Stuck("no word from %s within %.0f s" % (what, timeout))
    return conn.recv()



class FloorSlot:
    """The floor of the put->get latency measure: a one-slot queue of an
    8-byte stamp in shared memory.  put waits for the slot to be read,
    copies the item's stamp and bumps a sequence number; get spins (in
    Python) until the number moves, acknowledges and returns the stamp.
    Latency measure only: what any Python queue between two processes pays
    at least, on this machine, under the same pacing."""

    def __init__(self, ctx):
        self.arr = ctx.RawArray("q", 3)  # stamp, sequence number, the last sequence number read
        self._last = 0

    def _words(self):
        w = self.__dict__.get("_w")
        if w is None:
            w = self._w = memoryview(self.arr).cast("B").cast("q")
        return w

    def __getstate__(self):
        return {"arr": self.arr, "_last": self._last}

    def put(self, item, block=True, timeout=None):
        w = self._words()
        end = None if timeout is None else time.monotonic() + timeout
        n = 0
        while w[2] != w[1]:  # the previous item is not read yet
            n += 1
            if not n & 0xFFFF and end is not None and time.monotonic() > end:
                raise TimeoutError("the slot was not read within %s s" % timeout)
        w[0] = STAMP.unpack_from(item)[0]
        w[1] += 1  # after the stamp: x86 and the interpreter keep the order

    def get(self, block=True, timeout=None):
        w, last = self._words(), self._last
        end = None if timeout is None else time.monotonic() + timeout
        n = 0
        while w[1] == last:
            n += 1
            if not n & 0xFFFF and end is not None and time.monotonic() > end:
                raise TimeoutError("no item within %s s" % timeout)
        item = STAMP.pack(w[0])
        self._last = w[2] = w[1]
        return item


FLOOR = "floor: shm word"


def queue_contenders(a, ctx, ns):
    out, skipped = [("multiprocessing.Queue", lambda: ctx.Queue()), (FLOOR, lambda: FloorSlot(ctx))], []
    try:
        import faster_fifo
        import faster_fifo_reduction  # noqa: F401 - makes the queue picklable for spawn/forkserver
        out.append(("faster-fifo", lambda: faster_fifo.Queue(max_size_bytes=a.ff_bytes)))
    except ImportError as e:
        skipped.append(("faster-fifo", e))
    try:
        import broker
        bq = broker.Queue
        out.append(("broker.Queue", lambda: bq(0, **{"shm.namespace": ns})))
        out.append(("broker.Queue spin", lambda: bq(0, **{"shm.namespace": ns, "shm.wait": "spin"})))
    except (ImportError, AttributeError) as e:
        skipped.append(("broker.Queue", e))
    return out, skipped
