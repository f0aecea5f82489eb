"""ConfigCat: ``GET /v2/organizations/{id}/auditlogs`` (research notes §2).

Entries have an id (``auditLogId``) and the v2 endpoint pages with ``pageNumber``/``pageSize``,
newest first as far as anyone has observed. So the stream reads time windows of at most 30
days (the documented v1 cap, which may still hold on v2), walks every page of a window with
the end time fixed, and only then journals the window's new entries oldest first with the
cursor: a cursor committed per page could skip entries still to come on later pages.
``hasNext`` alone is never trusted (a page past the end comes back empty while it says true).

The mapping is declared as data (``MAPPING``) for the generic mapper of ``http_json``, so the
same table drives this source and an ``http_json`` description of ConfigCat.

Two modules: ``mapping.py`` (the table and an entry as an event), ``source.py`` (the settings,
the rate-limit throttle and the window walk).
"""

from forwarder.sources.configcat.mapping import MAPPER, MAPPING, normalize_entry
from forwarder.sources.configcat.source import ConfigCatConfig, ConfigCatSource, reset_delay

__all__ = ["MAPPER", "MAPPING", "ConfigCatConfig", "ConfigCatSource", "normalize_entry", "reset_delay"]
