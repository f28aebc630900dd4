"""`payments bench` end to end at a tiny size: every scenario runs and the report is complete.

Figures are not asserted (benchmarks are not tests); what is checked is that the benchmark works: no
errors, every scenario next to its floor, the duplicate storm answered with one PSP execution, CPU
accounted per process group, the data-growth comparison made, the PSP-latency rows (hundreds of calls
in flight) next to their Little's-law bound with the server's peak memory, and the JSON and the plot
written.
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
    "get_payment", "charge.inprocess+tracing", "charge.inprocess+sampled-10%", "charge.inprocess+watch",
    "charge.stripe-sandbox", "charge.workers=1", "charge.workers=2",
    "charge.inprocess@empty", "charge.inprocess@0.01M", "charge.stripe-latency", "payout.bank-latency",
}  # fmt: skip
# At a fifth of the calls in flight (--in-flight-scale 0.2): 50, 200, 500 and 1,000 make the smoke test 30 s longer.
LATENCY_ROWS = {("charge.stripe-latency", 10), ("charge.stripe-latency", 40), ("charge.stripe-latency", 100),
                ("payout.bank-latency", 10), ("payout.bank-latency", 40), ("charge.stripe-latency", 200)}  # fmt: skip


def test_bench_runs_every_scenario_and_writes_the_report(database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "results"
    env = {**os.environ, "PAYMENTS_DATABASE_URL": database_url}
    run = subprocess.run(
        [sys.executable, "-m", "server.bench.run", "--requests", "100", "--growth-rows", "10000",
         "--in-flight-scale", "0.2", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    rows = report["results"]
    assert {r["name"] for r in rows} == SCENARIOS
    assert all(r["errors"] == 0 and r["requests"] > 0 for r in rows), rows
    latency = [r for r in rows if "psp_latency_ms" in r]
    assert {(r["name"], r["concurrency"]) for r in latency} == LATENCY_ROWS
    assert {r["concurrency"] for r in rows if r not in latency} == {1, 64}
    compared = [r for r in rows if not r["name"].startswith("floor.") and r not in latency]
    assert all(r["throughput_vs_floor"] > 0 and r["p50_vs_floor"] > 0 for r in compared)
    # CPU is read in clock ticks (10 ms): a c=1 row of this tiny run can round to zero, so each scenario
    # must show server CPU in at least one of its rows.
    server_cpu: dict[str, int] = {}
    for r in rows:
        server_cpu[r["name"]] = max(server_cpu.get(r["name"], 0), r["cpu_us_per_request"]["server"])
    assert all(cpu > 0 for name, cpu in server_cpu.items() if name != "floor.2tx-asyncpg"), server_cpu
    for r in latency:
        assert r["littles_law_rps"] == pytest.approx(r["concurrency"] / (r["psp_latency_ms"] / 1000), abs=0.1)
        assert 0 < r["throughput_vs_littles_law"] < 2  # (a window of one call per caller can pass 1 a little)
        assert r["p50_ms"] >= r["psp_latency_ms"]  # every call waited for the PSP
        assert r["peak_rss_mib"] > 0
        assert r["cpu_us_per_request"]["sandbox"] > 0
    memory = report["notes"]["memory_in_flight"]
    assert (memory["in_flight"], memory["psp_latency_s"]) == (200, 1.0)
    assert memory["peak_rss_mib"] > 0
    assert "rps/(c/L)" in run.stdout
    storm = report["notes"]["duplicate_storm"]
    assert storm["psp_executions"] == 1
    assert storm["answers"] == {"OK": storm["requests"]}
    assert set(report["notes"]["growth_p50_vs_empty"]) == {"c=1", "c=64"}
    assert all(ratio > 0 for ratio in report["notes"]["sampled_10pct_vs_untraced"].values())
    # The consumer follows the client's whole feed: two events (pending, succeeded) per charge of any row.
    watched = sum(r["requests"] for r in rows if r["name"] == "charge.inprocess+watch")
    assert report["notes"]["watch_events_received"] >= 2 * watched
    assert all(ratio > 0 for ratio in report["notes"]["watched_vs_unwatched"].values())
    if importlib.util.find_spec("matplotlib") is not None:  # the bench extra (make bench) installs it
        assert (out / "latency.png").stat().st_size > 0
    else:
        assert "matplotlib is not installed: no plot" in run.stdout
    assert "rps/floor" in run.stdout
