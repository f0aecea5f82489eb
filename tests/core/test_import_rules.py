"""The import rules of ``docs/architecture.md``: no import cycle among the product's modules,
and the layers below the wiring never reach up into it.

Every import statement counts, inside a function or under ``TYPE_CHECKING`` too: an import
hidden in a function to dodge a cycle is still the cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("forwarder", "sinks")
# Wiring and front ends: they build and run the rest, so only they may import each other.
WIRING = (
    "forwarder.__main__",
    "forwarder.build",
    "forwarder.checks",
    "forwarder.cli",
    "forwarder.config_errors",  # the settings' error wording
    "forwarder.commands",
    "forwarder.config_reference",
    "forwarder.daemon",
    "forwarder.demo",
    "forwarder.once",
    "forwarder.reload",
    "forwarder.settings",
    "forwarder.state_view",
    "forwarder.tools",
    "forwarder.evidence.cli",
    "forwarder.evidence.report_cli",
    "forwarder.evidence.reconcile",  # the evidence commands, as tools/ is for state
)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                found = resolve(target)
                # a package and its own submodules importing each other is how packages work
                if found and found != name and not name.startswith(f"{found}.") and not found.startswith(f"{name}."):
                    graph[name].add(found)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _wiring(name: str) -> bool:
    return any(name == top or name.startswith(f"{top}.") for top in WIRING)


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_nothing_below_the_wiring_imports_it() -> None:
    """Metrics and health read the daemon through ``forwarder.status``; sources, sinks, the
    journal and the delivery layer never import the daemon, the settings or a command."""
    upward = {
        name: sorted(target for target in targets if _wiring(target))
        for name, targets in _graph().items()
        if not _wiring(name)
    }
    assert {name: targets for name, targets in upward.items() if targets} == {}


def test_the_core_knows_only_the_sink_contract() -> None:
    graph = _graph()
    core = [name for name in graph if name.startswith("forwarder.") and not _wiring(name)]
    reached = {name: sorted(t for t in graph[name] if t.startswith("sinks") and t != "sinks.base") for name in core}
    assert {name: targets for name, targets in reached.items() if targets} == {}
