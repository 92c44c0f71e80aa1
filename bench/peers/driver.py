"""``make bench-peers``: KServe, MLServer, BentoML and LitServe against the matching API of ours.

Each peer gets a venv of its own under ``bench/.peers/<name>/`` (git-ignored), created when
missing or when its pins changed: ``pip install <peer>==<pin> tensorflow-cpu==<as in
requirements.lock>`` (~1.6 GiB each, mostly TensorFlow; pip's cache makes the downloads happen
once). One model is trained; every peer and our service serve that same version, each loading
TensorFlow itself in its own process(es) with default settings except where a peer's module
docstring says otherwise (``bench/peers/*_server.py``).

Before the load each peer must answer readiness and then class 1 for the pair [0, 1] on its
API; a peer that fails to install, start or answer right is reported with the reason, not
dropped. The load: ``wrk -t1`` single-pair requests (the four pairs in turn, each protocol's
own body) at 32 connections and at 1, in interleaved rounds: each peer, then our service on
the same path and body (KServe V1 against ``/v1/models/xor:predict``, MLServer V2 against
``/v2/models/xor/infer``, BentoML and LitServe against ``/predict``), and our service with its
response cache off (every row to the model, as the peers do), the order rotating by round.
Figures are medians over the rounds, errors their sum. Report: ``bench/peers-results.md``;
raw numbers, install and server logs in ``bench/out/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.peers import MODEL_DIR_VARIABLE, MODEL_NAME, PEERS, Peer
from bench.run import (
    BENCH,
    ENDPOINTS,
    OUT,
    REPO,
    Load,
    Server,
    free_port,
    machine,
    median_load,
    servers,
    train_model,
    wrk,
)

PEERS_DIR = BENCH / ".peers"
RESULTS_MD = BENCH / "peers-results.md"
RESULTS_JSON = OUT / "peers-results.json"
LOCK = REPO / "requirements.lock"
# Ours, as ``bench.run.servers`` builds them: defaults, and the response cache off.
OURS = ("service", "service-nocache")
# Under load, and one request at a time (latency).
CONNECTIONS = (32, 1)


def tensorflow_requirement(lock: Path = LOCK) -> str:
    """``tensorflow-cpu==X`` as pinned in the lock (the peers get the TensorFlow we run)."""
    for line in lock.read_text().splitlines():
        if match := re.match(r"(tensorflow-cpu==[0-9][^ ;]*)", line):
            return match.group(1)
    raise RuntimeError(f"no tensorflow-cpu pin in {lock}")


@dataclass
class Install:
    requirements: list[str]
    seconds: float  # what the install took, when it ran
    size_mib: float
    fresh: bool  # installed by this run (else: found, from an earlier run)


def venv_dir(peer: Peer) -> Path:
    return PEERS_DIR / peer.name


def directory_mib(path: Path) -> float:
    files = (p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return sum(p.stat().st_size for p in files) / 2**20


def ensure_venv(peer: Peer, requirements: list[str]) -> Install:
    """The peer's venv with exactly ``requirements`` installed; a marker file records them
    (and the install's duration), so a venv is made again only when a pin changes."""
    home = venv_dir(peer)
    marker = home / ".installed.json"
    if marker.is_file():
        recorded = json.loads(marker.read_text())
        if recorded["requirements"] == requirements:
            return Install(requirements, recorded["seconds"], directory_mib(home), fresh=False)
    log = OUT / f"install-{peer.name}.log"
    started = time.perf_counter()
    with log.open("wb") as out:
        for argv in (
            [sys.executable, "-m", "venv", "--clear", str(home)],
            [str(home / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements],
        ):
            if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise RuntimeError(f"`{' '.join(argv[2:])}` failed: {tail(log)}")
    seconds = time.perf_counter() - started
    marker.write_text(json.dumps({"requirements": requirements, "seconds": seconds}) + "\n")
    return Install(requirements, seconds, directory_mib(home), fresh=True)


def tail(log: Path, lines: int = 5) -> str:
    """The last meaningful lines of a log, on one line (pip's index warnings left out)."""
    kept = [
        line.strip()
        for line in log.read_text(errors="replace").splitlines()
        if line.strip() and not line.startswith("WARNING: Location")
    ]
    return " | ".join(kept[-lines:])


def request_body(endpoint: str, a: int = 0, b: int = 1) -> bytes:
    return ENDPOINTS[endpoint][1].format(a=a, b=b).encode()


def answered_class(endpoint: str, document: Any) -> int:
    """The class an API's answer to one pair gives (our three shapes; the peers answer them)."""
    if endpoint == "predict":
        return int(document["predictions"][0]["class_id"])
    if endpoint == "v1":
        return int(document["predictions"][0]["class_ids"][0])
    if endpoint == "v2":
        (output,) = (x for x in document["outputs"] if x["name"] == "class_ids")
        return int(output["data"][0])
    raise ValueError(f"unknown endpoint {endpoint!r}")


@dataclass
class PeerServer(Server):
    """A peer's process: readiness on its own path, checked and settled on its own API."""

    ready_path: str = "/health"
    endpoint: str = "predict"

    def start(self, timeout: float = 300) -> float:
        env = {**os.environ, **self.env}
        started = time.perf_counter()
        with (OUT / f"{self.name}.log").open("ab") as log:
            # A session of its own: peers spawn processes (LitServe's workers, BentoML's),
            # which must stop with it (``stop`` signals the whole group).
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, env=env, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"exited with {self.process.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}{self.ready_path}", timeout=1).status_code == 200:
                    self.ready_seconds = time.perf_counter() - started
                    self.check()
                    return self.ready_seconds
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"not ready within {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self) -> str:
        return tail(OUT / f"{self.name}.log")

    def post(self, timeout: float = 5) -> httpx.Response:
        return httpx.post(
            f"{self.url}{ENDPOINTS[self.endpoint][0]}",
            content=request_body(self.endpoint),
            headers={"Content-Type": "application/json"},
            timeout=timeout,
        )

    def check(self) -> None:
        response = self.post()
        try:
            right = (
                response.status_code == 200 and answered_class(self.endpoint, response.json()) == 1
            )
        except (ValueError, LookupError, TypeError):
            right = False
        if not right:
            raise RuntimeError(
                f"answered [0, 1] with {response.status_code}: {response.text[:300]}"
            )

    def settle(self, timeout: float = 120) -> None:
        self.post(timeout)

    def stop(self) -> None:
        """SIGTERM to the peer's process group, SIGKILL to what is left of it after 30 s."""
        if self.process is None:
            return
        group = self.process.pid  # the group's id: the leader's pid (start_new_session)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.process.poll()  # reaps the leader: a zombie would keep the group alive
            if not _group_alive(group):
                break
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        self.process.wait()
        self.process = None


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def mlserver_settings(
    directory: Path, model_dir: Path, http_port: int, grpc_port: int, metrics_port: int
) -> None:
    """MLServer's ``settings.json`` and ``model-settings.json`` (bench/peers/mlserver_server.py
    says why each setting)."""
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": 0,
    }
    model_settings = {
        "name": MODEL_NAME,
        "implementation": "bench.peers.mlserver_server.XorRuntime",
        "parameters": {"uri": str(model_dir)},
    }
    (directory / "settings.json").write_text(json.dumps(settings, indent=2))
    (directory / "model-settings.json").write_text(json.dumps(model_settings, indent=2))


