"""Storage-layer errors: what the MVCC store and its backend can refuse.

They know nothing of gRPC; ``etcdlite.server.errors`` maps each to etcd's wire error.
"""


class StorageError(Exception):
    """Base class of every storage-layer error."""


class Compacted(StorageError):
    """The requested revision is older than the compacted revision."""


class FutureRevision(StorageError):
    """The requested revision has not been written yet."""


class RevisionNotFound(StorageError):
    """A key has no visible version at the requested revision (an internal miss)."""


class CorruptStore(StorageError):
    """The data on disk is not what this code wrote: the member must stop."""
