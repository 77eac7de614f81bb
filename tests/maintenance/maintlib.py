"""Helpers of the Maintenance tests (imported by the modules of tests/maintenance).

* :class:`Client`: the KV, Lease, Watch and Maintenance stubs of one server, every unary
  call with a deadline, plus the few calls the tests repeat (``put``, ``status``, ...).
* :func:`rpc_error`: run a call that must fail and return its ``(code, details)``.
* :func:`fill_until_refused`: put big values under a prefix until the quota refuses one.
* :class:`Servers`: the servers a test module started (the ``servers`` fixture).
* :func:`launch`: etcdlite, or real etcd 3.5.1 with ``ETCDLITE_MAINT_REFERENCE=1``
  (``REFERENCE``), which checks that the expectations of the tests are etcd's;
  :func:`needs_etcdlite` skips a test that exercises etcdlite's own tools then.
* :func:`etcdlite_cli`: run the ``etcdlite`` command (``snapshot restore``).
* etcd's error strings these tests expect (exact, as etcd 3.5.1 sends them).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from etcd_procs import (
    ServerProc,
    etcdlite_command,
    launch_etcdlite,
    launch_real_etcd,
    real_etcd_binary,
)
from google.protobuf.message import Message

from etcdlite.protos import rpc_pb2 as R

CALL_TIMEOUT_S = 15.0
"""Deadline of every unary call: a hung server fails the test instead of the run."""
CLI_TIMEOUT_S = 60.0
REFERENCE = os.environ.get("ETCDLITE_MAINT_REFERENCE") == "1"

NOSPACE_ERROR = (grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")
FUTURE_REV_ERROR = (grpc.StatusCode.OUT_OF_RANGE,
                    "etcdserver: mvcc: required revision is a future revision")
COMPACTED_ERROR = (grpc.StatusCode.OUT_OF_RANGE,
                   "etcdserver: mvcc: required revision has been compacted")

GET, ACTIVATE, DEACTIVATE = (R.AlarmRequest.GET, R.AlarmRequest.ACTIVATE,
                             R.AlarmRequest.DEACTIVATE)


def prefix_end(prefix: bytes) -> bytes:
    """range_end of a prefix (the test prefixes never end in 0xff)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def rpc_error(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    """``(code, details)`` of ``call()``, which must fail."""
    try:
        resp = call()
    except grpc.RpcError as e:
        return e.code(), e.details()
    raise AssertionError(f"call succeeded but should have failed: {resp}")


def outcome(call: Callable[[], Message]) -> Message | tuple[grpc.StatusCode, str]:
    """The response of ``call()``, or its ``(code, details)`` if it failed."""
    try:
        return call()
    except grpc.RpcError as e:
        return e.code(), e.details()


class _Deadline:
    """A ``wire.Stub`` whose unary calls get ``CALL_TIMEOUT_S`` unless told otherwise."""

    def __init__(self, stub: Any) -> None:
        self._stub = stub

    def __getattr__(self, name: str) -> Callable[..., Any]:
        fn = getattr(self._stub, name)

        def call(request: Message, **kw: Any) -> Any:
            kw.setdefault("timeout", CALL_TIMEOUT_S)
            return fn(request, **kw)

        return call


@dataclass
class Client:
    """The stubs of one server (``ServerProc``) and the calls the tests repeat."""

    server: ServerProc

    def __post_init__(self) -> None:
        self.kv = _Deadline(self.server.stub("KV"))
        self.lease = _Deadline(self.server.stub("Lease"))
        self.maint = _Deadline(self.server.stub("Maintenance"))
        self.watch_stub = self.server.stub("Watch")

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def put(self, key: bytes, value: bytes = b"", **kw: Any) -> int:
        """Put; returns the revision of the write."""
        return self.kv.Put(R.PutRequest(key=key, value=value, **kw)).header.revision

    def get(self, key: bytes, range_end: bytes = b"", **kw: Any) -> R.RangeResponse:
        return self.kv.Range(R.RangeRequest(key=key, range_end=range_end, **kw))

    def get_prefix(self, prefix: bytes, **kw: Any) -> R.RangeResponse:
        return self.get(prefix, prefix_end(prefix), **kw)

    def delete_prefix(self, prefix: bytes) -> R.DeleteRangeResponse:
        return self.kv.DeleteRange(R.DeleteRangeRequest(key=prefix, range_end=prefix_end(prefix)))

    def revision(self) -> int:
        """The current store revision."""
        return self.get(b"\x00", count_only=True).header.revision

    def compact(self, revision: int, physical: bool = True) -> R.CompactionResponse:
        return self.kv.Compact(R.CompactionRequest(revision=revision, physical=physical))

    def status(self) -> R.StatusResponse:
        return self.maint.Status(R.StatusRequest())

    def member_id(self) -> int:
        return self.status().header.member_id

    def alarm(self, action: int, member: int = 0, alarm: int = R.NONE) -> R.AlarmResponse:
        return self.maint.Alarm(R.AlarmRequest(action=action, memberID=member, alarm=alarm))

    def alarms(self) -> list[tuple[int, int]]:
        """The active alarms as ``(memberID, alarm)`` pairs, in the server's order."""
        return [(a.memberID, a.alarm) for a in self.alarm(GET).alarms]

    def disarm_all(self) -> None:
        """Deactivate every active alarm (what ``etcdctl alarm disarm`` does)."""
        for a in self.alarm(GET).alarms:
            self.alarm(DEACTIVATE, a.memberID, a.alarm)

    def hash_kv(self, revision: int = 0) -> R.HashKVResponse:
        return self.maint.HashKV(R.HashKVRequest(revision=revision))

    def hash(self) -> R.HashResponse:
        return self.maint.Hash(R.HashRequest())

    def defragment(self) -> R.DefragmentResponse:
        return self.maint.Defragment(R.DefragmentRequest())


def fill_until_refused(client: Client, prefix: bytes, value_bytes: int,
                       max_puts: int = 1000) -> tuple[int, tuple[grpc.StatusCode, str]]:
    """Put distinct keys with ``value_bytes`` values under ``prefix`` until a put fails;
    returns how many were accepted and the refusal's ``(code, details)``."""
    value = b"q" * value_bytes
    for i in range(max_puts):
        try:
            client.put(prefix + b"%06d" % i, value)
        except grpc.RpcError as e:
            return i, (e.code(), e.details())
    raise AssertionError(f"{max_puts} puts of {value_bytes} bytes were all accepted")


def op_put(key: bytes, value: bytes = b"") -> R.RequestOp:
    return R.RequestOp(request_put=R.PutRequest(key=key, value=value))


def op_get(key: bytes, range_end: bytes = b"") -> R.RequestOp:
    return R.RequestOp(request_range=R.RangeRequest(key=key, range_end=range_end))


def op_delete(key: bytes, range_end: bytes = b"") -> R.RequestOp:
    return R.RequestOp(request_delete_range=R.DeleteRangeRequest(key=key, range_end=range_end))


def etcdlite_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``etcdlite ARGS`` (without our ETCD* variables) and return its result."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    return subprocess.run([*etcdlite_command(), *args], capture_output=True, text=True,
                          env=env, timeout=CLI_TIMEOUT_S)


