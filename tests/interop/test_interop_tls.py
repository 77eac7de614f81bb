"""TLS on the client URL: https with etcdctl's ``--cacert --cert --key``, client
certificates required by ``--client-cert-auth``, and the certificate's CN as the user
when auth is enabled (as etcd does).

Every test makes its own CA and certificates (``cryptography``, in a temp dir): a server
certificate for 127.0.0.1/localhost, and client certificates whose CN is ``root``,
``alice`` or ``mallory`` (signed by another CA).
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from etcd_procs import Etcdctl, etcdlite_command, free_port

from etcdlite.protos import auth_pb2, rpc_pb2, wire
from etcdlite.server.embed import EtcdServer
from etcdlite.server.runner import ConfigError

pytestmark = pytest.mark.interop

START_TIMEOUT_S = 30.0


# -- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path

    def pair(self) -> tuple[bytes, bytes]:
        return self.key.read_bytes(), self.cert.read_bytes()


class Pki:
    """A CA and the certificates it signs, as PEM files in ``base``."""

    def __init__(self, base: Path, name: str = "ca"):
        self.base = base
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, f"{name} CA")])
        builder = self._builder(self._name, self._key.public_key())
        self._cert = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True,
        ).add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True,
        ).sign(self._key, hashes.SHA256())
        self.ca = base / f"{name}.pem"
        self.ca.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def _builder(self, subject: x509.Name,
                 public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        """A certificate of ``subject`` issued by this CA, valid from an hour ago for a day."""
        now = datetime.datetime.now(datetime.timezone.utc)
        return x509.CertificateBuilder().subject_name(subject).issuer_name(
            self._name).public_key(public_key).serial_number(
            x509.random_serial_number()).not_valid_before(
            now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))

    def issue(self, cn: str, *, server: bool = False) -> Pem:
        """A certificate for ``cn`` (usable by a client and, with ``server``, for
        127.0.0.1 and localhost) and its key."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)])
        usage = [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = self._builder(subject, key.public_key()).add_extension(
            x509.ExtendedKeyUsage(usage), critical=False)
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
            ]), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        pem = Pem(self.base / f"{cn}.pem", self.base / f"{cn}-key.pem")
        pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        return pem


@dataclass
class Certs:
    pki: Pki
    server: Pem
    root: Pem
    alice: Pem
    mallory: Pem
    """Signed by another CA: the server must refuse it."""


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    pki = Pki(tmp_path)
    other = Pki(tmp_path, "other")
    return Certs(pki, pki.issue("server", server=True), pki.issue("root"), pki.issue("alice"),
                 other.issue("mallory"))


def channel(endpoint: str, certs: Certs, client: Pem | None) -> grpc.Channel:
    key, cert = client.pair() if client is not None else (None, None)
    creds = grpc.ssl_channel_credentials(certs.pki.ca.read_bytes(), key, cert)
    return grpc.secure_channel(endpoint, creds)


def tls_flags(certs: Certs, client_cert_auth: bool) -> dict[str, object]:
    flags: dict[str, object] = {
        "listen_client_urls": ["https://127.0.0.1:0"],
        "cert_file": certs.server.cert, "key_file": certs.server.key,
        "trusted_ca_file": certs.pki.ca, "client_cert_auth": client_cert_auth,
    }
    return flags


@pytest.fixture
def tls_server(certs: Certs) -> Iterator[EtcdServer]:
    with EtcdServer(bcrypt_cost=4, **tls_flags(certs, True)) as server:  # type: ignore[arg-type]
        yield server


def ctl_tls(certs: Certs, who: Pem | None, timeout: str = "5s") -> tuple[str, ...]:
    args: tuple[str, ...] = ("--cacert", str(certs.pki.ca))
    if who is not None:
        args += ("--cert", str(who.cert), "--key", str(who.key))
    return (*args, "--dial-timeout", timeout, "--command-timeout", timeout)


# -- etcdctl ----------------------------------------------------------------------------------


def test_etcdctl_over_https_from_the_command_line(tmp_path: Path, certs: Certs,
                                                  etcdctl: Etcdctl) -> None:
    """The ``etcdlite`` command with etcd's TLS flags; etcdctl with --cacert/--cert/--key."""
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    log_path = tmp_path / "etcdlite.log"
    cmd = [*etcdlite_command(), "--data-dir", str(tmp_path / "data"),
           "--listen-client-urls", url, "--advertise-client-urls", url,
           "--cert-file", str(certs.server.cert), "--key-file", str(certs.server.key),
           "--trusted-ca-file", str(certs.pki.ca), "--client-cert-auth"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, log_path)
        log_text = log_path.read_text()
        assert '"msg":"serving client traffic securely"' in log_text
        assert "not implemented" not in log_text  # every TLS flag is a real one now
        assert etcdctl.run(url, *ctl_tls(certs, certs.alice), "put", "k", "v").stdout == "OK\n"
        assert etcdctl.run(url, *ctl_tls(certs, certs.alice), "get", "k").stdout == "k\nv\n"
        [status] = etcdctl.json(url, *ctl_tls(certs, certs.alice), "endpoint", "status")
        assert status["Endpoint"] == url
        members = etcdctl.json(url, *ctl_tls(certs, certs.root), "member", "list")
        assert members["members"][0]["clientURLs"] == [url]
        # Without a client certificate, or with one of another CA: refused.
        for who in (None, certs.mallory):
            res = etcdctl.run(url, *ctl_tls(certs, who, "1s"), "get", "k", check=False)
            assert res.returncode != 0 and "k\nv" not in res.stdout
        # Plain text on an https URL: refused too.
        plain = etcdctl.run(f"http://127.0.0.1:{port}", "--dial-timeout", "1s",
                            "--command-timeout", "1s", "get", "k", check=False)
        assert plain.returncode != 0
    finally:
        proc.terminate()
        proc.wait(15)


