"""``audit-forwarder report``: the document an auditor is handed, from the state alone (safe next to
a running daemon). Registered with the evidence commands (``forwarder.evidence.cli.register``);
imports are deferred to the command, as there."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson

FORMATS = {".html": "html", ".htm": "html", ".json": "json", ".md": "markdown"}
BARE_FORMATS = {"html": "html", "json": "json", "markdown": "markdown", "md": "markdown"}


@click.command()
@click.option("--from", "from_", required=True, help="Start of the period (event time), e.g. 2026-11-01.")
@click.option("--to", "to", required=True, help="End of the period (excluded), e.g. 2026-12-01.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "json", "markdown"]),
    default=None,
    help="Default: from the --output file's suffix (.html, .json, .md), else markdown.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The file to write (default: stdout); a bare format name (json, html, markdown) prints that format.",
)
@click.pass_context
def report(ctx: click.Context, from_: str, to: str, fmt: str | None, output: Path | None) -> None:
    """The document an auditor is handed: per source and organization, the events collected
    in the period, delivered per sink, gaps with their reasons, quarantined entries and dead
    letters, chain heads, and the last verify and reconcile (docs/evidence.md). Reads the
    state only: safe next to a running daemon.

    \b
    Example:
      audit-forwarder -c config.yaml report --from 2026-11-01 --to 2026-12-01 --output november.html
    """
    from forwarder.commands.common import date_ms, run_async, settings_from

    settings = settings_from(ctx, read_only=True)
    from_ms, to_ms = date_ms(from_, "--from"), date_ms(to, "--to")
    assert from_ms is not None and to_ms is not None
    if to_ms <= from_ms:
        raise click.BadParameter("--to must be after --from")
    if output is not None and str(output) in BARE_FORMATS:
        # `--output json`, as every inspection command takes it: the format, on stdout, not a file named json
        fmt, output = fmt or BARE_FORMATS[output.name], None
    fmt = fmt or (FORMATS.get(output.suffix.lower(), "markdown") if output is not None else "markdown")
    data = run_async(lambda: _report_data(settings, from_ms, to_ms))
    if not isinstance(data, dict):  # interrupted
        sys.exit(int(data or 1))
    from forwarder.evidence import render

    text = (
        orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
        if fmt == "json"
        else render.html(data)
        if fmt == "html"
        else render.markdown(data)
    )
    if output is None:
        click.echo(text, nl=False)
        return
    partial = output.with_name(output.name + ".partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(output)
    except OSError as exc:
        click.echo(f"cannot write {output}: {exc.strerror}", err=True)
        sys.exit(2)
    click.echo(f"wrote {output} ({fmt}, {len(data['streams'])} stream(s))", err=True)


async def _report_data(settings: Any, from_ms: int, to_ms: int) -> dict[str, Any]:
    from forwarder.evidence.report import report_data
    from forwarder.tools.common import open_state

    async with open_state(settings, change=False) as journal:
        return await report_data(journal, from_ms, to_ms)
