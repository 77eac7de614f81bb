"""The write-ahead log of one member: raft entries, hard states and snapshot markers.

A WAL is a directory of *segments*. ``save`` appends records to the last segment and
syncs once; when the last segment cannot hold a save's records a new one is *cut*.
``release_to`` deletes whole segments once a snapshot covers them, so disk use stays
bounded. ``open`` replays every segment, repairs a torn tail and returns what was saved.
The WAL is used from one thread at a time and does no locking.

Segment files
-------------

``{seq:016x}-{first_index:016x}.wal`` (lower-case hex). ``seq`` starts at 0 and the
retained segments' sequence numbers are contiguous; ``first_index`` is the index of the
first entry that can follow in that segment: the WAL's first index for segment 0, the
last entry index written so far plus one for every later one. A new segment is built as
``<name>.tmp`` (preallocated to ``segment_bytes`` with ``posix_fallocate`` where the file
system supports it and ``fsync`` is on, header records written and fsynced) and then
renamed into place, so a visible segment always starts with a complete header; a
leftover ``.tmp`` is removed by ``open``. The unused tail of a segment is zeros.

Records
-------

Every record is::

    u32 length L of (type byte + payload) | u32 CRC32 of (type byte + payload)
    | u8 record type | payload                                      (big-endian)

A zero header (``L == 0``) ends the records of a segment; from there to the end of the
file every byte is zero. The record types and payloads:

=====  ===========  =====================================================================
type   name         payload
=====  ===========  =====================================================================
1      METADATA     u64 seq, u64 first_index, the caller's metadata bytes
2      ENTRY        u64 term, u64 index, u8 entry type, the entry's data
3      HARDSTATE    u64 term, u64 vote, u64 commit
4      SNAPSHOT     u64 index, u64 term
=====  ===========  =====================================================================

Invariants a reader checks (anything else is :class:`CorruptWal`):

* every segment starts with one METADATA record whose seq and first_index equal the file
  name's and whose metadata bytes equal the first segment's; no METADATA record follows;
* a segment's first_index is the last entry index of the segments before it plus one
  (for the first retained segment: whatever it says);
* *header records*: a new segment repeats, right after its METADATA, the last HARDSTATE
  and the last SNAPSHOT marker written before it, so releasing old segments never loses
  them;
* an ENTRY's index is at most the last index plus one (no gaps). An index at or below the
  last one replaces that entry and drops every entry after it (a new leader overwrote an
  uncommitted tail). While segment 0 is retained no entry may go below the WAL's first
  index; once it is released an overwrite may reach below the first retained segment's
  first_index (the entries it replaces were released, the overwrite was not);
* a SNAPSHOT marker beyond the last index means raft restored a snapshot newer than its
  log: the entries before it are dropped and the log goes on from the marker's index;
* saves write their ENTRY records before their HARDSTATE, so a torn tail can lose a
  commit index but never leave one pointing past the last entry that survived.

Worked example: ``Wal.create(d, b"m")`` then ``save([WalEntry(2, 1, 0, b"hi")],
WalHardState(term=2, vote=7, commit=1))`` leaves ``d/0000000000000000-0000000000000001.wal``
holding (hex, offsets in decimal)::

    0   00000012 a2515508 01 0000000000000000 0000000000000001 6d     METADATA seq 0 first 1
    26  00000014 08d62ca8 02 0000000000000002 0000000000000001 00 6869  ENTRY t2 i1 "hi"
    54  00000019 1b787544 03 0000000000000002 0000000000000007 0000000000000001  HARDSTATE
    87  00000000 00000000 00 ...                                   end of records, zeros

(``0x12 == 18 == 1 + 8 + 8 + len(b"m")``; ``0xa2515508 == zlib.crc32(bytes.fromhex(
"01" "0000000000000000" "0000000000000001" "6d"))``.)

Torn tails
----------

A crash during a save can leave its last record half written. On ``open`` such a record
in the *last* segment is a torn tail, not corruption, when its declared length runs past
the end of the file, or when its checksum fails, every byte after it is zero, and one of
its 512-byte sectors (its bytes between two multiples of 512 in the file) is all zeros
-- and in both cases no intact record lies beyond its start (else its own header is
what is damaged, and later records would be lost: that is corruption). The record is
zeroed (the file keeps its size), the fix is synced, ``WalContents.torn_tail`` says
where, and appending resumes at that offset. Only the last segment can be torn: the
previous one is synced before a new segment becomes visible.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from etcdlite.storage.errors import CorruptStore

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
SECTOR_BYTES = 512
"""The unit a disk writes atomically; a torn write loses whole sectors."""

METADATA_RECORD = 1
ENTRY_RECORD = 2
HARDSTATE_RECORD = 3
SNAPSHOT_RECORD = 4

_HEADER = struct.Struct(">II")  # L, crc32 of the L bytes that follow
_METADATA = struct.Struct(">BQQ")  # record type, seq, first_index (metadata bytes follow)
_ENTRY = struct.Struct(">BQQB")  # record type, term, index, entry type (data follows)
_HARDSTATE = struct.Struct(">BQQQ")  # record type, term, vote, commit
_SNAPSHOT = struct.Struct(">BQQ")  # record type, index, term
_SEGMENT_NAME = re.compile(r"([0-9a-f]{16})-([0-9a-f]{16})\.wal")
_TMP_SUFFIX = ".tmp"
_FALLOCATE_UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS})
_datasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


class CorruptWal(CorruptStore):
    """The WAL on disk is not what this code wrote (and not a torn tail): stop the member.

    The message names the file and, for a bad record, its offset, e.g.
    ``"wal: /data/wal/0000000000000003-0000000000000a41.wal: record at offset 1234:
    checksum mismatch"``.
    """


class EntryType(IntEnum):
    """The kind of a raft log entry (the values of raft's ``EntryType``)."""

    NORMAL = 0
    CONF_CHANGE = 1


@dataclass(frozen=True, slots=True)
class WalEntry:
    """A raft log entry as the WAL stores it: exactly raft's fields.

    ``term`` and ``index`` are u64, ``type`` a u8 (an :class:`EntryType` value), ``data``
    opaque bytes. Example: ``WalEntry(term=2, index=1, type=EntryType.NORMAL, data=b"hi")``.
    """

    term: int
    index: int
    type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class WalHardState:
    """Raft's hard state: current term, vote in that term (0 for none), commit index."""

    term: int
    vote: int
    commit: int


@dataclass(frozen=True, slots=True)
class WalSnapshot:
    """A snapshot marker: every entry up to ``index`` (of ``term``) lives in the backend."""

    index: int
    term: int


@dataclass(slots=True)
class WalContents:
    """What ``Wal.open`` read back.

    ``entries`` are contiguous and in index order (overwrite semantics already applied);
    ``hard_state`` and ``snapshot`` are the last of each written, ``None`` if none was;
    ``torn_tail`` is a message for the caller to log when a torn tail was repaired.
    """

    metadata: bytes
    hard_state: WalHardState | None
    snapshot: WalSnapshot | None
    entries: list[WalEntry]
    torn_tail: str | None


@dataclass(frozen=True, slots=True)
class _Segment:
    seq: int
    first_index: int
    path: Path


def segment_name(seq: int, first_index: int) -> str:
    """The file name of a segment, e.g. ``segment_name(3, 0xa41)`` is
    ``"0000000000000003-0000000000000a41.wal"``."""
    return f"{seq:016x}-{first_index:016x}.wal"


def _frame(body: bytes) -> bytes:
    return _HEADER.pack(len(body), zlib.crc32(body)) + body


def _entry_record(entry: WalEntry) -> bytes:
    head = _ENTRY.pack(ENTRY_RECORD, entry.term, entry.index, entry.type)
    data = entry.data
    crc = zlib.crc32(data, zlib.crc32(head))
    return b"".join((_HEADER.pack(len(head) + len(data), crc), head, data))


def _hard_state_record(state: WalHardState) -> bytes:
    return _frame(_HARDSTATE.pack(HARDSTATE_RECORD, state.term, state.vote, state.commit))


def _snapshot_record(snap: WalSnapshot) -> bytes:
    return _frame(_SNAPSHOT.pack(SNAPSHOT_RECORD, snap.index, snap.term))


def _metadata_record(seq: int, first_index: int, metadata: bytes) -> bytes:
    return _frame(_METADATA.pack(METADATA_RECORD, seq, first_index) + metadata)


def _all_zero(data: bytes, start: int, end: int) -> bool:
    return data.count(0, start, end) == end - start


def _has_zero_sector(data: bytes, start: int, end: int) -> bool:
    """Whether some sector's share of ``data[start:end]`` is all zeros (a lost sector)."""
    pos = start
    while pos < end:
        stop = min(end, (pos // SECTOR_BYTES + 1) * SECTOR_BYTES)
        if _all_zero(data, pos, stop):
            return True
        pos = stop
    return False


def _record_within(data: bytes, start: int, stop: int) -> bool:
    """Whether a whole, checksummed ENTRY/HARDSTATE/SNAPSHOT record starts somewhere in
    ``data[start:stop]`` and ends by ``stop``.

    A torn write is the last thing in a segment: if an intact record lies beyond the
    record that looks torn, that record's header is damaged (say a flipped bit in its
    length swallowed the records after it) and the segment is corrupt, not torn.
    """
    types = (ENTRY_RECORD, HARDSTATE_RECORD, SNAPSHOT_RECORD)
    for pos in range(start, stop - _HEADER.size):
        if data[pos + _HEADER.size] not in types:
            continue
        length, crc = _HEADER.unpack_from(data, pos)
        body = pos + _HEADER.size
        if 0 < length <= stop - body and zlib.crc32(data[body:body + length]) == crc:
            return True
    return False


def _pwrite_all(fd: int, buf: bytes, offset: int) -> None:
    view = memoryview(buf)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _preallocate(fd: int, size: int) -> None:
    allocate = getattr(os, "posix_fallocate", None)
    if allocate is None:
        return
    try:
        allocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in _FALLOCATE_UNSUPPORTED:
            raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _list_segments(dir: Path) -> list[_Segment]:
    """The segment files of ``dir`` in seq order; CorruptWal unless the seqs are contiguous."""
    found: list[_Segment] = []
    for path in dir.iterdir():
        match = _SEGMENT_NAME.fullmatch(path.name)
        if match:
            found.append(_Segment(int(match[1], 16), int(match[2], 16), path))
    found.sort(key=lambda seg: seg.seq)
    for prev, cur in itertools.pairwise(found):
        if cur.seq == prev.seq:
            raise CorruptWal(f"wal: {dir}: {prev.path.name} and {cur.path.name} share a seq")
        if cur.seq != prev.seq + 1:
            raise CorruptWal(
                f"wal: {dir}: segment {prev.seq + 1:016x}-*.wal is missing "
                f"(between {prev.path.name} and {cur.path.name})"
            )
    return found


def _remove_leftovers(dir: Path) -> None:
    """Deletes the ``.tmp`` segments of cuts that a crash interrupted."""
    for path in dir.iterdir():
        if path.name.endswith(_TMP_SUFFIX) and _SEGMENT_NAME.fullmatch(
            path.name[: -len(_TMP_SUFFIX)]
        ):
            path.unlink()


@dataclass(slots=True)
class _Replay:
    """The log as the records read so far describe it.

    Invariant: ``entries`` are contiguous, and when non-empty ``last`` is the index of
    ``entries[-1]``. ``floor`` is the lowest index an entry may have (the WAL's first index
    while segment 0 is retained, else ``None``).
    """

    last: int
    floor: int | None
    entries: list[WalEntry]
    hard_state: WalHardState | None = None
    snapshot: WalSnapshot | None = None

    def add_entry(self, entry: WalEntry) -> str | None:
        """Applies one ENTRY record; returns what is wrong with it, if anything."""
        index = entry.index
        if index > self.last + 1:
            return f"entry index {index} leaves a gap after {self.last}"
        if self.floor is not None and index < self.floor:
            return f"entry index {index} is below the first index {self.floor}"
        entries = self.entries
        if entries and index <= self.last:
            keep = index - entries[0].index
            if keep > 0:
                del entries[keep:]
            else:
                entries.clear()
        entries.append(entry)
        self.last = index
        return None

    def add_snapshot(self, snap: WalSnapshot) -> None:
        self.snapshot = snap
        if snap.index > self.last:
            self.entries.clear()
            self.last = snap.index


@dataclass(slots=True)
class _Scan:
    """Where the records of one segment end, and the torn record if there was one."""

    end: int
    torn_end: int | None = None  # set: data[end:torn_end] is a torn record to zero


def _scan_segment(
    seg: _Segment, data: bytes, replay: _Replay, metadata: bytes | None, *, is_last: bool
) -> tuple[bytes, _Scan]:
    """Verifies one segment's records and applies them to ``replay``.

    Returns the segment's metadata bytes and where its records end. ``metadata`` is the
    first segment's (``None`` while reading the first segment). Raises CorruptWal.
    """
    size = len(data)
    view = memoryview(data)
    seg_metadata: bytes | None = None

    def corrupt(at: int, what: str) -> CorruptWal:
        return CorruptWal(f"wal: {seg.path}: record at offset {at}: {what}")

    def finish(scan: _Scan) -> tuple[bytes, _Scan]:
        if seg_metadata is None:
            raise corrupt(0, "no METADATA record")
        return seg_metadata, scan

    off = 0
    while True:
        if size - off < _HEADER.size:
            if _all_zero(data, off, size):
                return finish(_Scan(off))
            if is_last:
                return finish(_Scan(off, size))
            raise corrupt(off, "header cut short by the end of the file")
        length, crc = _HEADER.unpack_from(data, off)
        if length == 0:
            if not _all_zero(data, off, size):
                raise CorruptWal(
                    f"wal: {seg.path}: non-zero bytes after the end of records at offset {off}"
                )
            return finish(_Scan(off))
        start = off + _HEADER.size
        end = start + length
        if end > size:
            if is_last and not _record_within(data, off + 1, len(data.rstrip(b"\0"))):
                return finish(_Scan(off, size))
            raise corrupt(off, f"length {length} runs past the end of the file ({size} bytes)")
        if zlib.crc32(view[start:end]) != crc:
            if (is_last and _all_zero(data, end, size) and _has_zero_sector(data, start, end)
                    and not _record_within(data, off + 1, end)):
                return finish(_Scan(off, end))
            raise corrupt(off, "checksum mismatch")
        kind = data[start]
        if off == 0:
            if kind != METADATA_RECORD:
                raise corrupt(off, f"the first record is of type {kind}, not METADATA")
            if length < _METADATA.size:
                raise corrupt(off, f"METADATA record of {length} bytes is too short")
            _, seq, first_index = _METADATA.unpack_from(data, start)
            if (seq, first_index) != (seg.seq, seg.first_index):
                raise corrupt(
                    off, f"METADATA says seq {seq} first index {first_index}, the name differs"
                )
            seg_metadata = bytes(view[start + _METADATA.size : end])
            if metadata is not None and seg_metadata != metadata:
                raise corrupt(off, "metadata differs from the first segment's")
            if metadata is None:
                replay.last = first_index - 1
                replay.floor = first_index if seq == 0 else None
            elif first_index != replay.last + 1:
                raise corrupt(
                    off, f"first index {first_index} does not follow last index {replay.last}"
                )
        elif kind == ENTRY_RECORD:
            if length < _ENTRY.size:
                raise corrupt(off, f"ENTRY record of {length} bytes is too short")
            _, term, index, entry_type = _ENTRY.unpack_from(data, start)
            problem = replay.add_entry(
                WalEntry(term, index, entry_type, bytes(view[start + _ENTRY.size : end]))
            )
            if problem is not None:
                raise corrupt(off, problem)
        elif kind == HARDSTATE_RECORD:
            if length != _HARDSTATE.size:
                raise corrupt(off, f"HARDSTATE record of {length} bytes")
            _, term, vote, commit = _HARDSTATE.unpack_from(data, start)
            replay.hard_state = WalHardState(term, vote, commit)
        elif kind == SNAPSHOT_RECORD:
            if length != _SNAPSHOT.size:
                raise corrupt(off, f"SNAPSHOT record of {length} bytes")
            _, index, term = _SNAPSHOT.unpack_from(data, start)
            replay.add_snapshot(WalSnapshot(index, term))
        elif kind == METADATA_RECORD:
            raise corrupt(off, "METADATA record after the start of the segment")
        else:
            raise corrupt(off, f"unknown record type {kind}")
        off = end


class Wal:
    """An open WAL: appends go to the last segment at ``self._offset``.

    Invariants: ``self._segments`` are the retained segments in seq order (contiguous);
    ``self._fd`` is the last one's, open for writing; bytes from ``self._offset`` to the
    end of that file are zeros; ``last_index`` is the index of the last entry written (or
    of a snapshot marker beyond it), ``first_index - 1`` before any. After a failed write or
    sync the WAL refuses further writes: the disk state is unknown until it is reopened.

    Example::

        wal = Wal.create(path, b"member 1")
        wal.save([WalEntry(1, 1, EntryType.NORMAL, b"put x")], WalHardState(1, 1, 0))
        wal.close()
        wal, contents = Wal.open(path)   # contents.entries == [WalEntry(1, 1, 0, b"put x")]
    """

    def __init__(
        self,
        dir: Path,
        metadata: bytes,
        *,
        segment_bytes: int,
        fsync: bool,
        replay: _Replay,
    ) -> None:
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be positive, not {segment_bytes}")
        self._dir = dir
        self._metadata = metadata
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._segments: list[_Segment] = []
        self._fd = -1
        self._offset = 0
        self._fresh = False  # the last segment holds nothing but its header records
        self._last_index = replay.last
        self._floor = replay.floor
        self._hard_state = replay.hard_state
        self._snapshot = replay.snapshot
        self._failure: str | None = None

    @classmethod
    def create(
        cls,
        dir: Path,
        metadata: bytes,
        *,
        first_index: int = 1,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = True,
    ) -> Wal:
        """A new WAL in ``dir`` (missing or empty) whose first entry will be ``first_index``.

        Creates ``dir`` and segment 0; with ``fsync`` the segment and the directories are
        synced before this returns. Raises FileExistsError if ``dir`` holds anything but
        the ``.tmp`` leftover of an interrupted create.
        """
        if first_index < 1:
            raise ValueError(f"first_index must be at least 1, not {first_index}")
        replay = _Replay(last=first_index - 1, floor=first_index, entries=[])
        wal = cls(dir, metadata, segment_bytes=segment_bytes, fsync=fsync, replay=replay)
        if dir.exists():
            _remove_leftovers(dir)
            if any(dir.iterdir()):
                raise FileExistsError(f"wal: {dir} is not empty")
        dir.mkdir(parents=True, exist_ok=True)
        wal._start_segment(0, first_index)
        if fsync:
            _fsync_dir(dir.parent)
        return wal

    @classmethod
    def open(
        cls, dir: Path, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES, fsync: bool = True
    ) -> tuple[Wal, WalContents]:
        """Reads and verifies every segment of ``dir``; the WAL is then ready to append.

        A torn tail is zeroed (and synced) and reported in ``WalContents.torn_tail``;
        anything else wrong raises CorruptWal; FileNotFoundError if there is no segment.
        """
        segments = _list_segments(dir)
        if not segments:
            raise FileNotFoundError(f"wal: {dir}: no segment files")
        _remove_leftovers(dir)
        replay = _Replay(last=0, floor=None, entries=[])
        metadata: bytes | None = None
        scan = _Scan(0)
        for seg in segments:
            seg_metadata, scan = _scan_segment(
                seg, seg.path.read_bytes(), replay, metadata, is_last=seg is segments[-1]
            )
            metadata = seg_metadata if metadata is None else metadata
        assert metadata is not None
        wal = cls(dir, metadata, segment_bytes=segment_bytes, fsync=fsync, replay=replay)
        wal._segments = segments
        wal._fd = os.open(segments[-1].path, os.O_RDWR)
        wal._offset = scan.end
        torn_tail = None
        if scan.torn_end is not None:
            try:
                _pwrite_all(wal._fd, bytes(scan.torn_end - scan.end), scan.end)
                if fsync:
                    _datasync(wal._fd)
            except OSError:
                wal.close()
                raise
            torn_tail = (
                f"wal: {segments[-1].path}: torn write at offset {scan.end} "
                f"({scan.torn_end - scan.end} bytes zeroed); appending from there"
            )
        contents = WalContents(
            metadata=metadata,
            hard_state=replay.hard_state,
            snapshot=replay.snapshot,
            entries=replay.entries,
            torn_tail=torn_tail,
        )
        return wal, contents

    @staticmethod
    def exists(dir: Path) -> bool:
        """Whether ``dir`` holds at least one segment file."""
        if not dir.is_dir():
            return False
        return any(_SEGMENT_NAME.fullmatch(path.name) for path in dir.iterdir())

    @property
    def last_index(self) -> int:
        """The index of the last entry written (``first_index - 1`` before any)."""
        return self._last_index

    def segments(self) -> list[Path]:
        """The retained segment files, oldest first (the last is being appended to)."""
        return [seg.path for seg in self._segments]

    def save(self, entries: Sequence[WalEntry], hard_state: WalHardState | None = None) -> None:
        """Appends ``entries`` (contiguous) then ``hard_state``, then syncs once.

        ``entries[0].index`` may be at most ``last_index + 1``; a lower index overwrites
        from there on (raft semantics). ValueError, before anything is written, for a gap,
        non-contiguous entries, an index below the WAL's first index or one at or below the
        last snapshot marker (those entries are committed: raft never rewrites them, and a
        marker repeated in a later segment must not drop what follows it). Saving nothing is
        a no-op. Example: after entries 5..7, ``save([WalEntry(3, 6, 0, b"")])`` leaves
        5 and the new 6, and ``last_index == 6``.
        """
        self._check_writable()
        if not entries and hard_state is None:
            return
        if entries:
            self._check_entries(entries)
        records = [_entry_record(entry) for entry in entries]
        if hard_state is not None:
            records.append(_hard_state_record(hard_state))
        self._append(records, entries)
        if entries:
            self._last_index = entries[-1].index
        if hard_state is not None:
            self._hard_state = hard_state

    def save_snapshot(self, snap: WalSnapshot) -> None:
        """Appends a snapshot marker, then syncs.

        A marker beyond ``last_index`` (raft restored a newer snapshot) moves ``last_index``
        to ``snap.index``: the next entry is ``snap.index + 1``.
        """
        self._check_writable()
        self._append([_snapshot_record(snap)], ())
        self._snapshot = snap
        self._last_index = max(self._last_index, snap.index)

    def release_to(self, index: int) -> list[Path]:
        """Deletes the oldest segments all of whose entries are at or below ``index``.

        A segment goes when the next one's first index is at most ``index + 1``; deletion
        stops at the first segment that must stay and never takes the last one. Returns
        the deleted paths, oldest first. Example: segments first 1, 11, 21 and
        ``release_to(15)`` deletes the first only.
        """
        self._check_writable()
        deleted: list[Path] = []
        while len(self._segments) > 1 and self._segments[1].first_index <= index + 1:
            path = self._segments[0].path
            path.unlink()
            del self._segments[0]
            deleted.append(path)
        if deleted:
            self._floor = None
            if self._fsync:
                _fsync_dir(self._dir)
        return deleted

    def close(self) -> None:
        """Closes the last segment; further writes raise ValueError. Closing twice is fine."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _check_writable(self) -> None:
        if self._failure is not None:
            raise OSError(
                errno.EIO, f"wal: {self._dir}: an earlier write failed ({self._failure}); reopen"
            )
        if self._fd < 0:
            raise ValueError(f"wal: {self._dir}: closed")

    def _check_entries(self, entries: Sequence[WalEntry]) -> None:
        first = entries[0].index
        if first > self._last_index + 1:
            raise ValueError(f"wal: entry index {first} leaves a gap after {self._last_index}")
        if self._floor is not None and first < self._floor:
            raise ValueError(f"wal: entry index {first} is below the first index {self._floor}")
        if self._snapshot is not None and first <= self._snapshot.index:
            raise ValueError(
                f"wal: entry index {first} is covered by the snapshot at {self._snapshot.index}"
            )
        for offset, entry in enumerate(entries):
            if entry.index != first + offset:
                raise ValueError(f"wal: entry indexes not contiguous at {entry.index}")

    def _append(self, records: list[bytes], entries: Sequence[WalEntry]) -> None:
        """Writes ``records`` (``entries``' records first), cutting as needed, then syncs."""
        try:
            if self._offset + sum(map(len, records)) <= self._segment_bytes:
                self._write(records)
            else:
                self._append_cutting(records, entries)
            if self._fsync:
                _datasync(self._fd)
        except OSError as exc:
            self._failure = str(exc)
            raise

    def _append_cutting(self, records: list[bytes], entries: Sequence[WalEntry]) -> None:
        """Fills segments greedily; a record that fits no segment goes alone into a new one."""
        batch: list[bytes] = []
        size = 0
        for written, record in enumerate(records):
            occupied = not self._fresh or batch
            if occupied and self._offset + size + len(record) > self._segment_bytes:
                if batch:
                    self._write(batch)
                    batch, size = [], 0
                entries_written = min(written, len(entries))
                if entries_written:
                    self._last_index = entries[entries_written - 1].index
                self._cut()
            batch.append(record)
            size += len(record)
        self._write(batch)

    def _write(self, records: list[bytes]) -> None:
        buf = records[0] if len(records) == 1 else b"".join(records)
        _pwrite_all(self._fd, buf, self._offset)
        self._offset += len(buf)
        self._fresh = False

    def _cut(self) -> None:
        """Syncs and closes the last segment and starts the next one."""
        if self._fsync:
            _datasync(self._fd)
        os.close(self._fd)
        self._fd = -1
        self._start_segment(self._segments[-1].seq + 1, self._last_index + 1)

    def _start_segment(self, seq: int, first_index: int) -> None:
        """Builds segment ``seq`` under a temporary name, then renames it into place."""
        path = self._dir / segment_name(seq, first_index)
        tmp = path.with_name(path.name + _TMP_SUFFIX)
        header = [_metadata_record(seq, first_index, self._metadata)]
        if self._hard_state is not None:
            header.append(_hard_state_record(self._hard_state))
        if self._snapshot is not None:
            header.append(_snapshot_record(self._snapshot))
        buf = b"".join(header)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            if self._fsync:  # preallocation only spares fdatasync a size update
                _preallocate(fd, self._segment_bytes)
            _pwrite_all(fd, buf, 0)
            if self._fsync:
                os.fsync(fd)
            os.rename(tmp, path)
            if self._fsync:
                _fsync_dir(self._dir)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        self._offset = len(buf)
        self._fresh = True
        self._segments.append(_Segment(seq, first_index, path))
