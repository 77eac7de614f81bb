"""A Watch stream that stops reading while thousands of writes go through.

Most tests run the member in-process: ``Etcd`` on a temp data dir inside
``asyncio.run``, streams opened on ``etcd.watch_hub`` and drained with
``stream.next_response()`` exactly as the gRPC servicer does, so the test decides when
a consumer reads and can look at a stream's outbox. One test does the same end to end
over gRPC (where flow control and gRPC's own buffers sit in between).

What must hold while a stream is stalled (the hub's module docstring):

* writes keep their speed (compared with the same writes before the stall, with a
  generous factor: this is a behaviour check, not a benchmark);
* other streams get every event, in order;
* the stalled stream's outbox never holds more than ``outbox_limit`` responses;
* once it reads again it gets every event exactly once, in order (catch-up from
  history), or, if that history was compacted meanwhile, the compaction cancel.

Also here: the same with 20,000 stalled watchers (writes must not pay for each of
them), a quiet watcher sharing a congested stream (it must not be cancelled for a
compaction of history it has seen), a client that keeps sending requests without
reading (replies count against the bound too), and catch-up of multi-key txns across
history batches (a revision never split).

Nothing here sleeps to wait: responses are awaited with timeouts. (One test gives the
servicer 2 s to take requests it should not take while the stream is full; a server
that takes them all does so at once.)
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import statistics
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc

from etcdlite.protos import wire
from etcdlite.protos.kv_pb2 import Event
from etcdlite.protos.rpc_pb2 import (
    CompactionRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    TxnRequest,
    WatchCreateRequest,
    WatchRequest,
    WatchResponse,
)
from etcdlite.server import EtcdServer
from etcdlite.server.api.services import WatchService
from etcdlite.server.config import EtcdConfig
from etcdlite.server.etcd import Etcd
from etcdlite.server.log import Logger
from etcdlite.server.watch import WatchStream

WAIT_S = 30.0
"""The longest wait for one response the hub owes (generous: a slow CI machine)."""
SLOWDOWN = 3.0
"""How much slower writes may get with a stalled watcher (median of chunks)."""
CHUNK = 512
WINDOW = 16
"""Puts in flight at once (they share a batch, as concurrent clients do)."""
KEY = b"k"


@contextlib.asynccontextmanager
async def member(data_dir: Path) -> AsyncIterator[Etcd]:
    etcd = Etcd(EtcdConfig(data_dir=data_dir, log_level="error"), Logger("error"))
    etcd.start()
    await etcd.publish(["http://127.0.0.1:2379"])
    etcd.serving()  # what the runner does once clients can connect
    try:
        yield etcd
    finally:
        await etcd.stop()


async def next_response(stream: WatchStream) -> WatchResponse:
    resp = await asyncio.wait_for(stream.next_response(), WAIT_S)
    assert resp is not None, "the stream ended"
    return resp


async def created(etcd: Etcd, stream: WatchStream, **kw: object) -> int:
    """Create a watcher and read its ``created`` reply (the stream must be empty)."""
    etcd.watch_hub.create(stream, WatchCreateRequest(**kw))  # type: ignore[arg-type]
    resp = await next_response(stream)
    assert resp.created and not resp.canceled, resp
    return resp.watch_id


class Drainer:
    """Reads a stream as fast as the hub fills it, keeping every event."""

    def __init__(self, stream: WatchStream):
        self.stream = stream
        self.events: list[Event] = []
        self.responses: list[WatchResponse] = []
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while (resp := await self.stream.next_response()) is not None:
            self.responses.append(resp)
            self.events.extend(resp.events)
            self._changed.set()

    async def until_revision(self, rev: int) -> None:
        async def wait() -> None:
            while not self.events or self.events[-1].kv.mod_revision < rev:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), WAIT_S)

    def stop(self) -> None:
        self._task.cancel()


async def write(etcd: Etcd, n: int, after_window: Callable[[], None] = lambda: None,
                window: int = WINDOW, chunk: int = CHUNK
                ) -> tuple[list[tuple[int, bytes]], list[float]]:
    """``n`` puts of KEY, ``window`` at a time; returns [(revision, value)] and the
    seconds each full ``chunk`` of puts took."""
    written: list[tuple[int, bytes]] = []
    chunks: list[float] = []
    t0 = time.perf_counter()
    for first in range(0, n, window):
        values = [b"v%d" % i for i in range(first, min(first + window, n))]
        resps = await asyncio.gather(*(etcd.put(PutRequest(key=KEY, value=v)) for v in values))
        written.extend(sorted((r.header.revision, v) for r, v in zip(resps, values, strict=True)))
        after_window()
        if len(written) % chunk == 0:
            now = time.perf_counter()
            chunks.append(now - t0)
            t0 = now
    return written, chunks


def assert_all_events(events: list[Event], written: list[tuple[int, bytes]]) -> None:
    got = [(e.type, e.kv.key, e.kv.mod_revision, e.kv.value) for e in events]
    want = [(Event.PUT, KEY, rev, value) for rev, value in written]
    if got != want:
        revs = [g[2] for g in got]
        dups = len(revs) - len(set(revs))
        missing = sorted({w[2] for w in want} - set(revs))[:10]
        raise AssertionError(f"{len(got)} events for {len(want)} writes: {dups} duplicates, "
                             f"first missing revisions {missing}, first got {got[:3]}")


def test_stalled_stream_slows_nobody_stays_bounded_and_catches_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with member(tmp_path) as etcd:
            hub = etcd.watch_hub
            limit = hub.outbox_limit
            normal = hub.open_stream()
            await created(etcd, normal, key=KEY)
            reader = Drainer(normal)

            # (a) the speed of writes without a stalled watcher ...
            base, base_chunks = await write(etcd, 4_000)

            stalled = hub.open_stream()
            await created(etcd, stalled, key=KEY)
            fullest = 0

            def look() -> None:
                nonlocal fullest
                fullest = max(fullest, len(stalled.outbox))

            # ... and with one that never reads, for 10,000 writes.
            written, chunks = await write(etcd, 10_000, look)
            base_rate = statistics.median(base_chunks)
            stall_rate = statistics.median(chunks)
            assert stall_rate <= SLOWDOWN * base_rate, (
                f"a {CHUNK}-put chunk took {stall_rate * 1000:.0f} ms (median) with a "
                f"stalled watcher, {base_rate * 1000:.0f} ms without")

            # (b) the reading stream got every event, in order, each once.
            await reader.until_revision(written[-1][0])
            assert_all_events(reader.events, base + written)

            # (c) the stalled stream's outbox stayed bounded (and, as the hub's docstring
            # has it, filled up before its watcher fell behind: the stall was real).
            assert fullest <= limit, f"outbox of a stalled stream reached {fullest} > {limit}"
            assert fullest == limit, f"the stalled stream's outbox only reached {fullest}"

            # (d) reading again: every event exactly once, in order.
            got: list[Event] = []
            while not got or got[-1].kv.mod_revision < written[-1][0]:
                resp = await next_response(stalled)
                assert not resp.canceled, resp
                got.extend(resp.events)
            assert_all_events(got, written)
            # and it is live again: the next write comes as a live response.
            rev = (await etcd.put(PutRequest(key=KEY, value=b"after"))).header.revision
            resp = await next_response(stalled)
            assert [e.kv.mod_revision for e in resp.events] == [rev]
            assert resp.header.revision == rev
            reader.stop()

    asyncio.run(scenario())


def test_many_stalled_watchers_do_not_slow_writes(tmp_path: Path) -> None:
    """Writes keep their speed with many stalled watchers too (20 streams that never
    read, 1,000 watchers each), for a client writing one put at a time.

    server/watch.py: ``WatchStream.next_response`` calls ``schedule_catch_up`` each time
    a (healthy) stream's outbox runs empty, i.e. after every write, and
    ``_catch_up_loop`` then walks every lagging watcher of every stream (``has_room``
    on each) even though none of their streams has room: O(lagging watchers) per write.
    """

    async def scenario() -> None:
        async with member(tmp_path) as etcd:
            hub = etcd.watch_hub
            normal = hub.open_stream()
            await created(etcd, normal, key=KEY)
            reader = Drainer(normal)
            _base, base_chunks = await write(etcd, 4 * 128, window=1, chunk=128)
            stalled = [hub.open_stream() for _ in range(20)]
            for s in stalled:
                for _ in range(1_000):
                    hub.create(s, WatchCreateRequest(key=KEY))
            await write(etcd, 64, window=1, chunk=64)  # every stalled watcher falls behind
            written, chunks = await write(etcd, 4 * 128, window=1, chunk=128)
            base_rate, stall_rate = statistics.median(base_chunks), statistics.median(chunks)
            assert stall_rate <= SLOWDOWN * base_rate, (
                f"128 puts took {stall_rate * 1000:.0f} ms (median) with 20,000 stalled "
                f"watchers, {base_rate * 1000:.0f} ms without")
            await reader.until_revision(written[-1][0])
            assert all(len(s.outbox) <= hub.outbox_limit for s in stalled)
            reader.stop()

    asyncio.run(scenario())


def test_compaction_while_stalled_ends_in_the_compaction_cancel(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with member(tmp_path) as etcd:
            hub = etcd.watch_hub
            limit = hub.outbox_limit
            stalled = hub.open_stream()
            wid = await created(etcd, stalled, key=KEY)
            normal = hub.open_stream()
            await created(etcd, normal, key=KEY)
            reader = Drainer(normal)
            written, _chunks = await write(etcd, 3 * limit)
            assert len(stalled.outbox) <= limit
            # Compact past everything the stalled watcher still needs.
            compact_rev = written[-10][0]
            await etcd.compact(CompactionRequest(revision=compact_rev, physical=True))
            more, _chunks = await write(etcd, 100)
            await reader.until_revision(more[-1][0])
            assert_all_events(reader.events, written + more)  # the reader did not care

            got: list[Event] = []
            while True:
                resp = await next_response(stalled)
                if resp.canceled:
                    break
                got.extend(resp.events)
            # What was queued before the stall, then the cancel: nothing lost in between.
            assert got, "the outbox held events before the stall"
            assert_all_events(got, written[:len(got)])
            assert got[-1].kv.mod_revision + 1 < compact_rev
            assert (resp.watch_id, resp.compact_revision, resp.header.revision) == (
                wid, compact_rev, 0), resp
            # Nothing more for it: a progress request is answered next (the compacted
            # watcher does not hold it back), at the current revision.
            hub.request_progress(stalled)
            resp = await next_response(stalled)
            assert (resp.watch_id, list(resp.events)) == (-1, []), resp
            assert resp.header.revision == etcd.store.current_revision
            reader.stop()

    asyncio.run(scenario())


def test_quiet_watcher_on_a_congested_stream_is_not_cancelled_for_compaction(
        tmp_path: Path) -> None:
    """A watcher that had nothing to receive for a while, on a stream a busier watcher
    fills up, must not be cancelled for a compaction of history it has already seen.

    server/watch.py: ``_deliver`` moves a synced watcher that finds the outbox full to
    the unsynced group "at the first revision it missed", but its ``next_rev`` is only
    advanced when it gets events; for a quiet watcher it is still the revision after
    its last event (or its start). ``_catch_up_step`` then compares that stale
    ``next_rev`` with the compact revision and cancels the watcher, though it had seen
    every revision up to the one that overflowed (as the progress reply proves).
    """

    async def scenario() -> None:
        async with member(tmp_path) as etcd:
            hub = etcd.watch_hub
            hub.outbox_limit = 2
            s = hub.open_stream()
            quiet = await created(etcd, s, key=b"quiet")
            busy = await created(etcd, s, key=b"busy")
            for _ in range(3):
                await etcd.put(PutRequest(key=b"other", value=b"v"))
            hub.request_progress(s)  # every watcher of the stream is synced ...
            progress = await next_response(s)
            assert progress.watch_id == -1
            synced_at = progress.header.revision
            # ... so compacting at the current revision takes nothing any watcher needs.
            await etcd.compact(CompactionRequest(revision=synced_at, physical=True))
            b1 = (await etcd.put(PutRequest(key=b"busy", value=b"1"))).header.revision
            b2 = (await etcd.put(PutRequest(key=b"busy", value=b"2"))).header.revision
            q = (await etcd.put(PutRequest(key=b"quiet", value=b"q"))).header.revision
            got = []
            for _ in range(3):
                r = await next_response(s)
                got.append((r.watch_id, r.canceled, r.compact_revision,
                            [e.kv.mod_revision for e in r.events]))
            assert got == [(busy, False, 0, [b1]), (busy, False, 0, [b2]),
                           (quiet, False, 0, [q])], (
                f"responses {got}; the quiet watcher (id {quiet}) was synced at "
                f"{synced_at} and the compaction was at {synced_at}")

    asyncio.run(scenario())


class _Call:
    """The servicer context of a call without metadata (no token, no certificate)."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}


