"""The one table of etcd's gRPC wire methods, and a tiny client stub built from it.

etcd clients call methods such as ``/etcdserverpb.KV/Range``. Our messages live in the proto
package ``etcdlite.etcdserverpb`` (see :mod:`etcdlite.protos`), so the paths cannot come from
generated service code; they are listed here, once, with the message classes and the streaming
kind of every RPC. The server registers its handlers from :data:`METHODS`; tests and benchmarks
talk to it through :class:`Stub`::

    from etcdlite.protos import rpc_pb2
    from etcdlite.protos.wire import Stub, method

    kv = Stub(channel, "etcdserverpb.KV")          # or Stub(channel, "KV")
    resp = kv.Range(rpc_pb2.RangeRequest(key=b"a"))
    method("KV", "Range").path                      # "/etcdserverpb.KV/Range"
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from . import health_pb2, rpc_pb2, v3election_pb2, v3lock_pb2


class StreamKind(enum.Enum):
    """gRPC cardinality of a method: ``<request side>_<response side>``."""

    UNARY_UNARY = "unary_unary"
    UNARY_STREAM = "unary_stream"
    STREAM_UNARY = "stream_unary"
    STREAM_STREAM = "stream_stream"

    @property
    def request_streaming(self) -> bool:
        """True when the client sends a stream of requests."""
        return self in (StreamKind.STREAM_UNARY, StreamKind.STREAM_STREAM)

    @property
    def response_streaming(self) -> bool:
        """True when the server sends a stream of responses."""
        return self in (StreamKind.UNARY_STREAM, StreamKind.STREAM_STREAM)


@dataclass(frozen=True)
class WireMethod:
    """One RPC as etcd exposes it on the wire."""

    #: Full gRPC service name, e.g. ``"etcdserverpb.KV"`` (etcd's, not our proto package).
    service: str
    #: RPC name, e.g. ``"Range"``.
    name: str
    #: Request message class (from ``etcdlite.protos.*_pb2``).
    request: type[Message]
    #: Response message class (from ``etcdlite.protos.*_pb2``).
    response: type[Message]
    kind: StreamKind

    @property
    def path(self) -> str:
        """The HTTP/2 path a client calls, e.g. ``"/etcdserverpb.KV/Range"``."""
        return f"/{self.service}/{self.name}"

    @property
    def service_short(self) -> str:
        """Last component of the service name, e.g. ``"KV"``, ``"Lock"``, ``"Health"``."""
        return self.service.rsplit(".", 1)[-1]

    def serialize_request(self, msg: Message) -> bytes:
        """Serialize a request message (client side)."""
        return msg.SerializeToString()

    def parse_request(self, data: bytes) -> Message:
        """Parse request bytes into :attr:`request` (server side)."""
        return self.request.FromString(data)

    def serialize_response(self, msg: Message) -> bytes:
        """Serialize a response message (server side)."""
        return msg.SerializeToString()

    def parse_response(self, data: bytes) -> Message:
        """Parse response bytes into :attr:`response` (client side)."""
        return self.response.FromString(data)


_U = StreamKind.UNARY_UNARY
_US = StreamKind.UNARY_STREAM
_SS = StreamKind.STREAM_STREAM

KV = "etcdserverpb.KV"
WATCH = "etcdserverpb.Watch"
LEASE = "etcdserverpb.Lease"
CLUSTER = "etcdserverpb.Cluster"
MAINTENANCE = "etcdserverpb.Maintenance"
AUTH = "etcdserverpb.Auth"
LOCK = "v3lockpb.Lock"
ELECTION = "v3electionpb.Election"
HEALTH = "grpc.health.v1.Health"


def _etcd(service: str, name: str, kind: StreamKind = _U, stem: str | None = None) -> WireMethod:
    """An etcdserverpb method whose messages are ``<stem>Request`` / ``<stem>Response``."""
    stem = name if stem is None else stem
    return WireMethod(
        service,
        name,
        getattr(rpc_pb2, f"{stem}Request"),
        getattr(rpc_pb2, f"{stem}Response"),
        kind,
    )


def _auth(name: str) -> WireMethod:
    """An Auth user/role method: messages carry an ``Auth`` prefix (UserAdd -> AuthUserAdd...)."""
    return _etcd(AUTH, name, stem=f"Auth{name}")


#: Every RPC the etcd v3 gRPC port serves, in service order.
METHODS: tuple[WireMethod, ...] = (
    # KV
    _etcd(KV, "Range"),
    _etcd(KV, "Put"),
    _etcd(KV, "DeleteRange"),
    _etcd(KV, "Txn"),
    _etcd(KV, "Compact", stem="Compaction"),
    # Watch
    _etcd(WATCH, "Watch", _SS),
    # Lease
    _etcd(LEASE, "LeaseGrant"),
    _etcd(LEASE, "LeaseRevoke"),
    _etcd(LEASE, "LeaseKeepAlive", _SS),
    _etcd(LEASE, "LeaseTimeToLive"),
    _etcd(LEASE, "LeaseLeases"),
    # Cluster
    _etcd(CLUSTER, "MemberAdd"),
    _etcd(CLUSTER, "MemberRemove"),
    _etcd(CLUSTER, "MemberUpdate"),
    _etcd(CLUSTER, "MemberList"),
    _etcd(CLUSTER, "MemberPromote"),
    # Maintenance
    _etcd(MAINTENANCE, "Alarm"),
    _etcd(MAINTENANCE, "Status"),
    _etcd(MAINTENANCE, "Defragment"),
    _etcd(MAINTENANCE, "Hash"),
    _etcd(MAINTENANCE, "HashKV"),
    _etcd(MAINTENANCE, "Snapshot", _US),
    _etcd(MAINTENANCE, "MoveLeader"),
    _etcd(MAINTENANCE, "Downgrade"),
    # Auth
    _etcd(AUTH, "AuthEnable"),
    _etcd(AUTH, "AuthDisable"),
    _etcd(AUTH, "AuthStatus"),
    _etcd(AUTH, "Authenticate"),
    _auth("UserAdd"),
    _auth("UserGet"),
    _auth("UserList"),
    _auth("UserDelete"),
    _auth("UserChangePassword"),
    _auth("UserGrantRole"),
    _auth("UserRevokeRole"),
    _auth("RoleAdd"),
    _auth("RoleGet"),
    _auth("RoleList"),
    _auth("RoleDelete"),
    _auth("RoleGrantPermission"),
    _auth("RoleRevokePermission"),
    # v3lockpb.Lock
    WireMethod(LOCK, "Lock", v3lock_pb2.LockRequest, v3lock_pb2.LockResponse, _U),
    WireMethod(LOCK, "Unlock", v3lock_pb2.UnlockRequest, v3lock_pb2.UnlockResponse, _U),
    # v3electionpb.Election
    WireMethod(
        ELECTION, "Campaign", v3election_pb2.CampaignRequest, v3election_pb2.CampaignResponse, _U
    ),
    WireMethod(
        ELECTION, "Proclaim", v3election_pb2.ProclaimRequest, v3election_pb2.ProclaimResponse, _U
    ),
    WireMethod(ELECTION, "Leader", v3election_pb2.LeaderRequest, v3election_pb2.LeaderResponse, _U),
    WireMethod(
        ELECTION, "Observe", v3election_pb2.LeaderRequest, v3election_pb2.LeaderResponse, _US
    ),
    WireMethod(ELECTION, "Resign", v3election_pb2.ResignRequest, v3election_pb2.ResignResponse, _U),
    # grpc.health.v1.Health
    WireMethod(HEALTH, "Check", health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse, _U),
    WireMethod(HEALTH, "Watch", health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse, _US),
)

#: Method by full path, e.g. ``BY_PATH["/etcdserverpb.KV/Range"]``.
BY_PATH: dict[str, WireMethod] = {m.path: m for m in METHODS}

#: Methods grouped by full service name, in table order.
SERVICES: dict[str, tuple[WireMethod, ...]] = {
    svc: tuple(m for m in METHODS if m.service == svc)
    for svc in dict.fromkeys(m.service for m in METHODS)
}

_SERVICE_BY_SHORT: dict[str, str] = {svc.rsplit(".", 1)[-1]: svc for svc in SERVICES}

if len(BY_PATH) != len(METHODS) or len(_SERVICE_BY_SHORT) != len(SERVICES):  # pragma: no cover
    raise RuntimeError("etcdlite.protos.wire: duplicate method path or service short name")


def service_name(service: str) -> str:
    """Full service name for a short (``"KV"``, ``"Lock"``) or full (``"etcdserverpb.KV"``) one."""
    if service in SERVICES:
        return service
    try:
        return _SERVICE_BY_SHORT[service]
    except KeyError:
        raise KeyError(f"unknown gRPC service {service!r}; known: {sorted(SERVICES)}") from None


def method(service_short: str, name: str) -> WireMethod:
    """Look up one method, e.g. ``method("KV", "Range")``; full service names work too."""
    path = f"/{service_name(service_short)}/{name}"
    try:
        return BY_PATH[path]
    except KeyError:
        raise KeyError(f"unknown gRPC method {path!r}") from None


class Stub:
    """Client for one service on a ``grpc.Channel`` or ``grpc.aio.Channel``.

    Each RPC of the service is an attribute named like the RPC (``stub.Range``,
    ``stub.LeaseKeepAlive``), created with the channel's ``unary_unary`` / ``unary_stream`` /
    ``stream_unary`` / ``stream_stream`` factory, so calling conventions (sync, ``await``,
    iterators, ``.future``, ``metadata=``, ``timeout=``) are exactly grpcio's.
    """

    def __init__(self, channel: Any, service: str) -> None:
        self.service: str = service_name(service)
        self.methods: dict[str, WireMethod] = {m.name: m for m in SERVICES[self.service]}
        for m in self.methods.values():
            factory: Callable[..., Any] = getattr(channel, m.kind.value)
            callable_ = factory(
                m.path,
                request_serializer=m.request.SerializeToString,
                response_deserializer=m.response.FromString,
            )
            setattr(self, m.name, callable_)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails, i.e. for a name that is not an RPC.
        raise AttributeError(
            f"{type(self).__name__} for {self.__dict__.get('service', '?')!r} has no RPC "
            f"{name!r}; it has {sorted(self.__dict__.get('methods', {}))}"
        )

    def __repr__(self) -> str:
        return f"Stub({self.service!r})"
