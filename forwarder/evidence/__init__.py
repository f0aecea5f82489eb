"""Compliance evidence: the per-stream hash chain, signed digests of stored output, ``verify``.

``docs/evidence.md`` describes the formats (the contract ``reconcile`` and ``report`` build on)
and what each proof does and does not establish.
"""
