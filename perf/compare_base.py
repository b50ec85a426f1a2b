"""The face every peer of perf/compare.py has (Peer), and what the peers share: the rings' sizes,
unique names, loopback ports, ending a server we started.

Each peer class has, all run by perf/compare_measure.py:
- ``missing()``: None, or one line saying why it cannot run here (the
  package or binary is not installed);
- ``setup(env, size)`` in the parent: a spec (a dict; under the fork start
  method it may hold unpicklable objects such as a multiprocessing.Queue);
  ``teardown(spec)`` removes what setup made; ``finish()`` what the peer
  made for the whole run;
- ``sender(spec)`` in the producer process: (send(bytes), close());
- ``receiver(spec, mode)`` in the consumer process: (recv(timeout_s) ->
  a bytes-like payload or None on timeout, close()), or (recv, close,
  value) where recv returns what the peer's API hands out and value(it)
  its payload (the Kafka API: a Message and Message.value).  The payload
  stays valid until the next recv.  spec["records"], set for a latency
  run, is how many records it sends.
shmbroker's peers also have ``batch_sender``/``batch_receiver`` (a 2-D uint8
array of records per call; records per call read back).

Records flow from one producer to one consumer.  Every process maps the
whole of a shmbroker ring (and of the naive ring) before it is timed
(``shm.pre.touch``): no page fault lands inside a measurement.  The shmbroker channels run
on a ``block`` ring that the consumer frees as it goes (the raw log's
``set_floor`` every ``free_every`` records; the Kafka API's auto-commit every
millisecond, as a Kafka user's default loop commits; none in a run the ring
holds whole), so a
fast producer is held back rather than lapping the consumer, as pyzmq's
high-water mark, faster-fifo's size and the Pipe's kernel buffer hold theirs.
"""
import importlib.util
import os
import subprocess
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.join(_HERE, "..") not in sys.path:
    sys.path.insert(1, os.path.join(_HERE, ".."))

RING_DATA = 1 << 26  # bytes of a shmbroker ring (and of the naive ring): the Kafka API's retention.bytes default
RING_SLOTS = 1 << 16
SHM_OVERHEAD = 64  # a record's header in a ring, roughly (to size how often the consumer frees room)
_seq = [0]
PREFIX = ["sbcmp"]  # of every name a run makes (shm segments, namespaces, services): --prefix


def unique(stem=None):
    _seq[0] += 1
    return "%s%dx%d" % (stem or PREFIX[0], os.getpid(), _seq[0])


def set_ring_bytes(n):
    """The rings' data capacity for this run (compare.py --ring-mib), set before any setup."""
    global RING_DATA
    RING_DATA = n


DEEP, LARGE = 64, 1 << 16


def ring_bytes(size):
    """The data capacity of the rings (shmbroker's and the naive one) for *size*-byte records: RING_DATA
    (--ring-mib), but for records of LARGE bytes and more a ring of DEEP records (a power of two, at most
    RING_DATA): every large size runs as deep a ring as the 1 MiB records' 64 MiB one - 64 KiB records in a
    64 MiB ring (1024 of them, twice this CPU's L3) would stream through memory while iceoryx2 recycles a
    few samples that stay in cache."""
    if size < LARGE:
        return RING_DATA
    return min(RING_DATA, 1 << (DEEP * size - 1).bit_length())


def ring_records(size, data=None, slots=RING_SLOTS):
    """How many *size*-byte records a ring holds (at most), roughly."""
    data = ring_bytes(size) if data is None else data
    return min(slots, data // (size + SHM_OVERHEAD))


def free_every(size, data=None, slots=RING_SLOTS):
    """How many records the consumer reads between two floor moves: a quarter of the ring."""
    return max(1, ring_records(size, data, slots) // 4)


def _have(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _deadline_loop(what, timeout, step=0.02):
    """Yields until *timeout* seconds pass, then raises TimeoutError naming *what*."""
    end = time.monotonic() + timeout
    while True:
        yield
        if time.monotonic() > end:
            raise TimeoutError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(step)


def free_port():
    """A free TCP port on 127.0.0.1 (bound then released: a small race, fine on a bench host)."""
    from broker.kafka.loopback import free_port as port
    return port()


def end_process(proc, what, timeout=10.0):
    """End a subprocess.Popen we started: SIGTERM by pid, then SIGKILL after *timeout*."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


class Peer:
    name = label = ""
    modes = (None,)
    max_size = 1 << 20
    needs = ()  # modules

    def missing(self):
        gone = [m for m in self.needs if not _have(m)]
        return "not installed (%s): pip install %s" % (", ".join(gone), " ".join(gone)) if gone else None

    def setup(self, env, size):
        return {}

    def teardown(self, spec):
        pass

    def finish(self):
        pass
