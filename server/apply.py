"""The applier: committed entries in, deterministic state changes and results out.

``Applier.apply(entries)`` applies a batch of committed entries in ONE backend write
transaction and stores the index of the last entry (the consistent index) in the same
transaction, so after a crash the store and the consistent index agree and replay can
skip what is already applied. Applying is deterministic: the same entries give the same
revisions, results and errors on every member; nothing here reads a clock.

Each write transaction that changed something adds ``(revision, changes)`` to
``applied_changes`` (the batch's list, in revision order), for the watch hub, which is
told after the batch is committed and before any waiter is woken.

Each entry's result is the response message (header.revision set; the servicer fills
the rest), None for the server's own requests (membership), or the domain exception
that refused it. An exception that is not a domain
error (a storage failure, a bug) aborts the whole batch and propagates: the member must
stop rather than continue from a state nobody can vouch for.

Auth (etcd's authApplierV3): while auth is enabled, an entry is checked again against
the caller its proposal names (``Proposal.username`` / ``auth_revision``), before it
changes anything: a caller whose auth revision is older than the store's gets
``AuthOldRevision`` ("revision of auth store is old": some auth change applied between
the servicer's check and this entry), one without a user ``AuthUserEmpty``, one without
the permission ``PermissionDenied``; user and role management needs role root. Puts,
deletes, writing txns and client lease revokes are checked; compactions, grants,
alarms, Authenticate, the server's own requests and the leader's lease expiries
(``LeaseExpireRequest``) are not. For example, with auth on and user ``alice`` allowed
to write only ``a``::

    apply([Entry(9, 2, Proposal(5, PutRequest(key=b"b"), "alice", 3))])
    # -> [PermissionDenied()]                      (nothing written)
    apply([Entry(10, 2, Proposal(6, PutRequest(key=b"a"), "alice", 2))])
    # -> [AuthOldRevision()] if the auth revision is 3 by now
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import lmdb
from google.protobuf.message import Message

from etcdlite.protos.internal_pb2 import (
    BootstrapMemberRequest,
    ClusterVersionRequest,
    InternalAuthenticateRequest,
    LeaseExpireRequest,
    MemberAttributesRequest,
)
from etcdlite.protos.kv_pb2 import KeyValue
from etcdlite.protos.rpc_pb2 import (
    NOSPACE,
    AlarmRequest,
    AlarmResponse,
    AuthDisableRequest,
    AuthEnableRequest,
    AuthenticateResponse,
    AuthRoleAddRequest,
    AuthRoleDeleteRequest,
    AuthRoleGrantPermissionRequest,
    AuthRoleRevokePermissionRequest,
    AuthUserAddRequest,
    AuthUserChangePasswordRequest,
    AuthUserDeleteRequest,
    AuthUserGrantRoleRequest,
    AuthUserRevokeRoleRequest,
    CompactionRequest,
    CompactionResponse,
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
    PutRequest,
    TxnRequest,
)
from etcdlite.server import kv
from etcdlite.server.alarms import AlarmStore
from etcdlite.server.auth_perms import AuthChecker
from etcdlite.server.auth_store import AuthStore
from etcdlite.server.auth_tokens import AuthInfo
from etcdlite.server.errors import EtcdError, LeaseNotFound, NoSpace
from etcdlite.server.lease import Lessor
from etcdlite.server.membership import Membership
from etcdlite.server.quota import quota_cost
from etcdlite.storage.errors import Compacted, FutureRevision
from etcdlite.storage.mvcc import Store, WriteTxn

CONSISTENT_INDEX = b"consistent_index"
TERM = b"term"


@dataclass(slots=True)
class Proposal:
    """An internal request: a validated client request, the id its waiter has, and who
    asked (``username`` and the ``auth_revision`` that identity was checked at; empty
    while auth is disabled and for the server's own requests)."""

    id: int
    request: Message
    username: str = ""
    auth_revision: int = 0


@dataclass(slots=True)
class Entry:
    """A committed log entry. ``proposal`` is None for a leader's empty entry."""

    index: int
    term: int
    proposal: Proposal | None


_DOMAIN_ERRORS = (EtcdError, Compacted, FutureRevision)

AUTH_ADMIN_REQUESTS: frozenset[type[Message]] = frozenset({
    AuthEnableRequest, AuthDisableRequest, AuthUserAddRequest, AuthUserDeleteRequest,
    AuthUserChangePasswordRequest, AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest,
    AuthRoleAddRequest, AuthRoleDeleteRequest, AuthRoleGrantPermissionRequest,
    AuthRoleRevokePermissionRequest,
})
"""The logged auth requests that need role root (etcd's needAdminPermission)."""


class Applier:
    def __init__(
        self,
        store: Store,
        alarms: AlarmStore,
        membership: Membership,
        lessor: Lessor,
        auth: AuthStore,
        checker: AuthChecker,
    ):
        self.store = store
        self.membership = membership
        self.lessor = lessor
        self.auth = auth
        self.checker = checker
        self.lease_exists = lessor.exists
        self.applied_changes: list[tuple[int, list[KeyValue]]] = []
        self.backend = store.backend
        self.alarms = alarms
        self.applied_index = self.backend.get_meta_int(CONSISTENT_INDEX, 0)
        self._handlers: dict[type[Message], Callable[[Message], Message | None]] = {
            PutRequest: self._put,
            DeleteRangeRequest: self._delete_range,
            TxnRequest: self._txn,
            CompactionRequest: self._compact,
            AlarmRequest: self._alarm,
            BootstrapMemberRequest: self._bootstrap,
            MemberAttributesRequest: self._member_attributes,
            ClusterVersionRequest: self._cluster_version,
            LeaseGrantRequest: self._lease_grant,
            LeaseRevokeRequest: self._lease_revoke,
            LeaseExpireRequest: self._lease_expire,
            InternalAuthenticateRequest: self._authenticate,
            **{t: self._auth_change for t in AUTH_ADMIN_REQUESTS},
        }
        self._entry_index = 0
        """The index of the entry being applied (simple tokens end with it)."""

    def apply(self, entries: Sequence[Entry]) -> list[object]:
        """Apply ``entries`` (in index order) in one write transaction; results in order."""
        results: list[object] = []
        self.applied_changes = []
        if not entries:
            return results
        handlers = self._handlers
        auth = self.auth
        with self.backend.batch() as txn:
            for entry in entries:
                if entry.index <= self.applied_index:
                    raise AssertionError(
                        f"entry {entry.index} is not after applied index {self.applied_index}"
                    )
                p = entry.proposal
                if p is None:
                    results.append(None)
                    continue
                first_change = len(self.applied_changes)
                self._entry_index = entry.index
                try:
                    if auth.enabled:
                        self._check_caller(p)
                    self._check_space(p.request)
                    results.append(handlers[type(p.request)](p.request))
                except _DOMAIN_ERRORS as exc:
                    if any(changes for _rev, changes in self.applied_changes[first_change:]):
                        # Every refusal must come before the first write of its entry;
                        # a write cannot be taken back, so this is a bug: stop the member.
                        raise AssertionError(
                            f"entry {entry.index} was refused ({exc!r}) after writing"
                        ) from exc
                    results.append(exc)
                for _rev, changes in self.applied_changes[first_change:]:
                    self.lessor.on_changes(changes)
            last = entries[-1]
            self.backend.put_meta_int(txn, CONSISTENT_INDEX, last.index)
            self.backend.put_meta_int(txn, TERM, last.term)
        self.applied_index = last.index
        return results

    def _check_caller(self, p: Proposal) -> None:
        """The permission checks of etcd's authApplierV3 (see the module docstring), with
        the caller the entry names; they raise before anything is written."""
        r = p.request
        kind = type(r)
        checker = self.checker
        info = AuthInfo(p.username, p.auth_revision) if p.username else None
        if kind is PutRequest:
            checker.check_put(info, r, self.lease_keys(r.lease))  # type: ignore[arg-type, attr-defined]
        elif kind is DeleteRangeRequest:
            checker.check_delete_range(info, r)  # type: ignore[arg-type]
        elif kind is TxnRequest:
            checker.check_txn(info, r, self.lease_keys)  # type: ignore[arg-type]
        elif kind is LeaseRevokeRequest:
            checker.check_lease_revoke(info, self.lease_keys(r.ID))  # type: ignore[attr-defined]
        elif kind in AUTH_ADMIN_REQUESTS:
            checker.check_admin(info)

    def lease_keys(self, lease_id: int) -> set[bytes] | tuple[()]:
        """The keys attached to a lease (none for id 0 or an unknown lease)."""
        lease = self.lessor.get(lease_id) if lease_id else None
        return lease.keys if lease is not None else ()

    def _check_space(self, r: Message) -> None:
        """While NOSPACE is raised, puts, txns that put and grants are refused (etcd's
        capped applier: a txn is refused when its quota cost is not 0); reads, deletes,
        delete-only txns, revokes, compaction and alarms still work."""
        if not self.alarms.active(NOSPACE):
            return
        if isinstance(r, (PutRequest, LeaseGrantRequest)) or (
            isinstance(r, TxnRequest) and quota_cost(r) > 0
        ):
            raise NoSpace()

    def _put(self, r: Message) -> Message:
        lease = r.lease  # type: ignore[attr-defined]
        if lease and not self.lease_exists(lease):
            raise LeaseNotFound()  # checked before ignore_value/ignore_lease, as etcd does
        txn = self._begin()
        resp = kv.put(txn, r)  # type: ignore[arg-type]
        txn.end()
        return resp

    def _delete_range(self, r: Message) -> Message:
        txn = self._begin()
        resp = kv.delete_range(txn, r)  # type: ignore[arg-type]
        txn.end()
        return resp

    def _txn(self, r: Message) -> Message:
        with self.store.read() as view:
            return kv.txn_write(view, self._begin, r, self.lease_exists)  # type: ignore[arg-type]

    def _begin(self) -> WriteTxn:
        """A write transaction whose changes, if any, are recorded for the watch hub."""
        txn = self.store.write()
        self.applied_changes.append((txn.begin_rev + 1, txn.changes))
        return txn

    def take_changes(self) -> list[tuple[int, list[KeyValue]]]:
        """The ``(revision, changes)`` of the last batch's writes that changed something."""
        out = [(rev, changes) for rev, changes in self.applied_changes if changes]
        self.applied_changes = []
        return out

    def _compact(self, r: Message) -> Message:
        self.store.compact(r.revision)  # type: ignore[attr-defined]
        resp = CompactionResponse()
        resp.header.revision = self.store.current_revision
        return resp

    def _lease_grant(self, r: Message) -> Message:
        lease = self.lessor.grant(self._write_txn(), r.ID, r.TTL)  # type: ignore[attr-defined]
        return LeaseGrantResponse(ID=lease.id, TTL=lease.ttl)

    def _lease_revoke(self, r: Message) -> Message:
        """Forget the lease and delete all its keys in one revision."""
        return self._revoke(r.ID)  # type: ignore[attr-defined]

    def _lease_expire(self, r: Message) -> Message:
        """The leader's revoke of a lease that ran out (never permission-checked)."""
        return self._revoke(r.id)  # type: ignore[attr-defined]

    def _revoke(self, lease_id: int) -> Message:
        keys = self.lessor.revoke(self._write_txn(), lease_id)
        if keys:
            txn = self._begin()
            for key in keys:
                txn.delete_range(key, None)
            txn.end()
        resp = LeaseRevokeResponse()
        resp.header.revision = self.store.current_revision
        return resp

    def _auth_change(self, r: Message) -> Message:
        """User and role management, AuthEnable, AuthDisable (passwords come hashed)."""
        return self.auth.apply(self._write_txn(), r)

    def _authenticate(self, r: Message) -> Message:
        """Assign a token; a simple one ends with this entry's index, as etcd's."""
        assert isinstance(r, InternalAuthenticateRequest)
        token = self.auth.authenticate(r.name, index=self._entry_index, prefix=r.simple_token)
        return AuthenticateResponse(token=token)

    def _bootstrap(self, r: Message) -> None:
        self.membership.apply_bootstrap(self._write_txn(), r)  # type: ignore[arg-type]

    def _member_attributes(self, r: Message) -> None:
        self.membership.apply_attributes(self._write_txn(), r)  # type: ignore[arg-type]

    def _cluster_version(self, r: Message) -> None:
        self.membership.apply_cluster_version(self._write_txn(), r)  # type: ignore[arg-type]

    def _write_txn(self) -> lmdb.Transaction:
        txn = self.backend.write_txn
        if txn is None:
            raise AssertionError("applying outside a batch")
        return txn

    def _alarm(self, r: Message) -> Message:
        assert isinstance(r, AlarmRequest)
        resp = AlarmResponse()
        txn = self._write_txn()
        if r.action == AlarmRequest.GET:
            resp.alarms.extend(self.alarms.get(r.alarm))
        elif r.action == AlarmRequest.ACTIVATE:
            if r.alarm != 0:
                m = self.alarms.activate(txn, r.memberID, r.alarm)
                if m is not None:
                    resp.alarms.append(m)
        elif r.action == AlarmRequest.DEACTIVATE:
            m = self.alarms.deactivate(txn, r.memberID, r.alarm)
            if m is not None:
                resp.alarms.append(m)
        return resp
