"""structlog and httpx load ``rich`` (and ``pygments``) for features this program never uses;
while either package is first imported, those two are reported missing.

Both packages import ``rich`` whenever it is installed, whatever they are configured to do:
structlog's ``__init__`` imports ``structlog.dev`` (rich tracebacks for ``ConsoleRenderer``) and
``structlog.tracebacks`` (rich's pretty-printer for locals in dict tracebacks); httpx's
``__init__`` imports its own command-line client ``httpx._main`` (rich's console, progress,
syntax and table, and pygments). Our logs never use either: every log chain in ``forwarder.logs``
renders the exception with ``format_exc_info`` before ``ConsoleRenderer`` sees it (so its rich
formatter is never called; the console text is the same either way, tested), nothing uses
dict tracebacks, and we never run httpx's client. Yet rich, pygments and attrs cost every
process that logs or makes a request ~30 ms of CPU and ~4.5 MB of memory (docs/performance.md,
round 11). ``rich`` is our own dependency for ``backfill``'s progress and the tools' tables, so
it stays installed and is imported where those are drawn.

Both libraries treat a missing ``rich`` as documented, supported configurations (structlog
falls back to its plain tracebacks, httpx to a ``main`` that says the CLI extra is missing), so
the guard only makes each one see the installation it would see without the extra. It is a
finder at the head of ``sys.meta_path`` installed by ``forwarder/__init__.py``: it wraps the
loader of the ``structlog`` and ``httpx`` packages so that, while their ``__init__`` runs in
this thread, an import of ``rich`` or ``pygments`` not yet loaded raises ``ModuleNotFoundError``.
Anything imported afterwards (``backfill`` importing rich) is untouched, and the finder retires
(answers nothing) once both packages are loaded. If rich is already loaded when structlog or httpx is
(another program imported it first), they use it, as they would have anyway. Only the
importing thread is affected.
"""

from __future__ import annotations

import sys
from _thread import get_ident
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:  # importlib.abc would load importlib.resources: ~5 ms of `--help`
    from collections.abc import Sequence
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec
    from types import ModuleType

GUARDED = frozenset({"structlog", "httpx"})
HIDDEN = frozenset({"rich", "pygments"})


class _Guard:
    def __init__(self) -> None:
        self.hiding: dict[int, int] = {}  # thread -> guarded packages it is importing now
        self.retired = False  # both packages loaded: nothing left to do

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if self.retired:
            return None
        if self.hiding.get(get_ident()) and name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        if name not in GUARDED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: ModuleSpec | None = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = cast("Loader", _HidingLoader(spec.loader, self))
                return spec
        return None

    def done(self) -> None:
        """Retired, not removed: another thread's import may be walking ``sys.meta_path`` at
        this moment (importlib iterates the live list), and a removal would make it skip the
        finder after this one (a module that exists reported missing)."""
        if GUARDED <= sys.modules.keys():
            self.retired = True


class _HidingLoader:
    """The package's own loader, with rich hidden while its module runs."""

    def __init__(self, inner: Loader, guard: _Guard) -> None:
        self.inner = inner
        self.guard = guard

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        spec = module.__spec__
        if spec is not None:
            spec.loader = self.inner  # what importlib.reload and inspect expect to find
        module.__loader__ = self.inner
        if "rich" in sys.modules:  # loaded already: nothing to save, the package may use it
            self.inner.exec_module(module)
            self.guard.done()
            return
        hiding, thread = self.guard.hiding, get_ident()
        hiding[thread] = hiding.get(thread, 0) + 1
        try:
            self.inner.exec_module(module)
        finally:
            hiding[thread] -= 1
            if not hiding[thread]:
                del hiding[thread]
            self.guard.done()


def install() -> None:
    """Idempotent; does nothing once both packages are loaded."""
    if GUARDED <= sys.modules.keys() or any(isinstance(f, _Guard) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Guard())
