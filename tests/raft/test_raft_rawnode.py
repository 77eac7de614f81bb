"""The RawNode contract: Ready batches, persist-before-send, bootstrap, errors, describe."""

from __future__ import annotations

import random

import pytest
from raft_harness import Cluster

from etcdlite.raft import (
    NONE,
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
    RaftInvariantError,
    RawNode,
    ReadIndexDropped,
    Ready,
    SoftState,
    StateType,
    StepLocalMessage,
    StorageNotEmpty,
    describe_entry,
    describe_message,
    describe_ready,
)

MT = MessageType


def single_node() -> tuple[RawNode, MemoryStorage]:
    storage = MemoryStorage()
    node = RawNode(Config(id=1, storage=storage, rng=random.Random(1)))
    node.bootstrap([1])
    return node, storage


def handle(node: RawNode, storage: MemoryStorage) -> list[Ready]:
    readys = []
    while node.has_ready():
        rd = node.ready()
        readys.append(rd)
        storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        for e in rd.committed_entries:
            if e.type == EntryType.CONF_CHANGE:
                node.apply_conf_change(ConfChange.decode(e.data))
        node.advance(rd)
    return readys


def test_bootstrap_writes_membership_into_the_log() -> None:
    node, storage = single_node()
    (rd,) = handle(node, storage)
    assert rd.hard_state == HardState(term=1, vote=0, commit=1)
    assert rd.entries == rd.committed_entries
    assert ConfChange.decode(rd.entries[0].data) == ConfChange(ConfChangeType.ADD_NODE, 1)
    assert rd.must_sync
    with pytest.raises(StorageNotEmpty):
        node.bootstrap([1])


def test_single_node_commits_only_after_its_own_write() -> None:
    node, storage = single_node()
    handle(node, storage)
    node.campaign()
    handle(node, storage)
    assert node.status().state == StateType.LEADER
    node.propose(b"x")
    rd = node.ready()
    assert [e.data for e in rd.entries] == [b"x"]
    assert rd.committed_entries == ()  # not durable anywhere yet
    storage.append(rd.entries)
    node.advance(rd)
    rd = node.ready()
    assert [e.data for e in rd.committed_entries] == [b"x"]
    node.advance(rd)


def test_ready_and_advance_alternate() -> None:
    node, _ = single_node()
    rd = node.ready()
    assert not node.has_ready()
    with pytest.raises(RaftInvariantError):
        node.ready()
    with pytest.raises(RaftInvariantError):
        node.advance(Ready())
    node.advance(rd)


def test_vote_and_append_acks_wait_for_persistence() -> None:
    c = Cluster.with_voters(3)
    n2 = c.nodes[2].raw
    n2.step(Message(MT.VOTE, 2, 1, term=5, log_term=1, index=1))
    rd = n2.ready()
    assert rd.messages == ()
    assert [m.type for m in rd.messages_after_append] == [MT.VOTE_RESP]
    assert rd.hard_state == HardState(term=5, vote=1, commit=1)
    assert rd.must_sync
    n2.advance(rd)
    n2.step(Message(MT.APP, 2, 1, term=5, log_term=1, index=1, entries=(Entry(5, 2, data=b"a"),)))
    rd = n2.ready()
    assert rd.entries == (Entry(5, 2, data=b"a"),)
    assert [m.type for m in rd.messages_after_append] == [MT.APP_RESP]
    assert rd.soft_state == SoftState(lead=1, state=StateType.FOLLOWER)


def test_ready_messages_never_carry_an_undurable_term() -> None:
    """The Ready contract (thesis §3.8): ``messages`` may leave before the Ready is
    persisted, so none carries a term newer than the durable one. A follower learning term 5
    from a heartbeat answers in term 5 only once term 5 is persisted."""
    c = Cluster.with_voters(3)
    n2 = c.nodes[2].raw
    n2.step(Message(MT.HEARTBEAT, 2, 1, term=5, commit=1))
    rd = n2.ready()
    assert rd.hard_state == HardState(term=5, vote=0, commit=1)
    assert rd.messages == ()
    assert [(m.type, m.term) for m in rd.messages_after_append] == [(MT.HEARTBEAT_RESP, 5)]
    c.nodes[2].storage.set_hard_state(rd.hard_state)
    n2.advance(rd)
    n2.step(Message(MT.HEARTBEAT, 2, 1, term=5, commit=1))
    rd = n2.ready()
    assert [(m.type, m.term) for m in rd.messages] == [(MT.HEARTBEAT_RESP, 5)]
    n2.advance(rd)


def test_step_drops_forwarded_requests_it_cannot_take() -> None:
    """A PROP or READ_INDEX forwarded by a peer that this node cannot take is dropped
    silently (the client on the peer retries), as etcd does; only local requests raise."""
    c = Cluster.with_voters(3)
    n2 = c.nodes[2].raw  # a follower that knows no leader
    n2.step(Message(MT.PROP, NONE, 3, entries=(Entry(0, 0, data=b"x"),)))
    n2.step(Message(MT.READ_INDEX, NONE, 3, context=b"r"))
    assert not n2.has_ready()
    with pytest.raises(ProposalDropped):
        n2.propose(b"x")
    with pytest.raises(ReadIndexDropped):
        n2.read_index(b"r")


def test_a_repeated_read_context_is_one_request() -> None:
    """Read contexts identify requests cluster-wide: the leader takes a context already
    pending (e.g. a forwarded READ_INDEX the network duplicated) as the same request and
    answers it once."""
    c = Cluster.with_voters(3)
    c.elect(1)
    n1 = c.nodes[1].raw
    n1.read_index(b"r")
    n1.read_index(b"r")
    states = []
    for _ in range(10):
        if n1.has_ready():
            states += c.handle_ready(1).read_states
        c.step_round([2, 3])
        c.deliver(1)
    assert [rs.request_ctx for rs in states] == [b"r"]


