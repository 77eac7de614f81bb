"""Request checks done before anything is proposed, in etcd's order.

Every check raises a domain error from ``etcdlite.server.errors``; none reads the store.
The txn duplicate-key rule (``check_intervals``) mirrors etcd exactly, quirks included:

* within one op list, two puts of a key, or a put whose key lies in a delete range of
  the same list (or of an earlier nested txn), is a duplicate; two deletes are not;
* a nested txn's success and failure branches may put the same key (only one runs), but
  a key put by a nested txn and again at an outer level is a duplicate;
* delete ranges are compared as plain byte intervals ``[key, range_end)``, so a
  "from key" delete (range_end ``\\x00``) is an empty interval and conflicts with nothing.

Example: ``success=[put a, delete [a, c)]`` -> DuplicateKey;
``success=[txn(success=[put a], failure=[put a])]`` -> fine.
"""

from __future__ import annotations

from etcdlite.protos.rpc_pb2 import (
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    TxnRequest,
)
from etcdlite.server.errors import (
    DuplicateKey,
    EmptyKey,
    InvalidSortOption,
    KeyNotFound,
    LeaseProvided,
    TooManyOps,
    ValueProvided,
)

_SORT_TARGETS = frozenset(RangeRequest.SortTarget.values())


def check_range(r: RangeRequest) -> None:
    """Empty key and unknown sort targets are refused.

    An unknown sort *order* is accepted, as etcd 3.5.1 does: it reads the whole range
    and sorts nothing. An unknown sort *target* crashes etcd 3.5.1 (and 3.4); later etcd
    versions answer "invalid sort option", and so does etcdlite.
    """
    if not r.key:
        raise EmptyKey()
    if r.sort_target not in _SORT_TARGETS:
        raise InvalidSortOption()


def check_put(r: PutRequest) -> None:
    if not r.key:
        raise EmptyKey()
    if r.ignore_value and r.value:
        raise ValueProvided()
    if r.ignore_lease and r.lease != 0:
        raise LeaseProvided()


def check_delete(r: DeleteRangeRequest) -> None:
    if not r.key:
        raise EmptyKey()


def check_txn(r: TxnRequest, max_txn_ops: int) -> None:
    """Op counts, empty keys and empty ops, recursively (nested txns get what is left)."""
    opc = max(len(r.compare), len(r.success), len(r.failure))
    if opc > max_txn_ops:
        raise TooManyOps()
    for c in r.compare:
        if not c.key:
            raise EmptyKey()
    for op in r.success:
        _check_op(op, max_txn_ops - opc)
    for op in r.failure:
        _check_op(op, max_txn_ops - opc)


def _check_op(op: RequestOp, max_txn_ops: int) -> None:
    which = op.WhichOneof("request")
    if which == "request_range":
        check_range(op.request_range)
    elif which == "request_put":
        check_put(op.request_put)
    elif which == "request_delete_range":
        check_delete(op.request_delete_range)
    elif which == "request_txn":
        check_txn(op.request_txn, max_txn_ops)
    else:
        raise KeyNotFound()


Interval = tuple[bytes, bytes | None]
"""``(start, end)``; end None = the single key ``start``."""


def _hits(dels: list[Interval], key: bytes) -> bool:
    for start, end in dels:
        if end is None:
            if key == start:
                return True
        elif start <= key < end:
            return True
    return False


def check_intervals(ops: list[RequestOp] | object) -> tuple[set[bytes], list[Interval]]:
    """Raise DuplicateKey if the op list writes a key twice (see the module docstring).

    Returns the keys put and the delete intervals of the list, nested txns included.
    """
    dels: list[Interval] = []
    for op in ops:  # type: ignore[attr-defined]
        if op.WhichOneof("request") == "request_delete_range":
            d = op.request_delete_range
            dels.append((d.key, d.range_end if d.range_end else None))

    puts: set[bytes] = set()
    for op in ops:  # type: ignore[attr-defined]
        if op.WhichOneof("request") != "request_txn":
            continue
        puts_then, dels_then = check_intervals(op.request_txn.success)
        puts_else, dels_else = check_intervals(op.request_txn.failure)
        for k in puts_then:
            if k in puts or _hits(dels, k):
                raise DuplicateKey()
            puts.add(k)
        for k in puts_else:
            if (k in puts and k not in puts_then) or _hits(dels, k):
                raise DuplicateKey()
            puts.add(k)
        dels.extend(dels_then)
        dels.extend(dels_else)

    for op in ops:  # type: ignore[attr-defined]
        if op.WhichOneof("request") != "request_put":
            continue
        k = op.request_put.key
        if k in puts or _hits(dels, k):
            raise DuplicateKey()
        puts.add(k)
    return puts, dels
