"""The throughput, CPU, memory and latency benchmark (``python -m bench.run``).

Everything the forwarder talks to runs in its own process, so the CPU and memory figures
are the forwarder's alone; see ``docs/performance.md`` for what is measured and how.
"""
