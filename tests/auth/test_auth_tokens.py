"""Tokens: simple tokens on a ManualClock (sliding TTL, no sleeps) and the --auth-token
flag grammar (JWT itself is in test_auth_jwt.py, which needs PyJWT)."""

from __future__ import annotations

import random

import pytest

from etcdlite.server import errors
from etcdlite.server.auth_tokens import (
    AuthInfo,
    NopTokenProvider,
    SimpleTokenProvider,
    decompose_auth_token,
    parse_auth_token,
    parse_go_duration,
    resolve_token,
    simple_token_index,
)
from etcdlite.server.clock import ManualClock

PREFIX = "lDnZDAKcnCeiHYVJ"

# -- simple tokens --------------------------------------------------------------------------


def test_simple_token_format(clock: ManualClock) -> None:
    tokens = SimpleTokenProvider(clock, rng=random.Random(7))
    prefix = tokens.gen_token_prefix()
    assert len(prefix) == 16 and prefix.isascii() and prefix.isalpha()
    assert SimpleTokenProvider(clock, rng=random.Random(7)).gen_token_prefix() == prefix
    assert tokens.assign("alice", 3, index=87, prefix=PREFIX) == "lDnZDAKcnCeiHYVJ.87"
    assert len(SimpleTokenProvider(clock).gen_token_prefix()) == 16  # secrets, unseeded


def test_simple_token_reports_the_current_auth_revision(clock: ManualClock) -> None:
    tokens = SimpleTokenProvider(clock)
    token = tokens.assign("alice", 3, index=1, prefix=PREFIX)
    assert tokens.info(token, 3) == AuthInfo("alice", 3)
    assert tokens.info(token, 9) == AuthInfo("alice", 9)  # like etcd: not the assign-time one


def test_simple_token_expires_after_ttl_without_use(clock: ManualClock) -> None:
    tokens = SimpleTokenProvider(clock, ttl_s=5)
    token = tokens.assign("alice", 1, index=1, prefix=PREFIX)
    clock.advance(5)
    assert tokens.info(token, 1) is not None  # at the deadline: still valid
    clock.advance(5.001)
    assert tokens.info(token, 1) is None
    assert len(tokens) == 0  # forgotten on lookup


def test_simple_token_ttl_slides_on_use(clock: ManualClock) -> None:
    tokens = SimpleTokenProvider(clock, ttl_s=5)
    token = tokens.assign("alice", 1, index=1, prefix=PREFIX)
    for _ in range(10):  # 40 s in all, never 5 s without a use
        clock.advance(4)
        assert tokens.info(token, 1) == AuthInfo("alice", 1)
    clock.advance(5.5)
    assert tokens.info(token, 1) is None


def test_expire_drops_dead_tokens_eagerly(clock: ManualClock) -> None:
    tokens = SimpleTokenProvider(clock, ttl_s=10)
    old = tokens.assign("a", 1, index=1, prefix=PREFIX)
    clock.advance(6)
    young = tokens.assign("b", 1, index=2, prefix=PREFIX)
    clock.advance(6)
    assert tokens.expire() == [old]
    assert len(tokens) == 1 and tokens.info(young, 1) is not None


def test_invalidate_user_and_disable(clock: ManualClock) -> None:
    tokens = SimpleTokenProvider(clock)
    a1 = tokens.assign("a", 1, index=1, prefix=PREFIX)
    a2 = tokens.assign("a", 1, index=2, prefix=PREFIX)
    b = tokens.assign("b", 1, index=3, prefix=PREFIX)
    tokens.invalidate_user("a")
    assert tokens.info(a1, 1) is None and tokens.info(a2, 1) is None
    assert tokens.info(b, 1) is not None
    tokens.disable()
    assert tokens.info(b, 1) is None and len(tokens) == 0


