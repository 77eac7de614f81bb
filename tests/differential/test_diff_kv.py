"""Differential stories for Put / Range / DeleteRange basics (facts sheet §4.1, §4.2, §4.5, §5).

Every call goes to real etcd and to etcdlite (``pair.both`` and its shorthands) and the whole
responses, headers included, must be equal. The asserts on the returned (real etcd) responses
only document what the story exercises.
"""

from __future__ import annotations

import grpc

from etcdlite.protos import rpc_pb2 as R

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def test_put_get_basics(pair):
    r = pair.get(b"k")
    assert r.header.revision == 1 and r.count == 0 and not r.kvs
    r = pair.put(b"k", b"v")
    assert r.header.revision == 2 and not r.HasField("prev_kv")
    r = pair.get(b"k")
    assert [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version)
            for kv in r.kvs] == [(b"k", b"v", 2, 2, 1)]
    pair.put(b"empty", b"")
    pair.get(b"empty")
    pair.put(b"\xff\x00bin", bytes(range(256)))
    pair.get(b"\xff\x00bin")
    pair.get(b"k", serializable=True)
    pair.get(b"missing")
    pair.get(b"\x00", b"\x00")


def test_overwrite_bumps_version_and_mod_revision(pair):
    pair.put(b"k", b"v1")
    pair.put(b"other", b"x")
    pair.put(b"k", b"v1")  # identical value still makes a new version
    pair.put(b"k", b"v2")
    r = pair.get(b"k")
    kv = r.kvs[0]
    assert (kv.create_revision, kv.mod_revision, kv.version, kv.value) == (2, 5, 3, b"v2")
    for rev in (2, 3, 4, 5):
        pair.get(b"k", revision=rev)


def test_delete_and_recreate_restarts_create_revision(pair):
    pair.put(b"k", b"a")
    pair.put(b"k", b"b")
    r = pair.delete(b"k")
    assert r.deleted == 1 and r.header.revision == 4
    pair.get(b"k")
    pair.get(b"k", revision=3)  # old value still visible before the tombstone
    r = pair.put(b"k", b"c")
    r = pair.get(b"k")
    assert (r.kvs[0].create_revision, r.kvs[0].version) == (5, 1)
    # Deleting a missing key changes nothing: revision stays.
    r = pair.delete(b"nope")
    assert r.deleted == 0 and r.header.revision == 5
    r = pair.delete(b"k")
    r = pair.delete(b"k")
    assert r.deleted == 0 and r.header.revision == 6
    pair.get(b"k", revision=5)


def test_prev_kv_on_put_and_delete(pair):
    r = pair.put(b"k", b"v1", prev_kv=True)
    assert not r.HasField("prev_kv")
    r = pair.put(b"k", b"v2", prev_kv=True)
    assert r.prev_kv.value == b"v1"
    pair.put(b"k2", b"x")
    pair.put(b"k3", b"y", prev_kv=False)
    r = pair.delete(b"k", prev_kv=True)
    assert [kv.value for kv in r.prev_kvs] == [b"v2"]
    r = pair.delete(b"k", prev_kv=True)  # gone already
    assert r.deleted == 0 and not r.prev_kvs
    r = pair.delete(b"k", b"l", prev_kv=True)
    assert r.deleted == 2 and len(r.prev_kvs) == 2
    r = pair.put(b"k", b"again", prev_kv=True)  # recreated: no prev_kv
    assert not r.HasField("prev_kv")


def test_ignore_value_and_ignore_lease(pair):
    # Absent key: the flags need a previous kv.
    assert pair.both_error(lambda kv: kv.Put(R.PutRequest(key=b"k", ignore_value=True))) == (
        INVALID, "etcdserver: key not found")
    assert pair.both_error(lambda kv: kv.Put(R.PutRequest(key=b"k", ignore_lease=True))) == (
        INVALID, "etcdserver: key not found")
    assert pair.both_error(lambda kv: kv.Put(R.PutRequest(
        key=b"k", ignore_value=True, ignore_lease=True, prev_kv=True))) == (
        INVALID, "etcdserver: key not found")
    pair.put(b"k", b"v1")
    r = pair.put(b"k", ignore_value=True, prev_kv=True)
    assert r.prev_kv.value == b"v1"
    r = pair.get(b"k")
    assert (r.kvs[0].value, r.kvs[0].version) == (b"v1", 2)
    pair.put(b"k", b"v2", ignore_lease=True)
    pair.put(b"k", ignore_value=True, ignore_lease=True)
    r = pair.get(b"k")
    assert (r.kvs[0].value, r.kvs[0].version, r.kvs[0].mod_revision) == (b"v2", 4, 5)
    # Provided-value / provided-lease errors (checked before the key lookup).
    for key in (b"k", b"absent"):
        assert pair.both_error(lambda kv, key=key: kv.Put(
            R.PutRequest(key=key, value=b"x", ignore_value=True))) == (
            INVALID, "etcdserver: value is provided")
        assert pair.both_error(lambda kv, key=key: kv.Put(
            R.PutRequest(key=key, lease=0x1234, ignore_lease=True))) == (
            INVALID, "etcdserver: lease is provided")
    # Inside a txn the same rules apply, and the failed txn writes nothing.
    assert pair.both_error(lambda kv: kv.Txn(R.TxnRequest(success=[
        R.RequestOp(request_put=R.PutRequest(key=b"k", value=b"new")),
        R.RequestOp(request_put=R.PutRequest(key=b"absent", ignore_value=True))]))) == (
        INVALID, "etcdserver: key not found")
    assert pair.both_error(lambda kv: kv.Txn(R.TxnRequest(failure=[
        R.RequestOp(request_put=R.PutRequest(key=b"k", value=b"x", ignore_value=True))]))) == (
        INVALID, "etcdserver: value is provided")
    assert pair.revision() == 5


