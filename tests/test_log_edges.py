"""Exact edge tests of the partition log: ring wraps, split records, size
limits, the lap-counter wrap, bad input, corrupted headers, block mode."""
import os
import signal
import struct
import time

import numpy as np
import pytest

from broker.errors import (ClosedError, CorruptSegmentError, KafkaError, KafkaException, MessageTooLargeError,
                           NamespaceError, QueueFullError)
from shm import Lapped, NotYet, PartitionLog, Record
from shm._native import lib

from conftest import deadline_wait, while_blocked

HDR = lib.LOG_HEADER_SIZE


def data_base(log):
    return lib.log_segment_size(log.slot_count, log.data_capacity) - log.data_capacity


def rec_len(payload):
    return (16 + payload + 7) & ~7


def test_roundtrip_fields(logs):
    log = logs.create(slot_count=8, data_capacity=1024, max_record=200)
    assert log.append(b"v", key=b"k", headers=[("a", b"1"), ("b", None)], timestamp_ns=123) == 0
    assert log.append(None, key=None) == 1
    assert log.append(bytearray(b"ba"), key=memoryview(b"mv")) == 2
    r = log.read(0)
    assert (r.offset, r.key, r.value, r.headers, r.timestamp_ns) == (0, b"k", b"v", [("a", b"1"), ("b", None)], 123)
    r = log.read(1)
    assert r.key is None and r.value is None and r.headers is None and r.timestamp_ns > 0
    r = log.read(2)
    assert (r.key, r.value) == (b"mv", b"ba")
    assert isinstance(log.read(3), NotYet)
    assert log.watermarks() == (0, 3)


def test_both_rings_wrap_exactly(logs):
    # 4 slots, 256 data bytes; payload 24 -> 40-byte records, so the data
    # ring (6.4 records) and the index ring (4) wrap at different offsets
    log = logs.create(slot_count=4, data_capacity=256, max_record=64)
    vals = [bytes([i]) * 24 for i in range(50)]
    for i, v in enumerate(vals):
        assert log.append(v) == i
        lo, hi = log.watermarks()
        assert hi == i + 1
        # index holds the last 4; 6 records of 40 bytes fit in 256 bytes
        assert lo == max(0, i + 1 - 4)
        for o in range(max(0, i - 8), i + 1):
            r = log.read(o)
            if o >= lo:
                assert isinstance(r, Record) and r.value == vals[o], o
            else:
                assert isinstance(r, Lapped) and r.low == lo
    st = log.stats()
    assert st["bytes_claimed"] == 50 * 40
    # data ring limits retention when records are larger than D / slots
    log2 = logs.create(slot_count=64, data_capacity=256, max_record=200)
    for i in range(20):
        log2.append(bytes([i]) * 100)  # 120-byte records: 2 fit
    assert log2.watermarks() == (18, 20)
    assert isinstance(log2.read(17), Lapped)
    assert log2.read(18).value == bytes([18]) * 100


def test_record_split_across_physical_end(logs):
    log = logs.create(slot_count=16, data_capacity=256, max_record=128)
    # 6 records of 40 bytes occupy [0, 240); the 7th (payload 32 -> 48 bytes)
    # starts at 240 and ends at 288: header at the end, payload at the start
    for i in range(6):
        log.append(bytes([0xA0 + i]) * 24)
    payload = bytes(range(1, 33))
    assert log.append(payload) == 6
    base = data_base(log)
    mm = log._seg.mm
    off, length, _ = struct.unpack_from("<QII", mm, base + 240)
    assert (off, length) == (6, 48)
    assert mm[base:base + 32] == payload  # wrapped to the physical start
    assert log.read(6).value == payload
    # the key/value boundary itself split: 8-byte key + value across the end
    log3 = logs.create(slot_count=16, data_capacity=64, max_record=48)
    log3.append(b"x" * 24)  # [0, 40)
    assert log3.append(b"V" * 8, key=b"K" * 8) == 1  # [40, 72): header 40..56, key 56..64, value 0..8
    r = log3.read(1)
    assert (r.key, r.value) == (b"K" * 8, b"V" * 8)
    assert log3._seg.mm[data_base(log3):data_base(log3) + 8] == b"V" * 8


