"""One measurement (a *cell*: one workload, one client count, one target, one round),
and the setup every server gets before its cells: preloaded keys, compaction between cells.

:func:`run_cell` drives a :class:`~bench.load.WorkerPool` against a started server and
reads the server's CPU seconds at the edges of the measured window and its peak RSS
(``VmHWM``, reset just before the cell when the kernel allows) after it.
"""

from __future__ import annotations

import os
import time
from array import array
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc

from bench import procstat
from bench.load import (
    CHANNEL_OPTIONS,
    KEY_FMT,
    PREFIX_FMT,
    Params,
    Task,
    WorkerPool,
    WorkerResult,
    split,
    value_of,
)
from bench.servers import Server
from etcdlite.protos import rpc_pb2, wire

TXN_BATCH = 100
"""Puts per preload transaction (etcd's default --max-txn-ops is 128)."""


@dataclass
class CellResult:
    """The numbers of one cell."""

    target: str
    workload: str
    clients: int
    round: int
    ops: int = 0
    seconds: float = 0.0
    ops_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    cpu_s: float = 0.0
    peak_rss_kib: int = 0
    peak_is_cell: bool = True
    """False when VmHWM could not be reset: the peak is then since the server started."""
    client_cpu_s: float = 0.0
    """CPU seconds of the load workers in the window."""
    other_cpu_s: float = 0.0
    """CPU seconds the rest of the machine (not the harness, not the servers) used in the
    window: load from outside that disturbed this cell."""
    errors: int = 0
    error_sample: str = ""
    counters: dict[str, int] = field(default_factory=dict)
    expected_events: int = 0
    failed: str = ""

    @property
    def ops_per_cpu_s(self) -> float:
        return self.ops / self.cpu_s if self.cpu_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ops_per_cpu_s"] = self.ops_per_cpu_s
        return d


def percentile(sorted_values: array | list[int], q: float) -> int:
    """The ``q``-quantile (0..1) of ascending values, nearest rank; 0 when empty."""
    n = len(sorted_values)
    if n == 0:
        return 0
    rank = min(n - 1, max(0, int(q * n + 0.999999) - 1))
    return int(sorted_values[rank])


def merge_latencies(results: list[WorkerResult]) -> list[int]:
    """All workers' latencies (ns), ascending."""
    lat = array("q")
    for r in results:
        lat.frombytes(r.latencies)
    return sorted(lat)


@dataclass(frozen=True)
class _Counters:
    """CPU counters read at one edge of a window."""

    server: float
    clients: float
    ours: float
    """This process's whole tree: the harness, every server it started, the workers."""
    machine: float

    @classmethod
    def read(cls, server_pid: int, worker_pids: list[int]) -> _Counters:
        return cls(procstat.cpu_seconds(server_pid),
                   sum(procstat.cpu_seconds(p) for p in worker_pids),
                   procstat.cpu_seconds(os.getpid()), procstat.machine_busy_seconds())


