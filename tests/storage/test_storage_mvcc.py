"""Focused MVCC Store tests: write transactions, compaction edges, restore."""

from __future__ import annotations

from pathlib import Path

import pytest

from etcdlite.protos.kv_pb2 import KeyValue
from etcdlite.storage.backend import LmdbBackend
from etcdlite.storage.errors import Compacted, CorruptStore, FutureRevision
from etcdlite.storage.mvcc import FINISHED_COMPACT_REV, SCHEDULED_COMPACT_REV, Store
from etcdlite.storage.revision import Revision, decode, encode

MAP_SIZE = 1 << 26


def kvt(kv: KeyValue) -> tuple[bytes, bytes, int, int, int, int]:
    return (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


class Member:
    """A backend + store at ``path`` that can be restarted."""

    def __init__(self, path: Path):
        self.path = path
        self.backend = LmdbBackend(path, sync=False, map_size=MAP_SIZE)
        self.store = Store(self.backend)

    def restart(self) -> Store:
        self.backend.close()
        self.backend = LmdbBackend(self.path, sync=False, map_size=MAP_SIZE)
        self.store = Store(self.backend)
        return self.store

    def put(self, key: bytes, value: bytes = b"v", lease: int = 0) -> int:
        with self.backend.batch():
            txn = self.store.write()
            txn.put(key, value, lease)
            return txn.end()

    def delete(self, key: bytes, end: bytes | None = None) -> tuple[int, int]:
        with self.backend.batch():
            txn = self.store.write()
            res = txn.delete_range(key, end)
            txn.end()
            return res

    def range(self, key: bytes = b"\x00", end: bytes | None = b"", **kw: int) -> list[tuple]:
        with self.store.read() as view:
            return [kvt(kv) for kv in view.range(key, end, **kw).kvs]

    def compact(self, rev: int, batch_limit: int = 1000) -> None:
        with self.backend.batch():
            job = self.store.compact(rev)
        while not self.store.compact_step(job, batch_limit):
            pass

    def disk(self) -> list[tuple[Revision, bool]]:
        with self.backend.env.begin(db=self.backend.db(b"key")) as txn:
            return [decode(bytes(raw)) for raw, _ in txn.cursor()]

    def close(self) -> None:
        self.backend.close()


@pytest.fixture
def m(tmp_path: Path):
    member = Member(tmp_path / "member")
    yield member
    member.close()


def test_fresh_store(m: Member) -> None:
    s = m.store
    assert (s.current_revision, s.compact_revision, s.finished_compact_revision) == (1, -1, -1)
    assert s.pending_compaction is None
    with s.read() as view:
        assert view.rev == 1
        res = view.range(b"\x00", b"", rev=1)
        assert (res.kvs, res.count, res.rev) == ([], 0, 1)
        with pytest.raises(FutureRevision):
            view.range(b"a", None, rev=2)


def test_module_docstring_example(m: Member) -> None:
    with m.backend.batch():
        txn = m.store.write()
        assert txn.begin_rev == 1
        assert txn.put(b"a", b"1") == 2
        assert txn.put(b"b", b"1") == 2
        assert txn.end() == 2
    assert m.range(b"a", b"") == [(b"a", b"1", 2, 2, 1, 0), (b"b", b"1", 2, 2, 1, 0)]
    assert m.range(b"a", None, rev=1) == []
    assert [r for r, _ in m.disk()] == [Revision(2, 0), Revision(2, 1)]


def test_write_txn_range_sees_its_own_earlier_changes(m: Member) -> None:
    m.put(b"a", b"old")  # rev 2
    m.put(b"c", b"c")  # rev 3
    with m.backend.batch():
        txn = m.store.write()
        res = txn.range(b"a", b"")
        assert (res.rev, res.count) == (3, 2)
        txn.put(b"a", b"new")
        txn.put(b"b", b"b")
        res = txn.range(b"a", b"")
        assert res.rev == 4
        assert [kvt(kv) for kv in res.kvs] == [
            (b"a", b"new", 2, 4, 2, 0),
            (b"b", b"b", 4, 4, 1, 0),
            (b"c", b"c", 3, 3, 1, 0),
        ]
        assert txn.delete_range(b"c", None) == (1, 4)
        assert txn.range(b"c", None).count == 0
        assert txn.range(b"a", b"", count_only=True).count == 2
        # the older revision is still readable inside the txn
        assert [kv.value for kv in txn.range(b"a", b"", rev=3).kvs] == [b"old", b"c"]
        with pytest.raises(FutureRevision):
            txn.range(b"a", None, rev=5)
        assert txn.end() == 4
    assert m.range() == [(b"a", b"new", 2, 4, 2, 0), (b"b", b"b", 4, 4, 1, 0)]


def test_delete_range_with_no_match_returns_begin_rev(m: Member) -> None:
    m.put(b"a")  # rev 2
    with m.backend.batch():
        txn = m.store.write()
        assert txn.delete_range(b"zz", None) == (0, 2)
        assert txn.delete_range(b"b", b"c") == (0, 2)
        assert txn.delete_range(b"c", b"b") == (0, 2)  # key >= end: empty range
        assert txn.changes == []
        assert txn.end() == 2
    assert m.store.current_revision == 2
    assert m.delete(b"nothing") == (0, 2)
    # Once the txn changed something, even an empty delete reports the new revision.
    with m.backend.batch():
        txn = m.store.write()
        txn.put(b"b", b"v")
        assert txn.delete_range(b"zz", None) == (0, 3)
        assert txn.end() == 3
    # Deleting a key twice in one txn: the second finds nothing.
    with m.backend.batch():
        txn = m.store.write()
        assert txn.delete_range(b"a", None) == (1, 4)
        assert txn.delete_range(b"a", None) == (0, 4)
        assert txn.end() == 4
    assert m.range() == [(b"b", b"v", 3, 3, 1, 0)]


def test_delete_range_ends(m: Member) -> None:
    for k in (b"a", b"b", b"b\x00", b"c", b"d"):
        m.put(k)  # revs 2..6
    assert m.delete(b"b", b"c") == (2, 7)  # [b, c)
    assert [kv[0] for kv in m.range()] == [b"a", b"c", b"d"]
    assert m.delete(b"c", b"") == (2, 8)  # every key >= c
    assert [kv[0] for kv in m.range()] == [b"a"]
    assert m.delete(b"a", None) == (1, 9)
    assert m.range() == []
    # the deletions of one txn share a main revision, in key order
    assert [r for r, t in m.disk() if t] == [
        Revision(7, 0),
        Revision(7, 1),
        Revision(8, 0),
        Revision(8, 1),
        Revision(9, 0),
    ]


def test_changes_for_watchers(m: Member) -> None:
    m.put(b"a")
    with m.backend.batch():
        txn = m.store.write()
        txn.put(b"b", b"x", 5)
        txn.delete_range(b"a", None)
        txn.end()
    assert [kvt(kv) for kv in txn.changes] == [
        (b"b", b"x", 3, 3, 1, 5),
        (b"a", b"", 0, 3, 0, 0),  # a delete carries only key and mod_revision
    ]


def test_recreate_restarts_create_revision_and_version(m: Member) -> None:
    m.put(b"k", b"1")  # 2
    m.put(b"k", b"1")  # 3: an identical value still makes a new version
    m.delete(b"k")  # 4
    m.put(b"k", b"2")  # 5
    assert m.range(b"k", None) == [(b"k", b"2", 5, 5, 1, 0)]
    assert m.range(b"k", None, rev=4) == []
    assert m.range(b"k", None, rev=3) == [(b"k", b"1", 2, 3, 2, 0)]
    assert m.range(b"k", None, rev=2) == [(b"k", b"1", 2, 2, 1, 0)]


def test_lease_moves_and_detaches(m: Member) -> None:
    m.put(b"k", b"v", lease=7)
    m.put(b"k", b"v", lease=-3)
    m.put(b"k", b"v")
    assert [kv[5] for rev in (2, 3, 4) for kv in m.range(b"k", None, rev=rev)] == [7, -3, 0]


def test_same_key_twice_in_one_txn(m: Member) -> None:
    with m.backend.batch():
        txn = m.store.write()
        txn.put(b"k", b"1")
        txn.put(b"k", b"2")
        txn.end()
    assert m.range(b"k", None) == [(b"k", b"2", 2, 2, 2, 0)]
    m.compact(2)
    assert m.disk() == [(Revision(2, 1), False)]
    assert m.range(b"k", None) == [(b"k", b"2", 2, 2, 2, 0)]
    m.restart()
    assert m.range(b"k", None) == [(b"k", b"2", 2, 2, 2, 0)]
    m.put(b"k", b"3")
    assert m.range(b"k", None) == [(b"k", b"3", 2, 3, 3, 0)]


def test_put_then_delete_then_put_in_one_txn(m: Member) -> None:
    m.put(b"k", b"0")  # 2
    with m.backend.batch():
        txn = m.store.write()
        txn.put(b"k", b"1")  # 3.0 version 2
        assert txn.delete_range(b"k", None) == (1, 3)  # 3.1 tombstone
        txn.put(b"k", b"2")  # 3.2: a new life
        txn.end()
    assert m.range(b"k", None) == [(b"k", b"2", 3, 3, 1, 0)]
    m.restart()
    assert m.range(b"k", None) == [(b"k", b"2", 3, 3, 1, 0)]
    m.compact(3)
    # the tombstone at exactly the compact revision stays on disk; the put 3.0 goes
    assert m.disk() == [(Revision(3, 1), True), (Revision(3, 2), False)]
    assert m.range(b"k", None) == [(b"k", b"2", 3, 3, 1, 0)]
    m.restart()  # the leftover tombstone closes nothing: 3.2 is still a fresh life
    assert m.range(b"k", None) == [(b"k", b"2", 3, 3, 1, 0)]
    assert m.put(b"k", b"3") == 4
    assert m.range(b"k", None) == [(b"k", b"3", 3, 4, 2, 0)]
    m.compact(4)
    assert m.disk() == [(Revision(4), False)]


def test_range_limit_and_count(m: Member) -> None:
    for k in (b"c", b"a", b"b"):
        m.put(k)
    with m.store.read() as view:
        res = view.range(b"a", b"", limit=2)
        assert ([kv.key for kv in res.kvs], res.count) == ([b"a", b"b"], 3)
        res = view.range(b"a", b"", limit=2, count_only=True)
        assert (res.kvs, res.count) == ([], 3)
        res = view.range(b"b", b"", rev=3, limit=1)
        assert ([kv.key for kv in res.kvs], res.count, res.rev) == ([b"c"], 1, 4)


def test_read_view_is_a_snapshot(m: Member) -> None:
    m.put(b"a", b"1")  # 2
    m.put(b"b", b"1")  # 3
    view = m.store.read()
    try:
        m.put(b"a", b"2")  # 4
        m.delete(b"b")  # 5
        assert view.rev == 3
        assert [kv.value for kv in view.range(b"a", b"").kvs] == [b"1", b"1"]
        with pytest.raises(FutureRevision):
            view.range(b"a", b"", rev=4)
        # compaction after the view opened: the view's own revision stays readable,
        # even once the records are physically gone from newer snapshots
        m.compact(3)
        assert view.compact_revision == 3
        assert [kv.value for kv in view.range(b"a", b"").kvs] == [b"1", b"1"]
        with pytest.raises(Compacted):
            view.range(b"a", b"", rev=2)
    finally:
        view.close()
    view.close()  # closing twice is harmless
    assert m.range() == [(b"a", b"2", 2, 4, 2, 0)]


# -- compaction --------------------------------------------------------------------------


def test_compaction_boundaries_and_refusals(m: Member) -> None:
    for v in (b"1", b"2", b"3"):
        m.put(b"k", v)  # 2, 3, 4
    with m.backend.batch(), pytest.raises(FutureRevision):
        m.store.compact(5)
    m.compact(3)
    assert m.store.compact_revision == 3
    assert m.store.finished_compact_revision == 3
    assert m.store.current_revision == 4  # compaction is not a write
    assert m.range(b"k", None, rev=3) == [(b"k", b"2", 2, 3, 2, 0)]  # == compact rev: readable
    for rev in (1, 2):
        with pytest.raises(Compacted):
            m.range(b"k", None, rev=rev)
    assert m.range(b"k", None, rev=0) == [(b"k", b"3", 2, 4, 3, 0)]
    for rev in (-1, 0, 2, 3):
        with pytest.raises(Compacted), m.backend.batch():
            m.store.compact(rev)
    assert m.backend.get_meta_int(SCHEDULED_COMPACT_REV, 0) == 3
    assert m.backend.get_meta_int(FINISHED_COMPACT_REV, 0) == 3
    assert m.disk() == [(Revision(3), False), (Revision(4), False)]


def test_compaction_outside_a_batch_is_refused(m: Member) -> None:
    with pytest.raises(AssertionError):
        m.store.compact(1)
    with pytest.raises(AssertionError):
        m.store.write()


@pytest.mark.parametrize("batch_limit", [1, 2, 3, 1000])
def test_compaction_deleting_the_last_record(m: Member, batch_limit: int) -> None:
    # This once made compaction delete the newest records of the key table (tombstones
    # at the compact revision), running the LMDB cursor off the end. That cannot happen
    # in an uninterrupted compaction any more: the newest record has the newest main
    # revision, so compacting at or below it keeps it (a put at R always was kept, and
    # a tombstone at exactly R now is too). The cursor path itself is covered by
    # test_compact_step_running_off_the_end_of_the_table.
    m.put(b"a")  # 2
    m.put(b"b")  # 3
    m.delete(b"a", b"")  # 4: tombstones a@4.0, b@4.1 are the last records
    with m.backend.batch():
        job = m.store.compact(4)
    assert job.keep == {Revision(4, 0), Revision(4, 1)}
    steps = 1
    while not m.store.compact_step(job, batch_limit):
        steps += 1
        assert steps <= 5
    assert steps == -(-4 // batch_limit)  # ceil(4 records / batch_limit), no rescans
    assert m.disk() == [(Revision(4, 0), True), (Revision(4, 1), True)]
    assert m.store.pending_compaction is None
    s = m.restart()
    assert (s.current_revision, s.compact_revision, s.pending_compaction) == (4, 4, None)
    assert m.put(b"a") == 5
    assert m.range() == [(b"a", b"v", 5, 5, 1, 0)]
    m.compact(5)  # the tombstones are below 5 now: gone
    assert m.disk() == [(Revision(5), False)]


@pytest.mark.parametrize("batch_limit", [1, 2, 3, 1000])
def test_compact_step_running_off_the_end_of_the_table(m: Member, batch_limit: int) -> None:
    # Regression: when compact_step deletes the newest record of the key table, the LMDB
    # cursor runs off the end; compact_step must finish, not decode b"" (CorruptStore).
    # Store.compact keeps the newest record (see above), but compact_step must terminate
    # for any keep set: clear it by hand to make it delete the table's last records.
    m.put(b"a")  # 2
    m.put(b"b")  # 3
    m.delete(b"a", b"")  # 4: tombstones a@4.0, b@4.1 are the last records
    with m.backend.batch():
        job = m.store.compact(4)
    job.keep.clear()
    steps = 1
    while not m.store.compact_step(job, batch_limit):
        steps += 1
        assert steps <= 5
    assert steps == -(-4 // batch_limit)  # ceil(4 records / batch_limit), no rescans
    assert m.disk() == []
    assert m.store.pending_compaction is None
    s = m.restart()
    assert (s.current_revision, s.compact_revision, s.pending_compaction) == (4, 4, None)
    assert m.put(b"a") == 5
    assert m.range() == [(b"a", b"v", 5, 5, 1, 0)]


def test_compaction_at_a_delete_keeps_its_event(m: Member) -> None:
    # A watch from the compact revision reads history(R, ...): the DELETE at R must
    # still be there (etcd-io/etcd#18274), though reads at R no longer see the key.
    m.put(b"a", b"1")  # 2
    m.put(b"b", b"1")  # 3
    m.delete(b"a")  # 4
    m.compact(4)
    assert m.disk() == [(Revision(3), False), (Revision(4), True)]
    assert m.store.index.key_index(b"a") is None
    assert m.range(rev=4) == [(b"b", b"1", 3, 3, 1, 0)]
    [(main, is_delete, kv)] = m.store.history(4, 4, 1000)
    assert (main, is_delete, kv.key, kv.mod_revision) == (4, True, b"a", 4)
    assert m.put(b"b", b"2") == 5
    m.compact(5)  # above the delete: its tombstone goes from disk
    assert m.disk() == [(Revision(5), False)]
    assert m.store.history(4, 4, 1000) == []


def test_compaction_keeps_newest_live_revision_per_key(m: Member) -> None:
    m.put(b"a", b"1")  # 2
    m.put(b"b", b"1")  # 3
    m.put(b"a", b"2")  # 4
    m.delete(b"b")  # 5
    m.put(b"c", b"1")  # 6
    m.delete(b"c")  # 7
    m.put(b"b", b"2")  # 8
    m.compact(6, batch_limit=1)
    assert m.disk() == [
        (Revision(4), False),  # a: newest <= 6
        (Revision(6), False),  # c: newest <= 6 (deleted only at 7)
        (Revision(7), True),
        (Revision(8), False),
    ]
    assert m.range(rev=6) == [(b"a", b"2", 2, 4, 2, 0), (b"c", b"1", 6, 6, 1, 0)]
    m.compact(8)
    assert m.disk() == [(Revision(4), False), (Revision(8), False)]
    m.restart()
    assert m.range() == [(b"a", b"2", 2, 4, 2, 0), (b"b", b"2", 8, 8, 1, 0)]


def test_new_compaction_while_one_is_pending(m: Member) -> None:
    for k in (b"a", b"a", b"b", b"b", b"c"):
        m.put(k)  # 2..6
    with m.backend.batch():
        job1 = m.store.compact(3)
    assert m.store.compact_step(job1, 1) is False  # deletes a@2 only
    with m.backend.batch():
        job2 = m.store.compact(5)
    assert m.store.pending_compaction is job2
    while not m.store.compact_step(job2, 1):
        pass
    assert m.store.pending_compaction is None
    assert m.disk() == [(Revision(3), False), (Revision(5), False), (Revision(6), False)]
    s = m.restart()
    assert (s.compact_revision, s.finished_compact_revision, s.pending_compaction) == (5, 5, None)


# -- restore -----------------------------------------------------------------------------


def test_restart_restores_index_and_revisions(m: Member) -> None:
    m.put(b"a", b"1", lease=3)  # 2
    m.put(b"b", b"1")  # 3
    m.put(b"a", b"2")  # 4
    m.delete(b"b")  # 5
    before = {rev: m.range(rev=rev) for rev in range(1, 6)}
    s = m.restart()
    assert (s.current_revision, s.compact_revision, s.pending_compaction) == (5, -1, None)
    assert {rev: m.range(rev=rev) for rev in range(1, 6)} == before
    assert m.put(b"b", b"2") == 6
    assert m.range(b"b", None) == [(b"b", b"2", 6, 6, 1, 0)]


def test_restart_resumes_an_unfinished_compaction(m: Member) -> None:
    m.put(b"a", b"1")  # 2
    m.put(b"a", b"2")  # 3
    m.put(b"a", b"3")  # 4
    m.put(b"b", b"1")  # 5
    with m.backend.batch():
        job = m.store.compact(4)
    assert m.store.compact_step(job, 1) is False  # only a@2 deleted
    s = m.restart()
    assert (s.current_revision, s.compact_revision, s.finished_compact_revision) == (5, 4, -1)
    job = s.pending_compaction
    assert job is not None
    assert job.rev == 4
    assert job.keep == {Revision(4)}
    with pytest.raises(Compacted):
        m.range(rev=3)
    # stop again half-way, restart again, then finish
    assert s.compact_step(job, 1) is False
    s = m.restart()
    job = s.pending_compaction
    assert job is not None
    while not s.compact_step(job, 1):
        pass
    assert m.disk() == [(Revision(4), False), (Revision(5), False)]
    assert m.range() == [(b"a", b"3", 2, 4, 3, 0), (b"b", b"1", 5, 5, 1, 0)]
    s = m.restart()
    assert (s.compact_revision, s.finished_compact_revision, s.pending_compaction) == (4, 4, None)
    assert m.put(b"a", b"4") == 6
    assert m.range(b"a", None) == [(b"a", b"4", 2, 6, 4, 0)]


def test_restore_with_a_tombstone_whose_puts_were_compacted(m: Member) -> None:
    m.put(b"a", b"1")  # 2
    m.put(b"b", b"1")  # 3
    m.delete(b"a")  # 4
    with m.backend.batch():
        job = m.store.compact(4)
    assert job.keep == {Revision(3), Revision(4)}  # a's tombstone at exactly 4 stays
    while not m.store.compact_step(job, 1):
        pass
    assert m.disk() == [(Revision(3), False), (Revision(4), True)]
    s = m.restart()
    assert s.index.key_index(b"a") is None  # the tombstone closes nothing
    assert (s.current_revision, s.compact_revision, s.pending_compaction) == (4, 4, None)
    assert m.range() == [(b"b", b"1", 3, 3, 1, 0)]
    assert [(main, d, kv.key) for main, d, kv in s.history(4, 4, 1000)] == [(4, True, b"a")]
    # the key can live again, and a later compaction deletes the leftover tombstone
    assert m.put(b"a", b"2") == 5
    assert m.range(b"a", None) == [(b"a", b"2", 5, 5, 1, 0)]
    m.compact(5)
    assert m.disk() == [(Revision(3), False), (Revision(5), False)]
    s = m.restart()
    assert m.range() == [(b"a", b"2", 5, 5, 1, 0), (b"b", b"1", 3, 3, 1, 0)]


def test_restart_mid_compaction_keeps_the_tombstone_at_the_compact_revision(m: Member) -> None:
    m.put(b"a", b"1")  # 2
    m.put(b"b", b"1")  # 3
    m.delete(b"a")  # 4
    with m.backend.batch():
        job = m.store.compact(4)
    assert job.keep == {Revision(3), Revision(4)}
    assert m.store.compact_step(job, 1) is False  # deletes a@2 only
    assert m.disk() == [(Revision(3), False), (Revision(4), True)]
    s = m.restart()
    job = s.pending_compaction
    assert job is not None
    while not s.compact_step(job, 1):
        pass
    assert m.disk() == [(Revision(3), False), (Revision(4), True)]


def test_restore_tombstone_of_compacted_key_then_recreated(m: Member) -> None:
    # A bare tombstone followed by a new life of the same key, as a half-done
    # compaction can leave them: the new life starts a fresh generation.
    with m.backend.batch() as txn:
        db = m.backend.db(b"key")
        txn.put(encode(Revision(4), tombstone=True), KeyValue(key=b"a").SerializeToString(), db=db)
        kv = KeyValue(key=b"a", value=b"x", create_revision=6, mod_revision=6, version=1)
        txn.put(encode(Revision(6)), kv.SerializeToString(), db=db)
        m.backend.put_meta_int(txn, SCHEDULED_COMPACT_REV, 5)
    s = m.restart()
    assert (s.current_revision, s.compact_revision) == (6, 5)
    assert m.range(rev=5) == []
    assert m.range() == [(b"a", b"x", 6, 6, 1, 0)]
    assert s.pending_compaction is not None
    while not s.compact_step(s.pending_compaction, 1):
        pass
    assert m.disk() == [(Revision(6), False)]


@pytest.mark.parametrize(
    ("raw_key", "raw_value"),
    [
        pytest.param(b"not-a-revision", KeyValue(key=b"a").SerializeToString(), id="bad-key"),
        pytest.param(encode(Revision(2)), b"\xff\xff\xff", id="bad-value"),
    ],
)
def test_corrupt_records_refuse_to_restore(m: Member, raw_key: bytes, raw_value: bytes) -> None:
    with m.backend.batch() as txn:
        txn.put(raw_key, raw_value, db=m.backend.db(b"key"))
    with pytest.raises(CorruptStore):
        m.restart()


def test_index_entry_missing_on_disk_is_corruption(m: Member) -> None:
    m.put(b"a")
    with m.backend.batch() as txn:
        assert txn.delete(encode(Revision(2)), db=m.backend.db(b"key"))
    with pytest.raises(CorruptStore):
        m.range()
