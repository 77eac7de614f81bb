"""Leases through the real etcdctl (3.4 and 3.5 builds): ``lease *``, ``lock``, ``elect``.

Expected texts are what etcdctl prints against a real etcd 3.5.1 (both etcdctl builds print
the same). Every etcdctl call is bounded (``Etcdctl.run``: 60 s; long-running ``lock`` and
``elect`` processes: every wait has a timeout and they are stopped by PID). Nothing sleeps:
the order of lock holders and election leaders is shown by awaiting their output, a watch
on the lock/election prefix and the timestamps the lock holders print.
"""

from __future__ import annotations

import os
import re

import pytest
from leaselib import Proc, Watch, prefix_end

from etcdlite.protos import kv_pb2, rpc_pb2

pytestmark = pytest.mark.interop

PUT = kv_pb2.Event.PUT
DELETE = kv_pb2.Event.DELETE


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
    env["ETCDCTL_API"] = "3"
    env.update(extra)
    return env


def _granted(out: str, ttl: int) -> str:
    m = re.fullmatch(rf"lease ([0-9a-f]{{16}}) granted with TTL\({ttl}s\)\n", out)
    assert m, f"unexpected lease grant output {out!r}"
    return m.group(1)


def test_lease_grant_put_timetolive_keepalive_list_revoke(etcdctl, lease_lite, ns):
    ep = lease_lite.endpoint
    lid = _granted(etcdctl.run(ep, "lease", "grant", "30").stdout, 30)
    k1, k2 = ns.decode() + "a", ns.decode() + "b"
    assert etcdctl.run(ep, "put", f"--lease={lid}", k1, "v1").stdout == "OK\n"
    assert etcdctl.run(ep, "put", f"--lease={lid}", k2, "v2").stdout == "OK\n"

    out = etcdctl.run(ep, "lease", "timetolive", "--keys", lid).stdout
    m = re.fullmatch(
        rf"lease {lid} granted with TTL\(30s\), remaining\((\d+)s\), attached keys\(\[(.*)\]\)\n",
        out)
    assert m, out
    assert m.group(1) == "29", "remaining TTL is truncated: 29 right after granting 30"
    assert sorted(m.group(2).split(" ")) == [k1, k2]  # etcd prints its keys in map order

    out = etcdctl.run(ep, "lease", "timetolive", lid).stdout
    assert out == f"lease {lid} granted with TTL(30s), remaining(29s)\n"

    out = etcdctl.run(ep, "lease", "keep-alive", "--once", lid).stdout
    assert out == f"lease {lid} keepalived with TTL(30)\n"

    lines = etcdctl.run(ep, "lease", "list").stdout.splitlines()
    assert lines[0] == f"found {len(lines) - 1} leases"
    assert lid in lines[1:]

    assert etcdctl.run(ep, "get", k1).stdout == f"{k1}\nv1\n"
    assert etcdctl.run(ep, "lease", "revoke", lid).stdout == f"lease {lid} revoked\n"
    assert etcdctl.run(ep, "get", "--prefix", ns.decode()).stdout == ""
    assert lid not in etcdctl.run(ep, "lease", "list").stdout.splitlines()[1:]

    # A revoked (or unknown) lease: TimeToLive answers TTL -1 -> "already expired", exit 0.
    assert etcdctl.run(ep, "lease", "timetolive", lid).stdout == f"lease {lid} already expired\n"
    out = etcdctl.run(ep, "lease", "timetolive", "--keys", "1234abcd").stdout
    assert out == "lease 000000001234abcd already expired\n"


def test_lease_errors_and_minimum_ttl(etcdctl, lease_lite):
    ep = lease_lite.endpoint
    # Below the minimum TTL (2 s by default): raised to it.
    lid = _granted(etcdctl.run(ep, "lease", "grant", "1").stdout, 2)
    etcdctl.run(ep, "lease", "revoke", lid)

    res = etcdctl.run(ep, "lease", "revoke", "1234abcd", check=False)
    assert res.returncode == 1, res
    assert res.stdout == ""
    assert res.stderr.splitlines()[-1] == (
        "Error: failed to revoke lease (etcdserver: requested lease not found)")

    # keep-alive --once of an unknown lease: the server answers TTL 0, which etcdctl
    # reports as "lease not found".
    res = etcdctl.run(ep, "lease", "keep-alive", "--once", "1234abcd", check=False)
    assert res.returncode == 2, res
    assert res.stderr.splitlines()[-1] == "Error: etcdserver: requested lease not found"

    res = etcdctl.run(ep, "lease", "grant", "9000000001", check=False)
    assert res.returncode != 0
    assert "etcdserver: too large lease TTL" in res.stderr

    res = etcdctl.run(ep, "put", "--lease=1234abcd", "/lease-errors/k", "v", check=False)
    assert res.returncode != 0
    assert res.stderr.splitlines()[-1] == "Error: etcdserver: requested lease not found"


def _lock_line(line: str, what: str) -> tuple[str, int, float]:
    """(lock key, lock revision, unix time) from a line the lock holders print."""
    m = re.fullmatch(rf"{what} (\S+) (\d+) (\d+\.\d+)", line)
    assert m, f"expected {what!r}, got {line!r}"
    return m.group(1), int(m.group(2)), float(m.group(3))


