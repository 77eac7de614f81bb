"""LocalNode: the commit path of a single member, before the WAL and raft arrive.

It has the shape the raft driver will keep: proposals go in, committed entries go to
the applier in batches, results go back to waiters by request id. Here a proposal is
committed the moment it is proposed (the single member is its own quorum and there is
no log to make durable yet: the applier's LMDB transaction is the durable record).

Batching: every proposal made during one turn of the event loop joins the same batch,
applied in one backend transaction (one fsync). Under load many clients share a batch;
a lone client pays one transaction per write.

Term and index follow etcd's: a new cluster's founding entry is index 1 in term 1
(``bootstrap``); each start is a new term (the stored term + 1, so a fresh member runs
in term 2) that begins with the leader's empty entry. The raft index counts every entry
applied, refused requests included, as etcd's does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from google.protobuf.message import Message

from etcdlite.protos.kv_pb2 import KeyValue
from etcdlite.server.apply import TERM, Applier, Entry, Proposal
from etcdlite.server.wait import Wait


class LocalNode:
    def __init__(
        self,
        applier: Applier,
        wait: Wait,
        on_applied: Callable[[list[tuple[int, list[KeyValue]]]], None],
        on_fatal: Callable[[BaseException], None],
    ):
        self._applier = applier
        self._wait = wait
        self._on_applied = on_applied
        self._on_fatal = on_fatal
        self._queue: list[Proposal] = []
        self._scheduled = False
        self._stopped = False
        self.term = max(applier.backend.get_meta_int(TERM, 1), 1)
        self.committed_index = applier.applied_index

    @property
    def applied_index(self) -> int:
        return self._applier.applied_index

    def bootstrap(self, request: Message) -> None:
        """Apply the founding entry of a new cluster (index 1, term 1)."""
        if self.committed_index != 0:
            raise AssertionError("bootstrapping a member that has applied entries")
        self.term = 1
        self._apply([Entry(1, 1, Proposal(0, request))])
        if self._stopped:
            raise AssertionError("the bootstrap entry could not be applied")

    def start(self) -> None:
        """Begin a new term with the leader's empty entry."""
        self.term += 1
        self._apply([Entry(self.committed_index + 1, self.term, None)])

    async def propose(self, proposal: Proposal) -> object:
        """Commit and apply ``proposal``; returns its result (or raises its error)."""
        fut = self._wait.register(proposal.id)
        self._queue.append(proposal)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        try:
            return await fut
        finally:
            self._wait.cancel(proposal.id)

    def _flush(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        if self._stopped or not queue:
            return
        first = self.committed_index + 1
        entries = [Entry(first + i, self.term, p) for i, p in enumerate(queue)]
        results = self._apply(entries)
        if results is None:
            return
        # Watchers hear of the new revisions before any writer gets its reply.
        try:
            self._on_applied(self._applier.take_changes())
        except Exception as exc:  # the hub or compactor broke: fail-stop (waiters learn it)
            self._stopped = True
            self._on_fatal(exc)
            return
        trigger = self._wait.trigger
        for p, result in zip(queue, results, strict=True):
            trigger(p.id, result)

    def _apply(self, entries: list[Entry]) -> list[object] | None:
        try:
            results = self._applier.apply(entries)
        except Exception as exc:  # storage failure or bug: fail-stop, never continue
            self._stopped = True
            self._on_fatal(exc)
            return None
        self.committed_index = entries[-1].index
        return results

    def stop(self) -> None:
        self._stopped = True
