"""etcd's KV semantics over MVCC views: the one implementation of Range, Put,
DeleteRange and Txn, used by the read path (ranges, read-only txns) and by the applier
(writes). Requests arrive already validated (``validate``).

Ranges: ``range_end`` empty = the single key, ``\\x00`` = every key >= key, otherwise
``[key, range_end)``. With a sort order or a min/max filter the whole range is read,
filtered, sorted, then cut to ``limit``; otherwise one key more than ``limit`` is read to
learn ``more``. ``count`` is taken before limit and filters. A sort target other than
KEY with order NONE sorts ascending (but, as in etcd, still reads only ``limit + 1``).

Txn: every compare (nested ones too) is evaluated on the snapshot taken before any op
runs; the chosen branch's puts are then checked (ignore_value/ignore_lease need the key)
(and their leases must exist) and its ranges' revisions checked, all before the first
write, so a failing txn changes nothing. Sub-responses carry a header holding only the
revision; nested txn responses an empty header.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from etcdlite.protos.kv_pb2 import KeyValue
from etcdlite.protos.rpc_pb2 import (
    Compare,
    DeleteRangeRequest,
    DeleteRangeResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    ResponseOp,
    TxnRequest,
    TxnResponse,
)
from etcdlite.server.errors import KeyNotFound, LeaseNotFound
from etcdlite.storage.errors import Compacted, FutureRevision
from etcdlite.storage.mvcc import ReadView, WriteTxn

LeaseExists = Callable[[int], bool]
"""Answers whether a lease id names a live lease (the lessor's lookup)."""

_NONE = RangeRequest.NONE
_ASCEND = RangeRequest.ASCEND
_DESCEND = RangeRequest.DESCEND
_SORT_KEYS: dict[int, Callable[[KeyValue], object]] = {
    RangeRequest.KEY: lambda kv: kv.key,
    RangeRequest.VERSION: lambda kv: kv.version,
    RangeRequest.CREATE: lambda kv: kv.create_revision,
    RangeRequest.MOD: lambda kv: kv.mod_revision,
    RangeRequest.VALUE: lambda kv: kv.value,
}


def index_end(range_end: bytes) -> bytes | None:
    """Translate a wire ``range_end`` into the index's convention."""
    if not range_end:
        return None
    if range_end == b"\x00":
        return b""
    return range_end


def prefix_end(key: bytes) -> bytes:
    """The ``range_end`` that selects every key with prefix ``key`` (etcd's rule).

    >>> prefix_end(b"a"), prefix_end(b"a\\xff"), prefix_end(b"\\xff")
    (b'b', b'b', b'\\x00')
    """
    stripped = key.rstrip(b"\xff")
    if not stripped:
        return b"\x00"
    return stripped[:-1] + bytes([stripped[-1] + 1])


# -- Range ------------------------------------------------------------------------------


def range_(view: ReadView, r: RangeRequest) -> RangeResponse:
    """Answer a RangeRequest from ``view`` (header.revision = the view's revision)."""
    filtered = bool(
        r.min_mod_revision or r.max_mod_revision or r.min_create_revision
        or r.max_create_revision
    )
    limit = r.limit
    if r.sort_order != _NONE or filtered:
        limit = 0
    if limit > 0:
        limit += 1
    rr = view.range(r.key, index_end(r.range_end), rev=r.revision, limit=limit,
                    count_only=r.count_only)
    kvs = rr.kvs
    if filtered and kvs:
        kvs = [kv for kv in kvs if _passes(r, kv)]
    order = r.sort_order
    if r.sort_target != RangeRequest.KEY and order == _NONE:
        order = _ASCEND
    if order in (_ASCEND, _DESCEND) and len(kvs) > 1:
        kvs.sort(key=_SORT_KEYS[r.sort_target], reverse=order == _DESCEND)
    resp = RangeResponse()
    if 0 < r.limit < len(kvs):
        del kvs[r.limit:]
        resp.more = True
    resp.header.revision = rr.rev
    resp.count = rr.count
    if r.keys_only:
        for kv in kvs:
            kv.ClearField("value")
    if kvs:
        resp.kvs.extend(kvs)
    return resp


def _passes(r: RangeRequest, kv: KeyValue) -> bool:
    if r.max_mod_revision and kv.mod_revision > r.max_mod_revision:
        return False
    if r.min_mod_revision and kv.mod_revision < r.min_mod_revision:
        return False
    if r.max_create_revision and kv.create_revision > r.max_create_revision:
        return False
    return not (r.min_create_revision and kv.create_revision < r.min_create_revision)


# -- Put / DeleteRange ------------------------------------------------------------------


def put(txn: WriteTxn, r: PutRequest) -> PutResponse:
    resp = PutResponse()
    value, lease = r.value, r.lease
    if r.prev_kv or r.ignore_value or r.ignore_lease:
        found = txn.range(r.key, None).kvs
        prev = found[0] if found else None
        if r.ignore_value or r.ignore_lease:
            if prev is None:
                raise KeyNotFound()
            if r.ignore_value:
                value = prev.value
            if r.ignore_lease:
                lease = prev.lease
        if r.prev_kv and prev is not None:
            resp.prev_kv.CopyFrom(prev)
    resp.header.revision = txn.put(r.key, value, lease)
    return resp


def delete_range(txn: WriteTxn, r: DeleteRangeRequest) -> DeleteRangeResponse:
    resp = DeleteRangeResponse()
    end = index_end(r.range_end)
    if r.prev_kv:
        prev = txn.range(r.key, end).kvs
        if prev:
            resp.prev_kvs.extend(prev)
    resp.deleted, resp.header.revision = txn.delete_range(r.key, end)
    return resp


# -- Txn ----------------------------------------------------------------------------------


def is_read_only(r: TxnRequest) -> bool:
    """True when no branch of ``r`` (nested txns included) can write."""
    for ops in (r.success, r.failure):
        for op in ops:
            which = op.WhichOneof("request")
            if which == "request_range":
                continue
            if which == "request_txn" and is_read_only(op.request_txn):
                continue
            return False
    return True


@dataclass(slots=True)
class _Path:
    """The branch a txn takes, and the paths of the nested txns in that branch."""

    succeeded: bool
    nested: list[_Path] = field(default_factory=list)


def _compare_kv(c: Compare, kv: KeyValue) -> bool:
    target = c.target
    which = c.WhichOneof("target_union")
    if target == Compare.VALUE:
        want = c.value if which == "value" else b""
        have = kv.value
        result = (have > want) - (have < want)
    else:
        if target == Compare.VERSION:
            have, want = kv.version, c.version if which == "version" else 0
        elif target == Compare.CREATE:
            have = kv.create_revision
            want = c.create_revision if which == "create_revision" else 0
        elif target == Compare.MOD:
            have, want = kv.mod_revision, c.mod_revision if which == "mod_revision" else 0
        elif target == Compare.LEASE:
            have, want = kv.lease, c.lease if which == "lease" else 0
        else:
            have = want = 0
        result = (have > want) - (have < want)
    op = c.result
    if op == Compare.EQUAL:
        return result == 0
    if op == Compare.NOT_EQUAL:
        return result != 0
    if op == Compare.GREATER:
        return result > 0
    if op == Compare.LESS:
        return result < 0
    return True


def _compare(view: ReadView, c: Compare) -> bool:
    kvs = view.range(c.key, index_end(c.range_end)).kvs
    if not kvs:
        # A missing key has no value to compare; other targets compare against zero.
        return c.target != Compare.VALUE and _compare_kv(c, KeyValue())
    return all(_compare_kv(c, kv) for kv in kvs)


def _path(view: ReadView, r: TxnRequest) -> _Path:
    ok = all(_compare(view, c) for c in r.compare)
    path = _Path(ok)
    for op in r.success if ok else r.failure:
        if op.WhichOneof("request") == "request_txn":
            path.nested.append(_path(view, op.request_txn))
    return path


@dataclass(slots=True)
class _Effects:
    """What the ops checked so far will have done when the next op runs: keys they put
    and ranges they deleted (in execution order, nested txns included)."""

    put: set[bytes] = field(default_factory=set)
    deleted: list[tuple[bytes, bytes | None]] = field(default_factory=list)

    def exists_after(self, view: ReadView, key: bytes) -> bool:
        """Whether ``key`` exists when an op after the checked ones runs."""
        if key in self.put:
            return True
        if any(_covers(start, end, key) for start, end in self.deleted):
            return False
        return bool(view.range(key, None).kvs)

    def delete(self, start: bytes, end: bytes | None) -> None:
        self.deleted.append((start, end))
        self.put = {k for k in self.put if not _covers(start, end, k)}


def _covers(start: bytes, end: bytes | None, key: bytes) -> bool:
    """Whether ``key`` lies in a range in the index's convention (None: single key)."""
    if end is None:
        return key == start
    return start <= key and (not end or key < end)


def _check(
    view: ReadView,
    r: TxnRequest,
    path: _Path,
    lease_exists: LeaseExists | None,
    effects: _Effects | None = None,
) -> None:
    """Refuse the txn before it writes anything (``lease_exists`` None: a read-only txn).

    ignore_value/ignore_lease puts need their key to exist when they run, so earlier
    deletes of the same branch count: e.g. ``[delete from "a", put k ignore_value]``
    is refused with "key not found" here, not half-applied (etcd 3.5 panics on it).
    """
    if effects is None:
        effects = _Effects()
    nested = iter(path.nested)
    for op in r.success if path.succeeded else r.failure:
        which = op.WhichOneof("request")
        if which == "request_txn":
            _check(view, op.request_txn, next(nested), lease_exists, effects)
        elif which == "request_delete_range":
            d = op.request_delete_range
            effects.delete(d.key, index_end(d.range_end))
        elif which == "request_put" and lease_exists is not None:
            p = op.request_put
            if (p.ignore_value or p.ignore_lease) and not effects.exists_after(view, p.key):
                raise KeyNotFound()
            if p.lease and not lease_exists(p.lease):
                raise LeaseNotFound()
            effects.put.add(p.key)
        elif which == "request_range":
            rev = op.request_range.revision
            if rev == 0:
                continue
            if rev > view.rev:
                raise FutureRevision(rev)
            if rev < view.compact_revision:
                raise Compacted(rev)


def _execute(view: ReadView, r: TxnRequest, path: _Path, resp: TxnResponse) -> None:
    """Run the chosen branch of ``r`` into ``resp`` (view is a WriteTxn if it writes)."""
    resp.succeeded = path.succeeded
    nested = iter(path.nested)
    for op in r.success if path.succeeded else r.failure:
        out: ResponseOp = resp.responses.add()
        which = op.WhichOneof("request")
        if which == "request_range":
            out.response_range.CopyFrom(range_(view, op.request_range))
        elif which == "request_put":
            out.response_put.CopyFrom(put(view, op.request_put))  # type: ignore[arg-type]
        elif which == "request_delete_range":
            out.response_delete_range.CopyFrom(
                delete_range(view, op.request_delete_range)  # type: ignore[arg-type]
            )
        else:
            sub = out.response_txn
            sub.header.SetInParent()
            _execute(view, op.request_txn, next(nested), sub)


def txn_read_only(view: ReadView, r: TxnRequest) -> TxnResponse:
    """A txn whose branches only read, answered from ``view`` without a write."""
    path = _path(view, r)
    _check(view, r, path, None)
    resp = TxnResponse()
    _execute(view, r, path, resp)
    resp.header.revision = view.rev
    return resp


def txn_write(
    view: ReadView,
    begin_write: Callable[[], WriteTxn],
    r: TxnRequest,
    lease_exists: LeaseExists,
) -> TxnResponse:
    """A txn that may write: compares and checks on ``view``, then ops in one WriteTxn."""
    path = _path(view, r)
    _check(view, r, path, lease_exists)
    txn = begin_write()
    resp = TxnResponse()
    _execute(txn, r, path, resp)
    resp.header.revision = txn.rev
    txn.end()
    return resp

