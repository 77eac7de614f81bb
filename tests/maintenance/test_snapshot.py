"""Snapshots (facts sheet §4.11, §8): ``etcdctl snapshot save`` against the server, the
Maintenance.Snapshot stream it reads, and ``etcdlite snapshot restore`` of the file.

A backup is only worth what its restore gives back: the restored member must serve the
same keys, values, revisions, versions, compaction state and leases, and continue the
revision sequence where the snapshot ended.

The module's source server is seeded once and only read afterwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from etcd_procs import Etcdctl, ServerProc, launch_etcdlite
from maintlib import (
    COMPACTED_ERROR,
    Client,
    Servers,
    etcdlite_cli,
    needs_etcdlite,
    rpc_error,
)

from etcdlite.protos import kv_pb2
from etcdlite.protos import rpc_pb2 as R

CHUNK_BYTES = 32 * 1024
SHA256_BYTES = 32
LEASE_ID = 0x5EED
LEASE_TTL = 3600


@dataclass
class Source:
    """The seeded server and what a restore of its snapshot must give back."""

    client: Client
    revision: int
    compact_revision: int
    kvs: list[kv_pb2.KeyValue]
    hashes: dict[int, int]
    """HashKV hash of every revision after the compaction, and of 0."""


@pytest.fixture(scope="module")
def source(servers: Servers) -> Source:
    """A server with overwritten, deleted, leased and compacted keys, and one value big
    enough that the database spans several snapshot chunks."""
    c = Client(servers.start("source"))
    c.put(b"/s/a", b"1")
    c.put(b"/s/b", b"2")
    c.put(b"/s/a", b"11")
    c.put(b"/s/c", b"3")
    c.kv.DeleteRange(R.DeleteRangeRequest(key=b"/s/c"))
    compact_at = c.put(b"/s/b", b"22")
    c.compact(compact_at, physical=True)
    c.lease.LeaseGrant(R.LeaseGrantRequest(ID=LEASE_ID, TTL=LEASE_TTL))
    c.put(b"/s/leased", b"L", lease=LEASE_ID)
    c.put(b"/s/big", b"B" * (100 * 1024))
    rev = c.put(b"/s/a", b"111")
    kvs = list(c.get(b"\x00", b"\x00").kvs)
    hashes = {r: c.hash_kv(r).hash for r in [0, *range(compact_at + 1, rev + 1)]}
    return Source(c, rev, compact_at, kvs, hashes)


@pytest.fixture
def start_restored(tmp_path: Path) -> Iterator[Callable[[Path], Client]]:
    """Starts etcdlite on a restored data dir; stops it after the test."""
    started: list[ServerProc] = []

    def start(data: Path) -> Client:
        sp = launch_etcdlite(data, tmp_path / f"restored-{len(started)}.log")
        started.append(sp)
        return Client(sp)

    yield start
    for sp in started:
        sp.stop()


def _stream(c: Client) -> list[R.SnapshotResponse]:
    return list(c.maint.Snapshot(R.SnapshotRequest()))


def _stream_to_file(c: Client, path: Path) -> Path:
    """What ``etcdctl snapshot save`` writes: every blob of the stream, in order."""
    path.write_bytes(b"".join(m.blob for m in _stream(c)))
    return path


@pytest.fixture(scope="module")
def saved(source: Source, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot file of the source, saved from the raw stream."""
    return _stream_to_file(source.client, tmp_path_factory.mktemp("snap") / "snap.db")


def _restore(snapshot: Path, data: Path, *flags: str) -> tuple[int, str]:
    res = etcdlite_cli("snapshot", "restore", str(snapshot), "--data-dir", str(data), *flags)
    return res.returncode, res.stdout + res.stderr


def _assert_restored(restored: Client, src: Source) -> None:
    """``restored`` serves exactly the source's store as of its snapshot."""
    got = restored.get(b"\x00", b"\x00")
    assert list(got.kvs) == src.kvs
    assert got.header.revision == src.revision
    assert restored.hash_kv().compact_revision == src.compact_revision
    assert {r: restored.hash_kv(r).hash for r in src.hashes} == src.hashes
    assert rpc_error(lambda: restored.get(b"/s/a", revision=src.compact_revision - 1)) == (
        COMPACTED_ERROR)
    ttl = restored.lease.LeaseTimeToLive(R.LeaseTimeToLiveRequest(ID=LEASE_ID, keys=True))
    assert ttl.grantedTTL == LEASE_TTL
    assert 0 < ttl.TTL <= LEASE_TTL
    assert list(ttl.keys) == [b"/s/leased"]
    assert restored.put(b"/s/new", b"n") == src.revision + 1
    assert restored.get(b"/s/new").kvs[0].create_revision == src.revision + 1


def test_snapshot_stream_chunks_and_checksum(source: Source) -> None:
    """Maintenance.Snapshot sends the database in 32 KiB blobs (the last one may be
    shorter), each with ``remaining_bytes`` = bytes still to come, down to 0; then one
    message whose blob is the SHA-256 of all blobs; no headers (etcd 3.5.1). The image
    is a multiple of 512 bytes, so the saved file's size % 512 == 32."""
    msgs = _stream(source.client)
    assert len(msgs) >= 3, "the 100 KiB value spans several chunks"
    *chunks, last = msgs
    image = b"".join(m.blob for m in chunks)
    assert all(len(m.blob) == CHUNK_BYTES for m in chunks[:-1])
    assert 0 < len(chunks[-1].blob) <= CHUNK_BYTES
    sent = 0
    for m in chunks:
        sent += len(m.blob)
        assert m.remaining_bytes == len(image) - sent
    assert chunks[-1].remaining_bytes == 0
    assert last.remaining_bytes == 0
    assert last.blob == hashlib.sha256(image).digest()
    assert len(image) % 512 == 0
    assert not any(m.HasField("header") for m in msgs)


