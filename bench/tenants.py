"""Hundreds of tenants (issue 23): 500 organizations in one daemon, and a backfill's use of a rate limit.

``organizations``: the idle measurement of ``bench.idle`` (the real daemon, its own process, the
benchmark's Codacy emulator serving ``orgs`` empty organizations, a file sink) at 500
organizations: it starts, polls every organization each interval (the source's cycle is
scheduled with ``jitter_s``), and its RSS is sampled over the window. Reported besides: the
polls of one organization the window held, and the CPU per organization poll.

``rate_use``: a backfill of the Okta preset against the Okta emulator stating a limit of
``limit`` requests per ``window_s`` window in ``X-Rate-Limit-*`` (epoch seconds, as Okta):
the share of the allowed request rate it used (requests per second over the limit's rate) and
how many 429s it provoked. The preset's ``early_limit`` keeps that many requests of each
window unused, so the ceiling is ``(limit - early_limit) / limit``.

    python -m bench.tenants [--orgs 500] [--interval-s 30] [--window-s 90] [--limit 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import idle
from bench.procs import REPO_ROOT, start_listening
from forwarder.sources import SOURCES
from forwarder.sources.http_json import HttpJsonSource


def organizations(work: Path, orgs: int, interval_s: float, window_s: float) -> dict[str, Any]:
    figures = idle.measure(REPO_ROOT, work, orgs, interval_s, window_s)
    requests = max(figures["requests_in_window"], 1)
    figures["polls_per_organization"] = round(figures["requests_in_window"] / orgs, 2)
    figures["cpu_ms_per_organization_poll"] = round(1000 * figures["cpu_s"] / requests, 3)
    return figures


def rate_use(work: Path, limit: int, window_s: float, entries: int, early_limit: int) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    options = {"span_s": 2 * 86_400, "config": {"rate_limit": limit, "rate_window_s": window_s}}
    proc, url = start_listening(
        ["forwarder.emulators", "okta", "--port", "0", "--entries", str(entries), "--options", json.dumps(options)],
        work / "okta.log",
    )
    try:
        config = SOURCES["okta"][0].model_validate(
            {
                "type": "okta",
                "url": f"{url}/{{organization}}/api/v1/logs",
                "organizations": ["acme"],
                "auth": {"token": "okta-test-token"},
                "params": {"limit": 20},
                "initial_lookback_days": 3,
                "lag_s": 0,
                "rate_limit": {"early_limit": early_limit},
            }
        )
        source = HttpJsonSource("okta", config)  # type: ignore[arg-type]

        async def backfill() -> int:
            got = 0
            try:
                async for page in source.pages("acme", None):
                    got += len(page.entries)
            finally:
                await source.close()
            return got

        # start at a window's beginning, as a long backfill spans many windows anyway
        time.sleep(window_s - time.time() % window_s)
        started = time.time()
        got = asyncio.run(backfill())
        elapsed = time.time() - started
        rows = httpx.get(f"{url}/_control/requests", timeout=30).json()
    finally:
        proc.kill()
        proc.wait(timeout=10)
    logs = [row for row in rows if "/api/v1/logs" in str(row[2])]
    statuses = [int(row[3]) for row in logs]
    # per window of the limit, the backfill's last (partly used: it ended) left out
    per_window: dict[int, int] = {}
    for row in logs:
        per_window[int(float(row[0]) // window_s)] = per_window.get(int(float(row[0]) // window_s), 0) + 1
    whole = [count for window, count in sorted(per_window.items())][:-1] or list(per_window.values())
    used = sum(whole) / len(whole) / limit
    return {
        "limit": limit,
        "window_s": window_s,
        "early_limit": early_limit,
        "entries": got,
        "requests": len(statuses),
        "elapsed_s": round(elapsed, 2),
        "share_of_allowed_rate": round(used, 3),
        "windows": len(whole),
        "ceiling": round((limit - early_limit) / limit, 3),
        "responses_429": statuses.count(429),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="default: a new temporary directory")
    parser.add_argument("--orgs", type=int, default=500)
    parser.add_argument("--interval-s", type=float, default=30.0)
    parser.add_argument("--window-s", type=float, default=90.0)
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--limit-window-s", type=float, default=2.0)
    parser.add_argument("--entries", type=int, default=6000)
    parser.add_argument("--early-limit", type=int, default=1)
    parser.add_argument("--skip-orgs", action="store_true")
    args = parser.parse_args()
    args.work = args.work or Path(tempfile.mkdtemp(prefix="bench-tenants-"))
    results: dict[str, Any] = {}
    results["rate_use"] = rate_use(args.work / "rate", args.limit, args.limit_window_s, args.entries, args.early_limit)
    print(json.dumps(results["rate_use"]), flush=True)
    if not args.skip_orgs:
        results["organizations"] = organizations(args.work / "orgs", args.orgs, args.interval_s, args.window_s)
        print(json.dumps(results["organizations"]), flush=True)


if __name__ == "__main__":
    main()
