"""`payments bench` end to end at a tiny size: every scenario runs and the report is complete.

Figures are not asserted (benchmarks are not tests); what is checked is that the benchmark works: no
errors, every scenario next to its floor, the duplicate storm answered with one PSP execution, CPU
accounted per process group, the data-growth comparison made, and the JSON and the plot written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCENARIOS = {
    "floor.grpc-echo", "floor.2tx-asyncpg", "floor.grpc+2tx", "charge.inprocess", "refund.inprocess",
    "get_payment", "charge.inprocess+tracing", "charge.stripe-sandbox", "charge.workers=1", "charge.workers=2",
    "charge.inprocess@empty", "charge.inprocess@0.01M",
}  # fmt: skip


def test_bench_runs_every_scenario_and_writes_the_report(database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "results"
    env = {**os.environ, "PAYMENTS_DATABASE_URL": database_url}
    run = subprocess.run(
        [sys.executable, "-m", "server.bench.run", "--requests", "100", "--growth-rows", "10000", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    rows = report["results"]
    assert {r["name"] for r in rows} == SCENARIOS
    assert all(r["errors"] == 0 and r["requests"] > 0 for r in rows), rows
    assert {r["concurrency"] for r in rows} == {1, 64}
    compared = [r for r in rows if not r["name"].startswith("floor.")]
    assert all(r["throughput_vs_floor"] > 0 and r["p50_vs_floor"] > 0 for r in compared)
    assert all(r["cpu_us_per_request"]["server"] > 0 for r in rows if r["name"] != "floor.2tx-asyncpg")
    storm = report["notes"]["duplicate_storm"]
    assert storm["psp_executions"] == 1
    assert storm["answers"] == {"OK": storm["requests"]}
    assert set(report["notes"]["growth_p50_vs_empty"]) == {"c=1", "c=64"}
    if importlib.util.find_spec("matplotlib") is not None:  # the bench extra (make bench) installs it
        assert (out / "latency.png").stat().st_size > 0
    else:
        assert "matplotlib is not installed: no plot" in run.stdout
    assert "rps/floor" in run.stdout