def test_zero_and_max_size_records(logs):
    log = logs.create(slot_count=8, data_capacity=256, max_record=240)
    assert log.append(b"") == 0
    assert log.append(b"m" * 240) == 1  # one record fills the whole data ring
    assert log.read(1).value == b"m" * 240
    assert isinstance(log.read(0), Lapped)
    with pytest.raises(MessageTooLargeError) as ei:
        log.append(b"m" * 241)
    assert ei.value.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert "max.message.bytes" in str(ei.value)
    with pytest.raises(MessageTooLargeError):
        log.append(b"m" * 200, key=b"k" * 41)  # key + value over the limit
    # nothing committed was lost, and the log is still usable
    assert log.read(1).value == b"m" * 240
    assert log.watermarks() == (1, 2)
    assert log.append(b"") == 2  # 16 more bytes overwrite the full-ring record
    assert log.watermarks() == (2, 3)
    assert isinstance(log.read(1), Lapped) and log.read(2).value == b""


def test_lap_counter_wrap(logs):
    # tiny ring, start offset just below where the 40-bit lap counter wraps
    n = 2
    start = n * ((1 << 40) - 3)
    log = logs.create(slot_count=n, data_capacity=1024, max_record=16, start_offset=start)
    assert log.watermarks() == (start, start)
    for i in range(24):  # crosses the wrap after 4 records
        assert log.append(b"%08d" % i) == start + i
        assert log.read(start + i).value == b"%08d" % i
        if i >= 2:
            r = log.read(start + i - 2)
            assert isinstance(r, Lapped) and r.low == start + i - 1
    assert isinstance(log.read(start + 24), NotYet)
    assert isinstance(log.read(start - 1), Lapped)
    assert log.watermarks() == (start + 22, start + 24)


def test_batch_append_and_array_read(logs):
    log = logs.create(slot_count=64, data_capacity=4096, max_record=64)
    first = log.append_batch([b"a", bytearray(b"bb"), memoryview(b"ccc"), b""])
    assert first == 0
    arr = np.arange(24, dtype=np.uint8).reshape(4, 6)
    assert log.append_batch(arr) == 4
    assert [log.read(o).value for o in range(8)] == [b"a", b"bb", b"ccc", b""] + [bytes(r) for r in arr]
    recs, nxt, stop = log.read_batch(0, 100)
    assert [r.offset for r in recs] == list(range(8)) and nxt == 8 and isinstance(stop, NotYet)
    rows, lens, offs, nxt, stop = log.read_batch_array(2, 10, 6)
    assert list(offs) == list(range(2, 8)) and list(lens) == [3, 0, 6, 6, 6, 6] and nxt == 8
    assert bytes(rows[0, :3]) == b"ccc" and (rows[2:] == arr).all()
    with pytest.raises(ValueError, match="row_len"):
        log.read_batch_array(4, 2, 3)
    with pytest.raises(MessageTooLargeError):
        log.append_batch([b"x"] * 65)  # over the index ring
    with pytest.raises(TypeError):
        log.append_batch([b"ok", 5])
    with pytest.raises(TypeError):
        log.append_batch(np.zeros((2, 2), dtype=np.int32))
    assert log.watermarks() == (0, 8)  # failed batches claimed nothing


def test_bad_input(logs):
    log = logs.create(slot_count=8, data_capacity=256, max_record=64)
    for bad in ("str", 5, 1.5, [b"x"], object()):
        with pytest.raises(TypeError, match="bytes"):
            log.append(bad)
    with pytest.raises(TypeError):
        log.append(b"v", key="strkey")
    with pytest.raises(TypeError, match="headers"):
        log.append(b"v", headers=[1, 2])
    for bad_ts in ("now", 1.5, 1 << 64):
        with pytest.raises(TypeError, match="timestamp_ns"):
            log.append(b"v", timestamp_ns=bad_ts)
    assert log.watermarks() == (0, 0)
    with pytest.raises(ValueError, match="power of two"):
        logs.create(slot_count=6)
    with pytest.raises(ValueError, match="2\\*\\*30"):
        logs.create(slot_count=1 << 31)
    with pytest.raises(ValueError, match="data_capacity"):
        logs.create(slot_count=8, data_capacity=100)
    with pytest.raises(ValueError, match="max_record"):
        logs.create(slot_count=8, data_capacity=256, max_record=250)
    with pytest.raises(ValueError, match="overflow"):
        logs.create(slot_count=8, data_capacity=256, overflow="drop")
    with pytest.raises(NamespaceError, match="/sbt_missing_segment"):
        PartitionLog.attach("/sbt_missing_segment")
    with pytest.raises(KafkaException, match="bad segment name"):
        PartitionLog.attach("no-slash")
    with pytest.raises(ValueError):
        log.read(-1)


