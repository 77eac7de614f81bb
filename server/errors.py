"""The one home of etcd's error strings.

Storage, server and (later) lease and auth code raise domain exceptions that know
nothing of gRPC. ``WIRE_ERRORS`` maps each exception type to the gRPC status code name
and the exact message etcd sends, because clients match on both (clientv3 maps by exact
text, python clients by code). ``wire_error`` resolves an exception through its class
hierarchy; anything unmapped is a bug and the API layer answers it as UNKNOWN.
"""

from __future__ import annotations

from etcdlite.storage import errors as storage_errors


class EtcdError(Exception):
    """Base of every server-layer domain error."""


class EmptyKey(EtcdError):
    """A request (or a compare) names the empty key."""


class KeyNotFound(EtcdError):
    """ignore_value/ignore_lease on a key that does not exist, or an empty RequestOp."""


class ValueProvided(EtcdError):
    """ignore_value together with a value."""


class LeaseProvided(EtcdError):
    """ignore_lease together with a lease."""


class TooManyOps(EtcdError):
    """A txn has more compares or ops than --max-txn-ops."""


class DuplicateKey(EtcdError):
    """A txn writes one key twice (see ``validate.check_intervals``)."""


class InvalidSortOption(EtcdError):
    """A Range names a sort order or target that does not exist."""


class LeaseNotFound(EtcdError):
    """A put names a lease that does not exist."""


class LeaseExists(EtcdError):
    """LeaseGrant with an id that is already in use."""


class LeaseTTLTooLarge(EtcdError):
    """LeaseGrant with a TTL above the maximum."""


class NoSpace(EtcdError):
    """A write while the NOSPACE alarm is raised."""


class RequestTooLarge(EtcdError):
    """A proposal is bigger than --max-request-bytes."""


class ServerStopped(EtcdError):
    """The member is shutting down (or stopped after a fatal error)."""


class Unimplemented(EtcdError):
    """An RPC etcdlite does not serve yet."""


WIRE_ERRORS: dict[type[BaseException], tuple[str, str]] = {
    EmptyKey: ("INVALID_ARGUMENT", "etcdserver: key is not provided"),
    KeyNotFound: ("INVALID_ARGUMENT", "etcdserver: key not found"),
    ValueProvided: ("INVALID_ARGUMENT", "etcdserver: value is provided"),
    LeaseProvided: ("INVALID_ARGUMENT", "etcdserver: lease is provided"),
    TooManyOps: ("INVALID_ARGUMENT", "etcdserver: too many operations in txn request"),
    DuplicateKey: ("INVALID_ARGUMENT", "etcdserver: duplicate key given in txn request"),
    InvalidSortOption: ("INVALID_ARGUMENT", "etcdserver: invalid sort option"),
    RequestTooLarge: ("INVALID_ARGUMENT", "etcdserver: request is too large"),
    LeaseNotFound: ("NOT_FOUND", "etcdserver: requested lease not found"),
    LeaseExists: ("FAILED_PRECONDITION", "etcdserver: lease already exists"),
    NoSpace: ("RESOURCE_EXHAUSTED", "etcdserver: mvcc: database space exceeded"),
    LeaseTTLTooLarge: ("OUT_OF_RANGE", "etcdserver: too large lease TTL"),
    ServerStopped: ("UNAVAILABLE", "etcdserver: server stopped"),
    storage_errors.Compacted: (
        "OUT_OF_RANGE",
        "etcdserver: mvcc: required revision has been compacted",
    ),
    storage_errors.FutureRevision: (
        "OUT_OF_RANGE",
        "etcdserver: mvcc: required revision is a future revision",
    ),
}


def wire_error(exc: BaseException) -> tuple[str, str] | None:
    """``(gRPC code name, etcd message)`` for a domain exception, or None if unmapped.

    >>> wire_error(EmptyKey())
    ('INVALID_ARGUMENT', 'etcdserver: key is not provided')
    """
    if isinstance(exc, Unimplemented):
        return "UNIMPLEMENTED", str(exc)
    for cls in type(exc).__mro__:
        found = WIRE_ERRORS.get(cls)
        if found is not None:
            return found
    return None


# -- auth (issue #9) ---------------------------------------------------------------------
#
# ``WIRE_ERRORS.update`` below puts the auth errors in the same table ``wire_error``
# reads. Codes and texts are etcd's (rpctypes): the "etcdserver: ..." strings clients
# match on. The ``Maintenance*`` errors are etcd 3.5's unmapped "auth: ..." texts, which
# its maintenance service (Defragment, Snapshot, Hash, HashKV, MoveLeader) returns raw,
# so they reach clients as UNKNOWN.


class AuthError(EtcdError):
    """Base of the auth errors."""


class AuthRootUserNotExist(AuthError):
    """AuthEnable without a user named root."""


class AuthRootRoleNotExist(AuthError):
    """AuthEnable while user root does not hold role root."""


class AuthUserAlreadyExist(AuthError):
    """UserAdd of a name that is taken."""


class AuthUserEmpty(AuthError):
    """UserAdd with an empty name; or a permission-checked call without a user (no token)."""


class AuthUserNotFound(AuthError):
    """User management (or the admin check) names a user that does not exist."""


class AuthRoleAlreadyExist(AuthError):
    """RoleAdd of a name that is taken."""


