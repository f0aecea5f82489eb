"""Four baselines over the same windows of the same emulator, to put our figures in scale.

* ``orjson``: parse each page and serialize each entry again, in this process, on bodies
  fetched beforehand: the floor for any Python forwarder that touches every entry.
* ``httpx_loop``: the simplest forwarder anyone would write (fetch each window with httpx,
  append each entry as an NDJSON line), in its own process: no normalization, no journal,
  no retries, no guarantee.
* ``normalize_loop``: the same loop plus the least our schema asks for: each entry gets its
  stable id (``content_ids``) and is normalized by the Codacy source's own ``normalize_entry``
  before its line is written. Still no journal, no ordering, no retries, no guarantee: what
  any forwarder producing our events spends at the very least, in CPython.
* ``curl_jq``: the seed's approach, ``curl | jq -c '.[]' >> file`` per window, in a shell.

``python -m bench.baselines {httpx_loop|normalize_loop} URL TOKEN ORG OUT WINDOWS_JSON`` is the
process entry point of the second and third.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

Window = tuple[int, int]


def fetch_pages(audit_url: str, token: str, windows: list[Window]) -> list[bytes]:
    with httpx.Client(headers={"api-token": token}, timeout=120) as client:
        return [client.get(audit_url, params={"from": lo, "to": hi}).content for lo, hi in windows]


def orjson_floor(pages: list[bytes]) -> tuple[int, float]:
    """Returns (entries, CPU seconds) of parse + serialize-per-entry over in-memory pages."""
    started = time.process_time()
    count = 0
    for body in pages:
        out = [orjson.dumps(entry) for entry in orjson.loads(body)]
        count += len(out)
    return count, time.process_time() - started


def raw_lines(entries: list[Any], organization: str) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in entries)


def normalized_lines(entries: list[Any], organization: str) -> bytes:
    # imported here so that the httpx loop's process does not pay for importing the forwarder
    from forwarder.event import content_ids
    from forwarder.sources.codacy import normalize_entry
    from forwarder.sources.window import with_occurrence

    observed = datetime.now(UTC)
    keys = with_occurrence(content_ids("codacy", organization, entries))
    return b"".join(
        orjson.dumps(normalize_entry("codacy", organization, entry, key, observed)) + b"\n"
        for entry, key in zip(entries, keys, strict=True)
    )


LOOPS: dict[str, Callable[[list[Any], str], bytes]] = {"httpx_loop": raw_lines, "normalize_loop": normalized_lines}


def fetch_loop(kind: str, audit_url: str, token: str, organization: str, out: Path, windows: list[Window]) -> int:
    lines, count = LOOPS[kind], 0
    with httpx.Client(headers={"api-token": token}, timeout=120) as client, out.open("ab") as handle:
        for lo, hi in windows:
            entries = orjson.loads(client.get(audit_url, params={"from": lo, "to": hi}).content)
            handle.write(lines(entries, organization))
            count += len(entries)
    return count


def curl_jq_script(audit_url: str, token: str, out: Path, windows: list[Window]) -> str:
    """The token goes through a header file, as a careful operator would keep it off argv."""
    header = out.with_suffix(".headers")
    header.write_text(f"api-token: {token}\n")
    lines = [
        f"curl -sf -H @{shlex.quote(str(header))} {shlex.quote(f'{audit_url}?from={lo}&to={hi}')}"
        f" | jq -c '.[]' >> {shlex.quote(str(out))}"
        for lo, hi in windows
    ]
    return "set -e -o pipefail\n" + "\n".join(lines) + "\n"


def main() -> None:
    _, kind, url, token, organization, out, windows = sys.argv
    if kind not in LOOPS:
        raise SystemExit(f"unknown baseline {kind!r}")
    pairs = [(int(lo), int(hi)) for lo, hi in orjson.loads(windows)]
    print(fetch_loop(kind, url, token, organization, Path(out), pairs))


if __name__ == "__main__":
    main()