@pytest.mark.parametrize("field,offset,value", [
    ("magic", 0, b"\0" * 8),
    ("version", 8, struct.pack("<I", 99)),
    ("layout_hash", 12, struct.pack("<I", 12345)),
    ("slot_count", 24, struct.pack("<Q", 1 << 20)),
    ("data_capacity", 32, struct.pack("<Q", 1 << 30)),
    ("max_record", 64, struct.pack("<Q", 1 << 35)),
])
def test_corrupted_header_raises(logs, field, offset, value):
    log = logs.create(slot_count=8, data_capacity=256, max_record=64)
    log.append(b"x")
    mm = log._seg.mm
    mm[offset:offset + len(value)] = value
    with pytest.raises(CorruptSegmentError, match=log.name):
        PartitionLog.attach(log.name)


def test_foreign_segment_raises(logs):
    from shm.segment import Segment
    name = logs.name()
    seg = Segment.create(name, 8192)
    seg.mm[:8] = b"NOTOURS!"
    try:
        with pytest.raises(CorruptSegmentError, match="magic"):
            PartitionLog.attach(name)
    finally:
        seg.close()
    with pytest.raises(NamespaceError, match="already exists"):
        PartitionLog.create(name, slot_count=8, data_capacity=256)


def test_attach_sees_records_and_close(logs):
    log = logs.create(slot_count=8, data_capacity=256, max_record=64)
    log.append(b"one")
    other = PartitionLog.attach(log.name)
    assert other.read(0).value == b"one"
    assert other.append(b"two") == 1
    other.close()
    with pytest.raises(ClosedError):
        other.read(0)
    assert log.read(1).value == b"two"  # closing an attacher unlinks nothing
    assert os.stat("/dev/shm" + log.name).st_mode & 0o777 == 0o600  # owner only
    assert log.stats()["appends"] == 2


def test_block_mode_holds_until_floor(logs):
    log = logs.create(slot_count=4, data_capacity=256, max_record=64, overflow="block")
    log.block_timeout = 0.05
    for i in range(4):
        log.append(bytes([i]) * 8)
    with pytest.raises(QueueFullError) as ei:
        log.append(b"x")  # index ring full, floor at 0
    assert isinstance(ei.value, BufferError) and ei.value.args[0].code() == KafkaError._QUEUE_FULL
    assert log.watermarks() == (0, 4)  # the timed-out append claimed nothing
    assert [log.read(o).value for o in range(4)] == [bytes([i]) * 8 for i in range(4)]
    log.set_floor(2)
    assert log.append(b"y") == 4 and log.append(b"z") == 5
    with pytest.raises(QueueFullError):
        log.append(b"w")
    # records at or above the floor are intact (invariant 8)
    assert [log.read(o).value for o in range(2, 6)] == [b"\2" * 8, b"\3" * 8, b"y", b"z"]
    # data-ring limit: 64-byte values (80-byte records), floor bytes gate them
    big = logs.create(slot_count=64, data_capacity=256, max_record=64, overflow="block")
    big.block_timeout = 0.05
    for i in range(3):
        big.append(bytes([i]) * 64)
    with pytest.raises(QueueFullError):
        big.append(b"B" * 64)  # 4 * 80 > 256
    # a producer blocked in another thread is released by the floor moving
    big.block_timeout = 10

    def release():
        assert big.watermarks() == (0, 3)  # the blocked append claimed nothing
        big.set_floor(1)
    assert while_blocked(lambda: big.append(b"B" * 64), lambda: big.stats()["block_waits"] == 2,
                         "the producer to block", release) == 3
    assert [big.read(o).value for o in (1, 2, 3)] == [b"\1" * 64, b"\2" * 64, b"B" * 64]


