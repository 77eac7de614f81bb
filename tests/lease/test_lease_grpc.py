"""The Lease service over gRPC (raw stubs) against an etcdlite process (``lease_lite``).

Tests share the server: each uses its own keys (``ns``) and revokes what it granted. The
real-clock tests keep TTLs at the 2 s minimum and bound every wait: a keepalive stream
holds a lease for ~4 s at TTL/3 intervals (the only sleeps: a client's keepalive pace),
and an un-kept lease is awaited through a watch with a timeout.
"""

from __future__ import annotations

import time

import grpc
import pytest
from leaselib import CALL_TIMEOUT_S, KeepAlive, Watch, prefix_end

from etcdlite.protos import kv_pb2, rpc_pb2

PUT = kv_pb2.Event.PUT
DELETE = kv_pb2.Event.DELETE
T = CALL_TIMEOUT_S


@pytest.fixture
def kv(lease_lite):
    return lease_lite.stub("KV")


@pytest.fixture
def lease(lease_lite):
    return lease_lite.stub("Lease")


def grant(lease, ttl: int, lease_id: int = 0) -> int:
    resp = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=ttl, ID=lease_id), timeout=T)
    return resp.ID


def ttl(lease, lease_id: int, keys: bool = True) -> rpc_pb2.LeaseTimeToLiveResponse:
    return lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=keys),
                                 timeout=T)


def revoke(lease, lease_id: int) -> rpc_pb2.LeaseRevokeResponse:
    return lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=lease_id), timeout=T)


def put(kv, key: bytes, value: bytes = b"v", **kw) -> rpc_pb2.PutResponse:
    return kv.Put(rpc_pb2.PutRequest(key=key, value=value, **kw), timeout=T)


def get(kv, key: bytes, range_end: bytes = b"") -> rpc_pb2.RangeResponse:
    return kv.Range(rpc_pb2.RangeRequest(key=key, range_end=range_end), timeout=T)


def current_revision(kv) -> int:
    return get(kv, b"\x00", b"\x00").header.revision


def id_ttl(resp) -> tuple[int, int]:
    return resp.ID, resp.TTL


def lease_ids(lease) -> set[int]:
    resp = lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=T)
    return {s.ID for s in resp.leases}


# -- KeepAlive, TimeToLive, Leases ---------------------------------------------------------


def test_keepalive_stream_answers_each_request(lease, kv):
    a = grant(lease, 30)
    b = grant(lease, 60)
    rev = current_revision(kv)
    with KeepAlive(lease) as ka:
        for lid, want in ((a, 30), (b, 60), (a, 30), (987654321, 0), (b, 60)):
            resp = ka.keep_alive(lid)
            assert id_ttl(resp) == (lid, want)
            assert resp.header.revision == rev
            assert resp.header.member_id and resp.header.cluster_id and resp.header.raft_term
        # Several requests in flight: one answer each, in order.
        for lid in (a, 424242, b):
            ka.send(rpc_pb2.LeaseKeepAliveRequest(ID=lid))
        got = [ka.recv() for _ in range(3)]
        assert [(r.ID, r.TTL) for r in got] == [(a, 30), (424242, 0), (b, 60)]
        revoke(lease, b)
        resp = ka.keep_alive(b)
        assert id_ttl(resp) == (b, 0), "a revoked lease is answered with TTL 0"
        # The stream is still usable after TTL-0 answers.
        assert ka.keep_alive(a).TTL == 30
    revoke(lease, a)


def test_time_to_live_and_leases(lease, kv, ns):
    a = grant(lease, 30)
    resp = ttl(lease, a)
    assert (resp.ID, resp.TTL, resp.grantedTTL, list(resp.keys)) == (a, 29, 30, [])
    assert resp.header.revision == current_revision(kv)
    put(kv, ns + b"k2", lease=a)
    put(kv, ns + b"k1", lease=a)
    assert sorted(ttl(lease, a).keys) == [ns + b"k1", ns + b"k2"]
    assert list(ttl(lease, a, keys=False).keys) == []

    unknown = ttl(lease, 31337)
    assert (unknown.ID, unknown.TTL, unknown.grantedTTL, list(unknown.keys)) == (31337, -1, 0, [])

    b = grant(lease, 10, lease_id=-12345)  # explicit ids are used verbatim
    assert b == -12345
    ids = lease_ids(lease)
    assert {a, b} <= ids
    resp = lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=T)
    assert all(s.ListFields() == [(rpc_pb2.LeaseStatus.DESCRIPTOR.fields_by_name["ID"], s.ID)]
               for s in resp.leases), "LeaseLeases carries ids only"
    revoke(lease, a)
    revoke(lease, b)
    assert not {a, b} & lease_ids(lease)
    assert get(kv, ns, prefix_end(ns)).count == 0


