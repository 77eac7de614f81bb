"""Time, injected: nothing in etcdlite reads the wall clock except through a Clock.

``SystemClock`` is the real one; ``ManualClock`` only moves when a test says so, so a
test can expire a lease or a token instantly and deterministically.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for timeouts and TTLs)."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch (for ids and log timestamps)."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class ManualClock:
    """A clock that advances only through ``advance``.

    >>> c = ManualClock(wall=1000.0); c.advance(2.5); c.monotonic(), c.wall()
    (2.5, 1002.5)
    """

    def __init__(self, wall: float = 1_700_000_000.0):
        self._mono = 0.0
        self._wall = wall

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go back")
        self._mono += seconds
        self._wall += seconds
