"""Microsoft Sentinel sink (Azure Monitor Logs Ingestion API), in parts: ``config`` (the
settings, checked at load), ``auth`` (Entra ID tokens: client secret or certificate, cached
and refreshed), ``rows`` (the table row of an event and the requests a batch is cut into),
``answers`` (what Azure's answers say and what to fix) and ``sink`` (the ``Sink`` that wires
them, with the guarantees in its docstring)."""
