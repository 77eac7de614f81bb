"""Model-based test of the watch hub, end to end over gRPC.

Hypothesis generates a list of operations on a small key space: puts, bursts of
concurrent puts (one server batch: many revisions reach the hub at once), single and
range deletes, multi-op txns (with a compare, so either branch may run), compactions
(logical or physical, sometimes right after a progress request on every stream), and
watchers that come and go on two Watch streams: created at random start revisions (0,
past, the current one, the compact revision, future, compacted), on single keys, prefixes,
ranges, from-key ranges or every key, with random filters, prev_kv and explicit or
automatic ids; random cancels (of live watchers and of unknown ids), progress requests,
and streams whose client goes away (the RPC is cancelled) and that are reopened.

A small reference model applies every write and keeps the list of changes (revision,
sub-revision, type, KeyValue) plus a snapshot per revision. From it the test computes,
for every watcher, exactly the events it must receive. At the end (after a final write
and a progress request on every stream: its reply comes only once every watcher of the
stream is synced, after every event queued before it) each watcher must have received:

* alive: exactly its events, in order, each once;
* cancelled by the client, or its stream's RPC cancelled: a prefix of them (cut at a
  revision);
* cancelled for compaction (``compact_revision`` C, header revision 0): a prefix of
  them, and the cancel must be deserved: the watcher's next revision could still be
  below C, i.e. C > max(start, last event received + 1, last progress revision + 1)
  (a progress reply means every watcher of the stream had seen everything up to it).
  A watcher created below the compact revision must get nothing but that cancel. A
  watcher cancelled for compaction keeps its id until the client cancels it (etcd).

Every response is checked on the way: DELETE carries only key and mod_revision, PUT the
full kv, a revision's events come in one response in sub-revision order, header
revisions are sane, prev_kv is the value at mod_revision - 1 (it may be missing only if
that revision was compacted by the time the client read it).

The hub's ``outbox_limit`` (a constructor parameter, not a server flag) is set to a
tiny value in most examples (through the private ``EtcdServer._runner.etcd`` handle,
before any stream exists), so watchers fall behind all the time and catch up from
history: the path a slow consumer takes.

Auto ids follow etcd's rule (only go up, skipping ids in use); explicit ids in use are
refused as duplicates.

Bigger runs: ``ETCDLITE_HYPOTHESIS_EXAMPLES=300 ETCDLITE_HYPOTHESIS_STEPS=80``. Shrinking
a failure costs minutes (each example starts a server), so it is off unless
``ETCDLITE_HYPOTHESIS_SHRINK=1``; an unshrunk failure still prints the op list and the
last lines of what happened.
"""

from __future__ import annotations

import bisect
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from etcdlite.protos import wire
from etcdlite.protos.kv_pb2 import Event, KeyValue
from etcdlite.protos.rpc_pb2 import (
    CompactionRequest,
    Compare,
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    TxnRequest,
    WatchCancelRequest,
    WatchCreateRequest,
    WatchProgressRequest,
    WatchRequest,
    WatchResponse,
)
from etcdlite.server import EtcdServer

EXAMPLES = int(os.environ.get("ETCDLITE_HYPOTHESIS_EXAMPLES", "150"))
STEPS = int(os.environ.get("ETCDLITE_HYPOTHESIS_STEPS", "40"))
SHRINK = os.environ.get("ETCDLITE_HYPOTHESIS_SHRINK", "0") == "1"
WAIT_S = float(os.environ.get("ETCDLITE_WATCH_WAIT_S", "10"))
"""How long to wait for a response the hub owes (a generous bound, never a sleep)."""

PUT, DELETE = Event.PUT, Event.DELETE
DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"
EMPTY_RANGE = "mvcc: watcher range is empty"
STREAMS = 2

