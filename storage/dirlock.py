"""An exclusive lock on a member's directory, held while the member runs.

Two members on one data directory would interleave WAL appends and LMDB writes and
destroy both. Like etcd's lock on its WAL files, the first member holds an exclusive
``flock`` on the directory itself; a second one, in this process or another, fails at
once with ``DirectoryInUse``. The lock adds no file and ends with its holder (also when
the process is killed).

Example::

    fd = lock_dir(Path("default.etcd"))   # DirectoryInUse if another member holds it:
                                          # "data dir default.etcd is in use by ..."
    ...
    unlock(fd)
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from etcdlite.storage.errors import StorageError

try:
    import fcntl
except ImportError:  # not on Windows: no locking there
    fcntl = None  # type: ignore[assignment]


class DirectoryInUse(StorageError):
    """Another running member holds the directory."""


def lock_dir(path: Path, what: str = "data dir") -> int:
    """Create ``path`` if needed and lock it exclusively; returns the lock's fd
    (``what`` names the directory in the error).

    flock locks belong to the open file description, so a second lock fails whether
    it is taken in this process or another one."""
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise DirectoryInUse(
                f"{what} {path} is in use by another running etcd member") from None
        raise
    return fd


def unlock(fd: int) -> None:
    os.close(fd)
