"""JWT tokens: round trips for every sign method, expiry on a ManualClock, refusals, and
the jwt form of --auth-token, with keys the test generates. Skipped without PyJWT."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest

jwt = pytest.importorskip("jwt", reason="jwt tokens need PyJWT[crypto]")
serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa  # noqa: E402

from etcdlite.server import errors  # noqa: E402
from etcdlite.server.auth_tokens import AuthInfo, JwtTokenProvider, parse_auth_token  # noqa: E402
from etcdlite.server.clock import ManualClock  # noqa: E402

HMAC_SECRET = b"an hmac secret long enough for sha-512, sixty-four bytes long!!!"


def pem_private(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


def pem_public(key: object) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


_KEYS: dict[str, object] = {}


def private_key(family: str) -> object:
    """One generated key per family for the whole module (RSA generation is slow)."""
    if family not in _KEYS:
        _KEYS[family] = {
            "RS": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
            "ES384": lambda: ec.generate_private_key(ec.SECP384R1()),
            "ES512": lambda: ec.generate_private_key(ec.SECP521R1()),
            "Ed": ed25519.Ed25519PrivateKey.generate,
        }[family]()
    return _KEYS[family]


def family_of(method: str) -> str:
    if method.startswith(("RS", "PS")):
        return "RS"
    return method if method.startswith("ES") else "Ed"


def provider(clock: ManualClock, method: str, *, public_only: bool = False,
             ttl_s: float = 300) -> JwtTokenProvider:
    if method.startswith("HS"):
        return JwtTokenProvider(clock, method, private_key=HMAC_SECRET, ttl_s=ttl_s)
    key = private_key(family_of(method))
    if public_only:
        return JwtTokenProvider(clock, method, public_key=pem_public(key), ttl_s=ttl_s)
    return JwtTokenProvider(clock, method, private_key=pem_private(key),
                            public_key=pem_public(key), ttl_s=ttl_s)


def claims_of(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return decoded


METHODS = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
           "ES256", "ES384", "ES512", "EdDSA"]


@pytest.mark.parametrize("method", METHODS)
def test_jwt_round_trip(clock: ManualClock, method: str) -> None:
    tokens = provider(clock, method)
    token = tokens.assign("alice", 42)
    assert tokens.info(token, auth_revision=99) == AuthInfo("alice", 42)  # the claim's
    assert claims_of(token) == {"exp": int(clock.wall()) + 300, "revision": 42,
                                "username": "alice"}
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": method, "typ": "JWT"}
    assert tokens.gen_token_prefix() == ""


def test_jwt_claims_and_header_are_laid_out_like_etcds(clock: ManualClock) -> None:
    token = provider(clock, "HS256").assign("alice", 42)
    head, body, _sig = token.split(".")
    assert base64.urlsafe_b64decode(head + "==") == b'{"alg":"HS256","typ":"JWT"}'
    exp = int(clock.wall()) + 300
    assert base64.urlsafe_b64decode(body + "==") == (
        b'{"exp":%d,"revision":42,"username":"alice"}' % exp)


def test_jwt_expiry_follows_the_injected_clock(clock: ManualClock) -> None:
    clock.advance(0.75)  # wall = ...000.75: exp = floor(wall + ttl)
    tokens = provider(clock, "ES256", ttl_s=60)
    token = tokens.assign("alice", 1)
    exp = claims_of(token)["exp"]
    assert exp == int(clock.wall() + 60)
    clock.advance(59)  # floor(now) = exp - 1: valid
    assert tokens.info(token, 1) is not None
    clock.advance(0.25)  # floor(now) = exp: expired (golang-jwt v4)
    assert tokens.info(token, 1) is None


def test_jwt_survives_other_providers_but_not_other_keys(clock: ManualClock) -> None:
    token = provider(clock, "RS256").assign("alice", 3)
    assert provider(clock, "RS256", public_only=True).info(token, 3) == AuthInfo("alice", 3)
    assert provider(clock, "PS256").info(token, 3) is None  # another method: refused
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = JwtTokenProvider(clock, "RS256", private_key=pem_private(other))
    assert stranger.info(token, 3) is None


def test_jwt_tampering_and_garbage_are_refused(clock: ManualClock) -> None:
    tokens = provider(clock, "HS256")
    token = tokens.assign("alice", 3)
    head, _body, sig = token.split(".")
    forged_body = base64.urlsafe_b64encode(
        json.dumps({"exp": 2**40, "revision": 3, "username": "root"}).encode()
    ).rstrip(b"=").decode()
    for bad in [f"{head}.{forged_body}.{sig}", token[:-2], "", "a.b.c", "abc.1",
                jwt.encode({"username": "root", "revision": 1}, "x" * 64, algorithm="HS256"),
                jwt.encode({"username": "root", "revision": 1}, None, algorithm="none")]:
        assert tokens.info(bad, 3) is None, bad


def test_jwt_claims_must_have_the_right_types(clock: ManualClock) -> None:
    tokens = provider(clock, "HS256")

    def sign(claims: dict[str, object]) -> str:
        token: str = jwt.encode(claims, HMAC_SECRET, algorithm="HS256")
        return token

    assert tokens.info(sign({"username": "a", "revision": 2}), 1) == AuthInfo("a", 2)  # no exp
    assert tokens.info(sign({"username": "a", "revision": 2.0, "exp": 0}), 1) == AuthInfo("a", 2)
    for claims in [{"revision": 2}, {"username": "a"}, {"username": 1, "revision": 2},
                   {"username": "a", "revision": "2"}, {"username": "a", "revision": True},
                   {"username": "a", "revision": 2, "exp": "soon"}]:
        assert tokens.info(sign(claims), 1) is None, claims


def test_verify_only_provider_cannot_sign(clock: ManualClock) -> None:
    tokens = provider(clock, "ES256", public_only=True)
    assert tokens.verify_only
    with pytest.raises(errors.AuthVerifyOnly) as caught:
        tokens.assign("alice", 1)
    assert errors.wire_error(caught.value) == (
        "UNKNOWN", "auth: token signing attempted with verify-only key")


def test_jwt_providers_refuse_bad_keys(clock: ManualClock) -> None:
    rsa_key, ec_key = private_key("RS"), private_key("ES256")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: JwtTokenProvider(clock, "HS256"), errors.AUTH_MISSING_KEY),
        (lambda: JwtTokenProvider(clock, "RS256"), errors.AUTH_MISSING_KEY),
        (lambda: JwtTokenProvider(clock, "RS256", private_key=pem_private(rsa_key),
                                  public_key=pem_public(other)), errors.AUTH_KEY_MISMATCH),
        (lambda: JwtTokenProvider(clock, "RS256", private_key=pem_private(ec_key)),
         "key is not a valid RSA private key"),
        (lambda: JwtTokenProvider(clock, "ES256", public_key=pem_public(rsa_key)),
         "key is not a valid ECDSA public key"),
        (lambda: JwtTokenProvider(clock, "EdDSA", private_key=b"not a pem"),
         "key is not a valid Ed25519 private key"),
        (lambda: JwtTokenProvider(clock, "HS256", private_key=pem_private(rsa_key)),
         errors.AUTH_INVALID_OPTIONS),  # PyJWT will not use a PEM key as an HMAC secret
    ]
    for build, message in cases:
        with pytest.raises(errors.AuthConfigError) as caught:
            build()
        assert str(caught.value) == message


def test_parse_jwt_flag(tmp_path: Path, clock: ManualClock) -> None:
    key = private_key("RS")
    priv, pub = tmp_path / "priv.pem", tmp_path / "pub.pem"
    priv.write_bytes(pem_private(key))
    pub.write_bytes(pem_public(key))
    tokens = parse_auth_token(f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256,ttl=5m",
                              clock=clock)
    assert isinstance(tokens, JwtTokenProvider)
    assert (tokens.sign_method, tokens.ttl_s, tokens.verify_only) == ("RS256", 300.0, False)
    assert tokens.info(tokens.assign("a", 1), 1) == AuthInfo("a", 1)
    defaults = parse_auth_token(f"jwt,priv-key={priv},sign-method=RS256,unknown=1",
                                clock=clock, ttl_s=5)
    # jwt's own default ttl (5m), not --auth-token-ttl:
    assert isinstance(defaults, JwtTokenProvider) and defaults.ttl_s == 300.0
    verify_only = parse_auth_token(f"jwt,pub-key={pub},sign-method=RS256,ttl=", clock=clock)
    assert isinstance(verify_only, JwtTokenProvider) and verify_only.verify_only
    secret = tmp_path / "secret"
    secret.write_bytes(HMAC_SECRET)
    hs = parse_auth_token(f"jwt,priv-key={secret},sign-method=HS512,ttl=1h30m", clock=clock)
    assert isinstance(hs, JwtTokenProvider) and hs.ttl_s == 5400.0


def test_parse_jwt_flag_errors(tmp_path: Path, clock: ManualClock) -> None:
    key = private_key("RS")
    priv = tmp_path / "priv.pem"
    priv.write_bytes(pem_private(key))
    invalid = errors.AUTH_INVALID_OPTIONS
    cases = [
        (f"jwt,priv-key={priv}", invalid),                       # no sign-method
        (f"jwt,priv-key={priv},sign-method=RS257", invalid),
        (f"jwt,priv-key={priv},sign-method=rs256", invalid),     # names are case-sensitive
        (f"jwt,priv-key={priv},sign-method=RS256,ttl=5", invalid),
        (f"jwt,priv-key={tmp_path / 'missing'},sign-method=RS256", invalid),
        (f"jwt,pub-key={tmp_path},sign-method=RS256", invalid),  # a directory
        ("jwt,sign-method=RS256", errors.AUTH_MISSING_KEY),
        ("jwt,sign-method=none", "unsupported signing method: *jwt.signingMethodNone"),
    ]
    for flag, message in cases:
        with pytest.raises(errors.AuthConfigError) as caught:
            parse_auth_token(flag, clock=clock)
        assert str(caught.value) == message, flag


def test_ecdsa_methods_need_their_curve(clock: ManualClock) -> None:
    key = private_key("ES384")
    with pytest.raises(errors.AuthConfigError) as caught:
        JwtTokenProvider(clock, "ES256", private_key=pem_private(key))
    assert str(caught.value) == errors.AUTH_INVALID_OPTIONS
    assert "secp256r1" in caught.value.detail