def test_outbox_stays_bounded_while_a_stalled_client_sends_requests(tmp_path: Path) -> None:
    """The docstring's bound ("an outbox of at most outbox_limit responses") must also
    hold for the replies to the client's own requests: a client that never reads but
    keeps creating watchers must not grow the server's memory without limit.

    server/watch.py: ``create`` (and ``cancel``, ``_push_failure``) push their replies
    whatever the outbox holds (only ``_deliver`` checks ``has_room``), and
    server/api/services.py's ``WatchService._read`` keeps taking requests while the
    outbox is full. etcd stops reading a stream's requests while its sender is blocked,
    so gRPC flow control pushes back on the client instead.
    """

    async def scenario() -> None:
        async with member(tmp_path) as etcd:
            hub = etcd.watch_hub
            hub.outbox_limit = 8
            opened: list[WatchStream] = []
            open_stream = hub.open_stream

            def spy() -> WatchStream:
                opened.append(open_stream())
                return opened[-1]

            hub.open_stream = spy  # type: ignore[method-assign]
            requests: asyncio.Queue[WatchRequest] = asyncio.Queue()

            async def feed() -> AsyncIterator[WatchRequest]:
                while True:
                    yield await requests.get()
                    requests.task_done()

            responses = WatchService(etcd).Watch(feed(), _Call())  # type: ignore[arg-type]
            requests.put_nowait(WatchRequest(create_request=WatchCreateRequest(key=b"k")))
            first = await asyncio.wait_for(anext(responses), WAIT_S)
            assert first.created
            # From here on the client reads nothing, but sends 10 x outbox_limit creates.
            for i in range(10 * hub.outbox_limit):
                requests.put_nowait(WatchRequest(create_request=WatchCreateRequest(
                    key=b"k%d" % i)))
            with contextlib.suppress(asyncio.TimeoutError):
                # The servicer either stops taking requests (back-pressure) or takes
                # them all; either way, look at the outbox afterwards.
                await asyncio.wait_for(requests.join(), 2.0)
            [stream] = opened
            queued, limit = len(stream.outbox), hub.outbox_limit
            assert queued <= limit, (
                f"{queued} responses queued for a stream that never reads "
                f"(outbox_limit {limit})")
            await responses.aclose()

    asyncio.run(scenario())


