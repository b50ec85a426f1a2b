"""perf/compare.py's output: RESULTS.md (tables of medians and ranges over
runs, the targets, the machine), the PNG plots (percentile distributions at
each fixed rate, latency against offered rate, throughput against record
size).  Everything here reads the results dict compare.py also writes as
results.json."""
import math
import os
import statistics

from compare_peers import ShmRaw
from perfutil import verdict

PCTS = ("p50", "p90", "p99", "p99.9", "p99.99", "max")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def g(x, unit=""):
    """A figure with 3 significant digits (no exponent below a billion)."""
    if x is None:
        return "-"
    if x == 0:
        return "0" + unit
    d = max(0, 2 - int(math.floor(math.log10(abs(x)))))
    return "%.*f%s" % (d, x, unit)


def mr(xs, scale=1.0):
    """'median (min-max)' of a list over runs."""
    xs = [x * scale for x in xs if x is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return g(xs[0])
    return "%s (%s-%s)" % (g(statistics.median(xs)), g(min(xs)), g(max(xs)))


# ---- targets ---------------------------------------------------------------------------------
def _by_run(rows, key):
    """{run: row[key]}; rows of an older results.json have no run number, and a failed run shifts the
    positions of the rest: those are keyed apart (("?", id(rows), i)), so they pair with nothing (the
    ratio of the medians then)."""
    return {r["run"] if "run" in r else ("?", id(rows), i): r[key] for i, r in enumerate(rows or [])
            if r.get(key) is not None} or None


def _lat_p50(res, rate, ch):
    return _by_run(res["latency"].get(str(rate), {}).get(ch, {}).get("runs"), "p50")


def _tp(res, size, ch, key="records_per_s"):
    return _by_run(res["throughput"].get(str(size), {}).get(ch, {}).get("runs"), key)


def _med(by_run):
    return None if by_run is None else med(list(by_run.values()))


def _u(x, unit):
    if unit == " rec/s":
        return "%s M rec/s" % g(x / 1e6)
    if unit == " B/s":
        return "%s GB/s" % g(x / 1e9)
    return g(x) + unit


def paired_ratio(a, b):
    """a / b for two {run: value} (or a plain number for a fixed target): the median over the runs
    both have of the ratio within each run - the two rows of one run ran minutes apart on the same
    machine, while runs differ with its load - else (no run in common) the ratio of the medians.
    Returns (ratio, median of a, median of b)."""
    am = _med(a) if isinstance(a, dict) else a
    bm = _med(b) if isinstance(b, dict) else b
    if isinstance(a, dict) and isinstance(b, dict):
        both = [a[k] / b[k] for k in a if k in b and b[k]]
    elif isinstance(a, dict):
        both = [x / b for x in a.values()] if b else []
    else:
        both = [a / x for x in b.values() if x]
    if both:
        return med(both), am, bm
    return (am / bm if bm else None), am, bm


def targets(res):
    """[(text, met or None, ratio, detail)]: the issue's "lead every row" targets, each the median over
    runs of its ratio within a run (paired_ratio)."""
    rate = res["args"]["target_rate"]
    floor = _by_run(res["floors"].get("python"), "p50")
    raw, kaf = "shmbroker-raw/spin", "shmbroker-kafka/spin"
    out = []

    def cmp(text, a, b, factor, what_a, what_b, unit, ok):
        if a is None or b is None:
            out.append((text, None, None, "not measured: %s" % (what_a if a is None else what_b)))
            return
        ratio, am, bm = paired_ratio(a, b)
        if ratio is None:
            out.append((text, None, None, "not measured: %s is 0" % what_b))
            return
        out.append((text, ok(ratio, factor), ratio, "%s %s / %s %s" % (what_a, _u(am, unit), what_b, _u(bm, unit))))

    def le(*args):
        """a <= factor * b"""
        cmp(*args, ok=lambda r, f: r <= f)

    def ge(*args):
        """a >= factor * b"""
        cmp(*args, ok=lambda r, f: r >= f)

    r_raw, r_kaf, r_iox = _lat_p50(res, rate, raw), _lat_p50(res, rate, kaf), _lat_p50(res, rate, "iceoryx2")
    le("polling p50 at %g/s: raw log <= 4x the Python floor" % rate, r_raw, floor, 4, "raw", "floor", " us")
    le("polling p50 at %g/s: Kafka API <= 1.5x the raw log" % rate, r_kaf, r_raw, 1.5, "Kafka API", "raw", " us")
    ge("polling p50 at %g/s: raw log >= 3x below iceoryx2" % rate, r_iox, r_raw, 3, "iceoryx2", "raw", " us")
    ge("polling p50 at %g/s: Kafka API >= 3x below iceoryx2" % rate, r_iox, r_kaf, 3, "iceoryx2", "Kafka API", " us")
    s = 64
    for ch, what in ((raw, "raw log"), (kaf, "Kafka API")):
        ge("64 B end to end: %s >= 2x the naive ring" % what, _tp(res, s, ch), _tp(res, s, "pyring"), 2,
           what, "naive ring", " rec/s")
        ge("64 B end to end: %s >= 3x pyzmq" % what, _tp(res, s, ch), _tp(res, s, "pyzmq"), 3, what, "pyzmq",
           " rec/s")
    bs = res["args"]["size"]
    b_raw, b_kaf = _tp(res, bs, "shmbroker-raw/batch"), _tp(res, bs, "shmbroker-kafka/batch")
    ge("batched end to end, %d B rows into a 2-D array: raw >= 20 M records/s" % bs, b_raw, 20e6, 1, "raw",
       "target", " rec/s")
    ge("batched end to end, %d B through consume(): Kafka API >= 5 M records/s" % bs, b_kaf, 5e6, 1, "Kafka API",
       "target", " rec/s")
    s = 65536
    mc = dict(enumerate(res["floors"].get("memcpy", {}).get(str(s), []))) or None  # one a run, in order
    for ch, what in ((raw, "raw log"), (kaf, "Kafka API")):
        a = _tp(res, s, ch, "bytes_per_s")
        ge("64 KiB end to end: %s >= the naive ring" % what, a, _tp(res, s, "pyring", "bytes_per_s"), 1, what,
           "naive ring", " B/s")
        ge("64 KiB end to end: %s >= 2x iceoryx2" % what, a, _tp(res, s, "iceoryx2", "bytes_per_s"), 2, what,
           "iceoryx2", " B/s")
        ge("64 KiB end to end: %s >= 30%% of memcpy" % what, a, mc, 0.3, what, "memcpy", " B/s")
    pipe = _lat_p50(res, rate, "mp-pipe")
    le("blocking p50 at %g/s: raw log (sleep) <= multiprocessing.Pipe" % rate,
       _lat_p50(res, rate, "shmbroker-raw/sleep"), pipe, 1, "raw sleep", "Pipe", " us")
    le("blocking p50 at %g/s: Kafka API (sleep) <= multiprocessing.Pipe" % rate,
       _lat_p50(res, rate, "shmbroker-kafka/sleep"), pipe, 1, "Kafka API sleep", "Pipe", " us")
    return out


def target_lines(res):
    lines = []
    for text, met, ratio, detail in targets(res):
        word = verdict(met)
        lines.append("target %s: %s (%s)" % (text, word, detail if ratio is None else "ratio %sx; %s" % (
            g(ratio), detail)))
    return lines


def reference_lines(res):
    """Beside the polling target: the raw log against the Python store-and-spin hand-off measured in the
    same open loop (the ping-pong floor the target names is a closed loop)."""
    rate = res["args"]["target_rate"]
    raw, ref = _lat_p50(res, rate, "shmbroker-raw/spin"), _lat_p50(res, rate, "pyfloor")
    if raw is None or ref is None:
        return []
    ratio, am, bm = paired_ratio(raw, ref)
    if ratio is None:
        return []
    return ["reference, not a target: polling p50 at %g/s: raw log / the Python store-and-spin hand-off in the same "
            "open loop: %sx (raw %s / hand-off %s)" % (rate, g(ratio), _u(am, " us"), _u(bm, " us"))]


# ---- RESULTS.md ------------------------------------------------------------------------------
def _label(res, ch):
    return res["labels"].get(ch, ch)


def markdown(res):
    a, m = res["args"], res["machine"]
    L = ["# perf/compare.py results", "",
         "%s; %s, %d cores, Linux %s, Python %s; %d run(s)%s; %s." % (
             res["date"], m["cpu"], m["cores"], m["kernel"], m["python"], a["runs"],
             ", producer and consumer pinned to CPUs %s" % (a["pins"],) if a["pin"] else "",
             "`%s`" % res["command"]),
         "", "Each cell is the median over runs, with the range (min-max) in brackets. Every measurement ran "
         "alone (back to back), between one producer process and one consumer process.", ""]
    if res["skipped"] or res["errors"]:
        L += ["## Not measured", ""]
        L += ["- %s: skipped: %s" % (n, why) for n, why in sorted(res["skipped"].items())]
        L += ["- %s: failed: %s" % (what, why.strip().splitlines()[-1]) for what, why in res["errors"]]
        L.append("")
    L += ["## Targets", "", "```"] + target_lines(res) + reference_lines(res) + ["```", ""]
    fl = res["floors"]
    L += ["## Floors", "", "| floor | p50 us | p90 us | p99 us | p99.9 us |", "|---|---|---|---|---|"]
    for key, what in (("python", "Python shm ping-pong, one way (no broker)"), ("c", "C shm ping-pong, one way")):
        runs = [r for r in fl.get(key, []) if isinstance(r, dict)]
        if runs:
            L.append("| %s | %s |" % (what, " | ".join(mr([r[p] for r in runs]) for p in ("p50", "p90", "p99",
                                                                                             "p99.9"))))
        elif fl.get(key + "_note"):
            L.append("| %s | %s | | | |" % (what, fl[key + "_note"]))
    if fl.get("memcpy"):
        L += ["", "memcpy (GB/s) into a ring of the contenders' size: " + ", ".join(
            "%s B %s" % (s, mr(v, 1e-9)) for s, v in fl["memcpy"].items())]
    if fl.get("memcpy_cache"):
        other = fl.get("memcpy_other_ring", 1 << 22)
        L += ["", "memcpy (GB/s) into a %d MiB ring (%s; not a target's reference): " % (
            other >> 20, "in the CPU's cache" if other <= 1 << 22 else "through memory") + ", ".join(
            "%s B %s" % (s, mr(v, 1e-9)) for s, v in fl["memcpy_cache"].items())]
    L.append("")
    for rate, chans in res["latency"].items():
        L += ["## Latency at %s records/s (open loop, 64 B unless stated; us from the intended send time)" % rate,
              "", "| peer | p50 | p90 | p99 | p99.9 | p99.99 | max | p50 from actual send | rate reached | "
              "consumer CPU us/record |", "|---|---|---|---|---|---|---|---|---|---|"]
        for ch, d in chans.items():
            runs = d["runs"]
            sat = " (saturated)" if any(r["saturated"] for r in runs) else ""
            L.append("| %s | %s | %s | %s | %s |" % (
                _label(res, ch), " | ".join(mr([r[p] for r in runs]) for p in PCTS),
                mr([r["uncorrected_p50"] for r in runs]), mr([r["reached"] for r in runs]) + sat,
                mr([r["cpu_us"] for r in runs])))
        L.append("")
    if res["sweep"]:
        rates = sorted({float(p["rate"]) for pts in res["sweep"].values() for p in pts})
        L += ["## Latency against offered rate (p50 / p99 / p99.9 us, medians; `sat`: the rate was not reached)",
              "", "| peer | " + " | ".join("%g/s" % r for r in rates) + " | highest rate held |",
              "|---|" + "---|" * (len(rates) + 1)]
        for ch, pts in res["sweep"].items():
            by = {float(p["rate"]): p for p in pts}
            cells, held = [], None
            for r in rates:
                p = by.get(r)
                if p is None:
                    cells.append("")
                    continue
                runs = p["runs"]
                sat = sum(x["saturated"] for x in runs) * 2 > len(runs)
                if not sat:
                    held = r
                cells.append("%s / %s / %s%s" % (g(med([x["p50"] for x in runs])), g(med([x["p99"] for x in runs])),
                                                 g(med([x["p99.9"] for x in runs])), " sat" if sat else ""))
            L.append("| %s | %s | %s |" % (_label(res, ch), " | ".join(cells), "%g/s" % held if held else "-"))
        L.append("")
    if res["throughput"]:
        sizes = list(res["throughput"])
        chans = []
        for s in sizes:
            chans += [c for c in res["throughput"][s] if c not in chans]
        for key, what, scale in (("records_per_s", "records/s (M)", 1e-6), ("bytes_per_s", "GB/s", 1e-9)):
            L += ["## Throughput end to end, one call per record (batch rows: %d records a call): %s"
                  % (a["batch"], what), "", "| peer | " + " | ".join("%s B" % s for s in sizes) + " |",
                  "|---|" + "---|" * len(sizes)]
            for ch in chans:
                L.append("| %s | %s |" % (_label(res, ch), " | ".join(
                    mr([r[key] for r in res["throughput"][s][ch]["runs"]], scale) if ch in res["throughput"][s]
                    else "" for s in sizes)))
            L.append("")
        L += ["## Consumer CPU per record in the throughput runs (us; process CPU time / records)", "",
              "| peer | " + " | ".join("%s B" % s for s in sizes) + " |", "|---|" + "---|" * len(sizes)]
        for ch in chans:
            L.append("| %s | %s |" % (_label(res, ch), " | ".join(
                mr([r["cpu_us"] for r in res["throughput"][s][ch]["runs"]]) if ch in res["throughput"][s] else ""
                for s in sizes)))
        L.append("")
    L += ["## How to read this", "",
          "- Latency is one way, producer process to consumer process, from each record's *intended* send time "
          "(record i is due at start + i / rate): a stall of the producer or the consumer counts for every record "
          "it held back (coordinated omission corrected). `p50 from actual send` starts at the real send instead. "
          "The producer stamps and sends as its pacer's wait ends (no clock call between); the consumer stamps "
          "as it has the payload: the raw log's `poll_value`, the Kafka API's `poll()` then `value()`.",
          "- `rate reached` below the offered rate means the peer could not keep up: its latencies then grow "
          "with the length of the run. The rate sweep stops at the first rate a peer does not hold.",
          "- Wait modes of shmbroker: spin (poll in a loop), adaptive (spin briefly, then sleep on a futex), "
          "sleep (futex at once). iceoryx2 and the naive ring poll; the others block in the kernel.",
          "- Throughput counts from the producer's first send to the consumer's last record, one call per "
          "record (batch rows: 2-D arrays of records in, `read_batch_array` / `consume(n)` out). shmbroker's "
          "rings and the naive ring hold %d MiB (`--ring-mib`) - for records of 64 KiB and more, 64 records (4 "
          "MiB at 64 KiB, as deep as the 1 MiB records' 64 MiB ring): a ring larger than the CPU's cache streams "
          "through memory, where iceoryx2's publisher reuses a few buffers that stay in cache. The raw log reads "
          "values of %d KiB and more in place (`LogReader.poll_view`), as iceoryx2's subscriber does, and the "
          "Kafka API's consumer then has `shm.zero.copy` on (`value()` a view of the ring); neither reads those "
          "values' bytes (`check.crcs` off, the default: a view is not checksummed; a copy always is), nor does "
          "iceoryx2's subscriber, while the naive ring's consumer copies each value out. Every "
          "process maps its whole ring before it is timed (shmbroker's `shm.pre.touch`, the naive ring's "
          "MADV_POPULATE_WRITE)." %
          (res["args"].get("ring_mib", 64), ShmRaw.VIEW_MIN >> 10),
          "- Targets are ratios between rows of this invocation, so they hold on any machine: each is the "
          "median over runs of the ratio within a run (the rows of a run ran minutes apart; runs differ with "
          "the machine's load); the figures beside a ratio are the rows' medians. Absolute figures move with "
          "the machine and its load.", ""]
    if res.get("plots"):
        L += ["Plots: " + ", ".join("[%s](%s)" % (p, p) for p in res["plots"]), ""]
    return "\n".join(L)


# ---- the README's Numbers block -----------------------------------------------------------------
README_BEGIN = "<!-- perf/compare.py: begin (generated: python perf/compare.py --update-readme README.md) -->"
README_END = "<!-- perf/compare.py: end -->"


def readme_block(res):
    """A dated paragraph of this run's headline figures and its targets, for
    the README's Numbers section (between README_BEGIN and README_END)."""
    a, m = res["args"], res["machine"]
    rate = a["target_rate"]
    floor = med([r["p50"] for r in res["floors"].get("python", [])])

    def lat(ch):
        return g(_med(_lat_p50(res, rate, ch)), " us")

    def tp(size, ch, key="records_per_s"):
        x = _med(_tp(res, size, ch, key))
        return "-" if x is None else (_u(x, " rec/s") if key == "records_per_s" else _u(x, " B/s"))
    lines = [README_BEGIN,
             "`%s` on %s (%s, %d cores, Linux %s, Python %s; %d run(s), medians):" % (
                 res["command"], res["date"], m["cpu"], m["cores"], m["kernel"], m["python"], a["runs"]),
             "polling p50 at %g records/s: raw log %s, Kafka API %s, iceoryx2 %s, Python floor %s (ping-pong, "
             "closed loop), Python store-and-spin hand-off %s (the same open loop); "
             "multiprocessing.Pipe (blocking) %s against raw log (sleep) %s and Kafka API (sleep) %s." % (
                 rate, lat("shmbroker-raw/spin"), lat("shmbroker-kafka/spin"), lat("iceoryx2"), g(floor, " us"),
                 lat("pyfloor"),
                 lat("mp-pipe"), lat("shmbroker-raw/sleep"), lat("shmbroker-kafka/sleep")),
             "64 B end to end, one call a record: raw log %s, Kafka API %s, naive ring %s, pyzmq %s; batched "
             "(%d B rows): raw %s, consume() %s.  64 KiB: raw log %s, Kafka API %s, iceoryx2 %s, naive ring %s." % (
                 tp(64, "shmbroker-raw/spin"), tp(64, "shmbroker-kafka/spin"), tp(64, "pyring"), tp(64, "pyzmq"),
                 a["size"], tp(a["size"], "shmbroker-raw/batch"), tp(a["size"], "shmbroker-kafka/batch"),
                 tp(65536, "shmbroker-raw/spin", "bytes_per_s"), tp(65536, "shmbroker-kafka/spin", "bytes_per_s"),
                 tp(65536, "iceoryx2", "bytes_per_s"), tp(65536, "pyring", "bytes_per_s"))]
    met = [t for t, ok, _, _ in targets(res) if ok]
    missed = [t for t, ok, _, _ in targets(res) if ok is False]
    lines.append("Targets met: %d; MISSED: %d%s." % (len(met), len(missed),
                                                    (" (" + "; ".join(missed) + ")") if missed else ""))
    lines.append(README_END)
    return "\n".join(lines)


def update_readme(path, res):
    """Replace the block between the markers in *path* with this run's."""
    with open(path) as f:
        text = f.read()
    i, j = text.find(README_BEGIN), text.find(README_END)
    if i < 0 or j < i:
        raise SystemExit("%s has no %r ... %r block to replace" % (path, README_BEGIN, README_END))
    with open(path, "w") as f:
        f.write(text[:i] + readme_block(res) + text[j + len(README_END):])


# ---- plots -----------------------------------------------------------------------------------
def plots(res, stages, out_dir):
    """The PNGs; returns their file names.  *stages*: {rate: {channel: merged corrected Stage}}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from broker.latency import plot
    names = []
    for rate, chans in stages.items():
        name = "latency_%s.png" % rate
        plot(os.path.join(out_dir, name), {_label(res, ch): st for ch, st in chans.items() if st.count},
             "one-way latency at %s records/s, open loop (from intended send time)" % rate)
        names.append(name)
    if res["sweep"]:
        fig, axes = plt.subplots(1, 3, figsize=(16, 5.5), dpi=100, sharey=True)
        for ax, p in zip(axes, ("p50", "p99", "p99.9")):
            for ch, pts in res["sweep"].items():
                xs = [float(q["rate"]) for q in pts]
                ys = [med([r[p] for r in q["runs"]]) for q in pts]
                ax.plot(xs, ys, marker="o", ms=3, label=_label(res, ch))
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title("%s latency against offered rate" % p)
            ax.set_xlabel("offered rate (records/s)")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].set_ylabel("latency (us, from intended send time)")
        axes[-1].legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "latency_vs_rate.png"))
        plt.close(fig)
        names.append("latency_vs_rate.png")
    if res["throughput"]:
        fig, ax = plt.subplots(figsize=(9, 5.5), dpi=100)
        sizes = [int(s) for s in res["throughput"]]
        chans = []
        for s in res["throughput"]:
            chans += [c for c in res["throughput"][s] if c not in chans]
        for ch in chans:
            xs = [s for s in sizes if ch in res["throughput"][str(s)]]
            ys = [med([r["bytes_per_s"] for r in res["throughput"][str(s)][ch]["runs"]]) / 1e9 for s in xs]
            ax.plot(xs, ys, marker="o", ms=3, label=_label(res, ch))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("record size (bytes)")
        ax.set_ylabel("GB/s end to end")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        ax.set_title("throughput against record size, one producer -> one consumer")
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "throughput.png"))
        plt.close(fig)
        names.append("throughput.png")
    return names