KEYS = (b"a", b"a/1", b"a/2", b"b", b"c")
VALUES = (b"", b"x", b"yy")
# (key, range_end) as sent on the wire: b"" = the single key, b"\x00" = every key >= key.
WATCH_RANGES = (
    (b"a", b""), (b"a/1", b""), (b"b", b""), (b"c", b""), (b"zz", b""),
    (b"a", b"b"),        # prefix a
    (b"a/", b"a0"),      # prefix a/
    (b"a/2", b"c"),      # a range
    (b"b", b"\x00"),     # from key
    (b"", b"\x00"),      # every key (empty key = "\x00")
    (b"c", b"b"),        # empty range: the create fails
)
DELETE_RANGES = (
    (b"a", b""), (b"a/1", b""), (b"b", b""), (b"zz", b""),
    (b"a", b"b"), (b"a/", b"a0"), (b"b", b"\x00"), (b"\x00", b"\x00"),
)


def covers(key: bytes, start: bytes, range_end: bytes) -> bool:
    start = start or b"\x00"
    if not range_end:
        return key == start
    if range_end == b"\x00":
        return key >= start
    return start <= key < range_end


def empty_range(start: bytes, range_end: bytes) -> bool:
    return range_end not in (b"", b"\x00") and (start or b"\x00") >= range_end


def stat(what: str) -> None:
    """A line for ``--hypothesis-show-statistics`` (nothing outside a hypothesis test)."""
    if currently_in_test_context():
        event(what)


def show(e: Event | tuple[int, int, KeyValue]) -> str:
    if isinstance(e, Event):
        t, kv = e.type, e.kv
    else:
        _rev, t, kv = e
    if t == PUT:
        return f"PUT {kv.key.decode()}={kv.value.decode()}@{kv.mod_revision}"
    return f"DEL {kv.key.decode()}@{kv.mod_revision}"


# -- operations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Put:
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Burst:
    """Puts sent concurrently: the server applies them in one batch, and the hub gets
    many revisions at once (what makes a tiny outbox overflow)."""

    puts: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class Delete:
    key: bytes
    end: bytes


@dataclass(frozen=True)
class Txn:
    guard_key: bytes
    guard_exists: bool
    success: tuple[tuple[bytes, bytes | None], ...]
    """(key, value) puts and (key, None) deletes, on distinct keys."""
    failure: tuple[tuple[bytes, bytes | None], ...]


@dataclass(frozen=True)
class Compact:
    pick: int
    physical: bool
    sync_first: bool
    """Progress requests on every stream first: watchers known to be synced must not be
    cancelled by this compaction."""


@dataclass(frozen=True)
class Watch:
    stream: int
    range: tuple[bytes, bytes]
    start: str
    offset: int
    no_put: bool
    no_delete: bool
    prev_kv: bool
    watch_id: int
    """0: let the server pick."""


@dataclass(frozen=True)
class Cancel:
    pick: int


@dataclass(frozen=True)
class Progress:
    stream: int


@dataclass(frozen=True)
class Reopen:
    stream: int


Op = Put | Burst | Delete | Txn | Compact | Watch | Cancel | Progress | Reopen

keys = st.sampled_from(KEYS)
values = st.sampled_from(VALUES)
streams = st.sampled_from([0, 0, 0, 1])  # crowd stream 0: its outbox overflows more
txn_branch = st.lists(st.tuples(keys, st.one_of(st.none(), values)), max_size=4,
                      unique_by=lambda op: op[0]).map(tuple)
watches = st.builds(
    Watch, streams, st.sampled_from(WATCH_RANGES),
    st.sampled_from(["zero", "past", "current", "future", "compacted", "at_compact"]),
    st.integers(0, 50), st.booleans(), st.booleans(), st.booleans(),
    st.sampled_from([0, 0, 0, 7, 8]))
plain_watches = st.builds(
    Watch, streams, st.sampled_from(WATCH_RANGES[:-1]),
    st.sampled_from(["zero", "past", "compacted", "at_compact"]), st.integers(0, 50),
    st.just(False), st.just(False), st.booleans(), st.just(0))