def peer_server(peer: Peer, version: Path, scratch: Path) -> PeerServer:
    """The peer's command line and environment, serving ``version`` from its venv."""
    bin_dir = venv_dir(peer) / "bin"
    python = str(bin_dir / "python")
    port = free_port()
    argv: list[str]
    if peer.name == "kserve":
        argv = [python, "-m", peer.module, "--http_port", str(port), "--enable_grpc", "false"]
    elif peer.name == "mlserver":
        directory = scratch / "mlserver"
        directory.mkdir()
        mlserver_settings(directory, version, port, free_port(), free_port())
        argv = [str(bin_dir / "mlserver"), "start", str(directory)]
    elif peer.name == "bentoml":
        target = f"{peer.module}:Xor"
        argv = [
            str(bin_dir / "bentoml"),
            "serve",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    elif peer.name == "litserve":
        argv = [python, "-m", peer.module, str(port)]
    else:
        raise ValueError(f"no command line for peer {peer.name!r}")
    env = {
        MODEL_DIR_VARIABLE: str(version),
        "PYTHONPATH": str(REPO),
        "VIRTUAL_ENV": str(venv_dir(peer)),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(scratch / "bentoml-home"),
    }
    return PeerServer(
        f"peer-{peer.name}",
        f"{peer.api} ({peer.requirement})",
        argv,
        env,
        port=port,
        ready_path=peer.ready_path,
        endpoint=peer.endpoint,
    )


@dataclass
class PeerResult:
    peer: str
    api: str
    endpoint: str
    requirement: str
    # "ok", or what went wrong (install, start, answer, load) and why.
    status: str = "ok"
    install: Install | None = None
    ready_seconds: float | None = None
    # Per concurrency (as a string, for JSON): "peer", "service", "service-nocache" -> rounds.
    samples: dict[str, dict[str, list[Load]]] = field(default_factory=dict)

    def median(self, connections: int, server: str) -> Load | None:
        runs = self.samples.get(str(connections), {}).get(server, [])
        return median_load(runs) if runs else None


@dataclass
class Results:
    machine: dict[str, str]
    tensorflow: str
    rounds: int
    seconds_per_point: int
    connections: list[int]
    peers: list[PeerResult]


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.1f} x" if reference > 0 else "n/a"


