"""aetcd's watch API (client.watch / watch_prefix / watch_once, Watch.cancel) against an
in-process etcdlite (``etcdlite.server.EtcdServer``).

aetcd runs all watches of a client on one gRPC stream; ``watch`` returns once the
server's ``created`` reply arrived, so writes made after it are seen. Every await is
bounded with ``asyncio.wait_for``.
"""

from __future__ import annotations

import asyncio

import aetcd
import aetcd.exceptions
import pytest

from etcdlite.server import EtcdServer

pytestmark = pytest.mark.interop

STEP_S = 10.0


@pytest.fixture(scope="module")
def server():
    with EtcdServer() as etcd:
        yield etcd


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


async def take(watch, n: int) -> list:
    """The next ``n`` events of an aetcd Watch (each within STEP_S)."""
    it = aiter(watch)
    return [await asyncio.wait_for(anext(it), STEP_S) for _ in range(n)]


def summary(events) -> list[tuple]:
    """(kind, key, value, mod_revision, previous value or None) per event. aetcd wraps an
    unset prev_kv as an empty KeyValue, so "no previous kv" shows as an empty key."""
    return [(e.kind, e.kv.key, e.kv.value, e.kv.mod_revision,
             e.prev_kv.value if e.prev_kv is not None and e.prev_kv.key else None)
            for e in events]


def test_history_replay_from_an_old_revision(server, ns):
    async def scenario() -> None:
        async with aetcd.Client(host="127.0.0.1", port=server.port, timeout=STEP_S) as c:
            k = ns + b"k"
            r1 = (await c.put(k, b"1")).header.revision
            await c.put(ns + b"other", b"x")
            r3 = (await c.put(k, b"2")).header.revision
            r4 = (await c.delete(k)).header.revision
            r5 = (await c.put(k, b"3")).header.revision
            watch = await c.watch(k, start_revision=r1, prev_kv=True)
            got = await take(watch, 4)
            assert summary(got) == [
                ("PUT", k, b"1", r1, None),
                ("PUT", k, b"2", r3, b"1"),
                ("DELETE", k, b"", r4, b"2"),
                ("PUT", k, b"3", r5, None),  # a create: no prev_kv
            ]
            assert got[0].kv.create_revision == got[1].kv.create_revision == r1
            assert (got[1].kv.version, got[3].kv.version) == (2, 1)
            # ...then live events on the same watch
            r6 = (await c.put(k, b"4")).header.revision
            assert summary(await take(watch, 1)) == [("PUT", k, b"4", r6, b"3")]
            await watch.cancel()

    run(scenario)


def test_prefix_watch(server, ns):
    async def scenario() -> None:
        async with aetcd.Client(host="127.0.0.1", port=server.port, timeout=STEP_S) as c:
            p = ns + b"dir/"
            watch = await c.watch_prefix(p)
            ra = (await c.put(p + b"a", b"1")).header.revision
            await c.put(ns + b"dis", b"outside")
            rb = (await c.put(p + b"b", b"2")).header.revision
            rd = (await c.delete_prefix(p)).header.revision
            assert summary(await take(watch, 4)) == [
                ("PUT", p + b"a", b"1", ra, None),
                ("PUT", p + b"b", b"2", rb, None),
                ("DELETE", p + b"a", b"", rd, None),
                ("DELETE", p + b"b", b"", rd, None),
            ]
            await watch.cancel()

    run(scenario)


def test_watch_once(server, ns):
    async def scenario() -> None:
        async with aetcd.Client(host="127.0.0.1", port=server.port, timeout=STEP_S) as c:
            k = ns + b"k"
            rev = (await c.put(k, b"v")).header.revision
            event = await c.watch_once(k, timeout=STEP_S, start_revision=rev)
            assert summary([event]) == [("PUT", k, b"v", rev, None)]
            # the watcher was cancelled: the client's stream keeps working for others
            watch = await c.watch(k)
            rev = (await c.put(k, b"w")).header.revision
            assert summary(await take(watch, 1)) == [("PUT", k, b"w", rev, None)]
            await watch.cancel()

    run(scenario)


def test_cancel_ends_the_watch_and_ids_are_not_reused(server, ns):
    async def scenario() -> None:
        async with aetcd.Client(host="127.0.0.1", port=server.port, timeout=STEP_S) as c:
            k = ns + b"k"
            first = await c.watch(k)
            rev = (await c.put(k, b"1")).header.revision
            assert summary(await take(first, 1)) == [("PUT", k, b"1", rev, None)]
            await first.cancel()
            # the iterator of a cancelled watch ends
            rest = [e async for e in first]
            assert rest == []
            second = await c.watch(k)
            # etcd numbers a stream's watchers 0, 1, 2, ... and never hands a cancelled
            # id out again; aetcd routes responses by watch_id, so a re-used id would let
            # responses still in flight for the cancelled watcher reach the new one.
            assert (first.watch_id, second.watch_id) == (0, 1)
            rev = (await c.put(k, b"2")).header.revision
            assert summary(await take(second, 1)) == [("PUT", k, b"2", rev, None)]
            await second.cancel()

    run(scenario)


def test_compacted_start_revision_raises(server, ns):
    async def scenario() -> None:
        async with aetcd.Client(host="127.0.0.1", port=server.port, timeout=STEP_S) as c:
            k = ns + b"k"
            r1 = (await c.put(k, b"1")).header.revision
            r2 = (await c.put(k, b"2")).header.revision
            await c.compact(r2, physical=True)
            watch = await c.watch(k, start_revision=r1)
            with pytest.raises(aetcd.exceptions.RevisionCompactedError) as err:
                await take(watch, 1)
            assert err.value.compacted_revision == r2
            # start == compact revision is fine
            watch = await c.watch(k, start_revision=r2)
            assert summary(await take(watch, 1)) == [("PUT", k, b"2", r2, None)]
            await watch.cancel()

    run(scenario)
