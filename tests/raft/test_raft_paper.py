"""Tests of the Raft paper's rules, each citing the section it checks.

"In Search of an Understandable Consensus Algorithm (Extended Version)", Ongaro and
Ousterhout, 2014; "§9.6" etc. refer to Ongaro's thesis, "Consensus: Bridging Theory and
Practice", 2014. Each test drives a single core (``Raft``) by hand, or a small cluster from
raft_harness, and checks a few sentences of the text.
"""

from __future__ import annotations

import random

import pytest
from raft_harness import Cluster, FixedRandom

from etcdlite.raft import (
    NONE,
    Config,
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDropped,
    Raft,
    StateType,
)

MT = MessageType


class ConfStorage(MemoryStorage):
    """A MemoryStorage whose configuration is given, with a log starting at index 1."""

    def __init__(self, voters: tuple[int, ...], entries: list[Entry], hs: HardState) -> None:
        super().__init__()
        self._voters = voters
        self.append(entries)
        self.set_hard_state(hs)

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.hard_state, ConfState(self._voters)


def new_raft(
    node_id: int = 1,
    voters: tuple[int, ...] = (1, 2, 3),
    log_terms: tuple[int, ...] = (),
    term: int = 0,
    commit: int = 0,
    rng: random.Random | None = None,
    **settings: object,
) -> Raft:
    """A core whose durable log holds one entry per term in ``log_terms`` (index 1, 2, ...)."""
    entries = [Entry(t, i + 1, data=b"x%d" % (i + 1)) for i, t in enumerate(log_terms)]
    storage = ConfStorage(voters, entries, HardState(term=term, commit=commit))
    settings.setdefault("pre_vote", False)
    settings.setdefault("check_quorum", False)
    cfg = Config(id=node_id, storage=storage, rng=rng or FixedRandom(), **settings)  # type: ignore[arg-type]
    return Raft(cfg)


def flush(r: Raft) -> list[Message]:
    """Persist like a driver would, step our own after-append messages back in, and return
    the messages for other nodes."""
    storage = r.log.storage
    assert isinstance(storage, MemoryStorage)
    ents = r.log.unstable_entries()
    storage.append(ents)
    if ents:
        r.log.stable_to(ents[-1].index, ents[-1].term)
    storage.set_hard_state(r.hard_state())
    out = [m for m in r.msgs + r.msgs_after_append if m.to != r.id]
    own = [m for m in r.msgs_after_append if m.to == r.id]
    r.msgs, r.msgs_after_append = [], []
    for m in own:
        r.step(m)
    return out + flush(r) if (r.msgs or r.msgs_after_append) else out


def tick_until(r: Raft, n: int) -> None:
    for _ in range(n):
        r.tick()


# -- §5.1 Raft basics ------------------------------------------------------------------


@pytest.mark.parametrize("state", ["follower", "candidate", "leader"])
def test_any_server_updates_term_from_newer_message(state: str) -> None:
    """§5.1: "If a server receives a request with a stale term number it rejects the
    request"; "if one server's current term is smaller than the other's, then it updates its
    current term to the larger value. If a candidate or leader discovers that its term is out
    of date, it immediately reverts to follower state." """
    r = new_raft(term=1)
    if state != "follower":
        r.become_candidate()
    if state == "leader":
        r.become_leader()
    r.step(Message(MT.APP, 1, 2, term=5, log_term=0, index=0))
    assert r.term == 5
    assert r.state == StateType.FOLLOWER
    assert r.lead == 2


def test_server_ignores_message_with_stale_term() -> None:
    """§5.1: a request with a stale term number is rejected (here: ignored, no reply)."""
    r = new_raft(term=3)
    r.step(Message(MT.APP, 1, 2, term=2, log_term=0, index=0))
    assert r.term == 3
    assert r.msgs == [] and r.msgs_after_append == []


def test_start_as_follower() -> None:
    """§5.2: "When servers start up, they begin as followers." """
    r = new_raft()
    assert r.state == StateType.FOLLOWER


# -- §5.2 Leader election --------------------------------------------------------------


