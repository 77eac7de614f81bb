"""Configuration of one Raft node.

Kept apart from ``rawnode`` because the core (``core.Raft``) reads it too and ``rawnode``
imports the core. Re-exported as ``etcdlite.raft.Config``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .storage import LogStorage
from .types import NONE


@dataclass(slots=True)
class Config:
    """Parameters of one node. Time is counted in ticks; the application decides how long a
    tick is and calls ``tick()`` that often.

    The initial membership is not here: it is durable state, read from ``storage`` (the
    snapshot's ConfState plus conf-change entries the application re-applies), or created
    once with ``RawNode.bootstrap``.
    """

    id: int
    """This node's id; never 0."""
    storage: LogStorage
    """The durable log, read-only for raft (the application writes it)."""
    rng: random.Random
    """Source of the randomized election timeouts. Seed it for reproducible runs."""
    election_tick: int = 10
    """Ticks without hearing from a leader before a follower campaigns; the actual timeout is
    drawn from ``[election_tick, 2 * election_tick)`` each time (§5.2)."""
    heartbeat_tick: int = 1
    """Ticks between leader heartbeats. Must be less than ``election_tick``."""
    applied: int = 0
    """The last index the application had applied before this start. Raft hands out committed
    entries after it. It must match the ConfState returned by ``storage.initial_state()``."""
    max_size_per_msg: int | None = 1024 * 1024
    """Bytes of entries per append message (at least one entry is always sent). None: no limit."""
    max_inflight: int = 256
    """Append messages in flight to one follower in the replicate state."""
    max_inflight_bytes: int | None = None
    """Bytes of entries in flight to one follower. None: no limit."""
    max_uncommitted_entries_size: int | None = None
    """Bytes of entry data the leader holds uncommitted before it drops new proposals with
    ProposalDropped (a proposal is always taken when nothing is uncommitted). Bounds the
    backlog a slow or partitioned quorum lets pile up. None: no limit."""
    max_committed_size_per_ready: int | None = None
    """Bytes of committed entries handed out in one Ready. None: no limit."""
    pre_vote: bool = True
    """Run a pre-vote round before raising the term (thesis §9.6), so a node that was
    partitioned away cannot disrupt the cluster when it comes back."""
    check_quorum: bool = True
    """A leader steps down when it has not heard from a quorum within an election timeout,
    and followers that hear from a leader ignore vote requests (leases, thesis §6.4.1)."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        if self.id == NONE:
            raise ValueError("raft: cannot use 0 as a node id")
        if self.heartbeat_tick <= 0:
            raise ValueError("raft: heartbeat_tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("raft: election_tick must be greater than heartbeat_tick")
        if self.max_inflight <= 0:
            raise ValueError("raft: max_inflight must be greater than 0")
        if self.max_size_per_msg is not None and self.max_size_per_msg <= 0:
            raise ValueError("raft: max_size_per_msg must be positive or None")
        if self.max_uncommitted_entries_size is not None and self.max_uncommitted_entries_size <= 0:
            raise ValueError("raft: max_uncommitted_entries_size must be positive or None")
        if self.applied < 0:
            raise ValueError("raft: applied must not be negative")
