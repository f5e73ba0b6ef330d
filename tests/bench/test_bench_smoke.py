"""The benchmark scripts run end to end in their tiny mode and write valid outputs (no timed assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.ceiling import MAX_MEASURED_SIZES, measured_sizes
from bench.load import Call, between
from bench.report import latency_summary, markdown_table
from bench.run_all import SUMMARY_KEYS

ROOT = Path(__file__).resolve().parents[2]


def test_window_counts_only_calls_started_inside_it() -> None:
    calls = [Call(9.9, 0.5, "OK"), Call(10.0, 0.25, "OK"), Call(19.0, 2.0, "UNAVAILABLE"), Call(20.0, 0.1, "OK")]
    window = between(calls, 10.0, 20.0)
    assert [c.latency for c in window.ok] == [0.25]
    assert dict(window.codes) == {"OK": 1, "UNAVAILABLE": 1}


def test_measured_sizes_keep_extremes_and_stay_bounded() -> None:
    assert measured_sizes({1: 5, 4: 2}) == [1, 4]
    many = measured_sizes({b: 1 for b in range(1, 65)})
    assert many[0] == 1 and many[-1] == 64 and len(many) <= MAX_MEASURED_SIZES


def test_latency_summary_and_table() -> None:
    summary = latency_summary([0.001, 0.002, 0.003])
    assert summary["p50_ms"] == pytest.approx(2.0)
    assert markdown_table(["a", "b"], [[1, 0.123456]]).splitlines()[2] == "| 1 | 0.1235 |"


@pytest.mark.slow
def test_run_all_tiny_writes_every_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [
        sys.executable,
        "-m",
        "bench.run_all",
        "--tiny",
        "--out-dir",
        str(out),
        "--work-dir",
        str(tmp_path / "w"),
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    summary = json.loads((out / "summary.json").read_text())
    assert tuple(summary) == SUMMARY_KEYS
    for key in SUMMARY_KEYS[:-2]:
        assert isinstance(summary[key], float), (key, summary[key])
    assert summary["command"].startswith("python ") and "--tiny" in summary["command"]

    serving = json.loads((out / "serving.json").read_text())
    assert serving["machine"]["cpu_count"] >= 1 and serving["machine"]["cpu_model"]
    kinds = {b["kind"] for b in serving["bundles"]}
    assert kinds == {"flat", "ivf"}
    for bundle in serving["bundles"]:
        assert [p["concurrency"] for p in bundle["closed_loop"]] == [1, 8]
        assert all(p["completed_ok"] > 0 and not p["errors"] for p in bundle["closed_loop"])
        assert bundle["open_loop_half_saturation"]["mode"] == "open"
        assert bundle["ceiling"]["qps"] > 0 and bundle["closed_loop"][-1]["batch_sizes"]
    flat = next(b for b in serving["bundles"] if b["kind"] == "flat")
    assert set(flat["batching_off"]["batch_sizes"]) == {"1"}  # JSON object keys are strings

    training = json.loads((out / "training_throughput.json").read_text())
    assert {r["jit_compile"] for r in training["results"]} == {False, True}
    for row in training["results"]:
        assert "error" in row or "skipped" in row or (row["model_step_fraction"] > 0 and row["wall_ms_per_step"] > 0)
    for name in ("serving", "training_throughput"):
        assert (out / f"{name}.md").read_text().count("Command: `python") == 1
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    floor = serving["grpc_floor"]
    assert floor["qps"] > 0 and not floor["errors"] and floor["server_cpu_ms_per_call"] > 0
    assert all(p["server_cpu_ms_per_call"] > 0 and p["loadgen_cpu_ms_per_call"] > 0 for p in bundle["closed_loop"])
    flat_search = json.loads((out / "flat_search.json").read_text())
    assert [r["streams"] for r in flat_search["streams_vs_threads"]][-1] == 1
    assert all(r["qps"] > 0 for r in flat_search["streams_vs_threads"])
    assert [r["batch"] for r in flat_search["blas_vs_scan_one_thread"]] == [1, 2, 4, 8, 16, 32, 64]
    assert all(r["scan_ms"] > 0 and r["blas_ms"] > 0 for r in flat_search["blas_vs_scan_one_thread"])


@pytest.mark.slow
def test_streaming_training_tiny_writes_its_outputs(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "bench.streaming_training", "--tiny", "--out-dir", str(tmp_path), "--work-dir",
               str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "streaming_training.json").read_text())
    assert [r["interactions"] for r in report["results"]] == [5000, 15000]
    first = report["results"][0]
    for run in (first["streaming"], first["in_memory"], report["results"][1]["streaming"]):
        assert run["returncode"] == 0 and run["peak_rss_mib"] > 0 and run["examples_per_second"] > 0
    assert first["streaming"]["train_examples"] == first["in_memory"]["train_examples"] == 4400
    targets = {"train_peak_rss_growth", "train_peak_rss_growth_ok", "streaming_over_in_memory_ok"}
    assert set(report["targets"]) == {*targets, "streaming_over_in_memory_examples_per_second"}
    assert (tmp_path / "streaming_training.png").stat().st_size > 0
    assert (tmp_path / "streaming_training.md").read_text().count("Command: `python") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "streaming_training.json", "streaming_training.md", "streaming_training.png"
    ]  # fmt: skip  # the scratch directory is removed


@pytest.mark.slow
def test_streaming_training_tiny_sequential_writes_its_own_outputs(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "bench.streaming_training", "--tiny", "--tower", "sequential", "--repeats", "1",
               "--out-dir", str(tmp_path), "--work-dir", str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "streaming_training_sequential.json").read_text())
    assert report["tower"] == "sequential" and report["config"]["repeats"] == 1
    first = report["results"][0]
    for run in (first["streaming"], first["in_memory"], report["results"][1]["streaming"]):
        assert run["returncode"] == 0 and run["peak_rss_mib"] > 0 and run["examples_per_second"] > 0
    assert first["streaming"]["train_examples"] == first["in_memory"]["train_examples"] == 4400
    assert "(sequential tower)" in (tmp_path / "streaming_training_sequential.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "streaming_training_sequential.json", "streaming_training_sequential.md", "streaming_training_sequential.png"
    ]  # fmt: skip
