"""The markdown report: machine, per-cell tables with medians over rounds, ratios, scale
points, and a met / not met line per target of issues #8 and #5.

How numbers are combined over rounds: ops/s is the median with min-max; p50 and p99
latency are medians of each round's percentile, max latency is the worst over rounds;
server CPU seconds and ops per server-CPU-second are medians; peak RSS is the largest.
Ratios compare medians: ``etcdlite/etcd`` and ``etcdlite/noop`` of ops/s.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.measure import CellResult
from bench.scale import ScaleResult
from bench.servers import REPO_ROOT, TargetSpec, etcd_binary, etcd_version

if TYPE_CHECKING:
    from bench.run import Profile

REFERENCE = "etcd"
LIMIT = "noop"
LIMIT_SHARE = 0.85
LATENCY_FACTOR = 1.2
RSS_FACTOR = 0.5


# -- machine ------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def source_commit(repo: Path) -> str:
    """``<sha> (<date>)``, with ``+ uncommitted changes`` when the tree is dirty."""
    sha = _git(repo, "rev-parse", "HEAD")
    if not sha:
        return "unknown (not a git checkout)"
    date = _git(repo, "log", "-1", "--format=%cI")
    dirty = _git(repo, "status", "--porcelain", "--untracked-files=no", "--", "server",
                 "storage", "raft", "protos")
    return f"{sha} ({date})" + (" + uncommitted changes" if dirty else "")


def etcdlite_source() -> Path:
    """The checkout the ``etcdlite`` package is imported from (what the servers run)."""
    spec = util.find_spec("etcdlite.server")
    if spec is None or spec.origin is None:
        return REPO_ROOT
    return Path(spec.origin).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    """What the report header shows about the machine and the software."""
    src = etcdlite_source()
    binary = etcd_binary()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 0,
        "memory_gib": round(_mem_total_gib(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": _version("grpcio"),
        "protobuf": _version("protobuf"),
        "etcdlite_commit": source_commit(src),
        "etcdlite_source": str(src),
        "bench_commit": source_commit(REPO_ROOT),
        "etcd": etcd_version(binary) if binary else "not installed",
    }


# -- aggregation --------------------------------------------------------------------------


@dataclass
class Agg:
    """One (target, workload, clients) over its rounds."""

    target: str
    workload: str
    clients: int
    rounds: int
    ops_med: float
    ops_min: float
    ops_max: float
    p50: float
    p99: float
    max_ms: float
    cpu: float
    rss_mib: float
    per_cpu: float
    other_cpu: float
    client_cpu: float
    errors: int
    failed: list[str]
    counters: dict[str, int]
    events: tuple[int, int]


def _med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def aggregate(cells: list[CellResult]) -> dict[tuple[str, str, int], Agg]:
    groups: dict[tuple[str, str, int], list[CellResult]] = {}
    for c in cells:
        groups.setdefault((c.target, c.workload, c.clients), []).append(c)
    out = {}
    for key, cs in groups.items():
        ok = [c for c in cs if not c.failed]
        counters: dict[str, int] = {}
        for c in ok:
            for k, v in c.counters.items():
                counters[k] = counters.get(k, 0) + v
        ops = [c.ops_per_s for c in ok]
        out[key] = Agg(
            *key, rounds=len(ok), ops_med=_med(ops), ops_min=min(ops, default=0.0),
            ops_max=max(ops, default=0.0), p50=_med([c.p50_ms for c in ok]),
            p99=_med([c.p99_ms for c in ok]), max_ms=max((c.max_ms for c in ok), default=0.0),
            cpu=_med([c.cpu_s for c in ok]),
            rss_mib=max((c.peak_rss_kib for c in ok), default=0) / 1024,
            per_cpu=_med([c.ops_per_cpu_s for c in ok]),
            other_cpu=_med([c.other_cpu_s for c in ok]),
            client_cpu=_med([c.client_cpu_s for c in ok]),
            errors=sum(c.errors for c in ok), failed=[c.failed for c in cs if c.failed],
            counters=counters,
            events=(sum(c.ops for c in ok), sum(c.expected_events for c in ok)))
    return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if a > 0 and b > 0 else None


def _fmt_ratio(r: float | None) -> str:
    return f"{r:.2f}" if r is not None else "-"


def _fmt_n(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


# -- rendering ----------------------------------------------------------------------------

_WORKLOAD_TEXT = {
    "put": "Put of one of {key_count} keys, {value_size}-byte values",
    "range-linear": "linearizable Range of one key",
    "range-serial": "serializable Range of one key",
    "range-prefix": "linearizable Range of a {prefix_keys}-key prefix",
    "txn": "compare-and-put Txn on the client's own key (mod_revision == last seen)",
    "lease": "LeaseGrant + one keepalive round trip on an open stream",
    "watch": "fan-out: watchers on one key, {watch_puts} puts; ops/s = events delivered "
             "per second, latencies = delivery lag (put sent -> event read)",
}

_LIMIT_TEXT = {
    "put": "canned PutResponse",
    "range-linear": "one canned key-value",
    "range-serial": "one canned key-value",
    "range-prefix": "a ready-made 1,000-pair response, serialized per call",
    "txn": "canned succeeded TxnResponse",
    "lease": "canned grant, keepalive echoed",
    "watch": "each Put sends one event to every open watcher (no MVCC, no history)",
}


def render(prof: Profile, meta: dict[str, Any], cells: list[CellResult],
           scale: list[ScaleResult], starts: dict[str, list[float]], notes: list[str],
           specs: dict[str, TargetSpec]) -> str:
    """The whole report."""
    aggs = aggregate(cells)
    targets = list(prof.targets)
    out: list[str] = []
    w = out.append
    w(f"# etcdlite benchmark ({prof.name} run)\n")
    w(_header(prof, meta, specs, cells))
    if cells:
        w("## Summary: median ops/s\n")
        w(_summary(prof, aggs, targets, "ops_med"))
        w("For `watch` the numbers are events delivered per second.\n")
        w("## Summary: median ops per server-CPU-second\n")
        w("Less sensitive than ops/s to CPU the clients and other jobs take from the "
          "server.\n")
        w(_summary(prof, aggs, targets, "per_cpu"))
    w("## Targets\n")
    w(_targets(aggs, scale, prof.scale.keys))
    if cells:
        w("## Workloads\n")
        w(_details(prof, aggs, targets))
    if starts:
        w("## Start time, empty data dir\n")
        w("Seconds from process start to the first answered Status, per round.\n")
        w("| target | median s | min-max |\n|---|---:|---|")
        for t, xs in starts.items():
            w(f"| {t} | {_med(xs):.2f} | {min(xs):.2f}-{max(xs):.2f} |")
        w("")
    if scale:
        w("## Scale points\n")
        w(_scale(prof, scale))
    w("## Notes\n")
    w(_notes(prof, aggs, notes, int(meta.get("cores") or 1)))
    return "\n".join(out).rstrip() + "\n"


def _outside_load(cells: list[CellResult], cores: int) -> str:
    """How much of the machine other jobs used during the measured windows."""
    shares = sorted(c.other_cpu_s / (c.seconds * cores) for c in cells
                    if not c.failed and c.seconds > 0 and cores)
    if not shares:
        return "not measured"
    return (f"median {_med(shares):.0%} of the machine's CPU during a measured window "
            f"(max {shares[-1]:.0%}); used by processes outside this harness")


def _header(prof: Profile, meta: dict[str, Any], specs: dict[str, TargetSpec],
            cells: list[CellResult]) -> str:
    lines = [
        "| | |", "|---|---|",
        f"| date | {meta['date']} |",
        f"| machine | {meta['cpu']}, {meta['cores']} cores, {meta['memory_gib']} GiB, "
        f"Linux {meta['kernel']} |",
        f"| software | Python {meta['python']}, grpcio {meta['grpcio']}, "
        f"protobuf {meta['protobuf']}, {meta['etcd']} |",
        f"| etcdlite commit | {meta['etcdlite_commit']}, run from `{meta['etcdlite_source']}` |",
        f"| bench commit | {meta['bench_commit']} |",
        f"| command | `{meta['command']}` |",
        f"| wall time | {meta['wall_s'] / 60:.1f} min |",
        f"| load average | {_fmt_load(meta['loadavg_start'])} at start, "
        f"{_fmt_load(meta['loadavg_end'])} at end |",
        f"| outside load | {_outside_load(cells, meta['cores'])} |",
        f"| rounds | {prof.rounds}; each cell {prof.warmup_s:g} s warm-up + "
        f"{prof.duration_s:g} s measured |",
    ]
    tdesc = []
    for name in prof.targets:
        s = specs[name]
        flags = " " + " ".join(s.flags) if s.flags else ""
        tdesc.append(f"`{name}` = {s.kind}{flags}")
    lines.append(f"| targets | {'; '.join(tdesc)} |")
    p = prof.params
    lines.append(f"| clients | closed loop; split over the load worker processes, "
                 f"{p.clients_per_conn} clients per gRPC connection |")
    text = "\n".join(lines) + "\n\n"
    text += (
        f"**Caveat: the load generator runs on the same {meta['cores']} cores as the server "
        "under test.** Its Python gRPC clients need roughly as much CPU per request as the "
        "server, so every throughput here is a share of one machine split between clients "
        "and server, and the no-op server is the limit *of this harness*, not of gRPC. "
        "The *other CPU* column is CPU time used in the window by processes that are "
        "neither the harness nor a server (other jobs on the machine): when it is not "
        "near 0 that cell was disturbed.\n")
    return text


def _fmt_load(la: Sequence[float]) -> str:
    return "/".join(f"{x:.2f}" for x in la)


def _summary(prof: Profile, aggs: dict[tuple[str, str, int], Agg], targets: list[str],
             attr: str) -> str:
    """One row per cell: ``attr`` of each target, and the etcdlite targets' ratios."""
    lite = [t for t in targets if t.startswith("etcdlite")]
    head = ["workload", "clients", *targets]
    for t in lite:
        if REFERENCE in targets:
            head.append(f"{t}/{REFERENCE}")
        if LIMIT in targets:
            head.append(f"{t}/{LIMIT}")
    rows = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * (len(head) - 2)]
    for workload, counts in prof.plan.items():
        for c in counts:
            row = [workload, str(c)]
            for t in targets:
                a = aggs.get((t, workload, c))
                row.append(_fmt_n(getattr(a, attr)) if a and a.rounds else "-")
            for t in lite:
                a = aggs.get((t, workload, c))
                for other in (REFERENCE, LIMIT):
                    if other not in targets:
                        continue
                    b = aggs.get((other, workload, c))
                    r = _ratio(getattr(a, attr), getattr(b, attr)) if a and b else None
                    row.append(_fmt_ratio(r))
            rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows) + "\n"


