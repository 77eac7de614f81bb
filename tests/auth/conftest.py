"""Fixtures of the auth unit tests (helpers live in authlib.py).

* ``clock``: a ManualClock; ``member``: an ``authlib.Member`` over a temp data dir;
* ``reopen``: closes the member's backend and opens the same dir again with a fresh
  store on it, the way a member restarts.

Fixture names here are new except ``clock``, which no fixture of tests/conftest.py uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from authlib import Member

from etcdlite.server.clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def member(tmp_path: Path, clock: ManualClock) -> Iterator[Member]:
    m = Member(tmp_path / "data", clock)
    yield m
    m.close()


@pytest.fixture
def reopen(member: Member) -> Iterator[Callable[[], Member]]:
    opened: list[Member] = []

    def again() -> Member:
        member.close()
        for m in opened:
            m.close()
        fresh = Member(member.path, member.clock)
        opened.append(fresh)
        return fresh

    yield again
    for m in opened:
        m.close()
