"""PartitionLog.reader(): a cursor that keeps its position and waits in C
(ext/fastreader.c) - records in order, statuses passed over and counted,
the floor moved for block-mode producers, waits that end on an append from
another thread or process and on their timeout, and bad arguments refused."""
import math
import os
import signal
import struct
import time

import pytest

from shm.errors import ClosedError, QueueFullError

from conftest import wait_child, with_thread


def test_records_come_in_order_with_their_fields(logs):
    log = logs.create(slot_count=64, data_capacity=1 << 16, max_record=8192)
    big = os.urandom(6000)  # a long value: read straight into its bytes object
    offs = [log.append(b"a"), log.append(b"b", key=b"k", headers=[("h", b"1")]), log.append(None, key=b"gone"),
            log.append(big), log.append(b"")]
    rd = log.reader(0, "spin")
    r0, r1 = rd.poll(1), rd.poll(1)
    assert (r0.offset, r0.value, r0.key) == (offs[0], b"a", None)
    assert (r1.offset, r1.value, r1.key, r1.headers) == (offs[1], b"b", b"k", [("h", b"1")])
    assert rd.poll(1).value is None  # a null value: the Record tells it apart
    assert rd.position == 3
    assert rd.poll_value(1) == big
    assert rd.poll_value(1) == b""
    assert rd.position == 5
    other = log.reader(2, "sleep")  # poll_value: a null value reads as b""
    assert other.poll_value(0) == b""
    assert (rd.lost, rd.skipped, other.lost, other.skipped) == (0, 0, 0, 0)


@pytest.mark.parametrize("mode", ["spin", "adaptive", "sleep"])
def test_a_wait_ends_on_its_timeout(logs, mode):
    log = logs.create(slot_count=16, data_capacity=4096, max_record=64)
    rd = log.reader(0, mode, spin_us=1000)
    assert rd.poll(0) is None and rd.poll_value(0.0) is None
    t0 = time.monotonic()
    assert rd.poll_value(0.05) is None
    took = time.monotonic() - t0
    assert 0.05 <= took < 5.0, took
    assert rd.position == 0


def test_a_corrupt_record_is_passed_over_and_counted(logs):
    log = logs.create(slot_count=16, data_capacity=4096, max_record=64)
    for v in (b"before", b"flipped", b"after"):
        log.append(v)
    mm = log._seg.mm
    data_off, = struct.unpack_from("<Q", mm, 48)
    pos, = struct.unpack_from("<Q", mm, 4096 + 1 * 64 + 8)  # slot 1's record position in the ring
    at = data_off + pos % log.data_capacity + 16 + len(b"flipped") - 1  # its value's last byte
    mm[at] ^= 0xFF
    rd = log.reader(0, "spin")
    assert [rd.poll_value(1), rd.poll_value(1), rd.poll_value(0)] == [b"before", b"after", None]
    assert (rd.skipped, rd.lost, rd.position) == (1, 0, 3)
    assert log.stats()["corrupt_skips"] == 1


def test_a_lapped_reader_moves_to_the_oldest_record_and_counts_the_loss(logs):
    log = logs.create(slot_count=8, data_capacity=4096, max_record=64)
    for i in range(30):
        log.append(b"%d" % i)
    low, high = log.watermarks()
    assert (low, high) == (22, 30)
    rd = log.reader(3, "spin")
    assert rd.poll_value(1) == b"22"
    assert (rd.lost, rd.position) == (19, 23)
    assert [rd.poll_value(1) for _ in range(7)] == [b"%d" % i for i in range(23, 30)]
    rd.position = 0  # seek: lapped again
    assert rd.poll(1).offset == 22
    assert rd.lost == 19 + 22 and rd.skipped == 0


def test_floor_every_lets_block_mode_producers_reuse_the_space(logs):
    log = logs.create(slot_count=8, data_capacity=4096, max_record=64, overflow="block")
    log.block_timeout = 0.05
    for i in range(8):
        log.append(b"%d" % i)
    with pytest.raises(QueueFullError):
        log.append(b"no room")
    rd = log.reader(0, "spin", floor_every=4)
    assert [rd.poll_value(1) for _ in range(3)] == [b"0", b"1", b"2"]
    with pytest.raises(QueueFullError):  # three read: the floor has not moved yet
        log.append(b"still no room")
    assert rd.poll_value(1) == b"3"
    assert log.stats()["floor"] == 4
    for i in range(8, 12):  # the four below the floor are reusable
        log.append(b"%d" % i)
    assert [rd.poll_value(1) for _ in range(8)] == [b"%d" % i for i in range(4, 12)]
    assert (rd.lost, rd.skipped) == (0, 0)
    assert log.stats()["floor"] == 12
    plain = log.reader(4, "spin")  # without floor_every the floor stays where it is
    assert [plain.poll_value(0) for _ in range(4)] == [b"4", b"5", b"6", b"7"]
    assert log.stats()["floor"] == 12


