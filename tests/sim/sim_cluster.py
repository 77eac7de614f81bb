"""Deterministic simulation of a Raft cluster under faults, with safety checkers.

One seed drives everything (tigerbeetle's VOPR habit): the options of the run, each node's
election jitter, the network (drop, delay, duplicate, reorder, partition), crashes (including
in the middle of handling a Ready), client proposals, ReadIndex requests, leader transfers,
membership changes and log compaction. The same seed replays the same run exactly.

Each node is a RawNode over a MemoryStorage that plays the disk: a crash throws the RawNode
and the state machine away and keeps only what the driver had written to storage; a
restart rebuilds the state machine from the storage snapshot and re-applies the log.

Checkers (raising :class:`SafetyViolation`) run after every step and every Ready:

* election safety: at most one leader per term (§5.2);
* log matching: an (index, term) pair always names the same entry, preceded by the same term
  (§5.3), checked on every entry a node persists and on the whole durable logs periodically;
* leader completeness: a leader holds every entry committed in an earlier term (§5.4);
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
        self.net: list[tuple[int, float, int, Message, int]] = []
        self._seq = 0
        self.group: dict[int, int] = {}  # partition group per node; absent = group 0
        self.nodes: dict[int, SimNode] = {}
        self.next_id = options.initial_voters + 1
        self.initial = tuple(range(1, options.initial_voters + 1))
        self.faults = True
        # Checker state.
        self.leader_of_term: dict[int, int] = {}
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
            self._seq += 1
            heapq.heappush(
                self.net, (self.now + delay, self.rng.random(), self._seq, m, sender.incarnation)
            )

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
            _, _, _, m, inc = heapq.heappop(self.net)
            moved = True
            target = self.nodes.get(m.to)
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
            with contextlib.suppress(ProposalDropped, ReadIndexDropped):
                target.raw.step(m)  # a forwarded request the target cannot take: lost
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
        for m in rd.messages:
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
        if self._crash_point():
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

    def _check_leaders_hold(self, e: Entry, term: int) -> None:
        for leader in self.leaders():
            r = leader.raw.raft  # type: ignore[union-attr]
            if (
                r.term > term
                and e.index >= r.log.first_index()
                and not r.log.match_term(e.index, e.term)
            ):
                raise self.fail(
                    f"leader {leader.id} of term {r.term} lacks entry {e.term}/{e.index} "
                    f"committed in term {term}"
                )

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
        if rd.hard_state is not None and rd.hard_state.commit > node.seen_commit:
            lo = max(node.seen_commit + 1, r.log.first_index())
            for e in r.log.slice(lo, rd.hard_state.commit + 1):
                self.record_committed(e, rd.hard_state.term)
            node.seen_commit = rd.hard_state.commit

    def check_node(self, node: SimNode) -> None:
        if node.raw is None:
            return
        r = node.raw.raft
        if r.state != StateType.LEADER:
            return
        first = self.leader_of_term.setdefault(r.term, node.id)
        if first != node.id:
            raise self.fail(f"two leaders in term {r.term}: {first} and {node.id}")
        if first == node.id and getattr(node, "_checked_term", None) != r.term:
            node._checked_term = r.term  # type: ignore[attr-defined]
            self._check_leader_completeness(node)

    def _check_leader_completeness(self, node: SimNode) -> None:
        r = node.raw.raft  # type: ignore[union-attr]
        first = r.log.first_index()
        for index, (term, _, _) in self.committed.items():
            if self.commit_term[index] >= r.term or index < first:
                continue
            if not r.log.match_term(index, term):
                raise self.fail(
                    f"leader {node.id} of term {r.term} lacks committed entry {term}/{index}"
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
            for node in up:
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
            if self.deliver_due():
                moved = True
            if not moved:
                writing = [n for n in up if n.writing is not None and n.raw is not None]
                if not writing:
                    return
                for node in writing:
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
        self.settle()
        if self.now % 50 == 0:
            self.check_durable_logs()

    def heal(self) -> None:
        self.faults = False
        self.group = {}
        for node in self.nodes.values():
            if not node.up and not node.retired:
                self._start(node)
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
