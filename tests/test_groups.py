"""Consumer groups: assignors, commits and fencing, rebalance callbacks,
static membership, regex subscriptions, the admin calls, block mode driven
by group commits.  In one process (several consumers polled in turn); the
crash tests with child processes are in test_group_crash.py."""
import time

import pytest

from broker import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from broker import groups as G
from broker.admin import AdminClient, ConsumerGroupState, ConsumerGroupTopicPartitions, NewTopic



def conf(ns, **kw):
    c = {"shm.namespace": ns}
    c.update(kw)
    return c


def member(ns, group="g", **kw):
    kw.setdefault("auto.offset.reset", "earliest")
    return Consumer(conf(ns, **{"group.id": group}, **kw))


def settle(consumers, pred, what, timeout=20):
    """Poll every consumer in turn (their callbacks run) until pred()."""
    got = []
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for %s; assignments %r" % (
                what, [sorted((t.topic, t.partition) for t in c.assignment()) for c in consumers]))
        for c in consumers:
            m = c.poll(0.01)
            if m is not None and m.error() is None:
                got.append(m)
    return got


def parts(c):
    return sorted((t.topic, t.partition) for t in c.assignment())


@pytest.fixture
def topic(ns):
    with AdminClient(conf(ns)) as a:
        a.create_topics([NewTopic("t", 6)])["t"].result()
    return "t"


# ---- assignors (pure functions) -------------------------------------------
def test_range_assignor_is_kafkas():
    members = [("a", {"x", "y"}), ("b", {"x", "y"})]
    out = G.assign_range(members, {"x": range(3), "y": range(3)})
    # per topic, the first member gets the extra partition
    assert out == {"a": [("x", 0), ("x", 1), ("y", 0), ("y", 1)], "b": [("x", 2), ("y", 2)]}


def test_roundrobin_assignor_skips_unsubscribed():
    members = [("a", {"x"}), ("b", {"x", "y"})]
    out = G.assign_roundrobin(members, {"x": range(3), "y": range(2)})
    assert out == {"a": [("x", 0), ("x", 2)], "b": [("x", 1), ("y", 0), ("y", 1)]}


def test_sticky_assignor_moves_only_what_must_move():
    topics = {"x": range(6)}
    before = {"a": [("x", p) for p in range(3)], "b": [("x", p) for p in range(3, 6)]}
    out = G.assign_sticky([("a", {"x"}), ("b", {"x"}), ("c", {"x"})], topics, before)
    assert sorted(len(v) for v in out.values()) == [2, 2, 2]
    assert set(out["a"]) <= set(before["a"]) and set(out["b"]) <= set(before["b"])
    # a member leaves: its partitions go to the others, nothing else moves
    out2 = G.assign_sticky([("a", {"x"}), ("c", {"x"})], topics, out)
    assert set(out["a"]) <= set(out2["a"]) and set(out["c"]) <= set(out2["c"])
    assert sorted(len(v) for v in out2.values()) == [3, 3]


def test_strategy_parsing():
    assert G.parse_strategies(None) == [0, 1]  # librdkafka's default: range,roundrobin
    assert G.parse_strategies("cooperative-sticky") == [2]
    with pytest.raises(KafkaException, match="unknown assignor"):
        G.parse_strategies("sticky-ish")
    with pytest.raises(KafkaException, match="cannot be mixed"):
        G.parse_strategies("range,cooperative-sticky")


