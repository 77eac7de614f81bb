"""The committed *_pb2.py / *_pb2.pyi files are exactly what generate() produces today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from etcdlite.protos import generate as gen

REGENERATE = "run `python -m etcdlite.protos.generate` and commit the result"


def test_every_proto_source_is_compiled() -> None:
    sources = sorted(p.name for p in gen.PROTOS_DIR.glob("*.proto"))
    assert sources == sorted(gen.PROTO_FILES)


def test_committed_files_match_a_fresh_generation(tmp_path: Path) -> None:
    written = gen.generate(tmp_path)
    names = gen.generated_names()
    assert sorted(p.name for p in written) == names
    assert sorted(p.name for p in tmp_path.iterdir()) == names

    committed = sorted(p.name for p in gen.PROTOS_DIR.glob("*_pb2.py*"))
    assert committed == names, f"missing or stale generated files in protos/: {REGENERATE}"

    differing = [
        name
        for name in names
        if (tmp_path / name).read_bytes() != (gen.PROTOS_DIR / name).read_bytes()
    ]
    assert not differing, f"out of date: {differing}; {REGENERATE}"


def test_no_grpc_service_modules_are_committed() -> None:
    # Generated service code would carry our proto package in its method paths.
    assert not list(gen.PROTOS_DIR.glob("*_pb2_grpc.py"))


def test_command_line_writes_to_given_directory(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "etcdlite.protos.generate", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == gen.generated_names()
    assert (tmp_path / "rpc_pb2.py").read_bytes() == (gen.PROTOS_DIR / "rpc_pb2.py").read_bytes()


def test_generated_modules_use_our_file_names_and_imports() -> None:
    text = (gen.PROTOS_DIR / "rpc_pb2.py").read_text()
    assert "# source: etcdlite/protos/rpc.proto" in text
    assert "from etcdlite.protos import kv_pb2" in text
    assert "from etcdlite.protos import auth_pb2" in text
