"""Permission checks: the merged-interval question (against a brute force over a small key
space), root bypass, cache invalidation, and the check of each request kind, nested txns
included."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from authlib import Member, hashed
from hypothesis import given, settings
from hypothesis import strategies as st

from etcdlite.protos.auth_pb2 import Permission
from etcdlite.protos.rpc_pb2 import (
    AuthRoleGetRequest,
    AuthUserGetRequest,
    Compare,
    DeleteRangeRequest,
    LeaseTimeToLiveRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    TxnRequest,
    WatchCreateRequest,
)
from etcdlite.server import errors
from etcdlite.server.auth_perms import (
    READ,
    READWRITE,
    WRITE,
    AuthChecker,
    RangeSet,
    merged_permissions,
    permission_interval,
)
from etcdlite.server.auth_tokens import AuthInfo

# -- the interval question, against a brute force -------------------------------------------

ALPHABET = b"\x00\x01\x02"
MAX_LEN = 2
"""Keys in requests and grants have at most MAX_LEN bytes over ALPHABET."""


def universe(max_len: int) -> list[bytes]:
    return [bytes(t) for n in range(1, max_len + 1) for t in itertools.product(ALPHABET, repeat=n)]


UNIVERSE = universe(MAX_LEN + 1)
"""Every key up to one byte longer than any endpoint: each gap between granted intervals
starts at an endpoint (or at a point grant's key + "\\0"), so it holds a key of UNIVERSE,
and checking UNIVERSE alone is exact."""

keys = st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=MAX_LEN).map(bytes)
maybe_empty_keys = st.one_of(st.just(b""), keys)
range_ends = st.one_of(st.just(b""), st.just(b"\x00"), keys)
grants = st.lists(st.tuples(maybe_empty_keys, range_ends), max_size=6)


def granted(key: bytes, range_end: bytes, x: bytes) -> bool:
    """Whether the grant (key, range_end) includes key x, by definition."""
    if not key:
        return False
    if not range_end:
        return x == key
    if range_end == b"\x00":
        return x >= key
    return key <= x < range_end


def brute_covers(grant_list: list[tuple[bytes, bytes]], key: bytes, range_end: bytes) -> bool:
    def any_grant(x: bytes) -> bool:
        return any(granted(k, e, x) for k, e in grant_list)

    if not key:
        return False
    if not range_end or (range_end != b"\x00" and key >= range_end):
        return any_grant(key)  # one key, or an empty range (etcd checks its key)
    wanted = [x for x in UNIVERSE if x >= key and (range_end == b"\x00" or x < range_end)]
    return all(any_grant(x) for x in wanted)


@settings(max_examples=400, deadline=None)
@given(grants, maybe_empty_keys, range_ends)
def test_merged_intervals_agree_with_brute_force(
    grant_list: list[tuple[bytes, bytes]], key: bytes, range_end: bytes
) -> None:
    ranges = RangeSet(iv for k, e in grant_list if (iv := permission_interval(k, e)))
    assert ranges.covers(key, range_end) == brute_covers(grant_list, key, range_end)


@settings(max_examples=200, deadline=None)
@given(grants)
def test_merged_intervals_are_sorted_disjoint_and_apart(
    grant_list: list[tuple[bytes, bytes]]
) -> None:
    ivs = RangeSet(iv for k, e in grant_list if (iv := permission_interval(k, e))).intervals
    for (b1, e1), (b2, _e2) in itertools.pairwise(ivs):
        assert e1 is not None and b1 < e1 < b2  # a gap between neighbours


def test_permission_intervals() -> None:
    assert permission_interval(b"a", b"") == (b"a", b"a\x00")
    assert permission_interval(b"a", b"\x00") == (b"a", None)
    assert permission_interval(b"a", b"b") == (b"a", b"b")
    assert permission_interval(b"", b"\x00") is None  # etcd's "" sorts as +inf: nothing
    assert permission_interval(b"b", b"a") is None


def test_covering_examples() -> None:
    # The worked example of auth_perms' docstring.
    perms = merged_permissions([
        Permission(permType=READ, key=b"a", range_end=b"c"),
        Permission(permType=READ, key=b"c", range_end=b""),
        Permission(permType=READWRITE, key=b"d", range_end=b"e"),
        Permission(permType=7, key=b"z", range_end=b"\x00"),  # unknown type: nothing
    ])
    assert perms.read.intervals == [(b"a", b"c\x00"), (b"d", b"e")]
    assert perms.write.intervals == [(b"d", b"e")]
    assert perms.read.covers(b"b", b"")
    assert perms.read.covers(b"a", b"c\x00")
    assert not perms.read.covers(b"a", b"d\x00")
    assert not perms.read.covers(b"z", b"")
    assert perms.read.covers(b"d", b"d\xff\xff")
    assert not perms.read.covers(b"d", b"\x00")
    assert not perms.write.covers(b"c", b"")


# -- the checker over a store ---------------------------------------------------------------


def run(member: Member, op: Callable[..., Any], *args: Any) -> None:
    with member.backend.batch() as txn:
        op(txn, *args)


@pytest.fixture
def world(member: Member) -> Iterator[tuple[Member, AuthChecker]]:
    """Auth on; role ``rw`` reads and writes prefix /app/, reads /cfg exactly, writes only
    /log/ (prefix); alice holds rw, bob holds nothing, root is root."""
    s = member.store
    run(member, s.user_add, "root", hashed("r"))
    run(member, s.user_grant_role, "root", "root")
    run(member, s.role_add, "rw")
    run(member, s.role_grant_permission, "rw",
        Permission(permType=READWRITE, key=b"/app/", range_end=b"/app0"))
    run(member, s.role_grant_permission, "rw", Permission(permType=READ, key=b"/cfg"))
    run(member, s.role_grant_permission, "rw",
        Permission(permType=WRITE, key=b"/log/", range_end=b"/log0"))
    run(member, s.user_add, "alice", hashed("a"))
    run(member, s.user_grant_role, "alice", "rw")
    run(member, s.user_add, "bob", hashed("b"))
    run(member, s.auth_enable)
    yield member, AuthChecker(s)


def who(member: Member, name: str) -> AuthInfo:
    return AuthInfo(name, member.store.revision)


def put(key: bytes, **kw: Any) -> RequestOp:
    return RequestOp(request_put=PutRequest(key=key, **kw))


def get(key: bytes, range_end: bytes = b"") -> RequestOp:
    return RequestOp(request_range=RangeRequest(key=key, range_end=range_end))


def delete(key: bytes, range_end: bytes = b"", **kw: Any) -> RequestOp:
    return RequestOp(request_delete_range=DeleteRangeRequest(key=key, range_end=range_end, **kw))


def txn(*success: RequestOp, failure: tuple[RequestOp, ...] = (),
        compare: tuple[Compare, ...] = ()) -> TxnRequest:
    return TxnRequest(compare=compare, success=success, failure=failure)


def nested(t: TxnRequest) -> RequestOp:
    return RequestOp(request_txn=t)


def test_is_range_permitted(world: tuple[Member, AuthChecker]) -> None:
    _m, c = world
    assert c.is_range_permitted("alice", b"/app/x", b"", READ)
    assert c.is_range_permitted("alice", b"/app/", b"/app0", WRITE)
    assert c.is_range_permitted("alice", b"/cfg", b"", READ)
    assert not c.is_range_permitted("alice", b"/cfg", b"", WRITE)
    assert not c.is_range_permitted("alice", b"/cfg", b"/cfh", READ)  # /cfg\0.. not granted
    assert c.is_range_permitted("alice", b"/log/a", b"", WRITE)
    assert not c.is_range_permitted("alice", b"/log/a", b"", READ)
    assert not c.is_range_permitted("bob", b"/app/x", b"", READ)
    assert not c.is_range_permitted("ghost", b"/app/x", b"", READ)
    assert c.is_range_permitted("root", b"\x00", b"\x00", WRITE)  # root: everything
    with pytest.raises(ValueError):
        c.is_range_permitted("alice", b"/app/x", b"", READWRITE)


def test_checks_pass_while_auth_is_disabled(member: Member) -> None:
    c = AuthChecker(member.store)
    c.check_range(None, RangeRequest(key=b"k"))
    c.check_put(None, PutRequest(key=b"k", prev_kv=True))
    c.check_admin(None)
    c.check_maintenance_admin(None)


def test_no_user_old_revision_and_denied(world: tuple[Member, AuthChecker]) -> None:
    m, c = world
    req = RangeRequest(key=b"/app/x")
    with pytest.raises(errors.AuthUserEmpty) as empty:
        c.check_range(None, req)
    assert errors.wire_error(empty.value) == ("INVALID_ARGUMENT", "etcdserver: user name is empty")
    with pytest.raises(errors.AuthUserEmpty):
        c.check_range(AuthInfo("alice", 0), req)
    stale = AuthInfo("alice", m.store.revision - 1)
    with pytest.raises(errors.AuthOldRevision) as old:
        c.check_range(stale, req)
    assert errors.wire_error(old.value) == (
        "INVALID_ARGUMENT", "etcdserver: revision of auth store is old")
    with pytest.raises(errors.PermissionDenied) as denied:
        c.check_range(who(m, "bob"), req)
    assert errors.wire_error(denied.value) == (
        "PERMISSION_DENIED", "etcdserver: permission denied")
    with pytest.raises(errors.PermissionDenied):
        c.check_range(who(m, "ghost"), req)  # a user deleted since: denied, not "not found"
    c.check_range(who(m, "alice"), req)


def test_put_and_delete(world: tuple[Member, AuthChecker]) -> None:
    m, c = world
    alice = who(m, "alice")
    c.check_put(alice, PutRequest(key=b"/log/1"))
    with pytest.raises(errors.PermissionDenied):
        c.check_put(alice, PutRequest(key=b"/log/1", prev_kv=True))  # prev_kv reads
    with pytest.raises(errors.PermissionDenied):
        c.check_put(alice, PutRequest(key=b"/cfg"))
    c.check_put(alice, PutRequest(key=b"/app/1", prev_kv=True))
    c.check_put(alice, PutRequest(key=b"/app/1", lease=7), lease_keys=[b"/app/2", b"/log/x"])
    with pytest.raises(errors.PermissionDenied):  # the lease holds a key alice can't write
        c.check_put(alice, PutRequest(key=b"/app/1", lease=7), lease_keys=[b"/cfg"])
    c.check_delete_range(alice, DeleteRangeRequest(key=b"/log/", range_end=b"/log0"))
    with pytest.raises(errors.PermissionDenied):
        c.check_delete_range(alice, DeleteRangeRequest(key=b"/log/", range_end=b"/log0",
                                                       prev_kv=True))
    with pytest.raises(errors.PermissionDenied):
        c.check_delete_range(alice, DeleteRangeRequest(key=b"/app/", range_end=b"\x00"))


def test_watch_and_leases(world: tuple[Member, AuthChecker]) -> None:
    m, c = world
    alice = who(m, "alice")
    c.check_watch(alice, WatchCreateRequest(key=b"/app/", range_end=b"/app0"))
    with pytest.raises(errors.PermissionDenied):
        c.check_watch(alice, WatchCreateRequest(key=b"/log/", range_end=b"/log0"))
    c.check_lease_revoke(alice, [b"/app/a", b"/log/b"])
    c.check_lease_revoke(alice, [])
    with pytest.raises(errors.PermissionDenied):
        c.check_lease_revoke(alice, [b"/app/a", b"/cfg"])
    c.check_lease_time_to_live(alice, LeaseTimeToLiveRequest(ID=1), [b"/log/b"])
    with pytest.raises(errors.PermissionDenied):
        c.check_lease_time_to_live(alice, LeaseTimeToLiveRequest(ID=1, keys=True), [b"/log/b"])


def test_txn_checks_compares_and_both_branches(world: tuple[Member, AuthChecker]) -> None:
    m, c = world
    alice = who(m, "alice")
    ok = txn(put(b"/app/a"), get(b"/cfg"), failure=(delete(b"/log/x"),),
             compare=(Compare(key=b"/app/a"),))
    c.check_txn(alice, ok)
    for bad in [
        txn(put(b"/app/a"), compare=(Compare(key=b"/log/x"),)),  # compare reads
        txn(put(b"/app/a"), compare=(Compare(key=b"/app/", range_end=b"/b"),)),
        txn(put(b"/app/a"), failure=(put(b"/cfg"),)),  # the branch that may never run
        txn(get(b"/log/x")),
        txn(delete(b"/log/x", prev_kv=True)),
        txn(put(b"/log/x", prev_kv=True)),
    ]:
        with pytest.raises(errors.PermissionDenied):
            c.check_txn(alice, bad)
    c.check_txn(who(m, "root"), ok)
    with pytest.raises(errors.PermissionDenied):
        c.check_txn(who(m, "bob"), ok)
    with pytest.raises(errors.PermissionDenied):
        c.check_txn(who(m, "bob"), txn(compare=(Compare(key=b"/app/a"),)))
    c.check_txn(who(m, "bob"), txn())  # an empty txn needs nothing


def test_nested_txns_are_checked_all_the_way_down(world: tuple[Member, AuthChecker]) -> None:
    m, c = world
    alice = who(m, "alice")
    deep_ok = txn(nested(txn(nested(txn(put(b"/app/x"))), failure=(get(b"/cfg"),))))
    c.check_txn(alice, deep_ok)
    for leaf in [put(b"/cfg"), get(b"/log/a"), delete(b"/cfg")]:
        deep_bad = txn(put(b"/app/a"), failure=(nested(txn(nested(txn(failure=(leaf,))))),))
        with pytest.raises(errors.PermissionDenied):
            c.check_txn(alice, deep_bad)
    hidden_compare = txn(nested(txn(nested(txn(compare=(Compare(key=b"/log/a"),))))))
    with pytest.raises(errors.PermissionDenied):
        c.check_txn(alice, hidden_compare)


def test_txn_puts_check_their_lease_keys(world: tuple[Member, AuthChecker]) -> None:
    m, c = world
    alice = who(m, "alice")
    attached = {5: [b"/cfg"], 6: [b"/app/z"]}

    def lease_keys(lease: int) -> list[bytes]:
        return attached.get(lease, [])

    c.check_txn(alice, txn(put(b"/app/a", lease=6)), lease_keys)
    with pytest.raises(errors.PermissionDenied):
        c.check_txn(alice, txn(nested(txn(put(b"/app/a", lease=5)))), lease_keys)


def test_admin_checks(world: tuple[Member, AuthChecker]) -> None:
    m, c = world
    c.check_admin(who(m, "root"))
    with pytest.raises(errors.AuthUserEmpty):
        c.check_admin(None)
    with pytest.raises(errors.AuthUserNotFound):
        c.check_admin(AuthInfo("ghost", m.store.revision))
    with pytest.raises(errors.PermissionDenied):
        c.check_admin(who(m, "alice"))
    c.check_admin(AuthInfo("root", 1))  # the admin check ignores the auth revision


def test_users_may_read_themselves_and_their_roles(world: tuple[Member, AuthChecker]) -> None:
    m, c = world
    alice = who(m, "alice")
    c.check_user_get(alice, AuthUserGetRequest(name="alice"))
    with pytest.raises(errors.PermissionDenied):
        c.check_user_get(alice, AuthUserGetRequest(name="bob"))
    c.check_user_get(who(m, "root"), AuthUserGetRequest(name="bob"))
    c.check_role_get(alice, AuthRoleGetRequest(role="rw"))
    with pytest.raises(errors.PermissionDenied):
        c.check_role_get(who(m, "bob"), AuthRoleGetRequest(role="rw"))
    with pytest.raises(errors.AuthUserEmpty):
        c.check_role_get(None, AuthRoleGetRequest(role="rw"))


def test_maintenance_admin_errors_are_etcds_raw_ones(world: tuple[Member, AuthChecker]) -> None:
    m, c = world
    c.check_maintenance_admin(who(m, "root"))
    cases: list[tuple[AuthInfo | None, type[Exception], str]] = [
        (None, errors.MaintenanceUserEmpty, "auth: user name is empty"),
        (AuthInfo("ghost", 9), errors.MaintenanceUserNotFound, "auth: user not found"),
        (who(m, "alice"), errors.MaintenancePermissionDenied, "auth: permission denied"),
    ]
    for info, kind, text in cases:
        with pytest.raises(kind) as caught:
            c.check_maintenance_admin(info)
        assert errors.wire_error(caught.value) == ("UNKNOWN", text)


def test_the_cache_follows_every_auth_change(world: tuple[Member, AuthChecker]) -> None:
    m, c = world
    s = m.store

    def can_read_cfg() -> bool:
        return c.is_range_permitted("alice", b"/cfg", b"", READ)

    assert can_read_cfg()
    run(m, s.role_revoke_permission, "rw", b"/cfg", b"")
    assert not can_read_cfg()
    run(m, s.role_grant_permission, "rw", Permission(permType=READ, key=b"/cfg"))
    assert can_read_cfg()
    run(m, s.user_revoke_role, "alice", "rw")
    assert not can_read_cfg()
    run(m, s.user_grant_role, "alice", "rw")
    assert can_read_cfg()
    run(m, s.user_grant_role, "alice", "root")
    assert c.is_range_permitted("alice", b"/anything", b"\x00", WRITE)
    run(m, s.user_revoke_role, "alice", "root")
    run(m, s.role_delete, "rw")
    assert not can_read_cfg()
    assert c.user_permissions("ghost") is None