def test_grant_errors(lease):
    lid = grant(lease, 30, lease_id=777_000_001)
    with pytest.raises(grpc.RpcError) as e:
        grant(lease, 30, lease_id=lid)
    assert (e.value.code(), e.value.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: lease already exists")
    with pytest.raises(grpc.RpcError) as e:
        grant(lease, 9_000_000_001)
    assert (e.value.code(), e.value.details()) == (
        grpc.StatusCode.OUT_OF_RANGE, "etcdserver: too large lease TTL")
    with pytest.raises(grpc.RpcError) as e:
        revoke(lease, 777_000_002)
    assert (e.value.code(), e.value.details()) == (
        grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found")
    resp = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=1), timeout=T)
    assert resp.ID > 0 and resp.TTL == 2 and resp.error == ""
    revoke(lease, resp.ID)
    revoke(lease, lid)


# -- attaching and detaching keys ----------------------------------------------------------


def test_put_attaches_put_without_lease_detaches(lease, kv, ns):
    a, b = grant(lease, 60), grant(lease, 60)
    k = ns + b"k"
    put(kv, k, lease=a)
    assert get(kv, k).kvs[0].lease == a
    assert list(ttl(lease, a).keys) == [k]

    put(kv, k, b"v2", ignore_lease=True)  # keeps its lease
    assert get(kv, k).kvs[0].lease == a
    assert list(ttl(lease, a).keys) == [k]

    put(kv, k, lease=b)  # moves to b
    assert (list(ttl(lease, a).keys), list(ttl(lease, b).keys)) == ([], [k])

    put(kv, k, b"v3")  # no lease: detached
    assert get(kv, k).kvs[0].lease == 0
    assert list(ttl(lease, b).keys) == []

    rev = current_revision(kv)
    assert revoke(lease, b).header.revision == rev, "nothing to delete: no new revision"
    assert get(kv, k).kvs[0].value == b"v3", "a detached key survives the revoke"
    revoke(lease, a)


def test_delete_detaches(lease, kv, ns):
    a = grant(lease, 60)
    put(kv, ns + b"x", lease=a)
    put(kv, ns + b"y", lease=a)
    kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=ns + b"x"), timeout=T)
    assert list(ttl(lease, a).keys) == [ns + b"y"]
    put(kv, ns + b"x")  # re-created without a lease
    rev = current_revision(kv)
    resp = revoke(lease, a)
    assert resp.header.revision == rev + 1
    assert [x.key for x in get(kv, ns, prefix_end(ns)).kvs] == [ns + b"x"]


