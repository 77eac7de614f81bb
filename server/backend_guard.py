"""BackendGuard: threads may use the backend while the loop runs; defragment may not.

Backend work that leaves the event loop (copies for Maintenance.Snapshot, ``copy_to``)
runs in a thread. Defragment closes and reopens the LMDB environment, which must never
happen under a thread still using it. Every thread
job runs through ``run``; defragment first awaits ``idle`` and then runs synchronously
on the loop, so no new job can start before it is done.

Example::

    guard = BackendGuard()
    await guard.run(None, lambda: backend.copy_to(tmp))   # counted while it runs
    await guard.idle()                                    # no job left in a thread
    backend.defragment()                                  # before the loop runs anything
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

T = TypeVar("T")


class BackendGuard:
    def __init__(self) -> None:
        self._jobs = 0
        self._idle: asyncio.Event | None = None

    async def run(self, executor: Executor | None, job: Callable[[], T]) -> T:
        """Run ``job`` in ``executor`` (None: the loop's default) and return its result."""
        self._jobs += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, job)
        finally:
            self._jobs -= 1
            if self._jobs == 0 and self._idle is not None:
                self._idle.set()

    async def idle(self) -> None:
        """Return once no job runs; the caller must not await before using the backend."""
        while self._jobs:
            if self._idle is None or self._idle.is_set():
                self._idle = asyncio.Event()
            await self._idle.wait()