def test_malformed_and_unknown_simple_tokens(clock: ManualClock) -> None:
    tokens = SimpleTokenProvider(clock)
    tokens.assign("a", 1, index=1, prefix=PREFIX)
    for bad in ["", PREFIX, f"{PREFIX}.1.2", f"{PREFIX}.x", f"{PREFIX}.-1", f"{PREFIX}.+1",
                f"{PREFIX}.\u00b2", f"{PREFIX}. 1", f"{PREFIX}.2", f"{PREFIX}.{1 << 64}"]:
        assert tokens.info(bad, 1) is None, bad
    assert simple_token_index(f"{PREFIX}.{(1 << 64) - 1}") == (1 << 64) - 1
    assert simple_token_index("anything.0") == 0


def test_simple_token_assign_rules(clock: ManualClock) -> None:
    tokens = SimpleTokenProvider(clock)
    with pytest.raises(ValueError):
        tokens.assign("a", 1, index=1, prefix="")
    tokens.assign("a", 1, index=1, prefix=PREFIX)
    with pytest.raises(AssertionError):
        tokens.assign("b", 1, index=1, prefix=PREFIX)


def test_resolve_token(clock: ManualClock) -> None:
    tokens = SimpleTokenProvider(clock)
    token = tokens.assign("a", 1, index=1, prefix=PREFIX)
    assert resolve_token(tokens, token, enabled=False, auth_revision=4) is None
    assert resolve_token(tokens, None, enabled=True, auth_revision=4) is None
    assert resolve_token(tokens, token, enabled=True, auth_revision=4) == AuthInfo("a", 4)
    with pytest.raises(errors.InvalidAuthToken) as caught:
        resolve_token(tokens, "nope.1", enabled=True, auth_revision=4)
    assert errors.wire_error(caught.value) == ("UNAUTHENTICATED", "etcdserver: invalid auth token")


def test_nop_provider() -> None:
    nop = NopTokenProvider()
    assert nop.gen_token_prefix() == "" and nop.info("x.1", 1) is None
    with pytest.raises(errors.AuthFailed):
        nop.assign("a", 1, index=1, prefix="")


# -- the --auth-token flag ------------------------------------------------------------------


def test_decompose() -> None:
    assert decompose_auth_token("simple") == ("simple", {})
    assert decompose_auth_token("") == ("", {})
    assert decompose_auth_token("jwt,ttl=,x=y") == ("jwt", {"ttl": "", "x": "y"})
    for bad in ["simple,", "jwt,ttl", "jwt,a=b=c", "jwt,ttl=1m,ttl=2m", "jwt,,ttl=1m"]:
        with pytest.raises(errors.AuthConfigError) as caught:
            decompose_auth_token(bad)
        assert str(caught.value) == errors.AUTH_INVALID_OPTIONS, bad


def test_parse_simple_and_nop(clock: ManualClock) -> None:
    simple = parse_auth_token("simple", clock=clock, ttl_s=5)
    assert isinstance(simple, SimpleTokenProvider) and simple.ttl_s == 5
    assert isinstance(parse_auth_token("simple,whatever=1", clock=clock), SimpleTokenProvider)
    assert isinstance(parse_auth_token("", clock=clock), NopTokenProvider)
    for bad in ["Simple", "jwt2", "simple,"]:
        with pytest.raises(errors.AuthConfigError):
            parse_auth_token(bad, clock=clock)


@pytest.mark.parametrize(("text", "seconds"), [
    ("5m", 300.0), ("1h30m", 5400.0), ("1.5s", 1.5), (".5s", 0.5), ("5.s", 5.0),
    ("0", 0.0), ("-1m", -60.0), ("+2h", 7200.0), ("300ms", 0.3), ("1us", 1e-6),
    ("1\u00b5s", 1e-6), ("1\u03bcs", 1e-6), ("7ns", 7e-9), ("1m1m", 120.0),
])
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "m", "1d", ".s", "1.2.3s", "-", "1 m", "5m3"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)
