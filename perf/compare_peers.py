"""The peers perf/compare.py measures, each behind the same small face.

A peer is a way to move a record from one process to another on this host:
shmbroker's raw partition log (``shm.PartitionLog``) and its Kafka API
(``broker.Producer``/``Consumer``), multiprocessing.Queue and Pipe,
faster-fifo, pyzmq over ipc://, iceoryx2 publish-subscribe, Redis Streams
(a redis-server of our own on loopback), a Kafka-protocol broker (tansu,
in memory, on loopback) through confluent-kafka, and a naive pure-Python
ring in an anonymous shared mapping (the yardstick of the targets).

They live in three modules: this one (shmbroker's, the standard library's,
faster-fifo, pyzmq, iceoryx2), compare_servers.py (Redis and tansu, servers
started on loopback) and compare_rings.py (the naive ring and the open-loop
Python floor); compare_base.py holds the face they share and the rings'
sizes.
"""

import ctypes
import functools
import gc
import os
import time

from compare_base import RING_SLOTS, Peer, free_every, ring_bytes, ring_records, unique
from compare_rings import PyFloor, PyRing
from compare_servers import Redis, Tansu

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


ALL = [ShmRaw(), ShmKafka(), MpQueue(), MpPipe(), FasterFifo(), Zmq(), Iceoryx2(), Redis(), Tansu(), PyRing()]
FLOOR = PyFloor()  # measured with the floors, not a contender (not in ALL: --only does not name it)
BY_NAME = {p.name: p for p in ALL + [FLOOR]}
