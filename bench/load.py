"""The load generator: worker processes with grpc.aio clients, and the workloads they run.

A :class:`WorkerPool` keeps a few worker processes (``spawn``ed, so no gRPC state is ever
forked) for the whole run. For each measurement the parent splits the clients over the
workers and sends each a :class:`Task`; a worker opens its channels and streams, reports
``ready``, waits for ``go`` (a shared start time), runs, and sends back a
:class:`WorkerResult`. Times are ``time.monotonic_ns()`` (``CLOCK_MONOTONIC``, the clock
``perf_counter_ns`` also reads on Linux), which every process on the machine shares, so
the parent can read the server's CPU counters exactly at the window's edges.

Unary workloads are closed loops: each client issues one request, awaits its answer,
issues the next. The first ``warmup_s`` after the start are not recorded; then for
``duration_s`` every request that *completes* inside the window counts as one op and
its latency (send to answer) is kept. No new request starts after the window.

Workloads (:data:`WORKLOADS`):

* ``put``: Put on a fixed set of ``key_count`` keys (random key each time),
  ``value_size``-byte values.
* ``range-linear`` / ``range-serial``: Range of one existing key (random), linearizable
  or serializable.
* ``range-prefix``: Range of a ``prefix_keys``-key prefix (linearizable).
* ``txn``: compare-and-put on the client's own key: ``mod_revision == last seen`` then
  Put, else Range (to learn the revision); a successful op is one CAS write.
* ``lease``: LeaseGrant (TTL 60 s) then one keepalive on the client's open
  LeaseKeepAlive stream; one op is both round trips. The granted leases are revoked
  after the window (not timed).
* ``watch``: fan-out. ``watchers`` watchers on one key (``watchers_per_stream`` per Watch
  stream), spread over the workers; once all are created, ``watch_writers`` writers in
  the first worker put ``watch_puts`` values stamped with the send time. Reported:
  events delivered per second (all events / time from start to the last event) and the
  delivery lag per event (put sent -> event read by the watcher).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import random
import struct
import time
import traceback
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import grpc

from etcdlite.protos import rpc_pb2, wire

UNARY_WORKLOADS = ("put", "range-linear", "range-serial", "range-prefix", "txn", "lease")
WORKLOADS = (*UNARY_WORKLOADS, "watch")
WRITE_WORKLOADS = ("put", "txn")

KEY_FMT = b"bench/k/%06d"
PREFIX = b"bench/prefix/"
PREFIX_FMT = PREFIX + b"%06d"
TXN_FMT = b"bench/txn/%06d"
WATCH_KEY = b"bench/watch/key"
_STAMP = struct.Struct(">q")
_ERROR_BACKOFF_S = 0.01
_READY_TIMEOUT_S = 120.0

CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),  # each channel its own TCP connection
    ("grpc.max_receive_message_length", 256 << 20),
    ("grpc.max_send_message_length", 256 << 20),
]


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that covers every key starting with ``prefix``."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


@dataclass(frozen=True)
class Params:
    """Workload parameters (the same for every target)."""

    value_size: int = 256
    key_count: int = 1000
    prefix_keys: int = 1000
    watchers: int = 1000
    watchers_per_stream: int = 10
    watch_puts: int = 100
    watch_writers: int = 4
    watch_timeout_s: float = 60.0
    clients_per_conn: int = 8
    lease_ttl: int = 60
    rpc_timeout_s: float = 10.0


@dataclass(frozen=True)
class Task:
    """One worker's share of one measurement."""

    workload: str
    endpoint: str
    clients: int
    """This worker's clients (for ``watch``: its watchers)."""
    first_client: int
    """Global index of this worker's first client (keys of ``txn`` are per client)."""
    worker_index: int
    params: Params
    warmup_s: float
    duration_s: float
    seed: int
    max_ops: int = 0
    """When > 0: no warm-up; stop once this worker has issued ``max_ops`` requests (or
    after ``duration_s``). Used to write a given number of puts."""


@dataclass
class WorkerResult:
    """What one worker measured."""

    ops: int = 0
    errors: int = 0
    latencies: bytes = b""
    """``array('q')`` of nanoseconds, one per op (per event for ``watch``)."""
    error_sample: str = ""
    counters: dict[str, int] = field(default_factory=dict)
    last_event_ns: int = 0
    setup_error: str = ""


