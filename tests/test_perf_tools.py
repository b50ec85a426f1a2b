"""Kafka's perf tools (producer-perf-test, consumer-perf-test, e2e-latency):
their output lines against Kafka's formats, the files (.hgrm, JSON, PNG),
the rate limiter, coordinated-omission correction, usage errors; and the
broker.latency API (merge across processes, the fallback without hdrhistogram)."""
import json
import os
import re
import subprocess
import sys
import time

import pytest

from broker import latency
from broker.latency import Pacer, Stage, Stages

from conftest import HAVE_MPL

needs_extra = pytest.mark.skipif(not (latency.have_hdrh() and HAVE_MPL),
                                 reason="the shmbroker[perf] extra (hdrhistogram, matplotlib) is not installed, "
                                        "or this is the ASan pass")

F, F1, F2, F4, F6 = r"\d+\.\d+", r"\d+\.\d", r"\d+\.\d\d", r"(?:\d+\.\d{4}|Infinity|NaN)", r"\d+\.\d{6}"
# Kafka's ProducerPerformance: printWindow every 5 s, printTotal at the end
PRODUCER_WINDOW = re.compile(r"^(\d+) records sent, (%s) records/sec \((%s) MB/sec\), (%s) ms avg latency, (%s) ms max "
                             r"latency\.$" % (F1, F2, F1, F1))
PRODUCER_TOTAL = re.compile(r"^(\d+) records sent, (%s) records/sec \((%s) MB/sec\), (%s) ms avg latency, (%s) ms max "
                            r"latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99\.9th\.$"
                            % (F6, F2, F2, F2))
US_LINE = re.compile(r"min %s, p50 %s, .*max %s, mean %s us \((\d+) records\)" % ((r"[\d.e+]+",) * 4))
# ConsumerPerformance
CONSUMER_HEADER = ("start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, "
                   "rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec")
DETAIL_HEADER = ("time, threadId, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, "
                 "rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec")
DATE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d{3}"
CONSUMER_ROW = re.compile(r"^(%s), (%s), (\d+\.\d{4}), %s, (\d+), %s, (\d+), (-?\d+), %s, %s$"
                          % (DATE, DATE, F4, F4, F4, F4))
DETAIL_ROW = re.compile(r"^%s, 0, \d+\.\d{4}, %s, (\d+), %s, \d+, -?\d+, %s, %s$" % (DATE, F4, F4, F4, F4))
# EndToEndLatency
E2E_PROGRESS = re.compile(r"^(\d+)\t(\d+\.\d+(?:E-?\d+)?)$")
E2E_AVG = re.compile(r"^Avg latency: (\d+\.\d{4}) ms$")
E2E_PCT = re.compile(r"^Percentiles: 50th = (\d+), 99th = (\d+), 99\.9th = (\d+)$")
HGRM_ROW = re.compile(r"^\s*(%s)\s+(%s)\s+(\d+)(?:\s+(%s))?$" % (F, F, F))


def run(ns, *args, env=None):
    e = dict(os.environ, SHMBROKER_NAMESPACE=ns, **(env or {}))
    return subprocess.run([sys.executable, "-m", "broker", *args], capture_output=True, text=True, env=e,
                          timeout=120)


def create(ns, topic, partitions=1):
    r = run(ns, "topics", "--create", "--topic", topic, "--partitions", str(partitions))
    assert r.returncode == 0, r.stderr


def high_watermarks(ns, topic, partitions):
    from broker import Consumer, TopicPartition
    with Consumer({"shm.namespace": ns}) as c:
        return [c.get_watermark_offsets(TopicPartition(topic, p))[1] for p in range(partitions)]


def lines(r):
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def produce(ns, topic, n, size):
    return lines(run(ns, "producer-perf-test", "--topic", topic, "--num-records", str(n), "--record-size", str(size),
                     "--throughput", "-1"))


