"""The log storage seam: read-only for the core, written by the application.

The core reads the durable log through :class:`LogStorage`; it never writes. The application
writes what a Ready tells it to (``apply_snapshot``, ``append``, ``set_hard_state`` on
:class:`MemoryStorage`, or the equivalent on a disk-backed store) and may compact the log
after taking a snapshot of its state machine.

Any error from storage other than :class:`Compacted`, :class:`Unavailable` and
:class:`SnapshotTemporarilyUnavailable` is a broken invariant: the node must stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .errors import (
    Compacted,
    RaftInvariantError,
    SnapshotOutOfDate,
    Unavailable,
)
from .types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata

ENTRY_OVERHEAD_BYTES = 16
"""Size charged for an entry besides its data, so that empty entries still count against
``max_size_per_msg`` (roughly what the index, term and type cost on the wire)."""


def entry_size(entry: Entry) -> int:
    """The size of ``entry`` for flow control, in bytes."""
    return len(entry.data) + ENTRY_OVERHEAD_BYTES


def limit_size(entries: list[Entry], max_size: int | None) -> list[Entry]:
    """The longest prefix of ``entries`` within ``max_size`` bytes, but never empty when
    ``entries`` is not (one oversized entry must still make progress)."""
    if max_size is None or not entries:
        return entries
    total = entry_size(entries[0])
    for i in range(1, len(entries)):
        total += entry_size(entries[i])
        if total > max_size:
            return entries[:i]
    return entries


class LogStorage(Protocol):
    """What the core reads. Index ``first_index() - 1`` is the snapshot's index; its term is
    still answered by ``term`` so that the entry after the snapshot can be matched (§5.3)."""

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted HardState, and the ConfState as of the snapshot.

        The ConfState must describe the configuration at the ``applied`` index the
        application passes in ``Config``: conf changes after it are re-applied by the
        application from the committed entries it is handed again.
        """
        ...

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``, cut to ``max_size`` bytes (at least one entry).

        Raises Compacted if ``lo < first_index()``, Unavailable if ``hi > last_index() + 1``.
        """
        ...

    def term(self, index: int) -> int:
        """The term of entry ``index`` for ``first_index() - 1 <= index <= last_index()``.

        Raises Compacted below that range and Unavailable above it.
        """
        ...

    def first_index(self) -> int:
        """The index of the first entry still held (snapshot index + 1)."""
        ...

    def last_index(self) -> int:
        """The index of the last entry held (the snapshot index when there are none)."""
        ...

    def snapshot(self) -> Snapshot:
        """The most recent snapshot; may raise SnapshotTemporarilyUnavailable."""
        ...


class MemoryStorage:
    """A :class:`LogStorage` kept in memory, written by the application.

    Invariant: ``_ents[0]`` is a dummy entry carrying the snapshot's index and term, and
    ``_ents[i].index == _ents[0].index + i`` (the log is contiguous).
    """

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot = Snapshot()
        self._ents: list[Entry] = [Entry(term=0, index=0)]

    # -- LogStorage ---------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.metadata.conf_state

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        offset = self._ents[0].index
        if lo <= offset:
            raise Compacted(f"raft: entry {lo} compacted (first index {offset + 1})")
        if hi > self.last_index() + 1:
            raise Unavailable(
                f"raft: entries up to {hi - 1} unavailable (last {self.last_index()})"
            )
        if lo >= hi:
            return []
        return limit_size(self._ents[lo - offset : hi - offset], max_size)

    def term(self, index: int) -> int:
        offset = self._ents[0].index
        if index < offset:
            raise Compacted(f"raft: term of {index} compacted (snapshot index {offset})")
        if index - offset >= len(self._ents):
            raise Unavailable(f"raft: term of {index} unavailable (last {self.last_index()})")
        return self._ents[index - offset].term

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- written by the application -------------------------------------------------------

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    def set_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log by ``snapshot`` (a follower catching up, or bootstrap)."""
        if snapshot.index <= self._snapshot.index:
            raise SnapshotOutOfDate(
                f"raft: snapshot {snapshot.index} is not newer than {self._snapshot.index}"
            )
        self._snapshot = snapshot
        self._ents = [Entry(term=snapshot.term, index=snapshot.index)]

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record the application's snapshot of its state at ``index`` (which it has applied).

        Entries are kept; call :meth:`compact` to drop them.
        """
        if index <= self._snapshot.index:
            raise SnapshotOutOfDate(
                f"raft: snapshot at {index} is not newer than {self._snapshot.index}"
            )
        if index > self.last_index():
            raise RaftInvariantError(
                f"raft: snapshot index {index} beyond last index {self.last_index()}"
            )
        meta = SnapshotMetadata(index=index, term=self.term(index), conf_state=conf_state)
        self._snapshot = Snapshot(data=data, metadata=meta)
        return self._snapshot

    def compact(self, compact_index: int) -> None:
        """Drop every entry up to and including ``compact_index``.

        The application must only compact what it has applied and covered by a snapshot, so
        that a lagging follower can still be sent that snapshot.
        """
        offset = self._ents[0].index
        if compact_index <= offset:
            raise Compacted(f"raft: {compact_index} already compacted (offset {offset})")
        if compact_index > self.last_index():
            raise RaftInvariantError(
                f"raft: compact {compact_index} beyond last index {self.last_index()}"
            )
        i = compact_index - offset
        self._ents = [Entry(term=self._ents[i].term, index=compact_index), *self._ents[i + 1 :]]

    def append(self, entries: Sequence[Entry]) -> None:
        """Append ``entries``, first dropping any existing suffix from ``entries[0].index``.

        Entries at or below the snapshot index are ignored (already covered). A gap after the
        last index is an invariant violation.
        """
        if not entries:
            return
        first = self.first_index()
        last = entries[-1].index
        if last < first:
            return
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._ents[0].index
        if offset > len(self._ents):
            raise RaftInvariantError(
                f"raft: missing log entries [last: {self.last_index()}, append at: "
                f"{entries[0].index}]"
            )
        del self._ents[offset:]
        self._ents.extend(entries)
