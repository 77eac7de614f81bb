"""Auth tokens: what Authenticate hands out and every later request carries.

Three providers, chosen by ``--auth-token`` (``parse_auth_token``):

* ``SimpleTokenProvider`` (``simple``, etcd's default): 16 random ASCII letters, ".", and
  the raft index of the Authenticate entry (``lDnZDAKcnCeiHYVJ.87``). The random part is
  drawn before proposing (``gen_token_prefix``), so every member assigns the same token
  when the entry applies. Tokens live in memory only (gone after a restart) with a
  sliding TTL (``--auth-token-ttl``, 300 s): each successful lookup restarts it. They are
  dropped when their user is deleted or changes password, and all of them when auth is
  disabled.
* ``JwtTokenProvider`` (``jwt,...``): a signed JWT with claims ``username``, ``revision``
  (the auth revision at Authenticate) and ``exp`` (Unix seconds); nothing is kept, so a
  token survives restarts and password changes; any auth change makes requests carrying
  it fail with "revision of auth store is old" instead.
* ``NopTokenProvider`` (``--auth-token ""``): no tokens at all; Authenticate fails.

No threads: expiry is driven by the injected ``Clock``, checked lazily on lookup (and by
``SimpleTokenProvider.expire`` if the caller wants to drop dead tokens eagerly).

``info(token, auth_revision)`` returns an ``AuthInfo`` or None (unknown, malformed,
badly signed or expired). Like etcd, a simple token reports the *current* auth revision
(``auth_revision``, passed by the caller), a JWT the revision it was signed at.

Example::

    tokens = SimpleTokenProvider(clock, ttl_s=300)
    prefix = tokens.gen_token_prefix()                     # before proposing
    token = tokens.assign("alice", 5, index=87, prefix=prefix)   # when the entry applies
    tokens.info(token, auth_revision=5)   # AuthInfo(username='alice', revision=5)
    clock.advance(301)
    tokens.info(token, auth_revision=5)   # None: expired
"""

from __future__ import annotations

import math
import random
import re
import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from etcdlite.server.clock import Clock
from etcdlite.server.errors import (
    AUTH_INVALID_OPTIONS,
    AUTH_KEY_MISMATCH,
    AUTH_MISSING_KEY,
    AuthConfigError,
    AuthFailed,
    AuthVerifyOnly,
    InvalidAuthToken,
)

DEFAULT_SIMPLE_TTL_S = 300.0
"""``--auth-token-ttl`` default (seconds)."""
DEFAULT_JWT_TTL_S = 300.0
"""The ``ttl`` option's default for jwt tokens (5m)."""
SIMPLE_TOKEN_LENGTH = 16
SIMPLE_TOKEN_LETTERS = string.ascii_letters
_INDEX_RE = re.compile(r"[0-9]+")
_MAX_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class AuthInfo:
    """Who a request comes from, and the auth revision that identity was checked at
    (etcd's AuthInfo; revision 0 means no user)."""

    username: str
    revision: int


class TokenProvider(Protocol):
    def gen_token_prefix(self) -> str:
        """The random part a simple token needs, drawn before proposing ("" otherwise)."""
        ...

    def assign(self, username: str, auth_revision: int, *, index: int, prefix: str) -> str:
        """A new token for ``username`` (when an Authenticate entry applies)."""
        ...

    def info(self, token: str, auth_revision: int) -> AuthInfo | None:
        """Who ``token`` belongs to, or None if it is not (or no longer) valid."""
        ...

    def invalidate_user(self, username: str) -> None:
        ...

    def disable(self) -> None:
        ...


def resolve_token(provider: TokenProvider, token: str | None, *, enabled: bool,
                  auth_revision: int) -> AuthInfo | None:
    """etcd's AuthInfoFromCtx: None while auth is disabled or when the request carries no
    token (permission checks then answer "user name is empty"); raises
    ``InvalidAuthToken`` for a token that ``provider`` does not accept.

    The token is gRPC metadata ``token``, else ``authorization`` (the gateway's header).
    """
    if not enabled or token is None:
        return None
    info = provider.info(token, auth_revision)
    if info is None:
        raise InvalidAuthToken()
    return info


