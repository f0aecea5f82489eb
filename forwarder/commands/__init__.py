"""The command groups and helpers of ``forwarder.cli``, one module per group: ``state``, ``dlq``,
and ``common`` (options, settings loading, error handling shared by every command)."""
