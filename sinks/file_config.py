"""The file sink's settings (``type: file``), apart from the sink that writes the files
(``sinks.file``)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator

from forwarder.evidence.settings import EvidenceSettings
from sinks.base import SinkConfig


class FileSinkConfig(SinkConfig):
    type: Literal["file"]
    format: Literal["json", "csv", "ecs", "ocsf", "cef", "leef"] = "json"
    path: str = Field(description="Path template; {source}, {vendor} and {organization} are replaced.")
    rotate_max_bytes: int = Field(
        100 * 1024 * 1024,
        gt=0,
        description="A file is rotated before the next write once it holds this many bytes; a batch is never "
        "split between two files, so a file may exceed this by one batch.",
    )
    rotate_max_age_s: float = Field(
        86_400.0,
        gt=0,
        description="A file is rotated before the next write once it was started this long ago (counted from "
        "the last rotation, across restarts); a file nothing is written to stays as it is.",
    )
    compress_rotated: bool = Field(
        True,
        description="gzip each rotated file: NAME.<UTC time of the rotation, 20261206T234501Z>[.N].gz. The "
        "forwarder never deletes rotated files: remove old ones by your archive's retention (find -mtime, "
        "tmpfiles.d), after the digests that list them were verified if `evidence` is on.",
    )
    compress_level: int = Field(
        1,
        ge=1,
        le=9,
        description="gzip level of rotated files. 1 compresses with ISA-L (on NDJSON: ~1.7 µs per event, files "
        "~6.5x smaller); 2 to 9 are zlib's (9: ~24 µs per event, half as much again as the rest of the "
        "forwarder; ~9.7x smaller).",
    )
    mode: int = Field(
        0o640,
        description="Permission bits of new files, as an octal string in YAML: '0640'. The directories the sink "
        "creates get them with execute where read is (0750), so nobody else may write in them; the umask "
        "does not apply.",
        json_schema_extra={"doc_default": "'0640'"},
    )
    fsync: bool = Field(True, description="fsync before the offset moves; turning it off weakens the guarantee.")
    evidence: EvidenceSettings | None = Field(
        None, description="Signed, chained digests of the files written (docs/evidence.md)."
    )

    def destination(self) -> str:
        """Two sinks appending to one file would rotate it under each other."""
        return f"files {os.path.abspath(self.path)}"

    @field_validator("mode", mode="before")
    @classmethod
    def _octal(cls, value: object) -> object:
        return int(value, 8) if isinstance(value, str) else value

    @field_validator("mode")
    @classmethod
    def _permission_bits(cls, value: int) -> int:
        """``mode: 640`` unquoted is the number 640, octal 1200: files nobody could read."""
        if not 0 <= value <= 0o777 or not value & 0o200:
            raise ValueError(
                "must be permission bits the owner can write, as a quoted octal string: '0640' "
                "(unquoted, 640 is the decimal number 640)"
            )
        return value