# ---- groups end to end, in one process ---------------------------------------
@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_members_share_partitions_and_rebalance_on_leave(ns, topic, strategy):
    with Producer(conf(ns)) as p:
        for i in range(600):
            p.produce("t", b"%d" % i, partition=i % 6)
    seen = {}
    c1 = member(ns, **{"partition.assignment.strategy": strategy})
    c2 = member(ns, **{"partition.assignment.strategy": strategy})
    for c in (c1, c2):
        c.subscribe(["t"])
    got = settle([c1, c2], lambda: len(parts(c1)) == 3 and len(parts(c2)) == 3, "a 3/3 split")
    assert not set(parts(c1)) & set(parts(c2))
    if strategy == "range":
        assert {tuple(parts(c1)), tuple(parts(c2))} == {tuple(("t", i) for i in range(3)),
                                                          tuple(("t", i) for i in range(3, 6))}
    got += settle([c1, c2], lambda: all(not any(c.lag().values()) for c in (c1, c2)), "both to drain")
    for m in got:
        seen.setdefault((m.partition(), m.offset()), 0)
        seen[(m.partition(), m.offset())] += 1
    c1.close()  # commits (auto-commit) and leaves at once: c2 takes everything
    settle([c2], lambda: len(parts(c2)) == 6, "c2 to own all six")
    with Producer(conf(ns)) as p:
        for i in range(600, 660):
            p.produce("t", b"%d" % i, partition=i % 6)
    more = settle([c2], lambda: not any(c2.lag().values()), "c2 to drain")
    for m in more:
        seen[(m.partition(), m.offset())] = seen.get((m.partition(), m.offset()), 0) + 1
    assert sorted(seen) == sorted((p, o) for p in range(6) for o in range(110))  # nothing lost
    assert max(seen.values()) == 1  # c1 committed on leaving: nothing read twice
    c2.close()


def test_cooperative_sticky_revokes_only_what_moves(ns, topic):
    log = []
    cb = {"partition.assignment.strategy": "cooperative-sticky"}

    def hooks(name):
        return dict(on_assign=lambda c, ps: log.append((name, "assign", sorted(p.partition for p in ps))),
                    on_revoke=lambda c, ps: log.append((name, "revoke", sorted(p.partition for p in ps))))
    c1, c2, c3 = member(ns, **cb), member(ns, **cb), member(ns, **cb)
    c1.subscribe(["t"], **hooks("c1"))
    settle([c1], lambda: len(parts(c1)) == 6, "c1 owns all")
    c2.subscribe(["t"], **hooks("c2"))
    settle([c1, c2], lambda: len(parts(c1)) == 3 and len(parts(c2)) == 3, "3/3")
    before = {1: set(parts(c1)), 2: set(parts(c2))}
    del log[:]
    c3.subscribe(["t"], **hooks("c3"))
    settle([c1, c2, c3], lambda: [len(parts(c)) for c in (c1, c2, c3)] == [2, 2, 2], "2/2/2")
    assert set(parts(c1)) <= before[1] and set(parts(c2)) <= before[2]  # they kept what they had
    revoked = sorted(p for name, kind, ps in log if kind == "revoke" for p in ps)
    assert revoked == sorted(p for _, p in parts(c3))  # revoked exactly what c3 got, nothing else
    assert all(name != "c3" for name, kind, _ in log if kind == "revoke")
    for c in (c1, c2, c3):
        c.close()


def test_eager_callbacks_revoke_all_then_assign_all(ns, topic):
    log = []
    c1, c2 = member(ns), member(ns)
    c1.subscribe(["t"], on_assign=lambda c, ps: log.append(("a", len(ps))), on_revoke=lambda c, ps: log.append(
        ("r", len(ps))))
    settle([c1], lambda: len(parts(c1)) == 6, "c1 owns all")
    assert log == [("a", 6)]
    c2.subscribe(["t"])
    settle([c1, c2], lambda: len(parts(c1)) == 3 and len(parts(c2)) == 3, "3/3")
    assert log == [("a", 6), ("r", 6), ("a", 3)]  # eager: everything revoked, the new set assigned
    c1.close()
    c2.close()