def _sleep_until(t_ns: int) -> None:
    delay = (t_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


def run_cell(pool: WorkerPool, server: Server, workload: str, clients: int, rnd: int,
             params: Params, warmup_s: float, duration_s: float, seed: int) -> CellResult:
    """Run one cell against ``server`` with ``clients`` clients (watchers for ``watch``)."""
    res = CellResult(server.spec.name, workload, clients, rnd)
    pid = server.pid
    res.peak_is_cell = procstat.reset_peak_rss(pid)
    shares = split(clients, pool.size)
    tasks, first = [], 0
    for i, n in enumerate(shares):
        tasks.append(Task(workload, server.endpoint, n, first, i, params, warmup_s,
                          duration_s, seed * 1000 + i))
        first += n
    window: dict[str, int] = {}
    edges: list[_Counters] = []

    def on_go(start: int) -> None:
        if workload == "watch":
            window["t0"] = start
            _sleep_until(start)
            edges.append(_Counters.read(pid, pool.pids))
            return
        t0 = start + int(warmup_s * 1e9)
        t1 = t0 + int(duration_s * 1e9)
        _sleep_until(t0)
        edges.append(_Counters.read(pid, pool.pids))
        _sleep_until(t1)
        edges.append(_Counters.read(pid, pool.pids))
        window["t0"], window["t1"] = t0, t1

    budget = warmup_s + duration_s + params.rpc_timeout_s + 120.0
    if workload == "watch":
        budget = params.watch_timeout_s + 120.0
    results = pool.run(tasks, on_go, budget)
    broken = [r.setup_error for r in results if r.setup_error]
    if broken:
        res.failed = broken[0].strip().splitlines()[-1]
        res.error_sample = broken[0]
        return res
    res.peak_rss_kib = procstat.peak_rss_kib(pid)
    lat = merge_latencies(results)
    res.ops = sum(r.ops for r in results)
    res.errors = sum(r.errors for r in results)
    res.error_sample = next((r.error_sample for r in results if r.error_sample), "")
    for r in results:
        for k, v in r.counters.items():
            res.counters[k] = res.counters.get(k, 0) + v
    if workload == "watch":
        edges.append(_Counters.read(pid, pool.pids))
        last = max(r.last_event_ns for r in results)
        res.seconds = max(0.0, (last - window["t0"]) / 1e9)
        res.expected_events = clients * params.watch_puts
    else:
        res.seconds = (window["t1"] - window["t0"]) / 1e9
    res.ops_per_s = res.ops / res.seconds if res.seconds > 0 else 0.0
    before, after = edges
    res.cpu_s = after.server - before.server
    res.client_cpu_s = after.clients - before.clients
    res.other_cpu_s = max(0.0, (after.machine - before.machine) - (after.ours - before.ours))
    res.p50_ms = percentile(lat, 0.50) / 1e6
    res.p99_ms = percentile(lat, 0.99) / 1e6
    res.max_ms = (lat[-1] if lat else 0) / 1e6
    return res


# -- server setup -------------------------------------------------------------------------


def put_many(endpoint: str, keys: list[bytes], value: bytes, batch: int = TXN_BATCH,
             timeout: float = 60.0) -> int:
    """Put ``keys`` (``batch`` per Txn, one client); returns the last revision."""
    rev = 0
    with grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS) as ch:
        kv = wire.Stub(ch, "KV")
        for i in range(0, len(keys), batch):
            ops = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=value))
                   for k in keys[i:i + batch]]
            rev = kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=timeout).header.revision
    return rev


def preload(server: Server, params: Params) -> None:
    """The keys the range workloads read: ``key_count`` keys and a ``prefix_keys`` prefix."""
    value = value_of(params.value_size, 0)
    keys = [KEY_FMT % i for i in range(params.key_count)]
    keys += [PREFIX_FMT % i for i in range(params.prefix_keys)]
    put_many(server.endpoint, keys, value)


def compact(server: Server, timeout: float = 120.0) -> None:
    """Compact the server's history up to now (physically), so every cell starts from
    a store holding one revision per key."""
    with grpc.insecure_channel(server.endpoint, options=CHANNEL_OPTIONS) as ch:
        kv = wire.Stub(ch, "KV")
        rev = kv.Range(rpc_pb2.RangeRequest(key=b"\0", limit=1), timeout=timeout).header.revision
        try:
            kv.Compact(rpc_pb2.CompactionRequest(revision=rev, physical=True), timeout=timeout)
        except grpc.RpcError as exc:
            # Nothing new since the last compaction is not a failure.
            if not isinstance(exc, grpc.Call) or "compacted" not in (exc.details() or ""):
                raise


def fill(pool: WorkerPool, endpoint: str, puts: int, clients: int, params: Params,
         timeout_s: float) -> tuple[int, float, int]:
    """Write ``puts`` single Puts with ``clients`` clients (the ``put`` workload, counted
    instead of timed); returns (acknowledged puts, seconds, errors)."""
    shares = split(clients, pool.size)
    op_shares = split(puts, len(shares))
    tasks, first = [], 0
    for i, (n, ops) in enumerate(zip(shares, op_shares, strict=True)):
        tasks.append(Task("put", endpoint, n, first, i, params, 0.0, timeout_s, 7 + i,
                          max_ops=ops))
        first += n
    t = time.monotonic()
    results = pool.run(tasks, lambda start: None, timeout_s + 120.0)
    seconds = time.monotonic() - t
    broken = [r.setup_error for r in results if r.setup_error]
    if broken:
        raise RuntimeError(broken[0])
    return sum(r.ops for r in results), seconds, sum(r.errors for r in results)
