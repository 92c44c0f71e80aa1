"""The `scale` profile of docker-compose.yml, run for real (marker: container): SeaweedFS (S3),
three api replicas syncing from it, HAProxy in front, Prometheus scraping every replica.

One stack for the module, brought up once; the tests change it under a request loop through
the balancer and count the requests that failed (expected: none). Needs a container engine,
like tests/containers/test_compose.py. Every wait is bounded; the stack is torn down even
when a test fails. The measured figures are printed (`pytest -s` shows them) for the README.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.support.compose import (
    Answer,
    Compose,
    engine_problem,
    http,
    request,
    request_loop,
    wait_for_engine,
)
from tests.support.dashboard import dashboard_queries, runnable
from tests.support.requirements import require
from tests.support.server import free_port

pytestmark = pytest.mark.container

PROJECT = "xor-scale-test"
REPLICAS = 3
PREDICT = {"inputs": [0, 1]}
# The replicas poll the repository every 2 s (XOR_POLL_INTERVAL_SECONDS's default): a label
# change reaches each within a poll, a download and a warm-up.
ROLLOUT_BOUND_SECONDS = 20.0


def served_by(answers: list[Answer]) -> set[str]:
    return {answer.headers.get("x-served-by", "") for answer in answers}


def replicas_answering(stack: Compose, requests: int = 30) -> set[str]:
    return served_by([request(stack.url("/health/ready", "lb")) for _ in range(requests)])


def all_replicas_ready(stack: Compose) -> bool:
    answers = [request(stack.url("/health/ready", "lb")) for _ in range(2 * REPLICAS)]
    return all(a.status == 200 for a in answers) and len(served_by(answers)) == REPLICAS


@pytest.fixture(scope="module")
def stack() -> Iterator[Compose]:
    require("a container engine", engine_problem())
    ports = {"lb": free_port(), "prometheus": free_port()}
    env = {**os.environ, **{f"XOR_{name.upper()}_PORT": str(port) for name, port in ports.items()}}
    project = Compose(PROJECT, env, profiles=("scale", "monitoring"), ports=ports)
    project.run("--profile", "*", "down", "-v", "--remove-orphans", check=False)
    try:
        project.run("build", "api", "s3", "lb", "prometheus", timeout=1800)
        started = time.monotonic()
        project.run("up", "-d", "lb", "prometheus")
        wait_for_engine(
            lambda: all_replicas_ready(project), timeout=300, what="3 replicas ready behind lb"
        )
        print(f"\nscale: `up` to {REPLICAS} replicas ready: {time.monotonic() - started:.1f} s")
        yield project
    finally:
        print(project.down())


def test_the_balancer_spreads_requests_over_every_replica(stack: Compose) -> None:
    answers = [request(stack.url("/predict", "lb"), PREDICT) for _ in range(100)]
    assert [a.status for a in answers] == [200] * 100
    assert all(a.body["predictions"][0]["class_id"] == 1 for a in answers)
    assert served_by(answers) == {f"replica{n}" for n in range(1, REPLICAS + 1)}
    # Its own errors take the service's JSON error shape too.
    status, body = http(stack.url("/no/such/path", "lb"))
    assert status == 404 and body["error"]["code"] == "not_found"


def test_a_rollout_switches_every_replica_without_a_failed_request(stack: Compose) -> None:
    old = request(stack.url("/health", "lb")).body["model_version"]
    with request_loop(stack.url("/predict", "lb"), PREDICT) as loop:
        assert stack.one_shot("train-s3", "--steps", "50", "--label", "stable") == 0
        labelled = time.monotonic()

        def everyone_switched() -> bool:
            latest: dict[str, int] = {}
            for answer in loop.answers_after(labelled):
                latest[answer.headers["x-served-by"]] = answer.body["model_version"]
            return len(latest) == REPLICAS and all(v != old for v in latest.values())

        wait_for_engine(everyone_switched, timeout=ROLLOUT_BOUND_SECONDS, interval=0.2)
        time.sleep(1)
    assert loop.failures() == []
    # Per replica: when it answered with the new version first; none went back after.
    first_new: dict[str, float] = {}
    for outcome in loop.outcomes:
        assert outcome.answer is not None
        replica = outcome.answer.headers["x-served-by"]
        version = outcome.answer.body["model_version"]
        if version != old:
            first_new.setdefault(replica, outcome.at)
        else:
            assert replica not in first_new, f"{replica} served {old} again after the switch"
    assert len(first_new) == REPLICAS
    window = max(first_new.values()) - min(first_new.values())
    print(
        f"\nscale: rollout: {len(loop.outcomes)} requests, 0 failed; last replica switched "
        f"{max(first_new.values()) - labelled:+.2f} s from train-s3's exit (negative: before "
        f"its container was gone); window between the first and the last: {window:.2f} s"
    )
    assert max(first_new.values()) - labelled < ROLLOUT_BOUND_SECONDS


def test_a_killed_replica_costs_no_request_and_rejoins(stack: Compose) -> None:
    victim = stack.container_ids("replica")[0]
    with request_loop(stack.url("/predict", "lb"), PREDICT) as loop:
        time.sleep(1)
        subprocess.run(["docker", "kill", "--signal", "KILL", victim], check=True, timeout=60)
        time.sleep(5)  # the balancer's checks find it gone meanwhile; retries cover the rest
        killed_requests = len(loop.outcomes)
        # Restarted (a no-op if its restart policy did it already): back in rotation.
        subprocess.run(["docker", "start", victim], check=True, timeout=120, capture_output=True)
        wait_for_engine(lambda: all_replicas_ready(stack), timeout=180, what="its rejoining")
    assert loop.failures() == []
    print(f"\nscale: SIGKILL of a replica under {killed_requests} requests: 0 failed")


def test_sigterm_takes_a_replica_out_of_rotation_first_and_fails_no_request(
    stack: Compose,
) -> None:
    """XOR_SHUTDOWN_DELAY_SECONDS=5 in the profile: on SIGTERM readiness turns 503 while the
    replica still serves; the balancer stops sending it requests before it drains and exits."""
    victim = stack.container_ids("replica")[0]
    address = address_of(victim)
    name = replica_name(stack, address)
    with request_loop(stack.url("/predict", "lb"), PREDICT) as loop:
        time.sleep(1)
        signalled = time.monotonic()
        # As `docker compose stop` or a scale-down does it: SIGTERM, then wait for the exit.
        stopping = subprocess.Popen(
            ["docker", "stop", "--time", "30", victim],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(3.5)  # 2 failed checks at 1 s take it out; the delay lasts 5 s
        # Still serving, and not ready...
        direct = probe(stack, address, "/health/ready"), probe(stack, address, "/predict")
        out_of_rotation = time.monotonic()
        time.sleep(1)
        # ... so not one request reached it since.
        reached = served_by(loop.answers_after(out_of_rotation))
        assert stopping.wait(timeout=60) == 0
        stopped = time.monotonic()
        assert container_exit_code(victim) == 0
        subprocess.run(["docker", "start", victim], check=True, timeout=120, capture_output=True)
        wait_for_engine(lambda: all_replicas_ready(stack), timeout=180, what="its rejoining")
    # Not ready, yet it still served a prediction: out of rotation by readiness alone.
    assert direct == (503, 200), direct
    assert name not in reached and reached, (name, reached)
    assert loop.failures() == []
    print(
        f"\nscale: SIGTERM to a replica (delay 5 s) under {len(loop.outcomes)} requests: "
        f"0 failed; stopped after {stopped - signalled:.1f} s"
    )


def test_prometheus_scrapes_every_replica_and_every_dashboard_query_has_data(
    stack: Compose,
) -> None:
    """Last: the traffic of the tests above is in Prometheus by now."""
    api = stack.url("/api/v1", "prometheus")

    def targets_up() -> int:
        _, body = http(f"{api}/targets?state=active")
        return sum(
            1
            for target in body["data"]["activeTargets"]
            if target["labels"]["job"] == "xor-api" and target["health"] == "up"
        )

    wait_for_engine(lambda: targets_up() == REPLICAS, timeout=120, what="3 scraped replicas")
    _, rules = http(f"{api}/rules")
    (group,) = [g for g in rules["data"]["groups"] if g["name"] == "xor-serving"]
    assert len(group["rules"]) >= 9

    # Fresh traffic for the rates: requests of the last minute.
    for _ in range(50):
        request(stack.url("/predict", "lb"), PREDICT)
    empty: list[str] = []
    for title, expr in dashboard_queries():

        def has_data(query: str = runnable(expr)) -> bool:
            status, body = http(f"{api}/query?query={urllib.parse.quote(query)}")
            assert status == 200, (query, body)
            return bool(body["data"]["result"])

        try:
            wait_for_engine(has_data, timeout=60, what=f"data for {title!r}")
        except pytest.fail.Exception:
            empty.append(f"{title}: {expr}")
    assert empty == []


def address_of(container: str) -> str:
    """The container's address on the compose network."""
    return subprocess.run(
        [
            "docker",
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            container,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def replica_name(stack: Compose, address: str) -> str:
    """The balancer's name (X-Served-By) for the replica at ``address``: its slot."""
    # The balancer's runtime API lists each slot with the address it holds.
    state = stack.run(
        "exec",
        "-T",
        "lb",
        "sh",
        "-c",
        "echo 'show servers state replicas' | python -c \"import socket,sys; "
        "s=socket.socket(socket.AF_UNIX); s.connect('/tmp/haproxy.sock'); "
        's.sendall(sys.stdin.read().encode()); print(s.makefile().read())"',
    ).stdout
    for line in state.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == address:
            return fields[3]
    raise AssertionError(f"no balancer slot holds {address}:\n{state}")


def probe(stack: Compose, address: str, path: str) -> int:
    """The status a request for ``path`` to the replica at ``address`` gets, sent from the
    balancer's container (on the compose network; the engine refuses `exec` into a container
    that is stopping). GET, or for /predict a POST of PREDICT."""
    script = (
        "import json, sys, urllib.request, urllib.error\n"
        "data = json.dumps(json.loads(sys.argv[2])).encode() if sys.argv[2] else None\n"
        "request = urllib.request.Request(sys.argv[1], data=data,"
        " headers={'Content-Type': 'application/json'})\n"
        "try:\n"
        "    print(urllib.request.urlopen(request, timeout=3).status)\n"
        "except urllib.error.HTTPError as error:\n"
        "    print(error.code)\n"
    )
    body = json.dumps(PREDICT) if path == "/predict" else ""
    url = f"http://{address}:8000{path}"
    completed = stack.run("exec", "-T", "lb", "python", "-c", script, url, body, timeout=60)
    return int(completed.stdout.strip())


def container_exit_code(container: str) -> int:
    inspect = ["docker", "inspect", "--format", "{{.State.ExitCode}}", container]
    return int(subprocess.run(inspect, capture_output=True, text=True, check=True).stdout)
