"""etcd's auth state: users, roles, their permissions, the enabled flag and the auth revision.

Persisted in the backend's ``auth`` table (one LMDB named database), with an in-memory
view rebuilt from it on start (and by ``reload`` after a snapshot is installed):

=======================  =============================================================
key                      value
=======================  =============================================================
``b"enabled"``           ``b"\\x01"`` (enabled) or ``b"\\x00"``; absent = disabled
``b"revision"``          the auth revision, 8 bytes big-endian unsigned; absent = 1
``b"user/" + name``      ``authpb.User`` (``password`` holds the hash, never plain text)
``b"role/" + name``      ``authpb.Role`` (permissions kept sorted by key, stably)
=======================  =============================================================

Names are the UTF-8 bytes of the request's string, so LMDB's byte order is the order
UserList and RoleList answer in (etcd's bolt buckets order the same way).

Invariants (etcd's):

* Each user or role change, and AuthDisable, bumps the auth revision by exactly one.
  AuthEnable does not (it only flips the flag); no-ops (enabling twice, disabling twice,
  a UserGrantRole of a role the user holds) change nothing. A fresh store is at
  revision 1 (etcd commits 1 when it creates its buckets; here an absent key reads as 1).
* Apply-time methods are deterministic: they take the open write transaction of the
  apply batch and only what the entry carries. A password arrives already hashed: the
  member that receives UserAdd/UserChangePassword runs ``hash_password`` before it
  proposes, as etcd 3.5 does, since the random salt would differ on every member.
* Each method validates everything before it writes, so one that raises has changed
  nothing, neither in LMDB nor in memory. The view is updated as the method writes: if
  the batch is then aborted, the member must stop (as for any failed apply batch) or
  ``reload``.
* Tokens are not state: they live in the token provider, which the store tells when a
  user is deleted or changes password (``invalidate_user``) and when auth is disabled
  (``disable``).

Example::

    store = AuthStore(backend, tokens)
    with backend.batch() as txn:
        store.user_add(txn, "root", hash_password("secret", cost=10))
        store.user_grant_role(txn, "root", "root")   # role root need not exist
        store.auth_enable(txn)
    store.status()                      # AuthStatus(enabled=True, revision=3)
    store.check_password("root", "secret")  # -> 3, the revision it was checked at
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
from bisect import bisect_left
from typing import NamedTuple, Protocol, TypeVar

import lmdb
from google.protobuf.message import Message

from etcdlite.protos import rpc_pb2
from etcdlite.protos.auth_pb2 import Permission, Role, User, UserAddOptions
from etcdlite.server.errors import (
    AuthFailed,
    AuthNotEnabled,
    AuthPermissionNotGiven,
    AuthPermissionNotGranted,
    AuthRoleAlreadyExist,
    AuthRoleEmpty,
    AuthRoleNotFound,
    AuthRoleNotGranted,
    AuthRootRoleNotExist,
    AuthRootUserNotExist,
    AuthUserAlreadyExist,
    AuthUserEmpty,
    AuthUserNotFound,
    InvalidAuthMgmt,
)
from etcdlite.storage.backend import LmdbBackend
from etcdlite.storage.errors import CorruptStore

ROOT_USER = "root"
ROOT_ROLE = "root"
ROOT_PERMISSION = Permission(permType=Permission.READWRITE, key=b"", range_end=b"\x00")
"""What RoleGet answers for role root, whatever is stored (etcd 3.5)."""

_ENABLED = b"enabled"
_REVISION = b"revision"
_USER = b"user/"
_ROLE = b"role/"
_U64 = struct.Struct(">Q")

# -- passwords -----------------------------------------------------------------------------

MIN_BCRYPT_COST = 4
MAX_BCRYPT_COST = 31
DEFAULT_BCRYPT_COST = 10
"""etcd's ``--bcrypt-cost`` range and default (golang.org/x/crypto/bcrypt)."""
_MAX_LOG_N = 17
"""scrypt's N stops doubling at 2**17 (128 MiB, cost 13); higher costs double p instead."""
_VERIFY_MAX_LOG_N = 20
"""The largest N a stored hash may name (1 GiB), should the cap above ever move."""
_SCRYPT_R = 8
_SALT_BYTES = 16
_KEY_BYTES = 32
_HASH_RE = re.compile(
    r"\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,6})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})"
)