# -- producer-perf-test
def test_producer_perf_writes_exactly_n_and_prints_kafkas_line(ns):
    create(ns, "p", partitions=3)
    out = lines(run(ns, "producer-perf-test", "--topic", "p", "--num-records", "2500", "--record-size", "100",
                    "--throughput", "-1", "--producer-props", "acks=1", "linger.ms=0", "--print-metrics"))
    total = [m for m in map(PRODUCER_TOTAL.match, out) if m]
    assert len(total) == 1 and int(total[0].group(1)) == 2500
    assert float(total[0].group(2)) > 0 and total[0].group(4) and int(total[0].group(6)) <= int(total[0].group(9))
    us = [m for m in map(US_LINE.search, out) if m]
    assert len(us) == 1 and int(us[0].group(1)) == 2500
    assert any(re.match(r"^producer-metrics:record-send-total:\{client-id=perf-producer-client\}\s+: 2500\.000$", l)
               for l in out)
    assert sum(high_watermarks(ns, "p", 3)) == 2500  # exactly --num-records, no warm-up written


def test_producer_perf_payload_file_and_props_file(ns, tmp_path):
    create(ns, "pf")
    (tmp_path / "payloads.txt").write_text("alpha\nbeta\ngamma\n")
    (tmp_path / "producer.properties").write_text("# Kafka's file\nbootstrap.servers=shm://%s\nacks: all\n"
                                                  "key.serializer=org.apache.kafka.common.serialization."
                                                  "ByteArraySerializer\n" % ns)
    out = lines(run("sbtnotthisone", "producer-perf-test", "--topic", "pf", "--num-records", "300", "--payload-file",
                    str(tmp_path / "payloads.txt"), "--throughput", "-1", "--producer.config",
                    str(tmp_path / "producer.properties")))
    assert out[:2] == ["Reading payloads from: %s" % (tmp_path / "payloads.txt"), "Number of messages read: 3"]
    assert PRODUCER_TOTAL.match(out[2]) and out[2].startswith("300 records sent")
    assert high_watermarks(ns, "pf", 1) == [300]


def test_rate_limiter_within_15_percent_and_the_5s_window_line(ns):
    """--throughput 1000 over 6000 records (6 s): the total rate and the 5 s window's within +-15 %."""
    create(ns, "r")
    out = lines(run(ns, "producer-perf-test", "--topic", "r", "--num-records", "6000", "--record-size", "64",
                    "--throughput", "1000"))
    windows = [m for m in map(PRODUCER_WINDOW.match, out) if m]
    assert len(windows) == 1, out
    assert 850 <= float(windows[0].group(2)) <= 1150, out
    total = PRODUCER_TOTAL.match(out[-2])
    assert total and int(total.group(1)) == 6000, out
    assert 850 <= float(total.group(2)) <= 1150, out
    assert high_watermarks(ns, "r", 1) == [6000]


@needs_extra
def test_producer_perf_files(ns, tmp_path):
    from hdrh.histogram import HdrHistogram
    create(ns, "f")
    h, j, png = tmp_path / "p.hgrm", tmp_path / "p.json", tmp_path / "p.png"
    r = run(ns, "producer-perf-test", "--topic", "f", "--num-records", "1500", "--record-size", "32", "--throughput",
            "-1", "--hgrm", str(h), "--json", str(j), "--plot", str(png))
    lines(r)
    rows = [m for m in map(HGRM_ROW.match, h.read_text().splitlines()) if m]
    assert rows and int(rows[-1].group(3)) == 1500 and float(rows[-1].group(2)) == 1.0
    assert re.search(r"#\[Max\s+=\s+%s, TotalCount\s+=\s+1500\.000\]" % F, h.read_text())
    d = json.loads(j.read_text())
    assert {"tool", "records", "rate", "mb_per_sec", "cpu_per_record_us", "config", "latency_us",
            "latency_histogram"} <= set(d)
    assert d["tool"] == "producer-perf-test" and d["records"] == 1500 and d["config"]["num_records"] == 1500
    assert {"count", "min", "mean", "max", "p50", "p90", "p99", "p99.9", "p99.99"} <= set(d["latency_us"])
    hist = HdrHistogram.decode(d["latency_histogram"].encode())
    assert hist.get_total_count() == 1500
    # the .hgrm's max (us) is the decoded histogram's (ns)
    assert abs(float(rows[-1].group(1)) - hist.get_max_value() / 1e3) < 1e-3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


