"""``shmbroker mirror``: copy topics from one cluster to another, each side a
shmbroker namespace (``bootstrap.servers=shm://NS``) or a Kafka cluster
(``host:port,...``, through confluent-kafka: ``pip install shmbroker[kafka]``).

At least once, resumable: the source partitions are assigned by the mirror
(stream ``i`` of ``--num.streams`` takes every i-th), it starts from its
group's committed offsets (``auto.offset.reset``, default earliest, where
there are none) and commits a partition's offset only up to the records the
target acknowledged (delivery reports).  A SIGKILL at any moment loses
nothing; a restart sends again at most what was sent after the last commit.
SIGINT/SIGTERM: stop reading, flush, commit, exit 0.

Each record keeps its key, value, headers (in order, repeated names kept)
and timestamp (ms).  Its partition is kept when both topics have as many
partitions; otherwise the target's partitioner places it by key.  A missing
target topic is created with the source's partition count.  Topics are
matched by ``--include`` against the whole name (Java's ``Pattern.matches``,
as MirrorMaker), looked up again every ``metadata.max.age.ms`` (default 5 s
here) so new topics and partitions are picked up.
"""
import collections
import functools
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import threading
import time

from shm.errors import ConfigError, KafkaError, KafkaException, error_text

_log = logging.getLogger("shmbroker.mirror")
_PARTITION_EOF = KafkaError._PARTITION_EOF
_BATCH = 500
_REFRESH_S = 5.0


def is_shm(conf):
    """True if *conf* names a shmbroker namespace (shm://NS or shm.namespace)."""
    bs = conf.get("bootstrap.servers")
    return "shm.namespace" in conf or (isinstance(bs, str) and bs.startswith("shm://"))


def _kafka(what):
    try:
        import confluent_kafka
        import confluent_kafka.admin  # noqa: F401
    except ImportError:
        raise ConfigError("%s is a Kafka cluster (bootstrap.servers is not shm://NS): that side needs "
                          "confluent-kafka: pip install 'shmbroker[kafka]'" % what) from None
    return confluent_kafka


def clients(conf, what):
    """(module, admin module) of the client library for one side."""
    if is_shm(conf):
        import broker.kafka as mod
        import broker.kafka.admin as adm
        return mod, adm
    mod = _kafka(what)
    return mod, mod.admin


class Tail:
    """One source partition's records sent and not yet committable: the
    commit point moves over a prefix of them once each is acknowledged."""
    __slots__ = ("sent", "acked", "committed", "next", "high", "resend_to")

    def __init__(self, committed, resend_to=-1):
        self.sent = collections.deque()
        self.acked = set()
        self.committed = committed  # the offset last committed (None: nothing yet)
        self.next = committed       # the commit point the acks reached
        self.high = -1              # the highest offset acknowledged (the state file keeps it)
        self.resend_to = resend_to  # an earlier run had this offset acknowledged: up to it, sends are duplicates

    def ack(self, off):
        if off > self.high:
            self.high = off
        self.acked.add(off)
        sent, acked = self.sent, self.acked
        while sent and sent[0] in acked:
            o = sent.popleft()
            acked.discard(o)
            self.next = o + 1


