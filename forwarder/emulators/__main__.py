"""``python -m forwarder.emulators NAME [--port P] [--entries N]``: serve one emulator."""

from __future__ import annotations

import argparse
import json

from forwarder.emulators import EMULATORS
from forwarder.emulators.base import serve_forever


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a vendor audit-log API emulator on loopback.")
    parser.add_argument("name", choices=sorted(EMULATORS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--entries", type=int, default=0, help="entries to generate per organization")
    parser.add_argument("--options", default="{}", help="JSON: generation options and emulator switches")
    args = parser.parse_args()
    emulator = EMULATORS[args.name]()
    options = json.loads(args.options)
    switches = options.pop("config", {})
    emulator.configure(switches)
    if args.entries:
        emulator.generate(args.entries, **options)
    serve_forever(emulator, args.host, args.port)


if __name__ == "__main__":
    main()
