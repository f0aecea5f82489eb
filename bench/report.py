"""What a run prints and draws: a table with our ratios to each baseline, and a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TARGET_CPU_S_PER_100K = {"file": 1.0, "syslog": 2.0, "hec": 2.0, "s3": 2.0}
TARGET_PEAK_RSS_MB = 150.0


def table(results: dict[str, Any]) -> str:
    baselines = results["baselines"]
    head = f"{'':14} {'events/s':>10} {'CPU s/100k':>11} {'RSS MB':>7} {'drain p99':>9}"
    head += f" {'live p50':>8} {'live p99':>8} {'target':>6}"
    head += "".join(f" {'CPU x ' + name:>20}" for name in baselines)
    lines = [head]
    for name, sink in results["sinks"].items():
        row = f"{name:14} {sink['events_per_s']:>10.0f} {sink['cpu_s_per_100k']:>11.2f} {sink['peak_rss_mb']:>7.0f}"
        row += f" {_num(sink['drain_p99_s']):>9} {_num(sink['latency_p50_s']):>8} {_num(sink['latency_p99_s']):>8}"
        row += f" {_verdict(sink['live']):>6}"
        row += "".join(f" {sink['cpu_ratio'][b]:>20.1f}" for b in baselines)
        lines.append(row)
    for name, sink in results.get("large_answers", {}).items():
        row = f"{name + ' (33k/answer)':14} {sink['events_per_s']:>10.0f} {sink['cpu_s_per_100k']:>11.2f}"
        lines.append(row + f" {sink['peak_rss_mb']:>7.0f} {_num(sink['drain_p99_s']):>9}")
    for name, base in baselines.items():
        lines.append(f"{name:14} {base['events_per_s']:>10.0f} {base['cpu_s_per_100k']:>11.2f}")
    lines += extras(results)
    return "\n".join(lines)


def extras(results: dict[str, Any]) -> list[str]:
    """Start-up, idle and ``--compare`` lines (each only when measured)."""
    ref = results.get("compare", {})
    ratio = ref.get("ratio", {})
    lines = []
    for name, cmd in results.get("startup", {}).items():
        line = f"start-up {name:12} CPU {cmd['cpu_s']:.3f} s (target {cmd['target_cpu_s']:g})"
        line += f" RSS {cmd['peak_rss_mb']:.0f} MB"
        if name in ratio.get("startup", {}):
            theirs = ref["startup"][name]
            line += f"  | {ref['ref']}: {theirs['cpu_s']:.3f} s, {theirs['peak_rss_mb']:.0f} MB"
            line += f" (x{_num(ratio['startup'][name]['cpu_s'])} CPU)"
        lines.append(line)
    if "idle" in results:
        idle = results["idle"]
        line = (
            f"idle: {idle['organizations']} orgs every {idle['interval_s']:g} s: "
            f"{idle['cpu_percent_of_one_core']:.2f} % of a core over {idle['window_s']:g} s "
            f"(target {idle['target_cpu_percent']:g}), "
            f"RSS {idle['rss_mb_start']:.1f} -> {idle['rss_mb_end']:.1f} MB"
        )
        for prefix, what in (("rss", ""), ("rss_anon", "anonymous ")):  # settling grows in the first half only
            slope = idle[f"{prefix}_slope_mb_per_hour_second_half"]
            line += (
                f"; {what}halves {idle[f'{prefix}_growth_first_half_mb']:+.1f} / "
                f"{idle[f'{prefix}_growth_second_half_mb']:+.1f} MB, second half "
                f"{'-' if slope is None else f'{slope:+.1f}'} MB/h"
            )
        if "idle" in ref:
            theirs = ref["idle"]
            line += f"  | {ref['ref']}: {theirs['cpu_percent_of_one_core']:.2f} %, {theirs['rss_mb_end']:.1f} MB"
        lines.append(line)
    for name, sink_ratio in ratio.get("sinks", {}).items():
        lines.append(
            f"drain {name} vs {ref['ref']}: CPU x{_num(sink_ratio['cpu_s_per_100k'])}, "
            f"peak RSS x{_num(sink_ratio['peak_rss_mb'])}"
        )
    return lines


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _verdict(live: dict[str, Any]) -> str:
    """Whether the live p99 met "poll interval + 1 s" ("-" when the live phase was skipped)."""
    if "meets_target" not in live:
        return "-"
    return "met" if live["meets_target"] else "missed"


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sinks, baselines = results["sinks"], results["baselines"]
    names = list(sinks) + list(baselines)
    fig, (ax_rate, ax_cpu, ax_rss, ax_live) = plt.subplots(1, 4, figsize=(18, 4.5))
    colors = ["tab:blue"] * len(sinks) + ["tab:gray"] * len(baselines)
    ax_rate.bar(names, [({**sinks, **baselines})[n]["events_per_s"] for n in names], color=colors)
    ax_rate.set_title("Throughput (events/s of wall time)")
    ax_cpu.bar(names, [({**sinks, **baselines})[n]["cpu_s_per_100k"] for n in names], color=colors)
    for i, name in enumerate(sinks):
        ax_cpu.hlines(TARGET_CPU_S_PER_100K[name], i - 0.4, i + 0.4, colors="tab:red", linestyles="dashed")
    ax_cpu.set_title("CPU s per 100k events (red: target)")
    ax_rss.bar(list(sinks), [s["peak_rss_mb"] for s in sinks.values()], color="tab:blue")
    ax_rss.axhline(TARGET_PEAK_RSS_MB, color="tab:red", linestyle="dashed")
    ax_rss.set_ylim(0, 1.1 * max(TARGET_PEAK_RSS_MB, *(s["peak_rss_mb"] for s in sinks.values())))
    ax_rss.set_title("Forwarder peak RSS MB (red: target)")
    for i, sink in enumerate(sinks.values()):
        ax_live.bar(
            [i - 0.2, i + 0.2],
            [sink["latency_p50_s"] or 0, sink["latency_p99_s"] or 0],
            width=0.4,
            color=["tab:cyan", "tab:blue"],
        )
        if "target_p99_s" in sink["live"]:
            ax_live.hlines(sink["live"]["target_p99_s"], i - 0.4, i + 0.4, colors="tab:red", linestyles="dashed")
    ax_live.set_xticks(range(len(sinks)), list(sinks))
    ax_live.set_title("Live latency p50 / p99 s (red: interval + 1 s)")
    for ax in (ax_rate, ax_cpu, ax_rss, ax_live):
        plt.setp(ax.get_xticklabels(), rotation=35, ha="right", rotation_mode="anchor")
    events = results["machine"]["events"]
    fig.suptitle(f"audit-forwarder benchmark: {events:,} Codacy entries, {results['machine']['cpu_model']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