def test_txn_revisions_survive_a_stall_whole(tmp_path: Path) -> None:
    """Catch-up after a stall keeps a revision's events together, in sub-revision
    order, also across CATCH_UP_BATCH boundaries (1,000 records per step)."""

    async def scenario() -> None:
        async with member(tmp_path) as etcd:
            hub = etcd.watch_hub
            hub.outbox_limit = 4
            s = hub.open_stream()
            await created(etcd, s, key=b"t/", range_end=b"t0")
            want: list[tuple[int, bytes]] = []
            for i in range(300):  # 300 revisions of 7 keys: 2,100 records
                ops = [RequestOp(request_put=PutRequest(key=b"t/%d" % j, value=b"%d" % i))
                       for j in range(7)]
                rev = (await etcd.txn(TxnRequest(success=ops))).header.revision
                want.extend((rev, b"t/%d" % j) for j in range(7))
            seen: dict[int, int] = {}
            got: list[tuple[int, bytes]] = []
            n = 0
            while len(got) < len(want):
                resp = await next_response(s)
                n += 1
                for e in resp.events:
                    assert seen.setdefault(e.kv.mod_revision, n) == n, (
                        f"revision {e.kv.mod_revision} split over responses")
                    got.append((e.kv.mod_revision, e.kv.key))
            assert got == want

    asyncio.run(scenario())


