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

Auth: while auth is enabled, every request names its caller (``AuthInfo``, from
``caller(token, common_name)``: the request's token, else its TLS certificate's CN with
--client-cert-auth) and is checked here before it is served or proposed, as etcd's
v3_server and authApplierV3 do; writes are checked again at apply (see ``apply``). With
auth disabled (the default) all of this costs one attribute test per request. Passwords
are hashed (and checked) on a small executor before anything is proposed, so no entry
ever holds a plain-text password. A stream (Watch) resolves its caller once and keeps
that identity (``StreamIdentity``): an expired simple token does not end a watch stream,
but a revoked permission, a deleted user or a changed password takes effect.

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
from concurrent.futures import ThreadPoolExecutor

from google.protobuf.message import Message

from etcdlite.protos.internal_pb2 import (
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
    AlarmType,
    AuthenticateRequest,
    AuthenticateResponse,
    AuthRoleGetRequest,
    AuthRoleGetResponse,
    AuthRoleListRequest,
    AuthRoleListResponse,
    AuthStatusRequest,
    AuthStatusResponse,
    AuthUserAddRequest,
    AuthUserChangePasswordRequest,
    AuthUserGetRequest,
    AuthUserGetResponse,
    AuthUserListRequest,
    AuthUserListResponse,
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
    WatchCreateRequest,
    WatchResponse,
)
from etcdlite.server import kv
from etcdlite.server.alarms import AlarmStore
from etcdlite.server.apply import AUTH_ADMIN_REQUESTS, Applier, Proposal
from etcdlite.server.auth_perms import AuthChecker
from etcdlite.server.auth_store import (
    AuthStore,
    effective_bcrypt_cost,
    hash_password,
    verify_password,
)
from etcdlite.server.auth_tokens import (
    AuthInfo,
    SimpleTokenProvider,
    TokenRevocations,
    parse_auth_token,
    resolve_token,
)
from etcdlite.server.backend_guard import BackendGuard
from etcdlite.server.clock import Clock, SystemClock
from etcdlite.server.compactor import Compactor
from etcdlite.server.config import EtcdConfig, receive_limit
from etcdlite.server.errors import (
    AuthError,
    AuthFailed,
    AuthUserAlreadyExist,
    AuthUserEmpty,
    AuthUserNotFound,
    InvalidAuthToken,
    LeaseNotFound,
    NoSpace,
    RequestTooLarge,
    ServerStopped,
)
from etcdlite.server.ids import IdGenerator
from etcdlite.server.lease import Lessor, min_lease_ttl
from etcdlite.server.log import Logger
from etcdlite.server.membership import Membership
from etcdlite.server.node import LocalNode
from etcdlite.server.quota import quota_cost
from etcdlite.server.version import ETCD_CLUSTER_VERSION, ETCD_VERSION
from etcdlite.server.wait import Wait
from etcdlite.server.watch import WatchHub
from etcdlite.storage.backend import DEFAULT_MAP_SIZE, LmdbBackend
from etcdlite.storage.dirlock import lock_dir, unlock
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
_QUOTA_CHECKED = (PutRequest, TxnRequest, LeaseGrantRequest)
_PROPOSAL_HEADER_BYTES = 14
"""What etcd's internal request adds around a client request (request header with a
64-bit id, plus the field tag): --max-request-bytes is checked against the sum."""
AUTH_HASH_THREADS = 2
"""Password hashes and checks (scrypt: ~0.1 s and 16 MiB each at cost 10) run on this
many threads, so a burst of logins cannot take every core or much memory."""


