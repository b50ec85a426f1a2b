"""Long values are read once, straight into their bytes object
(log_value_len_hint + log_read_value_into, used by PartitionLog.read/poll's
fast path); a read that is not LOG_OK is read once (its lap or corrupt
record counted once)."""
import os

from shm._native import ffi, lib


def test_a_long_value_comes_whole_with_its_key_and_headers(logs):
    log = logs.create(slot_count=16, data_capacity=1 << 20, max_record=1 << 16)
    v = os.urandom(8192)
    o = log.append(v, key=b"key", headers=[("h", b"1"), ("h", b"2")])
    assert lib.log_value_len_hint(log._v, o) == 8192
    assert lib.log_value_len_hint(log._v, o + 1) == -1  # not written yet
    rec = log.read(o)
    assert (rec.value, rec.key, rec.headers) == (v, b"key", [("h", b"1"), ("h", b"2")])
    assert log.poll(o, 0).value == v
    n = log.append(None, key=b"tombstone-like")  # a null value has no length to size by
    assert lib.log_value_len_hint(log._v, n) == -1
    assert log.read(n).value is None


def test_a_wrong_length_delivers_nothing_and_counts_nothing(logs):
    log = logs.create(slot_count=16, data_capacity=1 << 20, max_record=1 << 16)
    v = os.urandom(5000)
    o = log.append(v)
    rec, buf = ffi.new("log_rec *"), ffi.new("char[]", 64)
    for wrong in (4999, 5001):
        vbuf = ffi.new("char[]", wrong)
        assert lib.log_read_value_into(log._v, o, rec, buf, 64, vbuf, wrong) == lib.LOG_E_BUFFER
    vbuf = ffi.new("char[]", 5000)
    assert lib.log_read_value_into(log._v, o, rec, buf, 64, vbuf, 5000) == lib.LOG_OK
    assert ffi.buffer(vbuf, 5000)[:] == v and rec.val_len == 5000
    st = log.stats()
    assert (st["corrupt_skips"], st["laps_seen"]) == (0, 0)


def test_a_lapped_read_is_counted_once(logs):
    log = logs.create(slot_count=4, data_capacity=4096, max_record=256)
    for i in range(12):
        log.append(b"x%d" % i)
    assert log.read(0).status == "lapped"
    assert log.stats()["laps_seen"] == 1


def test_a_consumer_gets_long_values_whole_and_skips_a_damaged_one_once(ns):
    """The Kafka consumer's batch read takes a long value alone, straight into its object; a damaged one is
    skipped and counted once, and the records around it come whole."""
    import struct

    from conftest import conf, make_topic

    from broker.kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
    from broker.namespace import Namespace
    make_topic(ns, "t", 1)
    vals = [os.urandom(8192) for _ in range(3)] + [b"short"]
    with Producer(conf(ns)) as p:
        for i, v in enumerate(vals):
            p.produce("t", v, key=b"k%d" % i, partition=0, headers=[("i", b"%d" % i)] if i == 2 else None)
    with Namespace(ns) as n:
        log = n.open_partition(n.topic("t"), 0)
        mm = log._seg.mm
        data_off, = struct.unpack_from("<Q", mm, 48)
        pos, = struct.unpack_from("<Q", mm, 4096 + 1 * 64 + 8)
        mm[data_off + pos % log.data_capacity + 16 + 2 + 5000] ^= 1  # offset 1's value (after its 2-byte key)
        with Consumer(conf(ns, **{"group.id": "g"})) as c:
            c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
            got = [c.poll(5) for _ in range(3)]
            assert c.poll(0.2) is None
        assert [(m.offset(), m.key(), m.value()) for m in got] == [(0, b"k0", vals[0]), (2, b"k2", vals[2]),
                                                                   (3, b"k3", vals[3])]
        assert got[1].headers() == [("i", b"2")]
        assert log.stats()["corrupt_skips"] == 1
        log.close()
