"""Canonical text for entries, messages, snapshots and Readys.

One value, one line, always the same text: the interaction scripts under
``tests/raft/testdata`` compare these lines byte for byte, and logs can grep them. A Ready
is several things at once, so :func:`describe_ready` gives one line per element (a header
line, then one line for each state change, entry, message and read state).

Examples::

    1/5 normal "put x"
    2/7 conf add-learner 4
    1->2 MsgApp term=2 log=1/5 commit=5 entries=[2/6 normal "", 2/7 normal "y"]
    2->1 MsgAppResp term=2 index=3 rejected hint=1/3
"""

from __future__ import annotations

from .core import CAMPAIGN_TRANSFER
from .types import (
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
    SoftState,
    StateType,
)

_MT = MessageType
_LOG_POSITION = frozenset({_MT.APP, _MT.VOTE, _MT.PRE_VOTE})
_INDEX_ONLY = frozenset({_MT.APP_RESP, _MT.READ_INDEX_RESP})

_TYPE_NAMES = {
    t: "Msg" + "".join(part.capitalize() for part in t.name.split("_")) for t in MessageType
}
_CONF_CHANGE_NAMES = {
    ConfChangeType.ADD_NODE: "add-node",
    ConfChangeType.REMOVE_NODE: "remove-node",
    ConfChangeType.ADD_LEARNER_NODE: "add-learner",
}
_STATE_NAMES = {
    StateType.FOLLOWER: "Follower",
    StateType.CANDIDATE: "Candidate",
    StateType.LEADER: "Leader",
    StateType.PRE_CANDIDATE: "PreCandidate",
}


def describe_bytes(data: bytes) -> str:
    """Printable ASCII in double quotes, anything else as ``0x`` hex."""
    if all(32 <= b < 127 and b not in (34, 92) for b in data):
        return '"' + data.decode("ascii") + '"'
    return "0x" + data.hex()


def describe_conf_change(cc: ConfChange) -> str:
    text = f"{_CONF_CHANGE_NAMES[cc.type]} {cc.node_id}"
    if cc.context:
        text += f" ctx={describe_bytes(cc.context)}"
    return text


def describe_entry(e: Entry) -> str:
    """``term/index kind payload``."""
    if e.type == EntryType.CONF_CHANGE:
        try:
            payload = describe_conf_change(ConfChange.decode(e.data))
        except ValueError:
            payload = "invalid " + describe_bytes(e.data)
        return f"{e.term}/{e.index} conf {payload}"
    return f"{e.term}/{e.index} normal {describe_bytes(e.data)}"


def describe_entries(entries: tuple[Entry, ...] | list[Entry]) -> str:
    return "[" + ", ".join(describe_entry(e) for e in entries) + "]"


def describe_conf_state(cs: ConfState) -> str:
    text = "voters=(" + " ".join(map(str, cs.voters)) + ")"
    if cs.learners:
        text += " learners=(" + " ".join(map(str, cs.learners)) + ")"
    return text


def describe_snapshot(s: Snapshot) -> str:
    """``term/index`` of the last covered entry (like entries), then the configuration."""
    m = s.metadata
    return f"{m.term}/{m.index} {describe_conf_state(m.conf_state)} data={describe_bytes(s.data)}"


def describe_message(m: Message) -> str:
    parts = [f"{m.frm}->{m.to}", _TYPE_NAMES[m.type], f"term={m.term}"]
    if m.type in _LOG_POSITION:
        parts.append(f"log={m.log_term}/{m.index}")
    elif m.type in _INDEX_ONLY:
        parts.append(f"index={m.index}")
    elif m.index or m.log_term:
        parts.append(f"log={m.log_term}/{m.index}")
    if m.reject:
        parts.append("rejected")
        if m.type == _MT.APP_RESP:
            parts.append(f"hint={m.log_term}/{m.reject_hint}")
    if m.commit:
        parts.append(f"commit={m.commit}")
    if m.entries:
        parts.append("entries=" + describe_entries(m.entries))
    if m.snapshot is not None:
        parts.append("snap=" + describe_snapshot(m.snapshot))
    if m.context:
        if m.context == CAMPAIGN_TRANSFER:
            parts.append("transfer")
        else:
            parts.append("ctx=" + describe_bytes(m.context))
    return " ".join(parts)


def describe_soft_state(s: SoftState) -> str:
    return f"lead={s.lead} state={_STATE_NAMES[s.state]}"


def describe_hard_state(h: HardState) -> str:
    return f"term={h.term} vote={h.vote} commit={h.commit}"


def describe_read_state(rs: ReadState) -> str:
    return f"index={rs.index} ctx={describe_bytes(rs.request_ctx)}"


def describe_ready_lines(rd: Ready) -> list[str]:
    """One line per element of ``rd``, in the order the application handles them."""
    lines = ["Ready" + (" must-sync" if rd.must_sync else "")]
    if rd.soft_state is not None:
        lines.append("soft-state " + describe_soft_state(rd.soft_state))
    if rd.hard_state is not None:
        lines.append("hard-state " + describe_hard_state(rd.hard_state))
    lines.extend("send " + describe_message(m) for m in rd.messages)
    if rd.snapshot is not None:
        lines.append("snapshot " + describe_snapshot(rd.snapshot))
    lines.extend("entry " + describe_entry(e) for e in rd.entries)
    lines.extend("send-after-persist " + describe_message(m) for m in rd.messages_after_append)
    lines.extend("apply " + describe_entry(e) for e in rd.committed_entries)
    lines.extend("read-state " + describe_read_state(rs) for rs in rd.read_states)
    return lines


def describe_ready(rd: Ready) -> str:
    return "\n".join(describe_ready_lines(rd))


def describe_state(state: StateType) -> str:
    return _STATE_NAMES[state]
