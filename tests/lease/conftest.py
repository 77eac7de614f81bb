"""Fixtures of the Lease tests (helpers live in leaselib.py).

* ``lease_lite`` (module): one etcdlite process shared by the tests of a module; each
  test uses its own keys (``ns``) and its own leases.
  With ``ETCDLITE_LEASE_REFERENCE=1`` it is a real etcd 3.5.1 instead, which checks that
  the expectations of the tests are etcd's.
* ``ns``: a key prefix of the test's own.

Fixture names here are new; none shadows a fixture of tests/conftest.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ServerProc = Any  # tests/conftest.py's ServerProc

REFERENCE = os.environ.get("ETCDLITE_LEASE_REFERENCE") == "1"


def root_conftest(config: pytest.Config) -> ModuleType:
    """``tests/conftest.py`` as pytest loaded it (a plain ``import conftest`` here would
    import this very module)."""
    want = Path(__file__).resolve().parent.parent / "conftest.py"
    for plugin in config.pluginmanager.get_plugins():
        file = getattr(plugin, "__file__", None)
        if file and Path(file).resolve() == want:
            return plugin
    raise RuntimeError(f"{want} is not loaded as a conftest")


@pytest.fixture(scope="module")
def lease_lite(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    rc = root_conftest(request.config)
    base = tmp_path_factory.mktemp("lease-lite")
    port = rc.free_port()
    data = base / "server.etcd"
    url = f"http://127.0.0.1:{port}"
    if REFERENCE:
        binary = rc.real_etcd_binaries()["etcd-3.5"]
        if binary is None:
            pytest.skip("etcd-3.5 not installed")
        peer = f"http://127.0.0.1:{rc.free_port()}"
        cmd = [binary, "--name", "default", "--data-dir", str(data),
               "--listen-client-urls", url, "--advertise-client-urls", url,
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
               "--initial-cluster", f"default={peer}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        flavor = "etcd-3.5"
    else:
        cmd = [*rc.etcdlite_command(), "--data-dir", str(data),
               "--listen-client-urls", url, "--advertise-client-urls", url]
        env, flavor = dict(os.environ), "etcdlite"
    sp = rc.spawn(cmd, port, data, base / "server.log", env, flavor)
    yield sp
    sp.stop()


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> bytes:
    """A key prefix of this test's own (tests of a module share a server)."""
    return f"/{request.node.name}/".encode()
