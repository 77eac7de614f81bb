"""Majority quorums: the commit index and election outcome of a set of voters.

Pure functions over plain collections, so they can be checked against a naive oracle
(tests/raft/test_raft_quorum.py).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import IntEnum


class VoteResult(IntEnum):
    PENDING = 0
    """Neither outcome is decided yet: some voters have not answered."""
    LOST = 1
    """A majority rejected (or can no longer grant)."""
    WON = 2
    """A majority granted."""


def majority(n: int) -> int:
    """The size of a majority of ``n`` voters."""
    return n // 2 + 1


def committed_index(voters: Collection[int], match: Mapping[int, int]) -> int:
    """The largest index that a majority of ``voters`` have acknowledged (§5.3).

    ``match`` maps a voter to its highest acknowledged index; a missing voter counts as 0.
    With no voters the result is 0: nothing can be committed.
    """
    n = len(voters)
    if n == 0:
        return 0
    acked = sorted((match.get(v, 0) for v in voters), reverse=True)
    # acked[k] is reached by the k+1 voters with the highest indexes.
    return acked[majority(n) - 1]


def vote_result(voters: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    """The outcome of an election (or pre-vote) among ``voters`` given ``votes`` so far.

    Votes from non-voters are ignored. With no voters the result is WON (an empty
    configuration has nothing to wait for; the core never campaigns without being a voter).
    """
    n = len(voters)
    if n == 0:
        return VoteResult.WON
    granted = rejected = 0
    for v in voters:
        answer = votes.get(v)
        if answer is True:
            granted += 1
        elif answer is False:
            rejected += 1
    q = majority(n)
    if granted >= q:
        return VoteResult.WON
    if n - rejected < q:
        return VoteResult.LOST
    return VoteResult.PENDING
