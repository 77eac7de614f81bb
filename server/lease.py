"""The lessor: leases, the keys attached to them, and when they expire.

What is replicated (changed only by applied entries, identically on every member): the
lease table (id -> granted TTL, persisted in the backend's ``lease`` table) and which
keys are attached to which lease (derived from the store: a key belongs to the lease in
its current KeyValue). What is local to the leader: expiry times on the injected
``Clock``. Only the leader expires leases, by proposing a revoke like any client would;
a KeepAlive renews on the leader without a log entry, exactly as etcd does.

Rules (etcd's):
* a TTL below ``min_ttl`` is raised to it; above ``MAX_TTL`` is refused;
* after a restart (and on every new leader) every lease gets its full TTL plus one
  election timeout, counted from the moment the member leads (``promote``);
* ``remaining`` is whole seconds, truncated (29 right after granting 30).

Example::

    lessor.grant(txn, 7, ttl=30)       # applied: lease 7 exists, expires at now + 30
    lessor.renew(7)                    # keepalive: expires at now + 30 again -> 30
    lessor.expired(limit=1000)         # leases due now (the leader proposes revokes)
"""

from __future__ import annotations

import heapq
import math
import struct
from dataclasses import dataclass, field

import lmdb

from etcdlite.protos.internal_pb2 import LeaseRecord
from etcdlite.protos.kv_pb2 import KeyValue
from etcdlite.server.clock import Clock
from etcdlite.server.errors import LeaseExists, LeaseNotFound, LeaseTTLTooLarge
from etcdlite.storage.backend import LmdbBackend
from etcdlite.storage.mvcc import Store

MAX_TTL = 9_000_000_000
"""The largest TTL etcd accepts (seconds)."""
RETRY_S = 3.0
"""How long a due lease waits before it is reported again if its revoke did not apply."""
_ID = struct.Struct(">q")


@dataclass(eq=False)
class Lease:
    id: int
    ttl: int
    expiry: float
    """Monotonic seconds at which the lease expires (meaningful on the leader)."""
    keys: set[bytes] = field(default_factory=set)