def test_put_with_unknown_lease(pair):
    pair.put(b"k", b"v")
    assert pair.both_error(lambda kv: kv.Put(R.PutRequest(key=b"k", value=b"v", lease=999))) == (
        grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found")
    # Unknown lease + ignore_value on an absent key: the lease check comes first in etcd.
    pair.both(lambda kv: kv.Put(R.PutRequest(key=b"absent", ignore_value=True, lease=999)))
    pair.both(lambda kv: kv.Txn(R.TxnRequest(success=[
        R.RequestOp(request_put=R.PutRequest(key=b"k", value=b"v", lease=999))])))
    assert pair.revision() == 2


def test_put_with_lease_ignore_lease_and_detach(pair):
    # Needs the Lease service; a fixed lease ID so both servers hold the same lease.
    lease = 0x1234
    g = pair.both(lambda ls: ls.LeaseGrant(R.LeaseGrantRequest(TTL=600, ID=lease)), "Lease")
    granted = g.ID
    assert granted == lease
    pair.put(b"k", b"v1", lease=lease)
    # ignore_value keeps the value; lease 0 in the request detaches the key.
    pair.put(b"k", ignore_value=True, prev_kv=True)
    r = pair.get(b"k")
    assert (r.kvs[0].value, r.kvs[0].lease) == (b"v1", 0)
    pair.put(b"k", ignore_value=True, lease=lease)
    r = pair.get(b"k")
    assert (r.kvs[0].value, r.kvs[0].lease, r.kvs[0].version) == (b"v1", lease, 3)
    # ignore_lease keeps the lease, takes the new value.
    pair.put(b"k", b"v2", ignore_lease=True, prev_kv=True)
    r = pair.get(b"k")
    assert (r.kvs[0].value, r.kvs[0].lease) == (b"v2", lease)
    # A plain put detaches.
    pair.put(b"k", b"v3")
    r = pair.get(b"k")
    assert r.kvs[0].lease == 0


def test_empty_key_is_rejected_everywhere(pair, op):
    no_key = (INVALID, "etcdserver: key is not provided")
    pair.put(b"k", b"v")
    assert pair.both_error(lambda kv: kv.Range(R.RangeRequest())) == no_key
    assert pair.both_error(lambda kv: kv.Range(R.RangeRequest(range_end=b"\x00"))) == no_key
    assert pair.both_error(lambda kv: kv.Range(R.RangeRequest(range_end=b"z"))) == no_key
    assert pair.both_error(lambda kv: kv.Put(R.PutRequest(value=b"v"))) == no_key
    assert pair.both_error(lambda kv: kv.Put(R.PutRequest(ignore_value=True))) == no_key
    assert pair.both_error(lambda kv: kv.DeleteRange(R.DeleteRangeRequest())) == no_key
    assert pair.both_error(lambda kv: kv.DeleteRange(
        R.DeleteRangeRequest(range_end=b"\x00"))) == no_key
    # Txn: compare key, then ops in either branch, then inside a nested txn.
    assert pair.both_error(lambda kv: kv.Txn(R.TxnRequest(
        compare=[op.cmp(b"", "VERSION", "EQUAL", 0)]))) == no_key
    assert pair.both_error(lambda kv: kv.Txn(R.TxnRequest(
        compare=[op.cmp(b"", "VALUE", "EQUAL", b"v", range_end=b"\x00")]))) == no_key
    for bad in (op.get(b""), op.put(b"", b"v"), op.delete(b""),
                op.txn(success=[op.put(b"", b"v")]), op.txn(failure=[op.get(b"")])):
        assert pair.both_error(lambda kv, bad=bad: kv.Txn(R.TxnRequest(success=[bad]))) == no_key
        assert pair.both_error(lambda kv, bad=bad: kv.Txn(R.TxnRequest(failure=[bad]))) == no_key
    # Nothing was written by any of them.
    assert pair.revision() == 2
