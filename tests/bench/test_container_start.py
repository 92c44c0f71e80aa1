"""The pure parts of ``python -m bench.container_start``: its wait, probe and report."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator

import pytest

from bench.container_start import Results, Start, health_status, render, wait_until_ready
from bench.run import free_port


def scripted(statuses: list[int | None]) -> tuple[Callable[[], int | None], Callable[[], float]]:
    """A probe answering ``statuses`` in turn and a clock one second further at each probe."""
    answers: Iterator[int | None] = iter(statuses)
    now = [0.0]

    def probe() -> int | None:
        now[0] += 1.0
        return next(answers)

    return probe, lambda: now[0]


def test_the_wait_times_the_first_answer_and_the_first_200() -> None:
    probe, clock = scripted([None, None, 503, 503, 200])
    start = wait_until_ready(probe, 0.0, what="x", timeout=60, clock=clock, sleep=lambda _: None)
    assert start == Start(first_answer_s=3.0, ready_s=5.0)


def test_a_server_that_exits_first_is_an_error() -> None:
    probe, clock = scripted([None, None, None])
    alive = iter([True, False])
    with pytest.raises(RuntimeError, match="python -m app exited before"):
        wait_until_ready(
            probe,
            0.0,
            what="python -m app",
            timeout=60,
            alive=lambda: next(alive),
            clock=clock,
            sleep=lambda _: None,
        )


def test_the_wait_is_bounded() -> None:
    probe, clock = scripted([503] * 10)
    with pytest.raises(TimeoutError, match=r"no /health 200 within 3 s \(last: 503\)"):
        wait_until_ready(probe, 0.0, what="x", timeout=3, clock=clock, sleep=lambda _: None)


class _Unavailable(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_probe_tells_no_answer_from_an_error_status() -> None:
    assert health_status(f"http://127.0.0.1:{free_port()}/health") is None
    server = http.server.HTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        assert health_status(f"http://127.0.0.1:{server.server_port}/health") == 503
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def results(container_ready: list[float]) -> Results:
    return Results(
        date="2026-11-30 10:00 UTC",
        commit="abc1234-dirty",
        image="xor-serving:latest, 1.97 GB, 5e82d6287345",
        load_average=1.25,
        first_up_s=41.0,
        host=[Start(2.0, 3.0), Start(2.2, 3.4), Start(2.1, 3.2)],
        container=[Start(r - 1.0, r) for r in container_ready],
    )


def test_the_report_lists_each_run_and_the_medians() -> None:
    report = render(results([4.0, 4.8, 4.4]))
    assert "| run 1 | run 2 | run 3 | median |" in report
    assert "| host `python -m app` | `/health` 200 (s) | 3.0 | 3.4 | 3.2 | 3.2 |" in report
    container = "| container `docker compose up -d` | first HTTP answer (s) |"
    assert f"{container} 3.0 | 3.8 | 3.4 | 3.4 |" in report
    assert "41.0 s to `/health` 200" in report
    assert "commit `abc1234-dirty`, image xor-serving:latest, 1.97 GB" in report


def test_the_report_states_the_target() -> None:
    assert "1.38 x, met" in render(results([4.0, 4.8, 4.4]))  # 4.4 / 3.2
    assert "9.38 x, NOT met" in render(results([29.0, 32.0, 30.0]))  # 30.0 / 3.2