def test_commit_committed_and_resume_from_commit(ns, topic):
    with Producer(conf(ns)) as p:
        for i in range(20):
            p.produce("t", b"%d" % i, partition=0)
    commits = []
    c = member(ns, **{"enable.auto.commit": False, "on_commit": lambda err, ps: commits.append((err, ps))})
    c.subscribe(["t"])
    got = settle([c], lambda: len(parts(c)) == 6, "assignment")
    got += settle([c], lambda: c.lag()[TopicPartition("t", 0)] == 0, "drain")
    assert [m.offset() for m in got] == list(range(20))
    done = c.commit(got[9], asynchronous=False)
    assert [(x.topic, x.partition, x.offset) for x in done] == [("t", 0, 10)]
    assert c.committed([TopicPartition("t", 0), TopicPartition("t", 1)])[0].offset == 10
    assert c.committed([TopicPartition("t", 1)])[0].offset == -1001  # OFFSET_INVALID: nothing committed
    assert c.commit(offsets=[TopicPartition("t", 0, 15)]) is None  # asynchronous: on_commit from poll
    c.poll(0)
    assert commits[-1][0] is None and commits[-1][1][0].offset == 15
    c.close()  # no auto-commit: 15 stays
    c2 = member(ns, **{"enable.auto.commit": False})
    c2.subscribe(["t"])
    got = settle([c2], lambda: len(parts(c2)) == 6, "assignment")
    got += settle([c2], lambda: c2.lag()[TopicPartition("t", 0)] == 0, "drain")
    assert [m.offset() for m in got] == list(range(15, 20))  # resumed at the committed offset
    with pytest.raises(KafkaException, match="group.id"):
        Consumer(conf(ns)).commit(offsets=[TopicPartition("t", 0, 1)])
    c2.close()


def test_commit_by_a_replaced_member_is_refused(ns, topic):
    c1 = member(ns, **{"enable.auto.commit": False})
    c1.subscribe(["t"])
    settle([c1], lambda: len(parts(c1)) == 6, "assignment")
    c1.commit(offsets=[TopicPartition("t", 0, 3)], asynchronous=False)
    c2 = member(ns)
    c2.subscribe(["t"])
    settle([c1, c2], lambda: len(parts(c2)) == 3, "c2 takes half")
    lost = [p for _, p in parts(c2)][0]
    with pytest.raises(KafkaException) as ei:
        c1.commit(offsets=[TopicPartition("t", lost, 9)], asynchronous=False)
    assert ei.value.args[0].code() == KafkaError.ILLEGAL_GENERATION
    assert c2.committed([TopicPartition("t", lost)])[0].offset == (3 if lost == 0 else -1001)  # unchanged
    # a consumer outside the membership cannot commit a live member's partition either
    outsider = Consumer(conf(ns, **{"group.id": "g"}))
    with pytest.raises(KafkaException) as ei:
        outsider.commit(offsets=[TopicPartition("t", lost, 9)], asynchronous=False)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_MEMBER_ID
    for c in (c1, c2):
        c.close()
    # once the group is empty, it can (the members' tokens are gone)
    assert outsider.commit(offsets=[TopicPartition("t", lost, 9)], asynchronous=False)[0].offset == 9
    outsider.close()


def test_overwritten_commit_falls_back_to_auto_offset_reset(ns):
    with AdminClient(conf(ns)) as a:
        a.create_topics([NewTopic("small", 1, config={"retention.bytes": 4096, "shm.slots": 16})])["small"].result()
    with Producer(conf(ns)) as p:
        for i in range(5):
            p.produce("small", b"%d" % i)
    c = member(ns, **{"enable.auto.commit": False})
    c.subscribe(["small"])
    settle([c], lambda: parts(c) == [("small", 0)], "assignment")
    c.commit(offsets=[TopicPartition("small", 0, 2)], asynchronous=False)
    c.close()
    with Producer(conf(ns)) as p:
        for i in range(5, 100):
            p.produce("small", b"%d" % i)  # laps the 16-slot ring: offset 2 is gone
    c = member(ns, **{"auto.offset.reset": "earliest"})
    c.subscribe(["small"])
    got = settle([c], lambda: parts(c) == [("small", 0)], "assignment")
    got += settle([c], lambda: c.lag()[TopicPartition("small", 0)] == 0, "drain")
    low = min(m.offset() for m in got)
    assert low > 2 and [m.offset() for m in got] == list(range(low, 100))
    c.close()


