"""Sinks: one module per receiver; the registry of types is in ``sinks.registry``."""
