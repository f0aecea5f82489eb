"""``audit-forwarder demo``: the real daemon against local emulators, writing real files.

The emulators run on loopback inside this process; the daemon runs exactly as ``once``
does with ``demo.yaml`` (package data beside this module, so the demo works from any install,
not only a checkout), then the demo reads the files back and shows what arrived.

``--presets`` also starts the Okta, GitHub and Google Workspace emulators and reads them through
their ``type: okta|github|google_workspace`` presets into the same files. Their source entries
come from each emulator's ``source_config`` (the emulator contract), not from ``demo.yaml``:
the URLs and credentials exist only while the demo runs, and the default demo stays as it was.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
from rich.console import Console

from forwarder.emulators.base import Emulator, start_in_thread
from forwarder.emulators.codacy import CodacyEmulator
from forwarder.emulators.codescoring import CodescoringEmulator
from forwarder.emulators.codestax import DEFAULT_API_KEY, CodeStaxEmulator
from forwarder.emulators.configcat import DEFAULT_ORG_ID, ConfigCatEmulator
from forwarder.emulators.github import GitHubEmulator
from forwarder.emulators.google_workspace import GoogleWorkspaceEmulator
from forwarder.emulators.okta import OktaEmulator
from forwarder.emulators.presets_common import PresetEmulator
from forwarder.sources import display_name
from forwarder.tools.common import print_table

DEMO_CONFIG = Path(__file__).resolve().parent / "demo.yaml"
# What the preset sources add to their emulator's entry: the timing demo.yaml gives the others.
PRESET_TIMING = {"initial_lookback_days": 7, "lag_s": 0, "interval_s": 30}


# The preset vendors' emulators by source name, and the organizations each generates (None:
# its default one). Google Workspace's organizations are applications: two show the fan-out.
PRESETS: dict[str, tuple[Callable[[], PresetEmulator], list[str] | None]] = {
    "okta": (OktaEmulator, None),
    "github": (GitHubEmulator, None),
    "google_workspace": (GoogleWorkspaceEmulator, ["login", "admin"]),
}


def run_demo(output_dir: Path, entries: int, presets: bool = False) -> int:
    from forwarder.daemon import Daemon
    from forwarder.logs import configure_logging
    from forwarder.once import OnceRun
    from forwarder.settings import ConfigError, load_settings

    console = Console()
    output_dir = output_dir.resolve()
    if output_dir.exists():  # the emulators are new each run, so old output would only confuse
        shutil.rmtree(output_dir)
    codacy, configcat = CodacyEmulator(), ConfigCatEmulator()
    codescoring, codestax = CodescoringEmulator(), CodeStaxEmulator()
    emulators: dict[str, Emulator] = {
        "CODACY": codacy,
        "CONFIGCAT": configcat,
        "CODESCORING": codescoring,
        "CODESTAX": codestax,
    }
    span = {"span_s": 3 * 86400}
    codacy.generate(entries, orgs=["gh/acme", "gl/globex"], **span)
    configcat.generate(entries, orgs=[DEFAULT_ORG_ID], **span)
    codescoring.generate(entries, **span)
    codestax.generate(entries, **span)
    servers = {name: start_in_thread(emulator) for name, emulator in emulators.items()}
    extra_sources: dict[str, dict[str, object]] = {}
    for name, (preset, orgs) in (PRESETS if presets else {}).items():
        emulator = preset()
        emulator.generate(entries, orgs=orgs, **span)
        servers[name.upper()] = start_in_thread(emulator)
        # the store now holds the generated organizations, which source_config reads by default
        extra_sources[name] = {**emulator.source_config(servers[name.upper()][1]), **PRESET_TIMING}
    os.environ["DEMO_OUTPUT"] = str(output_dir)
    for name, (_, url) in servers.items():
        os.environ[f"DEMO_{name}_URL"] = url
    os.environ.update(
        DEMO_CODACY_TOKEN=codacy.token,
        DEMO_CONFIGCAT_USER=configcat.username,
        DEMO_CONFIGCAT_PASSWORD=configcat.password,
        DEMO_CONFIGCAT_ORG=DEFAULT_ORG_ID,
        DEMO_CODESCORING_TOKEN=codescoring.token,
        DEMO_CODESTAX_KEY=DEFAULT_API_KEY,
    )
    console.print(f"[bold]audit-forwarder demo[/bold]: output in {output_dir}")
    for name, (_, url) in servers.items():
        label = display_name(name.lower()) or name.replace("_", " ").title()
        console.print(f"  {label} emulator at {url}")
    try:
        settings = load_settings(DEMO_CONFIG, extra_sources=extra_sources)
    except ConfigError as exc:
        console.print("\n".join(exc.problems))
        return 2
    configure_logging("warning", "console")
    code = asyncio.run(OnceRun(Daemon(settings)).run(timeout_s=120))
    for server, _ in servers.values():
        server.shutdown()
    summarize(console, output_dir)
    return code


def summarize(console: Console, output_dir: Path) -> None:
    counts: Counter[tuple[str, str, str]] = Counter()
    sample: dict[str, object] | None = None
    files = sorted(output_dir.rglob("*.ndjson"))
    for path in files:
        for line in path.read_bytes().splitlines():
            event = orjson.loads(line)
            counts[(event["source"], event["vendor"], event["organization"])] += 1
            sample = sample or event
    # print_table: off a terminal (CI, a log), rich cut ConfigCat's organization id to 30 columns
    print_table("Collected", ("source", "vendor", "organization", "events"), sorted((*k, n) for k, n in counts.items()))
    if sample:
        console.print("[bold]One normalized event:[/bold]")
        console.print_json(orjson.dumps(sample).decode())
    console.print("[bold]Files:[/bold]")
    for path in sorted(output_dir.rglob("*")):
        if path.is_file() and "state" not in path.parts:
            console.print(f"  {path}  ({path.stat().st_size} bytes)", soft_wrap=True, markup=False)
    command = sys.argv[0] if Path(sys.argv[0]).name == "audit-forwarder" else "audit-forwarder"
    console.print("Inspect the journal, cursors and sink offsets with:")
    words = [f"DEMO_OUTPUT={shlex.quote(str(output_dir))}", shlex.quote(command), "-c", shlex.quote(str(DEMO_CONFIG))]
    console.print(f"  {' '.join(words)} state show", soft_wrap=True, markup=False)  # one line to copy
