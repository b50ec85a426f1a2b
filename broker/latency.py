"""Latency of your own pipeline stages, measured across processes.

A stage starts in one process and may end in another: take a stamp where it
starts, carry the stamp with the data (in the record's value or a header),
and stop the stage where it ends::

    from broker import latency

    t0 = latency.stamp()                       # producer process
    producer.produce("jobs", t0.to_bytes(8, "little") + job)

    stages = latency.Stages()                  # each consumer process
    msg = consumer.poll(1.0)
    stages["queue"].stop(int.from_bytes(msg.value()[:8], "little"))  # records stamp() - t0
    t1 = stages["work"].start()
    do_the_work(msg)
    stages["work"].stop(t1)
    result_pipe.send(stages.encode())          # bytes, a few KiB

    total = latency.Stages()                   # the collecting process
    for blob in blobs:
        total.merge(blob)                      # HdrHistograms add up exactly
    print(total.report())                      # count, mean, p50 .. p99.99, max per stage, in us
    total["queue"].write_hgrm("queue.hgrm")    # HdrHistogram's percentile distribution, values in us
    latency.plot("stages.png", total)          # percentile-distribution plot (matplotlib)

Stamps are ``time.monotonic_ns()``: on Linux CLOCK_MONOTONIC is one clock for
the whole host, so a stamp taken in one process and stopped in another is a
latency (not across hosts, not across a reboot; never wall time, which jumps).

Each ``Stage`` is an HdrHistogram (the ``hdrhistogram`` package, in the
``shmbroker[perf]`` extra) of nanoseconds, 3 significant digits from 1 ns to
one hour (longer values are clamped to an hour and counted in ``clamped``).
``stop``/``record`` only append to a bounded buffer; the buffer goes into the
histogram 64 Ki values at a time, so recording costs well under a
microsecond.  Encoded stages (HdrHistogram's compressed V2 format, base64)
merge across processes, and any HdrHistogram tool reads them.

Without ``hdrhistogram`` a Stage keeps a bounded sample of its values instead
(every value until 1 Mi of them, then every 2nd, 4th, ...: Kafka's perf tools
sample the same way) so percentiles, mean and max still work; ``encode``,
``merge``, ``write_hgrm`` and ``plot`` raise ModuleNotFoundError saying to
install ``shmbroker[perf]``.

``Pacer`` schedules an open-loop run (record i is due at start + i / rate):
a latency timed from ``pacer.wait(i)``'s due time, not from when the record
was really sent, is corrected for coordinated omission (a stall delays every
record due during it, as wrk2 and JLBH count it).
"""
import io
import json
import math
import time

import numpy as np

from shm._native import _fastlog

_spin_until = _fastlog.spin_until

__all__ = ["stamp", "Stage", "Stages", "Pacer", "plot", "have_hdrh", "PERF_EXTRA"]

PERF_EXTRA = "pip install 'shmbroker[perf]'"
HIGHEST_NS = 3600 * 10**9  # one hour
DIGITS = 3
_CHUNK = 1 << 16  # values buffered before they go into the histogram
_SAMPLES = 1 << 20  # the fallback's bound

stamp = time.monotonic_ns


def have_hdrh():
    try:
        import hdrh.histogram  # noqa: F401
        return True
    except ImportError:
        return False


def _need(module, what):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ModuleNotFoundError("%s needs the %s package: %s" % (what, module.split(".")[0], PERF_EXTRA)) from None


def _new_hdr():
    from hdrh.histogram import HdrHistogram
    return HdrHistogram(1, HIGHEST_NS, DIGITS)


def _lowest_equivalent(v):
    """Each value rounded down to the first value of its HdrHistogram bucket
    (1 ns unit, 3 digits: the top 11 bits kept), so equal ones can go in with
    one record_value(v, count) call and land where each alone would."""
    _, bits = np.frexp(v.astype(np.float64))  # the bit length, exact below 2**53
    shift = np.maximum(bits.astype(np.int64) - 11, 0)
    return (v >> shift) << shift


