"""What a reloaded configuration changes, decided before anything running is touched.

``plan`` compares the running settings with the new ones: sources and sinks whose
configuration changed are replaced, the others keep running; settings only a restart can
change (``RESTART_ONLY``) keep their running value, with a warning. The daemon
(``Daemon.reload``) then builds what the plan adds and only once that succeeded stops what it
removes, so a reload applies completely or not at all, and never touches the journal or the
cursors: it cannot lose or repeat anything a restart would not.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from pydantic import BaseModel

from forwarder.settings import Settings

log = structlog.get_logger("forwarder.reload")
RESTART_ONLY = ("state_dir", "state", "journal", "metrics", "log")  # the rest of the settings apply at a reload


def same(old: BaseModel, new: BaseModel) -> bool:
    """Compares what the operator wrote: generated defaults (a HEC channel) differ per load."""
    return type(old) is type(new) and old.model_dump(exclude_unset=True) == new.model_dump(exclude_unset=True)


@dataclass(frozen=True)
class ReloadPlan:
    settings: Settings  # the new settings, with the running value of every restart-only one
    gone_sources: list[str]  # to stop: removed or changed
    gone_sinks: list[str]
    added_sources: list[str]  # to start: new or changed
    added_sinks: list[str]

    @property
    def empty(self) -> bool:
        return not (self.gone_sources or self.gone_sinks or self.added_sources or self.added_sinks)

    def log_applied(self, event: str = "configuration reloaded") -> None:
        gone_sources, added_sources = set(self.gone_sources), set(self.added_sources)
        gone_sinks, added_sinks = set(self.gone_sinks), set(self.added_sinks)
        log.info(
            event,
            sources_stopped=sorted(gone_sources - added_sources),
            sources_started=sorted(added_sources - gone_sources),
            sources_restarted=sorted(gone_sources & added_sources),
            sinks_stopped=sorted(gone_sinks - added_sinks),
            sinks_started=sorted(added_sinks - gone_sinks),
            sinks_rebuilt=sorted(gone_sinks & added_sinks),
        )


def plan(old: Settings, new: Settings, stopped: frozenset[str] = frozenset()) -> ReloadPlan:
    """A changed ``retry`` rebuilds every sink: each worker took the settings when it was made.
    ``stopped``: sinks that stopped on an error retrying cannot fix (a refused token, a missing
    index) are rebuilt even when unchanged: the fix is often at the receiver, and the operator
    was told to reload once it is made."""
    for key in RESTART_ONLY:
        if getattr(new, key) != getattr(old, key):
            log.warning("this setting changes only on restart; keeping the running value", setting=key)
    new = new.model_copy(update={k: getattr(old, k) for k in RESTART_ONLY})
    retry_changed = new.retry != old.retry
    gone_sources = [n for n in old.sources if n not in new.sources or not same(old.sources[n], new.sources[n])]
    gone_sinks = [
        n
        for n in old.sinks
        if retry_changed or n in stopped or n not in new.sinks or not same(old.sinks[n], new.sinks[n])
    ]
    added_sources = [n for n in new.sources if n in gone_sources or n not in old.sources]
    added_sinks = [n for n in new.sinks if n in gone_sinks or n not in old.sinks]
    return ReloadPlan(new, gone_sources, gone_sinks, added_sources, added_sinks)
