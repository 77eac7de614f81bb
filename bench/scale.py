"""Scale points: how etcdlite and etcd behave with a lot of data.

Each point starts a fresh server of each scale target (once, not in rounds: they are
slow) and reports:

* ``keys``: load ``keys`` keys (256-byte values, Txns of 100 puts, 4 loaders); RSS right
  after; latency of a linearizable Range of ``range_keys`` keys (``range_reps`` times);
  then stop (SIGTERM), start again on the same data dir, and report the time to the first
  answered Status and the RSS of the restarted server.
* ``compaction``: write ``compact_revs`` key versions (Txns of 100 puts over 1,000 keys,
  32-byte values), then time ``Compact(revision=now, physical=True)`` (which returns
  once the history is gone from the backend) and the server CPU it took.
* ``wal``: write ``wal_puts`` single Puts with 64 clients, SIGKILL the server (a crash,
  no clean shutdown), start it again, and time it to the first answered Status and the
  first linearizable Range; checks every acknowledged put survived.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc

from bench import procstat
from bench.load import CHANNEL_OPTIONS, Params, WorkerPool, prefix_end, value_of
from bench.measure import fill, percentile, put_many
from bench.servers import Server
from etcdlite.protos import rpc_pb2, wire

SCALE_FMT = b"scale/%08d"
COMPACT_FMT = b"compact/%06d"
_LOADERS = 4
_RPC_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class ScaleParams:
    """Sizes of the scale points."""

    keys: int = 100_000
    range_keys: int = 10_000
    range_reps: int = 10
    compact_revs: int = 1_000_000
    compact_keys: int = 1_000
    wal_puts: int = 50_000
    wal_clients: int = 64


@dataclass
class ScaleResult:
    """One scale point on one target; ``values`` maps a measure to its number."""

    target: str
    point: str
    values: dict[str, float] = field(default_factory=dict)
    failed: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _first_range_s(server: Server, key: bytes) -> float:
    """Seconds until a linearizable Range is answered (retrying while it is not)."""
    t = time.monotonic()
    deadline = t + _RPC_TIMEOUT_S
    with grpc.insecure_channel(server.endpoint, options=CHANNEL_OPTIONS) as ch:
        kv = wire.Stub(ch, "KV")
        while True:
            try:
                kv.Range(rpc_pb2.RangeRequest(key=key), timeout=5, wait_for_ready=True)
                return time.monotonic() - t
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)


def _revision(server: Server) -> int:
    with grpc.insecure_channel(server.endpoint, options=CHANNEL_OPTIONS) as ch:
        r = wire.Stub(ch, "KV").Range(rpc_pb2.RangeRequest(key=b"\0", limit=1), timeout=30)
        return int(r.header.revision)


def _parallel_put(endpoint: str, keys: list[bytes], value: bytes) -> None:
    chunks = [keys[i::_LOADERS] for i in range(_LOADERS)]
    with ThreadPoolExecutor(_LOADERS) as ex:
        list(ex.map(lambda ks: put_many(endpoint, ks, value, timeout=_RPC_TIMEOUT_S), chunks))


def point_keys(server: Server, sp: ScaleParams, value_size: int) -> ScaleResult:
    """Load ``sp.keys`` keys; RSS; Range of ``sp.range_keys`` keys; restart with them."""
    res = ScaleResult(server.spec.name, "keys")
    v = res.values
    v["start_empty_s"] = server.launch()
    pid = server.pid
    keys = [SCALE_FMT % i for i in range(sp.keys)]
    t = time.monotonic()
    _parallel_put(server.endpoint, keys, value_of(value_size, 1))
    v["load_s"] = time.monotonic() - t
    v["load_keys_per_s"] = sp.keys / v["load_s"]
    v["rss_loaded_mib"] = procstat.rss_kib(pid) / 1024
    v["peak_rss_loading_mib"] = procstat.peak_rss_kib(pid) / 1024
    lat: list[int] = []
    cpu0 = procstat.cpu_seconds(pid)
    req = rpc_pb2.RangeRequest(key=SCALE_FMT % 0, range_end=SCALE_FMT % sp.range_keys)
    with grpc.insecure_channel(server.endpoint, options=CHANNEL_OPTIONS) as ch:
        kv = wire.Stub(ch, "KV")
        for _ in range(sp.range_reps):
            t0 = time.monotonic_ns()
            r = kv.Range(req, timeout=_RPC_TIMEOUT_S)
            lat.append(time.monotonic_ns() - t0)
            if len(r.kvs) != sp.range_keys:
                raise RuntimeError(f"range of {sp.range_keys} keys returned {len(r.kvs)}")
    lat.sort()
    v["range_p50_ms"] = percentile(lat, 0.5) / 1e6
    v["range_max_ms"] = lat[-1] / 1e6
    v["range_cpu_ms"] = (procstat.cpu_seconds(pid) - cpu0) / sp.range_reps * 1000
    v["data_dir_mib"] = procstat.dir_size_bytes(server.data_dir) / 2**20
    server.stop()
    v["restart_s"] = server.launch()
    v["first_range_after_restart_s"] = v["restart_s"] + _first_range_s(server, SCALE_FMT % 0)
    v["rss_restarted_mib"] = procstat.rss_kib(server.pid) / 1024
    # A full scan of the prefix brings every key into memory, as serving would.
    with grpc.insecure_channel(server.endpoint, options=CHANNEL_OPTIONS) as ch:
        wire.Stub(ch, "KV").Range(rpc_pb2.RangeRequest(
            key=b"scale/", range_end=prefix_end(b"scale/"), count_only=True),
            timeout=_RPC_TIMEOUT_S)
    v["rss_restarted_after_count_mib"] = procstat.rss_kib(server.pid) / 1024
    server.stop()
    return res


def point_compaction(server: Server, sp: ScaleParams) -> ScaleResult:
    """Write ``sp.compact_revs`` key versions, then time one physical compaction."""
    res = ScaleResult(server.spec.name, "compaction")
    v = res.values
    server.launch()
    pid = server.pid
    value = value_of(32, 2)
    batch = 100
    keys = [COMPACT_FMT % i for i in range(sp.compact_keys)]
    t = time.monotonic()
    written = 0
    with grpc.insecure_channel(server.endpoint, options=CHANNEL_OPTIONS) as ch:
        kv = wire.Stub(ch, "KV")
        futures: list[Any] = []
        i = 0
        while written < sp.compact_revs:
            n = min(batch, sp.compact_revs - written)
            ops = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(
                key=keys[(i + j) % len(keys)], value=value)) for j in range(n)]
            i = (i + n) % len(keys)
            written += n
            futures.append(kv.Txn.future(rpc_pb2.TxnRequest(success=ops),
                                         timeout=_RPC_TIMEOUT_S))
            if len(futures) >= _LOADERS * 2:
                futures.pop(0).result()
        for f in futures:
            f.result()
    v["write_s"] = time.monotonic() - t
    v["key_versions"] = written
    rev = _revision(server)
    v["main_revisions"] = rev
    v["rss_before_mib"] = procstat.rss_kib(pid) / 1024
    v["data_dir_before_mib"] = procstat.dir_size_bytes(server.data_dir) / 2**20
    procstat.reset_peak_rss(pid)
    cpu0 = procstat.cpu_seconds(pid)
    t = time.monotonic()
    with grpc.insecure_channel(server.endpoint, options=CHANNEL_OPTIONS) as ch:
        wire.Stub(ch, "KV").Compact(rpc_pb2.CompactionRequest(revision=rev, physical=True),
                                    timeout=_RPC_TIMEOUT_S)
    v["compact_s"] = time.monotonic() - t
    v["compact_cpu_s"] = procstat.cpu_seconds(pid) - cpu0
    v["peak_rss_compacting_mib"] = procstat.peak_rss_kib(pid) / 1024
    v["rss_after_mib"] = procstat.rss_kib(pid) / 1024
    server.stop()
    return res


def point_wal(server: Server, sp: ScaleParams, pool: WorkerPool, params: Params) -> ScaleResult:
    """Write ``sp.wal_puts`` Puts, SIGKILL, restart: time to first answers."""
    res = ScaleResult(server.spec.name, "wal")
    v = res.values
    server.launch()
    acked, seconds, errors = fill(pool, server.endpoint, sp.wal_puts, sp.wal_clients,
                                  params, _RPC_TIMEOUT_S)
    v["puts"] = acked
    v["put_errors"] = errors
    v["write_s"] = seconds
    rev_before = _revision(server)
    v["revision"] = rev_before
    server.kill()
    v["data_dir_mib"] = procstat.dir_size_bytes(server.data_dir) / 2**20
    wal = server.data_dir / "member" / "wal"
    v["wal_dir_mib"] = procstat.dir_size_bytes(wal) / 2**20 if wal.is_dir() else 0.0
    v["restart_s"] = server.launch()
    v["first_range_after_restart_s"] = v["restart_s"] + _first_range_s(server, b"bench/k/000000")
    v["revision_after_restart"] = _revision(server)
    v["lost_revisions"] = max(0, rev_before - v["revision_after_restart"])
    v["rss_restarted_mib"] = procstat.rss_kib(server.pid) / 1024
    server.stop()
    return res


def run_point(point: str, server: Server, sp: ScaleParams, pool: WorkerPool,
              params: Params) -> ScaleResult:
    """Run scale point ``point`` on ``server`` (not started yet; stopped afterwards)."""
    try:
        if point == "keys":
            return point_keys(server, sp, params.value_size)
        if point == "compaction":
            return point_compaction(server, sp)
        if point == "wal":
            return point_wal(server, sp, pool, params)
        raise ValueError(f"unknown scale point {point!r}")
    except (RuntimeError, grpc.RpcError, TimeoutError, OSError) as exc:
        server.stop()
        return ScaleResult(server.spec.name, point, failed=f"{type(exc).__name__}: {exc}")


SCALE_POINTS = ("keys", "compaction", "wal")

