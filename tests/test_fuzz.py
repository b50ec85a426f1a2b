"""Fuzz: thousands of random corruptions of the segment header, the slots
and the records.  Each must end as a Python exception or a counted skip,
never a signal: the worker runs in a subprocess and the parent asserts it
exited normally.  Corruption is applied both before attach and under a
reader already attached (whose cached geometry must not be re-trusted)."""
import collections
import json
import os
import random
import subprocess
import sys

import pytest

ITERATIONS = 3000


def worker(name, seed, iterations):
    # the tree this test file belongs to (a sanitized scratch copy, say) first
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)
    import shm
    assert shm.__file__.startswith(root), shm.__file__
    from broker.errors import KafkaException
    from shm import PartitionLog
    from shm._native import lib

    log = PartitionLog.create(name, slot_count=32, data_capacity=2048, max_record=100)
    try:
        for i in range(40):
            log.append(b"v%d" % i * (i % 9), key=b"k%d" % i if i % 2 else None,
                       headers=[("h", b"%d" % i)] if i % 3 == 0 else None)
        mm = log._seg.mm
        snapshot = bytes(mm)
        data_off = len(snapshot) - 2048
        regions = {"header": (0, 1024), "slots": (lib.LOG_HEADER_SIZE, lib.LOG_HEADER_SIZE + 32 * 64),
                   "records": (data_off, len(snapshot))}
        rnd = random.Random(seed)
        counts = collections.Counter()

        def exercise(reader):
            lo, hi = reader.watermarks()
            lo, hi = min(lo, 1 << 62), min(hi, 1 << 62)
            for o in range(max(0, lo - 2), min(hi, lo + 40) + 2):
                counts["read:" + reader.read(o).status] += 1
            recs, nxt, stop = reader.read_batch(lo, 64)
            counts["batch_records"] += len(recs)
            try:
                reader.read_batch_array(lo, 16, 128)
            except ValueError:
                counts["ValueError"] += 1
            reader.wait(hi, timeout=0)
            reader.stats()
            reader.scan_unclaimed()

        attached = PartitionLog.attach(name)
        for i in range(iterations):
            region = rnd.choice(list(regions))
            a, b = regions[region]
            for _ in range(rnd.randint(1, 8)):
                p = rnd.randrange(a, b)
                if rnd.random() < 0.5:
                    mm[p] ^= 1 << rnd.randrange(8)
                else:
                    mm[p] = rnd.randrange(256)
            counts["region:" + region] += 1
            try:
                if i % 2:
                    exercise(attached)  # corrupted under an attached reader
                else:
                    fresh = PartitionLog.attach(name)
                    try:
                        exercise(fresh)
                    finally:
                        fresh.close()
            except KafkaException as exc:
                counts[type(exc).__name__] += 1
            mm[:] = snapshot
        attached.close()
        print(json.dumps(counts))
    finally:
        log.destroy()


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzz_corruption_never_crashes(seed):
    name = "/sbtfuzz%d_%d" % (os.getpid(), seed)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), name, str(seed), str(ITERATIONS)],
                          capture_output=True, text=True, timeout=600)
    try:
        assert proc.returncode == 0, "worker died (rc %d):\n%s" % (proc.returncode, proc.stderr[-3000:])
    finally:
        from shm.segment import unlink
        unlink(name)
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sum(v for k, v in counts.items() if k.startswith("region:")) == ITERATIONS
    # the corruptions were seen: header ones raised, slot/record ones were skipped
    assert counts.get("CorruptSegmentError", 0) > 100
    assert counts.get("read:corrupt", 0) > 100
    assert counts.get("read:ok", 0) > 1000


if __name__ == "__main__":
    worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
