"""The closing summary of ``once``: what cron mails or a script parses, so the operator learns
the run's result from stdout without reading the JSON log lines on stderr."""

from __future__ import annotations

from typing import Any

import click

from forwarder.tools.common import echo_json, print_table


def verdict(summary: dict[str, Any]) -> str:
    if summary["ok"]:
        return "once: ok, every source polled and every event delivered"
    if summary["timed_out"]:
        why = f"the --timeout of {summary['timeout_s']:g} s ended the run"
    elif summary["interrupted"]:
        why = "interrupted"
    else:
        why = "a source or a sink failed"
    dead = sum(int(sink.get("dead_lettered") or 0) for sink in summary.get("sinks", []))
    kept = "what was not delivered stays journaled for the next run"
    if dead:  # those left the journal for the dead-letter store: "journaled" alone would send the operator wrong
        kept += f"; {dead} event(s) were dead-lettered: `dlq list` gives the reasons, `dlq replay` sends them again"
    return f"once: FAILED ({why}); {kept}"


def print_summary(summary: dict[str, Any], output: str) -> None:
    if output == "json":
        echo_json(summary)
        return
    print_table(
        "Sources",
        ("source", "organization", "state", "events", "pages", "quarantined", "failures", "last error"),
        (
            (
                s["source"],
                s["organization"],
                s["state"],
                s["events"],
                s["pages"],
                s["quarantined"],
                s["failures"],
                s["error"],
            )
            for s in summary["sources"]
        ),
    )
    print_table(
        "Sinks",
        ("sink", "state", "delivered", "pending", "dead-lettered", "last error"),
        (
            (s["sink"], s["state"], s["delivered"], s["pending"], s["dead_lettered"], s["error"])
            for s in summary["sinks"]
        ),
    )
    click.echo(f"{verdict(summary)} ({summary['elapsed_s']:.1f} s)")