def test_leader_broadcasts_heartbeats() -> None:
    """§5.2: "Leaders send periodic heartbeats (AppendEntries RPCs that carry no log entries)
    to all followers in order to maintain their authority." """
    r = new_raft(heartbeat_tick=1)
    r.become_candidate()
    r.become_leader()
    flush(r)
    r.tick()
    msgs = sorted(flush(r), key=lambda m: m.to)
    assert [(m.type, m.to, m.entries) for m in msgs] == [
        (MT.HEARTBEAT, 2, ()),
        (MT.HEARTBEAT, 3, ()),
    ]


@pytest.mark.parametrize("state", ["follower", "candidate"])
def test_timeout_starts_election(state: str) -> None:
    """§5.2: "To begin an election, a follower increments its current term and transitions
    to candidate state. It then votes for itself and issues RequestVote RPCs in parallel to
    each of the other servers"; a candidate that times out starts a new election."""
    r = new_raft(term=1, election_tick=10)
    if state == "candidate":
        r.become_candidate()
    term = r.term
    tick_until(r, 10)
    assert r.state == StateType.CANDIDATE
    assert r.term == term + 1
    assert r.vote == 1
    msgs = sorted(flush(r), key=lambda m: m.to)
    assert [(m.type, m.to, m.term) for m in msgs] == [
        (MT.VOTE, 2, term + 1),
        (MT.VOTE, 3, term + 1),
    ]


@pytest.mark.parametrize(
    ("size", "grants", "state"),
    [
        (1, {}, StateType.LEADER),
        (3, {2: True, 3: True}, StateType.LEADER),
        (3, {2: True}, StateType.LEADER),
        (5, {2: True, 3: True}, StateType.LEADER),
        (5, {2: True}, StateType.CANDIDATE),
        (3, {2: False, 3: False}, StateType.FOLLOWER),
        (5, {2: False, 3: False, 4: False}, StateType.FOLLOWER),
        (3, {}, StateType.CANDIDATE),
    ],
)
def test_election_outcome(size: int, grants: dict[int, bool], state: StateType) -> None:
    """§5.2: "A candidate wins an election if it receives votes from a majority of the
    servers in the full cluster for the same term"; it stays a candidate while the outcome is
    open, and falls back to follower once a majority refused."""
    r = new_raft(voters=tuple(range(1, size + 1)))
    r.step(Message(MT.HUP, 1, 1))
    flush(r)  # counts our own vote, once durable
    for voter, granted in grants.items():
        r.step(Message(MT.VOTE_RESP, 1, voter, term=r.term, reject=not granted))
    assert r.state == state
    assert r.term == 1


def test_follower_votes_once_per_term_first_come_first_served() -> None:
    """§5.2: "Each server will vote for at most one candidate in a given term, on a
    first-come-first-served basis." """
    r = new_raft(term=1)
    r.step(Message(MT.VOTE, 1, 2, term=2, log_term=0, index=0))
    r.step(Message(MT.VOTE, 1, 3, term=2, log_term=0, index=0))
    r.step(Message(MT.VOTE, 1, 2, term=2, log_term=0, index=0))  # a retry is granted again
    votes = [(m.to, m.reject) for m in flush(r) if m.type == MT.VOTE_RESP]
    assert votes == [(2, False), (3, True), (2, False)]
    assert r.vote == 2


def test_vote_is_persisted_before_it_is_sent() -> None:
    """Thesis §3.8: a server must persist its vote before answering, or it could vote twice
    in a term after a crash. The grant waits in msgs_after_append."""
    r = new_raft(term=1)
    r.step(Message(MT.VOTE, 1, 2, term=2, log_term=0, index=0))
    assert r.msgs == []
    assert [m.type for m in r.msgs_after_append] == [MT.VOTE_RESP]


@pytest.mark.parametrize("kind", [MT.APP, MT.HEARTBEAT])
def test_candidate_falls_back_on_append_from_leader(kind: MessageType) -> None:
    """§5.2: "If the leader's term ... is at least as large as the candidate's current term,
    then the candidate recognizes the leader as legitimate and returns to follower state." """
    r = new_raft(term=1)
    r.become_candidate()
    r.step(Message(kind, 1, 2, term=r.term, log_term=0, index=0))
    assert r.state == StateType.FOLLOWER
    assert r.lead == 2