def test_regex_subscription_picks_up_a_new_topic(ns):
    with AdminClient(conf(ns)) as a:
        a.create_topics([NewTopic("ev.a", 1), NewTopic("other", 1)])["ev.a"].result()
    c = member(ns)
    c.subscribe(["^ev\\..*"])
    settle([c], lambda: parts(c) == [("ev.a", 0)], "ev.a")
    with AdminClient(conf(ns)) as a:
        a.create_topics([NewTopic("ev.b", 2)])["ev.b"].result()
    settle([c], lambda: parts(c) == [("ev.a", 0), ("ev.b", 0), ("ev.b", 1)], "the new topic")
    with Producer(conf(ns)) as p:
        p.produce("ev.b", b"hello", partition=1)
    got = settle([c], lambda: c.lag()[TopicPartition("ev.b", 1)] == 0, "the record")
    assert [(m.topic(), m.value()) for m in got] == [("ev.b", b"hello")]
    c.close()


def test_block_topic_holds_producers_until_the_group_commits(ns):
    with AdminClient(conf(ns)) as a:
        a.create_topics([NewTopic("q", 1, config={"retention.bytes": 4096, "shm.slots": 8,
                                                  "shm.overflow": "block"})])["q"].result()
    c = member(ns, **{"enable.auto.commit": False})
    c.subscribe(["q"])
    settle([c], lambda: parts(c) == [("q", 0)], "assignment")
    p = Producer(conf(ns, **{"shm.block.timeout.ms": 50}))
    for i in range(8):
        p.produce("q", b"%d" % i)
    with pytest.raises(BufferError):
        p.produce("q", b"8")  # full, and the group committed nothing
    got = settle([c], lambda: c.lag()[TopicPartition("q", 0)] == 0, "drain")
    with pytest.raises(BufferError):
        p.produce("q", b"8")  # read is not enough: block mode waits for the commit
    c.commit(got[4], asynchronous=False)
    for i in range(8, 13):
        p.produce("q", b"%d" % i)  # 5 slots freed by the commit of offset 4 (+1)
    with pytest.raises(BufferError):
        p.produce("q", b"13")
    p.close()
    c.close()


def test_static_member_keeps_its_partitions_through_a_restart(ns, topic):
    static = {"group.instance.id": "worker-1", "session.timeout.ms": 60000}
    s1, d = member(ns, **static), member(ns)
    s1.subscribe(["t"])
    d.subscribe(["t"])
    settle([s1, d], lambda: len(parts(s1)) == 3 and len(parts(d)) == 3, "3/3")
    mine = parts(s1)
    # a static member that goes away without leaving (here: its slot goes
    # DOWN as the supervisor marks a dead static member) keeps its partitions
    gs = s1._gs
    slot = s1._slot
    s1._slot = None  # abandon it, as a crash would
    o = gs.slot_off(slot)
    gs.store(o + G.DOWN_DEADLINE, G.now_ns() + 60_000_000_000)
    gs.store(o + G.N_OWNED, 0)
    gs.store(o + G.STATE, G.DOWN)
    s1._ns.wake_supervisor()
    t_end = time.monotonic() + 0.5
    settle([d], lambda: time.monotonic() > t_end, "half a second")
    assert len(parts(d)) == 3  # not rebalanced: worker-1 is expected back
    s2 = member(ns, **static)
    s2.subscribe(["t"])
    settle([s2, d], lambda: parts(s2) == mine, "worker-1's partitions back")
    assert s2._slot == slot
    for c in (s1, s2, d):
        c.close()


