"""perf/pool_bench.py's queue section at CI size, pinned: the table's rows with ordered figures, the verdict
lines, and nothing of its namespace left behind."""
import os
import re
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "perf", "pool_bench.py")


@pytest.mark.skipif(not os.path.exists(SCRIPT), reason="perf/ is not in this tree (ext/sanitize.sh copies the "
                                                         "package and its tests only)")
@pytest.mark.skipif(not (hasattr(os, "sched_getaffinity") and {0, 1} <= os.sched_getaffinity(0)),
                    reason="--pin needs CPUs 0 and 1")
def test_pool_bench_queues_pinned(ns):
    r = subprocess.run([sys.executable, SCRIPT, "--sections", "queue", "--queues", "mp-queue", "queue", "--rounds",
                        "1", "--queue-samples", "300", "--queue-warmup", "30", "--queue-items", "3000", "--pin",
                        "--namespace", ns], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "putter on CPU 0, getter on CPU 1" in r.stdout
    rows = {m.group(1): (float(m.group(2)), float(m.group(3)))
            for m in re.finditer(r"^(multiprocessing\.Queue|broker\.Queue) +([\d.]+) us +([\d.]+) us", r.stdout,
                                 re.M)}
    assert set(rows) == {"multiprocessing.Queue", "broker.Queue"}, r.stdout
    for p50, p99 in rows.values():
        assert 0 < p50 <= p99
    assert re.search(r"^broker\.Queue put->get p50 >= 30x below multiprocessing\.Queue +(met|MISSED)$", r.stdout,
                     re.M), r.stdout
