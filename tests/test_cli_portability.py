"""`shmbroker check-portability`: findings as FILE:LINE lines, exit codes
0 (clean) / 1 (findings) / 2 (unreadable or unparsable file), one-line
errors; the tool runs in-process through broker.cli.main and once as the
console command."""
import os
import subprocess
import sys

import pytest

from broker.cli import main

PROGRAM = '''\
from broker import Producer, Consumer
import broker.pool
from shm import PartitionLog
conf = {"bootstrap.servers": "shm://demo", "shm.wait": "spin", "group.id": "g"}
p = Producer(conf)
p.send("t", b"x")
p.send_batch("t", [b"a"], 0)
with Consumer(conf) as c:
    for m in c:
        print(m.timestamp_ns(), c.lag())
conf["shm.overflow"] = "block"
import socket
s = socket.socket()
s.send(b"not a producer")
'''

CLEAN = '''\
from broker.kafka import Consumer, Producer
p = Producer({"bootstrap.servers": "localhost:9092", "partitioner": "consistent_random"})
p.produce("t", b"x", on_delivery=lambda err, msg: None)
p.flush()
c = Consumer({"bootstrap.servers": "localhost:9092", "group.id": "g", "auto.offset.reset": "earliest"})
c.subscribe(["t"])
msg = c.poll(1.0)
print(msg.timestamp(), c.get_watermark_offsets(msg))
'''


def check(tmp_path, name, text, capsys):
    path = tmp_path / name
    path.write_text(text)
    rc = main(["check-portability", str(path)])
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err.splitlines(), str(path)


def test_program_findings_with_lines(tmp_path, capsys):
    rc, out, err, path = check(tmp_path, "app.py", PROGRAM, capsys)
    assert rc == 1
    by_line = {}
    for line in out:
        f, n, msg = line.split(":", 2)
        assert f == path
        by_line.setdefault(int(n), []).append(msg)
    assert sorted(by_line) == [1, 2, 3, 4, 6, 7, 9, 10, 11]  # line 14: a socket's send is not flagged
    assert "consistent_random" in by_line[1][0]
    assert "broker.pool" in by_line[2][0] and "shm package" in by_line[3][0]
    assert sorted(m.split()[0] for m in by_line[4]) == ["'shm.wait'", "bootstrap.servers=shm://demo"]
    assert "Producer.send " in by_line[6][0] and "send_batch" in by_line[7][0]
    assert "iterating a Consumer" in by_line[9][0]
    assert sorted(m.split("(")[0].strip() for m in by_line[10]) == ["Consumer.lag", "Message.timestamp_ns"]
    assert "'shm.overflow'" in by_line[11][0]
    assert err == ["%d findings: these will not carry over to Kafka" % len(out)]


def test_clean_program_exits_0(tmp_path, capsys):
    rc, out, err, _ = check(tmp_path, "ok.py", CLEAN, capsys)
    assert (rc, out, err) == (0, [], [])


def test_properties_and_json_configs(tmp_path, capsys):
    rc, out, _, path = check(tmp_path, "producer.properties",
                             "# a producer\nbootstrap.servers=shm://ns1\nacks=all\nshm.block.timeout.ms = 500\n"
                             "linger.ms: 5\n", capsys)
    assert rc == 1
    assert [line.split(":")[1] for line in out] == ["2", "4"]
    assert "shm.block.timeout.ms" in out[1]
    rc, out, _, _ = check(tmp_path, "c.json", '{\n  "group.id": "g",\n  "shm.namespace": "x"\n}\n', capsys)
    assert rc == 1 and [line.split(":")[1] for line in out] == ["3"]
    rc, out, _, _ = check(tmp_path, "clean.properties", "bootstrap.servers=kafka1:9092\ngroup.id=g\n", capsys)
    assert (rc, out) == (0, [])


@pytest.mark.parametrize("name,text,what", [("bad.py", "x = (\n", "is not valid Python (line 1"),
                                            ("bad.json", "{not json", "is not a valid config"),
                                            ("list.json", "[1, 2]", "is not a valid config")])
def test_unparsable_files_exit_2_with_one_line(tmp_path, capsys, name, text, what):
    rc, out, err, _ = check(tmp_path, name, text, capsys)
    assert rc == 2 and out == [] and len(err) == 1
    assert err[0].startswith("Error: ") and what in err[0]


def test_missing_file_and_console_command(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), SHMBROKER_NAMESPACE="sbtport%d" % os.getpid())
    missing = str(tmp_path / "nope.py")
    r = subprocess.run([sys.executable, "-m", "broker", "check-portability", missing], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == ["Error: cannot read %s: No such file or directory" % missing]
    r = subprocess.run([sys.executable, "-m", "broker", "check-portability"], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "broker", "check-portability", missing.replace("nope.py", "x.conf")],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2
    assert not [f for f in os.listdir("/dev/shm") if f.startswith("shmb." + env["SHMBROKER_NAMESPACE"])]
