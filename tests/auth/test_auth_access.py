"""Permission checks on the wire: KV, Txn, leases, watches, maintenance, and tokens.

Each test runs an in-process etcdlite on a ManualClock (``server``/``client`` fixtures):
tokens expire when the test advances the clock, never by sleeping. ``setup_auth`` makes
user alice, whose role ``app`` may read and write ``/app/`` and read ``/ro/``.
"""

from __future__ import annotations

import pytest
from authlib import (
    ALICE_PW,
    READ,
    ROOT_PW,
    TOKEN_TTL_S,
    WRITE,
    Client,
    grant,
    op_del,
    op_get,
    op_put,
    prefix_end,
    setup_auth,
    txn,
)

from etcdlite.protos import rpc_pb2
from etcdlite.server.clock import ManualClock
from etcdlite.server.errors import WATCH_PERMISSION_DENIED

USER_EMPTY = ("INVALID_ARGUMENT", "etcdserver: user name is empty")
DENIED = ("PERMISSION_DENIED", "etcdserver: permission denied")
BAD_TOKEN = ("UNAUTHENTICATED", "etcdserver: invalid auth token")


@pytest.fixture
def alice(client: Client) -> Client:
    setup_auth(client)
    return client.login("alice", ALICE_PW)


@pytest.fixture
def root(client: Client, alice: Client) -> Client:
    return client.login("root", ROOT_PW)


# -- KV ---------------------------------------------------------------------------------------


def test_range_put_delete(alice: Client, root: Client) -> None:
    alice.put(b"/app/a", b"1")
    assert alice.get(b"/app/a").kvs[0].value == b"1"
    assert alice.get(b"/app/", prefix_end(b"/app/")).count == 1
    root.put(b"/ro/x")
    assert alice.get(b"/ro/x").count == 1
    for req in (rpc_pb2.PutRequest(key=b"/ro/x"), rpc_pb2.PutRequest(key=b"/other")):
        assert alice.error("KV", "Put", req) == DENIED
    assert alice.error("KV", "Range", rpc_pb2.RangeRequest(key=b"/other")) == DENIED
    # A range must lie inside the granted one as a whole.
    assert alice.error("KV", "Range", rpc_pb2.RangeRequest(key=b"/app/", range_end=b"\0")) \
        == DENIED
    assert alice.error("KV", "DeleteRange", rpc_pb2.DeleteRangeRequest(key=b"/ro/x")) == DENIED
    deleted = alice.call("KV", "DeleteRange", rpc_pb2.DeleteRangeRequest(
        key=b"/app/", range_end=prefix_end(b"/app/"), prev_kv=True))
    assert deleted.deleted == 1
    assert root.get(b"/", b"\0").count == 1  # root reads everything


