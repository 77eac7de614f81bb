"""Physical compaction, in bounded batches that never stall writes.

After the applier records a compaction (logically complete at once), ``kick`` starts a
task that deletes obsolete revisions ``batch_limit`` at a time, each batch in its own
backend batch, yielding to the event loop between batches so writes and reads
interleave; ``on_batch`` is told after each batch (the member schedules a backend commit,
since batches join its open transaction). ``wait_finished(rev)`` returns once everything
up to ``rev`` is physically gone (what ``physical=true`` compactions wait for).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from etcdlite.server.errors import ServerStopped
from etcdlite.storage.mvcc import Store


class Compactor:
    def __init__(
        self,
        store: Store,
        on_fatal: Callable[[BaseException], None],
        batch_limit: int = 1000,
        on_batch: Callable[[], None] | None = None,
    ):
        self._store = store
        self._on_fatal = on_fatal
        self._on_batch = on_batch
        self._batch_limit = batch_limit
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def kick(self) -> None:
        if self._store.pending_compaction is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            store = self._store
            while (job := store.pending_compaction) is not None:
                try:
                    store.compact_step(job, self._batch_limit)
                except Exception as exc:  # a storage failure: the member must stop
                    self._on_fatal(exc)
                    return
                if self._on_batch is not None:
                    self._on_batch()  # the batch joined the backend's open transaction
                self._wake()
                await asyncio.sleep(0)
        finally:
            self._task = None

    def _wake(self) -> None:
        done = self._store.finished_compact_revision
        keep = []
        for rev, fut in self._waiters:
            if rev <= done:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((rev, fut))
        self._waiters = keep

    async def wait_finished(self, rev: int) -> None:
        if self._store.finished_compact_revision >= rev:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((rev, fut))
        self.kick()
        await fut

    async def stop(self) -> None:
        """Stop compacting; whoever waits for a physical compaction gets ServerStopped."""
        for _rev, fut in self._waiters:
            if not fut.done():
                fut.set_exception(ServerStopped())
        self._waiters = []
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
