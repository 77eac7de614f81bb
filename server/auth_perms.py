"""Permission checks: may this user do what this request asks?

A user's permissions are the union of its roles' permissions, kept per user as two sets
of merged key intervals, one for READ and one for WRITE (READWRITE counts for both) —
etcd's rangePermCache. A granted (key, range_end) is the interval:

* ``range_end == b""``   -> the one key: [key, key + b"\\0")
* ``range_end == b"\\0"`` -> every key from ``key`` on: [key, +inf)
* otherwise              -> [key, range_end) (the store refuses empty ranges)

Merging joins intervals that overlap or touch ([a, b) and [b, c) make [a, c)), so the
sets are sorted, disjoint and have gaps between them. A request's (key, range_end) is
permitted when:

* a single key (``range_end == b""``) lies in some interval;
* a range [key, range_end) (``b"\\0"`` meaning +inf) lies inside one merged interval;
* an empty range (``key >= range_end``, range_end not ``b"\\0"``) needs ``key`` itself,
  which is what etcd's interval tree answers for it;
* the empty key is never permitted (etcd's affine byte order puts it at +inf).

Users holding role root bypass every check. The cache is rebuilt lazily when the store
changes (``AuthStore.changes``), i.e. on every auth revision bump.

Worked example: role r grants READ on [a, c) and on the key c, READWRITE on prefix d::

    read  = [a, c) + [c, c\\0) + [d, e)  ->  [a, c\\0), [d, e)
    write = [d, e)
    is_range_permitted("u", b"b", b"", READ)          True   (b is in [a, c\\0))
    is_range_permitted("u", b"a", b"c\\0", READ)       True   (one merged interval)
    is_range_permitted("u", b"a", b"d\\0", READ)       False  (the gap [c\\0, d))
    is_range_permitted("u", b"c", b"", WRITE)         False

The ``check_*`` functions follow etcd's authApplierV3 and v3_server checks, and raise:
``AuthUserEmpty`` (no user: no token while auth is on), ``AuthOldRevision`` (the auth
state changed since the request's identity was checked), ``PermissionDenied``; they pass
silently while auth is disabled.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from etcdlite.protos.auth_pb2 import Permission
from etcdlite.protos.rpc_pb2 import (
    AuthRoleGetRequest,
    AuthUserGetRequest,
    DeleteRangeRequest,
    LeaseTimeToLiveRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    TxnRequest,
    WatchCreateRequest,
)
from etcdlite.server.auth_store import AuthStore
from etcdlite.server.auth_tokens import AuthInfo
from etcdlite.server.errors import (
    AuthError,
    AuthOldRevision,
    AuthUserEmpty,
    AuthUserNotFound,
    MaintenancePermissionDenied,
    MaintenanceUserEmpty,
    MaintenanceUserNotFound,
    PermissionDenied,
)

READ = Permission.READ
WRITE = Permission.WRITE
READWRITE = Permission.READWRITE

Interval = tuple[bytes, bytes | None]
"""[begin, end) over byte strings; end None is +inf."""


def permission_interval(key: bytes, range_end: bytes) -> Interval | None:
    """The interval a granted permission covers, or None if it covers nothing (an empty
    key or an empty range, which the store refuses to grant anyway, as recent etcd does).

    >>> permission_interval(b"a", b""), permission_interval(b"a", b"\\0")
    ((b'a', b'a\\x00'), (b'a', None))
    """
    if not key:
        return None
    if not range_end:
        return key, key + b"\x00"
    if range_end == b"\x00":
        return key, None
    if key >= range_end:
        return None
    return key, range_end


class RangeSet:
    """A union of key intervals, merged: sorted, disjoint, and never touching.

    >>> s = RangeSet([(b"a", b"c"), (b"c", b"d"), (b"x", None)]); s.intervals
    [(b'a', b'd'), (b'x', None)]
    >>> s.covers(b"b", b"c\\xff"), s.covers(b"b", b"e"), s.covers(b"z", b"\\0")
    (True, False, True)
    """

    def __init__(self, intervals: Iterable[Interval]):
        merged: list[Interval] = []
        for begin, end in sorted(intervals, key=lambda iv: iv[0]):
            if merged:
                last_begin, last_end = merged[-1]
                if last_end is None or begin <= last_end:
                    if last_end is not None and (end is None or end > last_end):
                        merged[-1] = (last_begin, end)
                    continue
            merged.append((begin, end))
        self.intervals = merged
        self._begins = [begin for begin, _ in merged]

    def covers(self, key: bytes, range_end: bytes) -> bool:
        """Whether the request's (key, range_end) is permitted (rules in the module doc)."""
        if not key:
            return False
        at = bisect_right(self._begins, key) - 1
        if at < 0:
            return False
        _, end = self.intervals[at]
        if not range_end or (range_end != b"\x00" and key >= range_end):
            return end is None or key < end
        if range_end == b"\x00":
            return end is None
        return end is None or end >= range_end


