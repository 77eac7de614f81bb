"""The pytest plugin (``etcdlite.server.pytest_plugin``), run as a user would: inner
pytest sessions in fresh processes (``pytester.runpytest_subprocess``) that load it
through its ``pytest11`` entry point, with no conftest or option of ours.

Checked: every fixture works; each test's ``etcd`` is clean whatever the previous test
did; lease expiry through ``etcd_clock`` takes no sleeping; servers told to share a port
or a data dir fail with a clear error; ``--etcdlite-keep-data`` keeps and lists the data;
and after the session no thread, descriptor or temporary directory of a server is left.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from etcdlite.protos import rpc_pb2, wire
from etcdlite.server import EtcdServer

pytest_plugins = ["pytester"]

CLIENT = '''
import grpc
import pytest
from etcdlite.protos import rpc_pb2, wire


@pytest.fixture
def stubs(etcd_endpoint):
    with grpc.insecure_channel(etcd_endpoint) as ch:
        yield wire.Stub(ch, "KV"), wire.Stub(ch, "Lease")


def put(kv, key, lease=0):
    return kv.Put(rpc_pb2.PutRequest(key=key, value=b"v", lease=lease)).header.revision


def everything(kv):
    return kv.Range(rpc_pb2.RangeRequest(key=b"\\0", range_end=b"\\0"))
'''


@pytest.fixture
def private_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TMPDIR of the inner session: where its servers' temporary data dirs go (pytester
    puts pytest's own temporary directories elsewhere, with --basetemp)."""
    d = tmp_path / "tmpdir"
    d.mkdir()
    monkeypatch.setenv("TMPDIR", str(d))
    return d


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=300)


def test_fixtures_work_and_each_test_gets_a_clean_server(pytester, private_tmpdir):
    pytester.makepyfile(test_fixtures=CLIENT + '''
pytestmark = pytest.mark.etcdlite(name="from-module", max_txn_ops=5)


def test_1_leaves_a_mess(etcd, stubs):
    kv, lease = stubs
    lid = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=600)).ID
    assert put(kv, b"k", lid) == 2
    put(kv, b"k2")
    kv.Compact(rpc_pb2.CompactionRequest(revision=3))


def test_2_starts_clean(etcd, stubs, etcd_url, etcd_endpoint):
    kv, lease = stubs
    got = everything(kv)
    assert (got.count, got.header.revision) == (0, 1)
    assert list(lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest()).leases) == []
    assert etcd_url == "http://" + etcd_endpoint == etcd.url
    assert etcd_endpoint == f"127.0.0.1:{etcd.port}"


def test_3_session_server_is_shared(etcd_server):
    with grpc.insecure_channel(etcd_server.endpoint) as ch:
        put(wire.Stub(ch, "KV"), b"shared")


def test_4_session_server_is_shared(etcd_server, etcd):
    assert etcd_server.port != etcd.port
    with grpc.insecure_channel(etcd_server.endpoint) as ch:
        assert everything(wire.Stub(ch, "KV")).count == 1


@pytest.mark.etcdlite(max_txn_ops=1)
def test_5_markers_pass_flags(etcd, stubs):
    assert (etcd.config.name, etcd.config.max_txn_ops) == ("from-module", 1)
    op = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"a"))
    with pytest.raises(grpc.RpcError, match="too many operations in txn request"):
        stubs[0].Txn(rpc_pb2.TxnRequest(success=[op, op]))


def test_6_factory_makes_more_servers(etcd, etcd_factory):
    others = [etcd_factory(), etcd_factory(max_txn_ops=9, name="n9")]
    assert len({etcd.port, *(o.port for o in others)}) == 3
    assert others[1].config.max_txn_ops == 9
    assert others[0].config.max_txn_ops == 128, "markers are for `etcd` only"
    assert all(o.running for o in others)


def test_7_no_clock_fixture_no_manual_clock(etcd):
    assert type(etcd.clock).__name__ == "SystemClock"
''')
    result = run(pytester, "-v")
    result.assert_outcomes(passed=7)
    assert list(private_tmpdir.iterdir()) == [], "temporary data dirs are removed"