def test_txn_compare_on_lease_and_txn_put_attaches(lease, kv, ns):
    a = grant(lease, 60)
    k, missing = ns + b"k", ns + b"missing"

    def cmp(key: bytes, value: int, result: str = "EQUAL") -> rpc_pb2.Compare:
        return rpc_pb2.Compare(key=key, target=rpc_pb2.Compare.LEASE,
                               result=rpc_pb2.Compare.CompareResult.Value(result), lease=value)

    def txn(*compares: rpc_pb2.Compare, success=()) -> rpc_pb2.TxnResponse:
        return kv.Txn(rpc_pb2.TxnRequest(compare=list(compares), success=list(success)),
                      timeout=T)

    # Txn put with a lease attaches.
    assert txn(cmp(missing, 0), success=[rpc_pb2.RequestOp(
        request_put=rpc_pb2.PutRequest(key=k, value=b"v", lease=a))]).succeeded
    assert list(ttl(lease, a).keys) == [k]
    assert txn(cmp(k, a)).succeeded
    assert not txn(cmp(k, 0)).succeeded
    assert txn(cmp(k, 0, "GREATER")).succeeded
    assert txn(cmp(k, a + 1, "LESS")).succeeded
    assert txn(cmp(k, a + 1, "NOT_EQUAL")).succeeded
    assert txn(cmp(missing, 0)).succeeded, "a missing key compares as lease 0"
    assert not txn(cmp(missing, a)).succeeded
    # A txn naming a missing lease fails as a whole.
    with pytest.raises(grpc.RpcError) as e:
        txn(success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, lease=a + 1))])
    assert (e.value.code(), e.value.details()) == (
        grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found")
    revoke(lease, a)
    assert not txn(cmp(k, a)).succeeded


# -- real clock: keepalive keeps a key, an un-kept lease expires ---------------------------


def test_keepalive_keeps_a_key_past_its_ttl(lease, kv, ns):
    lid = grant(lease, 2)
    put(kv, ns + b"k", lease=lid)
    start = time.monotonic()
    with KeepAlive(lease) as ka:
        while time.monotonic() - start < 4.0:
            time.sleep(2 / 3)  # the client's keepalive pace (TTL/3), not a wait for an event
            assert ka.keep_alive(lid).TTL == 2
            assert get(kv, ns + b"k").count == 1
    assert time.monotonic() - start >= 4.0
    assert ttl(lease, lid).TTL in (1, 2)
    revoke(lease, lid)


def test_unkept_lease_expires_and_a_watcher_sees_the_deletes(lease_lite, lease, kv, ns):
    lid = grant(lease, 2)
    keeper = grant(lease, 30)
    t0 = time.monotonic()
    put(kv, ns + b"a", lease=lid)
    put(kv, ns + b"b", lease=lid)
    put(kv, ns + b"c", lease=keeper)
    with Watch(lease_lite.stub("Watch")) as w:
        w.created(ns, prefix_end(ns))
        resp = w.recv(timeout=6.0)  # expiry is checked every 500 ms: ~2-2.5 s
        elapsed = time.monotonic() - t0
        assert [(e.type, e.kv.key) for e in resp.events] == [(DELETE, ns + b"a"),
                                                             (DELETE, ns + b"b")]
        revs = {e.kv.mod_revision for e in resp.events}
        assert revs == {resp.header.revision}, "both keys deleted in one revision"
        assert elapsed >= 1.9, f"expired after {elapsed:.2f}s, before its TTL"
        w.sync()  # and nothing else
    assert [x.key for x in get(kv, ns, prefix_end(ns)).kvs] == [ns + b"c"]
    assert ttl(lease, lid).TTL == -1
    assert lid not in lease_ids(lease)
    with KeepAlive(lease) as ka:
        assert ka.keep_alive(lid).TTL == 0
    revoke(lease, keeper)


# -- the service-registration pattern ------------------------------------------------------


def test_service_registration_discovery_deregistration(lease_lite, lease, kv, ns):
    services = ns + b"services/api/"
    with Watch(lease_lite.stub("Watch")) as w:
        # Instance 1 registers with a TTL and keeps its lease alive.
        i1 = grant(lease, 10)
        put(kv, services + b"i1", b"10.0.0.1:80", lease=i1)
        # A client discovers: list the prefix, then watch from the next revision.
        listing = get(kv, services, prefix_end(services))
        assert [(x.key, x.value) for x in listing.kvs] == [(services + b"i1", b"10.0.0.1:80")]
        w.created(services, prefix_end(services), start_revision=listing.header.revision + 1)

        with KeepAlive(lease) as ka:
            i2 = grant(lease, 10)
            put(kv, services + b"i2", b"10.0.0.2:80", lease=i2)
            ev = w.recv().events
            assert [(e.type, e.kv.key, e.kv.value, e.kv.lease) for e in ev] == [
                (PUT, services + b"i2", b"10.0.0.2:80", i2)]
            assert ka.keep_alive(i1).TTL == 10 and ka.keep_alive(i2).TTL == 10

            # Instance 1 deregisters by revoking its lease.
            rev = revoke(lease, i1).header.revision
            ev = w.recv().events
            assert [(e.type, e.kv.key, e.kv.mod_revision) for e in ev] == [
                (DELETE, services + b"i1", rev)]
            assert ka.keep_alive(i1).TTL == 0, "the revoked instance's keepalive says gone"
            assert ka.keep_alive(i2).TTL == 10
        listing = get(kv, services, prefix_end(services))
        assert [x.key for x in listing.kvs] == [services + b"i2"]
        revoke(lease, i2)
        assert [(e.type, e.kv.key) for e in w.recv().events] == [(DELETE, services + b"i2")]
        w.sync()


# -- restart -------------------------------------------------------------------------------


def test_restart_keeps_leases_and_their_ttl_counts_from_serving(start_etcdlite, tmp_path):
    """After a restart the leases and their keys are back; etcd then gives every lease its
    TTL plus the election timeout from when it leads (before it serves), so no lease may
    expire sooner than its TTL after the restarted server answers (real etcd 3.5.1, TTL 3:
    first TimeToLive 3, keys deleted ~4.2 s after it answered)."""
    data = tmp_path / "restart.etcd"
    sp = start_etcdlite(data_dir=data)
    lease, kv = sp.stub("Lease"), sp.stub("KV")
    grant(lease, 2, 77)
    grant(lease, 60, 78)
    put(kv, b"/rs/a", lease=77)
    put(kv, b"/rs/b", lease=78)
    sp.stop()

    sp = start_etcdlite(data_dir=data)  # returns once it answers Status
    t_ready = time.monotonic()
    lease, kv = sp.stub("Lease"), sp.stub("KV")
    first = ttl(lease, 77)
    assert (first.grantedTTL, list(first.keys)) == (2, [b"/rs/a"])
    other = ttl(lease, 78)
    assert (other.grantedTTL, list(other.keys)) == (60, [b"/rs/b"])
    assert {77, 78} <= lease_ids(lease)
    with Watch(sp.stub("Watch")) as w:
        w.created(b"/rs/", b"/rs0", start_revision=first.header.revision + 1)
        ev = w.recv(timeout=8.0).events
        expired_after = time.monotonic() - t_ready
    assert [(e.type, e.kv.key) for e in ev] == [(DELETE, b"/rs/a")]
    assert [x.key for x in get(kv, b"/rs/", b"/rs0").kvs] == [b"/rs/b"]
    # The exact TimeToLive reading depends on scheduling (2 + 1 s of extension, truncated,
    # minus however long the first request took to arrive); the lower bound on expiry is
    # the property clients rely on.
    assert (first.TTL >= 1, expired_after >= 2.0) == (True, True), (
        f"after the restart: TimeToLive said {first.TTL} s left of 2 (etcd: 2) and the lease "
        f"expired {expired_after:.2f} s after the server answered (etcd: >= 2 s, ~3 s)")
