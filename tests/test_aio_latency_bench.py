"""perf/aio_latency.py at CI size: every design it names runs, prints its row with ordered percentiles, and
the target's verdict names AIOConsumer's default design on this machine; nothing of its namespace is left."""
import os
import re
import subprocess
import sys

import pytest

from broker.aio import _waker

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "perf", "aio_latency.py")


@pytest.mark.skipif(not os.path.exists(SCRIPT), reason="perf/ is not in this tree (ext/sanitize.sh copies the "
                                                         "package and its tests only)")
def test_aio_latency_small_run(ns):
    r = subprocess.run([sys.executable, SCRIPT, "--count", "60", "--warmup",
                        "10", "--rate", "500", "--rounds", "2", "--namespace", ns],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {m.group(1): [float(x) for x in m.groups()[1:]]
            for m in re.finditer(r"^(io_uring|waker|thread) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+)$",
                                 r.stdout, re.M)}
    want = {"waker", "thread"} | ({"io_uring"} if _waker.ring_available() else set())
    assert set(rows) == want, r.stdout
    for name, (p50, p90, p99, mx, mean) in rows.items():
        assert 0 < p50 <= p90 <= p99 <= mx, (name, rows[name])
        assert 0 < mean <= mx
    default = "io_uring" if _waker.ring_available() else "waker"
    assert re.search(r"^target: AIOConsumer's default here \(%s\) p50 <= 100 us: (met|MISSED) \(" % default,
                     r.stdout, re.M), r.stdout
    assert "60 records x 2 rounds" in r.stdout
