"""aetcd (a maintained Python etcd client) against an in-process etcdlite.

This is also the coexistence test: aetcd registers etcd's own ``rpc.proto`` /
``kv.proto`` descriptors in protobuf's default pool, and etcdlite's generated modules
are imported in the same process; both must work side by side.
"""

from __future__ import annotations

import asyncio

import aetcd
import aetcd.exceptions
import grpc
import pytest

from etcdlite.protos import rpc_pb2, wire
from etcdlite.server import EtcdServer

pytestmark = pytest.mark.interop


@pytest.fixture
def server():
    with EtcdServer() as etcd:
        yield etcd


def test_aetcd_and_etcdlite_protos_share_a_process(server):
    # etcdlite's own stubs work in the same process as aetcd's descriptors...
    ch = grpc.insecure_channel(server.endpoint)
    put = wire.Stub(ch, "KV").Put(rpc_pb2.PutRequest(key=b"via-etcdlite", value=b"1"))
    assert put.header.revision == 2
    ch.close()

    async def scenario() -> None:
        async with aetcd.Client(host="127.0.0.1", port=server.port) as client:
            got = await client.get(b"via-etcdlite")
            assert got.value == b"1"
            assert got.create_revision == got.mod_revision == 2
            assert got.version == 1
            await client.put(b"k", b"v1")
            prev = await client.put(b"k", b"v2", prev_kv=True)
            assert prev.prev_kv.value == b"v1"
            assert prev.header.revision == 4
            got = await client.get(b"k")
            assert (got.value, got.version, got.create_revision, got.mod_revision) == (
                b"v2", 2, 3, 4)
            for i in range(3):
                await client.put(b"p/%d" % i, b"%d" % i)
            keys = [kv.key for kv in await client.get_prefix(b"p/")]
            assert keys == [b"p/0", b"p/1", b"p/2"]
            deleted = await client.delete_prefix(b"p/")
            assert deleted.deleted == 3
            assert await client.get(b"p/0") is None

            ok = await client.transaction(
                compare=[client.transactions.value(b"k") == b"v2"],
                success=[client.transactions.put(b"k", b"v3")],
                failure=[client.transactions.put(b"k", b"nope")],
            )
            assert ok[0] is True
            assert (await client.get(b"k")).value == b"v3"
            ok = await client.transaction(
                compare=[client.transactions.version(b"missing") > 0],
                success=[],
                failure=[client.transactions.get(b"k")],
            )
            assert ok[0] is False

            status = await client.status()
            assert status.version.startswith("3.5.")
            members = [m async for m in client.members()]
            assert len(members) == 1
            assert status.leader.id == members[0].id

            rev = (await client.get(b"k")).mod_revision
            await client.compact(rev)
            with pytest.raises(aetcd.exceptions.ClientError):
                # OUT_OF_RANGE is mapped by aetcd to its generic client error.
                await client.compact(rev)

    asyncio.run(scenario())
