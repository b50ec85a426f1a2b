"""Model-based test: the partition log against a plain Python model of a
Kafka log with overwrite retention (index ring of N offsets, data ring of D
bytes), driven by a Hypothesis state machine."""
import itertools
import os

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from broker.errors import MessageTooLargeError
from shm import Lapped, NotYet, PartitionLog, Record
from shm.log import encode_headers
from shm.segment import unlink

_names = itertools.count()
HEADERS = st.one_of(st.none(), st.lists(st.tuples(st.text(max_size=3), st.one_of(st.none(), st.binary(max_size=4))),
                                        max_size=2))


def align8(x):
    return (x + 7) & ~7


class LogModel(RuleBasedStateMachine):
    log = None

    @initialize(n=st.sampled_from([2, 4, 8, 16]), d=st.sampled_from([64, 128, 512, 2048]),
                start=st.sampled_from([0, 7, 2 * ((1 << 40) - 3)]), maxrec=st.integers(0, 120))
    def create(self, n, d, start, maxrec):
        self.name = "/sbtmodel%d_%d" % (os.getpid(), next(_names))
        self.n, self.d, self.start = n, d, start
        self.maxrec = min(maxrec, d - 16)
        self.log = PartitionLog.create(self.name, slot_count=n, data_capacity=d, max_record=self.maxrec,
                                       start_offset=start)
        self.recs = {}  # offset -> (key, value, headers, ts, pos)
        self.high = start
        self.bytes = 0

    def teardown(self):
        if self.log is not None:
            self.log.close()
            unlink(self.name)

    # -- the model
    def retained(self, o):
        if not (self.start <= o < self.high and o >= self.high - self.n):
            return False
        return self.recs[o][4] + self.d >= self.bytes

    def low(self):
        for o in range(max(self.start, self.high - self.n), self.high):
            if self.retained(o):
                return o
        return self.high

    def add(self, key, value, headers, ts, payload):
        self.recs[self.high] = (key, value, headers or None, ts, self.bytes)
        self.bytes += align8(16 + payload)
        self.high += 1

    def expect(self, o, got):
        if o >= self.high:
            assert isinstance(got, NotYet), (o, got)
        elif self.retained(o):
            k, v, h, ts, _ = self.recs[o]
            assert isinstance(got, Record), (o, got)
            assert (got.offset, got.key, got.value, got.headers, got.timestamp_ns) == (o, k, v, h, ts)
        else:
            assert isinstance(got, Lapped) and got.low == self.low(), (o, got, self.low())

    # -- rules
    @precondition(lambda self: self.log is not None)
    @rule(value=st.one_of(st.none(), st.binary(max_size=130)), key=st.one_of(st.none(), st.binary(max_size=10)),
          headers=HEADERS)
    def append(self, value, key, headers):
        payload = len(value or b"") + len(key or b"") + len(encode_headers(headers))
        ts = self.high + 1
        if payload > self.maxrec:
            try:
                self.log.append(value, key=key, headers=headers, timestamp_ns=ts)
            except MessageTooLargeError:
                return
            raise AssertionError("oversize record accepted")
        assert self.log.append(value, key=key, headers=headers, timestamp_ns=ts) == self.high
        self.add(key, value, headers, ts, payload)

    @precondition(lambda self: self.log is not None)
    @rule(values=st.lists(st.binary(max_size=40), min_size=1, max_size=12))
    def append_batch(self, values):
        ts = self.high + 1
        total = sum(align8(16 + len(v)) for v in values)
        if len(values) > self.n or total > self.d or max(map(len, values)) > self.maxrec:
            try:
                self.log.append_batch(values, timestamp_ns=ts)
            except MessageTooLargeError:
                return
            raise AssertionError("oversize batch accepted")
        assert self.log.append_batch(values, timestamp_ns=ts) == self.high
        for v in values:
            self.add(None, v, None, ts, len(v))

    @precondition(lambda self: self.log is not None)
    @rule(delta=st.integers(-20, 3))
    def read(self, delta):
        o = max(0, self.high + delta)
        self.expect(o, self.log.read(o))

    @precondition(lambda self: self.log is not None)
    @rule(delta=st.integers(-20, 3), max_records=st.integers(1, 20))
    def read_batch(self, delta, max_records):
        o = max(0, self.high + delta)
        recs, nxt, stop = self.log.read_batch(o, max_records)
        for r in recs:
            self.expect(r.offset, r)
        assert [r.offset for r in recs] == list(range(o, o + len(recs)))
        assert nxt == o + len(recs)
        if stop is not None:
            self.expect(nxt, stop)
        else:
            assert len(recs) == max_records

    @precondition(lambda self: self.log is not None)
    @invariant()
    def watermarks(self):
        assert self.log.watermarks() == (self.low(), self.high)


LogModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestLogModel = LogModel.TestCase