def test_election_timeouts_are_randomized() -> None:
    """§5.2: "Raft uses randomized election timeouts ... chosen randomly from a fixed
    interval"; here [election_tick, 2 * election_tick)."""
    seen = set()
    for seed in range(50):
        r = new_raft(rng=random.Random(seed), election_tick=10)
        ticks = 0
        while r.state == StateType.FOLLOWER:
            r.tick()
            ticks += 1
        seen.add(ticks)
    assert min(seen) >= 10 and max(seen) < 20
    assert len(seen) > 5


def test_election_safety_only_one_leader_per_term() -> None:
    """§5.2 Election Safety: two candidates in the same term split the votes; at most one
    can win."""
    c = Cluster.with_voters(3)
    for n in c.nodes.values():
        n.raw.campaign()
    c.stabilize()
    leaders = [n.raft for n in c.nodes.values() if n.raft.state == StateType.LEADER]
    assert len({(r.term, r.id) for r in leaders}) <= 1


# -- §5.3 Log replication --------------------------------------------------------------


def test_leader_starts_replication() -> None:
    """§5.3: "The leader appends the command to its log as a new entry, then issues
    AppendEntries RPCs in parallel to each of the other servers"; each names the index and
    term of the entry preceding the new ones."""
    r = new_raft()
    r.become_candidate()
    r.become_leader()
    flush(r)
    li = r.log.last_index()
    for pid in (2, 3):  # both acknowledge the leader's first entry
        r.step(Message(MT.APP_RESP, 1, pid, term=r.term, index=li))
    flush(r)
    r.step(Message(MT.PROP, 1, 1, entries=(Entry(0, 0, data=b"cmd"),)))
    msgs = sorted(flush(r), key=lambda m: m.to)
    assert [(m.to, m.index, m.log_term, m.entries) for m in msgs] == [
        (pid, li, 1, (Entry(1, li + 1, data=b"cmd"),)) for pid in (2, 3)
    ]


@pytest.mark.parametrize(
    ("size", "acks", "committed"),
    [
        (1, [], True),
        (3, [], False),
        (3, [2], True),
        (3, [2, 3], True),
        (5, [2], False),
        (5, [2, 3], True),
    ],
)
def test_leader_commits_once_replicated_on_majority(
    size: int, acks: list[int], committed: bool
) -> None:
    """§5.3: "A log entry is committed once the leader that created the entry has replicated
    it on a majority of the servers." The leader counts itself only once its own write is
    durable (thesis §10.2.1)."""
    r = new_raft(voters=tuple(range(1, size + 1)))
    r.become_candidate()
    r.become_leader()
    r.step(Message(MT.PROP, 1, 1, entries=(Entry(0, 0, data=b"cmd"),)))
    flush(r)
    li = r.log.last_index()
    for pid in acks:
        r.step(Message(MT.APP_RESP, 1, pid, term=r.term, index=li))
    assert (r.log.committed == li) is committed


def test_leader_tells_followers_the_commit_index() -> None:
    """§5.3: "The leader keeps track of the highest index it knows to be committed, and it
    includes that index in future AppendEntries RPCs ... so that the other servers
    eventually find out." """
    c = Cluster.with_voters(3)
    c.elect(1)
    c.nodes[1].raw.propose(b"cmd")
    c.stabilize()
    commits = {n.raft.log.committed for n in c.nodes.values()}
    assert commits == {c.nodes[1].raft.log.last_index()}
    assert all(n.applied == [b"cmd"] for n in c.nodes.values())


def test_follower_commits_what_leader_committed() -> None:
    """§5.3: "Once a follower learns that a log entry is committed, it applies the entry to
    its local state machine." The follower never commits beyond what it holds."""
    r = new_raft(term=1)
    ents = (Entry(1, 1, data=b"a"), Entry(1, 2, data=b"b"))
    r.step(Message(MT.APP, 1, 2, term=1, log_term=0, index=0, entries=ents, commit=1))
    assert r.log.committed == 1
    r.step(Message(MT.APP, 1, 2, term=1, log_term=1, index=2, commit=5))
    assert r.log.committed == 2


