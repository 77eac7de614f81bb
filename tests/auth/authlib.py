"""Helpers of the auth unit tests (fixtures live in conftest.py).

``Member`` is a backend, a manual clock, a simple-token provider and an AuthStore over one
data dir; closing it and building another over the same dir is a member restart.
"""

from __future__ import annotations

from pathlib import Path

from etcdlite.server.auth_store import AuthStore, hash_password
from etcdlite.server.auth_tokens import SimpleTokenProvider
from etcdlite.server.clock import ManualClock
from etcdlite.storage.backend import LmdbBackend

MAP_SIZE = 1 << 26
TEST_COST = 4
"""The cheapest bcrypt-style cost: tests hash many passwords."""


def hashed(password: str) -> str:
    return hash_password(password, TEST_COST)


class Member:
    """A backend, a clock, a token provider and an auth store over one data dir."""

    def __init__(self, path: Path, clock: ManualClock):
        self.path = path
        self.clock = clock
        self.backend = LmdbBackend(path, sync=False, map_size=MAP_SIZE)
        self.tokens = SimpleTokenProvider(clock, ttl_s=300)
        self.store = AuthStore(self.backend, self.tokens)

    def close(self) -> None:
        self.backend.close()
