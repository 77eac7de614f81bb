"""Deterministic simulation of a Raft cluster under faults, with safety checkers.

One seed drives everything (tigerbeetle's VOPR habit): the options of the run, each node's
election jitter, the network (drop, delay, duplicate, reorder, partition, stragglers held for
several election timeouts), crashes (including in the middle of handling a Ready, and quick
restarts), client proposals, ReadIndex requests, leader transfers, membership changes and log
compaction. The same seed replays the same run exactly.

Each node is a RawNode over a MemoryStorage that plays the disk: a crash throws the RawNode
and the state machine away and keeps only what the driver had written to storage; a
restart rebuilds the state machine from the storage snapshot and re-applies the log. Messages
in flight survive a crash both ways: those a previous incarnation sent are still delivered,
and some addressed to an incarnation that has crashed since are held, then delivered to a
later incarnation together, at the moment it starts campaigning (when stale vote grants do
the most harm) or at a random time. Deliveries happen at random points among the nodes'
Ready handling, so a node may receive messages between an input (a tick that starts a
campaign) and its next ``ready()``.

Checkers (raising :class:`SafetyViolation`) run after every step and every Ready:

* election safety: at most one leader per term (§5.2), counting each incarnation of a node
  as a different leader: a node leading a term twice across a crash forgot it led it;
* persist before send (thesis §3.8): no message a Ready lets leave before it is persisted
  carries a term newer than the node's durable term, and a leader's term and self-vote are
  durable;
* log matching: an (index, term) pair always names the same entry, preceded by the same term
  (§5.3), checked on every entry a node persists and on the whole durable logs periodically;
* leader completeness: an entry committed in term T is in the log of every leader of a term
  after T, as it was when that leader was elected (§5.4); T is the term of the leader that
  committed the entry, seen as the lowest term of a node when its commit index passed it;
* state machine safety: every node applies the same entry at each index (§5.4.3), and a
  snapshot's state equals the state the appliers computed at its index;
* ReadIndex: a read state's index covers every entry committed before the read was asked.

After the fault phase everything heals (all nodes up, no partitions, no loss); the run must
then elect a leader the whole cluster follows within a bound, and commit and apply every
later proposal within a bound (:class:`LivenessViolation` otherwise).
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import random
import struct
from dataclasses import dataclass, field

from etcdlite.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDropped,
    RawNode,
    ReadIndexDropped,
    Ready,
    Snapshot,
    SnapshotMetadata,
    StateType,
    describe_message,
)
from etcdlite.raft.errors import Compacted


class SafetyViolation(AssertionError):
    """A Raft safety property does not hold."""


class LivenessViolation(AssertionError):
    """The healed cluster did not elect a leader or commit a proposal in time."""


# ---------------------------------------------------------------------------------------
# Options derived from the seed
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimOptions:
    seed: int
    initial_voters: int
    pre_vote: bool
    check_quorum: bool
    election_tick: int
    heartbeat_tick: int
    max_inflight: int
    max_size_per_msg: int | None
    max_uncommitted_size: int | None
    bootstrap_with_log: bool
    drop_rate: float
    duplicate_rate: float
    max_delay_ticks: int
    disk_overlap: float
    crash_rate: float
    crash_in_ready_rate: float
    crash_on_new_term_rate: float
    fast_restart_rate: float
    survive_crash_rate: float
    straggler_rate: float
    partition_rate: float
    propose_rate: float
    read_rate: float
    transfer_rate: float
    conf_change_rate: float
    snapshot_every: int | None
    snapshot_keep: int
    fault_ticks: int
    leader_bound_ticks: int
    commit_bound_ticks: int
    liveness_proposals: int

    @classmethod
    def from_seed(cls, seed: int, fault_ticks: int | None = None) -> SimOptions:
        rng = random.Random(f"options-{seed}")
        election = rng.choice([6, 10])
        heartbeat = rng.choice([1, 2])
        max_delay = rng.choice([0, 1, 2, 4])
        return cls(
            seed=seed,
            initial_voters=rng.choice([3, 3, 3, 5]),
            pre_vote=rng.random() < 0.6,
            check_quorum=rng.random() < 0.6,
            election_tick=election,
            heartbeat_tick=heartbeat,
            max_inflight=rng.choice([1, 2, 4, 64]),
            max_size_per_msg=rng.choice([None, 40, 100, 400]),
            max_uncommitted_size=rng.choice([None, 100, 1000]),
            bootstrap_with_log=rng.random() < 0.5,
            drop_rate=rng.choice([0.0, 0.02, 0.1, 0.25]),
            duplicate_rate=rng.choice([0.0, 0.02, 0.1]),
            max_delay_ticks=max_delay,
            disk_overlap=rng.choice([0.0, 0.5, 0.8]),
            crash_rate=rng.choice([0.0, 0.005, 0.02]),
            crash_in_ready_rate=rng.choice([0.0, 0.005, 0.02]),
            # Crash before persisting a Ready that raises the term (a campaign, a vote, a term
            # learned from a message): the node forgets the term, while what the Ready let
            # out before persisting is out.
            crash_on_new_term_rate=rng.choice([0.0, 0.05, 0.2]),
            # A crashed node restarts within a tick (often still in the middle of the
            # election it was running) rather than after 3 to 8 election timeouts.
            fast_restart_rate=rng.choice([0.0, 0.5, 0.9]),
            # A message whose target crashed after it was sent is held for a later
            # incarnation (and delivered when it campaigns, or at a random time).
            survive_crash_rate=rng.choice([0.0, 0.5, 1.0]),
            # A message is held back for one to three election timeouts.
            straggler_rate=rng.choice([0.0, 0.01, 0.05]),
            partition_rate=rng.choice([0.0, 0.01, 0.03]),
            propose_rate=rng.choice([0.2, 0.5, 0.9]),
            read_rate=rng.choice([0.0, 0.05, 0.2]),
            transfer_rate=rng.choice([0.0, 0.005, 0.02]),
            conf_change_rate=rng.choice([0.0, 0.0, 0.01, 0.03]),
            snapshot_every=rng.choice([None, 5, 20]),
            snapshot_keep=rng.choice([0, 2, 10]),
            fault_ticks=fault_ticks if fault_ticks is not None else rng.randint(150, 300),
            # Generous bounds: a healed cluster elects within a few election timeouts, but a
            # pre-vote round, a randomized timeout and delayed messages each add to it.
            leader_bound_ticks=40 * election + 10 * max_delay,
            commit_bound_ticks=20 * election + 10 * max_delay,
            liveness_proposals=5,
        )


# ---------------------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------------------

_GENESIS = b"\x00" * 16
_SNAP = struct.Struct(">Q16s")


def _digest(prev: bytes, e: Entry) -> bytes:
    h = hashlib.blake2b(prev, digest_size=16)
    h.update(struct.pack(">QQB", e.index, e.term, int(e.type)))
    h.update(e.data)
    return h.digest()


@dataclass
class SimNode:
    id: int
    storage: MemoryStorage
    rng: random.Random
    raw: RawNode | None = None
    incarnation: int = 0
    down_until: int = 0
    retired: bool = False
    # The state machine: a hash chain over every applied entry.
    sm_index: int = 0
    sm_digest: bytes = _GENESIS
    conf_state: ConfState = field(default_factory=ConfState)
    seen_commit: int = 0
    writing: Ready | None = None
    role: tuple[StateType, int] = (StateType.FOLLOWER, 0)
    """(state, term) when last checked: a change to candidate releases held messages."""

    @property
    def up(self) -> bool:
        return self.raw is not None


# ---------------------------------------------------------------------------------------
# The simulation
# ---------------------------------------------------------------------------------------


class Simulation:
    def __init__(self, options: SimOptions, trace: bool = False) -> None:
        self.opt = options
        self.rng = random.Random(options.seed)
        self.trace_enabled = trace
        self.trace: list[str] = []
        self.now = 0
        self.net: list[tuple[int, float, int, Message, int, int]] = []
        """(due tick, tie-break, seq, message, sender's incarnation, target's incarnation
        when sent)."""
        self._seq = 0
        self.group: dict[int, int] = {}  # partition group per node; absent = group 0
        self.held: dict[int, list[tuple[Message, int]]] = {}
        """node id -> messages (with the sender's incarnation) addressed to an incarnation of
        it that crashed since, waiting for a later one; see :meth:`release_held`."""
        self.nodes: dict[int, SimNode] = {}
        self.next_id = options.initial_voters + 1
        self.initial = tuple(range(1, options.initial_voters + 1))
        self.faults = True
        # Checker state.
        self.leader_of_term: dict[int, tuple[int, int]] = {}
        """term -> (node id, incarnation) of its leader."""
        self.leader_logs: dict[int, tuple[int, tuple[int, ...]]] = {}
        """term -> its leader's log when first seen leading: (first index, entry terms)."""
        self.identity: dict[tuple[int, int], tuple[EntryType, bytes, int]] = {}
        self.committed: dict[int, tuple[int, EntryType, bytes]] = {}
        self.commit_term: dict[int, int] = {}
        self.digest_at: dict[int, bytes] = {}
        self.read_floor: dict[bytes, int] = {}
        self.counter = 0
        self.stats = {"ticks": 0, "steps": 0, "readys": 0, "crashes": 0, "reads": 0}

        for nid in self.initial:
            storage = MemoryStorage()
            if not options.bootstrap_with_log:
                meta = SnapshotMetadata(index=1, term=1, conf_state=ConfState(self.initial))
                data = _SNAP.pack(1, _GENESIS)
                storage.apply_snapshot(Snapshot(data=data, metadata=meta))
                storage.set_hard_state(HardState(term=1, commit=1))
            self._add_node(nid, storage)
        if not options.bootstrap_with_log:
            self.digest_at[1] = _GENESIS

    # -- helpers ---------------------------------------------------------------------------

    def log(self, text: str) -> None:
        if self.trace_enabled:
            self.trace.append(f"[{self.now:5d}] {text}")

    def fail(self, text: str) -> SafetyViolation:
        return SafetyViolation(f"seed {self.opt.seed} tick {self.now}: {text}")

    def _add_node(self, nid: int, storage: MemoryStorage) -> SimNode:
        node = SimNode(nid, storage, random.Random(self.rng.getrandbits(64)))
        self.nodes[nid] = node
        self._start(node)
        return node

    def _start(self, node: SimNode) -> None:
        snap = node.storage.snapshot()
        if snap.index > 0:
            node.sm_index, node.sm_digest = _SNAP.unpack(snap.data)
        else:
            node.sm_index, node.sm_digest = 0, _GENESIS
        node.conf_state = snap.metadata.conf_state
        node.seen_commit = max(node.storage.hard_state.commit, snap.index)
        o = self.opt
        cfg = Config(
            id=node.id,
            storage=node.storage,
            rng=random.Random(node.rng.getrandbits(64)),
            election_tick=o.election_tick,
            heartbeat_tick=o.heartbeat_tick,
            applied=snap.index,
            max_size_per_msg=o.max_size_per_msg,
            max_inflight=o.max_inflight,
            max_uncommitted_entries_size=o.max_uncommitted_size,
            pre_vote=o.pre_vote,
            check_quorum=o.check_quorum,
        )
        node.raw = RawNode(cfg)
        node.incarnation += 1
        if (
            self.opt.bootstrap_with_log
            and node.id in self.initial
            and node.storage.last_index() == 0
        ):
            node.raw.bootstrap(self.initial)
        self.log(f"start {node.id} (incarnation {node.incarnation})")

    def _crash(self, node: SimNode) -> None:
        node.raw = None
        node.writing = None
        if self.rng.random() < self.opt.fast_restart_rate:
            node.down_until = self.now + self.rng.randint(0, 1)
        else:
            node.down_until = self.now + self.rng.randint(3, 8 * self.opt.election_tick)
        self.stats["crashes"] += 1
        self.log(f"crash {node.id}")

    def up_nodes(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.up]

    def leaders(self) -> list[SimNode]:
        return [
            n
            for n in self.nodes.values()
            if n.raw is not None and n.raw.raft.state == StateType.LEADER
        ]

    # -- network ---------------------------------------------------------------------------

    def send(self, m: Message) -> None:
        sender = self.nodes[m.frm]
        copies = 1
        if self.faults and self.rng.random() < self.opt.duplicate_rate:
            copies = 2
        for _ in range(copies):
            delay = self.rng.randint(0, self.opt.max_delay_ticks)
            if self.faults and self.rng.random() < self.opt.straggler_rate:
                delay += self.rng.randint(self.opt.election_tick, 3 * self.opt.election_tick)
            self._queue(m, self.now + delay, sender.incarnation)

    def _queue(self, m: Message, due: int, incarnation: int) -> None:
        """Put ``m`` (sent by ``incarnation`` of its sender) on the wire until ``due``."""
        target = self.nodes.get(m.to)
        to_inc = target.incarnation if target is not None else 0
        self._seq += 1
        heapq.heappush(self.net, (due, self.rng.random(), self._seq, m, incarnation, to_inc))

    def connected(self, a: int, b: int) -> bool:
        return self.group.get(a, 0) == self.group.get(b, 0)

    def _report(self, m: Message, incarnation: int, delivered: bool) -> None:
        sender = self.nodes.get(m.frm)
        if sender is None or sender.raw is None or sender.incarnation != incarnation:
            return
        if m.type == MessageType.SNAP:
            sender.raw.report_snapshot(m.to, delivered)
        elif not delivered and self.rng.random() < 0.3:
            sender.raw.report_unreachable(m.to)

    def deliver_due(self) -> bool:
        moved = False
        while self.net and self.net[0][0] <= self.now:
            _, _, _, m, inc, to_inc = heapq.heappop(self.net)
            moved = True
            target = self.nodes.get(m.to)
            if (
                self.faults
                and target is not None
                and not target.retired
                and (target.raw is None or target.incarnation != to_inc)
                and self.rng.random() < self.opt.survive_crash_rate
            ):
                # Addressed to an incarnation that crashed since: held (a buffer, a
                # retransmission) for a later incarnation.
                self.held.setdefault(target.id, []).append((m, inc))
                continue
            if (
                target is None
                or target.raw is None
                or not self.connected(m.frm, m.to)
                or (self.faults and self.rng.random() < self.opt.drop_rate)
            ):
                self.log(f"drop {describe_message(m)}")
                self._report(m, inc, delivered=False)
                continue
            self.log(f"deliver {describe_message(m)}")
            # A forwarded request the target cannot take is dropped by RawNode.step.
            target.raw.step(m)
            self.stats["steps"] += 1
            self._report(m, inc, delivered=True)
            self.check_node(target)
        return moved

    # -- Ready handling --------------------------------------------------------------------

    def start_ready(self, node: SimNode) -> None:
        """Take a Ready and send what may go before persisting; the disk write starts."""
        raw = node.raw
        assert raw is not None and node.writing is None
        rd = raw.ready()
        self.stats["readys"] += 1
        self.check_ready(node, rd)
        durable = node.storage.hard_state.term
        for m in rd.messages:
            if m.term > durable:
                raise self.fail(
                    f"node {node.id} may send {describe_message(m)} before persisting term "
                    f"{m.term} (durable term {durable})"
                )
            self.send(m)
        node.writing = rd

    def finish_ready(self, node: SimNode) -> None:
        """The disk write completes: persist, send acknowledgements, apply, advance.

        Between start_ready and this, the node keeps receiving messages (the API allows
        input between ready() and advance()), as a leader does while its disk is busy.
        """
        raw, rd = node.raw, node.writing
        assert raw is not None and rd is not None
        node.writing = None
        new_term = rd.hard_state is not None and rd.hard_state.term > node.storage.hard_state.term
        if self._crash_point() or (
            new_term and self.faults and self.rng.random() < self.opt.crash_on_new_term_rate
        ):
            self._crash(node)  # before persisting: only the messages above escaped
            return
        if rd.snapshot is not None:
            node.storage.apply_snapshot(rd.snapshot)
        node.storage.append(rd.entries)
        if rd.hard_state is not None:
            node.storage.set_hard_state(rd.hard_state)
        if self._crash_point():
            self._crash(node)  # persisted, but acknowledgements never sent
            return
        for m in rd.messages_after_append:
            self.send(m)
        if rd.snapshot is not None:
            self.install_snapshot(node, rd.snapshot)
        for e in rd.committed_entries:
            self.apply(node, e)
        for rs in rd.read_states:
            floor = self.read_floor.pop(rs.request_ctx, None)
            if floor is not None and rs.index < floor:
                raise self.fail(
                    f"node {node.id} read index {rs.index} misses commit {floor} "
                    f"known when read {rs.request_ctx!r} was issued"
                )
        raw.advance(rd)
        self.maybe_compact(node)
        self.check_node(node)
        self._retire_pending()

    def _crash_point(self) -> bool:
        return self.faults and self.rng.random() < self.opt.crash_in_ready_rate

    def install_snapshot(self, node: SimNode, snap: Snapshot) -> None:
        index, digest = _SNAP.unpack(snap.data)
        if index != snap.index:
            raise self.fail(f"snapshot data for {index} labelled {snap.index}")
        known = self.digest_at.get(index)
        if known is not None and known != digest:
            raise self.fail(f"node {node.id} installed a snapshot at {index} with another state")
        node.sm_index, node.sm_digest = index, digest
        node.conf_state = snap.metadata.conf_state

    def apply(self, node: SimNode, e: Entry) -> None:
        if e.index != node.sm_index + 1:
            raise self.fail(f"node {node.id} applies {e.index} after {node.sm_index}")
        self.record_committed(e, node.raw.raft.term if node.raw else 0)
        node.sm_digest = _digest(node.sm_digest, e)
        node.sm_index = e.index
        known = self.digest_at.setdefault(e.index, node.sm_digest)
        if known != node.sm_digest:
            raise self.fail(f"node {node.id} state at {e.index} differs from another node's")
        if e.type == EntryType.CONF_CHANGE:
            assert node.raw is not None
            cc = ConfChange.decode(e.data)
            node.conf_state = node.raw.apply_conf_change(cc)
            self.log(f"node {node.id} applied {cc}: {node.conf_state}")

    def maybe_compact(self, node: SimNode) -> None:
        every = self.opt.snapshot_every
        if every is None:
            return
        snap_index = node.storage.snapshot().index
        if node.sm_index - snap_index < every:
            return
        data = _SNAP.pack(node.sm_index, node.sm_digest)
        node.storage.create_snapshot(node.sm_index, node.conf_state, data)
        compact_to = node.sm_index - self.opt.snapshot_keep
        if compact_to >= node.storage.first_index():
            node.storage.compact(compact_to)
        self.log(f"node {node.id} snapshot at {node.sm_index}, compacted to {compact_to}")

    # -- checkers --------------------------------------------------------------------------

    def record_committed(self, e: Entry, term: int) -> None:
        """``e`` is committed, as seen by a node whose current term is ``term``.

        A node's commit index passes an entry either on the leader that commits it (in the
        leader's term) or on learning it from a leader (in that leader's term, at least the
        committing leader's). The lowest term seen is therefore the term in which the entry
        was committed: it must be in the log of every leader of a later term.
        """
        known = self.committed.get(e.index)
        if known is None:
            self.committed[e.index] = (e.term, e.type, e.data)
            self.commit_term[e.index] = term
            self._check_leaders_hold(e, term)
            if e.type == EntryType.CONF_CHANGE:
                self._on_conf_change_committed(ConfChange.decode(e.data))
        elif known != (e.term, e.type, e.data):
            raise self.fail(f"two different entries committed at index {e.index}")
        elif term < self.commit_term[e.index]:
            self.commit_term[e.index] = term
            self._check_leaders_hold(e, term)

    def _check_leaders_hold(self, e: Entry, term: int) -> None:
        """Every leader of a term after ``term`` (past or present) had ``e`` when elected."""
        for lterm, (first, terms) in self.leader_logs.items():
            if lterm <= term or e.index < first:
                continue  # (below ``first``: compacted into the leader's snapshot)
            k = e.index - first
            if k >= len(terms) or terms[k] != e.term:
                leader, inc = self.leader_of_term[lterm]
                raise self.fail(
                    f"leader {leader} (incarnation {inc}) of term {lterm} lacked entry "
                    f"{e.term}/{e.index} committed in term {term}"
                )

    def observe_commit(self, node: SimNode) -> None:
        """Record every entry the node's (in-memory) commit index passed since last seen."""
        r = node.raw.raft  # type: ignore[union-attr]
        if r.log.committed <= node.seen_commit:
            return
        lo = max(node.seen_commit + 1, r.log.first_index())
        for e in r.log.slice(lo, r.log.committed + 1):
            self.record_committed(e, r.term)
        node.seen_commit = r.log.committed

    def check_ready(self, node: SimNode, rd: Ready) -> None:
        r = node.raw.raft  # type: ignore[union-attr]
        for e in rd.entries:
            prev_term = r.log.term(e.index - 1)
            ident = (e.type, e.data, prev_term)
            known = self.identity.setdefault((e.index, e.term), ident)
            if known != ident:
                raise self.fail(
                    f"log matching: node {node.id} has another entry at {e.term}/{e.index}"
                )

    def check_node(self, node: SimNode) -> None:
        if node.raw is None:
            return
        self.observe_commit(node)
        r = node.raw.raft
        if (r.state, r.term) != node.role:
            node.role = (r.state, r.term)
            if r.state in (StateType.CANDIDATE, StateType.PRE_CANDIDATE):
                self.release_held(node)  # the worst moment for stale replies to arrive
        if r.state != StateType.LEADER:
            return
        me = (node.id, node.incarnation)
        first = self.leader_of_term.setdefault(r.term, me)
        if first != me:
            raise self.fail(
                f"two leaders in term {r.term}: node {first[0]} (incarnation {first[1]}) "
                f"and node {me[0]} (incarnation {me[1]})"
            )
        hs = node.storage.hard_state
        if (hs.term, hs.vote) != (r.term, node.id):
            raise self.fail(
                f"node {node.id} leads term {r.term} with durable term {hs.term}, vote {hs.vote}"
            )
        if r.term not in self.leader_logs:
            self._check_leader_completeness(node)

    def _check_leader_completeness(self, node: SimNode) -> None:
        """A new leader holds every entry committed in an earlier term; remember its log
        for the entries that get committed later in earlier terms."""
        r = node.raw.raft  # type: ignore[union-attr]
        first = r.log.first_index()
        terms = tuple(e.term for e in r.log.slice(first, r.log.last_index() + 1))
        self.leader_logs[r.term] = (first, terms)
        for index, (term, _, _) in self.committed.items():
            if self.commit_term[index] >= r.term or index < first:
                continue
            if not r.log.match_term(index, term):
                raise self.fail(
                    f"leader {node.id} of term {r.term} lacks entry {term}/{index} committed "
                    f"in term {self.commit_term[index]}"
                )

    def check_durable_logs(self) -> None:
        """Every durable log is a chain of known (index, term) identities."""
        for node in self.nodes.values():
            st = node.storage
            first, last = st.first_index(), st.last_index()
            if last < first:
                continue
            prev_term = st.term(first - 1)
            for e in st.entries(first, last + 1):
                known = self.identity.get((e.index, e.term))
                if known is None or known != (e.type, e.data, prev_term):
                    raise self.fail(f"node {node.id} durable log diverges at {e.term}/{e.index}")
                prev_term = e.term

    # -- membership ------------------------------------------------------------------------

    def _on_conf_change_committed(self, cc: ConfChange) -> None:
        if cc.type != ConfChangeType.REMOVE_NODE:
            return
        node = self.nodes.get(cc.node_id)
        if node is None or node.retired:
            return
        # An operator shuts a member down once its removal is committed (done between steps,
        # see _retire_pending: the node may be in the middle of handling a Ready).
        node.retired = True
        self.log(f"retire {cc.node_id}")

    def _retire_pending(self) -> None:
        for node in self.nodes.values():
            if node.retired and node.raw is not None:
                node.raw = None
                node.writing = None

    def members(self, leader: SimNode) -> set[int]:
        r = leader.raw.raft  # type: ignore[union-attr]
        return {i for i in r.voters | r.learners if not self.nodes[i].retired}

    def maybe_change_membership(self) -> None:
        leaders = self.leaders()
        if not leaders:
            return
        leader = max(leaders, key=lambda n: n.raw.raft.term)  # type: ignore[union-attr]
        r = leader.raw.raft  # type: ignore[union-attr]
        voters, learners = sorted(r.voters), sorted(r.learners)
        choices: list[ConfChange] = []
        if len(voters) + len(learners) < 5:
            choices.append(ConfChange(ConfChangeType.ADD_LEARNER_NODE, self.next_id))
        if learners:
            choices.append(ConfChange(ConfChangeType.ADD_NODE, self.rng.choice(learners)))
            choices.append(ConfChange(ConfChangeType.REMOVE_NODE, self.rng.choice(learners)))
        if len(voters) >= 4:
            choices.append(ConfChange(ConfChangeType.REMOVE_NODE, self.rng.choice(voters)))
        if not choices:
            return
        cc = self.rng.choice(choices)
        try:
            leader.raw.propose_conf_change(cc)  # type: ignore[union-attr]
        except ProposalDropped:
            return
        self.log(f"propose {cc} at {leader.id}")
        if cc.type == ConfChangeType.ADD_LEARNER_NODE:
            self.next_id += 1
            self._add_node(cc.node_id, MemoryStorage())

    # -- the world -------------------------------------------------------------------------

    def propose_somewhere(self) -> None:
        up = self.up_nodes()
        if not up:
            return
        node = self.rng.choice(up)
        self.counter += 1
        with contextlib.suppress(ProposalDropped):
            node.raw.propose(f"{self.opt.seed}:{self.counter}".encode())  # type: ignore[union-attr]

    def read_somewhere(self) -> None:
        up = self.up_nodes()
        if not up:
            return
        node = self.rng.choice(up)
        self.counter += 1
        ctx = f"read-{self.counter}".encode()
        floor = max((n.raw.raft.log.committed for n in up), default=0)  # type: ignore[union-attr]
        try:
            node.raw.read_index(ctx)  # type: ignore[union-attr]
        except ReadIndexDropped:
            return
        self.read_floor[ctx] = floor
        self.stats["reads"] += 1

    def inject_faults(self) -> None:
        o, rng = self.opt, self.rng
        for node in self.nodes.values():
            if not node.up and not node.retired and self.now >= node.down_until:
                self._start(node)
        if rng.random() < o.crash_rate:
            up = self.up_nodes()
            if up:
                self._crash(rng.choice(up))
        if rng.random() < o.partition_rate:
            if self.group and rng.random() < 0.5:
                self.group = {}
                self.log("partition healed")
            else:
                ids = sorted(self.nodes)
                self.group = {i: rng.randint(0, 1) for i in ids}
                self.log(f"partition {self.group}")
        if rng.random() < o.transfer_rate:
            leaders = self.leaders()
            if leaders:
                leader = rng.choice(leaders)
                targets = sorted(leader.raw.raft.voters - {leader.id})  # type: ignore[union-attr]
                if targets:
                    leader.raw.transfer_leader(rng.choice(targets))  # type: ignore[union-attr]
        if rng.random() < o.conf_change_rate:
            self.maybe_change_membership()

    def settle(self) -> None:
        """Handle Readys and deliver due messages until nothing moves (bounded)."""
        for _ in range(200):
            self._retire_pending()
            moved = False
            up = self.up_nodes()
            self.rng.shuffle(up)
            # Deliveries happen at a random point among the nodes' Ready handling: a node may
            # receive messages between its last input and its next ready().
            at = self.rng.randint(0, len(up))
            for k, node in enumerate(up):
                if k == at and self.deliver_due():
                    moved = True
                if node.raw is None:
                    continue
                if node.writing is not None:
                    if self.rng.random() >= self.opt.disk_overlap:
                        self.finish_ready(node)
                        moved = True
                elif node.raw.has_ready():
                    self.start_ready(node)
                    if self.rng.random() >= self.opt.disk_overlap:
                        self.finish_ready(node)
                    moved = True
            if at == len(up) and self.deliver_due():
                moved = True
            if not moved:
                writing = [n for n in up if n.writing is not None and n.raw is not None]
                if not writing:
                    return
                for node in writing:
                    if node.raw is not None and node.writing is not None:  # not just retired
                        self.finish_ready(node)

    def tick(self) -> None:
        self.now += 1
        self.stats["ticks"] += 1
        if self.faults:
            self.inject_faults()
            if self.rng.random() < self.opt.propose_rate:
                self.propose_somewhere()
            if self.rng.random() < self.opt.read_rate:
                self.read_somewhere()
        up = self.up_nodes()
        self.rng.shuffle(up)
        for node in up:
            node.raw.tick()  # type: ignore[union-attr]
            self.check_node(node)
            if node.id in self.held and self.rng.random() < 0.05:
                self.release_held(node)
        self.settle()
        if self.now % 50 == 0:
            self.check_durable_logs()

    def release_held(self, node: SimNode) -> None:
        """Put the messages held for ``node`` back on the wire, due now and addressed to its
        current incarnation: they arrive together, possibly before its next ready()."""
        for m, inc in self.held.pop(node.id, []):
            self._queue(m, self.now, inc)

    def heal(self) -> None:
        self.faults = False
        self.group = {}
        for node in self.nodes.values():
            if not node.up and not node.retired:
                self._start(node)
        for node in self.nodes.values():
            self.release_held(node)
        self.log("healed")

    # -- liveness --------------------------------------------------------------------------

    def stable_leader(self) -> SimNode | None:
        leaders = self.leaders()
        if len(leaders) != 1:
            return None
        leader = leaders[0]
        r = leader.raw.raft  # type: ignore[union-attr]
        for i in self.members(leader):
            n = self.nodes[i]
            if n.raw is None or n.raw.raft.term != r.term or n.raw.raft.lead != leader.id:
                return None
        return leader

    def check_liveness(self) -> int:
        """Return the ticks it took after healing to elect and commit."""
        o = self.opt
        start = self.now
        leader = None
        while self.now - start < o.leader_bound_ticks:
            self.tick()
            leader = self.stable_leader()
            if leader is not None:
                break
        if leader is None:
            states = {
                n.id: (n.raw.raft.state.name, n.raw.raft.term, n.raw.raft.lead)
                for n in self.up_nodes()
            }
            raise LivenessViolation(
                f"seed {o.seed}: no stable leader {o.leader_bound_ticks} ticks after healing "
                f"(states {states})"
            )
        # Proposals queue behind the backlog left by the fault phase; in the worst case (one
        # entry per message, one message in flight) each backlog entry costs a round trip.
        backlog = leader.raw.raft.log.last_index() - min(  # type: ignore[union-attr]
            self.nodes[i].sm_index for i in self.members(leader)
        )
        bound = o.commit_bound_ticks + backlog * (2 * o.max_delay_ticks + 2)
        deadline = self.now + bound
        # data -> (leader id, term) that accepted it. A proposal accepted by a leader that is
        # still leading must commit; one whose leader was replaced (e.g. it removed itself)
        # may be lost, and the client proposes it again to the new leader.
        wanted: dict[bytes, tuple[int, int]] = {}
        while self.now < deadline:
            current = self.stable_leader()
            if current is not None:
                leader = current
                r = current.raw.raft  # type: ignore[union-attr]
                committed = {d for (_, _, d) in self.committed.values()}
                retry = [
                    d for d, who in wanted.items() if d not in committed and who != (r.id, r.term)
                ]
                if len(wanted) < o.liveness_proposals:
                    retry.append(f"live-{o.seed}-{len(wanted)}".encode())
                for data in retry:
                    try:
                        current.raw.propose(data)  # type: ignore[union-attr]
                    except ProposalDropped:
                        break
                    wanted[data] = (r.id, r.term)
            self.tick()
            if len(wanted) == o.liveness_proposals and self._all_applied(list(wanted), leader):
                return self.now - start
        committed = {d for (_, _, d) in self.committed.values()}
        missing = [d.decode() for d in wanted if d not in committed]
        raise LivenessViolation(
            f"seed {o.seed}: proposals not committed and applied everywhere {bound} ticks "
            f"after a leader was elected with a backlog of {backlog} (missing {missing})"
        )

    def _all_applied(self, wanted: list[bytes], leader: SimNode) -> bool:
        if leader.raw is None:
            return False
        index_of = {d: i for i, (_, _, d) in self.committed.items() if d in set(wanted)}
        if len(index_of) < len(wanted):
            return False
        top = max(index_of.values())
        return all(self.nodes[i].up and self.nodes[i].sm_index >= top for i in self.members(leader))

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> dict[str, int]:
        for _ in range(self.opt.fault_ticks):
            self.tick()
        self.heal()
        recovery = self.check_liveness()
        self.check_durable_logs()
        result = dict(self.stats)
        result["recovery_ticks"] = recovery
        result["committed"] = len(self.committed)
        result["max_term"] = max(self.leader_of_term, default=0)
        return result


def run_seed(seed: int, trace: bool = False, fault_ticks: int | None = None) -> dict[str, int]:
    """Run one seeded simulation; raises SafetyViolation / LivenessViolation on failure."""
    sim = Simulation(SimOptions.from_seed(seed, fault_ticks), trace=trace)
    try:
        return sim.run()
    except (AssertionError, Compacted) as exc:
        if trace:
            print("\n".join(sim.trace[-400:]))
        raise type(exc)(f"{exc}\n  replay: python tests/sim/run_seeds.py --seed {seed} -v") from exc