def _wait_ready(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while "ready to serve client requests" not in log_path.read_text():
        if proc.poll() is not None:
            raise AssertionError(f"etcdlite exited {proc.returncode}: {log_path.read_text()}")
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.05)


def test_common_name_is_the_user_with_auth_enabled(tls_server: EtcdServer, certs: Certs,
                                                   etcdctl: Etcdctl) -> None:
    url = tls_server.url
    assert url.startswith("https://")
    root, alice = ctl_tls(certs, certs.root), ctl_tls(certs, certs.alice)
    run = etcdctl.run
    run(url, *root, "user", "add", "root:rootpw")
    run(url, *root, "role", "add", "app")
    run(url, *root, "role", "grant-permission", "app", "readwrite", "/app/", "--prefix")
    run(url, *root, "user", "add", "alice", "--no-password")
    run(url, *root, "user", "grant-role", "alice", "app")
    assert run(url, *root, "auth", "enable").stdout == "Authentication Enabled\n"
    # No --user: the certificate's CN is the user.
    assert run(url, *alice, "put", "/app/x", "1").stdout == "OK\n"
    denied = run(url, *alice, "put", "/other", "1", check=False)
    assert "etcdserver: permission denied" in denied.stderr
    assert run(url, *root, "user", "list").stdout == "alice\nroot\n"
    assert run(url, *root, "put", "/other", "1").stdout == "OK\n"
    # A token, when there is one, wins over the certificate (alice's cert, root's token).
    assert run(url, *alice, "--user", "root:rootpw", "get", "/other",
               "--print-value-only").stdout == "1\n"


def test_common_name_with_a_grpc_client(tls_server: EtcdServer, certs: Certs) -> None:
    with channel(tls_server.endpoint, certs, certs.root) as ch:
        a = wire.Stub(ch, "Auth")
        a.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password="rootpw"))
        a.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
        a.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="app"))
        a.RoleGrantPermission(rpc_pb2.AuthRoleGrantPermissionRequest(
            name="app", perm=auth_pb2.Permission(permType=auth_pb2.Permission.READ,
                                                 key=b"/app/", range_end=b"/app0")))
        a.UserAdd(rpc_pb2.AuthUserAddRequest(name="alice", password="alicepw"))
        a.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="app"))
        a.AuthEnable(rpc_pb2.AuthEnableRequest())
        assert a.AuthStatus(rpc_pb2.AuthStatusRequest()).enabled  # root by its CN
    with channel(tls_server.endpoint, certs, certs.alice) as ch:
        kv = wire.Stub(ch, "KV")
        assert kv.Range(rpc_pb2.RangeRequest(key=b"/app/x")).count == 0
        with pytest.raises(grpc.RpcError) as denied:
            kv.Put(rpc_pb2.PutRequest(key=b"/app/x", value=b"1"))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        w = wire.Stub(ch, "Watch").Watch(iter([rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(key=b"/app/x"))]), timeout=10)
        created = next(w)
        assert created.created and not created.canceled
        w.cancel()


def test_a_client_without_a_certificate_is_refused(tls_server: EtcdServer,
                                                   certs: Certs) -> None:
    for who in (None, certs.mallory):
        with channel(tls_server.endpoint, certs, who) as ch:
            with pytest.raises(grpc.RpcError) as refused:
                wire.Stub(ch, "Maintenance").Status(rpc_pb2.StatusRequest(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_without_client_cert_auth_any_tls_client_is_served(certs: Certs) -> None:
    with EtcdServer(**tls_flags(certs, False)) as server:  # type: ignore[arg-type]
        with channel(server.endpoint, certs, None) as ch:
            wire.Stub(ch, "KV").Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=5)
        with grpc.insecure_channel(server.endpoint) as ch, pytest.raises(grpc.RpcError):
            wire.Stub(ch, "KV").Range(rpc_pb2.RangeRequest(key=b"k"), timeout=5)


def test_tls_configuration_errors(certs: Certs, tmp_path: Path) -> None:
    https = ["https://127.0.0.1:0"]
    cases = [
        ({"listen_client_urls": https}, "--cert-file, --key-file"),
        ({"listen_client_urls": https, "cert_file": tmp_path / "missing.pem",
          "key_file": certs.server.key}, "--cert-file .*missing.pem"),
        ({"listen_client_urls": https, "cert_file": certs.server.cert,
          "key_file": certs.server.key, "client_cert_auth": True},
         "--client-cert-auth needs --trusted-ca-file"),
    ]
    for flags, message in cases:
        with pytest.raises(ConfigError, match=message):
            EtcdServer(**flags).start()  # type: ignore[arg-type]
