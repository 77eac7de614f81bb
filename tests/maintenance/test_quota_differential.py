"""The quota and alarm story against real etcd 3.5.1, side by side (facts sheet §4.11).

Both servers get the same small ``--quota-backend-bytes`` and advertise one peer URL (so
member and cluster ids agree) and are filled until a put is refused. Their databases
differ in size (bbolt vs LMDB), so they refuse at different puts: the tests compare what
clients see then — error codes and messages, Alarm replies, Status.errors, which
requests work — with header revisions left out. Every difference is collected and the
test fails at its end with all of them listed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from etcd_procs import (
    ServerProc,
    launch_etcdlite,
    launch_real_etcd,
    real_etcd_binary,
    start_pair,
    stop_all,
)
from google.protobuf.message import Message
from maintlib import (
    ACTIVATE,
    DEACTIVATE,
    GET,
    NOSPACE_ERROR,
    Client,
    fill_until_refused,
    op_delete,
    op_get,
    op_put,
    outcome,
)

from etcdlite.protos import rpc_pb2 as R

pytestmark = pytest.mark.differential

QUOTA_BYTES = 1_500_000
"""Above both fresh databases (bbolt ~28 KiB, LMDB ~52 KiB), reached in a few dozen puts."""
VALUE_BYTES = 64 * 1024


@dataclass
class Pair:
    real: Client
    lite: Client
    mismatches: list[str] = field(default_factory=list)

    def same(self, what: str, call: Callable[[Client], Any]) -> Any:
        """Run ``call`` on both; record a mismatch of the normalized outcomes; return
        real etcd's."""
        real, lite = (_normalized(outcome(lambda c=c: call(c))) for c in (self.real, self.lite))
        if real != lite:
            self.mismatches.append(f"{what}:\n  real etcd: {real!r}\n  etcdlite:  {lite!r}")
        return real

    def expect(self, what: str, ok: bool, detail: str) -> None:
        if not ok:
            self.mismatches.append(f"{what}: {detail}")

    def check(self) -> None:
        if self.mismatches:
            pytest.fail(f"{len(self.mismatches)} difference(s) from etcd:\n"
                        + "\n".join(self.mismatches), pytrace=False)


def _normalized(out: Any) -> Any:
    """A comparable form of an outcome: errors as ``(code, details)``; messages as their
    text with every header revision zeroed (the servers wrote different numbers of
    revisions) and alarms sorted (etcd lists them from a Go map)."""
    if not isinstance(out, Message):
        return out
    copy = type(out)()
    copy.CopyFrom(out)
    _zero_revisions(copy)
    if isinstance(copy, R.AlarmResponse):
        alarms = sorted(copy.alarms, key=lambda a: (a.memberID, a.alarm))
        del copy.alarms[:]
        copy.alarms.extend(alarms)
    return f"{type(copy).__name__}{{{copy}}}"


def _zero_revisions(msg: Message) -> None:
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        if fd.name == "header" and isinstance(value, R.ResponseHeader):
            value.revision = 0
        items = [value] if isinstance(value, Message) else list(value)
        for item in items:
            if isinstance(item, Message):
                _zero_revisions(item)


def _start_pair(base: Path, *args: str) -> tuple[ServerProc, ServerProc]:
    binary = real_etcd_binary("etcd-3.5")

    def start_real(peer_port: int) -> ServerProc:
        return launch_real_etcd("etcd-3.5", binary, base / "real.etcd", base / "real.log",
                                *args, peer_port=peer_port)

    def start_lite(peer_url: str) -> ServerProc:
        return launch_etcdlite(base / "lite.etcd", base / "lite.log", *args,
                               peer_url=peer_url)

    real, lite, _ = start_pair(start_real, start_lite)
    return real, lite


@pytest.fixture
def quota_pair(tmp_path: Path) -> Iterator[Pair]:
    real, lite = _start_pair(tmp_path, "--quota-backend-bytes", str(QUOTA_BYTES))
    yield Pair(Client(real), Client(lite))
    stop_all(real, lite)


@pytest.fixture
def plain_pair(tmp_path: Path) -> Iterator[Pair]:
    real, lite = _start_pair(tmp_path)
    yield Pair(Client(real), Client(lite))
    stop_all(real, lite)


def _txn(c: Client, *ops: R.RequestOp) -> R.TxnResponse:
    return c.kv.Txn(R.TxnRequest(success=list(ops)))