class _Sample:
    """The fallback without hdrhistogram: a bounded, evenly thinned sample."""

    def __init__(self):
        self.vals = np.empty(0, dtype=np.int64)
        self.stride = 1
        self.skip = 0  # values to pass over before the next kept one
        self.count = 0
        self.sum = 0
        self.max = 0
        self.min = None

    def add(self, v, n=None):
        """Values *v*, each *n* times (None: once)."""
        if n is None:
            self.count += len(v)
            self.sum += int(v.sum())
        else:
            total = int(n.sum())
            self.count += total
            self.sum += int((v * n).sum())
            if total > _CHUNK:  # keep the proportions, not every copy
                n = np.maximum(n * _CHUNK // total, 1)
            v = np.repeat(v, n)
        self.max = max(self.max, int(v.max()))
        self.min = int(v.min()) if self.min is None else min(self.min, int(v.min()))
        kept = v[self.skip::self.stride]
        self.skip = (self.skip - len(v)) % self.stride
        self.vals = np.concatenate((self.vals, kept))
        while len(self.vals) > _SAMPLES:
            self.vals = self.vals[::2]
            self.stride *= 2
            self.skip = 0

    def percentile(self, p):
        if not len(self.vals):
            return 0
        s = np.sort(self.vals)
        return int(s[min(int(p / 100.0 * len(s)), len(s) - 1)])  # Kafka's index rule


class Stage:
    """One stage's latencies (ns): ``start()``/``stop(t0)`` or ``record(ns)``."""

    def __init__(self, name="latency"):
        self.name = name
        self.clamped = 0  # values longer than an hour, recorded as an hour
        self._buf = []
        self._bufc = []  # (value, count) pairs
        self._hdr = _new_hdr() if have_hdrh() else None
        self._sample = None if self._hdr is not None else _Sample()

    # -- recording
    start = staticmethod(stamp)

    def stop(self, t0):
        """Record the time since stamp *t0* (taken in any process of this host); returns it (ns)."""
        v = stamp() - t0
        self._buf.append(v)
        if len(self._buf) >= _CHUNK:
            self._flush()
        return v

    def record(self, ns, count=1):
        """Record a latency of *ns* nanoseconds (*count* times)."""
        if count == 1:
            self._buf.append(ns)
        else:
            self._bufc.append((ns, count))
        if len(self._buf) + len(self._bufc) >= _CHUNK:
            self._flush()

    def _flush(self):
        if self._buf:
            v = np.array(self._buf, dtype=np.int64)
            self._buf.clear()
            self._add(v, None)
        if self._bufc:
            v, n = np.array(self._bufc, dtype=np.int64).T.copy()
            self._bufc.clear()
            self._add(v, n)

    def _add(self, v, n):
        """Values *v* (ns), each *n* times (None: once)."""
        np.maximum(v, 0, out=v)
        over = v > HIGHEST_NS
        if over.any():
            self.clamped += int(over.sum() if n is None else n[over].sum())
            v[over] = HIGHEST_NS
        if self._hdr is None:
            self._sample.add(v, n)
            return
        if n is None:
            v, n = np.unique(_lowest_equivalent(v), return_counts=True)
        else:
            v = _lowest_equivalent(v)
        rec = self._hdr.record_value
        for value, count in zip(v.tolist(), n.tolist()):
            rec(value, count)

    def reset(self):
        self._buf.clear()
        self._bufc.clear()
        self.clamped = 0
        if self._hdr is not None:
            self._hdr.reset()
        else:
            self._sample = _Sample()

    # -- reading (ns)
    @property
    def count(self):
        self._flush()
        return self._hdr.get_total_count() if self._hdr is not None else self._sample.count

    def mean(self):
        self._flush()
        if self._hdr is not None:
            return self._hdr.get_mean_value() if self._hdr.get_total_count() else 0.0
        return self._sample.sum / self._sample.count if self._sample.count else 0.0

    def max(self):
        self._flush()
        return self._hdr.get_max_value() if self._hdr is not None else self._sample.max

    def min(self):
        self._flush()
        if self._hdr is not None:
            return self._hdr.get_min_value() if self._hdr.get_total_count() else 0
        return self._sample.min or 0

    def percentiles(self, ps=(50, 90, 99, 99.9, 99.99)):
        """{p: ns} for each percentile p in [0, 100]."""
        self._flush()
        if self._hdr is not None:
            if not self._hdr.get_total_count():
                return {p: 0 for p in ps}
            return dict(self._hdr.get_percentile_to_value_dict(list(ps)))
        return {p: self._sample.percentile(p) for p in ps}

    def percentile(self, p):
        return self.percentiles((p,))[p]

    def summary(self, ps=(50, 90, 99, 99.9, 99.99)):
        """count, min, mean, max and each percentile ("p99.9"), times in microseconds."""
        pct = self.percentiles(ps)
        out = {"count": self.count, "min": self.min() / 1e3, "mean": self.mean() / 1e3, "max": self.max() / 1e3}
        out.update(("p%g" % p, pct[p] / 1e3) for p in ps)
        if self.clamped:
            out["clamped"] = self.clamped
        return out

    def line(self, ps=(50, 90, 99, 99.9, 99.99)):
        """One line: 'p50 1.23, p90 ..., max ..., mean ... us (N records)'."""
        s = self.summary(ps)
        parts = ["min %s" % _us(s["min"])] + ["p%g %s" % (p, _us(s["p%g" % p])) for p in ps]
        parts += ["max %s" % _us(s["max"]), "mean %s" % _us(s["mean"])]
        return "%s us (%d records)" % (", ".join(parts), s["count"])

    def _need(self, what):
        if self._hdr is None:
            raise ModuleNotFoundError("%s needs the hdrhistogram package: %s" % (what, PERF_EXTRA))

    # -- across processes
    def encode(self):
        """HdrHistogram's compressed V2 encoding (base64 bytes) of this stage."""
        self._need("encoding a latency histogram")
        self._flush()
        return self._hdr.encode()

    @classmethod
    def decode(cls, blob, name="latency"):
        _need("hdrh.histogram", "decoding a latency histogram")
        from hdrh.histogram import HdrHistogram
        st = cls(name)
        st._hdr.add(HdrHistogram.decode(blob))
        return st

    def merge(self, other):
        """Add another Stage, or its ``encode()`` bytes (from any process), into this one."""
        self._need("merging latency histograms")
        self._flush()
        if isinstance(other, Stage):
            other._flush()
            self._hdr.add(other._hdr)
            self.clamped += other.clamped
        else:
            self._hdr.decode_and_add(other)
        return self

    # -- files
    def write_hgrm(self, path_or_file):
        """HdrHistogram's outputPercentileDistribution text, values in microseconds."""
        self._need("writing an .hgrm file")
        self._flush()
        buf = io.BytesIO()
        self._hdr.output_percentile_distribution(buf, 1000.0)
        text = buf.getvalue().decode()
        # hdrh leaves the standard deviation unscaled (ns): state it in us like the rest of the file
        text = "\n".join("#[Mean    = %12.3f, StdDeviation   = %12.3f]" % (
            self._hdr.get_mean_value() / 1e3 if self._hdr.get_total_count() else 0.0, self._hdr.get_stddev() / 1e3)
            if ln.startswith("#[Mean") else ln for ln in text.split("\n"))
        if hasattr(path_or_file, "write"):
            path_or_file.write(text)
        else:
            with open(path_or_file, "w") as f:
                f.write(text)

    def distribution(self, ticks=5):
        """[(percentile 0..1, value in us)] as the .hgrm file lists them."""
        self._need("a percentile distribution")
        self._flush()
        if not self._hdr.get_total_count():
            return []
        return [(it.percentile_level_iterated_to / 100.0, it.value_iterated_to / 1e3)
                for it in self._hdr.get_percentile_iterator(ticks)]

    def __repr__(self):
        return "Stage(%r, %s)" % (self.name, self.line() if self.count else "empty")


def _us(x):
    return "%.3g" % x if x < 100 else "%.0f" % x


class Stages(dict):
    """Stages by name, each created on first use: ``stages["parse"].stop(t0)``."""

    def __missing__(self, name):
        st = self[name] = Stage(name)
        return st

    def encode(self):
        """Every stage, as bytes to send to another process (``merge`` there)."""
        return json.dumps({n: st.encode().decode() for n, st in self.items()}).encode()

    def merge(self, other):
        """Add a Stages, or the bytes of ``Stages.encode()``, stage by stage."""
        items = other.items() if isinstance(other, dict) else json.loads(other).items()
        for name, st in items:
            self[name].merge(st.encode() if isinstance(st, str) else st)
        return self

    def report(self):
        """One line per stage, in microseconds."""
        w = max([len(n) for n in self] + [5])
        return "\n".join("%-*s  %s" % (w, n, st.line()) for n, st in self.items())


class Pacer:
    """An open-loop schedule at *rate* per second: record i is due at
    start + i / rate.  ``wait(i)`` returns when record i is due (at once if it
    is late) with its due time (monotonic ns): a latency measured from that
    time counts the wait of every record a stall held back.  Sleeps while more
    than *spin_us* ahead, then spins (0: sleep only).  ``wait_stamp(i)`` also
    returns the clock's reading as the wait ended: the send stamp, without a
    second clock call between the due time and the send."""

    def __init__(self, rate, spin_us=0, clock=time.monotonic_ns, sleep=time.sleep):
        if not rate > 0:
            raise ValueError("rate must be > 0 records/s, got %r" % (rate,))
        self.rate = float(rate)
        self.period_ns = 1e9 / self.rate
        self._spin = int(spin_us * 1000)
        self._clock, self._sleep = clock, sleep
        self.t0 = None

    def start(self, t0=None):
        self.t0 = self._clock() if t0 is None else t0
        return self.t0

    def due(self, i):
        return self.t0 + int(i * self.period_ns)

    def wait(self, i):
        return self.wait_stamp(i)[0]

    def wait_stamp(self, i):
        """``wait(i)``, returning (due, now): *now* is the clock's last reading,
        taken as the wait ended, so the caller sends at once instead of
        reading the clock again for its send stamp."""
        if self.t0 is None:
            self.start()
        due = self.t0 + int(i * self.period_ns)
        clock = self._clock
        now = clock()
        while due - now > self._spin:
            self._sleep((due - now - self._spin) / 1e9)
            now = clock()
        if now < due:
            if clock is time.monotonic_ns:  # the spin in C (shm._fastlog.spin_until): back within ns of due
                now = _spin_until(due)
            else:
                while now < due:
                    now = clock()
        return due, now


def plot(path, stages, title=None):
    """A PNG of percentile distributions, one line per stage: latency (us, log)
    against 1/(1-p) on a log axis labelled 0%, 90%, 99%, 99.9%, ... as
    HdrHistogram's plotters draw it.  *stages*: a Stages, a {label: Stage}, or a Stage."""
    _need("hdrh.histogram", "a latency plot")
    mpl = _need("matplotlib", "a latency plot")
    mpl.use("Agg")
    import matplotlib.pyplot as plt
    if isinstance(stages, Stage):
        stages = {stages.name: stages}
    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    top = 10.0
    for label, st in stages.items():
        pts = [(p, v) for p, v in st.distribution() if p < 1.0]
        if not pts:
            continue
        xs = [1.0 / (1.0 - p) for p, _ in pts]
        ax.plot(xs, [max(v, 1e-3) for _, v in pts], label="%s (%d)" % (label, st.count))
        top = max(top, xs[-1])
    ax.set_xscale("log")
    ax.set_yscale("log")
    decades = max(1, int(math.ceil(math.log10(top))))
    ticks = [10.0 ** k for k in range(decades + 1)]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["%g%%" % (100.0 * (1.0 - 1.0 / t)) for t in ticks])
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (us)")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title or "latency by percentile")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
