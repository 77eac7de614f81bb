"""etcdlite.raft: the Raft consensus algorithm as a pure state machine.

No sockets, files, clocks, threads or asyncio, and no global randomness: time arrives as
``tick()`` calls, the network as ``step(message)`` calls, randomness from the seeded
``random.Random`` in :class:`Config`, and all output comes back as :class:`Ready` batches.
Written from the Raft paper and Ongaro's thesis, shaped after etcd-io/raft's RawNode.

Driving one node (the application owns storage, network and state machine)::

    import random
    from etcdlite.raft import Config, ConfChange, EntryType, MemoryStorage, RawNode

    storage = MemoryStorage()
    node = RawNode(Config(id=1, storage=storage, rng=random.Random(7)))

    def handle_ready() -> None:
        while node.has_ready():
            rd = node.ready()
            send(rd.messages)                          # may go before persisting
            if rd.snapshot is not None:
                storage.apply_snapshot(rd.snapshot)
            storage.append(rd.entries)
            if rd.hard_state is not None:
                storage.set_hard_state(rd.hard_state)  # fsync here when rd.must_sync
            send(rd.messages_after_append)             # only once durable
            for entry in rd.committed_entries:
                if entry.type == EntryType.CONF_CHANGE:
                    node.apply_conf_change(ConfChange.decode(entry.data))
                else:
                    apply(entry.data)
            node.advance(rd)

    node.bootstrap([1])   # first start of a new one-member cluster only
    handle_ready()        # persists and applies the bootstrap configuration
    node.campaign()       # or call node.tick() on a timer until it campaigns by itself
    handle_ready()
    node.propose(b"hello")  # raises ProposalDropped when there is no leader
    handle_ready()          # ... apply(b"hello") has been called

``send`` and ``apply`` stand for the application's transport and state machine; messages
from peers go into ``node.step(message)``. See :class:`Ready` for the full contract.
"""

from .config import Config
from .core import CAMPAIGN_TRANSFER, Raft
from .describe import (
    describe_entry,
    describe_hard_state,
    describe_message,
    describe_ready,
    describe_ready_lines,
    describe_snapshot,
    describe_soft_state,
)
from .errors import (
    Compacted,
    ProposalDropped,
    RaftError,
    RaftInvariantError,
    ReadIndexDropped,
    SnapshotOutOfDate,
    SnapshotTemporarilyUnavailable,
    StepLocalMessage,
    StorageNotEmpty,
    Unavailable,
)
from .progress import Inflights, Progress, ProgressState
from .rawnode import PeerStatus, RawNode, Status
from .storage import LogStorage, MemoryStorage
from .types import (
    LOCAL_MESSAGES,
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Ready,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    StateType,
)

__all__ = [
    "CAMPAIGN_TRANSFER",
    "LOCAL_MESSAGES",
    "NONE",
    "Compacted",
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Config",
    "Entry",
    "EntryType",
    "HardState",
    "Inflights",
    "LogStorage",
    "MemoryStorage",
    "Message",
    "MessageType",
    "PeerStatus",
    "Progress",
    "ProgressState",
    "ProposalDropped",
    "Raft",
    "RaftError",
    "RaftInvariantError",
    "RawNode",
    "ReadIndexDropped",
    "ReadState",
    "Ready",
    "Snapshot",
    "SnapshotMetadata",
    "SnapshotOutOfDate",
    "SnapshotTemporarilyUnavailable",
    "SoftState",
    "StateType",
    "Status",
    "StepLocalMessage",
    "StorageNotEmpty",
    "Unavailable",
    "describe_entry",
    "describe_hard_state",
    "describe_message",
    "describe_ready",
    "describe_ready_lines",
    "describe_snapshot",
    "describe_soft_state",
]
