"""``audit-forwarder keys generate`` and ``audit-forwarder verify``: registered on the main group
by ``register``. Neither reads the configuration: an auditor runs ``verify`` with only the
public key, the output and read access to it. Imports are deferred to the commands: every CLI
command loads this module, and ``cryptography`` and boto3 cost time to import."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from forwarder.terminal import plain

if TYPE_CHECKING:
    from forwarder.evidence.exports import Finding

OUTPUT = click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
PUBLIC_KEY = click.option(
    "--public-key", "public_keys", type=click.Path(path_type=Path, dir_okay=False), required=True, multiple=True,
    help="A trusted public key (PEM), kept apart from the output it vouches for; repeat it for each key "
    "used over the period (a key rotation).",
)  # fmt: skip


@click.group()
def keys() -> None:
    """The Ed25519 key pair that signs the digests (docs/evidence.md)."""


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
def verify() -> None:
    """Check stored output against its signed digests, or exported events against their chains.

    Exit status 0 only when everything checks; 1 when something is missing, altered, moved or
    unlisted (each named); 2 when the input cannot be read.
    """


def _key(path: Path) -> Any:
    from forwarder.evidence.keys import SigningKeyError, load_public

    try:
        return load_public(path.read_bytes(), str(path))
    except (OSError, SigningKeyError) as exc:
        click.echo(f"cannot read the public key: {exc}", err=True)
        sys.exit(2)


def _report(ok: bool, summary: dict[str, Any], findings: list[Finding], output: str) -> None:
    if output == "json":
        click.echo(orjson.dumps({**summary, "ok": ok, "findings": [f.as_dict() for f in findings]}).decode())
    else:
        for f in findings:
            click.echo(plain(f"{f.kind.upper()}: {f.stream + ': ' if f.stream != '-' else ''}{f.detail}"))
        for line in summary.get("lines", []):
            click.echo(plain(line))
        click.echo("OK: every digest, object and chain checks" if ok else f"FAILED: {len(findings)} problem(s)")
    sys.exit(0 if ok else 1)


@verify.command("files")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--digests", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The digest directory, if not `_digests` under DIRECTORY (evidence.digest_directory).")  # fmt: skip
@click.option("--allow-chain-gaps", is_flag=True, help="The sink has a filter: not every seq reaches it.")
@PUBLIC_KEY
@OUTPUT
def verify_files(
    directory: Path, digests: Path | None, allow_chain_gaps: bool, public_keys: tuple[Path, ...], output: str
) -> None:
    """A file sink's directory (the part of `path` before the first placeholder)."""
    from forwarder.evidence.verify_store import FileStore, verify_store

    result = verify_store(
        FileStore(directory, digests), [_key(p) for p in public_keys], allow_chain_gaps=allow_chain_gaps
    )
    _done(result, output)


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
    bucket: str, prefix: str, digest_prefix: str, endpoint_url: str | None, region: str, allow_chain_gaps: bool,
    public_keys: tuple[Path, ...], output: str,
) -> None:  # fmt: skip
    """An S3 sink's bucket and prefix (credentials from the standard AWS chain; read-only access suffices)."""
    import boto3

    from forwarder.evidence.verify_store import S3Store, verify_store

    client = boto3.session.Session().client("s3", region_name=region, endpoint_url=endpoint_url)
    store = S3Store(client, bucket, prefix, digest_prefix)
    _done(verify_store(store, [_key(p) for p in public_keys], allow_chain_gaps=allow_chain_gaps), output)


def _done(result: Any, output: str) -> None:
    summary = result.as_dict()
    summary.pop("findings")
    lines = [f"{result.digests} digest(s) on the chain, {result.objects} object(s) listed"]
    lines += [f"stream {s}: seq {a} to {b}" for s, (a, b) in sorted(result.streams.items())]
    lines += [f"PENDING (after the newest digest): {p}" for p in result.pending]
    _report(not result.findings, {**summary, "lines": lines} if output == "text" else summary, result.findings, output)


@verify.command("events")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--from-seq", type=int, default=None, help="The seq each stream must start at (e.g. 1).")
@OUTPUT
def verify_events(files: tuple[Path, ...], from_seq: int | None, output: str) -> None:
    """Exported events: NDJSON (plain or gzip), a Splunk export, a syslog file of RFC 5424 lines."""
    from forwarder.evidence.exports import verify_exports

    try:
        findings, streams = verify_exports(list(files), from_seq)
    except OSError as exc:
        click.echo(f"cannot read: {exc}", err=True)
        sys.exit(2)
    summary: dict[str, Any] = {"streams": [vars(s) for s in streams]}
    if output == "text":
        summary["lines"] = [
            f"stream {s.stream}: seq {s.first} to {s.last}, {s.events} event(s), {s.duplicates} duplicate(s)"
            for s in streams
        ]
    _report(not findings, summary, findings, output)


def register(main: click.Group) -> None:
    main.add_command(keys)
    main.add_command(verify)
