"""Crash matrix for consumer groups, with real processes: a member
SIGKILLed (each assignor), a producer killed mid-append inside a group
workload, a member SIGSTOPped past max.poll.interval.ms, the supervisor
SIGKILLed during traffic, a static member killed and restarted, and a
bounded chaos run.

Children log what they consume to their own append-only files (a killed
child cannot corrupt anyone else's state), synchronise with the parent
through files and the group's shared state, and every wait has a deadline.
"""
import os
import random
import signal
import time

import pytest

from broker import Consumer, KafkaException, Producer
from broker import groups as G
from broker.admin import AdminClient, NewTopic
from broker.namespace import Namespace
from broker.procs import fork
from shm.log import CRASH_ENV

from conftest import deadline_wait, wait_child

PARTS = 6


def conf(ns, **kw):
    c = {"shm.namespace": ns}
    c.update(kw)
    return c


def consumer_main(ns, out, stop, extra, commit_every=5):
    """A group member: log 'M partition offset' per message and
    'C partition:offset ...' after each synchronous commit, until *stop*
    exists; an exception is logged as 'E ...' and exits non-zero."""
    f = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    c = Consumer(conf(ns, **{"group.id": "g", "auto.offset.reset": "earliest", "enable.auto.commit": False,
                             **extra}))
    c.subscribe(["t"], on_assign=lambda cons, ps: os.write(f, ("A %s\n" % " ".join(
        str(p.partition) for p in ps)).encode()))
    n = 0
    try:
        while not os.path.exists(stop):
            m = c.poll(0.05)
            if m is None:
                continue
            if m.error() is not None:
                os.write(f, ("V %s\n" % m.error().code()).encode())
                continue
            os.write(f, b"M %d %d\n" % (m.partition(), m.offset()))
            n += 1
            if n % commit_every == 0:
                try:
                    done = c.commit(asynchronous=False)
                except KafkaException as exc:
                    os.write(f, ("F %s\n" % exc.args[0].code()).encode())
                    continue
                os.write(f, ("C %s\n" % " ".join("%d:%d" % (tp.partition, tp.offset) for tp in done)).encode())
        c.close()
    except BaseException as exc:
        os.write(f, ("E %r\n" % (exc,)).encode())
        raise


def read_log(path):
    """(messages [(p, o)], commits {p: highest committed}, errors, fences)."""
    msgs, commits, errors, fences = [], {}, [], []
    if not os.path.exists(path):
        return msgs, commits, errors, fences
    with open(path) as f:
        for line in f.read().splitlines():
            if not line:
                continue
            kind, _, rest = line.partition(" ")
            try:
                if kind == "M":
                    p, o = rest.split()
                    msgs.append((int(p), int(o)))
                elif kind == "C":
                    for item in rest.split():
                        p, o = item.split(":")
                        commits[int(p)] = max(commits.get(int(p), 0), int(o))
                elif kind == "E":
                    errors.append(rest)
                elif kind == "F":
                    fences.append(rest)
            except ValueError:
                pass  # the line a SIGKILL cut short
    return msgs, commits, errors, fences


def assignment(ns):
    """{pid: set(partitions)} of the group's active members, as the supervisor assigned."""
    with Namespace(ns, create=False) as n:
        gs = G.Groups(n)
        try:
            gidx = gs.group_index("g", create=False)
            if gidx is None:
                return {}
            members, _, _ = G.describe_group(gs, gidx)
            return {m["pid"]: {p for _, p in m["assigned"]} for m in members if m["state"] == "Stable"}
        finally:
            gs.close()


def produce(ns, start, n):
    with Producer(conf(ns)) as p:
        for i in range(start, start + n):
            p.produce("t", b"%d" % i, partition=i % PARTS)


