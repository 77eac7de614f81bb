"""Versions etcdlite reports.

``ETCD_VERSION`` is the etcd server version clients see (Status.version, /version):
clients gate features on it (clientv3 RejectOldCluster needs >= 3.2; etcd3gw picks the
gateway prefix from it), and etcdlite follows etcd 3.5's API and behaviour.
"""

ETCD_VERSION = "3.5.1"
ETCD_CLUSTER_VERSION = "3.5.0"
ETCDLITE_VERSION = "0.1.0"
