"""``make bench``: load the service, the ceiling and the naive baseline side by side.

Every server runs on a free loopback port for the whole run; the load rounds interleave them
(for each concurrency, each server in turn) so that drift of a noisy machine hits all alike.
Results: ``bench/results.md`` and ``bench/results.png`` (published in the README), raw numbers
and server logs in ``bench/out/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.servers import FLOOR_PATH

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
CONCURRENCY = (1, 8, 32, 64)
PAIR = b'{"inputs": [0, 1]}'
FOUR_PAIRS = ((0, 0), (0, 1), (1, 0), (1, 1))
# Each API's single-pair request (path, body template); the load cycles through the four pairs.
# The protocols are loaded at PROTOCOL_C.
ENDPOINTS = {
    "predict": ("/predict", '{{"inputs": [{a}, {b}]}}'),
    "v1": ("/v1/models/xor:predict", '{{"instances": [[{a}, {b}]]}}'),
    "v2": (
        "/v2/models/xor/infer",
        '{{"inputs": [{{"name": "inputs", "shape": [1, 2], "datatype": "FP32", '
        '"data": [{a}, {b}]}}]}}',
    ),
}
PROTOCOL_C = 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    label: str
    argv: list[str]
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    # Load points last this many times longer: a server whose requests take seconds under
    # load is undercounted by a short window (it ends with a full queue in flight).
    duration_factor: int = 1
    # The working directory of ``argv`` (another checkout, for ``--baseline``).
    cwd: Path = REPO
    process: subprocess.Popen[bytes] | None = None
    ready_seconds: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> float:
        env = {**os.environ, **self.env, "XOR_HOST": "127.0.0.1", "XOR_PORT": str(self.port)}
        started = time.perf_counter()
        with (OUT / f"{self.name}.log").open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}; see its log"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    self.ready_seconds = time.perf_counter() - started
                    self.check()
                    return self.ready_seconds
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} not ready within {timeout} s")

    def check(self) -> None:
        """The benchmark's request must get a right answer, or the numbers mean nothing."""
        response = httpx.post(
            f"{self.url}/predict", content=PAIR, headers={"Content-Type": "application/json"}
        )
        if response.status_code != 200 or response.json()["predictions"][0]["class_id"] != 1:
            raise RuntimeError(f"{self.name} answered {response.status_code}: {response.text}")

    def settle(self, timeout: float = 120) -> None:
        """Wait until the server has worked off what a load left queued: one more request,
        answered only after those ahead of it. A naive server keeps computing answers for
        clients wrk has already dropped, which would load whatever is measured next."""
        httpx.post(
            f"{self.url}/predict",
            content=PAIR,
            headers={"Content-Type": "application/json"},
            timeout=timeout,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def rss_mib(self) -> float:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else float("nan")


@dataclass
class Load:
    server: str
    connections: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    endpoint: str = "predict"


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def duration_ms(text: str) -> float:
    """A wrk duration (``412.00us``, ``1.62ms``, ``2.43s``) in milliseconds."""
    number, unit = re.fullmatch(r"([0-9.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def wrk(server: Server, connections: int, seconds: int, endpoint: str = "predict") -> Load:
    """One wrk run (one thread, as the issue's reference table) with single-pair POSTs of the
    four pairs in turn."""
    path, template = ENDPOINTS[endpoint]
    bodies = "\n".join(template.format(a=a, b=b) for a, b in FOUR_PAIRS)
    completed = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout=5s",
            "--latency",
            "-s",
            str(BENCH / "post.lua"),
            f"{server.url}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "XOR_BENCH_BODIES": bodies},
    )
    out = completed.stdout
    (OUT / f"wrk-{server.name}-{endpoint}-c{connections}.txt").write_text(out)
    rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = duration_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = duration_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        errors += sum(int(n) for n in match.groups())
    return Load(server.name, connections, rate, p50, p99, errors, endpoint)


def median_load(runs: list[Load]) -> Load:
    """One point from its rounds: the median of each figure, and every error."""
    first = runs[0]
    return Load(
        first.server,
        first.connections,
        statistics.median(x.requests_per_second for x in runs),
        statistics.median(x.p50_ms for x in runs),
        statistics.median(x.p99_ms for x in runs),
        sum(x.errors for x in runs),
        first.endpoint,
    )


def batch_latencies(
    targets: dict[str, tuple[Server, str]], pairs: int, repeats: int
) -> dict[str, float]:
    """Median wall time (ms) of one ``pairs``-instance POST per target (server, path), client
    side; the targets take turns, so drift of the machine hits all alike."""
    body = json.dumps({"instances": [[i % 2, (i // 2) % 2] for i in range(pairs)]}).encode()
    headers = {"Content-Type": "application/json"}
    timings: dict[str, list[float]] = {name: [] for name in targets}
    # http.client, not httpx: reading the ~0.9 MB answer costs httpx itself ~20-40 ms here,
    # which would be counted against the server.
    connections = {
        name: http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for name, (server, _) in targets.items()
    }
    try:
        for attempt in range(repeats + 2):
            for name, (server, path) in targets.items():
                start = time.perf_counter()
                connections[name].request("POST", path, body, headers)
                response = connections[name].getresponse()
                response.read()
                elapsed = time.perf_counter() - start
                if response.status != 200:
                    raise RuntimeError(f"{server.name}: batch request got {response.status}")
                if attempt >= 2:  # two warm-ups
                    timings[name].append(elapsed * 1000)
    finally:
        for connection in connections.values():
            connection.close()
    return {name: statistics.median(values) for name, values in timings.items()}


def import_and_load_seconds(version_dir: Path, repeats: int) -> float:
    """Median wall time of a fresh ``python`` that imports TensorFlow and loads one version."""
    code = "import sys, tensorflow as tf; tf.saved_model.load(sys.argv[1])"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, str(version_dir)], check=True, env=env)
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def train_model(root: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            f"--model-dir={root / 'training'}",
            f"--export-dir={root / 'xor'}",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    # Beside the version, the export dir holds the repository's index.json and lock file.
    (version,) = (p for p in (root / "xor").iterdir() if p.is_dir())
    return version


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    import tensorflow as tf  # only for its version string

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{os.cpu_count()} x {cpu}",
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1],
    }


@dataclass
class Results:
    machine: dict[str, str]
    seconds_per_point: int
    rounds: int
    loads: list[Load]
    batch_ms: dict[str, float]
    batch_pairs: int
    ready_seconds: list[float]
    import_and_load_seconds: float
    rss_mib: dict[str, float]
    # Each server's RSS once started and checked, before any load.
    rss_before_mib: dict[str, float]

    def load(self, server: str, connections: int, endpoint: str = "predict") -> Load:
        return next(
            x
            for x in self.loads
            if x.server == server and x.connections == connections and x.endpoint == endpoint
        )

    def targets(self) -> list[tuple[str, str, bool]]:
        """(target, measured, met) for each target of the performance issues."""
        service32, floor32, naive32 = (self.load(s, 32) for s in ("service", "floor", "naive"))
        service1, floor1 = self.load("service", 1), self.load("floor", 1)
        nocache32, ceiling32 = self.load("service-nocache", 32), self.load("ceiling", 32)
        ready = statistics.median(self.ready_seconds)
        batch = self.batch_ms["service"] / self.batch_ms["floor"]
        protocols = [
            self.load("service", PROTOCOL_C, name).requests_per_second
            / service32.requests_per_second
            for name in ("v1", "v2")
        ]
        rss_growth = self.rss_mib["service"] / self.rss_before_mib["service"] - 1
        return [
            (
                "c=32 req/s >= 0.35 x floor (cache on, access log on)",
                f"{service32.requests_per_second / floor32.requests_per_second:.2f} x",
                service32.requests_per_second >= 0.35 * floor32.requests_per_second,
            ),
            (
                "c=32 p99 <= 3 x floor's p99",
                f"{service32.p99_ms / floor32.p99_ms:.2f} x",
                service32.p99_ms <= 3 * floor32.p99_ms,
            ),
            (
                "c=1 p50 <= floor's p50 + 0.1 ms (cache on)",
                f"+{service1.p50_ms - floor1.p50_ms:.3f} ms",
                service1.p50_ms <= floor1.p50_ms + 0.1,
            ),
            (
                "cache off, c=32: the model path (informative: `--baseline` compares with "
                "another checkout)",
                f"{nocache32.requests_per_second:.0f} req/s, "
                f"{nocache32.requests_per_second / ceiling32.requests_per_second:.2f} x ceiling",
                True,
            ),
            (
                "c=32 req/s >= 200 x naive",
                f"{_ratio(service32.requests_per_second, naive32.requests_per_second, '.0f')} x",
                service32.requests_per_second >= 200 * naive32.requests_per_second,
            ),
            (
                f"{self.batch_pairs}-pair request <= 1.5 x parse-and-validate floor",
                f"{batch:.2f} x",
                batch <= 1.5,
            ),
            (
                "start -> ready <= 1.5 x (import tensorflow + one load)",
                f"{ready / self.import_and_load_seconds:.2f} x",
                ready <= 1.5 * self.import_and_load_seconds,
            ),
            (
                f"/v1 and /v2 req/s within 15 % of /predict (c={PROTOCOL_C})",
                " / ".join(f"{ratio:.2f} x" for ratio in protocols),
                all(ratio >= 0.85 for ratio in protocols),
            ),
            (
                "no failed request under load",
                f"{sum(x.errors for x in self.loads if x.server != 'naive')} errors",
                all(x.errors == 0 for x in self.loads if x.server != "naive"),
            ),
            (
                "service RSS after the load within 10 % of before it",
                f"{rss_growth:+.1%}",
                abs(rss_growth) <= 0.10,
            ),
        ]


LABELS = {
    "floor": "floor: a bare ASGI callable on the same uvicorn settings, constant body",
    "fastapi": "fastapi: a plain FastAPI + pydantic app answering a constant",
    "ceiling": "ceiling: the service's own HTTP stack, constant answer, no model",
    "service": "this service (defaults: response cache on, access log on)",
    "service-nocache": "this service with XOR_RESPONSE_CACHE_ROWS=0 (every row to the model)",
    "naive": "naive: Keras `model.predict` per request",
}
# Report order.
NAMES = tuple(LABELS)


def _ratio(value: float, reference: float, spec: str) -> str:
    return format(value / reference, spec) if reference > 0 else "n/a"


def report(results: Results) -> str:
    m = results.machine
    lines = [
        "# Benchmark results",
        "",
        f"Measured {m['date']} on {m['cpu']}, {m['memory']}, {m['system']}, Python "
        f"{m['python']}, TensorFlow {m['tensorflow']}; load from `wrk {m['wrk']} -t1` on the "
        f"same machine, single-pair `POST /predict` (the four pairs in turn). All servers ran "
        "side by side in one run; "
        f"every point is the median of {results.rounds} interleaved rounds of "
        f"{results.seconds_per_point} s (the naive baseline's: 4 x as long; errors: the sum).",
        "",
        "| server | connections | req/s | p50 ms | p99 ms | errors | vs floor | vs fastapi |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in NAMES:
        for c in CONCURRENCY:
            x = results.load(name, c)
            floor = results.load("floor", c).requests_per_second
            fastapi = results.load("fastapi", c).requests_per_second
            lines.append(
                f"| {name} | {c} | {x.requests_per_second:.0f} | {x.p50_ms:.2f} | "
                f"{x.p99_ms:.2f} | {x.errors} | {_ratio(x.requests_per_second, floor, '.2f')} | "
                f"{_ratio(x.requests_per_second, fastapi, '.2f')} |"
            )
    service_batch, floor_batch = results.batch_ms["service"], results.batch_ms["floor"]
    n = results.batch_pairs
    lines += [
        "",
        "Servers: " + "; ".join(f"**{k}**: {v}" for k, v in LABELS.items()) + ".",
        "",
        f"**The three APIs** (this service, c={PROTOCOL_C}, one pair per request): "
        + ", ".join(
            f"`{ENDPOINTS[name][0]}` {x.requests_per_second:.0f} req/s (p99 {x.p99_ms:.2f} ms)"
            for name in ENDPOINTS
            for x in [results.load("service", PROTOCOL_C, name)]
        )
        + ".",
        "",
        f"**{n}-pair request** (median of client-side wall times): service "
        f"{service_batch:.1f} ms ({n / service_batch * 1000:,.0f} pairs/s); the floor, the "
        f"same request read, parsed and validated by the service's own code and answered with "
        f"its pair count (no model call, no predictions to encode), {floor_batch:.1f} ms: "
        f"{service_batch / floor_batch:.2f} x; the ceiling (constant predictions) "
        f"{results.batch_ms['ceiling']:.1f} ms.",
        "",
        f"**Start to ready**: service {statistics.median(results.ready_seconds):.2f} s "
        f"(median of {len(results.ready_seconds)}), against {results.import_and_load_seconds:.2f}"
        " s for a fresh `python` that imports TensorFlow and loads the version.",
        "",
        "**RSS before and after the load**: "
        + ", ".join(
            f"{k} {results.rss_before_mib[k]:.0f} -> {v:.0f} MiB"
            for k, v in sorted(results.rss_mib.items())
        )
        + ".",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    lines += [f"| {t} | {v} | {'yes' if ok else '**no**'} |" for t, v, ok in results.targets()]
    lines += ["", "![throughput and p99 against concurrency](results.png)", ""]
    return "\n".join(lines)


def plot(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in NAMES:
        loads = [results.load(name, c) for c in CONCURRENCY]
        throughput.plot(CONCURRENCY, [x.requests_per_second for x in loads], "o-", label=name)
        latency.plot(CONCURRENCY, [x.p99_ms for x in loads], "o-", label=name)
    throughput.set(xlabel="connections", ylabel="requests/s", xscale="log", yscale="log")
    latency.set(xlabel="connections", ylabel="p99 latency (ms)", xscale="log", yscale="log")
    for axes in (throughput, latency):
        axes.set_xticks(CONCURRENCY, [str(c) for c in CONCURRENCY])
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    figure.suptitle(f"single-pair POST /predict, wrk -t1, {results.machine['date']}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def servers(model_dir: Path) -> list[Server]:
    env = {"XOR_MODEL_DIR": str(model_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}
    python = sys.executable

    def reference(name: str, **kwargs: Any) -> Server:
        return Server(name, LABELS[name], [python, "-m", "bench.servers", name], env, **kwargs)

    return [
        reference("floor"),
        reference("fastapi"),
        reference("ceiling"),
        Server("service", LABELS["service"], [python, "-m", "app"], env),
        Server(
            "service-nocache",
            LABELS["service-nocache"],
            [python, "-m", "app"],
            {**env, "XOR_RESPONSE_CACHE_ROWS": "0"},
        ),
        reference("naive", duration_factor=4),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # ``--baseline DIR`` is another benchmark, with options of its own (bench.baseline).
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--baseline")
    if pre.parse_known_args(argv)[0].baseline is not None:
        from bench.baseline import main as baseline_main

        return baseline_main(argv)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="instead: this working tree against another checkout DIR, at one concurrency "
        "(see python -m bench --baseline DIR --help)",
    )
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per point and round")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds; each point is their median"
    )
    parser.add_argument("--batch-pairs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3, help="start-up and batch repeats")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (make bench installs it: apt-get install -y wrk)")

    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.log"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="xor-bench-") as tmp:
        print("training a model for the benchmark ...", flush=True)
        version = train_model(Path(tmp))
        running = servers(version.parent)
        try:
            for server in running:
                print(f"starting {server.name} ...", flush=True)
                server.start()
            service = next(server for server in running if server.name == "service")
            ceiling = next(server for server in running if server.name == "ceiling")
            ready = [service.ready_seconds]
            for _ in range(args.repeats - 1):  # more start-up samples of the service
                service.stop()
                ready.append(service.start())
            baseline = import_and_load_seconds(version, args.repeats)
            rss_before = {server.name: server.rss_mib() for server in running}

            rounds = [(c, server, "predict") for c in CONCURRENCY for server in running]
            # The protocols right after /predict at the same concurrency, on the service.
            at = rounds.index((PROTOCOL_C, service, "predict")) + 1
            rounds[at:at] = [(PROTOCOL_C, service, "v1"), (PROTOCOL_C, service, "v2")]
            samples: dict[tuple[int, str, str], list[Load]] = {}
            for number in range(args.rounds):
                for connections, server, endpoint in rounds:
                    if number == 0:
                        wrk(server, connections, 1, endpoint)  # warm-up
                    seconds = args.seconds * server.duration_factor
                    load = wrk(server, connections, seconds, endpoint)
                    server.settle()
                    print(
                        f"round {number + 1} {server.name:15} {endpoint:8} c={connections:<3} "
                        f"{load.requests_per_second:8.0f} req/s  p50 {load.p50_ms:7.2f} ms  "
                        f"p99 {load.p99_ms:7.2f} ms  errors {load.errors}",
                        flush=True,
                    )
                    samples.setdefault((connections, server.name, endpoint), []).append(load)
            loads = [median_load(runs) for runs in samples.values()]
            rss = {server.name: server.rss_mib() for server in running}
            repeats = args.repeats * 5
            batch = batch_latencies(
                {
                    "service": (service, "/predict"),
                    "ceiling": (ceiling, "/predict"),
                    "floor": (ceiling, FLOOR_PATH),
                },
                args.batch_pairs,
                repeats,
            )
        finally:
            for server in running:
                server.stop()

    results = Results(
        machine=machine(),
        seconds_per_point=args.seconds,
        rounds=args.rounds,
        loads=loads,
        batch_ms=batch,
        batch_pairs=args.batch_pairs,
        ready_seconds=ready,
        import_and_load_seconds=baseline,
        rss_mib=rss,
        rss_before_mib=rss_before,
    )
    (OUT / "results.json").write_text(json.dumps(asdict(results), indent=2))
    (BENCH / "results.md").write_text(report(results))
    plot(results, BENCH / "results.png")
    print((BENCH / "results.md").read_text())
    return 0
