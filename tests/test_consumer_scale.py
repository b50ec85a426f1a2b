"""Consumers at scale and under pressure (issue 8, part 5): waits over more
than 128 partitions, the committed-offset table under group churn, records
lost to laps, and a namespace destroyed under live clients."""
import os
import subprocess
import sys
import time

import pytest

from broker import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, Producer, TopicPartition
from broker.admin import AdminClient, NewTopic

from conftest import CTX, deadline_wait

WIDE = 200  # partitions: more than futex_waitv's 128 words


def conf(ns, **kw):
    c = {"shm.namespace": ns}
    c.update(kw)
    return c


def make_topic(ns, name, partitions=1, **config):
    with AdminClient(conf(ns)) as a:
        a.create_topics([NewTopic(name, partitions, config=config)])[name].result()


def _wide_consumer(ns, group, ready, out):
    """Child: a consumer of every partition of "wide" (assigned, or as the
    only member of *group*); reports its idle poll(2)'s CPU time, then
    blocks in long polls until a record comes and reports when it came."""
    try:
        if group is None:
            c = Consumer(conf(ns))
            c.assign([TopicPartition("wide", p, OFFSET_END) for p in range(WIDE)])
        else:
            c = Consumer(conf(ns, **{"group.id": group, "auto.offset.reset": "latest"}))
            c.subscribe(["wide"])
            end = time.monotonic() + 30
            while len(c.assignment()) < WIDE:  # the supervisor assigns all of them to us
                assert time.monotonic() < end, "assigned %d of %d partitions" % (len(c.assignment()), WIDE)
                assert c.poll(0.05) is None
        c.poll(0.2)  # the first wait sets up; then measure an idle one
        t0, c0 = time.monotonic(), time.process_time()
        m = c.poll(2.0)
        wall, cpu = time.monotonic() - t0, time.process_time() - c0
        out.send(("idle", m is None, wall, cpu))
        ready.set()
        m = c.poll(None) if group is None else c.poll(60.0)  # the parent kills us after its deadline
        got = time.monotonic()
        out.send(("got", m.partition(), m.offset(), m.value(), got))
        c.close()
    except BaseException as exc:
        out.send(("error", repr(exc)))
        raise
    finally:
        out.close()


@pytest.mark.parametrize("group", [None, "g"], ids=["assign", "member"])
def test_a_wide_consumer_sleeps_when_idle_and_sees_partition_150_at_once(ns, group):
    make_topic(ns, "wide", WIDE, **{"retention.bytes": 4096, "shm.slots": 4})
    ready = CTX.Event()
    rd, wr = CTX.Pipe(duplex=False)
    child = CTX.Process(target=_wide_consumer, args=(ns, group, ready, wr), daemon=True)
    child.start()
    wr.close()
    try:
        assert rd.poll(60), "the consumer child did not report its idle poll"
        kind, *res = rd.recv()
        assert kind == "idle", res
        empty, wall, cpu = res
        assert empty and wall >= 1.9
        assert cpu < 0.5, "an idle poll(2) over %d partitions used %.2f s of CPU" % (WIDE, cpu)
        assert ready.wait(10)
        with Producer(conf(ns)) as p:
            sent = time.monotonic()
            p.produce("wide", b"late", partition=150)
        assert rd.poll(10), "a record on partition 150 was not seen by a consumer blocked in poll"
        kind, *res = rd.recv()
        assert kind == "got", res
        part, off, val, got = res
        assert (part, off, val) == (150, 0, b"late")
        assert got - sent < 1.0
    finally:
        child.join(5)
        if child.exitcode is None:
            child.kill()
            child.join(5)
    assert child.exitcode == 0


def run_cli(ns, *args):
    env = dict(os.environ, SHMBROKER_NAMESPACE=ns)
    return subprocess.run([sys.executable, "-m", "broker", *args], capture_output=True, text=True, env=env,
                          timeout=60)


