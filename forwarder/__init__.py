"""audit-forwarder: SaaS audit logs to your SIEM, with nothing lost."""

__version__ = "0.1.0"
