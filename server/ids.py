"""Identifiers derived the way etcd derives them.

* Member id: the first 8 bytes (big-endian) of SHA-1 over the sorted peer URLs joined
  with nothing, then the cluster token (MemberAdd appends the decimal unix time).
* Cluster id: the same over the ascending member ids as 8-byte big-endian words.
* Request (and lease) ids: ``IdGenerator``, unique per member without coordination.

Worked example (checked against etcd 3.5.1)::

    >>> member_id(["http://127.0.0.1:32380"], "etcd-cluster")
    443629905751424238
    >>> cluster_id([443629905751424238])
    13455796455940752355
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable


def member_id(peer_urls: Iterable[str], token: str, now_unix: int | None = None) -> int:
    data = "".join(sorted(peer_urls)) + token
    if now_unix is not None:
        data += str(now_unix)
    return int.from_bytes(hashlib.sha1(data.encode()).digest()[:8], "big")


def cluster_id(member_ids: Iterable[int]) -> int:
    data = b"".join(struct.pack(">Q", mid) for mid in sorted(member_ids))
    return int.from_bytes(hashlib.sha1(data).digest()[:8], "big")


class IdGenerator:
    """Unique 64-bit ids: ``member low 16 bits | (ms at start << 8) + counter`` (48 bits).

    The time part makes ids of a restarted member differ from its earlier ones; the
    counter makes successive ids differ. Leases mask the result to 63 bits.

    >>> g = IdGenerator(member=0xABCD, now_ms=1); hex(g.next()), hex(g.next())
    ('0xabcd000000000101', '0xabcd000000000102')
    """

    _SUFFIX_BITS = 48

    def __init__(self, member: int, now_ms: int):
        self._prefix = (member & 0xFFFF) << self._SUFFIX_BITS
        self._suffix = (now_ms & ((1 << 40) - 1)) << 8

    def next(self) -> int:
        self._suffix += 1
        return self._prefix | (self._suffix & ((1 << self._SUFFIX_BITS) - 1))
