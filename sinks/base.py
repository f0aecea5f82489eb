"""What every sink implements, and the errors through which it tells the shared delivery
layer (``forwarder.delivery``) what to do with a batch.

A sink only turns a batch into bytes on the wire and says whether its receiver confirmed.
Reading the journal, batching, retries with backoff, the dead-letter store and committing
the sink's offset live in the delivery layer, once for all sinks.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from isal import igzip
from pydantic import ConfigDict, Field, SecretStr, model_validator

from forwarder.formats import get_formatter
from forwarder.http_shared import cleartext_urls
from forwarder.record import Record
from forwarder.routing import RedactRule, SinkFilter, check_redaction
from forwarder.secrets import SecretFilesModel

_STR_OR_NONE = (str, type(None))


def plain_fields(record: Record) -> bool:
    """Whether the record's action, category and outcome are strings (or absent), so that a
    sink may remember what it derived from them: 1, 1.0 and True are equal as keys but print
    differently (hostile records)."""
    return (
        type(record.action) in _STR_OR_NONE
        and type(record.category) in _STR_OR_NONE
        and type(record.outcome) in _STR_OR_NONE
    )


def bounded(value: str, limit: int) -> str:
    """``value`` if it fits in ``limit`` UTF-8 bytes, else its start and a hash of the whole:
    receivers cap names (a file name, an S3 key), and two long names must still differ."""
    data = value.encode()
    if len(data) <= limit:
        return value
    return f"{data[: limit - 13].decode(errors='ignore')}-{hashlib.sha256(data).hexdigest()[:12]}"


def gzip_compress(data: bytes, level: int = 1) -> bytes:
    """One gzip member, the same bytes for the same input (``mtime=0``). Level 1 is ISA-L's
    (python-isal): zlib's level-1 ratio on these NDJSON batches at a quarter of its CPU (1.2
    against 4.8 µs per event, ``docs/performance.md``). ISA-L stops at 3, so levels 2 to 9 are
    zlib's, for operators who trade CPU for smaller objects."""
    if level == 1:
        return igzip.compress(data, 1, mtime=0)
    return gzip.compress(data, level, mtime=0)


def gzip_file(source: Path, target: Path, level: int = 1, mode: int = 0o600) -> None:
    """``source`` gzipped into a new file ``target`` (created with ``mode``, never readable by
    more than that), streamed (a rotated file is ~100 MB), and fsynced: the caller deletes
    ``source`` next, and its events must not then exist only in the page cache. Levels as in
    ``gzip_compress``: on a file sink's NDJSON, zlib's level 9 took 24 µs per event (half
    again the forwarder's whole CPU), ISA-L's level 1 takes 1.7."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # the umask's bits are not the operator's: mode is what the file gets
    with source.open("rb") as src, os.fdopen(fd, "wb") as raw:
        gzip_class = igzip.IGzipFile if level == 1 else gzip.GzipFile
        with gzip_class(fileobj=raw, mode="wb", compresslevel=level) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        raw.flush()
        os.fsync(raw.fileno())


@dataclass
class DeliveryReport:
    """A partial success: the receiver took the batch but refused some records for good
    (for example a HEC error code 6). Those go to the dead-letter store with their reason."""

    rejected: list[tuple[Record, str]] = field(default_factory=list)


class RetryableError(Exception):
    """The receiver is unreachable or busy: retry the same batch after a backoff."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalSinkError(Exception):
    """Retrying cannot help (bad credentials, forbidden): this sink stops, loudly; the
    others and the polling carry on, and its offset stays where it was."""


class SinkConfig(SecretFilesModel):
    """Fields every sink accepts; each sink's config model extends it."""

    model_config = ConfigDict(extra="forbid")
    flush_on_poll_end: ClassVar[bool] = True
    """Whether a batch goes out as soon as a poll ends (False: it waits for ``batch_max_age_s``
    or a full batch, for receivers that want few objects: Security Lake)."""
    type: str
    format: str = "json"
    batch_max_events: int = 500
    batch_max_bytes: int = 1_048_576
    batch_max_age_s: float = 1.0
    format_options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the format, e.g. `{delimiter: '^'}` for leef (docs/formats.md)."
    )
    filter: SinkFilter | None = Field(
        None, description="Which events this sink receives: include/exclude by vendor, source, ... (docs/formats.md)."
    )
    redact: list[RedactRule] = Field(
        default_factory=list, description="Fields to drop or replace by an HMAC before sending (docs/formats.md)."
    )
    redact_key: SecretStr | None = Field(None, description="HMAC-SHA256 key of the `hmac` redact rules.")

    @model_validator(mode="after")
    def _batch_limits(self) -> SinkConfig:
        """Here rather than as field bounds: sinks redeclare these fields with their own defaults.
        A zero or negative limit used to be taken silently (as one event, one byte)."""
        if self.batch_max_events < 1:
            raise ValueError(f"batch_max_events must be at least 1, not {self.batch_max_events}")
        if self.batch_max_bytes < 1:
            raise ValueError(f"batch_max_bytes must be at least 1, not {self.batch_max_bytes}")
        if self.batch_max_age_s < 0:
            raise ValueError(f"batch_max_age_s must be 0 or more, not {self.batch_max_age_s:g}")
        return self

    @model_validator(mode="after")
    def _format_and_redaction(self) -> SinkConfig:
        get_formatter(self.format, self.format_options)
        check_redaction(self.redact, self.redact_key)
        return self

    def destination(self) -> str | None:
        """Where the sink writes, when two sinks writing there would spoil each other (the
        configuration refuses it); None for receivers that take any number of senders."""
        return None

    def transport_warnings(self) -> list[str]:
        """What is allowed but exposes the credentials or the events: logged at start, shown by ``check``."""
        return cleartext_urls(self)


class Sink(Protocol):
    """Implemented by each module in ``sinks/``; registered in ``sinks/registry.py``."""

    type_name: ClassVar[str]
    name: str

    async def start(self) -> None:
        """Open connections; failures here are retried by the delivery layer like a send."""

    async def send(self, batch: Sequence[Record]) -> DeliveryReport | None:
        """Deliver the whole batch, returning only once the receiver confirmed it.

        Raise RetryableError or FatalSinkError; any other exception counts as retryable.
        """

    async def check(self) -> str:
        """Probe the receiver for ``audit-forwarder check``; raise with a clear message on failure."""

    async def close(self) -> None:
        """Flush and release resources; called on shutdown and on reload."""
