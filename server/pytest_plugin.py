"""pytest plugin: a real etcd-compatible server for every test, in-process, no setup.

Installing etcdlite registers this module with pytest (entry point ``pytest11``), so a
test just names a fixture::

    def test_config_roundtrip(etcd_endpoint):            # "127.0.0.1:40123"
        client = MyEtcdClient(etcd_endpoint)
        ...

Fixtures:

* ``etcd`` -- a fresh ``EtcdServer`` for this test, stopped after it. Isolation is total
  and cheap: a new member on a new temporary directory and port starts in a few
  milliseconds, so every test begins at revision 1 with no keys, leases or watchers, and
  nothing one test does (compaction, alarms, leases left behind) reaches the next.
  ``@pytest.mark.etcdlite(max_txn_ops=4, ...)`` passes ``EtcdServer`` keyword arguments
  (etcd's flags in snake case) to it; the closest marker wins per keyword.
* ``etcd_endpoint`` / ``etcd_url`` -- ``etcd``'s address as ``"127.0.0.1:PORT"`` and as
  ``"http://127.0.0.1:PORT"``.
* ``etcd_clock`` -- ``etcd``'s ``ManualClock``: a test that uses it gets its ``etcd`` on a
  manual clock, and ``etcd_clock.advance(seconds)`` returns only once the leases that ran
  out are revoked and their keys deleted. Lease expiry is tested without sleeping.
* ``etcd_server`` -- one server shared by the whole session (not cleaned between tests:
  for session-scoped clients, or tests that share data on purpose).
* ``etcd_factory`` -- ``etcd_factory(**kwargs)`` starts another server (several members,
  custom flags, a given ``data_dir`` or ``port``); all are stopped after the test.

Two servers told to share an explicit port or data directory fail at once with
``PortInUse`` / ``DataDirInUse`` saying so (never a hang, never a shared store).

Options: ``--etcdlite-keep-data`` keeps each server's data directory (under pytest's
temporary directory, listed at the end of the run) instead of deleting it;
``--etcdlite-log-level`` sets the servers' log level (default ``error``; logs go to
stderr, which pytest shows for failing tests).

This module imports nothing heavy at import time: it loads in every pytest session of
everyone who installs etcdlite; gRPC loads with the first server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from etcdlite.server.clock import ManualClock
    from etcdlite.server.embed import EtcdServer

LOG_LEVELS = ("debug", "info", "warn", "error", "panic", "fatal")
"""The log levels of ``etcdlite.server.log`` (repeated to keep this import cheap)."""


@dataclass
class PluginState:
    """Per-run settings and what the run kept (stored in ``config.stash``)."""

    keep_data: bool
    log_level: str
    kept: list[tuple[str, Path]] = field(default_factory=list)
    """(test id or "session", data dir) of every server whose data was kept, in start
    order."""


STATE = pytest.StashKey[PluginState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("etcdlite", "etcdlite (in-process etcd servers for tests)")
    group.addoption(
        "--etcdlite-keep-data", action="store_true", default=False,
        help="keep the data directories of the etcd fixtures' servers (under pytest's "
             "temporary directory) and list them at the end of the run")
    group.addoption(
        "--etcdlite-log-level", default="error", choices=LOG_LEVELS,
        help="log level of the etcd fixtures' servers (default: error)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "etcdlite(**flags): EtcdServer keyword arguments (etcd flags in snake case) "
        "for this test's `etcd` server",
    )
    config.stash[STATE] = PluginState(
        keep_data=bool(config.getoption("etcdlite_keep_data")),
        log_level=str(config.getoption("etcdlite_log_level")),
    )


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    state = config.stash.get(STATE, None)
    if state is None or not state.kept:
        return
    terminalreporter.section("etcdlite: kept data directories")
    for who, path in state.kept:
        terminalreporter.write_line(f"{who}: {path}")


class ServerPool:
    """Starts servers for one fixture and stops them all at its teardown.

    Invariant: every server ``start`` returned is stopped by ``stop_all``, newest first,
    even when stopping another one failed (the first failure is raised afterwards).
    With ``--etcdlite-keep-data`` each server without an explicit ``data_dir`` gets a
    fresh one under pytest's base temporary directory, recorded for the summary, e.g.
    ``/tmp/pytest-of-me/pytest-7/etcdlite-test_put0``.
    """

    def __init__(self, config: pytest.Config, tmp_path_factory: pytest.TempPathFactory,
                 owner: pytest.Item | None):
        self._state = config.stash[STATE]
        self._tmp = tmp_path_factory
        self._owner = "session" if owner is None else owner.nodeid
        self._dir_prefix = "etcdlite-" + ("session" if owner is None else _slug(owner.name))
        self._servers: list[EtcdServer] = []

    def start(self, **kwargs: Any) -> EtcdServer:
        from etcdlite.server.embed import EtcdServer

        kwargs.setdefault("log_level", self._state.log_level)
        kept: Path | None = None
        if self._state.keep_data and kwargs.get("data_dir") is None:
            kept = self._tmp.mktemp(self._dir_prefix, numbered=True)
            kwargs["data_dir"] = kept
            kwargs.setdefault("unsafe_no_fsync", True)
        server = EtcdServer(**kwargs).start()
        self._servers.append(server)
        if kept is not None:
            self._state.kept.append((self._owner, kept))
        return server

    def stop_all(self) -> None:
        errors: list[BaseException] = []
        while self._servers:
            try:
                self._servers.pop().stop()
            except Exception as exc:  # stop the others first; raise it afterwards
                errors.append(exc)
        if errors:
            raise errors[0]


def _slug(text: str) -> str:
    """A short file-name-safe form of a test id ("test_a[x-1]" -> "test_a_x-1_")."""
    return re.sub(r"[^\w.-]", "_", text)[:40]


def _marker_flags(node: pytest.Item) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    for marker in reversed(list(node.iter_markers("etcdlite"))):  # closest last: it wins
        if marker.args:
            pytest.fail("@pytest.mark.etcdlite takes keyword arguments only "
                        f"(EtcdServer's), not {marker.args!r}", pytrace=False)
        flags.update(marker.kwargs)
    return flags


@pytest.fixture(scope="session")
def etcd_server(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EtcdServer]:
    """One server for the whole session (shared, never cleaned between tests)."""
    pool = ServerPool(pytestconfig, tmp_path_factory, None)
    try:
        yield pool.start()
    finally:
        pool.stop_all()


@pytest.fixture
def etcd(
    request: pytest.FixtureRequest,
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EtcdServer]:
    """A fresh server for this test (on a ManualClock if the test uses ``etcd_clock``)."""
    flags = _marker_flags(request.node)
    if "etcd_clock" in request.fixturenames and "clock" not in flags:
        from etcdlite.server.clock import ManualClock

        flags["clock"] = ManualClock()
    pool = ServerPool(pytestconfig, tmp_path_factory, request.node)
    try:
        yield pool.start(**flags)
    finally:
        pool.stop_all()


@pytest.fixture
def etcd_endpoint(etcd: EtcdServer) -> str:
    """``etcd``'s ``"127.0.0.1:PORT"``."""
    return etcd.endpoint


@pytest.fixture
def etcd_url(etcd: EtcdServer) -> str:
    """``etcd``'s ``"http://127.0.0.1:PORT"``."""
    return etcd.url


@pytest.fixture
def etcd_clock(etcd: EtcdServer) -> ManualClock:
    """``etcd``'s ManualClock; ``advance(s)`` revokes what ran out before returning."""
    from etcdlite.server.clock import ManualClock

    if not isinstance(etcd.clock, ManualClock):
        pytest.fail("etcd_clock: this test's etcd server runs on "
                    f"{type(etcd.clock).__name__} (set by @pytest.mark.etcdlite(clock=...))",
                    pytrace=False)
    return etcd.clock


@pytest.fixture
def etcd_factory(
    request: pytest.FixtureRequest,
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., EtcdServer]]:
    """``etcd_factory(**kwargs)`` starts another server; all stop after the test."""
    pool = ServerPool(pytestconfig, tmp_path_factory, request.node)
    try:
        yield pool.start
    finally:
        pool.stop_all()
