"""The distribution's extras: serving runs without the training and codegen dependencies, dev has them all."""

from __future__ import annotations

import os
import subprocess
import sys

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
    assert train - core == {"matplotlib"}
    assert train | {"grpcio-tools", "pytest"} <= dev  # `pip install -e ".[dev]"` covers the demo and protogen
    tools, runtime = project_requirements("dev")["grpcio-tools"], project_requirements()["grpcio"]
    assert tools.specifier == runtime.specifier  # grpcio-tools pinned to the grpcio version
