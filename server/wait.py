"""Wait: requests waiting for their proposal to be applied, found again by id.

A proposal leaves the servicer with a unique id; when the applier has applied the entry
that carries it, the result comes back here and wakes the one waiter registered under
that id. On a follower (or after a leader change) entries can be applied whose id has no
waiter here; ``trigger`` then does nothing.
"""

from __future__ import annotations

import asyncio


class Wait:
    def __init__(self) -> None:
        self._waiters: dict[int, asyncio.Future[object]] = {}

    def register(self, request_id: int) -> asyncio.Future[object]:
        if request_id in self._waiters:
            raise AssertionError(f"duplicate request id {request_id:#x}")
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = fut
        return fut

    def trigger(self, request_id: int, result: object) -> None:
        """Hand ``result`` (a response or a domain exception) to the waiter, if any."""
        fut = self._waiters.pop(request_id, None)
        if fut is None or fut.done():
            return
        if isinstance(result, BaseException):
            fut.set_exception(result)
        else:
            fut.set_result(result)

    def cancel(self, request_id: int) -> None:
        """Forget a waiter whose caller gave up (the entry may still be applied)."""
        self._waiters.pop(request_id, None)

    def fail_all(self, exc: BaseException) -> None:
        """Wake every waiter with ``exc`` (the member is stopping)."""
        waiters, self._waiters = self._waiters, {}
        for fut in waiters.values():
            if not fut.done():
                fut.set_exception(exc)
