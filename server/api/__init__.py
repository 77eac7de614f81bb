"""The gRPC face of a member: thin servicers over ``Etcd``, registered under etcd's wire
names from the one table in ``etcdlite.protos.wire``."""