def effective_bcrypt_cost(cost: int) -> int:
    """The cost etcd uses for ``--bcrypt-cost cost``: outside [4, 31] it warns and uses 10.

    >>> effective_bcrypt_cost(12), effective_bcrypt_cost(3), effective_bcrypt_cost(32)
    (12, 10, 10)
    """
    return cost if MIN_BCRYPT_COST <= cost <= MAX_BCRYPT_COST else DEFAULT_BCRYPT_COST


def _scrypt_params(cost: int) -> tuple[int, int]:
    """(log2 N, p) for a bcrypt-style cost: the work doubles with every step, as bcrypt's.

    Cost 10 (etcd's default) is N = 2**14, r = 8, p = 1: 16 MiB and about 0.1 s on one
    core (Go's bcrypt at cost 10 takes about 0.06 s); cost 4 is N = 2**8, for tests.
    """
    log_n = cost + 4
    if log_n <= _MAX_LOG_N:
        return log_n, 1
    return _MAX_LOG_N, 1 << (log_n - _MAX_LOG_N)


def _scrypt(password: bytes, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    n = 1 << log_n
    need = 128 * r * (n + p + 2)  # OpenSSL's V and B arrays
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=_KEY_BYTES,
                          maxmem=need + (1 << 20))


def hash_password(password: str, cost: int = DEFAULT_BCRYPT_COST, *,
                  salt: bytes | None = None) -> str:
    """Hash a password for storage, before the request is proposed (never at apply time:
    the random salt would differ on every member).

    The result is self-describing, ``$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<key>`` (salt
    and key in standard base64), so a later ``--bcrypt-cost`` only affects new hashes,
    as with bcrypt. It is what the proposed request carries in ``hashedPassword``.
    ``cost`` must be in [4, 31] (see ``effective_bcrypt_cost``).

    >>> h = hash_password("pw", cost=4, salt=bytes(16)); h[:30]
    '$scrypt$ln=8,r=8,p=1$AAAAAAAAA'
    >>> verify_password("pw", h.encode()), verify_password("pW", h.encode())
    (True, False)
    """
    if not MIN_BCRYPT_COST <= cost <= MAX_BCRYPT_COST:
        raise ValueError(f"bcrypt cost {cost} is outside [{MIN_BCRYPT_COST}, {MAX_BCRYPT_COST}]")
    if salt is None:
        salt = os.urandom(_SALT_BYTES)
    log_n, p = _scrypt_params(cost)
    key = _scrypt(password.encode(), salt, log_n, _SCRYPT_R, p)
    b64 = base64.b64encode
    return f"$scrypt$ln={log_n},r={_SCRYPT_R},p={p}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, hashed: bytes) -> bool:
    """Whether ``password`` matches a stored hash (constant-time compare). A hash that is
    empty or malformed matches nothing. Slow by design: callers on the event loop may run
    it in an executor."""
    m = _HASH_RE.fullmatch(hashed.decode("ascii", "replace"))
    if m is None:
        return False
    log_n, r, p = int(m[1]), int(m[2]), int(m[3])
    if not (1 <= log_n <= _VERIFY_MAX_LOG_N and 1 <= r <= 32 and 1 <= p <= 1 << 18):
        return False
    try:
        salt = base64.b64decode(m[4], validate=True)
        want = base64.b64decode(m[5], validate=True)
    except binascii.Error:
        return False
    if len(want) != _KEY_BYTES:
        return False
    got = _scrypt(password.encode(), salt, log_n, r, p)
    return hmac.compare_digest(got, want)


# -- permissions ---------------------------------------------------------------------------


def is_valid_permission_range(key: bytes, range_end: bytes) -> bool:
    """etcd's check on a granted range (etcd PR 15294, in the 3.4 and 3.5 patch releases
    of 2023): a non-empty key, and a range end that is empty (the one key), ``"\\0"``
    (every key from ``key``), or after ``key``.

    >>> [is_valid_permission_range(k, e) for k, e in
    ...  [(b"a", b""), (b"a", b"\\0"), (b"a", b"b"), (b"", b"\\0"), (b"b", b"a"), (b"a", b"a")]]
    [True, True, True, False, False, False]
    """
    if not key:
        return False
    return not range_end or key < range_end or range_end == b"\x00"


class AuthStatus(NamedTuple):
    enabled: bool
    revision: int


class TokenSink(Protocol):
    """What the store needs from the token provider (see ``auth_tokens``)."""

    def assign(self, username: str, auth_revision: int, *, index: int, prefix: str) -> str:
        ...

    def invalidate_user(self, username: str) -> None:
        ...

    def disable(self) -> None:
        ...


