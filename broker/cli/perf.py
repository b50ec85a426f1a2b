"""`shmbroker producer-perf-test`, `consumer-perf-test` and `e2e-latency`:
Kafka's perf tools with their flags and output lines, then a line of our own
in microseconds (Kafka's lines count whole milliseconds).  Each also writes
``--hgrm FILE`` (HdrHistogram's percentile distribution, values in us),
``--json FILE`` and ``--plot FILE.png``, and shows a progress line on stderr
when stderr is a terminal.  The histograms are ``broker.latency`` Stages."""
import json
import os
import random
import sys
import time

from . import UsageError, _attach, _conf, _props, pos_int

_before_send = None  # e2e-latency calls it with the record's index before each send (tests inject a stall)
_JAVA_ONLY = {"key.serializer", "value.serializer", "key.deserializer", "value.deserializer"}


# -- shared pieces
def _load_props(path):
    """A Java .properties file (key=value or key: value; # and ! comments)."""
    out = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise UsageError("cannot read the properties file %s: %s" % (path, exc.strerror))
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if cut < 0:
            raise UsageError("%s line %d: expected key=value, got %r" % (path, n, line))
        out[line[:cut].strip()] = line[cut + 1:].strip()
    return out


def _client_conf(args, props):
    """Client config: the props (less Java's serializer classes), then --namespace/--bootstrap-server."""
    conf = {k: v for k, v in props.items() if k not in _JAVA_ONLY}
    conf.update(_conf(args))
    return conf


def _java_double(x):
    """Java's Double.toString: Kafka's e2e tool prints its interim latencies with it."""
    from decimal import Decimal
    if x == 0:
        return "0.0"
    if 1e-3 <= abs(x) < 1e7:
        s = repr(float(x))
        return s if ("." in s or "e" in s) else s + ".0"
    sign, digits, exp = Decimal(repr(float(x))).normalize().as_tuple()
    d = "".join(map(str, digits))
    return "%s%s.%sE%d" % ("-" if sign else "", d[0], d[1:] or "0", exp + len(d) - 1)


def _div(a, b):
    return a / b if b else (float("inf") if a else float("nan"))


def _f4(x):
    """%.4f as Java prints it (Infinity, NaN)."""
    if x != x:
        return "NaN"
    return "%.4f" % x if abs(x) != float("inf") else ("Infinity" if x > 0 else "-Infinity")


class Progress:
    """One line on stderr, rewritten in place, while a tool runs; only on a terminal."""

    def __init__(self, tool, total, stream=None, every=0.25):
        self.stream = stream or sys.stderr
        self.on = self.stream.isatty()
        self.tool, self.total, self.every = tool, total, every
        self.t0 = time.monotonic()
        self.next = self.t0 + every
        if not self.on:
            self.update = self.done = lambda *a: None
        self.clear = self.done  # before a line on stdout, so the two do not run into each other

    def update(self, n, extra=""):
        now = time.monotonic()
        if now >= self.next:
            self.next = now + self.every
            rate = n / (now - self.t0) if now > self.t0 else 0.0
            self.stream.write("\r%s: %d/%d records (%.0f%%), %.0f records/sec%s\x1b[K" % (
                self.tool, n, self.total, 100.0 * n / self.total if self.total else 100.0, rate, extra))
            self.stream.flush()

    def done(self):
        self.stream.write("\r\x1b[K")
        self.stream.flush()


def _file_flags(t):
    t.add_argument("--hgrm", metavar="FILE", help="write the latency histogram as HdrHistogram's percentile "
                   "distribution (.hgrm text, values in microseconds)")
    t.add_argument("--json", metavar="FILE", help="write percentiles (us), the rate, CPU per record and the "
                   "configuration as JSON (the histogram too, HdrHistogram-encoded)")
    t.add_argument("--plot", metavar="FILE.png", help="draw the percentile distribution (log 1/(1-p) axis)")


