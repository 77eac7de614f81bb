"""The ``etcdlite`` command as a process: flags, logs, signals, restarts, bad data."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from etcd_procs import etcdlite_cmdline, free_port

from etcdlite.protos.rpc_pb2 import (
    CompactionRequest,
    MemberListRequest,
    PutRequest,
    RangeRequest,
    StatusRequest,
)
from etcdlite.server.cli import main, parse_args, to_config


def log_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_port_zero_logs_the_real_url_and_ready(tmp_path, etcdlite_cmd):
    proc = subprocess.Popen(
        [*etcdlite_cmd, "--data-dir", str(tmp_path / "d"), "--listen-client-urls",
         "http://127.0.0.1:0"],
        stderr=subprocess.PIPE, text=True)
    try:
        ready = None
        for line in proc.stderr:
            rec = json.loads(line)
            assert {"level", "ts", "caller", "msg"} <= rec.keys()
            if rec["msg"] == "ready to serve client requests":
                ready = rec
                break
        assert ready is not None
        [url] = ready["client-urls"]
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_cleanly(etcdlite_proc, sig):
    etcdlite_proc.stub("KV").Put(PutRequest(key=b"k", value=b"v"))
    assert etcdlite_proc.stop(sig) == 0
    msgs = [r["msg"] for r in log_lines(etcdlite_proc.log())]
    assert "received signal; shutting down" in msgs
    assert msgs[-1] == "stopped serving client requests"


def test_acknowledged_writes_survive_kill_9(start_etcdlite, tmp_path):
    data = tmp_path / "crash.etcd"
    first = start_etcdlite(data_dir=data)
    kv = first.stub("KV")
    revs = [kv.Put(PutRequest(key=b"k%03d" % i, value=b"v%d" % i)).header.revision
            for i in range(50)]
    kv.Compact(CompactionRequest(revision=10))
    before = first.stub("Maintenance").Status(StatusRequest())
    # As etcd: 4 entries to start a new member (bootstrap, leader's empty entry, member
    # attributes, cluster version), then one per request.
    assert (before.raftTerm, before.raftIndex) == (2, 4 + 51)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL

    second = start_etcdlite(data_dir=data)
    kv = second.stub("KV")
    got = kv.Range(RangeRequest(key=b"k", range_end=b"l"))
    assert got.count == 50
    assert [kv_.mod_revision for kv_ in got.kvs] == revs
    assert got.header.revision == revs[-1]
    with pytest.raises(Exception, match="required revision has been compacted"):
        kv.Range(RangeRequest(key=b"k000", revision=9))
    assert kv.Range(RangeRequest(key=b"k000", revision=10)).kvs[0].value == b"v0"
    status = second.stub("Maintenance").Status(StatusRequest())
    # A restart is a new term whose leader appends an empty entry and republishes.
    assert (status.raftTerm, status.raftIndex) == (3, before.raftIndex + 2)
    assert kv.Put(PutRequest(key=b"next")).header.revision == revs[-1] + 1


def test_damaged_data_dir_refuses_to_start(tmp_path, etcdlite_cmd):
    db = tmp_path / "bad.etcd" / "member" / "db"
    db.mkdir(parents=True)
    (db / "data.mdb").write_bytes(b"\x5a" * 65536)
    res = subprocess.run([*etcdlite_cmd, "--data-dir", str(tmp_path / "bad.etcd"),
                          "--listen-client-urls", "http://127.0.0.1:0"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    fatal = [r for r in log_lines(res.stderr) if r["level"] == "fatal"]
    assert fatal and "damaged" in fatal[0]["msg"]
    assert "Traceback" not in res.stderr


def test_env_and_flags_like_etcd(start_etcdlite):
    srv = start_etcdlite("--max-wals", "10", "--pre-vote",
                         env={"ETCD_NAME": "from-env", "ETCD_MAX_TXN_OPS": "7"})
    [m] = srv.stub("Cluster").MemberList(MemberListRequest()).members
    assert m.name == "from-env"
    warns = [r["msg"] for r in log_lines(srv.log()) if r["level"] == "warn"]
    assert "--max-wals is not implemented in etcdlite yet; ignoring it" in warns
    assert "--pre-vote is not implemented in etcdlite yet; ignoring it" in warns


def test_unknown_flag_is_an_error(capsys):
    assert main(["--bogus-flag"], {}) == 2
    assert "flag provided but not defined: -bogus-flag" in capsys.readouterr().err


def test_version_flag(capsys):
    assert main(["--version"], {}) == 0
    out = capsys.readouterr().out
    assert "etcd API Version: 3.5." in out


def test_go_style_flag_syntax_and_env_precedence():
    parsed = parse_args(
        ["-name", "a", "--data-dir=/tmp/x", "--max-request-bytes", "2048", "--force-new-cluster",
         "--strict-reconfig-check=false"],
        {"ETCD_NAME": "ignored", "ETCD_LOG_LEVEL": "warn", "ETCD_NOT_A_FLAG": "1"},
    )
    cfg = to_config(parsed.values)
    assert (cfg.name, str(cfg.data_dir), cfg.max_request_bytes, cfg.log_level) == (
        "a", "/tmp/x", 2048, "warn")
    assert parsed.values["force-new-cluster"] == "true"
    assert parsed.values["strict-reconfig-check"] == "false"
    assert any("shadowed by corresponding flag" in w for w in parsed.warnings)
    assert any("unrecognized environment variable ETCD_NOT_A_FLAG" in w for w in parsed.warnings)


def test_default_data_dir_is_name_dot_etcd():
    assert str(to_config({"name": "n1"}).resolved_data_dir()) == "n1.etcd"


def test_a_second_member_on_the_same_data_dir_refuses_to_start(start_etcdlite, tmp_path):
    """Two members on one data directory would interleave their WAL and LMDB writes;
    the second one stops at once with a clear message (etcd locks its WAL the same way),
    and the first keeps serving."""
    first = start_etcdlite()
    done = subprocess.run(etcdlite_cmdline(first.data_dir, free_port()), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    fatal = [r for r in log_lines(done.stderr) if r["level"] == "fatal"]
    assert fatal and fatal[0]["msg"] == "refusing to start: the data directory is in use"
    assert "in use by another running etcd member" in fatal[0]["error"]
    first.stub("KV").Put(PutRequest(key=b"still", value=b"serving"))
