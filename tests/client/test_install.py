"""The issue's acceptance, as a test: in a fresh virtualenv `pip install ./client` (nothing of the server's
dependencies), the five-line example charges, replays and refunds against a real server, and mypy --strict
passes on it, resolving payments_client and the generated code from that virtualenv alone.

About 10 s: pip runs with its cache, and mypy is the development one pointed at the fresh interpreter
(`--python-executable`), so only grpcio, protobuf, googleapis-common-protos and opentelemetry-api install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from payments.v1 import resources_pb2 as res
from tests.support.harness import ServerHarness
from tests.support.processes import REPO

CLIENT = REPO / "client"
EXAMPLE = "examples/charge_replay_refund.py"


def run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with payments-client installed from a copy of client/ (the link to generated/
    resolved, as in an sdist), so the build cannot leave files in the work tree."""
    root = tmp_path_factory.mktemp("fresh")
    source = root / "client"
    shutil.copytree(CLIENT, source, symlinks=False, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    venv = root / "venv"
    made = run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", source)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return python


def test_the_distribution_links_the_generated_code_rather_than_copying_it() -> None:
    """One copy of the generated code: `make proto` updates what the client ships, and the drift test
    (tests/unit/test_generated_code.py) covers both."""
    assert (CLIENT / "src" / "payments").is_symlink()
    assert (CLIENT / "src" / "payments").resolve() == REPO / "generated" / "payments"


def test_installs_without_the_servers_dependencies(fresh: Path) -> None:
    modules = "('payments_client', 'payments.v1', 'asyncpg', 'server')"
    probe = f"import importlib.util as u; print([m for m in {modules} if u.find_spec(m)])"
    found = run(fresh, "-c", probe, cwd="/")
    assert found.stdout.strip() == "['payments_client', 'payments.v1']", found.stderr


def test_the_example_charges_replays_and_refunds(fresh: Path, server: ServerHarness) -> None:
    ran = run(fresh, CLIENT / EXAMPLE, cwd="/", env={**os.environ, "PAYMENTS_TARGET": server.target})
    assert ran.returncode == 0, ran.stderr
    key, payment_id, replayed, refund_status = ran.stdout.split()
    assert payment_id.startswith("pay_")
    assert replayed == "True"
    assert refund_status == str(res.REFUND_STATUS_SUCCEEDED)
    assert server.sandbox.executions() == 2, "one charge and one refund, the replay executed nothing"
    assert len(key) == 36


def test_mypy_strict_passes_on_the_example_from_the_installed_distribution(fresh: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.py"
    wrong.write_text("from payments_client import PaymentsClient\n\nPaymentsClient().charge(1250, 'pm_card_visa')\n")
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\n")
    mypy: list[str | Path] = [sys.executable, "-m", "mypy", "--config-file", config,
                              "--python-executable", fresh, "--cache-dir", tmp_path / "cache"]  # fmt: skip
    checked = run(*mypy, CLIENT / EXAMPLE, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    refused = run(*mypy, wrong, cwd=tmp_path)
    assert 'incompatible type "int"; expected "Money"' in refused.stdout, "the types come from the installed package"