def _extras(args):
    """Which files can be written; says on stderr which extra brings the others."""
    from broker.latency import PERF_EXTRA, have_hdrh
    hdrh = have_hdrh()
    try:
        import matplotlib  # noqa: F401
        mpl = True
    except ImportError:
        mpl = False
    cant = []
    if args.hgrm and not hdrh:
        cant.append("--hgrm %s (needs hdrhistogram)" % args.hgrm)
    if args.plot and not (hdrh and mpl):
        cant.append("--plot %s (needs %s)" % (args.plot, " and ".join(
            n for n, ok in (("hdrhistogram", hdrh), ("matplotlib", mpl)) if not ok)))
    if cant:
        print("Note: not writing %s: %s brings them" % ("; ".join(cant), PERF_EXTRA), file=sys.stderr)
    return {"hgrm": bool(args.hgrm) and hdrh, "plot": bool(args.plot) and hdrh and mpl, "json": bool(args.json)}


def _write_files(args, can, tool, main, data, others=None, title=None, plot_labels=None):
    """--hgrm (main stage), --json (data + every stage), --plot (main and others; *plot_labels*: name -> label)."""
    from broker.latency import have_hdrh
    stages = {main.name: main}
    stages.update(others or {})
    if can["hgrm"]:
        main.write_hgrm(args.hgrm)
    if can["json"]:
        data = dict(data, tool=tool)
        for name, st in stages.items():
            data[name + "_us"] = st.summary()
            data[name + "_histogram"] = st.encode().decode() if have_hdrh() else None
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
    if can["plot"]:
        from broker.latency import plot
        plot(args.plot, {(plot_labels or {}).get(n, n): st for n, st in stages.items()}, title)


def _config_of(args, *names):
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


# -- producer-perf-test
class _ProducerStats:
    """Kafka's ProducerPerformance counting: windows of 5 s, then the total."""

    def __init__(self, stage, progress, n):
        self.stage, self.progress, self.n = stage, progress, n
        self.t0 = 0
        self.size = 0
        self.count = self.bytes = self.total = self.max = 0
        self.start = self.win_start = time.monotonic_ns()
        self.w_count = self.w_bytes = self.w_total = self.w_max = 0

    def delivered(self, err, msg):  # the delivery report: produce() -> here is the latency
        now = time.monotonic_ns()
        if err is not None:
            print("Error: %s" % err.str(), file=sys.stderr)
            return
        lat = now - self.t0
        self.stage.record(lat)
        size = self.size
        self.count += 1
        self.bytes += size
        self.total += lat
        self.w_count += 1
        self.w_bytes += size
        self.w_total += lat
        if lat > self.max:
            self.max = lat
        if lat > self.w_max:
            self.w_max = lat
        if now - self.win_start >= 5_000_000_000:
            self.progress.clear()
            self.print_window(now)
        if not self.count & 255:
            self.progress.update(self.count)

    def print_window(self, now):
        el = (now - self.win_start) / 1e9
        print("%d records sent, %.1f records/sec (%.2f MB/sec), %.1f ms avg latency, %.1f ms max latency." % (
            self.w_count, self.w_count / el, self.w_bytes / el / 2**20, self.w_total / self.w_count / 1e6,
            self.w_max / 1e6), flush=True)
        self.win_start = now
        self.w_count = self.w_bytes = self.w_total = self.w_max = 0


def _payloads(args):
    if args.payload_file:
        path = os.path.abspath(args.payload_file)
        print("Reading payloads from: %s" % path)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise UsageError("cannot read --payload-file %s: %s" % (path, exc.strerror))
        delim = args.payload_delimiter.encode().decode("unicode_escape").encode()
        out = [p for p in data.split(delim) if p]
        if not out:
            raise UsageError("--payload-file %s is empty: give a file with payloads, one per line" % path)
        print("Number of messages read: %d" % len(out))
        return out, True
    rnd = random.Random(0)  # Kafka's payloads: random capital letters
    return [bytes(rnd.randrange(65, 91) for _ in range(args.record_size)) for _ in range(min(64, args.num_records))], \
        False


