"""Value types of the Raft core: entries, messages, persistent and volatile state, Ready.

Every type here is an immutable (frozen, slotted) dataclass or an IntEnum, so a value handed
out by the core can be kept, compared and hashed by the application without defensive copies.
Payloads (entry data, snapshot data, request contexts) are opaque ``bytes``: the core never
looks inside them, except for conf-change entries, whose data is a :class:`ConfChange` encoded
with :meth:`ConfChange.encode`.

Index and term conventions (Raft paper §5.3): indexes start at 1; index 0 with term 0 is the
empty prefix that precedes every log. Node id 0 (:data:`NONE`) means "nobody".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

NONE = 0
"""The node id that means "no node": no leader known, no vote cast."""


class EntryType(IntEnum):
    """What an entry's ``data`` holds."""

    NORMAL = 0
    """Application data, opaque to raft (an empty one is the leader's no-op, §5.4.2)."""
    CONF_CHANGE = 1
    """An encoded :class:`ConfChange`; takes effect when the application applies it."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. Two entries with the same index and term are identical (§5.3)."""

    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


class MessageType(IntEnum):
    """Every message the core consumes or produces.

    Local types (``HUP``, ``BEAT``, ``CHECK_QUORUM``, ``UNREACHABLE``, ``SNAP_STATUS``) are
    generated inside one node and must never arrive from the network; ``PROP``,
    ``READ_INDEX`` and ``TRANSFER_LEADER`` start locally and may be forwarded to the leader.
    """

    HUP = 0
    """Local: start an election (tick timeout or explicit campaign)."""
    BEAT = 1
    """Local: the leader's heartbeat timer fired."""
    PROP = 2
    """A proposal: entries to append. Term 0; followers forward it to the leader."""
    APP = 3
    """AppendEntries (§5.3): ``index``/``log_term`` name the entry preceding ``entries``."""
    APP_RESP = 4
    """Reply to APP or SNAP: ``index`` is the last matching index, or the rejected one."""
    VOTE = 5
    """RequestVote (§5.2): ``index``/``log_term`` are the candidate's last entry."""
    VOTE_RESP = 6
    """Vote reply; ``reject`` false means granted."""
    SNAP = 7
    """InstallSnapshot (§7): the leader's log no longer holds what the follower needs."""
    HEARTBEAT = 8
    """Leader liveness; carries a commit index the follower can safely use."""
    HEARTBEAT_RESP = 9
    """Heartbeat reply; echoes ``context`` so ReadIndex can count acknowledgements."""
    UNREACHABLE = 10
    """Local: the transport could not deliver to ``frm``."""
    SNAP_STATUS = 11
    """Local: the transport finished (``reject`` false) or failed sending a snapshot."""
    CHECK_QUORUM = 12
    """Local: the leader checks it heard from a quorum during the last election timeout."""
    TRANSFER_LEADER = 13
    """Ask the leader to hand leadership to ``frm`` (thesis §3.10)."""
    TIMEOUT_NOW = 14
    """Leader to transferee: campaign at once, ignoring election timers and leases."""
    READ_INDEX = 15
    """Linearizable read request (thesis §6.4); ``context`` identifies it."""
    READ_INDEX_RESP = 16
    """Leader's answer to a forwarded READ_INDEX: ``index`` is the read index."""
    PRE_VOTE = 17
    """Pre-vote (thesis §9.6): would you vote for me at ``term``? Changes no state."""
    PRE_VOTE_RESP = 18
    """Pre-vote reply; ``reject`` false means "yes"."""


LOCAL_MESSAGES = frozenset(
    {
        MessageType.HUP,
        MessageType.BEAT,
        MessageType.UNREACHABLE,
        MessageType.SNAP_STATUS,
        MessageType.CHECK_QUORUM,
    }
)
"""Message types that must never come from the network."""

RESPONSE_MESSAGES = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.VOTE_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.UNREACHABLE,
        MessageType.PRE_VOTE_RESP,
    }
)
"""Message types that answer a request this node sent."""


class StateType(IntEnum):
    """The role of a node (§5.1, plus pre-candidate from thesis §9.6)."""

    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3


@dataclass(frozen=True, slots=True)
class HardState:
    """State that must be durable before the messages that depend on it are sent.

    ``term`` and ``vote`` are the paper's currentTerm and votedFor (Figure 2); ``commit`` is
    persisted too so that a restarted node can re-apply without waiting for a leader.
    """

    term: int = 0
    vote: int = NONE
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state, useful for logging and for routing client requests; never persisted."""

    lead: int = NONE
    state: StateType = StateType.FOLLOWER


@dataclass(frozen=True, slots=True)
class ConfState:
    """A membership configuration: the voters and the (non-voting) learners.

    Invariant: ``voters`` and ``learners`` are sorted and disjoint.
    """

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    """Where a snapshot sits in the log, and the configuration in force at that point."""

    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An application-supplied image of the state machine up to ``metadata.index``."""

    data: bytes = b""
    metadata: SnapshotMetadata = field(default_factory=SnapshotMetadata)

    @property
    def index(self) -> int:
        return self.metadata.index

    @property
    def term(self) -> int:
        return self.metadata.term

    def is_empty(self) -> bool:
        return self.metadata.index == 0