def _varint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def map_size_for(quota: int) -> int:
    """LMDB's address space: room past the quota, so deletes, compaction and
    defragment keep working after NOSPACE; without a quota, 64 GiB."""
    return quota + max(quota, 256 * 1024 * 1024) if quota else DEFAULT_MAP_SIZE




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
        # Parsed first: a bad --auth-token must fail before anything is opened.
        self.tokens = parse_auth_token(cfg.auth_token, clock=self._clock,
                                       ttl_s=cfg.auth_token_ttl_s)
        self.bcrypt_cost = effective_bcrypt_cost(cfg.bcrypt_cost)
        self._auth_pool: ThreadPoolExecutor | None = None
        self.data_dir = cfg.resolved_data_dir()
        self._locks = [lock_dir(self.data_dir)]
        try:
            if cfg.wal_dir is not None:
                self._locks.append(lock_dir(cfg.wal_dir, "wal dir"))
            self._open(cfg, wal_segment_bytes)
        except BaseException:
            self._unlock()
            raise

    def _open(self, cfg: EtcdConfig, wal_segment_bytes: int) -> None:
        """The member's state: everything on disk opened and recovered, and the parts
        built on it (the directories are locked already)."""
        self._quota = cfg.resolved_quota()
        # Deferred, synced commits: the node commits every 100 ms (see LocalNode).
        self.backend = LmdbBackend(self.data_dir / "member" / "db",
                                   sync=not cfg.unsafe_no_fsync, deferred=True,
                                   map_size=map_size_for(self._quota))
        self.store = Store(self.backend)
        self.membership = Membership(self.backend)
        self.alarms = AlarmStore(self.backend)
        self.lessor = Lessor(self.backend, self.store, self._clock,
                             min_lease_ttl(cfg.election_timeout_ms, cfg.heartbeat_interval_ms))
        self.token_revocations = TokenRevocations(self.tokens)
        self.auth = AuthStore(self.backend, self.token_revocations)
        self.auth_checker = AuthChecker(self.auth)
        self.applier = Applier(self.store, self.alarms, self.membership, self.lessor,
                               self.auth, self.auth_checker)
        self.wait = Wait()
        # Compaction batches join the backend's open transaction: the node commits them.
        self.compactor = Compactor(self.store, self._fatal,
                                   on_batch=lambda: self.node.schedule_commit())
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
                         snapshot_count=cfg.resolved_snapshot_count())
        try:
            if contents is not None:
                replayed = node.recover(contents)
                if replayed:
                    self._log.info("replayed WAL entries", entries=replayed,
                                   **{"applied-index": node.applied_index})
            if not self.membership.bootstrapped:
                node.bootstrap(founding or Membership.bootstrap_request(cfg))
            if len(metadata) != _WAL_METADATA.size:
                raise CorruptStore(f"wal: {wal_dir} has metadata of {len(metadata)} bytes, "
                                   f"not an etcdlite member's {_WAL_METADATA.size}")
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
        if self._auth_pool is not None:
            self._auth_pool.shutdown(wait=True, cancel_futures=True)
        await self.compactor.stop()
        await self.guard.idle()
        if self.fatal_error is None:
            self.backend.commit()  # a clean stop leaves nothing for the WAL to replay
        self.backend.close()
        self._unlock()

    def _unlock(self) -> None:
        while self._locks:
            unlock(self._locks.pop())

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

    def range(self, r: RangeRequest, caller: AuthInfo | None = None) -> RangeResponse:
        self._check_alive()
        if self.auth.enabled:
            self.auth_checker.check_range(caller, r)
        with self.store.read() as view:
            return kv.range_(view, r)

    async def put(self, r: PutRequest, caller: AuthInfo | None = None) -> PutResponse:
        if self.auth.enabled:
            self.auth_checker.check_put(caller, r, self.applier.lease_keys(r.lease))
        return await self._propose(r, caller)  # type: ignore[return-value]

    async def delete_range(self, r: DeleteRangeRequest,
                           caller: AuthInfo | None = None) -> DeleteRangeResponse:
        if self.auth.enabled:
            self.auth_checker.check_delete_range(caller, r)
        return await self._propose(r, caller)  # type: ignore[return-value]

    async def txn(self, r: TxnRequest, caller: AuthInfo | None = None) -> TxnResponse:
        if self.auth.enabled:
            self.auth_checker.check_txn(caller, r, self.applier.lease_keys)
        if kv.is_read_only(r):
            self._check_alive()
            if self._over_quota(r):
                await self._refuse_nospace()
            with self.store.read() as view:
                return kv.txn_read_only(view, r)
        return await self._propose(r, caller)  # type: ignore[return-value]

    async def compact(self, r: CompactionRequest,
                      caller: AuthInfo | None = None) -> CompactionResponse:
        """Compact (any caller may: etcd does not check permissions here)."""
        resp: CompactionResponse = await self._propose(r, caller)  # type: ignore[assignment]
        if r.physical:
            await self.compactor.wait_finished(r.revision)
        return resp

    async def alarm(self, r: AlarmRequest, caller: AuthInfo | None = None) -> AlarmResponse:
        return await self._propose(r, caller)  # type: ignore[return-value]

    async def _propose(self, r: Message, caller: AuthInfo | None = None) -> Message:
        """Propose a client request (within --max-request-bytes and the quota) on behalf
        of ``caller`` and await its result."""
        size = r.ByteSize()
        header = _PROPOSAL_HEADER_BYTES
        if caller is not None:  # etcd's request header carries the caller too
            name = len(caller.username.encode())
            header += 2 + name + _varint_len(name) + _varint_len(caller.revision)
        if size + _varint_len(size) + header > self._max_request_bytes:
            raise RequestTooLarge()
        if isinstance(r, _QUOTA_CHECKED) and self._over_quota(r):
            await self._refuse_nospace()
        return await self._submit(r, caller)  # type: ignore[return-value]

    def _over_quota(self, r: Message) -> bool:
        """Put, Txn (read-only ones too) and LeaseGrant are refused once the database
        file plus the request's cost reaches the quota, even at cost 0 (etcd 3.5.1's
        quota servers do exactly this)."""
        return bool(self._quota) and self.backend.size() + quota_cost(r) >= self._quota

    async def _refuse_nospace(self) -> None:
        """Raise the NOSPACE alarm for this member, then refuse (as etcd)."""
        await self._submit(AlarmRequest(
            action=AlarmRequest.ACTIVATE, memberID=self.member_id, alarm=NOSPACE))
        raise NoSpace()

    async def _submit(self, r: Message, caller: AuthInfo | None = None) -> object:
        if self.stopped or self.fatal_error is not None:
            raise ServerStopped()
        if caller is None:
            return await self.node.propose(Proposal(self._ids.next(), r))
        return await self.node.propose(
            Proposal(self._ids.next(), r, caller.username, caller.revision))

    # -- leases -----------------------------------------------------------------------

    async def lease_grant(self, r: LeaseGrantRequest,
                          caller: AuthInfo | None = None) -> LeaseGrantResponse:
        """Grant; an id of 0 is chosen here, before proposing, so every member applies
        the same one (positive, from the request id generator, as etcd). Any caller may
        grant (etcd checks no permission)."""
        lease_id = r.ID
        while lease_id == 0:
            lease_id = self._ids.next() & ((1 << 63) - 1)
        return await self._propose(  # type: ignore[return-value]
            LeaseGrantRequest(ID=lease_id, TTL=r.TTL), caller)

    async def lease_revoke(self, r: LeaseRevokeRequest,
                           caller: AuthInfo | None = None) -> LeaseRevokeResponse:
        """Revoke: the caller needs WRITE on every key attached to the lease."""
        if self.auth.enabled:
            self.auth_checker.check_lease_revoke(caller, self.applier.lease_keys(r.ID))
        return await self._propose(r, caller)  # type: ignore[return-value]

    def lease_renew(self, lease_id: int) -> int:
        """KeepAlive on the leader: the granted TTL, or 0 for an unknown/expired lease."""
        return self.lessor.renew(lease_id)

    def lease_time_to_live(self, r: LeaseTimeToLiveRequest,
                           caller: AuthInfo | None = None) -> LeaseTimeToLiveResponse:
        """TimeToLive; asking for the keys needs READ on each of them (etcd 3.5.9+)."""
        self._check_alive()
        if self.auth.enabled:
            self.auth_checker.check_lease_time_to_live(caller, r,
                                                      self.applier.lease_keys(r.ID))
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
                *(self._submit(LeaseExpireRequest(id=i)) for i in due),
                return_exceptions=True)
            for lease_id, res in zip(due, results, strict=True):
                if isinstance(res, BaseException) and not isinstance(res, LeaseNotFound):
                    self._log.warn("failed to revoke an expired lease",
                                   **{"lease-id": f"{lease_id:x}", "error": str(res)})
        return len(due)

    async def _expire_leases(self) -> None:
        while not self.stopped:
            await asyncio.sleep(LEASE_TICK_S)
            self.expire_tokens()
            await self.revoke_expired_leases()

    def expire_tokens(self) -> None:
        """Forget the simple tokens whose TTL ran out (each Authenticate leaves one behind,
        and a client that exits never uses it again). Tokens are also checked on use, so
        this only bounds memory."""
        tokens = self.tokens
        if isinstance(tokens, SimpleTokenProvider) and len(tokens):
            tokens.expire()

    # -- auth -------------------------------------------------------------------------

    def caller(self, token: str | None, common_name: str | None = None) -> AuthInfo | None:
        """Who a request comes from (etcd's AuthInfoFromCtx): None while auth is disabled
        or when the request has no credentials (checks then answer "user name is
        empty"); the user of ``token`` (its metadata ``token``, else ``authorization``),
        ``InvalidAuthToken`` if the token is unknown, malformed or expired; without a
        token, ``common_name``, the CN of a verified client certificate (only passed
        with --client-cert-auth).

        >>> etcd.caller("lDnZDAKcnCeiHYVJ.87")    # doctest: +SKIP
        AuthInfo(username='alice', revision=5)
        """
        auth = self.auth
        if not auth.enabled:
            return None
        if token is not None:
            return resolve_token(self.tokens, token, enabled=True, auth_revision=auth.revision)
        if common_name:
            return AuthInfo(common_name, auth.revision)
        return None

    def stream_identity(self, token: str | None,
                        common_name: str | None = None) -> StreamIdentity:
        """The identity of a stream opened with these credentials (see ``StreamIdentity``)."""
        return StreamIdentity(self, token, common_name)

    def watch_permitted(self, identity: StreamIdentity, r: WatchCreateRequest) -> bool:
        """Whether the stream's caller may watch ``r``'s range (READ on it) now. A refusal
        is not an error on the stream: the servicer answers it with a cancel, as etcd."""
        if not self.auth.enabled:
            return True
        try:
            self.auth_checker.check_watch(identity.current(), r)
        except AuthError:
            return False
        return True

    def _auth_executor(self) -> ThreadPoolExecutor:
        if self._auth_pool is None:
            self._auth_pool = ThreadPoolExecutor(AUTH_HASH_THREADS,
                                                 thread_name_prefix="etcdlite-auth")
        return self._auth_pool

    async def _hash_password(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._auth_executor(), hash_password, password,
                                          self.bcrypt_cost)

    async def authenticate(self, r: AuthenticateRequest) -> AuthenticateResponse:
        """Check the password (off the loop), then propose the login without it; the
        token is assigned when the entry applies. If the auth revision moved between the
        check and the apply (say, the password changed), check again (etcd's loop)."""
        self._check_alive()
        loop = asyncio.get_running_loop()
        while True:
            hashed, checked = self.auth.password_hash_for_login(r.name)
            ok = await loop.run_in_executor(self._auth_executor(), verify_password,
                                            r.password, hashed)
            if not ok:
                raise AuthFailed()
            entry = InternalAuthenticateRequest(name=r.name,
                                                simple_token=self.tokens.gen_token_prefix())
            resp: AuthenticateResponse = await self._submit(entry)  # type: ignore[assignment]
            if checked == self.auth.revision:
                return resp

    async def auth_change(self, r: Message, caller: AuthInfo | None = None) -> Message:
        """AuthEnable, AuthDisable and user and role management: role root only (once
        auth is enabled). A password is hashed here and only its hash is proposed."""
        if type(r) not in AUTH_ADMIN_REQUESTS:
            raise TypeError(f"not an auth change: {type(r).__name__}")
        self._check_alive()
        if self.auth.enabled:
            self.auth_checker.check_admin(caller)
        if isinstance(r, AuthUserAddRequest):
            r = await self._user_add_entry(r)
        elif isinstance(r, AuthUserChangePasswordRequest):
            r = await self._change_password_entry(r)
        return await self._propose(r, caller)

    async def _user_add_entry(self, r: AuthUserAddRequest) -> AuthUserAddRequest:
        """What UserAdd proposes: the name, the options and the password's hash. Requests
        the apply step would refuse are refused before paying for the hash."""
        if not r.name:
            raise AuthUserEmpty()
        if self.auth.get_user(r.name) is not None:
            raise AuthUserAlreadyExist()
        entry = AuthUserAddRequest(name=r.name)
        if r.HasField("options"):
            entry.options.CopyFrom(r.options)
        if not r.options.no_password:
            entry.hashedPassword = await self._hash_password(r.password)
        return entry

    async def _change_password_entry(
            self, r: AuthUserChangePasswordRequest) -> AuthUserChangePasswordRequest:
        user = self.auth.get_user(r.name)
        if user is None:
            raise AuthUserNotFound()
        entry = AuthUserChangePasswordRequest(name=r.name)
        if not user.options.no_password:
            entry.hashedPassword = await self._hash_password(r.password)
        return entry

    def auth_read(self, r: Message, caller: AuthInfo | None = None) -> Message:
        """AuthStatus, UserGet, UserList, RoleGet, RoleList, served from the local auth
        state: role root only, except UserGet of oneself and RoleGet of one's own role."""
        self._check_alive()
        auth = self.auth
        checker = self.auth_checker
        if isinstance(r, AuthUserGetRequest):
            if auth.enabled:
                checker.check_user_get(caller, r)
            return AuthUserGetResponse(roles=auth.user_get(r.name))
        if isinstance(r, AuthRoleGetRequest):
            if auth.enabled:
                checker.check_role_get(caller, r)
            return AuthRoleGetResponse(perm=auth.role_get(r.role))
        if auth.enabled:
            checker.check_admin(caller)
        if isinstance(r, AuthStatusRequest):
            return AuthStatusResponse(enabled=auth.enabled, authRevision=auth.revision)
        if isinstance(r, AuthUserListRequest):
            return AuthUserListResponse(users=auth.user_list())
        if isinstance(r, AuthRoleListRequest):
            return AuthRoleListResponse(roles=auth.role_list())
        raise TypeError(f"not an auth read: {type(r).__name__}")

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
            # gogo's text form leaves out zero fields: a member-0 alarm has no memberID.
            member = f"memberID:{a.memberID} " if a.memberID else ""
            resp.errors.append(f"{member}alarm:{AlarmType.Name(a.alarm)} ")
        self.fill_header(resp.header)
        return resp

    def check_maintenance_admin(self, caller: AuthInfo | None) -> None:
        """Defragment, Snapshot, Hash, HashKV need role root while auth is enabled (with
        etcd's raw "auth: ..." errors, see ``auth_perms``)."""
        if self.auth.enabled:
            self.auth_checker.check_maintenance_admin(caller)

    def hash(self, caller: AuthInfo | None = None) -> HashResponse:
        self._check_alive()
        self.check_maintenance_admin(caller)
        resp = HashResponse(hash=self.backend.hash())
        self.fill_header(resp.header)
        return resp

    async def hash_kv(self, rev: int, caller: AuthInfo | None = None) -> HashKVResponse:
        """The MVCC history's hash up to ``rev``, once physical compaction is done (so
        it depends on the history only, not on how far the compactor got)."""
        self._check_alive()
        self.check_maintenance_admin(caller)
        store = self.store
        while store.finished_compact_revision < store.compact_revision:
            await self.compactor.wait_finished(store.compact_revision)
            self._check_alive()
        crc, _ = store.hash_kv(rev)
        resp = HashKVResponse(hash=crc, compact_revision=store.compact_revision)
        self.fill_header(resp.header)
        return resp

    async def defragment(self, caller: AuthInfo | None = None) -> DefragmentResponse:
        """Rewrite the database without its free pages (the loop waits meanwhile, as
        etcd's requests wait for its defragmentation)."""
        self._check_alive()
        self.check_maintenance_admin(caller)
        await self.guard.idle()
        self.backend.defragment()
        return DefragmentResponse()  # etcd 3.5.1 answers without a header

    async def snapshot(self, caller: AuthInfo | None = None) -> AsyncIterator[SnapshotResponse]:
        """A consistent copy of the database in 32 KiB chunks, padded with zeros to a
        multiple of 512 bytes, then its SHA-256 (what ``etcdctl snapshot save`` checks).
        ``remaining_bytes`` counts the image bytes still to come after each chunk."""
        self._check_alive()
        self.check_maintenance_admin(caller)
        tmp = self.data_dir / "member" / f"snapshot-{self._ids.next():x}.tmp"
        self.node.commit_backend()  # the copy is made from committed state
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


