"""RaftLog (durable part plus unstable tail) and MemoryStorage."""

from __future__ import annotations

import pytest

from etcdlite.raft import (
    Compacted,
    ConfState,
    Entry,
    MemoryStorage,
    RaftInvariantError,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDate,
    Unavailable,
)
from etcdlite.raft.log import RaftLog
from etcdlite.raft.storage import ENTRY_OVERHEAD_BYTES


def ents(*terms: int, start: int = 1) -> list[Entry]:
    return [Entry(t, start + i, data=b"d%d" % (start + i)) for i, t in enumerate(terms)]


def storage_with(*terms: int) -> MemoryStorage:
    st = MemoryStorage()
    st.append(ents(*terms))
    return st


# -- MemoryStorage ---------------------------------------------------------------------


def test_storage_bounds_and_terms() -> None:
    st = storage_with(1, 1, 2)
    assert (st.first_index(), st.last_index()) == (1, 3)
    assert st.term(0) == 0 and st.term(3) == 2
    with pytest.raises(Unavailable):
        st.term(4)
    assert [e.index for e in st.entries(2, 4)] == [2, 3]
    with pytest.raises(Unavailable):
        st.entries(2, 5)


def test_storage_append_truncates_conflicting_suffix() -> None:
    st = storage_with(1, 1, 1)
    st.append([Entry(2, 2)])
    assert [(e.index, e.term) for e in st.entries(1, 3)] == [(1, 1), (2, 2)]
    with pytest.raises(RaftInvariantError):
        st.append([Entry(2, 5)])  # a gap


def test_storage_snapshot_and_compact() -> None:
    st = storage_with(1, 1, 2, 2)
    snap = st.create_snapshot(3, ConfState((1, 2, 3)), b"state")
    assert snap.metadata == SnapshotMetadata(3, 2, ConfState((1, 2, 3)))
    st.compact(3)
    assert (st.first_index(), st.last_index()) == (4, 4)
    assert st.term(3) == 2
    with pytest.raises(Compacted):
        st.term(2)
    with pytest.raises(Compacted):
        st.entries(3, 4)
    with pytest.raises(Compacted):
        st.compact(2)
    with pytest.raises(SnapshotOutOfDate):
        st.create_snapshot(2, ConfState(), b"")
    st.append(ents(2, 2, start=2))  # entries at or below the snapshot are skipped
    assert (st.first_index(), st.last_index()) == (4, 4)


def test_storage_apply_snapshot_replaces_everything() -> None:
    st = storage_with(1, 1)
    snap = Snapshot(b"s", SnapshotMetadata(10, 3, ConfState((1,))))
    st.apply_snapshot(snap)
    assert (st.first_index(), st.last_index(), st.term(10)) == (11, 10, 3)
    assert st.initial_state()[1] == ConfState((1,))
    with pytest.raises(SnapshotOutOfDate):
        st.apply_snapshot(snap)


def test_storage_entries_size_limit_keeps_at_least_one() -> None:
    st = storage_with(1, 1, 1)
    one = len(b"d1") + ENTRY_OVERHEAD_BYTES
    assert len(st.entries(1, 4, max_size=1)) == 1
    assert len(st.entries(1, 4, max_size=2 * one)) == 2
    assert len(st.entries(1, 4, max_size=None)) == 3


# -- RaftLog ---------------------------------------------------------------------------


def test_log_combines_storage_and_unstable() -> None:
    log = RaftLog(storage_with(1, 1))
    assert log.append(ents(2, 2, start=3)) == 4
    assert [e.index for e in log.unstable_entries()] == [3, 4]
    assert [e.term for e in log.slice(1, 5)] == [1, 1, 2, 2]
    assert log.last_term() == 2
    log.stable_to(4, 2)
    assert log.unstable_entries() == []


def test_stable_to_ignores_replaced_entries() -> None:
    log = RaftLog(storage_with(1))
    log.append(ents(1, 1, start=2))
    log.append([Entry(2, 3)])  # replaces index 3 before the first batch was persisted
    log.stable_to(3, 1)
    assert [e.index for e in log.unstable_entries()] == [2, 3]


def test_maybe_append_rules() -> None:
    log = RaftLog(storage_with(1, 2, 2))
    assert log.maybe_append(3, 1, 0, []) is None  # previous entry does not match
    assert log.maybe_append(3, 2, 2, []) == 3
    assert log.committed == 2
    # Matching entries are kept; the conflict at 3 and everything after it is replaced.
    assert log.maybe_append(1, 1, 3, ents(2, 3, start=2)) == 3
    assert [e.term for e in log.all_entries()] == [1, 2, 3]
    assert log.committed == 3
    with pytest.raises(RaftInvariantError):
        log.maybe_append(1, 1, 3, [Entry(9, 2)])  # would overwrite a committed entry


def test_find_conflict_by_term() -> None:
    log = RaftLog(storage_with(1, 1, 4, 4, 5, 5))
    assert log.find_conflict_by_term(6, 5) == (6, 5)
    assert log.find_conflict_by_term(6, 4) == (4, 4)
    assert log.find_conflict_by_term(6, 2) == (2, 1)
    assert log.find_conflict_by_term(6, 0) == (0, 0)


def test_is_up_to_date() -> None:
    log = RaftLog(storage_with(1, 2, 2))
    assert log.is_up_to_date(3, 2)
    assert log.is_up_to_date(1, 3)
    assert not log.is_up_to_date(2, 2)
    assert not log.is_up_to_date(9, 1)


def test_commit_and_apply_invariants() -> None:
    log = RaftLog(storage_with(1, 1, 1))
    log.commit_to(2)
    log.commit_to(1)  # never lowers
    assert log.committed == 2
    with pytest.raises(RaftInvariantError):
        log.commit_to(4)
    assert [e.index for e in log.next_committed_entries()] == [1, 2]
    log.applied_to(2)
    with pytest.raises(RaftInvariantError):
        log.applied_to(3)
    assert log.next_committed_entries() == []


def test_restore_snapshot_and_compacted_reads() -> None:
    st = storage_with(1, 1, 1)
    log = RaftLog(st)
    snap = Snapshot(b"", SnapshotMetadata(10, 2, ConfState((1,))))
    log.restore(snap)
    assert (log.first_index(), log.last_index(), log.committed) == (11, 10, 10)
    assert log.term(10) == 2 and log.has_pending_snapshot()
    assert log.next_committed_entries() == []  # the snapshot is installed first
    with pytest.raises(Compacted):
        log.term(3)
    with pytest.raises(Compacted):
        log.slice(3, 5)
