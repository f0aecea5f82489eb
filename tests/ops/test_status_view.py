"""The health server reads the daemon it was given (a ``forwarder.status.StatusView``), never a
module global: a second daemon in the same process (``backfill`` builds one) leaves the first
one's ``/metrics`` and ``/readyz`` showing the first one's sources and sinks."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from forwarder.daemon import Daemon
from forwarder.settings import Settings, load_settings
from tests.support.daemon import write_config


def settings(directory: Path, name: str) -> Settings:
    source = {
        "type": "codacy",
        "base_url": "http://127.0.0.1:9/api/v3",
        "api_token": "codacy-test-token",
        "organizations": ["gh/acme"],
    }
    sink = {"type": "file", "path": str(directory / "out" / "{organization}.ndjson")}
    return load_settings(
        write_config(
            directory / "config.yaml",
            {
                "state_dir": str(directory / "state"),
                "metrics": {"listen": "127.0.0.1:0"},
                "sources": {f"{name}_source": source},
                "sinks": {f"{name}_sink": sink},
            },
        )
    )


async def test_a_second_daemon_leaves_the_first_ones_endpoints_alone(tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = Daemon(settings(tmp_path / "first", "first"))
    await first.start()
    await first.health.start()
    try:
        second = Daemon(settings(tmp_path / "second", "second"))  # as backfill builds its own
        await second.start()
        try:
            assert first.health.address is not None
            async with httpx.AsyncClient(base_url=f"http://{first.health.address}") as client:
                metrics = (await client.get("/metrics")).text
                ready = orjson.loads((await client.get("/readyz")).content)
        finally:
            await second.stop()
    finally:
        await first.stop()
    assert 'sink="first_sink"' in metrics and 'source="first_source"' in metrics
    assert "second_" not in metrics
    assert set(ready["sinks"]) == {"first_sink"} and set(ready["sources"]) == {"first_source"}
