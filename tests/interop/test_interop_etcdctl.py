"""The real etcdctl against a started etcdlite process.

Expectations are etcd's (exact revisions, versions, errors), so they hold without a
real etcd here; ``test_etcdctl_output_matches_real_etcd`` additionally runs the same
script against real etcd when it is installed and compares the outputs.
"""

from __future__ import annotations

import base64
import re

import pytest

pytestmark = pytest.mark.interop


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def kv_tuples(resp: dict) -> list[tuple[str, str, int, int, int]]:
    return [
        (base64.b64decode(kv["key"]).decode(), base64.b64decode(kv.get("value", "")).decode(),
         kv["create_revision"], kv["mod_revision"], kv["version"])
        for kv in resp.get("kvs", [])
    ]


@pytest.fixture
def seeded(etcdlite_proc, etcdctl):
    """a=1 (rev 2), b=2 (rev 3), c=3 (rev 4), a=11 (rev 5)."""
    ep = etcdlite_proc.endpoint
    for k, v in (("a", "1"), ("b", "2"), ("c", "3"), ("a", "11")):
        assert etcdctl.run(ep, "put", k, v).stdout == "OK\n"
    return ep


def test_put_get_json_has_exact_revisions(seeded, etcdctl):
    resp = etcdctl.json(seeded, "get", "a")
    assert resp["header"]["revision"] == 5
    assert resp["header"]["raft_term"] == 2
    assert kv_tuples(resp) == [("a", "11", 2, 5, 2)]
    assert resp["count"] == 1


def test_get_prefix_from_key_rev_limit(seeded, etcdctl):
    assert etcdctl.run(seeded, "get", "a", "--prefix").stdout == "a\n11\n"
    assert etcdctl.run(seeded, "get", "b", "--from-key").stdout == "b\n2\nc\n3\n"
    assert etcdctl.run(seeded, "get", "a", "--rev", "2").stdout == "a\n1\n"
    assert etcdctl.run(seeded, "get", "a", "--rev", "1").stdout == ""
    resp = etcdctl.json(seeded, "get", "", "--from-key", "--limit", "2")
    assert [t[0] for t in kv_tuples(resp)] == ["a", "b"]
    assert resp["more"] is True
    assert resp["count"] == 3


def test_get_sort_keys_only_print_value_only(seeded, etcdctl):
    out = etcdctl.run(seeded, "get", "", "--from-key", "--sort-by=MODIFY", "--order=DESCEND",
                      "--keys-only").stdout
    assert out.split() == ["a", "c", "b"]
    out = etcdctl.run(seeded, "get", "", "--from-key", "--sort-by=CREATE", "--order=ASCEND",
                      "--keys-only").stdout
    assert out.split() == ["a", "b", "c"]
    out = etcdctl.run(seeded, "get", "", "--from-key", "--sort-by=VALUE", "--order=DESCEND",
                      "--print-value-only").stdout
    assert out.split() == ["3", "2", "11"]
    assert etcdctl.run(seeded, "get", "a", "--print-value-only").stdout == "11\n"


def test_del_prev_kv_and_prefix(seeded, etcdctl):
    assert etcdctl.run(seeded, "del", "b", "--prev-kv").stdout == "1\nb\n2\n"
    assert etcdctl.run(seeded, "del", "nothing").stdout == "0\n"
    resp = etcdctl.json(seeded, "get", "a")
    assert resp["header"]["revision"] == 6  # deleting a missing key wrote nothing
    assert etcdctl.run(seeded, "del", "", "--prefix").stdout == "2\n"
    assert etcdctl.run(seeded, "get", "", "--prefix").stdout == ""


def test_txn_from_stdin_both_branches(seeded, etcdctl):
    ok = etcdctl.run(seeded, "txn", "-w", "json",
                     stdin='mod("a") > "0"\n\nput a x\nget b\n\nput b y\n\n').stdout
    assert '"succeeded":true' in ok
    assert '"revision":6' in ok
    assert etcdctl.run(seeded, "get", "a", "--print-value-only").stdout == "x\n"
    failed = etcdctl.run(seeded, "txn", stdin='value("zz") = "1"\n\nput q 1\n\nput r 2\n\n')
    assert failed.stdout == "FAILURE\n\nOK\n"
    assert etcdctl.run(seeded, "get", "r", "--print-value-only").stdout == "2\n"
    assert etcdctl.run(seeded, "get", "q").stdout == ""


