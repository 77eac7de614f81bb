"""LmdbBackend: batches commit or abort as a whole, meta integers, reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from etcdlite.storage.backend import TABLES, LmdbBackend, pack_int, unpack_int
from etcdlite.storage.errors import CorruptStore

MAP_SIZE = 1 << 26


@pytest.mark.parametrize("value", [-(2**63), -1, 0, 1, 2**63 - 1])
def test_pack_int_round_trip_and_order(value: int) -> None:
    raw = pack_int(value)
    assert len(raw) == 8
    assert unpack_int(raw) == value


@pytest.mark.parametrize("raw", [b"", b"\x00" * 7, b"\x00" * 9])
def test_unpack_int_refuses_bad_lengths(raw: bytes) -> None:
    with pytest.raises(CorruptStore):
        unpack_int(raw)


def test_batch_commits_and_survives_reopen(tmp_path: Path) -> None:
    b = LmdbBackend(tmp_path, sync=False, map_size=MAP_SIZE)
    assert b.get_meta_int(b"x", -1) == -1
    with b.batch() as txn:
        assert b.write_txn is txn
        b.put_meta_int(txn, b"x", 42)
        txn.put(b"k", b"v", db=b.db(b"key"))
        # reads inside the batch see the batch's writes
        assert b.read() is txn
        assert b.get_meta(b"x", txn) == pack_int(42)
    assert b.write_txn is None
    assert b.size() > 0
    assert b.size_in_use() > 0
    b.close()
    b = LmdbBackend(tmp_path, sync=False, map_size=MAP_SIZE)
    assert b.get_meta_int(b"x", -1) == 42
    with b.env.begin() as t:
        assert t.get(b"k", db=b.db(b"key")) == b"v"
    assert {name for name in TABLES} <= set(b._dbs)
    b.close()


def test_batch_aborts_on_exception(tmp_path: Path) -> None:
    b = LmdbBackend(tmp_path, sync=False, map_size=MAP_SIZE)
    with pytest.raises(RuntimeError), b.batch() as txn:
        b.put_meta_int(txn, b"x", 1)
        raise RuntimeError("boom")
    assert b.write_txn is None
    assert b.get_meta(b"x") is None
    # the backend is usable afterwards
    with b.batch() as txn:
        b.put_meta_int(txn, b"x", 2)
    assert b.get_meta_int(b"x", 0) == 2
    b.close()


def test_nested_batch_is_refused(tmp_path: Path) -> None:
    b = LmdbBackend(tmp_path, sync=False, map_size=MAP_SIZE)
    with b.batch() as txn:
        b.put_meta_int(txn, b"x", 1)
        with pytest.raises(AssertionError), b.batch():
            pass
    # the outer batch still committed
    assert b.get_meta_int(b"x", 0) == 1
    b.close()


def test_malformed_meta_integer_is_corruption(tmp_path: Path) -> None:
    b = LmdbBackend(tmp_path, sync=False, map_size=MAP_SIZE)
    with b.batch() as txn:
        txn.put(b"x", b"abc", db=b.db(b"meta"))
    with pytest.raises(CorruptStore):
        b.get_meta_int(b"x", 0)
    b.close()


def test_unopenable_path_is_corruption(tmp_path: Path) -> None:
    # A data.mdb that is not an LMDB file.
    (tmp_path / "data.mdb").write_bytes(b"not an lmdb file" * 512)
    with pytest.raises(CorruptStore):
        LmdbBackend(tmp_path, sync=False, map_size=MAP_SIZE)