def test_lease_expiry_through_the_clock_fixture_takes_no_sleep(pytester, private_tmpdir):
    pytester.makepyfile(test_clock=CLIENT + '''
import time


def test_an_hour_long_lease_expires_at_once(etcd, etcd_clock, stubs):
    kv, lease = stubs
    t0 = time.monotonic()
    lid = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=3600)).ID
    put(kv, b"/lock", lid)
    etcd_clock.advance(3599.5)
    assert everything(kv).count == 1
    etcd_clock.advance(1)
    assert everything(kv).count == 0            # revoked before advance returned
    ttl = lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lid))
    assert ttl.TTL == -1
    assert time.monotonic() - t0 < 5            # an hour of lease time, no sleeping


def test_the_clock_is_the_servers(etcd, etcd_clock):
    assert etcd.clock is etcd_clock


@pytest.mark.etcdlite(clock=None)
def test_a_marker_clock_conflicts_clearly(etcd_clock):
    pass
''')
    result = run(pytester)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*etcd_clock: this test's etcd server runs on SystemClock*"])


def test_fighting_over_a_port_or_a_data_dir_is_a_clear_error(pytester, private_tmpdir):
    pytester.makepyfile(test_fights='''
def test_port(etcd, etcd_factory):
    etcd_factory(port=etcd.port)


def test_session_port(etcd_server, etcd_factory):
    etcd_factory(port=etcd_server.port)


def test_data_dir(etcd_factory, tmp_path):
    etcd_factory(data_dir=tmp_path / "d")
    etcd_factory(data_dir=tmp_path / "d")
''')
    result = run(pytester)
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines([
        "*PortInUse: listen tcp 127.0.0.1:*: bind: address already in use (another "
        "EtcdServer, etcdlite fixture or process listens there; port=0 picks a free port)",
    ])
    result.stdout.fnmatch_lines([
        "*DataDirInUse: data dir */d is in use by another running etcd member*",
    ])
    assert "Traceback" not in result.stdout.str().split("short test summary")[-1]
    assert list(private_tmpdir.iterdir()) == []


def test_keep_data_keeps_and_lists_every_servers_directory(pytester, private_tmpdir):
    pytester.makepyfile(test_keep=CLIENT + '''
def test_writes(etcd, stubs, etcd_factory):
    put(stubs[0], b"kept-key")
    etcd_factory()


def test_session(etcd_server):
    pass
''')
    result = run(pytester, "--etcdlite-keep-data")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    section = out.split("etcdlite: kept data directories", 1)[1]
    kept = re.findall(r"^(\S+): (/\S+)$", section, re.M)
    assert [who for who, _ in kept] == [
        "test_keep.py::test_writes", "test_keep.py::test_writes", "session"], out
    paths = [Path(p) for _, p in kept]
    assert all((p / "member").is_dir() for p in paths)
    assert list(private_tmpdir.iterdir()) == [], "nothing in the system temp dir"
    with EtcdServer(data_dir=paths[0]) as s:  # the kept data is a usable etcd data dir
        import grpc

        with grpc.insecure_channel(s.endpoint) as ch:
            got = wire.Stub(ch, "KV").Range(rpc_pb2.RangeRequest(key=b"kept-key"))
            assert got.count == 1

    plain = run(pytester)
    plain.assert_outcomes(passed=2)
    assert "kept data" not in plain.stdout.str()


def test_log_level_option(pytester, private_tmpdir):
    pytester.makepyfile(test_level='''
def test_level(etcd, etcd_server, etcd_factory):
    levels = {etcd.config.log_level, etcd_server.config.log_level,
              etcd_factory().config.log_level}
    assert levels == {"info"}
    assert False, "show the captured log"
''')
    result = run(pytester, "--etcdlite-log-level=info")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ready to serve client requests*"])
    bad = run(pytester, "--etcdlite-log-level=loud")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR


LEAK_CONFTEST = '''
import json
import os
import re
import threading
import time
from pathlib import Path

import grpc
from etcdlite.protos import rpc_pb2, wire
from etcdlite.server import EtcdServer


def snapshot():
    fds = {}
    for n in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{n}")
        except OSError:
            continue
        # pytest's output capture moves its own stdout/stderr/devnull descriptors
        # around during the session: those are not ours to count.
        if target != "/dev/null" and not target.endswith(("/stdout", "/stderr")):
            fds[n] = target
    return {"fds": fds, "os_threads": len(os.listdir("/proc/self/task")),
            # gRPC's poller thread is "Thread-1" or "Thread-2" depending on when the
            # garbage collector freed the warm-up server: compare names without numbers.
            "threads": sorted(re.sub(r"Thread-\\d+", "Thread-N", t.name)
                              for t in threading.enumerate())}


def pytest_configure(config):
    # One server and one client first: gRPC's per-process threads and descriptors
    # (kept for the life of the process once gRPC is used) belong in the baseline.
    with EtcdServer() as s, grpc.insecure_channel(s.endpoint) as ch:
        wire.Stub(ch, "KV").Range(rpc_pb2.RangeRequest(key=b"warm"))
    config.etcdlite_leak_baseline = snapshot()


def pytest_sessionfinish(session):
    # Runs after the session-scoped fixtures are torn down. gRPC's shared event-engine
    # threads end on their own shortly after the last server stops (Python cannot join
    # them): they get a bounded moment; a server's own thread would never end.
    before = session.config.etcdlite_leak_baseline
    after = snapshot()
    deadline = time.monotonic() + 5
    while after["os_threads"] > before["os_threads"] and time.monotonic() < deadline:
        time.sleep(0.01)
        after = snapshot()
    Path("leaks.json").write_text(json.dumps({"before": before, "after": after}))
'''


def test_nothing_leaks_after_the_session(pytester, private_tmpdir):
    pytester.makeconftest(LEAK_CONFTEST)
    pytester.makepyfile(test_busy=CLIENT + '''
import asyncio
from etcdlite.server.clock import ManualClock
from etcdlite.server.embed import AsyncEtcdServer


@pytest.mark.parametrize("n", range(5))
def test_per_test_servers(etcd, stubs, etcd_factory, n):
    kv, lease = stubs
    put(kv, b"k", lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60)).ID)
    for _ in range(n % 3):
        etcd_factory()


def test_clock(etcd_clock, stubs):
    kv, lease = stubs
    put(kv, b"k", lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60)).ID)
    etcd_clock.advance(61)
    assert everything(kv).count == 0


def test_session_server(etcd_server):
    with grpc.insecure_channel(etcd_server.endpoint) as ch:
        put(wire.Stub(ch, "KV"), b"x")


def test_watch_left_open_at_teardown(etcd):
    ch = grpc.insecure_channel(etcd.endpoint)
    watch = wire.Stub(ch, "Watch").Watch(iter([rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(key=b"w"))]))
    assert next(watch).created
    # the server stops under an open stream; the client's channel is the test's to close
    etcd.stop()
    ch.close()


def test_async_server():
    async def scenario():
        async with AsyncEtcdServer(clock=ManualClock()) as s:
            await s.advance(1)
    asyncio.run(scenario())
''')
    result = run(pytester)
    result.assert_outcomes(passed=9)
    leaks = json.loads((pytester.path / "leaks.json").read_text())
    before, after = leaks["before"], leaks["after"]
    assert after["threads"] == before["threads"], "no Python thread of a server is left"
    assert after["os_threads"] == before["os_threads"], "nor a gRPC thread of a server"
    files_before = sorted(t for t in before["fds"].values() if t.startswith("/"))
    files_after = sorted(t for t in after["fds"].values() if t.startswith("/"))
    assert files_after == files_before, "every LMDB file, WAL segment and lock is closed"
    # Sockets and epoll/eventfd descriptors: gRPC's per-process event engine (one epoll,
    # one eventfd, one socketpair) may have been torn down with the last server and
    # built again by a later channel, so one such set may differ. The session started
    # ten servers: a leaked server would leave its listener and its loop's descriptors.
    def kinds(fds: dict[str, str]) -> int:
        return sum(1 for t in fds.values() if not t.startswith("/"))
    assert kinds(after["fds"]) <= kinds(before["fds"]) + 4, (before["fds"], after["fds"])
    assert list(private_tmpdir.iterdir()) == [], "every temporary data dir is removed"
    assert not [p for p in pytester.path.rglob("etcdlite-*") if p.is_dir()]


def test_plugin_is_registered_by_its_entry_point(pytester):
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    out = result.stdout.str()
    for name in ("etcd ", "etcd_server", "etcd_endpoint", "etcd_url", "etcd_clock",
                 "etcd_factory"):
        assert re.search(rf"^{name.strip()} ", out, re.M), name
    assert "etcdlite/server/pytest_plugin.py" in out.replace("\\", "/") or (
        "etcdlite.server.pytest_plugin" in out) or "pytest_plugin.py" in out
