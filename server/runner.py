"""Runner: one member on the network: ``Etcd`` plus its gRPC listeners.

``start`` opens the data directory, binds every client URL (port 0 picks a free port;
the log and ``client_urls`` carry the real one), publishes the member's client URLs and
logs "ready to serve client requests".

TLS (etcd's client flags): an ``https://`` (or ``unixs://``) URL is served with
--cert-file/--key-file; --trusted-ca-file names the CA that client certificates must
chain to, and --client-cert-auth makes one mandatory (the TLS handshake refuses a client
without it). An ``http://`` URL stays plain text even when the files are given, as in
etcd (which warns). For example::

    etcdlite --listen-client-urls https://127.0.0.1:2379 \\
        --advertise-client-urls https://127.0.0.1:2379 --cert-file server.pem \\
        --key-file server-key.pem --trusted-ca-file ca.pem --client-cert-auth

``stop`` closes the listeners, fails what still waits and closes the backend. A fatal
storage error stops the runner on its own; its ``fatal_error`` then says why.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from etcdlite.protos import wire
from etcdlite.server.api.grpc_server import generic_handlers, server_options
from etcdlite.server.api.services import (
    AuthService,
    ClusterService,
    HealthService,
    KVService,
    LeaseService,
    MaintenanceService,
    WatchService,
)
from etcdlite.server.auth_store import effective_bcrypt_cost
from etcdlite.server.clock import Clock
from etcdlite.server.config import EtcdConfig
from etcdlite.server.errors import AuthConfigError
from etcdlite.server.etcd import Etcd
from etcdlite.server.log import Logger
from etcdlite.server.version import ETCD_VERSION, ETCDLITE_VERSION


class ConfigError(Exception):
    """A configuration the member cannot start with (bad URL, port in use, ...)."""


@dataclass(frozen=True)
class Listener:
    scheme: str
    host: str
    port: int

    @property
    def secure(self) -> bool:
        return self.scheme in ("https", "unixs")

    @property
    def grpc_address(self) -> str:
        if self.scheme in ("unix", "unixs"):
            return f"unix:{self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self, port: int | None = None) -> str:
        if self.scheme in ("unix", "unixs"):
            return f"{self.scheme}://{self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port if port is None else port}"


def parse_client_url(url: str) -> Listener:
    """Parse a --listen-client-urls entry (http, https, or unix sockets, unixs with TLS).

    >>> parse_client_url("https://localhost:2379")
    Listener(scheme='https', host='127.0.0.1', port=2379)
    """
    parts = urlsplit(url)
    if parts.scheme in ("unix", "unixs"):
        path = (parts.netloc + parts.path) or ""
        if not path:
            raise ConfigError(f"unix URL without a path: {url!r}")
        return Listener(parts.scheme, path, 0)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"URL scheme must be http, https, unix, or unixs: {url}")
    if parts.path not in ("", "/"):
        raise ConfigError(f"URL must not contain a path: {url!r}")
    host = parts.hostname or ""
    if host == "localhost":
        host = "127.0.0.1"
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid port in {url!r}") from exc
    if port is None:
        raise ConfigError(f"URL address does not have the form \"host:port\": {url}")
    return Listener(parts.scheme, host or "0.0.0.0", port)


def _read_pem(flag: str, path: Path | str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"--{flag} {path}: {exc.strerror or exc}") from exc


def server_credentials(cfg: EtcdConfig) -> grpc.ServerCredentials:
    """The TLS credentials of the secure client URLs (see the module docstring); a missing
    or unreadable file is a ``ConfigError``, as is --client-cert-auth without
    --trusted-ca-file (etcdlite does not fall back to the system's CAs)."""
    if cfg.cert_file is None or cfg.key_file is None:
        raise ConfigError("TLS key/cert (--cert-file, --key-file) must be provided for "
                          "client URLs with the https scheme")
    cert = _read_pem("cert-file", cfg.cert_file)
    key = _read_pem("key-file", cfg.key_file)
    ca = _read_pem("trusted-ca-file", cfg.trusted_ca_file) if cfg.trusted_ca_file else None
    if cfg.client_cert_auth and ca is None:
        raise ConfigError("--client-cert-auth needs --trusted-ca-file")
    try:
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                           require_client_auth=cfg.client_cert_auth)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"TLS: {exc}") from exc


