"""Server CPU time and memory from ``/proc``, with no dependency beyond the standard library.

A server is measured as its process plus every live descendant (etcdlite runs as one
process, but a wrapper or a future helper process must not escape the measurement), plus
the CPU time of children it has already reaped (``cutime``/``cstime``).

* :func:`cpu_seconds`: user + system CPU seconds used so far.
* :func:`rss_kib` / :func:`peak_rss_kib`: resident set now (``VmRSS``) and its high-water
  mark (``VmHWM``), summed over the process tree.
* :func:`reset_peak_rss`: restart the high-water mark from the current RSS (Linux >= 4.0,
  ``echo 5 > /proc/PID/clear_refs``), so a peak can be measured per workload.
"""

from __future__ import annotations

import os
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name, or None if it is gone."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    return raw[raw.rindex(")") + 2:].split()


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (from ``/proc/PID/task/*/children`` when available)."""
    kids: list[int] = []
    task_dir = _PROC / str(pid) / "task"
    try:
        tasks = list(task_dir.iterdir())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return kids
    for task in tasks:
        try:
            kids.extend(int(x) for x in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return kids


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children_of(p))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid``'s tree, reaped children included."""
    ticks = 0
    for p in process_tree(pid):
        f = _stat_fields(p)
        if f is None:
            continue
        # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
        ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / _CLK_TCK


def _status_kib(pid: int, field: str) -> int:
    try:
        text = (_PROC / str(pid) / "status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    """Resident set size now (``VmRSS``), KiB, summed over ``pid``'s tree."""
    return sum(_status_kib(p, "VmRSS") for p in process_tree(pid))


def peak_rss_kib(pid: int) -> int:
    """Peak resident set size (``VmHWM``), KiB, summed over ``pid``'s tree (an upper
    bound of the tree's true joint peak)."""
    return sum(_status_kib(p, "VmHWM") for p in process_tree(pid))


def reset_peak_rss(pid: int) -> bool:
    """Reset ``VmHWM`` to the current RSS for ``pid``'s tree; False if the kernel refused."""
    ok = True
    for p in process_tree(pid):
        try:
            (_PROC / str(p) / "clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine spent busy (not idle, not in I/O wait) since
    boot, from ``/proc/stat``: with the servers' and the clients' share subtracted, what
    is left is other load that disturbed the measurement."""
    with open(_PROC / "stat") as f:
        fields = f.readline().split()
    # cpu user nice system idle iowait irq softirq steal ...
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def dir_size_bytes(path: Path) -> int:
    """Bytes of all regular files below ``path`` (apparent size)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total
