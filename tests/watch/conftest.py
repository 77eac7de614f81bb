"""Fixtures of the Watch tests (helpers live in watchlib.py).

* ``shared_lite`` (session): one etcdlite process for the tests that can share a server
  (they use their own keys, ``ns``, and compute revisions from their own writes), started
  with ``--experimental-watch-progress-notify-interval 200ms --max-request-bytes 65536``.
* ``wsrv`` (module): the server of the raw gRPC and etcdctl tests: the shared etcdlite,
  plus (only with ``ETCDLITE_WATCH_REFERENCE=1``) a real etcd 3.5.1 started with the same
  flags, to check that the expectations are etcd's.
* ``ns``: a key prefix of the test's own.
* ``watch_pair``: a fresh real etcd (3.4 and 3.5, via ``start_real_etcd``) and a fresh
  etcdlite on the same peer URL, so member and cluster ids agree (the differential
  harness of tests/differential/ is not visible from here).

Fixture names here are new; none shadows a fixture of tests/conftest.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from watchlib import SHARED_FLAGS

ServerProc = Any  # tests/conftest.py's ServerProc


def root_conftest(config: pytest.Config) -> ModuleType:
    """``tests/conftest.py`` as pytest loaded it (a plain ``import conftest`` here would
    import this very module)."""
    want = Path(__file__).resolve().parent.parent / "conftest.py"
    for plugin in config.pluginmanager.get_plugins():
        file = getattr(plugin, "__file__", None)
        if file and Path(file).resolve() == want:
            return plugin
    raise RuntimeError(f"{want} is not loaded as a conftest")


# -- servers ------------------------------------------------------------------------------


def _start(config: pytest.Config, flavor: str, args: tuple[str, ...], base: Path,
           peer_port: int | None = None) -> ServerProc:
    rc = root_conftest(config)
    port = rc.free_port()
    pport = peer_port or rc.free_port()
    peer = f"http://127.0.0.1:{pport}"
    data = base / f"{flavor}.etcd"
    log_path = base / f"{flavor}.log"
    if flavor == "etcdlite":
        cmd = [*rc.etcdlite_command(), "--data-dir", str(data),
               "--listen-client-urls", f"http://127.0.0.1:{port}",
               "--advertise-client-urls", f"http://127.0.0.1:{port}",
               "--initial-advertise-peer-urls", peer, *args]
        env = dict(os.environ)
    else:
        binary = rc.real_etcd_binaries()[flavor]
        if binary is None:
            pytest.skip(f"{flavor} not installed")
        cmd = [binary, "--name", "default", "--data-dir", str(data),
               "--listen-client-urls", f"http://127.0.0.1:{port}",
               "--advertise-client-urls", f"http://127.0.0.1:{port}",
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
               "--initial-cluster", f"default={peer}", *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    return rc.spawn(cmd, port, data, log_path, env, flavor)


@pytest.fixture(scope="session")
def shared_lite(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    base = tmp_path_factory.mktemp("watch-shared")
    sp = _start(request.config, "etcdlite", SHARED_FLAGS, base)
    yield sp
    sp.stop()


REFERENCE = os.environ.get("ETCDLITE_WATCH_REFERENCE") == "1"
WSRV_PARAMS = ["etcdlite", "etcd-3.5"] if REFERENCE else ["etcdlite"]


@pytest.fixture(scope="module", params=WSRV_PARAMS)
def wsrv(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """The server of the raw gRPC tests (see the module docstring)."""
    if request.param == "etcdlite":
        yield request.getfixturevalue("shared_lite")
        return
    base = tmp_path_factory.mktemp("watch-ref")
    sp = _start(request.config, request.param, SHARED_FLAGS, base)
    yield sp
    sp.stop()


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> bytes:
    """A key prefix of this test's own (tests share servers)."""
    return f"/{request.node.name}/".encode()


@dataclass
class WatchPair:
    real: ServerProc
    lite: ServerProc
    peer_url: str


@pytest.fixture
def watch_pair(request: pytest.FixtureRequest, start_real_etcd: Callable[..., ServerProc],
               start_etcdlite: Callable[..., ServerProc]) -> Iterator[WatchPair]:
    """Fresh real etcd (3.4 and 3.5) + fresh etcdlite advertising the same peer URL."""
    free_port = root_conftest(request.config).free_port
    for attempt in (1, 2):
        peer_port = free_port()
        peer_url = f"http://127.0.0.1:{peer_port}"
        with ThreadPoolExecutor(2) as pool:
            f_real = pool.submit(start_real_etcd, peer_port=peer_port)
            f_lite = pool.submit(start_etcdlite, peer_url=peer_url)
            try:
                real, lite = f_real.result(), f_lite.result()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                for f in (f_real, f_lite):
                    if f.exception() is None:
                        f.result().stop()
    yield WatchPair(real, lite, peer_url)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda sp: sp.stop(), (real, lite)))