class Lessor:
    def __init__(self, backend: LmdbBackend, store: Store, clock: Clock, min_ttl: int):
        self._backend = backend
        self._clock = clock
        self.min_ttl = min_ttl
        self._leases: dict[int, Lease] = {}
        self._key_lease: dict[bytes, int] = {}
        self._heap: list[tuple[float, int]] = []
        with backend.env.begin(db=self._backend.db(b"lease")) as txn:
            for _raw_id, raw in txn.cursor():
                rec = LeaseRecord.FromString(raw)
                # No expiry until this member leads: see promote().
                self._leases[rec.id] = Lease(rec.id, rec.ttl, math.inf)
        # Attachments are whatever the store's live keys say (collected while the
        # store restored its index, so start-up reads every record once).
        for key, lease_id in store.take_lease_attachments().items():
            self._attach(key, lease_id)

    # -- queries ----------------------------------------------------------------------

    def exists(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def get(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)

    def ids(self) -> list[int]:
        return sorted(self._leases)

    def remaining(self, lease: Lease) -> int:
        """Whole seconds left, truncated (never below 0); the full TTL before the member
        has promoted its leases."""
        if math.isinf(lease.expiry):
            return lease.ttl
        return max(0, int(lease.expiry - self._clock.monotonic()))

    # -- applied changes (deterministic, inside the apply batch) ----------------------

    def grant(self, txn: lmdb.Transaction, lease_id: int, ttl: int) -> Lease:
        if lease_id in self._leases:
            raise LeaseExists()
        if ttl > MAX_TTL:
            raise LeaseTTLTooLarge()
        ttl = max(ttl, self.min_ttl)
        lease = Lease(lease_id, ttl, self._clock.monotonic() + ttl)
        txn.put(_ID.pack(lease_id), LeaseRecord(id=lease_id, ttl=ttl).SerializeToString(),
                db=self._backend.db(b"lease"))
        self._add(lease)
        return lease

    def revoke(self, txn: lmdb.Transaction, lease_id: int) -> list[bytes]:
        """Forget the lease; returns its keys (sorted), which the caller deletes."""
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            raise LeaseNotFound()
        txn.delete(_ID.pack(lease_id), db=self._backend.db(b"lease"))
        for key in lease.keys:
            self._key_lease.pop(key, None)
        return sorted(lease.keys)

    def on_changes(self, changes: list[KeyValue]) -> None:
        """Follow attachments through a write: a put moves the key to its new lease (or
        to none), a delete detaches it."""
        for kv in changes:
            key = kv.key
            old = self._key_lease.get(key)
            new = kv.lease if kv.version else 0
            if old == new:
                continue
            if old is not None:
                self._detach(key, old)
            if new:
                self._attach(key, new)

    # -- leader-local: renewals and expiry ---------------------------------------------

    def promote(self, extend_s: float) -> None:
        """This member now leads: every lease expires its full TTL plus ``extend_s``
        from now (etcd extends by one election timeout, so no lease dies of the leader
        change itself)."""
        now = self._clock.monotonic()
        self._heap = []
        for lease in self._leases.values():
            lease.expiry = now + lease.ttl + extend_s
            self._heap.append((lease.expiry, lease.id))
        heapq.heapify(self._heap)

    def renew(self, lease_id: int) -> int:
        """KeepAlive: restart the lease's TTL; returns the TTL, or 0 if it is unknown or
        already expired (what etcd answers)."""
        lease = self._leases.get(lease_id)
        now = self._clock.monotonic()
        if lease is None or lease.expiry <= now:
            return 0
        lease.expiry = now + lease.ttl
        heapq.heappush(self._heap, (lease.expiry, lease.id))
        return lease.ttl

    def expired(self, limit: int) -> list[int]:
        """Up to ``limit`` leases whose time is up, soonest first (ties by id).

        The heap holds ``(check at, id)`` entries; an entry whose lease is gone or was
        renewed past now is dropped (a renewal pushed its own entry). A due lease stays
        in the table until its revoke is applied, so it is checked again
        ``RETRY_S`` later in case that revoke never comes (etcd does the same).
        """
        now = self._clock.monotonic()
        heap = self._heap
        due: list[int] = []
        seen: set[int] = set()
        while heap and len(due) < limit and heap[0][0] <= now:
            _check_at, lease_id = heapq.heappop(heap)
            lease = self._leases.get(lease_id)
            if lease is None or lease.expiry > now or lease_id in seen:
                continue
            seen.add(lease_id)
            due.append(lease_id)
        for lease_id in due:
            heapq.heappush(heap, (now + RETRY_S, lease_id))
        return due

    # -- internals --------------------------------------------------------------------

    def _add(self, lease: Lease) -> None:
        self._leases[lease.id] = lease
        heapq.heappush(self._heap, (lease.expiry, lease.id))

    def _attach(self, key: bytes, lease_id: int) -> None:
        lease = self._leases.get(lease_id)
        if lease is None:
            return  # a key written before its lease was revoked and restored
        lease.keys.add(key)
        self._key_lease[key] = lease_id

    def _detach(self, key: bytes, lease_id: int) -> None:
        self._key_lease.pop(key, None)
        lease = self._leases.get(lease_id)
        if lease is not None:
            lease.keys.discard(key)


def min_lease_ttl(election_timeout_ms: int, heartbeat_ms: int) -> int:
    """etcd's minimum TTL in seconds: 1.5 election timeouts, counted in whole heartbeat
    ticks (rounded down) and then rounded up to a second (2 by default).

    >>> min_lease_ttl(1000, 100), min_lease_ttl(2700, 100), min_lease_ttl(700, 100)
    (2, 4, 1)
    """
    ticks = election_timeout_ms // heartbeat_ms
    return math.ceil((3 * ticks) // 2 * heartbeat_ms / 1000)
