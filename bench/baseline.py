"""``python -m bench --baseline DIR``: this working tree against another checkout, side by side.

Why: a refactoring must not make the service slower, and a number measured on another day
cannot tell (rounds on this kind of machine vary by more than the change). So both are loaded
in one run, on the same machine, the same model and the same load, in interleaved rounds, and
compared on medians. There is no make target because DIR is the caller's choice::

    git worktree add /tmp/xor-baseline 1c5b09c      # the commit to compare with
    .venv/bin/python -m bench --baseline /tmp/xor-baseline [--rounds 5] [--seconds 5] \\
        [--connections 32]

One model is trained (by the working tree) and both servers serve it, each ``python -m app``
with default settings (access log on, as deployed; inherited ``XOR_*`` variables are dropped):
**baseline** with DIR as its working directory and ``PYTHONPATH`` (checked before the start:
the venv has the working tree installed editable, so DIR's ``app`` must be the one imported),
**working** from this tree. Each round loads ``/predict``, ``/v1`` and ``/v2`` on both in turn
(which one goes first alternates by round). Criteria per API: req/s not below the baseline's
median, p99 at most 10 % above the baseline's. Report: ``bench/baseline-results.md``; raw
numbers and server logs in ``bench/out/``. Exit status 0 even when a criterion is missed (this
is a report), 1 when any request failed: then the numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.run import (
    BENCH,
    ENDPOINTS,
    OUT,
    REPO,
    Load,
    Server,
    machine,
    median_load,
    train_model,
    wrk,
)

MIN_ROUNDS = 5
P99_GROWTH = 0.10
SERVERS = ("baseline", "working")
RESULTS_MD = BENCH / "baseline-results.md"
RESULTS_JSON = OUT / "baseline-results.json"
# Where ``python -m app`` would take ``app`` from, without running the package's code.
_APP_ORIGIN = "import importlib.util; print(importlib.util.find_spec('app').origin)"


def module_inside(module_file: str | Path, root: Path) -> bool:
    """Whether a module's file lies inside the directory ``root`` (symbolic links resolved)."""
    return Path(module_file).resolve().is_relative_to(root.resolve())


def check_app_origin(name: str, origin: str, root: Path) -> None:
    """Fail loudly unless ``name``'s ``app`` package is the one in ``root``."""
    if not module_inside(origin, root):
        raise RuntimeError(
            f"{name} would import app from {origin}, not from {root}: the comparison would "
            "measure the wrong code"
        )


