"""Revision encoding: byte order is revision order, round trips, and refuses garbage."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdlite.storage import revision as revision_module
from etcdlite.storage.errors import CorruptStore
from etcdlite.storage.revision import (
    MARKED_REV_BYTES_LEN,
    REV_BYTES_LEN,
    TOMBSTONE_MARK,
    Revision,
    decode,
    encode,
    encode_main,
)

U64 = 2**64 - 1
# Mostly small numbers (where neighbours and equal mains are likely), sometimes huge ones
# (where the big-endian layout, not the value range, decides the order).
ints = st.one_of(st.integers(0, 4), st.integers(0, 300), st.integers(0, U64))
revisions = st.builds(Revision, ints, ints)


def test_module_docstring_examples() -> None:
    result = doctest.testmod(revision_module)
    assert result.attempted > 0
    assert result.failed == 0


@given(revisions, st.booleans(), revisions, st.booleans())
def test_encoded_byte_order_is_revision_order(
    a: Revision, a_tomb: bool, b: Revision, b_tomb: bool
) -> None:
    ea, eb = encode(a, a_tomb), encode(b, b_tomb)
    if a == b:
        # A revision is written once: either as a put or as a tombstone, never both.
        if a_tomb == b_tomb:
            assert ea == eb
        return
    assert (ea < eb) == (a < b)
    assert (ea > eb) == (a > b)


@given(st.lists(st.tuples(revisions, st.booleans()), unique_by=lambda t: t[0], max_size=30))
def test_sorting_bytes_sorts_revisions(marked: list[tuple[Revision, bool]]) -> None:
    by_bytes = sorted(marked, key=lambda t: encode(t[0], t[1]))
    assert [r for r, _ in by_bytes] == sorted(r for r, _ in marked)


@given(revisions, st.booleans())
def test_round_trip(rev: Revision, tomb: bool) -> None:
    raw = encode(rev, tomb)
    assert len(raw) == (MARKED_REV_BYTES_LEN if tomb else REV_BYTES_LEN)
    if tomb:
        assert raw == encode(rev) + TOMBSTONE_MARK
    assert decode(raw) == (rev, tomb)
    got, _ = decode(raw)
    assert isinstance(got, Revision)


@given(ints, ints)
def test_encode_main_bounds_its_revisions(main: int, sub: int) -> None:
    lo = encode_main(main)
    assert lo == encode(Revision(main, 0))
    assert lo <= encode(Revision(main, sub)) < encode(Revision(main, sub), tombstone=True)
    if main > 0:
        assert encode(Revision(main - 1, sub), tombstone=True) < lo
    if main < U64:
        assert encode(Revision(main, sub), tombstone=True) < encode_main(main + 1)


@given(st.binary(max_size=40))
def test_decode_accepts_only_what_encode_produces(raw: bytes) -> None:
    try:
        rev, tomb = decode(raw)
    except CorruptStore:
        return
    assert encode(rev, tomb) == raw


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(encode(Revision(3, 1))[:-1], id="short"),
        pytest.param(encode(Revision(3, 1)) + b"tt", id="long"),
        pytest.param(encode(Revision(3, 1)) + b"x", id="bad-mark"),
        pytest.param(encode(Revision(3, 1)).replace(b"_", b"-"), id="bad-separator"),
        pytest.param(encode(Revision(3, 1), True).replace(b"_", b"-"), id="bad-separator-t"),
        pytest.param(b"scheduledCompactRev", id="meta-name"),
    ],
)
def test_malformed_bytes_raise_corrupt_store(raw: bytes) -> None:
    with pytest.raises(CorruptStore):
        decode(raw)
