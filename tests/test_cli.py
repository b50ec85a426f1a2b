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
    assert "no namespace 'sbtnosuchns'" in run("sbtnosuchns", "stat", "--count", "1").stderr


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


def shm_of(ns):
    return sorted(f for f in os.listdir("/dev/shm") if f == "shmb." + ns or f.startswith("shmb.%s." % ns))


def one_line_error(r):
    """A CLI error as users must see it: exit 1, one line on stderr, no traceback."""
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr


READ_ONLY = [("topics", "--list"), ("topics", "--describe"), ("topics", "--describe", "--topic", "t"),
             ("consumer-groups", "--list"), ("consumer-groups", "--describe", "--group", "g"),
             ("stat", "--count", "1"), ("console-consumer", "--topic", "t", "--timeout-ms", "100"),
             ("console-consumer", "--topic", "t", "--group", "g", "--timeout-ms", "100"),
             ("console-producer", "--topic", "t"), ("topics", "--delete", "--topic", "t")]


@pytest.mark.parametrize("argv", READ_ONLY, ids=lambda a: " ".join(a))
def test_read_only_tools_never_create_a_namespace(ns, argv):
    """A typo in the namespace: one line naming it and the existing ones
    (the close ones first), exit 1, nothing created in /dev/shm."""
    from broker.namespace import Namespace
    with Namespace(ns):  # exists: a typo of it must be offered
        typo = ns + "x"
        err = one_line_error(run(typo, *argv, stdin=""))
        assert err.startswith("Error: no namespace '%s' (existing: %s" % (typo, ns)), err
        err = one_line_error(run(ns, *argv[:1], "--namespace", typo, *argv[1:], stdin=""))
        assert err.startswith("Error: no namespace '%s'" % typo), err
    assert shm_of(typo) == [] and shm_of(ns) == ["shmb." + ns]


BAD_NAMES = ["bad.name", "-h", "x" * 49, "a b", ""]


@pytest.mark.parametrize("argv", [("topics", "--list"), ("topics", "--create", "--topic", "t"), ("destroy",),
                                  ("serve",), ("demo", "--records", "10"), ("console-producer", "--topic", "t"),
                                  ("console-consumer", "--topic", "t"), ("consumer-groups", "--list"),
                                  ("stat", "--count", "1")], ids=lambda a: a[0] + " " + " ".join(a[1:2]))
def test_bad_namespace_is_one_line_never_a_traceback(argv):
    before = set(os.listdir("/dev/shm"))
    for bad in BAD_NAMES:
        runs = []
        if argv[0] != "demo":  # the demo runs in a namespace of its own unless --namespace names one
            runs.append(run(bad, *argv, stdin=""))  # from $SHMBROKER_NAMESPACE
        if bad:  # an empty --namespace means the default
            runs.append(run("unused", *argv[:1], "--namespace=" + bad, *argv[1:], stdin=""))
        for r in runs:
            err = one_line_error(r)
            assert err.startswith("Error: bad namespace %r" % bad), err
    new = set(os.listdir("/dev/shm")) - before  # (other tests may run beside this one: only ours count)
    assert not [f for f in new if f.startswith(("shmb.unused", "shmb.default", "shmb.demo%d" % os.getpid()))]


def test_namespace_cannot_start_with_dash():
    """`--namespace=-h` reached `serve` (and the supervisor's command line) as a flag."""
    err = one_line_error(run("unused", "serve", "--namespace=-h"))
    assert "bad namespace '-h'" in err and "start with a letter, digit or '_'" in err


@pytest.mark.parametrize("tool", TOOLS)
def test_unknown_flag_prints_that_tools_usage(tool):
    r = run("unused", tool, *(("--topic", "t") if tool.startswith("console") else ()), "--no-such-flag")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("usage: shmbroker %s " % tool), r.stderr
    assert r.stderr.splitlines()[-1] == "shmbroker %s: error: unrecognized arguments: --no-such-flag" % tool


@pytest.mark.parametrize("argv", [(), ("topics",), ("stat",), ("demo",)])
def test_version(argv):
    from shm import __version__
    r = run("unused", *argv, "--version")
    assert r.returncode == 0 and r.stdout == "shmbroker %s\n" % __version__


@pytest.mark.parametrize("argv", [
    ("topics", "--create", "--topic", "t", "--config", "retention.bytes"),  # no '='
    ("topics", "--create", "--topic", "t", "--partitions", "0"),
    ("topics", "--create"),
    ("console-consumer", "--topic", "t", "--partition", "0", "--offset", "abc"),
    ("stat", "--interval", "-1"),
    ("demo", "--records", "0"),
    ("consumer-groups", "--describe"),
    ("consumer-groups", "--describe", "--group", "g", "--all-groups")], ids=lambda a: " ".join(a))
def test_usage_errors_show_usage_and_create_nothing(ns, argv):
    r = run(ns, *argv)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith("usage: shmbroker " + argv[0])
    assert shm_of(ns) == []


