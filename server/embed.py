"""EtcdServer: an etcdlite member inside your Python process.

The member runs on its own event loop in a background thread, so synchronous and
asynchronous code alike can talk to it over gRPC like to any etcd::

    from etcdlite.server import EtcdServer

    with EtcdServer() as etcd:
        client = SomeEtcdClient(host="127.0.0.1", port=etcd.port)
        ...

By default it listens on 127.0.0.1 on a free port, keeps its data in a temporary
directory removed on exit, and logs only errors (to stderr).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from etcdlite.server.clock import Clock
from etcdlite.server.config import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TXN_OPS, EtcdConfig
from etcdlite.server.log import Logger
from etcdlite.server.runner import Runner


class EtcdServer:
    def __init__(
        self,
        *,
        name: str = "default",
        data_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        log_level: str = "error",
        clock: Clock | None = None,
    ):
        self._own_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="etcdlite-")) if data_dir is None else Path(
            data_dir
        )
        self.cfg = EtcdConfig(
            name=name,
            data_dir=self.data_dir,
            listen_client_urls=[f"http://{host}:{port}"],
            max_txn_ops=max_txn_ops,
            max_request_bytes=max_request_bytes,
            log_level=log_level,
        )
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Runner | None = None
        self.url = ""

    @property
    def endpoint(self) -> str:
        """``host:port`` of the client URL, what most clients take."""
        return self.url.split("://", 1)[1]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def start(self) -> EtcdServer:
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        self._loop = loop
        runner = Runner(self.cfg, Logger(self.cfg.log_level), self._clock)
        self._runner = runner

        async def boot() -> None:
            try:
                await runner.start()
            except BaseException as exc:
                failure.append(exc)
                raise
            finally:
                ready.set()
            await runner.wait_stopped()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(boot())
            except BaseException:  # reported to the starting thread through `failure`
                pass
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="etcdlite", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        self.url = runner.client_urls[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._runner is None:
            return
        if self._thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(self._runner.stop(0.2), self._loop)
            fut.result()
            self._thread.join()
        self._thread = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
