"""Fixtures of the Maintenance tests (helpers live in maintlib.py).

* ``servers`` (module): starts servers for the tests of one module (``servers.start(name,
  *flags)``), each with its own data dir and port, all stopped when the module ends.
  Tests that share a server use their own keys (``ns``) and leave no alarm behind.
* ``fresh_db_size`` (session): Status.dbSize of a server that has just started on an
  empty data dir (the base of the small quotas).
* ``ns``: a key prefix of the test's own.

With ``ETCDLITE_MAINT_REFERENCE=1`` the servers are real etcd 3.5.1 instead of etcdlite,
which checks that the expectations of the tests are etcd's; the tests that need etcdlite
itself (its ``snapshot restore`` command, its database file format) skip then.

Fixture names here are new; none shadows a fixture of tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from maintlib import Client, Servers, launch


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    s = Servers(tmp_path_factory.mktemp("maint"))
    yield s
    s.stop_all()


@pytest.fixture(scope="session")
def fresh_db_size(tmp_path_factory: pytest.TempPathFactory) -> int:
    """Status.dbSize right after a server started on an empty data dir."""
    sp = launch(tmp_path_factory.mktemp("fresh"), "fresh")
    try:
        return Client(sp).status().dbSize
    finally:
        sp.stop()


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> bytes:
    """A key prefix of this test's own (tests of a module share servers)."""
    return f"/{request.node.name}/".encode()

