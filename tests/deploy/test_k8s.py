"""deploy/k8s, checked offline (no cluster can run here): every manifest against the schemas
of two Kubernetes versions with kubernetes-validate --strict, then against the app itself:
probes on its real routes and port, variables that are real settings with values they accept,
the image compose builds, a grace period that covers the shutdown, least privilege, and
selectors, policies and jobs that fit together."""

from __future__ import annotations

import copy
import inspect
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate.utils import (  # type: ignore[import-untyped]
    SchemaNotFoundError,
    ValidationError,
)

import app
import modelrepo.s3
import training
from app.api.service import routes as service_routes
from app.config import ENV_PREFIX, Settings, load_settings
from app.main import create_app
from app.metrics import Metrics
from tests.support import REPO
from training.config import ENV_PREFIX as TRAIN_ENV_PREFIX
from training.config import TrainSettings, parse_settings

K8S = REPO / "deploy/k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
# The oldest and the newest Kubernetes the manifests are validated against.
VERSIONS = ("1.29.0", "1.37.0")
# Kinds kubernetes-validate has no schema for, and why each is still shipped: only these may be
# left unvalidated (the test checks that the validator indeed knows no schema for them), any
# other kind without a schema fails.
UNVALIDATED_KINDS = {
    "ServiceMonitor": "a Prometheus Operator CRD (monitoring.coreos.com), not a built-in kind; "
    "cross-checked below instead",
}
# Not in kustomization.yaml, on purpose (each file says why too).
NOT_APPLIED = {
    "s3-secret.yaml": "placeholders: `apply -k` must never overwrite the real Secret",
}
LABEL_SELECTING_ACCESS = "xor-serving/access"
# Service names Kubernetes turns into variables (docker links): NAME_SERVICE_HOST etc.
SERVICE_LINK_SUFFIXES = ("_SERVICE_HOST", "_SERVICE_PORT", "_PORT")


# --- loading -------------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    """Every manifest under deploy/k8s (examples included), not the kustomization."""
    return sorted(path for path in K8S.rglob("*.yaml") if path != KUSTOMIZATION)


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def applied() -> list[dict[str, Any]]:
    """The objects `kubectl apply -k deploy/k8s` creates."""
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))
    return [doc for name in kustomization["resources"] for doc in documents(K8S / name)]


