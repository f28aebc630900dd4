"""Regenerates the Python code for proto/ into generated/ (the one command behind `make proto`).

Kept as a function so the drift test can generate into a temporary folder and compare byte for byte.

Beside the code it writes typed stubs with mypy-protobuf: `*_pb2.pyi` for the messages (`--mypy_out`, which
replaces protoc's own `--pyi_out`) and `*_pb2_grpc.pyi` for the gRPC stubs and servicers (`--mypy_grpc_out`),
plus a PEP 561 `py.typed` marker so the stubs also serve services that install this package.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = PROTO_ROOT.parent / "generated"
INIT_TEXT = '"""Generated from proto/ by `make proto`; do not edit."""\n'


def _plugin(name: str) -> str:
    """A protoc plugin installed by pip into the same environment as the running interpreter."""
    scripts = Path(sys.executable).parent  # the venv's bin/ (Scripts/ on Windows); resolving would leave the venv
    for candidate in (scripts / name, scripts / f"{name}.exe"):
        if candidate.is_file():
            return str(candidate)
    raise RuntimeError(f"{name} not found beside {sys.executable}: install the dev extras (mypy-protobuf)")


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc  # imported lazily: only the build and the drift test need it

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    include = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_dir}",
        f"--mypy_out=quiet:{out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_grpc_out=quiet:{out_dir}",
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
    for top in {Path(p).parts[0] for p in protos}:
        (out_dir / top / "py.typed").write_text("")  # PEP 561: installed elsewhere, the .pyi still type its callers


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
