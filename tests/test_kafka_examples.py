"""Scripts written for confluent-kafka run unchanged on shmbroker (issue 11): small programs of our own, in the
style of confluent-kafka-python's examples (adminapi.py, producer.py, consumer.py, get_watermark_offsets.py,
context_manager_example.py) and using the same calls, run as separate processes with ``confluent_kafka``
aliased to broker.kafka (a sitecustomize.py, as a user would) and ``shm://NS`` as bootstrap.servers."""
import os
import selectors
import signal
import subprocess
import sys
import time

import pytest

SHIM = '''
import sys
import broker.kafka, broker.kafka.admin, broker.kafka.serialization, broker.kafka.error, broker.kafka._model
for name, mod in (("", broker.kafka), (".cimpl", broker.kafka), (".admin", broker.kafka.admin),
                  (".serialization", broker.kafka.serialization), (".error", broker.kafka.error),
                  ("._model", broker.kafka._model)):
    sys.modules["confluent_kafka" + name] = mod
'''

ADMIN = '''
import sys
from confluent_kafka import KafkaException, TopicPartition, TopicCollection, IsolationLevel, \\
    ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient, NewTopic, NewPartitions, ConfigResource, ConfigSource, \\
    AclBinding, ResourceType, ResourcePatternType, AclOperation, AclPermissionType, OffsetSpec


def each(futures, ok, bad):
    for key, fut in futures.items():
        try:
            fut.result()
            print(ok.format(key))
        except KafkaException as e:
            print(bad.format(key, e))


def main(bootstrap, op, args):
    a = AdminClient({"bootstrap.servers": bootstrap})
    if op == "create":
        each(a.create_topics([NewTopic(t, num_partitions=3, replication_factor=1) for t in args]),
             "created {}", "cannot create {}: {}")
    elif op == "grow":
        each(a.create_partitions([NewPartitions(args[0], int(args[1]))], validate_only=False),
             "grew {}", "cannot grow {}: {}")
    elif op == "delete":
        each(a.delete_topics(args, operation_timeout=30), "deleted {}", "cannot delete {}: {}")
    elif op == "list":
        md = a.list_topics(timeout=10)
        print("cluster {} via {}".format(md.cluster_id, md.orig_broker_name))
        for b in md.brokers.values():
            print("broker {} controller={}".format(b, b.id == md.controller_id))
        for t in sorted(md.topics.values(), key=lambda t: t.topic):
            print("topic {} partitions={} error={}".format(t.topic, len(t.partitions), t.error))
            for p in t.partitions.values():
                print("  {} leader={} replicas={} isrs={}".format(p.id, p.leader, p.replicas, p.isrs))
    elif op == "configs":
        for res, fut in a.describe_configs([ConfigResource(args[0], args[1])]).items():
            for c in fut.result().values():
                print("{}={} source={} read_only={}".format(c.name, c.value, ConfigSource(c.source),
                                                             c.is_read_only))
    elif op == "topics":
        for name, fut in a.describe_topics(TopicCollection(topic_names=args), request_timeout=10).items():
            try:
                t = fut.result()
                print("{} partitions={} leaders={}".format(t.name, len(t.partitions),
                                                           [p.leader.id for p in t.partitions]))
            except KafkaException as e:
                print("cannot describe {}: {}".format(name, e.args[0].str()))
    elif op == "cluster":
        c = a.describe_cluster(request_timeout=10).result()
        print("cluster {} controller={} nodes={}".format(c.cluster_id, c.controller.id, len(c.nodes)))
    elif op == "offsets":
        specs = {TopicPartition(args[0], 0): OffsetSpec.earliest(), TopicPartition(args[0], 1): OffsetSpec.latest()}
        got = a.list_offsets(specs, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=30)
        for tp, fut in sorted(got.items(), key=lambda kv: kv[0].partition):
            print("{} [{}] offset={}".format(tp.topic, tp.partition, fut.result().offset))
    elif op == "acl":
        b = AclBinding(ResourceType.TOPIC, args[0], ResourcePatternType.LITERAL, "User:u", "*",
                       AclOperation.READ, AclPermissionType.ALLOW)
        for res, fut in a.create_acls([b], request_timeout=10).items():
            try:
                fut.result()
                print("acl created")
            except KafkaException as e:
                print("acl failed: {}".format(e.args[0].code()))
    elif op == "groups":
        got = a.list_consumer_groups(request_timeout=10).result()
        for g in sorted(got.valid, key=lambda g: g.group_id):
            print("group {} simple={} state={}".format(g.group_id, g.is_simple_consumer_group, g.state))
    elif op == "set-offset":
        req = [ConsumerGroupTopicPartitions(args[0], [TopicPartition(args[1], 0, int(args[2]))])]
        for group, fut in a.alter_consumer_group_offsets(req).items():
            print("altered {}".format(fut.result().group_id))
        for group, fut in a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(args[0])]).items():
            for tp in fut.result().topic_partitions:
                print("{} {} [{}]: {}".format(group, tp.topic, tp.partition, tp.offset))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
'''

