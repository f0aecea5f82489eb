"""Where the state lives: the embedded SQLite file (the default, nothing to install) or a shared
PostgreSQL database (several replicas; ``docs/high-availability.md``)."""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import ConfigDict, Field, SecretStr, model_validator

from forwarder.secrets import SecretFilesModel


class StateSettings(SecretFilesModel):
    model_config = ConfigDict(extra="forbid")
    backend: Literal["sqlite", "postgresql"] = Field(
        "sqlite", description="sqlite: a file in state_dir, one process. postgresql: shared by replicas."
    )
    dsn: SecretStr | None = Field(
        None,
        description="postgresql: a libpq connection string or URI, e.g. 'host=db.internal dbname=af user=af "
        "sslmode=verify-full'. Secret: give it as dsn_file, or keep the password out of it (password_file).",
    )
    password: SecretStr | None = Field(None, description="postgresql: the role's password (password_file).")
    lease_ttl_s: float = Field(
        30.0, ge=2, description="postgresql: how long a replica's work survives it; failover takes at most this."
    )
    replica_id: str = Field(
        default_factory=socket.gethostname,
        description="postgresql: this replica's name in the lease table (default: the host name). Unique per replica.",
    )
    pool_size: int = Field(4, ge=2, le=64, description="postgresql: connections this replica keeps open.")
    sink_handover_s: float = Field(
        300.0,
        ge=0,
        description="postgresql: a sink failing this long on the replica holding it (retrying, nothing confirmed) "
        "is handed to another live replica, which may reach the receiver (not while retry.max_attempts bounds the "
        "retrying: the batch is dead-lettered); a stopped one is handed over at once; 0: never.",
    )

    @model_validator(mode="after")
    def _dsn_for_postgresql(self) -> StateSettings:
        if self.backend == "postgresql" and self.dsn is None:
            raise ValueError("backend postgresql needs dsn (or dsn_file)")
        return self
