"""What a run prints and draws: a table with our ratios to each baseline, and a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TARGET_CPU_S_PER_100K = {"file": 1.0, "syslog": 2.0, "hec": 2.0, "s3": 2.0}
TARGET_PEAK_RSS_MB = 150.0


def table(results: dict[str, Any]) -> str:
    baselines = results["baselines"]
    head = f"{'':10} {'events/s':>10} {'CPU s/100k':>11} {'RSS MB':>7} {'p50 s':>7} {'p99 s':>7}"
    head += "".join(f" {'CPU x ' + name:>14}" for name in baselines)
    lines = [head]
    for name, sink in results["sinks"].items():
        row = f"{name:10} {sink['events_per_s']:>10.0f} {sink['cpu_s_per_100k']:>11.2f} {sink['peak_rss_mb']:>7.0f}"
        row += f" {_num(sink['latency_p50_s']):>7} {_num(sink['latency_p99_s']):>7}"
        row += "".join(f" {sink['cpu_ratio'][b]:>14.1f}" for b in baselines)
        lines.append(row)
    for name, base in baselines.items():
        lines.append(f"{name:10} {base['events_per_s']:>10.0f} {base['cpu_s_per_100k']:>11.2f}")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sinks, baselines = results["sinks"], results["baselines"]
    names = list(sinks) + list(baselines)
    fig, (ax_rate, ax_cpu, ax_rss) = plt.subplots(1, 3, figsize=(14, 4.5))
    colors = ["tab:blue"] * len(sinks) + ["tab:gray"] * len(baselines)
    ax_rate.bar(names, [({**sinks, **baselines})[n]["events_per_s"] for n in names], color=colors)
    ax_rate.set_title("Throughput (events/s of wall time)")
    ax_cpu.bar(names, [({**sinks, **baselines})[n]["cpu_s_per_100k"] for n in names], color=colors)
    for i, name in enumerate(sinks):
        ax_cpu.hlines(TARGET_CPU_S_PER_100K[name], i - 0.4, i + 0.4, colors="tab:red", linestyles="dashed")
    ax_cpu.set_title("CPU s per 100k events (red: target)")
    ax_rss.bar(list(sinks), [s["peak_rss_mb"] for s in sinks.values()], color="tab:blue")
    ax_rss.axhline(TARGET_PEAK_RSS_MB, color="tab:red", linestyle="dashed")
    ax_rss.set_title("Forwarder peak RSS MB (red: target)")
    for ax in (ax_rate, ax_cpu, ax_rss):
        ax.tick_params(axis="x", labelrotation=30)
    events = results["machine"]["events"]
    fig.suptitle(f"audit-forwarder benchmark: {events:,} Codacy entries, {results['machine']['cpu_model']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