# -- simple tokens ---------------------------------------------------------------------------


def simple_token_index(token: str) -> int | None:
    """The raft index a simple token names (a follower waits until it has applied that
    index before it looks the token up, as etcd does), or None if the token is malformed.

    >>> simple_token_index("lDnZDAKcnCeiHYVJ.87"), simple_token_index("x.-1")
    (87, None)
    """
    parts = token.split(".")
    if len(parts) != 2 or _INDEX_RE.fullmatch(parts[1]) is None:
        return None
    index = int(parts[1])
    return index if index <= _MAX_U64 else None


class SimpleTokenProvider:
    """etcd's simple tokens (see the module docstring).

    Invariants: every stored token maps to a user and a deadline (clock.monotonic()
    seconds); a token whose deadline has passed (now > deadline) is never answered, and is
    forgotten the moment it is looked up or ``expire`` runs; a successful lookup moves the
    deadline to now + ttl_s.
    """

    def __init__(self, clock: Clock, ttl_s: float = DEFAULT_SIMPLE_TTL_S,
                 rng: random.Random | None = None):
        self._clock = clock
        self.ttl_s = ttl_s
        self._rng = rng
        self._tokens: dict[str, tuple[str, float]] = {}

    def gen_token_prefix(self) -> str:
        choose = self._rng.choice if self._rng is not None else secrets.choice
        return "".join(choose(SIMPLE_TOKEN_LETTERS) for _ in range(SIMPLE_TOKEN_LENGTH))

    def assign(self, username: str, auth_revision: int, *, index: int, prefix: str) -> str:
        if not prefix:
            raise ValueError("a simple token needs the prefix drawn before proposing")
        token = f"{prefix}.{index}"
        if token in self._tokens:
            raise AssertionError(f"simple token {token!r} assigned twice")
        self._tokens[token] = (username, self._clock.monotonic() + self.ttl_s)
        return token

    def info(self, token: str, auth_revision: int) -> AuthInfo | None:
        if simple_token_index(token) is None:
            return None
        found = self._tokens.get(token)
        if found is None:
            return None
        username, deadline = found
        now = self._clock.monotonic()
        if now > deadline:
            del self._tokens[token]
            return None
        self._tokens[token] = (username, now + self.ttl_s)
        return AuthInfo(username, auth_revision)

    def invalidate_user(self, username: str) -> None:
        for token in [t for t, (user, _) in self._tokens.items() if user == username]:
            del self._tokens[token]

    def disable(self) -> None:
        self._tokens.clear()

    def expire(self) -> list[str]:
        """Forget every token whose deadline has passed; returns them (sorted)."""
        now = self._clock.monotonic()
        dead = sorted(t for t, (_, deadline) in self._tokens.items() if now > deadline)
        for token in dead:
            del self._tokens[token]
        return dead

    def __len__(self) -> int:
        """Tokens held, expired ones included until looked up or ``expire`` runs."""
        return len(self._tokens)


class TokenRevocations:
    """The store's ``TokenSink``: forwards to the token provider, and counts the events
    that revoke a user's tokens (the user deleted or its password changed, auth
    disabled), so an identity resolved once for a long-lived stream can tell later
    whether a token it was resolved from would have been revoked since.

    Invariant: ``stamp(u)`` changes exactly when some token of ``u`` (or every token) is
    revoked; a token merely expiring changes nothing. Example::

        revocations = TokenRevocations(provider)
        stamp = revocations.stamp("alice")            # when a watch stream resolves alice
        revocations.stamp("alice") == stamp           # True: nothing happened
        revocations.invalidate_user("alice")          # her password changed
        revocations.stamp("alice") == stamp           # False: resolve her again
    """

    def __init__(self, provider: TokenProvider):
        self.provider = provider
        self._epoch = 0
        self._user_epochs: dict[str, int] = {}

    def assign(self, username: str, auth_revision: int, *, index: int, prefix: str) -> str:
        return self.provider.assign(username, auth_revision, index=index, prefix=prefix)

    def invalidate_user(self, username: str) -> None:
        self._user_epochs[username] = self._user_epochs.get(username, 0) + 1
        self.provider.invalidate_user(username)

    def disable(self) -> None:
        self._epoch += 1
        self.provider.disable()

    def stamp(self, username: str) -> tuple[int, int]:
        """What ``username``'s revocations count now (compare two stamps for equality)."""
        return self._epoch, self._user_epochs.get(username, 0)


