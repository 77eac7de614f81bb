"""TreeIndex: range conventions (None / b"" / [key, end)), limit and count, compaction."""

from __future__ import annotations

import pytest

from etcdlite.storage.errors import RevisionNotFound
from etcdlite.storage.index import TreeIndex
from etcdlite.storage.revision import Revision

R = Revision


def example_index() -> TreeIndex:
    # rev 2: a, b   rev 3: c, "a\x00"   rev 4: delete a   rev 5: b again, "d\xff"
    idx = TreeIndex()
    idx.put(b"a", R(2, 0))
    idx.put(b"b", R(2, 1))
    idx.put(b"c", R(3, 0))
    idx.put(b"a\x00", R(3, 1))
    idx.tombstone(b"a", R(4, 0))
    idx.put(b"b", R(5, 0))
    idx.put(b"d\xff", R(5, 1))
    return idx


def keys(idx: TreeIndex, key: bytes, end: bytes | None, at: int, limit: int = 0):
    visible, total = idx.revisions(key, end, at, limit)
    assert idx.count(key, end, at) == total
    return [v[0] for v in visible], total


@pytest.mark.parametrize(
    ("key", "end", "at", "limit", "wkeys", "wcount"),
    [
        (b"a", None, 3, 0, [b"a"], 1),
        (b"a", None, 4, 0, [], 0),
        (b"zz", None, 5, 0, [], 0),
        (b"a", b"", 3, 0, [b"a", b"a\x00", b"b", b"c"], 4),
        (b"a", b"", 5, 0, [b"a\x00", b"b", b"c", b"d\xff"], 4),
        (b"a", b"", 5, 2, [b"a\x00", b"b"], 4),
        (b"\x00", b"", 1, 0, [], 0),
        (b"a", b"c", 5, 0, [b"a\x00", b"b"], 2),
        (b"a", b"a\x00", 3, 0, [b"a"], 1),
        (b"a\x00", b"b", 3, 0, [b"a\x00"], 1),
        (b"b", b"d\xff", 5, 0, [b"b", b"c"], 2),
        (b"d", b"e", 5, 0, [b"d\xff"], 1),
        (b"c", b"c", 5, 0, [], 0),  # key >= end: empty, not an error
        (b"d", b"c", 5, 0, [], 0),
        (b"a", b"", 5, 10, [b"a\x00", b"b", b"c", b"d\xff"], 4),
    ],
)
def test_revisions_and_count(key, end, at, limit, wkeys, wcount) -> None:
    assert keys(example_index(), key, end, at, limit) == (wkeys, wcount)


def test_revisions_report_modified_created_version() -> None:
    visible, _ = example_index().revisions(b"a", b"", 5)
    assert visible == [
        (b"a\x00", R(3, 1), 3, 1),
        (b"b", R(5, 0), 2, 2),
        (b"c", R(3, 0), 3, 1),
        (b"d\xff", R(5, 1), 5, 1),
    ]


def test_get_and_missing_keys() -> None:
    idx = example_index()
    assert idx.get(b"b", 4) == (R(2, 1), 2, 1)
    with pytest.raises(RevisionNotFound):
        idx.get(b"a", 4)
    with pytest.raises(RevisionNotFound):
        idx.get(b"nope", 5)
    with pytest.raises(RevisionNotFound):
        idx.tombstone(b"nope", R(6))
    with pytest.raises(RevisionNotFound):
        idx.tombstone(b"a", R(6))
    assert idx.key_index(b"nope") is None


def test_compact_drops_dead_keys_and_returns_what_to_keep() -> None:
    idx = example_index()
    assert len(idx) == 5
    # a's tombstone at exactly 4 stays on disk (a watch from 4 still sees the DELETE)...
    assert idx.compact(4) == {R(2, 1), R(3, 0), R(3, 1), R(4, 0)}
    assert len(idx) == 4  # ... but "a" was deleted at 4: nothing of it is left in the index
    assert idx.key_index(b"a") is None
    assert keys(idx, b"a", b"", 4) == ([b"a\x00", b"b", b"c"], 3)
    assert keys(idx, b"a", b"", 5) == ([b"a\x00", b"b", b"c", b"d\xff"], 4)
    # a later compaction no longer keeps a's tombstone (it is below 5 now)
    assert idx.compact(5) == {R(3, 0), R(3, 1), R(5, 0), R(5, 1)}


def test_restore_rebuilds_from_oldest_record() -> None:
    idx = TreeIndex()
    idx.restore(b"k", created=2, modified=R(6), version=3)
    idx.restore(b"k", created=2, modified=R(7), version=4)
    idx.tombstone(b"k", R(8))
    idx.restore(b"k", created=9, modified=R(9), version=1)
    assert idx.get(b"k", 7) == (R(7), 2, 4)
    assert idx.get(b"k", 9) == (R(9), 9, 1)
    with pytest.raises(RevisionNotFound):
        idx.get(b"k", 8)