def test_compaction_and_compacted_revision_error(seeded, etcdctl):
    assert etcdctl.run(seeded, "compaction", "3").stdout == "compacted revision 3\n"
    res = etcdctl.run(seeded, "get", "a", "--rev", "2", check=False)
    assert res.returncode != 0
    assert "etcdserver: mvcc: required revision has been compacted" in res.stderr
    assert etcdctl.run(seeded, "get", "a", "--rev", "3").stdout == "a\n1\n"
    res = etcdctl.run(seeded, "compaction", "3", check=False)
    assert "required revision has been compacted" in res.stderr
    res = etcdctl.run(seeded, "compaction", "99", check=False)
    assert "etcdserver: mvcc: required revision is a future revision" in res.stderr
    assert etcdctl.run(seeded, "compaction", "--physical", "5").stdout == (
        "compacted revision 5\n"
    )


def test_endpoint_status_health_member_list(etcdlite_proc, etcdctl):
    ep = etcdlite_proc.endpoint
    [status] = etcdctl.json(ep, "endpoint", "status")
    s = status["Status"]
    assert status["Endpoint"] == ep
    assert s["version"].startswith("3.5.")
    assert s["leader"] == s["header"]["member_id"]
    assert s["raftTerm"] == 2
    assert s["raftIndex"] == s["raftAppliedIndex"] >= 1
    assert s["dbSize"] > 0
    health = etcdctl.run(ep, "endpoint", "health")
    # etcdctl 3.4 prints the verdict on stderr, 3.5 on stdout.
    assert re.match(rf"{re.escape(ep)} is healthy: successfully committed proposal",
                    health.stdout + health.stderr)
    members = etcdctl.json(ep, "member", "list")
    assert "revision" not in members["header"]
    [m] = members["members"]
    assert m["ID"] == s["header"]["member_id"]
    assert m["name"] == "default"
    assert m["peerURLs"] == ["http://localhost:2380"]
    assert m["clientURLs"] == [f"http://{ep}"]
    # The default member id is etcd's own for the default peer URL and token.
    assert f'{m["ID"]:x}' == "8e9e05c52164694d"


SCRIPT: list[tuple[str, ...]] = [
    ("put", "a", "1"), ("put", "b", "2"), ("put", "a", "3"), ("put", "c/d", "4"),
    ("-w", "json", "get", "a"), ("-w", "json", "get", "", "--from-key"),
    ("get", "c", "--prefix"), ("get", "", "--from-key", "--sort-by=VERSION", "--limit", "1"),
    ("-w", "json", "get", "a", "--rev", "3"), ("del", "b", "--prev-kv"),
    ("-w", "json", "del", "zz"), ("-w", "json", "put", "a", "5", "--prev-kv"),
    ("compaction", "4"), ("get", "a", "--rev", "3"), ("get", "a", "--rev", "99"),
    ("-w", "json", "get", "", "--from-key", "--count-only"),
    ("-w", "json", "member", "list"),
]


def _normalise(text: str, endpoint: str, peer: str) -> str:
    text = text.replace(endpoint, "ENDPOINT").replace(peer, "PEER")
    return re.sub(r'"ts":"[^"]*"|target":"[^"]*"', "", text)


def test_etcdctl_output_matches_real_etcd(start_etcdlite, start_real_etcd, etcdctl, port_factory):
    """The same etcdctl script against real etcd and etcdlite prints the same things."""
    pport = port_factory()
    peer = f"http://127.0.0.1:{pport}"
    real = start_real_etcd(peer_port=pport)
    lite = start_etcdlite(peer_url=peer)
    want = _run_script(etcdctl, real.endpoint, peer)
    got = _run_script(etcdctl, lite.endpoint, peer)
    for cmd, w, g in zip(SCRIPT, want, got, strict=True):
        assert g == w, f"etcdctl {' '.join(cmd)}"


def _run_script(etcdctl, endpoint: str, peer: str) -> list[tuple[int, str, str]]:
    out = []
    for cmd in SCRIPT:
        res = etcdctl.run(endpoint, *cmd, check=False)
        err = res.stderr.strip().splitlines()
        out.append((res.returncode, _normalise(res.stdout, endpoint, peer),
                    err[-1] if err else ""))
    return out