def test_step_rejects_local_messages() -> None:
    node, _ = single_node()
    for t in (MT.HUP, MT.BEAT, MT.CHECK_QUORUM, MT.UNREACHABLE, MT.SNAP_STATUS):
        with pytest.raises(StepLocalMessage):
            node.step(Message(t, 1, 2))


def test_read_index_without_leader_is_dropped() -> None:
    node, _ = single_node()
    with pytest.raises(ReadIndexDropped):
        node.read_index(b"r")


def test_single_node_read_index_is_immediate_once_term_entry_committed() -> None:
    node, storage = single_node()
    handle(node, storage)
    node.campaign()
    handle(node, storage)
    node.read_index(b"r1")
    (rd,) = handle(node, storage)
    assert [(rs.index, rs.request_ctx) for rs in rd.read_states] == [(2, b"r1")]


def test_restart_resumes_from_storage() -> None:
    node, storage = single_node()
    handle(node, storage)
    node.campaign()
    handle(node, storage)
    node.propose(b"x")
    handle(node, storage)
    again = RawNode(Config(id=1, storage=storage, rng=random.Random(2)))
    st = again.status()
    assert (st.term, st.vote, st.commit, st.state) == (2, 1, 3, StateType.FOLLOWER)
    # Everything committed is handed out again: the state machine was not persisted.
    rd = again.ready()
    assert [e.index for e in rd.committed_entries] == [1, 2, 3]


def test_conf_change_codec_round_trip_and_errors() -> None:
    cc = ConfChange(ConfChangeType.ADD_LEARNER_NODE, 2**40 + 3, b"http://x")
    assert ConfChange.decode(cc.encode()) == cc
    with pytest.raises(ValueError):
        ConfChange.decode(b"\x00\x01")
    with pytest.raises(ValueError):
        ConfChange.decode(b"\x09" + bytes(8))
    with pytest.raises(ValueError):
        ConfChange.decode(b"\x00" + bytes(8))  # node id 0


def test_apply_conf_change_is_total() -> None:
    c = Cluster.with_voters(3)
    r = c.nodes[1].raw
    A, R, L = ConfChangeType.ADD_NODE, ConfChangeType.REMOVE_NODE, ConfChangeType.ADD_LEARNER_NODE
    assert r.apply_conf_change(ConfChange(A, 3)) == ConfState((1, 2, 3))
    assert r.apply_conf_change(ConfChange(L, 4)) == ConfState((1, 2, 3), (4,))
    assert r.apply_conf_change(ConfChange(L, 3)) == ConfState((1, 2, 3), (4,))  # no demotion
    assert r.apply_conf_change(ConfChange(A, 4)) == ConfState((1, 2, 3, 4))
    assert r.apply_conf_change(ConfChange(R, 9)) == ConfState((1, 2, 3, 4))
    for nid in (2, 3, 4):
        r.apply_conf_change(ConfChange(R, nid))
    assert r.apply_conf_change(ConfChange(R, 1)) == ConfState((1,))  # never the last voter


def test_config_validation() -> None:
    st = MemoryStorage()
    rng = random.Random(0)
    for bad in (
        {"id": 0},
        {"id": 1, "heartbeat_tick": 0},
        {"id": 1, "election_tick": 1, "heartbeat_tick": 1},
        {"id": 1, "max_inflight": 0},
        {"id": 1, "max_size_per_msg": 0},
    ):
        with pytest.raises(ValueError):
            RawNode(Config(storage=st, rng=rng, **bad))  # type: ignore[arg-type]


def test_describe_is_canonical() -> None:
    assert describe_entry(Entry(2, 7, data=b"put x")) == '2/7 normal "put x"'
    assert describe_entry(Entry(1, 3, data=b"\x00\xff")) == "1/3 normal 0x00ff"
    cc = ConfChange(ConfChangeType.ADD_LEARNER_NODE, 4).encode()
    assert describe_entry(Entry(2, 8, EntryType.CONF_CHANGE, cc)) == "2/8 conf add-learner 4"
    m = Message(MT.APP, 2, 1, term=2, log_term=1, index=5, commit=5, entries=(Entry(2, 6),))
    assert describe_message(m) == '1->2 MsgApp term=2 log=1/5 commit=5 entries=[2/6 normal ""]'
    rej = Message(MT.APP_RESP, 1, 2, term=2, index=3, reject=True, reject_hint=3, log_term=1)
    assert describe_message(rej) == "2->1 MsgAppResp term=2 index=3 rejected hint=1/3"
    rd = Ready(hard_state=HardState(2, 1, 5), must_sync=True, messages=(m,))
    assert describe_ready(rd).splitlines() == [
        "Ready must-sync",
        "hard-state term=2 vote=1 commit=5",
        "send " + describe_message(m),
    ]


def test_leader_bounds_uncommitted_entries() -> None:
    storage = MemoryStorage()
    node = RawNode(
        Config(id=1, storage=storage, rng=random.Random(1), max_uncommitted_entries_size=10)
    )
    node.bootstrap([1])
    handle(node, storage)
    node.campaign()
    handle(node, storage)
    node.propose(b"12345678")
    with pytest.raises(ProposalDropped, match="uncommitted"):
        node.propose(b"12345678")
    handle(node, storage)  # committed and applied: the budget is free again
    node.propose(b"12345678")
    node.propose(b"")  # empty entries cost nothing
