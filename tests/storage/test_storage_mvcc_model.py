"""Model-based test of the MVCC ``Store`` against a tiny reference model.

The model keeps, for every revision, a snapshot ``{key: KeyValue fields}``, plus every
record ever written to the ``key`` table (revision bytes -> KeyValue fields). Rules drive
puts, multi-op write transactions (puts, deletes and reads in one ``store.write()``
inside one ``backend.batch()``), range deletes, compactions (physical deletion driven a
few batches at a time, sometimes left unfinished), and restarts (reopen the LMDB
environment, build a new Store); reads at random revisions compare every KeyValue field.

Bigger runs: ``ETCDLITE_HYPOTHESIS_EXAMPLES=2000 ETCDLITE_HYPOTHESIS_STEPS=80``.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from etcdlite.protos.kv_pb2 import KeyValue
from etcdlite.storage.backend import LmdbBackend
from etcdlite.storage.errors import Compacted, FutureRevision
from etcdlite.storage.mvcc import CompactionJob, RangeResult, Store
from etcdlite.storage.revision import Revision, decode, encode

EXAMPLES = int(os.environ.get("ETCDLITE_HYPOTHESIS_EXAMPLES", "150"))
STEPS = int(os.environ.get("ETCDLITE_HYPOTHESIS_STEPS", "50"))
MODEL_SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAP_SIZE = 1 << 26

Fields = tuple[bytes, bytes, int, int, int, int]
"""(key, value, create_revision, mod_revision, version, lease)"""

KEYS = [b"a", b"b", b"c", b"d", b"e", b"a\x00", b"c\xff\x01"]
# None = the single key; b"" = every key >= key; otherwise [key, end).
ENDS = [None, None, b"", b"c", b"b\x00", b"d", b"\xff", b"a"]

keys = st.sampled_from(KEYS)
ends = st.sampled_from(ENDS)
values = st.binary(max_size=6)
leases = st.sampled_from([0, 0, 0, 1, 7, -5, 2**63 - 1])
limits = st.sampled_from([0, 0, 1, 2, 3, 100])

put_ops = st.tuples(st.just("put"), keys, values, leases)
delete_ops = st.tuples(st.just("delete"), keys, ends)
range_ops = st.tuples(st.just("range"), keys, ends, limits, st.booleans())
txn_ops = st.lists(st.one_of(put_ops, put_ops, delete_ops, range_ops), min_size=0, max_size=6)


def fields(kv: KeyValue) -> Fields:
    return (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def in_range(key: bytes, end: bytes | None, k: bytes) -> bool:
    if end is None:
        return k == key
    if end == b"":
        return k >= key
    return key <= k < end


def expect_range(
    snap: dict[bytes, Fields], key: bytes, end: bytes | None, limit: int
) -> tuple[list[Fields], int]:
    hit = [snap[k] for k in sorted(snap) if in_range(key, end, k)]
    return (hit[:limit] if limit else hit), len(hit)


def check_result(
    res: RangeResult,
    snap: dict[bytes, Fields],
    key: bytes,
    end: bytes | None,
    limit: int,
    count_only: bool,
) -> None:
    wkvs, wcount = expect_range(snap, key, end, limit)
    assert res.count == wcount
    got = [fields(kv) for kv in res.kvs]
    assert got == ([] if count_only else wkvs)


def surviving(records: dict[bytes, tuple[Revision, bool, Fields]], at: int) -> set[bytes]:
    """Backend keys compaction at ``at`` keeps: per key the newest revision <= at unless
    it is a tombstone below ``at``; every tombstone at exactly ``at`` (the DELETE events
    of the compact revision stay watchable, etcd-io/etcd#18274); everything after ``at``."""
    newest: dict[bytes, bytes] = {}
    keep: set[bytes] = set()
    for raw, (rev, tomb, f) in sorted(records.items()):
        if rev.main > at:
            keep.add(raw)
            continue
        newest[f[0]] = raw
        if tomb and rev.main == at:
            keep.add(raw)
    for raw in newest.values():
        if not records[raw][1]:
            keep.add(raw)
    return keep


class StoreMachine(RuleBasedStateMachine):
    base: Path
    dirs: itertools.count

    def __init__(self) -> None:
        super().__init__()
        self.path = self.base / f"store{next(self.dirs)}"
        self.backend = LmdbBackend(self.path, sync=False, map_size=MAP_SIZE)
        self.store = Store(self.backend)
        # the model
        self.rev = 1
        self.compact_rev = -1
        self.snapshots: dict[int, dict[bytes, Fields]] = {1: {}}
        self.records: dict[bytes, tuple[Revision, bool, Fields]] = {}
        self.pending = False

    def teardown(self) -> None:
        self.backend.close()
        shutil.rmtree(self.path, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------------

    def disk(self) -> dict[bytes, Fields]:
        with self.backend.env.begin(db=self.backend.db(b"key"), buffers=False) as txn:
            return {raw: fields(KeyValue.FromString(v)) for raw, v in txn.cursor()}

    def expected_disk(self) -> dict[bytes, Fields]:
        keep = surviving(self.records, self.compact_rev)
        return {raw: self.records[raw][2] for raw in keep}

    def check_all_revisions(self) -> None:
        with self.store.read() as view:
            for at in range(max(self.compact_rev, 1), self.rev + 1):
                check_result(
                    view.range(b"\x00", b"", rev=at), self.snapshots[at], b"\x00", b"", 0, False
                )

    def run_txn(self, ops: list[tuple]) -> None:
        begin = self.rev
        main = begin + 1
        working = dict(self.snapshots[begin])
        changes: list[Fields] = []
        new_records: dict[bytes, tuple[Revision, bool, Fields]] = {}
        with self.backend.batch():
            txn = self.store.write()
            assert txn.begin_rev == begin
            for op in ops:
                kind = op[0]
                if kind == "put":
                    _, key, value, lease = op
                    old = working.get(key)
                    created, version = (old[2], old[4] + 1) if old else (main, 1)
                    f = (key, value, created, main, version, lease)
                    rev = Revision(main, len(changes))
                    assert txn.put(key, value, lease) == main
                    working[key] = f
                    new_records[encode(rev)] = (rev, False, f)
                    changes.append(f)
                elif kind == "delete":
                    _, key, end = op
                    hit = sorted(k for k in working if in_range(key, end, k))
                    n, at = txn.delete_range(key, end)
                    for k in hit:
                        del working[k]
                        rev = Revision(main, len(changes))
                        new_records[encode(rev, tombstone=True)] = (rev, True, (k, b"", 0, 0, 0, 0))
                        changes.append((k, b"", 0, main, 0, 0))
                    assert n == len(hit)
                    assert at == (main if changes else begin)
                else:
                    _, key, end, limit, count_only = op
                    res = txn.range(key, end, limit=limit, count_only=count_only)
                    assert res.rev == (main if changes else begin)
                    check_result(res, working, key, end, limit, count_only)
            assert [fields(kv) for kv in txn.changes] == changes
            assert txn.end() == (main if changes else begin)
        if changes:
            self.rev = main
            self.snapshots[main] = working
            self.records.update(new_records)

    def drive(self, job: CompactionJob, batch_limit: int, steps: int | None) -> None:
        """Run up to ``steps`` compaction batches (None: until done)."""
        todo = sum(1 for raw in self.disk() if decode(raw)[0].main <= job.rev)
        bound = todo // batch_limit + 2  # every batch makes progress
        n = 0
        while steps is None or n < steps:
            assert n < bound, f"compaction at {job.rev} not done after {n} batches"
            n += 1
            if self.store.compact_step(job, batch_limit):
                assert self.store.finished_compact_revision == job.rev
                if job.rev == self.compact_rev:
                    self.pending = False
                    assert self.store.pending_compaction is None
                return

    # -- rules ------------------------------------------------------------------------

    @initialize()
    def fresh_store(self) -> None:
        assert self.store.current_revision == 1
        assert self.store.compact_revision == -1
        assert self.store.pending_compaction is None

    @rule(key=keys, value=values, lease=leases)
    def put(self, key: bytes, value: bytes, lease: int) -> None:
        self.run_txn([("put", key, value, lease)])

    @rule(key=keys, end=ends)
    def delete_range(self, key: bytes, end: bytes | None) -> None:
        self.run_txn([("delete", key, end)])

    @rule(ops=txn_ops)
    def write_txn(self, ops: list[tuple]) -> None:
        self.run_txn(ops)

    @rule(data=st.data(), key=keys, end=ends, limit=limits, count_only=st.booleans())
    def read(
        self, data: st.DataObject, key: bytes, end: bytes | None, limit: int, count_only: bool
    ) -> None:
        rev = data.draw(
            st.one_of(
                st.integers(-1, self.rev + 2),
                st.integers(1, max(self.compact_rev, 1)),  # at or below the compaction
            ),
            label="rev",
        )
        with self.store.read() as view:
            if rev > self.rev:
                with pytest.raises(FutureRevision):
                    view.range(key, end, rev=rev, limit=limit, count_only=count_only)
                return
            at = self.rev if rev <= 0 else rev
            if at < self.compact_rev:
                with pytest.raises(Compacted):
                    view.range(key, end, rev=rev, limit=limit, count_only=count_only)
                return
            res = view.range(key, end, rev=rev, limit=limit, count_only=count_only)
            assert res.rev == self.rev
            check_result(res, self.snapshots[at], key, end, limit, count_only)

    @precondition(lambda self: self.rev > max(self.compact_rev, 0))
    @rule(
        data=st.data(),
        batch_limit=st.integers(1, 4),
        steps=st.one_of(st.none(), st.integers(0, 3)),
        then_restart=st.booleans(),
    )
    def compact(
        self, data: st.DataObject, batch_limit: int, steps: int | None, then_restart: bool
    ) -> None:
        at = data.draw(st.integers(max(self.compact_rev + 1, 1), self.rev), label="at")
        with self.backend.batch():
            job = self.store.compact(at)
        assert job.rev == at
        assert self.store.pending_compaction is job
        assert self.store.compact_revision == at
        self.compact_rev = at
        self.pending = True
        self.drive(job, batch_limit, steps)
        self.check_all_revisions()
        if then_restart:
            # Often while the physical compaction is still unfinished.
            self.do_restart(batch_limit, None)

    @rule(data=st.data(), future=st.booleans())
    def compact_refused(self, data: st.DataObject, future: bool) -> None:
        pending = self.store.pending_compaction
        if future or self.compact_rev < 0:
            at = data.draw(st.integers(self.rev + 1, self.rev + 3), label="at")
            error: type[Exception] = FutureRevision
        else:
            at = data.draw(st.integers(-1, self.compact_rev), label="at")
            error = Compacted
        with pytest.raises(error), self.backend.batch():
            self.store.compact(at)
        assert self.store.compact_revision == self.compact_rev
        assert self.store.pending_compaction is pending

    @precondition(lambda self: self.pending)
    @rule(batch_limit=st.integers(1, 4), steps=st.one_of(st.none(), st.integers(1, 2)))
    def continue_compaction(self, batch_limit: int, steps: int | None) -> None:
        job = self.store.pending_compaction
        assert job is not None
        assert job.rev == self.compact_rev
        self.drive(job, batch_limit, steps)

    @rule(batch_limit=st.integers(1, 5), steps=st.one_of(st.none(), st.none(), st.just(1)))
    def restart(self, batch_limit: int, steps: int | None) -> None:
        self.do_restart(batch_limit, steps)

    def do_restart(self, batch_limit: int, steps: int | None) -> None:
        """Reopen the backend and build a new Store; run ``steps`` batches of a pending
        compaction (None: finish it)."""
        if self.pending:
            # An unfinished compaction deleted only what it had to, and nothing kept.
            on_disk = set(self.disk())
            assert on_disk <= set(self.records)
            assert set(self.expected_disk()) <= on_disk
        self.backend.close()
        self.backend = LmdbBackend(self.path, sync=False, map_size=MAP_SIZE)
        self.store = Store(self.backend)
        assert self.store.current_revision == self.rev
        assert self.store.compact_revision == self.compact_rev
        job = self.store.pending_compaction
        assert (job is not None) == self.pending
        if job is not None:
            assert job.rev == self.compact_rev
            self.drive(job, batch_limit, steps)
        self.check_all_revisions()

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def revisions_agree(self) -> None:
        assert self.store.current_revision == self.rev
        assert self.store.compact_revision == self.compact_rev
        assert (self.store.pending_compaction is not None) == self.pending

    @invariant()
    def current_state_agrees(self) -> None:
        with self.store.read() as view:
            assert view.rev == self.rev
            res = view.range(b"\x00", b"")
            check_result(res, self.snapshots[self.rev], b"\x00", b"", 0, False)

    @invariant()
    def backend_holds_exactly_what_survives(self) -> None:
        if not self.pending:
            assert self.disk() == self.expected_disk()


def test_store_matches_model(tmp_path: Path) -> None:
    class Machine(StoreMachine):
        base = tmp_path
        dirs = itertools.count()

    run_state_machine_as_test(Machine, settings=MODEL_SETTINGS)