def render(results: Results) -> str:
    m = results.machine
    lines = [
        "# Against other model servers",
        "",
        f"Measured {m['date']} on {m['cpu']}, {m['memory']}, {m['system']}, Python "
        f"{m['python']}; load from `wrk {m['wrk']} -t1` on the same machine, one pair per "
        "request (the four pairs in turn, each API's own body). Every server serves the same "
        f"SavedModel version and loads {results.tensorflow} itself, one process (or worker) "
        "each, default settings otherwise (`bench/peers/*_server.py` say each setting). All ran "
        f"side by side in one run: {results.rounds} interleaved rounds of "
        f"{results.seconds_per_point} s per server and point; figures are medians over the "
        "rounds, errors their sum. **ours**: `python -m app` with its defaults (response cache "
        "on, access log on); **ours, no cache**: `XOR_RESPONSE_CACHE_ROWS=0`, every row to the "
        "model as the peers do.",
        "",
        "| peer | API (ours) | c | peer req/s | ours req/s | ours / peer | ours, no cache "
        "req/s | no cache / peer | peer p99 ms | our p99 ms | our p99 ms, no cache | errors "
        "(peer / ours) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results.peers:
        path = f"`{ENDPOINTS[result.endpoint][0]}`"
        if result.status != "ok":
            lines.append(
                f"| {result.peer} | {result.api} vs {path} | | {result.status} | | | | | | | | |"
            )
            continue
        for c in results.connections:
            peer, ours, nocache = (result.median(c, s) for s in ("peer", *OURS))
            if peer is None or ours is None or nocache is None:
                continue
            errors_ours = ours.errors + nocache.errors
            lines.append(
                f"| {result.peer} | {result.api} vs {path} | {c} | "
                f"{peer.requests_per_second:.0f} | {ours.requests_per_second:.0f} | "
                f"{_ratio(ours.requests_per_second, peer.requests_per_second)} | "
                f"{nocache.requests_per_second:.0f} | "
                f"{_ratio(nocache.requests_per_second, peer.requests_per_second)} | "
                f"{peer.p99_ms:.1f} | {ours.p99_ms:.1f} | {nocache.p99_ms:.1f} | "
                f"{peer.errors} / {errors_ours} |"
            )
    lines += [
        "",
        "| peer | version | start to ready | venv size | install time |",
        "|---|---|---|---|---|",
    ]
    for result in results.peers:
        install = result.install
        ready = f"{result.ready_seconds:.1f} s" if result.ready_seconds is not None else ""
        size = f"{install.size_mib / 1024:.1f} GiB" if install else ""
        took = f"{install.seconds:.0f} s" if install else ""
        lines.append(f"| {result.peer} | `{result.requirement}` | {ready} | {size} | {took} |")
    lines.append("")
    return "\n".join(lines)


def run_peers(
    results: list[PeerResult],
    running: dict[str, PeerServer],
    ours: dict[str, Server],
    connections: list[int],
    rounds: int,
    seconds: int,
) -> None:
    """The interleaved rounds; a peer that fails under load keeps its reason and is dropped."""
    for number in range(rounds):
        for result in results:
            if result.status != "ok":
                continue
            peer = running[result.peer]
            targets: list[tuple[str, Server]] = [("peer", peer), *((n, ours[n]) for n in OURS)]
            shift = number % len(targets)
            targets = targets[shift:] + targets[:shift]
            for c in connections:
                for role, server in targets:
                    try:
                        if number == 0:
                            wrk(server, c, 1, result.endpoint)  # warm-up
                        load = wrk(server, c, seconds, result.endpoint)
                        server.settle()
                    except (subprocess.CalledProcessError, httpx.HTTPError) as error:
                        if role != "peer":
                            raise
                        result.status = f"failed under load: {error}; {peer.log_tail()}"
                        break
                    load.server = f"{result.peer}:{role}"
                    result.samples.setdefault(str(c), {}).setdefault(role, []).append(load)
                    print(
                        f"round {number + 1} {result.peer:8} {role:15} {result.endpoint:7} "
                        f"c={c:<3} {load.requests_per_second:8.0f} req/s  p99 "
                        f"{load.p99_ms:8.2f} ms  errors {load.errors}",
                        flush=True,
                    )
                if result.status != "ok":
                    break


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per point and round")
    parser.add_argument(
        "--connections",
        type=int,
        nargs="+",
        default=list(CONNECTIONS),
        help="wrk connections, one point each",
    )
    parser.add_argument(
        "--peers",
        nargs="+",
        choices=[p.name for p in PEERS],
        default=[p.name for p in PEERS],
        help="only these peers",
    )
    parser.add_argument(
        "--install-only", action="store_true", help="create the peers' venvs, then stop"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds < 1 or min(args.connections) < 1:
        parser.error("--rounds, --seconds and --connections must be positive")
    if not args.install_only and shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install -y wrk)")
    for name in sorted(n for n in os.environ if n.startswith("XOR_")):
        print(f"ignoring {name}={os.environ.pop(name)}", flush=True)

    OUT.mkdir(exist_ok=True)
    PEERS_DIR.mkdir(exist_ok=True)
    tensorflow = tensorflow_requirement()
    chosen = [p for p in PEERS if p.name in args.peers]
    results = [PeerResult(p.name, p.api, p.endpoint, p.requirement) for p in chosen]
    for peer, result in zip(chosen, results, strict=True):
        print(f"venv for {peer.requirement} + {tensorflow} ...", flush=True)
        try:
            install = result.install = ensure_venv(peer, [peer.requirement, tensorflow])
            print(
                f"  {install.size_mib / 1024:.1f} GiB, installed in {install.seconds:.0f} s"
                + ("" if install.fresh else " (by an earlier run)"),
                flush=True,
            )
        except RuntimeError as error:
            result.status = f"install failed: {error}"
            print(f"  {result.status}", flush=True)
    if args.install_only:
        return int(any(r.status != "ok" for r in results))

    running: dict[str, PeerServer] = {}
    ours: dict[str, Server] = {}
    with tempfile.TemporaryDirectory(prefix="xor-bench-peers-") as tmp:
        print("training a model for the benchmark ...", flush=True)
        version = train_model(Path(tmp))
        try:
            for server in servers(version.parent):
                if server.name in OURS:
                    (OUT / f"{server.name}.log").unlink(missing_ok=True)
                    print(f"starting {server.name} ...", flush=True)
                    server.start()
                    ours[server.name] = server
            for peer, result in zip(chosen, results, strict=True):
                if result.status != "ok":
                    continue
                scratch = Path(tmp) / peer.name
                scratch.mkdir()
                server = peer_server(peer, version, scratch)
                (OUT / f"{server.name}.log").unlink(missing_ok=True)
                print(f"starting {server.name} ...", flush=True)
                try:
                    result.ready_seconds = server.start()
                    running[peer.name] = server
                except RuntimeError as error:
                    server.stop()
                    result.status = f"did not start: {error}"
                    print(f"  {result.status}", flush=True)
            run_peers(results, running, ours, args.connections, args.rounds, args.seconds)
        finally:
            for server in (*running.values(), *ours.values()):
                server.stop()

    report = Results(machine(), tensorflow, args.rounds, args.seconds, args.connections, results)
    RESULTS_JSON.write_text(json.dumps(asdict(report), indent=2))
    RESULTS_MD.write_text(render(report))
    print(RESULTS_MD.read_text())
    return 0
