"""``python -m bench.container_start [--runs 3]``: how long ``docker compose up -d`` takes to
serve, against the same start on the host.

Why: every start of the api (a deploy, a restart, a rescheduled container) and every
``docker compose run --rm train`` imports TensorFlow first. The image runs on a read-only root
filesystem, so whatever bytecode it does not ship is compiled again at every start: that made
a container start several times slower than the host's. Target (issue 13): the container's
first ``/health`` 200 within 1.5 x the host's (medians).

Host: a model is trained (``bench.run.train_model``) and ``python -m app`` serves it on a free
loopback port with default settings (inherited ``XOR_*`` variables are dropped), timed from
the process's start. Container: the image is built (``--no-build``: the existing
``xor-serving:latest``), a compose project of its own (``xor-serving-bench``, the api on a free
loopback port) is brought up once so that ``train-init`` publishes a first model into its
volume (that first start, training included, is reported too); then each run is ``down``
(the volume kept) and ``up -d``, timed from the command's start, as a user would type them.
The runs alternate, host then container, so drift of a shared machine hits both alike; only
one of them runs at a time. Each is timed to its first HTTP answer of any kind and to its
first ``/health`` 200 (probed every 50 ms, each probe on a fresh connection as a health check
does). The compose project and its volume are removed at the end, also on failure.

Results are printed as a Markdown table; raw numbers in ``bench/out/container-start.json``,
logs in ``bench/out/container-start-host.log`` and ``bench/out/container-start-compose.log``.
Exit status 0 even when the target is missed (this is a report), 2 when there is no engine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.baseline import describe
from bench.run import OUT, REPO, free_port, train_model

PROJECT = "xor-serving-bench"
IMAGE = "xor-serving:latest"
TARGET_RATIO = 1.5
MAX_RUNS = 20
PROBE_INTERVAL = 0.05
RESULTS_JSON = OUT / "container-start.json"
HOST_LOG = OUT / "container-start-host.log"
COMPOSE_LOG = OUT / "container-start-compose.log"


@dataclass(frozen=True)
class Start:
    """One start, in seconds from its command: to any HTTP answer, and to ``/health`` 200."""

    first_answer_s: float
    ready_s: float


@dataclass
class Results:
    date: str
    commit: str
    image: str
    load_average: float
    first_up_s: float
    host: list[Start]
    container: list[Start]

    def ratio(self) -> float:
        """The container's median time to ``/health`` 200 over the host's."""
        return median_ready(self.container) / median_ready(self.host)


def median_ready(starts: Sequence[Start]) -> float:
    return statistics.median(s.ready_s for s in starts)


def health_status(url: str) -> int | None:
    """The status ``url`` answers with, or None while nothing answers (connection refused,
    reset or timed out: the server is still starting)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def wait_until_ready(
    probe: Callable[[], int | None],
    started: float,
    *,
    what: str,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> Start:
    """Probe until it gives 200; ``started`` is the ``clock()`` reading at the start command.

    Raises RuntimeError when ``alive()`` turns false first, TimeoutError after ``timeout``.
    """
    first_answer: float | None = None
    while True:
        status = probe()
        elapsed = clock() - started
        if status is not None and first_answer is None:
            first_answer = elapsed
        if status == 200:
            assert first_answer is not None
            return Start(first_answer, elapsed)
        if not alive():
            raise RuntimeError(f"{what} exited before /health answered 200")
        if elapsed > timeout:
            raise TimeoutError(f"{what}: no /health 200 within {timeout:.0f} s (last: {status})")
        sleep(PROBE_INTERVAL)


def host_start(model_dir: Path, timeout: float) -> Start:
    """``python -m app`` of this tree serving ``model_dir``, from its start to ``/health`` 200."""
    port = free_port()
    env = {
        **os.environ,
        "XOR_MODEL_DIR": str(model_dir),
        "XOR_HOST": "127.0.0.1",
        "XOR_PORT": str(port),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    with HOST_LOG.open("ab") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=REPO, env=env, stdout=log, stderr=log
        )
        try:
            return wait_until_ready(
                lambda: health_status(f"http://127.0.0.1:{port}/health"),
                started,
                what="python -m app",
                timeout=timeout,
                alive=lambda: process.poll() is None,
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Compose:
    """``docker compose`` on this repository's file, as its own project."""

    port: int

    def run(self, *args: str, check: bool = True, timeout: float = 1200) -> str:
        completed = subprocess.run(
            ["docker", "compose", "-p", PROJECT, *args],
            cwd=REPO,
            env={**os.environ, "XOR_API_PORT": str(self.port)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and completed.returncode != 0:
            raise RuntimeError(
                f"docker compose {' '.join(args)} exited {completed.returncode}:\n"
                f"{completed.stderr[-2000:]}"
            )
        return completed.stdout

    def start(self, timeout: float) -> Start:
        """``up -d``, from the command's start to the api's first ``/health`` 200."""
        started = time.perf_counter()
        self.run("up", "-d", timeout=timeout)
        return wait_until_ready(
            lambda: health_status(f"http://127.0.0.1:{self.port}/health"),
            started,
            what="docker compose up -d",
            timeout=timeout,
        )


def engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no `docker` command on PATH"
    try:
        completed = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return "`docker compose version` did not answer within 60 s"
    if completed.returncode != 0:
        return f"`docker compose` is not available: {completed.stderr.strip()[:200]}"
    return None


def image_description(image: str) -> str:
    """The image's tag, size (decimal GB, as ``docker images`` shows it) and short id."""
    completed = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}} {{.Size}}", image],
        capture_output=True,
        text=True,
        check=True,
    )
    image_id, size = completed.stdout.split()
    return f"{image}, {int(size) / 1e9:.2f} GB, {image_id.removeprefix('sha256:')[:12]}"


def _seconds(values: Sequence[float]) -> str:
    return " | ".join(f"{v:.1f}" for v in values)


def render(results: Results) -> str:
    """The results as a Markdown report: each run, the medians, and the target."""
    runs = max(len(results.host), len(results.container))
    lines = [
        f"commit `{results.commit}`, image {results.image}; {results.date}, "
        f"load average {results.load_average:.1f} at the start",
        "",
        "| start | to | " + " | ".join(f"run {i + 1}" for i in range(runs)) + " | median |",
        "|---|---|" + "--:|" * (runs + 1),
    ]
    for label, starts in (
        ("host `python -m app`", results.host),
        ("container `docker compose up -d`", results.container),
    ):
        for to, values in (
            ("first HTTP answer (s)", [s.first_answer_s for s in starts]),
            ("`/health` 200 (s)", [s.ready_s for s in starts]),
        ):
            lines.append(
                f"| {label} | {to} | {_seconds(values)} | {statistics.median(values):.1f} |"
            )
    ratio = results.ratio()
    lines += [
        "",
        f"first `up -d` on an empty volume (`train-init` trains first): "
        f"{results.first_up_s:.1f} s to `/health` 200",
        "",
        f"target: container <= {TARGET_RATIO} x host (`/health` 200, medians): "
        f"{ratio:.2f} x, {'met' if ratio <= TARGET_RATIO else 'NOT met'}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.container_start",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=3, help="starts of each kind (3)")
    parser.add_argument(
        "--no-build", action="store_true", help=f"measure the existing {IMAGE} as it is"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds any one start may take (300)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= MAX_RUNS:
        parser.error(f"--runs must be within 1..{MAX_RUNS}")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if problem := engine_problem():
        print(f"error: needs docker with compose: {problem}", file=sys.stderr)
        return 2
    for name in sorted(n for n in os.environ if n.startswith("XOR_")):
        print(f"ignoring {name}={os.environ.pop(name)}", flush=True)
    OUT.mkdir(exist_ok=True)
    HOST_LOG.unlink(missing_ok=True)
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_average = os.getloadavg()[0]
    compose = Compose(free_port())
    host: list[Start] = []
    container: list[Start] = []
    with tempfile.TemporaryDirectory(prefix="xor-bench-start-") as tmp:
        print("training a model for the host's starts ...", flush=True)
        model_dir = train_model(Path(tmp)).parent
        try:
            compose.run("--profile", "*", "down", "-v", "--remove-orphans", check=False)
            if not args.no_build:
                print(f"building {IMAGE} ...", flush=True)
                compose.run("build", "api")
            print("first `up -d`: train-init trains into the empty volume ...", flush=True)
            first_up = compose.start(args.timeout)
            for run in range(1, args.runs + 1):
                compose.run("down", "--remove-orphans")
                host.append(host_start(model_dir, args.timeout))
                container.append(compose.start(args.timeout))
                print(
                    f"run {run}: host {host[-1].ready_s:.1f} s, "
                    f"container {container[-1].ready_s:.1f} s",
                    flush=True,
                )
        finally:
            COMPOSE_LOG.write_text(compose.run("logs", "--no-color", check=False))
            compose.run("--profile", "*", "down", "-v", "--remove-orphans", check=False)
    results = Results(
        date=date,
        commit=describe(REPO),
        image=image_description(IMAGE),
        load_average=load_average,
        first_up_s=first_up.ready_s,
        host=host,
        container=container,
    )
    RESULTS_JSON.write_text(json.dumps(asdict(results), indent=2) + "\n")
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
