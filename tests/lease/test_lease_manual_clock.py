"""Lease expiry on a ManualClock, in-process and without sleeping.

Each test builds an ``Etcd`` member inside ``asyncio.run`` on a ``ManualClock`` and drives
expiry by advancing the clock and calling ``revoke_expired_leases()`` itself (what the
500 ms expiry loop does). The loop's own period is patched to an hour so it never races
with the test, except in ``test_the_expiry_loop_revokes_on_its_own``, which awaits it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from etcdlite.protos import kv_pb2
from etcdlite.protos.rpc_pb2 import (
    LeaseGrantRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    TxnRequest,
    WatchCreateRequest,
    WatchResponse,
)
from etcdlite.server import etcd as etcd_module
from etcdlite.server.clock import ManualClock
from etcdlite.server.config import EtcdConfig
from etcdlite.server.errors import wire_error
from etcdlite.server.etcd import Etcd
from etcdlite.server.log import Logger
from etcdlite.server.watch import WatchStream

DELETE = kv_pb2.Event.DELETE
STEP_S = 10.0
"""Bound of every await on the member (nothing should take long)."""


@pytest.fixture
def no_expiry_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The member's own expiry loop sleeps for an hour: only the test revokes."""
    monkeypatch.setattr(etcd_module, "LEASE_TICK_S", 3600.0)


@contextlib.asynccontextmanager
async def member(data_dir: Path, clock: ManualClock) -> AsyncIterator[Etcd]:
    etcd = Etcd(EtcdConfig(data_dir=data_dir, log_level="error"), Logger("error"), clock)
    etcd.start()
    try:
        await asyncio.wait_for(etcd.publish(["http://127.0.0.1:2379"]), STEP_S)
        etcd.serving()  # what the runner does once clients can connect
        yield etcd
    finally:
        await etcd.stop()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 120))  # type: ignore[arg-type]


async def bounded(aw: Awaitable, timeout: float = STEP_S):
    return await asyncio.wait_for(aw, timeout)


async def grant(etcd: Etcd, ttl: int, lease_id: int = 0) -> int:
    resp = await bounded(etcd.lease_grant(LeaseGrantRequest(TTL=ttl, ID=lease_id)))
    return resp.ID


async def put(etcd: Etcd, key: bytes, lease: int = 0) -> int:
    resp = await bounded(etcd.put(PutRequest(key=key, value=b"v", lease=lease)))
    return resp.header.revision


def keys(etcd: Etcd, prefix: bytes = b"/") -> list[bytes]:
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    return [kv.key for kv in etcd.range(RangeRequest(key=prefix, range_end=end)).kvs]


def ttl(etcd: Etcd, lease_id: int, with_keys: bool = False):
    return etcd.lease_time_to_live(LeaseTimeToLiveRequest(ID=lease_id, keys=with_keys))


def lease_ids(etcd: Etcd) -> list[int]:
    return [s.ID for s in etcd.lease_leases().leases]


async def failure(aw: Awaitable) -> tuple[str, str] | None:
    """The (gRPC code, message) the call fails with on the wire."""
    try:
        await bounded(aw)
    except Exception as exc:
        return wire_error(exc)
    raise AssertionError("the call succeeded")


def watch(etcd: Etcd, prefix: bytes) -> WatchStream:
    stream = etcd.watch_hub.open_stream()
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    etcd.watch_hub.create(stream, WatchCreateRequest(key=prefix, range_end=end))
    return stream


async def next_response(stream: WatchStream) -> WatchResponse:
    resp = await bounded(stream.next_response())
    assert resp is not None, "the watch stream closed"
    return resp


async def no_more_responses(etcd: Etcd, stream: WatchStream) -> None:
    """A progress request as a marker: its reply must come next."""
    etcd.watch_hub.request_progress(stream)
    resp = await next_response(stream)
    assert resp.watch_id == -1 and not resp.events, f"unexpected response {resp}"


# -- expiry ---------------------------------------------------------------------------------


