"""perf/compare.py end to end at CI size: the shmbroker peers only, tiny
counts, two runs.  Checks the files it writes and their figures (counts,
ordered percentiles, rates, the RESULTS.md tables and target lines), and
that it leaves no shm segment, namespace or process of its own behind."""
import json
import os
import re
import subprocess
import sys

import psutil
import pytest

from broker import latency

from conftest import HAVE_MPL

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
LAT_RECORDS = 300



def _mine(prefix):
    """Our run's leftovers: shm entries named with its prefix, processes naming it on their command line."""
    shm = sorted(f for f in os.listdir("/dev/shm") if prefix in f)
    procs = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(prefix in part for part in (p.info["cmdline"] or ())):
                procs.append((p.info["pid"], " ".join(p.info["cmdline"])))
        except psutil.Error:
            pass
    return shm, procs


@pytest.mark.skipif(not (latency.have_hdrh() and HAVE_MPL), reason="needs the shmbroker[perf] extra "
                    "(hdrhistogram, matplotlib), and no ASan preload")
def test_compare_quick_shmbroker(tmp_path):
    out = tmp_path / "cmp"
    prefix = "sbtcmp%d" % os.getpid()
    cmd = [sys.executable, os.path.join(ROOT, "perf", "compare.py"), "--quick", "--only", "shmbroker",
           "--out", str(out), "--prefix", prefix, "--runs", "2", "--rates", "5000",
           "--lat-records", str(LAT_RECORDS), "--warmup", "50", "--sweep-rates", "5000,20000",
           "--sweep-seconds", "0.02", "--sizes", "64,65536", "--tp-seconds", "0.02", "--floor-rounds", "500",
           "--memcpy-bytes", "2000000", "--stall-timeout", "20", "--update-readme", str(tmp_path / "README.md")]
    # a README with the generated block's markers and text around them (kept as it is)
    sys.path.insert(0, os.path.join(ROOT, "perf"))
    try:
        import compare_report as R
    finally:
        sys.path.pop(0)
    (tmp_path / "README.md").write_text("before\n%s\nold figures\n%s\nafter\n" % (R.README_BEGIN, R.README_END))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path))
    try:
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    shm, procs = _mine(prefix)
    assert not shm, "left in /dev/shm: %s" % shm
    assert not procs, "processes left running: %s" % procs
    assert proc.returncode == 0, stderr[-3000:]
    assert "FAILED" not in stdout, stdout
    res = json.loads((out / "results.json").read_text())
    assert res["errors"] == []
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("before\n" + R.README_BEGIN) and readme.endswith(R.README_END + "\nafter\n")
    assert "old figures" not in readme and res["date"] in readme and "polling p50 at 5000 records/s: raw log" in readme
    assert re.search(r"Targets met: \d+; MISSED: \d+", readme), readme
    assert res["args"]["runs"] == 2
    chans = ["shmbroker-%s/%s" % (k, m) for k in ("raw", "kafka") for m in ("spin", "adaptive", "sleep")]
    for key in ("python", "c"):
        for f in res["floors"][key]:
            assert 0 < f["p50"] <= f["p99"], f
    assert len(res["floors"]["python"]) == 2
    assert all(v > 1e8 for v in res["floors"]["memcpy"]["65536"])  # > 0.1 GB/s
    lat = res["latency"]["5000"]
    assert sorted(lat) == sorted(chans + ["pyfloor"])  # the open-loop reference beside them, not in the sweep
    for ch in chans + ["pyfloor"]:
        runs = lat[ch]["runs"]
        assert len(runs) == 2
        for r in runs:
            assert r["count"] == LAT_RECORDS
            assert 0 < r["p50"] <= r["p90"] <= r["p99"] <= r["p99.9"] <= r["max"], (ch, r)
            assert 0 < r["uncorrected_p50"] <= r["p50"] * 1.01 + 0.01, (ch, r)  # from the real send: never later
            assert r["reached"] > 0 and r["cpu_us"] > 0
    for ch in chans:
        pts = res["sweep"][ch]
        assert pts and pts[0]["rate"] == 5000 and len(pts[0]["runs"]) == 2
        for p in pts:
            for r in p["runs"]:
                assert r["p50"] <= r["p99"] <= r["p99.9"]
    for size in ("64", "65536"):
        tp = res["throughput"][size]
        want = chans + (["shmbroker-raw/batch", "shmbroker-kafka/batch"] if size == "64" else [])
        assert sorted(tp) == sorted(want)
        for ch in want:
            for r in tp[ch]["runs"]:
                assert r["records"] >= 2 and r["records_per_s"] > 100 and r["cpu_us"] > 0, (size, ch, r)
                assert r["bytes_per_s"] == pytest.approx(r["records_per_s"] * int(size))
    names = {t["target"] for t in res["targets"]}
    assert any("raw log <= 4x the Python floor" in n for n in names)
    md = (out / "RESULTS.md").read_text()
    for label in ("shmbroker raw log (spin)", "shmbroker Kafka API (sleep)", "shmbroker raw log, batches (read_batch_array)"):
        assert "| %s |" % label in md, label
    assert re.search(r"^target polling p50 at 5000/s: raw log <= 4x the Python floor: (met|MISSED) \(ratio ", md, re.M)
    assert re.search(r"^target .*iceoryx2: n/a \(not measured: iceoryx2\)$", md, re.M)  # not in --only
    assert re.search(r"^reference, not a target: polling p50 at 5000/s: raw log / the Python store-and-spin hand-off "
                     r"in the same open loop: [\d.]+x \(raw [\d.]+ us / hand-off [\d.]+ us\)$", md, re.M)
    assert "| Python store-and-spin hand-off (reference, not a contender: no ring logic) |" in md
    assert "pyfloor" not in res["sweep"] and "pyfloor" not in res["throughput"]["64"]
    assert res["machine"]["cores"] == os.cpu_count() and res["machine"]["cpu"] in md
    m = re.search(r"\| shmbroker raw log \(spin\) \| ([\d.]+) \(([\d.]+)-([\d.]+)\) \|", md)
    assert m and float(m[2]) <= float(m[1]) <= float(m[3]), "p50 cell: median (min-max)"
    for png in ("latency_5000.png", "latency_vs_rate.png", "throughput.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png


def _report():
    if not os.path.exists(os.path.join(ROOT, "perf", "compare_report.py")):
        pytest.skip("no perf/ in this tree (the sanitizer pass runs a copy of the package and its tests)")
    sys.path.insert(0, os.path.join(ROOT, "perf"))
    try:
        import compare_report
    finally:
        sys.path.pop(0)
    return compare_report


def test_targets_pair_each_row_with_its_own_run():
    """A target's ratio is the median over runs of the ratio within each run: a machine twice as slow in
    run 1 slows both rows there and moves no ratio; the ratio of the medians would (2/1.1 here)."""
    R = _report()
    ratio, am, bm = R.paired_ratio({0: 1.0, 1: 2.0, 2: 1.2}, {0: 0.5, 1: 1.0, 2: 0.6})
    assert (ratio, am, bm) == (2.0, 1.2, 0.6)
    ratio, _, _ = R.paired_ratio({0: 1.0, 1: 2.2, 2: 1.1}, {0: 1.0, 1: 2.0, 2: 0.5})
    assert ratio == pytest.approx(1.1)  # ratios 1.0, 1.1, 2.2; the medians' ratio: 1.1 / 1.0
    assert R.paired_ratio({3: 10.0}, {0: 5.0}) == (2.0, 10.0, 5.0)  # no run in common: the medians
    assert R.paired_ratio({0: 30e6, 1: 10e6, 2: 20e6}, 20e6)[0] == 1.0  # a fixed target
    assert R.paired_ratio({0: 1.0}, {0: 0.0}) == (None, 1.0, 0.0)  # nothing to divide by: not measured
    old_a, old_b = [{"p50": 1.0}, {"p50": 4.0}, {"p50": 2.0}], [{"p50": 2.0}, {"p50": 1.0}]  # no run numbers
    ratio, am, bm = R.paired_ratio(R._by_run(old_a, "p50"), R._by_run(old_b, "p50"))
    assert (ratio, am, bm) == (2.0 / 1.5, 2.0, 1.5)  # unpaired (a failed run may have shifted them): medians
    lat = {"runs": [{"run": 0, "p50": 0.4}, {"run": 1, "p50": 0.9}, {"run": 2, "p50": 0.5}]}
    res = {"args": {"target_rate": 10000, "size": 64}, "throughput": {},
           "floors": {"python": [{"run": 0, "p50": 0.1}, {"run": 1, "p50": 0.25}, {"run": 2, "p50": 0.1}]},
           "latency": {"10000": {"shmbroker-raw/spin": lat}}}
    text, met, ratio, detail = R.targets(res)[0]
    assert "4x the Python floor" in text and met and ratio == 4.0, (ratio, detail)  # 4.0, 3.6, 5.0
    assert detail == "raw 0.500 us / floor 0.100 us"  # the medians, for the reader
