"""Domain exception -> gRPC status, at the one boundary where errors leave the server."""

from __future__ import annotations

import grpc

from etcdlite.server.errors import wire_error
from etcdlite.server.log import Logger


def to_status(exc: BaseException, logger: Logger, path: str) -> tuple[grpc.StatusCode, str]:
    """The status code and exact etcd message for ``exc``; unmapped errors are logged
    (they are bugs) and answered as UNKNOWN, never as a traceback on the wire."""
    found = wire_error(exc)
    if found is not None:
        code, message = found
        return grpc.StatusCode[code], message
    logger.error("unexpected error serving a request", method=path,
                 error=f"{type(exc).__name__}: {exc}")
    return grpc.StatusCode.UNKNOWN, str(exc) or type(exc).__name__
