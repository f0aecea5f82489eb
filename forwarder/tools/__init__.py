"""Operator tools behind the CLI: backfill, preview, cursor edits and the dead-letter store.

Each module does one job; ``forwarder.cli`` only parses options and calls them.
"""
