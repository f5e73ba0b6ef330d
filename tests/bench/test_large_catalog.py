"""bench/large_catalog.py: its exact oracle and re-rank against brute force, and a tiny end-to-end run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from bench.large_catalog import DIM, RERANK_DEPTH, K, exact_top_k, read_rows, rerank

ROOT = Path(__file__).resolve().parents[2]


def _catalog(tmp_path: Path, num_items: int) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    items = rng.standard_normal((num_items, DIM), dtype=np.float32)
    path = tmp_path / "items.f32"
    items.tofile(path)
    return path, items, rng.standard_normal((7, DIM), dtype=np.float32)


def test_blocked_exact_search_finds_the_brute_force_top_k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench.large_catalog.EXACT_BLOCK", 333)  # several blocks, the last one short
    path, items, queries = _catalog(tmp_path, 1000)
    found = exact_top_k(lambda start, count: read_rows(path, start, count), len(items), queries)
    expected = np.argsort(-(queries @ items.T), axis=1)[:, :K]
    assert found.shape == (7, K)
    for got, want in zip(found, expected, strict=True):
        assert set(got) == set(want)


def test_rerank_of_an_exact_index_is_the_exact_top_k(tmp_path: Path) -> None:
    path, items, queries = _catalog(tmp_path, RERANK_DEPTH + 50)
    index = faiss.IndexFlatIP(DIM)
    index.add(items)
    found = rerank(index, np.memmap(path, dtype=np.float32, mode="r", shape=items.shape), queries)
    expected = np.argsort(-(queries @ items.T), axis=1)[:, :K]
    for got, want in zip(found, expected, strict=True):
        assert set(got) == set(want)


@pytest.mark.slow
def test_tiny_run_writes_every_output(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "bench.large_catalog", "--sizes", "20000", "--out", str(tmp_path / "out")]
    command += ["--scratch", str(tmp_path / "scratch")]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "large_catalog.json").read_text())
    (size,) = report["sizes"]
    assert size["num_items"] == 20000 and size["build"]["index_bytes"] > 20000 * 40
    assert all(0 <= row["recall_at_100"] <= 1 for row in size["search"]["by_nprobe"])
    assert [row["mode"] for row in size["load"]] == ["off", "on"]
    assert (tmp_path / "out" / "large_catalog.png").stat().st_size > 0
    assert "## Loading" in (tmp_path / "out" / "large_catalog.md").read_text()
    assert not (tmp_path / "scratch").exists()
