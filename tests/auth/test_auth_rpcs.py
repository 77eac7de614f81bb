"""The Auth service on the wire: every RPC, its errors, and who may call what.

An in-process etcdlite (``server`` fixture, ManualClock) driven by gRPC stubs with tokens in
metadata, as etcd clients send them. Expected codes and texts are etcd 3.5.1's (probed on a
live etcd 3.5.1 with the same requests; see the fact sheet §4.10).
"""

from __future__ import annotations

import pytest
from authlib import ALICE_PW, READ, READWRITE, ROOT_PW, WRITE, Client, grant, setup_auth

from etcdlite.protos import auth_pb2, rpc_pb2
from etcdlite.protos.auth_pb2 import UserAddOptions

FP, IA, PD, UA, UNK = ("FAILED_PRECONDITION", "INVALID_ARGUMENT", "PERMISSION_DENIED",
                       "UNAUTHENTICATED", "UNKNOWN")
USER_EMPTY = (IA, "etcdserver: user name is empty")
DENIED = (PD, "etcdserver: permission denied")
BAD_TOKEN = (UA, "etcdserver: invalid auth token")
AUTH_FAILED = (IA, "etcdserver: authentication failed, invalid user ID or password")
INVALID_MGMT = (IA, "etcdserver: invalid auth management")


def test_enable_needs_user_root_holding_role_root(client: Client) -> None:
    enable = rpc_pb2.AuthEnableRequest()
    assert client.error("Auth", "AuthEnable", enable) == (
        FP, "etcdserver: root user does not exist")
    client.call("Auth", "UserAdd", rpc_pb2.AuthUserAddRequest(name="root", password="pw"))
    assert client.error("Auth", "AuthEnable", enable) == (
        FP, "etcdserver: root user does not have root role")
    # etcdctl's answer to that message: add role root, grant it, enable again.
    client.call("Auth", "RoleAdd", rpc_pb2.AuthRoleAddRequest(name="root"))
    client.call("Auth", "UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(user="root",
                                                                          role="root"))
    client.call("Auth", "AuthEnable", enable)
    status = client.login("root", "pw").call("Auth", "AuthStatus", rpc_pb2.AuthStatusRequest())
    assert (status.enabled, status.authRevision) == (True, 4)


def test_status_revision_and_headers(client: Client) -> None:
    status = client.call("Auth", "AuthStatus", rpc_pb2.AuthStatusRequest())
    assert (status.enabled, status.authRevision) == (False, 1)
    client.put(b"k")
    setup_auth(client)
    root = client.login("root", ROOT_PW)
    status = root.call("Auth", "AuthStatus", rpc_pb2.AuthStatusRequest())
    assert (status.enabled, status.authRevision) == (True, 8)  # 7 changes; enable: none
    assert status.header.revision == 2  # the KV store's revision, as on every Auth reply
    assert status.header.member_id and status.header.cluster_id
    root.call("Auth", "AuthEnable", rpc_pb2.AuthEnableRequest())  # enabling twice: no-op
    assert root.call("Auth", "AuthStatus", rpc_pb2.AuthStatusRequest()).authRevision == 8


def test_authenticate(client: Client) -> None:
    login = rpc_pb2.AuthenticateRequest(name="root", password=ROOT_PW)
    setup_auth(client, enable=False)
    assert client.error("Auth", "Authenticate", login) == (
        FP, "etcdserver: authentication is not enabled")
    client.call("Auth", "AuthEnable", rpc_pb2.AuthEnableRequest())
    token = client.call("Auth", "Authenticate", login).token
    prefix, index = token.split(".")
    assert len(prefix) == 16 and prefix.isalpha() and int(index) > 0
    for name, password in (("root", "wrong"), ("nobody", ROOT_PW), ("root", "")):
        assert client.error("Auth", "Authenticate", rpc_pb2.AuthenticateRequest(
            name=name, password=password)) == AUTH_FAILED
    # A stale token sent along with Authenticate is ignored.
    stale = client.with_token("bogus")
    assert stale.call("Auth", "Authenticate", login).token != token


