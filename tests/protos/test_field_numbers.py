"""Our descriptors against etcd's, as bundled with aetcd, and against the fact sheet (§3)."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from aetcd.rpc import auth_pb2 as etcd_auth_pb2
from aetcd.rpc import kv_pb2 as etcd_kv_pb2
from aetcd.rpc import rpc_pb2 as etcd_rpc_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from etcdlite.protos import auth_pb2, health_pb2, kv_pb2, rpc_pb2, v3election_pb2, v3lock_pb2

FD = FieldDescriptor
PAIRS: tuple[tuple[ModuleType, ModuleType], ...] = (
    (etcd_kv_pb2, kv_pb2),
    (etcd_auth_pb2, auth_pb2),
    (etcd_rpc_pb2, rpc_pb2),
)
OUR_PREFIX = "etcdlite."


def _is_repeated(f: FieldDescriptor) -> bool:
    flag = getattr(f, "is_repeated", None)  # protobuf >= 6.31; `label` is gone in 7.x
    if flag is not None:
        return bool(flag() if callable(flag) else flag)
    return f.label == FD.LABEL_REPEATED  # pragma: no cover


def _label(f: FieldDescriptor) -> str:
    return "repeated" if _is_repeated(f) else "singular"


def _type_ref(f: FieldDescriptor) -> str:
    """Referenced message/enum type, relative to etcd's package names."""
    ref = f.message_type or f.enum_type
    if ref is None:
        return ""
    return ref.full_name.removeprefix(OUR_PREFIX)


def _oneof(f: FieldDescriptor) -> str:
    return f.containing_oneof.name if f.containing_oneof is not None else ""


def _walk_messages(ds: list[Descriptor]) -> Iterator[Descriptor]:
    for d in ds:
        yield d
        yield from _walk_messages(list(d.nested_types))


def _etcd_messages() -> list[Any]:
    return [
        pytest.param(ours, d, id=d.full_name)
        for theirs, ours in PAIRS
        for d in _walk_messages(list(theirs.DESCRIPTOR.message_types_by_name.values()))
    ]


def _etcd_enums() -> list[Any]:
    out: list[Any] = []
    for theirs, ours in PAIRS:
        enums = list(theirs.DESCRIPTOR.enum_types_by_name.values())
        for d in _walk_messages(list(theirs.DESCRIPTOR.message_types_by_name.values())):
            enums.extend(d.enum_types)
        out.extend(pytest.param(ours, e, id=e.full_name) for e in enums)
    return out


def test_aetcd_bundles_a_recent_enough_etcd() -> None:
    # Guards the comparison below against a stripped-down or empty aetcd.
    assert len(_etcd_messages()) > 100
    assert "Compare" in etcd_rpc_pb2.DESCRIPTOR.message_types_by_name


@pytest.mark.parametrize(("ours", "theirs"), _etcd_messages())
def test_message_matches_etcd(ours: ModuleType, theirs: Descriptor) -> None:
    mine = ours.DESCRIPTOR.pool.FindMessageTypeByName(OUR_PREFIX + theirs.full_name)
    assert mine.name == theirs.name
    assert mine.file is ours.DESCRIPTOR
    for f in theirs.fields:
        assert f.number in mine.fields_by_number, f"{theirs.full_name}: no field {f.number}"
        m = mine.fields_by_number[f.number]
        where = f"{theirs.full_name}.{f.name} = {f.number}"
        assert m.name == f.name, where
        assert m.type == f.type, where
        assert _label(m) == _label(f), where
        assert _type_ref(m) == _type_ref(f), where
        assert _oneof(m) == _oneof(f), where
    for o in theirs.oneofs:
        assert o.name in mine.oneofs_by_name
        assert {f.name for f in o.fields} <= {f.name for f in mine.oneofs_by_name[o.name].fields}


@pytest.mark.parametrize(("ours", "theirs"), _etcd_enums())
def test_enum_matches_etcd(ours: ModuleType, theirs: EnumDescriptor) -> None:
    mine = ours.DESCRIPTOR.pool.FindEnumTypeByName(OUR_PREFIX + theirs.full_name)
    assert mine.name == theirs.name
    mine_values = {v.name: v.number for v in mine.values}
    for v in theirs.values:
        assert mine_values.get(v.name) == v.number, f"{theirs.full_name}.{v.name}"


def test_proto_packages_are_ours() -> None:
    assert kv_pb2.DESCRIPTOR.package == "etcdlite.mvccpb"
    assert auth_pb2.DESCRIPTOR.package == "etcdlite.authpb"
    assert rpc_pb2.DESCRIPTOR.package == "etcdlite.etcdserverpb"
    assert v3lock_pb2.DESCRIPTOR.package == "etcdlite.v3lockpb"
    assert v3election_pb2.DESCRIPTOR.package == "etcdlite.v3electionpb"
    assert health_pb2.DESCRIPTOR.package == "etcdlite.health.v1"
    for mod in (kv_pb2, auth_pb2, rpc_pb2, v3lock_pb2, v3election_pb2, health_pb2):
        assert mod.DESCRIPTOR.name.startswith("etcdlite/protos/")


