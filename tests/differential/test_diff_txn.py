"""Differential stories for Txn (facts sheet §4.6, §5)."""

from __future__ import annotations

import grpc

from etcdlite.protos import rpc_pb2 as R

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DUP = (INVALID, "etcdserver: duplicate key given in txn request")
TOO_MANY = (INVALID, "etcdserver: too many operations in txn request")
OPERATORS = ("EQUAL", "GREATER", "LESS", "NOT_EQUAL")


def test_compare_every_target_and_operator(pair, op):
    pair.put(b"k", b"m")  # create 2
    pair.put(b"other", b"x")  # 3
    pair.put(b"k", b"m2")  # mod 4, version 2
    # (target, value below, value equal, value above) for key k
    cases = [("VERSION", 1, 2, 3), ("CREATE", 1, 2, 3), ("MOD", 3, 4, 5),
             ("VALUE", b"m1", b"m2", b"m3"), ("LEASE", -1, 0, 1)]
    results = {}
    for target, *values in cases:
        for operator in OPERATORS:
            for value in values:
                r = pair.txn(compare=[op.cmp(b"k", target, operator, value)],
                             success=[op.get(b"k", keys_only=True)],
                             failure=[op.get(b"other")])
                results[(target, operator, value)] = r.succeeded
    assert results[("VERSION", "GREATER", 1)] and not results[("VERSION", "GREATER", 2)]
    assert results[("VALUE", "LESS", b"m3")] and results[("VALUE", "NOT_EQUAL", b"m1")]
    # Values compare bytewise, not as strings of different length only.
    for value in (b"", b"m", b"m2\x00", b"\xff"):
        for operator in OPERATORS:
            pair.txn(compare=[op.cmp(b"k", "VALUE", operator, value)])
    # Several compares: all must hold.
    for other in (b"x", b"y"):
        pair.txn(compare=[op.cmp(b"k", "VERSION", "EQUAL", 2),
                          op.cmp(b"other", "VALUE", "EQUAL", other)],
                 success=[op.get(b"k")], failure=[op.get(b"other")])
    assert pair.revision() == 4


def test_compare_on_missing_key(pair, op):
    pair.put(b"present", b"v")
    for operator in OPERATORS:
        for value in (b"", b"x"):
            r = pair.txn(compare=[op.cmp(b"missing", "VALUE", operator, value)])
            assert not r.succeeded  # VALUE on a missing key is always false
        for target in ("VERSION", "CREATE", "MOD", "LEASE"):
            for value in (-1, 0, 1):
                pair.txn(compare=[op.cmp(b"missing", target, operator, value)],
                         success=[op.get(b"present", count_only=True)])
    r = pair.txn(compare=[op.cmp(b"missing", "CREATE", "EQUAL", 0)],
                 success=[op.put(b"missing", b"now")])
    assert r.succeeded and r.header.revision == 3
    # A key that was deleted is missing again.
    pair.delete(b"missing")
    pair.txn(compare=[op.cmp(b"missing", "VERSION", "EQUAL", 0)], success=[op.get(b"missing")])
    pair.txn(compare=[op.cmp(b"missing", "MOD", "LESS", 3)])


def test_compare_with_range_end(pair, op):
    for k, v in ((b"p/1", b"a"), (b"p/2", b"a"), (b"p/3", b"b"), (b"q", b"a")):
        pair.put(k, v)
    prefix = (b"p/", b"p0")
    for target, value in (("VERSION", 1), ("CREATE", 3), ("MOD", 4), ("VALUE", b"a"),
                          ("VALUE", b"b"), ("LEASE", 0)):
        for operator in OPERATORS:
            pair.txn(compare=[op.cmp(prefix[0], target, operator, value, range_end=prefix[1])],
                     success=[op.get(*prefix, count_only=True)])
    r = pair.txn(compare=[op.cmp(b"p/1", "VALUE", "EQUAL", b"a", range_end=b"p/3")])
    assert r.succeeded  # p/1 and p/2 both "a"
    r = pair.txn(compare=[op.cmp(b"p/", "VALUE", "EQUAL", b"a", range_end=b"p0")])
    assert not r.succeeded  # p/3 is "b"
    # From-key and all-keys forms.
    pair.txn(compare=[op.cmp(b"p/3", "VALUE", "NOT_EQUAL", b"z", range_end=b"\x00")])
    pair.txn(compare=[op.cmp(b"\x00", "CREATE", "GREATER", 1, range_end=b"\x00")])
    # An empty interval behaves like a missing key.
    for target, value in (("VERSION", 0), ("VALUE", b"")):
        pair.txn(compare=[op.cmp(b"x/", target, "EQUAL", value, range_end=b"x0")])
        pair.txn(compare=[op.cmp(b"z", target, "EQUAL", value, range_end=b"a")])


