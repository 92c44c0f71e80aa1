"""The `scale` profile's files agree with each other and with the app, checked offline (no
engine): a replica is taken out of rotation before it starts draining, is stopped only after
it drained, is checked on a route the app has, and so on. test_scale.py runs them for real."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from app.config import Settings
from tests.support import REPO
from tests.support.apps import serving_client

COMPOSE = REPO / "docker-compose.yml"
HAPROXY = REPO / "deploy/haproxy/haproxy.cfg"


def services() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    found: dict[str, Any] = document["services"]
    return found


def scale_services() -> dict[str, Any]:
    return {
        name: service
        for name, service in services().items()
        if "scale" in service.get("profiles", ())
    }


def haproxy_setting(keyword: str) -> list[str]:
    """The arguments of every ``keyword`` line of haproxy.cfg."""
    lines = HAPROXY.read_text(encoding="utf-8").splitlines()
    return [
        line.strip()[len(keyword) :].strip()
        for line in lines
        if line.strip().startswith(f"{keyword} ")
    ]


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    assert match, duration
    return float(match[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match[2]]


def test_the_balancer_is_the_only_published_port_of_the_profile() -> None:
    published = {name: s["ports"] for name, s in scale_services().items() if s.get("ports")}
    assert published == {"lb": ["127.0.0.1:${XOR_LB_PORT:-8080}:8080"]}
    assert haproxy_setting("bind") == [":8080"]


def test_the_balancer_finds_the_replica_service_on_the_apps_port() -> None:
    replica = scale_services()["replica"]
    (template,) = haproxy_setting("server-template")
    prefix, slots, target = template.split()
    assert (prefix, target) == ("replica", f"replica:{replica['environment']['XOR_PORT']}")
    assert replica["deploy"]["replicas"] == 3
    dockerfile = (REPO / "deploy/haproxy/Dockerfile").read_text(encoding="utf-8")
    assert slots == '"${XOR_LB_SLOTS}"' and "ENV XOR_LB_SLOTS=16" in dockerfile


def test_a_replica_leaves_rotation_before_its_shutdown_delay_ends() -> None:
    """The checks (every `inter`, `fall` failures in a row) must see readiness fail within
    the delay, with room to spare; and the grace period must cover delay and drain."""
    (checks,) = haproxy_setting("default-server")
    words = checks.split()
    interval = seconds(words[words.index("inter") + 1])
    fall = int(words[words.index("fall") + 1])
    replica = scale_services()["replica"]
    delay = float(replica["environment"]["XOR_SHUTDOWN_DELAY_SECONDS"])
    assert interval * (fall + 1) <= delay - 1, (interval, fall, delay)
    drain = Settings.model_fields["shutdown_timeout_seconds"].default
    assert "XOR_SHUTDOWN_TIMEOUT_SECONDS" not in replica["environment"]
    assert seconds(replica["stop_grace_period"]) >= delay + drain + 3


def test_the_balancer_checks_readiness_on_a_route_the_app_serves(tmp_path: Path) -> None:
    """The route exists and says 503 while no model is loaded (so: no traffic)."""
    (check,) = haproxy_setting("option httpchk")
    method, path = check.split()
    assert haproxy_setting("http-check expect") == ["status 200"]
    with serving_client(tmp_path) as client:
        answer = client.request(method, path)
    assert answer.status_code == 503 and answer.json()["status"] == "unavailable"


def test_the_balancer_retries_only_what_it_holds_whole() -> None:
    """Without http-buffer-request, a request whose body came apart from its headers was not
    resent when its replica died (a 502 in about one kill in three, seen in test_scale.py)."""
    assert "option http-buffer-request" in HAPROXY.read_text(encoding="utf-8")
    (retry_on,) = haproxy_setting("retry-on")
    assert set(retry_on.split()) == {"conn-failure", "empty-response"}


def test_every_python_service_reads_the_generated_keys_where_s3_writes_them() -> None:
    scale = scale_services()
    s3_mounts = {m.split(":")[0]: m.split(":")[1] for m in scale["s3"]["volumes"]}
    written = Path(s3_mounts["s3-credentials"]) / "credentials"
    entrypoint = (REPO / "deploy/seaweedfs/entrypoint.sh").read_text(encoding="utf-8")
    assert f"file={written}" in entrypoint
    for name in ("s3-init", "replica", "train-s3", "models"):
        service = scale[name]
        env = service["environment"]
        assert env["AWS_ENDPOINT_URL"] == "http://s3:8333", name
        mounts = {m.split(":")[0]: m.split(":")[1:] for m in service["volumes"]}
        directory, options = mounts["s3-credentials"][0], mounts["s3-credentials"][1:]
        assert options == ["ro"], name
        assert env["AWS_SHARED_CREDENTIALS_FILE"] == f"{directory}/credentials", name
        # Never a key in the file itself.
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(env), name


def test_replicas_sync_into_a_bounded_tmpfs_cache() -> None:
    replica = scale_services()["replica"]
    env = replica["environment"]
    assert env["XOR_MODEL_SOURCE"] == "s3://models/xor"
    (tmpfs,) = replica["tmpfs"]
    mount, options = tmpfs.split(":")
    assert env["XOR_MODEL_DIR"].startswith(f"{mount}/")
    assert re.fullmatch(r"size=\d+m", options)
    assert replica["read_only"] is True


def test_every_python_service_runs_the_one_api_image() -> None:
    python = [name for name in scale_services() if name not in ("s3", "lb")]
    assert python == ["s3-init", "replica", "train-s3", "models"]
    for name in python:
        assert services()[name]["image"] == services()["api"]["image"], name
        assert "build" not in services()[name], name
