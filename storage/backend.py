"""The LMDB backend: one environment per member, one named database per table.

Tables (LMDB named databases):

* ``key``     revision bytes (see ``revision.encode``) -> serialized ``mvccpb.KeyValue``
* ``meta``    ascii names -> values (consistent index, compaction revisions, term, ids)
* ``lease``, ``auth``, ``members``, ``alarm``: owned by the layers that need them.

Writes happen in batches: ``with backend.batch() as w:`` opens one LMDB write
transaction that every change of the batch shares; it commits (and, unless
``sync=False``, fsyncs) when the block ends and aborts if the block raises. Reads open
short read transactions. The backend is not thread-safe by design: the member's event
loop is its only user; blocking copies run on a snapshot read transaction.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lmdb

from etcdlite.storage.errors import CorruptStore

TABLES = (b"key", b"meta", b"lease", b"auth", b"members", b"alarm")
DEFAULT_MAP_SIZE = 1 << 36
"""Address space reserved for the database (64 GiB); the file only grows as data does."""

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

    def __init__(self, path: Path, *, sync: bool = True, map_size: int = DEFAULT_MAP_SIZE):
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self.env = lmdb.open(
                str(path),
                map_size=map_size,
                max_dbs=len(TABLES),
                sync=sync,
                metasync=sync,
                readahead=False,
                max_readers=256,
            )
            self._dbs = {name: self.env.open_db(name) for name in TABLES}
        except lmdb.Error as exc:
            raise CorruptStore(f"cannot open the database in {path}: {exc}") from exc
        self._write: lmdb.Transaction | None = None

    def db(self, table: bytes) -> lmdb._Database:
        return self._dbs[table]

    @contextmanager
    def batch(self) -> Iterator[lmdb.Transaction]:
        """One write transaction for a batch of changes (see the module docstring)."""
        if self._write is not None:
            raise AssertionError("nested write batch")
        txn = self.env.begin(write=True)
        self._write = txn
        try:
            yield txn
        except BaseException:
            txn.abort()
            raise
        else:
            txn.commit()
        finally:
            self._write = None

    @property
    def write_txn(self) -> lmdb.Transaction | None:
        """The open write transaction, if a batch is in progress."""
        return self._write

    def read(self) -> lmdb.Transaction:
        """A read transaction: inside a batch, the batch's own (it sees its writes)."""
        return self._write if self._write is not None else self.env.begin(buffers=False)

    def get_meta(self, name: bytes, txn: lmdb.Transaction | None = None) -> bytes | None:
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
        """Physical size of the data file in bytes (Status ``dbSize``)."""
        try:
            return os.stat(self.path / "data.mdb").st_size
        except OSError:
            return 0

    def size_in_use(self) -> int:
        """Bytes of pages in use (Status ``dbSizeInUse``)."""
        info = self.env.info()
        return (info["last_pgno"] + 1) * self.env.stat()["psize"]

    def close(self) -> None:
        self.env.close()
