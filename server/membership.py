"""Cluster membership as stored in the backend's ``members`` table.

Key: member id (8 bytes big-endian); value: a serialized ``Member``. The cluster id is
stored in meta. A fresh data directory gets its ids from the configuration (etcd's
hashing, see ``ids``); an existing one keeps what it stored, whatever the flags say now.
"""

from __future__ import annotations

import struct

from etcdlite.protos.rpc_pb2 import Member
from etcdlite.server.config import EtcdConfig
from etcdlite.server.ids import cluster_id, member_id
from etcdlite.storage.backend import LmdbBackend, pack_int, unpack_int

CLUSTER_ID = b"cluster_id"
LOCAL_MEMBER_ID = b"local_member_id"
_ID = struct.Struct(">Q")


class Membership:
    def __init__(self, backend: LmdbBackend, cfg: EtcdConfig):
        self._backend = backend
        self._db = backend.db(b"members")
        stored = backend.get_meta(LOCAL_MEMBER_ID)
        if stored is None:
            self._bootstrap(cfg)
        else:
            self.local_id = unpack_int(stored) & 0xFFFFFFFFFFFFFFFF
            self.cluster_id = unpack_int(backend.get_meta(CLUSTER_ID) or b"") & (2**64 - 1)
        self._members: dict[int, Member] = {}
        with backend.env.begin(db=self._db) as txn:
            for raw_id, raw in txn.cursor():
                self._members[_ID.unpack(raw_id)[0]] = Member.FromString(raw)

    def _bootstrap(self, cfg: EtcdConfig) -> None:
        self.local_id = member_id(cfg.initial_advertise_peer_urls, cfg.initial_cluster_token)
        self.cluster_id = cluster_id([self.local_id])
        member = Member(ID=self.local_id, peerURLs=cfg.initial_advertise_peer_urls)
        with self._backend.batch() as txn:
            txn.put(_ID.pack(self.local_id), member.SerializeToString(), db=self._db)
            txn.put(LOCAL_MEMBER_ID, pack_int(_signed(self.local_id)), db=self._backend.db(b"meta"))
            txn.put(CLUSTER_ID, pack_int(_signed(self.cluster_id)), db=self._backend.db(b"meta"))

    def publish(self, name: str, client_urls: list[str]) -> None:
        """Record the local member's name and client URLs (done at every start)."""
        member = self._members[self.local_id]
        member.name = name
        del member.clientURLs[:]
        member.clientURLs.extend(client_urls)
        with self._backend.batch() as txn:
            txn.put(_ID.pack(self.local_id), member.SerializeToString(), db=self._db)

    def members(self) -> list[Member]:
        return [self._members[mid] for mid in sorted(self._members)]

    def local(self) -> Member:
        return self._members[self.local_id]


def _signed(u: int) -> int:
    return u - (1 << 64) if u >= 1 << 63 else u
