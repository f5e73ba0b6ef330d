"""The distribution's extras: serving runs without the training and codegen dependencies, dev has them all."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

from packaging.utils import canonicalize_name

from tests.helpers import ROOT, project_requirements

# Imported where a package is absent, each of these fails; serving must import without them.
SERVING_MODULES = ("service.cli", "service.server", "service.query_cli")
NOT_SERVING = ("matplotlib", "grpc_tools")


def _import_without(modules: tuple[str, ...], absent: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """Imports `modules` in a fresh interpreter in which the packages `absent` cannot be imported."""
    code = f"import sys\nfor name in {absent!r}: sys.modules[name] = None\n" + "".join(f"import {m}\n" for m in modules)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip


def test_serving_imports_without_matplotlib_or_grpcio_tools() -> None:
    done = _import_without(SERVING_MODULES, NOT_SERVING)
    assert done.returncode == 0, done.stderr[-3000:]
    control = _import_without(("model.training.job",), NOT_SERVING)  # training plots: the block above bites
    assert control.returncode != 0 and "matplotlib" in control.stderr


def test_extras_split_serving_training_and_development() -> None:
    core, serve, train, dev = (set(project_requirements(*extras)) for extras in ((), ("serve",), ("train",), ("dev",)))
    assert serve == core and not {"matplotlib", "grpcio-tools"} & core
    assert train - core == {"matplotlib", "duckdb"}
    assert train | {"grpcio-tools", "pytest"} <= dev  # `pip install -e ".[dev]"` covers the demo and protogen
    otel = set(project_requirements("otel")) - core
    assert otel == {
        "opentelemetry-api", "opentelemetry-sdk", "opentelemetry-exporter-otlp", "opentelemetry-instrumentation-grpc"
    }  # fmt: skip
    assert otel <= dev  # CI (which installs dev) runs the tracing tests
    otel_pins, dev_pins = project_requirements("otel"), project_requirements("dev")
    assert all(otel_pins[name].specifier == dev_pins[name].specifier for name in otel)
    tools, runtime = project_requirements("dev")["grpcio-tools"], project_requirements()["grpcio"]
    assert tools.specifier == runtime.specifier  # grpcio-tools pinned to the grpcio version


# The bare top-level import names of this distribution (README, "Packaging").
OWN_PACKAGES = frozenset({"model", "service", "apps"})


def top_level_names(dist: importlib.metadata.Distribution) -> set[str]:
    """The top-level modules and packages a distribution installs: top_level.txt, else its RECORD's paths."""
    listed = dist.read_text("top_level.txt")
    if listed is not None:
        return {line.strip() for line in listed.splitlines() if line.strip()}
    names = set()
    for path in dist.files or ():
        top = path.parts[0]
        if top.startswith("..") or top.endswith((".dist-info", ".egg-info", ".data")) or top == "__pycache__":
            continue
        names.add(top.split(".")[0] if len(path.parts) == 1 else top)
    return names


def test_no_other_installed_distribution_provides_our_top_level_packages() -> None:
    clashes = {
        dist.metadata["Name"]: sorted(top_level_names(dist) & OWN_PACKAGES)
        for dist in importlib.metadata.distributions()
        if canonicalize_name(dist.metadata["Name"] or "") != "retrieval-service"
    }
    assert not {name: found for name, found in clashes.items() if found}


def test_top_level_names_reads_what_a_distribution_installs() -> None:
    """A control: the scan above sees packages (numpy) and single modules (typing_extensions, from RECORD)."""
    assert "numpy" in top_level_names(importlib.metadata.distribution("numpy"))
    assert "typing_extensions" in top_level_names(importlib.metadata.distribution("typing_extensions"))
