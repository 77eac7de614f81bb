"""Helpers of the auth tests (fixtures live in conftest.py).

``Member`` is a backend, a manual clock, a simple-token provider and an AuthStore over one
data dir; closing it and building another over the same dir is a member restart.

For the integration tests: ``Client`` (stubs of every service sending a token as etcd
clients do), ``WatchSession`` (one Watch stream driven from the test), ``setup_auth``
(root, role ``app`` on ``/app/``, user alice, AuthEnable) and request builders.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any

import grpc

from etcdlite.protos import auth_pb2, rpc_pb2, wire
from etcdlite.server.auth_store import AuthStore, hash_password
from etcdlite.server.auth_tokens import SimpleTokenProvider
from etcdlite.server.clock import ManualClock
from etcdlite.storage.backend import LmdbBackend

MAP_SIZE = 1 << 26
TEST_COST = 4
"""The cheapest bcrypt-style cost: tests hash many passwords."""


def hashed(password: str) -> str:
    return hash_password(password, TEST_COST)


class Member:
    """A backend, a clock, a token provider and an auth store over one data dir."""

    def __init__(self, path: Path, clock: ManualClock):
        self.path = path
        self.clock = clock
        self.backend = LmdbBackend(path, sync=False, map_size=MAP_SIZE)
        self.tokens = SimpleTokenProvider(clock, ttl_s=300)
        self.store = AuthStore(self.backend, self.tokens)

    def close(self) -> None:
        self.backend.close()


# -- a server on the wire (integration tests) ---------------------------------------------

TOKEN_TTL_S = 5
"""--auth-token-ttl of the ``server`` fixture (on its ManualClock)."""
ROOT_PW = "rootpw"
ALICE_PW = "alicepw"
CALL_TIMEOUT_S = 10.0
RECV_TIMEOUT_S = 10.0
READ, WRITE, READWRITE = auth_pb2.Permission.READ, auth_pb2.Permission.WRITE, \
    auth_pb2.Permission.READWRITE


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


class Client:
    """Stubs of every service over one channel, sending ``token`` (if any) as metadata
    ``token`` (or under ``key``), as etcd clients do. ``call`` returns the response;
    ``error`` returns ``(code name, details)`` of a call that must fail."""

    def __init__(self, channel: grpc.Channel, token: str | None = None, key: str = "token"):
        self.channel = channel
        self.token = token
        self.key = key
        self.stubs = {name: wire.Stub(channel, name)
                      for name in ("KV", "Lease", "Auth", "Maintenance", "Cluster", "Watch")}

    def with_token(self, token: str | None, key: str = "token") -> Client:
        return Client(self.channel, token, key)

    @property
    def metadata(self) -> list[tuple[str, str]] | None:
        return [(self.key, self.token)] if self.token is not None else None

    def call(self, service: str, rpc: str, request: Any) -> Any:
        fn = getattr(self.stubs[service], rpc)
        return fn(request, metadata=self.metadata, timeout=CALL_TIMEOUT_S)

    def error(self, service: str, rpc: str, request: Any) -> tuple[str, str]:
        try:
            resp = self.call(service, rpc, request)
        except grpc.RpcError as exc:
            return exc.code().name, exc.details()
        raise AssertionError(f"{service}.{rpc} succeeded: {resp}")

    def snapshot_error(self) -> tuple[str, str]:
        stream = self.stubs["Maintenance"].Snapshot(
            rpc_pb2.SnapshotRequest(), metadata=self.metadata, timeout=CALL_TIMEOUT_S)
        try:
            first = next(stream)
        except grpc.RpcError as exc:
            return exc.code().name, exc.details()
        raise AssertionError(f"Snapshot succeeded: {first.remaining_bytes} bytes left")

    # shorthands
    def put(self, key: bytes, value: bytes = b"v", **kw: Any) -> rpc_pb2.PutResponse:
        return self.call("KV", "Put", rpc_pb2.PutRequest(key=key, value=value, **kw))

    def get(self, key: bytes, range_end: bytes = b"") -> rpc_pb2.RangeResponse:
        return self.call("KV", "Range", rpc_pb2.RangeRequest(key=key, range_end=range_end))

    def authenticate(self, name: str, password: str) -> str:
        resp = self.call("Auth", "Authenticate",
                         rpc_pb2.AuthenticateRequest(name=name, password=password))
        return str(resp.token)

    def login(self, name: str, password: str) -> Client:
        return self.with_token(self.authenticate(name, password))

    def watch(self) -> WatchSession:
        return WatchSession(self.stubs["Watch"], self.metadata)


class WatchSession:
    """One Watch stream: requests from a queue (sent whenever the test wants), responses
    read by a thread into a queue, so ``recv`` never blocks forever."""

    def __init__(self, stub: wire.Stub, metadata: list[tuple[str, str]] | None):
        self._requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
        self._responses: queue.Queue[rpc_pb2.WatchResponse | BaseException] = queue.Queue()
        self._call = stub.Watch(iter(self._requests.get, None), metadata=metadata,
                                timeout=120)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for resp in self._call:
                self._responses.put(resp)
        except grpc.RpcError as exc:
            self._responses.put(exc)

    def create(self, key: bytes, range_end: bytes = b"", watch_id: int = 0,
               ) -> rpc_pb2.WatchResponse:
        """Create a watcher; returns the reply to the create (created or refused)."""
        self._requests.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
            key=key, range_end=range_end, watch_id=watch_id)))
        resp = self.recv()
        assert resp.created, resp
        return resp

    def recv(self, timeout: float = RECV_TIMEOUT_S) -> rpc_pb2.WatchResponse:
        item = self._responses.get(timeout=timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    def events(self, n: int) -> list[tuple[int, bytes, bytes]]:
        """The next ``n`` events as (watch id, key, value), in arrival order."""
        out: list[tuple[int, bytes, bytes]] = []
        while len(out) < n:
            resp = self.recv()
            out.extend((resp.watch_id, ev.kv.key, ev.kv.value) for ev in resp.events)
        return out

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()
        self._reader.join(5)

    def __enter__(self) -> WatchSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def setup_auth(client: Client, *, enable: bool = True) -> None:
    """etcd's usual setup: user root (role root), role ``app`` with READWRITE on the
    prefix ``/app/`` and READ on ``/ro/``, user alice holding it, then AuthEnable."""
    call = client.call
    call("Auth", "UserAdd", rpc_pb2.AuthUserAddRequest(name="root", password=ROOT_PW))
    call("Auth", "UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
    call("Auth", "RoleAdd", rpc_pb2.AuthRoleAddRequest(name="app"))
    grant(client, "app", b"/app/", prefix_end(b"/app/"), READWRITE)
    grant(client, "app", b"/ro/", prefix_end(b"/ro/"), READ)
    call("Auth", "UserAdd", rpc_pb2.AuthUserAddRequest(name="alice", password=ALICE_PW))
    call("Auth", "UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="app"))
    if enable:
        call("Auth", "AuthEnable", rpc_pb2.AuthEnableRequest())


def grant(client: Client, role: str, key: bytes, range_end: bytes, kind: int) -> None:
    client.call("Auth", "RoleGrantPermission", rpc_pb2.AuthRoleGrantPermissionRequest(
        name=role, perm=auth_pb2.Permission(permType=kind, key=key, range_end=range_end)))


def txn(*ops: rpc_pb2.RequestOp, compare: tuple[rpc_pb2.Compare, ...] = (),
        failure: tuple[rpc_pb2.RequestOp, ...] = ()) -> rpc_pb2.TxnRequest:
    return rpc_pb2.TxnRequest(compare=list(compare), success=list(ops), failure=list(failure))


def op_put(key: bytes, **kw: Any) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=b"v", **kw))


def op_get(key: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))


def op_del(key: bytes, range_end: bytes = b"") -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(
        key=key, range_end=range_end))