def test_admin_group_calls(ns, topic):
    c = member(ns, **{"enable.auto.commit": False, "client.id": "me"})
    c.subscribe(["t"])
    settle([c], lambda: len(parts(c)) == 6, "assignment")
    c.commit(offsets=[TopicPartition("t", 1, 4)], asynchronous=False)
    with AdminClient(conf(ns)) as a:
        lst = a.list_consumer_groups().result()
        assert [(g.group_id, g.state) for g in lst.valid] == [("g", ConsumerGroupState.STABLE)]
        d = a.describe_consumer_groups(["g"])["g"].result()
        assert d.partition_assignor == "range" and len(d.members) == 1
        m = d.members[0]
        assert m.client_id == "me" and m.member_id == c.memberid() and m.alive
        assert sorted(m.assignment.topic_partitions) == [TopicPartition("t", i) for i in range(6)]
        off = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions("g")])["g"].result()
        assert [(x.topic, x.partition, x.offset) for x in off.topic_partitions] == [("t", 1, 4)]
        with pytest.raises(KafkaException, match="active members"):
            a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions("g", [TopicPartition("t", 1, 0)])])[
                "g"].result()
        with pytest.raises(KafkaException, match="active members"):
            a.delete_consumer_groups(["g"])["g"].result()
        c.close()
        a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions("g", [TopicPartition("t", 1, 0)])])[
            "g"].result()
        off = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions("g", [TopicPartition("t", 1)])])[
            "g"].result()
        assert off.topic_partitions[0].offset == 0
        assert a.list_consumer_groups().result().valid[0].state == ConsumerGroupState.EMPTY
        a.delete_consumer_groups(["g"])["g"].result()
        assert a.list_consumer_groups().result().valid == []
        with pytest.raises(KafkaException, match="does not exist"):
            a.describe_consumer_groups(["g"])["g"].result()


def test_bad_group_input(ns, topic):
    c = member(ns)
    with pytest.raises(TypeError):
        c.subscribe("t")  # a list, as confluent-kafka takes
    with pytest.raises(KafkaException, match="regex"):
        c.subscribe(["^(unclosed"])
    with pytest.raises(KafkaException, match="group.id"):
        Consumer(conf(ns, **{"group.id": ""}))
    with pytest.raises(KafkaException, match="assignor"):
        Consumer(conf(ns, **{"group.id": "g", "partition.assignment.strategy": "nope"}))
    c.close()


def test_a_forked_child_rejoins_as_its_own_member(ns, topic):
    import os
    import select
    c = member(ns)
    c.subscribe(["t"])
    settle([c], lambda: len(parts(c)) == 6, "assignment")
    parent_id = c.memberid()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            end = time.monotonic() + 20
            while not c.assignment() and time.monotonic() < end:
                c.poll(0.01)  # rejoins: the slot it inherited is the parent's
            os.write(w, ("%s %d" % (c.memberid(), len(c.assignment()))).encode())
            c.close()
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    end = time.monotonic() + 30
    while not select.select([r], [], [], 0)[0]:  # keep polling: the parent must hand partitions over
        assert time.monotonic() < end, "the child did not report"
        c.poll(0.01)
    child_id, n = os.read(r, 200).decode().split()
    os.close(r)
    assert os.waitpid(pid, 0)[1] == 0
    assert child_id != parent_id and child_id.startswith("shm-%d-" % pid) and int(n) == 3
    assert c.memberid() == parent_id  # the parent is still the member it was
    settle([c], lambda: len(parts(c)) == 6, "the child's partitions back after it left")
    c.close()


def test_store_offsets_and_unsubscribe(ns, topic):
    with Producer(conf(ns)) as p:
        for i in range(10):
            p.produce("t", b"%d" % i, partition=0)
    c1 = member(ns, **{"enable.auto.offset.store": False, "enable.auto.commit": False})
    c1.subscribe(["t"])
    got = settle([c1], lambda: len(parts(c1)) == 6, "assignment")
    got += settle([c1], lambda: c1.lag()[TopicPartition("t", 0)] == 0, "drain")
    assert len(got) == 10
    c1.store_offsets(got[3])  # processed up to offset 3: the next commit says 4, not the position 10
    assert [(x.partition, x.offset) for x in c1.commit(asynchronous=False)] == [(0, 4)]
    c2 = member(ns)
    c2.subscribe(["t"])
    settle([c1, c2], lambda: len(parts(c2)) == 3, "a 3/3 split")
    c1.unsubscribe()  # leaves the group at once: c2 takes everything
    assert c1.assignment() == [] and c1.memberid() is None
    rest = settle([c2], lambda: len(parts(c2)) == 6 and c2.lag()[TopicPartition("t", 0)] == 0, "c2 owns all")
    assert [m.offset() for m in rest if m.partition() == 0] == list(range(4, 10))  # from the stored commit
    c1.close()
    c2.close()
