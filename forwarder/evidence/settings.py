"""The ``evidence`` block of the S3 and file sinks."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EvidenceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signing_key_file: Path = Field(
        description="Ed25519 private key (PEM) that signs the digests; `audit-forwarder keys generate` makes one."
    )
    digest_interval_s: float = Field(3600.0, gt=0, description="A digest is written every interval, even an empty one.")
    digest_directory: str | None = Field(
        None, description="File sink: where digests go (default: `_digests` beside the sink's files)."
    )
    digest_prefix: str = Field("audit-digests/", description="S3 sink: the key prefix of the digests.")
    ledger_directory: Path | None = Field(
        None,
        description="S3 sink: where the objects stored since the last digest are noted (default: "
        "`<state_dir>/evidence`), so a restart loses none of them.",
    )


class ObjectLock(BaseModel):
    """S3 Object Lock of every object and digest the sink writes (the bucket must have it enabled)."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["GOVERNANCE", "COMPLIANCE"] = Field(description="COMPLIANCE: nobody, root included, can shorten it.")
    retain_days: int = Field(gt=0, le=36500)


class EvidenceLedgerSettings(BaseModel):
    """The top-level `evidence` block: how long the evidence ledger (`forwarder.journal.ledger`)
    that `reconcile` and `report` read is kept after the journal pruned the events."""

    model_config = ConfigDict(extra="forbid")
    ledger_retention_days: float | None = Field(
        None,
        gt=0,
        description="Days each event's ledger row (id, time, chain hash, delivery) is kept, by event time. Default: "
        "each source's vendor retention (its `retention_days`; 365 where the vendor's is not known), past which "
        "the vendor cannot be asked again anyway. About 100 bytes per event (docs/evidence.md).",
    )
