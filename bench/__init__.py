"""Benchmarks (``make bench``): throughput and latency of the service against a ceiling and a
naive baseline, measured side by side in one run. Not part of ``make test``."""
