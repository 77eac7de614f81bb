"""RawNode: the application's handle on one Raft node.

Thread-unsafe and synchronous: the caller serializes every call. The loop that drives it:

1. feed input: ``tick()`` at a fixed interval, ``step(msg)`` for each message from a peer,
   ``propose`` / ``propose_conf_change`` / ``read_index`` / ``transfer_leader`` for requests;
2. while ``has_ready()``: ``rd = ready()``, handle it as :class:`Ready` describes (send,
   persist, send, apply), then ``advance(rd)``.

``ready()`` and ``advance()`` strictly alternate; input may be fed in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .config import Config
from .core import Raft
from .errors import (
    ProposalDropped,
    RaftInvariantError,
    ReadIndexDropped,
    StepLocalMessage,
    StorageNotEmpty,
)
from .progress import ProgressState
from .types import (
    LOCAL_MESSAGES,
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Ready,
    SoftState,
    StateType,
)

_FORWARDED_REQUESTS = frozenset({MessageType.PROP, MessageType.READ_INDEX})
"""Requests a peer may forward to this node; RawNode.step drops those it cannot take."""


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """The leader's view of one peer (empty on other roles)."""

    match: int
    next: int
    state: ProgressState
    is_learner: bool


@dataclass(frozen=True, slots=True)
class Status:
    """A read-only snapshot of a node, for monitoring and tests."""

    id: int
    term: int
    vote: int
    commit: int
    applied: int
    lead: int
    state: StateType
    conf_state: ConfState
    progress: dict[int, PeerStatus]
    lead_transferee: int


