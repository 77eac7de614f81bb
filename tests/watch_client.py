"""A Watch stream client for tests: one bidi stream over a sync gRPC stub.

Requests are fed from a queue (creates, cancels and progress requests can be sent
mid-stream); a thread reads the responses into another queue, and ``recv(timeout)``
never blocks forever, so no test sleeps to wait for a response. Shared by the watch,
maintenance and other suites (``tests/`` is on ``sys.path`` for every test module).

Example::

    with WatchClient(server.stub("Watch")) as w:
        w.created(b"k")                  # the created reply, asserted successful
        put(kv, b"k", b"v")
        [event] = w.events(1)
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

    def events(self, n: int) -> list[kv_pb2.Event]:
        """The next ``n`` events, over as many responses as it takes."""
        got: list[kv_pb2.Event] = []
        while len(got) < n:
            got.extend(self.recv().events)
        return got

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
