"""LocalNode: the commit path of a single member: WAL first, then apply, then answer.

It has the shape the raft driver will keep: proposals go in, entries are made durable
in the WAL, committed entries go to the applier in batches, results go back to waiters
by request id. A single member is its own quorum, so an entry is committed the moment
its WAL record is durable.

Group commit: proposals queue while a WAL write is in flight; when it is durable the
whole queue becomes the next batch, whose write (one ``fdatasync``) starts at once, in
the WAL thread, while the loop applies the batch just made durable and wakes its
callers. A write is acknowledged only after its record is on disk. With
``fsync=False`` (``--unsafe-no-fsync``, and embedded servers on a temporary directory)
the WAL is written on the loop and a batch is every proposal of one loop turn.

    proposals ──► queue ──► WAL thread: save(batch N+1) ─┐
                    ▲                                    │ durable
                    └── loop: apply(batch N), wake N ◄───┘

Backend commits: batches are applied into the backend's open (deferred) transaction,
which is committed and synced every ``BACKEND_COMMIT_INTERVAL_S`` or
``BACKEND_COMMIT_ENTRIES`` entries, whichever comes first (etcd's backend batch interval
and limit). After a crash the WAL holds every entry the backend lost, and ``recover``
applies them again.

Snapshots: after every ``snapshot_count`` applied entries, the backend is committed,
then the WAL thread writes a snapshot marker and releases the WAL segments wholly
before it, so the WAL stays bounded under an endless write load.

Term and index follow etcd's: a new cluster's founding entry is index 1 in term 1
(``bootstrap``); each start is a new term (the stored term + 1, so a fresh member runs
in term 2) that begins with the leader's empty entry. The raft index counts every entry
applied, refused requests included, as etcd's does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from google.protobuf.message import Message

from etcdlite.protos.kv_pb2 import KeyValue
from etcdlite.server.apply import TERM, Applier, Entry, Proposal
from etcdlite.server.entry_codec import decode, encode
from etcdlite.server.wait import Wait
from etcdlite.storage.errors import CorruptStore
from etcdlite.storage.wal import EntryType, Wal, WalContents, WalEntry, WalHardState, WalSnapshot

REPLAY_BATCH = 1000
"""Entries applied per backend batch while recovering from the WAL."""
BACKEND_COMMIT_INTERVAL_S = 0.1
BACKEND_COMMIT_ENTRIES = 10_000


class LocalNode:
    def __init__(
        self,
        applier: Applier,
        wait: Wait,
        wal: Wal,
        on_applied: Callable[[list[tuple[int, list[KeyValue]]]], None],
        on_fatal: Callable[[BaseException], None],
        *,
        member_id: int,
        fsync: bool,
        snapshot_count: int,
    ):
        self._applier = applier
        self._wait = wait
        self._wal = wal
        self._on_applied = on_applied
        self._on_fatal = on_fatal
        self.member_id = member_id
        """Who this member votes for in its hard state: itself."""
        self._fsync = fsync
        self._snapshot_count = snapshot_count
        self._executor = (
            ThreadPoolExecutor(1, thread_name_prefix="etcdlite-wal") if fsync else None
        )
        self._queue: list[Proposal] = []
        self._uncommitted = 0
        self._commit_timer: asyncio.TimerHandle | None = None
        self._scheduled = False
        self._saving = False
        self._snapshotting = False
        self._stopped = False
        self.term = max(applier.backend.get_meta_int(TERM, 1), 1)
        self.committed_index = applier.applied_index
        self._last_index = applier.applied_index
        self._snapshot_index = applier.applied_index

    @property
    def applied_index(self) -> int:
        return self._applier.applied_index

    # -- start-up ---------------------------------------------------------------------

    def recover(self, contents: WalContents) -> int:
        """Apply the WAL's entries the backend has not applied yet; returns how many.

        The backend's consistent index says what is applied. Every later entry must be
        in the WAL, contiguously; a WAL that ends before the backend, or starts after
        the entry the backend needs next, cannot be trusted and stops the start.
        """
        applied = self._applier.applied_index
        last = contents.entries[-1].index if contents.entries else self._wal.last_index
        if last < applied:
            raise CorruptStore(
                f"wal: ends at index {last} but the backend has applied index {applied}; "
                "the WAL lost acknowledged entries")
        pending = [e for e in contents.entries if e.index > applied]
        if pending and pending[0].index != applied + 1:
            raise CorruptStore(
                f"wal: the backend needs index {applied + 1} next, the WAL resumes at "
                f"{pending[0].index}")
        terms = [self.term]
        if contents.hard_state is not None:
            terms.append(contents.hard_state.term)
        for start in range(0, len(pending), REPLAY_BATCH):
            chunk = pending[start:start + REPLAY_BATCH]
            entries = [_entry_of(e) for e in chunk]
            self._applier.apply(entries)
            self._on_applied(self._applier.take_changes())
            terms.append(chunk[-1].term)
        self._applier.backend.commit()
        self.term = max(terms)
        self.committed_index = self._last_index = self._snapshot_index = self.applied_index
        return len(pending)

    def bootstrap(self, request: Message) -> None:
        """Apply the founding entry of a new cluster (index 1, term 1)."""
        if self.committed_index != 0:
            raise AssertionError("bootstrapping a member that has applied entries")
        self.term = 1
        self._append_now([Entry(1, 1, Proposal(0, request))])

    def start(self) -> None:
        """Begin a new term with the leader's empty entry."""
        self.term += 1
        self._append_now([Entry(self._last_index + 1, self.term, None)],
                         WalHardState(self.term, self.member_id, self._last_index))

    def _append_now(self, entries: list[Entry], hard_state: WalHardState | None = None) -> None:
        """Start-up entries: written, synced and applied before anything else runs."""
        self._wal.save([_record_of(e) for e in entries], hard_state)
        self._last_index = entries[-1].index
        if self._apply(entries) is None:
            raise AssertionError(f"entry {entries[-1].index} could not be applied")
        self._applier.backend.commit()

    # -- the commit path --------------------------------------------------------------

    async def propose(self, proposal: Proposal) -> object:
        """Commit and apply ``proposal``; returns its result (or raises its error)."""
        fut = self._wait.register(proposal.id)
        self._queue.append(proposal)
        if not self._scheduled and not self._saving:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        try:
            return await fut
        finally:
            self._wait.cancel(proposal.id)

    def _flush(self) -> None:
        self._scheduled = False
        if self._stopped or self._saving or not self._queue:
            return
        queue, self._queue = self._queue, []
        first = self._last_index + 1
        term = self.term
        entries = [Entry(first + i, term, p) for i, p in enumerate(queue)]
        self._last_index = entries[-1].index
        records = [_record_of(e) for e in entries]
        if self._executor is None:
            try:
                self._wal.save(records)
            except Exception as exc:  # the WAL is the record of truth: fail-stop
                self._fail(exc)
                return
            self._commit(entries)
            return
        self._saving = True
        saved = self._executor.submit(self._wal.save, records)
        loop = asyncio.get_running_loop()
        saved.add_done_callback(
            lambda f: loop.call_soon_threadsafe(self._saved, f, entries))

    def _saved(self, saved: Future[None], entries: list[Entry]) -> None:
        self._saving = False
        if self._stopped:
            return
        exc = saved.exception()
        if exc is not None:
            self._fail(exc)
            return
        if self._queue:
            self._flush()  # the next batch's fsync overlaps this batch's apply
        self._commit(entries)

    def _commit(self, entries: list[Entry]) -> None:
        results = self._apply(entries)
        if results is None:
            return
        # Watchers hear of the new revisions before any writer gets its reply.
        try:
            self._on_applied(self._applier.take_changes())
        except Exception as exc:  # the hub or compactor broke: fail-stop (waiters learn it)
            self._fail(exc)
            return
        trigger = self._wait.trigger
        for e, result in zip(entries, results, strict=True):
            if e.proposal is not None:
                trigger(e.proposal.id, result)
        self._uncommitted += len(entries)
        if (self.applied_index - self._snapshot_index >= self._snapshot_count
                and not self._snapshotting):
            self._snapshot()  # commits the backend first
        elif self._uncommitted >= BACKEND_COMMIT_ENTRIES:
            self.commit_backend()
        else:
            self.schedule_commit()

    def schedule_commit(self) -> None:
        """Commit the backend within ``BACKEND_COMMIT_INTERVAL_S``: for applied entries,
        and for work that joins the open transaction outside the commit path (physical
        compaction)."""
        if self._commit_timer is None and not self._stopped:
            self._commit_timer = asyncio.get_running_loop().call_later(
                BACKEND_COMMIT_INTERVAL_S, self.commit_backend)

    def commit_backend(self) -> None:
        """Commit (and sync) the batches applied since the last commit, on the loop."""
        if self._commit_timer is not None:
            self._commit_timer.cancel()
            self._commit_timer = None
        self._uncommitted = 0
        if self._stopped:
            return
        try:
            self._applier.backend.commit()
        except Exception as exc:  # the backend cannot keep what was applied: fail-stop
            self._fail(exc)

    def _apply(self, entries: list[Entry]) -> list[object] | None:
        try:
            results = self._applier.apply(entries)
        except Exception as exc:  # storage failure or bug: fail-stop, never continue
            self._fail(exc)
            return None
        self.committed_index = entries[-1].index
        return results

    # -- snapshots --------------------------------------------------------------------

    def _snapshot(self) -> None:
        """The backend is committed (durable) up to ``applied_index`` before the WAL may
        forget the entries behind it."""
        self.commit_backend()
        if self._stopped:
            return
        snap = WalSnapshot(self.applied_index, self.term)
        self._snapshot_index = snap.index
        if self._executor is None:
            self._snapshot_job(snap)
            return
        self._snapshotting = True
        done = self._executor.submit(self._snapshot_job, snap)  # after the queued saves
        loop = asyncio.get_running_loop()
        done.add_done_callback(lambda f: loop.call_soon_threadsafe(self._snapshot_done, f))

    def _snapshot_job(self, snap: WalSnapshot) -> None:
        """The marker, then release (the backend was committed up to ``snap.index``)."""
        self._wal.save_snapshot(snap)
        self._wal.release_to(snap.index)

    def _snapshot_done(self, done: Future[None]) -> None:
        self._snapshotting = False
        exc = None if done.cancelled() else done.exception()
        if exc is not None and not self._stopped:
            self._fail(exc)

    # -- stopping ---------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        self._stopped = True
        self._on_fatal(exc)

    def stop(self) -> None:
        """Stop taking proposals; wait for the WAL thread and close the WAL. An entry
        saved but not applied is applied by ``recover`` on the next start."""
        self._stopped = True
        if self._commit_timer is not None:
            self._commit_timer.cancel()
            self._commit_timer = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._wal.close()


def _record_of(e: Entry) -> WalEntry:
    data = b"" if e.proposal is None else encode(e.proposal)
    return WalEntry(e.term, e.index, EntryType.NORMAL, data)


def _entry_of(e: WalEntry) -> Entry:
    return Entry(e.index, e.term, decode(e.data) if e.data else None)

