"""``etcdlite snapshot restore``: a new data directory from a Maintenance.Snapshot file.

A snapshot file is what ``etcdctl snapshot save`` writes from our Snapshot stream: the
database image (an LMDB file padded with zeros to a multiple of 512 bytes) followed by
the SHA-256 of that image (32 bytes). Restoring checks the hash, writes the image as
the new member's database and forgets the old cluster: members, alarms, the consistent
index and term, the member and cluster ids. Keys, revisions, compaction state and
leases stay. The first start of the directory then founds a new one-member cluster from
its flags (``--name``, ``--initial-advertise-peer-urls``, ``--initial-cluster-token``),
as etcd's restore does; revisions continue where the snapshot ended.

Example::

    etcdctl --endpoints 127.0.0.1:2379 snapshot save backup.db
    etcdlite snapshot restore backup.db --data-dir restored.etcd
    etcdlite --data-dir restored.etcd     # same keys, values and revisions
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import lmdb

from etcdlite.server.apply import CONSISTENT_INDEX, TERM
from etcdlite.server.membership import CLUSTER_ID, CLUSTER_VERSION, LOCAL_MEMBER_ID
from etcdlite.storage.backend import LmdbBackend
from etcdlite.storage.errors import StorageError

SHA256_BYTES = 32


class RestoreError(Exception):
    """The snapshot file or the target directory cannot be used (message says why)."""


def read_image(path: Path, *, skip_hash_check: bool = False) -> bytes:
    """The database image in a snapshot file, its trailing SHA-256 checked."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RestoreError(f"cannot read snapshot {path}: {exc.strerror}") from exc
    if skip_hash_check:
        if len(data) % 512 == SHA256_BYTES:
            data = data[:-SHA256_BYTES]
        return data
    if len(data) % 512 != SHA256_BYTES:
        raise RestoreError("snapshot missing hash but --skip-hash-check=false")
    image, digest = data[:-SHA256_BYTES], data[-SHA256_BYTES:]
    if hashlib.sha256(image).digest() != digest:
        raise RestoreError("expected sha256 checksum does not match the snapshot data")
    return image


def restore(snapshot: Path, data_dir: Path, *, skip_hash_check: bool = False) -> None:
    """Create ``data_dir`` from ``snapshot`` (the directory must be missing or empty)."""
    image = read_image(snapshot, skip_hash_check=skip_hash_check)
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise RestoreError(f"data-dir {str(data_dir)!r} not empty or could not be read")
    # Prepare beside the target and move it into place only once it opened as an
    # etcdlite database: a failed restore leaves nothing behind.
    staging = data_dir.with_name(data_dir.name + ".restoring")
    shutil.rmtree(staging, ignore_errors=True)
    db_dir = staging / "member" / "db"
    db_dir.mkdir(parents=True)
    try:
        (db_dir / "data.mdb").write_bytes(image)
        _forget_cluster(db_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        os.replace(staging / "member", data_dir / "member")
    except (StorageError, lmdb.Error) as exc:
        raise RestoreError(f"{snapshot} is not an etcdlite snapshot: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _forget_cluster(db_dir: Path) -> None:
    backend = LmdbBackend(db_dir)
    try:
        with backend.batch() as txn:
            for table in (b"members", b"alarm"):
                txn.drop(backend.db(table), delete=False)
            meta = backend.db(b"meta")
            for name in (CONSISTENT_INDEX, TERM, LOCAL_MEMBER_ID, CLUSTER_ID, CLUSTER_VERSION):
                txn.delete(name, db=meta)
    finally:
        backend.close()
