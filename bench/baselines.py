"""Five baselines over the same windows of the same emulator, to put our figures in scale.

* ``orjson``: parse each page and serialize each entry again, in this process, on bodies
  fetched beforehand: the floor for any Python forwarder that touches every entry.
* ``httpx_loop``: the simplest forwarder anyone would write (fetch each window with httpx,
  append each entry as an NDJSON line), in its own process: no normalization, no journal,
  no retries, no guarantee.
* ``normalize_loop``: the same loop plus the least our schema asks for: each entry gets its
  stable id (``content_ids``) and is normalized by the Codacy source's own ``normalize_entry``
  before its line is written. Still no journal, no ordering, no retries, no guarantee: what
  any forwarder producing our events spends at the very least, in CPython.
* ``durable_loop``: ``normalize_loop`` plus the two things our promises add to every event
  whatever else a forwarder does: its link in the stream's hash chain
  (``forwarder.evidence.chain.link``: what lets an auditor prove it unaltered) and its bytes
  durable before the next page is fetched (one ``fdatasync`` per page: what lets a cursor move
  safely). Still no ordering, journal index, read-back, ledger, retry or delivery: the least a
  forwarder with our guarantees spends, which issue 24's CPU targets are measured against.
* ``curl_jq``: the seed's approach, ``curl | jq -c '.[]' >> file`` per window, in a shell.

``python -m bench.baselines {httpx_loop|normalize_loop|durable_loop} URL TOKEN ORG OUT WINDOWS_JSON`` is the
process entry point of the second, third and fourth.
"""

from __future__ import annotations

import os
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


def normalized_events(entries: list[Any], organization: str) -> list[dict[str, Any]]:
    # imported here so that the httpx loop's process does not pay for importing the forwarder
    from forwarder.event import content_ids
    from forwarder.sources.codacy import normalize_entry
    from forwarder.sources.window import with_occurrence

    observed = datetime.now(UTC)
    keys = with_occurrence(content_ids("codacy", organization, entries))
    return [normalize_entry("codacy", organization, e, k, observed) for e, k in zip(entries, keys, strict=True)]


def normalized_lines(entries: list[Any], organization: str) -> bytes:
    return b"".join(orjson.dumps(event) + b"\n" for event in normalized_events(entries, organization))


class LinkedLines:
    """``normalized_lines`` with each event linked into the stream's chain first, as the
    forwarder journals it: the head carries over from page to page."""

    def __init__(self) -> None:
        from forwarder.evidence.chain import START

        self.head = START

    def __call__(self, entries: list[Any], organization: str) -> bytes:
        from forwarder.evidence.chain import link

        lines = []
        for event in normalized_events(entries, organization):
            self.head = link(event, self.head)
            lines.append(orjson.dumps(event) + b"\n")
        return b"".join(lines)


Lines = Callable[[list[Any], str], bytes]
# Each loop: a maker of its page-to-lines function, and whether each page is made durable.
LOOPS: dict[str, tuple[Callable[[], Lines], bool]] = {
    "httpx_loop": (lambda: raw_lines, False),
    "normalize_loop": (lambda: normalized_lines, False),
    "durable_loop": (LinkedLines, True),
}


def fetch_loop(kind: str, audit_url: str, token: str, organization: str, out: Path, windows: list[Window]) -> int:
    make_lines, durable = LOOPS[kind]
    lines, count = make_lines(), 0
    with httpx.Client(headers={"api-token": token}, timeout=120) as client, out.open("ab") as handle:
        for lo, hi in windows:
            entries = orjson.loads(client.get(audit_url, params={"from": lo, "to": hi}).content)
            handle.write(lines(entries, organization))
            if durable:
                handle.flush()
                os.fdatasync(handle.fileno())
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