# -- consumer-perf-test
def test_consumer_perf_header_and_row(ns):
    from broker.admin import AdminClient
    create(ns, "c", partitions=2)
    produce(ns, "c", 3000, 100)
    out = lines(run(ns, "consumer-perf-test", "--topic", "c", "--messages", "3000"))
    assert out[0] == CONSUMER_HEADER
    m = CONSUMER_ROW.match(out[1])
    assert m, out
    assert float(m.group(3)) == pytest.approx(3000 * 100 / 2**20, abs=1e-4) and int(m.group(4)) == 3000
    assert m.group(1) <= m.group(2) and int(m.group(5)) >= 0
    us = US_LINE.search(out[2])
    assert us and int(us.group(1)) == 3000 and len(out) == 3
    with AdminClient({"shm.namespace": ns}) as a:  # the made-up group is gone
        assert not [g for g in a.list_consumer_groups().result().valid if g.group_id.startswith("perf-consumer-")]


def test_consumer_perf_detailed_hidden_header_and_timeout(ns):
    create(ns, "d")
    produce(ns, "d", 20000, 16)
    out = lines(run(ns, "consumer-perf-test", "--topic", "d", "--messages", "20000", "--show-detailed-stats",
                    "--reporting-interval", "1", "--group", "g1"))
    assert out[0] == DETAIL_HEADER
    rows = [DETAIL_ROW.match(l) for l in out[1:-1]]
    assert rows and all(rows), out  # one row per interval, no summary row
    assert [int(r.group(1)) for r in rows] == sorted(int(r.group(1)) for r in rows)
    out = lines(run(ns, "consumer-perf-test", "--topic", "d", "--messages", "10", "--hide-header", "--timeout", "300",
                    "--group", "g1"))  # g1 committed everything: nothing left
    assert out[0].startswith("WARNING: Exiting before consuming the expected number of messages: timeout (300 ms) "
                             "exceeded.")
    m = CONSUMER_ROW.match(out[1])
    assert m and int(m.group(4)) == 0, out


# -- e2e-latency
def test_e2e_positional_form(ns):
    out = lines(run("sbtnotthisone", "e2e-latency", "shm://%s" % ns, "e", "1200", "all", "32"))
    assert out[0] == 'Topic "e" does not exist. Will create topic with 1 partition(s) and replication factor = 1'
    prog = [E2E_PROGRESS.match(l) for l in out[1:3]]
    assert all(prog) and [int(p.group(1)) for p in prog] == [0, 1000], out
    assert E2E_AVG.match(out[3]) and E2E_PCT.match(out[4]), out
    us = US_LINE.search(out[5])
    assert out[5].startswith("Latency: ") and us and int(us.group(1)) == 1200, out
    assert high_watermarks(ns, "e", 1) == [1200]


def test_e2e_flags_json(ns, tmp_path):
    j, props = tmp_path / "e.json", tmp_path / "client.properties"
    props.write_text("acks=all\nlinger.ms=5\nfetch.wait.max.ms=0\n")  # Kafka's one file for both clients
    out = lines(run(ns, "e2e-latency", "--topic", "e2", "--num-records", "500", "--record-size", "8", "--json",
                    str(j), "--command-config", str(props)))
    assert E2E_AVG.match(out[-3]) and E2E_PCT.match(out[-2])
    d = json.loads(j.read_text())
    assert {"tool", "records", "rate", "cpu_per_record_us", "config", "latency_us"} <= set(d)
    assert d["records"] == 500 and d["latency_us"]["count"] == 500 and d["config"]["mode"] == "closed loop"
    assert float(E2E_AVG.match(out[-3]).group(1)) == pytest.approx(d["latency_us"]["mean"] / 1e3, abs=2e-4)