def _details(prof: Profile, aggs: dict[tuple[str, str, int], Agg], targets: list[str]) -> str:
    p = prof.params
    out = []
    for workload, counts in prof.plan.items():
        desc = _WORKLOAD_TEXT[workload].format(**vars(p))
        for c in counts:
            if not any((t, workload, c) in aggs for t in targets):
                continue
            unit = "watchers" if workload == "watch" else "clients" if c > 1 else "client"
            out.append(f"### {workload}, {c} {unit}\n")
            out.append(f"{desc}. No-op limit: {_LIMIT_TEXT[workload]}.\n")
            rate = "events/s" if workload == "watch" else "ops/s"
            lat = " lag" if workload == "watch" else ""
            out.append(f"| target | {rate} (median) | min-max | p50{lat} ms | p99{lat} ms "
                       f"| max{lat} ms | server CPU s | peak RSS MiB | ops/CPU-s "
                       f"| client CPU s | other CPU s | vs etcd | vs noop |")
            out.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for t in targets:
                a = aggs.get((t, workload, c))
                if a is None:
                    continue
                if not a.rounds:
                    out.append(f"| {t} | failed: {a.failed[0][:80]} |" + " |" * 11)
                    continue
                ref, lim = aggs.get((REFERENCE, workload, c)), aggs.get((LIMIT, workload, c))
                vs_ref = _ratio(a.ops_med, ref.ops_med) if ref and t != REFERENCE else None
                vs_lim = _ratio(a.ops_med, lim.ops_med) if lim and t != LIMIT else None
                per_cpu = _fmt_n(a.per_cpu) if a.per_cpu else "-"
                out.append(
                    f"| {t} | {_fmt_n(a.ops_med)} | {_fmt_n(a.ops_min)}-{_fmt_n(a.ops_max)} "
                    f"| {a.p50:.2f} | {a.p99:.2f} | {a.max_ms:.1f} | {a.cpu:.2f} "
                    f"| {a.rss_mib:.0f} | {per_cpu} | {a.client_cpu:.2f} "
                    f"| {a.other_cpu:.2f} | {_fmt_ratio(vs_ref)} | {_fmt_ratio(vs_lim)} |")
            extra = _cell_notes(workload, [aggs[(t, workload, c)] for t in targets
                                           if (t, workload, c) in aggs])
            out.append("\n" + extra if extra else "")
    return "\n".join(out) + "\n"