def test_a_spinning_reader_lets_other_threads_run(logs):
    """The spin holds the GIL in <= 1 ms chunks: an appending thread of the
    same process gets in, and the record ends the wait."""
    log = logs.create(slot_count=16, data_capacity=4096, max_record=64)
    rd = log.reader(0, "spin")
    got = with_thread(lambda: log.append(b"from a thread"), lambda: rd.poll_value(30))
    assert got == b"from a thread"


@pytest.mark.parametrize("mode", ["spin", "adaptive", "sleep"])
def test_an_append_in_another_process_ends_the_wait(logs, mode):
    log = logs.create(slot_count=16, data_capacity=4096, max_record=64)
    rd = log.reader(0, mode, spin_us=20)
    go_r, go_w = os.pipe()
    rep_r, rep_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the appender: waits for the word, then for a sleeper when the mode sleeps
        code = 1
        try:
            from shm import PartitionLog
            os.read(go_r, 1)
            child = PartitionLog.attach(log.name)
            if mode != "spin":
                end = time.monotonic() + 20
                while child.stats()["waiters"] == 0 and time.monotonic() < end:
                    time.sleep(0.0005)  # polls a shared counter, with a deadline
            sleepers = child.stats()["waiters"]
            child.append(b"woken")
            os.write(rep_w, struct.pack("<q", sleepers))
            child.close()
            code = 0
        finally:
            os._exit(code)
    try:
        os.write(go_w, b"g")
        t0 = time.monotonic()
        got = rd.poll_value(30)
        took = time.monotonic() - t0
    finally:
        status = wait_child(pid)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    report = os.read(rep_r, 8)  # the child's word: it appended (and how many slept then)
    for fd in (go_r, go_w, rep_r, rep_w):
        os.close(fd)
    assert len(report) == 8
    if mode == "sleep":
        assert struct.unpack("<q", report)[0] >= 1  # the reader was asleep on the futex when it came
    assert got == b"woken" and took < 30
    assert rd.position == 1


def test_a_closed_log_and_bad_arguments_are_refused(logs):
    log = logs.create(slot_count=16, data_capacity=4096, max_record=64)
    with pytest.raises(ValueError, match="wait mode"):
        log.reader(0, "busy")
    with pytest.raises(ValueError, match="offset"):
        log.reader(-1)
    with pytest.raises(ValueError, match="floor_every"):
        log.reader(0, floor_every=-1)
    with pytest.raises(ValueError, match="spin_us"):
        log.reader(0, spin_us=-5)
    rd = log.reader(0, "spin")
    with pytest.raises(TypeError):
        rd.poll("soon")
    with pytest.raises(TypeError):
        rd.poll(1, 2)
    with pytest.raises(ValueError, match="nan"):
        rd.poll_value(math.nan)
    with pytest.raises(TypeError):
        rd.position = "5"
    with pytest.raises(ValueError):
        rd.position = -1
    with pytest.raises(AttributeError):
        rd.lost = 0
    log.append(b"x")
    log.close()
    with pytest.raises(ClosedError):
        rd.poll(0)
    with pytest.raises(ClosedError):
        rd.poll_value(1)


def test_a_spinning_reader_calls_the_logs_on_wait_between_chunks(logs):
    """As poll() does: a broker client's log checks its supervisor there."""
    log = logs.create(slot_count=16, data_capacity=4096, max_record=64)
    calls = []
    log.on_wait = lambda: calls.append(1)
    rd = log.reader(0, "spin")
    assert rd.poll_value(0.05) is None
    assert len(calls) >= 10  # a call every 1 ms chunk with nothing (at least 10 of the 50 on a slow host)
    log.on_wait = None
    assert rd.poll_value(0.01) is None  # and none once it is unset


def test_an_uninitialised_reader_raises(logs):
    from shm._native import _fastlog
    bare = _fastlog.LogReader.__new__(_fastlog.LogReader)
    with pytest.raises(ValueError, match="PartitionLog.reader"):
        bare.poll(0)
    with pytest.raises(ValueError, match="PartitionLog.reader"):
        bare.poll_value(0)
    log = logs.create(slot_count=16, data_capacity=4096, max_record=64)
    with pytest.raises(ValueError, match="spin_us"):
        log.reader(0, spin_us=float("inf"))