class AckedState:
    """What the target acknowledged, per source partition, in a small file
    the streams rewrite after batches that got acknowledgements, 50 times a
    second at most (an atomic rename; nothing is fsynced: a
    killed process's writes stay in the page cache).  A restart reads it to
    count the records it sends again that an earlier run had delivered after
    its last commit: the duplicates.  One file per stream, under
    $TMPDIR/shmbroker-mirror-<uid>/, named by the group and both clusters; a
    fixed size (one entry per partition)."""

    def __init__(self, cconf, pconf):
        key = json.dumps([cconf.get("group.id"), cconf.get("bootstrap.servers") or cconf.get("shm.namespace"),
                          pconf.get("bootstrap.servers") or pconf.get("shm.namespace")])
        self.dir = os.path.join(tempfile.gettempdir(), "shmbroker-mirror-%d" % os.getuid())
        self.stem = "%s.%s" % (re.sub(r"[^A-Za-z0-9_.-]", "_", str(cconf.get("group.id")))[:64],
                               hashlib.sha1(key.encode()).hexdigest()[:12])

    def load(self):
        """{(topic, partition): highest offset acknowledged} of earlier runs (bad files are skipped)."""
        out = {}
        try:
            names = [n for n in os.listdir(self.dir) if n.startswith(self.stem + ".") and n.endswith(".json")]
        except OSError:
            return out
        for n in names:
            try:
                with open(os.path.join(self.dir, n)) as f:
                    for k, v in json.load(f).items():
                        t, p = k.rsplit(":", 1)
                        out[(t, int(p))] = max(out.get((t, int(p)), -1), int(v))
            except (OSError, ValueError, AttributeError) as exc:
                _log.warning("mirror state file %s skipped: %s", n, exc)
        return out

    def remove(self, stream):
        try:
            os.unlink(os.path.join(self.dir, "%s.%d.json" % (self.stem, stream)))
        except OSError:
            pass

    def save(self, stream, tails):
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            path = os.path.join(self.dir, "%s.%d.json" % (self.stem, stream))
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"%s:%d" % tp: t.high for tp, t in tails.items() if t.high >= 0}, f)
            os.replace(tmp, path)
        except OSError as exc:  # the count of duplicates is lost, not the records
            _log.warning("mirror state not saved: %s", exc)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = self.delivered = self.failed = self.duplicates = 0
        self.lag = {}  # (topic, partition) -> records behind the source's end


