"""The shmbroker CLI in subprocesses: topics, console-producer piped into
console-consumer, destroy, --help everywhere."""
import os
import subprocess
import sys

import pytest

TOOLS = ["topics", "console-producer", "console-consumer", "consumer-groups", "destroy", "demo", "stat", "serve"]


def run(ns, *args, stdin=None):
    env = dict(os.environ, SHMBROKER_NAMESPACE=ns)
    return subprocess.run([sys.executable, "-m", "broker", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=60)


def test_topics_and_console_pipe(ns):
    r = run(ns, "topics", "--create", "--topic", "t", "--partitions", "3", "--config", "retention.bytes=65536")
    assert r.returncode == 0 and r.stdout == "Created topic t.\n"
    assert run(ns, "topics", "--list").stdout == "t\n"
    d = run(ns, "topics", "--describe", "--topic", "t").stdout.splitlines()
    assert d[0].startswith("Topic: t\tTopicId: ") and "PartitionCount: 3\tReplicationFactor: 1" in d[0]
    assert d[1:] == ["\tTopic: t\tPartition: %d\tLeader: 0\tReplicas: 0\tIsr: 0" % p for p in range(3)]
    lines = ["k%d:v%d" % (i % 4, i) for i in range(50)]
    # console-producer | console-consumer, as the Kafka tools are used
    env = dict(os.environ, SHMBROKER_NAMESPACE=ns)
    prod = subprocess.Popen([sys.executable, "-m", "broker", "console-producer", "--topic", "t", "--property",
                             "parse.key=true", "--property", "key.separator=:"], stdin=subprocess.PIPE, env=env,
                            text=True)
    prod.communicate("\n".join(lines) + "\n", timeout=60)
    assert prod.returncode == 0
    r = run(ns, "console-consumer", "--topic", "t", "--from-beginning", "--max-messages", "50", "--property",
            "print.key=true", "--property", "key.separator=:")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert sorted(out) == sorted(lines)
    for k in range(4):  # one key's records keep their order (one partition)
        mine = [l for l in out if l.startswith("k%d:" % k)]
        assert mine == [l for l in lines if l.startswith("k%d:" % k)]
    assert "Processed a total of 50 messages" in r.stderr
    r = run(ns, "console-consumer", "--topic", "t", "--partition", "0", "--offset", "1", "--timeout-ms", "200")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == sum(
        1 for l in lines if __import__("broker").murmur2(l.split(":")[0].encode(), 3) == 0) - 1
    r = run(ns, "topics", "--create", "--topic", "bad name")
    assert r.returncode == 1 and "invalid topic name" in r.stderr
    assert run(ns, "topics", "--delete", "--topic", "t").returncode == 0
    assert run(ns, "topics", "--list").stdout == ""
    r = run(ns, "destroy")
    assert r.returncode == 0 and "Removed namespace %s" % ns in r.stdout
    assert not [f for f in os.listdir("/dev/shm") if f.startswith("shmb.%s" % ns)]


@pytest.mark.parametrize("tool", TOOLS)
def test_help(tool):
    r = subprocess.run([sys.executable, "-m", "broker", tool, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--namespace" in r.stdout


def test_stat_shows_partitions_and_members(ns):
    from broker import Producer
    from broker.namespace import Namespace
    from conftest import deadline_wait
    assert run(ns, "topics", "--create", "--topic", "s", "--partitions", "2").returncode == 0
    with Producer({"shm.namespace": ns}) as p, Namespace(ns) as n:  # the producer started the supervisor
        deadline_wait(n.supervisor_pid, 30, "the supervisor the producer started")
        sup = n.supervisor_pid()
        for i in range(7):
            p.produce("s", b"x", partition=1)
        r = run(ns, "stat", "--count", "2", "--interval", "0.05")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == "namespace %s  supervisor %d" % (ns, sup)
        rows = [l.split() for l in lines if l.startswith("s ")]
        assert [(x[1], x[2], x[3]) for x in rows[:2]] == [("0", "0", "0"), ("1", "0", "7")]
        mine = [l.split() for l in lines if l.split()[:3] == ["%d" % os.getpid(), "producer", "yes"]]
        assert mine and mine[0][3] in ("running", "sleeping")  # psutil's view of this process
    assert "does not exist" in run("sbtnosuchns", "stat", "--count", "1").stderr


def test_consumer_groups_tool(ns):
    from broker import Consumer
    from conftest import deadline_wait
    assert run(ns, "topics", "--create", "--topic", "t", "--partitions", "2").returncode == 0
    assert run(ns, "console-producer", "--topic", "t", "--partition", "0", stdin="a\nb\nc\n").returncode == 0
    r = run(ns, "console-consumer", "--topic", "t", "--group", "cg", "--from-beginning", "--max-messages", "3")
    assert r.returncode == 0 and r.stdout.splitlines() == ["a", "b", "c"], r.stderr
    assert run(ns, "consumer-groups", "--list").stdout == "cg\n"
    out = run(ns, "consumer-groups", "--describe", "--group", "cg").stdout.splitlines()
    assert "Consumer group 'cg' has no active members." in out
    head = out.index(next(l for l in out if l.startswith("GROUP")))
    assert out[head].split() == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                                 "CONSUMER-ID", "HOST", "CLIENT-ID", "PID", "ALIVE"]
    assert out[head + 1].split()[:6] == ["cg", "t", "0", "3", "3", "0"]  # console-consumer committed on exit
    # with a live member: its id, pid and liveness
    c = Consumer({"shm.namespace": ns, "group.id": "cg", "client.id": "mine"})
    c.subscribe(["t"])
    deadline_wait(lambda: c.poll(0.01) is None and len(c.assignment()) == 2, 20, "the assignment")
    rows = [l.split() for l in run(ns, "consumer-groups", "--describe", "--group", "cg").stdout.splitlines()
            if l.startswith("cg ")]
    assert [(r[2], r[6], r[8], r[9], r[10]) for r in rows] == [(str(p), c.memberid(), "mine", str(os.getpid()), "yes")
                                                               for p in range(2)]
    r = run(ns, "consumer-groups", "--reset-offsets", "--group", "cg", "--topic", "t", "--to-earliest", "--execute")
    assert r.returncode == 1 and "active members" in r.stderr
    c.close()
    r = run(ns, "consumer-groups", "--reset-offsets", "--group", "cg", "--topic", "t", "--to-offset", "1")
    assert "dry run" in r.stdout and run(ns, "consumer-groups", "--describe", "--group", "cg").stdout.count(" 3 ") >= 1
    r = run(ns, "consumer-groups", "--reset-offsets", "--group", "cg", "--topic", "t", "--to-offset", "1", "--execute")
    assert r.returncode == 0 and [l.split() for l in r.stdout.splitlines() if l.startswith("cg ")] == [
        ["cg", "t", "0", "1"], ["cg", "t", "1", "0"]]  # clamped to the partition's range
    stat = run(ns, "stat", "--count", "1").stdout.splitlines()
    assert ["cg", "t", "0", "1", "3", "2", "0", "-", "Empty"] in [l.split() for l in stat]  # LAPS-LOST 0
    r = run(ns, "console-consumer", "--topic", "t", "--group", "cg", "--max-messages", "2")
    assert r.stdout.splitlines() == ["b", "c"]  # from the reset offset
    r = run(ns, "consumer-groups", "--delete", "--group", "cg")
    assert r.returncode == 0 and "was successful" in r.stdout
    assert run(ns, "consumer-groups", "--list").stdout == ""


def test_demo_loses_nothing(ns, capsys):
    """The main job, small: a member killed midway, every record consumed."""
    from broker import demo
    r = demo.run(records=20000, rate=20000, namespace=ns, settle=0.1)
    out = capsys.readouterr().out
    assert r["missing"] == 0 and r["records"] == 20000
    assert "resume" in r and 0 < r["resume"][0] <= r["resume"][1] < 5000  # ms, measured
    assert "nothing lost: 20,000 of 20,000" in out and "SIGKILL consumer pid" in out
    assert not [f for f in os.listdir("/dev/shm") if f.startswith("shmb.%s" % ns)]  # it cleaned up
