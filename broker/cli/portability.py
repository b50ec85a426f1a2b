"""`shmbroker check-portability FILE.py|CONFIG`: what in a program or a
client config will not carry over to a Kafka cluster when the import
changes from broker.kafka to confluent_kafka.

Findings, one line each as ``FILE:LINE: what (why / what to do)``:
- shmbroker-only config keys (every ``shm.*`` key: namespace, wait mode,
  overflow, slots, ...) and ``bootstrap.servers=shm://NS``;
- native extras that confluent_kafka lacks: ``send``, ``send_batch``,
  ``lag``, ``timestamp_ns``, iterating a Consumer, and the modules that
  exist only here (``shm``, ``broker.pool``, ``broker.latency``,
  ``broker.errors``' specific classes, ``broker.Queue`` & co);
- ``from broker import Producer`` (the Java client's partitioner, where
  confluent_kafka's default is librdkafka's consistent_random).

The check is static (Python's ast for .py files, ``key=value`` lines for a
properties config, a JSON object for .json): it reads, never runs, the file.
Exit 0: nothing found; 1: findings; 2: the file cannot be read or parsed."""
import ast
import json
import sys

# attribute names only shmbroker's clients have (send is checked on producers only: sockets have one too)
EXTRA_METHODS = {
    "send_batch": "Producer.send_batch is shmbroker's batch append: use produce() per record (and poll())",
    "lag": "Consumer.lag() is shmbroker's: compute lag from get_watermark_offsets() and position()",
    "timestamp_ns": "Message.timestamp_ns() is shmbroker's: use timestamp(), which gives (type, ms)",
}
PRODUCER_SEND = "Producer.send is shmbroker's synchronous append: use produce() with on_delivery, then flush()"
CONSUMER_ITER = "iterating a Consumer is shmbroker's: loop on poll(timeout) and check msg.error()"
MODULES = {
    "shm": "the shm package (shared-memory rings) exists only in shmbroker",
    "broker.pool": "broker.pool (process pools over shared memory) has no Kafka counterpart",
    "broker.latency": "broker.latency is shmbroker's latency recorder: keep it out of the Kafka path",
    "broker.errors": "broker.errors' specific exceptions are shmbroker's: catch KafkaException and check "
                     "exc.args[0].code()",
    "broker.aio": "broker.aio mirrors confluent_kafka.aio: import confluent_kafka.aio",
}
BROKER_ONLY_NAMES = {"Queue", "JoinableQueue", "SimpleQueue", "RecordMetadata", "pool", "latency", "errors"}
PLAIN_BROKER = ("'from broker import ...' gives the Java client's key placement (murmur2_random); confluent_kafka "
                "places keys by librdkafka's consistent_random: import from broker.kafka, or set 'partitioner'")


def key_finding(key, value=None):
    """Why a config key (and its value) will not carry over, or None."""
    if not isinstance(key, str):
        return None
    if key.startswith("shm."):
        return "%r is a shmbroker-only key: Kafka rejects it as an unknown configuration property; drop it" % key
    if key == "bootstrap.servers" and isinstance(value, str) and value.startswith("shm://"):
        return "bootstrap.servers=%s selects a shmbroker namespace: point it at the Kafka brokers" % value
    return None


