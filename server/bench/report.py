"""The benchmark's output: a table on stdout, the same as JSON, and a PNG of latency distributions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from server.bench.load import Result

_COMPARED = ("charge.", "refund.", "get_payment")


def _ratios(results: list[Result], floor: str) -> dict[tuple[str, int], dict[str, float]]:
    floors = {r.concurrency: r for r in results if r.name == floor}
    ratios: dict[tuple[str, int], dict[str, float]] = {}
    for r in results:
        base = floors.get(r.concurrency)
        if base is None or not r.name.startswith(_COMPARED) or not base.throughput:
            continue
        ratios[(r.name, r.concurrency)] = {
            "throughput_vs_floor": round(r.throughput / base.throughput, 3),
            "p50_vs_floor": round(r.percentile(50) / base.percentile(50), 3),
            "p99_vs_floor": round(r.percentile(99) / base.percentile(99), 3),
        }
    return ratios


def write_report(results: list[Result], notes: dict[str, Any], out: Path, *, floor: str, total_s: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ratios = _ratios(results, floor)
    header = (
        f"{'scenario':<30}{'c':>4}{'req':>7}{'err':>5}{'rps':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'rps/floor':>11}{'p50/floor':>11}{'cpu us/req: server':>20}{'pg':>6}{'client':>8}"
    )
    lines = [header, "-" * len(header)]
    rows = []
    for r in results:
        summary = r.summary()
        ratio = ratios.get((r.name, r.concurrency), {})
        cpu = r.cpu_us_per_request()
        rows.append({**summary, **ratio, "cpu_us_per_request": cpu})
        lines.append(
            f"{r.name:<30}{r.concurrency:>4}{len(r.latencies_ms):>7}{r.errors:>5}{r.throughput:>9.0f}"
            f"{r.percentile(50):>9.2f}{r.percentile(99):>9.2f}"
            f"{ratio.get('throughput_vs_floor', float('nan')):>11.2f}{ratio.get('p50_vs_floor', float('nan')):>11.2f}"
            f"{cpu.get('server', float('nan')):>20.0f}{cpu.get('postgres', float('nan')):>6.0f}"
            f"{cpu.get('client', float('nan')):>8.0f}"
        )
    print("\n" + "\n".join(lines))
    print(_latency_table([r for r in results if r.psp_latency_s is not None]))
    print(f"\nfloor for the ratios: {floor}; total run {total_s:.0f} s")
    for key, value in notes.items():
        print(f"{key}: {value}")
    (out / "results.json").write_text(json.dumps({"floor": floor, "results": rows, "notes": notes,
                                                  "total_seconds": round(total_s, 1)}, indent=2))  # fmt: skip
    _plot(results, out / "latency.png")
    print(f"\nwritten: {out / 'results.json'}, {out / 'latency.png'}")


def _latency_table(results: list[Result]) -> str:
    """The PSP-latency rows next to their Little's-law bound: c callers, each answer after at least L,
    can get at most c / L requests per second through."""
    if not results:
        return ""
    header = (
        f"{'PSP latency L':<30}{'c':>5}{'L ms':>6}{'rps':>7}{'c/L':>7}{'rps/(c/L)':>11}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'cpu us/req: server':>20}{'sandbox':>9}{'peak RSS MiB':>14}"
    )
    lines = ["", header, "-" * len(header)]
    for r in results:
        bound = r.littles_law_bound or float("nan")
        cpu = r.cpu_us_per_request()
        rss = r.peak_rss_mib if r.peak_rss_mib is not None else float("nan")
        lines.append(
            f"{r.name:<30}{r.concurrency:>5}{(r.psp_latency_s or 0) * 1000:>6.0f}{r.throughput:>7.0f}{bound:>7.0f}"
            f"{r.throughput / bound:>11.2f}{r.percentile(50):>9.1f}{r.percentile(99):>9.1f}"
            f"{cpu.get('server', float('nan')):>20.0f}{cpu.get('sandbox', float('nan')):>9.0f}{rss:>14.0f}"
        )
    return "\n".join(lines)


def _plot(results: list[Result], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - the bench extra installs it
        print("matplotlib is not installed: no plot")
        return
    figure, axes = plt.subplots(1, 2, figsize=(14, 6), sharey=True)
    for axis, concurrency in zip(axes, (1, 64), strict=True):
        for r in results:
            if r.concurrency != concurrency or not r.latencies_ms:
                continue
            ordered = sorted(r.latencies_ms)
            fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
            axis.plot(ordered, fractions, label=r.name)
        axis.set_xscale("log")
        axis.set_xlabel("latency (ms, log scale)")
        axis.set_title(f"concurrency {concurrency}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("fraction of requests")
    axes[1].legend(fontsize=8, loc="lower right")
    figure.suptitle("payments-service latency distributions (CDF) next to the floors")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