class AuthStore:
    """The auth state of one member: see the module docstring for layout and rules."""

    def __init__(self, backend: LmdbBackend, tokens: TokenSink):
        self._backend = backend
        self.tokens = tokens
        self._enabled = False
        self._revision = 1
        self._users: dict[str, User] = {}
        self._roles: dict[str, Role] = {}
        self._changes = 0
        self.reload()

    def reload(self) -> None:
        """Rebuild the in-memory view from the table (on start, after a snapshot install)."""
        users: dict[str, User] = {}
        roles: dict[str, Role] = {}
        enabled, revision = False, 1
        with self._backend.env.begin(db=self._db()) as txn:
            for raw_key, raw in txn.cursor():
                key = bytes(raw_key)
                if key == _ENABLED:
                    enabled = bytes(raw) == b"\x01"
                elif key == _REVISION:
                    if len(raw) != _U64.size:
                        raise CorruptStore(f"malformed auth revision: {bytes(raw)!r}")
                    revision = _U64.unpack(raw)[0]
                elif key.startswith(_USER):
                    users[key[len(_USER):].decode()] = User.FromString(bytes(raw))
                elif key.startswith(_ROLE):
                    roles[key[len(_ROLE):].decode()] = Role.FromString(bytes(raw))
                else:
                    raise CorruptStore(f"unknown key in the auth table: {key!r}")
        self._users, self._roles = users, roles
        self._enabled, self._revision = enabled, revision
        self._changes += 1

    # -- queries (no transaction) -----------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def revision(self) -> int:
        """The auth revision (AuthStatus ``authRevision``; tokens and checks carry it)."""
        return self._revision

    @property
    def changes(self) -> int:
        """Grows on every change of the in-memory view (revision bump, enable, reload):
        caches derived from the store compare it to know they are stale."""
        return self._changes

    def status(self) -> AuthStatus:
        return AuthStatus(self._enabled, self._revision)

    def get_user(self, name: str) -> User | None:
        """The stored user (do not modify it), or None."""
        return self._users.get(name)

    def get_role(self, name: str) -> Role | None:
        """The stored role (do not modify it), or None."""
        return self._roles.get(name)

    def has_role(self, user: str, role: str) -> bool:
        u = self._users.get(user)
        return u is not None and role in u.roles

    def has_root_role(self, user: str) -> bool:
        return self.has_role(user, ROOT_ROLE)

    def user_get(self, name: str) -> list[str]:
        """UserGet: the user's roles, sorted."""
        user = self._users.get(name)
        if user is None:
            raise AuthUserNotFound()
        return list(user.roles)

    def user_list(self) -> list[str]:
        return sorted(self._users, key=str.encode)

    def role_get(self, name: str) -> list[Permission]:
        """RoleGet: the role's permissions; for role root, the one permission on every key."""
        role = self._roles.get(name)
        if role is None:
            raise AuthRoleNotFound()
        if name == ROOT_ROLE:
            return [_copy(ROOT_PERMISSION)]
        return [_copy(p) for p in role.keyPermission]

    def role_list(self) -> list[str]:
        return sorted(self._roles, key=str.encode)

    def password_hash_for_login(self, name: str) -> tuple[bytes, int]:
        """The first half of Authenticate's password check, cheap and on the loop: the
        stored hash and the auth revision it was read at. Raises ``AuthNotEnabled``, or
        ``AuthFailed`` for an unknown user or one added with ``no_password``."""
        if not self._enabled:
            raise AuthNotEnabled()
        user = self._users.get(name)
        if user is None or user.options.no_password:
            raise AuthFailed()
        return user.password, self._revision

    def check_password(self, name: str, password: str) -> int:
        """Authenticate's check (etcd's CheckPassword), done before proposing: returns the
        auth revision at which it passed, so the caller can retry if the revision moved
        before the Authenticate entry applied (as etcd does). Raises like
        ``password_hash_for_login``, or ``AuthFailed`` on a wrong password."""
        hashed, revision = self.password_hash_for_login(name)
        if not verify_password(password, hashed):
            raise AuthFailed()
        return revision

    # -- applied changes (inside the apply batch) ------------------------------------------

    def auth_enable(self, txn: lmdb.Transaction) -> None:
        """AuthEnable: a no-op when enabled; needs user root holding role root. Does not
        bump the revision."""
        if self._enabled:
            return
        root = self._users.get(ROOT_USER)
        if root is None:
            raise AuthRootUserNotExist()
        if ROOT_ROLE not in root.roles:
            raise AuthRootRoleNotExist()
        txn.put(_ENABLED, b"\x01", db=self._db())
        self._enabled = True
        self._changes += 1

    def auth_disable(self, txn: lmdb.Transaction) -> None:
        """AuthDisable: a no-op when disabled; otherwise bumps the revision and drops every
        token."""
        if not self._enabled:
            return
        txn.put(_ENABLED, b"\x00", db=self._db())
        self._enabled = False
        self._commit(txn)
        self.tokens.disable()

    def user_add(self, txn: lmdb.Transaction, name: str, hashed_password: str,
                 no_password: bool = False) -> None:
        """UserAdd. ``hashed_password`` is ``hash_password``'s result (ignored, and should be
        empty, for a ``no_password`` user, who can only log in by TLS common name)."""
        if not name:
            raise AuthUserEmpty()
        if name in self._users:
            raise AuthUserAlreadyExist()
        user = User(name=name.encode(), options=UserAddOptions(no_password=no_password))
        if not no_password:
            user.password = hashed_password.encode()
        self._put_user(txn, name, user)
        self._commit(txn)

    def user_delete(self, txn: lmdb.Transaction, name: str) -> None:
        """UserDelete; user root cannot go while auth is enabled. Drops the user's tokens."""
        if self._enabled and name == ROOT_USER:
            raise InvalidAuthMgmt()
        if name not in self._users:
            raise AuthUserNotFound()
        txn.delete(_USER + name.encode(), db=self._db())
        del self._users[name]
        self._commit(txn)
        self.tokens.invalidate_user(name)

    def user_change_password(self, txn: lmdb.Transaction, name: str,
                             hashed_password: str) -> None:
        """UserChangePassword (a ``no_password`` user keeps no password, as in etcd). Bumps
        the revision and drops the user's tokens either way."""
        old = self._users.get(name)
        if old is None:
            raise AuthUserNotFound()
        user = _copy(old)
        user.password = b"" if user.options.no_password else hashed_password.encode()
        self._put_user(txn, name, user)
        self._commit(txn)
        self.tokens.invalidate_user(name)

    def user_grant_role(self, txn: lmdb.Transaction, user: str, role: str) -> None:
        """UserGrantRole. Role root may be granted before it exists (etcdctl's ``auth
        enable`` relies on it); granting a role the user holds changes nothing."""
        old = self._users.get(user)
        if old is None:
            raise AuthUserNotFound()
        if role != ROOT_ROLE and role not in self._roles:
            raise AuthRoleNotFound()
        if role in old.roles:
            return
        updated = _copy(old)
        roles = sorted([*old.roles, role])
        del updated.roles[:]
        updated.roles.extend(roles)
        self._put_user(txn, user, updated)
        self._commit(txn)

    def user_revoke_role(self, txn: lmdb.Transaction, name: str, role: str) -> None:
        """UserRevokeRole; root keeps role root while auth is enabled."""
        if self._enabled and name == ROOT_USER and role == ROOT_ROLE:
            raise InvalidAuthMgmt()
        old = self._users.get(name)
        if old is None:
            raise AuthUserNotFound()
        if role not in old.roles:
            raise AuthRoleNotGranted()
        self._put_user(txn, name, _without_role(old, role))
        self._commit(txn)

    def role_add(self, txn: lmdb.Transaction, name: str) -> None:
        if not name:
            raise AuthRoleEmpty()
        if name in self._roles:
            raise AuthRoleAlreadyExist()
        self._put_role(txn, name, Role(name=name.encode()))
        self._commit(txn)

    def role_delete(self, txn: lmdb.Transaction, name: str) -> None:
        """RoleDelete, also taking the role from every user holding it (one revision);
        role root cannot go while auth is enabled."""
        if self._enabled and name == ROOT_ROLE:
            raise InvalidAuthMgmt()
        if name not in self._roles:
            raise AuthRoleNotFound()
        txn.delete(_ROLE + name.encode(), db=self._db())
        del self._roles[name]
        for user_name, user in list(self._users.items()):
            if name in user.roles:
                self._put_user(txn, user_name, _without_role(user, name))
        self._commit(txn)

    def role_grant_permission(self, txn: lmdb.Transaction, name: str,
                              perm: Permission | None) -> None:
        """RoleGrantPermission: adds the permission, or changes the type of the one with the
        same (key, range_end). Permissions stay sorted by key, stably (new ones after
        existing ones with the same key), which is the order RoleGet answers in."""
        if perm is None:
            raise AuthPermissionNotGiven()
        if not is_valid_permission_range(perm.key, perm.range_end):
            raise InvalidAuthMgmt()
        old = self._roles.get(name)
        if old is None:
            raise AuthRoleNotFound()
        role = _copy(old)
        perms = role.keyPermission
        for existing in perms:
            if existing.key == perm.key and existing.range_end == perm.range_end:
                existing.permType = perm.permType
                break
        else:
            keys = [p.key for p in perms]
            at = bisect_left(keys, perm.key)
            while at < len(keys) and keys[at] == perm.key:
                at += 1
            perms.insert(at, _copy(perm))
        self._put_role(txn, name, role)
        self._commit(txn)

    def role_revoke_permission(self, txn: lmdb.Transaction, name: str, key: bytes,
                               range_end: bytes) -> None:
        """RoleRevokePermission of every permission on exactly (key, range_end)."""
        old = self._roles.get(name)
        if old is None:
            raise AuthRoleNotFound()
        kept = [p for p in old.keyPermission if (p.key, p.range_end) != (key, range_end)]
        if len(kept) == len(old.keyPermission):
            raise AuthPermissionNotGranted()
        self._put_role(txn, name, Role(name=old.name, keyPermission=kept))
        self._commit(txn)

    def authenticate(self, name: str, *, index: int, prefix: str) -> str:
        """Apply an Authenticate entry (the password was checked before proposing; the
        entry carries no password): assign a token. ``index`` is the entry's raft index
        and ``prefix`` the random part chosen before proposing (simple tokens)."""
        if not self._enabled:
            raise AuthNotEnabled()
        user = self._users.get(name)
        if user is None or user.options.no_password:
            raise AuthFailed()
        return self.tokens.assign(name, self._revision, index=index, prefix=prefix)

    def apply(self, txn: lmdb.Transaction, request: Message) -> Message:
        """Apply one Auth* request message (not Authenticate) and return its response
        message, header left empty for the caller to fill.

        Passwords must arrive hashed (``hashedPassword``); a request still carrying a plain
        ``password`` is refused with ValueError, so one never reaches the log. For example
        ``store.apply(txn, AuthRoleAddRequest(name="r"))`` returns ``AuthRoleAddResponse()``.
        """
        handler = _HANDLERS.get(type(request))
        if handler is None:
            raise TypeError(f"not an auth request: {type(request).__name__}")
        if getattr(request, "password", ""):
            raise ValueError("a plain-text password reached the apply step; hash it first")
        return handler(self, txn, request)

    # -- internals -------------------------------------------------------------------------

    def _db(self) -> lmdb._Database:
        return self._backend.db(b"auth")

    def _commit(self, txn: lmdb.Transaction) -> None:
        self._revision += 1
        txn.put(_REVISION, _U64.pack(self._revision), db=self._db())
        self._changes += 1

    def _put_user(self, txn: lmdb.Transaction, name: str, user: User) -> None:
        txn.put(_USER + name.encode(), user.SerializeToString(), db=self._db())
        self._users[name] = user

    def _put_role(self, txn: lmdb.Transaction, name: str, role: Role) -> None:
        txn.put(_ROLE + name.encode(), role.SerializeToString(), db=self._db())
        self._roles[name] = role


