"""Differential tests of the Lease service: real etcd (3.4 and 3.5) vs etcdlite, response by
response (headers included), through the ``pair`` fixture.

Server-chosen lease ids (grant with ID 0) differ by nature: those responses are compared
with the id zeroed (after checking it is positive), and LeaseLeases with those ids left
out. Keys of a TimeToLive come in map order from etcd: they are compared sorted.
Remaining TTLs are compared only right after a grant of 30 s (both say 29).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from etcdlite.protos import kv_pb2, rpc_pb2

pytestmark = pytest.mark.differential

STREAM_TIMEOUT_S = 15.0
LEASE = "Lease"


def grant(ttl: int, lease_id: int = 0):
    return lambda s: s.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=ttl, ID=lease_id))


def revoke(lease_id: int):
    return lambda s: s.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=lease_id))


def time_to_live(lease_id: int, keys: bool = False):
    return lambda s: s.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=keys))


def leases():
    return lambda s: s.LeaseLeases(rpc_pb2.LeaseLeasesRequest())


def sorted_keys(resp: Message, _server: Any) -> None:
    keys = sorted(resp.keys)
    del resp.keys[:]
    resp.keys.extend(keys)


def test_grant_ids_ttls_and_errors(pair):
    pair.both(grant(30, 1000), LEASE)
    assert pair.both_error(grant(30, 1000), LEASE) == (
        grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: lease already exists")
    # Below the minimum TTL: raised to 2.
    for lease_id, ttl in ((1001, 1), (1002, 0), (1003, -5)):
        assert pair.both(grant(ttl, lease_id), LEASE).TTL == 2
    assert pair.both_error(grant(9_000_000_001, 1004), LEASE) == (
        grpc.StatusCode.OUT_OF_RANGE, "etcdserver: too large lease TTL")
    pair.both(grant(9_000_000_000, 1005), LEASE)
    pair.both(time_to_live(1005), LEASE)
    # Explicit ids are used verbatim, negative ones included.
    pair.both(grant(30, -7), LEASE)
    pair.both(time_to_live(-7), LEASE)

    # ID 0: each server picks a positive id of its own; everything else must agree.
    auto: dict[str, set[int]] = {}

    def zero_id(resp: Message, server: Any) -> None:
        assert resp.ID > 0, f"{server.flavor} picked id {resp.ID}"
        auto.setdefault(server.flavor, set()).add(resp.ID)
        resp.ID = 0

    pair.both(grant(30), LEASE, normalize=zero_id)
    pair.both(grant(1), LEASE, normalize=zero_id)
    assert len(auto[pair.lite.flavor]) == 2

    def explicit_leases(resp: Message, server: Any) -> None:
        listed = {s.ID for s in resp.leases}
        assert auto[server.flavor] <= listed, f"{server.flavor} does not list its own leases"
        del resp.leases[:]
        resp.leases.extend(rpc_pb2.LeaseStatus(ID=i) for i in sorted(listed - auto[server.flavor]))

    pair.both(leases(), LEASE, normalize=explicit_leases)
    for lid in (1000, 1001, -7):
        pair.both(revoke(lid), LEASE)
    pair.both(leases(), LEASE, normalize=explicit_leases)
    pair.revision()


def test_time_to_live_keys_and_unknown(pair):
    pair.both(grant(30, 2000), LEASE)
    pair.both(time_to_live(2000, keys=True), LEASE)  # TTL 29, grantedTTL 30, no keys
    pair.put(b"/tl/b", b"1", lease=2000)
    pair.put(b"/tl/a", b"2", lease=2000)
    pair.put(b"/tl/c", b"3", lease=2000)
    pair.both(time_to_live(2000, keys=True), LEASE, normalize=sorted_keys)
    pair.both(time_to_live(2000, keys=False), LEASE)
    pair.both(time_to_live(4242), LEASE)  # unknown: TTL -1, no error
    pair.both(time_to_live(4242, keys=True), LEASE)
    # A put without a lease detaches, a delete detaches, ignore_lease keeps it.
    pair.put(b"/tl/b", b"4")
    pair.delete(b"/tl/c")
    pair.put(b"/tl/a", b"5", ignore_lease=True)
    pair.both(time_to_live(2000, keys=True), LEASE, normalize=sorted_keys)
    pair.get(b"/tl/", b"/tl0")


def test_put_with_lease_then_revoke(pair, op):
    assert pair.both_error(lambda kv: kv.Put(rpc_pb2.PutRequest(key=b"/r/x", lease=3333))) == (
        grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found")
    assert pair.both_error(revoke(3333), LEASE) == (
        grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found")
    pair.both(grant(60, 3000), LEASE)
    pair.both(grant(60, 3001), LEASE)
    pair.put(b"/r/a", b"1", lease=3000)
    pair.put(b"/r/b", b"2", lease=3000, prev_kv=True)
    pair.put(b"/r/c", b"3", lease=3001)
    pair.put(b"/r/moved", b"4", lease=3000)
    pair.put(b"/r/moved", b"5", lease=3001, prev_kv=True)  # moves to 3001
    pair.get(b"/r/", b"/r0")
    # Txn compares on LEASE.
    for target_lease, result in ((3000, "EQUAL"), (0, "EQUAL"), (3000, "NOT_EQUAL"),
                                 (2999, "GREATER"), (3001, "LESS")):
        pair.txn([op.cmp(b"/r/a", "LEASE", result, target_lease)])
    pair.txn([op.cmp(b"/r/none", "LEASE", "EQUAL", 0)])
    pair.txn([op.cmp(b"/r/", "LEASE", "EQUAL", 3000, range_end=b"/r0")])
    # A txn put naming a missing lease; a txn put attaching one.
    pair.both_error(lambda kv: kv.Txn(rpc_pb2.TxnRequest(success=[op.put(b"/r/t", lease=3)])))
    pair.txn(success=[op.put(b"/r/t", b"6", lease=3000)])

    pair.both(revoke(3000), LEASE)  # deletes /r/a, /r/b, /r/t in one revision
    pair.get(b"/r/", b"/r0")
    pair.both(time_to_live(3000, keys=True), LEASE)
    assert pair.both_error(revoke(3000), LEASE)[0] == grpc.StatusCode.NOT_FOUND
    pair.delete(b"/r/c")
    pair.delete(b"/r/moved")
    pair.both(revoke(3001), LEASE)  # no keys left: no new revision
    pair.revision()


class _Stream:
    """A request iterator the test feeds and ends."""

    def __init__(self, first: Message) -> None:
        self._items: list[Message] = [first]
        self._cond = threading.Condition()
        self._done = False

    def add(self, msg: Message) -> None:
        with self._cond:
            self._items.append(msg)
            self._cond.notify_all()

    def end(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def __iter__(self) -> Iterator[Message]:
        while True:
            with self._cond:
                while not self._items and not self._done:
                    self._cond.wait()
                if not self._items:
                    return
                item = self._items.pop(0)
            yield item


def keepalive_session(stub: Any, plan: list[int | None], revoke_stub: Any) -> list[Message]:
    """One KeepAlive stream: each int is a request whose reply is awaited; None revokes
    lease 4001 (unary) between two requests of the stream."""
    reqs = _Stream(rpc_pb2.LeaseKeepAliveRequest(ID=plan[0]))  # type: ignore[arg-type]
    call = stub.LeaseKeepAlive(iter(reqs), timeout=STREAM_TIMEOUT_S)
    out = [next(call)]
    try:
        for item in plan[1:]:
            if item is None:
                revoke_stub.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=4001),
                                        timeout=STREAM_TIMEOUT_S)
                continue
            reqs.add(rpc_pb2.LeaseKeepAliveRequest(ID=item))
            out.append(next(call))
    finally:
        reqs.end()
    assert list(call) == [], "the server ends the stream when the client does"
    return out


def test_keepalive_stream(pair):
    pair.both(grant(30, 4000), LEASE)
    pair.both(grant(10, 4001), LEASE)
    pair.put(b"/ka/k", lease=4001)
    plan: list[int | None] = [4000, 4001, 987654, 4000, None, 4001, 4000]
    real = keepalive_session(pair.real.stub(LEASE), plan, pair.real.stub(LEASE))
    lite = keepalive_session(pair.lite.stub(LEASE), plan, pair.lite.stub(LEASE))
    assert [(r.ID, r.TTL) for r in real] == [(4000, 30), (4001, 10), (987654, 0), (4000, 30),
                                             (4001, 0), (4000, 30)]
    assert lite == real
    pair.get(b"/ka/")
    pair.both(time_to_live(4001), LEASE)


def _watch_one_event_batch(stub: Any, key: bytes, range_end: bytes, ready: threading.Event,
                           out: list[Any]) -> None:
    reqs = _Stream(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
        key=key, range_end=range_end)))
    call = stub.Watch(iter(reqs), timeout=STREAM_TIMEOUT_S)
    try:
        out.append(next(call))  # created
        ready.set()
        out.append(next(call))  # the expiry's deletes (bounded by the stream deadline)
    except grpc.RpcError as e:
        out.append(e)
    finally:
        ready.set()
        reqs.end()
        call.cancel()


def test_expiry_deletes_keys_in_one_revision_and_one_watch_response(pair):
    """TTL 2 (the minimum) on both servers at once; the watchers see the expiry."""
    pair.both(grant(2, 5000), LEASE)
    pair.put(b"/x/a", lease=5000)
    pair.put(b"/x/b", lease=5000)
    pair.put(b"/x/keep")
    results: dict[str, list[Any]] = {"real": [], "lite": []}
    threads = []
    for which in ("real", "lite"):
        ready = threading.Event()
        t = threading.Thread(target=_watch_one_event_batch, args=(
            getattr(pair, which).stub("Watch"), b"/x/", b"/x0", ready, results[which]))
        t.start()
        threads.append((t, ready))
    for _t, ready in threads:
        assert ready.wait(STREAM_TIMEOUT_S)
    for t, _ in threads:
        t.join(STREAM_TIMEOUT_S + 5)
    real, lite = results["real"], results["lite"]
    assert len(real) == 2 and not isinstance(real[1], grpc.RpcError), real
    assert [(e.type, e.kv.key) for e in real[1].events] == [
        (kv_pb2.Event.DELETE, b"/x/a"), (kv_pb2.Event.DELETE, b"/x/b")]
    assert lite == real
    pair.get(b"/x/", b"/x0")
    pair.both(time_to_live(5000), LEASE)
    pair.both(leases(), LEASE)


def test_edge_ids_and_untaken_branches(pair, op):
    # Id 0 everywhere but Grant: no such lease.
    pair.both(time_to_live(0, keys=True), LEASE)
    assert pair.both_error(revoke(0), LEASE)[0] == grpc.StatusCode.NOT_FOUND
    real = keepalive_session(pair.real.stub(LEASE), [0, -1], pair.real.stub(LEASE))
    lite = keepalive_session(pair.lite.stub(LEASE), [0, -1], pair.lite.stub(LEASE))
    assert lite == real
    # The extreme int64 ids are used verbatim.
    for lease_id in (2**63 - 1, -(2**63)):
        pair.both(grant(30, lease_id), LEASE)
        pair.put(b"/e/%d" % lease_id, lease=lease_id)
        pair.both(time_to_live(lease_id, keys=True), LEASE)
    pair.get(b"/e/", b"/e0")
    # prev_kv carries the lease of the previous version.
    pair.put(b"/e/%d" % (2**63 - 1), b"x", lease=-(2**63), prev_kv=True)
    pair.both(time_to_live(-(2**63), keys=True), LEASE, normalize=sorted_keys)
    # A missing lease in the branch that does not run is not checked.
    pair.txn([op.cmp(b"/e/none", "VERSION", "EQUAL", 1)],
             success=[op.put(b"/e/t", lease=99)], failure=[op.get(b"/e/none")])
    pair.txn([op.cmp(b"/e/none", "VERSION", "EQUAL", 0)],
             success=[op.get(b"/e/none")], failure=[op.put(b"/e/t", lease=99)])
    # ...but in the branch that runs, even nested, it fails the whole txn.
    pair.both_error(lambda kv: kv.Txn(rpc_pb2.TxnRequest(success=[
        op.put(b"/e/u", b"1"), op.txn(success=[op.put(b"/e/t", lease=99)])])))
    pair.txn(success=[op.txn(success=[op.put(b"/e/t", lease=2**63 - 1)])])
    pair.both(time_to_live(2**63 - 1, keys=True), LEASE, normalize=sorted_keys)
    pair.both(revoke(2**63 - 1), LEASE)
    pair.get(b"/e/", b"/e0")
    pair.both(leases(), LEASE)


def test_minimum_ttl_follows_the_election_timeout(start_real_etcd: Callable[..., Any],
                                                  start_etcdlite: Callable[..., Any],
                                                  port_factory: Callable[[], int]):
    """etcd's minimum TTL is ceil(((3 * electionTicks) / 2) * tick) with an integer
    division of ticks (100 ms heartbeat): --election-timeout 2700 -> 27 ticks -> 40 ticks
    -> 4 s (ceil(1.5 * 2.7) would be 5)."""
    peer_port = port_factory()
    with ThreadPoolExecutor(2) as pool:
        f_real = pool.submit(start_real_etcd, "--election-timeout", "2700", peer_port=peer_port)
        f_lite = pool.submit(start_etcdlite, "--election-timeout", "2700",
                             peer_url=f"http://127.0.0.1:{peer_port}")
        real, lite = f_real.result(), f_lite.result()
    req = rpc_pb2.LeaseGrantRequest(TTL=1, ID=1)
    want = real.stub(LEASE).LeaseGrant(req, timeout=STREAM_TIMEOUT_S)
    got = lite.stub(LEASE).LeaseGrant(req, timeout=STREAM_TIMEOUT_S)
    assert want.TTL == 4
    assert got == want, f"--election-timeout 2700: etcd grants TTL {want.TTL}, etcdlite {got.TTL}"



def test_nospace_alarm_refuses_grants_but_not_revokes(pair):
    """LeaseGrant is quota-checked (facts §4.9): with a NOSPACE alarm raised etcd refuses
    it (RESOURCE_EXHAUSTED "etcdserver: mvcc: database space exceeded"); revoking, which
    frees space, still works."""
    pair.both(grant(60, 6000), LEASE)
    member_id = pair.real.stub("Maintenance").Status(
        rpc_pb2.StatusRequest(), timeout=STREAM_TIMEOUT_S).header.member_id
    def without_header_on_3_4(resp: rpc_pb2.AlarmResponse, server: object) -> None:
        # etcd 3.4.23 sends Alarm responses without a header; 3.5.1 (and etcdlite) fill it.
        if pair.real.flavor == "etcd-3.4":
            resp.ClearField("header")

    pair.both(lambda m: m.Alarm(rpc_pb2.AlarmRequest(
        action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=member_id, alarm=rpc_pb2.NOSPACE)),
        "Maintenance", normalize=without_header_on_3_4)
    assert pair.both_error(grant(60, 6001), LEASE) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")
    pair.both(time_to_live(6001), LEASE)
    pair.both(revoke(6000), LEASE)
    pair.both(time_to_live(6000), LEASE)
