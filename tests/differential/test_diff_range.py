"""Differential stories for Range options and DeleteRange (facts sheet §4.3, §4.4, §4.5)."""

from __future__ import annotations

import grpc

from etcdlite.protos import rpc_pb2 as R

ORDERS = ("NONE", "ASCEND", "DESCEND")
TARGETS = ("KEY", "VERSION", "CREATE", "MOD", "VALUE")
OUT_OF_RANGE = grpc.StatusCode.OUT_OF_RANGE


def keys(resp) -> list[bytes]:
    return [kv.key for kv in resp.kvs]


def fill(pair, items) -> None:
    for k, v in items:
        pair.put(k, v)


def test_range_end_forms(pair):
    fill(pair, [(b"a", b"1"), (b"a/1", b"2"), (b"a/2", b"3"), (b"ab", b"4"), (b"b", b"5"),
                (b"c", b"6"), (b"\xff", b"7"), (b"\xff\xff", b"8")])
    assert keys(pair.get(b"a/", b"a0")) == [b"a/1", b"a/2"]  # prefix
    assert keys(pair.get(b"a", b"b")) == [b"a", b"a/1", b"a/2", b"ab"]
    assert keys(pair.get(b"ab", b"\x00")) == [b"ab", b"b", b"c", b"\xff", b"\xff\xff"]  # from-key
    assert len(pair.get(b"\x00", b"\x00").kvs) == 8  # every key
    pair.get(b"\xff", b"\x00")  # prefix of an all-0xff key is "\x00"
    pair.get(b"a", b"a\x00")  # exactly "a"
    pair.get(b"a\x00", b"\x00")
    pair.get(b"\x00")  # the single key "\x00" (absent)
    # key >= range_end (non-empty range_end) -> empty, not an error.
    r = pair.get(b"b", b"b")
    assert not r.kvs and r.count == 0
    pair.get(b"c", b"a")
    pair.get(b"\xff\xff", b"\xff")
    pair.get(b"b", b"b", count_only=True)
    # Same forms for DeleteRange.
    r = pair.delete(b"c", b"a", prev_kv=True)
    assert r.deleted == 0 and r.header.revision == 9
    r = pair.delete(b"a/", b"a0", prev_kv=True)
    assert r.deleted == 2
    r = pair.delete(b"\xff", b"\x00")
    assert r.deleted == 2
    r = pair.delete(b"\x00", b"\x00", prev_kv=True)
    assert r.deleted == 4 and r.header.revision == 12
    pair.get(b"\x00", b"\x00")
    pair.get(b"\x00", b"\x00", revision=11)


def test_limit_more_count(pair):
    fill(pair, [(b"k%d" % i, b"v%d" % i) for i in range(5)])
    r = pair.get(b"k", b"l", limit=2)
    assert (keys(r), r.more, r.count) == ([b"k0", b"k1"], True, 5)
    pair.get(b"k", b"l", limit=4)
    r = pair.get(b"k", b"l", limit=5)
    assert (r.more, r.count) == (False, 5)
    pair.get(b"k", b"l", limit=6)
    pair.get(b"k", b"l", limit=-1)  # negative = no limit
    pair.get(b"k3", b"\x00", limit=1)
    pair.get(b"k1", limit=1)
    pair.get(b"k", b"l", limit=2, keys_only=True)
    pair.get(b"k", b"l", limit=2, count_only=True)
    # limit against an older revision counts keys at that revision.
    r = pair.get(b"k", b"l", limit=1, revision=3)
    assert (r.count, r.more) == (2, True)
    pair.delete(b"k0")
    pair.get(b"k", b"l", limit=4)