class Mirror:
    """The mirror's state; ``run()`` until ``stop()`` (or a send failure
    with abort.on.send.failure)."""

    def __init__(self, consumer_conf, producer_conf, include, commit_interval_ms=60000, num_streams=1,
                 abort_on_send_failure=True, out=None, progress_s=None):
        if "group.id" not in consumer_conf:
            raise ConfigError("the consumer config needs group.id: the mirror commits its progress there")
        try:
            self.include = re.compile(include)
        except re.error as exc:
            raise ConfigError("--include %r is not a valid regular expression: %s" % (include, exc)) from None
        if num_streams < 1:
            raise ConfigError("--num.streams must be >= 1, got %d" % num_streams)
        self.cconf = dict(consumer_conf)
        self.cconf.setdefault("auto.offset.reset", "earliest")
        self.cconf["enable.auto.commit"] = False  # commits follow the target's acknowledgements
        self.cconf.pop("metadata.max.age.ms", None)
        self.refresh_s = float(consumer_conf.get("metadata.max.age.ms", _REFRESH_S * 1000)) / 1000.0
        self.pconf = dict(producer_conf)
        self.commit_s = commit_interval_ms / 1000.0
        self.nstreams = num_streams
        self.abort = abort_on_send_failure
        self.out = out if out is not None else sys.stderr
        self.progress_s = progress_s if progress_s is not None else (1.0 if self.out.isatty() else 10.0)
        self.cmod, self.cadm = clients(self.cconf, "the source")
        self.pmod, self.padm = clients(self.pconf, "the target")
        self.stats = Stats()
        self._stop = threading.Event()
        self.error = None  # the send failure that stopped the mirror (abort.on.send.failure)
        self._same = {}    # topic -> True if the target has as many partitions as the source
        self._created = set()
        self.state = AckedState(self.cconf, self.pconf)
        self.earlier = self.state.load()  # what earlier runs had acknowledged

    # -- topics
    def _source_topics(self, consumer):
        md = consumer.list_topics(timeout=10)
        out = {}
        for name, t in md.topics.items():
            if name.startswith("__") or t.error is not None or not self.include.fullmatch(name):
                continue
            out[name] = len(t.partitions)
        return out

    def _ensure_target(self, admin, topic, partitions):
        """Create *topic* on the target if missing; remember whether its
        partition count equals the source's."""
        md = admin.list_topics(timeout=10)
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            self._create(admin, topic, partitions)
            md = admin.list_topics(timeout=10)
            t = md.topics.get(topic)
            n = len(t.partitions) if t is not None else partitions
        else:
            n = len(t.partitions)
        self._same[topic] = n == partitions
        if n != partitions:
            self._say("topic %s: %d partitions at the source, %d at the target: records are placed by key"
                      % (topic, partitions, n))

    def _create(self, admin, topic, partitions):
        try:
            nt = self.padm.NewTopic(topic, num_partitions=partitions, replication_factor=1) \
                if self.padm.__name__.startswith("confluent_kafka") else self.padm.NewTopic(topic, partitions)
            admin.create_topics([nt])[topic].result(30)
            self._created.add(topic)
            self._say("created topic %s at the target (%d partitions, as the source)" % (topic, partitions))
        except Exception as exc:  # ours or confluent-kafka's KafkaException: created meanwhile is fine
            err = exc.args[0] if exc.args else None
            if getattr(err, "code", lambda: None)() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    # -- the run
    def stop(self):
        self._stop.set()

    def _say(self, msg):
        _log.info(msg)
        print("mirror: %s" % msg, file=self.out, flush=True)

    def run(self):
        """Mirror until stop(); returns 0, or 1 after a send failure that
        aborted it (abort.on.send.failure)."""
        probe = self.cmod.Consumer(dict(self.cconf))
        admin = self.padm.AdminClient({k: v for k, v in self.pconf.items() if not k.startswith(("linger", "batch",
                                                                                                 "queue.", "acks",
                                                                                                 "compression"))})
        streams = [_Stream(self, i) for i in range(self.nstreams)]
        threads = []
        try:
            topics = {}
            last_look = 0.0
            for s in streams:
                t = threading.Thread(target=s.loop, name="shmbroker-mirror-%d" % s.index, daemon=True)
                threads.append(t)
            started = False
            next_report = time.monotonic() + self.progress_s
            prev = (time.monotonic(), 0)
            while not self._stop.is_set():
                now = time.monotonic()
                if now - last_look >= self.refresh_s or not started:
                    last_look = now
                    try:
                        topics = self._refresh(probe, admin, topics, streams)
                    except Exception as exc:  # either side away: the streams go on, the next look tries again
                        if not started:
                            raise
                        _log.warning("looking up topics failed (tried again in %.0f s): %s", self.refresh_s, error_text(exc))
                    if not started:
                        for t in threads:
                            t.start()
                        started = True
                if now >= next_report:
                    self._lag(probe, streams)
                    prev = self._report(prev)
                    next_report = now + self.progress_s
                if any(not t.is_alive() for t in threads) or self.error is not None:
                    break
                self._stop.wait(min(0.2, self.progress_s))
        finally:
            self._stop.set()
            for t in threads:
                if t.ident is not None:  # started
                    t.join(120)
            for s in streams:
                s.close()
        self._lag(probe, streams)
        probe.close()
        self._report(prev, final=True)
        if self.error is not None:
            self._say("stopped: %s (abort.on.send.failure=true)" % self.error)
            return 1
        failed = [s.failure for s in streams if s.failure is not None]
        if failed:
            self._say("stopped: %s" % failed[0])
            return 1
        return 0

    def _refresh(self, probe, admin, topics, streams):
        """The source's matching topics; new ones (or new partitions) are
        created at the target if missing and handed out to the streams."""
        found = self._source_topics(probe)
        for name, n in sorted(found.items()):
            if topics.get(name) != n:
                self._ensure_target(admin, name, n)
        if found != topics:
            parts = [(t, p) for t in sorted(found) for p in range(found[t])]
            for s in streams:
                s.want([tp for k, tp in enumerate(parts) if k % self.nstreams == s.index])
        return found

    def _lag(self, probe, streams):
        """Records behind the source's end, per partition (the probe asks;
        the streams' loops never wait on it)."""
        lag = {}
        end = time.monotonic() + 2.0  # a slow source costs the report, not the copying
        for s in streams:
            for (t, p), tail in list(s.tails.items()):
                if time.monotonic() > end:
                    break
                try:
                    lo, hi = probe.get_watermark_offsets(self.cmod.TopicPartition(t, p), timeout=1)
                except Exception:  # a lag figure is not worth stopping for
                    continue
                pos = tail.sent[-1] + 1 if tail.sent else (tail.next if tail.next is not None else lo)
                lag[(t, p)] = max(0, hi - pos)
        with self.stats.lock:
            self.stats.lag.update(lag)

    def _report(self, prev, final=False):
        st = self.stats
        with st.lock:
            sent, delivered, failed, lag = st.sent, st.delivered, st.failed, sum(st.lag.values())
        now = time.monotonic()
        rate = (delivered - prev[1]) / max(now - prev[0], 1e-9)
        line = "%s %d records mirrored (%.0f/s), %d in flight, lag %d, %d failed, %d duplicates" % (
            "done:" if final else "", delivered, rate, sent - delivered - failed, lag, failed, st.duplicates)
        if self.out.isatty() and not final:
            print("\r" + line.strip(), end="", file=self.out, flush=True)
        else:
            print(("\n" if self.out.isatty() else "") + "mirror: " + line.strip(), file=self.out, flush=True)
        return now, delivered