class Runner:
    def __init__(self, cfg: EtcdConfig, logger: Logger, clock: Clock | None = None):
        self.cfg = cfg
        self._log = logger
        self._clock = clock
        self.etcd: Etcd | None = None
        self._server: grpc.aio.Server | None = None
        self.client_urls: list[str] = []
        self.fatal_error: BaseException | None = None
        self._stopped = asyncio.Event()
        self._stop_started = False
        self._stopping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        cfg = self.cfg
        listeners = [parse_client_url(u) for u in cfg.listen_client_urls]
        self._log.info(
            "starting an etcd server",
            **{"etcd-version": ETCD_VERSION, "etcdlite-version": ETCDLITE_VERSION,
               "name": cfg.name, "data-dir": str(cfg.resolved_data_dir()),
               "listen-client-urls": cfg.listen_client_urls,
               "max-txn-ops": cfg.max_txn_ops, "max-request-bytes": cfg.max_request_bytes},
        )
        credentials: grpc.ServerCredentials | None = None
        if any(ln.secure for ln in listeners):
            credentials = server_credentials(cfg)
        elif cfg.cert_file is not None or cfg.key_file is not None:
            self._log.warn("scheme is HTTP while key and cert files are present; "
                           "ignoring key and cert files",
                           **{"client-urls": cfg.listen_client_urls})
        if cfg.bcrypt_cost != effective_bcrypt_cost(cfg.bcrypt_cost):
            self._log.warn("invalid bcrypt-cost; using the default",
                           **{"bcrypt-cost": cfg.bcrypt_cost,
                              "default": effective_bcrypt_cost(cfg.bcrypt_cost)})
        try:
            etcd = Etcd(cfg, self._log, self._clock, on_fatal=self._on_fatal)
        except AuthConfigError as exc:
            detail = f" ({exc.detail})" if exc.detail else ""
            raise ConfigError(f"--auth-token {cfg.auth_token!r}: {exc}{detail}") from exc
        self.etcd = etcd
        server = grpc.aio.server(options=server_options(cfg.max_request_bytes))
        servicers = {
            wire.KV: KVService(etcd),
            wire.WATCH: WatchService(etcd),
            wire.LEASE: LeaseService(etcd),
            wire.MAINTENANCE: MaintenanceService(etcd),
            wire.CLUSTER: ClusterService(etcd),
            wire.AUTH: AuthService(etcd),
            wire.HEALTH: HealthService(),
        }
        handlers = generic_handlers(servicers, self._log, cfg.max_request_bytes)
        server.add_generic_rpc_handlers(handlers)
        bound = []
        for ln in listeners:
            try:
                if credentials is not None and ln.secure:
                    port = server.add_secure_port(ln.grpc_address, credentials)
                else:
                    port = server.add_insecure_port(ln.grpc_address)
            except RuntimeError as exc:
                await etcd.stop()
                raise ConfigError(f"listen {ln.url()}: cannot bind ({exc})") from exc
            bound.append(ln.url(port))
        etcd.start()
        advertise = cfg.advertise_client_urls or bound
        await etcd.publish([_fill_port(u, bound) for u in advertise])
        await server.start()
        etcd.serving()
        self._server = server
        self.client_urls = bound
        for ln, url in zip(listeners, bound, strict=True):
            message = ("serving client traffic securely" if ln.secure else
                       "serving client traffic insecurely; this is strongly discouraged!")
            self._log.info(message, address=url.split("://", 1)[1])
        self._log.info(
            "ready to serve client requests",
            **{"member-id": f"{etcd.member_id:x}", "cluster-id": f"{etcd.cluster_id:x}",
               "client-urls": bound},
        )

    def _on_fatal(self, exc: BaseException) -> None:
        self.fatal_error = exc
        self._stopping = asyncio.get_running_loop().create_task(self.stop())

    async def stop(self, grace: float = 1.0) -> None:
        """Stop listening (in-flight RPCs get ``grace`` seconds), then close the member.

        Concurrent calls all return once the first has finished.
        """
        if self._stop_started:
            await self._stopped.wait()
            return
        self._stop_started = True
        try:
            if self._server is not None:
                await self._server.stop(grace)
            if self.etcd is not None:
                await self.etcd.stop()
            self._log.info("stopped serving client requests")
        finally:
            self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _fill_port(url: str, bound: list[str]) -> str:
    """An advertised URL with port 0 gets the port actually bound for its host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.port != 0:
        return url
    for b in bound:
        bp = urlsplit(b)
        if bp.hostname == parts.hostname or parts.hostname == "localhost":
            return f"{parts.scheme}://{parts.netloc.rsplit(':', 1)[0]}:{bp.port}"
    return url