class _Tally:
    """Per-worker counters of a closed-loop run."""

    def __init__(self, t0: int, t1: int, max_ops: int = 0) -> None:
        self.t0, self.t1 = t0, t1
        self.max_ops = max_ops
        self.started = 0
        self.ops = 0
        self.errors = 0
        self.error_sample = ""
        self.lat = array("q")
        self.counters: dict[str, int] = {}

    def error(self, exc: BaseException) -> None:
        if self.t0 <= time.monotonic_ns() < self.t1:
            self.errors += 1
        if not self.error_sample:
            self.error_sample = f"{type(exc).__name__}: {exc}"[:500]

    def bump(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1


def value_of(size: int, seed: int) -> bytes:
    """A ``size``-byte value (printable, so a report's debug output stays readable)."""
    rng = random.Random(seed)
    return bytes(rng.randrange(97, 123) for _ in range(size))


def stamped_value(size: int) -> bytes:
    """A value starting with the send time (``monotonic_ns``), padded to ``size`` bytes."""
    return _STAMP.pack(time.monotonic_ns()).ljust(size, b".")


# -- unary workloads ------------------------------------------------------------------

Op = Callable[[], Awaitable[None]]


class _Client:
    """One client: its stubs and the op it repeats."""

    def __init__(self, channel: grpc.aio.Channel, index: int, task: Task, tally: _Tally,
                 rng: random.Random) -> None:
        self.kv = wire.Stub(channel, "KV")
        self.lease = wire.Stub(channel, "Lease")
        self.index = index
        self.task = task
        self.tally = tally
        self.rng = rng
        p = task.params
        self.timeout = p.rpc_timeout_s
        self.value = value_of(p.value_size, index)
        self.mod_revision = 0
        self.keepalive: Any = None
        self.leases: list[int] = []

    def op(self) -> Op:
        """The coroutine function this client's workload repeats."""
        return {
            "put": self.put, "range-linear": self.range_linear,
            "range-serial": self.range_serial, "range-prefix": self.range_prefix,
            "txn": self.txn, "lease": self.grant_keepalive,
        }[self.task.workload]

    def _key(self) -> bytes:
        return KEY_FMT % self.rng.randrange(self.task.params.key_count)

    async def put(self) -> None:
        await self.kv.Put(rpc_pb2.PutRequest(key=self._key(), value=self.value),
                          timeout=self.timeout)

    async def range_linear(self) -> None:
        r = await self.kv.Range(rpc_pb2.RangeRequest(key=self._key()), timeout=self.timeout)
        if not r.kvs:
            raise LookupError("range-linear: key not found (not preloaded?)")

    async def range_serial(self) -> None:
        r = await self.kv.Range(rpc_pb2.RangeRequest(key=self._key(), serializable=True),
                                timeout=self.timeout)
        if not r.kvs:
            raise LookupError("range-serial: key not found (not preloaded?)")

    async def range_prefix(self) -> None:
        r = await self.kv.Range(rpc_pb2.RangeRequest(key=PREFIX, range_end=prefix_end(PREFIX)),
                                timeout=self.timeout)
        if len(r.kvs) != self.task.params.prefix_keys:
            raise LookupError(f"range-prefix: {len(r.kvs)} keys, expected "
                              f"{self.task.params.prefix_keys}")

    async def txn(self) -> None:
        key = TXN_FMT % self.index
        req = rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.MOD,
                                     key=key, mod_revision=self.mod_revision)],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key,
                                                                        value=self.value))],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))])
        r = await self.kv.Txn(req, timeout=self.timeout)
        if r.succeeded:
            self.mod_revision = r.header.revision
            self.tally.bump("txn_succeeded")
        else:
            kvs = r.responses[0].response_range.kvs
            self.mod_revision = kvs[0].mod_revision if kvs else 0
            self.tally.bump("txn_failed")

    async def open_keepalive(self) -> None:
        self.keepalive = self.lease.LeaseKeepAlive()

    async def grant_keepalive(self) -> None:
        g = await self.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=self.task.params.lease_ttl),
                                        timeout=self.timeout)
        self.leases.append(g.ID)
        await self.keepalive.write(rpc_pb2.LeaseKeepAliveRequest(ID=g.ID))
        r = await asyncio.wait_for(self.keepalive.read(), self.timeout)
        if r is grpc.aio.EOF or r.ID != g.ID or r.TTL <= 0:
            raise LookupError(f"keepalive of lease {g.ID:x} answered {r!r}")

    async def revoke_all(self) -> None:
        """Revoke the leases this client granted (after the window, not timed)."""
        if self.keepalive is not None:
            self.keepalive.cancel()
        for lease_id in self.leases:
            try:
                await self.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=lease_id),
                                             timeout=self.timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
        self.leases.clear()


