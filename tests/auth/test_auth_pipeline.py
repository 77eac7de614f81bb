"""Auth through the one request pipeline: the entry format, checks at apply time,
persistence and restarts, no plain-text password on disk, JWT tokens, flags."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from authlib import ALICE_PW, ROOT_PW, TEST_COST, Client, prefix_end, setup_auth
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from etcdlite.protos import rpc_pb2
from etcdlite.protos.internal_pb2 import (
    InternalAuthenticateRequest,
    InternalRequest,
    LeaseExpireRequest,
)
from etcdlite.server import cli
from etcdlite.server.apply import Proposal
from etcdlite.server.clock import ManualClock
from etcdlite.server.config import EtcdConfig
from etcdlite.server.embed import EtcdServer
from etcdlite.server.entry_codec import decode, encode
from etcdlite.server.errors import AuthOldRevision, PermissionDenied
from etcdlite.server.etcd import Etcd
from etcdlite.server.log import Logger
from etcdlite.server.runner import ConfigError

BAD_TOKEN = ("UNAUTHENTICATED", "etcdserver: invalid auth token")
OLD_REVISION = ("INVALID_ARGUMENT", "etcdserver: revision of auth store is old")


# -- the entry format -------------------------------------------------------------------------


@pytest.mark.parametrize("request_", [
    rpc_pb2.PutRequest(key=b"k", value=b"v"),                     # field 2: before the caller
    rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET),       # field 8
    LeaseExpireRequest(id=5),                                     # field 23: after it
    rpc_pb2.AuthUserAddRequest(name="u", hashedPassword="$scrypt$x"),
    InternalAuthenticateRequest(name="u", simple_token="abcdefghijklmnop"),
], ids=lambda r: type(r).__name__)
@pytest.mark.parametrize(("username", "revision"), [("", 0), ("alice", 7), ("ü" * 70, 2**40)])
def test_entries_carry_the_caller_as_protobuf_would(request_: object, username: str,
                                                    revision: int) -> None:
    p = Proposal(300, request_, username, revision)  # type: ignore[arg-type]
    data = encode(p)
    reference = InternalRequest(id=300, username=username, auth_revision=revision)
    field = {f.message_type.full_name: f.name
             for f in InternalRequest.DESCRIPTOR.oneofs_by_name["request"].fields}
    getattr(reference, field[request_.DESCRIPTOR.full_name]).CopyFrom(request_)  # type: ignore[attr-defined]
    assert data == reference.SerializeToString()
    assert decode(data) == p


def test_an_entry_without_a_caller_is_unchanged() -> None:
    assert encode(Proposal(7, rpc_pb2.PutRequest(key=b"k", value=b"v"))) == \
        b"\x08\x07\x12\x06\n\x01k\x12\x01v"


# -- checks at apply time ---------------------------------------------------------------------


async def _member(data_dir: Path, clock: ManualClock) -> Etcd:
    etcd = Etcd(EtcdConfig(data_dir=data_dir, log_level="error", bcrypt_cost=TEST_COST),
                Logger("error"), clock)
    etcd.start()
    await etcd.publish(["http://127.0.0.1:2379"])
    etcd.serving()
    return etcd


def test_an_auth_change_between_check_and_apply_refuses_the_write(tmp_path: Path) -> None:
    """etcd's rule: a write checked at auth revision N that applies after the auth
    revision moved past N fails with "revision of auth store is old" (clients log in again
    and retry), even if the permission would still hold; one checked at the current
    revision whose permission is gone by apply time is denied."""

    async def scenario() -> None:
        etcd = await _member(tmp_path / "m", ManualClock())
        try:
            for r in (rpc_pb2.AuthUserAddRequest(name="root", password=ROOT_PW),
                      rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"),
                      rpc_pb2.AuthRoleAddRequest(name="app"),
                      rpc_pb2.AuthRoleGrantPermissionRequest(name="app", perm=dict(
                          permType=2, key=b"/app/", range_end=prefix_end(b"/app/"))),
                      rpc_pb2.AuthUserAddRequest(name="alice", password=ALICE_PW),
                      rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="app"),
                      rpc_pb2.AuthEnableRequest()):
                await etcd.auth_change(r)
            root = etcd.caller((await etcd.authenticate(rpc_pb2.AuthenticateRequest(
                name="root", password=ROOT_PW))).token)
            alice = etcd.caller((await etcd.authenticate(rpc_pb2.AuthenticateRequest(
                name="alice", password=ALICE_PW))).token)
            assert alice is not None and root is not None
            # The revoke is proposed first, the put passes its check before the revoke
            # applies: both land in one batch, the put after the revoke.
            index = etcd.node.applied_index
            revoke = asyncio.ensure_future(etcd.auth_change(
                rpc_pb2.AuthRoleRevokePermissionRequest(
                    role="app", key=b"/app/", range_end=prefix_end(b"/app/")), root))
            put = asyncio.ensure_future(etcd.put(rpc_pb2.PutRequest(key=b"/app/a"), alice))
            await revoke
            with pytest.raises(AuthOldRevision):
                await put
            assert etcd.node.applied_index == index + 2  # refused by the applier
            # At the current revision, the check at apply time is a plain permission check.
            fresh = etcd.caller((await etcd.authenticate(rpc_pb2.AuthenticateRequest(
                name="alice", password=ALICE_PW))).token)
            with pytest.raises(PermissionDenied):
                await etcd._propose(rpc_pb2.PutRequest(key=b"/app/a"), fresh)
            assert etcd.store.current_revision == 1  # nothing was written
        finally:
            await etcd.stop()

    asyncio.run(scenario())


# -- on disk ----------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "member.etcd"


@pytest.fixture
def on_disk(data_dir: Path, clock: ManualClock) -> Iterator[EtcdServer]:
    server = EtcdServer(data_dir=data_dir, clock=clock, bcrypt_cost=TEST_COST)
    yield server
    server.stop()


def test_no_plain_text_password_reaches_the_disk(on_disk: EtcdServer, data_dir: Path) -> None:
    secrets = [b"Plain-Text-Root!", b"Plain-Text-Alice!", b"Changed-Password!"]
    with on_disk, grpc.insecure_channel(on_disk.endpoint) as ch:
        c = Client(ch)
        c.call("Auth", "UserAdd", rpc_pb2.AuthUserAddRequest(name="root",
                                                              password=secrets[0].decode()))
        c.call("Auth", "UserAdd", rpc_pb2.AuthUserAddRequest(name="alice",
                                                              password=secrets[1].decode()))
        c.call("Auth", "UserChangePassword", rpc_pb2.AuthUserChangePasswordRequest(
            name="alice", password=secrets[2].decode()))
        c.call("Auth", "UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(user="root",
                                                                         role="root"))
        c.call("Auth", "AuthEnable", rpc_pb2.AuthEnableRequest())
        c.authenticate("alice", secrets[2].decode())
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.parent.name == "wal" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret not in data, f"{secret!r} in {path}"


def test_auth_state_survives_a_restart_and_tokens_do_not(on_disk: EtcdServer) -> None:
    with on_disk, grpc.insecure_channel(on_disk.endpoint) as ch:
        setup_auth(Client(ch))
        token = Client(ch).authenticate("alice", ALICE_PW)
        Client(ch, token).put(b"/app/a")
    with on_disk, grpc.insecure_channel(on_disk.endpoint) as ch:
        assert Client(ch, token).error("KV", "Range", rpc_pb2.RangeRequest(key=b"/app/a")) \
            == BAD_TOKEN
        alice = Client(ch).login("alice", ALICE_PW)
        assert alice.get(b"/app/a").count == 1
        root = Client(ch).login("root", ROOT_PW)
        status = root.call("Auth", "AuthStatus", rpc_pb2.AuthStatusRequest())
        assert (status.enabled, status.authRevision) == (True, 8)
        assert list(root.call("Auth", "UserList", rpc_pb2.AuthUserListRequest()).users) == [
            "alice", "root"]


# -- JWT --------------------------------------------------------------------------------------


def test_jwt_tokens(tmp_path: Path, clock: ManualClock) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv, pub = tmp_path / "jwt.key", tmp_path / "jwt.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    flag = f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256,ttl=10s"
    with EtcdServer(clock=clock, bcrypt_cost=TEST_COST, auth_token=flag) as server, \
            grpc.insecure_channel(server.endpoint) as ch:
        client = Client(ch)
        setup_auth(client)
        alice = client.login("alice", ALICE_PW)
        assert alice.token is not None and alice.token.count(".") == 2  # header.claims.sig
        alice.put(b"/app/a")
        # Any auth change outdates the tokens signed before it.
        client.login("root", ROOT_PW).call("Auth", "RoleAdd",
                                           rpc_pb2.AuthRoleAddRequest(name="other"))
        assert alice.error("KV", "Put", rpc_pb2.PutRequest(key=b"/app/a")) == OLD_REVISION
        alice = client.login("alice", ALICE_PW)
        alice.put(b"/app/a")
        clock.advance(11)
        assert alice.error("KV", "Put", rpc_pb2.PutRequest(key=b"/app/a")) == BAD_TOKEN


# -- flags ------------------------------------------------------------------------------------


def test_flags_and_variables() -> None:
    parsed = cli.parse_args(
        ["--auth-token", "jwt,sign-method=HS256,priv-key=k", "--auth-token-ttl", "7",
         "--bcrypt-cost=12", "--cert-file", "s.pem", "--key-file", "s.key",
         "--client-cert-auth"], {"ETCD_TRUSTED_CA_FILE": "ca.pem"})
    assert not parsed.warnings
    cfg = cli.to_config(parsed.values)
    assert (cfg.auth_token, cfg.auth_token_ttl_s, cfg.bcrypt_cost) == (
        "jwt,sign-method=HS256,priv-key=k", 7, 12)
    assert (cfg.cert_file, cfg.key_file, cfg.trusted_ca_file, cfg.client_cert_auth) == (
        Path("s.pem"), Path("s.key"), Path("ca.pem"), True)
    defaults = cli.to_config(cli.parse_args(["--cert-file", ""], {}).values)
    assert (defaults.auth_token, defaults.auth_token_ttl_s, defaults.bcrypt_cost) == (
        "simple", 300, 10)
    assert defaults.cert_file is None and not defaults.client_cert_auth


@pytest.mark.parametrize(("flag", "message"), [
    ("bogus", "auth: invalid auth options"),
    ("jwt,sign-method=RS256", "auth: missing key data"),
    ("jwt,sign-method=none", "unsupported signing method"),
])
def test_a_bad_auth_token_flag_refuses_to_start(flag: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EtcdServer(auth_token=flag).start()


def test_the_command_exits_on_a_bad_auth_token(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--data-dir", str(tmp_path / "d"), "--listen-client-urls",
                     "http://127.0.0.1:0", "--auth-token", "simple,x"], {})
    assert code == 1
    assert "auth: invalid auth options" in capsys.readouterr().err
