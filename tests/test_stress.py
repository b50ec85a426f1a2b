"""Multi-process torn-read stress: 3 producers x 2 readers on a tiny ring
(64 slots, 4 KiB of data) that wraps thousands of times.  Payloads validate
themselves (producer id, per-producer sequence, crc32); readers assert zero
corrupt deliveries, strictly increasing offsets and per-producer order."""
import random
import struct
import zlib

from shm import PartitionLog

from conftest import CTX

PRODUCERS, READERS, PER_PRODUCER = 3, 2, 100000
SLOTS, DATA, MAXREC = 64, 4096, 256
HEAD = struct.Struct("<IQI")


def producer(name, pid_id, start_evt):
    log = PartitionLog.attach(name)
    rnd = random.Random(pid_id)
    start_evt.wait(30)
    last = -1
    for seq in range(PER_PRODUCER):
        body = rnd.randbytes(rnd.randrange(0, 160))
        o = log.append(HEAD.pack(pid_id, seq, zlib.crc32(body)) + body)
        assert o > last  # one producer's offsets grow
        last = o
    log.close()
    return pid_id


def reader(name, done_evt, start_evt):
    log = PartitionLog.attach(name)
    start_evt.wait(30)
    o, last_off = 0, -1
    last_seq = [-1] * PRODUCERS
    delivered = laps = since_jump = 0
    jump_to = 0
    errors = []
    while True:
        recs, nxt, stop = log.read_batch(o, 256)
        for r in recs:
            v = r.value
            if r.offset <= last_off:
                errors.append("offset %d after %d" % (r.offset, last_off))
            last_off = r.offset
            if len(v) < HEAD.size:
                errors.append("short record at %d" % r.offset)
                continue
            p, seq, crc = HEAD.unpack_from(v)
            if p >= PRODUCERS or zlib.crc32(v[HEAD.size:]) != crc:
                errors.append("corrupt delivery at %d" % r.offset)
                continue
            if seq <= last_seq[p]:
                errors.append("producer %d seq %d after %d" % (p, seq, last_seq[p]))
            last_seq[p] = seq
            delivered += 1
            since_jump += 1
        o = nxt
        if stop is None:
            continue
        if stop.status == "lapped":
            laps += 1
            o = jump_to = max(stop.low, stop.offset + 1)
            since_jump = 0
        elif done_evt.is_set() and o >= log.watermarks()[1]:
            break
        else:
            log.wait(o, timeout=0.05)
        if len(errors) > 20:
            break
    log.close()
    return {"delivered": delivered, "laps": laps, "errors": errors[:20], "last_seq": last_seq,
            "last_off": last_off, "jump_to": jump_to, "since_jump": since_jump}


def test_torn_read_stress(logs, children):
    log = logs.create(slot_count=SLOTS, data_capacity=DATA, max_record=MAXREC)
    start, done = CTX.Event(), CTX.Event()
    for _ in range(READERS):
        children.start(reader, log.name, done, start)
    prods = [children.start(producer, log.name, i, start) for i in range(PRODUCERS)]
    start.set()
    for p in prods:
        p.join(120)
        assert p.exitcode == 0, "producer exit code %s" % p.exitcode
    done.set()
    results = children.results(timeout=120)
    reader_results = [r for r in results if isinstance(r, dict)]
    assert sorted(r for r in results if isinstance(r, int)) == list(range(PRODUCERS))
    assert len(reader_results) == READERS
    st = log.stats()
    print("stress stats:", st, [(r["delivered"], r["laps"]) for r in reader_results])
    total = PRODUCERS * PER_PRODUCER
    assert st["high"] == total and st["tombstones"] == 0
    assert st["bytes_claimed"] // DATA > 1000, "data ring wrapped only %d times" % (st["bytes_claimed"] // DATA)
    for r in reader_results:
        assert r["errors"] == []
        assert r["last_off"] == total - 1  # every reader reached the end
        # after its last lap, a reader delivers every offset to the end
        assert r["since_jump"] == total - r["jump_to"]
        assert max(r["last_seq"]) == PER_PRODUCER - 1
        assert 0 < r["delivered"] <= total
    # every lap a reader saw was counted by the log (and there were laps)
    assert st["laps_seen"] == sum(r["laps"] for r in reader_results) > 0
