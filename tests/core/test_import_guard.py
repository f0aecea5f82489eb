"""forwarder.import_guard: structlog and httpx load without rich, and nothing else changes.

Each check runs a fresh interpreter (the guard acts on a package's first import only).
"""

from __future__ import annotations

import subprocess
import sys

import orjson


def fresh(code: str) -> dict[str, object]:
    """Runs ``code`` in a new interpreter; it sets ``out``, printed as JSON."""
    script = f"import orjson, sys\n{code}\nprint(orjson.dumps(out).decode())"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = orjson.loads(done.stdout.splitlines()[-1])
    return result


def test_structlog_and_httpx_load_without_rich_and_rich_stays_importable() -> None:
    out = fresh(
        """
import forwarder
finders = list(sys.meta_path)
import structlog, httpx
out = {"finders_unchanged": sys.meta_path == finders,  # another thread may be walking the list
       "loaded": sorted(m for m in ("rich", "pygments", "attr") if m in sys.modules),
       "dev_rich": structlog.dev.rich is None,
       "guard_active": any(type(f).__name__ == "_Guard" and not f.retired for f in sys.meta_path),
       "loader": type(structlog.__spec__.loader).__name__}
import rich.console, rich.progress
out["rich_after"] = rich.console.Console.__name__
"""
    )
    assert out == {
        "finders_unchanged": True,
        "loaded": [],
        "dev_rich": True,
        "guard_active": False,  # both packages loaded: the finder retired (left in place: see done())
        "loader": "SourceFileLoader",  # the package's own loader, restored
        "rich_after": "Console",  # backfill's progress and the tables still get rich
    }


def test_the_console_renderer_prints_a_logged_exception() -> None:
    """Our console logs: an exception is formatted by format_exc_info before ConsoleRenderer,
    the same text whether rich was hidden or not."""
    code = """
import io, contextlib
{first}
from forwarder.logs import configure_logging
import structlog
configure_logging("info", "console")
err = io.StringIO()
with contextlib.redirect_stderr(err):
    configure_logging("info", "console")
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger("t").exception("failed", source="codacy")
out = {{"text": err.getvalue(), "rich": "rich" in sys.modules}}
"""
    hidden = fresh(code.format(first="import forwarder"))
    loaded = fresh(code.format(first="import rich.traceback"))  # rich first: structlog uses it
    assert (hidden["rich"], loaded["rich"]) == (False, True)
    for out in (hidden, loaded):
        text = str(out["text"])
        assert "failed" in text and "source=codacy" in text
        assert "Traceback (most recent call last)" in text and "ValueError: boom" in text
    assert str(hidden["text"]).split("failed", 1)[1] == str(loaded["text"]).split("failed", 1)[1]
