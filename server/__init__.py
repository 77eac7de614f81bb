"""etcdlite.server: the etcd v3 API on top of etcdlite.storage.

``EtcdServer`` runs a member in-process; the ``etcdlite`` command runs one as a process.
"""

from etcdlite.server.embed import EtcdServer

__all__ = ["EtcdServer"]