class NopTokenProvider:
    """``--auth-token ""``: no token is ever valid and Authenticate fails."""

    def gen_token_prefix(self) -> str:
        return ""

    def assign(self, username: str, auth_revision: int, *, index: int, prefix: str) -> str:
        raise AuthFailed()

    def info(self, token: str, auth_revision: int) -> AuthInfo | None:
        return None

    def invalidate_user(self, username: str) -> None:
        pass

    def disable(self) -> None:
        pass


# -- JWT -------------------------------------------------------------------------------------

JWT_SIGN_METHODS = {
    "HS256", "HS384", "HS512",
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",
    "EdDSA",
}
"""The ``sign-method`` values that give a working provider (golang-jwt's names; etcd 3.5
knows ``none`` too but refuses it at startup, and EdDSA arrived in etcd 3.6)."""


def _jwt_module() -> Any:
    """PyJWT, imported when a jwt provider is configured (simple tokens do not need it)."""
    try:
        import jwt
    except ImportError as exc:
        raise AuthConfigError(AUTH_INVALID_OPTIONS,
                              "jwt tokens need the PyJWT[crypto] package") from exc
    return jwt


class JwtTokenProvider:
    """Signed tokens (see the module docstring), verified with the configured method only.

    ``private_key``/``public_key`` are the PEM bytes of etcd's ``priv-key``/``pub-key``
    files (for HS*, ``private_key`` is the raw secret and ``public_key`` is unused). With
    only a public key the provider verifies but cannot sign (``assign`` raises
    ``AuthVerifyOnly``), as etcd.

    Expiry follows etcd 3.5 (golang-jwt v4): ``exp = floor(wall + ttl_s)`` and a token is
    valid while ``floor(now) < exp``; a token without ``exp`` (or ``exp`` 0) never expires.
    ``now`` is the injected clock's wall time.
    """

    def __init__(self, clock: Clock, sign_method: str, *, private_key: bytes | None = None,
                 public_key: bytes | None = None, ttl_s: float = DEFAULT_JWT_TTL_S):
        self._jwt = _jwt_module()
        self._clock = clock
        self.sign_method = sign_method
        self.ttl_s = ttl_s
        self._sign_key, self._verify_key = _load_keys(sign_method, private_key or b"",
                                                      public_key or b"")

    @property
    def verify_only(self) -> bool:
        return self._sign_key is None

    def gen_token_prefix(self) -> str:
        return ""

    def assign(self, username: str, auth_revision: int, *, index: int = 0,
               prefix: str = "") -> str:
        if self._sign_key is None:
            raise AuthVerifyOnly()
        exp = math.floor(self._clock.wall() + self.ttl_s)
        # Keys in the order Go marshals its claims map (sorted), so tokens match etcd's.
        claims = {"exp": exp, "revision": auth_revision, "username": username}
        token: str = self._jwt.encode(claims, self._sign_key, algorithm=self.sign_method)
        return token

    def info(self, token: str, auth_revision: int) -> AuthInfo | None:
        jwt = self._jwt
        try:
            claims = jwt.decode(
                token, self._verify_key, algorithms=[self.sign_method],
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                         "verify_aud": False, "verify_iss": False},
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        username, revision = claims.get("username"), claims.get("revision")
        if not isinstance(username, str) or not _is_number(revision) or revision < 0:
            return None
        exp = claims.get("exp", 0)
        if not _is_number(exp):
            return None
        if exp and not math.floor(self._clock.wall()) < exp:
            return None
        return AuthInfo(username, int(revision))

    def invalidate_user(self, username: str) -> None:
        pass  # nothing is kept: a signed token stays valid until exp

    def disable(self) -> None:
        pass


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _load_keys(method: str, private_pem: bytes, public_pem: bytes) -> tuple[Any, Any]:
    """(signing key or None for verify-only, verifying key), checked as etcd's
    jwtOptions.Key: a missing key is ``AUTH_MISSING_KEY``, a public key that is not the
    private key's is ``AUTH_KEY_MISMATCH``."""
    if method.startswith("HS"):
        if not private_pem:
            raise AuthConfigError(AUTH_MISSING_KEY, "hmac methods need priv-key")
        _check_hmac_key(method, private_pem)
        return private_pem, private_pem
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    kinds: dict[str, tuple[type, type, str]] = {
        "RS": (rsa.RSAPrivateKey, rsa.RSAPublicKey, "RSA"),
        "PS": (rsa.RSAPrivateKey, rsa.RSAPublicKey, "RSA"),
        "ES": (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey, "ECDSA"),
        "Ed": (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey, "Ed25519"),
    }
    private_type, public_type, label = kinds[method[:2]]
    private = _load_pem(private_pem, private=True, want=private_type, label=label)
    public = _load_pem(public_pem, private=False, want=public_type, label=label)
    if private is None:
        if public is None:
            raise AuthConfigError(AUTH_MISSING_KEY, f"{method} needs priv-key or pub-key")
        return None, public
    if public is not None and _public_bytes(public) != _public_bytes(private.public_key()):
        raise AuthConfigError(AUTH_KEY_MISMATCH, "pub-key is not priv-key's public key")
    _check_curve(method, private)
    return private, private.public_key()


