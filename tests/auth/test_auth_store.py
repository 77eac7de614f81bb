"""AuthStore: every operation, every error etcd returns for it, revision bumps, enable and
disable rules, and persistence across a reopen of the backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from authlib import TEST_COST, Member, hashed

from etcdlite.protos import rpc_pb2
from etcdlite.protos.auth_pb2 import Permission, UserAddOptions
from etcdlite.server import errors
from etcdlite.server.auth_store import (
    DEFAULT_BCRYPT_COST,
    ROOT_PERMISSION,
    AuthStatus,
    AuthStore,
    effective_bcrypt_cost,
    hash_password,
    is_valid_permission_range,
    verify_password,
)

READ, WRITE, READWRITE = Permission.READ, Permission.WRITE, Permission.READWRITE


def run(member: Member, op: Callable[..., Any], *args: Any) -> Any:
    """Apply one change in its own batch, as the applier would."""
    with member.backend.batch() as txn:
        return op(txn, *args)


def perm(key: bytes, range_end: bytes = b"", kind: int = READ) -> Permission:
    return Permission(permType=kind, key=key, range_end=range_end)


def enable_with_root(member: Member, password: str = "rootpw") -> None:
    s = member.store
    run(member, s.user_add, "root", hashed(password))
    run(member, s.user_grant_role, "root", "root")
    run(member, s.auth_enable)


def wire(exc: BaseException) -> tuple[str, str] | None:
    return errors.wire_error(exc)


# -- revision and status ---------------------------------------------------------------------


def test_a_fresh_store_is_disabled_at_revision_1(member: Member) -> None:
    assert member.store.status() == AuthStatus(enabled=False, revision=1)
    assert member.store.user_list() == [] and member.store.role_list() == []


def test_every_change_bumps_the_revision_by_one(member: Member) -> None:
    s = member.store
    steps: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
        (s.role_add, ("r",)),
        (s.user_add, ("u", hashed("pw"))),
        (s.user_grant_role, ("u", "r")),
        (s.role_grant_permission, ("r", perm(b"a"))),
        (s.role_revoke_permission, ("r", b"a", b"")),
        (s.user_change_password, ("u", hashed("pw2"))),
        (s.user_revoke_role, ("u", "r")),
        (s.role_delete, ("r",)),
        (s.user_delete, ("u",)),
    ]
    for i, (op, args) in enumerate(steps):
        run(member, op, *args)
        assert s.revision == 2 + i, op.__name__


def test_enable_keeps_the_revision_and_disable_bumps_it(member: Member) -> None:
    enable_with_root(member)
    assert member.store.status() == AuthStatus(True, 3)  # user add, grant; enable: none
    run(member, member.store.auth_enable)  # a second enable is a no-op
    assert member.store.status() == AuthStatus(True, 3)
    run(member, member.store.auth_disable)
    assert member.store.status() == AuthStatus(False, 4)
    run(member, member.store.auth_disable)  # disabling twice changes nothing
    assert member.store.status() == AuthStatus(False, 4)


def test_a_failed_change_leaves_no_trace(member: Member) -> None:
    s = member.store
    run(member, s.role_add, "r")
    changes = s.changes
    with pytest.raises(errors.AuthRoleAlreadyExist):
        run(member, s.role_add, "r")
    with pytest.raises(errors.AuthUserNotFound):
        run(member, s.user_grant_role, "nobody", "r")
    assert s.revision == 2 and s.changes == changes


# -- enable ---------------------------------------------------------------------------------


def test_enable_needs_user_root(member: Member) -> None:
    with pytest.raises(errors.AuthRootUserNotExist) as caught:
        run(member, member.store.auth_enable)
    assert wire(caught.value) == ("FAILED_PRECONDITION", "etcdserver: root user does not exist")
    assert not member.store.enabled


def test_enable_needs_root_to_hold_role_root(member: Member) -> None:
    s = member.store
    run(member, s.user_add, "root", hashed("pw"))
    with pytest.raises(errors.AuthRootRoleNotExist) as caught:
        run(member, s.auth_enable)
    assert wire(caught.value) == (
        "FAILED_PRECONDITION", "etcdserver: root user does not have root role")
    # etcdctl's answer to that error: add role root, grant it, enable again.
    run(member, s.role_add, "root")
    run(member, s.user_grant_role, "root", "root")
    run(member, s.auth_enable)
    assert s.enabled


def test_role_root_can_be_granted_before_it_exists(member: Member) -> None:
    s = member.store
    run(member, s.user_add, "root", hashed("pw"))
    run(member, s.user_grant_role, "root", "root")
    assert s.user_get("root") == ["root"] and s.role_list() == []
    run(member, s.auth_enable)
    assert s.enabled
    with pytest.raises(errors.AuthRoleNotFound):
        s.role_get("root")


# -- users ----------------------------------------------------------------------------------


def test_user_add_get_list(member: Member) -> None:
    s = member.store
    for name in ("zed", "amy", "Bob"):
        run(member, s.user_add, name, hashed("pw!"))
    assert s.user_list() == ["Bob", "amy", "zed"]  # byte order, like etcd's bucket
    assert s.user_get("amy") == []
    stored = s.get_user("amy")
    assert stored is not None and stored.name == b"amy"
    # "!" is not in base64's alphabet, so the plain password cannot appear by chance.
    assert stored.password.startswith(b"$scrypt$") and b"pw!" not in stored.password


def test_user_add_errors(member: Member) -> None:
    s = member.store
    with pytest.raises(errors.AuthUserEmpty) as empty:
        run(member, s.user_add, "", hashed("pw"))
    assert wire(empty.value) == ("INVALID_ARGUMENT", "etcdserver: user name is empty")
    run(member, s.user_add, "u", hashed("pw"))
    with pytest.raises(errors.AuthUserAlreadyExist) as taken:
        run(member, s.user_add, "u", hashed("pw"))
    assert wire(taken.value) == ("FAILED_PRECONDITION", "etcdserver: user name already exists")


def test_unknown_user_errors(member: Member) -> None:
    s = member.store
    run(member, s.role_add, "r")
    want = ("FAILED_PRECONDITION", "etcdserver: user name not found")
    for op, args in [
        (s.user_delete, ("x",)),
        (s.user_change_password, ("x", hashed("pw"))),
        (s.user_grant_role, ("x", "r")),
        (s.user_revoke_role, ("x", "r")),
    ]:
        with pytest.raises(errors.AuthUserNotFound) as caught:
            run(member, op, *args)
        assert wire(caught.value) == want
    with pytest.raises(errors.AuthUserNotFound):
        s.user_get("x")


def test_grant_and_revoke_roles(member: Member) -> None:
    s = member.store
    run(member, s.user_add, "u", hashed("pw"))
    for role in ("b", "a", "c"):
        run(member, s.role_add, role)
        run(member, s.user_grant_role, "u", role)
    assert s.user_get("u") == ["a", "b", "c"]  # kept sorted
    rev = s.revision
    run(member, s.user_grant_role, "u", "b")  # held already: nothing happens
    assert s.revision == rev
    run(member, s.user_revoke_role, "u", "b")
    assert s.user_get("u") == ["a", "c"] and s.revision == rev + 1
    with pytest.raises(errors.AuthRoleNotGranted) as caught:
        run(member, s.user_revoke_role, "u", "b")
    assert wire(caught.value) == (
        "FAILED_PRECONDITION", "etcdserver: role is not granted to the user")
    with pytest.raises(errors.AuthRoleNotFound) as missing:
        run(member, s.user_grant_role, "u", "nope")
    assert wire(missing.value) == ("FAILED_PRECONDITION", "etcdserver: role name not found")


def test_change_password(member: Member) -> None:
    s = member.store
    enable_with_root(member)
    run(member, s.user_add, "u", hashed("old"))
    assert s.check_password("u", "old") == s.revision
    run(member, s.user_change_password, "u", hashed("new"))
    assert s.check_password("u", "new") == s.revision
    with pytest.raises(errors.AuthFailed):
        s.check_password("u", "old")


def test_root_is_protected_only_while_enabled(member: Member) -> None:
    s = member.store
    enable_with_root(member)
    want = ("INVALID_ARGUMENT", "etcdserver: invalid auth management")
    for op, args in [
        (s.user_delete, ("root",)),
        (s.user_revoke_role, ("root", "root")),
        (s.role_delete, ("root",)),
    ]:
        with pytest.raises(errors.InvalidAuthMgmt) as caught:
            run(member, op, *args)
        assert wire(caught.value) == want
    # The checks come before any lookup: role root does not even exist here.
    assert s.role_list() == []
    run(member, s.auth_disable)
    run(member, s.user_revoke_role, "root", "root")
    run(member, s.user_delete, "root")
    assert s.user_list() == []


def test_root_may_drop_other_roles_while_enabled(member: Member) -> None:
    s = member.store
    enable_with_root(member)
    run(member, s.role_add, "r")
    run(member, s.user_grant_role, "root", "r")
    run(member, s.user_revoke_role, "root", "r")
    assert s.user_get("root") == ["root"]


# -- roles and permissions ------------------------------------------------------------------


def test_role_add_get_list_delete(member: Member) -> None:
    s = member.store
    for name in ("r2", "r1"):
        run(member, s.role_add, name)
    assert s.role_list() == ["r1", "r2"]
    assert s.role_get("r1") == []
    run(member, s.role_delete, "r1")
    assert s.role_list() == ["r2"]


def test_role_errors(member: Member) -> None:
    s = member.store
    with pytest.raises(errors.AuthRoleEmpty) as empty:
        run(member, s.role_add, "")
    assert wire(empty.value) == ("INVALID_ARGUMENT", "etcdserver: role name is empty")
    run(member, s.role_add, "r")
    with pytest.raises(errors.AuthRoleAlreadyExist) as taken:
        run(member, s.role_add, "r")
    assert wire(taken.value) == ("FAILED_PRECONDITION", "etcdserver: role name already exists")
    for op, args in [
        (s.role_delete, ("x",)),
        (s.role_grant_permission, ("x", perm(b"a"))),
        (s.role_revoke_permission, ("x", b"a", b"")),
    ]:
        with pytest.raises(errors.AuthRoleNotFound):
            run(member, op, *args)
    with pytest.raises(errors.AuthRoleNotFound):
        s.role_get("x")


def test_role_delete_takes_the_role_from_its_users(member: Member) -> None:
    s = member.store
    run(member, s.role_add, "r")
    run(member, s.role_add, "keep")
    for user in ("u1", "u2", "u3"):
        run(member, s.user_add, user, hashed("pw"))
    run(member, s.user_grant_role, "u1", "r")
    run(member, s.user_grant_role, "u2", "r")
    run(member, s.user_grant_role, "u2", "keep")
    rev = s.revision
    run(member, s.role_delete, "r")
    assert s.revision == rev + 1  # one change, however many users it touched
    assert (s.user_get("u1"), s.user_get("u2"), s.user_get("u3")) == ([], ["keep"], [])


def test_grant_permission_adds_keeps_sorted_and_updates(member: Member) -> None:
    s = member.store
    run(member, s.role_add, "r")
    run(member, s.role_grant_permission, "r", perm(b"m", b"n", READ))
    run(member, s.role_grant_permission, "r", perm(b"a", b"\x00", WRITE))
    run(member, s.role_grant_permission, "r", perm(b"m", b"", READ))
    assert [(p.key, p.range_end, p.permType) for p in s.role_get("r")] == [
        (b"a", b"\x00", WRITE), (b"m", b"n", READ), (b"m", b"", READ),  # stable by key
    ]
    rev = s.revision
    run(member, s.role_grant_permission, "r", perm(b"m", b"", READWRITE))  # same range
    assert s.revision == rev + 1
    assert [(p.key, p.range_end, p.permType) for p in s.role_get("r")] == [
        (b"a", b"\x00", WRITE), (b"m", b"n", READ), (b"m", b"", READWRITE),
    ]


def test_grant_permission_errors(member: Member) -> None:
    s = member.store
    run(member, s.role_add, "r")
    with pytest.raises(errors.AuthPermissionNotGiven) as none:
        run(member, s.role_grant_permission, "r", None)
    assert wire(none.value) == ("INVALID_ARGUMENT", "etcdserver: permission not given")
    for key, end in [(b"", b""), (b"", b"\x00"), (b"b", b"a"), (b"a", b"a")]:
        with pytest.raises(errors.InvalidAuthMgmt):
            run(member, s.role_grant_permission, "r", perm(key, end))
    # The range is checked before the role is looked up, as etcd does.
    with pytest.raises(errors.InvalidAuthMgmt):
        run(member, s.role_grant_permission, "nope", perm(b"", b""))
    assert s.role_get("r") == [] and s.revision == 2


def test_revoke_permission(member: Member) -> None:
    s = member.store
    run(member, s.role_add, "r")
    run(member, s.role_grant_permission, "r", perm(b"a", b"b"))
    run(member, s.role_grant_permission, "r", perm(b"a", b""))
    with pytest.raises(errors.AuthPermissionNotGranted) as caught:
        run(member, s.role_revoke_permission, "r", b"a", b"c")
    assert wire(caught.value) == (
        "FAILED_PRECONDITION", "etcdserver: permission is not granted to the role")
    run(member, s.role_revoke_permission, "r", b"a", b"b")
    assert [(p.key, p.range_end) for p in s.role_get("r")] == [(b"a", b"")]


def test_role_get_root_answers_every_key(member: Member) -> None:
    s = member.store
    run(member, s.role_add, "root")
    run(member, s.role_grant_permission, "root", perm(b"foo"))
    assert s.role_get("root") == [ROOT_PERMISSION]
    assert (ROOT_PERMISSION.permType, ROOT_PERMISSION.key, ROOT_PERMISSION.range_end) == (
        READWRITE, b"", b"\x00")


def test_valid_permission_ranges() -> None:
    assert is_valid_permission_range(b"\x00", b"")
    assert is_valid_permission_range(b"\x00", b"\x00")
    assert is_valid_permission_range(b"a", b"\x00")
    assert not is_valid_permission_range(b"", b"\x00")
    assert not is_valid_permission_range(b"b", b"a\x00")


# -- passwords and Authenticate -------------------------------------------------------------


def test_hash_is_salted_and_verifies(member: Member) -> None:
    a, b = hash_password("pw", TEST_COST), hash_password("pw", TEST_COST)
    assert a != b
    assert verify_password("pw", a.encode()) and verify_password("pw", b.encode())
    assert not verify_password("pw ", a.encode())
    assert not verify_password("", b"") and not verify_password("pw", b"$2a$10$nonsense")


def test_cost_doubles_the_work() -> None:
    assert hash_password("x", 10, salt=bytes(16)).startswith("$scrypt$ln=14,r=8,p=1$")
    assert hash_password("x", 4, salt=bytes(16)).startswith("$scrypt$ln=8,r=8,p=1$")
    with pytest.raises(ValueError):
        hash_password("x", 3)
    assert [effective_bcrypt_cost(c) for c in (0, 4, 31, 32)] == [
        DEFAULT_BCRYPT_COST, 4, 31, DEFAULT_BCRYPT_COST]


def test_check_password(member: Member) -> None:
    s = member.store
    run(member, s.user_add, "u", hashed("pw"))
    with pytest.raises(errors.AuthNotEnabled) as off:
        s.check_password("u", "pw")
    assert wire(off.value) == ("FAILED_PRECONDITION", "etcdserver: authentication is not enabled")
    enable_with_root(member)
    assert s.check_password("u", "pw") == s.revision
    want = ("INVALID_ARGUMENT", "etcdserver: authentication failed, invalid user ID or password")
    for name, password in [("u", "bad"), ("nobody", "pw")]:
        with pytest.raises(errors.AuthFailed) as caught:
            s.check_password(name, password)
        assert wire(caught.value) == want


def test_no_password_users_cannot_log_in_by_password(member: Member) -> None:
    s = member.store
    enable_with_root(member)
    run(member, s.user_add, "cn-user", "", True)
    user = s.get_user("cn-user")
    assert user is not None and user.password == b"" and user.options.no_password
    with pytest.raises(errors.AuthFailed):
        s.check_password("cn-user", "")
    with pytest.raises(errors.AuthFailed):
        s.authenticate("cn-user", index=9, prefix="abcdefghijklmnop")
    run(member, s.user_change_password, "cn-user", hashed("pw"))  # stays password-less
    user = s.get_user("cn-user")
    assert user is not None and user.password == b""


def test_authenticate_assigns_a_token(member: Member) -> None:
    s = member.store
    run(member, s.user_add, "u", hashed("pw"))
    with pytest.raises(errors.AuthNotEnabled):
        s.authenticate("u", index=5, prefix="abcdefghijklmnop")
    enable_with_root(member)
    token = s.authenticate("u", index=7, prefix="abcdefghijklmnop")
    assert token == "abcdefghijklmnop.7"
    info = member.tokens.info(token, s.revision)
    assert info is not None and info.username == "u"
    with pytest.raises(errors.AuthFailed):
        s.authenticate("ghost", index=8, prefix="abcdefghijklmnop")


def test_tokens_die_with_user_delete_password_change_and_disable(member: Member) -> None:
    s = member.store
    enable_with_root(member)
    for name in ("a", "b"):
        run(member, s.user_add, name, hashed("pw"))
    ta = s.authenticate("a", index=1, prefix="P" * 16)
    tb = s.authenticate("b", index=2, prefix="P" * 16)
    troot = s.authenticate("root", index=3, prefix="P" * 16)
    run(member, s.user_change_password, "a", hashed("pw2"))
    assert member.tokens.info(ta, s.revision) is None
    assert member.tokens.info(tb, s.revision) is not None
    run(member, s.user_delete, "b")
    assert member.tokens.info(tb, s.revision) is None
    assert member.tokens.info(troot, s.revision) is not None
    run(member, s.auth_disable)
    assert member.tokens.info(troot, s.revision) is None


# -- the request dispatcher -----------------------------------------------------------------


def test_apply_dispatches_request_messages(member: Member) -> None:
    s = member.store
    pb = rpc_pb2

    def apply(request: Any) -> Any:
        with member.backend.batch() as txn:
            return s.apply(txn, request)

    assert apply(pb.AuthRoleAddRequest(name="r")) == pb.AuthRoleAddResponse()
    apply(pb.AuthUserAddRequest(name="root", hashedPassword=hashed("pw")))
    apply(pb.AuthUserAddRequest(name="cn", options=UserAddOptions(no_password=True)))
    apply(pb.AuthUserGrantRoleRequest(user="root", role="root"))
    apply(pb.AuthUserGrantRoleRequest(user="cn", role="r"))
    apply(pb.AuthRoleGrantPermissionRequest(name="r", perm=perm(b"k", b"", WRITE)))
    with pytest.raises(errors.AuthPermissionNotGiven):
        apply(pb.AuthRoleGrantPermissionRequest(name="r"))
    assert apply(pb.AuthUserGetRequest(name="cn")) == pb.AuthUserGetResponse(roles=["r"])
    assert apply(pb.AuthRoleGetRequest(role="r")) == pb.AuthRoleGetResponse(
        perm=[perm(b"k", b"", WRITE)])
    assert apply(pb.AuthUserListRequest()) == pb.AuthUserListResponse(users=["cn", "root"])
    assert apply(pb.AuthRoleListRequest()) == pb.AuthRoleListResponse(roles=["r"])
    apply(pb.AuthEnableRequest())
    assert apply(pb.AuthStatusRequest()) == pb.AuthStatusResponse(enabled=True, authRevision=7)
    apply(pb.AuthUserChangePasswordRequest(name="root", hashedPassword=hashed("pw2")))
    assert s.check_password("root", "pw2")
    apply(pb.AuthRoleRevokePermissionRequest(role="r", key=b"k"))
    apply(pb.AuthUserRevokeRoleRequest(name="cn", role="r"))
    apply(pb.AuthDisableRequest())
    apply(pb.AuthRoleDeleteRequest(role="r"))
    apply(pb.AuthUserDeleteRequest(name="cn"))
    assert s.status() == AuthStatus(False, 13)
    assert (s.user_list(), s.role_list()) == (["root"], [])


def test_apply_refuses_plain_passwords_and_other_messages(member: Member) -> None:
    with member.backend.batch() as txn:
        with pytest.raises(ValueError):
            member.store.apply(txn, rpc_pb2.AuthUserAddRequest(name="u", password="plain"))
        with pytest.raises(ValueError):
            member.store.apply(txn, rpc_pb2.AuthUserChangePasswordRequest(
                name="u", password="plain"))
        with pytest.raises(TypeError):
            member.store.apply(txn, rpc_pb2.PutRequest(key=b"k"))
    assert member.store.user_list() == []


# -- persistence ----------------------------------------------------------------------------


def test_state_survives_a_reopen(member: Member, reopen: Callable[[], Member]) -> None:
    s = member.store
    enable_with_root(member, "rootpw")
    run(member, s.role_add, "r")
    run(member, s.role_grant_permission, "r", perm(b"a", b"b", READWRITE))
    run(member, s.user_add, "u", hashed("upw"))
    run(member, s.user_add, "cn", "", True)
    run(member, s.user_grant_role, "u", "r")
    before = (s.status(), s.user_list(), s.role_list(), s.user_get("u"), s.role_get("r"))
    token = s.authenticate("u", index=40, prefix="Q" * 16)

    again = reopen()
    t = again.store
    assert (t.status(), t.user_list(), t.role_list(), t.user_get("u"), t.role_get("r")) == before
    assert t.check_password("u", "upw") == t.revision
    assert t.check_password("root", "rootpw") == t.revision
    cn = t.get_user("cn")
    assert cn is not None and cn.options.no_password
    assert again.tokens.info(token, t.revision) is None  # tokens live in memory only
    with again.backend.batch() as txn:
        t.role_add(txn, "after")
    assert t.revision == before[0].revision + 1


def test_disabled_state_and_revision_survive_a_reopen(member: Member,
                                                      reopen: Callable[[], Member]) -> None:
    enable_with_root(member)
    run(member, member.store.auth_disable)
    assert reopen().store.status() == AuthStatus(False, 4)


def test_reload_rebuilds_the_view(member: Member) -> None:
    s = member.store
    run(member, s.role_add, "r")
    other = AuthStore(member.backend, member.tokens)  # a second view of the same table
    with member.backend.batch() as txn:
        other.role_add(txn, "r2")
    assert s.role_list() == ["r"]
    changes = s.changes
    s.reload()
    assert s.role_list() == ["r", "r2"] and s.revision == 3 and s.changes > changes


def test_malformed_hashes_match_nothing() -> None:
    good = hash_password("pw", TEST_COST, salt=bytes(16))
    head, salt, key = good.rsplit("$", 2)
    for bad in [
        f"{head}$A$={key}",            # bad base64
        f"{head}${salt}${key[:-4]}",    # a short key
        good.replace("ln=8", "ln=40"),  # absurd work factor
        good.replace("r=8", "r=0"),
        good + "x",
    ]:
        assert not verify_password("pw", bad.encode()), bad
    assert verify_password("pw", good.encode())


def test_cost_beyond_the_memory_cap_doubles_parallelism() -> None:
    from etcdlite.server.auth_store import _scrypt_params

    assert [_scrypt_params(c) for c in (4, 10, 13, 14, 15, 31)] == [
        (8, 1), (14, 1), (17, 1), (17, 2), (17, 4), (17, 1 << 18)]
