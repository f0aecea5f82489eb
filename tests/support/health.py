"""The daemon's health and metrics endpoints over plain HTTP, as a probe or Prometheus reads them."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.support.daemon import DaemonProcess


def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=5)


def health(port: int, path: str = "/readyz") -> tuple[int, dict[str, Any]]:
    response = get(f"http://127.0.0.1:{port}{path}")
    return response.status_code, orjson.loads(response.content)


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text exposition, or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        rest = series[len(name) :]
        if rest and not rest.startswith("{"):
            continue
        found = dict(part.split("=", 1) for part in rest.strip("{}").split(",") if "=" in part)
        if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            return float(value)
    return None


def unready(port: int) -> tuple[int, dict[str, Any]] | None:
    """For ``wait_until``: the /readyz answer once it is 503."""
    answer = health(port, "/readyz")
    return answer if answer[0] == 503 else None


def logged_port(proc: DaemonProcess) -> int | None:
    """The port the start-up line names (``metrics.listen`` with port 0)."""
    for line in proc.log().splitlines():
        if line.startswith("{") and "serving /metrics" in line:
            return int(orjson.loads(line)["port"])
    return None
