"""TreeIndex: every user key, in byte order, mapped to its KeyIndex.

Ranges use etcd's conventions, already normalised by the caller:
``end is None`` means the single key ``key``; ``end == b""`` means every key >= ``key``;
otherwise the half-open interval ``[key, end)``.

Example::

    idx = TreeIndex()
    idx.put(b"a", Revision(2, 0)); idx.put(b"b", Revision(3, 0))
    idx.tombstone(b"a", Revision(4, 0))
    idx.revisions(b"a", b"", at=3)   # -> [(b"a", rev 2.0 ...), (b"b", rev 3.0 ...)], 2
    idx.revisions(b"a", b"", at=4)   # -> [(b"b", ...)], 1
"""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedDict

from etcdlite.storage.errors import RevisionNotFound
from etcdlite.storage.key_index import KeyIndex
from etcdlite.storage.revision import Revision

Visible = tuple[bytes, Revision, int, int]
"""``(key, modified, created, version)`` of one key as seen at some revision."""


class TreeIndex:
    """The in-memory index of the MVCC store (see the module docstring)."""

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: SortedDict = SortedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key: bytes, at: int) -> tuple[Revision, int, int]:
        """``(modified, created, version)`` of ``key`` at ``at``; RevisionNotFound if absent."""
        ki = self._keys.get(key)
        if ki is None:
            raise RevisionNotFound(key)
        return ki.get(at)

    def key_index(self, key: bytes) -> KeyIndex | None:
        return self._keys.get(key)

    def put(self, key: bytes, rev: Revision) -> None:
        ki = self._keys.get(key)
        if ki is None:
            ki = self._keys[key] = KeyIndex(key)
        ki.put(rev)

    def restore(self, key: bytes, created: int, modified: Revision, version: int) -> None:
        """Record a key version read back from the backend, oldest first."""
        ki = self._keys.get(key)
        if ki is None:
            ki = self._keys[key] = KeyIndex(key)
            ki.restore(created, modified, version)
        else:
            ki.put(modified)

    def tombstone(self, key: bytes, rev: Revision) -> None:
        ki = self._keys.get(key)
        if ki is None:
            raise RevisionNotFound(key)
        ki.tombstone(rev)

    def _key_indexes(self, key: bytes, end: bytes | None) -> Iterator[KeyIndex]:
        if end is None:
            ki = self._keys.get(key)
            if ki is not None:
                yield ki
            return
        if end and end <= key:
            return
        keys = self._keys
        for k in keys.irange(key, end or None, inclusive=(True, False)):
            yield keys[k]

    def revisions(
        self, key: bytes, end: bytes | None, at: int, limit: int = 0
    ) -> tuple[list[Visible], int]:
        """Keys live at ``at`` in the range, up to ``limit`` (<= 0: all), and the total count."""
        out: list[Visible] = []
        total = 0
        for ki in self._key_indexes(key, end):
            try:
                mod, created, ver = ki.get(at)
            except RevisionNotFound:
                continue
            total += 1
            if limit <= 0 or len(out) < limit:
                out.append((ki.key, mod, created, ver))
        return out, total

    def count(self, key: bytes, end: bytes | None, at: int) -> int:
        """How many keys of the range are live at ``at``."""
        n = 0
        for ki in self._key_indexes(key, end):
            try:
                ki.get(at)
            except RevisionNotFound:
                continue
            n += 1
        return n

    def compact(self, at: int) -> set[Revision]:
        """Compact every key at ``at``; returns the revisions physical compaction keeps."""
        available: set[Revision] = set()
        empty: list[bytes] = []
        for key, ki in self._keys.items():
            ki.compact(at, available)
            if ki.is_empty():
                empty.append(key)
        for key in empty:
            del self._keys[key]
        return available
