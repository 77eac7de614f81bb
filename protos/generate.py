"""Regenerate the committed ``*_pb2.py`` / ``*_pb2.pyi`` modules from the ``.proto`` sources.

This is the only supported way to produce the generated files in ``protos/``::

    python -m etcdlite.protos.generate            # rewrite protos/*_pb2.py{,i} in place
    python -m etcdlite.protos.generate OUT_DIR    # write them somewhere else

The sources live flat in ``protos/`` but import each other as ``etcdlite/protos/<name>.proto``.
To compile them under that name (which is also the file name they register in protobuf's
default descriptor pool, see ``etcdlite.protos``), they are copied into a temporary tree
``<tmp>/etcdlite/protos/`` and ``grpc_tools.protoc`` runs with ``-I <tmp>``. protoc then emits
modules that import each other as ``from etcdlite.protos import kv_pb2``.

No ``*_pb2_grpc.py`` is generated: its method paths would carry our proto package
(``etcdlite.etcdserverpb``) rather than etcd's; ``etcdlite.protos.wire`` owns the paths.

The output depends only on the sources and the grpcio-tools version (pinned in pyproject), so
``tests/protos/test_generated_up_to_date.py`` can compare a fresh run byte for byte.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

#: The ``.proto`` sources, in dependency order.
PROTO_FILES: tuple[str, ...] = (
    "kv.proto",
    "auth.proto",
    "rpc.proto",
    "v3lock.proto",
    "v3election.proto",
    "health.proto",
    "internal.proto",
)

#: Directory inside the protoc include root; it becomes the registered file-name prefix.
IMPORT_PREFIX: tuple[str, ...] = ("etcdlite", "protos")

#: Where the sources live and where the generated modules are committed.
PROTOS_DIR: Path = Path(__file__).resolve().parent

#: Suffixes of the files protoc writes for one ``<name>.proto``.
GENERATED_SUFFIXES: tuple[str, ...] = ("_pb2.py", "_pb2.pyi")


def generated_names() -> list[str]:
    """File names (no directory) that :func:`generate` writes, sorted."""
    return sorted(Path(name).stem + suffix for name in PROTO_FILES for suffix in GENERATED_SUFFIXES)


def _grpc_tools_include() -> str:
    """protoc include directory for the well-known types bundled with grpcio-tools."""
    return str(resources.files("grpc_tools") / "_proto")


def generate(out_dir: Path, src_dir: Path = PROTOS_DIR) -> list[Path]:
    """Compile the ``.proto`` files in ``src_dir`` and write the Python modules to ``out_dir``.

    Returns the written paths (sorted). Raises ``RuntimeError`` with protoc's output if protoc
    fails.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="etcdlite-protoc-") as tmp:
        root = Path(tmp) / "src"
        pkg = root.joinpath(*IMPORT_PREFIX)
        pkg.mkdir(parents=True)
        for name in PROTO_FILES:
            shutil.copyfile(src_dir / name, pkg / name)
        gen_root = Path(tmp) / "out"
        gen_root.mkdir()
        rel_sources = ["/".join((*IMPORT_PREFIX, name)) for name in PROTO_FILES]
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{_grpc_tools_include()}",
            f"--python_out={gen_root}",
            f"--pyi_out={gen_root}",
            *rel_sources,
        ]
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(
                f"grpc_tools.protoc failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        gen_pkg = gen_root.joinpath(*IMPORT_PREFIX)
        written: list[Path] = []
        for fname in generated_names():
            produced = gen_pkg / fname
            if not produced.is_file():
                raise RuntimeError(f"grpc_tools.protoc did not produce {fname}")
            target = out_dir / fname
            target.write_bytes(produced.read_bytes())
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``python -m etcdlite.protos.generate [OUT_DIR]``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0] in ("-h", "--help")):
        print(__doc__)
        return 0 if args and args[0] in ("-h", "--help") else 2
    out_dir = Path(args[0]) if args else PROTOS_DIR
    for path in generate(out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
