"""aetcd's lease API (Client.lease, Lease.refresh/revoke/remaining_ttl/granted_ttl/keys,
put(lease=...), get_lease_info) and its lock helper (Client.lock) against an in-process
etcdlite (``etcdlite.server.EtcdServer``). Every await is bounded with ``wait_for``.
"""

from __future__ import annotations

import asyncio
import time

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


def client(server: EtcdServer) -> aetcd.Client:
    return aetcd.Client(host="127.0.0.1", port=server.port, timeout=STEP_S)


async def bounded(aw, timeout: float = STEP_S):
    return await asyncio.wait_for(aw, timeout)


def test_lease_grant_attach_refresh_revoke(server, ns):
    async def scenario() -> None:
        async with client(server) as c:
            lease = await c.lease(30)
            assert lease.id > 0 and lease.ttl == 30
            await c.put(ns + b"a", b"1", lease=lease)
            await c.put(ns + b"b", b"2", lease=lease.id)
            assert (await c.get(ns + b"a")).lease == lease.id
            assert await lease.granted_ttl() == 30
            assert await lease.remaining_ttl() == 29
            assert sorted(await lease.keys()) == [ns + b"a", ns + b"b"]
            info = await c.get_lease_info(lease.id)
            assert (info.ID, info.TTL, info.grantedTTL) == (lease.id, 29, 30)

            reply = await lease.refresh()
            got = (reply.ID, reply.TTL)
            assert got == (lease.id, 30)

            await lease.revoke()
            assert await c.get(ns + b"a") is None
            assert await c.get(ns + b"b") is None
            assert await lease.remaining_ttl() == -1
            assert (await c.get_lease_info(lease.id)).TTL == -1
            reply = await c.refresh_lease(lease.id)
            assert reply.TTL == 0, "keepalive of a revoked lease: TTL 0"

    run(scenario)


def test_lease_ids_minimum_and_errors(server, ns):
    async def scenario() -> None:
        async with client(server) as c:
            lease = await c.lease(1, lease_id=0x5EED)
            assert (lease.id, lease.ttl) == (0x5EED, 2)
            with pytest.raises(aetcd.exceptions.DuplicateLeaseError):
                await c.lease(30, lease_id=0x5EED)
            with pytest.raises(aetcd.exceptions.ClientError,
                               match="etcdserver: requested lease not found"):
                await c.revoke_lease(0x5EEE)
            with pytest.raises(aetcd.exceptions.ClientError,
                               match="etcdserver: requested lease not found"):
                await c.put(ns + b"k", b"v", lease=0x5EEE)
            with pytest.raises(aetcd.exceptions.ClientError,
                               match="etcdserver: too large lease TTL"):
                await c.lease(9_000_000_001)
            await lease.revoke()

    run(scenario)


def test_lock_second_holder_waits_for_release(server, ns):
    async def scenario() -> None:
        async with client(server) as c1, client(server) as c2:
            name = ns + b"lock"
            first = c1.lock(name, ttl=30)
            assert await bounded(first.acquire(timeout=5))
            assert await first.is_acquired()
            assert (await c1.get(name)).lease == first.lease.id
            assert (await first.refresh()).TTL == 30

            second = c2.lock(name, ttl=30)
            assert not await bounded(second.acquire(timeout=0)), "the lock is held"
            waiter = asyncio.ensure_future(second.acquire(timeout=STEP_S))
            # The waiter sits on a watch for the key's deletion until the release.
            done, _ = await asyncio.wait({waiter}, timeout=0.3)
            assert not done, "acquired while the first holder had the lock"
            released_at = time.monotonic()
            assert await bounded(first.release())
            assert await bounded(waiter)
            assert time.monotonic() >= released_at
            assert await second.is_acquired()
            assert not await first.is_acquired()
            assert await bounded(second.release())
            assert await c1.get(name) is None

    run(scenario)


def test_lock_of_a_dead_holder_frees_when_its_lease_expires(server, ns):
    """The first holder never releases nor refreshes: its TTL-2 lease expires (~2-2.5 s)
    and the second acquirer gets the lock."""
    async def scenario() -> None:
        async with client(server) as c1, client(server) as c2:
            name = ns + b"lock"
            first = c1.lock(name, ttl=2)
            assert await bounded(first.acquire(timeout=5))
            t0 = time.monotonic()
            second = c2.lock(name, ttl=30)
            assert await bounded(second.acquire(timeout=8), 10)
            waited = time.monotonic() - t0
            assert 1.0 <= waited < 8, waited
            assert await second.is_acquired()
            assert (await c2.get_lease_info(first.lease.id)).TTL == -1
            assert await second.release()

    run(scenario)
