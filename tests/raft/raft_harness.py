"""A small in-memory cluster for the Raft tests, and the interaction-script interpreter.

Every node owns a MemoryStorage ("disk") and a list of applied payloads ("state machine").
Messages wait in per-node inboxes until a test delivers them, so the order of events is
entirely in the test's hands. Election timeouts are not randomized here unless a test asks
for it: :class:`FixedRandom` makes every timeout exactly ``election_tick``.

The interaction commands (see ``Env.run``) print canonical text from
``etcdlite.raft.describe``; the scripts in ``testdata/`` document each feature with them.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from etcdlite.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDropped,
    RawNode,
    ReadIndexDropped,
    Ready,
    Snapshot,
    SnapshotMetadata,
    StateType,
    describe_entry,
    describe_message,
    describe_ready_lines,
)
from etcdlite.raft.describe import describe_conf_state, describe_state


class FixedRandom(random.Random):
    """A Random whose ``randrange`` always returns the lowest value: no jitter."""

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:  # type: ignore[override]
        return 0 if stop is None else start


@dataclass
class Node:
    id: int
    storage: MemoryStorage
    settings: dict[str, Any]
    raw: RawNode = field(init=False)
    conf_state: ConfState = field(init=False)
    applied: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.start()

    def start(self) -> None:
        """(Re)start from what is in storage: the state machine restarts from the snapshot."""
        settings = dict(self.settings)
        rng = settings.pop("rng", None) or FixedRandom()
        self.raw = RawNode(Config(id=self.id, storage=self.storage, rng=rng, **settings))
        snap = self.storage.snapshot()
        self.conf_state = snap.metadata.conf_state
        self.applied = [snap.data] if snap.data else []

    @property
    def raft(self) -> Any:
        return self.raw.raft


def bootstrapped_storage(
    voters: tuple[int, ...], learners: tuple[int, ...], index: int
) -> MemoryStorage:
    """A storage that starts from a snapshot at ``index`` (term 1) holding the configuration."""
    storage = MemoryStorage()
    if index > 0:
        meta = SnapshotMetadata(index=index, term=1, conf_state=ConfState(voters, learners))
        storage.apply_snapshot(Snapshot(data=b"", metadata=meta))
        storage.set_hard_state(HardState(term=1, vote=0, commit=index))
    return storage


class Cluster:
    """Nodes plus an inbox per node. Links listed in ``cut`` lose the messages sent over them
    (and those still waiting when they are delivered). A snapshot message is reported to its
    sender as delivered or failed, as a real transport would."""

    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.inbox: dict[int, list[Message]] = {}
        self.cut: set[tuple[int, int]] = set()

    # -- building ------------------------------------------------------------------------

    def add_node(self, node_id: int, storage: MemoryStorage, **settings: Any) -> Node:
        node = Node(node_id, storage, settings)
        self.nodes[node_id] = node
        self.inbox.setdefault(node_id, [])
        return node

    @classmethod
    def with_voters(cls, n: int, index: int = 1, **settings: Any) -> Cluster:
        c = cls()
        voters = tuple(range(1, n + 1))
        for i in voters:
            c.add_node(i, bootstrapped_storage(voters, (), index), **settings)
        return c

    # -- driving -------------------------------------------------------------------------

    def handle_ready(self, node_id: int) -> Ready:
        """Persist, send, apply and advance one Ready of ``node_id``."""
        node = self.nodes[node_id]
        rd = node.raw.ready()
        if rd.snapshot is not None:
            node.storage.apply_snapshot(rd.snapshot)
            node.conf_state = rd.snapshot.metadata.conf_state
            node.applied = [rd.snapshot.data] if rd.snapshot.data else []
        node.storage.append(rd.entries)
        if rd.hard_state is not None:
            node.storage.set_hard_state(rd.hard_state)
        for m in (*rd.messages, *rd.messages_after_append):
            self.send(m)
        for e in rd.committed_entries:
            if e.type == EntryType.CONF_CHANGE:
                node.conf_state = node.raw.apply_conf_change(ConfChange.decode(e.data))
            elif e.data:
                node.applied.append(e.data)
        node.raw.advance(rd)
        return rd

    def send(self, m: Message) -> None:
        """Queue ``m`` for its destination; a cut link loses it at once."""
        if (m.frm, m.to) in self.cut:
            if m.type == MessageType.SNAP and m.frm in self.nodes:
                self.nodes[m.frm].raw.report_snapshot(m.to, ok=False)
            return
        self.inbox.setdefault(m.to, []).append(m)

    def deliver(self, node_id: int) -> list[tuple[Message, str]]:
        """Deliver every message waiting for ``node_id``; returns each with what happened."""
        msgs, self.inbox[node_id] = self.inbox.get(node_id, []), []
        out: list[tuple[Message, str]] = []
        for m in msgs:
            node = self.nodes.get(node_id)
            if node is None or (m.frm, m.to) in self.cut:
                out.append((m, "dropped"))
                if m.type == MessageType.SNAP and m.frm in self.nodes:
                    self.nodes[m.frm].raw.report_snapshot(m.to, ok=False)
                continue
            # A forwarded request the node cannot take is dropped silently by RawNode.step.
            node.raw.step(m)
            if m.type == MessageType.SNAP and m.frm in self.nodes:
                self.nodes[m.frm].raw.report_snapshot(m.to, ok=True)
            out.append((m, ""))
        return out

    def stabilize(self, ids: list[int] | None = None, max_rounds: int = 1000) -> None:
        for _ in range(max_rounds):
            if not self.step_round(ids):
                return
        raise AssertionError("cluster did not stabilize")

    def step_round(self, ids: list[int] | None = None) -> bool:
        """One round: every node handles its Ready, then receives its messages."""
        ids = ids or sorted(self.nodes)
        busy = False
        for i in ids:
            if self.nodes[i].raw.has_ready():
                self.handle_ready(i)
                busy = True
        for i in ids:
            if self.inbox.get(i):
                self.deliver(i)
                busy = True
        return busy

    def isolate(self, node_id: int) -> None:
        for other in self.nodes:
            if other != node_id:
                self.cut.add((node_id, other))
                self.cut.add((other, node_id))

    def heal(self) -> None:
        self.cut.clear()

    def leader(self) -> int | None:
        leaders = [i for i, n in self.nodes.items() if n.raft.state == StateType.LEADER]
        return leaders[0] if len(leaders) == 1 else None

    def elect(self, node_id: int) -> None:
        self.nodes[node_id].raw.campaign()
        self.stabilize()
        assert self.nodes[node_id].raft.state == StateType.LEADER


# ---------------------------------------------------------------------------------------
# Interaction scripts
# ---------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[\w-]+=\([^)]*\)|\S+")
_SETTING_NAMES = {
    "pre-vote": "pre_vote",
    "check-quorum": "check_quorum",
    "election": "election_tick",
    "heartbeat": "heartbeat_tick",
    "max-inflight": "max_inflight",
    "max-size": "max_size_per_msg",
    "max-committed": "max_committed_size_per_ready",
}
_CC_TYPES = {
    "add-node": ConfChangeType.ADD_NODE,
    "remove-node": ConfChangeType.REMOVE_NODE,
    "add-learner": ConfChangeType.ADD_LEARNER_NODE,
}


def _ids(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.split(r"[\s,]+", text.strip("()").strip()) if x)


def _value(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if text == "none":
        return None
    return int(text)


class Env(Cluster):
    """Interprets interaction-script commands; each returns its output lines."""

    def run(self, command: str) -> list[str]:
        tokens = _TOKEN.findall(command)
        name, args = tokens[0], tokens[1:]
        pos = [a for a in args if "=" not in a]
        kw = dict(a.split("=", 1) for a in args if "=" in a)
        handler = getattr(self, "cmd_" + name.replace("-", "_"), None)
        if handler is None:
            raise ValueError(f"unknown command {name!r}")
        lines = handler(pos, kw)
        return lines or ["ok"]

    # -- setup -------------------------------------------------------------------------

    def cmd_add_nodes(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        """``add-nodes N [voters=(..)] [learners=(..)] [index=I] [setting=value...]``:
        N new nodes; with voters, their storage starts from a snapshot at I (default 1)
        holding that configuration; without, they start empty (to join later)."""
        n = int(pos[0])
        voters = _ids(kw.pop("voters", ""))
        learners = _ids(kw.pop("learners", ""))
        index = int(kw.pop("index", "1")) if voters else 0
        settings: dict[str, Any] = {"pre_vote": False, "check_quorum": False}
        for key, val in kw.items():
            settings[_SETTING_NAMES[key]] = _value(val)
        first = max(self.nodes, default=0) + 1
        lines = []
        for nid in range(first, first + n):
            node = self.add_node(nid, bootstrapped_storage(voters, learners, index), **settings)
            lines.append(self._state_line(node))
        return lines

    # -- input -------------------------------------------------------------------------

    def cmd_campaign(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        self.nodes[int(pos[0])].raw.campaign()
        return []

    def cmd_tick(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        node = self.nodes[int(pos[0])]
        for _ in range(int(pos[1]) if len(pos) > 1 else 1):
            node.raw.tick()
        return []

    def cmd_tick_election(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        node = self.nodes[int(pos[0])]
        for _ in range(node.raft.election_timeout):
            node.raw.tick()
        return []

    def cmd_tick_heartbeat(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        node = self.nodes[int(pos[0])]
        for _ in range(node.raft.heartbeat_timeout):
            node.raw.tick()
        return []

    def cmd_propose(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        try:
            self.nodes[int(pos[0])].raw.propose(pos[1].encode())
        except ProposalDropped as exc:
            return [f"error: {exc}"]
        return []

    def cmd_propose_conf_change(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        """``propose-conf-change ID add-node|remove-node|add-learner NODE``."""
        cc = ConfChange(_CC_TYPES[pos[1]], int(pos[2]))
        try:
            self.nodes[int(pos[0])].raw.propose_conf_change(cc)
        except ProposalDropped as exc:
            return [f"error: {exc}"]
        return []

    def cmd_read_index(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        try:
            self.nodes[int(pos[0])].raw.read_index(pos[1].encode())
        except ReadIndexDropped as exc:
            return [f"error: {exc}"]
        return []

    def cmd_transfer_leader(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        """``transfer-leader AT TO``: ask node AT to move leadership to TO."""
        self.nodes[int(pos[0])].raw.transfer_leader(int(pos[1]))
        return []

    def cmd_report_unreachable(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        self.nodes[int(pos[0])].raw.report_unreachable(int(pos[1]))
        return []

    # -- output and delivery -----------------------------------------------------------

    def cmd_process_ready(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        lines = []
        for nid in map(int, pos):
            if not self.nodes[nid].raw.has_ready():
                lines.append(f"> {nid}: no Ready")
                continue
            lines.append(f"> {nid} handling Ready")
            lines.extend("  " + line for line in self._ready_lines(nid))
        return lines

    def cmd_deliver_msgs(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        """``deliver-msgs ID... [drop=true]``: deliver (or drop) what waits for each ID."""
        drop = kw.get("drop") == "true"
        lines = []
        for nid in map(int, pos):
            if not self.inbox.get(nid):
                continue
            lines.append(f"> {nid} {'dropping' if drop else 'receiving'} messages")
            if drop:
                msgs, self.inbox[nid] = self.inbox[nid], []
                for m in msgs:
                    lines.append("  " + describe_message(m))
                    if m.type == MessageType.SNAP and m.frm in self.nodes:
                        self.nodes[m.frm].raw.report_snapshot(m.to, ok=False)
                continue
            for m, note in self.deliver(nid):
                lines.append("  " + describe_message(m) + (f" [{note}]" if note else ""))
        return lines

    def cmd_stabilize(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        ids = [int(p) for p in pos] or sorted(self.nodes)
        lines: list[str] = []
        for _ in range(1000):
            busy = False
            for nid in ids:
                if self.nodes[nid].raw.has_ready():
                    busy = True
                    lines.extend(self.cmd_process_ready([str(nid)], {}))
            for nid in ids:
                if self.inbox.get(nid):
                    busy = True
                    lines.extend(self.cmd_deliver_msgs([str(nid)], {}))
            if not busy:
                return lines
        raise AssertionError("stabilize did not converge")

    def _ready_lines(self, nid: int) -> list[str]:
        node = self.nodes[nid]
        before = node.conf_state
        rd = self.handle_ready(nid)
        lines = describe_ready_lines(rd)
        if node.conf_state != before:
            lines.append("conf-state " + describe_conf_state(node.conf_state))
        return lines

    # -- faults ------------------------------------------------------------------------

    def cmd_isolate(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        self.isolate(int(pos[0]))
        return []

    def cmd_heal(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        self.heal()
        return []

    def cmd_restart(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        """``restart ID``: crash (losing everything not persisted) and start again."""
        node = self.nodes[int(pos[0])]
        node.start()
        return [self._state_line(node)]

    def cmd_compact(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        """``compact ID INDEX``: snapshot the state machine at INDEX (applied) and drop the
        log up to it."""
        node = self.nodes[int(pos[0])]
        index = int(pos[1])
        data = ("snap:" + ",".join(d.decode() for d in node.applied)).encode()
        node.storage.create_snapshot(index, node.conf_state, data)
        node.storage.compact(index)
        return self.cmd_raft_log(pos[:1], {})

    # -- inspection --------------------------------------------------------------------

    def cmd_raft_log(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        """The durable log of a node (what its storage holds)."""
        st = self.nodes[int(pos[0])].storage
        first, last = st.first_index(), st.last_index()
        if last < first:
            return [f"log is empty: first index={first}, last index={last}"]
        ents: list[Entry] = st.entries(first, last + 1)
        return [describe_entry(e) for e in ents]

    def cmd_raft_state(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        return [self._state_line(self.nodes[i]) for i in sorted(self.nodes)]

    def cmd_status(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        """The leader's progress view of every peer."""
        raft = self.nodes[int(pos[0])].raft
        if raft.state != StateType.LEADER:
            return [f"{raft.id} is not the leader"]
        return [f"{pid}: {pr!r}" for pid, pr in sorted(raft.progress.items())]

    def cmd_applied(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        """What the node's state machine holds (snapshot text, then applied payloads)."""
        node = self.nodes[int(pos[0])]
        return [" ".join(d.decode() for d in node.applied) or "(nothing)"]

    def _state_line(self, node: Node) -> str:
        r = node.raft
        return (
            f"{r.id}: {describe_state(r.state)} term={r.term} lead={r.lead} "
            f"commit={r.log.committed} applied={r.log.applied} "
            f"{describe_conf_state(r.conf_state())}"
        )


# ---------------------------------------------------------------------------------------
# Script files: commands above "----", expected output below, cases separated by a blank
# line, "#" comment lines kept as they are.
# ---------------------------------------------------------------------------------------


@dataclass
class Case:
    command: str
    expected: list[str]
    line: int


def parse_script(text: str) -> list[str | Case]:
    """Split a script into comment blocks (kept verbatim) and cases."""
    items: list[str | Case] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if line.startswith("#"):
            items.append(line)
            i += 1
            continue
        if i + 1 >= len(lines) or lines[i + 1] != "----":
            raise ValueError(f"line {i + 1}: expected '----' after command {line!r}")
        start = i + 1
        i += 2
        out = []
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        items.append(Case(line.strip(), out, start))
    return items


def render_script(items: list[str | Case], outputs: dict[int, list[str]]) -> str:
    """The script text with each case's output replaced by ``outputs[id(case)]``."""
    parts: list[str] = []
    for item in items:
        if isinstance(item, str):
            parts.append(item + "\n")
        else:
            parts.append(item.command + "\n----\n" + "\n".join(outputs[id(item)]) + "\n\n")
    text = "".join(parts)
    # A comment directly after a case's blank line is fine; avoid a trailing blank line.
    return text.rstrip("\n") + "\n"


def run_script(text: str) -> tuple[list[str | Case], dict[int, list[str]]]:
    items = parse_script(text)
    env = Env()
    outputs: dict[int, list[str]] = {}
    for item in items:
        if isinstance(item, Case):
            outputs[id(item)] = env.run(item.command)
    return items, outputs
