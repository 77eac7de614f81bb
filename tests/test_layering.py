"""The import rules of architecture.md, enforced by reading every module's imports.

protos < raft, storage < server: a layer imports only from layers below it; raft is a
pure state machine (standard library only, no I/O, clock, threads or asyncio); storage
does no networking and no asyncio.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {
    "protos": {"etcdlite.protos", "google.protobuf", "grpc", "grpc_tools"},
    "raft": {"etcdlite.raft"},
    "storage": {"etcdlite.storage", "etcdlite.protos", "lmdb", "sortedcontainers",
                "google.protobuf"},
}
STDLIB = set(sys.stdlib_module_names)
FORBIDDEN_STDLIB = {
    "raft": {"asyncio", "threading", "socket", "time", "os", "io", "subprocess", "select",
             "selectors", "signal", "multiprocessing", "concurrent", "pathlib", "tempfile"},
    "storage": {"asyncio", "socket", "threading", "time", "subprocess", "signal"},
    "protos": set(),
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: within the same package
                continue
            found.add(node.module or "")
    return found


def allowed(name: str, layer: str) -> bool:
    top = name.split(".")[0]
    if top in STDLIB:
        return top not in FORBIDDEN_STDLIB[layer]
    return any(name == p or name.startswith(p + ".") for p in LAYERS[layer])


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layer_imports(layer: str) -> None:
    bad = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        if path.name.endswith("_pb2.py") or path.name == "generate.py":
            continue  # generated code, and the build-time generator (grpc_tools, subprocess)
        bad += [f"{path.relative_to(ROOT)}: {name}" for name in sorted(imports_of(path))
                if not allowed(name, layer)]
    assert not bad, "imports that break the layering:\n" + "\n".join(bad)


def test_the_checker_can_fail() -> None:
    assert not allowed("etcdlite.server.etcd", "storage")
    assert not allowed("asyncio", "raft")
    assert not allowed("etcdlite.storage.mvcc", "raft")
    assert allowed("etcdlite.protos.kv_pb2", "storage")
