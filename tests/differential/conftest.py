"""Differential harness: every test gets a fresh real etcd and a fresh etcdlite, same peer URL.

Both servers are started with the same advertised peer URL, so member_id and cluster_id agree
and whole responses, headers included, can be compared with ``==``.

* ``pair`` (fixture): a :class:`Pair` of freshly started servers (started concurrently).
* ``pair.both(call, service="KV")``: runs ``call(stub)`` against real etcd, then etcdlite, and
  asserts the outcomes are identical: whole response messages (header cluster_id, member_id,
  revision, raft_term included), or for errors the gRPC ``code()`` and ``details()``. Returns
  real etcd's outcome: the response message, or the ``grpc.RpcError`` (returned, not raised).
* ``pair.both_error(call)``: like ``both`` but also asserts that real etcd failed; returns
  ``(code, details)``.

Set ``ETCDLITE_DIFF_SOFT=1`` to record mismatches and keep going instead of failing at the first
one; the test then fails at its end with every mismatch listed (useful for triage; later
mismatches may be consequences of earlier ones).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from etcd_procs import ServerProc, start_pair, stop_all
from google.protobuf import text_format
from google.protobuf.message import Message

from etcdlite.protos import rpc_pb2

#: Per-call deadline: a server that hangs fails the test instead of blocking the run.
CALL_TIMEOUT_S = 15.0

SOFT = os.environ.get("ETCDLITE_DIFF_SOFT") == "1"

Normalizer = Callable[[Message, ServerProc], None]


class _RecordingStub:
    """Wraps a wire.Stub: records each RPC made (for mismatch reports), adds a deadline."""

    def __init__(self, stub: Any, log: list[str]):
        self._stub = stub
        self._log = log

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._stub, name)

        def call(request: Message, **kw: Any) -> Any:
            self._log.append(f"{self._stub.service}.{name}({_short(request)})")
            kw.setdefault("timeout", CALL_TIMEOUT_S)
            return fn(request, **kw)

        return call


def _short(msg: Message, limit: int = 600) -> str:
    text = text_format.MessageToString(msg, as_one_line=True)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def _render(outcome: Message | grpc.RpcError) -> str:
    if isinstance(outcome, grpc.RpcError):
        return f"RpcError code={outcome.code()} details={outcome.details()!r}\n"
    text = text_format.MessageToString(outcome)
    return f"{type(outcome).__name__}\n{text}"


def _key(outcome: Message | grpc.RpcError) -> Any:
    if isinstance(outcome, grpc.RpcError):
        return ("error", outcome.code(), outcome.details())
    return ("ok", outcome)


@dataclass
class Pair:
    real: ServerProc
    lite: ServerProc
    #: The peer URL both servers advertise (real etcd listens on it).
    peer_url: str
    mismatches: list[str] = field(default_factory=list)
    _stubs: dict[tuple[str, str], Any] = field(default_factory=dict)

    def _stub(self, which: str, service: str, log: list[str]) -> _RecordingStub:
        key = (which, service)
        if key not in self._stubs:
            self._stubs[key] = getattr(self, which).stub(service)
        return _RecordingStub(self._stubs[key], log)

    def run(self, which: str, call: Callable[[Any], Message], service: str = "KV",
            ) -> tuple[Message | grpc.RpcError, list[str]]:
        """Run ``call`` against one server ("real" or "lite"); returns (outcome, calls made)."""
        log: list[str] = []
        stub = self._stub(which, service, log)
        try:
            return call(stub), log
        except grpc.RpcError as e:
            return e, log

    def both(self, call: Callable[[Any], Message], service: str = "KV",
             normalize: Normalizer | None = None) -> Any:
        """Same call on both servers; assert identical outcomes; return real etcd's outcome.

        ``normalize(response, server)`` may edit a *copy* of each successful response before
        the comparison (only for fields that legitimately differ; the caller says why).
        """
        real, log = self.run("real", call, service)
        lite, _ = self.run("lite", call, service)
        cmp_real, cmp_lite = real, lite
        if normalize is not None:
            cmp_real = self._normalized(real, self.real, normalize)
            cmp_lite = self._normalized(lite, self.lite, normalize)
        if _key(cmp_real) != _key(cmp_lite):
            a, b = _render(cmp_real), _render(cmp_lite)
            diff = "".join(difflib.unified_diff(
                a.splitlines(keepends=True), b.splitlines(keepends=True),
                fromfile="real etcd", tofile="etcdlite", n=50))
            report = (f"etcd and etcdlite differ on {' ; '.join(log) or '<no call>'}\n"
                      f"{diff}")
            if not SOFT:
                raise AssertionError(report)
            self.mismatches.append(report)
        return real

    @staticmethod
    def _normalized(outcome: Any, server: ServerProc, normalize: Normalizer) -> Any:
        if isinstance(outcome, grpc.RpcError):
            return outcome
        copy = type(outcome)()
        copy.CopyFrom(outcome)
        normalize(copy, server)
        return copy

    def both_error(self, call: Callable[[Any], Message], service: str = "KV",
                   ) -> tuple[grpc.StatusCode, str]:
        """``both`` for a call real etcd rejects; returns real etcd's (code, details)."""
        out = self.both(call, service)
        assert isinstance(out, grpc.RpcError), f"real etcd did not fail: {_render(out)}"
        return out.code(), out.details()

    def both_ok(self, call: Callable[[Any], Message], service: str = "KV") -> Any:
        """``both`` for a call real etcd accepts; returns real etcd's response."""
        out = self.both(call, service)
        assert not isinstance(out, grpc.RpcError), f"real etcd failed: {_render(out)}"
        return out

    # Shorthands: each runs one KV request real etcd accepts on both servers (``both_ok``).

    def put(self, key: bytes, value: bytes = b"", **kw: Any) -> Any:
        return self.both_ok(lambda kv: kv.Put(rpc_pb2.PutRequest(key=key, value=value, **kw)))

    def get(self, key: bytes, range_end: bytes = b"", **kw: Any) -> Any:
        return self.both_ok(lambda kv: kv.Range(
            rpc_pb2.RangeRequest(key=key, range_end=range_end, **kw)))

    def delete(self, key: bytes, range_end: bytes = b"", **kw: Any) -> Any:
        return self.both_ok(lambda kv: kv.DeleteRange(
            rpc_pb2.DeleteRangeRequest(key=key, range_end=range_end, **kw)))

    def txn(self, compare: Any = (), success: Any = (), failure: Any = ()) -> Any:
        return self.both_ok(lambda kv: kv.Txn(rpc_pb2.TxnRequest(
            compare=list(compare), success=list(success), failure=list(failure))))

    def compact(self, revision: int, physical: bool = False) -> Any:
        return self.both_ok(lambda kv: kv.Compact(
            rpc_pb2.CompactionRequest(revision=revision, physical=physical)))

    def revision(self) -> int:
        """Current store revision, read from both (and checked equal)."""
        resp = self.both_ok(lambda kv: kv.Range(
            rpc_pb2.RangeRequest(key=b"\x00", count_only=True)))
        return resp.header.revision