def test_user_management(client: Client) -> None:
    setup_auth(client)
    root = client.login("root", ROOT_PW)
    add = rpc_pb2.AuthUserAddRequest
    root.call("Auth", "UserAdd", add(name="bob", password="bobpw"))
    assert root.error("Auth", "UserAdd", add(name="bob", password="x")) == (
        FP, "etcdserver: user name already exists")
    assert root.error("Auth", "UserAdd", add(name="")) == USER_EMPTY
    users = root.call("Auth", "UserList", rpc_pb2.AuthUserListRequest()).users
    assert list(users) == ["alice", "bob", "root"]
    get = rpc_pb2.AuthUserGetRequest
    assert list(root.call("Auth", "UserGet", get(name="alice")).roles) == ["app"]
    assert root.error("Auth", "UserGet", get(name="nobody")) == (
        FP, "etcdserver: user name not found")
    grant_role = rpc_pb2.AuthUserGrantRoleRequest
    assert root.error("Auth", "UserGrantRole", grant_role(user="bob", role="nope")) == (
        FP, "etcdserver: role name not found")
    assert root.error("Auth", "UserGrantRole", grant_role(user="nobody", role="app")) == (
        FP, "etcdserver: user name not found")
    root.call("Auth", "UserGrantRole", grant_role(user="bob", role="app"))
    assert list(root.call("Auth", "UserGet", get(name="bob")).roles) == ["app"]
    revoke = rpc_pb2.AuthUserRevokeRoleRequest
    root.call("Auth", "UserRevokeRole", revoke(name="bob", role="app"))
    assert root.error("Auth", "UserRevokeRole", revoke(name="bob", role="app")) == (
        FP, "etcdserver: role is not granted to the user")
    # ChangePassword: the old password and the user's tokens stop working.
    bob = client.login("bob", "bobpw")
    root.call("Auth", "UserChangePassword", rpc_pb2.AuthUserChangePasswordRequest(
        name="bob", password="new"))
    assert bob.error("KV", "Range", rpc_pb2.RangeRequest(key=b"/app/x")) == BAD_TOKEN
    assert client.error("Auth", "Authenticate", rpc_pb2.AuthenticateRequest(
        name="bob", password="bobpw")) == AUTH_FAILED
    bob = client.login("bob", "new")
    assert root.error("Auth", "UserChangePassword", rpc_pb2.AuthUserChangePasswordRequest(
        name="nobody", password="x")) == (FP, "etcdserver: user name not found")
    # UserDelete drops the user's tokens too.
    root.call("Auth", "UserDelete", rpc_pb2.AuthUserDeleteRequest(name="bob"))
    assert bob.error("KV", "Range", rpc_pb2.RangeRequest(key=b"/app/x")) == BAD_TOKEN
    assert root.error("Auth", "UserDelete", rpc_pb2.AuthUserDeleteRequest(name="bob")) == (
        FP, "etcdserver: user name not found")


def test_no_password_users_cannot_log_in(client: Client) -> None:
    setup_auth(client)
    root = client.login("root", ROOT_PW)
    root.call("Auth", "UserAdd", rpc_pb2.AuthUserAddRequest(
        name="svc", password="ignored", options=UserAddOptions(no_password=True)))
    for password in ("ignored", ""):
        assert client.error("Auth", "Authenticate", rpc_pb2.AuthenticateRequest(
            name="svc", password=password)) == AUTH_FAILED


def test_role_management(client: Client) -> None:
    setup_auth(client)
    root = client.login("root", ROOT_PW)
    add = rpc_pb2.AuthRoleAddRequest
    root.call("Auth", "RoleAdd", add(name="r2"))
    assert root.error("Auth", "RoleAdd", add(name="r2")) == (
        FP, "etcdserver: role name already exists")
    assert root.error("Auth", "RoleAdd", add(name="")) == (IA, "etcdserver: role name is empty")
    assert list(root.call("Auth", "RoleList", rpc_pb2.AuthRoleListRequest()).roles) == [
        "app", "r2"]  # role root was granted, never added (as etcd)
    grant(root, "r2", b"b", b"", WRITE)
    grant(root, "r2", b"a", b"c", READ)
    grant(root, "r2", b"b", b"", READWRITE)  # same range: the type changes
    perms = root.call("Auth", "RoleGet", rpc_pb2.AuthRoleGetRequest(role="r2")).perm
    assert [(p.permType, p.key, p.range_end) for p in perms] == [
        (READ, b"a", b"c"), (READWRITE, b"b", b"")]
    assert root.error("Auth", "RoleGrantPermission", rpc_pb2.AuthRoleGrantPermissionRequest(
        name="r2")) == (IA, "etcdserver: permission not given")
    assert root.error("Auth", "RoleGrantPermission", rpc_pb2.AuthRoleGrantPermissionRequest(
        name="nope", perm=auth_pb2.Permission(key=b"a"))) == (
        FP, "etcdserver: role name not found")
    revoke = rpc_pb2.AuthRoleRevokePermissionRequest
    root.call("Auth", "RoleRevokePermission", revoke(role="r2", key=b"a", range_end=b"c"))
    assert root.error("Auth", "RoleRevokePermission", revoke(role="r2", key=b"a",
                                                             range_end=b"c")) == (
        FP, "etcdserver: permission is not granted to the role")
    assert root.error("Auth", "RoleGet", rpc_pb2.AuthRoleGetRequest(role="root")) == (
        FP, "etcdserver: role name not found")
    root.call("Auth", "RoleDelete", rpc_pb2.AuthRoleDeleteRequest(role="app"))
    assert list(root.call("Auth", "UserGet", rpc_pb2.AuthUserGetRequest(name="alice")).roles) \
        == []
    assert root.error("Auth", "RoleDelete", rpc_pb2.AuthRoleDeleteRequest(role="app")) == (
        FP, "etcdserver: role name not found")