class AuthRoleNotFound(AuthError):
    """Role management names a role that does not exist."""


class AuthRoleEmpty(AuthError):
    """RoleAdd with an empty name."""


class AuthFailed(AuthError):
    """Authenticate: unknown user, wrong password, or a user without password."""


class AuthPermissionNotGiven(AuthError):
    """RoleGrantPermission without a permission."""


class PermissionDenied(AuthError):
    """The user's roles do not grant the access the request needs."""


class AuthRoleNotGranted(AuthError):
    """UserRevokeRole of a role the user does not hold."""


class AuthPermissionNotGranted(AuthError):
    """RoleRevokePermission of a (key, range_end) the role does not hold."""


class AuthNotEnabled(AuthError):
    """Authenticate while auth is disabled."""


class InvalidAuthToken(AuthError):
    """A token that is unknown, malformed, badly signed or expired."""


class InvalidAuthMgmt(AuthError):
    """Deleting user or role root, or revoking root from root, while auth is enabled; or a
    permission whose key is empty or whose range is empty."""


class AuthOldRevision(AuthError):
    """The auth revision a request was checked at is older than the store's: an auth change
    happened in between (clientv3 re-authenticates and retries on this text)."""


class AuthVerifyOnly(AuthError):
    """Authenticate with a JWT provider that only has a public key (etcd leaves it unmapped)."""


class MaintenanceUserEmpty(AuthError):
    """An admin-only maintenance call without a user (etcd's raw, unmapped error)."""


class MaintenanceUserNotFound(AuthError):
    """An admin-only maintenance call by a user that does not exist (raw, unmapped)."""


class MaintenancePermissionDenied(AuthError):
    """An admin-only maintenance call by a user without role root (raw, unmapped)."""


class MaintenanceInvalidAuthToken(AuthError):
    """An admin-only maintenance call with a bad token (raw, unmapped)."""


AUTH_INVALID_OPTIONS = "auth: invalid auth options"
AUTH_MISSING_KEY = "auth: missing key data"
AUTH_KEY_MISMATCH = "auth: public and private keys don't match"


class AuthConfigError(AuthError):
    """``--auth-token`` that etcd would refuse at startup (never sent to a client).

    ``str(exc)`` is etcd's message (``AUTH_INVALID_OPTIONS``, ``AUTH_MISSING_KEY``,
    ``AUTH_KEY_MISMATCH`` or "unsupported signing method: ..."); ``detail`` says which
    option and why, for the log.
    """

    def __init__(self, message: str = AUTH_INVALID_OPTIONS, detail: str = ""):
        super().__init__(message)
        self.detail = detail


WIRE_ERRORS.update({
    AuthRootUserNotExist: ("FAILED_PRECONDITION", "etcdserver: root user does not exist"),
    AuthRootRoleNotExist: ("FAILED_PRECONDITION", "etcdserver: root user does not have root role"),
    AuthUserAlreadyExist: ("FAILED_PRECONDITION", "etcdserver: user name already exists"),
    AuthUserEmpty: ("INVALID_ARGUMENT", "etcdserver: user name is empty"),
    AuthUserNotFound: ("FAILED_PRECONDITION", "etcdserver: user name not found"),
    AuthRoleAlreadyExist: ("FAILED_PRECONDITION", "etcdserver: role name already exists"),
    AuthRoleNotFound: ("FAILED_PRECONDITION", "etcdserver: role name not found"),
    AuthRoleEmpty: ("INVALID_ARGUMENT", "etcdserver: role name is empty"),
    AuthFailed: (
        "INVALID_ARGUMENT",
        "etcdserver: authentication failed, invalid user ID or password",
    ),
    AuthPermissionNotGiven: ("INVALID_ARGUMENT", "etcdserver: permission not given"),
    PermissionDenied: ("PERMISSION_DENIED", "etcdserver: permission denied"),
    AuthRoleNotGranted: ("FAILED_PRECONDITION", "etcdserver: role is not granted to the user"),
    AuthPermissionNotGranted: (
        "FAILED_PRECONDITION",
        "etcdserver: permission is not granted to the role",
    ),
    AuthNotEnabled: ("FAILED_PRECONDITION", "etcdserver: authentication is not enabled"),
    InvalidAuthToken: ("UNAUTHENTICATED", "etcdserver: invalid auth token"),
    InvalidAuthMgmt: ("INVALID_ARGUMENT", "etcdserver: invalid auth management"),
    AuthOldRevision: ("INVALID_ARGUMENT", "etcdserver: revision of auth store is old"),
    AuthVerifyOnly: ("UNKNOWN", "auth: token signing attempted with verify-only key"),
    MaintenanceUserEmpty: ("UNKNOWN", "auth: user name is empty"),
    MaintenanceUserNotFound: ("UNKNOWN", "auth: user not found"),
    MaintenancePermissionDenied: ("UNKNOWN", "auth: permission denied"),
    MaintenanceInvalidAuthToken: ("UNKNOWN", "auth: invalid auth token"),
})

WATCH_PERMISSION_DENIED = (
    "rpc error: code = PermissionDenied desc = " + WIRE_ERRORS[PermissionDenied][1]
)
"""The ``cancel_reason`` of a watch create refused by auth (etcd sends the Go text of the
gRPC error, not a status): no user, a bad token, or no READ on the range."""

