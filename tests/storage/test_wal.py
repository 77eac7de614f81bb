"""Wal: the on-disk format, segments, torn tails, corruption, overwrites and release.

The helpers here read and write records with their own code (not the module's), so the
tests also pin the documented format.
"""

from __future__ import annotations

import os
import random
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etcdlite.storage.errors import CorruptStore
from etcdlite.storage.wal import (
    DEFAULT_SEGMENT_BYTES,
    CorruptWal,
    EntryType,
    Wal,
    WalContents,
    WalEntry,
    WalHardState,
    WalSnapshot,
    segment_name,
)

SMALL = 4096
META = b"member-1"
NORMAL = EntryType.NORMAL


def entry(index: int, term: int = 1, data: bytes = b"", type: int = NORMAL) -> WalEntry:
    return WalEntry(term=term, index=index, type=type, data=data)


def run(start: int, stop: int, term: int = 1, size: int = 0) -> list[WalEntry]:
    """Entries ``start..stop`` (inclusive) whose data says which they are."""
    return [entry(i, term, (b"%d:" % i).ljust(size, b"x")) for i in range(start, stop + 1)]


def frame(kind: int, payload: bytes) -> bytes:
    body = bytes([kind]) + payload
    return struct.pack(">II", len(body), zlib.crc32(body)) + body


def entry_frame(term: int, index: int, data: bytes = b"") -> bytes:
    return frame(2, struct.pack(">QQB", term, index, 0) + data)


def spans(path: Path) -> list[tuple[int, int, int]]:
    """``(offset, end, record type)`` of each record of a segment file."""
    data = path.read_bytes()
    found = []
    off = 0
    while off + 8 <= len(data):
        length, _ = struct.unpack_from(">II", data, off)
        if length == 0:
            break
        found.append((off, off + 8 + length, data[off + 8]))
        off += 8 + length
    return found


def records_end(path: Path) -> int:
    found = spans(path)
    return found[-1][1] if found else 0


