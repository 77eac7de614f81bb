"""The embedding contract (``etcdlite.server.embed``): EtcdServer and AsyncEtcdServer.

Keyword arguments mirror EtcdConfig; ``data_dir=None`` is a private temporary directory
with fsync off, gone after ``stop``; two servers on one explicit port or one data dir fail
clearly; ``stop`` leaves nothing of the server behind; on a ManualClock ``advance``
returns with the expired leases revoked. Clients here are raw gRPC stubs (aetcd is in
test_embed_aetcd.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from etcdlite.protos import rpc_pb2, wire
from etcdlite.server import EtcdServer
from etcdlite.server.clock import ManualClock
from etcdlite.server.config import EtcdConfig
from etcdlite.server.embed import (
    AsyncEtcdServer,
    DataDirInUse,
    PortInUse,
    build_config,
)

STEP_S = 10.0


@contextmanager
def stubs(server: EtcdServer | AsyncEtcdServer) -> Iterator[tuple[wire.Stub, wire.Stub]]:
    """(KV, Lease) stubs on a channel closed afterwards."""
    with grpc.insecure_channel(server.endpoint) as ch:
        yield wire.Stub(ch, "KV"), wire.Stub(ch, "Lease")


def put(kv: wire.Stub, key: bytes, lease: int = 0) -> int:
    return kv.Put(rpc_pb2.PutRequest(key=key, value=b"v", lease=lease),
                  timeout=STEP_S).header.revision


def count(kv: wire.Stub, prefix: bytes) -> int:
    return kv.Range(rpc_pb2.RangeRequest(key=prefix, range_end=prefix[:-1] + b"\x7f"),
                    timeout=STEP_S).count


def grant(lease: wire.Stub, ttl: int) -> int:
    return lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=ttl), timeout=STEP_S).ID


def member_threads() -> list[str]:
    """Names of the member threads running now (the plugin's session server, when some
    test of this session started it, is one of them: compare with a baseline)."""
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("etcdlite"))


def open_fds() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, now closed
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return out


@pytest.fixture
def warm_grpc() -> None:
    """gRPC starts a few threads and descriptors per *process* on first use and keeps
    them (its timer thread, the asyncio poller thread with an epoll fd, an eventfd and a
    socketpair). One server started and stopped first puts those in the baseline, so
    what a test compares afterwards is what belongs to its own servers."""
    with EtcdServer() as s, stubs(s) as (kv, _):
        kv.Range(rpc_pb2.RangeRequest(key=b"warm"), timeout=STEP_S)


# -- configuration -------------------------------------------------------------------------


def test_every_config_field_is_a_keyword_argument():
    for f in dataclasses.fields(EtcdConfig):
        value = getattr(EtcdConfig(), f.name)
        if f.name == "listen_client_urls":
            value = ["http://127.0.0.1:0"]
        cfg = build_config(**{f.name: value})
        assert getattr(cfg, f.name) == value, f.name
    s = EtcdServer(max_txn_ops=4, max_request_bytes=2048, election_timeout_ms=500,
                   snapshot_count=7, quota_backend_bytes=-1, name="n1", log_level="warn")
    got = (s.config.max_txn_ops, s.config.max_request_bytes, s.config.election_timeout_ms,
           s.config.snapshot_count, s.config.quota_backend_bytes, s.config.name,
           s.config.log_level)
    assert got == (4, 2048, 500, 7, -1, "n1", "warn")
    assert EtcdServer().config.log_level == "error", "embedded servers are quiet"
    assert EtcdServer(port=2379).config.listen_client_urls == ["http://127.0.0.1:2379"]
    assert EtcdServer(host="::1").config.listen_client_urls == ["http://[::1]:0"]


def test_bad_keyword_arguments_fail_at_construction():
    with pytest.raises(TypeError, match=r"'max_txn_op' \(did you mean 'max_txn_ops'\?\)"):
        EtcdServer(max_txn_op=3)
    with pytest.raises(TypeError, match="not both"):
        EtcdServer(port=1, listen_client_urls=["http://127.0.0.1:2"])
    with pytest.raises(ValueError, match="unknown log level"):
        EtcdServer(log_level="loud")


def test_temporary_data_dir_has_fsync_off_and_is_removed_on_stop(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    s = EtcdServer()
    assert s.config.unsafe_no_fsync is True
    with s:
        d = s.data_dir
        assert d.parent == tmp_path and (d / "member").is_dir()
    assert not d.exists()
    assert list(tmp_path.iterdir()) == []
    assert EtcdServer(data_dir=tmp_path / "x").config.unsafe_no_fsync is False
    assert EtcdServer(unsafe_no_fsync=False).config.unsafe_no_fsync is False


def test_given_data_dir_is_kept_and_a_restart_sees_the_data(tmp_path):
    s = EtcdServer(data_dir=str(tmp_path / "d"))
    assert s.data_dir == tmp_path / "d"
    with s, stubs(s) as (kv, _):
        assert put(kv, b"/k") == 2
    assert (tmp_path / "d" / "member").is_dir()
    with s, stubs(s) as (kv, _):  # the same object starts again, on the same directory
        resp = kv.Range(rpc_pb2.RangeRequest(key=b"/k"), timeout=STEP_S)
        assert (resp.count, resp.header.revision) == (1, 2)


# -- addresses ----------------------------------------------------------------------------


def test_endpoint_url_and_first_request():
    with EtcdServer() as s, stubs(s) as (kv, _):
        assert s.endpoint == f"127.0.0.1:{s.port}" and s.port > 0
        assert s.url == f"http://127.0.0.1:{s.port}" == s.client_urls[0]
        assert s.host == "127.0.0.1"
        assert put(kv, b"/a") == 2
        assert "running" in repr(s)
    assert "stopped" in repr(s)
    with pytest.raises(RuntimeError, match="not been started"):
        _ = EtcdServer().endpoint


def test_port_zero_servers_started_at_once_get_distinct_working_ports():
    """Port 0 is bound once by the server's own listener: servers started concurrently
    never collide (a probe-close-rebind scheme would let two pick the same port)."""
    servers = [EtcdServer() for _ in range(8)]
    threads = [threading.Thread(target=s.start) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len({s.port for s in servers}) == len(servers)
        for s in servers:
            with stubs(s) as (kv, _):
                assert put(kv, b"/p") == 2
    finally:
        for s in servers:
            s.stop()


# -- fights --------------------------------------------------------------------------------


def test_same_explicit_port_fails_clearly_and_the_first_server_is_unharmed():
    with EtcdServer() as a:
        second = EtcdServer(port=a.port)
        with pytest.raises(PortInUse, match=(
                f"listen tcp 127.0.0.1:{a.port}: bind: address already in use")):
            second.start()
        assert not second.running
        with stubs(a) as (kv, _):
            assert put(kv, b"/still-mine") == 2
    with socket.socket() as other:  # any other owner of the port: the same error
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(PortInUse):
            EtcdServer(port=other.getsockname()[1]).start()


def test_same_data_dir_fails_clearly_in_this_process(tmp_path):
    d = tmp_path / "shared"
    with EtcdServer(data_dir=d) as a:
        with stubs(a) as (kv, _):
            put(kv, b"/mine")
        with pytest.raises(DataDirInUse, match=f"data dir {d} is in use"):
            EtcdServer(data_dir=d).start()
        with stubs(a) as (kv, _):
            assert count(kv, b"/mine/") == 0 and put(kv, b"/mine2") == 3
    with EtcdServer(data_dir=d):  # free again once the first one stopped
        pass
    with EtcdServer(data_dir=tmp_path / "a", wal_dir=tmp_path / "wal"), pytest.raises(
            DataDirInUse, match="wal dir"):
        EtcdServer(data_dir=tmp_path / "b", wal_dir=tmp_path / "wal").start()


def test_same_data_dir_fails_clearly_across_processes(tmp_path):
    d = tmp_path / "shared"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\nfrom etcdlite.server import EtcdServer\n"
         f"with EtcdServer(data_dir={str(d)!r}):\n"
         "    print('ready', flush=True); sys.stdin.readline()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        with pytest.raises(DataDirInUse):
            EtcdServer(data_dir=d).start()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(STEP_S)
    with EtcdServer(data_dir=d):
        pass


# -- leaks ---------------------------------------------------------------------------------


def test_stop_leaves_no_thread_fd_or_directory(warm_grpc, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fds, threads = open_fds(), member_threads()
    servers = [EtcdServer() for _ in range(3)]
    try:
        for s in servers:
            s.start()
        assert len(member_threads()) == len(threads) + 3
        assert len(open_fds()) > len(fds) + 3 * 5  # each holds a listener, LMDB, a lock...
        for s in servers:
            with stubs(s) as (kv, lease):
                put(kv, b"/k", grant(lease, 60))
    finally:
        for s in servers:
            s.stop()
            s.stop()  # idempotent
    assert member_threads() == threads
    assert open_fds() == fds
    assert list(tmp_path.iterdir()) == []


def test_a_failed_start_leaves_nothing(warm_grpc, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with EtcdServer() as a:
        fds, threads = open_fds(), member_threads()
        with pytest.raises(PortInUse):
            EtcdServer(port=a.port).start()
        assert member_threads() == threads
        assert open_fds() == fds
        assert list(tmp_path.iterdir()) == [a.data_dir]


# -- the manual clock ----------------------------------------------------------------------


def test_advance_revokes_expired_leases_before_returning():
    clock = ManualClock()
    with EtcdServer(clock=clock) as s, stubs(s) as (kv, lease):
        assert s.clock is clock
        short, long_ = grant(lease, 10), grant(lease, 3600)
        put(kv, b"/l/short", short)
        put(kv, b"/l/long", long_)
        t0 = time.monotonic()
        s.advance(9.9)
        assert count(kv, b"/l/") == 2
        s.advance(0.2)
        assert count(kv, b"/l/") == 1, "the 10 s lease and its key are gone at once"
        clock.advance(3600)  # the clock's own advance does the same
        assert count(kv, b"/l/") == 0
        assert time.monotonic() - t0 < STEP_S, "an hour of lease time, no sleeping"
        ttl = lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=short), timeout=STEP_S)
        assert ttl.TTL == -1


def test_advance_revokes_more_than_one_ticks_worth():
    """The member revokes at most 500 leases per tick; advance keeps going until none
    is due."""
    with EtcdServer(clock=ManualClock()) as s, stubs(s) as (kv, lease):
        ids = [grant(lease, 5) for _ in range(1200)]
        for i in ids[::100]:
            put(kv, b"/many/%d" % i, i)
        s.advance(6)
        listed = lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=STEP_S)
        assert list(listed.leases) == []
        assert count(kv, b"/many/") == 0


def test_one_clock_for_several_servers_expires_on_all():
    clock = ManualClock()
    with EtcdServer(clock=clock) as a, EtcdServer(clock=clock) as b:
        for s in (a, b):
            with stubs(s) as (kv, lease):
                put(kv, b"/x/k", grant(lease, 5))
        clock.advance(6)
        for s in (a, b):
            with stubs(s) as (kv, _):
                assert count(kv, b"/x/") == 0
    clock.advance(100)  # stopped servers have unsubscribed: nothing runs, nothing hangs


def test_advance_needs_a_manual_clock():
    with EtcdServer() as s, pytest.raises(TypeError, match="ManualClock"):
        s.advance(1)


# -- asyncio -------------------------------------------------------------------------------


def test_async_server_starts_advances_and_stops_without_blocking(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    threads = member_threads()

    async def scenario() -> None:
        async with AsyncEtcdServer(clock=ManualClock()) as s:
            assert s.url == f"http://{s.endpoint}" and s.port == s.server.port
            channel = grpc.aio.insecure_channel(s.endpoint)
            kv, lease = wire.Stub(channel, "KV"), wire.Stub(channel, "Lease")
            lid = (await lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30))).ID
            await kv.Put(rpc_pb2.PutRequest(key=b"/a/k", value=b"v", lease=lid))
            ticker = asyncio.create_task(asyncio.sleep(0))  # the caller's loop stays live
            await s.advance(31.1)
            await ticker
            assert (await kv.Range(rpc_pb2.RangeRequest(key=b"/a/k"))).count == 0
            await channel.close()
        assert not s.server.running
        with pytest.raises(PortInUse):
            async with AsyncEtcdServer() as a:
                await AsyncEtcdServer(port=a.port).start()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert member_threads() == threads
    assert list(tmp_path.iterdir()) == []


# -- the plugin's import cost --------------------------------------------------------------


def test_plugin_module_imports_no_grpc_or_lmdb():
    code = ("import sys, etcdlite.server.pytest_plugin\n"
            "print(sorted(m for m in ('grpc', 'lmdb', 'google.protobuf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"
    assert Path(sys.modules["etcdlite.server.pytest_plugin"].__file__ or "").name == (
        "pytest_plugin.py"), "the plugin was registered through its entry point"


def test_advance_also_waits_for_revokes_the_members_own_tick_proposed(tmp_path):
    """The member's 500 ms tick may have taken the due leases (and proposed their
    revokes) just before ``advance`` looks: ``revoke_expired_leases`` then reports none,
    yet ``advance`` must not return before those revokes are applied."""
    from etcdlite.server.embed import _revoke_due_leases
    from etcdlite.server.etcd import Etcd
    from etcdlite.server.log import Logger

    async def scenario() -> None:
        clock = ManualClock()
        etcd = Etcd(EtcdConfig(data_dir=tmp_path / "m"), Logger("error"), clock)
        etcd.start()
        try:
            await etcd.publish(["http://127.0.0.1:2379"])
            etcd.serving()
            for i in range(1, 4):
                await etcd.lease_grant(rpc_pb2.LeaseGrantRequest(ID=i, TTL=5))
                await etcd.put(rpc_pb2.PutRequest(key=b"/t/%d" % i, value=b"v", lease=i))
            clock.advance(6)
            tick = asyncio.ensure_future(etcd.revoke_expired_leases())  # the member's tick
            await asyncio.sleep(0)  # it has taken the due leases and proposed revokes
            revoked_here = await asyncio.wait_for(_revoke_due_leases(etcd, clock, 5), 10)
            assert etcd.lessor.ids() == [], f"returned with {etcd.lessor.ids()} not revoked"
            assert etcd.range(rpc_pb2.RangeRequest(key=b"/t/", range_end=b"/t0")).count == 0
            assert (revoked_here, await tick) == (0, 3), "the tick's revokes, awaited"
        finally:
            await etcd.stop()

    asyncio.run(scenario())
