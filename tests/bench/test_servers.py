"""The benchmark's servers start and answer its request right (``bench.run.Server.start``
checks the answer), or ``make bench`` would stop, or measure nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.run import Server, servers


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["floor", "fastapi", "ceiling", "service", "service-nocache", "naive"]
)
def test_each_benchmark_server_starts_and_answers_right(
    name: str, trained_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bench.run.OUT", tmp_path)  # server logs go here, not to bench/out
    (server,) = [s for s in servers(trained_model_dir) if s.name == name]
    assert isinstance(server, Server)
    try:
        assert server.start(timeout=120) > 0  # raises unless /predict answers class 1 for [0, 1]
    finally:
        if server.process is not None:
            server.process.terminate()
            server.process.wait(timeout=30)
