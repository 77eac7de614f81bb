"""The LMDB backend: one environment per member, one named database per table.

Tables (LMDB named databases):

* ``key``     revision bytes (see ``revision.encode``) -> serialized ``mvccpb.KeyValue``
* ``meta``    ascii names -> values (consistent index, compaction revisions, term, ids)
* ``lease``, ``auth``, ``members``, ``alarm``: owned by the layers that need them.

Writes happen in batches: ``with backend.batch() as w:`` opens one LMDB write
transaction that every change of the batch shares; it commits (and, unless
``sync=False``, fsyncs) when the block ends and aborts if the block raises. Reads open
short read transactions. The backend is not thread-safe by design: the member's event
loop is its only user, except for ``copy_to``, which another thread may run (LMDB allows
it beside a writer).

Deferred commits (``deferred=True``, how a member runs it under its WAL): a batch's
transaction is not committed when the block ends but stays open, and the next batches
join it, until the owner calls ``commit`` (etcd's backend commits every 100 ms the same
way). Reads on the loop see the open transaction (``read``), so nothing changes for
them; a crash loses only uncommitted batches, which the WAL still holds. Each commit
is synced (unless ``sync=False``), so the file on disk is always a consistent, durable
state, also after a power cut. Work on other threads (``copy_to``) sees only committed
state: the owner commits first.

Table handles change when ``defragment`` swaps in the compacted file: users look them
up with ``db(name)`` each time instead of keeping them.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lmdb

from etcdlite.storage.errors import CorruptStore

TABLES = (b"key", b"meta", b"lease", b"auth", b"members", b"alarm")
DEFAULT_MAP_SIZE = 1 << 36
"""Address space reserved for the database (64 GiB); the file only grows as data does."""

_DEFRAG_DIR = "defrag.tmp"
_I64 = struct.Struct(">q")


def pack_int(value: int) -> bytes:
    """Big-endian signed 64-bit, so meta integers stay readable with any tool."""
    return _I64.pack(value)


def unpack_int(raw: bytes) -> int:
    if len(raw) != _I64.size:
        raise CorruptStore(f"malformed integer in meta table: {raw!r}")
    return _I64.unpack(raw)[0]


class LmdbBackend:
    """A member's LMDB environment under ``path`` (created if missing)."""

    def __init__(self, path: Path, *, sync: bool = True, map_size: int = DEFAULT_MAP_SIZE,
                 deferred: bool = False):
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._sync = sync
        self._deferred = deferred
        self._in_batch = False
        self._map_size = map_size
        self._data_file = str(path / "data.mdb")
        shutil.rmtree(path / _DEFRAG_DIR, ignore_errors=True)  # a defrag a crash cut short
        self._write: lmdb.Transaction | None = None
        self._open()

    def _open(self) -> None:
        try:
            self.env = lmdb.open(
                str(self.path),
                map_size=self._map_size,
                max_dbs=len(TABLES),
                sync=self._sync,
                metasync=self._sync,
                readahead=False,
                max_readers=256,
            )
            self._dbs = {name: self.env.open_db(name) for name in TABLES}
            self._size = self._stat_size()
        except lmdb.Error as exc:
            raise CorruptStore(f"cannot open the database in {self.path}: {exc}") from exc

    def db(self, table: bytes) -> lmdb._Database:
        return self._dbs[table]

    @contextmanager
    def batch(self) -> Iterator[lmdb.Transaction]:
        """One write transaction for a batch of changes (see the module docstring).

        If the block raises, the transaction is aborted: with deferred commits that
        drops the uncommitted batches before it too, so the caller must stop (it does:
        a failed batch is fatal for a member)."""
        if self._in_batch:
            raise AssertionError("nested write batch")
        txn = self._write
        if txn is None:
            txn = self._write = self.env.begin(write=True)
        self._in_batch = True
        try:
            yield txn
        except BaseException:
            self._write = None
            txn.abort()
            raise
        else:
            if not self._deferred:
                self._commit()
        finally:
            self._in_batch = False

    def commit(self) -> bool:
        """Commit (and sync) the batches deferred so far; False if there were none."""
        if self._in_batch:
            raise AssertionError("commit inside a write batch")
        if self._write is None:
            return False
        self._commit()
        return True

    def _commit(self) -> None:
        txn, self._write = self._write, None
        if txn is not None:
            txn.commit()
            self._size = self._stat_size()

    @property
    def in_batch(self) -> bool:
        """Whether a ``batch()`` block is running."""
        return self._in_batch

    @property
    def write_txn(self) -> lmdb.Transaction | None:
        """The open write transaction: a running batch's, or the deferred batches'."""
        return self._write

    def read(self) -> lmdb.Transaction:
        """A read transaction: inside a batch, the batch's own (it sees its writes)."""
        return self._write if self._write is not None else self.env.begin(buffers=False)

    def get_meta(self, name: bytes, txn: lmdb.Transaction | None = None) -> bytes | None:
        if txn is None and self._write is not None:
            txn = self._write
        if txn is None:
            with self.env.begin() as t:
                return t.get(name, db=self._dbs[b"meta"])
        return txn.get(name, db=self._dbs[b"meta"])

    def get_meta_int(self, name: bytes, default: int) -> int:
        raw = self.get_meta(name)
        return default if raw is None else unpack_int(raw)

    def put_meta_int(self, txn: lmdb.Transaction, name: bytes, value: int) -> None:
        txn.put(name, pack_int(value), db=self._dbs[b"meta"])

    def size(self) -> int:
        """Physical size of the data file in bytes (Status ``dbSize``), as of the last
        commit (the file only changes on commits and defragment): the quota check reads
        it on every write without a system call."""
        return self._size

    def _stat_size(self) -> int:
        try:
            return os.stat(self._data_file).st_size
        except OSError:
            return 0

    def size_in_use(self) -> int:
        """Bytes of pages in use (Status ``dbSizeInUse``)."""
        info = self.env.info()
        return (info["last_pgno"] + 1) * self.env.stat()["psize"]

    def copy_to(self, dest: Path) -> None:
        """Write a compacted, consistent copy of the database to ``dest/data.mdb`` (a new
        or empty directory). Runs on its own read transaction: safe from another thread
        while batches commit; the copy shows the state when it began."""
        dest.mkdir(parents=True, exist_ok=True)
        self.env.copy(str(dest), compact=True)

    def defragment(self) -> None:
        """Replace the data file by a compacted copy, so freed pages leave the file
        (``size()`` shrinks). Atomic: a crash leaves either file, never a mix. Every
        table handle changes; deferred batches are committed first."""
        self.commit()
        tmp = self.path / _DEFRAG_DIR
        shutil.rmtree(tmp, ignore_errors=True)
        self.copy_to(tmp)
        _fsync_path(tmp / "data.mdb")
        self.env.close()
        os.replace(tmp / "data.mdb", self.path / "data.mdb")
        _fsync_path(self.path)
        shutil.rmtree(tmp, ignore_errors=True)
        self._open()

    def hash(self) -> int:
        """CRC-32 of every table's name, keys and values, in table and key order (the
        Maintenance.Hash answer: equal on members whose databases hold the same bytes)."""
        self.commit()
        crc = 0
        with self.env.begin(buffers=True) as txn:
            for name in TABLES:
                crc = zlib.crc32(name, crc)
                for k, v in txn.cursor(db=self._dbs[name]):
                    crc = zlib.crc32(v, zlib.crc32(k, crc))
        return crc

    def close(self) -> None:
        """Close without committing deferred batches (``commit`` first for a clean stop:
        after a failure, uncommitted state must not reach the disk)."""
        if self._write is not None:
            self._write.abort()
            self._write = None
        self.env.close()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
