"""The backend quota's cost model (etcd's ``quota.go``), shared by the quota check before
proposing and the NOSPACE check when applying.

Example::

    quota_cost(PutRequest(key=b"k", value=b"v" * 10))    # 256 + 1 + 10 = 267
    quota_cost(TxnRequest(success=[put_op], failure=[]))  # the larger branch's puts
    quota_cost(DeleteRangeRequest(key=b"k"))              # 0: deleting never needs room
"""

from __future__ import annotations

from google.protobuf.message import Message

from etcdlite.protos.rpc_pb2 import LeaseGrantRequest, PutRequest, TxnRequest

PUT_OVERHEAD = 256
LEASE_COST = 64


def quota_cost(r: Message) -> int:
    """What a request may add to the database, by etcd's estimate: 256 + key + value
    per put, the larger branch of a txn (top-level puts only, as etcd counts), 64 per
    lease grant; 0 for everything else."""
    if isinstance(r, PutRequest):
        return PUT_OVERHEAD + len(r.key) + len(r.value)
    if isinstance(r, LeaseGrantRequest):
        return LEASE_COST
    if isinstance(r, TxnRequest):
        return max(
            sum(quota_cost(op.request_put) for op in ops if op.HasField("request_put"))
            for ops in (r.success, r.failure)
        )
    return 0