def test_wait_modes_and_timeout(logs):
    log = logs.create(slot_count=8, data_capacity=256, max_record=64)
    for mode in ("spin", "sleep", "adaptive"):
        assert log.wait(log.watermarks()[1], timeout=0.02, mode=mode) is False
    with pytest.raises(ValueError, match="wait mode"):
        log.wait(0, mode="busy")
    # the waiter announces itself in the waiters count before it sleeps
    assert while_blocked(lambda: log.wait(0, timeout=10, mode="sleep"), lambda: log.stats()["waiters"] == 1,
                         "the reader to sleep", lambda: log.append(b"wake")) is True
    assert log.stats()["wakeups"] == 1
    log.append(b"no sleeper")
    assert log.stats()["wakeups"] == 1  # no syscall when nobody sleeps


def test_stale_build_refused(monkeypatch):
    import shm._native as nat
    monkeypatch.setattr(nat, "BUILD_ID", "0.0.0+deadbeef")
    with pytest.raises(ImportError, match="pip install -e"):
        nat._check_build()


def test_fast_path_after_close_raises_not_crashes(logs):
    log = logs.create(slot_count=8, data_capacity=256, max_record=64)
    log.append(b"x")
    append, read, poll = log.append, log.read, log.poll  # cached bound methods
    log.close()
    with pytest.raises(ClosedError):
        append(b"y")
    with pytest.raises(ClosedError):
        read(0)
    with pytest.raises(ClosedError):
        poll(0, timeout=0)
    with pytest.raises(ClosedError):
        log.read_batch(0, 4)


def test_poll(logs):
    log = logs.create(slot_count=4, data_capacity=1024, max_record=64)
    for mode in ("spin", "adaptive", "sleep"):
        assert log.poll(0, timeout=0.01, mode=mode) is None
    log.append(b"v", key=b"k", headers={"h": b"1"}, timestamp_ns=5)
    r = log.poll(0, timeout=1)
    assert (r.offset, r.key, r.value, r.headers, r.timestamp_ns) == (0, b"k", b"v", [("h", b"1")], 5)
    got = while_blocked(lambda: log.poll(1, timeout=10, mode="adaptive"), lambda: log.stats()["waiters"] == 1,
                        "the poller to sleep", lambda: log.append(b"late"))
    assert got.value == b"late"
    for i in range(6):
        log.append(b"%d" % i)
    r = log.poll(0, timeout=0)
    assert isinstance(r, Lapped) and r.low == 4


def test_ctrl_c_interrupts_a_blocking_wait(logs, children):
    log = logs.create(slot_count=8, data_capacity=256, max_record=64)

    def sleeper(name):
        other = PartitionLog.attach(name)
        t0 = time.monotonic()
        try:
            other.wait(0, timeout=None, mode="sleep")
        except KeyboardInterrupt:
            return ("interrupted", time.monotonic() - t0)
        return ("woke", time.monotonic() - t0)

    p = children.start(sleeper, log.name)
    deadline_wait(lambda: log.stats()["waiters"] == 1, 10, "the child to sleep on the futex")
    os.kill(p.pid, signal.SIGINT)
    (what, took), = children.results(timeout=10)
    assert what == "interrupted" and log.watermarks() == (0, 0)


def _outcome(call):
    try:
        return call()
    except Exception as e:  # noqa: BLE001 - the outcome is asserted by the caller
        return e


@pytest.mark.parametrize("mode", ["sleep", "adaptive"])
def test_close_while_another_thread_waits_in_c(logs, mode):
    """close() from one thread while another sleeps on the log in C: the
    waiter raises ClosedError (no read of unmapped memory), and the
    mapping goes when it leaves."""
    log = logs.create(slot_count=8, data_capacity=256, max_record=64)
    r = while_blocked(lambda: _outcome(lambda: log.wait(0, timeout=10, mode=mode)),
                      lambda: log.stats()["waiters"] == 1 and len(log._users) == 1,
                      "the reader to sleep in C", log.close)
    assert isinstance(r, ClosedError), r
    assert log.closed and log._cbuf is None and not log._users  # unmapped by the waiter as it left
    with pytest.raises(ClosedError):
        log.wait(0, timeout=0)


def test_close_while_another_thread_is_blocked_appending(logs):
    log = logs.create(slot_count=4, data_capacity=256, max_record=64, overflow="block")
    for i in range(4):
        log.append(bytes([i]))
    log.block_timeout = 10
    r = while_blocked(lambda: _outcome(lambda: log.append(b"blocked")),
                      lambda: log.stats()["block_waits"] == 1 and len(log._users) == 1,
                      "the producer to block in C", log.close)
    assert isinstance(r, ClosedError), r
    assert log._cbuf is None and not log._users