def cmd_producer_perf(args):
    from broker import Producer
    from broker.latency import Pacer, Stage
    if args.throughput == 0 or (args.throughput < 0 and args.throughput != -1):
        raise UsageError("--throughput must be > 0 records/sec, or -1 for no limit, got %g" % args.throughput)
    can = _extras(args)
    props = _load_props(args.producer_config) if args.producer_config else {}
    props.update(_props(args.producer_props))
    conf = _client_conf(args, props)
    n, topic = args.num_records, args.topic
    with _attach(_ns_args(conf)) as ns:
        ns.topic(topic)  # an unknown topic (or namespace) fails here, in one line
    payloads, pick = _payloads(args)
    rnd = random.Random(0)
    stage = Stage("latency")
    progress = Progress("producer-perf-test", n)
    pacer = Pacer(args.throughput) if args.throughput > 0 else None
    with Producer(conf) as p:
        st = _ProducerStats(stage, progress, n)
        cb, produce, poll, clock = st.delivered, p.produce, p.poll, time.monotonic_ns
        k = len(payloads)
        cpu0 = time.process_time()
        if pacer:
            pacer.start(st.start)
        for i in range(n):
            v = payloads[rnd.randrange(k)] if pick else payloads[i % k]
            if pacer:
                pacer.wait(i)
            st.size = len(v)
            st.t0 = clock()
            try:
                produce(topic, v, on_delivery=cb)
            except BufferError as exc:  # a full shm.overflow=block topic no group reads
                from shm.errors import QueueFullError, error_text
                raise QueueFullError("%s (after %d records)" % (error_text(exc), i)) from None
            poll(0)
        p.flush()
        end = time.monotonic_ns()
        cpu = time.process_time() - cpu0
        progress.done()
        el = (end - st.start) / 1e9
        pct = stage.percentiles((50, 95, 99, 99.9))
        print("%d records sent, %f records/sec (%.2f MB/sec), %.2f ms avg latency, %.2f ms max latency, "
              "%d ms 50th, %d ms 95th, %d ms 99th, %d ms 99.9th." % (
                  st.count, st.count / el, st.bytes / el / 2**20, _div(st.total, st.count) / 1e6, st.max / 1e6,
                  pct[50] // 10**6, pct[95] // 10**6, pct[99] // 10**6, pct[99.9] // 10**6))
        per = cpu / st.count * 1e6 if st.count else 0.0
        print("produce -> delivery report: %s; CPU %.2f us/record" % (stage.line((50, 95, 99, 99.9, 99.99)), per))
        if args.print_metrics:
            _print_metrics(conf, st, el)
    _write_files(args, can, "producer-perf-test", stage, {
        "records": st.count, "rate": st.count / el, "mb_per_sec": st.bytes / el / 2**20, "cpu_per_record_us": per,
        "target_rate": args.throughput if args.throughput > 0 else None,
        "config": dict(_config_of(args, "topic", "num_records", "record_size", "payload_file", "throughput"),
                       client=conf)}, title="producer-perf-test: produce -> delivery report")
    return 0


def _print_metrics(conf, st, el):
    """Kafka's --print-metrics table (ToolsUtils.printMetrics' layout), the metrics we have."""
    tags = "{client-id=%s}" % conf.get("client.id", "perf-producer-client")
    m = {"record-send-total": st.count, "record-send-rate": st.count / el, "byte-total": st.bytes,
         "byte-rate": st.bytes / el, "record-size-avg": _div(st.bytes, st.count),
         "request-latency-avg": _div(st.total, st.count) / 1e6, "request-latency-max": st.max / 1e6,
         "record-queue-time-avg": 0.0, "records-per-request-avg": 1.0}
    rows = {"producer-metrics:%s:%s" % (k, tags): v for k, v in m.items()}
    w = max(len(k) for k in rows)
    print("\n%-*s   %s" % (w, "Metric Name", "Value"))
    for k in sorted(rows):
        print("%-*s : %.3f" % (w, k, rows[k]))


# -- consumer-perf-test
def _date(t):
    """Kafka's default --date-format, yyyy-MM-dd HH:mm:ss:SSS (display only)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + ":%03d" % (int(t * 1000) % 1000)


def cmd_consumer_perf(args):
    from broker import Consumer
    from broker.latency import Stage
    if args.reporting_interval < 1:
        raise UsageError("Reporting interval must be greater than 0.")
    can = _extras(args)
    props = _load_props(args.consumer_config) if args.consumer_config else {}
    conf = _client_conf(args, props)
    with _attach(_ns_args(conf)) as ns:
        ns.topic(args.topic)  # an unknown topic fails here rather than after --timeout
    group = args.group or "perf-consumer-%d" % random.randrange(100000)
    conf.update({"group.id": group, "auto.offset.reset": "latest" if args.from_latest else "earliest"})
    if not args.hide_header:
        print("%s, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, "
              "fetch.MB.sec, fetch.nMsg.sec" % ("time, threadId" if args.show_detailed_stats else
                                                "start.time, end.time"), flush=True)
    stage = Stage("latency")
    progress = Progress("consumer-perf-test", args.messages)
    clock = time.monotonic_ns
    wall0, start = time.time(), clock()
    join = {"start": start, "total": 0, "round": 0, "assigned": set()}

    def on_assign(c, parts):
        if not join["assigned"]:
            ms = (clock() - join["start"]) // 10**6
            join["total"] += ms
            join["round"] += ms
        join["assigned"].update((tp.topic, tp.partition) for tp in parts)

    def on_revoke(c, parts):
        join["assigned"].difference_update((tp.topic, tp.partition) for tp in parts)
        if not join["assigned"]:
            join["start"] = clock()

    n = nbytes = last_n = last_bytes = 0
    timeout_ns = args.timeout * 10**6
    interval_ns = args.reporting_interval * 10**6
    cpu0 = time.process_time()
    with Consumer(conf) as c:
        c.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke)
        now = last_report = last_got = clock()
        while n < args.messages and now - last_got <= timeout_ns:
            t = clock()
            msgs = c.consume(min(500, args.messages - n), 0.1)
            now = clock()
            got = 0
            for m in msgs:
                if m.error() is not None:
                    continue
                got += 1
                k, v = m.key(), m.value()
                nbytes += (len(k) if k is not None else 0) + (len(v) if v is not None else 0)
            if not got:
                continue
            last_got = now
            n += got
            stage.record((now - t) // got, got)  # the consume() call's time, shared by the records it returned
            progress.update(n)
            if now - last_report >= interval_ns:
                if args.show_detailed_stats:
                    progress.clear()
                    _detail_row(wall0 + (now - start) / 1e9, nbytes, last_bytes, n, last_n, now - last_report,
                                join["round"])
                join["round"] = 0
                last_report, last_n, last_bytes = now, n, nbytes
    end = clock()
    cpu = time.process_time() - cpu0
    progress.done()
    if n < args.messages:
        print("WARNING: Exiting before consuming the expected number of messages: timeout (%d ms) exceeded. "
              "You can use the --timeout option to increase the timeout." % args.timeout)
    el_ms = (end - start) // 10**6
    fetch_ms = el_ms - join["total"]
    mb = nbytes / 2**20
    if not args.show_detailed_stats:
        print("%s, %s, %.4f, %s, %d, %s, %d, %d, %s, %s" % (
            _date(wall0), _date(wall0 + el_ms / 1e3), mb, _f4(_div(mb, el_ms / 1e3)), n, _f4(_div(n, el_ms / 1e3)),
            join["total"], fetch_ms, _f4(_div(mb, fetch_ms / 1e3)), _f4(_div(n, fetch_ms / 1e3))))
    per = cpu / n * 1e6 if n else 0.0
    print("consume() time per record: %s; CPU %.2f us/record" % (stage.line(), per))
    if not args.group:
        _drop_group(conf, group)
    _write_files(args, can, "consumer-perf-test", stage, {
        "records": n, "rate": _div(n, (end - start) / 1e9), "mb_per_sec": _div(mb, (end - start) / 1e9),
        "cpu_per_record_us": per, "rebalance_time_ms": join["total"], "fetch_time_ms": fetch_ms,
        "config": dict(_config_of(args, "topic", "messages", "group", "from_latest", "timeout"), client=conf)},
        title="consumer-perf-test: consume() time per record")
    return 0


def _ns_args(conf):
    """Arguments naming the namespace the client config names (a props file's bootstrap.servers too)."""
    import argparse
    return argparse.Namespace(namespace=conf.get("shm.namespace"), bootstrap_server=conf.get("bootstrap.servers"))


def _detail_row(wall, nbytes, last_bytes, n, last_n, dt_ns, join_round):
    ms = dt_ns / 1e6
    fetch = int(ms) - join_round
    imb = (nbytes - last_bytes) / 2**20
    print("%s, %d, %.4f, %.4f, %d, %.4f, %d, %d, %.4f, %.4f" % (
        _date(wall), 0, nbytes / 2**20, 1000.0 * imb / ms, n, (n - last_n) / ms * 1000.0, join_round, fetch,
        1000.0 * imb / fetch if fetch > 0 else 0.0, 1000.0 * (n - last_n) / fetch if fetch > 0 else 0.0), flush=True)


def _drop_group(conf, group):
    """The group this run made up: gone again, so runs do not fill the namespace's group table."""
    from broker.admin import AdminClient
    from shm.errors import KafkaException, error_text
    try:
        with AdminClient({k: v for k, v in conf.items() if k in ("shm.namespace", "bootstrap.servers")}) as a:
            a.delete_consumer_groups([group])[group].result()
    except KafkaException as exc:
        print("Note: could not remove consumer group %s: %s" % (group, error_text(exc)), file=sys.stderr)


# -- e2e-latency
E2E_USAGE = "broker_list topic num_messages producer_acks message_size_bytes [properties_file]"


def _e2e_args(args):
    """(conf, topic, n, acks, size) from Kafka's positional form or the flags."""
    pos = args.positional
    if pos:
        if any(getattr(args, f) is not None for f in ("topic", "num_records", "record_size", "command_config")):
            raise UsageError("give either the positional form (%s) or the flags (--topic ...), not both" % E2E_USAGE)
        if len(pos) not in (5, 6):
            raise UsageError("the positional form takes %s; got %d arguments" % (E2E_USAGE, len(pos)))
        broker_list, topic, n, acks, size = pos[:5]
        props_file = pos[5] if len(pos) == 6 and pos[5].strip() else None
        try:
            n, size = int(n), int(size)
        except ValueError:
            raise UsageError("num_messages and message_size_bytes must be integers, got %r and %r" % (n, size))
    else:
        missing = [f for f, v in (("--topic", args.topic), ("--num-records", args.num_records),
                                  ("--record-size", args.record_size)) if v is None]
        if missing:
            raise UsageError("the following arguments are required: %s (or the positional form: %s)"
                             % (", ".join(missing), E2E_USAGE))
        broker_list, topic, n, acks, size, props_file = None, args.topic, args.num_records, args.producer_acks, \
            args.record_size, args.command_config
    if n < 1 or size < 1:
        raise UsageError("num_messages and message_size_bytes must be >= 1, got %d and %d" % (n, size))
    if acks not in ("1", "all"):
        raise UsageError("Latency testing requires synchronous acknowledgement. Please use 1 or all")
    conf = _client_conf(args, _load_props(props_file) if props_file else {})
    if broker_list is not None and not args.namespace and not args.bootstrap_server:
        conf["bootstrap.servers"] = broker_list
    return conf, topic, n, acks, size


def cmd_e2e(args):
    from broker import OFFSET_END, Consumer, Producer, TopicPartition
    from broker.admin import AdminClient, NewTopic
    from broker.latency import Pacer, Stage
    from shm.errors import KafkaException
    if args.rate is not None and not args.rate > 0:
        raise UsageError("--rate must be > 0 records/sec, got %g" % args.rate)
    conf, topic, n, acks, size = _e2e_args(args)
    can = _extras(args)
    from broker.config import CONSUMER, PRODUCER  # one properties file serves all three clients, as in Kafka's tool
    with AdminClient({k: v for k, v in conf.items() if k not in PRODUCER and k not in CONSUMER}) as a:
        if topic not in a.list_topics().topics:
            print('Topic "%s" does not exist. Will create topic with 1 partition(s) and replication factor = 1'
                  % topic)
            a.create_topics([NewTopic(topic, 1)])[topic].result()
    rnd = random.Random(0)
    payloads = [bytes([65 + i]) * size for i in range(26)]  # Kafka's: one random capital letter, repeated
    lat = Stage("latency")
    raw = Stage("uncorrected") if args.rate else None
    behind = Stage("send_lateness") if args.rate else None
    pacer = Pacer(args.rate, spin_us=200) if args.rate else None
    progress = Progress("e2e-latency", n)
    hook = _before_send
    clock = time.monotonic_ns
    total = 0
    pconf = {k: v for k, v in conf.items() if k not in CONSUMER}
    pconf.update({"acks": acks, "linger.ms": 0})
    with Producer(pconf) as p, Consumer({k: v for k, v in conf.items() if k not in PRODUCER}) as c:
        c.assign([TopicPartition(topic, 0, OFFSET_END)])
        cpu0 = time.process_time()
        first = last = start = clock()
        if pacer:
            pacer.start(start)
        for i in range(n):
            v = payloads[rnd.randrange(26)]
            due = pacer.wait(i) if pacer else None
            if hook is not None:
                hook(i)
            t = clock()
            p.produce(topic, v, partition=0)
            m = c.poll(60.0)
            done = clock()
            if m is None:
                raise KafkaException("poll() timed out before finding a result (timeout:[60000])")
            if m.error() is not None or m.value() != v:
                raise KafkaException("The message read [%s] did not match the message sent [%s]" % (
                    m.error().str() if m.error() is not None else (m.value() or b"")[:64].decode("latin-1"),
                    v[:64].decode("latin-1")))
            if i == 0:
                first = t
            last = t
            el = done - (due if pacer else t)
            lat.record(el)
            if raw is not None:
                raw.record(done - t)
                behind.record(t - due)
            total += el
            if i % 1000 == 0:
                progress.clear()
                print("%d\t%s" % (i, _java_double(el / 1000.0 / 1000.0)), flush=True)
            progress.update(i + 1)
        cpu = time.process_time() - cpu0
    progress.done()
    pct = lat.percentiles((50, 99, 99.9))
    print("Avg latency: %.4f ms" % (total / n / 1000.0 / 1000.0))
    print("Percentiles: 50th = %d, 99th = %d, 99.9th = %d" % (pct[50] // 10**6, pct[99] // 10**6,
                                                               pct[99.9] // 10**6))
    rate = _div(n - 1, (last - first) / 1e9) if n > 1 else _div(n, (clock() - start) / 1e9)
    per = cpu / n * 1e6
    data = {"records": n, "rate": rate, "cpu_per_record_us": per, "record_size": size,
            "config": dict(_config_of(args, "rate"), topic=topic, num_records=n, record_size=size, acks=acks,
                           client=conf, mode="open loop" if pacer else "closed loop")}
    if pacer:
        print("Latency from intended send time (coordinated omission corrected): %s" % lat.line())
        print("Latency from actual send time (uncorrected): %s" % raw.line())
        print("Send lateness behind the schedule (the sender's own delays, in the corrected figures): %s"
              % behind.line())
        reached = rate >= 0.95 * args.rate
        print("Rate: target %.1f records/sec, achieved %.1f records/sec; CPU %.2f us/record" % (args.rate, rate, per))
        if not reached:
            print("WARNING: target rate %.1f records/sec not reached (%.1f records/sec): the corrected latencies "
                  "include each record's wait behind the schedule" % (args.rate, rate))
        data.update(target_rate=args.rate, rate_reached=reached)
    else:
        print("Latency: %s; %.1f records/sec, CPU %.2f us/record" % (lat.line(), rate, per))
    others = {"uncorrected": raw, "send_lateness": behind} if pacer else None
    _write_files(args, can, "e2e-latency", lat, data, others,
                 title="e2e-latency: produce -> poll%s" % (", open loop at %g/s" % args.rate if pacer else ""),
                 plot_labels={"latency": "from due time (corrected)", "uncorrected": "from send (uncorrected)",
                              "send_lateness": "send lateness"} if pacer else None)
    return 0


# -- registration
def _one_line_errors(t):
    """Usage errors as one line on stderr, exit 2 (argparse's code)."""
    def error(message):
        sys.stderr.write("%s: error: %s (--help shows the usage)\n" % (t.prog, " ".join(str(message).split())))
        sys.exit(2)
    t.error = error


def number(s):
    return float(s)


def add(tool):
    """Register this module's tools (``tool`` makes a subparser)."""
    t = tool("producer-perf-test", cmd_producer_perf, "produce N records and report throughput and latency "
             "(kafka-producer-perf-test)",
             "Produce --num-records records (exactly; nothing else is written) and print Kafka's lines: a window "
             "every 5 s and the total (latency: produce() -> delivery report, whole ms), then our microsecond "
             "percentiles and CPU per record.")
    t.add_argument("--topic", required=True)
    t.add_argument("--num-records", type=pos_int, required=True)
    g = t.add_mutually_exclusive_group(required=True)
    g.add_argument("--record-size", type=pos_int, help="record size in bytes (random capital letters)")
    g.add_argument("--payload-file", help="payloads to pick from at random, split by --payload-delimiter")
    t.add_argument("--payload-delimiter", default="\\n", help="default: newline")
    t.add_argument("--throughput", type=number, required=True, help="records/sec to aim at; -1: no limit")
    t.add_argument("--producer-props", nargs="+", action="extend", metavar="K=V", help="producer config")
    t.add_argument("--producer.config", dest="producer_config", metavar="FILE", help="producer .properties file")
    t.add_argument("--print-metrics", action="store_true", help="print producer metrics at the end")
    _file_flags(t)
    _one_line_errors(t)

    t = tool("consumer-perf-test", cmd_consumer_perf, "consume N records and report throughput "
             "(kafka-consumer-perf-test)",
             "Consume --messages records as a member of a consumer group and print Kafka's header and row "
             "(or a row every --reporting-interval with --show-detailed-stats), then the time consume() took per "
             "record in microseconds and CPU per record.")
    t.add_argument("--topic", required=True)
    t.add_argument("--messages", type=pos_int, required=True)
    t.add_argument("--group", help="consumer group (default: perf-consumer-<random>, removed at the end)")
    t.add_argument("--from-latest", action="store_true", help="start at the end when the group has no offset")
    t.add_argument("--timeout", type=int, default=10000, metavar="MS", help="give up after this long without a "
                   "record (default 10000)")
    t.add_argument("--show-detailed-stats", action="store_true")
    t.add_argument("--reporting-interval", type=int, default=5000, metavar="MS", help="default 5000")
    t.add_argument("--hide-header", action="store_true")
    t.add_argument("--consumer.config", dest="consumer_config", metavar="FILE", help="consumer .properties file")
    _file_flags(t)
    _one_line_errors(t)

    t = tool("e2e-latency", cmd_e2e, "produce -> poll latency, one record at a time (kafka-e2e-latency)",
             "Send a record and poll it back, N times, and print Kafka's lines (Avg latency, Percentiles in whole "
             "ms), then our microsecond percentiles.  Closed loop (one record in flight) unless --rate R: then "
             "records are due at a fixed rate and each latency counts from its due time (coordinated omission "
             "corrected), printed beside the uncorrected one.  Kafka's form: e2e-latency " + E2E_USAGE)
    t.add_argument("positional", nargs="*", metavar="ARG", help="Kafka's form: " + E2E_USAGE)
    t.add_argument("--topic")
    t.add_argument("--num-records", type=pos_int)
    t.add_argument("--record-size", type=pos_int)
    t.add_argument("--producer-acks", default="1", help="1 or all (both mean: in the partition)")
    t.add_argument("--command-config", metavar="FILE", help="client .properties file")
    t.add_argument("--rate", type=number, help="open loop: records/sec, latency from each record's due time")
    _file_flags(t)
    _one_line_errors(t)