PRODUCER = '''
import sys
from confluent_kafka import Producer


def report(err, msg):
    if err:
        sys.stderr.write("failed: %s\\n" % err)
    else:
        sys.stderr.write("delivered %s [%d] @ %d\\n" % (msg.topic(), msg.partition(), msg.offset()))


p = Producer(**{"bootstrap.servers": sys.argv[1]})
for line in sys.stdin:
    try:
        p.produce(sys.argv[2], line.rstrip(), callback=report)
    except BufferError:
        sys.stderr.write("queue full (%d waiting)\\n" % len(p))
    p.poll(0)
sys.stderr.write("waiting for %d\\n" % len(p))
p.flush()
'''

CONSUMER = '''
import getopt
import json
import sys
from confluent_kafka import Consumer, KafkaException

opts, args = getopt.getopt(sys.argv[1:], "T:")
conf = {"bootstrap.servers": args[0], "group.id": args[1], "session.timeout.ms": 6000,
        "auto.offset.reset": "earliest", "enable.auto.offset.store": False}
for opt, val in opts:
    conf["stats_cb"] = lambda s: print("STATS", json.loads(s)["type"], flush=True)
    conf["statistics.interval.ms"] = int(val)
c = Consumer(conf)
c.subscribe(args[2:], on_assign=lambda consumer, parts: print("assigned", [(p.topic, p.partition) for p in parts],
                                                               flush=True))
try:
    while True:
        msg = c.poll(timeout=1.0)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        print(msg.value(), msg.offset(), flush=True)
        c.store_offsets(msg)
except KeyboardInterrupt:
    sys.stderr.write("aborted\\n")
finally:
    c.close()
'''

LAG = '''
import sys
import confluent_kafka

consumer = confluent_kafka.Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2]})
for topic in sys.argv[3:]:
    md = consumer.list_topics(topic, timeout=10)
    if md.topics[topic].error is not None:
        raise confluent_kafka.KafkaException(md.topics[topic].error)
    parts = [confluent_kafka.TopicPartition(topic, p) for p in md.topics[topic].partitions]
    for tp in consumer.committed(parts, timeout=10):
        lo, hi = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
        committed = "-" if tp.offset == confluent_kafka.OFFSET_INVALID else str(tp.offset)
        lag = hi - lo if tp.offset < 0 else hi - tp.offset
        print("%s [%d] %s %d" % (tp.topic, tp.partition, committed, lag))
consumer.close()
'''

WITH_BLOCKS = '''
import sys
from confluent_kafka import Producer, Consumer, KafkaError
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, topic = sys.argv[1], "with-blocks"
with AdminClient({"bootstrap.servers": bootstrap}) as admin:
    for name, fut in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).items():
        try:
            fut.result()
            print("created", name)
        except Exception as e:
            print("not created", name, e.args[0].code())
    admin.poll(timeout=0.1)
with Producer({"bootstrap.servers": bootstrap}) as producer:
    for i in range(3):
        producer.produce(topic, key="k%d" % i, value=("v%d" % i).encode(),
                         callback=lambda err, msg: print("delivered", msg.offset(), err))
        producer.poll(0)
with Consumer({"bootstrap.servers": bootstrap, "group.id": "wb", "auto.offset.reset": "earliest"}) as consumer:
    consumer.subscribe([topic])
    n = 0
    while n < 3:
        msg = consumer.poll(timeout=1.0)
        if msg is None or (msg.error() and msg.error().code() == KafkaError._PARTITION_EOF):
            continue
        print("consumed", msg.key().decode(), msg.value().decode(), msg.partition(), msg.offset())
        n += 1
print("done")
'''


@pytest.fixture
def scripts(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SHIM)
    for name, text in (("admin", ADMIN), ("producer", PRODUCER), ("consumer", CONSUMER), ("lag", LAG),
                       ("with_blocks", WITH_BLOCKS)):
        (tmp_path / (name + ".py")).write_text(text)
    env = dict(os.environ, PYTHONPATH=str(shim), PYTHONUNBUFFERED="1")
    return tmp_path, env