class StreamIdentity:
    """Who a long-lived stream's requests come from (Watch): resolved from the stream's
    credentials (its token, else its certificate's CN) the first time auth asks, then
    fixed for the life of the stream.

    Invariants:

    * Once resolved, the identity stays that user until an event that revokes the user's
      tokens (the user deleted or its password changed, auth disabled; see
      ``TokenRevocations``); then it is resolved again from the credentials, which an
      expired or revoked token no longer passes.
    * Checks use the current auth revision and the user's current permissions, so a
      permission revoked (or a user deleted) takes effect at once. Only the token's own
      expiry is not looked at again: a simple token that expires while its watch stream
      is open does not end the stream's right to open more watchers.

    Example (``--auth-token-ttl 5``)::

        ident = etcd.stream_identity(token)   # watch stream opened with alice's token
        ident.current()                       # AuthInfo('alice', 7): fixed from now on
        # ... 6 s later the token has expired; a unary call with it is refused, but
        ident.current()                       # AuthInfo('alice', 7), still alice
    """

    def __init__(self, etcd: Etcd, token: str | None, common_name: str | None):
        self._etcd = etcd
        self._token = token
        self._common_name = common_name
        self._user: str | None = None
        self._stamp: tuple[int, int] = (0, 0)

    def current(self) -> AuthInfo | None:
        """The caller to check a request of the stream with now; None for no user (a bad,
        expired or absent token, or auth disabled)."""
        etcd = self._etcd
        revocations = etcd.token_revocations
        user = self._user
        if user is not None and revocations.stamp(user) == self._stamp:
            return AuthInfo(user, etcd.auth.revision)
        self._user = None
        try:
            info = etcd.caller(self._token, self._common_name)
        except InvalidAuthToken:
            return None
        if info is not None and info.revision >= etcd.auth.revision:
            # A JWT signed at an older auth revision is not fixed: its checks fail
            # ("revision of auth store is old") until the client logs in again.
            self._user, self._stamp = info.username, revocations.stamp(info.username)
        return info
