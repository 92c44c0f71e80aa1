"""Helpers the test packages share (fixtures live in tests/conftest.py, helpers here).

- :mod:`tests.support.versions`: publish a copy of a trained version, or a broken one;
- :mod:`tests.support.waiting`: poll a condition until it holds;
- :mod:`tests.support.server`: real ``python -m app`` processes on free loopback ports;
- :mod:`tests.support.responses`: the service's and the protocols' error shapes.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