@pytest.mark.parametrize(
    ("term", "index", "accepted"),
    [(0, 0, True), (1, 1, True), (2, 2, True), (1, 2, False), (3, 3, False), (2, 3, False)],
)
def test_follower_checks_previous_entry(term: int, index: int, accepted: bool) -> None:
    """§5.3: "If the follower does not find an entry in its log with the same index and term
    [as the one preceding the new entries], then it refuses the new entries." """
    r = new_raft(log_terms=(1, 2), term=2, commit=1)
    r.step(Message(MT.APP, 1, 2, term=2, log_term=term, index=index))
    (resp,) = flush(r)
    assert resp.type == MT.APP_RESP
    assert resp.reject is not accepted


@pytest.mark.parametrize(
    ("index", "term", "entries", "want"),
    [
        (2, 2, [Entry(3, 3)], [1, 2, 3]),
        (1, 1, [Entry(3, 2), Entry(4, 3)], [1, 3, 4]),
        (0, 0, [Entry(1, 1)], [1, 2]),
        (0, 0, [Entry(3, 1)], [3]),
    ],
)
def test_follower_deletes_conflicting_entries(
    index: int, term: int, entries: list[Entry], want: list[int]
) -> None:
    """§5.3: "If an existing entry conflicts with a new one (same index but different terms),
    delete the existing entry and all that follow it" (Figure 2, AppendEntries rule 3), and
    keep entries that match."""
    r = new_raft(log_terms=(1, 2), term=3)
    r.step(Message(MT.APP, 1, 2, term=3, log_term=term, index=index, entries=tuple(entries)))
    assert [e.term for e in r.log.all_entries()] == want


# The logs of Figure 7, by term of each entry from index 1; the leader is on top.
FIGURE_7_LEADER = (1, 1, 1, 4, 4, 5, 5, 6, 6, 6)
FIGURE_7_FOLLOWERS = {
    "a": (1, 1, 1, 4, 4, 5, 5, 6, 6),
    "b": (1, 1, 1, 4),
    "c": (1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6),
    "d": (1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7),
    "e": (1, 1, 1, 4, 4, 4, 4),
    "f": (1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3),
}


@pytest.mark.parametrize("case", sorted(FIGURE_7_FOLLOWERS))
def test_leader_brings_follower_log_in_line_figure_7(case: str) -> None:
    """§5.3, Figure 7: whatever the follower's log (missing entries, extra uncommitted ones,
    both), the leader finds the latest point where they agree, deletes the follower's entries
    after it and sends its own: "the leader handles inconsistencies by forcing the followers'
    logs to duplicate its own." Uses the fast back-off hint (thesis §5.3 / etcd)."""
    leader = new_raft(1, log_terms=FIGURE_7_LEADER, term=7, commit=0)
    follower = new_raft(2, log_terms=FIGURE_7_FOLLOWERS[case], term=7, commit=0)
    leader.step(Message(MT.HUP, 1, 1))  # candidate in term 8, as in the figure
    flush(leader)
    # Node 3 grants, so the leader of term 8 exists whatever the follower thinks.
    leader.step(Message(MT.VOTE_RESP, 1, 3, term=8))
    assert leader.state == StateType.LEADER
    pending = [m for m in flush(leader) if m.to == 2]
    for _ in range(50):
        if not pending:
            break
        nxt: list[Message] = []
        for m in pending:
            target = follower if m.to == 2 else leader
            target.step(m)
        nxt += [m for m in flush(follower) if m.to == 1]
        nxt += [m for m in flush(leader) if m.to == 2]
        pending = nxt
    got = [(e.index, e.term) for e in follower.log.all_entries()]
    assert got == [(e.index, e.term) for e in leader.log.all_entries()]


# -- §5.2 with crashes: persist before acting in a term (thesis §3.8) -------------------


def crash_before_persisting(c: Cluster, node_id: int) -> list[Message]:
    """Take ``node_id``'s Ready and crash before persisting it: the node restarts from its
    storage. Returns what the Ready contract let leave before the write: ``messages``, never
    ``messages_after_append``."""
    rd = c.nodes[node_id].raw.ready()
    c.nodes[node_id].start()
    return list(rd.messages)


def handle_readies(c: Cluster, node_id: int) -> None:
    while c.nodes[node_id].raw.has_ready():
        c.handle_ready(node_id)


def only(c: Cluster, ids: list[int]) -> None:
    """Lose every message in flight except those to ``ids``; deliver those, handle Readies."""
    for i in c.inbox:
        if i not in ids:
            c.inbox[i] = []
    for i in ids:
        c.deliver(i)
        handle_readies(c, i)


