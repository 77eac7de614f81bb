"""The backend quota and the alarms it raises (facts sheet §4.11), on a started server.

A server with ``--quota-backend-bytes`` a little above its fresh database size is filled
until a put is refused; what etcd then does is what clients and operators rely on:

* the refusal is ResourceExhausted "etcdserver: mvcc: database space exceeded", and it
  raises NOSPACE for this member (Alarm GET, Status.errors, ``etcdctl alarm list``);
* while NOSPACE is active, reads and the requests that free space (DeleteRange, Compact,
  Defragment, Alarm) work, and every request that costs space (Put, a Txn with a put,
  LeaseGrant) fails with the same error;
* defragmenting does not clear the alarm; disarming does, and writes work again.

Most tests share two servers (one with the small quota, one without), each test with
its own keys, leaving no alarm behind; a few start servers of their own (a quota below
the fresh database size, a restart).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from etcd_procs import Etcdctl
from maintlib import (
    ACTIVATE,
    DEACTIVATE,
    GET,
    NOSPACE_ERROR,
    Client,
    Servers,
    fill_until_refused,
    needs_etcdlite,
    op_delete,
    op_get,
    op_put,
    prefix_end,
    rpc_error,
)

from etcdlite.protos import rpc_pb2 as R

QUOTA_MARGIN = 512 * 1024
"""The quota is the fresh database size plus this."""
VALUE_BYTES = 64 * 1024
"""Value size of the puts that fill the quota (a handful of puts reach it)."""


@pytest.fixture(scope="module")
def quota_bytes(fresh_db_size: int) -> int:
    return fresh_db_size + QUOTA_MARGIN


@pytest.fixture(scope="module")
def quota_server(servers: Servers, quota_bytes: int) -> Client:
    return Client(servers.start("quota", "--quota-backend-bytes", str(quota_bytes)))


@pytest.fixture(scope="module")
def plain_server(servers: Servers) -> Client:
    return Client(servers.start("plain"))


def _free_space_and_disarm(c: Client, prefix: bytes) -> None:
    """Leave the shared server as the next test expects it: no keys of ``prefix``, the
    space reclaimed, no alarm."""
    c.delete_prefix(prefix)
    with contextlib.suppress(grpc.RpcError):  # already compacted at this revision
        c.compact(c.revision())
    c.defragment()
    c.disarm_all()


@pytest.fixture
def quota(quota_server: Client, ns: bytes) -> Iterator[Client]:
    """The small-quota server; after the test its keys are gone and no alarm is left."""
    yield quota_server
    _free_space_and_disarm(quota_server, ns)


@pytest.fixture
def plain(plain_server: Client) -> Iterator[Client]:
    """The server without a quota; no alarm is left after the test."""
    yield plain_server
    plain_server.disarm_all()


def _ro_txn(c: Client, prefix: bytes) -> R.TxnResponse:
    return c.kv.Txn(R.TxnRequest(success=[op_get(prefix, prefix_end(prefix))]))


def _stored_after_refusal(c: Client, prefix: bytes, accepted: int) -> int:
    """How many of the fill's keys are stored: every accepted put, and perhaps the
    refused one. (etcd checks the quota again when it applies a put; a put that passed
    the first check but not that one is written *and* answered "database space
    exceeded". etcd's backend grows its file on asynchronous commits, so that happens
    now and then.)"""
    stored = c.get_prefix(prefix, count_only=True).count
    assert stored in (accepted, accepted + 1), (stored, accepted)
    return stored


def test_quota_refusal_raises_nospace_and_caps_writes(quota: Client, quota_bytes: int,
                                                       ns: bytes) -> None:
    """The whole NOSPACE story an operator lives through: the refused put and its error,
    the alarm in Alarm GET and Status, which requests still work and which fail while it
    is active, that Defragment does not clear it, and that disarming brings writes back."""
    keep, fill = ns + b"keep", ns + b"fill/"
    keep_rev = quota.put(keep, b"k")
    accepted, refusal = fill_until_refused(quota, fill, VALUE_BYTES)
    assert refusal == NOSPACE_ERROR
    assert accepted >= 1, "the quota is above the fresh database: some puts fit"

    me = quota.member_id()
    nospace = [(me, R.NOSPACE)]
    resp = quota.alarm(GET)
    assert resp.header.member_id == me
    assert [(a.memberID, a.alarm) for a in resp.alarms] == nospace
    assert quota.alarms() == nospace
    assert [(a.memberID, a.alarm) for a in quota.alarm(GET, alarm=R.NOSPACE).alarms] == nospace
    assert list(quota.status().errors) == [f"memberID:{me} alarm:NOSPACE "]

    # Every request that costs space fails, even a tiny put: the alarm caps the store.
    assert rpc_error(lambda: quota.put(ns + b"tiny", b"")) == NOSPACE_ERROR
    assert rpc_error(lambda: quota.lease.LeaseGrant(R.LeaseGrantRequest(TTL=60))) == (
        NOSPACE_ERROR)
    assert rpc_error(lambda: quota.kv.Txn(R.TxnRequest(success=[op_put(ns + b"t")]))) == (
        NOSPACE_ERROR)
    # A txn costs its larger branch, whichever branch would run.
    never = R.Compare(key=keep, target=R.Compare.VERSION, result=R.Compare.EQUAL, version=99)
    assert rpc_error(lambda: quota.kv.Txn(R.TxnRequest(
        compare=[never], success=[op_put(ns + b"t")]))) == NOSPACE_ERROR

    # Reads work; a read-only Txn passes the quota check while the file is under the
    # quota, and (etcd's rule) fails like a write once the file has reached it.
    stored = _stored_after_refusal(quota, fill, accepted)
    size = quota.status().dbSize
    if size < quota_bytes:
        assert _ro_txn(quota, fill).responses[0].response_range.count == stored
    else:
        assert rpc_error(lambda: _ro_txn(quota, fill)) == NOSPACE_ERROR

    # The requests that free space work.
    deleted = quota.delete_prefix(fill)
    assert deleted.deleted == stored
    assert deleted.header.revision == keep_rev + stored + 1
    quota.compact(deleted.header.revision)
    before = quota.status().dbSize
    quota.defragment()
    after = quota.status()
    assert after.dbSize < before
    assert after.dbSize < quota_bytes

    # Defragment alone does not clear the alarm.
    assert quota.alarms() == nospace
    assert list(after.errors) == [f"memberID:{me} alarm:NOSPACE "]
    assert rpc_error(lambda: quota.put(ns + b"tiny", b"")) == NOSPACE_ERROR
    assert rpc_error(lambda: quota.lease.LeaseGrant(R.LeaseGrantRequest(TTL=60))) == (
        NOSPACE_ERROR)
    assert rpc_error(lambda: quota.kv.Txn(R.TxnRequest(success=[op_put(ns + b"t")]))) == (
        NOSPACE_ERROR)

    # Under the quota again, read-only and empty Txns work although NOSPACE is active.
    assert _ro_txn(quota, keep).responses[0].response_range.count == 1
    assert quota.kv.Txn(R.TxnRequest()).succeeded

    # Disarming clears it (the reply names the alarm cleared); writes work again.
    resp = quota.alarm(DEACTIVATE, me, R.NOSPACE)
    assert [(a.memberID, a.alarm) for a in resp.alarms] == nospace
    assert quota.alarms() == []
    assert not quota.status().errors
    assert quota.put(ns + b"after", b"v") == quota.revision()
    lease = quota.lease.LeaseGrant(R.LeaseGrantRequest(TTL=60))
    quota.lease.LeaseRevoke(R.LeaseRevokeRequest(ID=lease.ID))


def test_txns_that_cost_nothing_work_under_nospace(plain: Client, ns: bytes) -> None:
    """While NOSPACE is active (and the file is under the quota), a Txn is refused only
    if it costs space, i.e. holds a put in either branch (etcd's capped applier checks
    the txn's cost): read-only, empty and delete-only Txns work, so a client can still
    free space with a Txn."""
    keep = ns + b"keep"
    plain.put(keep, b"k")
    me = plain.member_id()
    plain.alarm(ACTIVATE, me, R.NOSPACE)
    assert _ro_txn(plain, keep).responses[0].response_range.count == 1
    assert plain.kv.Txn(R.TxnRequest()).succeeded
    assert rpc_error(lambda: plain.kv.Txn(R.TxnRequest(
        success=[op_delete(keep)], failure=[op_put(keep)]))) == NOSPACE_ERROR
    rev = plain.revision()
    resp = plain.kv.Txn(R.TxnRequest(success=[op_delete(keep)]))
    assert resp.responses[0].response_delete_range.deleted == 1
    assert resp.header.revision == rev + 1
    assert plain.get(keep).count == 0
    assert plain.alarms() == [(me, R.NOSPACE)]


def test_file_at_or_over_quota_refuses_every_txn(servers: Servers) -> None:
    """Once the database file has reached the quota, etcd refuses every Put, Txn (even an
    empty or read-only one: it costs 0, and size + 0 is not below the quota) and
    LeaseGrant, and raises NOSPACE; Range still works. (A quota below the fresh database
    size puts a server in that state from its start.)"""
    c = Client(servers.start("tiny-quota", "--quota-backend-bytes", "4096"))
    assert c.status().dbSize >= 4096
    assert c.get(b"/tiny/", prefix_end(b"/tiny/")).count == 0
    assert rpc_error(lambda: c.kv.Txn(R.TxnRequest())) == NOSPACE_ERROR
    me = c.member_id()
    assert c.alarms() == [(me, R.NOSPACE)], "the refused txn raised NOSPACE"
    assert rpc_error(lambda: _ro_txn(c, b"/tiny/")) == NOSPACE_ERROR
    assert rpc_error(lambda: c.put(b"/tiny/k", b"")) == NOSPACE_ERROR
    assert rpc_error(lambda: c.lease.LeaseGrant(R.LeaseGrantRequest(TTL=60))) == (
        NOSPACE_ERROR)
    assert c.get(b"/tiny/", prefix_end(b"/tiny/")).count == 0


@pytest.mark.interop
def test_etcdctl_alarm_list_and_disarm(quota: Client, etcdctl: Etcdctl, ns: bytes) -> None:
    """``etcdctl alarm list`` shows the NOSPACE a full quota raised (text and JSON),
    ``etcdctl put`` reports the quota error, ``etcdctl defrag`` works meanwhile, and
    ``etcdctl alarm disarm`` prints the alarms it cleared and lets writes through."""
    ep = quota.endpoint
    accepted, refusal = fill_until_refused(quota, ns, VALUE_BYTES)
    assert refusal == NOSPACE_ERROR
    me = quota.member_id()
    assert etcdctl.run(ep, "alarm", "list").stdout == f"memberID:{me} alarm:NOSPACE \n"
    listed = etcdctl.json(ep, "alarm", "list")
    assert listed["alarms"] == [{"memberID": me, "alarm": R.NOSPACE}]
    assert listed["header"]["member_id"] == me
    res = etcdctl.run(ep, "put", (ns + b"x").decode(), "v", check=False)
    assert res.returncode != 0
    assert "etcdserver: mvcc: database space exceeded" in res.stderr

    stored = _stored_after_refusal(quota, ns, accepted)
    assert etcdctl.run(ep, "del", "--prefix", ns.decode()).stdout == f"{stored}\n"
    assert etcdctl.run(ep, "compaction", "--physical", str(quota.revision())).stdout == (
        f"compacted revision {quota.revision()}\n")
    assert etcdctl.run(ep, "defrag").stdout == f"Finished defragmenting etcd member[{ep}]\n"
    assert etcdctl.run(ep, "alarm", "list").stdout == f"memberID:{me} alarm:NOSPACE \n"

    assert etcdctl.run(ep, "alarm", "disarm").stdout == f"memberID:{me} alarm:NOSPACE \n"
    assert etcdctl.run(ep, "alarm", "list").stdout == ""
    assert etcdctl.run(ep, "alarm", "disarm").stdout == ""
    assert etcdctl.run(ep, "put", (ns + b"x").decode(), "v").stdout == "OK\n"


def _pairs(resp: Any) -> list[tuple[int, int]]:
    return [(a.memberID, a.alarm) for a in resp.alarms]


def test_alarm_actions_and_member_id_zero(plain: Client, ns: bytes) -> None:
    """Alarm ACTIVATE / DEACTIVATE / GET as etcd applies them: memberID 0 is an ordinary
    member id (no wildcard; ``etcdctl alarm disarm`` expands the list client-side),
    ACTIVATE of an active alarm answers that alarm, ACTIVATE of NONE and DEACTIVATE of an
    inactive alarm change nothing and answer no alarm, GET NONE lists all, and any
    member's NOSPACE refuses puts."""
    me = plain.member_id()
    zero, mine = (0, R.NOSPACE), (me, R.NOSPACE)
    assert _pairs(plain.alarm(ACTIVATE, 0, R.NOSPACE)) == [zero]
    assert _pairs(plain.alarm(ACTIVATE, 5, R.NONE)) == []
    assert plain.alarms() == [zero]
    assert _pairs(plain.alarm(GET, alarm=R.NOSPACE)) == [zero]
    assert _pairs(plain.alarm(GET, alarm=R.CORRUPT)) == []
    assert rpc_error(lambda: plain.put(ns + b"k", b"v")) == NOSPACE_ERROR

    assert _pairs(plain.alarm(ACTIVATE, me, R.NOSPACE)) == [mine]
    assert sorted(plain.alarms()) == sorted([zero, mine])
    assert _pairs(plain.alarm(DEACTIVATE, 0, R.NONE)) == [], "no server-side wildcard"
    assert _pairs(plain.alarm(DEACTIVATE, me, R.CORRUPT)) == []
    assert sorted(plain.alarms()) == sorted([zero, mine])
    assert _pairs(plain.alarm(DEACTIVATE, 0, R.NOSPACE)) == [zero]
    assert _pairs(plain.alarm(DEACTIVATE, 0, R.NOSPACE)) == []
    assert plain.alarms() == [mine]
    assert rpc_error(lambda: plain.put(ns + b"k", b"v")) == NOSPACE_ERROR
    assert _pairs(plain.alarm(DEACTIVATE, me, R.NOSPACE)) == [mine]
    assert plain.alarms() == []
    assert plain.put(ns + b"k", b"v") == plain.revision()


def test_activate_of_an_active_alarm_answers_it(plain: Client) -> None:
    """ACTIVATE of an alarm that is already active changes nothing and answers the
    active alarm (etcd's alarm store returns the member it already holds), so a client
    can tell "raised" from "nothing to raise" (ACTIVATE NONE answers no alarm)."""
    me = plain.member_id()
    assert _pairs(plain.alarm(ACTIVATE, me, R.NOSPACE)) == [(me, R.NOSPACE)]
    assert _pairs(plain.alarm(ACTIVATE, me, R.NOSPACE)) == [(me, R.NOSPACE)]
    assert plain.alarms() == [(me, R.NOSPACE)]


def test_status_errors_format_alarms_like_gogo_text(plain: Client) -> None:
    """Status.errors has one ``memberID:<id> alarm:<NAME> `` entry per alarm (trailing
    space), in gogo's text form, which leaves out a zero memberID: an alarm raised for
    member 0 reads ``alarm:NOSPACE ``."""
    me = plain.member_id()
    assert not plain.status().errors
    plain.alarm(ACTIVATE, me, R.NOSPACE)
    assert list(plain.status().errors) == [f"memberID:{me} alarm:NOSPACE "]
    plain.alarm(ACTIVATE, 0, R.NOSPACE)
    assert sorted(plain.status().errors) == sorted(
        ["alarm:NOSPACE ", f"memberID:{me} alarm:NOSPACE "])
    plain.disarm_all()
    assert not plain.status().errors


def test_nospace_alarm_survives_a_restart(servers: Servers, ns: bytes) -> None:
    """Alarms are part of the member's durable state: a NOSPACE raised before a crash
    (SIGKILL) is still listed, and still refuses puts, after the restart, until it is
    disarmed."""
    needs_etcdlite()
    sp = servers.start("restart-alarm")
    c = Client(sp)
    me = c.member_id()
    c.alarm(ACTIVATE, me, R.NOSPACE)
    sp.stop(signal.SIGKILL)

    c = Client(servers.start_etcdlite_on(sp.data_dir))
    assert c.alarms() == [(me, R.NOSPACE)]
    assert list(c.status().errors) == [f"memberID:{me} alarm:NOSPACE "]
    assert rpc_error(lambda: c.put(ns + b"k", b"v")) == NOSPACE_ERROR
    c.disarm_all()
    assert c.put(ns + b"k", b"v") == c.revision()