def test_root_is_protected_while_enabled(client: Client) -> None:
    setup_auth(client)
    root = client.login("root", ROOT_PW)
    assert root.error("Auth", "UserDelete", rpc_pb2.AuthUserDeleteRequest(name="root")) == \
        INVALID_MGMT
    assert root.error("Auth", "UserRevokeRole", rpc_pb2.AuthUserRevokeRoleRequest(
        name="root", role="root")) == INVALID_MGMT
    root.call("Auth", "RoleAdd", rpc_pb2.AuthRoleAddRequest(name="root"))
    assert root.error("Auth", "RoleDelete", rpc_pb2.AuthRoleDeleteRequest(role="root")) == \
        INVALID_MGMT
    root.call("Auth", "AuthDisable", rpc_pb2.AuthDisableRequest())
    client.call("Auth", "UserRevokeRole", rpc_pb2.AuthUserRevokeRoleRequest(
        name="root", role="root"))  # fine once auth is off


ADMIN_CALLS = [
    ("AuthEnable", rpc_pb2.AuthEnableRequest()),
    ("AuthDisable", rpc_pb2.AuthDisableRequest()),
    ("AuthStatus", rpc_pb2.AuthStatusRequest()),
    ("UserAdd", rpc_pb2.AuthUserAddRequest(name="x", password="x")),
    ("UserGet", rpc_pb2.AuthUserGetRequest(name="root")),
    ("UserList", rpc_pb2.AuthUserListRequest()),
    ("UserDelete", rpc_pb2.AuthUserDeleteRequest(name="alice")),
    ("UserChangePassword", rpc_pb2.AuthUserChangePasswordRequest(name="alice", password="x")),
    ("UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="root")),
    ("UserRevokeRole", rpc_pb2.AuthUserRevokeRoleRequest(name="alice", role="app")),
    ("RoleAdd", rpc_pb2.AuthRoleAddRequest(name="x")),
    ("RoleGet", rpc_pb2.AuthRoleGetRequest(role="other")),
    ("RoleList", rpc_pb2.AuthRoleListRequest()),
    ("RoleDelete", rpc_pb2.AuthRoleDeleteRequest(role="app")),
    ("RoleGrantPermission", rpc_pb2.AuthRoleGrantPermissionRequest(
        name="app", perm=auth_pb2.Permission(key=b"x"))),
    ("RoleRevokePermission", rpc_pb2.AuthRoleRevokePermissionRequest(role="app", key=b"/ro/")),
]


@pytest.mark.parametrize(("rpc", "request_"), ADMIN_CALLS, ids=[c[0] for c in ADMIN_CALLS])
def test_admin_rpcs_need_role_root(client: Client, rpc: str, request_: object) -> None:
    setup_auth(client)
    alice = client.login("alice", ALICE_PW)
    assert alice.error("Auth", rpc, request_) == DENIED
    assert client.error("Auth", rpc, request_) == USER_EMPTY
    assert client.with_token("bogus").error("Auth", rpc, request_) == BAD_TOKEN


def test_users_may_read_themselves_and_their_roles(client: Client) -> None:
    setup_auth(client)
    alice = client.login("alice", ALICE_PW)
    assert list(alice.call("Auth", "UserGet", rpc_pb2.AuthUserGetRequest(name="alice")).roles) \
        == ["app"]
    perms = alice.call("Auth", "RoleGet", rpc_pb2.AuthRoleGetRequest(role="app")).perm
    assert [p.key for p in perms] == [b"/app/", b"/ro/"]
    assert alice.error("Auth", "UserGet", rpc_pb2.AuthUserGetRequest(name="nobody")) == DENIED


def test_disable_drops_tokens_and_opens_everything(client: Client) -> None:
    setup_auth(client)
    root, alice = client.login("root", ROOT_PW), client.login("alice", ALICE_PW)
    root.call("Auth", "AuthDisable", rpc_pb2.AuthDisableRequest())
    client.put(b"/other")  # no token needed now
    alice.put(b"/other")   # a token is ignored while auth is off, even a dropped one
    client.call("Auth", "AuthEnable", rpc_pb2.AuthEnableRequest())
    assert alice.error("KV", "Put", rpc_pb2.PutRequest(key=b"/app/x")) == BAD_TOKEN
    assert root.error("Auth", "AuthStatus", rpc_pb2.AuthStatusRequest()) == BAD_TOKEN
