"""Hash and HashKV (facts sheet §4.7, §4.11): the checksums operators (and etcd's
corruption checks) compare between members.

HashKV(rev) is a checksum of the key history up to ``rev`` (0: now) plus the compact
revision; it only has to agree between members that applied the same requests, so the
tests compare it with itself and between two etcdlite members, never with real etcd.

The tests share the ``srv`` server (own keys each), except the one that needs a server
that has never compacted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from etcd_procs import Etcdctl
from maintlib import (
    COMPACTED_ERROR,
    FUTURE_REV_ERROR,
    Client,
    Servers,
    op_delete,
    op_put,
    prefix_end,
    rpc_error,
)

from etcdlite.protos import rpc_pb2 as R


@pytest.fixture(scope="module")
def srv(servers: Servers) -> Client:
    return Client(servers.start("hash"))


def test_hashkv_tracks_writes_and_compaction(servers: Servers, ns: bytes) -> None:
    """HashKV is stable while nothing is written and changes with a write; HashKV of an
    old revision stays the same however much is written later; ``compact_revision`` is
    -1 before any compaction and the compacted revision after; the header carries the
    current revision."""
    srv = Client(servers.start("hash-never-compacted"))
    r1 = srv.put(ns + b"a", b"1")
    first = srv.hash_kv()
    assert first.compact_revision == -1
    assert first.header.revision == r1
    assert srv.hash_kv() == first
    assert srv.hash_kv(r1) == first

    r2 = srv.put(ns + b"a", b"2")
    second = srv.hash_kv()
    assert second.hash != first.hash
    assert second.header.revision == r2
    assert srv.hash_kv(r1).hash == first.hash

    for i in range(5):
        srv.put(ns + b"b%d" % i, b"x")
    srv.kv.DeleteRange(R.DeleteRangeRequest(key=ns + b"b0"))
    assert srv.hash_kv(r1).hash == first.hash
    assert srv.hash_kv(r2).hash == second.hash

    now = srv.revision()
    srv.compact(r2, physical=True)
    at_compaction = srv.hash_kv()
    assert at_compaction.compact_revision == r2
    assert at_compaction.header.revision == now
    assert srv.hash_kv(r2 + 1).compact_revision == r2
    assert srv.hash_kv(now).hash == at_compaction.hash
    assert srv.hash_kv() == at_compaction


def test_hashkv_revision_errors(srv: Client, ns: bytes) -> None:
    """HashKV of a future revision fails with OutOfRange "...is a future revision"; of a
    revision at or below the compaction, with OutOfRange "...has been compacted" (the
    compact revision itself included, unlike Range: etcd's HashByRev checks
    ``rev <= compactRev``)."""
    srv.put(ns + b"k", b"v")
    compacted = srv.put(ns + b"k", b"w")
    srv.compact(compacted)
    now = srv.put(ns + b"k", b"x")
    assert rpc_error(lambda: srv.hash_kv(now + 1)) == FUTURE_REV_ERROR
    assert rpc_error(lambda: srv.hash_kv(now + 1000)) == FUTURE_REV_ERROR
    assert rpc_error(lambda: srv.hash_kv(compacted - 1)) == COMPACTED_ERROR
    assert rpc_error(lambda: srv.hash_kv(1)) == COMPACTED_ERROR
    assert rpc_error(lambda: srv.hash_kv(compacted)) == COMPACTED_ERROR
    assert srv.get(ns + b"k", revision=compacted).header.revision == now
    assert srv.hash_kv(compacted + 1).compact_revision == compacted


def test_hash_is_a_stable_uint32(srv: Client, ns: bytes) -> None:
    """Hash answers a uint32 checksum of the backend, the same on repeated calls while
    nothing is written, with the current revision in the header."""
    rev = srv.put(ns + b"k", b"v")
    h = srv.maint.Hash(R.HashRequest())
    assert 0 <= h.hash < 2**32
    assert h.header.revision == rev
    assert h.header.member_id == srv.member_id()
    assert srv.maint.Hash(R.HashRequest()).hash == h.hash


@pytest.mark.interop
def test_etcdctl_endpoint_hashkv(srv: Client, etcdctl: Etcdctl, ns: bytes) -> None:
    """``etcdctl endpoint hashkv`` (3.4 and 3.5) prints ``<endpoint>, <hash>`` with the
    server's HashKV; ``-w json`` shows hash and compact revision, ``--rev`` an old one."""
    ep = srv.endpoint
    old = srv.put(ns + b"k", b"1")
    srv.put(ns + b"k", b"2")
    want = srv.hash_kv()
    assert etcdctl.run(ep, "endpoint", "hashkv").stdout == f"{ep}, {want.hash}\n"
    [js] = etcdctl.json(ep, "endpoint", "hashkv")
    assert js["Endpoint"] == ep
    assert js["HashKV"]["hash"] == want.hash
    assert js["HashKV"]["compact_revision"] == want.compact_revision
    assert js["HashKV"]["header"]["revision"] == want.header.revision
    [js] = etcdctl.json(ep, "endpoint", "hashkv", "--rev", str(old))
    assert js["HashKV"]["hash"] == srv.hash_kv(old).hash


# -- two members fed the same requests ----------------------------------------------------


@pytest.fixture(scope="module")
def twins(servers: Servers) -> Iterator[tuple[Client, Client]]:
    """Two fresh servers with the same flags (own data dirs and ports)."""
    yield Client(servers.start("twin-a")), Client(servers.start("twin-b"))


def _script(ns: bytes) -> list[Callable[[Client], object]]:
    """A request sequence touching every kind of history: overwrites, deletes, txns,
    leases (with fixed ids) and a compaction."""
    k = ns + b"k"
    return [
        lambda c: c.put(k + b"1", b"a"),
        lambda c: c.put(k + b"2", b"b"),
        lambda c: c.put(k + b"1", b"c"),
        lambda c: c.lease.LeaseGrant(R.LeaseGrantRequest(ID=0x1234, TTL=3600)),
        lambda c: c.put(k + b"3", b"leased", lease=0x1234),
        lambda c: c.kv.Txn(R.TxnRequest(success=[op_put(k + b"4", b"t"), op_delete(k + b"2")])),
        lambda c: c.kv.DeleteRange(R.DeleteRangeRequest(key=k, range_end=prefix_end(k))),
        lambda c: c.put(k + b"1", b"again"),
        lambda c: c.compact(c.revision() - 2, physical=True),
        lambda c: c.put(k + b"5", b"after compaction"),
        lambda c: c.lease.LeaseRevoke(R.LeaseRevokeRequest(ID=0x1234)),
    ]


def test_members_fed_the_same_requests_agree(twins: tuple[Client, Client],
                                             ns: bytes) -> None:
    """Two members that applied the same requests report the same HashKV (hash and
    compact revision) at every revision after the compaction: what etcd's corruption
    check relies on."""
    a, b = twins
    for step in _script(ns):
        step(a)
        step(b)
    now = a.revision()
    assert b.revision() == now
    compacted = a.hash_kv().compact_revision
    assert compacted > 0
    for rev in [0, *range(compacted + 1, now + 1)]:
        ha, hb = a.hash_kv(rev), b.hash_kv(rev)
        assert (ha.hash, ha.compact_revision) == (hb.hash, hb.compact_revision), rev
    a.put(ns + b"only-a", b"")
    assert a.hash_kv().hash != b.hash_kv().hash
