"""The record checksum of long parts (ext/shmlog.c's hash_wide): every CPU
version (scalar, SSE2, AVX2) gives the same sums, which are the formula's
(a Python model here), and a changed byte or two swapped stripes of a long
record are caught on read."""
import os
import struct

import pytest

from shm._native import lib
from test_overrun import _M, _hash_bytes, _rotl

WIDE_MIN = 256
STEP = 0x9E3779B97F4A7C15
K = (0xBE4BA423396CFEB8, 0x1CAD21F72C81017C, 0xDB979083E96DD4DE, 0x1F67B3B7A4A44072,
     0x78E5C0CC4EE679CB, 0x2172FFCC7DD05A82, 0x8E2443F7744608B8, 0x4C263A81E69035E0)
IMPLS = {"scalar": 0, "sse2": 1, "avx2": 2}  # lib.shmlog_wide_force values


def _hash_wide(data, seed):
    n, acc = len(data), [(seed ^ K[7 - i]) & _M for i in range(8)]
    for s in range(n // 64):
        for i in range(8):
            d = int.from_bytes(data[64 * s + 8 * i:64 * s + 8 * i + 8], "little")
            dk = d ^ ((K[i] + s * STEP) & _M)
            acc[i ^ 1] = (acc[i ^ 1] + d) & _M
            acc[i] = (acc[i] + (dk & 0xFFFFFFFF) * (dk >> 32)) & _M
    h = _hash_bytes(data[n // 64 * 64:], seed ^ n)
    return _hash_bytes(b"".join(a.to_bytes(8, "little") for a in acc), h)


def _part(data, seed):
    return _hash_wide(data, seed) if len(data) >= WIDE_MIN else _hash_bytes(data, seed)


def _checksum(offset, ts, flags, key, val):
    s = (offset * STEP & _M) ^ (ts & _M) ^ (flags << 56) ^ _rotl(len(key), 32) ^ _rotl(len(val), 48)
    if key:
        s = _part(key, s ^ 0x4B4559)
    s = _part(val, s)
    return (s ^ (s >> 32)) & 0xFFFFFFFF


def _slot(log, o):
    """(slot offset, data position of the record, its timestamp, flags, stored checksum) of offset o."""
    mm = log._seg.mm
    slot = 4096 + (o % log.slot_count) * 64
    pos, so, ts = struct.unpack_from("<QQq", mm, slot + 8)
    assert so == o
    flags, = struct.unpack_from("<I", mm, slot + 48)
    cs, = struct.unpack_from("<I", mm, slot + 52)
    return slot, pos, ts, flags, cs


@pytest.fixture
def force():
    def set_(name):
        if name == "avx2" and not _has_avx2():
            pytest.skip("this CPU has no AVX2")
        if name != "scalar" and os.uname().machine != "x86_64":
            pytest.skip("SSE2 and AVX2 versions are x86-64's")
        lib.shmlog_wide_force = IMPLS[name]
    yield set_
    lib.shmlog_wide_force = -1


def _has_avx2():
    with open("/proc/cpuinfo") as f:
        return " avx2" in f.read()


@pytest.mark.parametrize("writer", list(IMPLS))
def test_every_version_gives_the_formulas_sums(logs, force, writer):
    log = logs.create(slot_count=64, data_capacity=1 << 20, max_record=1 << 17)
    sizes = [0, 1, 63, 64, 255, 256, 257, 319, 320, 1000, 4096, 65535, 65536]
    for size in sizes:
        force(writer)
        v, k = os.urandom(size), os.urandom(size // 3)
        o = log.append(v, key=k or None)
        _, _, ts, flags, cs = _slot(log, o)
        assert cs == _checksum(o, ts, flags & 3, k, v), "size %d written by %s" % (size, writer)
        for reader in IMPLS:
            force(reader)
            rec = log.read(o)
            assert rec.status == "ok" and rec.value == v and (rec.key or b"") == k, (size, writer, reader)
    assert log.stats()["corrupt_skips"] == 0


@pytest.mark.parametrize("reader", list(IMPLS))
@pytest.mark.parametrize("damage", ["one byte", "two stripes swapped"])
def test_a_damaged_long_record_is_caught(logs, force, reader, damage):
    log = logs.create(slot_count=16, data_capacity=1 << 20, max_record=1 << 17)
    v = os.urandom(65536)
    o = log.append(v)
    _, pos, _, _, _ = _slot(log, o)
    mm = log._seg.mm
    data_off, = struct.unpack_from("<Q", mm, 48)
    at = data_off + pos % log.data_capacity + 16  # the value, after the record's 16-byte header
    if damage == "one byte":
        mm[at + 40000] ^= 0x10
    else:
        a, b = bytes(mm[at + 640:at + 704]), bytes(mm[at + 6400:at + 6464])
        mm[at + 640:at + 704], mm[at + 6400:at + 6464] = b, a
    force(reader)
    before = log.stats()["corrupt_skips"]
    assert log.read(o).status == "corrupt"
    assert (before, log.stats()["corrupt_skips"]) == (0, 1)


@pytest.mark.parametrize("writer", list(IMPLS))
def test_parts_that_wrap_the_ring_give_the_same_sums(logs, force, writer):
    """Appends and reads sum a part while copying it, except where the part
    wraps the ring's end (copied in two pieces, summed apart): both ways
    must give the formula's sums, at every split point."""
    import random
    rnd = random.Random(7)
    log = logs.create(slot_count=64, data_capacity=1 << 14, max_record=4096)
    wrapped = 0
    for i in range(300):
        force(writer)
        v = os.urandom(rnd.choice([0, 8, 255, 256, 300, 1000, 2048, 4000 - 64]))
        k = os.urandom(rnd.choice([0, 3, 64]))
        o = log.append(v, key=k or None)
        _, pos, ts, flags, cs = _slot(log, o)
        start = (pos + 16 + len(k)) % log.data_capacity
        wrapped += start + len(v) > log.data_capacity
        assert cs == _checksum(o, ts, flags & 3, k, v), (i, len(v), writer)
        for reader in IMPLS:
            force(reader)
            rec = log.read(o)
            assert rec.status == "ok" and rec.value == v and (rec.key or b"") == k, (i, writer, reader)
    assert wrapped >= 10  # the split copies ran
    assert log.stats()["corrupt_skips"] == 0