def heal(c: Cluster) -> None:
    """Deliver everything; elect a leader if there is none; replicate and apply ``b"x"``.
    Bounded rather than ``stabilize()``: a cluster whose safety is broken may never settle,
    and the test's assertion on the state machines tells more than a timeout."""

    def settle() -> None:
        for _ in range(200):
            if not c.step_round():
                return

    settle()
    if c.leader() is None:
        c.nodes[2].raw.campaign()
        settle()
    leader = c.leader()
    assert leader is not None
    c.nodes[leader].raw.propose(b"x")
    for _ in range(5):
        for _ in range(c.nodes[leader].raft.heartbeat_timeout):
            c.nodes[leader].raw.tick()
        settle()


def test_leader_never_acts_in_a_term_it_has_not_persisted() -> None:
    """Thesis §3.8: "each server must persist its current term and vote before sending any
    RPCs"; paper §5.2: "at most one candidate can win the election for a particular term".

    The reviewer's scenario, 5 voters, everything sent as soon as the Ready contract allows.
    Node 1 led term 2 (its y1, y2 reached node 2 only); node 3 leads term 3. Incarnation A
    of node 1 campaigns for term 4 and crashes before persisting. Restarted at term 3,
    incarnation B campaigns for term 4 again and A's grants arrive before B's ready(); B
    crashes before persisting. Leader 3 overwrites node 1's log; incarnation C campaigns for
    term 4 a third time, with another log, and node 2's acknowledgement addressed to B
    arrives late. Before the fix A's vote requests left before term 4 was durable, B led
    term 4 on them without a durable vote and sent appends at term 4 before persisting it,
    and C led term 4 again and counted B's acknowledgement: it committed an entry that 2 of 5
    hold, and node 2 applied y1, y2 where the others apply other entries (§5.4.3 violated).
    """
    c = Cluster.with_voters(5, pre_vote=False, check_quorum=False)
    n1, n3 = c.nodes[1], c.nodes[3]
    c.elect(1)
    n1.raw.propose(b"y1")
    n1.raw.propose(b"y2")
    handle_readies(c, 1)
    only(c, [2])
    only(c, [])
    # Term 3: node 3 wins with 4 and 5; node 1 learns the term from a heartbeat.
    n3.raw.campaign()
    handle_readies(c, 3)
    only(c, [4, 5])
    only(c, [3])
    only(c, [])
    for _ in range(n3.raft.heartbeat_timeout):
        n3.raw.tick()
    handle_readies(c, 3)
    only(c, [1])
    only(c, [])
    assert n3.raft.state == StateType.LEADER and n1.storage.hard_state.term == 3

    # A: campaigns for term 4, crashes before persisting; what escaped reaches 2, 4, 5.
    n1.raw.campaign()
    for m in crash_before_persisting(c, 1):
        if m.to != 3:
            c.send(m)
    only(c, [2, 4, 5])
    grants, c.inbox[1] = c.inbox[1], []

    # B: term 3 on disk; campaigns for term 4 again, A's grants arrive before ready().
    handle_readies(c, 1)
    n1.raw.campaign()
    c.inbox[1] = grants
    c.deliver(1)
    for m in crash_before_persisting(c, 1):
        c.send(m)
    only(c, [2])  # node 2 takes what escaped; its acknowledgement to node 1 is held up
    late, c.inbox[1] = c.inbox[1], []
    only(c, [])

    # Leader 3 brings node 1's log in line with its own (y1, y2 are replaced).
    handle_readies(c, 1)
    for _ in range(n3.raft.heartbeat_timeout):
        n3.raw.tick()
    c.stabilize([1, 3])
    only(c, [])

    # C: campaigns for term 4 once more; its entry b reaches node 4, then the late ack.
    n1.raw.campaign()
    handle_readies(c, 1)
    only(c, [3, 4, 5])
    only(c, [1])
    assert n1.raft.state == StateType.LEADER and n1.raft.term == 4
    n1.raw.propose(b"b")
    handle_readies(c, 1)
    c.stabilize([1, 4])
    only(c, [])
    c.inbox[1] = late
    only(c, [1])

    heal(c)
    assert {i: n.applied for i, n in c.nodes.items()} == {i: [b"b", b"x"] for i in c.nodes}