def test_coordinated_omission_correction_shows_a_stall(ns, tmp_path, capsys, monkeypatch):
    """Open loop at 2000/s; a 50 ms stall before record 1000 holds back ~100
    records due during it: their latency from the due time is up to 50 ms, so
    the corrected p99 shows it, the uncorrected one (from the real send) not."""
    from broker.cli import main, perf
    stalled = []

    def stall(i):
        if i == 1000:
            stalled.append(time.monotonic())
            time.sleep(0.05)  # the injected stall, not a synchronisation
    monkeypatch.setattr(perf, "_before_send", stall)
    j = tmp_path / "co.json"
    assert main(["e2e-latency", "--namespace", ns, "--topic", "co", "--num-records", "3000", "--record-size", "16",
                 "--rate", "2000", "--json", str(j)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(stalled) == 1
    d = json.loads(j.read_text())
    assert d["latency_us"]["p99"] >= 20000, d["latency_us"]
    assert d["latency_us"]["max"] >= 45000, d["latency_us"]
    assert d["uncorrected_us"]["p99"] < 10000, d["uncorrected_us"]
    assert d["send_lateness_us"]["max"] >= 45000, d["send_lateness_us"]  # the stall is the sender's, and shown
    assert d["rate_reached"] is True and 1700 <= d["rate"] <= 2300, d["rate"]
    assert [l for l in out if l.startswith("Latency from intended send time (coordinated omission corrected): ")]
    assert [l for l in out if l.startswith("Latency from actual send time (uncorrected): ")]
    assert not [l for l in out if l.startswith("WARNING")]


def test_e2e_warns_when_the_rate_is_not_reached(ns):
    out = lines(run(ns, "e2e-latency", "--topic", "w", "--num-records", "2000", "--record-size", "8", "--rate",
                    "1e9"))
    warn = [l for l in out if l.startswith("WARNING: target rate 1000000000.0 records/sec not reached")]
    assert len(warn) == 1, out


def test_pacer_and_correction_on_a_simulated_clock():
    """Deterministic: each send takes 20 us of a fake clock, record 500 of
    2000 stalls 50 ms; due every 1 ms."""
    now = [0]

    def sleep(s):
        now[0] += int(s * 1e9)
    pacer = Pacer(1000, clock=lambda: now[0], sleep=sleep)
    corrected, raw = Stage("c"), Stage("u")
    pacer.start()
    for i in range(2000):
        due = pacer.wait(i)
        assert now[0] >= due
        if i == 500:
            now[0] += 50_000_000
        t = now[0]
        now[0] += 20_000
        corrected.record(now[0] - due)
        raw.record(now[0] - t)
    assert raw.percentile(99) == pytest.approx(20_000, rel=0.01) and raw.max() < 20_100
    # records 500..549 were due during the stall: 50 ms, 49 ms, ... 1 ms late
    assert corrected.max() == pytest.approx(50_020_000, rel=0.01)
    assert corrected.percentile(99) == pytest.approx(30_000_000, rel=0.05)
    assert now[0] == pytest.approx(1999 * 1_000_000 + 20_000, rel=0.001)  # caught up: the rate held


def test_pacer_spins_its_last_stretch_in_c_on_the_real_clock():
    """On time.monotonic_ns the spin before a due time is shm._fastlog.spin_until: never early."""
    import time
    from shm._native import _fastlog
    t = time.monotonic_ns()
    assert _fastlog.spin_until(t - 10**9) >= t  # already due: back at once, with the clock
    due = time.monotonic_ns() + 200_000
    assert _fastlog.spin_until(due) >= due and time.monotonic_ns() >= due
    with pytest.raises(TypeError):
        _fastlog.spin_until(1.5)
    pacer = Pacer(20_000, spin_us=100)  # due every 50 us: spun, never slept
    pacer.start()
    for i in range(200):
        due = pacer.wait(i)
        assert due == pacer.t0 + i * 50_000 and time.monotonic_ns() >= due
    # wait_stamp: the same wait, with the clock reading it ended on (the send stamp): at or after due
    for i in range(200, 400):
        before = time.monotonic_ns()
        due, now = pacer.wait_stamp(i)
        assert due == pacer.t0 + i * 50_000 and due <= now <= time.monotonic_ns() and now >= before
    stuck = Pacer(1000, clock=lambda: 5 * 10**9)  # a clock standing at 5 s; record 0 was due at 1 s
    stuck.start(10**9)
    assert stuck.wait_stamp(0) == (10**9, 5 * 10**9)  # late: back at once, stamped with the reading it saw


# -- usage errors
@pytest.mark.parametrize("tool", ["producer-perf-test", "consumer-perf-test", "e2e-latency"])
def test_help(tool):
    r = run("sbtnotthisone", tool, "--help")
    assert r.returncode == 0 and "--namespace" in r.stdout and "--hgrm" in r.stdout and "--plot" in r.stdout


@pytest.mark.parametrize("args", [
    ["producer-perf-test", "--num-records", "10", "--record-size", "1", "--throughput", "-1"],
    ["producer-perf-test", "--topic", "t", "--num-records", "ten", "--record-size", "1", "--throughput", "-1"],
    ["producer-perf-test", "--topic", "t", "--num-records", "10", "--record-size", "1", "--throughput", "0"],
    ["producer-perf-test", "--topic", "t", "--num-records", "10", "--throughput", "-1"],
    ["producer-perf-test", "--topic", "t", "--num-records", "1", "--record-size", "1", "--throughput", "-1",
     "--producer-props", "novalue"],
    ["consumer-perf-test", "--topic", "t"],
    ["consumer-perf-test", "--topic", "t", "--messages", "5", "--reporting-interval", "0"],
    ["e2e-latency", "shm://x", "t", "10", "2", "64"],
    ["e2e-latency", "shm://x", "t", "10", "1"],
    ["e2e-latency", "shm://x", "t", "10", "1", "64", "--topic", "u"],
    ["e2e-latency", "--topic", "t", "--record-size", "8"],
    ["e2e-latency", "--topic", "t", "--num-records", "5", "--record-size", "8", "--rate", "-3"],
])
def test_bad_arguments_one_line_exit_2(args):
    r = run("sbtnotthisone", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    err = r.stderr.splitlines()
    assert len(err) == 1 and err[0].startswith("shmbroker %s: error: " % args[0]), r.stderr
    assert r.stdout == ""


def test_runtime_errors_one_line_exit_1(ns):
    create(ns, "x")
    r = run(ns, "producer-perf-test", "--topic", "nosuch", "--num-records", "5", "--record-size", "1",
            "--throughput", "-1")
    assert r.returncode == 1 and r.stderr.splitlines() == [r.stderr.strip()]
    assert "unknown topic 'nosuch'" in r.stderr
    r = run(ns, "consumer-perf-test", "--topic", "x", "--messages", "5", "--namespace", "sbtnosuchns")
    assert r.returncode == 1 and "no namespace 'sbtnosuchns'" in r.stderr and len(r.stderr.splitlines()) == 1


# -- without the [perf] extra
def test_without_the_extra_the_lines_still_print(ns, tmp_path):
    for mod in ("hdrh", "matplotlib"):
        (tmp_path / mod).mkdir()
        (tmp_path / mod / "__init__.py").write_text("raise ImportError('%s hidden by the test')\n" % mod)
    create(ns, "n")
    h, j, png = tmp_path / "n.hgrm", tmp_path / "n.json", tmp_path / "n.png"
    r = run(ns, "producer-perf-test", "--topic", "n", "--num-records", "800", "--record-size", "10", "--throughput",
            "-1", "--hgrm", str(h), "--json", str(j), "--plot", str(png),
            env={"PYTHONPATH": os.pathsep.join([str(tmp_path)] + [p for p in [os.environ.get("PYTHONPATH")] if p])})
    out = lines(r)
    assert PRODUCER_TOTAL.match(out[0]) and out[0].startswith("800 records sent")
    assert US_LINE.search(out[1]) and "(800 records)" in out[1]
    assert "shmbroker[perf]" in r.stderr and "--hgrm" in r.stderr and "--plot" in r.stderr
    assert not h.exists() and not png.exists()
    d = json.loads(j.read_text())  # JSON needs no extra
    assert d["latency_us"]["count"] == 800 and d["latency_histogram"] is None


# -- broker.latency
def test_stage_without_hdrh_samples_within_bounds(monkeypatch):
    monkeypatch.setattr(latency, "have_hdrh", lambda: False)
    st = Stage("x")
    for v in range(1, 10001):
        st.record(v * 1000)
    assert st.count == 10000 and st.max() == 10_000_000 and st.min() == 1000
    assert st.mean() == pytest.approx(5_000_500)
    assert st.percentile(50) == 5_001_000 and st.percentile(99) == 9_901_000  # Kafka's index rule
    st.record(7, count=5)
    assert st.count == 10005
    big = Stage("big")
    n = latency._SAMPLES + 300_000
    for v in range(n):
        big.record(v)
    assert big.count == n and len(big._sample.vals) <= latency._SAMPLES
    assert big.percentile(50) == pytest.approx(n / 2, rel=0.01)
    with pytest.raises(ModuleNotFoundError, match=r"shmbroker\[perf\]"):
        big.encode()


def _child_stages(t0, k):
    st = Stages()
    st["queue"].stop(t0)  # a stamp from the parent process
    for v in range(1, 1001):
        st["work"].record(v * 1000 * k)
    return st.encode()


@pytest.mark.skipif(not latency.have_hdrh(), reason="the shmbroker[perf] extra (hdrhistogram) is not installed")
def test_stages_merge_across_processes(children):
    t0 = latency.stamp()
    for k in (1, 2, 3):
        children.start(_child_stages, t0, k)
    blobs = children.results(timeout=60)
    waited = latency.stamp() - t0
    total = Stages()
    for b in blobs:
        total.merge(b)
    assert total["work"].count == 3000 and total["queue"].count == 3
    assert 0 <= total["queue"].min() and total["queue"].max() <= waited * 1.001
    direct = Stage("work")
    for k in (1, 2, 3):
        for v in range(1, 1001):
            direct.record(v * 1000 * k)
    assert total["work"].percentiles() == direct.percentiles()
    assert total["work"].max() == direct.max() and total["work"].mean() == pytest.approx(direct.mean())
    again = Stage.decode(total["work"].encode())
    assert again.count == 3000 and again.percentile(99.9) == direct.percentile(99.9)
    assert "queue" in total.report() and "(3000 records)" in total.report()


def test_progress_line_only_on_a_terminal():
    from broker.cli.perf import Progress

    class Stream:
        def __init__(self, tty):
            self.tty, self.text = tty, ""

        def isatty(self):
            return self.tty

        def write(self, s):
            self.text += s

        def flush(self):
            pass
    tty, pipe = Stream(True), Stream(False)
    for s in (tty, pipe):
        p = Progress("tool", 100, stream=s, every=0)
        p.update(50)
        p.done()
    assert pipe.text == ""
    assert tty.text.startswith("\rtool: 50/100 records (50%), ") and tty.text.endswith("\r\x1b[K")