def find(kind: str, name: str | None = None, *, where: Path | None = None) -> dict[str, Any]:
    """The one object of ``kind`` (named ``name``) among the applied ones, or in ``where``."""
    pool = applied() if where is None else documents(where)
    found = [
        doc
        for doc in pool
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """(``Kind/name``, pod template) of every workload that is applied."""
    for doc in applied():
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in ("Deployment", "Job"):
            yield name, doc["spec"]["template"]
        elif doc["kind"] == "CronJob":
            yield name, doc["spec"]["jobTemplate"]["spec"]["template"]


def api_pod() -> dict[str, Any]:
    template: dict[str, Any] = find("Deployment")["spec"]["template"]
    return template


def api_container() -> dict[str, Any]:
    (container,) = api_pod()["spec"]["containers"]
    return dict(container)


def training_pods() -> dict[str, dict[str, Any]]:
    return {name: pod for name, pod in pod_specs() if not name.startswith("Deployment/")}


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's variables, those from the ConfigMap and Secret resolved to their
    manifest values; a reference to a missing key fails."""
    config_map = find("ConfigMap")
    secret = find("Secret", where=K8S / "s3-secret.yaml")
    values = {}
    for item in container.get("env", ()):
        if "value" in item:
            values[item["name"]] = str(item["value"])
            continue
        source = item["valueFrom"]
        if "configMapKeyRef" in source:
            ref, data = source["configMapKeyRef"], config_map
            values[item["name"]] = data["data"][ref["key"]]
        else:
            ref, data = source["secretKeyRef"], secret
            values[item["name"]] = data["stringData"][ref["key"]]
        assert ref["name"] == data["metadata"]["name"], item
    return values


def dockerfile_instruction(keyword: str) -> str:
    """The arguments of the runtime stage's last ``keyword`` instruction in the Dockerfile."""
    lines = (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines()
    found = [line.split(None, 1)[1] for line in lines if line.startswith(keyword + " ")]
    return found[-1]


def route_path(endpoint: Any) -> str:
    """The path the app serves ``endpoint`` at (by its route's name), checked to be a GET
    operation of the app's OpenAPI document."""
    api = create_app(Settings(model_dir=Path("models/xor"))).api
    path = str(api.url_path_for(endpoint.__name__))
    # The same route as in its own router: no other router's route of that name won.
    assert path == str(service_routes.router.url_path_for(endpoint.__name__))
    assert "get" in api.openapi()["paths"][path], path
    return path


def quantity(value: str | int) -> float:
    """A Kubernetes CPU or memory quantity as a number (cores, bytes)."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * factor
    return float(text)


def mounted_volume(pod: dict[str, Any], container: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume mounted (writable) at ``path`` or at a parent of it."""
    target = PurePosixPath(path)
    for mount in container.get("volumeMounts", ()):
        if target.is_relative_to(mount["mountPath"]) and not mount.get("readOnly", False):
            (volume,) = (v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
            return dict(volume)
    raise AssertionError(f"{path} is on no writable volume (the root filesystem is read-only)")


# --- the schemas ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_validates_strictly(path: Path, version: str) -> None:
    docs = documents(path)
    assert docs, f"{path} holds no object"
    for doc in docs:
        if doc["kind"] in UNVALIDATED_KINDS:
            # Known to have no schema: make sure that is still the case (else validate it).
            with pytest.raises(SchemaNotFoundError):
                kubernetes_validate.validate(doc, version, strict=True)
            continue
        # A kind without a schema raises SchemaNotFoundError here: a failure, not a warning.
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_command_line_finds_nothing_either(version: str) -> None:
    """The documented command, on the applied files: every line must say `passed` (it warns,
    exit 0, for a kind without a schema; that counts as a failure here)."""
    # The venv's script, next to its python (the dev lock installs it).
    command = str(Path(sys.executable).with_name("kubernetes-validate"))
    files = [str(K8S / name) for name in yaml.safe_load(KUSTOMIZATION.read_text())["resources"]]
    result = subprocess.run(
        [command, "--strict", "-k", version, *files],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    lines = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 0, lines
    assert lines and all(line.startswith("INFO ") and " passed " in line for line in lines), lines


@pytest.mark.parametrize("version", VERSIONS)
def test_the_validator_rejects_broken_manifests(version: str) -> None:
    """The validation above means something: a typo, a wrong type and an unknown kind fail."""
    deployment = find("Deployment")
    misspelt = copy.deepcopy(deployment)
    context = misspelt["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    context["readOnlyRootFileSystem"] = context.pop("readOnlyRootFilesystem")
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "three"
    for broken in (misspelt, wrong_type):
        with pytest.raises(ValidationError):
            kubernetes_validate.validate(broken, version, strict=True)
    with pytest.raises(SchemaNotFoundError):
        kubernetes_validate.validate({**deployment, "kind": "Deploymnet"}, version, strict=True)


def test_the_kustomization_only_lists_resources() -> None:
    """Nothing a kustomize older than kubectl 1.20's lacks; every top-level manifest but the
    placeholder Secret is listed, the examples are not."""
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))
    assert set(kustomization) == {"apiVersion", "kind", "resources"}
    assert kustomization["kind"] == "Kustomization"
    top_level = {path.name for path in K8S.glob("*.yaml")} - {KUSTOMIZATION.name}
    assert set(kustomization["resources"]) == top_level - set(NOT_APPLIED)
    assert len(kustomization["resources"]) == len(set(kustomization["resources"]))


# --- against the app -----------------------------------------------------------------------


def test_probes_use_the_apps_routes_and_port() -> None:
    container = api_container()
    ready = route_path(service_routes.health_ready)
    live = route_path(service_routes.health_live)
    assert container["readinessProbe"]["httpGet"]["path"] == ready
    assert container["livenessProbe"]["httpGet"]["path"] == live
    # Started = serving HTTP: readiness here would restart pods waiting for a first version.
    assert container["startupProbe"]["httpGet"]["path"] == live
    (port,) = container["ports"]
    env = plain_env(container)
    settings_port = int(env.get(f"{ENV_PREFIX}PORT", Settings.model_fields["port"].default))
    assert port["containerPort"] == settings_port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in (port["name"], port["containerPort"])
    # Inside a container the server must listen beyond loopback (the setting's default).
    assert env[f"{ENV_PREFIX}HOST"] == "0.0.0.0"


def test_metrics_are_scraped_on_the_apps_route() -> None:
    metrics = route_path(service_routes.metrics)
    annotations = api_pod()["metadata"]["annotations"]
    (port,) = api_container()["ports"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == metrics
    assert int(annotations["prometheus.io/port"]) == port["containerPort"]
    # The ServiceMonitor (not schema-validated: UNVALIDATED_KINDS) selects the Service and
    # names its port and the route.
    monitor = find("ServiceMonitor", where=K8S / "examples/servicemonitor.yaml")
    service = find("Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == metrics
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def setting_variables(settings: type[Settings] | type[TrainSettings], prefix: str) -> set[str]:
    """Every variable name ``settings`` reads (old names of renamed ones too)."""
    names = set()
    for field, info in settings.model_fields.items():
        names.add(prefix + field.upper())
        choices = getattr(info.validation_alias, "choices", ())
        names.update(choice for choice in choices if isinstance(choice, str))
    return names


def aws_variable_is_read(name: str) -> bool:
    """Whether modelrepo.s3 (the S3 client of the api and of training) reads ``name``."""
    return f'"{name}"' in inspect.getsource(modelrepo.s3)


def test_api_variables_are_real_settings_with_valid_values(monkeypatch: pytest.MonkeyPatch) -> None:
    env = plain_env(api_container())
    known = setting_variables(Settings, ENV_PREFIX)
    for name in env:
        if name.startswith(ENV_PREFIX):
            assert name in known, f"{name} is no setting of app/config.py"
        else:
            assert name.startswith("AWS_") and aws_variable_is_read(name), name
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()  # ConfigError, naming the variable, if a value is refused
    assert settings.model_source == find("ConfigMap")["data"][f"{ENV_PREFIX}MODEL_SOURCE"]


def test_training_runs_the_training_cli_with_real_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repository = find("ConfigMap")["data"][f"{ENV_PREFIX}MODEL_SOURCE"]
    known = setting_variables(TrainSettings, TRAIN_ENV_PREFIX)
    labels = {}
    for name, pod in training_pods().items():
        (container,) = pod["spec"]["containers"]
        assert container["command"] == ["python", "-m", training.__name__], name
        env = plain_env(container)
        for variable in env:
            if variable.startswith(TRAIN_ENV_PREFIX):
                assert variable in known, f"{name}: {variable} is no training setting"
            else:
                # An XOR_ variable of the api would be ignored by training: a mistake.
                assert variable.startswith("AWS_") and aws_variable_is_read(variable), variable
        with monkeypatch.context() as patch:
            for variable, value in env.items():
                patch.setenv(variable, value)
            settings = parse_settings(container["args"])
        assert settings.publish == repository, f"{name} publishes elsewhere than the api reads"
        assert settings.label is not None, f"{name} points no label at what it publishes"
        labels[name] = settings.label
        for directory in (settings.model_dir, settings.export_dir):
            assert directory.is_absolute(), (name, directory)
            volume = mounted_volume(pod, container, str(directory))
            assert "emptyDir" in volume or "persistentVolumeClaim" in volume, volume
    # The first version becomes stable; scheduled runs only publish canaries.
    assert labels == {
        "Job/xor-serving-train-init": "stable",
        "CronJob/xor-serving-train": "canary",
    }


def test_jobs_retry_and_overlap_sensibly() -> None:
    job = find("Job")
    cron = find("CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["startingDeadlineSeconds"] > 0
    for spec in (job["spec"], cron["spec"]["jobTemplate"]["spec"]):
        assert spec["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
        assert 1 <= spec["backoffLimit"] <= 6
        assert spec["activeDeadlineSeconds"] > 0
    init = parse_settings(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert init.if_missing, "the init Job must be harmless to apply again"


def test_the_api_runs_the_image_compose_builds() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    image = compose["x-app-image"]["image"]
    assert "build" in compose["services"]["api"]
    assert compose["services"]["api"]["image"] == image
    for name, pod in pod_specs():
        for container in pod["spec"]["containers"]:
            assert container["image"] == image, name
    # The Dockerfile's own command, and the package it runs.
    assert api_container()["command"] == json.loads(dockerfile_instruction("CMD"))
    assert api_container()["command"] == ["python", "-m", app.__name__]


def test_the_grace_period_covers_the_shutdown_delay_and_drain() -> None:
    env = plain_env(api_container())
    fields = Settings.model_fields

    def setting(field: str) -> float:
        return float(env.get(ENV_PREFIX + field.upper(), fields[field].default))

    delay = setting("shutdown_delay_seconds")
    drain = setting("shutdown_timeout_seconds")
    # Endpoint removal races SIGTERM (kubernetes/kubernetes#67592): without a delay a pod
    # still gets requests after it stopped accepting them.
    assert delay > 0
    assert api_pod()["spec"]["terminationGracePeriodSeconds"] > delay + drain


def test_rollouts_keep_every_replica_serving() -> None:
    deployment = find("Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert find("HorizontalPodAutoscaler")["spec"]["minReplicas"] == deployment["spec"]["replicas"]


def test_pods_run_with_least_privilege() -> None:
    user, group = (int(part) for part in dockerfile_instruction("USER").split(":"))
    for name, pod in pod_specs():
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == user, name
        assert spec["securityContext"]["runAsGroup"] == group, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["serviceAccountName"] == find("ServiceAccount")["metadata"]["name"], name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context.get("privileged", False) is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in context["capabilities"], name


def test_no_service_link_variable_can_shadow_a_setting() -> None:
    """Kubernetes injects NAME_SERVICE_HOST, NAME_PORT, ... for each Service unless told not
    to: a Service named `xor` would set XOR_PORT=tcp://..., which stops the server."""
    known = setting_variables(Settings, ENV_PREFIX) | setting_variables(
        TrainSettings, TRAIN_ENV_PREFIX
    )
    for name, pod in pod_specs():
        assert pod["spec"]["enableServiceLinks"] is False, name
    for service in (doc for doc in applied() if doc["kind"] == "Service"):
        stem = re.sub(r"[^A-Z0-9]", "_", service["metadata"]["name"].upper())
        injected = {stem + suffix for suffix in SERVICE_LINK_SUFFIXES}
        assert not injected & known, injected & known


def test_every_container_has_measured_requests_and_limits() -> None:
    for name, pod in pod_specs():
        for container in pod["spec"]["containers"]:
            resources = container["resources"]
            for resource in ("cpu", "memory"):
                request = quantity(resources["requests"][resource])
                limit = quantity(resources["limits"][resource])
                assert 0 < request <= limit, (name, resource)
            # Measured peak RSS 573-580 MiB (the manifests' comments): the limit leaves room.
            assert quantity(resources["limits"]["memory"]) >= 1.5 * 580 * 2**20, name


def test_the_model_cache_is_a_sized_empty_dir() -> None:
    env = plain_env(api_container())
    volume = mounted_volume(api_pod(), api_container(), env[f"{ENV_PREFIX}MODEL_DIR"])
    assert quantity(volume["emptyDir"]["sizeLimit"]) > 0
    for name, pod in pod_specs():
        for each in pod["spec"]["volumes"]:
            if "emptyDir" in each:
                assert quantity(each["emptyDir"]["sizeLimit"]) > 0, (name, each["name"])


# --- the objects fit together --------------------------------------------------------------


def test_selectors_match_the_api_pods() -> None:
    pod_labels = api_pod()["metadata"]["labels"].items()
    deployment_selector = find("Deployment")["spec"]["selector"]["matchLabels"]
    assert deployment_selector.items() <= pod_labels
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
        doc = find(kind, "xor-serving-api")
        spec = doc["spec"]
        selector = spec["podSelector"] if kind == "NetworkPolicy" else spec["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector == deployment_selector, kind
    # The Service sends to the container's port.
    (service_port,) = find("Service")["spec"]["ports"]
    (port,) = api_container()["ports"]
    assert service_port["targetPort"] in (port["name"], port["containerPort"])


@pytest.mark.parametrize("path", [K8S / "hpa.yaml", K8S / "examples/hpa-in-flight.yaml"])
def test_autoscalers_target_the_deployment(path: Path) -> None:
    deployment = find("Deployment")
    hpa = find("HorizontalPodAutoscaler", where=path)
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == (deployment["apiVersion"], "Deployment")
    assert target["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # A custom metric must be one the app exports.
    metrics = Metrics()
    metrics.watch_in_flight(lambda: 0)
    exported = {family.name for family in metrics.registry.collect()}
    for metric in hpa["spec"]["metrics"]:
        if metric["type"] == "Pods":
            assert metric["pods"]["metric"]["name"] in exported


def dns_or_s3(rule: dict[str, Any]) -> str:
    """Which of the two allowed destinations an egress rule is: `dns` or `s3`."""
    ports = {(port["protocol"], port["port"]) for port in rule["ports"]}
    assert rule.get("to"), f"an egress rule without `to` allows every destination: {rule}"
    if ports == {("UDP", 53), ("TCP", 53)}:
        (peer,) = rule["to"]
        assert peer["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
        return "dns"
    endpoint = urlsplit(find("ConfigMap")["data"]["AWS_ENDPOINT_URL"])
    s3_port = endpoint.port or {"https": 443, "http": 80}[endpoint.scheme]
    assert ports == {("TCP", s3_port)}, f"not the S3 endpoint's port {s3_port}: {rule}"
    return "s3"


def test_network_policies_let_in_only_the_ingress_and_out_only_to_s3() -> None:
    api = find("NetworkPolicy", "xor-serving-api")
    assert set(api["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    (port,) = api_container()["ports"]
    (rule,) = api["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] in ([port["name"]], [port["containerPort"]])
    access = set()
    for peer in rule["from"]:
        assert set(peer) == {"namespaceSelector"}, peer  # no ipBlock, no open peer
        access.add(peer["namespaceSelector"]["matchLabels"][LABEL_SELECTING_ACCESS])
    assert access == {"ingress", "monitoring"}
    assert sorted(dns_or_s3(rule) for rule in api["spec"]["egress"]) == ["dns", "s3"]

    train = find("NetworkPolicy", "xor-serving-train")
    assert set(train["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert train["spec"]["ingress"] == []
    assert sorted(dns_or_s3(rule) for rule in train["spec"]["egress"]) == ["dns", "s3"]
    selector = train["spec"]["podSelector"]["matchLabels"].items()
    for name, pod in training_pods().items():
        assert selector <= pod["metadata"]["labels"].items(), name


def test_the_secret_holds_placeholders_only() -> None:
    secret = find("Secret", where=K8S / "s3-secret.yaml")
    assert "data" not in secret
    assert secret["stringData"]
    assert set(secret["stringData"].values()) == {"REPLACE_ME"}
    for name in secret["stringData"]:
        assert aws_variable_is_read(name), name
