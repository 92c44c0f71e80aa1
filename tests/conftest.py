"""Shared fixtures: a clean environment for every test."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _no_xor_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read XOR_* variables: the developer's own must not leak into tests."""
    for name in list(os.environ):
        if name.startswith("XOR_"):
            monkeypatch.delenv(name)