def test_quota_story_matches_real_etcd(quota_pair: Pair) -> None:
    """Filling a small quota, living with NOSPACE and recovering from it look the same to
    a client of etcdlite as to a client of etcd 3.5.1."""
    p = quota_pair
    member_ids = {c.member_id() for c in (p.real, p.lite)}
    assert len(member_ids) == 1, "same peer URL, same member id"
    [me] = member_ids
    for c in (p.real, p.lite):
        c.put(b"/keep", b"k")
        accepted, refusal = fill_until_refused(c, b"/fill/", VALUE_BYTES)
        assert accepted >= 1
        p.expect(f"{c.server.flavor} refusal", refusal == NOSPACE_ERROR, repr(refusal))

    p.same("Alarm GET", lambda c: c.alarm(GET))
    p.same("Alarm GET NOSPACE", lambda c: c.alarm(GET, alarm=R.NOSPACE))
    p.same("Status.errors", lambda c: sorted(c.status().errors))
    p.same("Range", lambda c: c.get(b"/keep"))
    p.same("tiny Put", lambda c: c.put(b"/tiny", b""))
    p.same("LeaseGrant", lambda c: c.lease.LeaseGrant(R.LeaseGrantRequest(TTL=60)))
    p.same("Txn with a put", lambda c: _txn(c, op_put(b"/t")))
    # Whether a read-only Txn passes depends on each server's own file size (etcd's
    # rule: refused once size + 0 reaches the quota), so check each against the rule.
    for c in (p.real, p.lite):
        size = c.status().dbSize
        got = outcome(lambda c=c: _txn(c, op_get(b"/keep")))
        refused = not isinstance(got, Message)
        p.expect(f"{c.server.flavor} read-only Txn at dbSize {size}", refused == (
            size >= QUOTA_BYTES), f"got {got!r}")

    p.same("DeleteRange", lambda c: c.kv.DeleteRange(R.DeleteRangeRequest(
        key=b"/fill/", range_end=b"/fill0")).header.member_id)
    p.same("Compact", lambda c: c.compact(c.revision()))
    sizes = {c.server.flavor: c.status().dbSize for c in (p.real, p.lite)}
    # etcd 3.5.1 answers Defragment with an empty DefragmentResponse (no header).
    p.same("Defragment", lambda c: c.defragment())
    for c in (p.real, p.lite):
        after = c.status().dbSize
        p.expect(f"{c.server.flavor} Defragment shrinks", after < sizes[c.server.flavor],
                 f"{sizes[c.server.flavor]} -> {after}")

    p.same("Alarm GET after defrag", lambda c: c.alarm(GET))
    p.same("tiny Put after defrag", lambda c: c.put(b"/tiny", b""))
    p.same("LeaseGrant after defrag", lambda c: c.lease.LeaseGrant(R.LeaseGrantRequest(TTL=60)))
    p.same("read-only Txn after defrag", lambda c: _txn(c, op_get(b"/keep")))
    p.same("empty Txn after defrag", lambda c: _txn(c))
    p.same("delete-only Txn after defrag", lambda c: _txn(c, op_delete(b"/keep")))
    p.same("Txn with a put after defrag", lambda c: _txn(c, op_put(b"/t")))

    p.same("Alarm DEACTIVATE", lambda c: c.alarm(DEACTIVATE, me, R.NOSPACE))
    p.same("Status.errors after disarm", lambda c: list(c.status().errors))
    p.same("Put after disarm", lambda c: c.kv.Put(R.PutRequest(key=b"/after")).header.member_id)
    p.check()


def test_alarm_actions_match_real_etcd(plain_pair: Pair) -> None:
    """Alarm ACTIVATE / DEACTIVATE / GET replies, including memberID 0, NONE, repeated
    and inactive alarms, and their effect on Status.errors and on puts, are etcd's."""
    p = plain_pair
    me = p.real.member_id()
    steps: list[tuple[int, int, int]] = [
        (ACTIVATE, 0, R.NOSPACE), (ACTIVATE, 0, R.NOSPACE), (ACTIVATE, 5, R.NONE),
        (GET, 0, R.NONE), (GET, 0, R.NOSPACE), (GET, 0, R.CORRUPT),
        (ACTIVATE, me, R.NOSPACE), (ACTIVATE, me, R.NOSPACE), (GET, 7, R.NONE),
        (DEACTIVATE, 0, R.NONE), (DEACTIVATE, me, R.CORRUPT), (DEACTIVATE, 0, R.NOSPACE),
        (DEACTIVATE, 0, R.NOSPACE), (GET, 0, R.NONE), (DEACTIVATE, me, R.NOSPACE),
        (GET, 0, R.NONE),
    ]
    status_checkpoints = {0, 6, 11, 15}  # after each kind of change
    for i, (action, member, alarm) in enumerate(steps):
        name = (f"step {i}: {R.AlarmRequest.AlarmAction.Name(action)} memberID="
                f"{'me' if member == me else member} {R.AlarmType.Name(alarm)}")
        p.same(name, lambda c, a=action, m=member, t=alarm: c.alarm(a, m, t))
        if i in status_checkpoints:
            p.same(f"{name}, then Status.errors", lambda c: sorted(c.status().errors))
        p.same(f"{name}, then Put", lambda c: c.kv.Put(R.PutRequest(
            key=b"/k")).header.member_id)
    p.check()

