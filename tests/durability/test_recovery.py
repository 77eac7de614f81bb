"""Starting from a data directory after a crash: replay, torn tails, damage, bounded disk.

* The backend commits without fsync (the WAL is the record of truth): when it loses
  its last batches, the WAL entries after its consistent index are applied again.
* A torn last record (a crash in the middle of a write) is cut off with a warning.
* Damage anywhere else refuses the start, naming the file and the offset.
* Snapshots release WAL segments, so the WAL stays bounded under endless writes.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from pathlib import Path

from etcd_procs import ServerProc, etcdlite_cmdline, free_port, launch_etcdlite

from etcdlite.protos.rpc_pb2 import (
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseTimeToLiveRequest,
    PutRequest,
    RangeRequest,
)
from etcdlite.server.config import EtcdConfig
from etcdlite.server.etcd import Etcd
from etcdlite.server.log import Logger


def wal_segments(data: Path) -> list[Path]:
    return sorted((data / "member" / "wal").glob("*.wal"))


def snapshot_of_keys(server: ServerProc) -> tuple[int, list[tuple[bytes, bytes, int, int, int]]]:
    resp = server.stub("KV").Range(RangeRequest(key=b"\0", range_end=b"\0"))
    return resp.header.revision, [
        (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version) for kv in resp.kvs
    ]


def kill(server: ServerProc) -> None:
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    server.stop()


def test_entries_the_backend_lost_are_replayed_from_the_wal(tmp_path: Path):
    data = tmp_path / "m.etcd"
    server = launch_etcdlite(data, tmp_path / "1.log")
    kv = server.stub("KV")
    for i in range(10):
        kv.Put(PutRequest(key=b"early/%d" % i, value=b"%d" % i))
    assert server.stop() == 0
    backup = tmp_path / "db-backup.mdb"
    shutil.copy(data / "member" / "db" / "data.mdb", backup)

    server = launch_etcdlite(data, tmp_path / "2.log")
    kv = server.stub("KV")
    lease = server.stub("Lease").LeaseGrant(LeaseGrantRequest(TTL=600)).ID
    for i in range(10):
        kv.Put(PutRequest(key=b"late/%d" % i, value=b"%d" % i, lease=lease if i == 0 else 0))
    kv.DeleteRange(DeleteRangeRequest(key=b"early/0"))
    kv.Put(PutRequest(key=b"early/1", value=b"changed"))
    before = snapshot_of_keys(server)
    kill(server)
    # The backend loses every batch of the second run, its consistent index included.
    shutil.copy(backup, data / "member" / "db" / "data.mdb")

    server = launch_etcdlite(data, tmp_path / "3.log")
    try:
        after = snapshot_of_keys(server)
        assert after[1] == before[1]
        assert after[0] >= before[0]
        ttl = server.stub("Lease").LeaseTimeToLive(LeaseTimeToLiveRequest(ID=lease, keys=True))
        assert ttl.grantedTTL == 600 and list(ttl.keys) == [b"late/0"]
        assert "replayed WAL entries" in server.log()
        assert server.stub("KV").Put(PutRequest(key=b"next")).header.revision == before[0] + 1
    finally:
        server.stop()


def test_a_torn_tail_is_cut_off_with_a_warning(tmp_path: Path):
    data = tmp_path / "m.etcd"
    server = launch_etcdlite(data, tmp_path / "0.log")
    server.stub("KV").Put(PutRequest(key=b"kept", value=b"1"))
    assert server.stop() == 0
    db = data / "member" / "db" / "data.mdb"
    backup = tmp_path / "db-backup.mdb"
    shutil.copy(db, backup)
    server = launch_etcdlite(data, tmp_path / "1.log")
    server.stub("KV").Put(PutRequest(key=b"torn", value=b"\xff" * 4096))
    kill(server)
    # The machine crashed while the last record was being written: its last KiB never
    # reached the disk (the preallocated file still has zeros there), and the backend
    # lost its unsynced batches, as it would have (the write was never acknowledged).
    shutil.copy(backup, db)
    segment = wal_segments(data)[-1]
    raw = bytearray(segment.read_bytes())
    end = len(raw.rstrip(b"\0"))
    raw[end - 1024:end] = bytes(1024)
    segment.write_bytes(bytes(raw))

    server = launch_etcdlite(data, tmp_path / "2.log")
    try:
        kv = server.stub("KV")
        assert [k.key for k in kv.Range(RangeRequest(key=b"kept")).kvs] == [b"kept"]
        assert kv.Range(RangeRequest(key=b"torn")).count == 0
        assert "torn" in server.log() and segment.name in server.log()
        assert "replayed WAL entries" in server.log()  # the second start's own entries
        kv.Put(PutRequest(key=b"after", value=b"2"))
    finally:
        assert server.stop() == 0
    server = launch_etcdlite(data, tmp_path / "3.log")
    try:
        assert server.stub("KV").Range(RangeRequest(key=b"after")).count == 1
    finally:
        server.stop()


def test_a_damaged_wal_refuses_to_start_naming_file_and_offset(tmp_path: Path):
    data = tmp_path / "m.etcd"
    server = launch_etcdlite(data, tmp_path / "1.log")
    kv = server.stub("KV")
    for i in range(20):
        kv.Put(PutRequest(key=b"k%d" % i, value=b"v" * 100))
    assert server.stop() == 0
    segment = wal_segments(data)[0]
    raw = bytearray(segment.read_bytes())
    raw[300] ^= 0x40  # inside an early record, far from the tail
    segment.write_bytes(bytes(raw))

    port = free_port()
    done = subprocess.run(etcdlite_cmdline(data, port), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert segment.name in done.stderr and "offset" in done.stderr, done.stderr
    assert "ready to serve" not in done.stderr


def test_snapshots_keep_the_wal_bounded_under_sustained_writes(tmp_path: Path):
    segment_bytes = 32 * 1024
    cfg = EtcdConfig(data_dir=tmp_path / "m", snapshot_count=200)
    counts: list[int] = []

    async def scenario() -> None:
        etcd = Etcd(cfg, Logger("error"), wal_segment_bytes=segment_bytes)
        etcd.start()
        await etcd.publish(["http://127.0.0.1:2379"])
        etcd.serving()
        for i in range(3000):
            await etcd.put(PutRequest(key=b"k%d" % (i % 50), value=b"x" * 300))
            if i % 500 == 499:
                counts.append(len(wal_segments(cfg.data_dir)))
        await etcd.stop()

    asyncio.run(scenario())
    # 3000 entries of ~350 bytes would need ~33 segments; a snapshot every 200
    # entries keeps only the segments after the last one (plus the current).
    assert max(counts) <= 5, counts
    assert len(wal_segments(cfg.data_dir)) <= 5

    async def reopen() -> None:
        etcd = Etcd(cfg, Logger("error"), wal_segment_bytes=segment_bytes)
        etcd.start()
        resp = etcd.range(RangeRequest(key=b"k", range_end=b"l"))
        assert resp.count == 50
        assert etcd.store.current_revision == 3001  # 3000 puts on an empty store
        await etcd.stop()

    asyncio.run(reopen())


def test_physical_compaction_reaches_the_disk_without_later_writes(tmp_path: Path, monkeypatch):
    """Compaction batches join the backend's open transaction; the member commits them
    even when no write follows (else they would wait for the next write or a stop)."""
    from etcdlite.protos.rpc_pb2 import CompactionRequest
    from etcdlite.server import node

    monkeypatch.setattr(node, "BACKEND_COMMIT_INTERVAL_S", 0.0)

    async def scenario() -> None:
        etcd = Etcd(EtcdConfig(data_dir=tmp_path / "m"), Logger("error"))
        etcd.start()
        await etcd.publish(["http://127.0.0.1:2379"])
        etcd.serving()
        # Over 2,000 obsolete revisions: the compactor needs several batches, most of
        # them after the commit the Compact request itself scheduled has run.
        for i in range(3000):
            await etcd.put(PutRequest(key=b"k", value=b"%d" % i))
        for _ in range(100):  # drive the loop until the writes' commit has run
            if etcd.backend.write_txn is None:
                break
            await asyncio.sleep(0)
        assert etcd.backend.write_txn is None
        await etcd.compact(CompactionRequest(revision=2990, physical=True))
        for _ in range(100):
            if etcd.backend.write_txn is None:
                break
            await asyncio.sleep(0)
        assert etcd.backend.write_txn is None, "the compaction was never committed"
        await etcd.stop()

    asyncio.run(scenario())


def test_a_wal_of_another_member_refuses_to_start(tmp_path: Path):
    """A WAL directory that is not this member's (another member's ids, or not an
    etcdlite WAL) stops the start with a message, never a traceback."""
    from etcdlite.storage.wal import Wal

    first = launch_etcdlite(tmp_path / "a.etcd", tmp_path / "a.log")
    assert first.stop() == 0
    wal_dir = tmp_path / "b.etcd" / "member" / "wal"
    # It starts where the backend left off (a fresh member applies entries 1-4), so only
    # the metadata is wrong.
    Wal.create(wal_dir, b"not-ours", first_index=5).close()
    shutil.copytree(tmp_path / "a.etcd" / "member" / "db", tmp_path / "b.etcd" / "member" / "db")
    done = subprocess.run(etcdlite_cmdline(tmp_path / "b.etcd", free_port()),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "has metadata of 8 bytes" in done.stderr and "Traceback" not in done.stderr
