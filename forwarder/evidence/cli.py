"""``audit-forwarder keys generate`` and ``audit-forwarder verify``: registered on the main group
by ``register``. Neither reads the configuration: an auditor runs ``verify`` with only the
public key, the output and read access to it. Imports are deferred to the commands: every CLI
command loads this module, and ``cryptography`` and boto3 cost time to import."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from forwarder.evidence.report_cli import report
from forwarder.terminal import plain

if TYPE_CHECKING:
    from forwarder.evidence.exports import Finding

OUTPUT = click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
PUBLIC_KEY = click.option(
    "--public-key",
    "public_keys",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    multiple=True,
    help="A trusted public key (PEM), kept apart from the output it vouches for; repeat it for each key "
    "used over the period (a key rotation).",
)


@click.group()
def keys() -> None:
    """The Ed25519 key pair that signs the digests (docs/evidence.md).

    \b
    Example:
      audit-forwarder keys generate --private /etc/audit-forwarder/evidence.key --public evidence.pub
    """


@keys.command("generate")
@click.option("--private", "private", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--public", "public", type=click.Path(path_type=Path, dir_okay=False), required=True)
def keys_generate(private: Path, public: Path) -> None:
    """Make a new key pair: the private key file is created 0600, never over an existing file.

    \b
    Example:
      audit-forwarder keys generate --private /etc/audit-forwarder/evidence.key --public evidence.pub
    """
    from forwarder.evidence.keys import SigningKeyError, generate

    try:
        print_ = generate(private, public)
    except SigningKeyError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    click.echo(f"wrote {private} (private, 0600) and {public}; fingerprint {print_}")


@click.group()
@click.option(
    "--record", is_flag=True, help="Also note the result in the forwarder's state (that of -c), for `report`."
)
@click.pass_context
def verify(ctx: click.Context, record: bool) -> None:
    """Check stored output against its signed digests, or exported events against their chains.

    Exit status 0 only when everything checks; 1 when something is missing, altered, moved or
    unlisted (each named); 2 when the input cannot be read.

    \b
    Examples:
      audit-forwarder verify files /var/log/audit-forwarder --public-key evidence.pub
      audit-forwarder verify s3 --bucket acme-audit --prefix audit/ --public-key evidence.pub
      audit-forwarder verify events export.ndjson.gz --from-seq 1
      audit-forwarder -c config.yaml verify --record files /var/log/audit-forwarder --public-key evidence.pub
    """
    ctx.ensure_object(dict)
    ctx.obj["record_verify"] = record


def _key(path: Path) -> Any:
    from forwarder.evidence.keys import SigningKeyError, load_public

    try:
        return load_public(path.read_bytes(), str(path))
    except (OSError, SigningKeyError) as exc:
        click.echo(f"cannot read the public key: {exc}", err=True)
        sys.exit(2)


def _report(ok: bool, summary: dict[str, Any], findings: list[Finding], output: str, scope: str) -> None:
    ctx = click.get_current_context()
    if (ctx.find_root().obj or {}).get("record_verify"):
        kept = {k: v for k, v in summary.items() if k not in ("lines", "streams")}
        kept["problems"] = len(findings)
        kept["findings"] = [f.as_dict() for f in findings[:100]]
        _record_verify(ctx, scope, ok, kept)
    if output == "json":
        shown = {k: v for k, v in summary.items() if k != "lines"}
        click.echo(orjson.dumps({**shown, "ok": ok, "findings": [f.as_dict() for f in findings]}).decode())
    else:
        for f in findings:
            click.echo(plain(f"{f.kind.upper()}: {f.stream + ': ' if f.stream != '-' else ''}{f.detail}"))
        for line in summary.get("lines", []):
            click.echo(plain(line))
        done = "every digest, object and chain checks" if summary.get("digests") is not None else "every chain checks"
        click.echo(f"OK: {done}" if ok else f"FAILED: {len(findings)} problem(s)")
    sys.exit(0 if ok else 1)


@verify.command("files")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option(
    "--digests",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The digest directory, if not `_digests` under DIRECTORY (evidence.digest_directory).",
)
@click.option("--allow-chain-gaps", is_flag=True, help="The sink has a filter: not every seq reaches it.")
@PUBLIC_KEY
@OUTPUT
def verify_files(
    directory: Path, digests: Path | None, allow_chain_gaps: bool, public_keys: tuple[Path, ...], output: str
) -> None:
    """A file sink's directory (the part of `path` before the first placeholder).

    \b
    Example:
      audit-forwarder verify files /var/log/audit-forwarder --public-key evidence.pub
    """
    from forwarder.evidence.verify_store import FileStore, verify_store

    keys = [_key(p) for p in public_keys]
    try:
        result = verify_store(FileStore(directory, digests), keys, allow_chain_gaps=allow_chain_gaps)
    except OSError as exc:
        click.echo(plain(f"cannot read {exc.filename or directory}: {exc.strerror or exc}"), err=True)
        sys.exit(2)
    _done(result, output, f"files {directory}")


@verify.command("s3")
@click.option("--bucket", required=True)
@click.option("--prefix", default="", help="Where the sink's objects are (the key_template's fixed start).")
@click.option("--digest-prefix", default="audit-digests/", show_default=True)
@click.option("--endpoint-url", default=None, help="An S3-compatible store (MinIO, a test server).")
@click.option("--region", default="us-east-1", show_default=True)
@click.option("--allow-chain-gaps", is_flag=True, help="The sink has a filter: not every seq reaches it.")
@PUBLIC_KEY
@OUTPUT
def verify_s3(
    bucket: str,
    prefix: str,
    digest_prefix: str,
    endpoint_url: str | None,
    region: str,
    allow_chain_gaps: bool,
    public_keys: tuple[Path, ...],
    output: str,
) -> None:
    """An S3 sink's bucket and prefix (credentials from the standard AWS chain; read-only access suffices).

    \b
    Example:
      audit-forwarder verify s3 --bucket acme-audit --prefix audit/ --public-key evidence.pub
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from forwarder.evidence.verify_store import S3Store, verify_store

    keys = [_key(p) for p in public_keys]
    try:
        client = boto3.session.Session().client("s3", region_name=region, endpoint_url=endpoint_url)
        result = verify_store(S3Store(client, bucket, prefix, digest_prefix), keys, allow_chain_gaps=allow_chain_gaps)
    except (BotoCoreError, ClientError) as exc:  # no bucket, no access, no credentials, unreachable: input unread
        click.echo(plain(f"cannot read s3://{bucket}/{prefix}: {exc}"), err=True)
        sys.exit(2)
    _done(result, output, f"s3 {bucket}/{prefix}")


