"""Differential stories for Compact and request-size limits (facts sheet §4.7, §4.13, §5)."""

from __future__ import annotations

import grpc

from etcdlite.protos import rpc_pb2 as R

OUT_OF_RANGE = grpc.StatusCode.OUT_OF_RANGE
FUTURE = (OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")
COMPACTED = (OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")


def compact_err(pair, rev: int, physical: bool = False):
    return pair.both_error(lambda kv: kv.Compact(
        R.CompactionRequest(revision=rev, physical=physical)))


def range_err(pair, rev: int, key: bytes = b"\x00", range_end: bytes = b"\x00"):
    return pair.both_error(lambda kv: kv.Range(
        R.RangeRequest(key=key, range_end=range_end, revision=rev)))


def test_compact_errors_and_reads_around_the_compact_revision(pair, op):
    pair.put(b"a", b"1")  # 2
    pair.put(b"b", b"1")  # 3
    pair.put(b"a", b"2")  # 4
    pair.delete(b"b")  # 5
    pair.put(b"a", b"3")  # 6
    pair.put(b"c", b"1")  # 7
    assert compact_err(pair, 8) == FUTURE
    assert compact_err(pair, 100, physical=True) == FUTURE
    r = pair.compact(4)
    assert r.header.revision == 7  # a compaction is not a write
    assert compact_err(pair, 4) == COMPACTED  # equal
    assert compact_err(pair, 3) == COMPACTED  # below
    assert compact_err(pair, 0) == COMPACTED
    assert range_err(pair, 3) == COMPACTED
    assert range_err(pair, 2, b"a") == COMPACTED
    r = pair.get(b"\x00", b"\x00", revision=4)  # at the compact revision
    assert [(kv.key, kv.value) for kv in r.kvs] == [(b"a", b"2"), (b"b", b"1")]
    pair.get(b"b", revision=4)
    pair.get(b"\x00", b"\x00", revision=5)  # above
    pair.get(b"a", revision=6, count_only=True)
    pair.get(b"\x00", b"\x00")
    # Reads of a compacted revision inside a txn.
    pair.both(lambda kv: kv.Txn(R.TxnRequest(success=[op.get(b"a", revision=3)])))
    pair.both(lambda kv: kv.Txn(R.TxnRequest(success=[op.put(b"z", b"1"),
                                                      op.get(b"a", revision=2)])))
    pair.txn(success=[op.get(b"a", revision=4)])
    # Compact past b's tombstone: b's history is gone from revision 5 on.
    r = pair.compact(5)
    assert r.header.revision == pair.revision()
    assert range_err(pair, 4, b"b") == COMPACTED
    pair.get(b"\x00", b"\x00", revision=5)
    # Compact to the current revision; the revision counter goes on from there.
    cur = pair.revision()
    pair.compact(cur)
    assert compact_err(pair, cur) == COMPACTED
    pair.get(b"\x00", b"\x00", revision=cur)
    r = pair.put(b"d", b"1")
    assert r.header.revision == cur + 1
    pair.get(b"\x00", b"\x00", revision=cur + 1)
    pair.get(b"a", revision=-1)


def test_compact_physical_and_fresh_store_edges(pair):
    # Before any compaction, compacting revision 0 or 1 of an empty store.
    pair.both(lambda kv: kv.Compact(R.CompactionRequest(revision=0)))
    pair.both(lambda kv: kv.Compact(R.CompactionRequest(revision=-1)))
    pair.both(lambda kv: kv.Compact(R.CompactionRequest(revision=1, physical=True)))
    for i in range(6):
        pair.put(b"k", b"v%d" % i)  # 2..7
    pair.put(b"gone", b"x")  # 8
    pair.delete(b"gone")  # 9
    r = pair.compact(6, physical=True)
    assert r.header.revision == 9
    assert compact_err(pair, 6, physical=True) == COMPACTED
    assert range_err(pair, 5, b"k") == COMPACTED
    pair.get(b"k", revision=6)
    pair.get(b"\x00", b"\x00", revision=8)
    pair.compact(9, physical=True)
    pair.get(b"\x00", b"\x00", revision=9)
    pair.get(b"gone", revision=9)
    pair.get(b"k")


def test_request_too_large(pair, op):
    pair.put(b"k", b"small")
    too_large = (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large")
    big = b"x" * (1600 * 1024)  # > --max-request-bytes (1.5 MiB), < gRPC's own limit (+512 KiB)
    assert pair.both_error(lambda kv: kv.Put(R.PutRequest(key=b"big", value=big))) == too_large
    half = b"y" * (800 * 1024)  # each put is fine alone; together they are too large
    assert pair.both_error(lambda kv: kv.Txn(R.TxnRequest(
        success=[op.put(b"h1", half), op.put(b"h2", half)]))) == too_large
    assert pair.revision() == 2
    r = pair.put(b"h1", half)  # a single one fits
    assert r.header.revision == 3
    pair.get(b"h1", keys_only=True)
    pair.get(b"k")


def test_request_above_grpc_message_limit(pair):
    # Above max-request-bytes + 512 KiB the gRPC layer itself refuses the message.
    huge = b"z" * (2200 * 1024)
    pair.both(lambda kv: kv.Put(R.PutRequest(key=b"huge", value=huge)))
    assert pair.revision() == 1
