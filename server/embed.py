"""EtcdServer: an etcdlite member inside your Python process.

The member runs on its own event loop in a background thread, so synchronous and
asynchronous code alike talk to it over gRPC as to any etcd::

    from etcdlite.server import EtcdServer

    with EtcdServer() as etcd:               # started, answering, in a few milliseconds
        etcd.endpoint                        # "127.0.0.1:40123": what most clients take
        etcd.url                             # "http://127.0.0.1:40123"
        client = aetcd.Client(host=etcd.host, port=etcd.port)

    async with AsyncEtcdServer() as etcd:    # the same, without blocking the caller's loop
        ...

Keyword arguments are etcd's flags in snake case: every field of ``EtcdConfig``
(``max_txn_ops=4``, ``election_timeout_ms=500``, ``data_dir=...``, ...), plus ``host`` and
``port`` (shorthand for ``listen_client_urls``), ``clock`` and ``log_stream``. Defaults
differ from the command's where a test wants them to: 127.0.0.1 on a free port, log level
"error" (to stderr), and ``data_dir=None``, which means a private temporary directory with
fsync off (``unsafe_no_fsync``), removed by ``stop``.

Invariants:

* Port 0 is bound exactly once, by the server's own listener, and ``port`` reports that
  socket's port: no probe-close-rebind window for another process to steal it.
* A data directory (and an explicit ``wal_dir``) is held under an exclusive ``flock``
  while the server runs: a second server on it, in this process or another, fails at
  once with ``DataDirInUse``; a second server on an explicit port in use fails with
  ``PortInUse``. Neither touches the first server.
* After ``stop`` returns, nothing of the server is left: its thread has ended, its
  sockets, its LMDB environment and its lock are closed, its temporary directory is
  gone. (gRPC keeps a few threads and descriptors per *process* once it has been used at
  all; they are not the server's and do not grow with the number of servers.)
* On a ``ManualClock`` (``EtcdServer(clock=ManualClock())``), ``advance(s)`` (or the
  clock's own ``advance``) returns only once every lease whose TTL ran out is revoked and
  its keys are deleted: expiry is tested without sleeping, deterministically::

      with EtcdServer(clock=ManualClock()) as etcd:
          ...grant a 10 s lease, put a key with it...
          etcd.advance(11)                   # the key is gone when this returns
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import difflib
import errno
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

from etcdlite.server.clock import Clock, ManualClock, SystemClock
from etcdlite.server.config import EtcdConfig
from etcdlite.server.log import Logger

if TYPE_CHECKING:
    from etcdlite.server.etcd import Etcd
    from etcdlite.server.runner import Runner

T = TypeVar("T")
STOP_GRACE_S = 0.2
"""How long ``stop`` lets in-flight RPCs finish before cancelling them (open watch
streams never finish on their own, so a server with watchers takes this long to stop)."""
EXPIRY_TIMEOUT_S = 30.0
"""Bound on ``advance`` waiting for the revocation of the leases it made due."""
EMBED_LOG_LEVEL = "error"
"""An embedded server's default log level (the command's is "info")."""

_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(EtcdConfig))
_PATH_FIELDS = frozenset(
    f.name for f in dataclasses.fields(EtcdConfig) if "Path" in str(f.type))


class InUseError(RuntimeError):
    """Another server already owns what this one was told to use."""


class DataDirInUse(InUseError):
    """The data directory (or WAL directory) is locked by another running member."""


class PortInUse(InUseError):
    """An explicitly chosen client port is already bound by someone else."""


def build_config(
    host: str | None = None,
    port: int | None = None,
    **flags: Any,
) -> EtcdConfig:
    """The ``EtcdConfig`` an ``EtcdServer`` with these keyword arguments runs with
    (``data_dir`` stays None when none was given; the server makes a temporary one).

    Every ``EtcdConfig`` field is a keyword; strings are accepted for paths; ``host`` and
    ``port`` build ``listen_client_urls`` and cannot be combined with it.

    >>> cfg = build_config(port=2379, max_txn_ops=4, data_dir="/tmp/x")
    >>> cfg.listen_client_urls, cfg.max_txn_ops, cfg.data_dir, cfg.log_level
    (['http://127.0.0.1:2379'], 4, PosixPath('/tmp/x'), 'error')
    >>> build_config(max_txn_op=4)
    Traceback (most recent call last):
    ...
    TypeError: EtcdServer() got an unexpected keyword argument 'max_txn_op' (did you mean 'max_txn_ops'?)
    """  # noqa: E501
    for key in flags:
        if key not in _CONFIG_FIELDS:
            close = difflib.get_close_matches(key, (*_CONFIG_FIELDS, "host", "port"), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else (
                " (keywords are EtcdConfig fields, host, port, clock, log_stream)")
            raise TypeError(f"EtcdServer() got an unexpected keyword argument {key!r}{hint}")
    if "listen_client_urls" in flags and (host is not None or port is not None):
        raise TypeError("EtcdServer(): give host/port or listen_client_urls, not both")
    values = dict(flags)
    for key in ("listen_client_urls", "advertise_client_urls", "initial_advertise_peer_urls"):
        if isinstance(values.get(key), str):  # "a,b" as on the command line
            values[key] = [u.strip() for u in values[key].split(",") if u.strip()]
    for key in _PATH_FIELDS:
        if isinstance(values.get(key), str):
            values[key] = Path(values[key])
    if "listen_client_urls" not in values:
        h = "127.0.0.1" if host is None else host
        h = f"[{h}]" if ":" in h and not h.startswith("[") else h
        values["listen_client_urls"] = [f"http://{h}:{0 if port is None else port}"]
    values.setdefault("log_level", EMBED_LOG_LEVEL)
    Logger(values["log_level"])  # an unknown level fails here, not in the server thread
    return EtcdConfig(**values)


class EtcdServer:
    """One etcdlite member, in-process; see the module docstring for the contract.

    ``start()``/``stop()`` or ``with EtcdServer(...) as etcd:``. A stopped server can be
    started again (on its own data directory, if it was given one).
    """

    def __init__(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        clock: Clock | None = None,
        log_stream: TextIO | None = None,
        **flags: Any,
    ):
        self._own_dir = flags.get("data_dir") is None
        if self._own_dir:
            flags.setdefault("unsafe_no_fsync", True)
        self.config = build_config(host, port, **flags)
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._log_stream = log_stream
        self._data_dir: Path | None = self.config.data_dir
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._exited: concurrent.futures.Future[None] | None = None
        self._runner: Runner | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._pending_expiry: list[concurrent.futures.Future[int]] = []
        self.url = ""
        """The first client URL, with the port actually bound ("" until started)."""
        self.client_urls: list[str] = []

    # -- addresses ------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``host:port`` of the client URL, what most clients take ("127.0.0.1:40123")."""
        self._require_url()
        return self.url.split("://", 1)[1] if self.url.startswith("http") else self.url

    @property
    def host(self) -> str:
        return self.endpoint.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    @property
    def data_dir(self) -> Path:
        """The data directory (a temporary one is known from ``start`` on)."""
        if self._data_dir is None:
            raise RuntimeError("the temporary data directory is made by start()")
        return self._data_dir

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def fatal_error(self) -> BaseException | None:
        """Why the member stopped on its own (a storage failure), else None."""
        return None if self._runner is None else self._runner.fatal_error

    def _require_url(self) -> None:
        if not self.url:
            raise RuntimeError("the server has not been started")

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EtcdServer {self.url or '(not started)'} data_dir={self._data_dir} {state}>"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> EtcdServer:
        """Start serving; returns once the member answers requests.

        Raises ``DataDirInUse``/``PortInUse`` (see the module docstring), or the
        runner's ``ConfigError``/``StorageError``; a failed start leaves nothing behind.
        """
        ready = self._launch(blocking_clock=True)
        try:
            ready.result()
        except BaseException as exc:
            if not ready.done():  # interrupted (Ctrl-C) while starting: undo the start
                concurrent.futures.wait([ready])
                self.stop(0)
                raise
            if self._exited is not None:
                self._exited.result()
            self._release()
            _raise_explained(self, exc)
        self._started()
        return self

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Stop serving and release everything (idempotent); see the module docstring."""
        exited = self._request_stop(grace)
        if exited is not None:
            exited.result()
        self._release()

    def advance(self, seconds: float) -> None:
        """Move the server's ``ManualClock`` by ``seconds``; returns once every lease that
        ran out is revoked (on every running server sharing this clock)."""
        self._manual_clock().advance(seconds)

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the parts start/stop are made of (shared with AsyncEtcdServer) -------------------

    def _launch(self, blocking_clock: bool) -> concurrent.futures.Future[None]:
        """Lock the directories, then start the member's thread; the returned future is
        done once the member serves (or failed to start)."""
        from etcdlite.server.runner import Runner  # grpc is imported on first use only

        if self._thread is not None:
            raise RuntimeError(f"{self!r} is already started")
        cfg = self.config
        if self._own_dir:
            self._data_dir = Path(tempfile.mkdtemp(prefix="etcdlite-"))
        cfg = self.config = dataclasses.replace(cfg, data_dir=self._data_dir)
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        exited: concurrent.futures.Future[None] = concurrent.futures.Future()
        try:
            runner = Runner(cfg, Logger(cfg.log_level, self._log_stream), self.clock)
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=_run_member, args=(loop, runner, ready, exited),
                name=f"etcdlite-{cfg.name}", daemon=True)
            thread.start()
        except BaseException:
            self._release()
            raise
        self._runner, self._loop, self._exited, self._thread = runner, loop, exited, thread
        if isinstance(self.clock, ManualClock):
            on_advance = self._expire_now if blocking_clock else self._expire_soon
            self._unsubscribe = self.clock.subscribe(on_advance)
        return ready

    def _started(self) -> None:
        assert self._runner is not None
        self.client_urls = list(self._runner.client_urls)
        self.url = self.client_urls[0]

    def _explain(self, exc: BaseException) -> BaseException:
        """A locked data dir becomes ``DataDirInUse``, a bind failure on an explicit port
        in use ``PortInUse``."""
        from etcdlite.server.runner import ConfigError, parse_client_url
        from etcdlite.storage.dirlock import DirectoryInUse

        if isinstance(exc, DirectoryInUse):
            return DataDirInUse(
                f"{exc} (an EtcdServer, an etcdlite fixture or process); give each "
                "server its own data_dir")
        if not isinstance(exc, ConfigError):
            return exc
        for url in self.config.listen_client_urls:
            try:
                ln = parse_client_url(url)
            except ConfigError:
                continue
            if ln.scheme == "http" and ln.port and _port_in_use(ln.host, ln.port):
                return PortInUse(
                    f"listen tcp {ln.grpc_address}: bind: address already in use (another "
                    "EtcdServer, etcdlite fixture or process listens there; port=0 picks "
                    "a free port)")
        return exc

    def _request_stop(self, grace: float) -> concurrent.futures.Future[None] | None:
        """Ask the member to stop; returns the future done when its thread has ended
        (None if it was not running)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        thread, loop, runner, exited = self._thread, self._loop, self._runner, self._exited
        if thread is None or loop is None or runner is None or exited is None:
            return None
        if not exited.done():
            _submit(runner.stop(grace), loop)
        return exited

    def _release(self) -> None:
        """Join the ended thread; remove a temporary directory (the member released
        its directory locks when it stopped)."""
        if self._thread is not None:
            self._thread.join()
        self._thread = self._loop = self._exited = None
        self._pending_expiry.clear()
        if self._own_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    # -- the manual clock -----------------------------------------------------------------

    def _manual_clock(self) -> ManualClock:
        if not isinstance(self.clock, ManualClock):
            raise TypeError("advance() needs a server on a ManualClock: "
                            "EtcdServer(clock=ManualClock())")
        return self.clock

    def _schedule_expiry(self) -> concurrent.futures.Future[int] | None:
        runner, loop = self._runner, self._loop
        if runner is None or runner.etcd is None or loop is None or not self.running:
            return None
        return _submit(_revoke_due_leases(runner.etcd, self.clock, EXPIRY_TIMEOUT_S), loop)

    def _expire_now(self) -> None:
        """Clock subscriber of a synchronous server: revoke before ``advance`` returns
        (or until the member's thread ends, if it is stopping meanwhile)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("advance the clock from outside the server's own thread")
        fut, exited = self._schedule_expiry(), self._exited
        if fut is None or exited is None:
            return
        concurrent.futures.wait([fut, exited], EXPIRY_TIMEOUT_S + 5,
                                return_when=concurrent.futures.FIRST_COMPLETED)
        if fut.done() or not exited.done():
            fut.result(0)  # its error, or a TimeoutError

    def _expire_soon(self) -> None:
        """Clock subscriber of an ``AsyncEtcdServer``: its ``advance`` awaits the result."""
        fut = self._schedule_expiry()
        if fut is not None:
            self._pending_expiry.append(fut)


class AsyncEtcdServer:
    """``EtcdServer`` for asyncio code: ``async with AsyncEtcdServer() as etcd:``.

    The member still runs on its own thread and loop (so blocking clients work too);
    ``start``, ``stop`` and ``advance`` are awaited instead of blocking the caller's loop.
    Same keyword arguments and addresses as ``EtcdServer``; ``server`` is the underlying
    ``EtcdServer``.

    Invariant: after ``await etcd.advance(s)`` the leases that ran out are revoked (a
    plain ``clock.advance`` only schedules that on an async server).
    """

    def __init__(self, **kwargs: Any):
        self.server = EtcdServer(**kwargs)

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir

    @property
    def clock(self) -> Clock:
        return self.server.clock

    @property
    def config(self) -> EtcdConfig:
        return self.server.config

    def __repr__(self) -> str:
        return "<Async" + repr(self.server)[1:]

    async def start(self) -> AsyncEtcdServer:
        s = self.server
        ready = s._launch(blocking_clock=False)
        try:
            await _thread_future(ready)
        except BaseException as exc:
            if not ready.done():  # cancelled while starting: undo the start
                await asyncio.wait([asyncio.wrap_future(ready)])
                await self.stop(0)
                raise
            if s._exited is not None:
                await _thread_future(s._exited)
            s._release()
            _raise_explained(s, exc)
        s._started()
        return self

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        exited = self.server._request_stop(grace)
        if exited is not None:
            await _thread_future(exited)
        self.server._release()

    async def advance(self, seconds: float) -> None:
        s = self.server
        s._manual_clock().advance(seconds)
        pending, s._pending_expiry = s._pending_expiry, []
        exited = s._exited
        for fut in pending:
            if exited is None:
                break
            await asyncio.wait([asyncio.wrap_future(fut), asyncio.wrap_future(exited)],
                               return_when=asyncio.FIRST_COMPLETED)
            if fut.done() or not exited.done():
                fut.result(0)

    async def __aenter__(self) -> AsyncEtcdServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def _thread_future(fut: concurrent.futures.Future[None]) -> None:
    """Await a future that the member's thread completes. Shielded: a cancelled caller
    must not cancel it (the thread would then fail to complete it)."""
    await asyncio.shield(asyncio.wrap_future(fut))


# -- the member's thread ------------------------------------------------------------------


def _run_member(
    loop: asyncio.AbstractEventLoop,
    runner: Runner,
    ready: concurrent.futures.Future[None],
    exited: concurrent.futures.Future[None],
) -> None:
    """Body of the member's thread: serve until the runner stops, then tear the loop
    down as ``asyncio.run`` does (cancel what is left, close the loop)."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(runner, ready))
    finally:
        try:
            _cancel_leftovers(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
            if not ready.done():
                ready.set_exception(RuntimeError("the member's thread ended before serving"))
            exited.set_result(None)


async def _serve(runner: Runner, ready: concurrent.futures.Future[None]) -> None:
    try:
        await runner.start()
    except Exception as exc:  # handed to the thread that called start()
        ready.set_exception(exc)
        await runner.stop(0)  # closes the backend if the runner did not
        return
    ready.set_result(None)
    await runner.wait_stopped()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


async def _revoke_due_leases(etcd: Etcd, clock: Clock, timeout_s: float) -> int:
    """On the member's loop: revoke every lease due at ``clock``'s time; returns how many
    this call revoked.

    ``revoke_expired_leases`` takes at most a tick's worth at a time, so it is called
    until it finds none. A due lease it does not report is one whose revoke the member's
    own 500 ms tick has already proposed: that is awaited too, so that on return no due
    lease is left (bounded by ``timeout_s`` of real time).
    """
    deadline = time.monotonic() + timeout_s
    total = 0
    while True:
        if etcd.stopped or etcd.fatal_error is not None:
            raise RuntimeError("the member stopped while revoking expired leases")
        n = await etcd.revoke_expired_leases()
        total += n
        if n:
            continue
        now = clock.monotonic()
        due = [i for i in etcd.lessor.ids()
               if (lease := etcd.lessor.get(i)) is not None and lease.expiry <= now]
        if not due:
            return total
        if time.monotonic() > deadline:
            raise TimeoutError(f"expired leases not revoked after {timeout_s} s: {due}")
        await asyncio.sleep(0.001)


def _submit(
    coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop
) -> concurrent.futures.Future[T] | None:
    """``run_coroutine_threadsafe``, or None (and the coroutine closed, never left
    un-awaited) when the loop has closed meanwhile (the member stopped on its own)."""
    try:
        return asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:
        coro.close()
        return None


def _raise_explained(server: EtcdServer, exc: BaseException) -> NoReturn:
    explained = server._explain(exc)
    if explained is exc:
        raise exc
    raise explained from exc


# -- locks and ports ----------------------------------------------------------------------


def _port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` now fails with EADDRINUSE (a diagnosis after a bind
    failed; never a way to pick a port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False