def test_expiry_at_ttl_deletes_keys_in_one_revision(tmp_path, no_expiry_loop):
    async def scenario() -> None:
        clock = ManualClock()
        async with member(tmp_path / "m", clock) as etcd:
            lid = await grant(etcd, 10)
            other = await grant(etcd, 60)
            for k in (b"/e/a", b"/e/b", b"/e/c"):
                await put(etcd, k, lid)
            await put(etcd, b"/e/other", other)
            await put(etcd, b"/e/plain")
            stream = watch(etcd, b"/e/")
            created = await next_response(stream)
            assert created.created
            rev = etcd.store.current_revision

            clock.advance(9.9)
            assert await bounded(etcd.revoke_expired_leases()) == 0
            assert keys(etcd, b"/e/") == [b"/e/a", b"/e/b", b"/e/c", b"/e/other", b"/e/plain"]
            assert ttl(etcd, lid).TTL == 0  # 0.1 s left, truncated
            assert etcd.store.current_revision == rev

            clock.advance(0.2)
            assert await bounded(etcd.revoke_expired_leases()) == 1
            assert etcd.store.current_revision == rev + 1, "one revision for all the keys"
            assert keys(etcd, b"/e/") == [b"/e/other", b"/e/plain"]
            assert lid not in lease_ids(etcd) and other in lease_ids(etcd)
            assert ttl(etcd, lid).TTL == -1

            resp = await next_response(stream)
            assert [(e.type, e.kv.key, e.kv.mod_revision) for e in resp.events] == [
                (DELETE, b"/e/a", rev + 1), (DELETE, b"/e/b", rev + 1),
                (DELETE, b"/e/c", rev + 1)]
            assert resp.header.revision == rev + 1
            await no_more_responses(etcd, stream)

            # Nothing else is due; the lease does not come back.
            clock.advance(30)
            assert await bounded(etcd.revoke_expired_leases()) == 0
            assert keys(etcd, b"/e/") == [b"/e/other", b"/e/plain"]

    run(scenario)


def test_expired_lease_without_keys_takes_no_revision(tmp_path, no_expiry_loop):
    async def scenario() -> None:
        clock = ManualClock()
        async with member(tmp_path / "m", clock) as etcd:
            lid = await grant(etcd, 5)
            rev = etcd.store.current_revision
            clock.advance(5)  # exactly the TTL: due
            assert await bounded(etcd.revoke_expired_leases()) == 1
            assert lease_ids(etcd) == []
            assert ttl(etcd, lid).TTL == -1
            assert etcd.store.current_revision == rev

    run(scenario)


def test_the_expiry_loop_revokes_on_its_own(tmp_path):
    """The member's 500 ms loop (real time) revokes what the clock made due."""
    async def scenario() -> None:
        clock = ManualClock()
        async with member(tmp_path / "m", clock) as etcd:
            lid = await grant(etcd, 10)
            await put(etcd, b"/loop/k", lid)
            stream = watch(etcd, b"/loop/")
            await next_response(stream)  # created
            clock.advance(10.5)
            resp = await bounded(next_response(stream), 5.0)  # a few ticks at most
            assert [(e.type, e.kv.key) for e in resp.events] == [(DELETE, b"/loop/k")]
            assert lease_ids(etcd) == []

    run(scenario)


def test_keepalive_resets_the_ttl(tmp_path, no_expiry_loop):
    async def scenario() -> None:
        clock = ManualClock()
        async with member(tmp_path / "m", clock) as etcd:
            lid = await grant(etcd, 10)
            await put(etcd, b"/ka/k", lid)
            clock.advance(8)
            assert ttl(etcd, lid).TTL == 2
            assert etcd.lease_renew(lid) == 10, "a keepalive answers the granted TTL"
            assert ttl(etcd, lid).TTL == 10
            clock.advance(8)  # 16 s after the grant, 8 after the keepalive
            assert await bounded(etcd.revoke_expired_leases()) == 0
            assert keys(etcd, b"/ka/") == [b"/ka/k"]
            assert ttl(etcd, lid).TTL == 2
            assert etcd.lease_renew(lid) == 10
            clock.advance(9.5)
            assert await bounded(etcd.revoke_expired_leases()) == 0
            clock.advance(0.5)
            # Due but not yet revoked: a keepalive cannot bring it back (TTL 0).
            assert etcd.lease_renew(lid) == 0
            assert await bounded(etcd.revoke_expired_leases()) == 1
            assert keys(etcd, b"/ka/") == []
            assert etcd.lease_renew(lid) == 0, "unknown lease: TTL 0"
            assert etcd.lease_renew(123456) == 0

    run(scenario)


def test_time_to_live_truncates_and_reports_keys(tmp_path, no_expiry_loop):
    async def scenario() -> None:
        clock = ManualClock()
        async with member(tmp_path / "m", clock) as etcd:
            lid = await grant(etcd, 30)
            clock.advance(0.5)
            resp = ttl(etcd, lid)
            assert (resp.ID, resp.TTL, resp.grantedTTL, list(resp.keys)) == (lid, 29, 30, [])
            await put(etcd, b"/t/b", lid)
            await put(etcd, b"/t/a", lid)
            assert list(ttl(etcd, lid, with_keys=True).keys) == [b"/t/a", b"/t/b"]
            assert list(ttl(etcd, lid, with_keys=False).keys) == []
            clock.advance(28.9)  # 0.6 s left
            assert ttl(etcd, lid).TTL == 0
            unknown = ttl(etcd, 424242, with_keys=True)
            assert (unknown.ID, unknown.TTL, unknown.grantedTTL, list(unknown.keys)) == (
                424242, -1, 0, [])

    run(scenario)