def _cell_notes(workload: str, group: list[Agg]) -> str:
    lines = []
    for a in group:
        if a.errors:
            lines.append(f"- {a.target}: {a.errors} failed requests in the windows")
        if a.failed:
            lines.append(f"- {a.target}: {len(a.failed)} round(s) failed: {a.failed[0][:200]}")
        if workload == "txn" and a.counters:
            lines.append(f"- {a.target}: txn succeeded {a.counters.get('txn_succeeded', 0)}, "
                         f"failed compare {a.counters.get('txn_failed', 0)}")
        if workload == "watch" and a.events[1]:
            lines.append(f"- {a.target}: {a.events[0]:,} of {a.events[1]:,} events delivered")
    return "\n".join(lines) + "\n" if lines else ""


def _check(label: str, value: float | None, ok: Callable[[float], bool], shown: str) -> str:
    if value is None:
        return f"- **not measured**: {label}"
    verdict = "met" if ok(value) else "not met"
    return f"- **{verdict}**: {label}: {shown}"


def _targets(aggs: dict[tuple[str, str, int], Agg], scale: list[ScaleResult],
             keys: int) -> str:
    lines = []

    def ops(t: str, w: str, c: int) -> float:
        a = aggs.get((t, w, c))
        return a.ops_med if a and a.rounds else 0.0

    def per_cpu(t: str, w: str, c: int) -> float:
        a = aggs.get((t, w, c))
        return a.per_cpu if a and a.rounds else 0.0

    def limit_share(target: str, workload: str, clients: int, label: str) -> None:
        r = _ratio(ops(target, workload, clients), ops(LIMIT, workload, clients))
        eff = _ratio(per_cpu(target, workload, clients), per_cpu(LIMIT, workload, clients))
        shown = (f"{r:.2f} of no-op ({ops(target, workload, clients):,.0f} vs "
                 f"{ops(LIMIT, workload, clients):,.0f} ops/s; per server-CPU-second "
                 f"{_fmt_ratio(eff)})") if r else ""
        lines.append(_check(f"{label} at {clients} clients >= {LIMIT_SHARE:.0%} of the no-op "
                            "limit", r, lambda x: x >= LIMIT_SHARE, shown))

    lines.append("Issue #8 (targets to report against, not assertions):\n")
    limit_share("etcdlite", "put", 64, "durable put")
    limit_share("etcdlite", "range-linear", 64, "linearizable range")
    for w in ("put", "range-linear", "range-serial", "range-prefix", "txn"):
        a, b = aggs.get(("etcdlite", w, 1)), aggs.get((REFERENCE, w, 1))
        r = _ratio(a.p50, b.p50) if a and b and a.rounds and b.rounds else None
        shown = f"p50 {a.p50:.2f} ms vs etcd {b.p50:.2f} ms = {r:.2f}x" if r and a and b else ""
        lines.append(_check(f"{w} latency at 1 client within {LATENCY_FACTOR}x of etcd", r,
                            lambda x: x <= LATENCY_FACTOR, shown))
    rss = {s.target: s.values for s in scale if s.point == "keys" and not s.failed}
    lite, ref = rss.get("etcdlite", {}), rss.get(REFERENCE, {})
    r = _ratio(lite.get("rss_restarted_mib", 0.0), ref.get("rss_restarted_mib", 0.0))
    loaded = _ratio(lite.get("rss_loaded_mib", 0.0), ref.get("rss_loaded_mib", 0.0))
    shown = (f"{lite.get('rss_restarted_mib', 0):.0f} MiB vs etcd "
             f"{ref.get('rss_restarted_mib', 0):.0f} MiB = {r:.2f}x once restarted on them "
             f"(right after loading them: {_fmt_ratio(loaded)}x)") if r else ""
    lines.append(_check(f"RSS with {keys:,} keys <= {RSS_FACTOR}x etcd's", r,
                        lambda x: x <= RSS_FACTOR, shown))
    watch = sorted({c for (t, w, c) in aggs if w == "watch"})
    for c in watch:
        r = _ratio(ops("etcdlite", "watch", c), ops(REFERENCE, "watch", c))
        shown = (f"{ops('etcdlite', 'watch', c):,.0f} vs etcd {ops(REFERENCE, 'watch', c):,.0f} "
                 f"events/s = {r:.2f}x") if r else ""
        lines.append(_check(f"watch fan-out with {c} watchers >= etcd's events/s", r,
                            lambda x: x >= 1.0, shown))
    if not watch:
        lines.append("- **not measured**: watch fan-out")
    lines.append("\nIssue #5 (durability): put at 1, 16 and 64 clients as a share of the "
                 "no-op server, with and without `--unsafe-no-fsync`:\n")
    for c in (1, 16, 64):
        parts = []
        for t in ("etcdlite", "etcdlite-nofsync"):
            r = _ratio(ops(t, "put", c), ops(LIMIT, "put", c))
            if r is not None:
                parts.append(f"{t} {r:.2f}")
        if parts:
            lines.append(f"- {c} client{'s' if c > 1 else ''}: " + ", ".join(parts))
    limit_share("etcdlite", "put", 64, "durable put (#5)")
    return "\n".join(lines) + "\n"