def test_restarted_candidate_cannot_win_on_grants_for_a_log_it_lost() -> None:
    """Thesis §3.8, paper §5.4.1: a vote request describes the candidate's log, and voters
    grant on that description. Node 1 receives entry e (committed by 2, 3, 4) and campaigns
    before persisting it; were its vote requests sent at once, 3 and 4 would grant on a log
    holding e. Restarted without e, node 1 campaigns for the same term and those grants
    arrive: counting them, even after persisting its own vote, it would lead without a
    committed entry (§5.4 Leader Completeness) and overwrite it. Vote requests therefore
    leave only with the Ready that makes the log and the term they describe durable.
    """
    c = Cluster.with_voters(5, pre_vote=False, check_quorum=False)
    n1, n2 = c.nodes[1], c.nodes[2]
    c.elect(2)
    n2.raw.propose(b"e")
    handle_readies(c, 2)
    c.inbox[5] = []
    c.deliver(1)  # node 1 appends e, but has not persisted it yet
    only(c, [3, 4])
    only(c, [2])
    assert n2.applied == [b"e"]

    # A: campaigns for term 3 with e still in memory, crashes before persisting.
    n1.raw.campaign()
    for m in crash_before_persisting(c, 1):
        if m.to in (3, 4):
            c.send(m)
    only(c, [3, 4])
    grants, c.inbox[1] = c.inbox[1], []

    # B: term 2 and no e on disk; campaigns for term 3 again; A's grants arrive.
    handle_readies(c, 1)
    assert n1.raft.log.last_index() == 2
    n1.raw.campaign()
    c.inbox[1] = grants
    c.deliver(1)
    handle_readies(c, 1)
    assert n1.raft.state != StateType.LEADER, "leader of term 3 without committed entry e"

    heal(c)
    assert {i: n.applied for i, n in c.nodes.items()} == {i: [b"e", b"x"] for i in c.nodes}


def test_candidate_leads_only_once_its_own_vote_is_durable() -> None:
    """Thesis §3.8 / paper §5.2: grants of the others reaching a majority before the
    candidate's own vote is durable (e.g. grants addressed to a previous incarnation) do not
    make it leader: it would act in a term it may forget. It leads on the ``advance()`` that
    persisted its vote, and only then sends appends of its term."""
    c = Cluster.with_voters(3, pre_vote=False, check_quorum=False)
    n1 = c.nodes[1]
    n1.raw.campaign()
    for voter in (2, 3):
        n1.raw.step(Message(MT.VOTE_RESP, 1, voter, term=2))
    assert n1.raft.state == StateType.CANDIDATE
    rd = n1.raw.ready()
    assert rd.hard_state is not None and (rd.hard_state.term, rd.hard_state.vote) == (2, 1)
    assert rd.messages == ()
    assert {m.type for m in rd.messages_after_append} == {MT.VOTE}
    assert n1.raft.state == StateType.CANDIDATE
    n1.storage.set_hard_state(rd.hard_state)
    n1.raw.advance(rd)  # steps our own vote back in
    assert n1.raft.state == StateType.LEADER
    rd = n1.raw.ready()
    assert {(m.type, m.term) for m in rd.messages} == {(MT.APP, 2)}


@pytest.mark.parametrize("pre_vote", [False, True])
def test_vote_requests_leave_only_once_persisted(pre_vote: bool) -> None:
    """Thesis §3.8: a candidate persists its new term and vote before requesting votes; a
    (pre-)vote request also describes a log that may still be on its way to disk. Both kinds
    wait in ``messages_after_append``, so a crash before the write sends nothing, and no
    grant can reach a later incarnation that forgot the term."""
    c = Cluster.with_voters(3, pre_vote=pre_vote, check_quorum=False)
    n1 = c.nodes[1]
    n1.raw.campaign()
    rd = n1.raw.ready()
    want = MT.PRE_VOTE if pre_vote else MT.VOTE
    assert rd.messages == ()
    assert [(m.type, m.to, m.term) for m in rd.messages_after_append] == [
        (want, 2, 2),
        (want, 3, 2),
    ]
    n1.raw.advance(rd)


