"""Made-up values the report tests render (no benchmark is run)."""

from __future__ import annotations

MACHINE = {
    "date": "2026-01-01 00:00 UTC",
    "cpu": "2 x Test CPU",
    "memory": "4 GiB",
    "system": "Linux 6",
    "python": "3.11.7",
    "tensorflow": "2.21.0",
    "wrk": "4.1.0",
}