def test_branches_and_ops_seeing_earlier_ops(pair, op):
    pair.put(b"a", b"1")
    pair.put(b"b", b"2")
    story = [op.get(b"a"), op.put(b"a", b"10", prev_kv=True), op.get(b"a"),
             op.delete(b"b", prev_kv=True), op.get(b"b"), op.get(b"\x00", b"\x00"),
             op.put(b"c", b"3"), op.get(b"c"), op.delete(b"missing"), op.get(b"c", count_only=True),
             op.get(b"\x00", b"\x00", revision=3)]
    r = pair.txn(compare=[op.cmp(b"a", "VALUE", "EQUAL", b"1")], success=story,
                 failure=[op.put(b"never", b"x")])
    assert r.succeeded and r.header.revision == 4 and len(r.responses) == len(story)
    # Same compare now fails: the failure branch runs.
    r = pair.txn(compare=[op.cmp(b"a", "VALUE", "EQUAL", b"1")], success=story,
                 failure=[op.put(b"f", b"x"), op.get(b"f"), op.delete(b"zz"), op.get(b"a")])
    assert not r.succeeded and r.header.revision == 5
    pair.get(b"\x00", b"\x00")
    # Every change of one txn shares its revision.
    pair.txn(success=[op.put(b"m1", b"1"), op.put(b"m2", b"2"), op.delete(b"f")])
    pair.get(b"m", b"n")
    pair.get(b"f", revision=5)


def test_nested_txn(pair, op):
    pair.put(b"k", b"v")
    inner_true = op.txn(compare=[op.cmp(b"k", "VALUE", "EQUAL", b"v")],
                        success=[op.put(b"in/s", b"1"), op.get(b"in/", b"in0")],
                        failure=[op.put(b"in/f", b"1")])
    inner_false = op.txn(compare=[op.cmp(b"k", "VERSION", "GREATER", 5)],
                         success=[op.put(b"in2/s", b"1")],
                         failure=[op.put(b"in2/f", b"1"), op.get(b"k")])
    r = pair.txn(compare=[op.cmp(b"k", "VERSION", "EQUAL", 1)],
                 success=[op.put(b"out", b"1"), inner_true, inner_false, op.get(b"in", b"io")],
                 failure=[op.put(b"never", b"1")])
    assert r.succeeded and r.header.revision == 3
    assert r.responses[1].response_txn.succeeded
    assert not r.responses[2].response_txn.succeeded
    # Sub-response headers: only the revision; a nested txn's header is present but empty.
    assert r.responses[0].response_put.header == R.ResponseHeader(revision=3)
    inner = r.responses[1].response_txn
    assert inner.HasField("header") and inner.header == R.ResponseHeader()
    assert inner.responses[1].response_range.header == R.ResponseHeader(revision=3)
    # Nested compares read the snapshot the outer txn started from: "k" is rewritten by an
    # earlier op, yet the nested compare does not see "w" (its ranges do).
    r = pair.txn(success=[op.put(b"k", b"w"),
                          op.txn(compare=[op.cmp(b"k", "VALUE", "EQUAL", b"w")],
                                 success=[op.get(b"k")], failure=[op.get(b"k", keys_only=True)])])
    assert not r.responses[1].response_txn.succeeded
    # Failure branch with a nested txn, and a nested txn inside a nested txn.
    r = pair.txn(compare=[op.cmp(b"k", "VERSION", "EQUAL", 100)],
                 failure=[op.txn(success=[op.txn(success=[op.get(b"k"), op.put(b"deep", b"1")])]),
                          op.get(b"deep")])
    assert not r.succeeded
    # A read-only nested txn.
    pair.txn(success=[op.txn(success=[op.get(b"k")])])
    pair.get(b"\x00", b"\x00")


