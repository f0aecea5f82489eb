"""When the daemon reads its AWS-stored secrets (``<field>_from``) again: every
``secrets.refresh_s``, and sooner after a vendor's 401 (``secret_stores.credentials_refused``
sets ``refused``). What a re-read does is the daemon's ``refresh_secrets``, handed in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

REFUSED_REREAD_GAP_S = 60.0  # a wrong token answers 401 at every poll: AWS is asked at most this often
log = structlog.get_logger("forwarder.daemon")


class SecretRefresh:
    def __init__(
        self, refresh_s: Callable[[], float], stored: Callable[[], bool], refresh: Callable[[], Awaitable[bool]]
    ) -> None:
        """``refresh_s`` and ``stored`` (whether any secret is stored) are read at each turn, as
        the running configuration has them after a reload."""
        self.refresh_s = refresh_s
        self.stored = stored
        self.refresh = refresh
        self.refused = asyncio.Event()  # a 401 somewhere: the stored secrets may have rotated

    async def run(self) -> None:
        """At most every REFUSED_REREAD_GAP_S after a 401: a wrong token refused at every poll
        must neither hammer AWS nor postpone the periodic read."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.refresh_s()
        last_refused = -REFUSED_REREAD_GAP_S
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(due):
                    await self.refused.wait()
            refused, now = self.refused.is_set(), loop.time()
            self.refused.clear()
            if now >= due:
                due = now + self.refresh_s()
            elif not refused or now - last_refused < REFUSED_REREAD_GAP_S or not self.stored():
                continue
            else:
                last_refused = now
                log.info("credentials refused; reading the stored secrets again")
            if self.stored():
                await self.refresh()
