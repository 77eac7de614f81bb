"""Cluster membership as stored in the backend's ``members`` table.

Key: member id (8 bytes big-endian); value: a serialized ``Member``. The cluster id,
the local member id and the cluster version live in meta. Membership changes are
applied entries like any other (``apply_*`` run inside the applier's batch):

* a new cluster's first entry is a ``BootstrapMemberRequest`` built from the
  configuration (``bootstrap_request``: etcd's id hashing, see ``ids``);
* each start publishes the member's name and client URLs (``MemberAttributesRequest``);
* the cluster version is recorded once (``ClusterVersionRequest``).

An existing data directory keeps the ids it stored, whatever the flags say now.
"""

from __future__ import annotations

import struct

import lmdb

from etcdlite.protos.internal_pb2 import (
    BootstrapMemberRequest,
    ClusterVersionRequest,
    MemberAttributesRequest,
)
from etcdlite.protos.rpc_pb2 import Member
from etcdlite.server.config import EtcdConfig
from etcdlite.server.ids import cluster_id, member_id
from etcdlite.storage.backend import LmdbBackend

CLUSTER_ID = b"cluster_id"
LOCAL_MEMBER_ID = b"local_member_id"
CLUSTER_VERSION = b"cluster_version"
_ID = struct.Struct(">Q")


class Membership:
    def __init__(self, backend: LmdbBackend):
        self._backend = backend
        self._members: dict[int, Member] = {}
        with backend.env.begin() as txn:
            for raw_id, raw in txn.cursor(db=self._backend.db(b"members")):
                self._members[_ID.unpack(raw_id)[0]] = Member.FromString(raw)
            local = txn.get(LOCAL_MEMBER_ID, db=self._backend.db(b"meta"))
            cid = txn.get(CLUSTER_ID, db=self._backend.db(b"meta"))
            version = txn.get(CLUSTER_VERSION, db=self._backend.db(b"meta"))
        self.local_id = _ID.unpack(local)[0] if local else 0
        self.cluster_id = _ID.unpack(cid)[0] if cid else 0
        self.cluster_version = version.decode() if version else ""

    @property
    def bootstrapped(self) -> bool:
        return bool(self.local_id)

    @staticmethod
    def bootstrap_request(cfg: EtcdConfig) -> BootstrapMemberRequest:
        """The founding entry of a new single-member cluster configured by ``cfg``."""
        mid = member_id(cfg.initial_advertise_peer_urls, cfg.initial_cluster_token)
        return BootstrapMemberRequest(
            member=Member(ID=mid, peerURLs=cfg.initial_advertise_peer_urls),
            cluster_id=cluster_id([mid]),
        )

    def apply_bootstrap(self, txn: lmdb.Transaction, r: BootstrapMemberRequest) -> None:
        if self.bootstrapped:
            raise AssertionError("bootstrapping a cluster that already has members")
        self._store(txn, r.member)
        txn.put(LOCAL_MEMBER_ID, _ID.pack(r.member.ID), db=self._backend.db(b"meta"))
        txn.put(CLUSTER_ID, _ID.pack(r.cluster_id), db=self._backend.db(b"meta"))
        self.local_id = r.member.ID
        self.cluster_id = r.cluster_id

    def apply_attributes(self, txn: lmdb.Transaction, r: MemberAttributesRequest) -> None:
        member = self._members.get(r.member_id)
        if member is None:
            return  # a member removed before its publication was applied
        updated = Member()
        updated.CopyFrom(member)
        updated.name = r.name
        del updated.clientURLs[:]
        updated.clientURLs.extend(r.client_urls)
        self._store(txn, updated)

    def apply_cluster_version(self, txn: lmdb.Transaction, r: ClusterVersionRequest) -> None:
        txn.put(CLUSTER_VERSION, r.version.encode(), db=self._backend.db(b"meta"))
        self.cluster_version = r.version

    def _store(self, txn: lmdb.Transaction, member: Member) -> None:
        txn.put(_ID.pack(member.ID), member.SerializeToString(), db=self._backend.db(b"members"))
        self._members[member.ID] = member

    def members(self) -> list[Member]:
        """All members, in id order (as etcd lists them)."""
        return [self._members[mid] for mid in sorted(self._members)]