@pytest.mark.parametrize("config, words", [("cleanup.policy=compact", "log compaction"),
                                           ("retention.ms=-5", "retention.ms must be an integer"),
                                           ("retention.bytes=lots", "retention.bytes must be an integer"),
                                           ("no.such.key=1", "No such configuration property: 'no.such.key'")])
def test_topic_create_bad_config_is_one_line_and_creates_nothing(ns, config, words):
    err = one_line_error(run(ns, "topics", "--create", "--topic", "t", "--config", config))
    assert words in err, err
    assert shm_of(ns) == []


def test_console_tools_unknown_topic_and_partition(ns):
    assert run(ns, "topics", "--create", "--topic", "t", "--partitions", "2").returncode == 0
    err = one_line_error(run(ns, "console-consumer", "--topic", "nosuch", "--timeout-ms", "100"))
    assert "unknown topic 'nosuch'" in err
    err = one_line_error(run(ns, "console-producer", "--topic", "nosuch", stdin="a\n"))
    assert "unknown topic 'nosuch'" in err
    err = one_line_error(run(ns, "console-consumer", "--topic", "t", "--partition", "2", "--timeout-ms", "100"))
    assert "partition 2 does not exist" in err and "KafkaError{" not in err  # the words, not the error's frame
    err = one_line_error(run(ns, "consumer-groups", "--describe", "--group", "nosuch"))
    assert err == "Error: Consumer group 'nosuch' does not exist.\n", err


def test_consumer_groups_all_groups(ns):
    from broker import Consumer, Producer
    assert run(ns, "topics", "--create", "--topic", "t").returncode == 0
    with Producer({"shm.namespace": ns}) as p:
        for i in range(3):
            p.produce("t", b"v%d" % i, partition=0)
    for g, n in (("ga", 3), ("gb", 1)):  # ga consumed everything, gb one record
        with Consumer({"shm.namespace": ns, "group.id": g, "auto.offset.reset": "earliest",
                       "enable.auto.commit": False}) as c:
            c.subscribe(["t"])
            got = [c.poll(10) for _ in range(n)]
            assert [m.offset() for m in got] == list(range(n))
            c.commit(got[-1], asynchronous=False)
    r = run(ns, "consumer-groups", "--describe", "--all-groups")
    assert r.returncode == 0, r.stderr
    rows = [l.split()[:6] for l in r.stdout.splitlines() if l.startswith(("ga ", "gb "))]
    assert rows == [["ga", "t", "0", "3", "3", "0"], ["gb", "t", "0", "1", "3", "2"]]
    r = run(ns, "consumer-groups", "--reset-offsets", "--all-groups", "--topic", "t", "--to-earliest", "--execute")
    assert r.returncode == 0 and [l.split() for l in r.stdout.splitlines() if l.startswith(("ga ", "gb "))] == [
        ["ga", "t", "0", "0"], ["gb", "t", "0", "0"]], r.stdout + r.stderr
    r = run(ns, "consumer-groups", "--delete", "--all-groups")
    assert r.returncode == 0 and "consumer groups ('ga', 'gb') was successful" in r.stdout
    assert run(ns, "consumer-groups", "--list").stdout == ""


def _readme_example():
    import re
    readme = open(os.path.join(os.path.dirname(__file__), os.pardir, "README.md")).read()
    return re.search(r"```python\n(.*?)```", readme, re.S).group(1)


def test_readme_example_runs_twice_and_closes_its_clients(ns, tmp_path):
    """The README's example, as a stranger runs it: twice in a row from a
    directory outside the checkout; both runs work, and the group's
    consumer is closed (its commit happens on close), so the second run's
    group gets only the second run's record."""
    code = _readme_example()
    assert "shm://mybroker" in code
    script = tmp_path / "example.py"
    script.write_text(code.replace("shm://mybroker", "shm://" + ns))
    outs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        outs.append(r.stdout.splitlines())
    assert outs[0][0] == outs[1][0] == "b'hello'"
    group = [[l for l in out if l.endswith("b'hello'") and l != "b'hello'"] for out in outs]
    assert len(group[0]) == 1 and len(group[1]) == 1, outs  # run 2's group resumed from run 1's commit
    r = run(ns, "consumer-groups", "--describe", "--group", "workers")
    lag = [l.split()[5] for l in r.stdout.splitlines() if l.startswith("workers ")]
    assert lag and set(lag) == {"0"}, r.stdout  # every record committed: the consumer was closed
    r = run(ns, "destroy")
    assert r.returncode == 0 and shm_of(ns) == []


def test_demo_bad_strategy_fails_before_starting_anything(ns):
    err = one_line_error(run(ns, "demo", "--namespace", ns, "--strategy", "bogus", "--records", "100"))
    assert err.startswith("Error: partition.assignment.strategy: unknown assignor 'bogus'"), err
    assert shm_of(ns) == []
