"""A member that hits a storage failure stops serving (fail-stop), it never limps on."""

from __future__ import annotations

import asyncio

import pytest

from etcdlite.protos.rpc_pb2 import CompactionRequest, PutRequest, RangeRequest
from etcdlite.server.config import EtcdConfig
from etcdlite.server.errors import ServerStopped
from etcdlite.server.etcd import Etcd
from etcdlite.server.log import Logger
from etcdlite.storage.mvcc import Store


def test_a_failing_physical_compaction_stops_the_member(tmp_path, monkeypatch):
    def broken_step(self, job, batch_limit=1000):
        raise OSError("disk on fire")

    monkeypatch.setattr(Store, "compact_step", broken_step)
    fatal: list[BaseException] = []

    async def scenario() -> None:
        stopped = asyncio.Event()

        def on_fatal(exc: BaseException) -> None:
            fatal.append(exc)
            stopped.set()

        etcd = Etcd(EtcdConfig(data_dir=tmp_path / "m"), Logger("panic"), on_fatal=on_fatal)
        etcd.start()
        await etcd.publish(["http://127.0.0.1:2379"])
        etcd.serving()
        for i in range(3):
            await etcd.put(PutRequest(key=b"k", value=b"%d" % i))
        # physical=true waits for the compaction, which fails: the waiter is released
        # with ServerStopped when the member stops, not left hanging.
        waiter = asyncio.ensure_future(etcd.compact(CompactionRequest(revision=3, physical=True)))
        await asyncio.wait_for(stopped.wait(), 5)
        assert isinstance(fatal[0], OSError)
        with pytest.raises(ServerStopped):
            etcd.range(RangeRequest(key=b"k"))
        with pytest.raises(ServerStopped):
            await etcd.put(PutRequest(key=b"k", value=b"late"))
        await etcd.stop()
        with pytest.raises(ServerStopped):
            await asyncio.wait_for(waiter, 5)

    asyncio.run(scenario())
