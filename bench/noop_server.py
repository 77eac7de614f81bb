"""The no-op etcd: a grpc.aio server that answers etcd's wire methods with canned replies.

It is the *limit* of the benchmark: the throughput a Python grpc.aio server reaches on
this machine, with these clients, when answering costs nothing but gRPC itself (parse the
request with the protos' deserializer, serialize a ready-made response). etcdlite is a
grpc.aio server too, so ``etcdlite / noop`` is the share of the achievable throughput
that etcdlite keeps after doing the actual work (MVCC, LMDB, fsync, watch fan-out).

What each method answers (KV, Watch, Lease and Maintenance.Status are served; every other
method is UNIMPLEMENTED):

* ``Put``: a ``PutResponse`` whose header carries the next revision (a counter), and,
  when watchers are open, the put as an event to every one of them (see Watch).
* ``Range``: one key-value pair (the request's key, a 256-byte value); with a
  ``range_end``, a ready-made response of ``--prefix-keys`` (1,000) pairs.
* ``Txn``: ``succeeded`` with one put response and the next revision.
* ``Compact``, ``LeaseRevoke``: an empty response with a header.
* ``LeaseGrant``: the next lease id and the requested TTL; ``LeaseKeepAlive``: each
  request echoed with its id and a TTL of 60.
* ``Watch``: each create request is answered ``created`` with a fresh watch id; each Put
  then sends every open watcher one ``WatchResponse`` with one PUT event (the request's
  key and value, no MVCC): the minimum work of a fan-out, queued per stream.
* ``Maintenance.Status``: a header with ``--member-id``, so the runner can check that the
  process answering on the port is this one.

Run as its own process, so its CPU and RSS are measured like the real servers'::

    python -m bench.noop_server --listen 127.0.0.1:23790 --member-id 42
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from etcdlite.protos import kv_pb2, rpc_pb2, wire

_SERVED = (wire.KV, wire.WATCH, wire.LEASE, wire.MAINTENANCE)
_KEEPALIVE_TTL = 60


class NoopEtcd:
    """The canned answers, and the watchers that Puts are fanned out to."""

    def __init__(self, member_id: int, value_size: int, prefix_keys: int) -> None:
        self.member_id = member_id
        self.revision = 1
        self.lease_id = 0
        self.value = b"v" * value_size
        self.watch_id = 0
        # Per open Watch stream: its outgoing queue and the ids of its watchers.
        self.streams: dict[int, tuple[asyncio.Queue[rpc_pb2.WatchResponse | None], list[int]]] = {}
        self._next_stream = 0
        prefix = rpc_pb2.RangeResponse(count=prefix_keys)
        for i in range(prefix_keys):
            prefix.kvs.add(key=b"bench/prefix/%06d" % i, value=self.value, create_revision=2,
                           mod_revision=2, version=1)
        self._header(prefix.header)
        self.prefix_response = prefix

    def _header(self, h: rpc_pb2.ResponseHeader) -> None:
        h.cluster_id = 1
        h.member_id = self.member_id
        h.raft_term = 2
        h.revision = self.revision

    # -- KV ---------------------------------------------------------------------------

    async def Range(self, r: rpc_pb2.RangeRequest, ctx: Any) -> rpc_pb2.RangeResponse:
        if r.range_end:
            return self.prefix_response
        resp = rpc_pb2.RangeResponse(count=1)
        resp.kvs.add(key=r.key, value=self.value, create_revision=2, mod_revision=2, version=1)
        self._header(resp.header)
        return resp

    async def Put(self, r: rpc_pb2.PutRequest, ctx: Any) -> rpc_pb2.PutResponse:
        self.revision += 1
        resp = rpc_pb2.PutResponse()
        self._header(resp.header)
        if self.streams:
            self._fan_out(r)
        return resp

    def _fan_out(self, r: rpc_pb2.PutRequest) -> None:
        event = kv_pb2.Event(type=kv_pb2.Event.PUT, kv=kv_pb2.KeyValue(
            key=r.key, value=r.value, create_revision=2, mod_revision=self.revision, version=1))
        for queue, watch_ids in self.streams.values():
            for wid in watch_ids:
                resp = rpc_pb2.WatchResponse(watch_id=wid, events=[event])
                self._header(resp.header)
                queue.put_nowait(resp)

    async def Txn(self, r: rpc_pb2.TxnRequest, ctx: Any) -> rpc_pb2.TxnResponse:
        self.revision += 1
        resp = rpc_pb2.TxnResponse(succeeded=True)
        resp.responses.add(response_put=rpc_pb2.PutResponse())
        self._header(resp.header)
        return resp

    async def Compact(self, r: rpc_pb2.CompactionRequest, ctx: Any) -> rpc_pb2.CompactionResponse:
        resp = rpc_pb2.CompactionResponse()
        self._header(resp.header)
        return resp

    # -- Lease ------------------------------------------------------------------------

    async def LeaseGrant(self, r: rpc_pb2.LeaseGrantRequest, ctx: Any
                         ) -> rpc_pb2.LeaseGrantResponse:
        self.lease_id += 1
        resp = rpc_pb2.LeaseGrantResponse(ID=r.ID or self.lease_id, TTL=r.TTL)
        self._header(resp.header)
        return resp

    async def LeaseRevoke(self, r: rpc_pb2.LeaseRevokeRequest, ctx: Any
                          ) -> rpc_pb2.LeaseRevokeResponse:
        resp = rpc_pb2.LeaseRevokeResponse()
        self._header(resp.header)
        return resp

    async def LeaseKeepAlive(self, requests: AsyncIterator[rpc_pb2.LeaseKeepAliveRequest],
                             ctx: Any) -> AsyncIterator[rpc_pb2.LeaseKeepAliveResponse]:
        async for req in requests:
            resp = rpc_pb2.LeaseKeepAliveResponse(ID=req.ID, TTL=_KEEPALIVE_TTL)
            self._header(resp.header)
            yield resp

    # -- Watch ------------------------------------------------------------------------

    async def Watch(self, requests: AsyncIterator[rpc_pb2.WatchRequest],
                    ctx: Any) -> AsyncIterator[rpc_pb2.WatchResponse]:
        queue: asyncio.Queue[rpc_pb2.WatchResponse | None] = asyncio.Queue()
        watch_ids: list[int] = []
        self._next_stream += 1
        sid = self._next_stream
        self.streams[sid] = (queue, watch_ids)

        async def read() -> None:
            async for req in requests:
                if req.HasField("create_request"):
                    self.watch_id += 1
                    watch_ids.append(self.watch_id)
                    resp = rpc_pb2.WatchResponse(watch_id=self.watch_id, created=True)
                    self._header(resp.header)
                    queue.put_nowait(resp)
                elif req.HasField("cancel_request"):
                    wid = req.cancel_request.watch_id
                    if wid in watch_ids:
                        watch_ids.remove(wid)
                    resp = rpc_pb2.WatchResponse(watch_id=wid, canceled=True)
                    self._header(resp.header)
                    queue.put_nowait(resp)
            queue.put_nowait(None)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            reader.cancel()
            del self.streams[sid]

    # -- Maintenance ------------------------------------------------------------------

    async def Status(self, r: rpc_pb2.StatusRequest, ctx: Any) -> rpc_pb2.StatusResponse:
        resp = rpc_pb2.StatusResponse(version="noop", leader=self.member_id)
        self._header(resp.header)
        return resp


_FACTORIES: dict[wire.StreamKind, Callable[..., grpc.RpcMethodHandler]] = {
    wire.StreamKind.UNARY_UNARY: grpc.unary_unary_rpc_method_handler,
    wire.StreamKind.UNARY_STREAM: grpc.unary_stream_rpc_method_handler,
    wire.StreamKind.STREAM_UNARY: grpc.stream_unary_rpc_method_handler,
    wire.StreamKind.STREAM_STREAM: grpc.stream_stream_rpc_method_handler,
}


def handlers(impl: NoopEtcd) -> list[grpc.GenericRpcHandler]:
    """Generic handlers on etcd's method paths for every method ``impl`` defines."""
    out = []
    for service in _SERVED:
        table = {}
        for m in wire.SERVICES[service]:
            fn = getattr(impl, m.name, None)
            if fn is None:
                continue
            table[m.name] = _FACTORIES[m.kind](
                fn, request_deserializer=m.request.FromString,
                response_serializer=m.response.SerializeToString)
        out.append(grpc.method_handlers_generic_handler(service, table))
    return out


async def serve(listen: str, member_id: int, value_size: int, prefix_keys: int) -> None:
    """Serve on ``listen`` (host:port) until SIGTERM or SIGINT."""
    server = grpc.aio.server(options=[("grpc.max_send_message_length", 2**31 - 1),
                                      ("grpc.max_concurrent_streams", 2**31 - 1),
                                      ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(handlers(NoopEtcd(member_id, value_size, prefix_keys)))
    server.add_insecure_port(listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    await stop.wait()
    await server.stop(0.5)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.noop_server --listen HOST:PORT [--member-id N]``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--listen", required=True, help="host:port to serve on")
    p.add_argument("--member-id", type=int, default=1, help="member id Status reports")
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--prefix-keys", type=int, default=1000)
    args = p.parse_args(argv)
    asyncio.run(serve(args.listen, args.member_id, args.value_size, args.prefix_keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
