"""Helpers of the Lease tests (imported by the modules of tests/lease).

* :class:`Bidi`: one bidi gRPC stream (Watch or LeaseKeepAlive) over a sync ``wire.Stub``.
  Requests come from a queue, so they can be sent mid-stream; a thread reads responses
  into a queue and ``recv(timeout)`` never blocks forever, so no test sleeps to wait.
* :class:`Proc`: a child process whose stdout lines are read by a thread and can be
  awaited with a timeout (etcdctl ``lock`` / ``elect``).
* small builders (``prefix_end``, watch create requests).
"""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from etcdlite.protos import rpc_pb2

CALL_TIMEOUT_S = 10.0
"""Deadline of every unary call."""
RECV_TIMEOUT_S = 10.0
"""How long ``Bidi.recv`` waits for one response before failing the test."""
STREAM_DEADLINE_S = 60.0
"""Deadline of every stream: a hung server fails the test instead of hanging the run."""


def prefix_end(prefix: bytes) -> bytes:
    """range_end of a prefix (etcd's rule; the test prefixes never end in 0xff)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


@dataclass
class _End:
    error: grpc.RpcError | None


class StreamEnded(AssertionError):
    """The stream ended (or failed) while a response was expected."""


class Bidi:
    """One bidi stream: ``send`` from the test thread, ``recv`` with a timeout.

    ``method`` is the stream-stream callable of a ``wire.Stub`` (``stub.Watch``,
    ``stub.LeaseKeepAlive``).
    """

    def __init__(self, method: Any, deadline: float = STREAM_DEADLINE_S) -> None:
        self._requests: queue.Queue[Message | None] = queue.Queue()
        self._responses: queue.Queue[Message | _End] = queue.Queue()
        self._call = method(self._feed(), timeout=deadline)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _feed(self) -> Iterator[Message]:
        while (req := self._requests.get()) is not None:
            yield req

    def _read(self) -> None:
        try:
            for resp in self._call:
                self._responses.put(resp)
            self._responses.put(_End(None))
        except grpc.RpcError as e:
            self._responses.put(_End(e))

    def send(self, req: Message) -> None:
        self._requests.put(req)

    def recv(self, timeout: float = RECV_TIMEOUT_S) -> Any:
        try:
            item = self._responses.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no response within {timeout}s") from None
        if isinstance(item, _End):
            err = item.error
            detail = "OK" if err is None else f"{err.code()} {err.details()!r}"
            raise StreamEnded(f"stream ended ({detail}) while a response was expected")
        return item

    def pending(self) -> int:
        """Responses received but not yet taken."""
        return self._responses.qsize()

    def close(self) -> None:
        """End our side of the stream and cancel the call."""
        self._requests.put(None)
        self._call.cancel()
        self._reader.join(timeout=5)

    def __enter__(self) -> Bidi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KeepAlive(Bidi):
    """A LeaseKeepAlive stream."""

    def __init__(self, lease_stub: Any) -> None:
        super().__init__(lease_stub.LeaseKeepAlive)

    def keep_alive(self, lease_id: int, timeout: float = RECV_TIMEOUT_S,
                   ) -> rpc_pb2.LeaseKeepAliveResponse:
        """One request, its response (no other response may be pending)."""
        self.send(rpc_pb2.LeaseKeepAliveRequest(ID=lease_id))
        return self.recv(timeout)


class Watch(Bidi):
    """A Watch stream."""

    def __init__(self, watch_stub: Any) -> None:
        super().__init__(watch_stub.Watch)

    def created(self, key: bytes, range_end: bytes = b"", **kw: Any) -> rpc_pb2.WatchResponse:
        self.send(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
            key=key, range_end=range_end, **kw)))
        resp = self.recv()
        assert resp.created and not resp.canceled, f"watch create failed: {resp}"
        return resp

    def sync(self) -> rpc_pb2.WatchResponse:
        """A progress request as a marker: its reply must be the next response, which
        proves no other response was queued before it."""
        self.send(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))
        resp = self.recv()
        assert resp.watch_id == -1 and not resp.events and not resp.created, (
            f"expected the progress reply, got {resp}")
        return resp


class Proc:
    """A child process we started; its stdout lines are collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True, env=env)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self._stderr: list[str] = []
        self._t_out = threading.Thread(target=self._read_out, daemon=True)
        self._t_err = threading.Thread(target=self._read_err, daemon=True)
        self._t_out.start()
        self._t_err.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def wait_lines(self, n: int, timeout: float = 15.0) -> list[str]:
        """Wait until at least ``n`` stdout lines arrived; returns a copy of all lines."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.lines) < n:
                left = deadline - time.monotonic()
                if left <= 0 or (self._eof and len(self.lines) < n):
                    raise AssertionError(
                        f"{self.args}: wanted {n} stdout lines, got {self.lines!r} "
                        f"(exit {self.proc.poll()}); stderr: {self.stderr}")
                self._cond.wait(left)
            return list(self.lines)

    def snapshot(self) -> list[str]:
        with self._cond:
            return list(self.lines)

    def wait(self, timeout: float = 15.0) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._t_out.join(timeout=5)
        self._t_err.join(timeout=5)
        return rc

    def interrupt(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def stop(self) -> None:
        """End the process (by its own PID) if it still runs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