class ConfChangeType(IntEnum):
    """Single-member membership changes (thesis §4.1)."""

    ADD_NODE = 0
    """Add a voter, or promote an existing learner to voter."""
    REMOVE_NODE = 1
    """Remove a voter or a learner."""
    ADD_LEARNER_NODE = 2
    """Add a learner: it receives the log but neither votes nor counts for commitment."""


_CONF_CHANGE_HEADER = struct.Struct(">BQ")


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A proposed membership change. ``context`` is opaque application data (e.g. a URL).

    The wire form is one type byte, the node id as 8 bytes big-endian, then ``context``.
    """

    type: ConfChangeType
    node_id: int
    context: bytes = b""

    def encode(self) -> bytes:
        return _CONF_CHANGE_HEADER.pack(int(self.type), self.node_id) + self.context

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        """Parse :meth:`encode` output; raise ``ValueError`` on anything malformed."""
        if len(data) < _CONF_CHANGE_HEADER.size:
            raise ValueError(f"raft: conf change too short ({len(data)} bytes)")
        kind, node_id = _CONF_CHANGE_HEADER.unpack_from(data)
        try:
            cc_type = ConfChangeType(kind)
        except ValueError:
            raise ValueError(f"raft: unknown conf change type {kind}") from None
        if node_id == NONE:
            raise ValueError("raft: conf change for node id 0")
        return cls(cc_type, node_id, bytes(data[_CONF_CHANGE_HEADER.size :]))


@dataclass(frozen=True, slots=True)
class ReadState:
    """The answer to a ReadIndex request: once the application has applied ``index``, a read
    issued when ``request_ctx`` was requested may be served from the local state machine."""

    index: int
    request_ctx: bytes


@dataclass(frozen=True, slots=True)
class Message:
    """A Raft message between two nodes (or a local one, see :data:`LOCAL_MESSAGES`).

    Field use by type: ``index``/``log_term`` locate a log position (the entry before
    ``entries`` in APP, the candidate's last entry in VOTE, the acknowledged or rejected index
    in APP_RESP, the read index in READ_INDEX_RESP); ``reject_hint`` with ``log_term`` in a
    rejecting APP_RESP is the follower's guess of where the logs diverge (fast back-off);
    ``context`` carries ReadIndex request ids and the leader-transfer marker.
    """

    type: MessageType
    to: int
    frm: int
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""


@dataclass(frozen=True, slots=True)
class Ready:
    """One batch of work the core hands to the application; see :meth:`RawNode.ready`.

    The application handles a Ready in this order, then calls ``advance(ready)``:

    1. ``messages`` may be sent at once, even while step 2 is still writing. None of them
       depends on this Ready being durable: each carries term 0 or a term no newer than the
       ``hard_state`` term already persisted by earlier Readies (``ready()`` moves any other to
       ``messages_after_append``), and none promises or describes a vote or entries of this
       Ready. The one exception is by design: a leader's APP may carry entries of this Ready
       before they are durable locally (thesis §10.2.1); the leader counts itself towards
       their commitment only once they are. (A leader's term is always durable: a candidate
       becomes leader only after its own vote is persisted, paper §5.2, thesis §3.8.)
    2. Persist ``snapshot`` (if any), then ``entries`` (replacing any conflicting suffix),
       then ``hard_state`` (if not None); when ``must_sync`` is true, fsync before going on.
    3. Only then send ``messages_after_append``: vote grants and append acknowledgements,
       which promise that the vote, term or entries are on stable storage (thesis §3.8); vote
       and pre-vote requests, which carry a new term and describe the log; and any message at
       a term not durable before this Ready. If the node crashes before persisting, they are
       never sent.
    4. Install ``snapshot`` into the state machine, then apply ``committed_entries`` in order
       (calling ``RawNode.apply_conf_change`` for conf-change entries). Committed entries may
       include entries from ``entries`` above, which is why step 2 comes first.
    5. Serve ``read_states`` once the applied index reaches each one's index.

    Readies are persisted in the order they are handed out (``ready()`` and ``advance()``
    alternate). ``soft_state`` and ``hard_state`` are None when unchanged since the previous
    Ready.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    read_states: tuple[ReadState, ...] = ()
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None
    committed_entries: tuple[Entry, ...] = ()
    messages: tuple[Message, ...] = ()
    messages_after_append: tuple[Message, ...] = ()
    must_sync: bool = False

    def is_empty(self) -> bool:
        return (
            self.soft_state is None
            and self.hard_state is None
            and not self.read_states
            and not self.entries
            and self.snapshot is None
            and not self.committed_entries
            and not self.messages
            and not self.messages_after_append
        )
