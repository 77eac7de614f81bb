"""Runs the interaction scripts in ``testdata/``: commands above ``----``, the expected
canonical output below.

To regenerate the expected output after an intended change, run either
``RAFT_REWRITE=1 python -m pytest tests/raft/test_raft_interaction.py`` or
``python tests/raft/test_raft_interaction.py --rewrite [file ...]``, then read the diff:
only understood changes get committed.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path

import pytest
from raft_harness import Case, render_script, run_script

TESTDATA = Path(__file__).parent / "testdata"
SCRIPTS = sorted(TESTDATA.glob("*.txt"))


def _rewrite_requested() -> bool:
    return os.environ.get("RAFT_REWRITE", "") not in ("", "0")


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_interaction_script(path: Path) -> None:
    text = path.read_text()
    items, outputs = run_script(text)
    if _rewrite_requested():
        path.write_text(render_script(items, outputs))
        return
    for item in items:
        if isinstance(item, Case) and outputs[id(item)] != item.expected:
            diff = "\n".join(
                difflib.unified_diff(
                    item.expected, outputs[id(item)], "expected", "actual", lineterm=""
                )
            )
            pytest.fail(f"{path.name}:{item.line}: {item.command}\n{diff}")


def test_there_are_scripts() -> None:
    assert len(SCRIPTS) >= 8


def main(argv: list[str]) -> int:
    if "--rewrite" not in argv:
        print(__doc__)
        return 2
    names = [a for a in argv if a != "--rewrite"]
    paths = [Path(n) for n in names] if names else SCRIPTS
    for path in paths:
        items, outputs = run_script(path.read_text())
        path.write_text(render_script(items, outputs))
        print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
