"""The replicated log as one node sees it: a durable part in storage and an unstable tail.

::

    storage (durable)            unstable (not yet persisted)
    [snap] first ... last        [snapshot?] offset ... last
                       ^ applied <= committed <= last_index()

Entries enter through the unstable tail (proposals, appends from the leader, a snapshot) and
leave it through :meth:`RaftLog.stable_to` once the application reports them durable.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import Compacted, RaftInvariantError, Unavailable
from .storage import LogStorage, limit_size
from .types import Entry, Snapshot


class Unstable:
    """Entries (and maybe a snapshot) the application has not yet reported durable.

    Invariant: ``entries[i].index == offset + i``; when ``snapshot`` is set,
    ``offset == snapshot.index + 1`` or later.
    """

    __slots__ = ("entries", "offset", "snapshot")

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        return self.snapshot.index + 1 if self.snapshot is not None else None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.index
        return None

    def maybe_term(self, index: int) -> int | None:
        if index < self.offset:
            if self.snapshot is not None and self.snapshot.index == index:
                return self.snapshot.term
            return None
        last = self.maybe_last_index()
        if last is None or index > last:
            return None
        return self.entries[index - self.offset].term

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` (if still of ``term``) are durable: drop them."""
        if index < self.offset:
            return
        if self.maybe_term(index) != term:
            # Replaced by a newer append between ready() and advance(); keep it.
            return
        del self.entries[: index + 1 - self.offset]
        self.offset = index + 1

    def stable_snap_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.index == index:
            self.snapshot = None

    def restore(self, snapshot: Snapshot) -> None:
        self.offset = snapshot.index + 1
        self.entries = []
        self.snapshot = snapshot

    def truncate_and_append(self, entries: Sequence[Entry]) -> None:
        after = entries[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(entries)
        elif after <= self.offset:
            # Replaces part of the durable log too; storage.append truncates it when persisted.
            self.offset = after
            self.entries = list(entries)
        else:
            del self.entries[after - self.offset :]
            self.entries.extend(entries)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        return self.entries[lo - self.offset : hi - self.offset]


class RaftLog:
    """A node's log.

    Invariant: ``applied <= committed <= last_index()``. ``committed`` is the highest index
    known to be stored on a quorum (§5.3); ``applied`` the highest the application has applied.
    """

    def __init__(self, storage: LogStorage, max_applying_size: int | None = None) -> None:
        self.storage = storage
        self.max_applying_size = max_applying_size
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        # Everything up to the snapshot is committed and applied by definition.
        self.committed = first - 1
        self.applied = first - 1

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"unstable.offset={self.unstable.offset}, unstable.len={len(self.unstable.entries)})"
        )

    # -- positions ------------------------------------------------------------------------

    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def term(self, index: int) -> int:
        """Term of entry ``index``. Raises Compacted / Unavailable outside the log."""
        t = self.unstable.maybe_term(index)
        if t is not None:
            return t
        if index < self.first_index() - 1:
            raise Compacted(f"raft: term of {index} compacted")
        if index > self.last_index():
            raise Unavailable(f"raft: term of {index} unavailable")
        return self.storage.term(index)

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, index: int, term: int) -> bool:
        try:
            return self.term(index) == term
        except (Compacted, Unavailable):
            return False

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Is a log ending at (``last_index``, ``term``) at least as up to date as ours (§5.4.1)?"""
        my_term = self.last_term()
        return term > my_term or (term == my_term and last_index >= self.last_index())

    # -- appending ------------------------------------------------------------------------

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """Index of the first entry whose term differs from ours (or that we lack), else 0."""
        for e in entries:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest ``i <= index`` whose term is ``<= term``, with that term.

        Used for fast back-off: every entry in ``(i, index]`` has a term above ``term`` and so
        cannot match a log whose entry ``index`` has ``term``. Returns the term 0 when the
        position is compacted (the caller then probes from there and may need a snapshot).
        """
        while index > 0:
            try:
                t = self.term(index)
            except (Compacted, Unavailable):
                return index, 0
            if t <= term:
                return index, t
            index -= 1
        return 0, 0

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: Sequence[Entry]
    ) -> int | None:
        """AppendEntries receiver rules 2-5 (Figure 2): None when ``(index, log_term)`` does
        not match, else the index of the last entry of this message now in the log."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        ci = self.find_conflict(entries)
        if ci:
            if ci <= self.committed:
                raise RaftInvariantError(
                    f"raft: entry {ci} conflicts with committed entry (committed {self.committed})"
                )
            self.append(entries[ci - (index + 1) :])
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, entries: Sequence[Entry]) -> int:
        if entries:
            after = entries[0].index - 1
            if after < self.committed:
                raise RaftInvariantError(
                    f"raft: append after {after} is below committed {self.committed}"
                )
            self.unstable.truncate_and_append(entries)
        return self.last_index()

    # -- reading --------------------------------------------------------------------------

    def slice(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``. Raises Compacted if ``lo`` is before the first index."""
        if lo > hi:
            raise RaftInvariantError(f"raft: invalid slice {lo} > {hi}")
        first = self.first_index()
        if lo < first:
            raise Compacted(f"raft: entry {lo} compacted (first index {first})")
        if hi > self.last_index() + 1:
            raise RaftInvariantError(f"raft: slice [{lo}, {hi}) beyond last {self.last_index()}")
        if lo == hi:
            return []
        ents: list[Entry] = []
        off = self.unstable.offset
        if lo < off:
            ents = self.storage.entries(lo, min(hi, off), max_size)
            if len(ents) < min(hi, off) - lo:
                return ents  # cut short by max_size
        if hi > off:
            ents = ents + self.unstable.slice(max(lo, off), hi)
        return limit_size(ents, max_size)

    def entries(self, lo: int, max_size: int | None = None) -> list[Entry]:
        """Entries from ``lo`` to the end, cut to ``max_size``."""
        if lo > self.last_index():
            return []
        return self.slice(lo, self.last_index() + 1, max_size)

    def all_entries(self) -> list[Entry]:
        """Every entry held (for tests and debugging)."""
        return self.entries(self.first_index())

    def unstable_entries(self) -> list[Entry]:
        return list(self.unstable.entries)

    def has_pending_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def next_committed_entries(self) -> list[Entry]:
        """Committed entries not yet applied. None are handed out while a snapshot is pending:
        it must be installed first."""
        if self.has_pending_snapshot():
            return []
        lo, hi = self.applied + 1, self.committed + 1
        if lo >= hi:
            return []
        return self.slice(lo, hi, self.max_applying_size)

    def has_next_committed_entries(self) -> bool:
        return not self.has_pending_snapshot() and self.committed > self.applied

    # -- moving the markers ---------------------------------------------------------------

    def commit_to(self, index: int) -> None:
        """Raise ``committed`` to ``index`` (never lowers it)."""
        if index > self.committed:
            if index > self.last_index():
                raise RaftInvariantError(
                    f"raft: commit {index} beyond last index {self.last_index()}"
                )
            self.committed = index

    def applied_to(self, index: int) -> None:
        if index == 0:
            return
        if index > self.committed or index < self.applied:
            raise RaftInvariantError(
                f"raft: applied {index} outside [{self.applied}, {self.committed}]"
            )
        self.applied = index

    def stable_to(self, index: int, term: int) -> None:
        self.unstable.stable_to(index, term)

    def stable_snap_to(self, index: int) -> None:
        self.unstable.stable_snap_to(index)

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the log by ``snapshot`` (InstallSnapshot, §7)."""
        self.committed = snapshot.index
        self.unstable.restore(snapshot)