class _Visitor(ast.NodeVisitor):
    def __init__(self):
        self.found = []  # (line, message)
        self.kinds = {}  # variable name -> "producer" / "consumer"

    def add(self, node, msg):
        self.found.append((getattr(node, "lineno", 0), msg))

    # -- imports
    def _module(self, node, mod):
        for m, why in MODULES.items():
            if mod == m or mod.startswith(m + "."):
                self.add(node, why)
                return True
        return False

    def visit_Import(self, node):
        for a in node.names:
            self._module(node, a.name)
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        mod = node.module or ""
        if not node.level and not self._module(node, mod):
            names = {a.name for a in node.names}
            if mod == "broker":
                for n in sorted(names & BROKER_ONLY_NAMES):
                    self.add(node, "broker.%s exists only in shmbroker" % n)
                if names & {"Producer", "Consumer", "AdminClient"}:
                    self.add(node, PLAIN_BROKER)
            elif mod == "broker.kafka" and "RecordMetadata" in names:
                self.add(node, "RecordMetadata exists only in shmbroker")
        self.generic_visit(node)

    # -- which names are clients
    @staticmethod
    def _client_kind(call):
        if not isinstance(call, ast.Call):
            return None
        f = call.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        return {"Producer": "producer", "SerializingProducer": "producer", "Consumer": "consumer",
                "DeserializingConsumer": "consumer"}.get(name)

    def _bind(self, target, value):
        kind = self._client_kind(value)
        if isinstance(target, ast.Name):
            if kind:
                self.kinds[target.id] = kind
            else:
                self.kinds.pop(target.id, None)
        elif isinstance(target, ast.Attribute) and kind:
            self.kinds[ast.unparse(target)] = kind

    def visit_Assign(self, node):
        for t in node.targets:
            self._bind(t, node.value)
        self.generic_visit(node)

    def visit_With(self, node):
        for item in node.items:
            if item.optional_vars is not None:
                self._bind(item.optional_vars, item.context_expr)
        self.generic_visit(node)

    # -- uses
    def visit_Call(self, node):
        f = node.func
        if isinstance(f, ast.Attribute):
            if f.attr in EXTRA_METHODS:
                self.add(node, EXTRA_METHODS[f.attr])
            elif f.attr == "send" and self._kind_of(f.value) == "producer":
                self.add(node, PRODUCER_SEND)
        for kw in node.keywords:  # Producer(**{...}) style keyword configs: shm_* cannot be a keyword
            if kw.arg is not None:
                why = key_finding(kw.arg.replace("_", "."), None) if kw.arg.startswith("shm_") else None
                if why:
                    self.add(kw.value, why)
        self.generic_visit(node)

    def _kind_of(self, expr):
        try:
            return self.kinds.get(ast.unparse(expr))
        except Exception:  # an expression unparse cannot handle
            return None

    def visit_For(self, node):
        if self._kind_of(node.iter) == "consumer" or self._client_kind(node.iter) == "consumer":
            self.add(node, CONSUMER_ITER)
        self.generic_visit(node)

    def visit_Dict(self, node):
        for k, v in zip(node.keys, node.values):
            if isinstance(k, ast.Constant):
                why = key_finding(k.value, v.value if isinstance(v, ast.Constant) else None)
                if why:
                    self.add(k, why)
        self.generic_visit(node)

    def visit_Subscript(self, node):  # conf["shm.wait"] = ...
        s = node.slice
        if isinstance(s, ast.Constant):
            why = key_finding(s.value)
            if why:
                self.add(node, why)
        self.generic_visit(node)

    def visit_Constant(self, node):  # a bare "shm://NS" anywhere (bootstrap strings built apart from dicts)
        if isinstance(node.value, str) and node.value.startswith("shm://") and not getattr(node, "_seen", False):
            self.add(node, "%r names a shmbroker namespace: point bootstrap.servers at the Kafka brokers" % node.value)


def check_python(text, path):
    tree = ast.parse(text, filename=path)
    for d in ast.walk(tree):  # shm:// values already reported with their bootstrap.servers key
        if isinstance(d, ast.Dict):
            for k, v in zip(d.keys, d.values):
                if isinstance(k, ast.Constant) and k.value == "bootstrap.servers" and isinstance(v, ast.Constant):
                    v._seen = True
    v = _Visitor()
    v.visit(tree)
    return sorted(set(v.found))


def check_properties(text):
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s[0] in "#!":
            continue
        sep = min((i for i in (s.find("="), s.find(":")) if i >= 0), default=-1)
        key, value = (s[:sep].strip(), s[sep + 1:].strip()) if sep >= 0 else (s, "")
        why = key_finding(key, value)
        if why:
            out.append((n, why))
    return out


def check_json(text):
    conf = json.loads(text)
    if not isinstance(conf, dict):
        raise ValueError("a JSON config must be an object of key: value")
    lines = text.splitlines()
    out = []
    for k, v in conf.items():
        why = key_finding(k, v)
        if why:
            n = next((i for i, ln in enumerate(lines, 1) if '"%s"' % k in ln), 1)
            out.append((n, why))
    return sorted(out)


def check_file(path):
    """[(line, message)] for one file; raises OSError / SyntaxError / ValueError."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".py"):
        return check_python(text, path)
    if path.endswith(".json") or text.lstrip().startswith("{"):
        return check_json(text)
    return check_properties(text)


def cmd_check_portability(args):
    found = 0
    for path in args.files:
        try:
            findings = check_file(path)
        except (OSError, UnicodeDecodeError) as exc:
            print("Error: cannot read %s: %s" % (path, getattr(exc, "strerror", None) or exc), file=sys.stderr)
            return 2
        except SyntaxError as exc:
            print("Error: %s is not valid Python (line %s: %s)" % (path, exc.lineno, exc.msg), file=sys.stderr)
            return 2
        except ValueError as exc:
            print("Error: %s is not a valid config (%s)" % (path, " ".join(str(exc).split())), file=sys.stderr)
            return 2
        for line, msg in findings:
            print("%s:%d: %s" % (path, line, msg))
        found += len(findings)
    if found:
        print("%d finding%s: these will not carry over to Kafka" % (found, "s" if found != 1 else ""),
              file=sys.stderr)
        return 1
    return 0


def add(tool):
    """Register this module's tool (``tool`` makes a subparser)."""
    t = tool("check-portability", cmd_check_portability,
             "flag shmbroker-only config keys and native extras that will not carry over to Kafka",
             "Reads a Python program or a client config (key=value properties, or JSON) and lists, one line each "
             "as FILE:LINE, what will not carry over to a Kafka cluster when the import changes from broker.kafka "
             "to confluent_kafka. Exit 0: nothing found; 1: findings; 2: a file cannot be read or parsed.")
    t.add_argument("files", nargs="+", metavar="FILE.py|CONFIG", help="a .py program, or a client config file")