def test_read_only_and_noop_txns_keep_revision(pair, op):
    pair.put(b"k", b"v")
    r = pair.txn()
    assert r.succeeded and r.header.revision == 2 and not r.responses
    pair.txn(compare=[op.cmp(b"k", "VERSION", "EQUAL", 9)])
    r = pair.txn(success=[op.get(b"k"), op.get(b"\x00", b"\x00", count_only=True)])
    assert r.header.revision == 2
    r = pair.txn(success=[op.delete(b"missing"), op.delete(b"x", b"y", prev_kv=True)])
    assert r.header.revision == 2
    r = pair.txn(success=[op.get(b"k"), op.delete(b"missing"), op.put(b"k", b"v2")])
    assert r.header.revision == 3
    pair.txn(failure=[op.put(b"k", b"never")])  # failure branch not run
    assert pair.revision() == 3


def test_duplicate_key_rules(pair, op):
    pair.put(b"k", b"v")
    a, b = b"a", b"b"

    def txn_err(**kw):
        return pair.both_error(lambda kv: kv.Txn(R.TxnRequest(**kw)))

    def txn_ok(**kw):
        return pair.both_ok(lambda kv: kv.Txn(R.TxnRequest(**kw)))

    assert txn_err(success=[op.put(a, b"1"), op.put(a, b"2")]) == DUP
    assert txn_err(failure=[op.put(a, b"1"), op.put(a, b"2")]) == DUP  # failure list is checked
    assert txn_err(compare=[op.cmp(b"k", "VERSION", "EQUAL", 1)],  # ...even when it won't run
                   failure=[op.put(a, b"1"), op.put(a, b"2")]) == DUP
    assert txn_err(success=[op.delete(a, b"c"), op.put(b, b"1")]) == DUP  # put inside a delete
    assert txn_err(success=[op.put(b, b"1"), op.delete(a, b"c")]) == DUP  # order doesn't matter
    assert txn_err(success=[op.delete(b), op.put(b, b"1")]) == DUP
    txn_ok(success=[op.delete(a, b"c"), op.put(b"c", b"1")])  # range_end is exclusive
    txn_ok(success=[op.put(a, b"1")], failure=[op.put(a, b"2")])  # different lists
    txn_ok(success=[op.delete(a), op.delete(a), op.delete(a, b"z")])  # two deletes are fine
    txn_ok(success=[op.put(a, b"1"), op.get(a), op.get(a)])
    # Nested: success and failure branches of one nested txn may write the same key...
    txn_ok(success=[op.txn(success=[op.put(a, b"s")], failure=[op.put(a, b"f")])])
    # ...but an outer put and a nested put of the same key collide, both ways round...
    assert txn_err(success=[op.put(a, b"1"), op.txn(success=[op.put(a, b"2")])]) == DUP
    assert txn_err(success=[op.txn(failure=[op.put(a, b"2")]), op.put(a, b"1")]) == DUP
    # ...as do an outer delete and a nested put, and a nested delete and an outer put...
    assert txn_err(success=[op.delete(a, b"z"), op.txn(success=[op.put(b, b"2")])]) == DUP
    assert txn_err(success=[op.txn(success=[op.delete(a, b"z")]), op.put(b, b"2")]) == DUP
    # ...and two sibling nested txns writing the same key.
    assert txn_err(success=[op.txn(success=[op.put(a, b"1")]),
                            op.txn(failure=[op.put(a, b"2")])]) == DUP
    assert txn_err(failure=[op.txn(success=[op.txn(success=[op.put(a, b"1"), op.put(a, b"1")])])
                            ]) == DUP
    txn_ok(success=[op.txn(success=[op.delete(a)]), op.delete(a)])
    # Delete from-key ("\x00" range_end) + put: etcd's interval check sees [a, "\x00") as an
    # empty interval, so this is *not* a duplicate.
    r = txn_ok(success=[op.delete(a, b"\x00"), op.put(b, b"1")])
    assert r.succeeded
    txn_ok(success=[op.delete(b"\x00", b"\x00"), op.put(b"zz", b"1")])
    pair.get(b"\x00", b"\x00")


