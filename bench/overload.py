"""``python -m bench.overload --clients 600 --body-bytes 1000000``: health and memory under a
burst of large prediction requests.

Why: an orchestrator restarts a server whose health probe times out, so a burst of large
requests must not starve ``/health/live`` and ``/health/ready``; and the memory the burst took
must be given back, or every burst ratchets the server towards its memory limit. Targets
(issue 12): health p99 <= 1 s at 600 clients, RSS within 20 % of its baseline a minute after.

One run: a model is trained (``bench.run.train_model``), ``python -m app`` serves it on a free
loopback port with default settings (plus ``--env``), and its RSS is read after a warm-up (the
baseline). Then ``--clients`` connections each send one ``POST /predict`` with a
``--body-bytes`` JSON body all at once, from raw sockets on uvloop, while another process
probes ``/health/live`` and ``/health/ready`` in turn, each on a fresh connection as a health
check does. The body (``--body``): ``padded``, a valid request padded with spaces (answered;
what an ordinary large upload costs), or ``pairs``, more pairs than a request may hold (parsed
whole, then refused: the costliest body to turn down). Reported: probe latencies (p50, p99,
max, failures), the burst's statuses, time and server CPU, the server's RSS at baseline, at its
peak during the burst, right after it and ``--settle`` seconds later, and the ERROR lines the
server logged. Bounded: at most ``MAX_CLIENTS`` clients, each request at most ``--timeout``
seconds, loopback only.

``--checkout DIR`` serves another checkout (e.g. ``git worktree add /tmp/xor-head HEAD`` for a
before/after comparison); the model is still trained by this tree. Results are printed as a
Markdown table; the server's log is ``bench/out/overload.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import http.client
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

import httpx
import uvloop

from bench.baseline import app_origin, check_app_origin, describe
from bench.run import OUT, PAIR, REPO, Server, train_model

MAX_CLIENTS = 5000
HEALTH_PATHS = ("/health/live", "/health/ready")
# A health probe is started this often (seconds); at most MAX_PROBES run at once.
PROBE_INTERVAL = 0.02
MAX_PROBES = 64
# A chunk per write: each client holds at most this much of its body in its own buffers.
WRITE_CHUNK = 65_536


def predict_body(size: int, kind: str = "padded") -> bytes:
    """A ``/predict`` JSON body of exactly ``size`` bytes.

    ``pairs``: as many pairs as fit (then spaces), more than any request may hold: the server
    parses it whole, then refuses it (422), the costliest body to turn down. ``padded``: one
    pair padded with spaces, cheap to parse and answered with a prediction (200).
    """
    head, tail, pair = b'{"instances": [', b"]}", b"[0, 1]"
    pairs = max(1, (size - len(head) - len(tail) + 2) // (len(pair) + 2)) if kind == "pairs" else 1
    body = head + b", ".join([pair] * pairs) + tail
    if len(body) > size:
        raise ValueError(f"--body-bytes must be at least {len(body)}")
    return body[:-1] + b" " * (size - len(body)) + body[-1:]


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in 0..1) of ``values``; NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


@dataclass
class Probe:
    path: str
    seconds: float
    ok: bool


def _probe(port: int, path: str, timeout: float, scheduled: float) -> tuple[str, float, bool]:
    """One health check: its path, seconds from ``scheduled`` to the answer, and whether 200."""
    ok = False
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        ok = response.status == 200
    except OSError:
        pass
    finally:
        connection.close()
    return path, time.perf_counter() - scheduled, ok


def probe_health(
    port: int, ready: Event, go: Event, stop: Event, timeout: float, out: Connection
) -> None:
    """In a process of its own (the burst's client loop must not delay it): set ``ready``, then
    from ``go`` until ``stop`` start a probe every ``PROBE_INTERVAL`` seconds, the health
    endpoints in turn, each on a fresh connection as an orchestrator's check does, whether or
    not the previous one has answered (a slow answer must not thin out the samples); send the
    results through ``out``."""
    ready.set()
    go.wait()
    with concurrent.futures.ThreadPoolExecutor(max_workers=MAX_PROBES) as pool:
        futures: list[concurrent.futures.Future[tuple[str, float, bool]]] = []
        while not stop.is_set() and len(futures) < MAX_PROBES * 100:
            path = HEALTH_PATHS[len(futures) % len(HEALTH_PATHS)]
            futures.append(pool.submit(_probe, port, path, timeout, time.perf_counter()))
            time.sleep(PROBE_INTERVAL)
        out.send([future.result() for future in futures])


async def _read_status(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(status_line.split()[1])


async def _send_body(writer: asyncio.StreamWriter, body: bytes) -> None:
    view = memoryview(body)
    for start in range(0, len(view), WRITE_CHUNK):
        writer.write(view[start : start + WRITE_CHUNK])
        await writer.drain()


async def one_request(port: int, body: bytes, timeout: float) -> str:
    """One ``POST /predict`` with ``body`` on its own connection: its status, or what failed.

    The body is sent while the answer is awaited: a server may answer before reading it all.
    """
    head = (
        b"POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % len(body)
    )
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head)
            sending = asyncio.create_task(_send_body(writer, body))
            try:
                return str(await _read_status(reader))
            finally:
                sending.cancel()
    except TimeoutError:
        return "timeout"
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
        return type(error).__name__
    finally:
        if writer is not None:
            writer.close()


@dataclass
class Burst:
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    seconds: float = 0.0
    peak_rss_mib: float = 0.0
    server_cpu_seconds: float = 0.0
    server_cpu_wait_seconds: float = 0.0


def schedule_seconds(pid: int) -> tuple[float, float]:
    """Seconds the main thread of ``pid`` (the server's event loop) has run on a CPU, and
    waited for one while runnable: on a busy machine the second, not the server's own work,
    can make the health checks slow."""
    running, waiting, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(running) / 1e9, int(waiting) / 1e9


async def burst(server: Server, clients: int, body: bytes, timeout: float) -> Burst:
    """All ``clients`` requests at once; the server's RSS sampled every 50 ms meanwhile."""
    result = Burst(peak_rss_mib=server.rss_mib())
    done = asyncio.Event()

    async def sample_rss() -> None:
        while not done.is_set():
            result.peak_rss_mib = max(result.peak_rss_mib, server.rss_mib())
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample_rss())
    assert server.process is not None
    ran, waited = schedule_seconds(server.process.pid)
    started = time.perf_counter()
    statuses = await asyncio.gather(
        *(one_request(server.port, body, timeout) for _ in range(clients))
    )
    result.seconds = time.perf_counter() - started
    ran_after, waited_after = schedule_seconds(server.process.pid)
    result.server_cpu_seconds = ran_after - ran
    result.server_cpu_wait_seconds = waited_after - waited
    done.set()
    await sampler
    result.statuses.update(statuses)
    return result


@dataclass
class Run:
    commit: str
    clients: int
    body_bytes: int
    body_kind: str
    env: dict[str, str]
    probes: list[Probe]
    burst: Burst
    rss_baseline_mib: float
    rss_after_mib: float
    rss_settled_mib: float
    settle_seconds: float
    error_lines: int

    def latencies_ms(self, path: str | None = None) -> list[float]:
        return [p.seconds * 1000 for p in self.probes if path is None or p.path == path]

    @property
    def settled_growth(self) -> float:
        """RSS ``settle_seconds`` after the burst over its baseline, minus one."""
        return self.rss_settled_mib / self.rss_baseline_mib - 1


def render(run: Run) -> str:
    """The run as a Markdown report: health latency per path, then memory and the burst."""
    overrides = " ".join(f"{k}={v}" for k, v in sorted(run.env.items())) or "defaults"
    lines = [
        f"server `{run.commit}` ({overrides}); {run.clients} clients x {run.body_bytes} bytes "
        f"({run.body_kind}) `POST /predict` at once",
        "",
        "| probe | count | failed | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    for path in (*HEALTH_PATHS, None):
        probes = [p for p in run.probes if path is None or p.path == path]
        latencies = run.latencies_ms(path)
        lines.append(
            f"| {path or 'both'} | {len(probes)} | {sum(not p.ok for p in probes)} | "
            f"{percentile(latencies, 0.5):.0f} | {percentile(latencies, 0.99):.0f} | "
            f"{max(latencies, default=math.nan):.0f} |"
        )
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(run.burst.statuses.items()))
    lines += [
        "",
        "| RSS baseline MiB | peak | right after | "
        f"after {run.settle_seconds:.0f} s | growth after {run.settle_seconds:.0f} s |",
        "|---|---|---|---|---|",
        f"| {run.rss_baseline_mib:.0f} | {run.burst.peak_rss_mib:.0f} | "
        f"{run.rss_after_mib:.0f} | {run.rss_settled_mib:.0f} | {run.settled_growth:+.0%} |",
        "",
        f"burst: {run.burst.seconds:.1f} s (the server's event loop ran "
        f"{run.burst.server_cpu_seconds:.1f} s, waited for a CPU "
        f"{run.burst.server_cpu_wait_seconds:.1f} s); "
        f"statuses: {statuses}; "
        f"ERROR lines in the server log: {run.error_lines}",
        "",
        f"targets: health p99 <= 1000 ms: "
        f"{'met' if percentile(run.latencies_ms(), 0.99) <= 1000 else 'NOT met'}; "
        f"RSS within 20 % of baseline after {run.settle_seconds:.0f} s: "
        f"{'met' if run.settled_growth <= 0.2 else 'NOT met'}",
    ]
    return "\n".join(lines)


def warm_up(server: Server, kind: str) -> None:
    """Some of everything the burst will use, so the baseline is a warm server's."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(200):
            client.post("/predict", content=PAIR, headers={"Content-Type": "application/json"})
        for path in HEALTH_PATHS:
            client.get(path)
        body = predict_body(100_000, kind)
        for _ in range(5):
            client.post("/predict", content=body, headers={"Content-Type": "application/json"})


def error_lines(log: Path, since: int) -> int:
    """ERROR (or worse) lines the server logged after byte offset ``since`` of its log."""
    count = 0
    with log.open("rb") as file:
        file.seek(since)
        for line in file:
            try:
                level = json.loads(line).get("level")
            except ValueError:
                continue
            count += level in ("ERROR", "CRITICAL")
    return count


def measure(server: Server, args: argparse.Namespace, body: bytes) -> Run:
    warm_up(server, args.body)
    time.sleep(2)
    baseline = server.rss_mib()
    log = OUT / f"{server.name}.log"
    log_offset = log.stat().st_size
    context = multiprocessing.get_context("spawn")
    ready, go, stop = context.Event(), context.Event(), context.Event()
    receiving, sending = context.Pipe(duplex=False)
    prober = context.Process(
        target=probe_health, args=(server.port, ready, go, stop, args.timeout, sending), daemon=True
    )
    prober.start()
    try:
        if not ready.wait(timeout=60):
            raise RuntimeError("the health prober did not start")
        go.set()
        # uvloop, as the server's: the load generator shares the machine's cores with it.
        result = uvloop.run(burst(server, args.clients, body, args.timeout))
        stop.set()
        probes = [Probe(*p) for p in receiving.recv()]
    finally:
        stop.set()
        prober.join(timeout=args.timeout + 5)
        if prober.is_alive():
            prober.kill()
    after = server.rss_mib()
    print(
        f"burst done in {result.seconds:.1f} s; waiting {args.settle:.0f} s for the memory "
        "to settle ...",
        flush=True,
    )
    time.sleep(args.settle)
    return Run(
        commit=describe(server.cwd),
        clients=args.clients,
        body_bytes=len(body),
        body_kind=args.body,
        env=dict(args.env),
        probes=probes,
        burst=result,
        rss_baseline_mib=baseline,
        rss_after_mib=after,
        rss_settled_mib=server.rss_mib(),
        settle_seconds=args.settle,
        error_lines=error_lines(log, log_offset),
    )


def _variable(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.startswith("XOR_"):
        raise argparse.ArgumentTypeError(f"expected XOR_NAME=VALUE, got {text!r}")
    return name, value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.overload",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--clients", type=int, default=600, help="concurrent requests (600)")
    parser.add_argument(
        "--body-bytes", type=int, default=1_000_000, help="each request's body size (1000000)"
    )
    parser.add_argument(
        "--body",
        choices=("pairs", "padded"),
        default="padded",
        help="padded (default): one pair padded with spaces, answered; pairs: more pairs than "
        "allowed, parsed whole then refused (the costliest)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds any one request or probe may take"
    )
    parser.add_argument(
        "--settle", type=float, default=60.0, help="seconds after the burst for the last RSS"
    )
    parser.add_argument(
        "--checkout", type=Path, default=REPO, help="the checkout whose server is measured"
    )
    parser.add_argument(
        "--env",
        type=_variable,
        action="append",
        default=[],
        metavar="XOR_NAME=VALUE",
        help="a setting for the server (repeatable)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be within 1..{MAX_CLIENTS}")
    if args.timeout <= 0 or args.settle < 0:
        parser.error("--timeout must be positive and --settle not negative")
    checkout: Path = args.checkout.resolve()
    if not (checkout / "app" / "__main__.py").is_file():
        parser.error(f"{checkout} is not a checkout of this repository (no app/__main__.py)")
    try:
        body = predict_body(args.body_bytes, args.body)
    except ValueError as error:
        parser.error(str(error))
    # The server's settings are the defaults plus --env: none of the caller's XOR_* variables.
    for name in sorted(n for n in os.environ if n.startswith("XOR_")):
        print(f"ignoring {name}={os.environ.pop(name)}", flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "overload.log").unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="xor-bench-overload-") as tmp:
        env = {
            "XOR_MODEL_DIR": str(Path(tmp) / "xor"),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(checkout), os.environ.get("PYTHONPATH")) if p
            ),
            **dict(args.env),
        }
        server = Server(
            "overload", "python -m app", [sys.executable, "-m", "app"], env, cwd=checkout
        )
        origin = app_origin(checkout, env)
        check_app_origin("the server", origin, checkout)
        print("training a model for the benchmark ...", flush=True)
        train_model(Path(tmp))
        try:
            print(f"starting the server (app from {origin}) ...", flush=True)
            server.start()
            run = measure(server, args, body)
        finally:
            server.stop()
    print(render(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