@pytest.mark.interop
def test_etcdctl_snapshot_save_and_restore(source: Source, etcdctl: Etcdctl, tmp_path: Path,
                                           start_restored: Callable[[Path], Client]) -> None:
    """``etcdctl snapshot save`` (3.4 and 3.5) succeeds and writes image + SHA-256 (size
    % 512 == 32); ``etcdlite snapshot restore`` of that file gives a member with the same
    keys, values, revisions, versions, compaction and lease, whose next write gets the
    next revision."""
    path = tmp_path / "backup.db"
    res = etcdctl.run(source.client.endpoint, "snapshot", "save", str(path))
    assert res.stdout == f"Snapshot saved at {path}\n"
    data = path.read_bytes()
    assert len(data) % 512 == SHA256_BYTES
    assert hashlib.sha256(data[:-SHA256_BYTES]).digest() == data[-SHA256_BYTES:]
    needs_etcdlite()

    target = tmp_path / "restored.etcd"
    rc, out = _restore(path, target)
    assert rc == 0, out
    _assert_restored(start_restored(target), source)


def test_restore_refuses_a_data_dir_holding_a_member(saved: Path, tmp_path: Path) -> None:
    """Restoring into a data dir that already holds a member fails (non-zero exit, the
    directory named in the message) and leaves that member's files alone; an empty
    existing directory is fine (as etcdutl 3.5)."""
    needs_etcdlite()
    target = tmp_path / "t.etcd"
    assert _restore(saved, target)[0] == 0
    db = target / "member" / "db" / "data.mdb"
    before = db.read_bytes()
    rc, out = _restore(saved, target)
    assert rc != 0
    assert str(target) in out
    assert db.read_bytes() == before

    empty = tmp_path / "empty.etcd"
    empty.mkdir()
    assert _restore(saved, empty)[0] == 0


def test_restore_refuses_a_non_empty_data_dir(saved: Path, tmp_path: Path) -> None:
    """A data dir with anything in it (here a stray file, no member) is refused too:
    etcdutl 3.5 says ``data-dir "<dir>" not empty or could not be read`` and exits
    non-zero, so a restore never mixes into a directory in use."""
    needs_etcdlite()
    target = tmp_path / "stray.etcd"
    target.mkdir()
    (target / "notes.txt").write_text("not a member")
    rc, out = _restore(saved, target)
    assert rc != 0, out
    assert str(target) in out


def test_restore_refuses_a_corrupted_snapshot(saved: Path, tmp_path: Path,
                                              start_restored: Callable[[Path], Client],
                                              source: Source) -> None:
    """A snapshot with one flipped byte is refused (non-zero exit, a message about the
    SHA-256 check); the failed attempt does not stand in the way of restoring a good
    file into the same directory."""
    needs_etcdlite()
    bad = bytearray(saved.read_bytes())
    bad[len(bad) // 2] ^= 0xFF
    bad_path = tmp_path / "bad.db"
    bad_path.write_bytes(bytes(bad))
    target = tmp_path / "t.etcd"
    rc, out = _restore(bad_path, target)
    assert rc != 0
    assert "sha256" in out
    rc, out = _restore(saved, target)
    assert rc == 0, out
    _assert_restored(start_restored(target), source)


def test_restore_skip_hash_check(saved: Path, tmp_path: Path,
                                 start_restored: Callable[[Path], Client],
                                 source: Source) -> None:
    """A file without the SHA-256 trailer (a bare database image) is refused with
    etcd's "snapshot missing hash but --skip-hash-check=false" and restored with
    ``--skip-hash-check``; a complete file restores with the flag too."""
    needs_etcdlite()
    bare = tmp_path / "bare.db"
    bare.write_bytes(saved.read_bytes()[:-SHA256_BYTES])
    rc, out = _restore(bare, tmp_path / "refused.etcd")
    assert rc != 0
    assert "snapshot missing hash but --skip-hash-check=false" in out

    target = tmp_path / "bare.etcd"
    rc, out = _restore(bare, target, "--skip-hash-check")
    assert rc == 0, out
    _assert_restored(start_restored(target), source)
    rc, out = _restore(saved, tmp_path / "full.etcd", "--skip-hash-check")
    assert rc == 0, out


def test_restore_of_a_foreign_image_fails_cleanly(saved: Path, tmp_path: Path) -> None:
    """A file whose checksum is right but whose image is not an etcdlite database (a
    snapshot saved from real etcd is a bbolt file) is refused with an error message and
    a non-zero exit, not a Python traceback, and leaves nothing that would block
    restoring a good file into the same directory."""
    needs_etcdlite()
    image = bytes(range(256)) * 48  # 12 KiB, a multiple of 512, not a database
    foreign = tmp_path / "foreign.db"
    foreign.write_bytes(image + hashlib.sha256(image).digest())
    target = tmp_path / "t.etcd"
    rc, out = _restore(foreign, target)
    assert rc != 0
    assert "Traceback" not in out, out
    assert out.startswith("Error:"), out
    rc, out = _restore(saved, target)
    assert rc == 0, out