# (message, field) -> (number, type, repeated), from the fact sheet §3; mostly 3.4/3.5 additions
# plus the odd numbers (WatchResponse.events = 11, Compare.range_end = 64).
FACTS: dict[tuple[str, str], tuple[int, int, bool]] = {
    ("WatchCreateRequest", "watch_id"): (7, FD.TYPE_INT64, False),
    ("WatchCreateRequest", "fragment"): (8, FD.TYPE_BOOL, False),
    ("WatchCreateRequest", "filters"): (5, FD.TYPE_ENUM, True),
    ("WatchResponse", "cancel_reason"): (6, FD.TYPE_STRING, False),
    ("WatchResponse", "fragment"): (7, FD.TYPE_BOOL, False),
    ("WatchResponse", "events"): (11, FD.TYPE_MESSAGE, True),
    ("Compare", "lease"): (8, FD.TYPE_INT64, False),
    ("Compare", "range_end"): (64, FD.TYPE_BYTES, False),
    ("RequestOp", "request_txn"): (4, FD.TYPE_MESSAGE, False),
    ("ResponseOp", "response_txn"): (4, FD.TYPE_MESSAGE, False),
    ("StatusResponse", "raftAppliedIndex"): (7, FD.TYPE_UINT64, False),
    ("StatusResponse", "errors"): (8, FD.TYPE_STRING, True),
    ("StatusResponse", "dbSizeInUse"): (9, FD.TYPE_INT64, False),
    ("StatusResponse", "isLearner"): (10, FD.TYPE_BOOL, False),
    ("Member", "isLearner"): (5, FD.TYPE_BOOL, False),
    ("MemberAddRequest", "isLearner"): (2, FD.TYPE_BOOL, False),
    ("MemberListRequest", "linearizable"): (1, FD.TYPE_BOOL, False),
    ("MemberPromoteRequest", "ID"): (1, FD.TYPE_UINT64, False),
    ("AuthUserAddRequest", "options"): (3, FD.TYPE_MESSAGE, False),
    ("AuthUserAddRequest", "hashedPassword"): (4, FD.TYPE_STRING, False),
    ("AuthUserChangePasswordRequest", "hashedPassword"): (3, FD.TYPE_STRING, False),
    ("AuthUserGrantRoleRequest", "user"): (1, FD.TYPE_STRING, False),
    ("AuthRoleRevokePermissionRequest", "key"): (2, FD.TYPE_BYTES, False),
    ("AuthRoleRevokePermissionRequest", "range_end"): (3, FD.TYPE_BYTES, False),
    ("AuthStatusResponse", "header"): (1, FD.TYPE_MESSAGE, False),
    ("AuthStatusResponse", "enabled"): (2, FD.TYPE_BOOL, False),
    ("AuthStatusResponse", "authRevision"): (3, FD.TYPE_UINT64, False),
    ("DowngradeRequest", "action"): (1, FD.TYPE_ENUM, False),
    ("DowngradeRequest", "version"): (2, FD.TYPE_STRING, False),
    ("DowngradeResponse", "header"): (1, FD.TYPE_MESSAGE, False),
    ("DowngradeResponse", "version"): (2, FD.TYPE_STRING, False),
    ("HashKVResponse", "compact_revision"): (3, FD.TYPE_INT64, False),
    ("LeaseTimeToLiveResponse", "grantedTTL"): (4, FD.TYPE_INT64, False),
    ("LeaseTimeToLiveResponse", "keys"): (5, FD.TYPE_BYTES, True),
    ("LeaseCheckpoint", "remaining_TTL"): (2, FD.TYPE_INT64, False),
    ("LeaseCheckpointRequest", "checkpoints"): (1, FD.TYPE_MESSAGE, True),
    ("MoveLeaderRequest", "targetID"): (1, FD.TYPE_UINT64, False),
    ("RangeRequest", "max_create_revision"): (13, FD.TYPE_INT64, False),
    ("PutRequest", "ignore_lease"): (6, FD.TYPE_BOOL, False),
    ("SnapshotResponse", "remaining_bytes"): (2, FD.TYPE_UINT64, False),
    ("SnapshotResponse", "blob"): (3, FD.TYPE_BYTES, False),
}


