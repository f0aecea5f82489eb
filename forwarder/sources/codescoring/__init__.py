"""Codescoring: the audit log of an on-premise installation (research notes §3).

The audit endpoint is not documented publicly, so its path and filter names are settings.
What is documented or follows from Django REST Framework is fixed: ``Authorization: Token``,
``page``/``per_page`` paging (a DRF envelope, or a bare list), 404 "Invalid page." past the
end. The order is a guess too (``order``, newest first by default): newest first, one poll
walks pages down to the cursor's watermark minus the overlap; oldest first (or pages that are
not in the order configured) it walks every page, since the new entries are at the end. Either
way the whole walk is journaled as one page, oldest first: a walk cut short must not move the
cursor past entries it never reached.

The entry shape is a guess as well ([INF]): the names of the time and id fields are settings
(``time_field``, ``id_field``; ``created_at`` and ``id`` by default).

Entries carry only a rendered message (Python format strings listed in the vendor's audit-log
page), so the mapping parses each known template back into structured fields.

One module per concern: ``config.py`` (the settings), ``templates.py`` (the messages parsed),
``mapping.py`` (an entry as an event), ``source.py`` (paging and the walk down to the floor).
"""

from forwarder.sources.codescoring.config import CodescoringConfig
from forwarder.sources.codescoring.mapping import normalize_entry
from forwarder.sources.codescoring.source import MAX_PAGES, REMEDY, CodescoringSource
from forwarder.sources.codescoring.templates import TEMPLATES, Template, parse_message

__all__ = [
    "MAX_PAGES",
    "REMEDY",
    "TEMPLATES",
    "CodescoringConfig",
    "CodescoringSource",
    "Template",
    "normalize_entry",
    "parse_message",
]
