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

import pytest
from etcd_procs import ServerProc, launch_etcdlite, launch_real_etcd, real_etcd_binary

REFERENCE = os.environ.get("ETCDLITE_LEASE_REFERENCE") == "1"


@pytest.fixture(scope="module")
def lease_lite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    base = tmp_path_factory.mktemp("lease-lite")
    data, log_path = base / "server.etcd", base / "server.log"
    if REFERENCE:
        sp = launch_real_etcd("etcd-3.5", real_etcd_binary("etcd-3.5"), data, log_path)
    else:
        sp = launch_etcdlite(data, log_path)
    yield sp
    sp.stop()


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> bytes:
    """A key prefix of this test's own (tests of a module share a server)."""
    return f"/{request.node.name}/".encode()