def launch(base: Path, name: str, *args: str) -> ServerProc:
    """etcdlite (in reference mode real etcd 3.5.1) with data and log in ``base``;
    started and serving."""
    data, log_path = base / f"{name}.etcd", base / f"{name}.log"
    if REFERENCE:
        return launch_real_etcd("etcd-3.5", real_etcd_binary("etcd-3.5"), data, log_path,
                                *args)
    return launch_etcdlite(data, log_path, *args)


def needs_etcdlite() -> None:
    """Skip in reference mode: the test exercises etcdlite's own tools or file format."""
    if REFERENCE:
        pytest.skip("exercises etcdlite itself (reference mode runs real etcd)")


class Servers:
    """Servers started for one test module; ``stop_all`` ends them (by their own PID)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.started: list[ServerProc] = []

    def start(self, name: str, *args: str) -> ServerProc:
        sp = launch(self.base, name, *args)
        self.started.append(sp)
        return sp

    def start_etcdlite_on(self, data: Path, *args: str) -> ServerProc:
        """etcdlite on an existing data dir (a restored one), logging next to it."""
        sp = launch_etcdlite(data, data.with_name(data.name + ".log"), *args)
        self.started.append(sp)
        return sp

    def stop_all(self) -> None:
        for sp in self.started:
            sp.stop()