async def _closed_loop(op: Op, tally: _Tally) -> None:
    """Repeat ``op`` until the window ends; count and time the ops completing inside it."""
    mono = time.monotonic_ns
    t0, t1 = tally.t0, tally.t1
    lat = tally.lat
    limit = tally.max_ops
    while True:
        start = mono()
        if start >= t1:
            return
        if limit:
            if tally.started >= limit:
                return
            tally.started += 1
        try:
            await op()
        except (grpc.aio.AioRpcError, LookupError, asyncio.TimeoutError,
                asyncio.InvalidStateError) as exc:
            tally.error(exc)
            await asyncio.sleep(_ERROR_BACKOFF_S)
            continue
        end = mono()
        if t0 <= end < t1:
            tally.ops += 1
            lat.append(end - start)


def _channels(task: Task, n_clients: int) -> list[grpc.aio.Channel]:
    per = max(1, task.params.clients_per_conn)
    n = max(1, -(-n_clients // per))
    return [grpc.aio.insecure_channel(task.endpoint, options=CHANNEL_OPTIONS) for _ in range(n)]


async def _wait_go(conn: Connection) -> int:
    """Tell the parent we are ready; return the start time it answers with."""
    conn.send(("ready", None))
    msg = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    if msg[0] != "go":
        raise RuntimeError(f"worker: expected go, got {msg[0]!r}")
    return int(msg[1])


async def _run_unary(task: Task, conn: Connection) -> WorkerResult:
    chans = _channels(task, task.clients)
    try:
        for ch in chans:
            await asyncio.wait_for(ch.channel_ready(), task.params.rpc_timeout_s)
        tally = _Tally(0, 0, task.max_ops)
        rng = random.Random(task.seed)
        clients = [_Client(chans[i % len(chans)], task.first_client + i, task, tally,
                           random.Random(rng.getrandbits(64))) for i in range(task.clients)]
        if task.workload == "lease":
            for c in clients:
                await c.open_keepalive()
        start = await _wait_go(conn)
        warmup = 0 if task.max_ops else task.warmup_s
        tally.t0 = start + int(warmup * 1e9)
        tally.t1 = tally.t0 + int(task.duration_s * 1e9)
        delay = (start - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        await asyncio.gather(*(_closed_loop(c.op(), tally) for c in clients))
        if task.workload == "lease":
            await asyncio.gather(*(c.revoke_all() for c in clients))
        return WorkerResult(ops=tally.ops, errors=tally.errors, latencies=tally.lat.tobytes(),
                            error_sample=tally.error_sample, counters=tally.counters)
    finally:
        for ch in chans:
            await ch.close()


# -- watch fan-out ----------------------------------------------------------------------


async def _open_watch_stream(stub: wire.Stub, n: int, timeout: float) -> tuple[Any, list[int]]:
    """A Watch stream with ``n`` watchers on :data:`WATCH_KEY`; returns it and their ids."""
    call = stub.Watch()
    ids: list[int] = []
    for _ in range(n):
        await call.write(rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(key=WATCH_KEY)))
    while len(ids) < n:
        r = await asyncio.wait_for(call.read(), timeout)
        if r is grpc.aio.EOF:
            raise RuntimeError("watch stream ended while creating watchers")
        if r.created:
            ids.append(r.watch_id)
        elif r.canceled:
            raise RuntimeError(f"watch refused: {r.cancel_reason}")
    return call, ids


async def _drain_watch(call: Any, expected: int, deadline_ns: int, lat: array,
                       tally: _Tally) -> int:
    """Read events until ``expected`` arrived or the deadline; returns the last event time."""
    got, last = 0, 0
    mono = time.monotonic_ns
    unpack = _STAMP.unpack_from
    while got < expected:
        left = (deadline_ns - mono()) / 1e9
        if left <= 0:
            break
        try:
            r = await asyncio.wait_for(call.read(), left)
        except asyncio.TimeoutError:
            break
        if r is grpc.aio.EOF:
            tally.error(RuntimeError("watch stream ended early"))
            break
        now = mono()
        for ev in r.events:
            lat.append(now - unpack(ev.kv.value)[0])
        if r.events:
            got += len(r.events)
            last = now
    return last


async def _watch_writer(stub: wire.Stub, todo: list[int], params: Params, tally: _Tally) -> None:
    while todo:
        todo.pop()
        try:
            await stub.Put(rpc_pb2.PutRequest(key=WATCH_KEY,
                                              value=stamped_value(params.value_size)),
                           timeout=params.rpc_timeout_s)
            tally.bump("puts")
        except grpc.aio.AioRpcError as exc:
            tally.error(exc)


async def _run_watch(task: Task, conn: Connection) -> WorkerResult:
    p = task.params
    per = max(1, p.watchers_per_stream)
    sizes = [per] * (task.clients // per) + ([task.clients % per] if task.clients % per else [])
    chans = _channels(task, len(sizes))
    calls: list[Any] = []
    try:
        stubs = [wire.Stub(ch, "Watch") for ch in chans]
        opened = await asyncio.gather(*(
            _open_watch_stream(stubs[i % len(stubs)], n, p.rpc_timeout_s)
            for i, n in enumerate(sizes)))
        calls = [c for c, _ in opened]
        writer_ch = grpc.aio.insecure_channel(task.endpoint, options=CHANNEL_OPTIONS)
        chans.append(writer_ch)
        kv = wire.Stub(writer_ch, "KV")
        start = await _wait_go(conn)
        tally = _Tally(start, start + int(p.watch_timeout_s * 1e9))
        lat = array("q")
        delay = (start - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        jobs: list[Awaitable[Any]] = [
            _drain_watch(call, n * p.watch_puts, tally.t1, lat, tally)
            for call, n in zip(calls, sizes, strict=True)]
        if task.worker_index == 0:
            todo = list(range(p.watch_puts))
            jobs += [_watch_writer(kv, todo, p, tally) for _ in range(p.watch_writers)]
        done = await asyncio.gather(*jobs)
        last = max((d for d in done if isinstance(d, int)), default=0)
        return WorkerResult(ops=len(lat), errors=tally.errors, latencies=lat.tobytes(),
                            error_sample=tally.error_sample, counters=tally.counters,
                            last_event_ns=last)
    finally:
        for call in calls:
            call.cancel()
        for ch in chans:
            await ch.close()


# -- worker process and pool ------------------------------------------------------------


async def _run_task(task: Task, conn: Connection) -> WorkerResult:
    if task.workload == "watch":
        return await _run_watch(task, conn)
    if task.workload in UNARY_WORKLOADS:
        return await _run_unary(task, conn)
    raise ValueError(f"unknown workload {task.workload!r}")


def worker_main(conn: Connection) -> None:
    """A worker process: run each :class:`Task` received until ``None`` arrives."""
    while True:
        task = conn.recv()
        if task is None:
            return
        try:
            result = asyncio.run(_run_task(task, conn))
        except Exception:  # report any failure to the parent instead of dying silently
            result = WorkerResult(setup_error=traceback.format_exc(limit=8))
        conn.send(("done", result))


class WorkerPool:
    """``n`` spawned worker processes, reused for every measurement of a run."""

    def __init__(self, n: int) -> None:
        ctx = mp.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        for i in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child,), name=f"bench-worker-{i}",
                               daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)

    @property
    def size(self) -> int:
        return len(self._conns)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def run(self, tasks: list[Task], on_go: Callable[[int], None],
            timeout_s: float) -> list[WorkerResult]:
        """Send ``tasks`` to the first workers, start them together, collect results.

        ``on_go(start_ns)`` runs in the parent right after the start time is sent (it
        measures the server while the workers run). A worker that fails answers with a
        ``setup_error``; one that stays silent past ``timeout_s`` raises TimeoutError.
        """
        conns = self._conns[:len(tasks)]
        for conn, task in zip(conns, tasks, strict=True):
            conn.send(task)
        results: dict[int, WorkerResult] = {}
        for i, conn in enumerate(conns):
            msg = self._recv(conn, _READY_TIMEOUT_S)
            if msg[0] == "done":  # failed before getting ready
                results[i] = msg[1]
        start = time.monotonic_ns() + 50_000_000
        for i, conn in enumerate(conns):
            if i not in results:
                conn.send(("go", start))
        on_go(start)
        for i, conn in enumerate(conns):
            if i not in results:
                results[i] = self._recv(conn, timeout_s)[1]
        return [results[i] for i in range(len(conns))]

    @staticmethod
    def _recv(conn: Connection, timeout_s: float) -> tuple[str, Any]:
        if not conn.poll(timeout_s):
            raise TimeoutError(f"a load worker did not answer within {timeout_s:.0f}s")
        msg: tuple[str, Any] = conn.recv()
        return msg

    def close(self) -> None:
        """Stop the workers (politely, then by their own PIDs)."""
        for conn in self._conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                continue
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._conns.clear()
        self._procs.clear()


def split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal positive shares (fewer if total < parts)."""
    parts = max(1, min(parts, total))
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
