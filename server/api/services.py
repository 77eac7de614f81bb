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
    DeleteRangeRequest,
    DeleteRangeResponse,
    MemberListRequest,
    MemberListResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    StatusRequest,
    StatusResponse,
    TxnRequest,
    TxnResponse,
)
from etcdlite.server import validate
from etcdlite.server.etcd import Etcd

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


class MaintenanceService:
    def __init__(self, etcd: Etcd):
        self._etcd = etcd

    async def Status(self, r: StatusRequest, ctx: Context) -> StatusResponse:
        return self._etcd.status()

    async def Alarm(self, r: AlarmRequest, ctx: Context) -> AlarmResponse:
        resp = await self._etcd.alarm(r)
        self._etcd.fill_header(resp.header)
        return resp


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