def test_prev_kv_needs_read_too(client: Client, root: Client) -> None:
    root.call("Auth", "RoleAdd", rpc_pb2.AuthRoleAddRequest(name="wo"))
    grant(root, "wo", b"/wo/", prefix_end(b"/wo/"), WRITE)
    root.call("Auth", "UserAdd", rpc_pb2.AuthUserAddRequest(name="w", password="wpw"))
    root.call("Auth", "UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(user="w", role="wo"))
    writer = client.login("w", "wpw")
    writer.put(b"/wo/k")
    assert writer.error("KV", "Put", rpc_pb2.PutRequest(key=b"/wo/k", prev_kv=True)) == DENIED
    assert writer.error("KV", "DeleteRange", rpc_pb2.DeleteRangeRequest(
        key=b"/wo/k", prev_kv=True)) == DENIED
    assert writer.error("KV", "Range", rpc_pb2.RangeRequest(key=b"/wo/k")) == DENIED
    writer.call("KV", "DeleteRange", rpc_pb2.DeleteRangeRequest(key=b"/wo/k"))


def test_txn_checks_every_compare_and_op_of_both_branches(alice: Client) -> None:
    ok = txn(op_put(b"/app/a"), op_get(b"/ro/x"),
             compare=(rpc_pb2.Compare(key=b"/app/a", target=rpc_pb2.Compare.VERSION),),
             failure=(op_del(b"/app/b"),))
    assert alice.call("KV", "Txn", ok).succeeded
    denied = [
        txn(op_put(b"/app/a"), compare=(rpc_pb2.Compare(key=b"/other"),)),
        txn(op_put(b"/app/a"), failure=(op_put(b"/other"),)),  # a branch that won't run
        txn(op_put(b"/ro/x")),
        txn(op_get(b"/other")),                                   # read-only, served locally
        txn(rpc_pb2.RequestOp(request_txn=txn(op_get(b"/app/a"), failure=(op_del(b"/x"),)))),
    ]
    for t in denied:
        assert alice.error("KV", "Txn", t) == DENIED, t
    assert alice.get(b"/app/a").kvs[0].version == 1  # nothing of the refused txns ran


def test_no_token_and_bad_token(client: Client, alice: Client) -> None:
    for c, want in ((client, USER_EMPTY), (client.with_token("bogus"), BAD_TOKEN),
                    (client.with_token("abcdefghijklmnop.12345"), BAD_TOKEN)):
        assert c.error("KV", "Range", rpc_pb2.RangeRequest(key=b"/app/a")) == want
        assert c.error("KV", "Put", rpc_pb2.PutRequest(key=b"/app/a")) == want
        assert c.error("KV", "Txn", txn(op_get(b"/app/a"))) == want
        assert c.error("KV", "DeleteRange", rpc_pb2.DeleteRangeRequest(key=b"/app/a")) == want
    # Not permission-checked (etcd 3.5): any caller, but a bad token is still refused on
    # the requests that go through the log.
    for req in (("KV", "Compact", rpc_pb2.CompactionRequest(revision=1)),
                ("Lease", "LeaseGrant", rpc_pb2.LeaseGrantRequest(TTL=60)),
                ("Maintenance", "Alarm", rpc_pb2.AlarmRequest())):
        client.call(*req)
        assert client.with_token("bogus").error(*req) == BAD_TOKEN
    for req in (("Maintenance", "Status", rpc_pb2.StatusRequest()),
                ("Cluster", "MemberList", rpc_pb2.MemberListRequest()),
                ("Lease", "LeaseLeases", rpc_pb2.LeaseLeasesRequest()),
                ("Lease", "LeaseTimeToLive", rpc_pb2.LeaseTimeToLiveRequest(ID=1))):
        client.call(*req)
        client.with_token("bogus").call(*req)


def test_token_from_authorization_metadata(client: Client, alice: Client) -> None:
    assert alice.token is not None
    via_authorization = client.with_token(alice.token, key="authorization")
    via_authorization.put(b"/app/a")
    assert via_authorization.error("KV", "Put", rpc_pb2.PutRequest(key=b"/other")) == DENIED
    # "token" wins over "authorization", as in etcd.
    both = client.with_token("bogus", key="authorization")
    md = [("authorization", "bogus"), ("token", alice.token)]
    both.stubs["KV"].Put(rpc_pb2.PutRequest(key=b"/app/b"), metadata=md, timeout=10)


# -- leases -----------------------------------------------------------------------------------


def test_lease_revoke_needs_write_on_attached_keys(alice: Client, root: Client) -> None:
    mine = alice.call("Lease", "LeaseGrant", rpc_pb2.LeaseGrantRequest(TTL=60)).ID
    alice.put(b"/app/a", lease=mine)
    theirs = root.call("Lease", "LeaseGrant", rpc_pb2.LeaseGrantRequest(TTL=60)).ID
    root.put(b"/other", lease=theirs)
    assert alice.error("Lease", "LeaseRevoke", rpc_pb2.LeaseRevokeRequest(ID=theirs)) == DENIED
    # Nor may she attach her keys to a lease she could not revoke.
    assert alice.error("KV", "Put", rpc_pb2.PutRequest(key=b"/app/b", lease=theirs)) == DENIED
    keys = rpc_pb2.LeaseTimeToLiveRequest(ID=theirs, keys=True)
    assert alice.error("Lease", "LeaseTimeToLive", keys) == DENIED
    assert alice.call("Lease", "LeaseTimeToLive", rpc_pb2.LeaseTimeToLiveRequest(
        ID=theirs)).grantedTTL == 60
    alice.call("Lease", "LeaseRevoke", rpc_pb2.LeaseRevokeRequest(ID=mine))
    assert alice.get(b"/app/a").count == 0
    root.call("Lease", "LeaseRevoke", rpc_pb2.LeaseRevokeRequest(ID=theirs))


def test_expired_leases_are_revoked_while_auth_is_on(client: Client, clock: ManualClock,
                                                     alice: Client, root: Client) -> None:
    """The leader's expiry revokes carry no caller and skip the checks."""
    lease = alice.call("Lease", "LeaseGrant", rpc_pb2.LeaseGrantRequest(TTL=10)).ID
    alice.put(b"/app/a", lease=lease)
    root.put(b"/other", lease=lease)
    clock.advance(11)
    assert client.login("root", ROOT_PW).get(b"/", b"\0").count == 0


def test_keepalive_ignores_tokens(client: Client, alice: Client, clock: ManualClock) -> None:
    lease = alice.call("Lease", "LeaseGrant", rpc_pb2.LeaseGrantRequest(TTL=60)).ID
    clock.advance(TOKEN_TTL_S + 1)
    for c in (client, alice, client.with_token("bogus")):
        stream = c.stubs["Lease"].LeaseKeepAlive(
            iter([rpc_pb2.LeaseKeepAliveRequest(ID=lease)]), metadata=c.metadata, timeout=10)
        assert next(stream).TTL == 60
        stream.cancel()


# -- maintenance ------------------------------------------------------------------------------


MAINTENANCE = [
    ("Hash", rpc_pb2.HashRequest()),
    ("HashKV", rpc_pb2.HashKVRequest()),
    ("Defragment", rpc_pb2.DefragmentRequest()),
]


def test_admin_maintenance_gets_etcds_raw_errors(client: Client, alice: Client,
                                                 root: Client) -> None:
    for rpc, req in MAINTENANCE:
        assert alice.error("Maintenance", rpc, req) == ("UNKNOWN", "auth: permission denied")
        assert client.error("Maintenance", rpc, req) == ("UNKNOWN", "auth: user name is empty")
        assert client.with_token("bogus").error("Maintenance", rpc, req) == (
            "UNKNOWN", "auth: invalid auth token")
        root.call("Maintenance", rpc, req)
    assert alice.snapshot_error() == ("UNKNOWN", "auth: permission denied")
    assert client.snapshot_error() == ("UNKNOWN", "auth: user name is empty")
    stream = root.stubs["Maintenance"].Snapshot(rpc_pb2.SnapshotRequest(),
                                                metadata=root.metadata, timeout=10)
    assert sum(len(r.blob) for r in stream) > 32


# -- tokens -----------------------------------------------------------------------------------


def test_simple_token_ttl_slides_on_the_injected_clock(client: Client, alice: Client,
                                                       clock: ManualClock) -> None:
    clock.advance(TOKEN_TTL_S - 1)
    alice.get(b"/app/a")               # a use restarts the TTL
    clock.advance(TOKEN_TTL_S - 1)
    alice.get(b"/app/a")
    clock.advance(TOKEN_TTL_S + 0.5)
    assert alice.error("KV", "Range", rpc_pb2.RangeRequest(key=b"/app/a")) == BAD_TOKEN
    assert alice.error("KV", "Put", rpc_pb2.PutRequest(key=b"/app/a")) == BAD_TOKEN
    # What clients do on that error: log in again and retry.
    client.login("alice", ALICE_PW).get(b"/app/a")


def test_revoked_permission_applies_to_the_next_request(alice: Client, root: Client) -> None:
    alice.put(b"/app/a")
    root.call("Auth", "RoleRevokePermission", rpc_pb2.AuthRoleRevokePermissionRequest(
        role="app", key=b"/app/", range_end=prefix_end(b"/app/")))
    assert alice.error("KV", "Put", rpc_pb2.PutRequest(key=b"/app/a")) == DENIED
    assert alice.error("KV", "Range", rpc_pb2.RangeRequest(key=b"/app/a")) == DENIED


# -- watches ----------------------------------------------------------------------------------


def test_watch_create_refused_by_auth(client: Client, alice: Client) -> None:
    with alice.watch() as w:
        refused = w.create(b"/other", watch_id=7)
        assert (refused.watch_id, refused.canceled, refused.cancel_reason) == (
            7, True, WATCH_PERMISSION_DENIED)
        assert WATCH_PERMISSION_DENIED == (
            "rpc error: code = PermissionDenied desc = etcdserver: permission denied")
        refused = w.create(b"/app/", b"\0")  # wider than the grant
        assert refused.canceled and refused.watch_id == 0
        ok = w.create(b"/app/", prefix_end(b"/app/"))
        assert not ok.canceled
        alice.put(b"/app/a", b"1")
        assert w.events(1) == [(ok.watch_id, b"/app/a", b"1")]
    for c in (client, client.with_token("bogus")):  # no user, bad token: the same cancel
        with c.watch() as w:
            refused = w.create(b"/app/a")
            assert refused.canceled and refused.cancel_reason == WATCH_PERMISSION_DENIED


def test_three_watches_survive_token_expiry(client: Client, alice: Client, root: Client,
                                            clock: ManualClock) -> None:
    """The seed scenario: watch 1, wait past the token's TTL, watches 2 and 3 on the same
    stream; all three get their events (real etcd refuses 2 and 3)."""
    with alice.watch() as w:
        first = w.create(b"/app/1")
        clock.advance(TOKEN_TTL_S + 1)
        assert alice.error("KV", "Range", rpc_pb2.RangeRequest(key=b"/app/1")) == BAD_TOKEN
        second, third = w.create(b"/app/2"), w.create(b"/app/3")
        assert not (first.canceled or second.canceled or third.canceled)
        root = client.login("root", ROOT_PW)  # root's token expired too
        for key in (b"/app/1", b"/app/2", b"/app/3"):
            root.put(key, b"x")
        assert w.events(3) == [(first.watch_id, b"/app/1", b"x"),
                               (second.watch_id, b"/app/2", b"x"),
                               (third.watch_id, b"/app/3", b"x")]


def test_a_watch_stream_keeps_up_with_auth_changes(client: Client, alice: Client,
                                                   root: Client) -> None:
    """The stream's identity is fixed, its permissions are not: a revoked permission,
    a changed password (which revokes the token) and a disabled auth take effect."""
    with alice.watch() as w:
        assert not w.create(b"/app/1").canceled
        root.call("Auth", "RoleRevokePermission", rpc_pb2.AuthRoleRevokePermissionRequest(
            role="app", key=b"/ro/", range_end=prefix_end(b"/ro/")))
        assert w.create(b"/ro/x").canceled
        assert not w.create(b"/app/2").canceled
        root.call("Auth", "UserChangePassword", rpc_pb2.AuthUserChangePasswordRequest(
            name="alice", password="new"))
        assert w.create(b"/app/3").canceled
        # Watchers already created keep delivering (etcd never re-checks them).
        root.put(b"/app/1", b"y")
        assert w.events(1) == [(0, b"/app/1", b"y")]
    with client.login("alice", "new").watch() as w:
        assert not w.create(b"/app/1").canceled
        root.call("Auth", "UserDelete", rpc_pb2.AuthUserDeleteRequest(name="alice"))
        assert w.create(b"/app/2").canceled


def test_a_stream_opened_before_auth_was_enabled(client: Client) -> None:
    setup_auth(client, enable=False)
    with client.watch() as w:
        assert not w.create(b"/x").canceled
        client.call("Auth", "AuthEnable", rpc_pb2.AuthEnableRequest())
        assert w.create(b"/y").canceled  # no credentials: no user
        root = client.login("root", ROOT_PW)
        root.call("Auth", "AuthDisable", rpc_pb2.AuthDisableRequest())
        assert not w.create(b"/z").canceled


def test_read_permission_on_a_watch_is_enough(client: Client, alice: Client,
                                              root: Client) -> None:
    grant(root, "app", b"/w", b"", READ)
    with alice.watch() as w:
        assert not w.create(b"/w").canceled
