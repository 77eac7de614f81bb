"""etcdlite.protos.wire lists every RPC of the fact sheet §2, once, with the right classes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from aetcd.rpc import rpc_pb2 as etcd_rpc_pb2

from etcdlite.protos import health_pb2, rpc_pb2, v3election_pb2, v3lock_pb2, wire
from etcdlite.protos.wire import BY_PATH, METHODS, StreamKind, Stub, WireMethod, method

U, US, SU, SS = (
    StreamKind.UNARY_UNARY,
    StreamKind.UNARY_STREAM,
    StreamKind.STREAM_UNARY,
    StreamKind.STREAM_STREAM,
)

# (service, rpc, request message, response message, kind), written out from facts §2.
EXPECTED: list[tuple[str, str, str, str, StreamKind]] = [
    ("etcdserverpb.KV", "Range", "RangeRequest", "RangeResponse", U),
    ("etcdserverpb.KV", "Put", "PutRequest", "PutResponse", U),
    ("etcdserverpb.KV", "DeleteRange", "DeleteRangeRequest", "DeleteRangeResponse", U),
    ("etcdserverpb.KV", "Txn", "TxnRequest", "TxnResponse", U),
    ("etcdserverpb.KV", "Compact", "CompactionRequest", "CompactionResponse", U),
    ("etcdserverpb.Watch", "Watch", "WatchRequest", "WatchResponse", SS),
    ("etcdserverpb.Lease", "LeaseGrant", "LeaseGrantRequest", "LeaseGrantResponse", U),
    ("etcdserverpb.Lease", "LeaseRevoke", "LeaseRevokeRequest", "LeaseRevokeResponse", U),
    ("etcdserverpb.Lease", "LeaseKeepAlive", "LeaseKeepAliveRequest", "LeaseKeepAliveResponse", SS),
    (
        "etcdserverpb.Lease",
        "LeaseTimeToLive",
        "LeaseTimeToLiveRequest",
        "LeaseTimeToLiveResponse",
        U,
    ),
    ("etcdserverpb.Lease", "LeaseLeases", "LeaseLeasesRequest", "LeaseLeasesResponse", U),
    ("etcdserverpb.Cluster", "MemberAdd", "MemberAddRequest", "MemberAddResponse", U),
    ("etcdserverpb.Cluster", "MemberRemove", "MemberRemoveRequest", "MemberRemoveResponse", U),
    ("etcdserverpb.Cluster", "MemberUpdate", "MemberUpdateRequest", "MemberUpdateResponse", U),
    ("etcdserverpb.Cluster", "MemberList", "MemberListRequest", "MemberListResponse", U),
    ("etcdserverpb.Cluster", "MemberPromote", "MemberPromoteRequest", "MemberPromoteResponse", U),
    ("etcdserverpb.Maintenance", "Alarm", "AlarmRequest", "AlarmResponse", U),
    ("etcdserverpb.Maintenance", "Status", "StatusRequest", "StatusResponse", U),
    ("etcdserverpb.Maintenance", "Defragment", "DefragmentRequest", "DefragmentResponse", U),
    ("etcdserverpb.Maintenance", "Hash", "HashRequest", "HashResponse", U),
    ("etcdserverpb.Maintenance", "HashKV", "HashKVRequest", "HashKVResponse", U),
    ("etcdserverpb.Maintenance", "Snapshot", "SnapshotRequest", "SnapshotResponse", US),
    ("etcdserverpb.Maintenance", "MoveLeader", "MoveLeaderRequest", "MoveLeaderResponse", U),
    ("etcdserverpb.Maintenance", "Downgrade", "DowngradeRequest", "DowngradeResponse", U),
    ("etcdserverpb.Auth", "AuthEnable", "AuthEnableRequest", "AuthEnableResponse", U),
    ("etcdserverpb.Auth", "AuthDisable", "AuthDisableRequest", "AuthDisableResponse", U),
    ("etcdserverpb.Auth", "AuthStatus", "AuthStatusRequest", "AuthStatusResponse", U),
    ("etcdserverpb.Auth", "Authenticate", "AuthenticateRequest", "AuthenticateResponse", U),
    *[
        ("etcdserverpb.Auth", rpc, f"Auth{rpc}Request", f"Auth{rpc}Response", U)
        for rpc in (
            "UserAdd",
            "UserGet",
            "UserList",
            "UserDelete",
            "UserChangePassword",
            "UserGrantRole",
            "UserRevokeRole",
            "RoleAdd",
            "RoleGet",
            "RoleList",
            "RoleDelete",
            "RoleGrantPermission",
            "RoleRevokePermission",
        )
    ],
    ("v3lockpb.Lock", "Lock", "LockRequest", "LockResponse", U),
    ("v3lockpb.Lock", "Unlock", "UnlockRequest", "UnlockResponse", U),
    ("v3electionpb.Election", "Campaign", "CampaignRequest", "CampaignResponse", U),
    ("v3electionpb.Election", "Proclaim", "ProclaimRequest", "ProclaimResponse", U),
    ("v3electionpb.Election", "Leader", "LeaderRequest", "LeaderResponse", U),
    ("v3electionpb.Election", "Observe", "LeaderRequest", "LeaderResponse", US),
    ("v3electionpb.Election", "Resign", "ResignRequest", "ResignResponse", U),
    ("grpc.health.v1.Health", "Check", "HealthCheckRequest", "HealthCheckResponse", U),
    ("grpc.health.v1.Health", "Watch", "HealthCheckRequest", "HealthCheckResponse", US),
]

OUR_MODULES = {m.__name__: m for m in (rpc_pb2, v3lock_pb2, v3election_pb2, health_pb2)}
# Wire package -> our proto package.
OUR_PACKAGE = {
    "etcdserverpb": "etcdlite.etcdserverpb",
    "v3lockpb": "etcdlite.v3lockpb",
    "v3electionpb": "etcdlite.v3electionpb",
    "grpc.health.v1": "etcdlite.health.v1",
}
WIRE_PACKAGE = {v: k for k, v in OUR_PACKAGE.items()}


def _package(service: str) -> str:
    return service.rsplit(".", 1)[0]


def test_every_rpc_exactly_once() -> None:
    got = [(m.service, m.name) for m in METHODS]
    assert len(got) == len(set(got))
    assert sorted(got) == sorted((s, n) for s, n, *_ in EXPECTED)
    assert len(METHODS) == len(EXPECTED) == 50


@pytest.mark.parametrize("row", EXPECTED, ids=lambda r: f"{r[0]}/{r[1]}")
def test_kind_and_classes(row: tuple[str, str, str, str, StreamKind]) -> None:
    service, name, req, resp, kind = row
    m = method(service.rsplit(".", 1)[-1], name)
    assert m.kind is kind
    pkg = OUR_PACKAGE[_package(service)]
    assert m.request.DESCRIPTOR.full_name == f"{pkg}.{req}"
    assert m.response.DESCRIPTOR.full_name == f"{pkg}.{resp}"
    for cls in (m.request, m.response):
        assert cls.__module__ in OUR_MODULES
        assert getattr(OUR_MODULES[cls.__module__], cls.__name__) is cls
        assert cls.DESCRIPTOR.file.name.startswith("etcdlite/protos/")


def test_paths_are_unique_and_indexed() -> None:
    paths = [m.path for m in METHODS]
    assert len(paths) == len(set(paths))
    assert {m.path: m for m in METHODS} == BY_PATH
    assert method("KV", "Range").path == "/etcdserverpb.KV/Range"
    assert method("KV", "Compact").path == "/etcdserverpb.KV/Compact"
    assert method("Health", "Check").path == "/grpc.health.v1.Health/Check"
    assert method("Lock", "Unlock").path == "/v3lockpb.Lock/Unlock"
    assert method("etcdserverpb.Watch", "Watch") is BY_PATH["/etcdserverpb.Watch/Watch"]
    for m in METHODS:
        assert m.path == f"/{m.service}/{m.name}"
        assert m.service_short == m.service.rsplit(".", 1)[-1]


def test_unknown_lookups_raise() -> None:
    with pytest.raises(KeyError):
        method("KV", "Nope")
    with pytest.raises(KeyError):
        method("Nope", "Range")


def test_wire_method_is_frozen() -> None:
    m = method("KV", "Put")
    with pytest.raises(AttributeError):
        m.name = "Other"  # type: ignore[misc]
    assert isinstance(m, WireMethod)


def test_stream_kind_flags() -> None:
    assert (U.request_streaming, U.response_streaming) == (False, False)
    assert (US.request_streaming, US.response_streaming) == (False, True)
    assert (SU.request_streaming, SU.response_streaming) == (True, False)
    assert (SS.request_streaming, SS.response_streaming) == (True, True)


def test_table_matches_our_proto_service_declarations() -> None:
    declared = {}
    for mod in OUR_MODULES.values():
        for svc in mod.DESCRIPTOR.services_by_name.values():
            pkg, short = svc.full_name.rsplit(".", 1)
            for rpc in svc.methods:
                declared[f"/{WIRE_PACKAGE[pkg]}.{short}/{rpc.name}"] = rpc
    assert set(declared) == set(BY_PATH)
    for path, rpc in declared.items():
        m = BY_PATH[path]
        assert rpc.input_type is m.request.DESCRIPTOR, path
        assert rpc.output_type is m.response.DESCRIPTOR, path
        assert rpc.client_streaming == m.kind.request_streaming, path
        assert rpc.server_streaming == m.kind.response_streaming, path


def test_table_matches_etcd_services_bundled_with_aetcd() -> None:
    for svc in etcd_rpc_pb2.DESCRIPTOR.services_by_name.values():
        for rpc in svc.methods:
            m = BY_PATH[f"/{svc.full_name}/{rpc.name}"]
            assert m.request.DESCRIPTOR.name == rpc.input_type.name
            assert m.response.DESCRIPTOR.name == rpc.output_type.name
            assert m.kind.request_streaming == rpc.client_streaming
            assert m.kind.response_streaming == rpc.server_streaming


# --- Stub ----------------------------------------------------------------------------------


class _RecordingChannel:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, Any]] = []

    def _factory(self, kind: str) -> Any:
        def make(path: str, request_serializer: Any, response_deserializer: Any) -> Any:
            self.calls.append((kind, path, request_serializer, response_deserializer))
            return (kind, path)

        return make

    def __getattr__(self, kind: str) -> Any:
        if kind in {k.value for k in StreamKind}:
            return self._factory(kind)
        raise AttributeError(kind)


@pytest.mark.parametrize("service", sorted(wire.SERVICES))
def test_stub_builds_every_method_with_its_kind(service: str) -> None:
    channel = _RecordingChannel()
    stub = Stub(channel, service)
    methods = wire.SERVICES[service]
    assert [c[1] for c in channel.calls] == [m.path for m in methods]
    for m in methods:
        assert getattr(stub, m.name) == (m.kind.value, m.path)
    req = methods[0].request()
    _kind, _path, ser, de = channel.calls[0]
    assert de(ser(req)) == methods[0].response.FromString(req.SerializeToString())
    with pytest.raises(AttributeError):
        _ = stub.NotAnRpc


def test_stub_accepts_short_service_names() -> None:
    assert Stub(_RecordingChannel(), "KV").service == "etcdserverpb.KV"
    assert Stub(_RecordingChannel(), "Election").service == "v3electionpb.Election"
    with pytest.raises(KeyError):
        Stub(_RecordingChannel(), "Nope")


def _serve(handlers: dict[str, dict[str, grpc.RpcMethodHandler]]) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(svc, h) for svc, h in handlers.items()]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def test_stub_against_a_real_grpc_server() -> None:
    rng, watch = method("KV", "Range"), method("Watch", "Watch")

    def on_range(req: Any, ctx: Any) -> Any:
        return rpc_pb2.RangeResponse(count=len(req.key), more=bool(req.range_end))

    def on_watch(reqs: Iterator[Any], ctx: Any) -> Iterator[Any]:
        for r in reqs:
            yield rpc_pb2.WatchResponse(watch_id=r.create_request.watch_id, created=True)

    server, port = _serve(
        {
            rng.service: {
                "Range": grpc.unary_unary_rpc_method_handler(
                    on_range, rng.request.FromString, rng.response.SerializeToString
                )
            },
            watch.service: {
                "Watch": grpc.stream_stream_rpc_method_handler(
                    on_watch, watch.request.FromString, watch.response.SerializeToString
                )
            },
        }
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            kv = Stub(channel, "KV")
            resp = kv.Range(rpc_pb2.RangeRequest(key=b"abc", range_end=b"\0"), timeout=10)
            assert isinstance(resp, rpc_pb2.RangeResponse)
            assert (resp.count, resp.more) == (3, True)

            reqs = [
                rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(watch_id=i))
                for i in (4, 5)
            ]
            got = list(Stub(channel, "Watch").Watch(iter(reqs), timeout=10))
            assert [(r.watch_id, r.created) for r in got] == [(4, True), (5, True)]

            async def via_aio() -> Any:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as aio_channel:
                    return await Stub(aio_channel, "KV").Range(
                        rpc_pb2.RangeRequest(key=b"xy"), timeout=10
                    )

            aio_resp = asyncio.run(via_aio())
            assert (aio_resp.count, aio_resp.more) == (2, False)
    finally:
        server.stop(None)