_M = TypeVar("_M", bound=Message)


def _copy(message: _M) -> _M:
    clone = type(message)()
    clone.CopyFrom(message)
    return clone


def _without_role(user: User, role: str) -> User:
    updated = _copy(user)
    kept = [r for r in user.roles if r != role]
    del updated.roles[:]
    updated.roles.extend(kept)
    return updated


# -- request dispatch (AuthStore.apply) ------------------------------------------------------


def _enable(s: AuthStore, t: lmdb.Transaction, _r: Message) -> Message:
    s.auth_enable(t)
    return rpc_pb2.AuthEnableResponse()


def _disable(s: AuthStore, t: lmdb.Transaction, _r: Message) -> Message:
    s.auth_disable(t)
    return rpc_pb2.AuthDisableResponse()


def _status(s: AuthStore, _t: lmdb.Transaction, _r: Message) -> Message:
    return rpc_pb2.AuthStatusResponse(enabled=s.enabled, authRevision=s.revision)


def _user_add(s: AuthStore, t: lmdb.Transaction, r: rpc_pb2.AuthUserAddRequest) -> Message:
    s.user_add(t, r.name, r.hashedPassword, r.options.no_password)
    return rpc_pb2.AuthUserAddResponse()


def _user_get(s: AuthStore, _t: lmdb.Transaction, r: rpc_pb2.AuthUserGetRequest) -> Message:
    return rpc_pb2.AuthUserGetResponse(roles=s.user_get(r.name))


