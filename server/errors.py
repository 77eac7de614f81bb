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