def _value_in_ring(log, o):
    """Where offset o's value (no key) starts in the ring: its slot's record position past the 16-byte header."""
    pos, = struct.unpack_from("<Q", log._seg.mm, 4096 + (o % log.slot_count) * 64 + 8)
    return (pos + 16) % log.data_capacity


def _value_at(log, o):
    """Where offset o's value (no key) starts in the mapping."""
    data_off, = struct.unpack_from("<Q", log._seg.mm, 48)
    return data_off + _value_in_ring(log, o)


def test_poll_view_hands_out_the_bytes_in_the_log_without_a_copy(logs):
    log = logs.create(slot_count=64, data_capacity=1 << 16, max_record=8192, overflow="block")
    vals = [os.urandom(n) for n in (0, 1, 255, 256, 3000, 8000)] + [None]
    for v in vals:
        log.append(v)
    rd, copy = log.reader(0, "spin"), log.reader(0, "spin")
    for o, v in enumerate(vals):
        view = rd.poll_view(1)
        assert type(view) is memoryview and view.readonly
        assert view == (v or b"") == copy.poll_value(1)
        if v:  # the record's own bytes: a byte changed in the ring shows through the view
            at = _value_at(log, o)
            log._seg.mm[at] ^= 0xFF
            assert view[0] == v[0] ^ 0xFF
            log._seg.mm[at] ^= 0xFF
            with pytest.raises(TypeError):
                view[0] = 1
    assert rd.poll_view(0) is None
    assert (rd.position, rd.lost, rd.skipped) == (len(vals), 0, 0)
    assert log.stats()["corrupt_skips"] == 0


def test_poll_view_keeps_the_floor_at_its_record_until_the_next_poll(logs):
    """With floor_every=1 a block-mode producer may reuse everything below the
    viewed record, never the record itself, until the reader polls again."""
    log = logs.create(slot_count=8, data_capacity=1 << 14, max_record=1024, overflow="block")
    log.block_timeout = 0.05
    vals = [bytes([i]) * 1000 for i in range(8)]
    for v in vals:
        log.append(v)
    rd = log.reader(0, "spin", floor_every=1)
    views = [rd.poll_view(1) for _ in range(3)]
    assert log.stats()["floor"] == 2  # held at the last view's record, not past it
    assert views[2] == vals[2]
    for i in range(2):  # the two below it are reusable ...
        log.append(b"n" * 1000)
    with pytest.raises(QueueFullError):  # ... the viewed one is not
        log.append(b"x" * 1000)
    assert views[2] == vals[2]
    assert rd.poll_view(1) == vals[3]  # the next poll lets it go
    assert log.stats()["floor"] == 3
    log.append(b"y" * 1000)
    assert [bytes(rd.poll_view(1)) for _ in range(7)] == vals[4:] + [b"n" * 1000] * 2 + [b"y" * 1000]
    assert (rd.lost, rd.skipped) == (0, 0)


def test_poll_view_copies_what_it_cannot_hold_in_place(logs):
    """A value that wraps the ring's end, and one the floor has already passed
    (producers may reuse its bytes), come as views of copies."""
    log = logs.create(slot_count=64, data_capacity=1 << 13, max_record=4096, overflow="block")
    rd = log.reader(0, "spin", floor_every=1)
    wrapped = in_place = 0
    for i in range(40):
        v = os.urandom(1000 + 7 * i)
        o = log.append(v)
        at = _value_in_ring(log, o)
        view = rd.poll_view(1)
        assert view == v
        spans_end = at + len(v) > log.data_capacity
        assert isinstance(view.obj, bytes) == spans_end, (i, at, len(v))
        wrapped += spans_end
        in_place += not spans_end
    assert wrapped >= 3 and in_place >= 30
    log.append(b"z" * 2000)
    late = log.reader(rd.position, "spin")
    log.set_floor(rd.position + 1)  # someone else moved the floor past it
    view = late.poll_view(1)
    assert view == b"z" * 2000 and isinstance(view.obj, bytes)
    # a setter between its two steps: the byte floor (raised first) past the record, the offset floor not yet
    o = log.append(b"w" * 2000)
    mm = log._seg.mm
    pos, = struct.unpack_from("<Q", mm, 4096 + (o % log.slot_count) * 64 + 8)
    assert struct.unpack_from("<Q", mm, 384)[0] <= o  # the offset floor (header word 384) is below it
    struct.pack_into("<Q", mm, 392, pos + 8)  # the byte floor (word 392) past its start
    view = late.poll_view(1)
    assert view == b"w" * 2000 and isinstance(view.obj, bytes)
    assert (rd.lost, rd.skipped, late.lost, late.skipped) == (0, 0, 0, 0)