txns = st.builds(Txn, keys, st.booleans(), txn_branch, txn_branch)
writes = st.one_of(
    st.builds(Put, keys, values),
    st.builds(Burst, st.lists(st.tuples(keys, values), min_size=2, max_size=8).map(tuple)),
    st.sampled_from(DELETE_RANGES).map(lambda r: Delete(*r)),
    txns, txns,
)
ops: st.SearchStrategy[Op] = st.one_of(
    writes, writes, writes,
    watches, plain_watches, watches, plain_watches,
    # sync_first mostly: it is what lets the test tell a deserved compaction cancel
    # from an undeserved one
    st.builds(Compact, st.integers(0, 50), st.booleans(), st.sampled_from([True, True, False])),
    st.builds(Cancel, st.integers(0, 50)),
    st.builds(Progress, streams),
    st.builds(Reopen, streams),
)


# -- the reference model ------------------------------------------------------------------


class Model:
    """Every revision's changes and a snapshot of the keys after it."""

    def __init__(self, rev: int):
        self.rev = rev
        self.compact = -1
        self.compactions: list[int] = []
        self.kvs: dict[bytes, KeyValue] = {}
        self._snap_revs = [rev]
        self._snaps: list[dict[bytes, KeyValue]] = [{}]
        self.changes: list[tuple[int, int, KeyValue]] = []
        """(revision, event type, kv) in revision and sub-revision order."""

    def apply(self, writes: list[tuple[bytes, bytes, bytes | None]]) -> int:
        """One write txn of (key, range_end, value) puts (value set) / deletes (None)."""
        rev = self.rev + 1
        kvs = dict(self.kvs)
        out: list[tuple[int, int, KeyValue]] = []
        for key, end, value in writes:
            if value is not None:
                old = kvs.get(key)
                kv = KeyValue(key=key, value=value, mod_revision=rev,
                              create_revision=old.create_revision if old else rev,
                              version=old.version + 1 if old else 1)
                kvs[key] = kv
                out.append((rev, PUT, kv))
            else:
                for k in sorted(k for k in kvs if covers(k, key, end)):
                    del kvs[k]
                    out.append((rev, DELETE, KeyValue(key=k, mod_revision=rev)))
        if out:
            self.rev = rev
            self.kvs = kvs
            self._snap_revs.append(rev)
            self._snaps.append(kvs)
            self.changes.extend(out)
        return self.rev

    def value_at(self, key: bytes, rev: int) -> KeyValue | None:
        i = bisect.bisect_right(self._snap_revs, rev) - 1
        return self._snaps[i].get(key) if i >= 0 else None

    def events_for(self, w: WatchRec) -> list[tuple[int, int, KeyValue]]:
        return [c for c in self.changes
                if c[0] >= w.start and covers(c[2].key, w.key, w.range_end)
                and not (w.no_put and c[1] == PUT) and not (w.no_delete and c[1] == DELETE)]


# -- client side: streams and what each watcher received ----------------------------------


@dataclass
class Received:
    resp: WatchResponse
    rev: int
    """The model's revision when the client processed the response."""
    compact: int
    """The model's compact revision then."""


@dataclass(eq=False)
class WatchRec:
    serial: int
    stream: int
    watch_id: int
    key: bytes
    range_end: bytes
    start: int
    """The effective start revision (start_revision 0 = the creation revision + 1)."""
    requested_start: int
    no_put: bool
    no_delete: bool
    prev_kv: bool
    created_rev: int
    compact_at_create: int
    received: list[Received] = field(default_factory=list)
    synced_at: int = 0
    """The last progress revision the stream reported while this watcher was on it."""
    cancel_sent_rev: int | None = None
    released: bool = False
    """The client's cancel was answered: the id is free again."""
    end: tuple[str, int] | None = None
    """("cancelled", header rev) | ("compacted", compact rev) | ("closed", model rev)."""

    def describe(self) -> str:
        filt = ("no_put " if self.no_put else "") + ("no_delete " if self.no_delete else "")
        return (f"watcher #{self.serial} (stream {self.stream}, id {self.watch_id}, "
                f"key={self.key!r} range_end={self.range_end!r} "
                f"start_revision={self.requested_start} -> start {self.start}, "
                f"{filt}prev_kv={self.prev_kv}, created at rev {self.created_rev}, "
                f"compact then {self.compact_at_create}, end={self.end})")


