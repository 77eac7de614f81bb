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

from etcdlite.raft import core, log

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
    election safety must fail."""
    original = core.Raft._handle_vote_request

    def forgetful(self: core.Raft, m: core.Message) -> None:
        self.vote = core.NONE
        original(self, m)

    monkeypatch.setattr(core.Raft, "_handle_vote_request", forgetful)
    with pytest.raises(SafetyViolation, match="two leaders in term"):
        for seed in range(40):
            run_seed(seed)


def test_liveness_checker_catches_a_cluster_that_never_commits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(core.Raft, "_maybe_commit", lambda self: False)
    with pytest.raises(LivenessViolation, match="not committed"):
        run_seed(3, fault_ticks=20)