def app_origin(cwd: Path, env: dict[str, str]) -> str:
    """The file of the ``app`` package a ``python`` started with this cwd and env imports."""
    completed = subprocess.run(
        [sys.executable, "-c", _APP_ORIGIN],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout.strip()


def first_of_round(number: int) -> tuple[str, str]:
    """The order of the two servers in round ``number`` (from 0): alternating."""
    return SERVERS if number % 2 == 0 else (SERVERS[1], SERVERS[0])


def ratio(value: float, reference: float) -> float:
    return value / reference if reference > 0 else math.nan


def _times(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f} x"


@dataclass(frozen=True)
class Comparison:
    """One API's rounds on both servers (the same round at the same index)."""

    endpoint: str
    baseline: list[Load]
    working: list[Load]

    @property
    def baseline_median(self) -> Load:
        return median_load(self.baseline)

    @property
    def working_median(self) -> Load:
        return median_load(self.working)

    @property
    def throughput_ratio(self) -> float:
        """Working's median req/s over the baseline's."""
        return ratio(
            self.working_median.requests_per_second, self.baseline_median.requests_per_second
        )

    @property
    def round_ratios(self) -> list[float]:
        return [
            ratio(w.requests_per_second, b.requests_per_second)
            for b, w in zip(self.baseline, self.working, strict=True)
        ]

    @property
    def p99_ratio(self) -> float:
        return ratio(self.working_median.p99_ms, self.baseline_median.p99_ms)

    @property
    def throughput_met(self) -> bool:
        return self.working_median.requests_per_second >= self.baseline_median.requests_per_second

    @property
    def p99_met(self) -> bool:
        return self.p99_ratio <= 1 + P99_GROWTH  # False for n/a

    @property
    def errors(self) -> int:
        return sum(x.errors for x in (*self.baseline, *self.working))

    def verdict(self) -> str:
        met = {True: "met", False: "**not met**"}
        beats = " (beats it)" if self.throughput_ratio > 1 else ""
        growth = "n/a" if math.isnan(self.p99_ratio) else f"{(self.p99_ratio - 1) * 100:+.1f} %"
        return (
            f"req/s {_times(self.throughput_ratio)} the baseline's median: "
            f"{met[self.throughput_met]}{beats}; p99 {growth} "
            f"(at most +{P99_GROWTH * 100:.0f} %): {met[self.p99_met]}; "
            f"failed requests: {self.errors}"
        )


@dataclass
class BaselineResults:
    machine: dict[str, str]
    baseline_dir: str
    baseline_commit: str
    working_commit: str
    rounds: int
    seconds_per_point: int
    connections: int
    # The server loaded first in each round.
    first: list[str]
    # endpoint -> server -> one Load per round
    samples: dict[str, dict[str, list[Load]]]
    ready_seconds: dict[str, float]

    def comparisons(self) -> list[Comparison]:
        return [
            Comparison(name, self.samples[name]["baseline"], self.samples[name]["working"])
            for name in ENDPOINTS
            if name in self.samples
        ]

    @property
    def errors(self) -> int:
        return sum(c.errors for c in self.comparisons())


def render(results: BaselineResults) -> str:
    m = results.machine
    comparisons = results.comparisons()
    lines = [
        "# Baseline comparison",
        "",
        f"Measured {m['date']} on {m['cpu']}, {m['memory']}, {m['system']}, Python "
        f"{m['python']}, TensorFlow {m['tensorflow']}; load from `wrk {m['wrk']} -t1` at "
        f"{results.connections} connections on the same machine, one pair per request (the "
        "four pairs in turn). "
        f"**baseline**: `python -m app` of another checkout at "
        f"`{results.baseline_commit}`; **working**: `python -m app` of this working tree at "
        f"`{results.working_commit}`. Both with default settings (access log on), serving the "
        f"same model, side by side in one run: {results.rounds} interleaved rounds of "
        f"{results.seconds_per_point} s per API and server, the server loaded first "
        "alternating by round. Figures are medians over the rounds; ratios are working / "
        "baseline.",
        "",
        f"Criteria per API: req/s not below the baseline's median; p99 at most "
        f"{P99_GROWTH * 100:.0f} % above the baseline's.",
        "",
        "| API | baseline req/s | working req/s | ratio | baseline p99 ms | working p99 ms | "
        "p99 ratio | req/s | p99 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    yes = {True: "met", False: "**not met**"}
    for c in comparisons:
        b, w = c.baseline_median, c.working_median
        lines.append(
            f"| `{ENDPOINTS[c.endpoint][0]}` | {b.requests_per_second:.0f} | "
            f"{w.requests_per_second:.0f} | {_times(c.throughput_ratio)} | {b.p99_ms:.2f} | "
            f"{w.p99_ms:.2f} | {_times(c.p99_ratio)} | {yes[c.throughput_met]} | "
            f"{yes[c.p99_met]} |"
        )
    for c in comparisons:
        b, w = c.baseline_median, c.working_median
        lines += [
            "",
            f"## `{ENDPOINTS[c.endpoint][0]}`",
            "",
            "| round | first | baseline req/s | working req/s | ratio | baseline p50 ms | "
            "working p50 ms | baseline p99 ms | working p99 ms | p99 ratio |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for number, (x, y) in enumerate(zip(c.baseline, c.working, strict=True)):
            first = results.first[number] if number < len(results.first) else ""
            lines.append(
                f"| {number + 1} | {first} | {x.requests_per_second:.0f} | "
                f"{y.requests_per_second:.0f} | "
                f"{_times(ratio(y.requests_per_second, x.requests_per_second))} | "
                f"{x.p50_ms:.2f} | {y.p50_ms:.2f} | {x.p99_ms:.2f} | {y.p99_ms:.2f} | "
                f"{_times(ratio(y.p99_ms, x.p99_ms))} |"
            )
        lines += [
            f"| **median** | | {b.requests_per_second:.0f} | {w.requests_per_second:.0f} | "
            f"{_times(c.throughput_ratio)} | {b.p50_ms:.2f} | {w.p50_ms:.2f} | "
            f"{b.p99_ms:.2f} | {w.p99_ms:.2f} | {_times(c.p99_ratio)} |",
            "",
            f"Per-round req/s ratios: {', '.join(_times(r) for r in c.round_ratios)}.",
            "",
            f"**Verdict**: {c.verdict()}.",
        ]
    ready = results.ready_seconds
    lines += [
        "",
        "**Start to ready** (one start each): "
        + ", ".join(f"{name} {ready[name]:.2f} s" for name in SERVERS if name in ready)
        + ".",
        "",
    ]
    return "\n".join(lines)


def describe(checkout: Path) -> str:
    """The checkout's commit, ``-dirty`` when it has uncommitted changes."""
    completed = subprocess.run(
        ["git", "-C", str(checkout), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    )
    return completed.stdout.strip() if completed.returncode == 0 else "unknown"


def baseline_servers(model_dir: Path, baseline_dir: Path) -> dict[str, Server]:
    env = {"XOR_MODEL_DIR": str(model_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}
    path = os.pathsep.join(p for p in (str(baseline_dir), os.environ.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", "app"]
    return {
        "baseline": Server(
            "baseline",
            f"python -m app of {baseline_dir}",
            argv,
            {**env, "PYTHONPATH": path},
            cwd=baseline_dir,
        ),
        "working": Server("working", "python -m app of this working tree", argv, env),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench --baseline DIR",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        type=Path,
        required=True,
        help="another checkout of this repository (e.g. a git worktree)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=MIN_ROUNDS,
        help=f"interleaved rounds (at least {MIN_ROUNDS}); figures are their medians",
    )
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per point and round")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    args = parser.parse_args(argv)
    baseline_dir: Path = args.baseline.resolve()
    if args.rounds < MIN_ROUNDS:
        parser.error(f"--rounds must be at least {MIN_ROUNDS}: one round proves little here")
    if args.seconds < 1 or args.connections < 1:
        parser.error("--seconds and --connections must be positive")
    if not (baseline_dir / "app" / "__main__.py").is_file():
        parser.error(f"{baseline_dir} is not a checkout of this repository (no app/__main__.py)")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install -y wrk)")
    # Default settings for both, as deployed: none of the caller's XOR_* variables.
    for name in sorted(n for n in os.environ if n.startswith("XOR_")):
        print(f"ignoring {name}={os.environ.pop(name)}", flush=True)

    OUT.mkdir(exist_ok=True)
    for name in SERVERS:
        (OUT / f"{name}.log").unlink(missing_ok=True)
    connections = args.connections
    samples: dict[str, dict[str, list[Load]]] = {e: {s: [] for s in SERVERS} for e in ENDPOINTS}
    first: list[str] = []
    with tempfile.TemporaryDirectory(prefix="xor-bench-baseline-") as tmp:
        running = baseline_servers(Path(tmp) / "xor", baseline_dir)
        for name, root in (("baseline", baseline_dir), ("working", REPO)):
            origin = app_origin(running[name].cwd, running[name].env)
            check_app_origin(name, origin, root)
            print(f"{name}: app from {origin}", flush=True)
        print("training a model for the benchmark ...", flush=True)
        version = train_model(Path(tmp))
        assert version.parent == Path(tmp) / "xor", version
        try:
            for server in running.values():
                print(f"starting {server.name} ...", flush=True)
                try:
                    server.start()
                except RuntimeError as error:
                    log = OUT / f"{server.name}.log"
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                    raise RuntimeError(f"{error} ({log}), which ends:\n{tail}") from None
            for number in range(args.rounds):
                order = first_of_round(number)
                first.append(order[0])
                for endpoint in ENDPOINTS:
                    for name in order:
                        server = running[name]
                        if number == 0:
                            wrk(server, connections, 1, endpoint)  # warm-up
                        load = wrk(server, connections, args.seconds, endpoint)
                        server.settle()
                        print(
                            f"round {number + 1} {name:8} {endpoint:8} c={connections:<3} "
                            f"{load.requests_per_second:8.0f} req/s  p50 {load.p50_ms:7.2f} ms"
                            f"  p99 {load.p99_ms:7.2f} ms  errors {load.errors}",
                            flush=True,
                        )
                        samples[endpoint][name].append(load)
        finally:
            for server in running.values():
                server.stop()

    results = BaselineResults(
        machine=machine(),
        baseline_dir=str(baseline_dir),
        baseline_commit=describe(baseline_dir),
        working_commit=describe(REPO),
        rounds=args.rounds,
        seconds_per_point=args.seconds,
        connections=connections,
        first=first,
        samples=samples,
        ready_seconds={name: server.ready_seconds for name, server in running.items()},
    )
    RESULTS_JSON.write_text(json.dumps(asdict(results), indent=2))
    RESULTS_MD.write_text(render(results))
    print(RESULTS_MD.read_text())
    if results.errors:
        print(
            f"error: {results.errors} requests failed (non-2xx or socket errors): the numbers "
            "mean nothing",
            file=sys.stderr,
        )
        return 1
    return 0