@dataclass
class PendingCreate:
    op: Watch
    start_revision: int
    rev_at_send: int
    compact_at_send: int


_END = object()


class Client:
    """One Watch stream: requests from a queue, responses read by a thread into a queue."""

    def __init__(self, stub: wire.Stub, index: int):
        self.index = index
        self.requests: queue.Queue[WatchRequest | None] = queue.Queue()
        self.responses: queue.Queue[object] = queue.Queue()
        self.active: dict[int, WatchRec] = {}
        self.pending: deque[PendingCreate] = deque()
        self.progress_wanted = 0
        self.progress_got = 0
        self.next_id = 0
        """etcd's auto id rule: the lowest id not in use at or above the last one + 1."""
        self.ended = False
        self.cancelled = False
        self.call = stub.Watch(self._requests())
        self._thread = threading.Thread(target=self._read, daemon=True,
                                        name=f"watch-reader-{index}")
        self._thread.start()

    def _requests(self) -> Iterator[WatchRequest]:
        while (req := self.requests.get()) is not None:
            yield req

    def _read(self) -> None:
        try:
            for resp in self.call:
                self.responses.put(resp)
        except grpc.RpcError as exc:
            self.responses.put(exc)
        self.responses.put(_END)

    def send(self, req: WatchRequest | None) -> None:
        self.requests.put(req)

    def cancel(self) -> None:
        """The client goes away (a half-close would leave the stream open, as in etcd)."""
        self.cancelled = True
        self.call.cancel()
        self.requests.put(None)

    def shutdown(self) -> None:
        self.cancel()
        self._thread.join(WAIT_S)