# -- end to end over gRPC ----------------------------------------------------------------


class GrpcWatch:
    """One Watch stream with one watcher. Nothing reads its responses until ``start``
    (until then gRPC's buffers fill, then flow control stops the server's sender);
    afterwards a thread collects them, and ``wait_revision`` awaits one."""

    def __init__(self, stub: wire.Stub, key: bytes, start_revision: int):
        self.requests: queue.Queue[WatchRequest | None] = queue.Queue()
        self.responses: list[WatchResponse] = []
        self.failure: BaseException | None = None
        self._cond = threading.Condition()
        self.call = stub.Watch(self._feed(), timeout=300)
        self.requests.put(WatchRequest(create_request=WatchCreateRequest(
            key=key, start_revision=start_revision)))

    def _feed(self) -> Iterator[WatchRequest]:
        while (req := self.requests.get()) is not None:
            yield req

    def start(self) -> GrpcWatch:
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        try:
            for resp in self.call:
                with self._cond:
                    self.responses.append(resp)
                    self._cond.notify_all()
        except BaseException as exc:  # reported by wait_revision
            with self._cond:
                self.failure = exc
                self._cond.notify_all()

    def _reached(self, rev: int) -> bool:
        if self.failure is not None:
            return True
        return any(r.events and r.events[-1].kv.mod_revision >= rev
                   for r in self.responses[-1:])

    def wait_revision(self, rev: int, timeout: float) -> list[Event]:
        with self._cond:
            ok = self._cond.wait_for(lambda: self._reached(rev), timeout)
        assert self.failure is None or self.failure.code() == grpc.StatusCode.CANCELLED, (
            self.failure)
        assert ok and self.failure is None, (
            f"revision {rev} not received within {timeout}s "
            f"({len(self.responses)} responses so far)")
        assert self.responses[0].created, self.responses[0]
        return [e for r in self.responses[1:] for e in r.events]

    def close(self) -> None:
        self.call.cancel()
        self.requests.put(None)