# -- grant rules ---------------------------------------------------------------------------


def test_grant_ttl_minimum_maximum_and_ids(tmp_path, no_expiry_loop):
    async def scenario() -> None:
        clock = ManualClock()
        async with member(tmp_path / "m", clock) as etcd:
            for lid, asked in ((100, 1), (101, 0), (102, -5)):
                resp = await bounded(etcd.lease_grant(LeaseGrantRequest(ID=lid, TTL=asked)))
                got = (resp.ID, resp.TTL)
                assert got == (lid, 2), f"TTL {asked} is raised to 2"
                assert ttl(etcd, lid).grantedTTL == 2

            assert await failure(etcd.lease_grant(
                LeaseGrantRequest(ID=200, TTL=9_000_000_001))) == (
                "OUT_OF_RANGE", "etcdserver: too large lease TTL")
            assert 200 not in lease_ids(etcd)
            resp = await bounded(etcd.lease_grant(LeaseGrantRequest(ID=201, TTL=9_000_000_000)))
            assert resp.TTL == 9_000_000_000

            assert await failure(etcd.lease_grant(LeaseGrantRequest(ID=100, TTL=30))) == (
                "FAILED_PRECONDITION", "etcdserver: lease already exists")
            assert ttl(etcd, 100).grantedTTL == 2, "the existing lease is unchanged"

            # ID 0: the server picks a positive id, a new one each time.
            auto = [await grant(etcd, 30) for _ in range(3)]
            assert all(0 < i < 2**63 for i in auto)
            assert len(set(auto)) == 3
            assert not set(auto) & {100, 101, 102, 201}

            # An explicit id is used verbatim, negative ones included.
            assert await grant(etcd, 30, -7) == -7
            assert ttl(etcd, -7).grantedTTL == 30
            assert lease_ids(etcd) == sorted([100, 101, 102, 201, -7, *auto])

            # Revoke / put with an unknown lease.
            assert await failure(etcd.lease_revoke(LeaseRevokeRequest(ID=999))) == (
                "NOT_FOUND", "etcdserver: requested lease not found")
            assert await failure(etcd.put(PutRequest(key=b"/g/k", lease=999))) == (
                "NOT_FOUND", "etcdserver: requested lease not found")
            assert await failure(etcd.txn(TxnRequest(success=[
                RequestOp(request_put=PutRequest(key=b"/g/k", lease=999))]))) == (
                "NOT_FOUND", "etcdserver: requested lease not found")
            assert keys(etcd, b"/g/") == []

    run(scenario)


# -- many leases at once ---------------------------------------------------------------------


def test_ten_thousand_leases_expire_over_successive_ticks(tmp_path, no_expiry_loop):
    n, per_tick = 10_000, etcd_module.LEASE_REVOKES_PER_TICK
    assert per_tick == 500

    async def scenario() -> None:
        clock = ManualClock()
        async with member(tmp_path / "m", clock) as etcd:
            ids = list(range(1, n + 1))
            await bounded(asyncio.gather(*(
                etcd.lease_grant(LeaseGrantRequest(ID=i, TTL=5)) for i in ids)), 60)
            # Every 10th lease holds a key.
            await bounded(asyncio.gather(*(
                put(etcd, b"/many/%05d" % i, i) for i in ids[::10])), 60)
            assert len(lease_ids(etcd)) == n
            assert len(keys(etcd, b"/many/")) == n // 10

            clock.advance(5.5)
            remaining = n
            put_latencies = []
            ticks = 0
            while remaining:
                rev = etcd.store.current_revision
                keyed = len(keys(etcd, b"/many/"))
                done = await bounded(etcd.revoke_expired_leases(), 60)
                ticks += 1
                assert done == min(per_tick, remaining), f"tick {ticks} revoked {done}"
                remaining -= done
                assert len(lease_ids(etcd)) == remaining
                # Each revoke that deleted a key took one revision of its own.
                deleted = keyed - len(keys(etcd, b"/many/"))
                assert etcd.store.current_revision == rev + deleted
                # A write between ticks completes.
                t0 = time.monotonic()
                wrev = await bounded(etcd.put(PutRequest(key=b"/w/k", value=b"%d" % ticks)))
                put_latencies.append(time.monotonic() - t0)
                assert wrev.header.revision == etcd.store.current_revision
            assert ticks == n // per_tick
            assert await bounded(etcd.revoke_expired_leases()) == 0
            assert keys(etcd, b"/many/") == []
            assert lease_ids(etcd) == []
            assert max(put_latencies) < 5.0, put_latencies  # generous sanity only

    run(scenario)