def test_poll_view_checks_the_record_and_refuses_an_overwrite_log(logs):
    """With check_crcs a view's value is checksummed where it lies: a flipped byte skips the record.  Without
    (the default, as librdkafka's check.crcs) the value is handed out as it lies, but the record header must
    still agree with the slot; a copying read always checks the value."""
    log = logs.create(slot_count=16, data_capacity=1 << 14, max_record=4096, overflow="block")
    for v in (b"a" * 3000, b"b" * 3000, b"c" * 3000, b"d" * 3000):
        log.append(v)
    log._seg.mm[_value_at(log, 1) + 2999] ^= 0x01  # the second one's last byte
    rd = log.reader(0, "spin", check_crcs=True)
    assert [rd.poll_view(1), rd.poll_view(1), rd.poll_view(1), rd.poll_view(0)] == [b"a" * 3000, b"c" * 3000,
                                                                                     b"d" * 3000, None]
    assert (rd.skipped, rd.position, log.stats()["corrupt_skips"]) == (1, 4, 1)
    copy = log.reader(0, "spin")
    assert [copy.poll_value(1) for _ in range(3)] == [b"a" * 3000, b"c" * 3000, b"d" * 3000]
    assert (copy.skipped, log.stats()["corrupt_skips"]) == (1, 2)
    at = _value_at(log, 2) - 16  # the third one's record header: {offset, length, checksum}
    struct.pack_into("<Q", log._seg.mm, at, struct.unpack_from("<Q", log._seg.mm, at)[0] + 1)
    unsummed = log.reader(0, "spin")
    got = [unsummed.poll_view(1), unsummed.poll_view(1), unsummed.poll_view(1), unsummed.poll_view(0)]
    assert got == [b"a" * 3000, b"b" * 2999 + b"c", b"d" * 3000, None]  # the flipped byte, as it lies
    assert (unsummed.skipped, unsummed.position, log.stats()["corrupt_skips"]) == (1, 4, 3)
    with pytest.raises(TypeError, match="check_crcs"):
        log.reader(0, check_crcs="yes")
    plain = logs.create(slot_count=16, data_capacity=4096, max_record=64)
    plain.append(b"v")
    with pytest.raises(ValueError, match="overflow='block'"):
        plain.reader(0).poll_view(0)


def test_views_outlive_a_closed_log(logs):
    """close() with views still held unmaps nothing under them: the mapping
    goes with the last view; a closed log's reader raises."""
    log = logs.create(slot_count=16, data_capacity=1 << 14, max_record=4096, overflow="block")
    log.append(b"q" * 3000)
    rd = log.reader(0, "spin")
    view = rd.poll_view(1)
    log.close()
    assert log.closed and view == b"q" * 3000
    with pytest.raises(ClosedError):
        rd.poll_view(0)
    view.release()


def test_a_view_is_never_overwritten_by_a_producer_in_another_process(logs):
    """A producer process appends as fast as it can into a block log that
    holds about a dozen records; the reader holds each view a while and
    checks it is still its record: the floor at the viewed record keeps the
    producer off its bytes, while every record before it is reused."""
    log = logs.create(slot_count=16, data_capacity=1 << 16, max_record=8192, overflow="block")
    n = 3000
    rep_r, rep_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            import random
            from shm import PartitionLog
            child = PartitionLog.attach(log.name)
            child.block_timeout = 30.0
            rnd = random.Random(3)
            for i in range(n):  # record i: its index as 8 bytes, repeated
                child.append(struct.pack("<q", i) * rnd.randint(375, 750))
            child.close()
            os.write(rep_w, b"ok")
            code = 0
        except BaseException as e:  # the parent fails with the child's error
            os.write(rep_w, repr(e).encode()[:200])
        finally:
            os._exit(code)
    status = None
    try:
        rd = log.reader(0, "spin", floor_every=1)
        in_place = 0
        for i in range(n):
            view = rd.poll_view(30)
            assert view is not None, "record %d did not come" % i
            want = struct.pack("<q", i) * (len(view) // 8)
            assert view == want, "record %d" % i
            in_place += not isinstance(view.obj, bytes)
            for _ in range(20):  # hold it while the producer waits for room: it must stay ours
                assert view == want, "record %d changed under its view" % i
        status = wait_child(pid, timeout=60)
        report = os.read(rep_r, 256)
    finally:
        if status is None:  # failed before the child finished: end it (ours, by pid)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(rep_r)
        os.close(rep_w)
    assert report == b"ok" and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, report
    assert in_place > n // 2
    assert (rd.lost, rd.skipped, log.stats()["corrupt_skips"]) == (0, 0, 0)
    assert log.stats()["block_waits"] > 0  # the producer did wait for the floor