def _done(result: Any, output: str, scope: str) -> None:
    summary = result.as_dict()
    summary.pop("findings")
    lines = [f"{result.digests} digest(s) on the chain, {result.objects} object(s) listed"]
    if result.newest is not None:
        written = datetime.fromisoformat(result.newest["to"].replace("Z", "+00:00"))
        age = int((datetime.now(UTC) - written).total_seconds())
        lines.append(
            f"newest digest: {result.newest['location']}, written {result.newest['to']} ({age} s ago); "
            "a later digest that was deleted, and output written after this one, cannot be seen: the "
            "daemon writes one every digest_interval_s (and at a clean stop), so it should be no older "
            "than that interval"
        )
    lines += [f"stream {s}: seq {a} to {b}" for s, (a, b) in sorted(result.streams.items())]
    lines += [f"PENDING (after the newest digest): {p}" for p in result.pending]
    _report(not result.findings, {**summary, "lines": lines}, result.findings, output, scope)


@verify.command("events")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--from-seq", type=int, default=None, help="The seq each stream must start at (e.g. 1).")
@OUTPUT
def verify_events(files: tuple[Path, ...], from_seq: int | None, output: str) -> None:
    """Exported events: NDJSON (plain or gzip), a Splunk export, a syslog file of RFC 5424 lines.

    \b
    Example:
      audit-forwarder verify events export.ndjson.gz splunk-export.json /var/log/audit.log --from-seq 1
    """
    from forwarder.evidence.exports import verify_exports

    try:
        findings, streams = verify_exports(list(files), from_seq)
    except OSError as exc:
        click.echo(f"cannot read: {exc}", err=True)
        sys.exit(2)
    summary: dict[str, Any] = {"streams": [vars(s) for s in streams]}
    if output == "text":
        summary["lines"] = [
            f"stream {s.stream}: seq {s.first} to {s.last} (hash {s.head}), {s.events} event(s), "
            f"{s.duplicates} duplicate(s)"
            + (
                f"; {s.links_only} in a format without the whole event: links checked, hash not recomputed"
                if s.links_only
                else ""
            )
            for s in streams
        ]
        if streams:
            summary["lines"].append(
                "An export cannot show what came after its last seq: compare each stream's last seq and "
                "hash with the chain head in `report` or the newest digest's chain ranges."
            )
    _report(not findings, summary, findings, output, "events " + " ".join(str(f) for f in files))


TABLE_OR_JSON = click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)


