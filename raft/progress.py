"""The leader's view of each follower: how far it matches and how to send it more.

A Progress is in one of three states:

* ``PROBE``: the leader does not know where the follower's log matches. It sends at most one
  append per heartbeat interval and backs ``next`` off on rejection (§5.3, with the fast
  conflict back-off of thesis §5.3 / etcd's hint).
* ``REPLICATE``: the follower is known to match up to ``match``; the leader streams appends
  optimistically, bounded by :class:`Inflights` (max in-flight messages).
* ``SNAPSHOT``: the leader sent a snapshot and sends nothing else until it is acknowledged or
  reported failed.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum

from .errors import RaftInvariantError


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Inflights:
    """The append messages sent to one follower and not yet acknowledged.

    Each element is ``(last index in the message, bytes of its entries)``. The window is full
    when it holds ``max_count`` messages or ``max_bytes`` bytes (``None`` = no byte limit).
    Invariant: indexes are strictly increasing.
    """

    __slots__ = ("_queue", "bytes", "max_bytes", "max_count")

    def __init__(self, max_count: int, max_bytes: int | None = None) -> None:
        if max_count <= 0:
            raise ValueError("raft: max_inflight must be positive")
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._queue: deque[tuple[int, int]] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, index: int, size: int) -> None:
        if self.full():
            raise RaftInvariantError("raft: add to a full inflights window")
        if self._queue and index <= self._queue[-1][0]:
            raise RaftInvariantError(f"raft: inflight index {index} not increasing")
        self._queue.append((index, size))
        self.bytes += size

    def free_le(self, index: int) -> None:
        """Forget every message whose last index is ``<= index`` (acknowledged)."""
        q = self._queue
        while q and q[0][0] <= index:
            self.bytes -= q.popleft()[1]

    def free_first_one(self) -> None:
        if self._queue:
            self.bytes -= self._queue.popleft()[1]

    def full(self) -> bool:
        if len(self._queue) >= self.max_count:
            return True
        return self.max_bytes is not None and self.bytes >= self.max_bytes

    def reset(self) -> None:
        self._queue.clear()
        self.bytes = 0


class Progress:
    """Replication state of one peer, kept by the leader (Figure 2's nextIndex/matchIndex).

    Invariant: ``0 <= match < next``. Entries in ``(match, next)`` may be in flight.
    """

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "state",
    )

    def __init__(
        self,
        next_index: int,
        max_inflight: int,
        max_inflight_bytes: int | None = None,
        is_learner: bool = False,
    ) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        """In SNAPSHOT state: the index of the snapshot being sent."""
        self.recent_active = False
        """Heard from since the last check-quorum round (or just added)."""
        self.probe_sent = False
        """In PROBE state: an append is outstanding, wait for an answer or a heartbeat."""
        self.inflights = Inflights(max_inflight, max_inflight_bytes)
        self.is_learner = is_learner

    def __repr__(self) -> str:
        s = f"{self.state.name} match={self.match} next={self.next}"
        if self.is_learner:
            s += " learner"
        if self.state == ProgressState.SNAPSHOT:
            s += f" pending_snap={self.pending_snapshot}"
        if self.probe_sent:
            s += " paused"
        if len(self.inflights):
            s += f" inflight={len(self.inflights)}"
        return s

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            # The snapshot may well have arrived: probe just after it.
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def sent_entries(self, last_index: int | None, size: int) -> None:
        """Record an append just sent; ``last_index`` is its last entry's index, if any."""
        if self.state == ProgressState.REPLICATE:
            if last_index is not None:
                self.next = last_index + 1
                self.inflights.add(last_index, size)
        elif self.state == ProgressState.PROBE:
            self.probe_sent = True
        else:
            raise RaftInvariantError(f"raft: sending entries in state {self.state.name}")

    def maybe_update(self, index: int) -> bool:
        """An acknowledgement up to ``index`` arrived; report whether ``match`` grew."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an append whose previous index was ``rejected``; its log
        probably matches no further than ``match_hint``. Report whether ``next`` moved (False
        means the rejection is stale: it answers an older message)."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        """Should the leader hold back appends to this peer for now?"""
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True