# ---- the committed-offset table under group churn ----------------------------
def test_group_churn_past_the_commit_table_size_keeps_commits_working(ns):
    from broker.admin import ConsumerGroupTopicPartitions as CG
    from broker.groups import DELETED_KEY
    from broker.namespace import MAX_COMMITS
    n = 256
    make_topic(ns, "t", n, **{"retention.bytes": 4096, "shm.slots": 2})
    rounds = MAX_COMMITS // n + 8  # 18,432 distinct keys over the run: more than the table holds
    with AdminClient(conf(ns)) as a:
        a.alter_consumer_group_offsets([CG("keeper", [TopicPartition("t", p, 1000 + p) for p in range(n)])])[
            "keeper"].result()  # live keys interleaved with the churn
        for r in range(rounds):
            g = "g%d" % r
            a.alter_consumer_group_offsets([CG(g, [TopicPartition("t", p, r + p) for p in range(n)])])[g].result()
            got = a.list_consumer_group_offsets([CG(g, [TopicPartition("t", 7), TopicPartition("t", 200)])])[
                g].result().topic_partitions
            assert [x.offset for x in got] == [r + 7, r + 200]
            a.delete_consumer_groups([g])[g].result()
        got = a.list_consumer_group_offsets([CG("keeper")])["keeper"].result().topic_partitions
        assert sorted((x.partition, x.offset) for x in got) == [(p, 1000 + p) for p in range(n)]
        keys = a._groups()._words[:, 0].copy()
        # deleted entries are reused or freed: only the keeper's entries and a few holes in front of them remain
        assert (keys > DELETED_KEY).sum() == n
        assert (keys == DELETED_KEY).sum() < n
    # and a consumer of a new group commits as usual
    with Consumer(conf(ns, **{"group.id": "last"})) as c:
        c.assign([TopicPartition("t", 3, 5)])
        c.commit(offsets=[TopicPartition("t", 3, 42)], asynchronous=False)
        assert c.committed([TopicPartition("t", 3)])[0].offset == 42


def test_a_stalled_committer_cannot_write_into_a_reused_entry(ns):
    """A committer that found its entry, then stalled while its group was
    deleted and the entry went to another key, fails its commit."""
    from shm._native import lib
    from broker.groups import C_OWNER, C_VALUE, Groups
    from broker.namespace import COMMITS_OFF, CENTRY, META_SIZE, Namespace
    make_topic(ns, "t", 1)
    with Namespace(ns) as n:
        gs = Groups(n)
        try:
            a, tid = gs.group_index("a"), n.topic("t").topic_id
            assert gs.commit(a, tid, 0, 5, 0)
            off = gs.commit_entry(a, tid, 0, create=False)
            key_a = gs.load(off)
            gs.delete_group(a)
            b = gs.group_index("b")
            hole = (off - COMMITS_OFF) // CENTRY
            # a key of b whose probe starts at the freed entry (a topic id no topic has yet: the table does not care)
            other = next(t for t in range(tid + 1, 1 << 30) if gs.home(gs.commit_key(b, t, 0)) == hole)
            assert gs.commit(b, other, 0, 7, 0) and gs.commit_entry(b, other, 0) == off  # the entry is reused
            assert gs.load(off) != key_a
            # the stalled committer's step: its CAS expects the key it looked up (token 0: nobody owns it)
            assert lib.shm_pair_commit(gs.buf, META_SIZE, off + C_OWNER, key_a, 99 + 1) == 0
            assert gs.committed(b, other, 0) == 7 and gs.load(off + C_VALUE) == 8
            assert gs.committed(a, tid, 0) is None
        finally:
            gs.close()


# ---- laps -----------------------------------------------------------------------
def _lap(ns, c, p):
    """Deliver offset 0, then lap the 16-slot ring under the consumer."""
    c.assign([TopicPartition("small", 0, 0)])
    p.produce("small", b"0")
    m = c.poll(10)
    assert m is not None and m.error() is None and m.offset() == 0
    for i in range(1, 101):
        p.produce("small", b"%d" % i)
    lo, hi = c.get_watermark_offsets(TopicPartition("small", 0))
    assert lo > 1 and hi == 101
    return lo, hi


