"""Fixtures of the auth tests (helpers live in authlib.py).

* ``clock``: a ManualClock; ``member``: an ``authlib.Member`` over a temp data dir;
* ``reopen``: closes the member's backend and opens the same dir again with a fresh
  store on it, the way a member restarts.
* ``server``: an in-process etcdlite (``EtcdServer``) on ``clock``, with the cheapest
  password cost and simple tokens living ``TOKEN_TTL_S``; ``client``: an
  ``authlib.Client`` on it, without a token.

Fixture names here are new except ``clock``, which no fixture of tests/conftest.py uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from authlib import TEST_COST, TOKEN_TTL_S, Client, Member

from etcdlite.server.clock import ManualClock
from etcdlite.server.embed import EtcdServer


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


@pytest.fixture
def server(clock: ManualClock) -> Iterator[EtcdServer]:
    with EtcdServer(clock=clock, bcrypt_cost=TEST_COST, auth_token_ttl_s=TOKEN_TTL_S) as s:
        yield s


@pytest.fixture
def client(server: EtcdServer) -> Iterator[Client]:
    with grpc.insecure_channel(server.endpoint) as channel:
        yield Client(channel)