_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}


def _check_curve(method: str, key: Any) -> None:
    """ES256/384/512 sign only with P-256/384/521 keys. etcd finds out at the first
    Authenticate (an UNKNOWN "key is invalid"); we refuse the flag at startup."""
    want = _CURVES.get(method)
    if want is not None and key.curve.name != want:
        raise AuthConfigError(AUTH_INVALID_OPTIONS,
                              f"{method} needs a {want} key, not {key.curve.name}")


def _check_hmac_key(method: str, key: bytes) -> None:
    """PyJWT refuses an HMAC secret that looks like a PEM or SSH key (golang-jwt takes
    any bytes): say so at startup rather than at the first Authenticate."""
    jwt = _jwt_module()
    try:
        jwt.get_algorithm_by_name(method).prepare_key(key)
    except jwt.PyJWTError as exc:
        raise AuthConfigError(AUTH_INVALID_OPTIONS, f"priv-key for {method}: {exc}") from exc


def _load_pem(data: bytes, *, private: bool, want: type, label: str) -> Any:
    if not data:
        return None
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        if private:
            key = serialization.load_pem_private_key(data, password=None)
        elif b"CERTIFICATE" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        which = "private" if private else "public"
        raise AuthConfigError(f"key is not a valid {label} {which} key", str(exc)) from exc
    if not isinstance(key, want):
        which = "private" if private else "public"
        raise AuthConfigError(f"key is not a valid {label} {which} key",
                              f"found {type(key).__name__}")
    return key


def _public_bytes(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    data: bytes = key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return data


# -- the --auth-token flag -------------------------------------------------------------------

_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3,
    "s": 1.0, "m": 60.0, "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]+)")


def parse_go_duration(text: str) -> float:
    """Seconds in a Go ``time.ParseDuration`` string (the jwt ``ttl`` option).

    Grammar: ``[+-]`` then either ``0`` or one or more ``<number><unit>``, a number being
    digits with an optional fraction (``1.5``, ``.5``, ``5.``) and a unit one of ns, us,
    µs, ms, s, m, h. Raises ValueError otherwise (``5`` has no unit, ``""`` is empty).

    >>> parse_go_duration("5m"), parse_go_duration("1h30m"), parse_go_duration("1.5s")
    (300.0, 5400.0, 1.5)
    """
    rest = text
    sign = 1.0
    if rest[:1] in ("+", "-"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"time: invalid duration {text!r}")
    total = 0.0
    pos = 0
    while pos < len(rest):
        m = _DURATION_PART.match(rest, pos)
        if m is None or m[1] in ("", "."):
            raise ValueError(f"time: invalid duration {text!r}")
        unit = _DURATION_UNITS.get(m[2])
        if unit is None:
            raise ValueError(f"time: unknown unit {m[2]!r} in duration {text!r}")
        total += float(m[1]) * unit
        pos = m.end()
    return sign * total