_SCALE_COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "keys": [("load_keys_per_s", "load keys/s", "{:,.0f}"),
             ("rss_loaded_mib", "RSS loaded MiB", "{:.0f}"),
             ("range_p50_ms", "range p50 ms", "{:.1f}"),
             ("range_max_ms", "range max ms", "{:.1f}"),
             ("range_cpu_ms", "server CPU ms/range", "{:.0f}"),
             ("data_dir_mib", "data dir MiB", "{:.0f}"),
             ("restart_s", "restart s", "{:.2f}"),
             ("rss_restarted_mib", "RSS restarted MiB", "{:.0f}"),
             ("rss_restarted_after_count_mib", "RSS after count MiB", "{:.0f}")],
    "compaction": [("key_versions", "key versions", "{:,.0f}"),
                   ("main_revisions", "revisions", "{:,.0f}"),
                   ("write_s", "write s", "{:.1f}"),
                   ("data_dir_before_mib", "data dir MiB", "{:.0f}"),
                   ("rss_before_mib", "RSS before MiB", "{:.0f}"),
                   ("compact_s", "compact s", "{:.2f}"),
                   ("compact_cpu_s", "server CPU s", "{:.2f}"),
                   ("peak_rss_compacting_mib", "peak RSS MiB", "{:.0f}"),
                   ("rss_after_mib", "RSS after MiB", "{:.0f}")],
    "wal": [("puts", "puts acked", "{:,.0f}"),
            ("write_s", "write s", "{:.1f}"),
            ("data_dir_mib", "data dir MiB", "{:.0f}"),
            ("wal_dir_mib", "member/wal MiB", "{:.0f}"),
            ("restart_s", "restart s", "{:.2f}"),
            ("first_range_after_restart_s", "first range s", "{:.2f}"),
            ("lost_revisions", "revisions lost", "{:.0f}"),
            ("rss_restarted_mib", "RSS restarted MiB", "{:.0f}")],
}

