"""Alarms raised on members (NOSPACE, CORRUPT), kept in the backend's ``alarm`` table.

Each active alarm is one record, key = member id (8 bytes) + alarm type (4 bytes, both
big-endian), empty value; ``AlarmStore`` mirrors the table in memory. Changes happen only
inside an apply batch, so every member records the same alarms.
"""

from __future__ import annotations

import struct

import lmdb

from etcdlite.protos.rpc_pb2 import NONE, AlarmMember
from etcdlite.storage.backend import LmdbBackend

_KEY = struct.Struct(">QI")


class AlarmStore:
    def __init__(self, backend: LmdbBackend):
        self._backend = backend
        self._active: set[tuple[int, int]] = set()
        with backend.env.begin(db=self._backend.db(b"alarm")) as txn:
            for raw, _ in txn.cursor():
                self._active.add(_KEY.unpack(raw))

    def active(self, alarm: int) -> bool:
        """Whether any member has ``alarm`` raised."""
        return any(kind == alarm for _member, kind in self._active)

    def get(self, alarm: int = NONE) -> list[AlarmMember]:
        """Active alarms of type ``alarm`` (NONE: all of them), in a stable order."""
        return [
            AlarmMember(memberID=member, alarm=kind)
            for member, kind in sorted(self._active)
            if alarm == NONE or kind == alarm
        ]

    def activate(self, txn: lmdb.Transaction, member: int, alarm: int) -> AlarmMember:
        """Raise ``alarm`` on ``member``; returns the alarm (also when it was already
        active: etcd answers an ACTIVATE with the alarm either way)."""
        if (member, alarm) in self._active:
            return AlarmMember(memberID=member, alarm=alarm)
        txn.put(_KEY.pack(member, alarm), b"", db=self._backend.db(b"alarm"))
        self._active.add((member, alarm))
        return AlarmMember(memberID=member, alarm=alarm)

    def deactivate(self, txn: lmdb.Transaction, member: int, alarm: int) -> AlarmMember | None:
        """Clear ``alarm`` on ``member``; None if it was not active."""
        if (member, alarm) not in self._active:
            return None
        txn.delete(_KEY.pack(member, alarm), db=self._backend.db(b"alarm"))
        self._active.discard((member, alarm))
        return AlarmMember(memberID=member, alarm=alarm)