def test_stalled_grpc_stream_gets_every_event_once_it_reads_again() -> None:
    value = b"x" * 4096  # 3,072 x 4 KiB: well over what gRPC buffers for one stream
    batch, chunk = 32, 256
    with EtcdServer() as server:
        channel = grpc.insecure_channel(server.endpoint)
        kv = wire.Stub(channel, "KV")
        watch = wire.Stub(channel, "Watch")

        def puts(n: int) -> tuple[list[tuple[int, bytes]], list[float]]:
            written: list[tuple[int, bytes]] = []
            chunks: list[float] = []
            t0 = time.perf_counter()
            for first in range(0, n, batch):
                vals = [value + b"%d" % i for i in range(first, min(first + batch, n))]
                futures = [kv.Put.future(PutRequest(key=KEY, value=v), timeout=WAIT_S)
                           for v in vals]
                written.extend(sorted((f.result().header.revision, v)
                                      for f, v in zip(futures, vals, strict=True)))
                if len(written) % chunk == 0:
                    now = time.perf_counter()
                    chunks.append(now - t0)
                    t0 = now
            return written, chunks

        def now() -> int:
            return kv.Range(RangeRequest(key=KEY)).header.revision

        normal = GrpcWatch(watch, KEY, now() + 1).start()
        stalled = None
        try:
            base, base_chunks = puts(4 * chunk)
            stalled = GrpcWatch(watch, KEY, now() + 1)
            written, chunks = puts(12 * chunk)
            assert statistics.median(chunks) <= SLOWDOWN * statistics.median(base_chunks), (
                f"{chunk} puts took {statistics.median(chunks) * 1000:.0f} ms (median) "
                f"with a stalled stream, {statistics.median(base_chunks) * 1000:.0f} ms "
                "without")
            events = normal.wait_revision(written[-1][0], WAIT_S)
            assert [(e.kv.mod_revision, e.kv.value) for e in events] == base + written

            events = stalled.start().wait_revision(written[-1][0], WAIT_S * 2)
            assert [(e.kv.mod_revision, e.kv.value) for e in events] == written
        finally:
            normal.close()
            if stalled is not None:
                stalled.close()
            channel.close()