def test_lock_second_contender_waits_for_the_first(etcdctl, lease_lite, ns, tmp_path):
    ep = lease_lite.endpoint
    name = ns.decode() + "lock"
    fifo = tmp_path / "release-a"
    os.mkfifo(fifo)
    stamp = 'echo "$WHO $1 $ETCD_LOCK_KEY $ETCD_LOCK_REV $(date +%s.%N)"'
    # A holds the lock until the test writes to the FIFO; B just takes and leaves it.
    script_a = f'{stamp.replace("$1", "acquired")}; read x < "$RELEASE"; ' \
               f'{stamp.replace("$1", "released")}'
    script_b = stamp.replace("$1", "acquired")
    watch = Watch(lease_lite.stub("Watch"))
    a = b = None
    try:
        prefix = (name + "/").encode()
        watch.created(prefix, prefix_end(prefix))
        a = Proc([etcdctl.binary, "--endpoints", ep, "lock", name, "--", "sh", "-c", script_a],
                 _env(WHO="A", RELEASE=str(fifo)))
        key_a, rev_a, _t = _lock_line(a.wait_lines(1)[0], "A acquired")
        ev = watch.recv().events
        assert [(e.type, e.kv.key.decode()) for e in ev] == [(PUT, key_a)]

        b = Proc([etcdctl.binary, "--endpoints", ep, "lock", name, "--", "sh", "-c", script_b],
                 _env(WHO="B"))
        ev = watch.recv().events  # B's waiter key: B is now queued behind A
        assert len(ev) == 1 and ev[0].type == PUT
        key_b = ev[0].kv.key.decode()
        assert key_b != key_a and ev[0].kv.create_revision > rev_a
        assert b.snapshot() == [], "B acquired the lock while A held it"

        # Release A: A's key goes, then B gets the lock.
        fd = os.open(fifo, os.O_RDWR)  # never blocks; A reads the buffered line
        try:
            os.write(fd, b"go\n")
            _k, _r, t_released = _lock_line(a.wait_lines(2)[1], "A released")
            assert a.wait() == 0, a.stderr
        finally:
            os.close(fd)
        got_b, rev_b, t_acquired_b = _lock_line(b.wait_lines(1)[0], "B acquired")
        assert b.wait() == 0, b.stderr
        assert got_b == key_b
        assert rev_b > rev_a
        assert t_acquired_b >= t_released, "B acquired before A released"
        # Order of the key events: A's key deleted before B's key is deleted.
        deletes = []
        while len(deletes) < 2:
            deletes += [e.kv.key.decode() for e in watch.recv().events if e.type == DELETE]
        assert deletes == [key_a, key_b]
    finally:
        for p in (a, b):
            if p is not None:
                p.stop()
        watch.close()
    left = lease_lite.stub("KV").Range(
        rpc_pb2.RangeRequest(key=prefix, range_end=prefix_end(prefix)), timeout=10)
    assert left.count == 0


def test_elect_leadership_passes_in_order(etcdctl, lease_lite, ns):
    ep = lease_lite.endpoint
    name = ns.decode() + "election"
    prefix = (name + "/").encode()
    base = [etcdctl.binary, "--endpoints", ep, "elect"]
    watch = Watch(lease_lite.stub("Watch"))
    procs: list[Proc] = []
    try:
        watch.created(prefix, prefix_end(prefix))
        first = Proc([*base, name, "one"], _env())
        procs.append(first)
        key1, value1 = first.wait_lines(2)
        assert (key1.startswith(name + "/"), value1) == (True, "one")
        assert [e.kv.key.decode() for e in watch.recv().events] == [key1]

        observer = Proc([*base, "-l", name], _env())
        procs.append(observer)
        assert observer.wait_lines(2) == [key1, "one"]

        second = Proc([*base, name, "two"], _env())
        procs.append(second)
        ev = watch.recv().events  # the second candidate's key: it waits behind the first
        assert len(ev) == 1 and ev[0].type == PUT and ev[0].kv.value == b"two"
        key2 = ev[0].kv.key.decode()
        assert key2 != key1
        assert second.snapshot() == [], "the second candidate won while the first led"
        assert observer.snapshot() == [key1, "one"]

        # The first leader ends (SIGINT: etcdctl closes its session, revoking its lease).
        first.interrupt()
        first.wait()
        ev = watch.recv().events
        assert [(e.type, e.kv.key.decode()) for e in ev] == [(DELETE, key1)]
        assert second.wait_lines(2) == [key2, "two"]
        assert observer.wait_lines(4) == [key1, "one", key2, "two"]
    finally:
        for p in procs:
            p.stop()
        watch.close()


def test_lease_keep_alive_until_revoked(etcdctl, lease_lite):
    """``lease keep-alive`` renews every TTL/3 and stops once the lease is revoked."""
    ep = lease_lite.endpoint
    lid = _granted(etcdctl.run(ep, "lease", "grant", "3").stdout, 3)
    p = Proc([etcdctl.binary, "--endpoints", ep, "lease", "keep-alive", lid], _env())
    try:
        lines = p.wait_lines(2, timeout=10)  # the first renewal, then one ~1 s later
        assert lines[:2] == [f"lease {lid} keepalived with TTL(3)"] * 2
        etcdctl.run(ep, "lease", "revoke", lid)
        assert p.wait(timeout=10) == 0, p.stderr
        assert p.lines[-1] == f"lease {lid} expired or revoked."
        assert set(p.lines[:-1]) == {f"lease {lid} keepalived with TTL(3)"}
    finally:
        p.stop()
