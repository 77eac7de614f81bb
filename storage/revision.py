"""Revisions and their on-disk encoding.

A revision is ``(main, sub)``: ``main`` grows by one per write transaction and ``sub``
numbers the changes inside it (0, 1, 2 ... in execution order). In the backend every
version of every key is stored under the bytes of its revision, so the encoding must
keep LMDB's byte order equal to revision order:

    8-byte big-endian main | b"_" | 8-byte big-endian sub [| b"t" for a tombstone]

Invariant: for revisions a, b: ``a < b`` iff ``encode(a) < encode(b)`` (the tombstone
marker only ever follows a revision that has no plain twin, so it cannot tie).

Worked example::

    >>> encode(Revision(2, 1))
    b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02_\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01'
    >>> decode(encode(Revision(5, 0), tombstone=True))
    (Revision(main=5, sub=0), True)
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from etcdlite.storage.errors import CorruptStore

REV_BYTES_LEN = 17
"""Length of an encoded revision without the tombstone marker."""
MARKED_REV_BYTES_LEN = REV_BYTES_LEN + 1
TOMBSTONE_MARK = b"t"

_REV = struct.Struct(">QcQ")


class Revision(NamedTuple):
    """A point in the store's history; ordered as a tuple (main first)."""

    main: int
    sub: int = 0


def encode(rev: Revision, tombstone: bool = False) -> bytes:
    """Encode ``rev`` as backend key bytes, optionally marked as a tombstone."""
    raw = _REV.pack(rev.main, b"_", rev.sub)
    return raw + TOMBSTONE_MARK if tombstone else raw


def encode_main(main: int) -> bytes:
    """The smallest key of revision ``main`` (``sub`` 0): a bound for range scans."""
    return _REV.pack(main, b"_", 0)


def decode(raw: bytes) -> tuple[Revision, bool]:
    """Decode backend key bytes into ``(revision, is_tombstone)``.

    Raises CorruptStore for bytes that no ``encode`` call could have produced.
    """
    n = len(raw)
    if n == MARKED_REV_BYTES_LEN and raw[-1:] == TOMBSTONE_MARK:
        tombstone = True
    elif n == REV_BYTES_LEN:
        tombstone = False
    else:
        raise CorruptStore(f"malformed revision key {raw!r}")
    main, sep, sub = _REV.unpack_from(raw)
    if sep != b"_":
        raise CorruptStore(f"malformed revision key {raw!r}")
    return Revision(main, sub), tombstone