def patch(path: Path, offset: int, raw: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(raw)


def flip(path: Path, offset: int) -> None:
    data = path.read_bytes()
    patch(path, offset, bytes([data[offset] ^ 0x40]))


def reopen(
    wal: Wal, dir: Path, segment_bytes: int = DEFAULT_SEGMENT_BYTES, fsync: bool = True
) -> tuple[Wal, WalContents]:
    wal.close()
    return Wal.open(dir, segment_bytes=segment_bytes, fsync=fsync)


def many_segments(dir: Path) -> Wal:
    """A WAL of entries 1..40 (~300 bytes each) spread over several 4 KiB segments."""
    wal = Wal.create(dir, META, segment_bytes=SMALL, fsync=False)
    for i in range(1, 41, 4):
        wal.save(run(i, i + 3, size=300), WalHardState(1, 1, i))
    assert len(wal.segments()) >= 3
    return wal


# ---------------------------------------------------------------------------- format


def test_the_file_holds_exactly_the_documented_bytes(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, b"m")
    wal.save([entry(1, term=2, data=b"hi")], WalHardState(term=2, vote=7, commit=1))
    wal.close()
    (path,) = wal.segments()
    assert path == d / "0000000000000000-0000000000000001.wal"
    expected = bytes.fromhex(
        "00000012 a2515508 01 0000000000000000 0000000000000001 6d"
        "00000014 08d62ca8 02 0000000000000002 0000000000000001 00 6869"
        "00000019 1b787544 03 0000000000000002 0000000000000007 0000000000000001"
    )
    data = path.read_bytes()
    assert data[: len(expected)] == expected
    assert data[len(expected) :] == bytes(len(data) - len(expected))
    assert expected == (
        frame(1, struct.pack(">QQ", 0, 1) + b"m")
        + entry_frame(2, 1, b"hi")
        + frame(3, struct.pack(">QQQ", 2, 7, 1))
    )


def test_segment_names() -> None:
    assert segment_name(3, 0xA41) == "0000000000000003-0000000000000a41.wal"


# ------------------------------------------------------------------------- round trip


def test_round_trip_and_appending_after_reopen(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    assert not Wal.exists(d)
    wal = Wal.create(d, META)
    assert Wal.exists(d)
    assert wal.last_index == 0
    wal.save(run(1, 3), WalHardState(1, 0, 0))
    wal.save([], WalHardState(1, 2, 2))
    wal.save([entry(4, 1, b"four", EntryType.CONF_CHANGE)])
    wal.save([])  # nothing to do
    assert wal.last_index == 4
    wal, contents = reopen(wal, d)
    assert contents == WalContents(
        metadata=META,
        hard_state=WalHardState(1, 2, 2),
        snapshot=None,
        entries=[*run(1, 3), entry(4, 1, b"four", EntryType.CONF_CHANGE)],
        torn_tail=None,
    )
    assert contents.entries[-1].type == EntryType.CONF_CHANGE
    assert wal.last_index == 4
    wal.save(run(5, 6, term=2), WalHardState(2, 1, 5))
    assert wal.last_index == 6
    wal, contents = reopen(wal, d)
    assert [e.index for e in contents.entries] == [1, 2, 3, 4, 5, 6]
    assert contents.entries[4:] == run(5, 6, term=2)
    assert contents.hard_state == WalHardState(2, 1, 5)
    wal.close()


def test_first_index_and_empty_wal(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, b"", first_index=100)
    assert wal.last_index == 99
    assert wal.segments() == [d / segment_name(0, 100)]
    wal, contents = reopen(wal, d)
    assert contents == WalContents(b"", None, None, [], None)
    assert wal.last_index == 99
    wal.save(run(100, 101))
    wal, contents = reopen(wal, d)
    assert contents.entries == run(100, 101)
    wal.close()


def test_fsync_false_gives_the_same_contents(tmp_path: Path) -> None:
    results = []
    for fsync in (True, False):
        d = tmp_path / f"fsync-{fsync}"
        wal = Wal.create(d, META, segment_bytes=SMALL, fsync=fsync)
        for i in range(1, 30, 3):
            wal.save(run(i, i + 2, size=200), WalHardState(1, 1, i))
        wal.save_snapshot(WalSnapshot(10, 1))
        wal.release_to(10)
        wal, contents = reopen(wal, d, segment_bytes=SMALL, fsync=fsync)
        wal.save(run(31, 31))
        wal, contents = reopen(wal, d, segment_bytes=SMALL, fsync=fsync)
        wal.close()
        results.append((contents, sorted(p.name for p in d.iterdir())))
    assert results[0] == results[1]


def test_create_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "stray").write_bytes(b"x")
    with pytest.raises(FileExistsError):
        Wal.create(tmp_path, META)
    d = tmp_path / "wal"
    Wal.create(d, META).close()
    with pytest.raises(FileExistsError):
        Wal.create(d, META)


def test_open_needs_a_segment(tmp_path: Path) -> None:
    assert not Wal.exists(tmp_path)
    with pytest.raises(FileNotFoundError):
        Wal.open(tmp_path)


def test_an_interrupted_cut_leaves_a_tmp_file_that_open_removes(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META)
    wal.save(run(1, 2))
    wal.close()
    leftover = d / (segment_name(1, 3) + ".tmp")
    leftover.write_bytes(b"half a header")
    wal, contents = Wal.open(d)
    assert not leftover.exists()
    assert contents.entries == run(1, 2)
    wal.close()


def test_writes_after_close_are_refused(tmp_path: Path) -> None:
    wal = Wal.create(tmp_path / "wal", META)
    wal.close()
    wal.close()
    with pytest.raises(ValueError, match="closed"):
        wal.save(run(1, 1))


def test_a_failed_sync_stops_further_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META)
    wal.save(run(1, 1))

    def failing_sync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("etcdlite.storage.wal._datasync", failing_sync)
    with pytest.raises(OSError, match="Input/output"):
        wal.save(run(2, 2))
    monkeypatch.undo()
    with pytest.raises(OSError, match="an earlier write failed"):
        wal.save(run(2, 2))
    with pytest.raises(OSError, match="an earlier write failed"):
        wal.save_snapshot(WalSnapshot(1, 1))
    wal, contents = reopen(wal, d)  # what reached the disk is read back as usual
    assert [e.index for e in contents.entries] in ([1], [1, 2])
    wal.close()