_SCALE_TEXT = {
    "keys": "Load {keys:,} keys ({value_size}-byte values, Txns of 100 puts, 4 loaders), "
            "then: RSS; a linearizable Range of {range_keys:,} keys ({range_reps} times); "
            "stop (SIGTERM) and start again on the same data dir: seconds to the first "
            "answered Status, RSS then, and RSS after a count-only Range over all keys.",
    "compaction": "Write {compact_revs:,} key versions (Txns of 100 puts over "
                  "{compact_keys:,} keys, 32-byte values: so {compact_revs:,} key versions "
                  "in about {txns:,} revisions), then one Compact(physical=true) to the "
                  "latest revision, timed until it returns.",
    "wal": "Write {wal_puts:,} single Puts with {wal_clients} clients, SIGKILL the server, "
           "start it again: seconds to the first answered Status, and to the first "
           "linearizable Range; revisions lost = acknowledged revisions missing after the "
           "restart (must be 0 for a durable target).",
}


def _scale(prof: Profile, scale: list[ScaleResult]) -> str:
    sp = prof.scale
    out = []
    for point in dict.fromkeys(s.point for s in scale):
        cols = _SCALE_COLUMNS[point]
        out.append(f"### {point}\n")
        out.append(_SCALE_TEXT[point].format(**vars(sp), value_size=prof.params.value_size,
                                             txns=-(-sp.compact_revs // 100)) + "\n")
        out.append("| target | " + " | ".join(c[1] for c in cols) + " |")
        out.append("|---|" + "---:|" * len(cols))
        for s in scale:
            if s.point != point:
                continue
            if s.failed:
                out.append(f"| {s.target} | failed: {s.failed[:120]} |" + " |" * (len(cols) - 1))
                continue
            cells = [fmt.format(s.values[k]) if k in s.values else "-" for k, _, fmt in cols]
            out.append(f"| {s.target} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out) + "\n"


def _notes(prof: Profile, aggs: dict[tuple[str, str, int], Agg], notes: list[str],
           cores: int) -> str:
    lines = [f"- {n}" for n in notes]
    window = prof.duration_s * cores
    disturbed = [a for a in aggs.values()
                 if a.rounds and a.workload != "watch" and a.other_cpu > 0.1 * window]
    if disturbed:
        lines.append(f"- {len(disturbed)} of {len(aggs)} cells lost more than 10% of the "
                     "machine's CPU to outside load in a typical round (*other CPU s*); their "
                     "ops/s understate what the target can do here, ops per server-CPU-second "
                     "much less so.")
    lines.append("- The load generator and the servers share the machine's cores; see the "
                 "caveat at the top. Latencies include the client's own queueing.")
    lines.append("- Peak RSS is VmHWM of the server's process tree, reset before each cell "
                 "(`/proc/PID/clear_refs`), so it is the peak during that cell.")
    return "\n".join(lines) + "\n"
