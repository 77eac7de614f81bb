"""The servicers: check the request, call ``Etcd``, fill the response header.

Method names are the RPC names of ``etcdlite.protos.wire``; an RPC a servicer does not
define is answered UNIMPLEMENTED by the registration code (``grpc_server``).

Auth: the caller's credentials come from the call, as etcd reads them: the metadata key
``token`` (what clientv3, etcdctl, aetcd and python-etcd3 send), else ``authorization``
(what the gateway makes of the HTTP header), else, with --client-cert-auth, the common
name of the client's verified certificate. ``request_caller`` turns them into the
caller the facade checks, only while auth is enabled (one attribute test otherwise).
Which RPCs look at the caller follows etcd 3.5: Status, MemberList, LeaseKeepAlive,
LeaseLeases and (without ``keys``) LeaseTimeToLive never do, so an expired token does
not break them; Authenticate ignores any token it is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from etcdlite.protos.health_pb2 import HealthCheckRequest, HealthCheckResponse
from etcdlite.protos.rpc_pb2 import (
    AlarmRequest,
    AlarmResponse,
    AuthDisableRequest,
    AuthDisableResponse,
    AuthEnableRequest,
    AuthEnableResponse,
    AuthenticateRequest,
    AuthenticateResponse,
    AuthRoleAddRequest,
    AuthRoleAddResponse,
    AuthRoleDeleteRequest,
    AuthRoleDeleteResponse,
    AuthRoleGetRequest,
    AuthRoleGetResponse,
    AuthRoleGrantPermissionRequest,
    AuthRoleGrantPermissionResponse,
    AuthRoleListRequest,
    AuthRoleListResponse,
    AuthRoleRevokePermissionRequest,
    AuthRoleRevokePermissionResponse,
    AuthStatusRequest,
    AuthStatusResponse,
    AuthUserAddRequest,
    AuthUserAddResponse,
    AuthUserChangePasswordRequest,
    AuthUserChangePasswordResponse,
    AuthUserDeleteRequest,
    AuthUserDeleteResponse,
    AuthUserGetRequest,
    AuthUserGetResponse,
    AuthUserGrantRoleRequest,
    AuthUserGrantRoleResponse,
    AuthUserListRequest,
    AuthUserListResponse,
    AuthUserRevokeRoleRequest,
    AuthUserRevokeRoleResponse,
    CompactionRequest,
    CompactionResponse,
    DefragmentRequest,
    DefragmentResponse,
    DeleteRangeRequest,
    DeleteRangeResponse,
    HashKVRequest,
    HashKVResponse,
    HashRequest,
    HashResponse,
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseKeepAliveRequest,
    LeaseKeepAliveResponse,
    LeaseLeasesRequest,
    LeaseLeasesResponse,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
    MemberListRequest,
    MemberListResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    SnapshotRequest,
    SnapshotResponse,
    StatusRequest,
    StatusResponse,
    TxnRequest,
    TxnResponse,
    WatchCreateRequest,
    WatchRequest,
    WatchResponse,
)
from etcdlite.server import validate
from etcdlite.server.api.grpc_server import Refused
from etcdlite.server.auth_tokens import AuthInfo
from etcdlite.server.errors import (
    WATCH_PERMISSION_DENIED,
    InvalidAuthToken,
    MaintenanceInvalidAuthToken,
)
from etcdlite.server.etcd import Etcd, StreamIdentity
from etcdlite.server.watch import WatchStream

Context = grpc.aio.ServicerContext

TOKEN_KEY = "token"
"""The metadata key etcd clients send their token under (etcd's TokenFieldNameGRPC)."""
AUTHORIZATION_KEY = "authorization"
"""The key the gateway forwards the HTTP Authorization header as (TokenFieldNameSwagger)."""


def metadata_token(ctx: Context) -> str | None:
    """The call's token: metadata ``token``, else ``authorization``, else None.

    >>> metadata_token(ctx_with((("authorization", "b"), ("token", "a"))))  # doctest: +SKIP
    'a'
    """
    authorization = None
    for key, value in ctx.invocation_metadata() or ():
        if key == TOKEN_KEY:
            return str(value)
        if key == AUTHORIZATION_KEY and authorization is None:
            authorization = str(value)
    return authorization


def common_name(ctx: Context) -> str | None:
    """The CN of the client's certificate, verified by the TLS handshake (gRPC only
    reports one when the server required and checked it: --client-cert-auth)."""
    names = ctx.auth_context().get("x509_common_name")
    return names[0].decode() if names else None


def credentials(etcd: Etcd, ctx: Context) -> tuple[str | None, str | None]:
    """``(token, common name)`` of a call; the common name only without a token and with
    --client-cert-auth, as etcd's AuthInfoFromCtx."""
    token = metadata_token(ctx)
    if token is None and etcd.cfg.client_cert_auth:
        return None, common_name(ctx)
    return token, None


def request_caller(etcd: Etcd, ctx: Context) -> AuthInfo | None:
    """Who a unary call comes from (None while auth is disabled); raises
    ``InvalidAuthToken`` for a token that is unknown, malformed or expired, which clients
    answer by logging in again and retrying."""
    if not etcd.auth.enabled:
        return None
    return etcd.caller(*credentials(etcd, ctx))


def maintenance_caller(etcd: Etcd, ctx: Context) -> AuthInfo | None:
    """``request_caller`` for the admin-only maintenance RPCs, whose bad-token error
    etcd 3.5 sends raw (UNKNOWN "auth: invalid auth token")."""
    try:
        return request_caller(etcd, ctx)
    except InvalidAuthToken as exc:
        raise MaintenanceInvalidAuthToken() from exc


class KVService:
    def __init__(self, etcd: Etcd):
        self._etcd = etcd

    async def Range(self, r: RangeRequest, ctx: Context) -> RangeResponse:
        validate.check_range(r)
        etcd = self._etcd
        resp = etcd.range(r, request_caller(etcd, ctx))
        etcd.fill_header(resp.header)
        return resp

    async def Put(self, r: PutRequest, ctx: Context) -> PutResponse:
        validate.check_put(r)
        etcd = self._etcd
        resp = await etcd.put(r, request_caller(etcd, ctx))
        etcd.fill_header(resp.header)
        return resp

    async def DeleteRange(self, r: DeleteRangeRequest, ctx: Context) -> DeleteRangeResponse:
        validate.check_delete(r)
        etcd = self._etcd
        resp = await etcd.delete_range(r, request_caller(etcd, ctx))
        etcd.fill_header(resp.header)
        return resp

    async def Txn(self, r: TxnRequest, ctx: Context) -> TxnResponse:
        etcd = self._etcd
        validate.check_txn(r, etcd.cfg.max_txn_ops)
        validate.check_intervals(r.success)
        validate.check_intervals(r.failure)
        resp = await etcd.txn(r, request_caller(etcd, ctx))
        etcd.fill_header(resp.header)
        return resp

    async def Compact(self, r: CompactionRequest, ctx: Context) -> CompactionResponse:
        etcd = self._etcd
        resp = await etcd.compact(r, request_caller(etcd, ctx))
        etcd.fill_header(resp.header)
        return resp


class WatchService:
    """The Watch bidi stream: requests feed the hub, the hub's outbox feeds the client.

    A reader task handles create/cancel/progress requests as they arrive; this
    coroutine yields whatever the hub queued for the stream. A client that closes its
    sending side keeps receiving (as with etcd); the stream and its watchers are freed
    when the RPC ends (the client cancels or goes away) or a request is refused.

    Auth: the stream's credentials are read once, when it opens, and its caller is fixed
    the first time a create needs it (``StreamIdentity``); each create is then checked
    against that caller's current permissions. A create refused by auth gets etcd's
    reply, ``created`` and ``canceled`` with ``WATCH_PERMISSION_DENIED``, and the stream
    goes on.
    """

    def __init__(self, etcd: Etcd):
        self._etcd = etcd
        self._hub = etcd.watch_hub

    async def Watch(
        self, requests: AsyncIterator[WatchRequest | Refused], ctx: Context
    ) -> AsyncIterator[WatchResponse]:
        stream = self._hub.open_stream()
        identity = self._etcd.stream_identity(*credentials(self._etcd, ctx))
        refused: list[Refused] = []
        reader = asyncio.get_running_loop().create_task(
            self._read(requests, stream, identity, refused))
        try:
            while (resp := await stream.next_response()) is not None:
                yield resp
            if refused:
                await ctx.abort(refused[0].code, refused[0].message)
        finally:
            reader.cancel()
            self._hub.close_stream(stream)

    async def _read(
        self,
        requests: AsyncIterator[WatchRequest | Refused],
        stream: WatchStream,
        identity: StreamIdentity,
        refused: list[Refused],
    ) -> None:
        hub = self._hub
        etcd = self._etcd
        try:
            async for req in requests:
                # A client that does not read its responses is not read from either: its
                # replies would otherwise pile up past the outbox bound (as etcd does).
                await stream.room.wait()
                if type(req) is Refused:
                    refused.append(req)
                    hub.close_stream(stream)  # ends the response loop, which then aborts
                    return
                which = req.WhichOneof("request_union")
                if which == "create_request":
                    create = req.create_request
                    if etcd.watch_permitted(identity, create):
                        hub.create(stream, create)
                    else:
                        stream.push(self._denied(create))
                elif which == "cancel_request":
                    hub.cancel(stream, req.cancel_request.watch_id)
                elif which == "progress_request":
                    hub.request_progress(stream)
        except Exception as exc:  # a bug must end the stream visibly, not leave it mute
            refused.append(Refused(grpc.StatusCode.INTERNAL, f"etcdlite: watch: {exc!r}"))
            hub.close_stream(stream)

    def _denied(self, r: WatchCreateRequest) -> WatchResponse:
        """etcd's answer to a create auth refuses: the id as sent (0 when auto)."""
        resp = WatchResponse(watch_id=r.watch_id, created=True, canceled=True,
                             cancel_reason=WATCH_PERMISSION_DENIED)
        self._etcd.fill_watch_header(resp, self._etcd.store.current_revision)
        return resp


class LeaseService:
    def __init__(self, etcd: Etcd):
        self._etcd = etcd

    async def LeaseGrant(self, r: LeaseGrantRequest, ctx: Context) -> LeaseGrantResponse:
        etcd = self._etcd
        resp = await etcd.lease_grant(r, request_caller(etcd, ctx))
        etcd.fill_header(resp.header)
        return resp

    async def LeaseRevoke(self, r: LeaseRevokeRequest, ctx: Context) -> LeaseRevokeResponse:
        etcd = self._etcd
        resp = await etcd.lease_revoke(r, request_caller(etcd, ctx))
        etcd.fill_header(resp.header)
        return resp

    async def LeaseKeepAlive(
        self, requests: AsyncIterator[LeaseKeepAliveRequest | Refused], ctx: Context
    ) -> AsyncIterator[LeaseKeepAliveResponse]:
        """Each request renews its lease and is answered with the TTL (0: no such lease).
        No auth check, as in etcd: an expired token never stops a lease's keepalives."""
        async for req in requests:
            if type(req) is Refused:
                await ctx.abort(req.code, req.message)
            resp = LeaseKeepAliveResponse(ID=req.ID, TTL=self._etcd.lease_renew(req.ID))
            self._etcd.fill_header(resp.header)
            yield resp

    async def LeaseTimeToLive(
        self, r: LeaseTimeToLiveRequest, ctx: Context
    ) -> LeaseTimeToLiveResponse:
        etcd = self._etcd
        resp = etcd.lease_time_to_live(r, request_caller(etcd, ctx) if r.keys else None)
        etcd.fill_header(resp.header)
        return resp

    async def LeaseLeases(self, r: LeaseLeasesRequest, ctx: Context) -> LeaseLeasesResponse:
        resp = self._etcd.lease_leases()
        self._etcd.fill_header(resp.header)
        return resp


class MaintenanceService:
    def __init__(self, etcd: Etcd):
        self._etcd = etcd

    async def Status(self, r: StatusRequest, ctx: Context) -> StatusResponse:
        return self._etcd.status()

    async def Alarm(self, r: AlarmRequest, ctx: Context) -> AlarmResponse:
        etcd = self._etcd
        resp = await etcd.alarm(r, request_caller(etcd, ctx))
        etcd.fill_header(resp.header)
        return resp

    async def Hash(self, r: HashRequest, ctx: Context) -> HashResponse:
        return self._etcd.hash(maintenance_caller(self._etcd, ctx))

    async def HashKV(self, r: HashKVRequest, ctx: Context) -> HashKVResponse:
        return await self._etcd.hash_kv(r.revision, maintenance_caller(self._etcd, ctx))

    async def Defragment(self, r: DefragmentRequest, ctx: Context) -> DefragmentResponse:
        return await self._etcd.defragment(maintenance_caller(self._etcd, ctx))

    async def Snapshot(
        self, r: SnapshotRequest, ctx: Context
    ) -> AsyncIterator[SnapshotResponse]:
        async for resp in self._etcd.snapshot(maintenance_caller(self._etcd, ctx)):
            yield resp


class ClusterService:
    def __init__(self, etcd: Etcd):
        self._etcd = etcd

    async def MemberList(self, r: MemberListRequest, ctx: Context) -> MemberListResponse:
        return self._etcd.member_list()


class AuthService:
    """The Auth RPCs. Changes (enable, disable, user and role management) and
    Authenticate go through the log; reads are answered from the local auth state."""

    def __init__(self, etcd: Etcd):
        self._etcd = etcd

    async def Authenticate(self, r: AuthenticateRequest, ctx: Context) -> AuthenticateResponse:
        resp = await self._etcd.authenticate(r)  # any token the call carries is ignored
        self._etcd.fill_header(resp.header)
        return resp

    async def _change(self, r: Any, ctx: Context) -> Any:
        etcd = self._etcd
        resp = await etcd.auth_change(r, request_caller(etcd, ctx))
        etcd.fill_header(resp.header)
        return resp

    def _read(self, r: Any, ctx: Context) -> Any:
        etcd = self._etcd
        resp = etcd.auth_read(r, request_caller(etcd, ctx))
        etcd.fill_header(resp.header)
        return resp

    async def AuthEnable(self, r: AuthEnableRequest, ctx: Context) -> AuthEnableResponse:
        return await self._change(r, ctx)  # type: ignore[no-any-return]

    async def AuthDisable(self, r: AuthDisableRequest, ctx: Context) -> AuthDisableResponse:
        return await self._change(r, ctx)  # type: ignore[no-any-return]

    async def AuthStatus(self, r: AuthStatusRequest, ctx: Context) -> AuthStatusResponse:
        return self._read(r, ctx)  # type: ignore[no-any-return]

    async def UserAdd(self, r: AuthUserAddRequest, ctx: Context) -> AuthUserAddResponse:
        return await self._change(r, ctx)  # type: ignore[no-any-return]

    async def UserGet(self, r: AuthUserGetRequest, ctx: Context) -> AuthUserGetResponse:
        return self._read(r, ctx)  # type: ignore[no-any-return]

    async def UserList(self, r: AuthUserListRequest, ctx: Context) -> AuthUserListResponse:
        return self._read(r, ctx)  # type: ignore[no-any-return]

    async def UserDelete(self, r: AuthUserDeleteRequest, ctx: Context) -> AuthUserDeleteResponse:
        return await self._change(r, ctx)  # type: ignore[no-any-return]

    async def UserChangePassword(
        self, r: AuthUserChangePasswordRequest, ctx: Context
    ) -> AuthUserChangePasswordResponse:
        return await self._change(r, ctx)  # type: ignore[no-any-return]

    async def UserGrantRole(
        self, r: AuthUserGrantRoleRequest, ctx: Context
    ) -> AuthUserGrantRoleResponse:
        return await self._change(r, ctx)  # type: ignore[no-any-return]

    async def UserRevokeRole(
        self, r: AuthUserRevokeRoleRequest, ctx: Context
    ) -> AuthUserRevokeRoleResponse:
        return await self._change(r, ctx)  # type: ignore[no-any-return]

    async def RoleAdd(self, r: AuthRoleAddRequest, ctx: Context) -> AuthRoleAddResponse:
        return await self._change(r, ctx)  # type: ignore[no-any-return]

    async def RoleGet(self, r: AuthRoleGetRequest, ctx: Context) -> AuthRoleGetResponse:
        return self._read(r, ctx)  # type: ignore[no-any-return]

    async def RoleList(self, r: AuthRoleListRequest, ctx: Context) -> AuthRoleListResponse:
        return self._read(r, ctx)  # type: ignore[no-any-return]

    async def RoleDelete(self, r: AuthRoleDeleteRequest, ctx: Context) -> AuthRoleDeleteResponse:
        return await self._change(r, ctx)  # type: ignore[no-any-return]

    async def RoleGrantPermission(
        self, r: AuthRoleGrantPermissionRequest, ctx: Context
    ) -> AuthRoleGrantPermissionResponse:
        return await self._change(r, ctx)  # type: ignore[no-any-return]

    async def RoleRevokePermission(
        self, r: AuthRoleRevokePermissionRequest, ctx: Context
    ) -> AuthRoleRevokePermissionResponse:
        return await self._change(r, ctx)  # type: ignore[no-any-return]


class HealthService:
    """grpc.health.v1: the server as a whole ("") is SERVING while it runs."""

    async def Check(self, r: HealthCheckRequest, ctx: Context) -> HealthCheckResponse:
        if r.service:
            await ctx.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return HealthCheckResponse(status=HealthCheckResponse.SERVING)

    async def Watch(
        self, r: HealthCheckRequest, ctx: Context
    ) -> AsyncIterator[HealthCheckResponse]:
        status = (
            HealthCheckResponse.SERVING if not r.service else HealthCheckResponse.SERVICE_UNKNOWN
        )
        yield HealthCheckResponse(status=status)
        # The status never changes while the server runs: hold the stream open until
        # the client goes away (which cancels this task).
        await asyncio.get_running_loop().create_future()