def test_save_refuses_gaps_and_holes_before_writing(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META, first_index=5)
    wal.save(run(5, 6))
    size_before = records_end(wal.segments()[0])
    with pytest.raises(ValueError, match="gap"):
        wal.save(run(8, 9))
    with pytest.raises(ValueError, match="contiguous"):
        wal.save([entry(7), entry(9)])
    with pytest.raises(ValueError, match="first index"):
        wal.save(run(4, 7))
    wal.save_snapshot(WalSnapshot(6, 1))
    with pytest.raises(ValueError, match="snapshot"):
        wal.save(run(6, 7))
    assert records_end(wal.segments()[0]) == size_before + len(frame(4, bytes(16)))
    assert wal.last_index == 6
    wal, contents = reopen(wal, d)
    assert contents.entries == run(5, 6)
    wal.close()


# --------------------------------------------------------------------------- segments


def test_segments_are_cut_at_segment_bytes(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META, segment_bytes=SMALL, fsync=False)
    for i in range(1, 61):
        wal.save(run(i, i, size=300), WalHardState(1, 1, i - 1))
    wal.save(run(61, 100, size=300))  # one save that fills several segments
    paths = wal.segments()
    assert len(paths) >= 8
    names = [re.fullmatch(r"([0-9a-f]{16})-([0-9a-f]{16})\.wal", p.name) for p in paths]
    assert all(names)
    assert [int(m[1], 16) for m in names if m] == list(range(len(paths)))
    expected_first = 1
    for path, match in zip(paths, names, strict=True):
        assert match is not None
        assert int(match[2], 16) == expected_first
        found = spans(path)
        assert found[0][2] == 1  # METADATA first
        end = found[-1][1]
        assert end <= SMALL
        assert path.stat().st_size in (SMALL, end)  # preallocated where supported
        indexes = [
            struct.unpack_from(">BQQ", path.read_bytes(), off + 8)[2]
            for off, _, kind in found
            if kind == 2
        ]
        assert indexes == list(range(expected_first, expected_first + len(indexes)))
        expected_first += len(indexes)
    assert expected_first == 101
    # the header of a later segment repeats the last hard state
    assert [kind for _, _, kind in spans(paths[1])][:2] == [1, 3]
    wal, contents = reopen(wal, d, segment_bytes=SMALL)
    assert contents.entries == run(1, 100, size=300)
    assert contents.hard_state == WalHardState(1, 1, 59)
    wal.close()


def test_a_record_bigger_than_a_segment_goes_alone_into_a_fresh_one(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META, segment_bytes=SMALL)
    wal.save(run(1, 2, size=100))
    big = entry(3, 1, os.urandom(3 * SMALL))
    wal.save([big, *run(4, 4)])
    wal.save(run(5, 5))
    paths = wal.segments()
    assert [p.name for p in paths] == [segment_name(0, 1), segment_name(1, 3), segment_name(2, 4)]
    assert [kind for _, _, kind in spans(paths[1])] == [1, 2]
    assert paths[1].stat().st_size >= 3 * SMALL
    wal, contents = reopen(wal, d, segment_bytes=SMALL)
    assert contents.entries == [*run(1, 2, size=100), big, *run(4, 5)]
    wal.save(run(6, 6))
    wal, contents = reopen(wal, d, segment_bytes=SMALL)
    assert [e.index for e in contents.entries] == [1, 2, 3, 4, 5, 6]
    wal.close()


# ------------------------------------------------------------------------- torn tails


