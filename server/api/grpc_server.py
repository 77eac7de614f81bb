"""Registration: every RPC of ``etcdlite.protos.wire.METHODS`` under etcd's wire name.

For each wire method the servicer of its service supplies the coroutine named like the
RPC; a method no servicer defines answers UNIMPLEMENTED. Every handler is wrapped so a
domain error leaves as etcd's status code and exact message, and anything else as
UNKNOWN with a log line, never as a traceback.

The server's transport settings follow etcd's: it accepts messages up to
--max-request-bytes + 512 KiB, sends up to 2 GiB, and tolerates client keepalive pings
(etcdctl pings every few seconds). A larger message is refused the way grpc-go refuses
it (RESOURCE_EXHAUSTED "grpc: received message larger than max (N vs. M)"): the check is
ours, in the deserializer, because gRPC's C core words it differently. The core keeps a
hard cap (``_hard_receive_limit``) so nothing unbounded is ever read into memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from etcdlite.protos.wire import SERVICES, StreamKind, WireMethod
from etcdlite.server.api.status import to_status
from etcdlite.server.config import receive_limit
from etcdlite.server.errors import Unimplemented
from etcdlite.server.log import Logger

Handler = Callable[..., Any]


def _hard_receive_limit(max_request_bytes: int) -> int:
    return max(64 << 20, 2 * receive_limit(max_request_bytes))


def server_options(max_request_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", _hard_receive_limit(max_request_bytes)),
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.max_concurrent_streams", 2**31 - 1),
        ("grpc.keepalive_time_ms", 2 * 60 * 60 * 1000),
        ("grpc.keepalive_timeout_ms", 20 * 1000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 1000),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.so_reuseport", 0),
    ]


class Refused:
    """What the deserializer hands the handler instead of a message it will not parse:
    the status grpc-go (and so etcd) would answer with."""

    __slots__ = ("code", "message")

    def __init__(self, code: grpc.StatusCode, message: str):
        self.code = code
        self.message = message


def _parser(cls: type[Message], limit: int) -> Callable[[bytes], Any]:
    parse = cls.FromString

    def deserialize(data: bytes) -> Any:
        if len(data) > limit:
            return Refused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"grpc: received message larger than max ({len(data)} vs. {limit})")
        try:
            return parse(data)
        except DecodeError as exc:
            return Refused(grpc.StatusCode.INTERNAL, f"grpc: error unmarshalling request: {exc}")

    return deserialize


def _unimplemented(m: WireMethod) -> Handler:
    message = f"etcdlite: {m.service}.{m.name} is not implemented yet"

    if m.kind.response_streaming:

        async def stream(request: Any, ctx: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            raise Unimplemented(message)
            yield  # pragma: no cover  (makes this an async generator)

        return stream

    async def unary(request: Any, ctx: grpc.aio.ServicerContext) -> Any:
        raise Unimplemented(message)

    return unary


def _guard_unary(fn: Callable[..., Awaitable[Any]], path: str, logger: Logger) -> Handler:
    async def handler(request: Any, ctx: grpc.aio.ServicerContext) -> Any:
        if type(request) is Refused:
            await ctx.abort(request.code, request.message)
        try:
            return await fn(request, ctx)
        except Exception as exc:
            await _abort(ctx, exc, path, logger)

    return handler


def _guard_stream(fn: Callable[..., AsyncIterator[Any]], path: str, logger: Logger) -> Handler:
    async def handler(request: Any, ctx: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        if type(request) is Refused:
            await ctx.abort(request.code, request.message)
        try:
            async for item in fn(request, ctx):
                yield item
        except Exception as exc:
            await _abort(ctx, exc, path, logger)

    return handler


async def _abort(ctx: grpc.aio.ServicerContext, exc: Exception, path: str, logger: Logger) -> None:
    """End the RPC with the status ``exc`` maps to (an abort already under way goes on)."""
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    code, message = to_status(exc, logger, path)
    await ctx.abort(code, message)


_FACTORIES = {
    StreamKind.UNARY_UNARY: grpc.unary_unary_rpc_method_handler,
    StreamKind.UNARY_STREAM: grpc.unary_stream_rpc_method_handler,
    StreamKind.STREAM_UNARY: grpc.stream_unary_rpc_method_handler,
    StreamKind.STREAM_STREAM: grpc.stream_stream_rpc_method_handler,
}


def generic_handlers(
    servicers: Mapping[str, object], logger: Logger, max_request_bytes: int
) -> list[grpc.GenericRpcHandler]:
    """One generic handler per wire service; ``servicers`` maps full service names.

    Streaming requests (Watch, LeaseKeepAlive) receive ``Refused`` items through their
    request iterator; their servicers must check for it.
    """
    limit = receive_limit(max_request_bytes)
    out = []
    for service, methods in SERVICES.items():
        impl = servicers.get(service)
        table = {}
        for m in methods:
            fn = getattr(impl, m.name, None) if impl is not None else None
            if fn is None:
                fn = _unimplemented(m)
            guard = _guard_stream if m.kind.response_streaming else _guard_unary
            table[m.name] = _FACTORIES[m.kind](
                guard(fn, m.path, logger),
                request_deserializer=_parser(m.request, limit),
                response_serializer=m.response.SerializeToString,
            )
        out.append(grpc.method_handlers_generic_handler(service, table))
    return out
