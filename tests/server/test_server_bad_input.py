"""Bad input gets etcd's exact gRPC code and message, never a traceback.

Expectations come from etcd's error table (etcd-v3-facts.md §5); the differential
suite checks the same calls against a real etcd where one is installed.
"""

from __future__ import annotations

import grpc
import pytest

from etcdlite.protos import wire
from etcdlite.protos.rpc_pb2 import (
    CompactionRequest,
    Compare,
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    TxnRequest,
)
from etcdlite.server import EtcdServer

INVALID = grpc.StatusCode.INVALID_ARGUMENT
OUT_OF_RANGE = grpc.StatusCode.OUT_OF_RANGE


@pytest.fixture(scope="module")
def small_server():
    """A server with small limits, so limits are cheap to reach."""
    with EtcdServer(max_txn_ops=4, max_request_bytes=1024) as etcd:
        yield etcd


@pytest.fixture(scope="module")
def small(small_server):
    ch = grpc.insecure_channel(small_server.endpoint)
    yield wire.Stub(ch, "KV")
    ch.close()


def put_op(key: bytes, value: bytes = b"v") -> RequestOp:
    return RequestOp(request_put=PutRequest(key=key, value=value))


def del_op(key: bytes, end: bytes = b"") -> RequestOp:
    return RequestOp(request_delete_range=DeleteRangeRequest(key=key, range_end=end))


def txn_op(success=(), failure=()) -> RequestOp:
    return RequestOp(request_txn=TxnRequest(success=list(success), failure=list(failure)))


