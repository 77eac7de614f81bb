"""Defragment (facts sheet §4.11): the database file gives back the space that deleted
and compacted data left free, and the server goes on serving as before.

The tests share one server and use their own keys.
"""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
from etcd_procs import Etcdctl
from maintlib import Client, Servers, needs_etcdlite, prefix_end
from watch_client import WatchClient

from etcdlite.protos import kv_pb2
from etcdlite.protos import rpc_pb2 as R

BIG_KEYS = 150
BIG_VALUE = b"d" * (16 * 1024)
"""150 values of 16 KiB: a few MiB the delete and compaction leave free."""


@pytest.fixture(scope="module")
def srv(servers: Servers) -> Client:
    return Client(servers.start("defrag"))


def _write_and_free(c: Client, prefix: bytes, n: int = BIG_KEYS) -> int:
    """Write ``n`` big keys under ``prefix``, delete them and compact (physically) all
    history away; returns the compaction revision."""
    for i in range(n):
        c.put(prefix + b"big/%04d" % i, BIG_VALUE)
    # The servers commit their backends in batches (etcd and etcdlite every 100 ms);
    # Hash commits first, so the values are in the file before their pages are freed.
    c.hash()
    rev = c.delete_prefix(prefix + b"big/").header.revision
    c.compact(rev, physical=True)
    return rev


def test_defragment_shrinks_the_file_and_keeps_the_data(srv: Client, ns: bytes) -> None:
    """After deleting and compacting a few MiB, Defragment shrinks Status.dbSize (and
    dbSizeInUse stays within it); keys, values, revisions and versions read back
    unchanged, and the store revision does not move."""
    keep = [(ns + b"keep/%d" % i, b"value-%d" % i) for i in range(5)]
    for k, v in keep:
        srv.put(k, v)
    srv.put(keep[0][0], b"second")  # version 2
    before_kvs = list(srv.get_prefix(ns + b"keep/").kvs)
    rev = _write_and_free(srv, ns)

    before = srv.status()
    assert before.dbSize >= BIG_KEYS * len(BIG_VALUE), "the freed pages are still in the file"
    srv.defragment()
    after = srv.status()
    assert after.dbSize < before.dbSize // 2
    assert 0 < after.dbSizeInUse <= after.dbSize
    assert after.header.revision == rev == srv.revision()

    got = srv.get_prefix(ns + b"keep/")
    assert list(got.kvs) == before_kvs
    assert got.kvs[0].version == 2 and got.kvs[0].value == b"second"
    assert srv.get_prefix(ns + b"big/", count_only=True).count == 0


def test_server_keeps_serving_after_defragment(srv: Client, ns: bytes) -> None:
    """A watch opened before Defragment still delivers events after it; puts get the
    next revisions, ranges see them, a new watch replays history from before the
    defragmentation, and HashKV answers."""
    with WatchClient(srv.watch_stub) as w:
        w.created(ns, prefix_end(ns))
        rev = _write_and_free(srv, ns)
        w.events(BIG_KEYS * 2)  # the puts and the deletes
        srv.defragment()

        assert srv.put(ns + b"after", b"1") == rev + 1
        [ev] = w.events(1)
        assert (ev.type, ev.kv.key, ev.kv.value, ev.kv.mod_revision) == (
            kv_pb2.Event.PUT, ns + b"after", b"1", rev + 1)

    assert srv.get(ns + b"after").kvs[0].mod_revision == rev + 1
    with WatchClient(srv.watch_stub) as w:
        w.created(ns + b"after", start_revision=rev)
        [ev] = w.events(1)
        assert ev.kv.mod_revision == rev + 1
    assert srv.put(ns + b"after", b"2") == rev + 2
    assert srv.hash_kv().header.revision == rev + 2
    assert srv.kv.Txn(R.TxnRequest()).header.revision == rev + 2


@pytest.mark.interop
def test_etcdctl_defrag(srv: Client, etcdctl: Etcdctl, ns: bytes) -> None:
    """``etcdctl defrag`` reports success for the endpoint and the file shrinks; the
    data stays readable through etcdctl."""
    ep = srv.endpoint
    srv.put(ns + b"k", b"v")
    _write_and_free(srv, ns)
    before = srv.status().dbSize
    res = etcdctl.run(ep, "defrag")
    assert res.stdout == f"Finished defragmenting etcd member[{ep}]\n"
    assert srv.status().dbSize < before
    assert etcdctl.run(ep, "get", (ns + b"k").decode(), "--print-value-only").stdout == "v\n"


def test_writes_during_defragment_all_land(srv: Client, ns: bytes) -> None:
    """Puts sent while Defragment runs (from other threads) are neither lost nor
    refused: each gets its own revision and all of them read back afterwards."""
    _write_and_free(srv, ns, 20)
    start = srv.revision()
    n = 60

    def writer(i: int) -> int:
        return srv.put(ns + b"during/%03d" % i, b"v")

    with ThreadPoolExecutor(4) as pool:
        puts = [pool.submit(writer, i) for i in range(n)]
        defrags = [pool.submit(srv.defragment) for _ in range(3)]
        revs = sorted(f.result() for f in puts)
        for f in defrags:
            f.result()
    assert revs == list(range(start + 1, start + n + 1))
    assert srv.get_prefix(ns + b"during/", count_only=True).count == n


def test_defragmented_database_survives_a_crash(servers: Servers) -> None:
    """Writes acknowledged before and after a Defragment are all there after a crash
    (SIGKILL) and restart, with the same revisions and history (HashKV)."""
    needs_etcdlite()
    sp = servers.start("defrag-crash")
    c = Client(sp)
    _write_and_free(c, b"/crash/", 20)
    for i in range(10):
        c.put(b"/crash/before/%d" % i, b"v%d" % i)
    c.defragment()
    for i in range(10):
        c.put(b"/crash/after/%d" % i, b"v%d" % i)
    rev = c.revision()
    kvs = list(c.get(b"/crash/", prefix_end(b"/crash/")).kvs)
    hash_kv = c.hash_kv()
    sp.stop(signal.SIGKILL)

    c = Client(servers.start_etcdlite_on(sp.data_dir))
    assert c.revision() == rev
    assert list(c.get(b"/crash/", prefix_end(b"/crash/")).kvs) == kvs
    after = c.hash_kv()
    assert (after.hash, after.compact_revision) == (hash_kv.hash, hash_kv.compact_revision)
    assert c.put(b"/crash/new", b"n") == rev + 1
