"""keyIndex: the revisions of one user key, grouped into generations.

A generation is one life of the key: it starts with the put that creates the key and
ends with the tombstone that deletes it. The last generation is the open one; an empty
open generation means the key is currently deleted.

Invariants:
  * revisions only grow, across and inside generations;
  * every generation but the last is non-empty and ends with its tombstone;
  * ``version`` of a generation counts its revisions (the tombstone included), so the
    version of the i-th revision of generation g is ``g.version - (len(g.revs) - i - 1)``.

Worked example. Put at 1.0, put at 2.0, delete at 3.0, put at 4.0, delete at 5.0
gives::

    generations:
        {1.0, 2.0, 3.0(t)}   created 1, version 3
        {4.0, 5.0(t)}        created 4, version 2
        {}                   (open, empty: the key is deleted now)

``get(2)`` sees 2.0 (created 1, version 2); ``get(3)`` and ``get(5)`` see nothing
(tombstones); ``get(4)`` sees 4.0 (created 4, version 1).

Compaction at revision R keeps, in the generation that is live at R, the newest revision
<= R (it is still the value of the key at R) and drops everything older. A generation
whose tombstone is <= R goes from the index; but a tombstone exactly AT R stays
``available`` (on disk), so a watch from the compact revision still sees that DELETE
(etcd 3.5.1 dropped it; etcd fixed this in #18274). Compacting the example:

    compact(2) -> {2.0, 3.0(t)}, {4.0, 5.0(t)}, {}     available {2.0}
    compact(3) -> {4.0, 5.0(t)}, {}                    available {3.0(t)}
    compact(4) -> {4.0, 5.0(t)}, {}                    available {4.0}
    compact(5) -> {}  (the key index is empty: drop)   available {5.0(t)}
    compact(6) -> {}                                   available {}
"""

from __future__ import annotations

from etcdlite.storage.errors import RevisionNotFound
from etcdlite.storage.revision import Revision


class Generation:
    """One life of a key, from its creating put to its tombstone (if any)."""

    __slots__ = ("created", "revs", "version")

    def __init__(self, created: int = 0, version: int = 0, revs: list[Revision] | None = None):
        self.created = created
        self.version = version
        self.revs: list[Revision] = revs if revs is not None else []

    def __repr__(self) -> str:
        return f"Generation(created={self.created}, version={self.version}, revs={self.revs})"


class KeyIndex:
    """The history of one key: see the module docstring for the rules."""

    __slots__ = ("generations", "key", "modified")

    def __init__(self, key: bytes):
        self.key = key
        self.modified = Revision(0, 0)
        self.generations: list[Generation] = [Generation()]

    def put(self, rev: Revision) -> None:
        """Record a put of the key at ``rev`` (which must be newer than any before)."""
        if rev <= self.modified:
            raise AssertionError(f"keyIndex {self.key!r}: put {rev} <= modified {self.modified}")
        g = self.generations[-1]
        if not g.revs:
            g.created = rev.main
        g.revs.append(rev)
        g.version += 1
        self.modified = rev

    def restore(self, created: int, modified: Revision, version: int) -> None:
        """Start the index of a key read back from the backend at ``modified``."""
        self.generations = [Generation(created, version, [modified])]
        self.modified = modified

    def tombstone(self, rev: Revision) -> None:
        """Close the open generation with a tombstone at ``rev``.

        Raises RevisionNotFound when the key is already deleted.
        """
        if not self.generations[-1].revs:
            raise RevisionNotFound(self.key)
        self.put(rev)
        self.generations.append(Generation())

    def is_empty(self) -> bool:
        return len(self.generations) == 1 and not self.generations[0].revs

    def _find_generation(self, at: int) -> Generation | None:
        """The generation in which the key is live at main revision ``at``, if any."""
        last = len(self.generations) - 1
        for i in range(last, -1, -1):
            g = self.generations[i]
            if not g.revs:
                continue
            if i != last and g.revs[-1].main <= at:
                return None  # deleted at or before `at`, and not recreated by then
            if g.revs[0].main <= at:
                return g
        return None

    def get(self, at: int) -> tuple[Revision, int, int]:
        """``(modified, created, version)`` of the key as of main revision ``at``.

        Raises RevisionNotFound when the key does not exist at ``at``.
        """
        g = self._find_generation(at)
        if g is not None:
            revs = g.revs
            n = len(revs)
            for i in range(n - 1, -1, -1):
                if revs[i].main <= at:
                    return revs[i], g.created, g.version - (n - i - 1)
        raise RevisionNotFound(self.key)

    def compact(self, at: int, available: set[Revision]) -> None:
        """Drop history older than main revision ``at``; add what stays visible at ``at``
        to ``available`` (the revisions physical compaction must keep)."""
        gen_idx = 0
        last = len(self.generations) - 1
        # Skip generations that were closed (tombstoned) at or before `at`; a tombstone
        # exactly at `at` is the DELETE event of the compact revision: keep it on disk.
        while gen_idx < last and self.generations[gen_idx].revs[-1].main <= at:
            tomb = self.generations[gen_idx].revs[-1]
            if tomb.main == at:
                available.add(tomb)
            gen_idx += 1
        g = self.generations[gen_idx]
        keep_from = -1
        for i in range(len(g.revs) - 1, -1, -1):
            if g.revs[i].main <= at:
                available.add(g.revs[i])
                keep_from = i
                break
        if g.revs:
            if keep_from != -1:
                del g.revs[:keep_from]
            # A closed generation reduced to its tombstone carries nothing visible.
            if len(g.revs) == 1 and gen_idx != last and g.revs[0].main <= at:
                available.discard(g.revs[0])
                gen_idx += 1
        del self.generations[:gen_idx]

    def __repr__(self) -> str:
        return f"KeyIndex({self.key!r}, {self.generations})"
