"""The watch hub: revisioned watches that never lose, duplicate or reorder an event.

A ``WatchStream`` is one client stream carrying many ``Watcher``s. Each watcher wants the
events of a key range from its ``next_rev`` on. The hub keeps two groups:

* synced watchers have seen everything up to the store's current revision; ``notify``
  hands them each applied revision's events as they are applied (one response per
  revision, header.revision = that revision);
* unsynced watchers are behind: they catch up by reading history from the store in
  bounded batches (responses may span many revisions, header.revision = the current
  revision), then join the synced group.

Bounded memory, and no stalls: ``notify`` never waits. Each stream has an outbox of at
most ``outbox_limit`` responses; when a watcher's events do not fit, the watcher is
moved to the unsynced group at the first revision it missed, and its backlog is re-read
from history once the client reads again. A watcher whose ``next_rev`` falls below the
compact revision gets etcd's cancel (``compact_revision`` set, header revision 0).

Invariant: for every watcher, the responses in its stream's outbox plus those already
sent cover exactly revisions [start, next_rev) of its range, in order.

Example (what a client sees)::

    create(key=b"a", start_revision=0)      -> {watch_id: 0, created: true, rev: 5}
    put a (rev 6)                           -> {watch_id: 0, events: [PUT a@6], rev: 6}
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from etcdlite.protos.kv_pb2 import Event, KeyValue
from etcdlite.protos.rpc_pb2 import WatchCreateRequest, WatchResponse
from etcdlite.server.kv import index_end
from etcdlite.storage.errors import Compacted, RevisionNotFound
from etcdlite.storage.mvcc import Store

DUPLICATE_WATCH_ID = "mvcc: duplicate watch ID provided on the WatchStream"
EMPTY_RANGE = "mvcc: watcher range is empty"
CATCH_UP_BATCH = 1000
"""History records read per catch-up step (a step never splits a revision)."""

_PUT = Event.PUT
_DELETE = Event.DELETE


@dataclass(eq=False)
class Watcher:
    """One watch: a key range, the next revision owed, and the client's options."""

    id: int
    stream: WatchStream
    key: bytes
    end: bytes | None
    """TreeIndex convention: None = the single key, b"" = every key >= key."""
    next_rev: int
    prev_kv: bool = False
    no_put: bool = False
    no_delete: bool = False
    progress_notify: bool = False
    fragment: bool = False
    synced: bool = False
    compacted: bool = False
    """Cancelled by compaction: delivers nothing more, but keeps its id until cancelled."""
    had_events: bool = False
    """Whether events went out since the last progress notification tick."""

    def covers(self, key: bytes) -> bool:
        end = self.end
        if end is None:
            return key == self.key
        return self.key <= key and (not end or key < end)


