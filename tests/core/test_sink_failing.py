"""How long a sink has been failing is measured on the monotonic clock: a wall-clock step (NTP
correcting an hour, a VM resumed) must neither make a sink that failed a second ago look failing
for an hour on ``/readyz``, nor hide one that has."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from forwarder.delivery import SinkWorker
from forwarder.health import report
from forwarder.retry import RetrySettings
from sinks.file import FileSinkConfig

ERROR = "sink out: HEC answered HTTP 503 code 9 Server is busy"


def view(worker: SinkWorker) -> Any:
    journal = SimpleNamespace(problems=lambda: [], size=(5, 500), is_full=lambda: False, head=5)
    worker.journal = cast(Any, journal)
    metrics = SimpleNamespace(source_failing_threshold_s=900.0, sink_failing_threshold_s=900.0)
    return SimpleNamespace(
        settings=SimpleNamespace(metrics=metrics),
        started=True,
        started_at=time.time(),
        config_path=None,
        pollers={},
        workers={"out": worker},
        journal=journal,
        replicas=None,
    )


def make_worker(tmp_path: Path) -> SinkWorker:
    config = FileSinkConfig(type="file", path=str(tmp_path / "out.ndjson"))
    return SinkWorker("out", cast(Any, None), config, cast(Any, None), RetrySettings())


def test_a_clock_step_forward_does_not_make_a_fresh_failure_look_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker(tmp_path)
    daemon = view(worker)
    worker.status.failed(ERROR)
    stepped = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: stepped)
    ready, body = report(daemon)
    assert ready, body["problems"]
    assert body["sinks"]["out"]["failing_since"] == pytest.approx(stepped, abs=60)


def test_a_sink_failing_past_the_threshold_is_named_with_its_lag_and_error(tmp_path: Path) -> None:
    worker = make_worker(tmp_path)
    daemon = view(worker)
    worker.status.failed(ERROR)
    assert worker.status.failing_since is not None
    worker.status.failing_since -= 1000  # failing for 1000 s by the monotonic clock
    ready, body = report(daemon)
    assert not ready
    assert body["problems"] == [f"sink out has been failing for over 900s, 5 events behind: {ERROR}"]
    worker.status.confirmed(time.time())
    assert report(daemon)[0]
