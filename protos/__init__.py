"""etcdlite.protos: etcd v3 messages and the gRPC method table.

Coexistence rule: a test process that uses etcdlite often also imports an etcd client (aetcd,
etcd3) which registers etcd's own ``rpc.proto`` / ``kv.proto`` / ``auth.proto`` and the
``etcdserverpb.*`` / ``mvccpb.*`` / ``authpb.*`` symbols in protobuf's default descriptor pool;
registering any of those names twice fails at import. So our files register as
``etcdlite/protos/<name>.proto`` and our proto packages are ``etcdlite.etcdserverpb``,
``etcdlite.mvccpb``, ``etcdlite.authpb``, ``etcdlite.v3lockpb``, ``etcdlite.v3electionpb`` and
``etcdlite.health.v1``. Package names never reach the wire (field numbers and types are
etcd's), so messages interoperate byte for byte. gRPC method paths do carry a package, so
none are generated: :mod:`etcdlite.protos.wire` lists etcd's real paths
(``/etcdserverpb.KV/Range`` ...).

Modules: ``kv_pb2``, ``auth_pb2``, ``rpc_pb2``, ``v3lock_pb2``, ``v3election_pb2``,
``health_pb2`` (generated, do not edit: change the ``.proto`` and run
``python -m etcdlite.protos.generate``) and ``wire``.
"""