def all_consumed(paths, total):
    want = {(p, o) for p in range(PARTS) for o in range(total // PARTS)}
    have = set()
    for path in paths:
        have.update(read_log(path)[0])
    return want <= have


def live_supervisor(ns):
    """The pid of the namespace's running supervisor (checked by its command
    line, so a stale pid is never signalled), or None."""
    with Namespace(ns) as n:
        pid = n.supervisor_pid()
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
    except (OSError, TypeError):
        return None
    return pid if b"serve" in argv and ns.encode() in argv and os.path.exists("/proc/%d" % pid) else None


@pytest.fixture
def topic(ns):
    with AdminClient(conf(ns)) as a:
        a.create_topics([NewTopic("t", PARTS)])["t"].result()
    return "t"


def start_members(ns, tmp_path, kids, count, extra):
    stop = str(tmp_path / "stop")
    paths = [str(tmp_path / ("m%d" % i)) for i in range(count)]
    for path in paths:
        kids.append(fork(consumer_main, ns, path, stop, extra))
    return paths, stop


def finish(kids, stop, survivors):
    open(stop, "w").close()
    for pid in survivors:
        st = wait_child(pid, timeout=30)
        assert os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0, st


def check_no_recommitted_reads(paths, victim_path):
    """Records read twice are only the dead member's uncommitted tail."""
    counts = {}
    for path in paths:
        for m in set(read_log(path)[0]):
            counts[m] = counts.get(m, 0) + 1
    _, vcommits, _, _ = read_log(victim_path)
    dups = [m for m, k in counts.items() if k > 1]
    for p, o in dups:
        assert o >= vcommits.get(p, 0), "offset %d of partition %d was committed and read again" % (o, p)
    return len(dups)


@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_sigkill_of_a_member_reassigns_at_once(ns, topic, tmp_path, kids, strategy):
    produce(ns, 0, 600)
    paths, stop = start_members(ns, tmp_path, kids, 3, {"partition.assignment.strategy": strategy})
    deadline_wait(lambda: len(assignment(ns)) == 3 and sum(len(v) for v in assignment(ns).values()) == PARTS,
                  30, "three members sharing six partitions")
    deadline_wait(lambda: all(read_log(p)[1] for p in paths), 30, "every member to commit something")
    victim = kids[0]
    os.kill(victim, signal.SIGKILL)
    wait_child(victim)
    t0 = time.monotonic()
    deadline_wait(lambda: set(assignment(ns)) == set(kids[1:]) and
                  set().union(*assignment(ns).values()) == set(range(PARTS)), 10, "the survivors to own all six")
    took = time.monotonic() - t0
    produce(ns, 600, 600)
    deadline_wait(lambda: all_consumed(paths, 1200), 60, "every record consumed")
    finish(kids, stop, kids[1:])
    for path in paths[1:]:
        assert read_log(path)[2] == []
    check_no_recommitted_reads(paths, paths[0])
    assert took < 5, took


def test_producer_killed_mid_append_inside_a_group_workload(ns, topic, tmp_path, kids):
    paths, stop = start_members(ns, tmp_path, kids, 2, {})
    deadline_wait(lambda: sum(len(v) for v in assignment(ns).values()) == PARTS, 30, "the group to form")

    def doomed():
        os.environ[CRASH_ENV] = "before_commit:1"  # SIGKILL inside its first append
        produce(ns, 0, 1)
    pid = fork(doomed)
    st = wait_child(pid)
    assert os.WIFSIGNALED(st) and os.WTERMSIG(st) == signal.SIGKILL
    produce(ns, 1, 599)  # offsets after the dead claim: readers must pass it
    # record 0 (partition 0, offset 0) died half-written: everything else arrives
    want = {(p, o) for p in range(PARTS) for o in range(100)} - {(0, 0)}
    deadline_wait(lambda: want <= set().union(*(set(read_log(p)[0]) for p in paths)), 30, "the other records")
    finish(kids, stop, kids)
    assert (0, 0) not in set().union(*(set(read_log(p)[0]) for p in paths))
    with Namespace(ns) as n:
        log = n.open_partition(n.topic("t"), 0)
        assert log.stats()["tombstones"] == 1
        log.close()


def test_sigstopped_member_is_replaced_and_its_commits_refused(ns, topic, tmp_path, kids):
    produce(ns, 0, 60)
    stop = str(tmp_path / "stop")
    go, out = str(tmp_path / "go"), str(tmp_path / "held")

    def holder():
        f = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        c = Consumer(conf(ns, **{"group.id": "g", "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                 "max.poll.interval.ms": 500, "session.timeout.ms": 500}))
        c.subscribe(["t"], on_lost=lambda cons, ps: os.write(f, b"lost %d\n" % len(ps)))
        m = None
        while m is None or m.error() is not None:
            m = c.poll(0.1)
        os.write(f, b"holding %d %d\n" % (m.partition(), m.offset()))
        while not os.path.exists(go):  # "processing", out of poll(): stopped here
            time.sleep(0.001)
        try:
            c.commit(m, asynchronous=False)
            os.write(f, b"committed\n")
        except KafkaException as exc:
            os.write(f, b"refused %d\n" % exc.args[0].code())
        ev = c.poll(5)  # the next poll reports the loss and rejoins
        os.write(f, b"event %s\n" % (str(ev.error().code()).encode() if ev is not None and ev.error() else b"none"))
        c.close()
    kids.append(fork(holder))
    deadline_wait(lambda: os.path.exists(out) and b"holding" in open(out, "rb").read(), 30, "the holder")
    held_p = int(open(out).read().split()[1])
    os.kill(kids[0], signal.SIGSTOP)
    kids.append(fork(consumer_main, ns, str(tmp_path / "other"), stop, {}))
    deadline_wait(lambda: assignment(ns).get(kids[1]) == set(range(PARTS)), 30,
                  "the other member to own everything after max.poll.interval.ms")
    os.kill(kids[0], signal.SIGCONT)
    open(go, "w").close()
    deadline_wait(lambda: b"event" in open(out, "rb").read(), 30, "the holder's verdict")
    lines = open(out).read().splitlines()
    assert lines[1] == "refused %d" % G.KafkaError.ILLEGAL_GENERATION, lines
    assert lines[2] == "lost %d" % PARTS, lines  # on_lost, inside the next poll, with what it had
    assert lines[3] == "event %d" % G.KafkaError._MAX_POLL_EXCEEDED, lines
    finish(kids, stop, kids)
    # the refused commit changed nothing: what the group committed came from the other member
    msgs, commits, _, _ = read_log(str(tmp_path / "other"))
    assert all(o != 0 for p, o in commits.items() if p == held_p) or held_p not in commits


def test_supervisor_killed_during_traffic(ns, topic, tmp_path, kids):
    paths, stop = start_members(ns, tmp_path, kids, 2, {})
    deadline_wait(lambda: sum(len(v) for v in assignment(ns).values()) == PARTS, 30, "the group to form")
    produce(ns, 0, 300)
    with Namespace(ns) as n:
        old = live_supervisor(ns)
        os.kill(old, signal.SIGKILL)
        # a member notices (it checks twice a second) and starts a new one
        deadline_wait(lambda: n.supervisor_pid() not in (0, old) and os.path.exists("/proc/%d" % n.supervisor_pid()),
                      30, "a new supervisor")
    produce(ns, 300, 300)
    victim = kids[0]
    os.kill(victim, signal.SIGKILL)  # the new supervisor rebalances
    wait_child(victim)
    deadline_wait(lambda: assignment(ns).get(kids[1]) == set(range(PARTS)), 10, "the survivor to own all six")
    produce(ns, 600, 600)
    deadline_wait(lambda: all_consumed(paths, 1200), 60, "every record consumed")
    finish(kids, stop, kids[1:])
    check_no_recommitted_reads(paths, paths[0])


def test_supervisor_killed_between_a_new_list_and_its_epoch(ns, topic, tmp_path, kids, monkeypatch):
    """The supervisor dies after rewriting a member's assignment and before
    telling it: its successor must tell it, or the hand-over never ends."""
    flag = tmp_path / "crash"
    flag.touch()
    monkeypatch.setenv("SHMBROKER_SUP_CRASH", "after_list:%s" % flag)  # inherited by the supervisor
    paths, stop = start_members(ns, tmp_path, kids, 1, {})
    deadline_wait(lambda: assignment(ns).get(kids[0]) == set(range(PARTS)), 30, "the first member to own all")
    old = live_supervisor(ns)
    (tmp_path / "b").mkdir()
    paths += start_members(ns, tmp_path / "b", kids, 1, {})[0]  # the first member's list is rewritten
    deadline_wait(lambda: not flag.exists(), 30, "the supervisor to die at its re-tell")
    deadline_wait(lambda: live_supervisor(ns) not in (None, old), 30, "a new supervisor")
    deadline_wait(lambda: sorted(len(v) for v in assignment(ns).values()) == [3, 3], 30, "a 3/3 split")
    produce(ns, 0, 120)
    deadline_wait(lambda: all_consumed(paths, 120), 30, "every record consumed")
    open(str(tmp_path / "b" / "stop"), "w").close()
    finish(kids, stop, kids)


def test_static_member_killed_and_restarted_keeps_its_partitions(ns, topic, tmp_path, kids):
    stop = str(tmp_path / "stop")
    static = {"group.instance.id": "w1", "session.timeout.ms": 30000}
    kids.append(fork(consumer_main, ns, str(tmp_path / "s1"), stop, static))
    kids.append(fork(consumer_main, ns, str(tmp_path / "d"), stop, {}))
    deadline_wait(lambda: len(assignment(ns)) == 2 and sum(len(v) for v in assignment(ns).values()) == PARTS,
                  30, "two members")
    mine = assignment(ns)[kids[0]]
    os.kill(kids[0], signal.SIGKILL)
    wait_child(kids[0])
    with Namespace(ns) as n:  # the supervisor saw the death (its slot went DOWN) ...
        gs = G.Groups(n)
        deadline_wait(lambda: any(s == G.DOWN for _, _, s in gs.slots()), 10, "the static slot to go down")
        gs.close()
    assert assignment(ns)[kids[1]] == set(range(PARTS)) - mine  # ... and gave nothing away
    kids.append(fork(consumer_main, ns, str(tmp_path / "s1b"), stop, static))
    deadline_wait(lambda: assignment(ns).get(kids[2]) == mine, 30, "w1's partitions back")
    finish(kids, stop, kids[1:])


def test_chaos(ns, topic, tmp_path, kids, request):
    """Random SIGKILL/SIGSTOP of producers, consumers and the supervisor
    while producing; every record is consumed at least once, in order per
    partition within each member's run, and nobody hangs."""
    seconds = float(os.environ.get("SHMBROKER_CHAOS_SECONDS", "50"))
    rng = random.Random(int(os.environ.get("SHMBROKER_CHAOS_SEED", "7")))
    stop = str(tmp_path / "stop")
    paths = []

    def new_member():
        path = str(tmp_path / ("m%d" % len(paths)))
        paths.append(path)
        pid = fork(consumer_main, ns, path, stop, {"session.timeout.ms": 1000, "max.poll.interval.ms": 1000})
        kids.append(pid)
        return pid

    def producer_main(start, n):
        with Producer(conf(ns)) as p:
            for i in range(start, start + n):
                p.produce("t", b"%d" % i, partition=i % PARTS)
                if i % 50 == 0:
                    time.sleep(0.001)

    members = [new_member() for _ in range(3)]
    deadline_wait(lambda: sum(len(v) for v in assignment(ns).values()) == PARTS, 30, "the group to form")
    produced = 0
    per = 600
    end = time.monotonic() + seconds
    events = []
    while time.monotonic() < end:
        pp = fork(producer_main, produced, per)
        kids.append(pp)
        action = rng.choice(["kill_member", "stop_member", "kill_producer", "kill_supervisor", "none"])
        time.sleep(rng.uniform(0.01, 0.1))  # chaos timing, not synchronisation
        if action == "kill_member" and members:
            victim = members.pop(rng.randrange(len(members)))
            os.kill(victim, signal.SIGKILL)
            wait_child(victim)
            members.append(new_member())
        elif action == "stop_member" and members:
            victim = rng.choice(members)
            os.kill(victim, signal.SIGSTOP)
            time.sleep(rng.uniform(0.05, 1.5))
            os.kill(victim, signal.SIGCONT)
        elif action == "kill_supervisor":
            sup = live_supervisor(ns)
            if sup:
                os.kill(sup, signal.SIGKILL)
        elif action == "kill_producer":
            os.kill(pp, signal.SIGKILL)
        events.append(action)
        st = wait_child(pp, timeout=60)
        if os.WIFSIGNALED(st):
            # the batch is produced again by a fresh producer (at-least-once production);
            # what the dead one half-wrote is tombstoned by the supervisor
            produce_rest = fork(producer_main, produced, per)
            kids.append(produce_rest)
            assert os.WIFEXITED(wait_child(produce_rest, timeout=60))
        produced += per
    # every value produced (by value: a re-produced record has a new offset) is consumed
    with Namespace(ns) as n:
        logs = [n.open_partition(n.topic("t"), p) for p in range(PARTS)]
        offsets = {}
        for p, log in enumerate(logs):
            lo, hi = log.watermarks()
            o = lo
            while o < hi:
                recs, o, _ = log.read_batch(o, 1024)
                for r in recs:
                    offsets.setdefault((p, r.offset), int(r.value))
            log.close()
    assert set(offsets.values()) == set(range(produced)), "records missing from the log"
    want = set(offsets)
    deadline_wait(lambda: want <= set().union(*(set(read_log(p)[0]) for p in paths)), 60,
                  "every record consumed after the chaos (%s)" % events)
    finish(kids, stop, members)
    for path in paths:
        assert read_log(path)[2] == [], read_log(path)[2]
        last = {}
        with open(path) as f:
            for line in f.read().splitlines():
                if line.startswith("A "):  # a new assignment: positions restart from commits
                    last = {}
                elif line.startswith("M ") and len(line.split()) == 3:
                    p, o = map(int, line.split()[1:])
                    assert o > last.get(p, -1), "%s read partition %d backwards (%d after %d)" % (
                        path, p, o, last.get(p))
                    last[p] = o
    print("chaos: %d rounds %s, %d records" % (len(events), {e: events.count(e) for e in set(events)}, produced))
