"""Time, injected: nothing in etcdlite reads the wall clock except through a Clock.

``SystemClock`` is the real one; ``ManualClock`` only moves when a test says so, so a
test can expire a lease or a token instantly and deterministically.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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

    Whoever must act when time moves (an ``EtcdServer`` revoking the leases that ran
    out) subscribes; ``advance`` returns only after every subscriber has run, in the
    thread that advanced, in subscription order. Invariant: a subscriber that raises
    stops ``advance`` there, with the time already moved.

    >>> seen = []; unsubscribe = c.subscribe(lambda: seen.append(c.monotonic()))
    >>> c.advance(1); unsubscribe(); c.advance(1); seen
    [3.5]
    """

    def __init__(self, wall: float = 1_700_000_000.0):
        self._mono = 0.0
        self._wall = wall
        self._subscribers: list[Callable[[], None]] = []

    def subscribe(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn()`` after every ``advance`` from now on; returns the unsubscribe
        function (calling it twice is harmless)."""
        self._subscribers.append(fn)

        def unsubscribe() -> None:
            if fn in self._subscribers:
                self._subscribers.remove(fn)

        return unsubscribe

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go back")
        self._mono += seconds
        self._wall += seconds
        for fn in tuple(self._subscribers):
            fn()
