"""The same watch scenario against real etcd (3.4 and 3.5.1) and etcdlite, compared
field by field.

Both servers advertise the same peer URL (``watch_pair``), so cluster_id and member_id
agree, and the same unary writes give the same revisions; so WatchResponses can be
compared whole: header (cluster_id, member_id, revision, raft_term), watch_id, created,
canceled, compact_revision, cancel_reason, fragment and events (kv and prev_kv).

What is compared exactly:

* single replies (created, refused creates, cancel, progress, compaction cancel, live
  event responses): the whole message, ``==``.
* catch-up (history replay): etcd may cut the replay into responses differently (it
  batches up to 1000 revisions per response, etcdlite up to 1000 changes, and either may
  split a batch when the stream is busy), which clients must not depend on. So for a
  replay we compare (1) the flattened event sequence, event by event, and (2) the
  responses with their events removed (watch_id, flags, whole header: every replay
  response carries the current store revision), as a list of distinct envelopes.
* live responses of one revision to several watchers on one stream: etcd sends them in
  Go map order, so they are compared sorted by watch_id.

etcd 3.4.23 answered every step exactly like 3.5.1 (progress replies too: the "only once
synced" rule came with 3.4.25/3.5.8), so nothing is normalised for 3.4.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf import text_format
from watch_client import WatchClient
from watchlib import (
    CALL_TIMEOUT_S,
    op_delete,
    op_put,
)

from etcdlite.protos import kv_pb2, rpc_pb2

pytestmark = pytest.mark.differential


def show(msgs: Any) -> str:
    if isinstance(msgs, list | tuple):
        return "\n---\n".join(show(m) for m in msgs)
    if hasattr(msgs, "DESCRIPTOR"):
        return text_format.MessageToString(msgs)
    return repr(msgs)


def same(step: str, real: Any, lite: Any) -> Any:
    assert real == lite, (f"{step}: etcd and etcdlite differ\n"
                          f"== real etcd ==\n{show(real)}\n== etcdlite ==\n{show(lite)}")
    return real


class Side:
    """One server: a KV stub and one Watch stream."""

    def __init__(self, server: Any) -> None:
        self.kv = server.stub("KV")
        self.watch = WatchClient(server.stub("Watch"))

    def replay(self, watch_id: int, last_rev: int) -> tuple[list[kv_pb2.Event], list]:
        """Read a watcher's catch-up until it delivered revision ``last_rev``; return the
        flattened events and the distinct envelopes (responses without their events)."""
        events: list[kv_pb2.Event] = []
        envelopes: list[rpc_pb2.WatchResponse] = []
        while not events or events[-1].kv.mod_revision < last_rev:
            r = self.watch.recv()
            assert r.watch_id == watch_id, show(r)
            events.extend(r.events)
            env = rpc_pb2.WatchResponse()
            env.CopyFrom(r)
            del env.events[:]
            if env not in envelopes:
                envelopes.append(env)
        return events, envelopes


def test_watch_scenario_matches_real_etcd(watch_pair):
    real, lite = Side(watch_pair.real), Side(watch_pair.lite)
    sides = (real, lite)

    def both(step: str, fn: Callable[[Side], Any]) -> Any:
        return same(step, fn(real), fn(lite))

    def unary(step: str, call: Callable[[Any], Any]) -> Any:
        return both(step, lambda s: call(s.kv))

    try:
        # -- the same writes on both -----------------------------------------------------
        put = rpc_pb2.PutRequest
        unary("put a", lambda kv: kv.Put(put(key=b"a", value=b"1"), timeout=CALL_TIMEOUT_S))
        unary("put b", lambda kv: kv.Put(put(key=b"b", value=b"2"), timeout=CALL_TIMEOUT_S))
        unary("put a again",
              lambda kv: kv.Put(put(key=b"a", value=b"11"), timeout=CALL_TIMEOUT_S))
        unary("txn", lambda kv: kv.Txn(rpc_pb2.TxnRequest(success=[
            op_put(b"c", b"3"), op_delete(b"b"), op_put(b"d", b"4")]),
            timeout=CALL_TIMEOUT_S))
        unary("delete a", lambda kv: kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"a"),
                                                    timeout=CALL_TIMEOUT_S))
        cur = unary("put e", lambda kv: kv.Put(put(key=b"e", value=b"5"),
                                               timeout=CALL_TIMEOUT_S)).header.revision
        assert cur == 7

        # -- a watch from revision 1 over everything, with prev_kv -----------------------
        for s in sides:
            s.watch.create(b"\x00", b"\x00", start_revision=1, prev_kv=True)
        created = both("created (replay watcher)", lambda s: s.watch.recv())
        assert created.created and created.watch_id == 0
        ev_real, env_real = real.replay(0, cur)
        ev_lite, env_lite = lite.replay(0, cur)
        events = same("replayed events (flattened)", ev_real, ev_lite)
        assert [e.kv.mod_revision for e in events] == [2, 3, 4, 5, 5, 5, 6, 7]
        same("replay envelopes (responses without events)", env_real, env_lite)

        # -- more creates: explicit id, duplicate id, empty range --------------------------
        for s in sides:
            s.watch.create(b"c", watch_id=5, prev_kv=True)
        both("created with explicit id", lambda s: s.watch.recv())
        for s in sides:
            s.watch.create(b"x", watch_id=5)
        dup = both("duplicate id", lambda s: s.watch.recv())
        assert dup.cancel_reason
        for s in sides:
            s.watch.create(b"b", b"a")
        empty = both("empty range", lambda s: s.watch.recv())
        assert empty.cancel_reason
        for s in sides:
            s.watch.create(b"e", filters=[rpc_pb2.WatchCreateRequest.NOPUT])
        both("created with a filter (auto id)", lambda s: s.watch.recv())

        # -- live events -------------------------------------------------------------------
        unary("live put c", lambda kv: kv.Put(put(key=b"c", value=b"33"),
                                              timeout=CALL_TIMEOUT_S))
        both("live responses for c (watchers 0 and 5)",
             lambda s: sorted((s.watch.recv() for _ in range(2)), key=lambda r: r.watch_id))
        unary("live put e (filtered for watcher 1)",
              lambda kv: kv.Put(put(key=b"e", value=b"55"), timeout=CALL_TIMEOUT_S))
        both("live response for e", lambda s: s.watch.recv())
        unary("live delete-range c..e", lambda kv: kv.DeleteRange(
            rpc_pb2.DeleteRangeRequest(key=b"c", range_end=b"f", prev_kv=True),
            timeout=CALL_TIMEOUT_S))
        both("live responses for the delete (watchers 0, 1 and 5)",
             lambda s: sorted((s.watch.recv() for _ in range(3)), key=lambda r: r.watch_id))

        # -- progress and cancel -----------------------------------------------------------
        for s in sides:
            s.watch.request_progress()
        progress = both("progress reply", lambda s: s.watch.recv())
        assert progress.watch_id == -1
        for s in sides:
            s.watch.cancel(5)
        both("cancel reply", lambda s: s.watch.recv())
        for s in sides:
            s.watch.cancel(42)  # unknown: no reply ...
            s.watch.request_progress()
        both("progress after an unknown cancel", lambda s: s.watch.recv())
        for wid in (0, 1):
            for s in sides:
                s.watch.cancel(wid)
            both(f"cancel reply {wid}", lambda s: s.watch.recv())

        # -- compaction --------------------------------------------------------------------
        unary("put f", lambda kv: kv.Put(put(key=b"f", value=b"6"), timeout=CALL_TIMEOUT_S))
        unary("put f again",
              lambda kv: kv.Put(put(key=b"f", value=b"66"), timeout=CALL_TIMEOUT_S))
        unary("compact 9", lambda kv: kv.Compact(
            rpc_pb2.CompactionRequest(revision=9, physical=True), timeout=CALL_TIMEOUT_S))
        cur = unary("revision", lambda kv: kv.Range(
            rpc_pb2.RangeRequest(key=b"\x00", count_only=True),
            timeout=CALL_TIMEOUT_S)).header.revision
        for s in sides:
            s.watch.create(b"\x00", b"\x00", start_revision=3, watch_id=9)
        both("created (compacted start)", lambda s: s.watch.recv())
        cancel = both("compaction cancel", lambda s: s.watch.recv())
        assert cancel.canceled and cancel.compact_revision == 9
        for s in sides:
            s.watch.create(b"\x00", b"\x00", start_revision=9, watch_id=10, prev_kv=True)
        both("created (start == compact revision)", lambda s: s.watch.recv())
        ev_real, env_real = real.replay(10, cur)
        ev_lite, env_lite = lite.replay(10, cur)
        same("replay from the compact revision (flattened)", ev_real, ev_lite)
        same("replay envelopes from the compact revision", env_real, env_lite)
        for s in sides:
            s.watch.request_progress()
        both("final progress reply", lambda s: s.watch.recv())

    finally:
        for s in sides:
            s.watch.close()


def test_watch_id_bookkeeping_and_half_close_match_real_etcd(watch_pair):
    """Three independent checks, each on fresh streams of both servers; every mismatch
    is collected and reported together (none can cascade into another)."""
    mismatches: list[str] = []
    put = rpc_pb2.PutRequest
    kvs = {"real": watch_pair.real.stub("KV"), "lite": watch_pair.lite.stub("KV")}
    for kv in kvs.values():
        for v in (b"1", b"2", b"3"):
            kv.Put(put(key=b"k", value=v), timeout=CALL_TIMEOUT_S)
        kv.Compact(rpc_pb2.CompactionRequest(revision=3, physical=True),
                   timeout=CALL_TIMEOUT_S)

    def check(step: str, scenario: Callable[[WatchClient, Any], list]) -> None:
        out = {}
        for name, server in (("real", watch_pair.real), ("lite", watch_pair.lite)):
            with WatchClient(server.stub("Watch")) as w:
                try:
                    out[name] = scenario(w, kvs[name])
                except AssertionError as e:  # e.g. the stream ended: part of the outcome
                    out[name] = f"failed: {e}"
        try:
            same(step, out["real"], out["lite"])
        except AssertionError as e:
            mismatches.append(str(e))

    def auto_ids(w: WatchClient, kv: Any) -> list:
        w.create(b"k")
        w.create(b"k")
        got = [w.recv(), w.recv()]
        w.cancel(0)
        w.cancel(1)
        got += [w.recv(), w.recv()]
        w.create(b"k")  # etcd: id 2 (its counter only grows)
        got.append(w.recv())
        return got

    def compacted_id(w: WatchClient, kv: Any) -> list:
        w.create(b"k", start_revision=2, watch_id=7)
        got = [w.recv(), w.recv()]  # created, then the compaction cancel
        w.create(b"k", watch_id=7)  # etcd: still registered -> duplicate
        got.append(w.recv())
        w.cancel(7)  # etcd: replies canceled
        w.request_progress()
        got.append(w.recv())
        return got

    def half_close(w: WatchClient, kv: Any) -> list:
        w.create(b"k")
        got = [w.recv()]
        w.half_close()
        kv.Put(put(key=b"k", value=b"after-close-send"), timeout=CALL_TIMEOUT_S)
        got.append(w.recv())  # etcd keeps the stream open: the event arrives
        return got

    check("auto ids after cancel", auto_ids)
    check("id of a compaction-cancelled watcher", compacted_id)
    check("events after the client closed its sending side", half_close)
    assert not mismatches, "\n\n".join(mismatches)