@dataclass(frozen=True)
class UserPermissions:
    read: RangeSet
    write: RangeSet


def merged_permissions(perms: Iterable[Permission]) -> UserPermissions:
    """The READ and WRITE sets of a collection of permissions (unknown types grant
    nothing, as in etcd)."""
    read: list[Interval] = []
    write: list[Interval] = []
    for perm in perms:
        interval = permission_interval(perm.key, perm.range_end)
        if interval is None:
            continue
        if perm.permType in (READ, READWRITE):
            read.append(interval)
        if perm.permType in (WRITE, READWRITE):
            write.append(interval)
    return UserPermissions(RangeSet(read), RangeSet(write))


LeaseKeys = Callable[[int], Iterable[bytes]]
"""Lease id -> the keys attached to it (empty for an unknown lease or id 0)."""


class AuthChecker:
    """Answers permission questions against an ``AuthStore``, caching each user's merged
    permissions until the store changes.

    Example::

        checker = AuthChecker(store)
        checker.is_range_permitted("alice", b"foo", b"", READ)  # bool, no auth-enabled test
        checker.check_range(info, RangeRequest(key=b"foo"))     # raises if not allowed
    """

    def __init__(self, store: AuthStore):
        self._store = store
        self._cache: dict[str, UserPermissions] = {}
        self._cache_changes = -1

    # -- the interval question ------------------------------------------------------------

    def user_permissions(self, username: str) -> UserPermissions | None:
        """The user's merged permissions (cached), or None for an unknown user."""
        store = self._store
        if store.changes != self._cache_changes:
            self._cache.clear()
            self._cache_changes = store.changes
        found = self._cache.get(username)
        if found is None:
            user = store.get_user(username)
            if user is None:
                return None
            perms: list[Permission] = []
            for role_name in user.roles:
                role = store.get_role(role_name)
                if role is not None:
                    perms.extend(role.keyPermission)
            found = self._cache[username] = merged_permissions(perms)
        return found

    def is_range_permitted(self, username: str, key: bytes, range_end: bytes,
                           perm_type: int) -> bool:
        """Whether ``username`` may READ or WRITE (key, range_end); role root may do
        anything, an unknown user nothing. Ignores whether auth is enabled."""
        if perm_type not in (READ, WRITE):
            raise ValueError(f"ask for READ or WRITE, not {perm_type}")
        if self._store.has_root_role(username):
            return True
        perms = self.user_permissions(username)
        if perms is None:
            return False
        ranges = perms.read if perm_type == READ else perms.write
        return ranges.covers(key, range_end)

    def check_op(self, info: AuthInfo | None, key: bytes, range_end: bytes,
                 perm_type: int) -> None:
        """etcd's isOpPermitted: nothing while auth is off; then a user (``AuthUserEmpty``),
        a revision not older than the store's (``AuthOldRevision``), and the permission
        (``PermissionDenied``, also for a user that no longer exists)."""
        store = self._store
        if not store.enabled:
            return
        if info is None or info.revision == 0:
            raise AuthUserEmpty()
        if info.revision < store.revision:
            raise AuthOldRevision()
        if not self.is_range_permitted(info.username, key, range_end, perm_type):
            raise PermissionDenied()

    # -- per request kind -----------------------------------------------------------------

    def check_range(self, info: AuthInfo | None, req: RangeRequest) -> None:
        """Range: READ on [key, range_end)."""
        self.check_op(info, req.key, req.range_end, READ)

    def check_put(self, info: AuthInfo | None, req: PutRequest,
                  lease_keys: Iterable[bytes] = ()) -> None:
        """Put: WRITE on the key; WRITE on every key already attached to the put's lease
        (``lease_keys``: a user who could not revoke the lease may not extend it); READ on
        the key when ``prev_kv`` is asked for."""
        self.check_op(info, req.key, b"", WRITE)
        for key in lease_keys:
            self.check_op(info, key, b"", WRITE)
        if req.prev_kv:
            self.check_op(info, req.key, b"", READ)

    def check_delete_range(self, info: AuthInfo | None, req: DeleteRangeRequest) -> None:
        """DeleteRange: WRITE on the range; READ on it too when ``prev_kv`` is asked for."""
        self.check_op(info, req.key, req.range_end, WRITE)
        if req.prev_kv:
            self.check_op(info, req.key, req.range_end, READ)

    def check_txn(self, info: AuthInfo | None, req: TxnRequest,
                  lease_keys: LeaseKeys | None = None) -> None:
        """Txn: READ for every compare, then every op of both branches by its kind, nested
        txns included, recursively (whichever branch runs, the whole txn is checked
        first). ``lease_keys`` looks up the keys attached to a put's lease."""
        for cmp in req.compare:
            self.check_op(info, cmp.key, cmp.range_end, READ)
        for op in (*req.success, *req.failure):
            self._check_request_op(info, op, lease_keys)

    def _check_request_op(self, info: AuthInfo | None, op: RequestOp,
                          lease_keys: LeaseKeys | None) -> None:
        kind = op.WhichOneof("request")
        if kind == "request_range":
            self.check_range(info, op.request_range)
        elif kind == "request_put":
            put = op.request_put
            keys = lease_keys(put.lease) if lease_keys is not None and put.lease else ()
            self.check_put(info, put, keys)
        elif kind == "request_delete_range":
            self.check_delete_range(info, op.request_delete_range)
        elif kind == "request_txn":
            self.check_txn(info, op.request_txn, lease_keys)

    def check_watch(self, info: AuthInfo | None, req: WatchCreateRequest) -> None:
        """Watch create: READ on the watched range."""
        self.check_op(info, req.key, req.range_end, READ)

    def check_lease_revoke(self, info: AuthInfo | None, keys: Iterable[bytes]) -> None:
        """LeaseRevoke: WRITE on every key attached to the lease."""
        for key in keys:
            self.check_op(info, key, b"", WRITE)

    def check_lease_time_to_live(self, info: AuthInfo | None, req: LeaseTimeToLiveRequest,
                                 keys: Iterable[bytes]) -> None:
        """LeaseTimeToLive with ``keys``: READ on every attached key (etcd 3.5.9+);
        without ``keys`` nothing is checked."""
        if req.keys:
            for key in keys:
                self.check_op(info, key, b"", READ)

    def check_admin(self, info: AuthInfo | None) -> None:
        """etcd's IsAdminPermitted, for AuthEnable/Disable/Status and user and role
        management: a user (``AuthUserEmpty``) that exists (``AuthUserNotFound``) and holds
        role root (``PermissionDenied``). The auth revision is not checked."""
        store = self._store
        if not store.enabled:
            return
        if info is None or not info.username:
            raise AuthUserEmpty()
        if store.get_user(info.username) is None:
            raise AuthUserNotFound()
        if not store.has_root_role(info.username):
            raise PermissionDenied()

    def check_user_get(self, info: AuthInfo | None, req: AuthUserGetRequest) -> None:
        """UserGet: an admin, or the user asking about itself."""
        try:
            self.check_admin(info)
        except AuthError:
            if req.name != (info.username if info is not None else ""):
                raise

    def check_role_get(self, info: AuthInfo | None, req: AuthRoleGetRequest) -> None:
        """RoleGet: an admin, or a user holding that role."""
        try:
            self.check_admin(info)
        except AuthError:
            if info is None or not self._store.has_role(info.username, req.role):
                raise

    def check_maintenance_admin(self, info: AuthInfo | None) -> None:
        """Defragment, Snapshot, Hash, HashKV, MoveLeader: ``check_admin`` with etcd 3.5's
        raw errors, which reach clients as UNKNOWN "auth: ..." (``Maintenance*``). A bad
        token there is ``MaintenanceInvalidAuthToken`` (the caller's token lookup)."""
        try:
            self.check_admin(info)
        except AuthUserEmpty as exc:
            raise MaintenanceUserEmpty() from exc
        except AuthUserNotFound as exc:
            raise MaintenanceUserNotFound() from exc
        except PermissionDenied as exc:
            raise MaintenancePermissionDenied() from exc
