"""broker.aio: confluent_kafka.aio's AIOProducer and AIOConsumer, waking the event loop from the partition
futexes.  Records come from other processes (forked children that wait for the parent's go)."""
import asyncio
import os
import resource
import subprocess
import sys
import time

import pytest

from conftest import CTX, conf, make_topic

from broker.aio import AIOConsumer, AIOProducer
from broker.aio import _waker
from broker.kafka import OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME, Consumer, KafkaException, Producer, TopicPartition

DEADLINE = 30.0


async def until(pred, what, timeout=DEADLINE):
    """Wait (on the loop) until *pred()* holds; fail after *timeout*."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        await asyncio.sleep(0.001)


MODE = "auto"


@pytest.fixture(autouse=True, params=["io_uring", "thread"])
def waker_mode(request):
    """Every test with each way a wait reaches the loop: io_uring futex waits (where the kernel has them) and
    the waker thread."""
    global MODE
    if request.param == "io_uring" and not _waker.ring_available():
        pytest.skip("this kernel gives no io_uring futex waits (Linux >= 6.7, io_uring allowed)")
    MODE = request.param
    yield MODE
    MODE = "auto"


def thread_regs():
    w = _waker.waker()
    return sum(len(t._waits) for t in w._threads)


def ring_regs():
    return sum(len(b._ring._pending) for b in list(_waker._bells.values()) if b._ring is not None)


def waiting_regs():
    """How many waits the process holds (waker threads and loops' rings), checking each went where MODE says."""
    t, r = thread_regs(), ring_regs()
    assert not (t if MODE == "io_uring" else r), "waits on the %s path with shm.aio.waker=%s" % (
        "thread" if t else "io_uring", MODE)
    return t + r


def _produce_when(ns, topic, go, records, pace=0.0):
    """Child: once *go* is set, produce *records* ((partition, value) pairs)."""
    assert go.wait(DEADLINE), "the parent never said go"
    with Producer(conf(ns)) as p:
        for partition, value in records:
            p.produce(topic, value, partition=partition)
            if pace:
                time.sleep(pace)  # pacing the stream, not synchronisation
    return len(records)


def _member(ns, topic, join, leave):
    """Child: join group g once *join* is set, poll until it has partitions and *leave* is set, report them."""
    assert join.wait(DEADLINE), "the parent never said join"
    end = time.monotonic() + DEADLINE
    with Consumer(conf(ns, **{"group.id": "g"})) as c:
        c.subscribe([topic])
        while not (leave.is_set() and c.assignment()):
            c.poll(0.02)
            assert time.monotonic() < end, "never got partitions, or never told to leave"
        return sorted(tp.partition for tp in c.assignment())


def cconf(ns, **kw):
    c = conf(ns, **{"group.id": "g", "shm.aio.waker": MODE})
    c.update(kw)
    return c


def test_producer_future_carries_the_delivered_message(ns):
    make_topic(ns, "t", 2)
    reports = []

    async def on_delivery(err, msg):
        await asyncio.sleep(0)  # a coroutine callback that suspends: finished before produce() returns
        reports.append((err, msg.offset()))

    async def main():
        async with AIOProducer(conf(ns)) as p:
            f1 = await p.produce("t", value=b"v1", key=b"k1", partition=1, timestamp=1234567,
                                 headers=[("h", b"x"), ("h", b"y")], on_delivery=on_delivery)
            f2 = await p.produce("t", value="v2", key="k2", partition=1)
            bad = await p.produce("t", value=b"v", partition=7)
            assert isinstance(f1, asyncio.Future) and f1.done()
            m1, m2 = await f1, await f2
            with pytest.raises(KafkaException):
                await bad
            md = await p.list_topics("t")
            assert await p.flush() == 0
            return m1, m2, md

    m1, m2, md = asyncio.run(main())
    assert (m1.topic(), m1.partition(), m1.offset(), m1.key(), m1.value()) == ("t", 1, 0, b"k1", b"v1")
    assert m1.headers() == [("h", b"x"), ("h", b"y")]
    assert m1.timestamp() == (TIMESTAMP_CREATE_TIME, 1234567)
    assert m1.error() is None
    assert (m2.partition(), m2.offset(), m2.key(), m2.value()) == (1, 1, b"k2", b"v2")
    assert reports == [(None, 0)]
    assert len(md.topics["t"].partitions) == 2
    with Consumer(cconf(ns, **{"auto.offset.reset": "earliest"})) as c:  # what the futures said is there
        c.assign([TopicPartition("t", 1, 0)])
        got = c.poll(5)
    assert (got.offset(), got.key(), got.value(), got.headers()) == (0, b"k1", b"v1", [("h", b"x"), ("h", b"y")])


def test_poll_is_woken_by_a_record_from_another_process(ns, children):
    make_topic(ns, "t", 1)
    go = CTX.Event()
    children.start(_produce_when, ns, "t", go, [(0, b"hello")])

    async def main():
        async with AIOConsumer(cconf(ns)) as c:
            await c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
            task = asyncio.ensure_future(c.poll(DEADLINE))
            await until(lambda: waiting_regs() == 1, "the poll to wait on the partition")
            bell = _waker.bell_of(asyncio.get_running_loop())
            watched = bell._rfd in asyncio.get_running_loop()._selector.get_map()
            t0 = time.monotonic()
            go.set()
            msg = await task
            took = time.monotonic() - t0
            after = bell._rfd in asyncio.get_running_loop()._selector.get_map()
            return msg, took, watched, after

    msg, took, watched, after = asyncio.run(main())
    assert (msg.offset(), msg.value()) == (0, b"hello")
    assert took < 10
    assert watched and not after, "the loop watches the eventfd only while a coroutine waits"
    assert children.results(DEADLINE) == [1]


def test_many_consumers_in_one_loop(ns, children):
    n = 12
    make_topic(ns, "t", n)
    go = CTX.Event()
    children.start(_produce_when, ns, "t", go, [(i, b"r%d" % i) for i in reversed(range(n))])

    async def main():
        cs = [AIOConsumer(cconf(ns)) for _ in range(n)]
        try:
            for i, c in enumerate(cs):
                await c.assign([TopicPartition("t", i, OFFSET_BEGINNING)])
            tasks = [asyncio.ensure_future(c.poll(DEADLINE)) for c in cs]
            await until(lambda: waiting_regs() == n, "every consumer to wait")
            go.set()
            return await asyncio.gather(*tasks)
        finally:
            for c in cs:
                await c.close()

    msgs = asyncio.run(main())
    assert [(m.partition(), m.value()) for m in msgs] == [(i, b"r%d" % i) for i in range(n)]
    assert children.results(DEADLINE) == [n]


def test_cancelled_poll_leaves_the_record_for_the_next(ns, children):
    make_topic(ns, "t", 1)
    go = CTX.Event()
    children.start(_produce_when, ns, "t", go, [(0, b"first")])

    async def main():
        async with AIOConsumer(cconf(ns)) as c:
            await c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(c.poll(5), 0.01)
            assert waiting_regs() == 0, "a cancelled poll leaves no wait behind"
            go.set()
            return await c.poll(DEADLINE)

    msg = asyncio.run(main())
    assert (msg.offset(), msg.value()) == (0, b"first")
    children.results(DEADLINE)


def test_cancellations_racing_a_stream_lose_nothing(ns, children):
    make_topic(ns, "t", 1)
    go, go2 = CTX.Event(), CTX.Event()
    n = 300
    # the second half waits until a poll was cancelled with nothing there: at least one cancellation is
    # certain, whatever the machine's speed; the rest race the stream as they come
    children.start(_produce_when, ns, "t", go, [(0, b"%d" % i) for i in range(n // 2)], 0.0002)
    children.start(_produce_when, ns, "t", go2, [(0, b"%d" % i) for i in range(n // 2, n)], 0.0002)

    async def main():
        async with AIOConsumer(cconf(ns)) as c:
            await c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
            go.set()
            got, cancels = [], 0
            end = time.monotonic() + DEADLINE
            while len(got) < n:
                assert time.monotonic() < end, "only %d of %d records came" % (len(got), n)
                try:
                    msg = await asyncio.wait_for(c.poll(5), 0.0005)
                except asyncio.TimeoutError:
                    cancels += 1
                    if len(got) == n // 2:
                        go2.set()
                    continue
                got.append(int(msg.value()))
            assert await c.poll(0) is None
            return got, cancels

    got, cancels = asyncio.run(main())
    assert got == list(range(n)), "every record exactly once, in order"
    assert cancels > 0, "the stream never raced a cancellation"
    children.results(DEADLINE)


def test_group_rebalance_while_awaiting_with_coroutine_callbacks(ns, children):
    make_topic(ns, "t", 2)
    join, leave = CTX.Event(), CTX.Event()
    children.start(_member, ns, "t", join, leave)
    events = []

    async def main():
        c = AIOConsumer(cconf(ns, **{"partition.assignment.strategy": "range"}))

        async def on_assign(consumer, partitions):
            assert consumer is c
            await asyncio.sleep(0)  # suspends: a task finishes it before poll() returns
            events.append(("assign", sorted(p.partition for p in partitions), len(await consumer.assignment())))

        def on_revoke(consumer, partitions):  # a plain function is fine too
            events.append(("revoke", sorted(p.partition for p in partitions)))

        async with c:
            await c.subscribe(["t"], on_assign=on_assign, on_revoke=on_revoke)
            stop = asyncio.Event()

            async def poller():
                while not stop.is_set():
                    assert await c.poll(0.2) is None  # nothing is produced: callbacks run inside the awaits

            task = asyncio.ensure_future(poller())
            await until(lambda: len(await_assignment(c)) == 2, "the first assignment")
            join.set()
            await until(lambda: len(await_assignment(c)) == 1, "the rebalance to the second member")
            leave.set()
            await until(lambda: len(await_assignment(c)) == 2, "the rebalance after it left")
            stop.set()
            await task

    asyncio.run(main())
    other = children.results(DEADLINE)[0]
    assert len(other) == 1
    assigns = [e for e in events if e[0] == "assign"]
    assert assigns[0][1] == [0, 1] and assigns[-1][1] == [0, 1]
    assert any(e[1] == [x for x in (0, 1) if x not in other] for e in assigns[1:-1]), events
    assert ("revoke", [0, 1]) in events


def await_assignment(c):
    """The AIOConsumer's assignment, read without a coroutine (for until())."""
    return c._c.assignment()


def test_close_while_awaiting_ends_the_await(ns):
    make_topic(ns, "t", 1)

    async def main():
        c = AIOConsumer(cconf(ns))
        await c.subscribe(["t"])
        task = asyncio.ensure_future(c.poll(DEADLINE))
        it = asyncio.ensure_future(_collect(c))
        await until(lambda: waiting_regs() == 2, "both awaits to wait")
        t0 = time.monotonic()
        await c.close()
        res, rest = await task, await it
        took = time.monotonic() - t0
        with pytest.raises(RuntimeError):
            await c.poll(0)
        return res, rest, took

    res, rest, took = asyncio.run(main())
    assert res is None and rest == []
    assert took < 5
    assert waiting_regs() == 0


async def _collect(c):
    return [m async for m in c]


def test_async_for_and_async_with(ns, children):
    make_topic(ns, "t", 1)
    go = CTX.Event()
    children.start(_produce_when, ns, "t", go, [(0, b"a"), (0, b""), (0, None), (0, b"end")])

    async def main():
        got = []
        async with AIOConsumer(cconf(ns, **{"auto.offset.reset": "earliest"})) as c:
            await c.subscribe(["t"])
            go.set()
            async for msg in c:
                got.append(msg.value())
                if msg.value() == b"end":
                    break
            await c.commit(asynchronous=False)
            committed = await c.committed([TopicPartition("t", 0)])
        return got, committed[0].offset

    got, committed = asyncio.run(main())
    assert got == [b"a", b"", None, b"end"], "empty and null values are records too"
    assert committed == 4
    children.results(DEADLINE)


def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def test_an_idle_await_uses_no_cpu(ns):
    make_topic(ns, "t", 4)

    async def main():
        async with AIOConsumer(cconf(ns)) as c:
            await c.subscribe(["t"])
            while len(await c.assignment()) < 4:
                assert await c.poll(0.1) is None
            t0, c0 = time.monotonic(), _cpu()
            assert await c.poll(1.0) is None
            return time.monotonic() - t0, _cpu() - c0

    took, cpu = asyncio.run(main())
    assert took >= 1.0
    assert cpu < 0.05, "an idle AIOConsumer used %.3f s of CPU in %.2f s" % (cpu, took)


def test_group_member_awaiting_past_its_session_timeout_stays_in(ns):
    make_topic(ns, "t", 1)

    async def main():
        async with AIOConsumer(cconf(ns, **{"session.timeout.ms": 600})) as c:
            await c.subscribe(["t"])
            while not await c.assignment():
                assert await c.poll(0.1) is None
            member = await c.memberid()
            msg = await c.poll(2.0)  # > session.timeout.ms: the heartbeats written while waiting keep it in
            return member, msg, await c.memberid()

    before, msg, after = asyncio.run(main())
    assert msg is None, "no event (e.g. _MAX_POLL_EXCEEDED): %r" % (msg and msg.error(),)
    assert before == after


APP = '''
import asyncio
import logging
import sys

from broker.aio import AIOConsumer, AIOProducer

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
log = logging.getLogger("app")
bootstrap, topic = sys.argv[1], sys.argv[2]


async def error_cb(err):
    log.error("kafka error: %s", err)


async def produce_all():
    producer = AIOProducer({"bootstrap.servers": bootstrap, "error_cb": error_cb}, max_workers=2)
    try:
        futures = await asyncio.gather(*(producer.produce(topic=topic, key=f"key{i}", value=f"value{i}")
                                         for i in range(20)))
        for msg in await asyncio.gather(*futures):
            log.info("produced %s [%d] @ %d", msg.topic(), msg.partition(), msg.offset())
        await producer.flush()
    finally:
        await producer.close()


async def consume_all():
    consumer = AIOConsumer({"bootstrap.servers": bootstrap, "group.id": "app", "auto.offset.reset": "earliest",
                            "enable.auto.commit": "false", "enable.auto.offset.store": "false",
                            "partition.assignment.strategy": "cooperative-sticky"})

    async def on_assign(consumer, partitions):
        await consumer.incremental_assign(partitions)
        await consumer.pause(partitions)
        await consumer.resume(partitions)
        log.info("assigned %d", len(partitions))

    async def on_revoke(consumer, partitions):
        try:
            await consumer.commit(asynchronous=False)
        except Exception as e:
            log.info("commit on revoke: %s", e)

    async def on_lost(consumer, partitions):
        log.info("lost %d", len(partitions))

    seen = 0
    try:
        await consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
        while seen < 20:
            msg = await consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                log.error("error: %s", msg.error())
                continue
            await consumer.store_offsets(message=msg)
            seen += 1
            if seen % 10 == 0:
                position = await consumer.position(await consumer.assignment())
                log.info("position %s", sorted(tp.offset for tp in position))
                await consumer.commit(asynchronous=False)
        log.info("consumed %d", seen)
    finally:
        await consumer.unsubscribe()
        await consumer.close()


async def main():
    consumer = asyncio.create_task(consume_all())
    await produce_all()
    await asyncio.wait_for(consumer, 30)


asyncio.run(main())
log.info("done")
'''


def test_a_program_written_for_confluent_kafka_aio_runs(ns, tmp_path):
    make_topic(ns, "t", 3)
    app = tmp_path / "app.py"
    app.write_text(APP)
    p = subprocess.run([sys.executable, str(app), "shm://" + ns, "t"], capture_output=True, text=True,
                       timeout=60, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert sum(1 for x in lines if x.startswith("produced t [")) == 20
    assert "consumed 20" in lines and lines[-1] == "done"
    assert any(x.startswith("assigned 3") for x in lines), lines
    with Consumer(cconf(ns, **{"group.id": "app"})) as c:  # its commits: every record of every partition
        committed = c.committed([TopicPartition("t", i) for i in range(3)])
    with Consumer(cconf(ns)) as c:
        highs = [c.get_watermark_offsets(TopicPartition("t", i))[1] for i in range(3)]
    assert [tp.offset for tp in committed] == highs and sum(highs) == 20


def _wait_xv(logs_, offsets, words, vals, timeout_ns):
    from shm._native import ffi, lib
    views = ffi.new("log_view *[]", [log._v for log in logs_] or 1)
    offs = ffi.new("uint64_t[]", offsets or 1)
    n = len(words)
    return lib.log_wait_many_xv(views, offs, len(logs_), timeout_ns, lib.LOG_WAIT_SLEEP, 0,
                                ffi.new("void *[]", words or 1), ffi.new("uint64_t[]", [4] * n or 1),
                                ffi.new("uint64_t[]", n or 1), ffi.new("uint32_t[]", vals or 1), n)


def test_wait_many_xv_wakes_on_any_extra_word_and_any_of_many_partitions(logs):
    """The C wait the waker sleeps in: many extra words beside more partitions than one futex_waitv takes."""
    import threading
    from shm._native import ffi, lib
    parts = [logs.create(slot_count=2, data_capacity=1024) for _ in range(130)]
    words = [ffi.new("uint32_t[1]") for _ in range(10)]
    assert _wait_xv(parts, [0] * 130, words, [0] * 10, 0) == -1
    assert _wait_xv(parts, [0] * 130, words, [0] * 9 + [5], 0) == -2  # already off its value

    def later(action):
        t = threading.Timer(0.05, action)
        t.start()
        return t

    t = later(lambda: lib.shm_futex_wake32(words[9], 4, 0))
    assert _wait_xv(parts, [0] * 130, words, [0] * 10, 10_000_000_000) == -2
    t.join()
    t = later(lambda: parts[129].append(b"x"))
    assert _wait_xv(parts, [0] * 130, words, [0] * 9 + [1], 10_000_000_000) == 129
    t.join()
    assert _wait_xv([], [], words[9:], [0], 0) == -2  # no partitions, words only
    assert _wait_xv([], [], words[9:], [1], 0) == -1
    too_many = [ffi.new("uint32_t[1]") for _ in range(lib.LOG_WAIT_XMAX + 1)]
    assert _wait_xv([], [], too_many, [0] * len(too_many), 0) == lib.LOG_E_BAD_ARG
    assert _wait_xv([], [], [], [], 0) == lib.LOG_E_BAD_ARG


def test_a_new_assignment_moves_a_pending_poll_to_it(ns, children):
    """assign() while another task awaits poll(): the await now waits on the new partition (at once, not at
    its next wake-up), and a record there ends it."""
    make_topic(ns, "t", 2)
    go = CTX.Event()
    children.start(_produce_when, ns, "t", go, [(1, b"on one")])

    def registered():
        waiting_regs()  # checks the path
        ws = [w for t in _waker.waker()._threads for w in t._waits]
        ws += [w for b in list(_waker._bells.values()) if b._ring is not None for w in b._ring._pending.values()]
        return [log.name.rsplit(".", 1)[1] for w in ws for log in w.logs]

    async def main():
        async with AIOConsumer(cconf(ns)) as c:
            await c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
            task = asyncio.ensure_future(c.poll(DEADLINE))
            await until(lambda: registered() == ["0"], "the poll to wait on partition 0")
            await c.assign([TopicPartition("t", 1, OFFSET_BEGINNING)])
            # within a fraction of the wait's own wake-up period (0.5 s): assign() wakes it
            await until(lambda: registered() == ["1"], "the poll to wait on partition 1", timeout=0.4)
            go.set()
            return await task

    msg = asyncio.run(main())
    assert (msg.partition(), msg.value()) == (1, b"on one")
    children.results(DEADLINE)


def test_without_io_uring_auto_uses_the_waker_thread_and_io_uring_says_why(ns, children, monkeypatch):
    """A kernel without io_uring futex waits (faked): shm.aio.waker=auto waits on the waker thread and
    still wakes; shm.aio.waker=io_uring raises an OSError that names the kernel feature and the fix."""
    import errno

    def no_ring(efd):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    monkeypatch.setattr(_waker, "_Ring", no_ring)
    make_topic(ns, "t", 1)
    go = CTX.Event()
    children.start(_produce_when, ns, "t", go, [(0, b"hello")])

    async def main():
        async with AIOConsumer(cconf(ns, **{"shm.aio.waker": "auto"})) as c:
            await c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
            task = asyncio.ensure_future(c.poll(DEADLINE))
            await until(lambda: thread_regs() == 1, "the poll to wait on the waker thread")
            assert ring_regs() == 0
            go.set()
            msg = await task
        async with AIOConsumer(cconf(ns, **{"shm.aio.waker": "io_uring"})) as c:
            await c.assign([TopicPartition("t", 0, 1)])
            with pytest.raises(OSError, match="Linux >= 6.7.*shm.aio.waker=auto"):
                await c.poll(DEADLINE)
        return msg

    msg = asyncio.run(main())
    assert (msg.offset(), msg.value()) == (0, b"hello")
    assert children.results(DEADLINE) == [1]


def test_bad_waker_value_is_a_config_error(ns):
    from broker.errors import ConfigError
    with pytest.raises(ConfigError, match="shm.aio.waker"):
        AIOConsumer(cconf(ns, **{"shm.aio.waker": "fast"}))
