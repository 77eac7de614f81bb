"""The plugin's fixtures with aetcd (a maintained asyncio etcd client) in one process.

These tests use the fixtures directly, as a user's tests would: the plugin is active in
this session through its entry point. Lease expiry goes through ``etcd_clock``: leases
of minutes run out in milliseconds, and a watcher sees the deletes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aetcd
import pytest

from etcdlite.server import EtcdServer
from etcdlite.server.clock import ManualClock
from etcdlite.server.embed import AsyncEtcdServer

pytestmark = pytest.mark.interop

STEP_S = 10.0


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def client(server: EtcdServer | AsyncEtcdServer) -> aetcd.Client:
    return aetcd.Client(host=server.host, port=server.port, timeout=STEP_S)


def test_aetcd_against_the_per_test_server(etcd):
    async def scenario() -> None:
        async with client(etcd) as c:
            assert (await c.put(b"k", b"v")).header.revision == 2, "a fresh server"
            assert (await c.get(b"k")).value == b"v"
            status = await c.status()
            assert status.version.startswith("3.") and status.leader is not None

    run(scenario)


def test_lease_expiry_through_the_clock_fixture(etcd, etcd_clock):
    async def scenario() -> None:
        async with client(etcd) as c:
            lease = await c.lease(300)
            await c.put(b"/svc/a", b"1", lease=lease)
            await c.put(b"/svc/b", b"2", lease=lease)
            watch = await c.watch_prefix(b"/svc/")
            t0 = time.monotonic()
            etcd_clock.advance(299)
            assert await lease.remaining_ttl() == 1
            assert len(await c.get_prefix(b"/svc/")) == 2
            etcd_clock.advance(1.5)
            assert len(await c.get_prefix(b"/svc/")) == 0
            assert (await c.get_lease_info(lease.id)).TTL == -1
            kinds = []
            async for event in watch:
                kinds.append((event.kind, event.kv.key))
                if len(kinds) == 2:
                    break
            assert sorted(kinds) == [("DELETE", b"/svc/a"), ("DELETE", b"/svc/b")]
            await watch.cancel()
            assert time.monotonic() - t0 < STEP_S, "five minutes of lease time, no sleep"

    run(scenario)


def test_lock_held_by_a_dead_client_is_released_by_expiry(etcd, etcd_clock):
    """What lease expiry is for: a holder that stops refreshing loses the lock."""
    async def scenario() -> None:
        async with client(etcd) as holder, client(etcd) as waiter:
            lock = holder.lock(b"job", ttl=60)
            await lock.acquire()
            # The holder "dies": no refresh. Sixty seconds later the lock is free.
            etcd_clock.advance(61.5)
            other = waiter.lock(b"job", ttl=60)
            await asyncio.wait_for(other.acquire(), STEP_S)
            assert await other.is_acquired()
            await other.release()

    run(scenario)


def test_session_server_and_factory_servers_with_aetcd(etcd_server, etcd_factory):
    clock = ManualClock()
    a, b = etcd_factory(clock=clock), etcd_factory(clock=clock)

    async def scenario() -> None:
        async with client(etcd_server) as s, client(a) as ca, client(b) as cb:
            await s.put(b"/shared", b"x")
            for c in (ca, cb):
                await c.put(b"/eph", b"1", lease=await c.lease(10))
            clock.advance(11)  # one clock, both servers
            assert await ca.get(b"/eph") is None and await cb.get(b"/eph") is None
            assert (await s.get(b"/shared")).value == b"x"

    run(scenario)


def test_async_server_with_aetcd_in_one_loop():
    async def scenario() -> None:
        async with AsyncEtcdServer(clock=ManualClock()) as etcd, client(etcd) as c:
            lease = await c.lease(30)
            await c.put(b"k", b"v", lease=lease)
            await etcd.advance(31.5)
            assert await c.get(b"k") is None

    run(scenario)