def test_range_at_revisions(pair):
    pair.put(b"k", b"v1")  # rev 2
    pair.put(b"k", b"v2")  # rev 3
    pair.put(b"j", b"x")  # rev 4
    pair.delete(b"k")  # rev 5
    pair.put(b"k", b"v3")  # rev 6
    for rev in (-5, 0, 1, 2, 3, 4, 5, 6):
        r = pair.get(b"k", revision=rev)
        assert r.header.revision == 6  # header: current revision, not the one asked for
        pair.get(b"\x00", b"\x00", revision=rev)
    future = (OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")
    assert pair.both_error(lambda kv: kv.Range(R.RangeRequest(key=b"k", revision=7))) == future
    assert pair.both_error(lambda kv: kv.Range(
        R.RangeRequest(key=b"k", revision=1000, count_only=True))) == future
    pair.compact(3)
    compacted = (OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
    for rev in (1, 2):
        assert pair.both_error(lambda kv, rev=rev: kv.Range(
            R.RangeRequest(key=b"k", revision=rev))) == compacted
    r = pair.get(b"k", revision=3)  # == compact revision: still readable
    assert [kv.value for kv in r.kvs] == [b"v2"]
    pair.get(b"\x00", b"\x00", revision=4)
    pair.get(b"k", revision=5)
    assert pair.both_error(lambda kv: kv.Range(R.RangeRequest(key=b"k", revision=7))) == future


def _sort_fixture(pair) -> None:
    # Distinct orders per target: versions, create, mod and values all disagree with keys.
    fill(pair, [(b"s/c", b"m"), (b"s/a", b"z"), (b"s/d", b"a"), (b"s/b", b"q")])
    fill(pair, [(b"s/a", b"y"), (b"s/a", b"x"), (b"s/b", b"p"), (b"s/c", b"n")])


def test_sort_order_and_target_combinations(pair):
    _sort_fixture(pair)
    for order in ORDERS:
        for target in TARGETS:
            for limit in (0, 2):
                pair.get(b"s/", b"s0", limit=limit, keys_only=limit == 2,
                         sort_order=R.RangeRequest.SortOrder.Value(order),
                         sort_target=R.RangeRequest.SortTarget.Value(target))
    r = pair.get(b"s/", b"s0", sort_order=R.RangeRequest.DESCEND,
                 sort_target=R.RangeRequest.VALUE, limit=3)
    assert [kv.value for kv in r.kvs] == [b"x", b"p", b"n"]
    assert (r.more, r.count) == (True, 4)


def test_sort_target_version_order_none_with_limit_quirk(pair):
    # versions: a=3, b=2, c=1, d=1
    fill(pair, [(b"a", b"1"), (b"a", b"2"), (b"a", b"3"), (b"b", b"1"), (b"b", b"2"),
                (b"c", b"1"), (b"d", b"1")])
    # Order NONE with a non-KEY target sorts ascending, but etcd keeps the limit for the
    # read (it only drops it when sort_order != NONE): it reads limit+1 keys in key order,
    # sorts those, then truncates.
    r = pair.get(b"a", b"e", sort_target=R.RangeRequest.VERSION, limit=2)
    assert (keys(r), r.more, r.count) == ([b"c", b"b"], True, 4)
    # With an explicit order the whole range is sorted first.
    r = pair.get(b"a", b"e", sort_target=R.RangeRequest.VERSION,
                 sort_order=R.RangeRequest.ASCEND, limit=2)
    assert keys(r) == [b"c", b"d"]
    r = pair.get(b"a", b"e", sort_target=R.RangeRequest.VERSION,
                 sort_order=R.RangeRequest.DESCEND, limit=2)
    assert keys(r) == [b"a", b"b"]
    pair.get(b"a", b"e", sort_target=R.RangeRequest.MOD, limit=1)
    pair.get(b"a", b"e", sort_target=R.RangeRequest.VALUE, limit=3)
    pair.get(b"a", b"e", sort_target=R.RangeRequest.CREATE, limit=3, count_only=True)


def test_keys_only_and_count_only(pair):
    fill(pair, [(b"x/1", b"one"), (b"x/2", b"two"), (b"x/3", b"three"), (b"x/2", b"deux")])
    r = pair.get(b"x/", b"x0", keys_only=True)
    assert keys(r) == [b"x/1", b"x/2", b"x/3"] and not any(kv.value for kv in r.kvs)
    r = pair.get(b"x/", b"x0", count_only=True)
    assert (r.count, list(r.kvs), r.more) == (3, [], False)
    pair.get(b"x/", b"x0", count_only=True, limit=1)
    pair.get(b"x/", b"x0", count_only=True, keys_only=True)
    pair.get(b"x/", b"x0", count_only=True, revision=3)
    pair.get(b"x/2", keys_only=True)
    pair.get(b"x/2", keys_only=True, revision=3)
    pair.get(b"x/", b"x0", keys_only=True, sort_order=R.RangeRequest.DESCEND,
             sort_target=R.RangeRequest.VALUE)
    pair.get(b"nothing", count_only=True)


def test_min_max_revision_filters(pair):
    # create revisions: f/a=2, f/b=3, f/c=4, f/d=5; then f/a mod 6, f/c mod 7
    fill(pair, [(b"f/a", b"1"), (b"f/b", b"1"), (b"f/c", b"1"), (b"f/d", b"1"),
                (b"f/a", b"2"), (b"f/c", b"2")])
    r = pair.get(b"f/", b"f0", min_mod_revision=6)
    assert (keys(r), r.count) == ([b"f/a", b"f/c"], 4)  # count is taken before filtering
    r = pair.get(b"f/", b"f0", max_mod_revision=5)
    assert keys(r) == [b"f/b", b"f/d"]
    r = pair.get(b"f/", b"f0", min_create_revision=3, max_create_revision=4)
    assert (keys(r), r.count) == ([b"f/b", b"f/c"], 4)
    pair.get(b"f/", b"f0", max_create_revision=2)
    pair.get(b"f/", b"f0", min_mod_revision=100)
    pair.get(b"f/", b"f0", min_mod_revision=6, limit=1)
    pair.get(b"f/", b"f0", min_create_revision=3, limit=1)
    pair.get(b"f/", b"f0", max_mod_revision=5, limit=2)
    pair.get(b"f/", b"f0", min_mod_revision=5, max_mod_revision=6, count_only=True)
    pair.get(b"f/", b"f0", min_mod_revision=2, keys_only=True, sort_order=R.RangeRequest.DESCEND,
             sort_target=R.RangeRequest.MOD, limit=2)
    pair.get(b"f/", b"f0", min_mod_revision=3, revision=5)


def test_invalid_sort_option(pair):
    # etcd 3.5 refuses unknown enum values with "etcdserver: invalid sort option"; etcd 3.4.23
    # has no such check: an unknown sort_order is neither ASCEND nor DESCEND, so nothing is
    # sorted (and, not being NONE, it still drops the limit for the read). An unknown
    # sort_target is not sent: 3.4.23 then calls sort.Sort(nil) and the whole server panics
    # (SIGSEGV), so there is nothing to compare against.
    fill(pair, [(b"b", b"1"), (b"a", b"2"), (b"c", b"0")])
    r = pair.both(lambda kv: kv.Range(R.RangeRequest(key=b"a", range_end=b"z", sort_order=99)))
    assert keys(r) == [b"a", b"b", b"c"]
    r = pair.both(lambda kv: kv.Range(R.RangeRequest(key=b"a", range_end=b"z", sort_order=99,
                                                     sort_target=R.RangeRequest.VALUE)))
    assert keys(r) == [b"a", b"b", b"c"]  # not sorted by value
    pair.both(lambda kv: kv.Range(R.RangeRequest(key=b"a", range_end=b"z", sort_order=-1)))
    r = pair.both(lambda kv: kv.Range(R.RangeRequest(key=b"a", range_end=b"z", sort_order=99,
                                                     limit=1)))
    assert (keys(r), r.more, r.count) == ([b"a"], True, 3)
    # Still serving afterwards.
    pair.get(b"a", b"z")


def test_delete_range_counts_and_prev_kvs(pair):
    fill(pair, [(b"d/1", b"a"), (b"d/2", b"b"), (b"d/3", b"c"), (b"e", b"d"), (b"f", b"e")])
    pair.put(b"d/2", b"bb")
    r = pair.delete(b"d/", b"d0", prev_kv=True)
    assert r.deleted == 3 and [kv.value for kv in r.prev_kvs] == [b"a", b"bb", b"c"]
    assert r.header.revision == 8
    r = pair.delete(b"d/", b"d0", prev_kv=True)  # nothing left: revision unchanged
    assert (r.deleted, r.header.revision) == (0, 8)
    r = pair.delete(b"e", b"\x00")
    assert r.deleted == 2
    pair.get(b"\x00", b"\x00", revision=8)
    pair.put(b"g", b"1")
    r = pair.delete(b"g", prev_kv=True)
    assert r.prev_kvs[0].create_revision == 10
    pair.delete(b"missing", prev_kv=True)
    pair.get(b"\x00", b"\x00")