@click.command()
@click.option("--source", "source_name", required=True, help="A configured source.")
@click.option(
    "--organization", "--org", "organizations", multiple=True, help="Repeatable; default: every configured one."
)
@click.option("--from", "from_", required=True, help="Start of the period (event time), e.g. 2026-11-01.")
@click.option("--to", "to", required=True, help="End of the period (excluded), e.g. 2026-12-01.")
@TABLE_OR_JSON
@click.pass_context
def reconcile(
    ctx: click.Context, source_name: str, organizations: tuple[str, ...], from_: str, to: str, output: str
) -> None:
    """Read the vendor again for the period and name every entry it holds that was never
    collected, or never confirmed by a sink (docs/evidence.md). Touches no cursor, no journal
    event: safe next to a running daemon; the result is recorded for `report`.

    Exit status 0 only when nothing is missing; 1 names each missing entry.

    \b
    Example:
      audit-forwarder -c config.yaml reconcile --source codacy --organization gh/acme --from 2026-11-01 --to 2026-12-01
    """
    from forwarder.commands.common import date_ms, run_async, settings_from

    settings = settings_from(ctx)
    from_ms, to_ms = date_ms(from_, "--from"), date_ms(to, "--to")
    assert from_ms is not None and to_ms is not None
    if to_ms <= from_ms:
        raise click.BadParameter("--to must be after --from")
    results = run_async(lambda: _reconcile(settings, source_name, organizations, from_ms, to_ms))
    if not isinstance(results, list):  # interrupted
        sys.exit(int(results or 1))
    ok = all(r.ok for r in results)
    if output == "json":
        click.echo(orjson.dumps({"ok": ok, "streams": [r.as_dict() for r in results]}).decode())
    else:
        from forwarder.tools.common import print_table

        for r in results:
            sinks = ", ".join(f"{k} {v}" for k, v in sorted(r.confirmed.items())) or "none"
            click.echo(
                plain(
                    f"{r.source}/{r.organization}: the vendor holds {r.vendor_entries} entr(ies) up to "
                    f"{r.read_to}; {r.journaled} journaled; of the vendor's {r.vendor_entries}, confirmed "
                    f"per sink: {sinks}"
                )
            )
            if r.gone_at_vendor:
                click.echo(
                    plain(
                        f"  {len(r.gone_at_vendor)} journaled entr(ies) the vendor no longer returns (past its "
                        f"retention, or deleted there; not a problem: the forwarder's copy is the one left), "
                        f"from {r.gone_at_vendor[0]['time']} to {r.gone_at_vendor[-1]['time']}"
                    )
                )
        findings = [f for r in results for f in r.findings]
        if findings:
            print_table(
                f"{len(findings)} missing",
                ("problem", "organization", "id", "time", "sink", "detail"),
                [(f.kind, f.organization, f.id, f.time, f.sink, f.detail) for f in findings],
            )
        click.echo(
            "OK: every vendor entry was collected and confirmed by every sink"
            if ok
            else f"FAILED: {len(findings)} missing"
        )
    sys.exit(0 if ok else 1)


async def _reconcile(settings: Any, source_name: str, orgs: tuple[str, ...], from_ms: int, to_ms: int) -> Any:
    from forwarder.evidence.reconcile import reconcile as run
    from forwarder.evidence.reconcile import run_summary
    from forwarder.tools.common import build_source, open_state, pick_organizations

    source = build_source(settings, source_name)
    try:
        async with open_state(settings, change=False) as journal:
            results = await run(journal, source, await pick_organizations(source, orgs), from_ms, to_ms)
            for r in results:
                scope = f"{r.source}/{r.organization}"
                await _record(journal, "reconcile", scope, r.ok, run_summary(r, from_ms, to_ms))
    finally:
        await source.close()
    return results


def _record_verify(ctx: click.Context, scope: str, ok: bool, summary: dict[str, Any]) -> None:
    from forwarder.commands.common import run_async, settings_from
    from forwarder.tools.common import open_state

    settings = settings_from(ctx.find_root(), read_only=True)

    async def note() -> None:
        async with open_state(settings, change=False) as journal:
            await _record(journal, "verify", scope, ok, summary)

    run_async(note)


async def _record(journal: Any, kind: str, scope: str, ok: bool, summary: dict[str, Any]) -> None:
    """Kept for ``report``; a state written by a release without the table only loses the note.
    So does a state the daemon kept locked past SQLite's busy timeout, which was told to "start
    the daemon of this release", advice that fixes nothing: it is named for what it is."""
    import sqlite3

    try:
        await journal.record_run(kind, scope, ok, summary)
    except sqlite3.OperationalError as exc:
        advice = (
            "start the daemon of this release once"
            if "no such table" in str(exc)
            else "another writer (the daemon) held the state for longer than SQLite waits; run this command again"
        )
        click.echo(f"note: the result is not recorded in the state ({exc}); {advice}", err=True)


def register(main: click.Group) -> None:
    main.add_command(keys)
    main.add_command(verify)
    main.add_command(reconcile)
    main.add_command(report)  # forwarder/evidence/report_cli.py