def expect(call, code: grpc.StatusCode, message: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert (info.value.code(), info.value.details()) == (code, message)


EMPTY_KEY = "etcdserver: key is not provided"


@pytest.mark.parametrize(
    "method,request_",
    [
        ("Range", RangeRequest()),
        ("Put", PutRequest(value=b"v")),
        ("DeleteRange", DeleteRangeRequest()),
        ("Txn", TxnRequest(compare=[Compare(key=b"")])),
        ("Txn", TxnRequest(success=[put_op(b"")])),
        ("Txn", TxnRequest(failure=[RequestOp(request_range=RangeRequest())])),
        ("Txn", TxnRequest(success=[txn_op(failure=[del_op(b"")])])),
    ],
)
def test_empty_key(small, method, request_):
    expect(lambda: getattr(small, method)(request_), INVALID, EMPTY_KEY)


def test_put_flag_conflicts_and_missing_keys(small):
    expect(lambda: small.Put(PutRequest(key=b"k", value=b"v", ignore_value=True)),
           INVALID, "etcdserver: value is provided")
    expect(lambda: small.Put(PutRequest(key=b"k", lease=5, ignore_lease=True)),
           INVALID, "etcdserver: lease is provided")
    expect(lambda: small.Put(PutRequest(key=b"absent", ignore_value=True)),
           INVALID, "etcdserver: key not found")
    expect(lambda: small.Put(PutRequest(key=b"absent", ignore_lease=True)),
           INVALID, "etcdserver: key not found")
    before = small.Range(RangeRequest(key=b"x")).header.revision
    expect(lambda: small.Txn(TxnRequest(success=[
        put_op(b"first"),
        RequestOp(request_put=PutRequest(key=b"absent", ignore_value=True)),
    ])), INVALID, "etcdserver: key not found")
    # The failing txn changed nothing: not even its first put.
    after = small.Range(RangeRequest(key=b"first"))
    assert (after.header.revision, after.count) == (before, 0)


def test_empty_request_op_is_key_not_found(small):
    expect(lambda: small.Txn(TxnRequest(success=[RequestOp()])),
           INVALID, "etcdserver: key not found")


def test_sort_options(small):
    # etcd 3.5.1 accepts an unknown order (reads everything, sorts nothing)...
    small.Txn(TxnRequest(success=[put_op(b"s/b", b"1"), put_op(b"s/a", b"2")]))
    got = small.Range(RangeRequest(key=b"s/", range_end=b"s0", sort_order=99, limit=1))
    assert ([kv.key for kv in got.kvs], got.more, got.count) == ([b"s/a"], True, 2)
    # ...but crashes on an unknown target; later etcd versions refuse it, as etcdlite does.
    expect(lambda: small.Range(RangeRequest(key=b"k", sort_target=99)),
           INVALID, "etcdserver: invalid sort option")


def test_negative_limit_means_no_limit(small):
    small.Txn(TxnRequest(success=[put_op(b"n/1"), put_op(b"n/2")]))
    got = small.Range(RangeRequest(key=b"n/", range_end=b"n0", limit=-1))
    assert (len(got.kvs), got.more, got.count) == (2, False, 2)


def test_put_with_a_lease_that_does_not_exist(small):
    nf = grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found"
    expect(lambda: small.Put(PutRequest(key=b"l", lease=999)), *nf)
    # A standalone put checks the lease before ignore_value; a txn checks it after.
    expect(lambda: small.Put(PutRequest(key=b"absent", ignore_value=True, lease=999)), *nf)
    expect(lambda: small.Txn(TxnRequest(success=[
        RequestOp(request_put=PutRequest(key=b"absent", ignore_value=True, lease=999))])),
        INVALID, "etcdserver: key not found")
    expect(lambda: small.Txn(TxnRequest(success=[put_op(b"ok"), RequestOp(
        request_put=PutRequest(key=b"l", lease=999))])), *nf)
    # In the branch that does not run, an unknown lease does not matter.
    assert small.Txn(TxnRequest(failure=[RequestOp(
        request_put=PutRequest(key=b"l", lease=999))])).succeeded


def test_too_many_ops(small):
    ok = [put_op(b"k%d" % i) for i in range(4)]
    assert small.Txn(TxnRequest(success=ok)).succeeded
    too_many = "etcdserver: too many operations in txn request"
    expect(lambda: small.Txn(TxnRequest(success=[*ok, put_op(b"k9")])), INVALID, too_many)
    expect(lambda: small.Txn(TxnRequest(compare=[Compare(key=b"k")] * 5)), INVALID, too_many)
    expect(lambda: small.Txn(TxnRequest(failure=[put_op(b"f%d" % i) for i in range(5)])),
           INVALID, too_many)
    # A nested txn may use only what its parent left: 4 - 2 = 2 ops.
    nested = txn_op(success=[put_op(b"n1"), put_op(b"n2"), put_op(b"n3")])
    expect(lambda: small.Txn(TxnRequest(success=[nested, put_op(b"o")])), INVALID, too_many)


DUP = "etcdserver: duplicate key given in txn request"


@pytest.mark.parametrize(
    "ops,duplicate",
    [
        ([put_op(b"a"), put_op(b"a")], True),
        ([put_op(b"b"), del_op(b"a", b"c")], True),
        ([del_op(b"a", b"c"), put_op(b"b")], True),
        ([del_op(b"a"), del_op(b"a")], False),
        ([del_op(b"a", b"\x00"), put_op(b"b")], False),  # etcd: from-key is an empty interval
        ([txn_op(success=[put_op(b"a")], failure=[put_op(b"a")])], False),
        ([put_op(b"a"), txn_op(success=[put_op(b"a")])], True),
        ([txn_op(failure=[put_op(b"a")]), del_op(b"a")], True),
        ([txn_op(success=[del_op(b"a", b"c")]), put_op(b"b")], True),
    ],
)
def test_duplicate_keys(small, ops, duplicate):
    def call() -> object:
        return small.Txn(TxnRequest(success=ops))

    if duplicate:
        expect(call, INVALID, DUP)
        # The failure list is checked as well, even though it would not run.
        expect(lambda: small.Txn(TxnRequest(failure=ops)), INVALID, DUP)
    else:
        call()


def test_request_too_large(small):
    expect(lambda: small.Put(PutRequest(key=b"k", value=b"x" * 1024)),
           INVALID, "etcdserver: request is too large")
    small.Put(PutRequest(key=b"k", value=b"x" * 900))
    # Past the limit + 512 KiB the message is refused before it is parsed, in grpc-go's words.
    big = PutRequest(key=b"k", value=b"x" * (1024 + 512 * 1024 + 10))
    expect(lambda: small.Put(big), grpc.StatusCode.RESOURCE_EXHAUSTED,
           f"grpc: received message larger than max ({big.ByteSize()} vs. {1024 + 512 * 1024})")


def test_revisions_out_of_window(small):
    small.Put(PutRequest(key=b"r", value=b"1"))
    small.Put(PutRequest(key=b"r", value=b"2"))
    rev = small.Range(RangeRequest(key=b"r")).header.revision
    future = "etcdserver: mvcc: required revision is a future revision"
    compacted = "etcdserver: mvcc: required revision has been compacted"
    expect(lambda: small.Range(RangeRequest(key=b"r", revision=rev + 1)), OUT_OF_RANGE, future)
    expect(lambda: small.Compact(CompactionRequest(revision=rev + 1)), OUT_OF_RANGE, future)
    small.Compact(CompactionRequest(revision=rev - 1))
    expect(lambda: small.Range(RangeRequest(key=b"r", revision=rev - 2)), OUT_OF_RANGE,
           compacted)
    expect(lambda: small.Compact(CompactionRequest(revision=rev - 1)), OUT_OF_RANGE, compacted)
    assert small.Range(RangeRequest(key=b"r", revision=rev - 1)).kvs[0].value == b"1"
    expect(lambda: small.Txn(TxnRequest(success=[
        RequestOp(request_range=RangeRequest(key=b"r", revision=rev + 5))])),
        OUT_OF_RANGE, future)


def test_undecodable_request_is_a_status_not_a_crash(small_server, small):
    with grpc.insecure_channel(small_server.endpoint) as ch:
        raw = ch.unary_unary("/etcdserverpb.KV/Range")  # bytes in, bytes out
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xff\xff\xff")  # not a protobuf message
        assert info.value.code() == grpc.StatusCode.INTERNAL  # etcd (grpc-go) says INTERNAL too
    small.Put(PutRequest(key=b"still-serving"))


def test_unimplemented_services_answer_unimplemented():
    with EtcdServer() as etcd:
        ch = grpc.insecure_channel(etcd.endpoint)
        lock = wire.Stub(ch, "Lock")
        with pytest.raises(grpc.RpcError) as info:
            lock.Lock(wire.method("Lock", "Lock").request(name=b"l"))
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # The server is unharmed and still serving.
        assert wire.Stub(ch, "KV").Put(PutRequest(key=b"k")).header.revision == 2
        ch.close()


def test_ignore_value_after_a_delete_in_the_same_txn_changes_nothing(small):
    # The delete runs first, so the ignore_value put would find no key: the txn must be
    # refused before it writes anything (etcd 3.5 panics here; a half-applied txn would
    # leave a DELETE behind and reuse the revision).
    small.Put(PutRequest(key=b"ign/k", value=b"1"))
    before = small.Range(RangeRequest(key=b"ign/k"))
    expect(lambda: small.Txn(TxnRequest(success=[
        del_op(b"ign/", b"\x00"),  # from-key: not a duplicate of the put below (etcd's rule)
        RequestOp(request_put=PutRequest(key=b"ign/k", ignore_value=True)),
    ])), INVALID, "etcdserver: key not found")
    after = small.Range(RangeRequest(key=b"ign/k"))
    assert (after.header.revision, after.count) == (before.header.revision, 1)
    # A put earlier in the branch (here in a nested txn) makes its key exist for later ops.
    done = small.Txn(TxnRequest(success=[
        del_op(b"ign/", b"\x00"),
        txn_op(success=[put_op(b"ign/n", b"2")]),
    ]))
    assert done.succeeded
    assert small.Range(RangeRequest(key=b"ign/k")).count == 0
