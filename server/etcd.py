"""Etcd: one member's state and request pipeline, without the network.

The servicers call it; it owns the backend, the WAL, the MVCC store, membership,
alarms, the applier, the commit path (``LocalNode`` for now) and the compactor.

Opening a data directory: the backend (LMDB) says which entry it applied last (the
consistent index); the WAL's later entries are applied again (``LocalNode.recover``)
before the member starts its term, so nothing acknowledged is lost after a crash.

Reads (Range, read-only Txn) are answered from the local store at once: writes are
acknowledged only after they are applied, so a read sees every acknowledged write
(linearizable on a single member). Writes become ``Proposal``s with a fresh request id
and go through the commit path; the caller awaits the applied result.

Example (inside a running event loop)::

    etcd = Etcd(EtcdConfig(data_dir=tmp), logger)
    etcd.start()
    await etcd.publish(["http://127.0.0.1:2379"])
    etcd.serving()
    resp = await etcd.put(PutRequest(key=b"k", value=b"v"))
    resp.header.revision            # 2
    etcd.range(RangeRequest(key=b"k")).kvs[0].value   # b"v"
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import struct
from collections.abc import AsyncIterator, Callable

from google.protobuf.message import Message

from etcdlite.protos.internal_pb2 import ClusterVersionRequest, MemberAttributesRequest
from etcdlite.protos.kv_pb2 import KeyValue
from etcdlite.protos.rpc_pb2 import (
    NOSPACE,
    AlarmRequest,
    AlarmResponse,
    AlarmType,
    CompactionRequest,
    CompactionResponse,
    DefragmentResponse,
    DeleteRangeRequest,
    DeleteRangeResponse,
    HashKVResponse,
    HashResponse,
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseLeasesResponse,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
    LeaseStatus,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
    MemberListResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    ResponseHeader,
    SnapshotResponse,
    StatusResponse,
    TxnRequest,
    TxnResponse,
    WatchResponse,
)
from etcdlite.server import kv
from etcdlite.server.alarms import AlarmStore
from etcdlite.server.apply import Applier, Proposal
from etcdlite.server.backend_guard import BackendGuard
from etcdlite.server.clock import Clock, SystemClock
from etcdlite.server.compactor import Compactor
from etcdlite.server.config import EtcdConfig, receive_limit
from etcdlite.server.errors import LeaseNotFound, NoSpace, RequestTooLarge, ServerStopped
from etcdlite.server.ids import IdGenerator
from etcdlite.server.lease import Lessor, min_lease_ttl
from etcdlite.server.log import Logger
from etcdlite.server.membership import Membership
from etcdlite.server.node import LocalNode
from etcdlite.server.version import ETCD_CLUSTER_VERSION, ETCD_VERSION
from etcdlite.server.wait import Wait
from etcdlite.server.watch import WatchHub
from etcdlite.storage.backend import DEFAULT_MAP_SIZE, LmdbBackend
from etcdlite.storage.errors import CorruptStore
from etcdlite.storage.mvcc import Store
from etcdlite.storage.wal import Wal

LEASE_TICK_S = 0.5
LEASE_REVOKES_PER_TICK = 500
"""etcd checks for expired leases every 500 ms and revokes at most 1000 per second."""
WAL_SEGMENT_BYTES = 64 * 1024 * 1024
"""etcd's WAL segment size."""
SNAPSHOT_CHUNK_BYTES = 32 * 1024
"""Maintenance.Snapshot sends the database in chunks of this size (as etcd)."""
_WAL_METADATA = struct.Struct(">QQ")
"""The WAL's metadata: member id and cluster id (a WAL never serves another member)."""
_QUOTA_PUT_OVERHEAD = 256
_QUOTA_LEASE_COST = 64
_PROPOSAL_HEADER_BYTES = 14
"""What etcd's internal request adds around a client request (request header with a
64-bit id, plus the field tag): --max-request-bytes is checked against the sum."""


def _varint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def map_size_for(quota: int) -> int:
    """LMDB's address space: room past the quota, so deletes, compaction and
    defragment keep working after NOSPACE; without a quota, 64 GiB."""
    return quota + max(quota, 256 * 1024 * 1024) if quota else DEFAULT_MAP_SIZE


def quota_cost(r: Message) -> int:
    """What a request may add to the database, by etcd's estimate: 256 + key + value
    per put, the larger branch of a txn, 64 per lease; 0 for everything else."""
    if isinstance(r, PutRequest):
        return _QUOTA_PUT_OVERHEAD + len(r.key) + len(r.value)
    if isinstance(r, LeaseGrantRequest):
        return _QUOTA_LEASE_COST
    if isinstance(r, TxnRequest):
        return max(
            sum(quota_cost(op.request_put) for op in ops if op.HasField("request_put"))
            for ops in (r.success, r.failure)
        )
    return 0


