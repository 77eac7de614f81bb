"""JSON log lines in the shape of etcd's zap logger.

One object per line: ``level``, ``ts`` (RFC 3339 with milliseconds, UTC), ``caller``,
``msg``, then the call's fields, e.g.::

    {"level":"info","ts":"2026-11-21T10:00:00.123Z","caller":"etcdlite/runner",
     "msg":"ready to serve client requests"}

A Logger is an ordinary object handed to whoever logs; there is no global logger.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TextIO

LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3, "panic": 4, "fatal": 5}


class Logger:
    def __init__(
        self,
        level: str = "info",
        stream: TextIO | None = None,
        wall: Callable[[], float] = time.time,
        caller: str = "etcdlite",
    ):
        if level not in LEVELS:
            raise ValueError(f"unknown log level {level!r} (want one of {', '.join(LEVELS)})")
        self._min = LEVELS[level]
        self._stream = stream if stream is not None else sys.stderr
        self._wall = wall
        self._caller = caller

    def named(self, caller: str) -> Logger:
        """The same logger, writing ``caller`` into each line."""
        child = Logger.__new__(Logger)
        child._min, child._stream, child._wall = self._min, self._stream, self._wall
        child._caller = caller
        return child

    def enabled(self, level: str) -> bool:
        return LEVELS[level] >= self._min

    def log(self, level: str, msg: str, **fields: object) -> None:
        if LEVELS[level] < self._min:
            return
        now = self._wall()
        millis = int(now * 1000) % 1000
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{millis:03d}Z"
        record: dict[str, object] = {"level": level, "ts": ts, "caller": self._caller, "msg": msg}
        record.update(fields)
        self._stream.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")
        self._stream.flush()

    def debug(self, msg: str, **fields: object) -> None:
        self.log("debug", msg, **fields)

    def info(self, msg: str, **fields: object) -> None:
        self.log("info", msg, **fields)

    def warn(self, msg: str, **fields: object) -> None:
        self.log("warn", msg, **fields)

    def error(self, msg: str, **fields: object) -> None:
        self.log("error", msg, **fields)

    def fatal(self, msg: str, **fields: object) -> None:
        self.log("fatal", msg, **fields)