def test_pre_candidate_waits_for_its_own_pre_vote() -> None:
    """Thesis §9.6 with §3.8: as for votes, a pre-candidate moves on to the real election only
    with its own pre-vote counted, i.e. once the Ready of its pre-vote round is persisted;
    the vote requests of the real election then wait for the new term to be durable."""
    c = Cluster.with_voters(3, pre_vote=True, check_quorum=False)
    n1 = c.nodes[1]
    n1.raw.campaign()
    for voter in (2, 3):
        n1.raw.step(Message(MT.PRE_VOTE_RESP, 1, voter, term=2))
    assert n1.raft.state == StateType.PRE_CANDIDATE
    assert n1.raft.term == 1
    c.handle_ready(1)  # the pre-vote round's Ready; advance() counts our own pre-vote
    assert n1.raft.state == StateType.CANDIDATE
    rd = n1.raw.ready()
    assert rd.hard_state is not None and (rd.hard_state.term, rd.hard_state.vote) == (2, 1)
    assert rd.messages == ()
    assert {(m.type, m.term) for m in rd.messages_after_append} == {(MT.VOTE, 2)}
    n1.storage.set_hard_state(rd.hard_state)
    n1.raw.advance(rd)
    assert n1.raft.state == StateType.CANDIDATE  # its own vote alone is no majority of 3


def test_single_node_elects_itself_after_persisting_its_vote() -> None:
    """§5.2 in a one-voter cluster: the node is its own majority, but it becomes leader only
    on the ``advance()`` of the Ready that persisted its term and vote (thesis §3.8)."""
    c = Cluster.with_voters(1, pre_vote=False, check_quorum=False)
    n1 = c.nodes[1]
    n1.raw.campaign()
    assert n1.raft.state == StateType.CANDIDATE
    rd = n1.raw.ready()
    assert rd.hard_state is not None and (rd.hard_state.term, rd.hard_state.vote) == (2, 1)
    assert n1.raft.state == StateType.CANDIDATE
    n1.storage.set_hard_state(rd.hard_state)
    n1.raw.advance(rd)
    assert n1.raft.state == StateType.LEADER
    n1.raw.propose(b"x")
    handle_readies(c, 1)
    assert n1.applied == [b"x"]


# -- §5.4 Safety -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cand_index", "cand_term", "granted"),
    [
        (3, 2, True),  # same last entry
        (4, 2, True),  # longer log, same last term
        (2, 2, False),  # shorter log, same last term
        (1, 3, True),  # higher last term wins even if shorter
        (5, 1, False),  # lower last term loses even if longer
    ],
)
def test_voter_denies_candidate_with_stale_log(
    cand_index: int, cand_term: int, granted: bool
) -> None:
    """§5.4.1: "the voter denies its vote if its own log is more up-to-date than that of the
    candidate": compare the last entries' terms, then the logs' lengths."""
    r = new_raft(log_terms=(1, 2, 2), term=2)
    r.step(Message(MT.VOTE, 1, 2, term=3, log_term=cand_term, index=cand_index))
    (resp,) = flush(r)
    assert resp.reject is not granted


def test_leader_only_commits_entries_of_its_term_figure_8() -> None:
    """§5.4.2, Figure 8: "Raft never commits log entries from previous terms by counting
    replicas. Only log entries from the leader's current term are committed by counting
    replicas; once an entry from the current term has been committed ... all prior entries
    are committed indirectly." """
    # Leader of term 3 (S1 in (c)) holds an entry of term 2 at index 2 that S2 also has.
    r = new_raft(1, voters=(1, 2, 3, 4, 5), log_terms=(1, 2), term=3)
    r.step(Message(MT.HUP, 1, 1))  # candidate in term 4
    flush(r)
    for v in (2, 3):
        r.step(Message(MT.VOTE_RESP, 1, v, term=r.term))
    flush(r)
    assert r.state == StateType.LEADER
    # Replicas of index 2 (term 2) on a majority do not commit it...
    for v in (2, 3):
        r.step(Message(MT.APP_RESP, 1, v, term=r.term, index=2))
    assert r.log.committed == 0
    # ...the leader's own empty entry of term 4 reaching a majority commits both.
    for v in (2, 3):
        r.step(Message(MT.APP_RESP, 1, v, term=r.term, index=3))
    assert r.log.committed == 3


