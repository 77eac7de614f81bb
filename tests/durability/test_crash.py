"""kill -9 never loses an acknowledged write, and revisions never go back.

A subprocess etcdlite takes puts from several writer threads; each writer records the
key, value and revision of every put the server acknowledged. At a seeded random number
of acknowledgements the server is killed with SIGKILL (mid-batch: other writers' puts
are in flight, some in the WAL thread, some being applied), restarted on the same data
directory, and checked: every acknowledged put is there with its value and revision,
and the next write gets a revision above every acknowledged one. Many rounds, with a
small --snapshot-count so snapshots and WAL segment release happen between kills.

``ETCDLITE_CRASH_ROUNDS`` raises the number of rounds for a longer hunt.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from etcd_procs import ServerProc, launch_etcdlite

from etcdlite.protos import wire
from etcdlite.protos.rpc_pb2 import PutRequest, RangeRequest, RequestOp, TxnRequest

ROUNDS = int(os.environ.get("ETCDLITE_CRASH_ROUNDS", "8"))
WRITERS = 8
SEED = 20261121


@dataclass
class Acked:
    """Acknowledged writes: key -> (value, mod revision); guarded by ``lock``."""

    writes: dict[bytes, tuple[bytes, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    enough: threading.Event = field(default_factory=threading.Event)
    target: int = 0

    def record(self, key: bytes, value: bytes, rev: int) -> None:
        with self.lock:
            self.writes[key] = (value, rev)
            if len(self.writes) >= self.target:
                self.enough.set()


def writer(endpoint: str, round_no: int, w: int, acked: Acked, stop: threading.Event) -> None:
    """Unique keys (no overwrites: an unacknowledged put cannot shadow an acknowledged
    one); every third write is a txn so both commit paths are killed mid-flight."""
    with grpc.insecure_channel(endpoint) as ch:
        kv = wire.Stub(ch, "KV")
        i = 0
        while not stop.is_set():
            key = b"crash/%03d/%d/%06d" % (round_no, w, i)
            value = b"v%d-" % i + bytes(200)
            try:
                if i % 3 == 2:
                    op = RequestOp(request_put=PutRequest(key=key, value=value))
                    resp = kv.Txn(TxnRequest(success=[op]), timeout=10)
                else:
                    resp = kv.Put(PutRequest(key=key, value=value), timeout=10)
            except grpc.RpcError:
                return  # the server is gone
            acked.record(key, value, resp.header.revision)
            i += 1


def check_recovered(server: ServerProc, acked: Acked) -> int:
    """Every acknowledged write is back with its revision; returns the current revision."""
    kv = server.stub("KV")
    resp = kv.Range(RangeRequest(key=b"crash/", range_end=b"crash0"))
    found = {kv_.key: (kv_.value, kv_.mod_revision) for kv_ in resp.kvs}
    missing = [k for k in acked.writes if k not in found]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
    wrong = [(k, acked.writes[k], found[k]) for k in acked.writes if found[k] != acked.writes[k]]
    assert not wrong, f"acknowledged writes changed: {wrong[:3]}"
    revs = [rev for _value, rev in found.values()]
    assert len(set(revs)) == len(revs), "two keys were written at the same revision"
    return resp.header.revision


@pytest.mark.parametrize("fsync_flags", [(), ("--unsafe-no-fsync",)], ids=["fsync", "no-fsync"])
def test_kill_9_never_loses_an_acknowledged_write(tmp_path: Path, fsync_flags: tuple[str, ...]):
    rng = random.Random(SEED)
    data = tmp_path / "member.etcd"
    flags = ("--snapshot-count", "400", *fsync_flags)
    acked = Acked()
    highest = 0
    for round_no in range(ROUNDS):
        server = launch_etcdlite(data, tmp_path / f"round{round_no}.log", *flags)
        try:
            current = check_recovered(server, acked)
            assert current >= highest, f"revision went back from {highest} to {current}"
            acked.enough.clear()
            acked.target = len(acked.writes) + rng.randint(1, 300)
            stop = threading.Event()
            threads = [threading.Thread(target=writer, args=(server.endpoint, round_no, w,
                                                             acked, stop))
                       for w in range(WRITERS)]
            for t in threads:
                t.start()
            assert acked.enough.wait(60), f"writers stalled:\n{server.log()}"
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait()
            stop.set()
            for t in threads:
                t.join()
        finally:
            server.stop()
        highest = max(rev for _value, rev in acked.writes.values())
    server = launch_etcdlite(data, tmp_path / "final.log", *flags)
    try:
        check_recovered(server, acked)
        resp = server.stub("KV").Put(PutRequest(key=b"after", value=b"x"))
        assert resp.header.revision > highest, "a revision was reused after the crashes"
    finally:
        server.stop()
