"""etcdlite's messages and an etcd client's messages can live in one process (default pool)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

ETCD_CLIENT = ("aetcd", "aetcd.rpc.kv_pb2", "aetcd.rpc.auth_pb2", "aetcd.rpc.rpc_pb2")
ETCDLITE = (
    "etcdlite.protos.kv_pb2",
    "etcdlite.protos.auth_pb2",
    "etcdlite.protos.rpc_pb2",
    "etcdlite.protos.v3lock_pb2",
    "etcdlite.protos.v3election_pb2",
    "etcdlite.protos.health_pb2",
    "etcdlite.protos.wire",
)

# Runs in a fresh interpreter so that the default descriptor pool starts empty.
SCRIPT = textwrap.dedent(
    """
    import importlib
    import sys

    for name in sys.argv[1:]:
        importlib.import_module(name)

    from google.protobuf import descriptor_pool

    from aetcd.rpc import rpc_pb2 as theirs
    from etcdlite.protos import rpc_pb2 as ours

    pool = descriptor_pool.Default()
    for fname in ("rpc.proto", "kv.proto", "auth.proto"):
        pool.FindFileByName(fname)
        pool.FindFileByName("etcdlite/protos/" + fname)
    assert ours.PutRequest.DESCRIPTOR.full_name == "etcdlite.etcdserverpb.PutRequest"
    assert theirs.PutRequest.DESCRIPTOR.full_name == "etcdserverpb.PutRequest"

    def same(a, b):
        return a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)

    # A PutRequest each way.
    put = theirs.PutRequest(key=b"k", value=b"v", lease=7, prev_kv=True, ignore_lease=True)
    mine = ours.PutRequest.FromString(put.SerializeToString())
    assert (mine.key, mine.value, mine.lease, mine.prev_kv, mine.ignore_lease) == (
        b"k", b"v", 7, True, True
    )
    assert same(mine, put)
    mine = ours.PutRequest(key=b"\\x00\\xff", value=b"x" * 300, lease=-1, ignore_value=True)
    back = theirs.PutRequest.FromString(mine.SerializeToString())
    assert (back.key, back.value, back.lease, back.ignore_value) == (
        b"\\x00\\xff", b"x" * 300, -1, True
    )
    assert same(back, mine)

    # Nested messages, oneofs, cross-file types and the odd field numbers (64, 11).
    txn = ours.TxnRequest(
        compare=[ours.Compare(result=ours.Compare.GREATER, target=ours.Compare.LEASE,
                              key=b"a", lease=5, range_end=b"b")],
        success=[ours.RequestOp(request_put=ours.PutRequest(key=b"a", value=b"1"))],
        failure=[ours.RequestOp(request_txn=ours.TxnRequest())],
    )
    back = theirs.TxnRequest.FromString(txn.SerializeToString())
    assert back.compare[0].WhichOneof("target_union") == "lease"
    assert back.compare[0].range_end == b"b"
    assert back.failure[0].WhichOneof("request") == "request_txn"
    assert same(back, txn)

    resp = theirs.WatchResponse(watch_id=3, fragment=True)
    ev = resp.events.add(type=1)
    ev.kv.key = b"k"
    ev.kv.mod_revision = 9
    ev.prev_kv.value = b"old"
    mine = ours.WatchResponse.FromString(resp.SerializeToString())
    assert mine.events[0].type == 1 and mine.events[0].prev_kv.value == b"old"
    assert same(mine, resp)
    print("OK")
    """
)


@pytest.mark.parametrize(
    "order",
    [ETCD_CLIENT + ETCDLITE, ETCDLITE + ETCD_CLIENT],
    ids=["etcd-client-first", "etcdlite-first"],
)
def test_both_import_orders(order: tuple[str, ...]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *order],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"