def _user_list(s: AuthStore, _t: lmdb.Transaction, _r: Message) -> Message:
    return rpc_pb2.AuthUserListResponse(users=s.user_list())


def _user_delete(s: AuthStore, t: lmdb.Transaction,
                 r: rpc_pb2.AuthUserDeleteRequest) -> Message:
    s.user_delete(t, r.name)
    return rpc_pb2.AuthUserDeleteResponse()


def _user_change_password(s: AuthStore, t: lmdb.Transaction,
                          r: rpc_pb2.AuthUserChangePasswordRequest) -> Message:
    s.user_change_password(t, r.name, r.hashedPassword)
    return rpc_pb2.AuthUserChangePasswordResponse()


def _user_grant_role(s: AuthStore, t: lmdb.Transaction,
                     r: rpc_pb2.AuthUserGrantRoleRequest) -> Message:
    s.user_grant_role(t, r.user, r.role)
    return rpc_pb2.AuthUserGrantRoleResponse()


def _user_revoke_role(s: AuthStore, t: lmdb.Transaction,
                      r: rpc_pb2.AuthUserRevokeRoleRequest) -> Message:
    s.user_revoke_role(t, r.name, r.role)
    return rpc_pb2.AuthUserRevokeRoleResponse()


def _role_add(s: AuthStore, t: lmdb.Transaction, r: rpc_pb2.AuthRoleAddRequest) -> Message:
    s.role_add(t, r.name)
    return rpc_pb2.AuthRoleAddResponse()


