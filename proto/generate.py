"""Regenerates the Python code for proto/ into generated/ (the one command behind `make proto`).

Kept as a function so the drift test can generate into a temporary folder and compare byte for byte.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = PROTO_ROOT.parent / "generated"
INIT_TEXT = '"""Generated from proto/ by `make proto`; do not edit."""\n'


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc  # imported lazily: only the build and the drift test need it

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    include = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    for package_dir in {(out_dir / p).parent for p in protos}:
        current = package_dir
        while current != out_dir:
            (current / "__init__.py").write_text(INIT_TEXT)
            current = current.parent


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