def test_too_many_ops(pair, op):
    puts = [op.put(b"k%03d" % i, b"v") for i in range(129)]
    cmps = [op.cmp(b"k%03d" % i, "VERSION", "EQUAL", 0) for i in range(129)]
    assert pair.both_error(lambda kv: kv.Txn(R.TxnRequest(success=puts))) == TOO_MANY
    assert pair.both_error(lambda kv: kv.Txn(R.TxnRequest(failure=puts))) == TOO_MANY
    assert pair.both_error(lambda kv: kv.Txn(R.TxnRequest(compare=cmps))) == TOO_MANY
    assert pair.revision() == 1
    r = pair.txn(compare=cmps[:128], success=puts[:128], failure=puts[:128])
    assert r.succeeded and len(r.responses) == 128 and r.header.revision == 2
    # The too-many check comes before the empty-key check.
    assert pair.both_error(lambda kv: kv.Txn(R.TxnRequest(
        success=[op.put(b"", b"")] * 129))) == TOO_MANY
    # Nested txns: etcd passes the remaining budget down (128 - the largest list at this
    # level): 87 gets + the nested txn = 88 ops leave 40, enough for a 40-op nested txn...
    inner = op.txn(success=[op.get(b"k%03d" % i) for i in range(40)])
    pair.both_ok(lambda kv: kv.Txn(R.TxnRequest(success=[op.get(b"k000")] * 87 + [inner])))
    # ...89 ops leave 39, too few; a long compare list at this level counts as well.
    assert pair.both_error(lambda kv: kv.Txn(R.TxnRequest(
        success=[op.get(b"k000")] * 88 + [inner]))) == TOO_MANY
    assert pair.both_error(lambda kv: kv.Txn(R.TxnRequest(
        compare=cmps[:100], success=[inner]))) == TOO_MANY
    assert pair.both_error(lambda kv: kv.Txn(R.TxnRequest(
        success=[inner], failure=[op.get(b"k000")] * 89))) == TOO_MANY


def test_empty_request_op(pair, op):
    not_found = (INVALID, "etcdserver: key not found")
    pair.put(b"k", b"v")
    assert pair.both_error(lambda kv: kv.Txn(R.TxnRequest(success=[R.RequestOp()]))) == not_found
    assert pair.both_error(lambda kv: kv.Txn(R.TxnRequest(
        success=[op.get(b"k")], failure=[R.RequestOp()]))) == not_found
    assert pair.both_error(lambda kv: kv.Txn(R.TxnRequest(
        success=[op.txn(failure=[R.RequestOp()])]))) == not_found
    # Empty key vs empty op: the first bad op in list order decides.
    assert pair.both_error(lambda kv: kv.Txn(R.TxnRequest(
        success=[R.RequestOp(), op.put(b"", b"")]))) == not_found
    assert pair.both_error(lambda kv: kv.Txn(R.TxnRequest(
        success=[op.put(b"", b""), R.RequestOp()]))) == (INVALID, "etcdserver: key is not provided")
    assert pair.revision() == 2


def test_compare_with_unset_or_mismatched_union_and_unknown_enums(pair, op):
    pair.put(b"k", b"v")
    pair.put(b"k", b"v")  # version 2
    C = R.Compare

    def run(c: R.Compare) -> bool:
        return pair.txn(compare=[c], success=[op.get(b"k", count_only=True)]).succeeded

    # No target_union set: the target is compared against its zero value.
    assert not run(C(key=b"k", target=C.VERSION, result=C.EQUAL))
    assert run(C(key=b"k", target=C.VERSION, result=C.GREATER))
    assert run(C(key=b"k", target=C.VALUE, result=C.NOT_EQUAL))
    run(C(key=b"k", target=C.LEASE, result=C.EQUAL))
    run(C(key=b"missing", target=C.CREATE, result=C.EQUAL))
    # target_union of another target: ignored, i.e. zero value again.
    assert not run(C(key=b"k", target=C.VALUE, result=C.EQUAL, version=2))
    assert run(C(key=b"k", target=C.MOD, result=C.GREATER, value=b"x"))
    run(C(key=b"k", target=C.VERSION, result=C.LESS, mod_revision=100))
    # Unknown result / target values: etcd 3.4.23 treats the compare as holding.
    assert run(C(key=b"k", target=C.VERSION, result=99, version=2))
    assert run(C(key=b"k", target=99, result=C.EQUAL, version=2))
    run(C(key=b"k", target=99, result=C.LESS, version=2))
    run(C(key=b"missing", target=99, result=C.EQUAL, value=b"x"))
    assert pair.revision() == 3