class RawNode:
    """Drives one :class:`Raft` and batches its output into :class:`Ready` values."""

    def __init__(self, config: Config) -> None:
        self.raft = Raft(config)
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()
        self._pending: Ready | None = None
        self._steps_on_advance: list[Message] = []

    def bootstrap(self, voters: Sequence[int]) -> None:
        """Create the initial configuration of a brand-new cluster on a brand-new node.

        Appends one committed ADD_NODE conf change per voter at term 1, so that the log itself
        describes the membership (a node that joins later replays it). Call it once, with the
        same ``voters`` on every initial member, before anything else; on a restart whose
        storage is still empty, call it again. Raises :class:`StorageNotEmpty` otherwise.
        """
        r = self.raft
        if r.log.last_index() != 0 or r.term != 0:
            raise StorageNotEmpty(
                f"raft: can only bootstrap a node with empty storage (last index "
                f"{r.log.last_index()}, term {r.term})"
            )
        if not voters or NONE in voters or len(set(voters)) != len(voters):
            raise ValueError(f"raft: invalid bootstrap voters {voters!r}")
        r.become_follower(1, NONE)
        ents = [
            Entry(1, i + 1, EntryType.CONF_CHANGE, ConfChange(ConfChangeType.ADD_NODE, v).encode())
            for i, v in enumerate(voters)
        ]
        r.log.append(ents)
        r.log.commit_to(len(ents))
        # Apply at once so the node can campaign; the application applying the same entries
        # again from the first Ready changes nothing (adding a voter twice is a no-op).
        for v in voters:
            r.apply_conf_change(ConfChange(ConfChangeType.ADD_NODE, v))

    # -- input ---------------------------------------------------------------------------

    def tick(self) -> None:
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (pre-vote first if configured)."""
        self.raft.step(Message(MessageType.HUP, self.raft.id, self.raft.id))

    def propose(self, data: bytes) -> None:
        """Propose ``data`` for the log. Raises ProposalDropped if it cannot be taken now; a
        proposal that is taken may still be lost (leader change), so clients retry."""
        self.raft.step(
            Message(MessageType.PROP, NONE, self.raft.id, entries=(Entry(0, 0, data=data),))
        )

    def propose_conf_change(self, cc: ConfChange) -> None:
        """Propose a single-member change. It takes effect when the application, applying the
        committed entry, calls :meth:`apply_conf_change`."""
        entry = Entry(0, 0, EntryType.CONF_CHANGE, cc.encode())
        self.raft.step(Message(MessageType.PROP, NONE, self.raft.id, entries=(entry,)))

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed conf change (decoded from its entry); returns the new ConfState,
        which the application keeps for its next snapshot."""
        return self.raft.apply_conf_change(cc)

    def step(self, m: Message) -> None:
        """Feed a message received from a peer.

        A PROP or READ_INDEX forwarded by a peer that this node cannot take (no leader known,
        campaigning, leadership transfer under way, ...) is dropped silently, as etcd does:
        the client waiting on the peer that forwarded it retries after a timeout, exactly as
        if the network had lost it. ProposalDropped / ReadIndexDropped are raised only by
        this node's own :meth:`propose`, :meth:`propose_conf_change` and :meth:`read_index`.
        Raises :class:`StepLocalMessage` for a local-only message type.
        """
        if m.type in LOCAL_MESSAGES:
            raise StepLocalMessage(f"raft: {m.type.name} must not come from the network")
        try:
            self.raft.step(m)
        except (ProposalDropped, ReadIndexDropped):
            if m.type not in _FORWARDED_REQUESTS:
                raise

    def read_index(self, ctx: bytes) -> None:
        """Request a linearizable read. A :class:`ReadState` with the same ``ctx`` appears in a
        later Ready (unless leadership changes first: retry after a timeout).

        ``ctx`` identifies the request cluster-wide: it must not equal the context of any read
        still pending anywhere in the cluster (use e.g. a random 8-byte id). The leader takes
        a context already pending for the same request arriving again and answers it once.
        A ReadState may also arrive for a context no longer waited on (a duplicated request
        answered twice): ignore it."""
        self.raft.step(Message(MessageType.READ_INDEX, NONE, self.raft.id, context=ctx))

    def transfer_leader(self, transferee: int) -> None:
        """Ask the leader to hand over leadership to ``transferee`` (thesis §3.10)."""
        self.raft.step(Message(MessageType.TRANSFER_LEADER, self.raft.id, transferee))

    def report_unreachable(self, node_id: int) -> None:
        """The transport failed to reach ``node_id``: stop streaming to it optimistically."""
        self.raft.step(Message(MessageType.UNREACHABLE, self.raft.id, node_id))

    def report_snapshot(self, node_id: int, ok: bool) -> None:
        """The transport finished (``ok``) or failed sending a snapshot to ``node_id``.
        Required after every SNAP message: the leader sends nothing else to it meanwhile."""
        self.raft.step(Message(MessageType.SNAP_STATUS, self.raft.id, node_id, reject=not ok))

    # -- output --------------------------------------------------------------------------

    def has_ready(self) -> bool:
        r = self.raft
        if self._pending is not None:
            return False
        return bool(
            r.msgs
            or r.msgs_after_append
            or r.read_states
            or r.log.unstable.entries
            or r.log.has_pending_snapshot()
            or r.log.has_next_committed_entries()
            or r.soft_state() != self._prev_soft
            or r.hard_state() != self._prev_hard
        )

    def ready(self) -> Ready:
        """Take the pending output as one batch. Call :meth:`advance` with it when handled.

        Enforces the contract of :attr:`Ready.messages`: a message whose term is newer than
        the term already durable (the HardState of the previous Readies, all persisted since
        ``advance()`` was called on them) is moved to ``messages_after_append``, so it leaves
        only once this Ready's HardState is persisted too (thesis §3.8).
        """
        if self._pending is not None:
            raise RaftInvariantError("raft: ready() called again before advance()")
        r = self.raft
        soft = r.soft_state()
        hard = r.hard_state()
        prev = self._prev_hard
        entries = tuple(r.log.unstable.entries)
        snapshot = r.log.unstable.snapshot
        now: list[Message] = []
        after: list[Message] = []
        steps: list[Message] = []
        for m in r.msgs:
            if m.to == r.id:
                raise RaftInvariantError(f"raft: message to self in msgs: {m}")
            (now if self._sendable_before_persisting(m, prev) else after).append(m)
        for m in r.msgs_after_append:
            (steps if m.to == r.id else after).append(m)
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard != prev else None,
            read_states=tuple(r.read_states),
            entries=entries,
            snapshot=snapshot,
            committed_entries=tuple(r.log.next_committed_entries()),
            messages=tuple(now),
            messages_after_append=tuple(after),
            must_sync=bool(entries)
            or snapshot is not None
            or hard.term != prev.term
            or hard.vote != prev.vote,
        )
        r.msgs = []
        r.msgs_after_append = []
        r.read_states = []
        self._prev_soft = soft
        self._prev_hard = hard
        self._steps_on_advance = steps
        self._pending = rd
        return rd

    @staticmethod
    def _sendable_before_persisting(m: Message, durable: HardState) -> bool:
        """May ``m`` (from ``msgs``) leave before the Ready is persisted? Only if its term is
        already ``durable``: not e.g. a follower's HEARTBEAT_RESP in a term it has just
        learned. (The core already defers vote traffic and acknowledgements.)"""
        return m.term <= durable.term

    def advance(self, rd: Ready) -> None:
        """Report that ``rd`` was persisted, sent and applied."""
        if rd is not self._pending:
            raise RaftInvariantError("raft: advance() with a Ready that is not the pending one")
        r = self.raft
        if rd.snapshot is not None:
            r.log.stable_snap_to(rd.snapshot.index)
            r.log.applied_to(rd.snapshot.index)
        if rd.entries:
            last = rd.entries[-1]
            r.log.stable_to(last.index, last.term)
        if rd.committed_entries:
            r.log.applied_to(rd.committed_entries[-1].index)
            r.reduce_uncommitted_size(rd.committed_entries)
        self._pending = None
        steps, self._steps_on_advance = self._steps_on_advance, []
        for m in steps:
            # Our own vote / append acknowledgement, now that the Ready is durable.
            r.step(m)

    # -- inspection ----------------------------------------------------------------------

    def status(self) -> Status:
        r = self.raft
        progress: dict[int, PeerStatus] = {}
        if r.state == StateType.LEADER:
            progress = {
                pid: PeerStatus(pr.match, pr.next, pr.state, pr.is_learner)
                for pid, pr in r.progress.items()
            }
        return Status(
            id=r.id,
            term=r.term,
            vote=r.vote,
            commit=r.log.committed,
            applied=r.log.applied,
            lead=r.lead,
            state=r.state,
            conf_state=r.conf_state(),
            progress=progress,
            lead_transferee=r.lead_transferee,
        )

    @property
    def soft_state(self) -> SoftState:
        return self.raft.soft_state()

    @property
    def hard_state(self) -> HardState:
        return self.raft.hard_state()
