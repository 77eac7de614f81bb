"""quorum.committed_index and vote_result against deliberately naive oracles."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from etcdlite.raft.quorum import VoteResult, committed_index, majority, vote_result

voter_sets = st.sets(st.integers(1, 9), min_size=0, max_size=7)


def naive_committed(voters: set[int], match: dict[int, int]) -> int:
    """The largest index that at least a majority of voters have reached, by trying each."""
    if not voters:
        return 0
    best = 0
    for candidate in range(max(match.values(), default=0) + 1):
        reached = sum(1 for v in voters if match.get(v, 0) >= candidate)
        if reached * 2 > len(voters):
            best = candidate
    return best


def naive_vote(voters: set[int], votes: dict[int, bool]) -> VoteResult:
    if not voters:
        return VoteResult.WON
    yes = sum(1 for v in voters if votes.get(v) is True)
    undecided = sum(1 for v in voters if v not in votes)
    if yes * 2 > len(voters):
        return VoteResult.WON
    if (yes + undecided) * 2 > len(voters):
        return VoteResult.PENDING
    return VoteResult.LOST


@given(voters=voter_sets, match=st.dictionaries(st.integers(1, 12), st.integers(0, 20)))
def test_committed_index_matches_oracle(voters: set[int], match: dict[int, int]) -> None:
    assert committed_index(voters, match) == naive_committed(voters, match)


@given(voters=voter_sets, votes=st.dictionaries(st.integers(1, 12), st.booleans()))
def test_vote_result_matches_oracle(voters: set[int], votes: dict[int, bool]) -> None:
    assert vote_result(voters, votes) == naive_vote(voters, votes)


def test_examples() -> None:
    assert [majority(n) for n in range(1, 6)] == [1, 2, 2, 3, 3]
    assert committed_index({1, 2, 3}, {1: 5, 2: 3}) == 3
    assert committed_index({1, 2, 3, 4}, {1: 5, 2: 3, 3: 1}) == 1
    assert committed_index(set(), {1: 5}) == 0
    assert vote_result({1, 2, 3}, {1: True}) == VoteResult.PENDING
    assert vote_result({1, 2, 3}, {1: True, 2: False, 3: False}) == VoteResult.LOST
    assert vote_result({1, 2, 3}, {1: True, 9: True}) == VoteResult.PENDING
