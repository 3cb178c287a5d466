"""Throughput, latency and memory benchmark of the processor (a script that prints figures, not a test)."""
