"""The committed generated code must be exactly what `make proto` produces from proto/: the modules, the
mypy-protobuf .pyi stubs (messages and gRPC) and the py.typed marker, every file byte for byte."""

from __future__ import annotations

import runpy
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    generate = runpy.run_path(str(REPO / "proto" / "generate.py"))["generate"]
    generate(tmp_path)
    committed = REPO / "generated"
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    current = {
        p.relative_to(committed): p.read_bytes()
        for p in committed.rglob("*")
        if p.is_file() and p.name != "README.md" and "__pycache__" not in p.parts
    }
    assert fresh.keys() == current.keys(), "run `make proto`: files differ"
    stale = sorted(str(path) for path in fresh if fresh[path] != current[path])
    assert not stale, f"run `make proto`: {stale} drifted from proto/"
