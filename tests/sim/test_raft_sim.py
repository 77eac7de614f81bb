"""Seeded simulation of Raft clusters under faults (see sim_cluster.py for the checkers).

CI runs ``RAFT_SIM_SEEDS`` seeds (300 by default, in chunks so a failure names its chunk);
``python tests/sim/run_seeds.py --seeds 10000`` runs many more on demand. A failure message
lists each failing seed with the command that replays it.
"""

from __future__ import annotations

import os

import pytest
from sim_cluster import (
    LivenessViolation,
    SafetyViolation,
    SimOptions,
    Simulation,
    run_seed,
)

from etcdlite.raft import HardState, MessageType, core, log, rawnode

SEEDS = int(os.environ.get("RAFT_SIM_SEEDS", "300"))
CHUNK = 25
CHUNKS = [range(lo, min(lo + CHUNK, SEEDS)) for lo in range(0, SEEDS, CHUNK)]


@pytest.mark.parametrize("seeds", CHUNKS, ids=[f"{r.start}-{r.stop - 1}" for r in CHUNKS])
def test_seeded_runs_are_safe_and_recover(seeds: range) -> None:
    failures = []
    for seed in seeds:
        try:
            run_seed(seed)
        except (SafetyViolation, LivenessViolation) as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)


def test_a_seed_replays_identically() -> None:
    runs = []
    for _ in range(2):
        sim = Simulation(SimOptions.from_seed(11), trace=True)
        stats = sim.run()
        runs.append((stats, sim.trace))
    assert runs[0] == runs[1]
    assert runs[0][1], "the trace should not be empty"


def test_checkers_catch_a_voter_that_ignores_log_freshness(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Plant a bug (grant votes whatever the candidate's log, breaking §5.4.1): the safety
    checkers must notice within a few seeds."""
    monkeypatch.setattr(log.RaftLog, "is_up_to_date", lambda self, index, term: True)
    with pytest.raises(SafetyViolation, match=r"replay: python tests/sim/run_seeds\.py --seed"):
        for seed in range(40):
            run_seed(seed)


def test_checkers_catch_double_votes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plant a bug (forget the vote before each request, breaking §5.2's one vote per term):
    election safety must fail (two leaders, or a leader whose durable vote went to another)."""
    original = core.Raft._handle_vote_request

    def forgetful(self: core.Raft, m: core.Message) -> None:
        self.vote = core.NONE
        original(self, m)

    monkeypatch.setattr(core.Raft, "_handle_vote_request", forgetful)
    with pytest.raises(SafetyViolation, match=r"two leaders in term|leads term \d+ with durable"):
        for seed in range(40):
            run_seed(seed)


def test_checkers_catch_messages_sent_at_an_unpersisted_term(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Plant the bug of the review (thesis §3.8, paper §5.2): vote requests leave before the
    candidate's new term is durable, a candidate leads on the others' grants before its own
    vote is durable, and Ready.messages may carry any term. The persist-before-send checker
    must notice at once."""
    mt = MessageType
    monkeypatch.setattr(
        core, "_AFTER_APPEND", frozenset({mt.APP_RESP, mt.VOTE_RESP, mt.PRE_VOTE_RESP})
    )
    monkeypatch.setattr(core.Raft, "_own_vote_counted", lambda self: True)
    monkeypatch.setattr(
        rawnode.RawNode, "_sendable_before_persisting", staticmethod(lambda m, durable: True)
    )
    with pytest.raises(SafetyViolation, match="before persisting term"):
        for seed in range(5):
            run_seed(seed)


def test_checkers_catch_a_node_that_forgets_its_term(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plant a bug: a node restarting after it voted for itself forgets that term (as if the
    write had been lost), so its next incarnation may campaign for, and lead, the same term
    again with another log. The checkers must notice."""
    original = core.Raft._load_state

    def forget_own_term(self: core.Raft, hs: HardState) -> None:
        if hs.vote == self.id:
            hs = HardState(hs.term - 1, core.NONE, hs.commit)
        original(self, hs)

    monkeypatch.setattr(core.Raft, "_load_state", forget_own_term)
    with pytest.raises(SafetyViolation):
        for seed in range(10):
            run_seed(seed)


def test_one_leader_per_term_tells_incarnations_apart() -> None:
    """Election safety counts each incarnation of a node as a different leader: a node
    leading a term, crashing and leading the same term again forgot it had led it."""
    sim = Simulation(SimOptions.from_seed(11))
    while not sim.leaders() and sim.now < 200:
        sim.tick()
    (leader,) = sim.leaders()
    sim.check_node(leader)
    leader.incarnation += 1  # as if it had crashed, restarted and won the same term again
    with pytest.raises(SafetyViolation, match=r"two leaders in term \d+: node (\d+) .* node \1 "):
        sim.check_node(leader)


def test_liveness_checker_catches_a_cluster_that_never_commits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(core.Raft, "_maybe_commit", lambda self: False)
    with pytest.raises(LivenessViolation, match="not committed"):
        run_seed(3, fault_ticks=20)
