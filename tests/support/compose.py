"""docker compose projects for the container tests (marker: container): the engine check, a
project to run compose commands in, JSON over HTTP, and a request loop that records every
answer, for the tests that change a running stack under traffic.

Needs a working ``docker`` with ``docker compose``; on this kind of machine `.ci/run` provides
one through the workplace's container engine. Without one the tests skip and say why (fail,
with ``XOR_REQUIRE_SERVICES=1``, as in CI).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support import REPO
from tests.support.waiting import wait_for

# The engine's pace: once a second, with connection errors (a service still starting) as
# "not yet".
wait_for_engine = functools.partial(wait_for, interval=1.0, retry_on=(OSError, ValueError))


def engine_problem() -> str | None:
    """Why no container engine can be used here, or None."""
    if reason := os.environ.get("XOR_CONTAINER_ENGINE_UNAVAILABLE"):
        return reason
    if shutil.which("docker") is None:
        return "no `docker` command on PATH (run via .ci/run, which starts the container engine)"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return f"`docker info` failed: {info.stderr.strip()[:200]}"
    compose = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, timeout=60
    )
    if compose.returncode != 0:
        return f"`docker compose` is not available: {compose.stderr.strip()[:200]}"
    return None


@dataclass
class Compose:
    """One compose project of the repository's docker-compose.yml."""

    project: str
    env: dict[str, str] = field(default_factory=dict)
    profiles: Sequence[str] = ()
    # The host ports published, by name ("api", "lb", "prometheus", ...).
    ports: dict[str, int] = field(default_factory=dict)

    def url(self, path: str, port: str = "api") -> str:
        return f"http://127.0.0.1:{self.ports[port]}{path}"

    def run(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        command = ["docker", "compose", "-p", self.project]
        for profile in self.profiles:
            command += ["--profile", profile]
        completed = subprocess.run(
            [*command, *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and completed.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {completed.returncode}:\n"
                f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
            )
        return completed

    def down(self) -> str:
        """The project's logs (the end of them), then every container and volume removed."""
        logs = self.run("--profile", "*", "logs", "--no-color", check=False).stdout
        self.run("--profile", "*", "down", "-v", "--remove-orphans", check=False, timeout=300)
        return logs[-6000:]

    def container_ids(self, service: str) -> list[str]:
        return self.run("ps", "-q", service).stdout.split()

    def one_shot(self, service: str, *args: str, timeout: float = 600) -> int:
        """``run`` ``service`` once with ``args``; its exit code. Not --rm (this engine reports
        0 for --rm runs whatever happened) and --no-deps (this engine would recreate the running
        services it depends on, see the engine's README)."""
        name = f"{self.project}-{service}-{os.getpid()}-{time.monotonic_ns()}"
        try:
            self.run("run", "--no-deps", "--name", name, service, *args, timeout=timeout)
            return exit_code(name)
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def exit_code(container: str) -> int:
    inspect = ["docker", "inspect", "--format", "{{.State.ExitCode}}", container]
    return int(subprocess.run(inspect, capture_output=True, text=True, check=True).stdout)


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: its status, headers (lowercase names) and JSON body."""

    status: int
    headers: dict[str, str]
    body: Any


def request(url: str, body: object | None = None, timeout: float = 5) -> Answer:
    """GET ``url``, or POST ``body`` as JSON; a 4xx/5xx is an Answer too (its JSON body or
    None), a connection error raises OSError."""
    data = None if body is None else json.dumps(body).encode()
    call = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if data:
        call.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(call, timeout=timeout) as response:
            raw, status, headers = response.read(), response.status, response.headers
    except urllib.error.HTTPError as error:
        raw, status, headers = error.read(), error.code, error.headers
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return Answer(status, {name.lower(): value for name, value in headers.items()}, parsed)


def http(url: str, body: object | None = None, timeout: float = 5) -> tuple[int, Any]:
    """Status and JSON body (``{}`` when there is none)."""
    answer = request(url, body, timeout)
    return answer.status, answer.body if answer.body is not None else {}


@dataclass(frozen=True)
class Outcome:
    """What one request of a :class:`RequestLoop` got: when (monotonic), and either the answer
    or the connection error."""

    at: float
    answer: Answer | None
    error: str | None = None


class RequestLoop:
    """Sends ``body`` to ``url`` again and again on a thread (bounded in time), recording each
    outcome: the tests change the stack under it and count what failed."""

    def __init__(
        self, url: str, body: object, *, pause: float = 0.02, max_seconds: float = 600
    ) -> None:
        self.url, self.body, self.pause, self.max_seconds = url, body, pause, max_seconds
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                self.outcomes.append(Outcome(started, request(self.url, self.body, timeout=10)))
            except OSError as exc:
                self.outcomes.append(Outcome(started, None, repr(exc)))
            time.sleep(self.pause)

    def failures(self) -> list[str]:
        """Every outcome that was not a 200, described."""
        return [
            str(outcome.error)
            if outcome.answer is None
            else f"{outcome.answer.status} {outcome.answer.body}"
            for outcome in self.outcomes
            if outcome.answer is None or outcome.answer.status != 200
        ]

    def answers_after(self, moment: float) -> list[Answer]:
        return [o.answer for o in self.outcomes if o.at >= moment and o.answer is not None]


@contextmanager
def request_loop(url: str, body: object, **kwargs: Any) -> Iterator[RequestLoop]:
    loop = RequestLoop(url, body, **kwargs)
    loop._thread.start()
    try:
        yield loop
    finally:
        loop._stop.set()
        loop._thread.join(timeout=30)
