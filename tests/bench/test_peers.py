"""The pure parts of ``make bench-peers``: pins, the API each peer is matched with, the peers'
settings and command lines, the answer check and the report. Installs and starts nothing."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from app.api.oip.routes import HOT_ROUTES as OIP_ROUTES
from app.api.service.routes import HOT_ROUTES as SERVICE_ROUTES
from app.api.tfserving.routes import HOT_ROUTES as TFSERVING_ROUTES
from bench.peers import MODEL_DIR_VARIABLE, PEERS, driver
from bench.peers.driver import (
    Install,
    PeerResult,
    Results,
    answered_class,
    mlserver_settings,
    peer_server,
    render,
    request_body,
    tensorflow_requirement,
)
from bench.run import ENDPOINTS, REPO, Load
from tests.bench.fakes import MACHINE

PEERS_DIR = REPO / "bench" / "peers"


def test_every_peer_is_pinned_exactly_once() -> None:
    names = [p.name for p in PEERS]
    assert sorted(names) == ["bentoml", "kserve", "litserve", "mlserver"]
    for peer in PEERS:
        package, _, version = peer.requirement.partition("==")
        assert package == peer.name
        assert version and all(part.isascii() and part.isdigit() for part in version.split("."))


def test_tensorflow_is_pinned_as_in_the_lock() -> None:
    requirement = tensorflow_requirement()
    assert requirement.startswith("tensorflow-cpu==2.")
    assert requirement in (REPO / "requirements.lock").read_text()


def test_tensorflow_requirement_fails_without_a_pin(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("numpy==2.0.0\n")
    with pytest.raises(RuntimeError, match="no tensorflow-cpu pin"):
        tensorflow_requirement(lock)


@pytest.mark.parametrize("peer", PEERS, ids=lambda p: p.name)
def test_each_peer_is_matched_with_a_prediction_route_of_ours(peer) -> None:
    expected = {"kserve": "v1", "mlserver": "v2", "bentoml": "predict", "litserve": "predict"}
    assert peer.endpoint == expected[peer.name]
    path = ENDPOINTS[peer.endpoint][0]
    routes = (*SERVICE_ROUTES, *TFSERVING_ROUTES, *OIP_ROUTES)
    assert any(route.regex.fullmatch(path) for route in routes), path
    json.loads(request_body(peer.endpoint))  # the body the peer gets is JSON


@pytest.mark.parametrize("peer", PEERS, ids=lambda p: p.name)
def test_each_peer_module_exists_and_opts_out_of_type_checking(peer) -> None:
    source = (REPO / (peer.module.replace(".", "/") + ".py")).read_text()
    assert source.startswith("# mypy: ignore-errors\n")
    assert ast.get_docstring(ast.parse(source))  # its settings are documented there


def test_the_answer_check_reads_each_api_shape() -> None:
    assert answered_class("predict", {"predictions": [{"class_id": 1}]}) == 1
    assert answered_class("v1", {"predictions": [{"class_ids": [0]}]}) == 0
    v2 = {"outputs": [{"name": "logits", "data": [3.0]}, {"name": "class_ids", "data": [1]}]}
    assert answered_class("v2", v2) == 1
    with pytest.raises(ValueError):
        answered_class("v3", {})


def test_mlserver_settings_run_inference_in_process(tmp_path: Path) -> None:
    mlserver_settings(tmp_path, Path("/models/xor/3"), 8001, 8002, 8003)
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["parallel_workers"] == 0  # its worker processes crash (see the module)
    assert (settings["http_port"], settings["grpc_port"], settings["metrics_port"]) == (
        8001,
        8002,
        8003,
    )
    model = json.loads((tmp_path / "model-settings.json").read_text())
    assert model["name"] == "xor"
    assert model["parameters"]["uri"] == "/models/xor/3"
    module, _, name = model["implementation"].rpartition(".")
    assert f"class {name}(" in (REPO / (module.replace(".", "/") + ".py")).read_text()


@pytest.mark.parametrize("peer", PEERS, ids=lambda p: p.name)
def test_peer_command_lines(peer, tmp_path: Path) -> None:
    server = peer_server(peer, tmp_path / "xor" / "1", tmp_path)
    assert server.env[MODEL_DIR_VARIABLE] == str(tmp_path / "xor" / "1")
    assert server.env["PYTHONPATH"] == str(REPO)
    assert server.argv[0].startswith(str(REPO / "bench" / ".peers" / peer.name / "bin"))
    assert str(server.port) in " ".join(server.argv) or peer.name == "mlserver"
    assert server.ready_path == peer.ready_path
    assert server.endpoint == peer.endpoint


def load(rps: float, p99: float, errors: int = 0) -> Load:
    return Load("x", 32, rps, p99 / 2, p99, errors)


def test_report_on_fake_loads() -> None:
    ok = PeerResult("kserve", "KServe V1", "v1", "kserve==0.21.0")
    ok.install = Install(["kserve==0.21.0"], 120.0, 1600.0, fresh=False)
    ok.ready_seconds = 4.5
    ok.samples = {
        "32": {
            "peer": [load(800, 50), load(820, 48), load(780, 60)],
            "service": [load(8000, 8), load(8200, 7), load(7800, 9)],
            "service-nocache": [load(4000, 12), load(4100, 11, errors=1), load(3900, 13)],
        }
    }
    failed = PeerResult("bentoml", "BentoML", "predict", "bentoml==1.4.40")
    failed.status = "did not start: exited with 1: ImportError"
    text = render(Results(MACHINE, "tensorflow-cpu==2.21.0", 3, 5, [32], [ok, failed]))
    assert (
        "| kserve | KServe V1 vs `/v1/models/xor:predict` | 32 | 800 | 8000 | 10.0 x | 4000 | "
        "5.0 x | 50.0 | 8.0 | 12.0 | 0 / 1 |"
    ) in text
    assert "| bentoml | BentoML vs `/predict` | | did not start: exited with 1: ImportError |" in (
        text
    )
    assert "| kserve | `kserve==0.21.0` | 4.5 s | 1.6 GiB | 120 s |" in text
    assert "2026-01-01 00:00 UTC" in text
    assert "3 interleaved rounds of 5 s" in text


def test_peer_modules_are_not_imported_by_the_driver() -> None:
    # The driver runs in our venv, which has none of the peers' packages.
    source = (PEERS_DIR / "driver.py").read_text()
    for peer in PEERS:
        assert f"import {peer.name}" not in source
        assert f"from {peer.name}" not in source


def test_a_venv_with_the_same_pins_is_reused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(driver, "PEERS_DIR", tmp_path)
    peer = PEERS[0]
    home = tmp_path / peer.name
    home.mkdir()
    (home / "big").write_bytes(b"x" * 2**20)
    requirements = [peer.requirement, "tensorflow-cpu==2.21.0"]
    (home / ".installed.json").write_text(json.dumps({"requirements": requirements, "seconds": 9}))
    install = driver.ensure_venv(peer, requirements)
    assert (install.seconds, install.fresh) == (9, False)
    assert install.size_mib == pytest.approx(1, abs=0.01)