class Harness:
    def __init__(self, channel: grpc.Channel):
        self.kv = wire.Stub(channel, "KV")
        self._watch = wire.Stub(channel, "Watch")
        rev = self.kv.Range(RangeRequest(key=b"\x00", range_end=b"\x00"),
                            timeout=WAIT_S).header.revision
        self.model = Model(rev)
        self.clients = [Client(self._watch, i) for i in range(STREAMS)]
        self.recs: list[WatchRec] = []
        self.log: list[str] = []

    # -- responses ---------------------------------------------------------------------

    def pump(self, cl: Client, done: Callable[[], bool], what: str) -> None:
        """Process ``cl``'s responses in order until ``done()``; fail after WAIT_S."""
        deadline = time.monotonic() + WAIT_S
        while not done():
            left = deadline - time.monotonic()
            try:
                item = cl.responses.get(timeout=max(left, 0.001))
            except queue.Empty:
                raise AssertionError(
                    f"stream {cl.index}: no {what} within {WAIT_S}s\n{self.story()}") from None
            self.process(cl, item)

    def drain(self) -> None:
        for cl in self.clients:
            while True:
                try:
                    item = cl.responses.get_nowait()
                except queue.Empty:
                    break
                self.process(cl, item)

    def process(self, cl: Client, item: object) -> None:
        m = self.model
        if item is _END:
            cl.ended = True
            return
        if isinstance(item, grpc.RpcError):
            if cl.cancelled and item.code() == grpc.StatusCode.CANCELLED:
                return
            raise AssertionError(f"stream {cl.index} failed: {item}")
        assert not cl.ended, "a response after the end of the stream"
        assert isinstance(item, WatchResponse)
        resp = item
        wid = resp.watch_id
        if resp.created:
            assert cl.pending, f"stream {cl.index}: created reply nobody asked for: {resp}"
            self._created(cl, cl.pending.popleft(), resp)
        elif resp.canceled:
            rec = cl.active.get(wid)
            assert rec is not None, f"stream {cl.index}: cancel for unknown watch id {wid}"
            assert not resp.events and not resp.cancel_reason, resp
            if resp.compact_revision:
                # The watcher stops but keeps its id until the client cancels it (etcd).
                assert rec.end is None, f"{rec.describe()}: a second cancel {resp}"
                assert resp.header.revision == 0, f"compaction cancel with header {resp.header}"
                assert resp.compact_revision in m.compactions, (
                    f"cancel with compact_revision {resp.compact_revision}, compactions were "
                    f"{m.compactions}")
                rec.end = ("compacted", resp.compact_revision)
                self.log.append(f"s{cl.index}: compacted #{rec.serial}")
            else:
                assert rec.cancel_sent_rev is not None, (
                    f"{rec.describe()} cancelled without a cancel request or a compaction")
                assert resp.header.revision == rec.cancel_sent_rev, (
                    f"cancel reply header {resp.header.revision}, want {rec.cancel_sent_rev}")
                del cl.active[wid]
                rec.released = True
                if rec.end is None:
                    rec.end = ("cancelled", resp.header.revision)
                self.log.append(f"s{cl.index}: cancelled #{rec.serial}")
        elif wid == -1 and not resp.events:
            assert cl.progress_got < cl.progress_wanted, f"unasked progress reply {resp}"
            cl.progress_got += 1
            assert resp.header.revision == m.rev, (
                f"progress reply at {resp.header.revision}, store is at {m.rev}")
            for rec in cl.active.values():
                if rec.end is None:
                    rec.synced_at = resp.header.revision
            self.log.append(f"s{cl.index}: progress @{resp.header.revision}")
        else:
            rec = cl.active.get(wid)
            assert rec is not None, f"stream {cl.index}: events for unknown watch id {wid}"
            assert resp.events, f"a response without events for {rec.describe()}: {resp}"
            assert rec.end is None, f"events after the end of {rec.describe()}: {resp}"
            rec.received.append(Received(resp, m.rev, m.compact))
            self.log.append(f"s{cl.index} #{rec.serial} hdr {resp.header.revision}: "
                            + ", ".join(show(e) for e in resp.events))

    def _created(self, cl: Client, p: PendingCreate, resp: WatchResponse) -> None:
        op = p.op
        key, range_end = op.range
        if empty_range(key, range_end):
            want = EMPTY_RANGE
        elif op.watch_id and op.watch_id in cl.active:
            want = DUPLICATE_ID
        else:
            want = None
        if want is not None or resp.canceled:
            assert (resp.watch_id, resp.canceled, resp.cancel_reason) == (-1, True, want), (
                f"create {op} answered {resp}, want the failure {want!r}")
            return
        assert resp.header.revision == p.rev_at_send, (
            f"created reply at header revision {resp.header.revision}, store at {p.rev_at_send}")
        if op.watch_id:
            want_id = op.watch_id
        else:
            while cl.next_id in cl.active:
                cl.next_id += 1
            want_id = cl.next_id
            cl.next_id += 1
        assert resp.watch_id == want_id, (
            f"create {op} got id {resp.watch_id}, want {want_id} (in use: {sorted(cl.active)})")
        rec = WatchRec(
            serial=len(self.recs), stream=cl.index, watch_id=resp.watch_id, key=key,
            range_end=range_end,
            start=p.start_revision if p.start_revision > 0 else p.rev_at_send + 1,
            requested_start=p.start_revision, no_put=op.no_put, no_delete=op.no_delete,
            prev_kv=op.prev_kv, created_rev=p.rev_at_send, compact_at_create=p.compact_at_send)
        self.recs.append(rec)
        cl.active[rec.watch_id] = rec
        self.log.append(f"s{cl.index}: created {rec.describe()}")

    # -- operations --------------------------------------------------------------------

    def run(self, op: Op) -> None:
        m = self.model
        self.log.append(f"op {op} (rev {m.rev}, compact {m.compact})")
        if isinstance(op, Put):
            got = self.kv.Put(PutRequest(key=op.key, value=op.value), timeout=WAIT_S)
            assert got.header.revision == m.apply([(op.key, b"", op.value)])
        elif isinstance(op, Burst):
            futures = [self.kv.Put.future(PutRequest(key=k, value=v), timeout=WAIT_S)
                       for k, v in op.puts]
            done = sorted((f.result().header.revision, k, v)
                          for f, (k, v) in zip(futures, op.puts, strict=True))
            assert [r for r, _k, _v in done] == list(range(m.rev + 1, m.rev + 1 + len(done)))
            for _rev, k, v in done:
                m.apply([(k, b"", v)])
        elif isinstance(op, Delete):
            got = self.kv.DeleteRange(DeleteRangeRequest(key=op.key, range_end=op.end),
                                      timeout=WAIT_S)
            assert got.header.revision == m.apply([(op.key, op.end, None)])
        elif isinstance(op, Txn):
            self._txn(op)
        elif isinstance(op, Compact):
            lo, hi = max(m.compact + 1, 1), m.rev
            if lo <= hi:
                if op.sync_first:
                    for cl in self.clients:
                        self.progress(cl)
                rev = hi - op.pick % (hi - lo + 1)  # pick 0: the current revision
                self.kv.Compact(CompactionRequest(revision=rev, physical=op.physical),
                                timeout=WAIT_S)
                m.compact = rev
                m.compactions.append(rev)
        elif isinstance(op, Watch):
            self._watch_op(op)
        elif isinstance(op, Cancel):
            self._cancel(op)
        elif isinstance(op, Progress):
            self.progress(self.clients[op.stream])
        elif isinstance(op, Reopen):
            cl = self.clients[op.stream]
            cl.cancel()
            self.pump(cl, lambda: cl.ended, "end of the stream")
            for rec in cl.active.values():
                if rec.end is None:
                    rec.end = ("closed", m.rev)
            cl.active.clear()
            self.clients[op.stream] = Client(self._watch, op.stream)
        self.drain()

    def _txn(self, op: Txn) -> None:
        m = self.model

        def req(branch: tuple[tuple[bytes, bytes | None], ...]) -> list[RequestOp]:
            return [RequestOp(request_put=PutRequest(key=k, value=v)) if v is not None
                    else RequestOp(request_delete_range=DeleteRangeRequest(key=k))
                    for k, v in branch]

        exists = op.guard_key in m.kvs
        compare = Compare(key=op.guard_key, target=Compare.VERSION, version=0,
                          result=Compare.GREATER if op.guard_exists else Compare.EQUAL)
        resp = self.kv.Txn(TxnRequest(compare=[compare], success=req(op.success),
                                      failure=req(op.failure)), timeout=WAIT_S)
        assert resp.succeeded == (exists == op.guard_exists)
        branch = op.success if resp.succeeded else op.failure
        assert resp.header.revision == m.apply([(k, b"", v) for k, v in branch])

    def _start_revision(self, op: Watch) -> int:
        m = self.model
        past_lo = max(m.compact, 1)
        if op.start == "at_compact" and m.compact >= 1:
            return m.compact
        if op.start == "compacted" and m.compact >= 2:
            return 1 + op.offset % (m.compact - 1)
        if op.start in ("past", "compacted", "at_compact"):
            return m.rev - op.offset % (m.rev - past_lo + 1)  # offset 0: current
        if op.start == "current":
            return m.rev
        if op.start == "future":
            return m.rev + 1 + op.offset % 3
        return 0

    def _watch_op(self, op: Watch) -> None:
        m = self.model
        cl = self.clients[op.stream]
        start = self._start_revision(op)
        filters = [f for f, on in ((WatchCreateRequest.NOPUT, op.no_put),
                                   (WatchCreateRequest.NODELETE, op.no_delete)) if on]
        cl.pending.append(PendingCreate(op, start, m.rev, m.compact))
        cl.send(WatchRequest(create_request=WatchCreateRequest(
            key=op.range[0], range_end=op.range[1], start_revision=start, filters=filters,
            prev_kv=op.prev_kv, watch_id=op.watch_id)))
        self.pump(cl, lambda: not cl.pending, "created reply")

    def _cancel(self, op: Cancel) -> None:
        live = sorted((r for cl in self.clients for r in cl.active.values()),
                      key=lambda r: r.serial)
        pick = op.pick % (len(live) + 1)
        if pick == len(live):
            # An id nobody uses: etcd answers nothing. A progress request after it
            # proves no cancel reply came before.
            cl = self.clients[op.pick % STREAMS]
            cl.send(WatchRequest(cancel_request=WatchCancelRequest(watch_id=999)))
            self.progress(cl)
            return
        rec = live[pick]
        cl = self.clients[rec.stream]
        rec.cancel_sent_rev = self.model.rev
        cl.send(WatchRequest(cancel_request=WatchCancelRequest(watch_id=rec.watch_id)))
        self.pump(cl, lambda: rec.released, f"cancel reply for #{rec.serial}")

    def progress(self, cl: Client) -> None:
        cl.progress_wanted += 1
        cl.send(WatchRequest(progress_request=WatchProgressRequest()))
        self.pump(cl, lambda: cl.progress_got == cl.progress_wanted, "progress reply")

    def finish(self) -> None:
        """A final write, then a progress barrier on every stream (if a reply never
        comes, the per-watcher verdict usually says why, so it goes first)."""
        got = self.kv.Put(PutRequest(key=KEYS[0], value=b"final"), timeout=WAIT_S).header.revision
        assert got == self.model.apply([(KEYS[0], b"", b"final")])
        for cl in self.clients:
            try:
                self.progress(cl)
            except AssertionError:
                self.check()
                raise

    def close(self) -> None:
        for cl in self.clients:
            cl.shutdown()

    def story(self) -> str:
        return "what happened (last 60 lines):\n  " + "\n  ".join(self.log[-60:])

    # -- verdict -----------------------------------------------------------------------

    def check(self) -> None:
        ends = sorted({rec.end[0] if rec.end else "alive" for rec in self.recs})
        stat(f"watcher ends: {', '.join(ends)}")
        catch_up = any(len({e.kv.mod_revision for e in r.resp.events}) > 1
                       or r.resp.header.revision > r.resp.events[-1].kv.mod_revision
                       for rec in self.recs for r in rec.received)
        stat(f"catch-up responses seen: {catch_up}")
        for rec in self.recs:
            try:
                self.check_watcher(rec)
            except AssertionError as exc:
                raise AssertionError(f"{rec.describe()}:\n{exc}\n{self.story()}") from None

    def check_watcher(self, rec: WatchRec) -> None:
        m = self.model
        expected = m.events_for(rec)
        got: list[Event] = []
        seen_in: dict[int, int] = {}
        for i, r in enumerate(rec.received):
            revs = [e.kv.mod_revision for e in r.resp.events]
            assert revs == sorted(revs), f"response {i} out of revision order: {revs}"
            assert r.resp.header.revision >= revs[-1], (
                f"response {i}: header revision {r.resp.header.revision} < event {revs[-1]}")
            assert r.resp.header.revision <= r.rev, (
                f"response {i}: header revision {r.resp.header.revision} > store {r.rev}")
            assert not r.resp.fragment and not r.resp.compact_revision, r.resp
            for rev in set(revs):
                assert rev not in seen_in, (
                    f"revision {rev} split over responses {seen_in[rev]} and {i}")
                seen_in[rev] = i
            got.extend(r.resp.events)

        got_t = [(e.kv.mod_revision, e.type, e.kv) for e in got]
        n = len(got_t)
        diff = (f"got      {[show(e) for e in got]}\n"
                f"expected {[show(e) for e in expected]}")
        if rec.end is None:
            assert got_t == expected, f"alive watcher: wrong events\n{diff}"
        else:
            assert got_t == expected[:n], f"wrong events before the end\n{diff}"
            if 0 < n < len(expected):
                assert expected[n][0] != got_t[-1][0], (
                    f"stopped in the middle of revision {got_t[-1][0]}\n{diff}")
            kind, at = rec.end
            if kind == "compacted":
                last = got_t[-1][0] if got else 0
                bound = max(rec.start, last + 1, rec.synced_at + 1)
                assert at > bound, (
                    f"cancelled for compaction at {at}, but the watcher was owed nothing "
                    f"below revision {bound} (start {rec.start}, last event {last}, "
                    f"all synced at {rec.synced_at})\n{diff}")
            else:
                assert all(e[0] <= at for e in got_t), f"events after the cancel at {at}"
        if rec.start < rec.compact_at_create and rec.end is None:
            raise AssertionError(
                f"start {rec.start} below the compact revision {rec.compact_at_create} "
                f"at creation, but no compaction cancel\n{diff}")
        if rec.start < rec.compact_at_create and rec.end[0] == "compacted":
            assert not got, f"events before the compaction cancel\n{diff}"

        # prev_kv: the value at mod_revision - 1; omitted only for creates and when that
        # revision was compacted by the time the client read the response.
        for r in rec.received:
            for e in r.resp.events:
                if not rec.prev_kv:
                    assert not e.HasField("prev_kv"), f"prev_kv not asked for: {e}"
                    continue
                rev = e.kv.mod_revision
                prev = m.value_at(e.kv.key, rev - 1)
                if prev is None:
                    assert not e.HasField("prev_kv"), f"prev_kv for a create: {e}"
                elif e.HasField("prev_kv"):
                    assert e.prev_kv == prev, f"{show(e)}: prev_kv {e.prev_kv}, want {prev}"
                else:
                    assert rev - 1 < r.compact, (
                        f"{show(e)}: prev_kv missing, want {prev} (compact revision "
                        f"{r.compact} when read)")


