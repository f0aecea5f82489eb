"""The configuration and sink references are generated from the models; they must not drift."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from forwarder.config_reference import render, render_sinks
from forwarder.emulators import EMULATORS
from sinks.registry import SINKS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_configuration_reference_is_current() -> None:
    current = (DOCS / "configuration.md").read_text()
    assert current == render(), "regenerate: python -m forwarder.config_reference > docs/configuration.md"


def test_sinks_reference_is_current() -> None:
    current = (DOCS / "sinks.md").read_text()
    assert current == render_sinks(), "regenerate: python -m forwarder.config_reference sinks > docs/sinks.md"
    for sink in SINKS:
        assert f"## `type: {sink}`" in current
        assert f"    type: {sink}\n" in current, f"config/example.yaml has no {sink} example"


def test_readmes_bad_configuration_example_is_what_check_prints(tmp_path: Path) -> None:
    """README shows the exact lines a bad organization gets; ``check`` must print them, exit 2."""
    readme = (DOCS.parent / "README.md").read_text()
    block = readme.split("A bad configuration exits with code 2", 1)[1].split("```\n", 2)[1]
    line = int(re.search(r"- line (\d+): sources\.codacy\.organizations", block).group(1))  # type: ignore[union-attr]
    padding = "".join(f"# {i}\n" for i in range(line - 6))
    (tmp_path / "config.yaml").write_text(
        f"{padding}state_dir: {tmp_path / 'state'}\nsources:\n  codacy:\n    type: codacy\n"
        "    api_token: t\n    organizations: ['xx/acme']\nsinks: {}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "forwarder", "-c", "config.yaml", "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert result.stdout + result.stderr == block


def test_every_guarantee_names_tests_that_exist() -> None:
    """Each section of docs/guarantees.md names its proof, and every test file or test it names
    exists (a renamed test would otherwise leave a promise proven by nothing)."""
    tests = DOCS.parent / "tests"
    files = {path.name for path in tests.rglob("test_*.py")}
    functions = {
        name
        for path in tests.rglob("*.py")
        for name in re.findall(r"^\s*(?:async )?def (test_\w+)", path.read_text(), re.M)
    }
    sections = re.split(r"^## ", (DOCS / "guarantees.md").read_text(), flags=re.M)[1:]
    assert len(sections) > 10
    for section in sections:
        title = section.splitlines()[0]
        named = re.findall(r"\btest_\w+(?:\.py)?", section)
        assert named, f"docs/guarantees.md '{title}' names no test"
        for name in named:
            known = files if name.endswith(".py") else functions
            assert name in known, f"docs/guarantees.md '{title}' names {name}, which does not exist"
    text = (DOCS / "guarantees.md").read_text()
    paths = {path.name: path for path in tests.rglob("test_*.py")}
    for found in re.finditer(r"::(test_\w+)", text):  # `file.py` ... `::test_x`: test_x is in that file
        file = re.findall(r"(test_\w+\.py)", text[: found.start()])[-1]
        assert re.search(rf"def {found[1]}\b", paths[file].read_text()), f"{found[1]} is not in {file}"


def test_the_emulators_page_names_every_emulator() -> None:
    """docs/emulators.md's NAME row is the list an operator picks from."""
    row = next(line for line in (DOCS / "emulators.md").read_text().splitlines() if line.startswith("| `NAME`"))
    assert set(re.findall(r"`([a-z_]+)`", row)) - {"NAME"} == set(EMULATORS)


def _documented_command_lines() -> list[str]:
    """Every ``audit-forwarder ...`` command README and docs/ show, and each row of README's
    tools table."""
    lines = []
    for page in [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = page.read_text()
        for found in re.findall(r"audit-forwarder ((?:-c \S+ )?[a-z][^`\n]*)", text):
            lines.append(re.split(r" \| | # |\s{2,}|[;&]", found)[0])
        if page.name == "README.md":
            lines += re.findall(r"^\| `([a-z][^`]*)` \|", text, re.M)
    return lines


def test_every_command_and_option_the_docs_show_exists() -> None:
    """An option the documentation shows but the command lacks is an operator's first error."""
    from click import Group

    from forwarder.cli import main

    checked = 0
    for line in _documented_command_lines():
        words = [w for w in re.split(r"[\s\[\]|]+", line) if w]
        command: Any = main
        path = [main]  # a group's options (verify --record) come before its subcommand
        options: set[str] = set()
        for word in words:
            if word in ("-c", "--config") or (not word.startswith("-") and not isinstance(command, Group)):
                continue
            if isinstance(command, Group) and word in command.commands:
                command = command.commands[word]
                path.append(command)
            elif word.startswith("-"):
                options.add(word.split("=")[0])
        if command is main:
            continue
        known = {opt for c in path for param in c.params for opt in [*param.opts, *param.secondary_opts]}
        assert options <= known, f"`audit-forwarder {line}`: {sorted(options - known)} unknown"
        checked += 1
    assert checked > 20


def test_every_log_line_the_docs_quote_is_one_the_code_writes() -> None:
    """An operator greps the logs (or alerts) for the words the documentation quotes."""
    root = DOCS.parent
    code = "\n".join(path.read_text() for package in ("forwarder", "sinks") for path in (root / package).rglob("*.py"))
    quoted: list[tuple[str, str]] = []
    for doc in [root / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = " ".join(doc.read_text().split())
        pattern = r"(?:logs?|logged|log line|warning)(?: (?:a|one|the))?(?: (?:line|warning|event|error))? \(?`([^`]+)`"
        quoted += [(doc.name, found) for found in re.findall(pattern, text)]
    assert len(quoted) >= 8, quoted
    for page, words in quoted:
        if re.fullmatch(r"[\w.:/]+\.(py\S*|\w+)", words) and " " not in words:
            continue  # a test or a name in the code, not a log line
        fixed = words.split("<", 1)[0].strip()  # from <state_dir> on, the message's variable part
        assert fixed in code, f"{page} quotes the log line `{words}`, which no code writes"


def test_readme_names_every_setting_the_image_overrides() -> None:
    """The image's ``AUDIT_FORWARDER_*`` variables win over the mounted YAML: a ``state_dir`` or
    ``metrics.listen`` written there is silently not used, unless README says so."""
    dockerfile = (DOCS.parent / "Dockerfile").read_text()
    readme = (DOCS.parent / "README.md").read_text()
    overrides = set(re.findall(r"\b(AUDIT_FORWARDER_\w+)=", dockerfile))
    assert "AUDIT_FORWARDER_METRICS__LISTEN" in overrides
    assert {name for name in overrides if f"`{name}" not in readme} == set()