def test_a_last_record_cut_short_is_a_torn_tail(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = many_segments(d)
    wal.save(run(41, 41, size=300))
    wal.close()
    last = wal.segments()[-1]
    off, _, kind = spans(last)[-1]
    assert kind == 2
    os.truncate(last, off + 100)
    wal, contents = Wal.open(d, segment_bytes=SMALL)
    assert contents.torn_tail is not None
    assert last.name in contents.torn_tail
    assert f"offset {off}" in contents.torn_tail
    assert contents.entries == run(1, 40, size=300)
    assert contents.hard_state == WalHardState(1, 1, 37)
    assert wal.last_index == 40
    assert last.read_bytes()[off:] == bytes(100)  # zeroed, size kept
    wal.save(run(41, 42, term=2), WalHardState(2, 1, 40))
    wal, contents = reopen(wal, d, segment_bytes=SMALL)
    assert contents.torn_tail is None
    assert contents.entries == run(1, 40, size=300) + run(41, 42, term=2)
    assert contents.hard_state == WalHardState(2, 1, 40)
    wal.close()


def test_a_header_cut_short_is_a_torn_tail(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META)
    wal.save(run(1, 3, size=50))
    wal.close()
    (path,) = wal.segments()
    off, _, _ = spans(path)[-1]
    patch(path, off, b"\xff\xff")  # a length whose high bytes are set
    os.truncate(path, off + 3)
    wal, contents = Wal.open(d)
    assert contents.torn_tail is not None and f"offset {off}" in contents.torn_tail
    assert contents.entries == run(1, 2, size=50)
    wal.close()


def test_a_last_record_with_a_zeroed_sector_is_a_torn_tail(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META)
    wal.save(run(1, 2, size=100), WalHardState(1, 1, 1))
    wal.save([entry(3, 1, os.urandom(2000))])
    wal.close()
    (path,) = wal.segments()
    off, end, _ = spans(path)[-1]
    patch(path, end - 600, bytes(600))  # the last sector of the write never made it
    wal, contents = Wal.open(d)
    assert contents.torn_tail is not None
    assert path.name in contents.torn_tail and f"offset {off}" in contents.torn_tail
    assert contents.entries == run(1, 2, size=100)
    assert contents.hard_state == WalHardState(1, 1, 1)
    wal.save(run(3, 3))
    wal, contents = reopen(wal, d)
    assert contents.entries == run(1, 3, size=100)[:2] + run(3, 3)
    assert contents.torn_tail is None
    wal.close()


def test_a_damaged_last_record_without_a_zero_sector_is_corruption(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META)
    wal.save(run(1, 3, size=20))
    wal.close()
    (path,) = wal.segments()
    off, end, _ = spans(path)[-1]
    flip(path, end - 1)
    with pytest.raises(CorruptWal, match=f"{re.escape(str(path))}: record at offset {off}: "):
        Wal.open(d)


# ------------------------------------------------------------------------- corruption


def test_a_flipped_byte_in_an_earlier_record_of_the_last_segment(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META)
    wal.save(run(1, 5, size=40))
    wal.close()
    (path,) = wal.segments()
    off, _, _ = spans(path)[2]
    flip(path, off + 30)
    with pytest.raises(CorruptWal) as info:
        Wal.open(d)
    assert str(info.value) == f"wal: {path}: record at offset {off}: checksum mismatch"
    assert isinstance(info.value, CorruptStore)


@pytest.mark.parametrize("length", [1 << 30, "to the zeros"])
def test_a_damaged_length_in_the_last_segment_is_not_a_torn_tail(
    tmp_path: Path, length: int | str
) -> None:
    """A bit flip in a middle record's length makes it run past the end of the file (or
    swallow the later records and some zeros): it looks torn, but the intact records
    after it were synced, so dropping them would lose acknowledged entries."""
    d = tmp_path / "wal"
    wal = Wal.create(d, META, segment_bytes=SMALL)
    wal.save(run(1, 5, size=40))
    wal.close()
    (path,) = wal.segments()
    off, _, _ = spans(path)[2]
    new_length = length if isinstance(length, int) else SMALL - off - 8 - 100
    patch(path, off, struct.pack(">I", new_length))
    with pytest.raises(CorruptWal, match=f"record at offset {off}"):
        Wal.open(d)


@pytest.mark.parametrize("damage", ["middle", "last", "last zeroed"])
def test_a_damaged_record_in_a_non_last_segment(tmp_path: Path, damage: str) -> None:
    d = tmp_path / "wal"
    wal = many_segments(d)
    wal.close()
    path = wal.segments()[1]
    found = spans(path)
    off, end, _ = found[len(found) // 2] if damage == "middle" else found[-1]
    if damage == "last zeroed":  # what would be a torn tail in the last segment
        patch(path, off + 20, bytes(end - off - 20))
    else:
        flip(path, end - 1)
    with pytest.raises(CorruptWal) as info:
        Wal.open(d, segment_bytes=SMALL)
    assert path.name in str(info.value)
    assert f"record at offset {off}: checksum mismatch" in str(info.value)


def test_a_record_running_past_a_non_last_segment_is_corruption(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = many_segments(d)
    wal.close()
    path = wal.segments()[0]
    off, _, _ = spans(path)[-1]
    os.truncate(path, off + 20)
    with pytest.raises(CorruptWal, match=f"{path.name}: record at offset {off}: length"):
        Wal.open(d, segment_bytes=SMALL)


def test_a_missing_middle_segment(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = many_segments(d)
    wal.close()
    wal.segments()[1].unlink()
    with pytest.raises(CorruptWal, match=r"segment 0000000000000001-\*\.wal is missing"):
        Wal.open(d, segment_bytes=SMALL)


def append_raw(dir: Path, raw: bytes) -> tuple[Path, int]:
    """Writes ``raw`` after the last record of the last segment; returns where."""
    path = sorted(dir.glob("*.wal"))[-1]
    at = records_end(path)
    patch(path, at, raw)
    return path, at


def test_a_gap_in_indexes(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META)
    wal.save(run(1, 3))
    wal.close()
    path, at = append_raw(d, entry_frame(1, 5) + entry_frame(1, 6))
    with pytest.raises(CorruptWal, match=f"{path.name}: record at offset {at}: .*gap after 3"):
        Wal.open(d)


def test_an_index_below_the_first_index(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META, first_index=10)
    wal.save(run(10, 12))
    wal.close()
    _, at = append_raw(d, entry_frame(2, 9) + entry_frame(2, 10))
    with pytest.raises(CorruptWal, match=f"offset {at}: entry index 9 is below the first index"):
        Wal.open(d)


def test_an_unknown_record_type(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META)
    wal.save(run(1, 1))
    wal.close()
    _, at = append_raw(d, frame(9, b"?") + entry_frame(1, 2))
    with pytest.raises(CorruptWal, match=f"offset {at}: unknown record type 9"):
        Wal.open(d)


def test_garbage_after_the_end_of_records(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META)
    wal.save(run(1, 1))
    wal.close()
    path, at = append_raw(d, bytes(8) + b"junk")
    with pytest.raises(CorruptWal, match=f"{path.name}: non-zero bytes .* at offset {at}"):
        Wal.open(d)


def test_a_segment_whose_name_disagrees_with_its_metadata(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = many_segments(d)
    wal.close()
    path = wal.segments()[1]
    renamed = path.with_name(segment_name(1, 7))
    path.rename(renamed)
    with pytest.raises(CorruptWal, match=f"{renamed.name}: record at offset 0: METADATA says"):
        Wal.open(d, segment_bytes=SMALL)


def test_a_segment_whose_first_index_does_not_follow(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = many_segments(d)
    wal.close()
    path = wal.segments()[1]
    seq, first = (int(part, 16) for part in path.stem.split("-"))
    header = frame(1, struct.pack(">QQ", seq, first + 1) + META)
    patch(path, 0, header)
    renamed = path.with_name(segment_name(seq, first + 1))
    path.rename(renamed)
    with pytest.raises(CorruptWal, match=f"{renamed.name}: .*does not follow last index"):
        Wal.open(d, segment_bytes=SMALL)


def test_metadata_must_agree_across_segments(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = many_segments(d)
    wal.close()
    path = wal.segments()[2]
    seq, first = (int(part, 16) for part in path.stem.split("-"))
    patch(path, 0, frame(1, struct.pack(">QQ", seq, first) + META.upper()))
    with pytest.raises(CorruptWal, match=f"{path.name}: .*metadata differs"):
        Wal.open(d, segment_bytes=SMALL)


def test_a_segment_must_start_with_metadata(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META)
    wal.close()
    (path,) = wal.segments()
    os.truncate(path, 0)
    with pytest.raises(CorruptWal, match="offset 0: no METADATA record"):
        Wal.open(d)
    patch(path, 0, entry_frame(1, 1))
    with pytest.raises(CorruptWal, match="offset 0: the first record is of type 2"):
        Wal.open(d)


# -------------------------------------------------------------------------- overwrites


def test_an_overwrite_drops_the_tail(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META, first_index=5)
    wal.save(run(5, 7), WalHardState(1, 1, 5))
    wal.save([entry(6, 2, b"new six")], WalHardState(2, 2, 5))
    assert wal.last_index == 6
    wal, contents = reopen(wal, d)
    assert contents.entries == [*run(5, 5), entry(6, 2, b"new six")]
    assert wal.last_index == 6
    wal.save(run(7, 8, term=2))
    wal, contents = reopen(wal, d)
    assert contents.entries == [*run(5, 5), entry(6, 2, b"new six"), *run(7, 8, term=2)]
    assert contents.hard_state == WalHardState(2, 2, 5)
    wal.close()


def test_an_overwrite_reaching_into_an_earlier_segment(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = many_segments(d)
    first_of_last = int(wal.segments()[-1].stem.split("-")[1], 16)
    back = first_of_last - 3
    wal.save(run(back, back + 1, term=5, size=10))
    wal.save(run(back + 2, back + 30, term=5, size=300))  # cuts after the overwrite
    wal, contents = reopen(wal, d, segment_bytes=SMALL)
    assert contents.entries == run(1, back - 1, size=300) + run(back, back + 1, term=5, size=10) + (
        run(back + 2, back + 30, term=5, size=300)
    )
    wal.close()


def test_a_snapshot_beyond_the_log_restarts_it(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META)
    wal.save(run(1, 3))
    wal.save_snapshot(WalSnapshot(10, 4))
    assert wal.last_index == 10
    with pytest.raises(ValueError, match="gap"):
        wal.save(run(12, 12))
    wal.save(run(11, 12, term=4), WalHardState(4, 1, 10))
    wal, contents = reopen(wal, d)
    assert contents.snapshot == WalSnapshot(10, 4)
    assert contents.entries == run(11, 12, term=4)
    assert wal.last_index == 12
    wal.close()


# ---------------------------------------------------------------------------- release


def test_release_after_a_snapshot(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = many_segments(d)
    paths = wal.segments()
    firsts = [int(p.stem.split("-")[1], 16) for p in paths]
    snap_index = firsts[2] + 1
    wal.save_snapshot(WalSnapshot(snap_index, 1))
    deleted = wal.release_to(snap_index)
    assert deleted == paths[:2]
    assert not any(p.exists() for p in deleted)
    assert wal.segments() == paths[2:]
    assert wal.release_to(snap_index) == []
    assert wal.release_to(10**9) == paths[2:-1]  # never the last one
    assert wal.segments() == [paths[-1]]
    wal, contents = reopen(wal, d, segment_bytes=SMALL)
    assert contents.snapshot == WalSnapshot(snap_index, 1)
    assert contents.hard_state == WalHardState(1, 1, 37)
    assert contents.entries == run(firsts[-1], 40, size=300)
    wal.save(run(41, 41), WalHardState(1, 1, 41))
    wal, contents = reopen(wal, d, segment_bytes=SMALL)
    assert contents.entries == run(firsts[-1], 40, size=300) + run(41, 41)
    wal.close()


def test_release_keeps_a_segment_with_entries_above_the_index(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = many_segments(d)
    paths = wal.segments()
    second_first = int(paths[1].stem.split("-")[1], 16)
    assert wal.release_to(second_first - 2) == []
    assert wal.release_to(second_first - 1) == paths[:1]
    wal.close()


def test_hard_state_and_snapshot_survive_releasing_their_segments(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META, segment_bytes=SMALL, fsync=False)
    wal.save(run(1, 1), WalHardState(3, 2, 1))
    wal.save_snapshot(WalSnapshot(1, 1))
    for i in range(2, 40):
        wal.save(run(i, i, size=300))
    assert wal.release_to(30) != []
    wal, contents = reopen(wal, d, segment_bytes=SMALL)
    assert contents.hard_state == WalHardState(3, 2, 1)
    assert contents.snapshot == WalSnapshot(1, 1)
    wal.close()


def test_disk_stays_bounded_when_releasing(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    wal = Wal.create(d, META, segment_bytes=SMALL, fsync=False)
    most = 0
    for round_ in range(300):
        first = wal.last_index + 1
        wal.save(run(first, first + 2, term=1, size=250), WalHardState(1, 1, first + 2))
        wal.save_snapshot(WalSnapshot(wal.last_index, 1))
        wal.release_to(wal.last_index)
        files = list(d.iterdir())
        assert len(files) == len(wal.segments())
        most = max(most, len(files))
        if round_ == 150:
            wal, contents = reopen(wal, d, segment_bytes=SMALL, fsync=False)
            assert contents.snapshot == WalSnapshot(wal.last_index, 1)
    assert most <= 2
    assert int(wal.segments()[-1].name[:16], 16) > 20  # many segments were cut and released
    wal, contents = reopen(wal, d, segment_bytes=SMALL, fsync=False)
    assert contents.entries[-1].index == 900
    assert contents.snapshot == WalSnapshot(900, 1)
    wal.close()


# ----------------------------------------------------------------------------- property


def model(records: list[object], first_index: int = 1) -> tuple[WalContents, int]:
    """What a WAL holding ``records`` must read back, and its last index."""
    log: dict[int, WalEntry] = {}
    last = first_index - 1
    contents = WalContents(META, None, None, [], None)
    for record in records:
        if isinstance(record, WalEntry):
            for index in [i for i in log if i >= record.index]:
                del log[index]
            log[record.index] = record
            last = record.index
        elif isinstance(record, WalHardState):
            contents.hard_state = record
        elif isinstance(record, WalSnapshot):
            contents.snapshot = record
            if record.index > last:
                log.clear()
                last = record.index
    contents.entries = [log[i] for i in sorted(log)]
    return contents, last


def tear(dir: Path, zero_fill: bool, where: float) -> bool:
    """Damages the last record of the last segment as a crash mid-write would.

    Only a record written by a save qualifies (one at or after an ENTRY record in the same
    file), never a segment's header. Returns whether a record was damaged.
    """
    path = sorted(dir.glob("*.wal"))[-1]
    found = spans(path)
    kinds = [kind for _, _, kind in found]
    if 2 not in kinds:
        return False
    off, end, _ = found[-1]
    body = off + 8
    if zero_fill:
        last_sector = max(body, (end - 1) // 512 * 512)
        start = body + int(where * (last_sector - body))
        if path.read_bytes()[start:end].count(0) == end - start:
            start = body  # those bytes were zeros already: lose the whole body
        patch(path, start, bytes(end - start))
    else:
        os.truncate(path, off + int(where * (end - off - 1)))
    return True


@dataclass(frozen=True)
class Save:
    count: int
    back: int  # how far before last_index + 1 the entries start (an overwrite if > 0)
    with_state: bool
    size: int  # of each entry's data
    seed: int


@dataclass(frozen=True)
class Snap:
    delta: int  # the marker's index relative to last_index


@dataclass(frozen=True)
class Reopen:
    pass


@dataclass(frozen=True)
class Tear:
    zero_fill: bool
    where: float


Op = Save | Snap | Reopen | Tear
SEGMENT = 512  # small enough that records often span or overflow segments

operations = st.lists(
    st.one_of(
        st.builds(
            Save,
            st.integers(0, 4),
            st.integers(0, 3),
            st.booleans(),
            st.integers(0, 700),
            st.integers(0, 2**32),
        ),
        st.builds(Snap, st.integers(-3, 2)),
        st.just(Reopen()),
        st.builds(Tear, st.booleans(), st.floats(0, 1)),
    ),
    max_size=40,
)


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_saves_reopens_and_torn_tails_read_back_what_was_saved(
    tmp_path_factory: pytest.TempPathFactory, ops: list[Op]
) -> None:
    d = tmp_path_factory.mktemp("wal") / "wal"
    wal = Wal.create(d, META, segment_bytes=SEGMENT, fsync=False)
    written: list[object] = []
    term = 1

    def check() -> None:
        nonlocal wal
        wal, contents = Wal.open(d, segment_bytes=SEGMENT, fsync=False)
        expected, last = model(written)
        contents.torn_tail = None
        assert contents == expected
        assert wal.last_index == last

    for op in ops:
        state, last = model(written)
        floor = state.snapshot.index + 1 if state.snapshot else 1
        if isinstance(op, Save):
            start = max(floor, last + 1 - op.back)
            term += 1 if start <= last else 0
            data = random.Random(op.seed).randbytes(op.size)
            batch = [entry(start + i, term, data[i:]) for i in range(op.count)]
            hard_state = WalHardState(term, 1, max(0, start - 1)) if op.with_state else None
            wal.save(batch, hard_state)
            written.extend(batch)
            if hard_state is not None:
                written.append(hard_state)
        elif isinstance(op, Snap):
            index = max(state.snapshot.index if state.snapshot else 0, last + op.delta)
            marker = WalSnapshot(index, term)
            wal.save_snapshot(marker)
            written.append(marker)
        elif isinstance(op, Reopen):
            wal.close()
            check()
        else:
            wal.close()
            if tear(d, op.zero_fill, op.where):
                written.pop()
            check()
    wal.close()
    check()
    wal.close()
