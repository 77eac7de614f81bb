"""Helpers for the Watch tests (imported by the test modules and tests/watch/conftest.py);
the stream client is ``tests/watch_client.py``.

* builders for KV calls, KeyValues and Events as etcd sends them.
"""

from __future__ import annotations

from typing import Any

from etcdlite.protos import kv_pb2, rpc_pb2

CALL_TIMEOUT_S = 10.0
PROGRESS_INTERVAL = "200ms"
MAX_REQUEST_BYTES = 65536
GRPC_OVERHEAD_BYTES = 512 * 1024
SHARED_FLAGS = ("--experimental-watch-progress-notify-interval", PROGRESS_INTERVAL,
                "--max-request-bytes", str(MAX_REQUEST_BYTES))

ServerProc = Any  # tests/conftest.py's ServerProc

PUT = kv_pb2.Event.PUT
DELETE = kv_pb2.Event.DELETE


# -- small builders -----------------------------------------------------------------------


def put(kv: Any, key: bytes, value: bytes = b"", **kw: Any) -> int:
    """Put and return the revision it produced."""
    return kv.Put(rpc_pb2.PutRequest(key=key, value=value, **kw),
                  timeout=CALL_TIMEOUT_S).header.revision


def delete(kv: Any, key: bytes, range_end: bytes = b"", **kw: Any) -> int:
    return kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=key, range_end=range_end, **kw),
                          timeout=CALL_TIMEOUT_S).header.revision


def current_revision(kv: Any) -> int:
    return kv.Range(rpc_pb2.RangeRequest(key=b"\x00", count_only=True),
                    timeout=CALL_TIMEOUT_S).header.revision


def compact(kv: Any, revision: int) -> None:
    kv.Compact(rpc_pb2.CompactionRequest(revision=revision, physical=True),
               timeout=CALL_TIMEOUT_S)


def txn_ops(kv: Any, *ops: rpc_pb2.RequestOp) -> int:
    return kv.Txn(rpc_pb2.TxnRequest(success=list(ops)), timeout=CALL_TIMEOUT_S).header.revision


def op_put(key: bytes, value: bytes = b"") -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value))


def op_delete(key: bytes, range_end: bytes = b"") -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(
        request_delete_range=rpc_pb2.DeleteRangeRequest(key=key, range_end=range_end))


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


def kv(key: bytes, value: bytes, create: int, mod: int, version: int) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(key=key, value=value, create_revision=create, mod_revision=mod,
                           version=version)


def put_event(key: bytes, value: bytes, create: int, mod: int, version: int,
              prev: kv_pb2.KeyValue | None = None) -> kv_pb2.Event:
    e = kv_pb2.Event(type=PUT, kv=kv(key, value, create, mod, version))
    if prev is not None:
        e.prev_kv.CopyFrom(prev)
    return e


def delete_event(key: bytes, mod: int, prev: kv_pb2.KeyValue | None = None) -> kv_pb2.Event:
    """etcd's DELETE event: kv has only ``key`` and ``mod_revision``."""
    e = kv_pb2.Event(type=DELETE, kv=kv_pb2.KeyValue(key=key, mod_revision=mod))
    if prev is not None:
        e.prev_kv.CopyFrom(prev)
    return e


def server_errors(server: ServerProc) -> list[str]:
    """Log lines that report a failure (etcdlite logs JSON lines; a traceback is free text)."""
    bad = ('"level":"error"', '"level":"panic"', '"level":"fatal"', "Traceback",
           "Task exception was never retrieved", "Exception in callback")
    return [line for line in server.log().splitlines() if any(b in line for b in bad)]
