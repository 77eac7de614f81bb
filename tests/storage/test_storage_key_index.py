"""KeyIndex table tests in the style of etcd's mvcc/key_index_test.go.

``docstring_key_index`` is the worked example of key_index.py (put 1, put 2, delete 3,
put 4, delete 5); ``etcd_key_index`` is etcd's newTestKeyIndex (with a sub revision).
Expectations are named ``w...`` as in etcd.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcdlite.storage.errors import RevisionNotFound
from etcdlite.storage.key_index import Generation, KeyIndex
from etcdlite.storage.revision import Revision

R = Revision


def docstring_key_index() -> KeyIndex:
    # generations:
    #    {1.0, 2.0, 3.0(t)}  created 1, version 3
    #    {4.0, 5.0(t)}       created 4, version 2
    #    {}
    ki = KeyIndex(b"foo")
    ki.put(R(1))
    ki.put(R(2))
    ki.tombstone(R(3))
    ki.put(R(4))
    ki.tombstone(R(5))
    return ki


def etcd_key_index() -> KeyIndex:
    # generations:
    #    {2.0, 4.0, 6.0(t)}
    #    {8.0, 10.0, 12.0(t)}
    #    {14.0, 14.1, 16.0(t)}
    #    {}
    ki = KeyIndex(b"foo")
    ki.put(R(2))
    ki.put(R(4))
    ki.tombstone(R(6))
    ki.put(R(8))
    ki.put(R(10))
    ki.tombstone(R(12))
    ki.put(R(14, 0))
    ki.put(R(14, 1))
    ki.tombstone(R(16))
    return ki


Gen = tuple[int, int, list[Revision]]


def gens(ki: KeyIndex) -> list[Gen]:
    return [(g.created, g.version, list(g.revs)) for g in ki.generations]


EMPTY: Gen = (0, 0, [])

# -- get ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "wmod", "wcreated", "wver"),
    [
        (0, None, 0, 0),
        (1, R(1), 1, 1),
        (2, R(2), 1, 2),
        (3, None, 0, 0),  # the tombstone of generation 1
        (4, R(4), 4, 1),
        (5, None, 0, 0),  # the tombstone of generation 2
        (6, None, 0, 0),
        (7, None, 0, 0),
    ],
)
def test_get_docstring_example(at: int, wmod: Revision | None, wcreated: int, wver: int) -> None:
    ki = docstring_key_index()
    if wmod is None:
        with pytest.raises(RevisionNotFound):
            ki.get(at)
    else:
        assert ki.get(at) == (wmod, wcreated, wver)


@pytest.mark.parametrize(
    ("at", "wmod", "wcreated", "wver"),
    [
        (17, None, 0, 0),
        (16, None, 0, 0),
        # generation 3
        (15, R(14, 1), 14, 2),
        (14, R(14, 1), 14, 2),
        (13, None, 0, 0),
        (12, None, 0, 0),
        # generation 2
        (11, R(10), 8, 2),
        (10, R(10), 8, 2),
        (9, R(8), 8, 1),
        (8, R(8), 8, 1),
        (7, None, 0, 0),
        (6, None, 0, 0),
        # generation 1, compacted at 4: version still counts the dropped put
        (5, R(4), 2, 2),
        (4, R(4), 2, 2),
    ],
)
def test_get_after_compaction_etcd_example(
    at: int, wmod: Revision | None, wcreated: int, wver: int
) -> None:
    # etcd TestKeyIndexGet: newTestKeyIndex compacted at 4.
    ki = etcd_key_index()
    ki.compact(4, set())
    if wmod is None:
        with pytest.raises(RevisionNotFound):
            ki.get(at)
    else:
        assert ki.get(at) == (wmod, wcreated, wver)


def revisions_after(ki: KeyIndex, at: int) -> list[Revision]:
    return [rev for g in ki.generations for rev in g.revs if rev.main > at]


# -- compact -----------------------------------------------------------------------------

DOC_FULL: list[Gen] = [(1, 3, [R(1), R(2), R(3)]), (4, 2, [R(4), R(5)]), EMPTY]
# A tombstone at exactly the compact revision leaves the index but stays available (on
# disk), so a watch from that revision still sees the DELETE (etcd-io/etcd#18274).
DOC_COMPACT_CASES = [
    (1, DOC_FULL, {R(1)}),
    (2, [(1, 3, [R(2), R(3)]), (4, 2, [R(4), R(5)]), EMPTY], {R(2)}),
    (3, [(4, 2, [R(4), R(5)]), EMPTY], {R(3)}),  # tombstone at 3: kept on disk
    (4, [(4, 2, [R(4), R(5)]), EMPTY], {R(4)}),
    (5, [EMPTY], {R(5)}),  # tombstone at 5: kept on disk, the index is empty
    (6, [EMPTY], set()),
    (7, [EMPTY], set()),
]


@pytest.mark.parametrize(("at", "wgens", "wavailable"), DOC_COMPACT_CASES)
def test_compact_docstring_example(at: int, wgens: list[Gen], wavailable: set[Revision]) -> None:
    ki = docstring_key_index()
    available: set[Revision] = set()
    ki.compact(at, available)
    assert gens(ki) == wgens
    assert available == wavailable
    assert ki.is_empty() == (wgens == [EMPTY])
    assert ki.modified == R(5)


def test_compact_docstring_example_incrementally() -> None:
    # Compacting the same index at 1, 2, ... 7 gives the same results as compacting a
    # fresh copy at each revision (etcd compacts one index repeatedly).
    ki = docstring_key_index()
    for at, wgens, wavailable in DOC_COMPACT_CASES:
        available: set[Revision] = set()
        ki.compact(at, available)
        assert gens(ki) == wgens, at
        assert available == wavailable, at


G1 = [R(2), R(4), R(6)]
G2 = [R(8), R(10), R(12)]
G3 = [R(14, 0), R(14, 1), R(16)]
ETCD_COMPACT_CASES = [
    # etcd TestKeyIndexCompactAndKeep, as fixed by etcd-io/etcd#18274: a tombstone at
    # exactly `at` (6, 12, 16) is available although its generation leaves the index.
    (1, [(2, 3, G1), (8, 3, G2), (14, 3, G3), EMPTY], set()),
    (2, [(2, 3, G1), (8, 3, G2), (14, 3, G3), EMPTY], {R(2)}),
    (3, [(2, 3, G1), (8, 3, G2), (14, 3, G3), EMPTY], {R(2)}),
    (4, [(2, 3, G1[1:]), (8, 3, G2), (14, 3, G3), EMPTY], {R(4)}),
    (5, [(2, 3, G1[1:]), (8, 3, G2), (14, 3, G3), EMPTY], {R(4)}),
    (6, [(8, 3, G2), (14, 3, G3), EMPTY], {R(6)}),
    (7, [(8, 3, G2), (14, 3, G3), EMPTY], set()),
    (8, [(8, 3, G2), (14, 3, G3), EMPTY], {R(8)}),
    (9, [(8, 3, G2), (14, 3, G3), EMPTY], {R(8)}),
    (10, [(8, 3, G2[1:]), (14, 3, G3), EMPTY], {R(10)}),
    (11, [(8, 3, G2[1:]), (14, 3, G3), EMPTY], {R(10)}),
    (12, [(14, 3, G3), EMPTY], {R(12)}),
    (13, [(14, 3, G3), EMPTY], set()),
    (14, [(14, 3, G3[1:]), EMPTY], {R(14, 1)}),
    (15, [(14, 3, G3[1:]), EMPTY], {R(14, 1)}),
    (16, [EMPTY], {R(16)}),
    (17, [EMPTY], set()),
]


@pytest.mark.parametrize(("at", "wgens", "wavailable"), ETCD_COMPACT_CASES)
def test_compact_etcd_example(at: int, wgens: list[Gen], wavailable: set[Revision]) -> None:
    ki = etcd_key_index()
    available: set[Revision] = set()
    ki.compact(at, available)
    assert gens(ki) == wgens
    assert available == wavailable


def test_compact_etcd_example_incrementally() -> None:
    ki = etcd_key_index()
    for at, wgens, wavailable in ETCD_COMPACT_CASES:
        available: set[Revision] = set()
        ki.compact(at, available)
        assert gens(ki) == wgens, at
        assert available == wavailable, at


def test_compact_live_key_keeps_its_newest_revision() -> None:
    ki = KeyIndex(b"k")
    for main in (2, 3, 5):
        ki.put(R(main))
    available: set[Revision] = set()
    ki.compact(9, available)
    assert gens(ki) == [(2, 3, [R(5)])]
    assert available == {R(5)}
    assert ki.get(9) == (R(5), 2, 3)


# -- put / tombstone / restore -----------------------------------------------------------


def test_put_and_tombstone_build_generations() -> None:
    ki = docstring_key_index()
    assert gens(ki) == DOC_FULL
    assert ki.modified == R(5)
    ki.put(R(6, 2))
    assert gens(ki) == [*DOC_FULL[:2], (6, 1, [R(6, 2)])]
    assert ki.modified == R(6, 2)


def test_tombstone_on_deleted_key_raises() -> None:
    ki = docstring_key_index()
    before = gens(ki)
    with pytest.raises(RevisionNotFound):
        ki.tombstone(R(6))
    assert gens(ki) == before
    assert ki.modified == R(5)


def test_tombstone_on_never_written_key_raises() -> None:
    with pytest.raises(RevisionNotFound):
        KeyIndex(b"k").tombstone(R(2))


@pytest.mark.parametrize("rev", [R(5), R(4, 9), R(1)])
def test_put_not_after_modified_is_refused(rev: Revision) -> None:
    ki = docstring_key_index()
    with pytest.raises(AssertionError):
        ki.put(rev)


def test_restore_starts_from_a_compacted_version() -> None:
    ki = KeyIndex(b"k")
    ki.restore(created=3, modified=R(7, 1), version=4)
    ki.put(R(8))
    assert ki.get(7) == (R(7, 1), 3, 4)
    assert ki.get(8) == (R(8), 3, 5)
    ki.tombstone(R(9))
    ki.put(R(10))
    assert ki.get(10) == (R(10), 10, 1)
    assert gens(ki) == [(3, 6, [R(7, 1), R(8), R(9)]), (10, 1, [R(10)])]


def test_generation_repr_and_key_index_repr() -> None:
    assert "created=1" in repr(Generation(1, 1, [R(1)]))
    assert repr(KeyIndex(b"k")).startswith("KeyIndex(b'k'")


# -- property: compaction never changes what is readable at or after the compaction -------

ops = st.lists(st.tuples(st.booleans(), st.integers(0, 2)), min_size=1, max_size=25)


def build(op_list: list[tuple[bool, int]]) -> tuple[KeyIndex, list[tuple[Revision, bool]]]:
    """Apply (is_delete, sub_count) ops at mains 1, 2 ...; tombstones on a deleted key skip."""
    ki = KeyIndex(b"k")
    history: list[tuple[Revision, bool]] = []
    live = False
    for main, (is_delete, extra_subs) in enumerate(op_list, start=1):
        for sub in range(extra_subs + 1):
            rev = R(main, sub)
            if is_delete:
                if not live:
                    break
                ki.tombstone(rev)
                live = False
            else:
                ki.put(rev)
                live = True
            history.append((rev, is_delete))
    return ki, history


@settings(max_examples=300)
@given(ops, st.data())
def test_compaction_preserves_reads_from_its_revision_on(
    op_list: list[tuple[bool, int]], data: st.DataObject
) -> None:
    ki, history = build(op_list)
    if not history:
        return
    top = len(op_list) + 1
    at = data.draw(st.integers(1, top), label="compact at")
    before = {}
    for r in range(at, top + 1):
        try:
            before[r] = ki.get(r)
        except RevisionNotFound:
            before[r] = None
    after_before = revisions_after(ki, at)
    available: set[Revision] = set()
    snapshot = copy.deepcopy(ki)
    ki.compact(at, available)
    for r in range(at, top + 1):
        try:
            got = ki.get(r)
        except RevisionNotFound:
            got = None
        assert got == before[r], (r, snapshot, ki)
    # Revisions after the compaction revision are untouched (a tombstone at exactly `at`
    # leaves the index with its generation; physical compaction still keeps it, see
    # `available` below).
    assert revisions_after(ki, at) == after_before
    # available = the newest revision <= at, unless it is a tombstone below `at` (build()
    # never mixes puts and a tombstone in one main revision, so a tombstone at `at` is
    # the newest revision <= at).
    older = [(rv, tomb) for rv, tomb in history if rv.main <= at]
    wavailable = set()
    if older:
        newest, is_tomb = older[-1]
        if not is_tomb or newest.main == at:
            wavailable = {newest}
    assert available == wavailable
    # Whatever the index still holds is either kept or newer than `at`; a kept tombstone
    # is on disk only, never in the index.
    held = {rv for g in ki.generations for rv in g.revs}
    tombstones = {rv for rv, tomb in history if tomb}
    assert {rv for rv in held if rv.main <= at} == wavailable - tombstones
    assert {rv for rv, _ in history if rv.main > at} <= held