@pytest.mark.parametrize(("msg", "field"), sorted(FACTS), ids=lambda v: v)
def test_fact_sheet_fields(msg: str, field: str) -> None:
    number, ftype, repeated = FACTS[msg, field]
    f = getattr(rpc_pb2, msg).DESCRIPTOR.fields_by_name[field]
    assert (f.number, f.type, _is_repeated(f)) == (number, ftype, repeated)


def test_fact_sheet_enums() -> None:
    def values(e: EnumDescriptor) -> dict[str, int]:
        return {v.name: v.number for v in e.values}

    assert values(rpc_pb2.DowngradeRequest.DESCRIPTOR.enum_types_by_name["DowngradeAction"]) == {
        "VALIDATE": 0,
        "ENABLE": 1,
        "CANCEL": 2,
    }
    assert values(rpc_pb2.DESCRIPTOR.enum_types_by_name["AlarmType"]) == {
        "NONE": 0,
        "NOSPACE": 1,
        "CORRUPT": 2,
    }
    assert values(rpc_pb2.Compare.DESCRIPTOR.enum_types_by_name["CompareTarget"])["LEASE"] == 4
    assert values(rpc_pb2.Compare.DESCRIPTOR.enum_types_by_name["CompareResult"])["NOT_EQUAL"] == 3
    assert values(
        health_pb2.HealthCheckResponse.DESCRIPTOR.enum_types_by_name["ServingStatus"]
    ) == {
        "UNKNOWN": 0,
        "SERVING": 1,
        "NOT_SERVING": 2,
        "SERVICE_UNKNOWN": 3,
    }


def test_empty_messages_are_empty() -> None:
    for name in (
        "HashRequest",
        "SnapshotRequest",
        "WatchProgressRequest",
        "LeaseLeasesRequest",
        "DefragmentRequest",
        "StatusRequest",
        "AuthEnableRequest",
        "AuthDisableRequest",
        "AuthStatusRequest",
        "AuthUserListRequest",
        "AuthRoleListRequest",
    ):
        assert not getattr(rpc_pb2, name).DESCRIPTOR.fields, name


def test_lock_election_and_health_fields() -> None:
    def shape(cls: type) -> list[tuple[int, str, int, str]]:
        return [
            (f.number, f.name, f.type, _type_ref(f).removeprefix(OUR_PREFIX))
            for f in cls.DESCRIPTOR.fields  # type: ignore[attr-defined]
        ]

    hdr = (1, "header", FD.TYPE_MESSAGE, "etcdserverpb.ResponseHeader")
    leader_key = "v3electionpb.LeaderKey"
    assert shape(v3lock_pb2.LockRequest) == [
        (1, "name", FD.TYPE_BYTES, ""),
        (2, "lease", FD.TYPE_INT64, ""),
    ]
    assert shape(v3lock_pb2.LockResponse) == [hdr, (2, "key", FD.TYPE_BYTES, "")]
    assert shape(v3lock_pb2.UnlockRequest) == [(1, "key", FD.TYPE_BYTES, "")]
    assert shape(v3lock_pb2.UnlockResponse) == [hdr]
    assert shape(v3election_pb2.CampaignRequest) == [
        (1, "name", FD.TYPE_BYTES, ""),
        (2, "lease", FD.TYPE_INT64, ""),
        (3, "value", FD.TYPE_BYTES, ""),
    ]
    assert shape(v3election_pb2.CampaignResponse) == [
        hdr,
        (2, "leader", FD.TYPE_MESSAGE, leader_key),
    ]
    assert shape(v3election_pb2.LeaderKey) == [
        (1, "name", FD.TYPE_BYTES, ""),
        (2, "key", FD.TYPE_BYTES, ""),
        (3, "rev", FD.TYPE_INT64, ""),
        (4, "lease", FD.TYPE_INT64, ""),
    ]
    assert shape(v3election_pb2.LeaderRequest) == [(1, "name", FD.TYPE_BYTES, "")]
    assert shape(v3election_pb2.LeaderResponse) == [
        hdr,
        (2, "kv", FD.TYPE_MESSAGE, "mvccpb.KeyValue"),
    ]
    assert shape(v3election_pb2.ResignRequest) == [(1, "leader", FD.TYPE_MESSAGE, leader_key)]
    assert shape(v3election_pb2.ResignResponse) == [hdr]
    assert shape(v3election_pb2.ProclaimRequest) == [
        (1, "leader", FD.TYPE_MESSAGE, leader_key),
        (2, "value", FD.TYPE_BYTES, ""),
    ]
    assert shape(v3election_pb2.ProclaimResponse) == [hdr]
    assert shape(health_pb2.HealthCheckRequest) == [(1, "service", FD.TYPE_STRING, "")]
    assert shape(health_pb2.HealthCheckResponse) == [
        (1, "status", FD.TYPE_ENUM, "health.v1.HealthCheckResponse.ServingStatus"),
    ]
