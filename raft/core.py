"""The Raft algorithm as a pure state machine: messages and ticks in, messages out.

One :class:`Raft` object is one node. It never does I/O: input arrives through
:meth:`Raft.step` (network messages and local requests) and :meth:`Raft.tick` (time, counted
in ticks); output accumulates in ``msgs`` / ``msgs_after_append`` (messages), the log's
unstable tail (entries to persist) and ``read_states``, which :class:`RawNode` hands to the
application as a Ready.

Roles do not get a class each: ``become_*`` swaps the ``_step`` and ``_tick`` attributes to the
role's functions, so ``step`` is one entry point whatever the role.

Persist before send (thesis §3.8, paper §5.2): a message that promises or describes state
the node may not have persisted yet goes to ``msgs_after_append``, which the application sends
only after persisting the Ready it came with:

* vote grants (VOTE_RESP, PRE_VOTE_RESP) and append acknowledgements (APP_RESP) promise that
  the vote, term or entries are on stable storage;
* vote requests (VOTE, PRE_VOTE) carry a term the node has just adopted (or would adopt) and
  describe its log, which may still be in flight to disk. Were they sent early, a node that
  crashed before persisting could restart, campaign again in the same term, and count grants
  addressed to its previous incarnation (given for another log, in a term it forgot).

A node's own vote and a leader's own acknowledgement are after-append messages addressed to
itself; RawNode steps them back in on ``advance()``. A candidate becomes leader only once its
own vote is counted, so invariant: **a leader's term and self-vote are durable**, and every
message it sends carries a durable term. A leader counts its own log for commitment only once
durable, but may send entries to followers before they are (thesis §10.2.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import IntEnum

from .config import Config
from .errors import (
    Compacted,
    ProposalDropped,
    RaftInvariantError,
    ReadIndexDropped,
    SnapshotTemporarilyUnavailable,
    Unavailable,
)
from .log import RaftLog
from .progress import Progress, ProgressState
from .quorum import VoteResult, committed_index, vote_result
from .storage import entry_size
from .types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SoftState,
    StateType,
)

CAMPAIGN_TRANSFER = b"raft:campaign-transfer"
"""Context of the vote requests of a leader-transfer election: receivers grant them even
inside their leader lease (thesis §3.10)."""

_MT = MessageType
_AFTER_APPEND = frozenset({_MT.APP_RESP, _MT.VOTE, _MT.VOTE_RESP, _MT.PRE_VOTE, _MT.PRE_VOTE_RESP})
"""Message types sent only once the Ready they come with is durable (module docstring)."""
_VOTE_TYPES = frozenset({_MT.VOTE, _MT.PRE_VOTE, _MT.VOTE_RESP, _MT.PRE_VOTE_RESP})
_TERMLESS = frozenset({_MT.PROP, _MT.READ_INDEX})


class CampaignType(IntEnum):
    PRE_ELECTION = 0
    """Pre-vote round first (thesis §9.6)."""
    ELECTION = 1
    """A normal election (§5.2)."""
    TRANSFER = 2
    """Asked by the leader (MsgTimeoutNow): skip pre-vote, override leases (thesis §3.10)."""


@dataclass(slots=True)
class _ReadIndexStatus:
    req: Message
    index: int
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    """Pending ReadIndex requests at the leader, in arrival order (thesis §6.4).

    A request is answered once a quorum has acknowledged a heartbeat carrying its context
    (or a later one's: acknowledging a later heartbeat proves leadership at that later time).
    """

    __slots__ = ("pending", "queue")

    def __init__(self) -> None:
        self.pending: dict[bytes, _ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, m: Message) -> None:
        """Queue read request ``m`` at read index ``index``.

        A request's context identifies it: contexts must be unique among the requests pending
        in the cluster (etcd uses a random 8-byte id). A context already pending is taken to
        be the same request arriving again (the network may duplicate a forwarded
        READ_INDEX) and is ignored: the pending one's answer serves it.
        """
        if m.context in self.pending:
            return
        self.pending[m.context] = _ReadIndexStatus(m, index)
        self.queue.append(m.context)

    def recv_ack(self, node_id: int, ctx: bytes) -> set[int] | None:
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks.add(node_id)
        return rs.acks

    def advance(self, ctx: bytes) -> list[_ReadIndexStatus]:
        """Remove and return every request up to and including ``ctx``."""
        try:
            i = self.queue.index(ctx)
        except ValueError:
            return []
        done = [self.pending.pop(c) for c in self.queue[: i + 1]]
        del self.queue[: i + 1]
        return done

    def last_pending_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""


class Raft:
    """One Raft node. Not thread-safe; drive it through :class:`RawNode`.

    Invariants: ``vote`` was cast in ``term``; a leader's log never loses entries while it
    leads; ``lead == id`` exactly when ``state`` is LEADER; a leader's ``term`` and ``vote``
    (itself) are durable, as it counts its own vote only once persisted.
    """

    def __init__(self, config: Config) -> None:
        config.validate()
        self.id = config.id
        self.rng = config.rng
        self.log = RaftLog(config.storage, config.max_committed_size_per_ready)
        self.max_msg_size = config.max_size_per_msg
        self.max_inflight = config.max_inflight
        self.max_inflight_bytes = config.max_inflight_bytes
        self.max_uncommitted_size = config.max_uncommitted_entries_size
        self.uncommitted_size = 0
        """Leader only: bytes of entry data appended in this term and not yet committed."""
        self.pre_vote = config.pre_vote
        self.check_quorum = config.check_quorum
        self.election_timeout = config.election_tick
        self.heartbeat_timeout = config.heartbeat_tick

        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.state = StateType.FOLLOWER
        self.is_learner = False
        self.voters: frozenset[int] = frozenset()
        self.learners: frozenset[int] = frozenset()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.msgs: list[Message] = []
        """Messages that may be sent before the current Ready is persisted."""
        self.msgs_after_append: list[Message] = []
        """Messages to send only after the current Ready is persisted (votes, append acks)."""
        self.read_states: list[ReadState] = []
        self.read_only = ReadOnly()
        self.pending_read_index_messages: list[Message] = []
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        """A leader proposes no conf change while one at or below this index is unapplied."""
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = 0
        self._step: Callable[[Message], None] = self._step_follower
        self._tick: Callable[[], None] = self._tick_election

        hard_state, conf_state = config.storage.initial_state()
        self._switch_to_config(frozenset(conf_state.voters), frozenset(conf_state.learners))
        if hard_state != HardState():
            self._load_state(hard_state)
        if config.applied > 0:
            self.log.applied_to(config.applied)
        self.become_follower(self.term, NONE)

    def __repr__(self) -> str:
        return (
            f"Raft(id={self.id}, state={self.state.name}, term={self.term}, lead={self.lead}, "
            f"last={self.log.last_index()}, commit={self.log.committed}, "
            f"applied={self.log.applied})"
        )

    def _load_state(self, hs: HardState) -> None:
        if hs.commit > self.log.last_index():
            raise RaftInvariantError(
                f"raft: persisted commit {hs.commit} beyond last index {self.log.last_index()}"
            )
        self.log.commit_to(hs.commit)
        self.term = hs.term
        self.vote = hs.vote

    # -- state ---------------------------------------------------------------------------

    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.state)

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def promotable(self) -> bool:
        """May this node become leader: a voter, with no snapshot waiting to be installed."""
        return (
            self.id in self.progress and not self.is_learner and not self.log.has_pending_snapshot()
        )

    # -- output --------------------------------------------------------------------------

    def _send(
        self,
        mtype: MessageType,
        to: int,
        term: int | None = None,
        *,
        log_term: int = 0,
        index: int = 0,
        entries: tuple[Entry, ...] = (),
        commit: int = 0,
        snapshot: Snapshot | None = None,
        reject: bool = False,
        reject_hint: int = 0,
        context: bytes = b"",
    ) -> None:
        """Queue a message. Vote messages carry an explicit term; PROP and READ_INDEX carry
        none (they are forwarded like local requests); everything else carries ours.
        Types in ``_AFTER_APPEND`` wait for the Ready to be persisted."""
        if mtype in _VOTE_TYPES:
            if not term:
                raise RaftInvariantError(f"raft: {mtype.name} without a term")
        elif term is not None:
            raise RaftInvariantError(f"raft: explicit term on {mtype.name}")
        else:
            term = 0 if mtype in _TERMLESS else self.term
        m = Message(
            mtype,
            to,
            self.id,
            term,
            log_term=log_term,
            index=index,
            entries=entries,
            commit=commit,
            snapshot=snapshot,
            reject=reject,
            reject_hint=reject_hint,
            context=context,
        )
        if mtype in _AFTER_APPEND:
            self.msgs_after_append.append(m)
        else:
            self.msgs.append(m)

    def _forward(self, m: Message) -> None:
        self.msgs.append(m)

    # -- role changes --------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_election_timeout()
        self.lead_transferee = NONE
        self.votes = {}
        last = self.log.last_index()
        for pid, pr in self.progress.items():
            self.progress[pid] = Progress(
                last + 1, self.max_inflight, self.max_inflight_bytes, pr.is_learner
            )
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly()
        self.pending_read_index_messages = []

    def _reset_randomized_election_timeout(self) -> None:
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(
            self.election_timeout
        )

    def become_follower(self, term: int, lead: int) -> None:
        self._step = self._step_follower
        self._reset(term)
        self._tick = self._tick_election
        self.lead = lead
        self.state = StateType.FOLLOWER

    def become_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise RaftInvariantError("raft: invalid transition leader -> candidate")
        self._step = self._step_candidate
        self._reset(self.term + 1)
        self._tick = self._tick_election
        self.vote = self.id
        self.state = StateType.CANDIDATE

    def become_pre_candidate(self) -> None:
        """Start a pre-vote round: neither the term nor the vote changes (thesis §9.6)."""
        if self.state == StateType.LEADER:
            raise RaftInvariantError("raft: invalid transition leader -> pre-candidate")
        self._step = self._step_candidate
        self.votes = {}
        self._tick = self._tick_election
        self.lead = NONE
        self.state = StateType.PRE_CANDIDATE

    def become_leader(self) -> None:
        if self.state == StateType.FOLLOWER:
            raise RaftInvariantError("raft: invalid transition follower -> leader")
        self._step = self._step_leader
        self._reset(self.term)
        self._tick = self._tick_heartbeat
        self.lead = self.id
        self.state = StateType.LEADER
        me = self.progress.get(self.id)
        if me is not None:
            me.become_replicate()
            me.recent_active = True
        # No conf change until everything before our term is applied (see _step_leader).
        self.pending_conf_index = self.log.last_index()
        # Commit an entry of our own term to learn what is committed (§5.4.2, §8).
        self._append_entries([Entry(0, 0)])

    # -- input ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance the logical clock by one tick."""
        self._tick()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.step(Message(_MT.HUP, self.id, self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(_MT.CHECK_QUORUM, self.id, self.id))
            # A transfer that did not finish within an election timeout is abandoned.
            if self.state == StateType.LEADER and self.lead_transferee != NONE:
                self.lead_transferee = NONE
        if self.state != StateType.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(_MT.BEAT, self.id, self.id))

    def step(self, m: Message) -> None:
        """Consume one message. Raises ProposalDropped / ReadIndexDropped when a PROP or
        READ_INDEX cannot be taken, whether local or forwarded by a peer (RawNode.step drops a
        forwarded one silently); every other outcome is expressed through output messages."""
        if m.term == 0:
            pass  # local message, or a forwarded proposal / read
        elif m.term > self.term:
            if m.type in (_MT.VOTE, _MT.PRE_VOTE):
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.election_timeout
                )
                if not force and in_lease:
                    # We heard from a leader within the minimum election timeout: do not let a
                    # disruptive server raise our term (thesis §4.2.3).
                    return
            if m.type == _MT.PRE_VOTE:
                pass  # a pre-vote never changes our term
            elif m.type == _MT.PRE_VOTE_RESP and not m.reject:
                pass  # granted for the term we would campaign in; counted below
            elif m.type in (_MT.APP, _MT.HEARTBEAT, _MT.SNAP):
                self.become_follower(m.term, m.frm)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and m.type in (_MT.HEARTBEAT, _MT.APP):
                # A leader that was partitioned away would never learn our higher term (we
                # ignore its messages and, with pre-vote, nobody raises terms near it): tell it,
                # so that it steps down.
                self._send(_MT.APP_RESP, m.frm)
            elif m.type == _MT.PRE_VOTE:
                self._send(_MT.PRE_VOTE_RESP, m.frm, term=self.term, reject=True)
            return

        t = m.type
        if t == _MT.HUP:
            self._hup(CampaignType.PRE_ELECTION if self.pre_vote else CampaignType.ELECTION)
        elif t == _MT.VOTE or t == _MT.PRE_VOTE:
            self._handle_vote_request(m)
        else:
            self._step(m)

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.frm
            or (self.vote == NONE and self.lead == NONE)
            or (m.type == _MT.PRE_VOTE and m.term > self.term)
        )
        resp = _MT.VOTE_RESP if m.type == _MT.VOTE else _MT.PRE_VOTE_RESP
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # §5.2, §5.4.1. The grant is in msgs_after_append: sent once the vote is durable.
            self._send(resp, m.frm, term=m.term)
            if m.type == _MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(resp, m.frm, term=self.term, reject=True)

    # -- elections -----------------------------------------------------------------------

    def _hup(self, kind: CampaignType) -> None:
        if self.state == StateType.LEADER:
            return
        if not self.promotable():
            return
        if self._has_unapplied_conf_change():
            # Our configuration may be about to change: wait until it is applied.
            return
        self._campaign(kind)

    def _has_unapplied_conf_change(self) -> bool:
        lo, hi = self.log.applied + 1, self.log.committed + 1
        if lo >= hi:
            return False
        try:
            ents = self.log.slice(lo, hi)
        except Compacted:
            return True
        return any(e.type == EntryType.CONF_CHANGE for e in ents)

    def _campaign(self, kind: CampaignType) -> None:
        if kind == CampaignType.PRE_ELECTION:
            self.become_pre_candidate()
            vote_type, resp_type = _MT.PRE_VOTE, _MT.PRE_VOTE_RESP
            term = self.term + 1
        else:
            self.become_candidate()
            vote_type, resp_type = _MT.VOTE, _MT.VOTE_RESP
            term = self.term
        last_index, last_term = self.log.last_index(), self.log.last_term()
        ctx = CAMPAIGN_TRANSFER if kind == CampaignType.TRANSFER else b""
        for vid in sorted(self.voters):
            if vid == self.id:
                # Our own vote, counted once it is durable (see the module docstring).
                self._send(resp_type, vid, term=term)
            else:
                self._send(
                    vote_type, vid, term=term, index=last_index, log_term=last_term, context=ctx
                )

    def _poll(self, node_id: int, granted: bool) -> VoteResult:
        """Record ``node_id``'s first answer in this round and return the round's outcome."""
        self.votes.setdefault(node_id, granted)
        return vote_result(self.voters, self.votes)

    def _own_vote_counted(self) -> bool:
        """Has our own (pre-)vote of this round been stepped back in, i.e. is it durable?

        RawNode steps it in on the ``advance()`` of the Ready that persisted it. A round is
        won only with it, whatever order the answers arrive in (the others' grants may reach
        a majority first: the application sends our vote requests once they are persisted,
        but may step the replies in before calling ``advance()``). So a node never leads, and
        never sends appends, in a term it could forget in a crash, which would let it lead
        that term a second time with another log (thesis §3.8, paper §5.2). A single-node
        cluster thus elects itself on the ``advance()`` that persisted its vote.
        """
        return self.votes.get(self.id) is True

    # -- follower ------------------------------------------------------------------------

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == _MT.PROP:
            if self.lead == NONE:
                raise ProposalDropped(f"raft: {self.id} has no leader to forward a proposal to")
            self._forward(replace(m, to=self.lead))
        elif t == _MT.APP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_append(m)
        elif t == _MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_heartbeat(m)
        elif t == _MT.SNAP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_snapshot(m)
        elif t == _MT.TRANSFER_LEADER:
            if self.lead != NONE:
                self._forward(replace(m, to=self.lead, term=self.term))
        elif t == _MT.TIMEOUT_NOW:
            self._hup(CampaignType.TRANSFER)
        elif t == _MT.READ_INDEX:
            if self.lead == NONE:
                raise ReadIndexDropped(f"raft: {self.id} has no leader to serve a read index")
            self._forward(replace(m, to=self.lead))
        elif t == _MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self._send(_MT.APP_RESP, m.frm, index=self.log.committed)
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(_MT.APP_RESP, m.frm, index=last_new)
            return
        # Reject, with a hint where our logs may match (fast back-off): the largest index at
        # or below the probe whose term is no greater than the leader's term there.
        hint_index = min(m.index, self.log.last_index())
        hint_index, hint_term = self.log.find_conflict_by_term(hint_index, m.log_term)
        self._send(
            _MT.APP_RESP,
            m.frm,
            index=m.index,
            reject=True,
            reject_hint=hint_index,
            log_term=hint_term,
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(m.commit)
        self._send(_MT.HEARTBEAT_RESP, m.frm, context=m.context)

    def _handle_snapshot(self, m: Message) -> None:
        if m.snapshot is None:
            raise RaftInvariantError(f"raft: SNAP from {m.frm} without a snapshot")
        if self._restore(m.snapshot):
            self._send(_MT.APP_RESP, m.frm, index=self.log.last_index())
        else:
            self._send(_MT.APP_RESP, m.frm, index=self.log.committed)

    def _restore(self, s: Snapshot) -> bool:
        """Install ``s`` as our log (§7); False when it tells us nothing new."""
        if s.index <= self.log.committed:
            return False
        if self.state != StateType.FOLLOWER:
            raise RaftInvariantError(f"raft: {self.id} restoring a snapshot as {self.state.name}")
        if self.log.match_term(s.index, s.term):
            # We hold that entry already: just learn that it is committed.
            self.log.commit_to(s.index)
            return False
        self.log.restore(s)
        cs = s.metadata.conf_state
        self.progress = {}
        self._switch_to_config(frozenset(cs.voters), frozenset(cs.learners))
        return True

    # -- candidate -----------------------------------------------------------------------

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        resp_type = _MT.PRE_VOTE_RESP if self.state == StateType.PRE_CANDIDATE else _MT.VOTE_RESP
        if t == _MT.PROP:
            raise ProposalDropped(f"raft: {self.id} is campaigning; no leader to take a proposal")
        if t == _MT.READ_INDEX:
            raise ReadIndexDropped(f"raft: {self.id} is campaigning; no leader to read from")
        if t == _MT.APP:
            self.become_follower(m.term, m.frm)  # §5.2: a leader of our term exists
            self._handle_append(m)
        elif t == _MT.HEARTBEAT:
            self.become_follower(m.term, m.frm)
            self._handle_heartbeat(m)
        elif t == _MT.SNAP:
            self.become_follower(m.term, m.frm)
            self._handle_snapshot(m)
        elif t == resp_type:
            result = self._poll(m.frm, not m.reject)
            if result == VoteResult.WON and self._own_vote_counted():
                if self.state == StateType.PRE_CANDIDATE:
                    self._campaign(CampaignType.ELECTION)
                else:
                    self.become_leader()
                    self._bcast_append()
            elif result == VoteResult.LOST:
                self.become_follower(self.term, NONE)

    # -- leader --------------------------------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == _MT.BEAT:
            self._bcast_heartbeat()
            return
        if t == _MT.CHECK_QUORUM:
            if not self._quorum_active():
                self.become_follower(self.term, NONE)
            for pid, pr in self.progress.items():
                if pid != self.id:
                    pr.recent_active = False
            return
        if t == _MT.PROP:
            self._propose(m)
            return
        if t == _MT.READ_INDEX:
            self._leader_read_index(m)
            return

        pr = self.progress.get(m.frm)
        if pr is None:
            return
        if t == _MT.APP_RESP:
            self._handle_append_response(m, pr)
        elif t == _MT.HEARTBEAT_RESP:
            self._handle_heartbeat_response(m, pr)
        elif t == _MT.SNAP_STATUS:
            if pr.state != ProgressState.SNAPSHOT:
                return
            if m.reject:
                pr.pending_snapshot = 0
            pr.become_probe()
            # Finished: wait for the follower's ack; failed: wait a heartbeat before retrying.
            pr.probe_sent = True
        elif t == _MT.UNREACHABLE:
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
        elif t == _MT.TRANSFER_LEADER:
            self._handle_transfer_leader(m, pr)

    def _propose(self, m: Message) -> None:
        if not m.entries:
            raise RaftInvariantError("raft: proposal without entries")
        if self.id not in self.progress:
            raise ProposalDropped(f"raft: {self.id} is no longer a member")
        if self.lead_transferee != NONE:
            raise ProposalDropped(
                f"raft: leadership transfer to {self.lead_transferee} in progress"
            )
        size = sum(len(e.data) for e in m.entries)
        limit = self.max_uncommitted_size
        if limit is not None and self.uncommitted_size > 0 and self.uncommitted_size + size > limit:
            raise ProposalDropped(f"raft: {self.uncommitted_size} bytes uncommitted, limit {limit}")
        conf = [i for i, e in enumerate(m.entries) if e.type == EntryType.CONF_CHANGE]
        if len(conf) > 1:
            raise ProposalDropped("raft: one conf change at a time")
        if conf:
            if self.pending_conf_index > self.log.applied:
                raise ProposalDropped(
                    f"raft: conf change at {self.pending_conf_index} not applied yet "
                    f"(applied {self.log.applied})"
                )
            self.pending_conf_index = self.log.last_index() + conf[0] + 1
        self.uncommitted_size += size
        self._append_entries(list(m.entries))
        self._bcast_append()

    def reduce_uncommitted_size(self, entries: tuple[Entry, ...]) -> None:
        """Committed entries were handed to the application: they no longer count."""
        if self.state == StateType.LEADER and self.uncommitted_size:
            done = sum(len(e.data) for e in entries)
            self.uncommitted_size = max(0, self.uncommitted_size - done)

    def _append_entries(self, entries: list[Entry]) -> None:
        li = self.log.last_index()
        ents = [Entry(self.term, li + 1 + i, e.type, e.data) for i, e in enumerate(entries)]
        li = self.log.append(ents)
        # Our own acknowledgement, stepped back in once the entries are durable.
        self._send(_MT.APP_RESP, self.id, index=li)

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                # The follower's entry at reject_hint has term log_term; skip every entry of
                # ours after that with a greater term, it cannot match either.
                next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decrease_to(m.index, next_probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.frm)
            return

        old_paused = pr.is_paused()
        if not (
            pr.maybe_update(m.index) or (pr.match == m.index and pr.state == ProgressState.PROBE)
        ):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match + 1 >= self.log.first_index():
            # The follower installed the snapshot (or caught up otherwise): stream again.
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)

        if self._maybe_commit():
            self._release_pending_read_index_messages()
            self._bcast_append()
        elif old_paused and m.frm != self.id:
            self._send_append(m.frm)
        if m.frm != self.id:
            # The window may have opened for several messages (e.g. probe -> replicate).
            while self._maybe_send_append(m.frm, send_if_empty=False):
                pass
        if m.frm == self.lead_transferee and pr.match == self.log.last_index():
            self._send(_MT.TIMEOUT_NOW, m.frm)

    def _handle_heartbeat_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        pr.probe_sent = False
        if pr.state == ProgressState.REPLICATE and pr.inflights.full():
            # An append may have been lost: open one slot, so that the next append either goes
            # through or makes the follower reject, which moves it back to probing.
            pr.inflights.free_first_one()
        if pr.match < self.log.last_index() or pr.state == ProgressState.PROBE:
            self._send_append(m.frm)
        if not m.context:
            return
        acks = self.read_only.recv_ack(m.frm, m.context)
        if acks is None:
            return
        if vote_result(self.voters, dict.fromkeys(acks, True)) != VoteResult.WON:
            return
        for rs in self.read_only.advance(m.context):
            self._respond_read_index(rs.req, rs.index)

    def _handle_transfer_leader(self, m: Message, pr: Progress) -> None:
        if pr.is_learner:
            return
        transferee = m.frm
        if self.lead_transferee != NONE:
            if self.lead_transferee == transferee:
                return  # already under way
            self.lead_transferee = NONE
        if transferee == self.id:
            return
        # The transfer must finish within one election timeout (checked in _tick_heartbeat).
        self.election_elapsed = 0
        self.lead_transferee = transferee
        if pr.match == self.log.last_index():
            self._send(_MT.TIMEOUT_NOW, transferee)
        else:
            self._send_append(transferee)

    def _maybe_commit(self) -> bool:
        """Advance the commit index to what a quorum matches, but only through an entry of
        the current term (§5.4.2): older entries get committed indirectly."""
        mci = committed_index(self.voters, {pid: pr.match for pid, pr in self.progress.items()})
        if mci > self.log.committed and self.log.term(mci) == self.term:
            self.log.commit_to(mci)
            return True
        return False

    def _quorum_active(self) -> bool:
        active = {
            pid: (pid == self.id or self.progress[pid].recent_active)
            for pid in self.voters
            if pid in self.progress
        }
        return vote_result(self.voters, active) == VoteResult.WON

    def _bcast_append(self) -> None:
        for pid in self.progress:
            if pid != self.id:
                self._send_append(pid)

    def _send_append(self, to: int) -> None:
        self._maybe_send_append(to, send_if_empty=True)

    def _maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        """Send ``to`` the entries after its ``next`` (or a snapshot if they are compacted);
        report whether a message went out."""
        pr = self.progress[to]
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        try:
            prev_term = self.log.term(prev_index)
            ents = self.log.entries(pr.next, self.max_msg_size)
        except Compacted:
            return self._maybe_send_snapshot(to, pr)
        except Unavailable as exc:
            raise RaftInvariantError(f"raft: progress of {to} beyond our log: {pr}") from exc
        if not ents and not send_if_empty:
            return False
        self._send(
            _MT.APP,
            to,
            index=prev_index,
            log_term=prev_term,
            entries=tuple(ents),
            commit=self.log.committed,
        )
        pr.sent_entries(ents[-1].index if ents else None, sum(entry_size(e) for e in ents))
        return True

    def _maybe_send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # it may be down; do not spend a snapshot on it
        try:
            snap = self.log.snapshot()
        except SnapshotTemporarilyUnavailable:
            return False
        if snap.is_empty():
            raise RaftInvariantError("raft: log compacted but storage has no snapshot")
        self._send(_MT.SNAP, to, snapshot=snap)
        pr.become_snapshot(snap.index)
        return True

    def _bcast_heartbeat(self, ctx: bytes | None = None) -> None:
        if ctx is None:
            ctx = self.read_only.last_pending_ctx()
        committed = self.log.committed
        for pid, pr in self.progress.items():
            if pid != self.id:
                # Never tell a follower to commit past what it is known to hold.
                self._send(_MT.HEARTBEAT, pid, commit=min(pr.match, committed), context=ctx)

    # -- ReadIndex (thesis §6.4) ---------------------------------------------------------

    def _committed_entry_in_current_term(self) -> bool:
        return self.log.term(self.log.committed) == self.term

    def _leader_read_index(self, m: Message) -> None:
        if not self._committed_entry_in_current_term():
            # Until an entry of our term commits we do not know the true commit index.
            self.pending_read_index_messages.append(m)
            return
        if self.voters == {self.id}:
            self._respond_read_index(m, self.log.committed)
            return
        self._send_read_index(m)

    def _send_read_index(self, m: Message) -> None:
        self.read_only.add_request(self.log.committed, m)
        self.read_only.recv_ack(self.id, m.context)
        self._bcast_heartbeat(m.context)

    def _release_pending_read_index_messages(self) -> None:
        if not self.pending_read_index_messages or not self._committed_entry_in_current_term():
            return
        pending, self.pending_read_index_messages = self.pending_read_index_messages, []
        for m in pending:
            self._leader_read_index(m)

    def _respond_read_index(self, req: Message, index: int) -> None:
        if req.frm in (NONE, self.id):
            self.read_states.append(ReadState(index, req.context))
        else:
            self._send(_MT.READ_INDEX_RESP, req.frm, index=index, context=req.context)

    # -- membership (thesis §4.1) --------------------------------------------------------

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed conf change and return the new configuration.

        Total and deterministic, so every node computes the same configuration: adding an
        existing voter, removing a non-member, demoting a voter (ADD_LEARNER_NODE on a voter)
        and removing the last voter change nothing.
        """
        voters, learners = set(self.voters), set(self.learners)
        nid = cc.node_id
        if cc.type == ConfChangeType.ADD_NODE:
            learners.discard(nid)
            voters.add(nid)
        elif cc.type == ConfChangeType.ADD_LEARNER_NODE:
            if nid not in voters:
                learners.add(nid)
        elif cc.type == ConfChangeType.REMOVE_NODE and voters != {nid}:
            voters.discard(nid)
            learners.discard(nid)
        return self._switch_to_config(frozenset(voters), frozenset(learners))

    def conf_state(self) -> ConfState:
        return ConfState(tuple(sorted(self.voters)), tuple(sorted(self.learners)))

    def _switch_to_config(self, voters: frozenset[int], learners: frozenset[int]) -> ConfState:
        last = self.log.last_index()
        progress: dict[int, Progress] = {}
        for pid in sorted(voters | learners):
            pr = self.progress.get(pid)
            if pr is None:
                pr = Progress(last + 1, self.max_inflight, self.max_inflight_bytes)
                # Give a new member a chance before check-quorum counts it as silent.
                pr.recent_active = True
            pr.is_learner = pid in learners
            progress[pid] = pr
        self.progress = progress
        self.voters = voters
        self.learners = learners
        self.is_learner = self.id in learners
        cs = self.conf_state()

        if self.state in (StateType.CANDIDATE, StateType.PRE_CANDIDATE) and not self.promotable():
            self.become_follower(self.term, NONE)
            return cs
        if self.state != StateType.LEADER:
            return cs
        if self.id not in voters:
            # Removed (or never a voter): step down; the others elect a leader among themselves.
            self.become_follower(self.term, NONE)
            return cs
        if self.lead_transferee != NONE and self.lead_transferee not in voters:
            self.lead_transferee = NONE
        # The quorum changed: something may now be committed, and new members need the log.
        if self._maybe_commit():
            self._release_pending_read_index_messages()
            self._bcast_append()
        else:
            for pid in self.progress:
                if pid != self.id:
                    self._maybe_send_append(pid, send_if_empty=False)
        return cs