def test_writes_proceed_while_a_tick_revokes(tmp_path, no_expiry_loop):
    async def scenario() -> None:
        clock = ManualClock()
        async with member(tmp_path / "m", clock) as etcd:
            await bounded(asyncio.gather(*(
                etcd.lease_grant(LeaseGrantRequest(ID=i, TTL=5)) for i in range(1, 1001))), 60)
            await bounded(asyncio.gather(*(put(etcd, b"/c/%04d" % i, i)
                                           for i in range(1, 1001))), 60)
            clock.advance(6)
            tick = asyncio.ensure_future(etcd.revoke_expired_leases())
            writes = [asyncio.ensure_future(put(etcd, b"/cw/%d" % i)) for i in range(20)]
            done, *revs = await bounded(asyncio.gather(tick, *writes), 60)
            assert done == 500
            assert len(set(revs)) == 20
            assert len(keys(etcd, b"/cw/")) == 20
            assert len(keys(etcd, b"/c/")) == 500
            assert await bounded(etcd.revoke_expired_leases(), 60) == 500
            assert keys(etcd, b"/c/") == []

    run(scenario)


# -- restart ---------------------------------------------------------------------------------


def test_restart_gives_leases_their_full_ttl_and_keeps_keys(tmp_path, no_expiry_loop):
    async def scenario() -> None:
        clock = ManualClock()
        data = tmp_path / "m"
        async with member(data, clock) as etcd:
            short = await grant(etcd, 10, 7)
            long_ = await grant(etcd, 100, 8)
            gone = await grant(etcd, 10, 9)
            await put(etcd, b"/r/a", short)
            await put(etcd, b"/r/b", short)
            await put(etcd, b"/r/c", long_)
            await put(etcd, b"/r/d", gone)
            await put(etcd, b"/r/moved", short)
            await put(etcd, b"/r/moved", long_)  # moved to the other lease
            await put(etcd, b"/r/detached", short)
            await put(etcd, b"/r/detached")  # detached
            await bounded(etcd.lease_revoke(LeaseRevokeRequest(ID=gone)))
            clock.advance(7)
            assert ttl(etcd, short).TTL == 3
            rev = etcd.store.current_revision

        async with member(data, clock) as etcd:
            assert lease_ids(etcd) == [short, long_]
            a = ttl(etcd, short, with_keys=True)
            # Full TTL again after the restart, plus etcd's one election timeout (1 s).
            assert (a.TTL, a.grantedTTL, list(a.keys)) == (11, 10, [b"/r/a", b"/r/b"])
            b = ttl(etcd, long_, with_keys=True)
            assert (b.TTL, b.grantedTTL, list(b.keys)) == (101, 100, [b"/r/c", b"/r/moved"])
            assert ttl(etcd, gone).TTL == -1
            assert etcd.store.current_revision == rev

            clock.advance(9.9)  # 16.9 s after the grant, 9.9 after the restart
            assert await bounded(etcd.revoke_expired_leases()) == 0
            assert keys(etcd, b"/r/") == [b"/r/a", b"/r/b", b"/r/c", b"/r/detached", b"/r/moved"]
            # etcd adds the election timeout (1 s) on promotion; past both it is gone.
            clock.advance(1.6)
            assert await bounded(etcd.revoke_expired_leases()) == 1
            assert keys(etcd, b"/r/") == [b"/r/c", b"/r/detached", b"/r/moved"]
            assert etcd.store.current_revision == rev + 1
            assert etcd.lease_renew(long_) == 100

        async with member(data, clock) as etcd:
            assert lease_ids(etcd) == [long_]
            assert list(ttl(etcd, long_, with_keys=True).keys) == [b"/r/c", b"/r/moved"]

    run(scenario)


def test_restart_extends_leases_by_the_election_timeout(tmp_path, no_expiry_loop):
    """etcd (facts §4.9): a restart (a new leader) resets every lease to its full TTL
    *plus the election timeout* (lessor.Promote(extend), extend = 1 s by default), so a
    10 s lease is not due until 11 s after the restart."""
    async def scenario() -> None:
        clock = ManualClock()
        data = tmp_path / "m"
        async with member(data, clock) as etcd:
            lid = await grant(etcd, 10)
            await put(etcd, b"/x/k", lid)
            clock.advance(4)
        async with member(data, clock) as etcd:
            clock.advance(10.5)  # past the TTL, within TTL + election timeout
            revoked_early = await bounded(etcd.revoke_expired_leases())
            assert revoked_early == 0, (
                "revoked 10.5 s after the restart; etcd extends it to 11 s")
            clock.advance(0.6)
            assert await bounded(etcd.revoke_expired_leases()) == 1
            assert keys(etcd, b"/x/") == []

    run(scenario)