class Etcd:
    def __init__(
        self,
        cfg: EtcdConfig,
        logger: Logger,
        clock: Clock | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        *,
        wal_segment_bytes: int = WAL_SEGMENT_BYTES,
    ):
        self.cfg = cfg
        self._log = logger
        self._clock = clock if clock is not None else SystemClock()
        self._on_fatal_cb = on_fatal
        self.data_dir = cfg.resolved_data_dir()
        self._quota = cfg.resolved_quota()
        self.backend = LmdbBackend(self.data_dir / "member" / "db", sync=False,
                                   map_size=map_size_for(self._quota))
        self.store = Store(self.backend)
        self.membership = Membership(self.backend)
        self.alarms = AlarmStore(self.backend)
        self.lessor = Lessor(self.backend, self.store, self._clock,
                             min_lease_ttl(cfg.election_timeout_ms, cfg.heartbeat_interval_ms))
        self.applier = Applier(self.store, self.alarms, self.membership, self.lessor)
        self.wait = Wait()
        self.compactor = Compactor(self.store, self._fatal)
        self.watch_hub = WatchHub(
            self.store,
            self.fill_watch_header,
            max_response_bytes=receive_limit(cfg.max_request_bytes),
            progress_interval_s=max(cfg.watch_progress_notify_interval_s, 0.1),
        )
        self.guard = BackendGuard()
        try:
            self.node = self._open_wal(wal_segment_bytes)
        except BaseException:
            self.backend.close()
            raise
        self.member_id = self.membership.local_id
        self.cluster_id = self.membership.cluster_id
        self._ids = IdGenerator(self.member_id, int(self._clock.wall() * 1000))
        self._max_request_bytes = cfg.max_request_bytes
        self.stopped = False
        self.fatal_error: BaseException | None = None
        self._expiry_task: asyncio.Task[None] | None = None

    def _open_wal(self, segment_bytes: int) -> LocalNode:
        """The commit path over this member's WAL, with every durable entry applied."""
        cfg = self.cfg
        fsync = not cfg.unsafe_no_fsync
        wal_dir = cfg.resolved_wal_dir()
        founding = None if self.membership.bootstrapped else Membership.bootstrap_request(cfg)
        if Wal.exists(wal_dir):
            wal, contents = Wal.open(wal_dir, segment_bytes=segment_bytes, fsync=fsync)
            if contents.torn_tail:
                self._log.warn("truncated a torn WAL tail left by a crash",
                               detail=contents.torn_tail)
            metadata = contents.metadata
        else:
            ids = ((founding.member.ID, founding.cluster_id) if founding is not None
                   else (self.membership.local_id, self.membership.cluster_id))
            metadata = _WAL_METADATA.pack(*ids)
            wal = Wal.create(wal_dir, metadata, first_index=self.applier.applied_index + 1,
                             segment_bytes=segment_bytes, fsync=fsync)
            contents = None
        node = LocalNode(self.applier, self.wait, wal, self._on_applied, self._fatal,
                         member_id=0, fsync=fsync,
                         snapshot_count=cfg.resolved_snapshot_count(), guard=self.guard)
        try:
            if contents is not None:
                replayed = node.recover(contents)
                if replayed:
                    self._log.info("replayed WAL entries", entries=replayed,
                                   **{"applied-index": node.applied_index})
            if not self.membership.bootstrapped:
                node.bootstrap(founding or Membership.bootstrap_request(cfg))
            wal_ids = _WAL_METADATA.unpack(metadata)
            if wal_ids != (self.membership.local_id, self.membership.cluster_id):
                raise CorruptStore(
                    f"wal: {wal_dir} belongs to member {wal_ids[0]:x} of cluster "
                    f"{wal_ids[1]:x}, the backend to member {self.membership.local_id:x} "
                    f"of cluster {self.membership.cluster_id:x}")
        except BaseException:
            wal.close()
            raise
        node.member_id = self.membership.local_id
        return node

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the term; resume a physical compaction a previous run left unfinished."""
        self.node.start()
        self.compactor.kick()
        self._expiry_task = asyncio.get_running_loop().create_task(self._expire_leases())

    async def publish(self, client_urls: list[str]) -> None:
        """Announce this member's name and client URLs (and, once, the cluster version)."""
        await self._submit(MemberAttributesRequest(
            member_id=self.member_id, name=self.cfg.name, client_urls=client_urls))
        if not self.membership.cluster_version:
            await self._submit(ClusterVersionRequest(version=ETCD_CLUSTER_VERSION))

    def serving(self) -> None:
        """Clients can reach this member now: as the leader it starts the lease clocks
        (full TTL plus one election timeout, as a new etcd leader does), so no lease can
        expire before its holder could have kept it alive."""
        self.lessor.promote(self.cfg.election_timeout_ms / 1000)

    def _on_applied(self, changes: list[tuple[int, list[KeyValue]]]) -> None:
        if changes:
            self.watch_hub.notify(changes)
        self.compactor.kick()

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self._expiry_task is not None:
            self._expiry_task.cancel()
        self.node.stop()
        self.watch_hub.close()
        self.wait.fail_all(ServerStopped())
        await self.compactor.stop()
        await self.guard.idle()
        self.backend.close()

    def _fatal(self, exc: BaseException) -> None:
        self.fatal_error = exc
        self._log.fatal(
            "cannot apply committed entries; stopping", error=f"{type(exc).__name__}: {exc}"
        )
        self.wait.fail_all(ServerStopped())
        if self._on_fatal_cb is not None:
            self._on_fatal_cb(exc)

    # -- headers ----------------------------------------------------------------------

    def fill_header(self, h: ResponseHeader) -> None:
        """cluster_id, member_id, raft_term; revision too if the response left it 0."""
        h.cluster_id = self.cluster_id
        h.member_id = self.member_id
        h.raft_term = self.node.term
        if h.revision == 0:
            h.revision = self.store.current_revision

    def fill_watch_header(self, resp: WatchResponse, revision: int) -> None:
        """Watch responses carry the revision the hub decided (0 on compaction cancels)."""
        h = resp.header
        h.cluster_id = self.cluster_id
        h.member_id = self.member_id
        h.raft_term = self.node.term
        h.revision = revision

    def fill_member_header(self, h: ResponseHeader) -> None:
        """Cluster RPC headers carry no revision (as etcd's)."""
        h.cluster_id = self.cluster_id
        h.member_id = self.member_id
        h.raft_term = self.node.term

    # -- KV ---------------------------------------------------------------------------

    def _check_alive(self) -> None:
        """After a fatal error memory and disk may disagree: serve nothing more."""
        if self.fatal_error is not None:
            raise ServerStopped()

    def range(self, r: RangeRequest) -> RangeResponse:
        self._check_alive()
        with self.store.read() as view:
            return kv.range_(view, r)

    async def put(self, r: PutRequest) -> PutResponse:
        return await self._propose(r)  # type: ignore[return-value]

    async def delete_range(self, r: DeleteRangeRequest) -> DeleteRangeResponse:
        return await self._propose(r)  # type: ignore[return-value]

    async def txn(self, r: TxnRequest) -> TxnResponse:
        if kv.is_read_only(r):
            self._check_alive()
            with self.store.read() as view:
                return kv.txn_read_only(view, r)
        return await self._propose(r)  # type: ignore[return-value]

    async def compact(self, r: CompactionRequest) -> CompactionResponse:
        resp: CompactionResponse = await self._propose(r)  # type: ignore[assignment]
        if r.physical:
            await self.compactor.wait_finished(r.revision)
        return resp

    async def alarm(self, r: AlarmRequest) -> AlarmResponse:
        return await self._propose(r)  # type: ignore[return-value]

    async def _propose(self, r: Message) -> Message:
        """Propose a client request (within --max-request-bytes and the quota) and
        await its result."""
        size = r.ByteSize()
        if size + _varint_len(size) + _PROPOSAL_HEADER_BYTES > self._max_request_bytes:
            raise RequestTooLarge()
        if self._quota:
            await self._check_quota(r)
        return await self._submit(r)  # type: ignore[return-value]

    async def _check_quota(self, r: Message) -> None:
        """A write that could grow the database past the quota is refused, and raises
        the NOSPACE alarm for this member first (as etcd's quota servers do)."""
        cost = quota_cost(r)
        if cost and self.backend.size() + cost >= self._quota:
            await self._submit(AlarmRequest(
                action=AlarmRequest.ACTIVATE, memberID=self.member_id, alarm=NOSPACE))
            raise NoSpace()

    async def _submit(self, r: Message) -> object:
        if self.stopped or self.fatal_error is not None:
            raise ServerStopped()
        return await self.node.propose(Proposal(self._ids.next(), r))

    # -- leases -----------------------------------------------------------------------

    async def lease_grant(self, r: LeaseGrantRequest) -> LeaseGrantResponse:
        """Grant; an id of 0 is chosen here, before proposing, so every member applies
        the same one (positive, from the request id generator, as etcd)."""
        lease_id = r.ID
        while lease_id == 0:
            lease_id = self._ids.next() & ((1 << 63) - 1)
        return await self._propose(  # type: ignore[return-value]
            LeaseGrantRequest(ID=lease_id, TTL=r.TTL))

    async def lease_revoke(self, r: LeaseRevokeRequest) -> LeaseRevokeResponse:
        return await self._propose(r)  # type: ignore[return-value]

    def lease_renew(self, lease_id: int) -> int:
        """KeepAlive on the leader: the granted TTL, or 0 for an unknown/expired lease."""
        return self.lessor.renew(lease_id)

    def lease_time_to_live(self, r: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse:
        self._check_alive()
        lease = self.lessor.get(r.ID)
        if lease is None:
            return LeaseTimeToLiveResponse(ID=r.ID, TTL=-1)
        resp = LeaseTimeToLiveResponse(
            ID=r.ID, TTL=self.lessor.remaining(lease), grantedTTL=lease.ttl)
        if r.keys:
            resp.keys.extend(sorted(lease.keys))
        return resp

    def lease_leases(self) -> LeaseLeasesResponse:
        return LeaseLeasesResponse(leases=[LeaseStatus(ID=i) for i in self.lessor.ids()])

    async def revoke_expired_leases(self) -> int:
        """Propose revokes for leases whose time is up (at most ``LEASE_REVOKES_PER_TICK``);
        returns how many were proposed. Runs every ``LEASE_TICK_S`` on its own; a test on a
        ManualClock calls it after advancing the clock."""
        due = self.lessor.expired(LEASE_REVOKES_PER_TICK)
        if due:
            results = await asyncio.gather(
                *(self._submit(LeaseRevokeRequest(ID=i)) for i in due),
                return_exceptions=True)
            for lease_id, res in zip(due, results, strict=True):
                if isinstance(res, BaseException) and not isinstance(res, LeaseNotFound):
                    self._log.warn("failed to revoke an expired lease",
                                   **{"lease-id": f"{lease_id:x}", "error": str(res)})
        return len(due)

    async def _expire_leases(self) -> None:
        while not self.stopped:
            await asyncio.sleep(LEASE_TICK_S)
            await self.revoke_expired_leases()

    # -- maintenance and cluster ------------------------------------------------------

    def status(self) -> StatusResponse:
        resp = StatusResponse(
            version=ETCD_VERSION,
            dbSize=self.backend.size(),
            dbSizeInUse=self.backend.size_in_use(),
            leader=self.member_id,
            raftIndex=self.node.committed_index,
            raftTerm=self.node.term,
            raftAppliedIndex=self.node.applied_index,
        )
        for a in self.alarms.get():
            resp.errors.append(f"memberID:{a.memberID} alarm:{AlarmType.Name(a.alarm)} ")
        self.fill_header(resp.header)
        return resp

    def hash(self) -> HashResponse:
        self._check_alive()
        resp = HashResponse(hash=self.backend.hash())
        self.fill_header(resp.header)
        return resp

    async def hash_kv(self, rev: int) -> HashKVResponse:
        """The MVCC history's hash up to ``rev``, once physical compaction is done (so
        it depends on the history only, not on how far the compactor got)."""
        self._check_alive()
        store = self.store
        while store.finished_compact_revision < store.compact_revision:
            await self.compactor.wait_finished(store.compact_revision)
            self._check_alive()
        crc, _ = store.hash_kv(rev)
        resp = HashKVResponse(hash=crc, compact_revision=store.compact_revision)
        self.fill_header(resp.header)
        return resp

    async def defragment(self) -> DefragmentResponse:
        """Rewrite the database without its free pages (the loop waits meanwhile, as
        etcd's requests wait for its defragmentation)."""
        self._check_alive()
        await self.guard.idle()
        self.backend.defragment()
        resp = DefragmentResponse()
        self.fill_header(resp.header)
        return resp

    async def snapshot(self) -> AsyncIterator[SnapshotResponse]:
        """A consistent copy of the database in 32 KiB chunks, padded with zeros to a
        multiple of 512 bytes, then its SHA-256 (what ``etcdctl snapshot save`` checks).
        ``remaining_bytes`` counts the image bytes still to come after each chunk."""
        self._check_alive()
        tmp = self.data_dir / "member" / f"snapshot-{self._ids.next():x}.tmp"
        try:
            await self.guard.run(None, lambda: self.backend.copy_to(tmp))
            with open(tmp / "data.mdb", "rb") as f:
                size = f.seek(0, 2)
                f.seek(0)
                total = size + (-size % 512)
                digest = hashlib.sha256()
                sent = 0
                while sent < total:
                    chunk = f.read(SNAPSHOT_CHUNK_BYTES)
                    if len(chunk) < SNAPSHOT_CHUNK_BYTES:
                        chunk += bytes(min(SNAPSHOT_CHUNK_BYTES, total - sent) - len(chunk))
                    digest.update(chunk)
                    sent += len(chunk)
                    yield SnapshotResponse(remaining_bytes=total - sent, blob=chunk)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        yield SnapshotResponse(remaining_bytes=0, blob=digest.digest())

    def member_list(self) -> MemberListResponse:
        resp = MemberListResponse(members=self.membership.members())
        self.fill_member_header(resp.header)
        return resp
