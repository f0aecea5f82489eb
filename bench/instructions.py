"""``python -m bench.instructions [--events N] [--tree PATH]``: the forwarder's machine
instructions per event, counted by valgrind, for comparing two versions of the hot path.

CPU time on these shared VMs moves by up to 40 % between identical runs and they expose no
hardware counters, so a change worth 5 % cannot be seen in ``bench.run``. Valgrind's
cachegrind (without its cache simulation) counts the instructions the forwarder process
executes; with ``PYTHONHASHSEED=0`` runs of the same tree agree to within 0.5 %, apart from
occasional runs that do extra work depending on wall time. The count runs ``audit-forwarder
once`` into the file sink over N and 2N entries served by the benchmark emulator, each size
``--repeat`` times with the fewest counting; the difference divided by N is the cost of one
more event, without the start-up (imports alone are over two billion instructions).

What the count leaves out: time in the kernel (system calls, page faults), cache misses and
anything valgrind emulates differently (it has no SHA extensions, so SHA-256 counts for much
more than it costs on the CPU). It answers "did this change remove work", not "how long
does it take"; ``bench.run`` stays the measure of the targets. Needs valgrind
(``apt-get install valgrind``). Writes ``bench/results/instructions.json``; for the functions
behind the count, run ``cg_annotate`` on the ``cachegrind.out`` file it names.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.emulators import FastCodacyEmulator
from bench.run import ORG, RESULTS, SPAN_S, forwarder_config
from forwarder.emulators.base import start_in_thread


def summary_instructions(cachegrind_out: Path) -> int:
    """The ``summary:`` line of a cachegrind output file: the instructions executed (Ir)."""
    for line in cachegrind_out.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise ValueError(f"{cachegrind_out} has no summary line; did valgrind finish?")


def count(tree: Path, events: int, work: Path) -> tuple[int, Path]:
    """Instructions of one ``once`` run of ``tree``'s forwarder over a fresh ``events`` backlog,
    and the cachegrind profile they come from."""
    emulator = FastCodacyEmulator()
    emulator.generate(events, orgs=[ORG], span_s=SPAN_S)
    server, url = start_in_thread(emulator)
    try:
        work.mkdir(parents=True)
        out = work / "out.ndjson"
        config = forwarder_config(work, url, events, {"type": "file", "path": str(out), "rotate_max_bytes": 1 << 40})
        profile = work / "cachegrind.out"
        cmd = [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            f"--cachegrind-out-file={profile}",
            sys.executable,
            "-m",
            "forwarder",
            "-c",
            str(config),
            "once",
            "--timeout",
            "7200",
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(tree)}
        with open(work / "forwarder.log", "wb") as log:
            done = subprocess.run(cmd, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    finally:
        server.shutdown()
    delivered = out.read_bytes().count(b"\n") if out.exists() else 0
    if done.returncode != 0 or delivered != events:
        raise RuntimeError(
            f"the forwarder under valgrind exited {done.returncode} having written {delivered} of {events} "
            f"events; see {work / 'forwarder.log'}"
        )
    return summary_instructions(profile), profile


def measure(tree: Path, events: int, work: Path, repeat: int) -> dict[str, Any]:
    """The fewest instructions of ``repeat`` runs at each size: the count is repeatable to 0.5 %
    except for work that depends on wall time (under valgrind a run is ~50x slower, so a wait
    for more events can end differently), which only ever adds (one run in five or so at
    N = 10,000 counted 200 million more)."""
    small, _ = min(count(tree, events, work / f"n-{i}") for i in range(repeat))
    large, profile = min(count(tree, 2 * events, work / f"2n-{i}") for i in range(repeat))
    per_event = (large - small) / events
    return {
        "tree": str(tree),
        "events": events,
        "instructions_at_n": small,
        "instructions_at_2n": large,
        "instructions_per_event": round(per_event),
        "startup_instructions": round(small - per_event * events),
        "profile": str(profile),  # the 2N run that counted
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=10_000, help="N: the runs serve N and 2N entries.")
    parser.add_argument(
        "--tree",
        type=Path,
        default=Path(__file__).resolve().parents[1],
        help="The checkout whose forwarder is counted (default: this one).",
    )
    parser.add_argument("--repeat", type=int, default=2, help="Runs per size; the fewest instructions count.")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument("--work-dir", type=Path, help="Where the runs and profiles go (default: a new temp dir).")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.exit(2, "bench.instructions needs valgrind: apt-get install valgrind\n")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="af-instructions-"))
    result = measure(args.tree.resolve(), args.events, work, max(1, args.repeat))
    print(
        f"{result['instructions_per_event']:,} instructions per event "
        f"(start-up {result['startup_instructions']:,}); tree {result['tree']}; profile {result['profile']}"
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "instructions.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return result


if __name__ == "__main__":
    main()