def test_leader_completeness_new_leader_has_committed_entries() -> None:
    """§5.4 Leader Completeness: an entry committed in a term is in the log of every leader
    of a later term. Node 3 misses a committed entry and cannot be elected."""
    c = Cluster.with_voters(3)
    c.elect(1)
    c.isolate(3)
    c.nodes[1].raw.propose(b"committed")
    c.stabilize()
    assert c.nodes[1].applied == [b"committed"]
    c.heal()
    c.isolate(1)
    c.nodes[3].raw.campaign()
    c.stabilize()
    assert c.nodes[3].raft.state != StateType.LEADER
    c.nodes[2].raw.campaign()
    c.stabilize()
    assert c.nodes[2].raft.state == StateType.LEADER
    assert c.nodes[3].applied == [b"committed"]


# -- §5.5 Follower and candidate crashes -----------------------------------------------


def test_append_entries_is_idempotent() -> None:
    """§5.5: "Raft RPCs are idempotent ... if a follower receives an AppendEntries request
    that includes log entries already present in its log, it ignores those entries." """
    r = new_raft(term=1)
    m = Message(MT.APP, 1, 2, term=1, log_term=0, index=0, entries=(Entry(1, 1, data=b"a"),))
    r.step(m)
    flush(r)
    r.step(m)
    assert [e.data for e in r.log.all_entries()] == [b"a"]
    (resp,) = flush(r)
    assert resp.index == 1 and not resp.reject


def test_restart_keeps_term_vote_and_log() -> None:
    """§5 Figure 2 "Persistent state on all servers: currentTerm, votedFor, log[]": a node
    restarted from its storage has them back, and does not vote again in the same term."""
    c = Cluster.with_voters(3)
    c.elect(1)
    c.nodes[1].raw.propose(b"x")
    c.stabilize()
    n2 = c.nodes[2]
    before = (n2.raft.term, n2.raft.vote, n2.raft.log.last_index())
    n2.start()
    assert (n2.raft.term, n2.raft.vote, n2.raft.log.last_index()) == before
    n2.raw.step(Message(MT.VOTE, 2, 3, term=before[0], log_term=9, index=99))
    assert [m.reject for m in n2.raft.msgs_after_append] == [True]


# -- §7 Log compaction -----------------------------------------------------------------


def test_install_snapshot_replaces_log() -> None:
    """§7: "the leader must occasionally send snapshots to followers that lag behind"; "the
    follower discards its entire log; it is all superseded by the snapshot" unless the
    snapshot describes a prefix of its log."""
    c = Cluster.with_voters(3)
    c.elect(1)
    c.isolate(3)
    for i in range(5):
        c.nodes[1].raw.propose(b"e%d" % i)
    c.stabilize()
    leader_storage = c.nodes[1].storage
    applied = c.nodes[1].raft.log.applied
    leader_storage.create_snapshot(applied, c.nodes[1].conf_state, b"state")
    leader_storage.compact(applied)
    c.heal()
    c.nodes[1].raw.propose(b"after")
    c.stabilize()
    for _ in range(3):
        for n in c.nodes.values():
            n.raw.tick()
        c.stabilize()
    n3 = c.nodes[3]
    assert n3.storage.snapshot().index == applied
    assert n3.applied == [b"state", b"after"]


# -- thesis: pre-vote, leases, proposals -----------------------------------------------


def test_pre_vote_does_not_raise_terms() -> None:
    """Thesis §9.6: "a candidate would first ask other servers whether its log was
    up-to-date enough to get their vote"; only then does it increment its term."""
    c = Cluster.with_voters(3, pre_vote=True)
    c.elect(1)
    c.isolate(3)
    for _ in range(5):
        c.nodes[3].raw.campaign()
        c.stabilize()
    assert c.nodes[3].raft.term == c.nodes[1].raft.term
    assert c.nodes[3].raft.state == StateType.PRE_CANDIDATE


def test_follower_drops_proposal_without_leader() -> None:
    """Proposals need a leader (§8: clients send all requests to the leader); a node that
    knows none refuses instead of silently losing the request."""
    r = new_raft()
    with pytest.raises(ProposalDropped):
        r.step(Message(MT.PROP, 1, 1, entries=(Entry(0, 0, data=b"x"),)))
    assert r.lead == NONE
