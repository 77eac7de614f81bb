"""The MVCC store: every version of every key, addressable by revision.

The store keeps the in-memory ``TreeIndex`` and the LMDB ``key`` table in step:
every change writes ``revision bytes -> KeyValue`` to LMDB and records the revision in
the index, inside the write transaction of the backend batch the caller opened.

Revisions: an empty store is at revision 1. Each write transaction that changes
anything takes exactly one main revision (``begin + 1``); its changes get sub revisions
0, 1, 2 ... in execution order. A transaction that changes nothing leaves the revision
alone. ``compact_revision`` is -1 until the first compaction.

Worked example::

    with backend.batch():
        txn = store.write()           # begin revision 1
        txn.put(b"a", b"1")           # a@2.0: created 2, version 1
        txn.put(b"b", b"1")           # b@2.1
        txn.end()                     # store now at revision 2
    with store.read() as view:
        view.range(b"a", b"").kvs     # [a, b]  (end b"" means every key >= b"a")
        view.range(b"a", None, rev=1) # nothing: revision 1 predates both keys

Compaction at R is logical at once (the index forgets history older than R and reads
below R fail with Compacted) and physical later, in bounded batches
(``compact_step``), deleting from LMDB every revision <= R the index no longer needs.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import lmdb
from google.protobuf.message import DecodeError

from etcdlite.protos.kv_pb2 import KeyValue
from etcdlite.storage.backend import LmdbBackend
from etcdlite.storage.errors import Compacted, CorruptStore, FutureRevision, RevisionNotFound
from etcdlite.storage.index import TreeIndex
from etcdlite.storage.revision import Revision, decode, encode, encode_main

SCHEDULED_COMPACT_REV = b"scheduledCompactRev"
FINISHED_COMPACT_REV = b"finishedCompactRev"


@dataclass(slots=True)
class RangeResult:
    """What a range read returns: ``kvs`` up to the limit, ``count`` of all matches
    (before the limit), and ``rev``, the revision of the view that answered."""

    kvs: list[KeyValue]
    count: int
    rev: int


@dataclass(slots=True)
class CompactionJob:
    """Physical deletion still owed for a compaction at ``rev``.

    ``keep`` holds the revisions <= rev that stay visible; ``cursor`` is the backend
    key from which the next batch resumes.
    """

    rev: int
    keep: set[Revision]
    cursor: bytes = field(default=encode_main(0))


class ReadView:
    """A consistent view of the store at revision ``rev`` (see ``Store.read``)."""

    __slots__ = ("_db", "_owns_txn", "_rev", "_store", "_txn")

    def __init__(self, store: Store, txn: lmdb.Transaction, rev: int, owns_txn: bool):
        self._store = store
        self._txn = txn
        self._db = store.backend.db(b"key")
        self._owns_txn = owns_txn
        self._rev = rev

    @property
    def rev(self) -> int:
        """The revision this view reads at (and reports as the header revision)."""
        return self._rev

    def __enter__(self) -> ReadView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_txn:
            self._txn.abort()
            self._owns_txn = False

    @property
    def compact_revision(self) -> int:
        return self._store.compact_revision

    def _resolve(self, rev: int) -> int:
        cur = self.rev
        if rev > cur:
            raise FutureRevision(rev)
        if rev <= 0:
            rev = cur
        if rev < self._store.compact_revision:
            raise Compacted(rev)
        return rev

    def range(
        self,
        key: bytes,
        end: bytes | None,
        *,
        rev: int = 0,
        limit: int = 0,
        count_only: bool = False,
    ) -> RangeResult:
        """Keys of the range as of ``rev`` (<= 0: this view's revision).

        ``end`` follows TreeIndex: None = the single key, b"" = every key >= ``key``.
        Raises FutureRevision / Compacted for a revision outside the readable window.
        """
        at = self._resolve(rev)
        index = self._store.index
        if count_only:
            return RangeResult([], index.count(key, end, at), self.rev)
        visible, total = index.revisions(key, end, at, limit)
        get = self._txn.get
        db = self._db
        kvs = []
        for k, mod, _created, _ver in visible:
            raw = get(encode(mod), db=db)
            if raw is None:
                raise CorruptStore(f"key {k!r}: revision {mod} is in the index but not on disk")
            kvs.append(KeyValue.FromString(raw))
        return RangeResult(kvs, total, self.rev)


class WriteTxn(ReadView):
    """One write transaction: all its changes share main revision ``begin_rev + 1``.

    Reads through it see its own earlier changes. Call ``end`` to publish the new
    revision; ``changes`` lists the KeyValues written (deletes carry only ``key`` and
    ``mod_revision``) for whoever turns them into watch events.
    """

    __slots__ = ("begin_rev", "changes")

    def __init__(self, store: Store, txn: lmdb.Transaction):
        super().__init__(store, txn, store.current_revision, owns_txn=False)
        self.begin_rev = store.current_revision
        self.changes: list[KeyValue] = []

    @property
    def rev(self) -> int:
        """``begin_rev + 1`` once the transaction has changed something, else ``begin_rev``."""
        return self.begin_rev + 1 if self.changes else self.begin_rev

    def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """Write a new version of ``key``; returns the revision of the change."""
        main = self.begin_rev + 1
        created, version = main, 1
        ki = self._store.index.key_index(key)
        if ki is not None:
            try:
                _mod, created, version = ki.get(main)
                version += 1
            except RevisionNotFound:
                created, version = main, 1
        rev = Revision(main, len(self.changes))
        kv = KeyValue(
            key=key,
            value=value,
            create_revision=created,
            mod_revision=main,
            version=version,
            lease=lease,
        )
        self._txn.put(encode(rev), kv.SerializeToString(), db=self._db)
        self._store.index.put(key, rev)
        self.changes.append(kv)
        return main

    def delete_range(self, key: bytes, end: bytes | None) -> tuple[int, int]:
        """Delete every key of the range live now; returns ``(deleted, revision)``."""
        visible, _total = self._store.index.revisions(key, end, self.rev)
        main = self.begin_rev + 1
        index = self._store.index
        for k, _mod, _created, _ver in visible:
            rev = Revision(main, len(self.changes))
            self._txn.put(encode(rev, tombstone=True), KeyValue(key=k).SerializeToString(),
                          db=self._db)
            index.tombstone(k, rev)
            self.changes.append(KeyValue(key=k, mod_revision=main))
        if visible or self.changes:
            return len(visible), main
        return 0, self.begin_rev

    def end(self) -> int:
        """Publish the transaction; returns the store revision after it."""
        if self.changes:
            self._store.current_revision = self.begin_rev + 1
        return self._store.current_revision


class Store:
    """The MVCC key-value store of one member (see the module docstring)."""

    def __init__(self, backend: LmdbBackend):
        self.backend = backend
        self.index = TreeIndex()
        self.current_revision = 1
        self.compact_revision = -1
        self.finished_compact_revision = -1
        self.pending_compaction: CompactionJob | None = None
        self._restored_leases: dict[bytes, int] = {}
        self._restore()

    def take_lease_attachments(self) -> dict[bytes, int]:
        """``key -> lease id`` of every live key attached to a lease, as restored from
        the backend (once: the lessor keeps attachments from then on)."""
        out, self._restored_leases = self._restored_leases, {}
        return out

    # -- reads and writes -------------------------------------------------------------

    def read(self) -> ReadView:
        """A view at the current revision; use it as a context manager."""
        txn = self.backend.read()
        owns = txn is not self.backend.write_txn
        return ReadView(self, txn, self.current_revision, owns_txn=owns)

    def write(self) -> WriteTxn:
        """A write transaction; the caller must hold an open ``backend.batch()``."""
        txn = self.backend.write_txn
        if txn is None or not self.backend.in_batch:
            raise AssertionError("Store.write() outside a backend batch")
        return WriteTxn(self, txn)

    # -- history --------------------------------------------------------------------

    def history(self, start: int, end: int, limit: int) -> list[tuple[int, bool, KeyValue]]:
        """Changes of main revisions ``start``..``end`` (inclusive), oldest first, as
        ``(main revision, is_delete, KeyValue)``; deletes carry ``key`` and ``mod_revision``.

        Reads at least every change of ``start`` and stops at a main-revision boundary
        once ``limit`` changes are read, so a revision is never split between calls.
        Revisions below the compact revision may be partly gone: callers check first.
        """
        out: list[tuple[int, bool, KeyValue]] = []
        if start > end:
            return out
        db = self.backend.db(b"key")
        stop = encode_main(end + 1)
        txn = self.backend.read()
        try:
            cursor = txn.cursor(db=db)
            more = cursor.set_range(encode_main(start))
            while more:
                raw = cursor.key()
                if raw >= stop:
                    break
                rev, tombstone = decode(raw)
                if len(out) >= limit and rev.main != out[-1][0]:
                    break
                kv = KeyValue.FromString(cursor.value())
                if tombstone:
                    kv = KeyValue(key=kv.key, mod_revision=rev.main)
                out.append((rev.main, tombstone, kv))
                more = cursor.next()
        finally:
            if txn is not self.backend.write_txn:
                txn.abort()
        return out

    def hash_kv(self, rev: int) -> tuple[int, int]:
        """``(crc, rev)``: CRC-32 of every stored change with main revision <= ``rev``
        (0: the current revision), and the revision hashed.

        Raises Compacted at or below the compact revision (as etcd's HashByRev) and
        FutureRevision beyond the current one. The caller waits until physical
        compaction has finished, so the hash depends only on the history: members that
        applied the same entries agree, and it stays the same while nothing is written.
        """
        if rev == 0:
            rev = self.current_revision
        elif rev <= self.compact_revision:  # etcd refuses the compact revision itself too
            raise Compacted(rev)
        if rev > self.current_revision:
            raise FutureRevision(rev)
        crc = zlib.crc32(b"key")
        stop = encode_main(rev + 1)
        txn = self.backend.read()
        try:
            for k, v in txn.cursor(db=self.backend.db(b"key")):
                if k >= stop:
                    break
                crc = zlib.crc32(v, zlib.crc32(k, crc))
        finally:
            if txn is not self.backend.write_txn:
                txn.abort()
        return crc, rev

    # -- compaction -------------------------------------------------------------------

    def compact(self, rev: int) -> CompactionJob:
        """Logical compaction at ``rev`` inside the caller's batch.

        Raises Compacted when ``rev`` <= the compact revision and FutureRevision when it
        is beyond the current one. The returned job is the physical work still owed.
        """
        txn = self.backend.write_txn
        if txn is None or not self.backend.in_batch:
            raise AssertionError("Store.compact() outside a backend batch")
        if rev <= self.compact_revision:
            raise Compacted(rev)
        if rev > self.current_revision:
            raise FutureRevision(rev)
        self.backend.put_meta_int(txn, SCHEDULED_COMPACT_REV, rev)
        self.compact_revision = rev
        job = CompactionJob(rev, self.index.compact(rev))
        self.pending_compaction = job
        return job

    def compact_step(self, job: CompactionJob, batch_limit: int = 1000) -> bool:
        """Delete up to ``batch_limit`` obsolete revisions of ``job`` in one batch.

        Returns True once the job is finished (and recorded as such in meta).
        """
        db = self.backend.db(b"key")
        end = encode_main(job.rev + 1)
        with self.backend.batch() as txn:
            cursor = txn.cursor(db=db)
            more = cursor.set_range(job.cursor)
            scanned = 0
            while more and scanned < batch_limit:
                raw = cursor.key()
                if raw >= end:
                    more = False
                    break
                rev, _tombstone = decode(raw)
                scanned += 1
                # delete() moves to the next record; past the last one it still returns
                # True but leaves the cursor unpositioned (key() == b""): the end.
                more = cursor.next() if rev in job.keep else cursor.delete() and cursor.key() != b""
            if more:
                job.cursor = cursor.key()
                if job.cursor < end:
                    return False
            self.backend.put_meta_int(txn, FINISHED_COMPACT_REV, job.rev)
        self.finished_compact_revision = job.rev
        if self.pending_compaction is job:
            self.pending_compaction = None
        return True

    # -- restore ----------------------------------------------------------------------

    def _restore(self) -> None:
        """Rebuild the index and revisions from the backend (see the module docstring)."""
        backend = self.backend
        scheduled = backend.get_meta_int(SCHEDULED_COMPACT_REV, -1)
        finished = backend.get_meta_int(FINISHED_COMPACT_REV, -1)
        last_main = 1
        with backend.env.begin(db=backend.db(b"key"), buffers=False) as txn:
            cursor = txn.cursor()
            tombstones_at_scheduled = self._restore_index(cursor.iternext(), scheduled)
            if cursor.last():
                last_main = decode(cursor.key())[0].main
        self.compact_revision = scheduled
        self.finished_compact_revision = finished
        self.current_revision = max(last_main, scheduled, 1)
        if scheduled > finished:
            # The member stopped before the physical compaction was done: redo it. The
            # index may no longer know a tombstone AT the compact revision (its puts are
            # gone already), so keep those explicitly: they are that revision's DELETEs.
            keep = self.index.compact(scheduled) | tombstones_at_scheduled
            self.pending_compaction = CompactionJob(scheduled, keep)

    def _restore_index(
        self, records: Iterable[tuple[bytes, bytes]], scheduled: int
    ) -> set[Revision]:
        """Rebuild the index; returns the tombstones at main revision ``scheduled``."""
        index = self.index
        leases = self._restored_leases
        tombstones_at_scheduled: set[Revision] = set()
        for raw_rev, raw_kv in records:
            rev, tombstone = decode(raw_rev)
            try:
                kv = KeyValue.FromString(raw_kv)
            except DecodeError as exc:
                raise CorruptStore(f"revision {rev}: undecodable key-value record") from exc
            key = kv.key
            if tombstone:
                if rev.main == scheduled:
                    tombstones_at_scheduled.add(rev)
                ki = index.key_index(key)
                # A tombstone whose puts were already compacted away closes nothing.
                if ki is not None and ki.generations[-1].revs:
                    index.tombstone(key, rev)
                leases.pop(key, None)
            else:
                index.restore(key, kv.create_revision, rev, kv.version)
                if kv.lease:
                    leases[key] = kv.lease
                elif leases:
                    leases.pop(key, None)
        return tombstones_at_scheduled
