"""Structured logs that never leak a secret.

Every log line passes through ``redact`` before it is rendered: configured secret values and
the values of credential headers are replaced by ``***`` wherever they appear, including in
exception text (``forwarder.redaction``, where the secrets are registered). JSON lines when
not on a terminal (for journald and log shippers), readable lines on one.

The libraries' standard ``logging`` (asyncio, apscheduler, httpx, httpcore, botocore, urllib3,
tenacity, ``warnings``) goes through the same processors: one handler on the root logger renders
their records with structlog's ``ProcessorFormatter``, so a library can neither break the JSON
stream with a plain-text line nor bypass the redaction. Libraries speak from WARNING up (from
INFO at ``log.level: debug``: httpx's request lines, apscheduler's job runs). Each logger and
message is rate-limited (``Throttle``), because a fault that repeats in a loop (``accept()``
out of descriptors) once filled stderr with megabytes of the same traceback. apscheduler's
"skipped: maximum number of running instances reached" is expected (a poll still running when
the next is due) and is demoted to debug. What the event loop reports (an exception no task
retrieved, a callback that raised) goes the same way through ``watch_loop``, and so does an
exception that would end the process (``sys.excepthook``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import orjson
import structlog

from forwarder.redaction import clip, scrub_value

LINES_PER_WINDOW = 10  # per logger and message
WINDOW_S = 60.0
MAX_KEYS = 1_000  # distinct messages tracked at once; a library formatting ids into them cannot grow it

log = structlog.get_logger("forwarder.logs")


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {k: scrub_value(v) for k, v in event_dict.items()}


class Throttle:
    """At most ``limit`` lines per key in each ``window_s``. The first line refused in a window
    says that similar ones are being suppressed; the first let through after it says how many
    were. Thread-safe: library records arrive from worker threads (botocore, the journal)."""

    def __init__(
        self, limit: int = LINES_PER_WINDOW, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self.windows: dict[tuple[str, str], list[float]] = {}  # key -> [start, lines let through, suppressed]
        self.lock = threading.Lock()

    def admit(self, key: tuple[str, str], level: str = "warning") -> bool:
        now = self.clock()
        with self.lock:
            window = self.windows.get(key)
            if window is None or now - window[0] >= self.window_s:
                suppressed = int(window[2]) if window is not None else 0
                if window is None and len(self.windows) >= MAX_KEYS:
                    self._expire(now)
                self.windows[key] = [now, 1, 0]
                admitted, note = True, "suppressed" if suppressed else ""
            elif window[1] < self.limit:
                window[1] += 1
                admitted, note, suppressed = True, "", 0
            else:
                window[2] += 1
                admitted, note, suppressed = False, "suppressing" if window[2] == 1 else "", 0
        if note == "suppressing":
            getattr(log, level, log.warning)(
                "similar log lines are suppressed for the rest of the window",
                logger=key[0],
                message=key[1],
                limit=self.limit,
                window_s=self.window_s,
            )
        elif note == "suppressed":
            getattr(log, level, log.warning)(
                "similar log lines were suppressed",
                logger=key[0],
                message=key[1],
                suppressed=suppressed,
                window_s=self.window_s,
            )
        return admitted

    def _expire(self, now: float) -> None:
        for key in [k for k, w in self.windows.items() if now - w[0] >= self.window_s]:
            del self.windows[key]
        if len(self.windows) >= MAX_KEYS:
            self.windows.clear()


THROTTLE = Throttle()


def _template(record: logging.LogRecord) -> str:
    """What identifies "the same message": the format string, unless it is only a placeholder
    (``warnings`` logs everything as ``"%s"``)."""
    template = str(record.msg)
    if template.strip() in ("%s", "%r"):
        template = record.getMessage()
    return clip(template, 200)  # the suppression notices quote it: scrubbed before the cut


def _expected(record: logging.LogRecord, template: str) -> bool:
    """What a library reports as a warning or an error but is expected here: apscheduler's
    skipped run (a poll still running when the next is due) and its "raised an exception" for
    a poll cancelled at shutdown or reload (the traceback of a cancellation says nothing)."""
    if not record.name.startswith("apscheduler"):
        return False
    if "maximum number of running instances reached" in template:
        return True
    if record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
        record.exc_info, record.exc_text = None, None
        return True
    return False


class _LibraryFilter(logging.Filter):
    """Demotes expected events, then applies the daemon's level and the rate limit."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        template = _template(record)
        if record.levelno > logging.DEBUG and _expected(record, template):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        if record.levelno < self.level:
            return False
        return THROTTLE.admit((record.name, template), record.levelname.lower())


class _StructlogHandler(logging.Handler):
    """Writes through structlog's own ``PrintLogger``, whose lock is per file: a library's line
    and ours, written from different threads, never interleave."""

    def __init__(self, file: TextIO) -> None:
        super().__init__()
        self.out = structlog.PrintLogger(file)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.out.msg(self.format(record))
        except Exception:
            self.handleError(record)


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=lambda obj, **_: orjson.dumps(obj, default=str).decode())
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric = getattr(logging, level.upper())
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = _StructlogHandler(sys.stderr)
    handler.addFilter(_LibraryFilter(numeric))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.processors.add_log_level, timestamper, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]  # replaces, so configuring twice never doubles a line
    root.setLevel(logging.INFO if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    logging.captureWarnings(True)
    logging.raiseExceptions = False  # a record that cannot be formatted is dropped, not a traceback
    sys.excepthook = _uncaught


def _uncaught(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    """The last line of a process that dies of a bug: still one JSON line, still redacted."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    log.critical("audit-forwarder crashed", error=f"{kind.__name__}: {exc}", exc_info=(kind, exc, tb))


def watch_loop(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Routes what the event loop reports through the pipeline instead of asyncio's
    plain-text traceback on the ``asyncio`` logger; rate-limited per message."""
    (loop or asyncio.get_running_loop()).set_exception_handler(_loop_exception)


def _loop_exception(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    message = str(context.get("message") or "unhandled exception in the event loop")
    if not THROTTLE.admit(("asyncio", message[:200]), "error"):
        return
    fields: dict[str, Any] = {"logger": "asyncio"}
    task = context.get("task") or context.get("future")
    if isinstance(task, asyncio.Task):
        fields["task"] = task.get_name()
    exc = context.get("exception")
    if isinstance(exc, BaseException):
        fields["error"] = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, OSError):  # out of descriptors or memory: the traceback says nothing more
            fields["exc_info"] = exc
    log.error(message, **fields)


def log_task_failure(task: asyncio.Task[Any]) -> None:
    """A done-callback for a background task (a poll cycle, a reload) nobody awaits: its
    exception said at once, not when the task is collected."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("background task failed", task=task.get_name(), exc_info=exc)
