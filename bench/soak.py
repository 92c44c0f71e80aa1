"""``python -m bench.soak --minutes 10``: a long run at c=64 with a hot reload every minute.

Not part of ``make test``. Starts ``python -m app`` on a free loopback port with a freshly
trained version, drives ``POST /predict`` with wrk in one-minute segments and publishes a new
version (atomically, as training does) in the middle of every segment. Pass criteria: no
failed request (non-2xx or socket error), every published version served, server RSS growth
below 5 % after the first (warm-up) segment, p99 of every segment within 2x of the median p99.
Results: ``bench/soak-results.md``; raw wrk output and the server log in ``bench/out/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.run import duration_ms, free_port, train_model

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
RESULTS = BENCH / "soak-results.md"


@dataclass
class Segment:
    index: int
    requests: int
    non_2xx: int
    socket_errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    rss_mib: float
    served_version: int


def parse_wrk(output: str) -> tuple[int, int, int, float, float, float]:
    requests = int(re.search(r"(\d+) requests in", output)[1])  # type: ignore[index]
    non_2xx = int(m[1]) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", output)) else 0
    errors = 0
    if m := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        errors = sum(int(x) for x in m.groups())
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", output)[1])  # type: ignore[index]
    p50 = duration_ms(re.search(r"\n\s+50%\s+(\S+)", output)[1])  # type: ignore[index]
    p99 = duration_ms(re.search(r"\n\s+99%\s+(\S+)", output)[1])  # type: ignore[index]
    return requests, non_2xx, errors, rps, p50, p99


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def publish(source: Path, model_dir: Path, version: int) -> None:
    staging = model_dir / f".tmp-export-soak-{version}"
    shutil.copytree(source, staging)
    evaluation = staging / "assets.extra" / "evaluation.json"
    document = json.loads(evaluation.read_text())
    evaluation.write_text(json.dumps({**document, "model_version": version}))
    os.rename(staging, model_dir / str(version))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        print("soak: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    OUT.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="xor-soak-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server: subprocess.Popen[bytes] | None = None
    try:
        trained = train_model(root)
        model_dir = root / "served"  # train_model publishes into root / "xor"
        model_dir.mkdir()
        version = 1000
        publish(trained, model_dir, version)
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "XOR_MODEL_DIR": str(model_dir),
            "XOR_PORT": str(port),
            "XOR_LOG_LEVEL": "WARNING",
        }
        with (OUT / "soak-server.log").open("wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "app"], cwd=REPO, env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the server did not become ready")
            time.sleep(0.2)

        segments: list[Segment] = []
        for index in range(args.minutes):
            if index > 0:  # a hot reload in the middle of every segment after the first
                version += 1
                threading.Timer(30, publish, (trained, model_dir, version)).start()
            completed = subprocess.run(
                [
                    wrk,
                    f"-t{args.threads}",
                    f"-c{args.connections}",
                    "-d60s",
                    "--latency",
                    "-s",
                    str(BENCH / "post.lua"),
                    f"{url}/predict",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            (OUT / f"soak-wrk-{index}.txt").write_text(completed.stdout)
            served = httpx.get(f"{url}/health", timeout=5).json()["model_version"]
            segment = Segment(index, *parse_wrk(completed.stdout), rss_mib(server.pid), served)
            segments.append(segment)
            print(segment, flush=True)
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)

    failed = sum(s.non_2xx + s.socket_errors for s in segments)
    warm = segments[0].rss_mib if len(segments) == 1 else segments[1].rss_mib
    growth = (segments[-1].rss_mib - warm) / warm * 100
    median_p99 = statistics.median(s.p99_ms for s in segments)
    p99_stable = all(s.p99_ms <= 2 * median_p99 for s in segments)
    reloads_served = all(s.served_version == 1000 + s.index for s in segments)
    ok = failed == 0 and growth < 5 and p99_stable and reloads_served
    lines = [
        "# Soak results",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"{args.minutes} x 60 s at c={args.connections} (wrk -t{args.threads}), single-pair "
        "`POST /predict`, a new version published 30 s into every segment after the first.",
        "",
        "| minute | requests | failed | req/s | p50 ms | p99 ms | RSS MiB | served version |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {s.index + 1} | {s.requests} | {s.non_2xx + s.socket_errors} | {s.rps:.0f} | "
            f"{s.p50_ms:.2f} | {s.p99_ms:.2f} | {s.rss_mib:.1f} | {s.served_version} |"
            for s in segments
        ),
        "",
        f"- failed requests: {failed} (pass: 0)",
        f"- RSS growth after warm-up (minute 2 to the end): {growth:+.2f} % (pass: < 5 %)",
        f"- p99 within 2x of the median p99 ({median_p99:.2f} ms): {p99_stable}",
        f"- every published version served by the end of its minute: {reloads_served}",
        f"- verdict: {'PASS' if ok else 'FAIL'}",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
