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
from dataclasses import dataclass
from pathlib import Path

import pytest
from etcd_procs import (
    ServerProc,
    free_port,
    launch_etcdlite,
    launch_real_etcd,
    real_etcd_binary,
    start_pair,
    stop_all,
)
from watchlib import SHARED_FLAGS

# -- servers ------------------------------------------------------------------------------


def _start(flavor: str, args: tuple[str, ...], base: Path) -> ServerProc:
    """etcdlite (on a peer URL of its own) or real etcd ``flavor``, data and log in ``base``."""
    data, log_path = base / f"{flavor}.etcd", base / f"{flavor}.log"
    if flavor == "etcdlite":
        return launch_etcdlite(data, log_path, *args,
                               peer_url=f"http://127.0.0.1:{free_port()}")
    return launch_real_etcd(flavor, real_etcd_binary(flavor), data, log_path, *args)


@pytest.fixture(scope="session")
def shared_lite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    base = tmp_path_factory.mktemp("watch-shared")
    sp = _start("etcdlite", SHARED_FLAGS, base)
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
    sp = _start(request.param, SHARED_FLAGS, base)
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
def watch_pair(start_real_etcd: Callable[..., ServerProc],
               start_etcdlite: Callable[..., ServerProc]) -> Iterator[WatchPair]:
    """Fresh real etcd (3.4 and 3.5) + fresh etcdlite advertising the same peer URL."""
    real, lite, peer_url = start_pair(start_real_etcd, start_etcdlite)
    yield WatchPair(real, lite, peer_url)
    stop_all(real, lite)