def run_ops(op_list: list[Op], outbox_limit: int) -> None:
    with EtcdServer() as server:
        hub = server._runner.etcd.watch_hub  # type: ignore[union-attr]
        hub.outbox_limit = outbox_limit  # set before any stream exists
        channel = grpc.insecure_channel(server.endpoint)
        h = Harness(channel)
        try:
            for op in op_list:
                h.run(op)
            h.finish()
            h.check()
        finally:
            h.close()
            channel.close()


@settings(max_examples=EXAMPLES, deadline=None, report_multiple_bugs=False,
          phases=[p for p in Phase if SHRINK or p is not Phase.shrink],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(op_list=st.lists(ops, min_size=min(8, STEPS), max_size=STEPS),
       outbox_limit=st.sampled_from([1, 1, 1, 2, 3, 1024]))
def test_watchers_get_exactly_the_model_events(op_list: list[Op], outbox_limit: int) -> None:
    run_ops(op_list, outbox_limit)


def test_watch_from_the_compact_revision_gets_the_delete_at_it() -> None:
    """A watcher may start at the compact revision itself (etcd: "start_revision ==
    compact revision is fine"), so it must get that revision's events, deletes included.

    storage/key_index.py ``KeyIndex.compact`` drops a generation reduced to its
    tombstone when the tombstone's revision is <= the compaction revision, so physical
    compaction at revision R deletes R's tombstones from the backend, and the hub's
    catch-up (``Store.history``) never sees the DELETE. etcd had the same bug
    (etcd-io/etcd#18089, fixed by #18274: keep the tombstone when its revision equals
    the compaction revision).
    """
    with EtcdServer() as server:
        channel = grpc.insecure_channel(server.endpoint)
        kv = wire.Stub(channel, "KV")
        client = Client(wire.Stub(channel, "Watch"), 0)
        try:
            kv.Put(PutRequest(key=b"k", value=b"1"))
            deleted = kv.DeleteRange(DeleteRangeRequest(key=b"k")).header.revision
            recreated = kv.Put(PutRequest(key=b"k", value=b"3")).header.revision
            kv.Compact(CompactionRequest(revision=deleted, physical=True))
            client.send(WatchRequest(create_request=WatchCreateRequest(
                key=b"k", start_revision=deleted)))
            events: list[Event] = []
            while not events or events[-1].kv.mod_revision < recreated:
                resp = client.responses.get(timeout=WAIT_S)
                assert isinstance(resp, WatchResponse), resp
                assert not resp.canceled, resp
                events.extend(resp.events)
            assert [show(e) for e in events] == [f"DEL k@{deleted}", f"PUT k=3@{recreated}"]
        finally:
            client.shutdown()
            channel.close()
