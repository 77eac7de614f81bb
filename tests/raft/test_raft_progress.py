"""Progress state transitions and the Inflights window."""

from __future__ import annotations

import pytest

from etcdlite.raft import Inflights, Progress, ProgressState, RaftInvariantError


def test_inflights_count_limit_and_free() -> None:
    inf = Inflights(3)
    for i in (5, 7, 9):
        assert not inf.full()
        inf.add(i, 10)
    assert inf.full() and len(inf) == 3 and inf.bytes == 30
    with pytest.raises(RaftInvariantError):
        inf.add(11, 1)
    inf.free_le(7)
    assert len(inf) == 1 and inf.bytes == 10 and not inf.full()
    inf.free_le(100)
    assert len(inf) == 0 and inf.bytes == 0


def test_inflights_byte_limit() -> None:
    inf = Inflights(10, max_bytes=25)
    inf.add(1, 10)
    inf.add(2, 10)
    assert not inf.full()
    inf.add(3, 10)
    assert inf.full()
    inf.free_first_one()
    assert not inf.full() and inf.bytes == 20


def test_inflights_indexes_must_increase() -> None:
    inf = Inflights(5)
    inf.add(4, 1)
    with pytest.raises(RaftInvariantError):
        inf.add(4, 1)


def test_probe_sends_one_append_at_a_time() -> None:
    pr = Progress(next_index=6, max_inflight=4)
    assert pr.state == ProgressState.PROBE and not pr.is_paused()
    pr.sent_entries(8, 30)
    assert pr.is_paused() and pr.next == 6  # probing does not move next optimistically
    assert pr.maybe_update(5)
    assert not pr.is_paused()


def test_replicate_moves_next_optimistically_until_window_full() -> None:
    pr = Progress(next_index=6, max_inflight=2)
    pr.match = 5
    pr.become_replicate()
    pr.sent_entries(7, 10)
    pr.sent_entries(9, 10)
    assert pr.next == 10 and pr.is_paused()
    assert pr.maybe_update(7)
    pr.inflights.free_le(7)
    assert not pr.is_paused() and pr.match == 7


def test_maybe_decrease_to() -> None:
    pr = Progress(next_index=10, max_inflight=2)
    # Probe: only a rejection of the latest probe (next - 1) counts; the hint is used.
    assert not pr.maybe_decrease_to(5, 3)
    assert pr.maybe_decrease_to(9, 3)
    assert pr.next == 4
    # Replicate: a rejection at or below match is stale; otherwise back to match + 1.
    pr.match = 6
    pr.become_replicate()
    assert not pr.maybe_decrease_to(6, 0)
    pr.next = 12
    assert pr.maybe_decrease_to(9, 0)
    assert pr.next == 7


def test_snapshot_state_pauses_and_probe_resumes_after_it() -> None:
    pr = Progress(next_index=3, max_inflight=2)
    pr.become_snapshot(20)
    assert pr.is_paused() and pr.state == ProgressState.SNAPSHOT
    pr.become_probe()
    assert pr.next == 21 and pr.state == ProgressState.PROBE