@dataclass(eq=False)
class WatchStream:
    """One client stream: its watchers, its outbox, and the ids it hands out."""

    hub: WatchHub
    watchers: dict[int, Watcher] = field(default_factory=dict)
    outbox: deque[WatchResponse] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    next_id: int = 0
    closed: bool = False
    progress_pending: bool = False
    lagging: set[Watcher] = field(default_factory=set)
    """This stream's unsynced watchers (catching up from history)."""
    room: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while the outbox has room: the request reader waits on it."""

    def __post_init__(self) -> None:
        self.room.set()

    def push(self, resp: WatchResponse) -> None:
        self.outbox.append(resp)
        self.wakeup.set()
        if len(self.outbox) >= self.hub.outbox_limit:
            self.room.clear()

    def has_room(self) -> bool:
        return len(self.outbox) < self.hub.outbox_limit

    async def next_response(self) -> WatchResponse | None:
        """The next response to send; None once the stream is closed and drained."""
        while not self.outbox:
            if self.closed:
                return None
            self.wakeup.clear()
            await self.wakeup.wait()
        resp = self.outbox.popleft()
        if len(self.outbox) < self.hub.outbox_limit:
            self.room.set()
            if self.lagging and len(self.outbox) <= self.hub.outbox_limit // 2:
                # Room again: this stream's lagging watchers may catch up.
                self.hub.schedule_catch_up(self)
        return resp

    def all_synced(self) -> bool:
        """Whether every live watcher has caught up (compaction-cancelled ones do not
        count: they will receive nothing more)."""
        return all(w.synced or w.compacted for w in self.watchers.values())


class WatchHub:
    """All watchers of a member (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        fill_header: Callable[[WatchResponse, int], None],
        max_response_bytes: int,
        outbox_limit: int = 1024,
        progress_interval_s: float = 600.0,
        rng: random.Random | None = None,
    ):
        self._store = store
        self._fill = fill_header
        self.max_response_bytes = max_response_bytes
        self.outbox_limit = outbox_limit
        self._progress_interval_s = progress_interval_s
        self._rng = rng if rng is not None else random.Random()
        self._by_key: dict[bytes, set[Watcher]] = {}
        self._ranges: set[Watcher] = set()
        self._pending: set[WatchStream] = set()
        """Streams with lagging watchers and room in their outbox."""
        self._catch_up: asyncio.Task[None] | None = None
        self._progress: asyncio.Task[None] | None = None
        self._streams: set[WatchStream] = set()

    # -- streams and watchers ---------------------------------------------------------

    def open_stream(self) -> WatchStream:
        stream = WatchStream(self)
        self._streams.add(stream)
        if self._progress is None:
            self._progress = asyncio.get_running_loop().create_task(self._progress_loop())
        return stream

    def close_stream(self, stream: WatchStream) -> None:
        """Free the stream's watchers (the client went away or ended the stream)."""
        for w in list(stream.watchers.values()):
            self._detach(w)
        stream.watchers.clear()
        stream.closed = True
        stream.wakeup.set()
        self._streams.discard(stream)

    def create(self, stream: WatchStream, r: WatchCreateRequest) -> None:
        """Handle a create request: reply ``created`` (or the failure), start the watcher."""
        key = r.key or b"\x00"
        end = index_end(r.range_end)
        current = self._store.current_revision
        if end and key >= end:
            self._push_failure(stream, EMPTY_RANGE)
            return
        wid = r.watch_id
        if wid == 0 or wid == -1:
            # Auto ids only go up (skipping ids in use), so responses still in flight for
            # a cancelled watch can never be taken for a new one's (etcd's rule).
            while stream.next_id in stream.watchers:
                stream.next_id += 1
            wid = stream.next_id
            stream.next_id += 1
        elif wid in stream.watchers:
            self._push_failure(stream, DUPLICATE_WATCH_ID)
            return
        start = r.start_revision if r.start_revision > 0 else current + 1
        w = Watcher(
            id=wid, stream=stream, key=key, end=end, next_rev=start,
            prev_kv=r.prev_kv, no_put=0 in r.filters, no_delete=1 in r.filters,
            progress_notify=r.progress_notify, fragment=r.fragment,
        )
        stream.watchers[wid] = w
        created = WatchResponse(watch_id=wid, created=True)
        self._fill(created, current)
        stream.push(created)
        if start > current:
            self._join_synced(w)
        else:
            self._lag(w)

    def cancel(self, stream: WatchStream, watch_id: int) -> None:
        """Cancel a watcher of the stream; an unknown id is ignored (etcd sends nothing)."""
        w = stream.watchers.pop(watch_id, None)
        if w is None:
            return
        self._detach(w)
        resp = WatchResponse(watch_id=watch_id, canceled=True)
        self._fill(resp, self._store.current_revision)
        stream.push(resp)
        self._answer_progress_if_synced(stream)

    def request_progress(self, stream: WatchStream) -> None:
        """Answer a WatchProgressRequest once every watcher of the stream is synced."""
        if stream.all_synced():
            self._push_progress(stream)
        else:
            stream.progress_pending = True

    def _push_progress(self, stream: WatchStream) -> None:
        stream.progress_pending = False
        resp = WatchResponse(watch_id=-1)
        self._fill(resp, self._store.current_revision)
        stream.push(resp)

    def _push_failure(self, stream: WatchStream, reason: str) -> None:
        resp = WatchResponse(watch_id=-1, created=True, canceled=True, cancel_reason=reason)
        self._fill(resp, self._store.current_revision)
        stream.push(resp)

    def _lag(self, w: Watcher) -> None:
        """``w`` must catch up from history, starting at ``w.next_rev``."""
        w.stream.lagging.add(w)
        self.schedule_catch_up(w.stream)

    def _join_synced(self, w: Watcher) -> None:
        w.synced = True
        w.stream.lagging.discard(w)
        if w.end is None:
            self._by_key.setdefault(w.key, set()).add(w)
        else:
            self._ranges.add(w)
        self._answer_progress_if_synced(w.stream)

    def _answer_progress_if_synced(self, stream: WatchStream) -> None:
        if stream.progress_pending and stream.all_synced():
            self._push_progress(stream)

    def _leave_synced(self, w: Watcher) -> None:
        w.synced = False
        if w.end is None:
            group = self._by_key.get(w.key)
            if group is not None:
                group.discard(w)
                if not group:
                    del self._by_key[w.key]
        else:
            self._ranges.discard(w)

    def _detach(self, w: Watcher) -> None:
        if w.synced:
            self._leave_synced(w)
        w.stream.lagging.discard(w)

    # -- live events ------------------------------------------------------------------

    def notify(self, applied: list[tuple[int, list[KeyValue]]]) -> None:
        """Deliver the changes of newly applied revisions to the synced watchers."""
        if not self._by_key and not self._ranges:
            return
        for rev, changes in applied:
            targets: dict[Watcher, list[Event]] = {}
            for kv in changes:
                deleted = kv.version == 0
                for w in self._matching(kv.key):
                    targets.setdefault(w, []).append(
                        Event(type=_DELETE if deleted else _PUT, kv=kv))
            for w, events in targets.items():
                if w.next_rev > rev:
                    continue  # a watcher created for a later start revision
                self._deliver(w, rev, events, live=True)

    def _matching(self, key: bytes) -> list[Watcher]:
        found = list(self._by_key.get(key, ()))
        for w in self._ranges:
            if w.covers(key):
                found.append(w)
        return found

    def _deliver(self, w: Watcher, rev: int, events: list[Event], live: bool) -> bool:
        """Queue ``events`` (all of revisions < ``rev`` + 1) for ``w``; False if no room."""
        stream = w.stream
        if not stream.has_room():
            if w.synced:
                # A synced watcher has everything before this revision (or had nothing
                # to receive there): it resumes from history at this very revision.
                self._leave_synced(w)
                w.next_rev = max(w.next_rev, rev)
                self._lag(w)
            return False
        kept = [e for e in events
                if not (w.no_put and e.type == _PUT) and not (w.no_delete and e.type == _DELETE)]
        w.next_rev = rev + 1
        if not kept:
            return True
        if w.prev_kv:
            self._add_prev_kvs(kept)
        w.had_events = True
        header_rev = rev if live else self._store.current_revision
        for resp in self._responses(w, kept, header_rev):
            stream.push(resp)
        return True

    def _add_prev_kvs(self, events: list[Event]) -> None:
        with self._store.read() as view:
            for e in events:
                kv = e.kv
                if e.type == _PUT and kv.create_revision == kv.mod_revision:
                    continue  # a create has no previous version
                try:
                    found = view.range(kv.key, None, rev=kv.mod_revision - 1).kvs
                except (Compacted, RevisionNotFound):
                    continue
                if found:
                    e.prev_kv.CopyFrom(found[0])

    def _responses(self, w: Watcher, events: list[Event], header_rev: int) -> list[WatchResponse]:
        resp = WatchResponse(watch_id=w.id, events=events)
        self._fill(resp, header_rev)
        if not w.fragment or resp.ByteSize() <= self.max_response_bytes:
            return [resp]
        # Split into pieces of whole events, each within the limit where possible;
        # every piece but the last is marked as a fragment.
        pieces: list[WatchResponse] = []
        current = WatchResponse(watch_id=w.id)
        self._fill(current, header_rev)
        base = current.ByteSize()
        size = base
        for e in events:
            esize = e.ByteSize() + 6
            if current.events and size + esize > self.max_response_bytes:
                pieces.append(current)
                current = WatchResponse(watch_id=w.id)
                self._fill(current, header_rev)
                size = base
            current.events.append(e)
            size += esize
        pieces.append(current)
        for p in pieces[:-1]:
            p.fragment = True
        return pieces

    # -- catching up ------------------------------------------------------------------

    def schedule_catch_up(self, stream: WatchStream) -> None:
        """Let ``stream``'s lagging watchers catch up, if it has any and has room.

        Costs O(1): a stream that drains only reschedules itself, so watchers stuck
        behind a client that does not read cost nothing per write.
        """
        if not stream.lagging or stream.closed or not stream.has_room():
            return
        self._pending.add(stream)
        if self._catch_up is None:
            self._catch_up = asyncio.get_running_loop().create_task(self._catch_up_loop())

    async def _catch_up_loop(self) -> None:
        try:
            while self._pending:
                for stream in list(self._pending):
                    self._pending.discard(stream)
                    for w in list(stream.lagging):
                        if not stream.has_room() or stream.closed:
                            break
                        self._catch_up_step(w)
                    # Still behind and still room: another round. A full stream waits
                    # for its reader (next_response) to schedule it again.
                    self.schedule_catch_up(stream)
                await asyncio.sleep(0)
        finally:
            self._catch_up = None

    def _catch_up_step(self, w: Watcher) -> None:
        """Read one bounded batch of history for ``w``; join synced when caught up."""
        store = self._store
        if w.next_rev < store.compact_revision:
            # The watcher stops, but its id stays taken until the client cancels it
            # (a create with that id is a duplicate; a cancel gets the usual reply).
            self._detach(w)
            w.compacted = True
            resp = WatchResponse(watch_id=w.id, canceled=True,
                                 compact_revision=store.compact_revision)
            self._fill(resp, 0)
            w.stream.push(resp)
            self._answer_progress_if_synced(w.stream)
            return
        current = store.current_revision
        records = store.history(w.next_rev, current, CATCH_UP_BATCH)
        last = records[-1][0] if records else current
        if len(records) < CATCH_UP_BATCH:
            last = current  # the whole remaining history fit in this batch
        events = [Event(type=_DELETE if deleted else _PUT, kv=kv)
                  for _rev, deleted, kv in records if w.covers(kv.key)]
        if self._deliver(w, last, events, live=False) and last >= current:
            self._join_synced(w)

    # -- progress notifications -------------------------------------------------------

    async def _progress_loop(self) -> None:
        """Every interval (+ up to 10 % jitter), tell idle progress_notify watchers the
        current revision."""
        while self._streams:
            jitter = self._rng.uniform(0, self._progress_interval_s / 10)
            await asyncio.sleep(self._progress_interval_s + jitter)
            rev = self._store.current_revision
            for stream in list(self._streams):
                for w in list(stream.watchers.values()):
                    if not w.progress_notify or not w.synced:
                        continue
                    if w.had_events:
                        w.had_events = False
                        continue
                    if stream.has_room():
                        resp = WatchResponse(watch_id=w.id)
                        self._fill(resp, rev)
                        stream.push(resp)
        self._progress = None

    def close(self) -> None:
        for stream in list(self._streams):
            self.close_stream(stream)
        for task in (self._catch_up, self._progress):
            if task is not None:
                task.cancel()
