"""audit-forwarder: SaaS audit logs to your SIEM, with nothing lost."""

__version__ = "0.1.0"

from forwarder import import_guard

import_guard.install()  # before anything imports structlog or httpx (see its docstring)