class Op:
    """Builders for Txn parts (RequestOp / Compare)."""

    @staticmethod
    def put(key: bytes, value: bytes = b"", **kw: Any) -> rpc_pb2.RequestOp:
        return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value, **kw))

    @staticmethod
    def get(key: bytes, range_end: bytes = b"", **kw: Any) -> rpc_pb2.RequestOp:
        return rpc_pb2.RequestOp(
            request_range=rpc_pb2.RangeRequest(key=key, range_end=range_end, **kw))

    @staticmethod
    def delete(key: bytes, range_end: bytes = b"", **kw: Any) -> rpc_pb2.RequestOp:
        return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(
            key=key, range_end=range_end, **kw))

    @staticmethod
    def txn(compare: Any = (), success: Any = (), failure: Any = ()) -> rpc_pb2.RequestOp:
        return rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(
            compare=list(compare), success=list(success), failure=list(failure)))

    @staticmethod
    def cmp(key: bytes, target: str, result: str, value: Any, range_end: bytes = b"",
            ) -> rpc_pb2.Compare:
        """``Op.cmp(b"k", "VERSION", "EQUAL", 2)``; value goes to the field the target names."""
        field_for = {"VERSION": "version", "CREATE": "create_revision", "MOD": "mod_revision",
                     "VALUE": "value", "LEASE": "lease"}
        return rpc_pb2.Compare(key=key, range_end=range_end,
                               target=rpc_pb2.Compare.CompareTarget.Value(target),
                               result=rpc_pb2.Compare.CompareResult.Value(result),
                               **{field_for[target]: value})


@pytest.fixture
def op() -> type[Op]:
    return Op


@pytest.fixture
def pair(start_real_etcd: Callable[..., ServerProc],
         start_etcdlite: Callable[..., ServerProc]) -> Iterator[Pair]:
    real, lite, peer_url = start_pair(start_real_etcd, start_etcdlite)
    p = Pair(real, lite, peer_url)
    yield p
    # Stop both at once (the start fixtures' own teardown then finds them stopped).
    stop_all(real, lite)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """In soft mode, fail the test body (not its teardown) if mismatches were recorded."""
    outcome = yield
    p = getattr(item, "funcargs", {}).get("pair")
    if SOFT and isinstance(p, Pair) and p.mismatches:
        text = f"{len(p.mismatches)} mismatch(es):\n\n" + "\n\n".join(p.mismatches)
        if outcome.excinfo is not None:
            text += f"\n\nthen the test failed: {outcome.excinfo[1]!r}"
        outcome.force_exception(pytest.fail.Exception(text, pytrace=False))