def shm_huge_pages():
    """True if /dev/shm may back a mapping with huge pages (its huge= option, or shmem THP forced):
    a fault then maps 2 MiB, and counting faults a page says nothing."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/shmem_enabled") as f:
            if "[force]" in f.read():
                return True
    except OSError:
        pass
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 3 and parts[1] == "/dev/shm":
                return any(o.startswith("huge=") and o != "huge=never" for o in parts[3].split(","))
    return False


def faults_touching_every_page(log):
    """(minor page faults this process takes reading a byte of each page of *log*'s segment, pages)."""
    import resource
    mv = memoryview(log._seg.mm)
    offsets = list(range(0, len(mv), 4096))  # made first: the loop allocates nothing (no fault of the heap's)
    try:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for off in offsets:
            mv[off]
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, len(mv) // 4096
    finally:
        mv.release()


def test_attach_populate_maps_every_page_at_once(logs):
    """PartitionLog.attach(populate=True) (a client's shm.pre.touch): the pages are mapped when it attaches,
    so its appends and reads take no page fault; a plain attach faults on the first touch of each page."""
    log = logs.create(slot_count=1024, data_capacity=1 << 22, max_record=64)
    plain = PartitionLog.attach(log.name)
    try:
        faults, pages = faults_touching_every_page(plain)
    finally:
        plain.close()
    assert pages >= 1024
    if not shm_huge_pages():
        assert faults >= pages // 32, (faults, pages)  # (the kernel maps up to 16 around a fault)
    full = PartitionLog.attach(log.name, populate=True)
    try:
        faults, pages = faults_touching_every_page(full)
        assert faults <= pages * 0.02, (faults, pages)
        full.append(b"x" * 64)  # and it is the same log
        assert log.read(0).value == b"x" * 64
    finally:
        full.close()


def test_a_batch_read_inside_a_batch_read_keeps_both_batches_apart(logs):
    """Turning a batch into Records can run Python code (here the headers' decoder; a finaliser or another
    thread's turn elsewhere) that reads the same log again.  The inner read gets buffers of its own: the
    outer batch hands out its own records, not the inner one's (before, both shared one buffer and the
    outer list came out mixed).  Re-initialising the reader's state under a batch is refused."""
    from shm._native import _fastlog, ffi
    from shm.record import decode_headers
    log = logs.create(slot_count=64, data_capacity=1 << 16, max_record=256)
    for i in range(8):
        log.append(b"v%d" % i, headers=[("h", b"%d" % i)])
    inner, errors = [], []

    def decode(blob):
        if not inner:
            inner.append(None)  # (the inner batch's headers come here too)
            inner[0] = fl.read_batch(4, 4)  # records 4..7, while the outer batch 0..7 is being built
        return decode_headers(blob)
    args = (int(ffi.cast("uintptr_t", log._v)), 256, Record, log.append, log.read, decode, log._status)
    fl = _fastlog.FastLog(*args)
    recs, nxt, rc = fl.read_batch(0, 8)
    assert [r.value for r in recs] == [b"v%d" % i for i in range(8)]
    assert [r.headers for r in recs] == [[("h", b"%d" % i)] for i in range(8)]
    assert (nxt, [r.value for r in inner[0][0]], inner[0][1]) == (8, [b"v4", b"v5", b"v6", b"v7"], 8)

    def reinit(blob):
        try:
            fl.__init__(*args)
        except RuntimeError as exc:
            errors.append(str(exc))
        return decode_headers(blob)
    fl = _fastlog.FastLog(*args[:5], reinit, args[6])
    recs, _, _ = fl.read_batch(0, 8)
    assert [r.value for r in recs] == [b"v%d" % i for i in range(8)]
    assert len(errors) == 8 and "re-initialised while one of its batches is being read" in errors[0]
    fl.__init__(*args)  # no batch being read: allowed
    assert [r.value for r in fl.read_batch(6, 2)[0]] == [b"v6", b"v7"]
    assert [r.value for r in log.read_batch(0, 8)[0]] == [b"v%d" % i for i in range(8)]
