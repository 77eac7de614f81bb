"""The servicers: check the request, call ``Etcd``, fill the response header.

Method names are the RPC names of ``etcdlite.protos.wire``; an RPC a servicer does not
define is answered UNIMPLEMENTED by the registration code (``grpc_server``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from etcdlite.protos.health_pb2 import HealthCheckRequest, HealthCheckResponse
from etcdlite.protos.rpc_pb2 import (
    AlarmRequest,
    AlarmResponse,
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
    WatchRequest,
    WatchResponse,
)
from etcdlite.server import validate
from etcdlite.server.api.grpc_server import Refused
from etcdlite.server.etcd import Etcd
from etcdlite.server.watch import WatchStream

Context = grpc.aio.ServicerContext


class KVService:
    def __init__(self, etcd: Etcd):
        self._etcd = etcd

    async def Range(self, r: RangeRequest, ctx: Context) -> RangeResponse:
        validate.check_range(r)
        resp = self._etcd.range(r)
        self._etcd.fill_header(resp.header)
        return resp

    async def Put(self, r: PutRequest, ctx: Context) -> PutResponse:
        validate.check_put(r)
        resp = await self._etcd.put(r)
        self._etcd.fill_header(resp.header)
        return resp

    async def DeleteRange(self, r: DeleteRangeRequest, ctx: Context) -> DeleteRangeResponse:
        validate.check_delete(r)
        resp = await self._etcd.delete_range(r)
        self._etcd.fill_header(resp.header)
        return resp

    async def Txn(self, r: TxnRequest, ctx: Context) -> TxnResponse:
        validate.check_txn(r, self._etcd.cfg.max_txn_ops)
        validate.check_intervals(r.success)
        validate.check_intervals(r.failure)
        resp = await self._etcd.txn(r)
        self._etcd.fill_header(resp.header)
        return resp

    async def Compact(self, r: CompactionRequest, ctx: Context) -> CompactionResponse:
        resp = await self._etcd.compact(r)
        self._etcd.fill_header(resp.header)
        return resp


class WatchService:
    """The Watch bidi stream: requests feed the hub, the hub's outbox feeds the client.

    A reader task handles create/cancel/progress requests as they arrive; this
    coroutine yields whatever the hub queued for the stream. A client that closes its
    sending side keeps receiving (as with etcd); the stream and its watchers are freed
    when the RPC ends (the client cancels or goes away) or a request is refused.
    """

    def __init__(self, etcd: Etcd):
        self._hub = etcd.watch_hub

    async def Watch(
        self, requests: AsyncIterator[WatchRequest | Refused], ctx: Context
    ) -> AsyncIterator[WatchResponse]:
        stream = self._hub.open_stream()
        refused: list[Refused] = []
        reader = asyncio.get_running_loop().create_task(self._read(requests, stream, refused))
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
        refused: list[Refused],
    ) -> None:
        hub = self._hub
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
                    hub.create(stream, req.create_request)
                elif which == "cancel_request":
                    hub.cancel(stream, req.cancel_request.watch_id)
                elif which == "progress_request":
                    hub.request_progress(stream)
        except Exception as exc:  # a bug must end the stream visibly, not leave it mute
            refused.append(Refused(grpc.StatusCode.INTERNAL, f"etcdlite: watch: {exc!r}"))
            hub.close_stream(stream)


class LeaseService:
    def __init__(self, etcd: Etcd):
        self._etcd = etcd

    async def LeaseGrant(self, r: LeaseGrantRequest, ctx: Context) -> LeaseGrantResponse:
        resp = await self._etcd.lease_grant(r)
        self._etcd.fill_header(resp.header)
        return resp

    async def LeaseRevoke(self, r: LeaseRevokeRequest, ctx: Context) -> LeaseRevokeResponse:
        resp = await self._etcd.lease_revoke(r)
        self._etcd.fill_header(resp.header)
        return resp

    async def LeaseKeepAlive(
        self, requests: AsyncIterator[LeaseKeepAliveRequest | Refused], ctx: Context
    ) -> AsyncIterator[LeaseKeepAliveResponse]:
        """Each request renews its lease and is answered with the TTL (0: no such lease)."""
        async for req in requests:
            if type(req) is Refused:
                await ctx.abort(req.code, req.message)
            resp = LeaseKeepAliveResponse(ID=req.ID, TTL=self._etcd.lease_renew(req.ID))
            self._etcd.fill_header(resp.header)
            yield resp

    async def LeaseTimeToLive(
        self, r: LeaseTimeToLiveRequest, ctx: Context
    ) -> LeaseTimeToLiveResponse:
        resp = self._etcd.lease_time_to_live(r)
        self._etcd.fill_header(resp.header)
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
        resp = await self._etcd.alarm(r)
        self._etcd.fill_header(resp.header)
        return resp

    async def Hash(self, r: HashRequest, ctx: Context) -> HashResponse:
        return self._etcd.hash()

    async def HashKV(self, r: HashKVRequest, ctx: Context) -> HashKVResponse:
        return await self._etcd.hash_kv(r.revision)

    async def Defragment(self, r: DefragmentRequest, ctx: Context) -> DefragmentResponse:
        return await self._etcd.defragment()

    async def Snapshot(
        self, r: SnapshotRequest, ctx: Context
    ) -> AsyncIterator[SnapshotResponse]:
        async for resp in self._etcd.snapshot():
            yield resp


class ClusterService:
    def __init__(self, etcd: Etcd):
        self._etcd = etcd

    async def MemberList(self, r: MemberListRequest, ctx: Context) -> MemberListResponse:
        return self._etcd.member_list()


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
