"""Differential stories for Maintenance.Status / Alarm and Cluster.MemberList (§4.11, §4.12)."""

from __future__ import annotations

from etcdlite.protos import rpc_pb2 as R


def normalize_status(resp: R.StatusResponse, server) -> None:
    # The binary version legitimately differs (etcd "3.4.23", etcdlite reports "3.5.1"): only
    # check it has the major.minor.patch shape clients parse (clientv3 RejectOldCluster, etcd3gw).
    parts = resp.version.split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts), resp.version
    assert (int(parts[0]), int(parts[1])) >= (3, 2), resp.version
    resp.version = "<version>"
    # Backend file sizes depend on the storage engine (bbolt vs LMDB): only check they are sane.
    assert resp.dbSize > 0 and 0 < resp.dbSizeInUse <= resp.dbSize, (resp.dbSize,
                                                                      resp.dbSizeInUse)
    resp.dbSize = resp.dbSizeInUse = 0


def normalize_members(resp: R.MemberListResponse, server) -> None:
    # Each server advertises its own client URL (the ports differ); everything else must match.
    for m in resp.members:
        urls = ["<own client url>" if u == server.url else u for u in m.clientURLs]
        del m.clientURLs[:]
        m.clientURLs.extend(urls)


def status(pair) -> R.StatusResponse:
    return pair.both(lambda m: m.Status(R.StatusRequest()), "Maintenance",
                     normalize=normalize_status)


def test_status(pair):
    r = status(pair)
    assert r.leader == r.header.member_id and r.raftTerm == r.header.raft_term
    assert r.header.revision == 1 and not r.errors and not r.isLearner
    for i in range(3):
        pair.put(b"k%d" % i, b"v")
    pair.delete(b"k0")
    r = status(pair)
    assert r.header.revision == 5


def test_member_list(pair):
    r = pair.both(lambda c: c.MemberList(R.MemberListRequest()), "Cluster",
                  normalize=normalize_members)
    assert len(r.members) == 1
    m = r.members[0]
    assert (m.ID, m.name, list(m.peerURLs)) == (r.header.member_id, "default",
                                                 [pair.peer_url])
    assert list(m.clientURLs) == [pair.real.url]
    assert r.header.revision == 0  # membership headers carry no revision
    pair.put(b"k", b"v")
    pair.both(lambda c: c.MemberList(R.MemberListRequest()), "Cluster",
              normalize=normalize_members)


def test_alarm_get_is_empty(pair):
    def _alarm_header_of_3_5(resp: R.AlarmResponse, server) -> None:
        # etcd 3.4.23 sends Alarm responses without a header; etcd 3.5.1 fills it, and
        # etcdlite follows 3.5.1. Against 3.4, compare everything but the header.
        if pair.real.flavor == "etcd-3.4":
            resp.ClearField("header")

    r = pair.both(lambda m: m.Alarm(R.AlarmRequest(action=R.AlarmRequest.GET)), "Maintenance",
                  normalize=_alarm_header_of_3_5)
    assert not r.alarms
    pair.put(b"k", b"v")
    pair.both(lambda m: m.Alarm(R.AlarmRequest(action=R.AlarmRequest.GET, alarm=R.NONE)),
              "Maintenance", normalize=_alarm_header_of_3_5)
    pair.both(lambda m: m.Alarm(R.AlarmRequest(action=R.AlarmRequest.GET, alarm=R.NOSPACE)),
              "Maintenance", normalize=_alarm_header_of_3_5)