class _Stream:
    """One consumer (its share of the partitions) and one producer."""

    def __init__(self, m, index):
        self.m, self.index = m, index
        self.consumer = m.cmod.Consumer(dict(m.cconf))
        self.producer = m.pmod.Producer(dict(m.pconf))
        self.tails = {}
        self._want = None
        self._lock = threading.Lock()
        self.failure = None

    def want(self, tps):
        with self._lock:
            self._want = list(tps)

    def _reassign(self):
        with self._lock:
            want, self._want = self._want, None
        if want is None:
            return
        new = [tp for tp in want if tp not in self.tails]
        if not new:
            return
        mod = self.m.cmod
        committed = self.consumer.committed([mod.TopicPartition(t, p) for t, p in new], timeout=30)
        assign = []
        for tp in committed:
            off = tp.offset if tp.offset is not None and tp.offset >= 0 else None
            high = self.m.earlier.get((tp.topic, tp.partition), -1)
            self.tails[(tp.topic, tp.partition)] = Tail(off, high)
            assign.append(mod.TopicPartition(tp.topic, tp.partition, off if off is not None else mod.OFFSET_STORED))
            if off is not None:
                again = max(0, high + 1 - off)
                self.m._say("%s[%d]: resuming at offset %d (its last commit); %d record(s) an earlier run had "
                            "delivered after it go again: duplicates at the target" % (tp.topic, tp.partition, off,
                                                                                       again))
            elif high >= 0:  # acknowledged, never committed (killed before its first commit)
                self._say_uncommitted(tp, high)
        self.consumer.incremental_assign(assign)

    def _say_uncommitted(self, tp, high):
        """A partition an earlier run delivered records of but never
        committed: it starts where auto.offset.reset says, and from the
        earliest record, every one up to what that run delivered goes again."""
        reset = str(self.m.cconf.get("auto.offset.reset", "earliest")).lower()
        if reset not in ("earliest", "smallest", "beginning"):
            self.m._say("%s[%d]: no commit yet; starting where auto.offset.reset=%s says (an earlier run had "
                        "delivered up to offset %d: what it sent again is counted as duplicates)"
                        % (tp.topic, tp.partition, reset, high))
            return
        try:
            low = self.consumer.get_watermark_offsets(self.m.cmod.TopicPartition(tp.topic, tp.partition), 30)[0]
        except Exception as exc:  # ours or confluent-kafka's KafkaException: the count is lost, not records
            _log.warning("%s[%d]: earliest offset not read: %s", tp.topic, tp.partition, error_text(exc))
            return
        self.m._say("%s[%d]: no commit yet; starting at offset %d (auto.offset.reset=%s); %d record(s) an earlier "
                    "run had delivered go again: duplicates at the target"
                    % (tp.topic, tp.partition, low, reset, max(0, high + 1 - low)))

    def _delivered(self, tail, off, err, msg):
        st = self.m.stats
        if err is not None:
            with st.lock:
                st.failed += 1
            if self.m.abort:
                self.m.error = "a record of %s could not be sent: %s" % (msg.topic() if msg else "?", error_text(err))
                self.m.stop()
                return
            _log.warning("record dropped (abort.on.send.failure=false): %s", error_text(err))
        else:
            with st.lock:
                st.delivered += 1
        tail.ack(off)  # a dropped record (abort off) does not hold the commit point back

    def _commit(self):
        mod = self.m.cmod
        offs = []
        for (t, p), tail in self.tails.items():
            if tail.next is not None and tail.next != tail.committed:
                offs.append((mod.TopicPartition(t, p, tail.next), tail))
        if not offs:
            return
        try:
            self.consumer.commit(offsets=[tp for tp, _ in offs], asynchronous=False)
        except Exception as exc:  # ours or confluent-kafka's KafkaException (the source away, a rebalance...)
            if not isinstance(exc, KafkaException) and type(exc).__name__ != "KafkaException":
                raise
            _log.warning("commit failed (tried again at the next interval): %s", error_text(exc))
            return
        for tp, tail in offs:
            tail.committed = tp.offset

    def loop(self):
        m, consumer, producer = self.m, self.consumer, self.producer
        produce, poll, st = producer.produce, producer.poll, m.stats
        same, tails, stop = m._same, self.tails, m._stop
        next_commit = time.monotonic() + m.commit_s
        saved, next_save = -1, 0.0
        try:
            while not stop.is_set():
                self._reassign()
                if not tails:
                    stop.wait(0.05)
                    continue
                msgs = consumer.consume(_BATCH, 0.1)
                n = dups = 0
                for msg in msgs:
                    err = msg.error()
                    if err is not None:
                        if err.code() != _PARTITION_EOF:
                            _log.warning("source: %s", error_text(err))
                        continue
                    t, p, off = msg.topic(), msg.partition(), msg.offset()
                    tail = tails[(t, p)]
                    tail.sent.append(off)
                    if off <= tail.resend_to:
                        dups += 1
                    ts_type, ts = msg.timestamp()
                    kw = {"partition": p} if same.get(t) else {}
                    headers = msg.headers()
                    if headers:
                        kw["headers"] = headers
                    cb = functools.partial(self._delivered, tail, off)
                    while True:
                        try:
                            produce(t, msg.value(), msg.key(), timestamp=ts if ts_type else 0, on_delivery=cb, **kw)
                            break
                        except BufferError:  # the target is slow or away: wait for room (delivery reports)
                            poll(0.1)
                            if stop.is_set() and m.error is not None:
                                return
                    n += 1
                if n:
                    with st.lock:
                        st.sent += n
                        st.duplicates += dups
                poll(0)
                now = time.monotonic()
                if st.delivered != saved and now >= next_save:  # new acknowledgements: 50 small writes/s at most
                    saved, next_save = st.delivered, now + 0.02
                    m.state.save(self.index, tails)
                if now >= next_commit:
                    self._commit()
                    next_commit = now + m.commit_s
        except Exception as exc:  # one line for the user; the others stop too
            self.failure = "%s: %s" % (type(exc).__name__, error_text(exc))
            m.stop()
        finally:
            self._finish()

    def _finish(self):
        """Flush what was sent (waiting while the target answers), then commit."""
        left = self.producer.flush(60)
        if left:
            self.m._say("%d records were not acknowledged by the target within 60 s: not committed (sent again "
                        "at the next start)" % left)
        self._commit()
        if all(t.committed == t.next and not t.sent for t in self.tails.values()):
            self.m.state.remove(self.index)  # everything delivered is committed: nothing to count next time
        else:
            self.m.state.save(self.index, self.tails)

    def close(self):
        for c in (self.consumer, self.producer):
            try:
                close = getattr(c, "close", None)
                if close is not None:
                    close()
            except Exception:  # closing at exit: nothing more to do
                pass
