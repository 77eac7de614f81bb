"""Exceptions of the Raft core. Every message starts with ``raft:``.

Operating conditions the application must handle (a proposal with no leader to take it, a
compacted log position) raise a subclass of :class:`RaftError`. A broken internal invariant
raises :class:`RaftInvariantError`: it means a bug or corrupted storage, and the node must
stop (fail-stop), never retry.
"""

from __future__ import annotations


class RaftError(Exception):
    """Base class of the errors an application is expected to handle."""


class ProposalDropped(RaftError):
    """The proposal was not appended: no known leader, a leader transfer in progress, the node
    is not a member, or a conf change is still pending. Retrying later may succeed."""


class ReadIndexDropped(RaftError):
    """The ReadIndex request could not be started (no known leader, or not a leader yet)."""


class StepLocalMessage(RaftError):
    """A message type that is only generated inside a node arrived from the network."""


class StorageNotEmpty(RaftError):
    """``RawNode.bootstrap`` was called on a node whose storage already holds a log or a
    term: it is not a brand-new node, so it restarts from its storage instead."""


class Compacted(RaftError):
    """The requested log position precedes the first available index: read a snapshot."""


class Unavailable(RaftError):
    """The requested log position is beyond the last index."""


class SnapshotOutOfDate(RaftError):
    """A snapshot older than the one already held was offered to storage."""


class SnapshotTemporarilyUnavailable(RaftError):
    """Storage cannot produce a snapshot right now; the core will try again later."""


class RaftInvariantError(AssertionError):
    """An internal invariant of the core or its storage is broken. Not recoverable."""
