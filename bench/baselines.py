"""Three baselines over the same windows of the same emulator, to put our figures in scale.

* ``orjson``: parse each page and serialize each entry again, in this process, on bodies
  fetched beforehand: the floor for any Python forwarder that touches every entry.
* ``httpx_loop``: the simplest forwarder anyone would write (fetch each window with httpx,
  append each entry as an NDJSON line), in its own process: no normalization, no journal,
  no retries, no guarantee.
* ``curl_jq``: the seed's approach, ``curl | jq -c '.[]' >> file`` per window, in a shell.

``python -m bench.baselines httpx_loop URL TOKEN OUT WINDOWS_JSON`` is the second one's
process entry point.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

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


def httpx_loop(audit_url: str, token: str, out: Path, windows: list[Window]) -> int:
    count = 0
    with httpx.Client(headers={"api-token": token}, timeout=120) as client, out.open("ab") as handle:
        for lo, hi in windows:
            entries = orjson.loads(client.get(audit_url, params={"from": lo, "to": hi}).content)
            handle.write(b"".join(orjson.dumps(e) + b"\n" for e in entries))
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
    _, kind, url, token, out, windows = sys.argv
    if kind != "httpx_loop":
        raise SystemExit(f"unknown baseline {kind!r}")
    pairs = [(int(lo), int(hi)) for lo, hi in orjson.loads(windows)]
    print(httpx_loop(url, token, Path(out), pairs))


if __name__ == "__main__":
    main()