def decompose_auth_token(value: str) -> tuple[str, dict[str, str]]:
    """Split ``--auth-token`` as etcd's decomposeOpts does.

    Grammar: ``TYPE("," NAME "=" VALUE)*``, split on every "," and then every "=" with no
    quoting or trimming: an element that is not exactly one "=" (``a``, ``a=b=c``, or the
    empty element of ``simple,``) and a NAME given twice are ``AUTH_INVALID_OPTIONS``.
    VALUE may be empty, which counts as not given.

    >>> decompose_auth_token("jwt,pub-key=a.pem,sign-method=RS256")
    ('jwt', {'pub-key': 'a.pem', 'sign-method': 'RS256'})
    """
    kind, *pairs = value.split(",")
    options: dict[str, str] = {}
    for pair in pairs:
        parts = pair.split("=")
        if len(parts) != 2:
            raise AuthConfigError(AUTH_INVALID_OPTIONS, f"option {pair!r} is not name=value")
        name, option = parts
        if name in options:
            raise AuthConfigError(AUTH_INVALID_OPTIONS, f"option {name!r} given twice")
        options[name] = option
    return kind, options


def parse_auth_token(value: str, *, clock: Clock, ttl_s: float = DEFAULT_SIMPLE_TTL_S,
                     rng: random.Random | None = None) -> TokenProvider:
    """The provider for ``--auth-token value`` (``ttl_s`` is ``--auth-token-ttl``, which
    only simple tokens use).

    * ``simple`` (options ignored) -> ``SimpleTokenProvider``;
    * ``jwt`` -> ``JwtTokenProvider`` from options ``sign-method`` (required),
      ``priv-key`` and ``pub-key`` (file paths), ``ttl`` (a Go duration, default 5m);
      unknown option names are ignored (etcd only warns);
    * ``""`` -> ``NopTokenProvider``;
    * anything else, a bad element, an unreadable key file, a bad ttl or sign method ->
      ``AuthConfigError`` with ``AUTH_INVALID_OPTIONS``; key problems give
      ``AUTH_MISSING_KEY``, ``AUTH_KEY_MISMATCH`` or a key-type message.

    For example ``parse_auth_token("jwt,priv-key=k.pem,sign-method=RS256,ttl=10m",
    clock=clock)`` signs with k.pem's RSA key and lets tokens live ten minutes.
    """
    kind, options = decompose_auth_token(value)
    if kind == "simple":
        return SimpleTokenProvider(clock, ttl_s, rng)
    if kind == "":
        return NopTokenProvider()
    if kind != "jwt":
        raise AuthConfigError(AUTH_INVALID_OPTIONS, f"unknown token type {kind!r}")
    ttl_text = options.get("ttl", "")
    try:
        jwt_ttl_s = parse_go_duration(ttl_text) if ttl_text else DEFAULT_JWT_TTL_S
    except ValueError as exc:
        raise AuthConfigError(AUTH_INVALID_OPTIONS, f"ttl: {exc}") from exc
    keys = {}
    for name in ("pub-key", "priv-key"):
        path = options.get(name, "")
        try:
            keys[name] = Path(path).read_bytes() if path else b""
        except OSError as exc:
            raise AuthConfigError(AUTH_INVALID_OPTIONS, f"{name}: {exc}") from exc
    method = options.get("sign-method", "")
    if method == "none":
        raise AuthConfigError("unsupported signing method: *jwt.signingMethodNone")
    if method not in JWT_SIGN_METHODS:
        raise AuthConfigError(AUTH_INVALID_OPTIONS, f"sign-method {method!r} is not known")
    return JwtTokenProvider(clock, method, private_key=keys["priv-key"],
                            public_key=keys["pub-key"], ttl_s=jwt_ttl_s)