def test_reset_error_delivers_auto_offset_reset(ns):
    assert KafkaError._AUTO_OFFSET_RESET == -140
    make_topic(ns, "small", 1, **{"retention.bytes": 4096, "shm.slots": 16})
    with Producer(conf(ns)) as p, Consumer(conf(ns, **{"auto.offset.reset": "error"})) as c:
        lo, hi = _lap(ns, c, p)
        m = c.poll(10)
        assert m is not None and m.error() is not None
        assert m.error().code() == KafkaError._AUTO_OFFSET_RESET
        assert (m.topic(), m.partition(), m.offset()) == ("small", 0, 1)
        assert "auto.offset.reset=error" in m.error().str()
        assert c.poll(0.2) is None  # stopped until seek(), nothing skipped silently
        assert c.stats()[TopicPartition("small", 0)]["records_lost_to_laps"] == 0
        c.seek(TopicPartition("small", 0, OFFSET_BEGINNING))
        assert c.poll(10).offset() == lo


@pytest.mark.parametrize("reset", ["earliest", "latest"])
def test_a_lapped_consumer_counts_what_it_lost(ns, reset):
    make_topic(ns, "small", 1, **{"retention.bytes": 4096, "shm.slots": 16})
    with Producer(conf(ns)) as p, Consumer(conf(ns, **{"auto.offset.reset": reset, "group.id": "g",
                                                       "enable.auto.commit": False})) as c:
        lo, hi = _lap(ns, c, p)
        m = c.poll(1.0)
        if reset == "earliest":
            assert m.offset() == lo
            lost = lo - 1
        else:
            assert m is None  # jumped to the end
            lost = hi - 1
        st = c.stats()[TopicPartition("small", 0)]
        assert st["records_lost_to_laps"] == lost and st["lap_resets"] == 1
        assert st["lag"] == c.lag()[TopicPartition("small", 0)]
        out = run_cli(ns, "stat", "--count", "1")
        assert out.returncode == 0, out.stderr
        lines = [l.split() for l in out.stdout.splitlines()]
        head = next(l for l in lines if l[:1] == ["GROUP"])
        row = next(l for l in lines if l[:3] == ["g", "small", "0"])
        assert row[head.index("LAPS-LOST")] == str(lost)


# ---- destroy under live clients -------------------------------------------------------
def test_destroy_under_live_clients_makes_their_next_call_raise(ns):
    from broker.errors import NamespaceError
    from conftest import while_blocked
    make_topic(ns, "t", 2)
    p = Producer(conf(ns))
    member = Consumer(conf(ns, **{"group.id": "g", "auto.offset.reset": "earliest"}))
    reader = Consumer(conf(ns, **{"auto.offset.reset": "earliest"}))
    try:
        member.subscribe(["t"])
        deadline_wait(lambda: member.poll(0.01) is None and len(member.assignment()) == 2, 20, "the assignment")
        reader.assign([TopicPartition("t", 1, 0)])
        for i in range(5):
            p.produce("t", b"%d" % i, partition=0)
        m = member.poll(10)
        assert m is not None and m.error() is None
        member.commit(m, asynchronous=False)
        from broker.namespace import Namespace
        with Namespace(ns) as n:
            watch = n.open_partition(n.topic("t"), 1)
        what = "namespace %r was destroyed" % ns

        def blocked_poll():
            try:
                reader.poll(30)
            except NamespaceError as exc:
                return str(exc)
            return "poll returned"
        # a consumer asleep in poll wakes up with the error when the namespace goes
        got = while_blocked(blocked_poll, lambda: watch.stats()["waiters"] > 0, "the reader asleep in poll",
                            lambda: run_cli(ns, "destroy"))
        watch.close()
        assert what in got
        assert not [f for f in os.listdir("/dev/shm") if f == "shmb." + ns or f.startswith("shmb.%s." % ns)]
        # someone starts the namespace afresh: the old clients are not silently split from it
        make_topic(ns, "t", 2)
        with pytest.raises(NamespaceError, match=what):
            p.produce("t", b"late", partition=0)
        with pytest.raises(NamespaceError, match=what):
            member.poll(1)  # it still had records 1..4 to read
        with pytest.raises(NamespaceError, match=what):
            member.commit(offsets=[TopicPartition("t", 0, 3)], asynchronous=False)
        with pytest.raises(NamespaceError, match=what):
            reader.poll(0)
        with Consumer(conf(ns, **{"auto.offset.reset": "earliest"})) as fresh:
            fresh.assign([TopicPartition("t", 0, 0)])
            assert fresh.poll(0.5) is None  # nothing of the old clients went into the new namespace
    finally:
        p.close()
        member.close()
        reader.close()
