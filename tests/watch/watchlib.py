"""Helpers for the Watch tests (imported by the test modules and tests/watch/conftest.py).

* :class:`WatchClient`: one Watch stream over a sync gRPC stub. Requests are fed from a
  queue (so creates/cancels/progress requests can be sent mid-stream), responses are
  read by a thread into a queue; ``recv(timeout)`` never blocks forever, so no test
  sleeps to wait for something.
* builders for KV calls, KeyValues and Events as etcd sends them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from etcdlite.protos import kv_pb2, rpc_pb2

RECV_TIMEOUT_S = 10.0
"""How long ``recv`` waits for one response before failing the test."""
STREAM_DEADLINE_S = 120.0
"""Deadline of every Watch stream: a hung server fails the test instead of the run."""
CALL_TIMEOUT_S = 10.0
PROGRESS_INTERVAL = "200ms"
MAX_REQUEST_BYTES = 65536
GRPC_OVERHEAD_BYTES = 512 * 1024
SHARED_FLAGS = ("--experimental-watch-progress-notify-interval", PROGRESS_INTERVAL,
                "--max-request-bytes", str(MAX_REQUEST_BYTES))

ServerProc = Any  # tests/conftest.py's ServerProc

PUT = kv_pb2.Event.PUT
DELETE = kv_pb2.Event.DELETE


# -- the stream client --------------------------------------------------------------------


class StreamEnded(AssertionError):
    """The stream ended (or failed) while a response was expected."""


@dataclass
class _End:
    error: grpc.RpcError | None


class WatchClient:
    """One Watch bidi stream; ``send`` from the test thread, ``recv`` with a timeout."""

    def __init__(self, stub: Any, *, metadata: Any = None) -> None:
        """``stub``: a ``wire.Stub`` for the Watch service (``ServerProc.stub("Watch")``)."""
        self._requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
        self._responses: queue.Queue[rpc_pb2.WatchResponse | _End] = queue.Queue()
        self.closed = False
        self.ended: _End | None = None
        self._go = threading.Event()
        self._go.set()
        self._call = stub.Watch(self._feed(), timeout=STREAM_DEADLINE_S, metadata=metadata)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _feed(self) -> Iterator[rpc_pb2.WatchRequest]:
        while (req := self._requests.get()) is not None:
            yield req

    def _read(self) -> None:
        try:
            for resp in self._call:
                self._responses.put(resp)
                while not self._go.wait(1.0):  # paused: stop reading from the network
                    if self.closed:
                        return
            self._responses.put(_End(None))
        except grpc.RpcError as e:
            self._responses.put(_End(e))

    def pause(self) -> None:
        """Stop reading after the response being read now (a slow client: gRPC flow
        control then pushes back on the server)."""
        self._go.clear()

    def resume(self) -> None:
        self._go.set()

    # requests

    def send(self, req: rpc_pb2.WatchRequest) -> None:
        self._requests.put(req)

    def create(self, key: bytes, range_end: bytes = b"", **kw: Any) -> None:
        self.send(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
            key=key, range_end=range_end, **kw)))

    def cancel(self, watch_id: int) -> None:
        self.send(rpc_pb2.WatchRequest(
            cancel_request=rpc_pb2.WatchCancelRequest(watch_id=watch_id)))

    def request_progress(self) -> None:
        self.send(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))

    # responses

    def recv(self, timeout: float = RECV_TIMEOUT_S) -> rpc_pb2.WatchResponse:
        try:
            item = self._responses.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no watch response within {timeout}s") from None
        if isinstance(item, _End):
            self.ended = item
            err = item.error
            detail = "OK" if err is None else f"{err.code()} {err.details()!r}"
            raise StreamEnded(f"watch stream ended ({detail}) while a response was expected")
        return item

    def wait_end(self, timeout: float = RECV_TIMEOUT_S) -> _End:
        """Wait until the stream ends; fail on a response or on the timeout."""
        try:
            item = self._responses.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"stream still open after {timeout}s") from None
        assert isinstance(item, _End), f"expected the end of the stream, got {item}"
        return item

    def created(self, key: bytes, range_end: bytes = b"", **kw: Any) -> rpc_pb2.WatchResponse:
        """Create a watcher and return its ``created`` reply (asserted successful)."""
        self.create(key, range_end, **kw)
        resp = self.recv()
        assert resp.created and not resp.canceled, f"create failed: {resp}"
        return resp

    def sync(self) -> rpc_pb2.WatchResponse:
        """A progress request as a marker: the next response must be its reply, which
        proves nothing else was queued before it."""
        self.request_progress()
        resp = self.recv()
        assert resp.watch_id == -1 and not resp.events and not resp.created, (
            f"expected the progress reply, got {resp}")
        return resp

    def half_close(self) -> None:
        """End the request side only (the client's CloseSend)."""
        self._requests.put(None)

    def close(self) -> None:
        """Cancel the RPC (the client goes away)."""
        if not self.closed:
            self.closed = True
            self._go.set()
            self._requests.put(None)
            self._call.cancel()
            self._reader.join(timeout=10)

    def __enter__(self) -> WatchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
