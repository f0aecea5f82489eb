"""File sink: NDJSON or CSV files, one per path template, fsynced before the offset moves.

The write path runs in a worker thread (file I/O and fsync block). Rotation happens before a
write once a file is over ``rotate_max_bytes`` or older than ``rotate_max_age_s``; the rotated
file is renamed with a UTC timestamp and optionally gzipped. A crash mid-batch can leave a
partial batch in the file; the delivery layer then re-sends the whole batch, so readers see
duplicates with identical ids, never a gap.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar, Literal

from pydantic import Field, field_validator

from forwarder.formats import HEADERS, get_formatter
from sinks.base import DeliveryReport, FatalSinkError, Record, SinkConfig


class FileSinkConfig(SinkConfig):
    type: Literal["file"]
    format: Literal["json", "csv", "ecs", "ocsf", "cef", "leef"] = "json"
    path: str = Field(description="Path template; {source}, {vendor} and {organization} are replaced.")
    rotate_max_bytes: int = Field(100 * 1024 * 1024, gt=0)
    rotate_max_age_s: float = Field(86_400.0, gt=0)
    compress_rotated: bool = True
    mode: int = Field(0o640, description="Permission bits of new files, as an octal string in YAML: '0640'.")
    fsync: bool = Field(
        True, description="fsync before the offset moves; turning it off weakens the guarantee."
    )

    @field_validator("mode", mode="before")
    @classmethod
    def _octal(cls, value: object) -> object:
        return int(value, 8) if isinstance(value, str) else value


@dataclass
class _Open:
    handle: BinaryIO
    opened_at: float


def _safe(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in value) or "_"


class FileSink:
    type_name: ClassVar[str] = "file"

    def __init__(self, name: str, config: FileSinkConfig) -> None:
        self.name = name
        self.config = config
        self.formatter = get_formatter(config.format, config.format_options)
        self.header = HEADERS.get(config.format)
        self.files: dict[Path, _Open] = {}
        self._paths: dict[tuple[str, str, str], Path] = {}

    def path_for(self, source: str, vendor: str, organization: str) -> Path:
        # Cached: a few triples cover every record, and rebuilding the path per record was a
        # tenth of the forwarder's CPU.
        key = (source, vendor, organization)
        path = self._paths.get(key)
        if path is None:
            path = self._paths[key] = Path(
                self.config.path.format(source=_safe(source), vendor=_safe(vendor), organization=_safe(organization))
            )
        return path

    async def start(self) -> None:
        return None

    async def send(self, batch: Sequence[Record]) -> DeliveryReport | None:
        # Looked up by the strings: hashing a Path per record costs more than formatting it.
        groups: dict[Path, list[bytes]] = {}
        by_key: dict[tuple[str, str, str], list[bytes]] = {}  # keys sharing a path share its list
        formatter = self.formatter
        for record in batch:
            key = (record.source, record.vendor, record.organization)
            lines = by_key.get(key)
            if lines is None:
                lines = by_key[key] = groups.setdefault(self.path_for(*key), [])
            lines.append(formatter(record))
        try:
            await asyncio.to_thread(self._write, groups)
        except PermissionError as exc:
            raise FatalSinkError(
                f"file sink {self.name!r} cannot write {exc.filename}: permission denied"
            ) from None
        return None

    def _write(self, groups: dict[Path, list[bytes]]) -> None:
        for path, lines in groups.items():
            entry = self._open(path)
            lines.append(b"")  # the last line's LF, without copying the joined batch once more
            entry.handle.write(b"\n".join(lines))
            entry.handle.flush()
            if self.config.fsync:
                os.fsync(entry.handle.fileno())

    def _open(self, path: Path) -> _Open:
        entry = self.files.get(path)
        if entry is not None:
            size = entry.handle.tell()
            if (
                size >= self.config.rotate_max_bytes
                or time.time() - entry.opened_at >= self.config.rotate_max_age_s
            ):
                entry.handle.close()
                del self.files[path]
                self._rotate(path)
                entry = None
        if entry is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.config.mode)
            handle = os.fdopen(fd, "ab")
            if handle.tell() == 0 and self.header is not None:
                handle.write(self.header + b"\n")
            entry = _Open(handle, time.time())
            self.files[path] = entry
        return entry

    def _rotate(self, path: Path) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = path.with_name(f"{path.name}.{stamp}")
        n = 1
        while target.exists() or Path(f"{target}.gz").exists():
            target = path.with_name(f"{path.name}.{stamp}.{n}")
            n += 1
        path.rename(target)
        if self.config.compress_rotated:
            gz_path = Path(f"{target}.gz")
            with open(target, "rb") as src, gzip.open(gz_path, "wb") as dst:
                shutil.copyfileobj(src, dst)
                dst.flush()
            os.chmod(gz_path, self.config.mode)
            os.remove(target)

    async def check(self) -> str:
        probe = Path(self.config.path.format(source="check", vendor="check", organization="check")).parent
        await asyncio.to_thread(probe.mkdir, parents=True, exist_ok=True)
        if not os.access(probe, os.W_OK):
            raise FatalSinkError(f"directory {probe} is not writable")
        return f"writable: {probe}"

    async def close(self) -> None:
        files, self.files = self.files, {}
        for entry in files.values():
            await asyncio.to_thread(entry.handle.close)
