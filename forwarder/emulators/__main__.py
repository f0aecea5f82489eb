"""``python -m forwarder.emulators NAME``: serve one vendor emulator on loopback.

This is how an operator tries a configuration without vendor accounts, so after the
``LISTENING <url>`` line (which the tests and the benchmark read to learn the port) it prints
the source (or sink) entry to paste into a configuration: base URL, credentials and
organizations, exactly as the emulator expects them. See ``docs/emulators.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from forwarder.emulators import EMULATORS
from forwarder.emulators.base import Emulator, make_server

PROG = "python -m forwarder.emulators"
DEFAULT_ENTRIES = 100  # per organization: enough for several pages, quick to generate

EPILOG = """\
examples:
  %(prog)s codacy                               100 entries of gh/acme, on a free port
  %(prog)s configcat --port 8002 --entries 500
  %(prog)s codacy --org gh/acme --org gl/globex
  %(prog)s codestax --options '{"span_s": 604800, "config": {"retention_days": 30}}'
  %(prog)s splunk_hec                           a HEC receiver for a splunk_hec sink

After LISTENING <url>, the emulator prints the configuration entry (base URL, credentials,
organizations) to put under sources: (or sinks: for splunk_hec). Credentials are fixed test
values; the emulators are for loopback only. docs/emulators.md describes each one.
"""


def config_entry(name: str, emulator: Emulator, url: str) -> tuple[str, dict[str, Any]]:
    """("sources" or "sinks", {entry name: settings}) that reach this emulator as served."""
    return ("sinks" if emulator.sink_type is not None else "sources"), emulator.config_entries(name, url)


def announce(name: str, emulator: Emulator, url: str, entries: int) -> None:
    section, entry = config_entry(name, emulator, url)
    what = f"{entries} entries per organization" if emulator.sink_type is None else "a receiver"
    print(f"{name} emulator ({what}) at {url}; put this under {section}: in a configuration:")
    text = yaml.safe_dump(entry, sort_keys=False, default_flow_style=False)
    print("".join(f"  {line}\n" for line in text.splitlines()), end="")
    print("Stop it with Ctrl-C.", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve a vendor audit-log API emulator (or a Splunk HEC receiver) on loopback.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", choices=sorted(EMULATORS))
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument(
        "--entries",
        type=int,
        default=None,
        help=f"entries to generate per organization (default: {DEFAULT_ENTRIES}; 0 for splunk_hec)",
    )
    parser.add_argument(
        "--org",
        action="append",
        default=[],
        metavar="ORG",
        help="organization to generate entries for (repeatable; codacy: provider/name, configcat: a UUID)",
    )
    parser.add_argument(
        "--options",
        default="{}",
        help='JSON: generation options (orgs, span_s, end_ms, ...) and "config": emulator switches',
    )
    args = parser.parse_args(argv)
    emulator = EMULATORS[args.name]()
    try:
        options = json.loads(args.options)
        switches = options.pop("config", {})
        emulator.configure(switches)
    except (ValueError, KeyError, AttributeError) as exc:
        parser.error(f"--options: {exc}")
    if args.org:
        options["orgs"] = args.org
    entries = args.entries if args.entries is not None else (0 if emulator.sink_type is not None else DEFAULT_ENTRIES)
    if entries:
        try:
            emulator.generate(entries, **options)
        except (ValueError, TypeError) as exc:
            parser.error(f"cannot generate {args.name} entries: {exc}")
    server = make_server(emulator, args.host, args.port)
    url = f"http://{args.host}:{server.server_address[1]}"
    print(f"LISTENING {url}", flush=True)  # first line: the tests and the benchmark read the port from it
    announce(args.name, emulator, url, entries)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