def run(scripts, name, *args, stdin=None):
    """Run one script to its end (deadline 60 s); its stdout and stderr, checking it exited 0."""
    where, env = scripts
    r = subprocess.run([sys.executable, str(where / (name + ".py"))] + list(args), input=stdin, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (name, args, r.stdout, r.stderr)
    return r.stdout, r.stderr


def test_admin_script_runs_unchanged(ns, scripts):
    bs = "shm://" + ns
    assert run(scripts, "admin", bs, "create", "a1", "a2")[0].splitlines() == ["created a1", "created a2"]
    out = run(scripts, "admin", bs, "create", "a1")[0]
    assert out.startswith("cannot create a1: ") and "already exists" in out
    assert run(scripts, "admin", bs, "grow", "a1", "5")[0] == "grew a1\n"
    out = run(scripts, "admin", bs, "list")[0].splitlines()
    assert out[0] == "cluster shm-%s via shm://%s" % (ns, ns) and out[1].endswith("controller=True")
    assert "topic a1 partitions=5 error=None" in out and "topic a2 partitions=3 error=None" in out
    assert "  0 leader=0 replicas=[0] isrs=[0]" in out
    cfg = run(scripts, "admin", bs, "configs", "TOPIC", "a1")[0].splitlines()
    assert "retention.ms=-1 source=ConfigSource.DEFAULT_CONFIG read_only=False" in cfg
    assert any(line.startswith("retention.bytes=") and line.endswith("read_only=True") for line in cfg)
    out = run(scripts, "admin", bs, "topics", "a2", "nosuch")[0].splitlines()
    assert out[0] == "a2 partitions=3 leaders=[0, 0, 0]" and len(out) == 2
    assert out[1].startswith("cannot describe nosuch: ") and "unknown topic 'nosuch'" in out[1]
    assert run(scripts, "admin", bs, "cluster")[0] == "cluster shm-%s controller=0 nodes=1\n" % ns
    assert run(scripts, "admin", bs, "acl", "a1")[0] == "acl failed: 54\n"  # SECURITY_DISABLED, as Kafka's
    run(scripts, "producer", bs, "a2", stdin="x\n")
    out = run(scripts, "admin", bs, "offsets", "a2")[0].splitlines()
    assert out[0] == "a2 [0] offset=0" and out[1] in ("a2 [1] offset=0", "a2 [1] offset=1")
    assert run(scripts, "admin", bs, "delete", "a2")[0] == "deleted a2\n"


def test_producer_and_lag_scripts_run_unchanged(ns, scripts):
    bs = "shm://" + ns
    err = run(scripts, "producer", bs, "lines", stdin="one\ntwo\nthree\n")[1].splitlines()
    # a record is in its partition when produce() returns: each report is served by the next poll(0)
    assert err == ["delivered lines [0] @ 0", "delivered lines [0] @ 1", "delivered lines [0] @ 2",
                   "waiting for 0"]
    assert run(scripts, "lag", bs, "g", "lines")[0] == "lines [0] - 3\n"
    assert run(scripts, "admin", bs, "set-offset", "g", "lines", "2")[0].splitlines() == \
        ["altered g", "g lines [0]: 2"]
    assert run(scripts, "lag", bs, "g", "lines")[0] == "lines [0] 2 1\n"
    out = run(scripts, "admin", bs, "groups")[0]
    assert out == "group g simple=False state=ConsumerGroupState.EMPTY\n"


def test_with_blocks_script_runs_unchanged(ns, scripts):
    out = run(scripts, "with_blocks", "shm://" + ns)[0].splitlines()
    assert out == ["created with-blocks"] + ["delivered %d None" % i for i in range(3)] + \
        ["consumed k%d v%d 0 %d" % (i, i, i) for i in range(3)] + ["done"]
    out = run(scripts, "with_blocks", "shm://" + ns)[0].splitlines()
    assert out[0] == "not created with-blocks 36"  # TOPIC_ALREADY_EXISTS; the group then has nothing new
    assert out[1:4] == ["delivered %d None" % i for i in (3, 4, 5)] and out[-1] == "done"


def _until_lines(p, want, timeout):
    """Read *p*'s stdout until a line containing each of *want* came (in any order); the lines read."""
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    lines, buf = [], b""
    deadline = time.monotonic() + timeout
    while not all(any(w in line for line in lines) for w in want):
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail("the consumer script printed %r, not %r" % (lines, want))
        if sel.select(left):
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                pytest.fail("the consumer script ended: %r %r" % (lines, p.stderr.read()))
            buf += chunk
            *done, buf = buf.split(b"\n")
            lines += [d.decode() for d in done]
    sel.close()
    return lines


def test_consumer_script_runs_until_ctrl_c(ns, scripts):
    bs = "shm://" + ns
    run(scripts, "producer", bs, "events", stdin="a\nb\n")
    where, env = scripts
    p = subprocess.Popen([sys.executable, str(where / "consumer.py"), "-T", "100", bs, "grp", "events"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        lines = _until_lines(p, ["assigned", "b'a' 0", "b'b' 1", "STATS consumer"], 30)
        assert lines[0] == "assigned [('events', 0)]"
        p.send_signal(signal.SIGINT)  # the script's KeyboardInterrupt path: close() commits the stored offsets
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0 and err.decode().endswith("aborted\n"), err
    assert run(scripts, "lag", bs, "grp", "events")[0] == "events [0] 2 0\n"
