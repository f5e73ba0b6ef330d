"""Scenario 8: `retrieval-train` processes killed with SIGKILL mid-epoch and mid-export, then resumed.

One run trains uninterrupted. A second run is killed in the middle of epoch 2, resumed with `--resume` and
killed again while `export_bundle` writes its temporary directory; the models directory then holds no version
a server could load (the watcher sees nothing). A last `--resume` finishes: its test metrics match the
uninterrupted run's within tolerance, and the bundle it exports loads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model.bundle.reader import list_versions
from service.model_manager import ModelManager, load_engine
from tests.reliability.helpers import ROOT, Results, wait_for

SCENARIO = "training_faults"
EPOCHS = 4
RECALL_TOLERANCE = 0.03  # absolute, on test Recall@10 (the resumed run replays one epoch's shuffle order)


def _command(run_dir: Path, models_dir: Path, *extra: str) -> list[str]:
    script = Path(sys.executable).parent / "retrieval-train"
    base = [str(script)] if script.exists() else [sys.executable, "-m", "model.cli"]
    return [
        *base, "--data.source", "synthetic", "--train.epochs", str(EPOCHS), "--train.batch_size", "256",
        "--train.learning_rate", "0.01", "--train.patience", "0", "--train.verbose", "0",
        "--model.embedding_dim", "32", "--export.name", "demo", "--export.models_dir", str(models_dir),
        "--output_dir", str(run_dir), *extra,
    ]  # fmt: skip


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def _epochs_done(run_dir: Path) -> int:
    try:
        return int(json.loads((run_dir / "state.json").read_text())["epochs_done"])
    except (OSError, ValueError, KeyError):
        return 0


def _recall(run_dir: Path) -> float:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return float(metrics["test"]["model"]["excluding_train"]["recall@10"])


def _half_written(model_dir: Path) -> Path | None:
    """The export's temporary directory once it holds a file (the query tower is written first)."""
    staging = next(model_dir.glob(".tmp-*"), None) if model_dir.is_dir() else None
    return staging if staging is not None and any(p.is_file() for p in staging.rglob("*")) else None


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(30)


@pytest.mark.slow
def test_kill_mid_epoch_and_mid_export_then_resume(tmp_path: Path, results: Results) -> None:
    log = tmp_path / "train.log"
    reference = _start(
        _command(tmp_path / "reference", tmp_path / "reference-models", "--export.enabled", "false"), log
    )

    run_dir, models_dir = tmp_path / "run", tmp_path / "models"
    command = _command(run_dir, models_dir)
    started = time.monotonic()
    first = _start(command, log)
    wait_for(lambda: _epochs_done(run_dir) >= 1 or first.poll() is not None, timeout_s=240, interval_s=0.02)
    time.sleep(0.3)  # well inside epoch 2 (an epoch takes seconds)
    killed_after_epochs = _epochs_done(run_dir)
    _kill(first)
    assert first.returncode == -signal.SIGKILL and killed_after_epochs == 1, (first.returncode, log.read_text()[-2000:])

    second = _start([*command, "--resume"], log)
    staging = wait_for(lambda: _half_written(models_dir / "demo"), timeout_s=240, interval_s=0.005)
    _kill(second)
    half_written = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    visible = list_versions(models_dir / "demo")
    manager = ModelManager(models_dir, "demo", lambda path: load_engine(path, gpu_device=-1))
    served_after_crash = manager.poll()
    metrics_after_crash = (run_dir / "metrics.json").exists()

    third = _start([*command, "--resume"], log)
    assert third.wait(300) == 0, log.read_text()[-3000:]
    assert reference.wait(300) == 0, log.read_text()[-3000:]
    resumed_seconds = time.monotonic() - started
    history = [row["epoch"] for row in json.loads((run_dir / "metrics.json").read_text())["training"]["history"]]
    engine = manager.poll()
    resumed, uninterrupted = _recall(run_dir), _recall(tmp_path / "reference")
    results.record(
        SCENARIO,
        epochs=EPOCHS,
        killed_mid_epoch=killed_after_epochs + 1,
        export_crash_files_written=half_written,
        versions_visible_after_export_crash=visible,
        server_loaded_after_export_crash=served_after_crash is not None,
        metrics_written_before_final_resume=metrics_after_crash,
        resumed_history_epochs=history,
        recall_at_10_resumed=resumed,
        recall_at_10_uninterrupted=uninterrupted,
        recall_difference=abs(resumed - uninterrupted),
        recall_tolerance=RECALL_TOLERANCE,
        final_bundle_versions=list_versions(models_dir / "demo"),
        final_bundle_served=engine is not None and engine.manifest.model_version == 1,
        wall_seconds_interrupted_run=resumed_seconds,
    )
    assert visible == [] and served_after_crash is None and not metrics_after_crash
    assert history == list(range(1, EPOCHS + 1))
    assert abs(resumed - uninterrupted) <= RECALL_TOLERANCE, (resumed, uninterrupted)
    assert list_versions(models_dir / "demo") == [1] and engine is not None
