"""The deploy files pass their validators (hadolint, kubernetes-validate) and say what the service needs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from model.training.config import build_config
from service.server import SERVICE_NAME
from tests.helpers import pinned_requirements, project_requirements
from tests.observability.promql import DASHBOARD, ROOT

K8S = ROOT / "deploy" / "k8s"


def _tool(name: str) -> str:
    """A console script of the dev extra, next to this Python (or on PATH)."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: pip install -e '.[dev]'")
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)


def _documents() -> dict[str, dict[str, Any]]:
    docs = [d for path in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def test_dockerfile_passes_hadolint_and_has_the_required_shape() -> None:
    result = _run(_tool("hadolint"), "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    base = next(line for line in text.splitlines() if line.startswith("ARG BASE_IMAGE=")).split("=", 1)[1]
    assert len(stages) == 2 and base.startswith("nvidia/cuda:") and "-runtime-" in base
    final = text.split("AS runtime")[1]
    assert "USER 10001" in final and "PYTHONUNBUFFERED=1" in final
    assert 'ENTRYPOINT ["retrieval-serve"]' in final and "--metrics-port" in final
    assert not any(tool in final for tool in ("build-essential", "gcc", "python3.11-dev", "pip install"))
    assert "tensorflow[and-cuda]" in text and "faiss-gpu==1.15.1" in text and "faiss-cpu" in text


def _image_dependencies(extras: str) -> dict[str, str]:
    """The pins the Dockerfile installs for build arg EXTRAS=`extras`, and checks they are pyproject's extra."""
    text = (ROOT / "Dockerfile").read_text()
    assert 'pip install -r "/tmp/requirements-${EXTRAS}.txt"' in text and "pip install --no-deps ." in text
    pins = pinned_requirements(ROOT / "deploy" / "docker" / f"requirements-{extras}.txt")
    variant = {"tensorflow", "faiss-cpu"}  # installed by the VARIANT branch: tensorflow[and-cuda] / faiss-gpu
    for name, requirement in project_requirements(extras).items():
        if name not in variant:
            assert name in pins, f"{name} of .[{extras}] is not pinned for the image"
            assert pins[name] in requirement.specifier, f"{name}=={pins[name]} does not satisfy {requirement}"
    return pins


def test_serving_image_installs_neither_matplotlib_nor_grpcio_tools() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG EXTRAS=serve" in text.split("AS runtime")[0]  # the default build is the serving image
    for packages in (_image_dependencies("serve"), project_requirements("serve")):
        assert not {"matplotlib", "grpcio-tools"} & set(packages), sorted(packages)
    assert "matplotlib" in _image_dependencies("train")  # the training image (the CronJob's) plots its run
    assert "grpcio-tools" not in _image_dependencies("train")


def test_hadolint_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get install -y gcc\n")
    assert _run(_tool("hadolint"), str(bad)).returncode != 0


def test_manifests_pass_kubernetes_validate_strictly() -> None:
    files = sorted(str(p) for p in K8S.glob("*.yaml"))
    result = _run(_tool("kubernetes-validate"), "--strict", "--kubernetes-version", "1.30.0", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(_documents()) == {
        "Namespace/retrieval", "ConfigMap/retrieval-config", "PersistentVolumeClaim/retrieval-models",
        "Deployment/retrieval", "Service/retrieval", "Service/retrieval-metrics",
        "HorizontalPodAutoscaler/retrieval", "PodDisruptionBudget/retrieval", "CronJob/retrieval-train",
    }  # fmt: skip


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((K8S / "pdb.yaml").read_text().replace("minAvailable: 1", "minAvailable: 1\n  minimumAvailable: 1"))
    assert _run(_tool("kubernetes-validate"), "--strict", str(bad)).returncode != 0


def test_deployment_probes_gpu_limits_and_security() -> None:
    docs = _documents()
    pod = docs["Deployment/retrieval"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["grpc"] == {"port": 50051, "service": SERVICE_NAME}
    assert container["livenessProbe"]["grpc"]["port"] == 50051 and "grpc" in container["startupProbe"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) <= set(container["resources"]["limits"])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"]
    assert "--metrics-port=9464" in container["args"] and "--workers=$(WORKERS)" in container["args"]
    assert int(docs["ConfigMap/retrieval-config"]["data"]["WORKERS"]) >= 1
    assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}  # the supervisor's run directory
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    job_pod = docs["CronJob/retrieval-train"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    job_claims = {v["persistentVolumeClaim"]["claimName"] for v in job_pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == job_claims == {"retrieval-models"}
    assert docs["Service/retrieval-metrics"]["spec"]["clusterIP"] == "None"
    env = docs["ConfigMap/retrieval-config"]["data"]
    expanded = {arg.split("$(")[1].rstrip(")") for arg in container["args"] if "$(" in arg}
    assert expanded <= set(env), expanded - set(env)


def test_training_config_in_the_configmap_is_valid_and_exports_to_the_volume() -> None:
    text = _documents()["ConfigMap/retrieval-config"]["data"]["train.toml"]
    config = build_config(tomllib.loads(text))
    assert config.export.models_dir == "/models" and config.export.enabled


def test_dashboard_has_a_datasource_variable_and_uses_rate_interval() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    targets = [t for p in dashboard["panels"] for t in p["targets"]]
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])
    assert all("$__rate_interval" in t["expr"] for t in targets if "rate(" in t["expr"])
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for needed in ("request rate", "error ratio", "p99", "stage", "batch size", "queue depth", "model version",
                   "reloads"):  # fmt: skip
        assert needed in titles, needed