def _role_get(s: AuthStore, _t: lmdb.Transaction, r: rpc_pb2.AuthRoleGetRequest) -> Message:
    return rpc_pb2.AuthRoleGetResponse(perm=s.role_get(r.role))


def _role_list(s: AuthStore, _t: lmdb.Transaction, _r: Message) -> Message:
    return rpc_pb2.AuthRoleListResponse(roles=s.role_list())


def _role_delete(s: AuthStore, t: lmdb.Transaction,
                 r: rpc_pb2.AuthRoleDeleteRequest) -> Message:
    s.role_delete(t, r.role)
    return rpc_pb2.AuthRoleDeleteResponse()


def _role_grant(s: AuthStore, t: lmdb.Transaction,
                r: rpc_pb2.AuthRoleGrantPermissionRequest) -> Message:
    s.role_grant_permission(t, r.name, r.perm if r.HasField("perm") else None)
    return rpc_pb2.AuthRoleGrantPermissionResponse()


def _role_revoke(s: AuthStore, t: lmdb.Transaction,
                 r: rpc_pb2.AuthRoleRevokePermissionRequest) -> Message:
    s.role_revoke_permission(t, r.role, r.key, r.range_end)
    return rpc_pb2.AuthRoleRevokePermissionResponse()


_HANDLERS = {
    rpc_pb2.AuthEnableRequest: _enable,
    rpc_pb2.AuthDisableRequest: _disable,
    rpc_pb2.AuthStatusRequest: _status,
    rpc_pb2.AuthUserAddRequest: _user_add,
    rpc_pb2.AuthUserGetRequest: _user_get,
    rpc_pb2.AuthUserListRequest: _user_list,
    rpc_pb2.AuthUserDeleteRequest: _user_delete,
    rpc_pb2.AuthUserChangePasswordRequest: _user_change_password,
    rpc_pb2.AuthUserGrantRoleRequest: _user_grant_role,
    rpc_pb2.AuthUserRevokeRoleRequest: _user_revoke_role,
    rpc_pb2.AuthRoleAddRequest: _role_add,
    rpc_pb2.AuthRoleGetRequest: _role_get,
    rpc_pb2.AuthRoleListRequest: _role_list,
    rpc_pb2.AuthRoleDeleteRequest: _role_delete,
    rpc_pb2.AuthRoleGrantPermissionRequest: _role_grant,
    rpc_pb2.AuthRoleRevokePermissionRequest: _role_revoke,
}
