"""Shared helpers of the reliability tests: a real `retrieval-serve` process, an offline oracle, results.

`ServeProcess` runs the server CLI in a subprocess on loopback (bench/processes.py's `ServeCommand`, the one the
benchmarks use too) with the service tests' model and limits. `Oracle` answers a fixed set of
requests offline (the bundle's query tower and item embeddings, full-catalog scoring) so that every answer
under load can be checked. `Results` collects the numbers each test records for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.processes import ServeCommand, rss_bytes, wait_for
from model.bundle.reader import open_bundle
from model.features import CategoricalFeature
from service.client import build_request
from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.validation import validate_request
from tests.service.helpers import LIMITS, MODEL, SPEC, item_id

__all__ = ["Oracle", "Results", "ServeProcess", "copy_bundle", "load_requests", "rss_bytes", "wait_for"]

SOAK = os.environ.get("RELIABILITY_SOAK", "") not in ("", "0")
ROOT = Path(__file__).resolve().parents[2]


class ServeProcess(ServeCommand):
    """`retrieval-serve` for the reliability tests: the service tests' model and request limits, CPU only.

    Args:
        models_dir: root of the bundles.
        log_path: where stdout and stderr go.
        args: extra command-line flags.
        wait_serving: block in `start()` until health reports SERVING.
        env: extra environment variables of the process.
    """

    def __init__(
        self,
        models_dir: Path,
        log_path: Path,
        *args: str,
        wait_serving: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        limits = (
            "--gpu-device", "-1", "--max-k", str(LIMITS.max_k), "--max-exclusions", str(LIMITS.max_exclusions),
            "--max-history", str(LIMITS.max_history), "--max-batch-requests", str(LIMITS.max_batch_requests),
        )  # fmt: skip
        super().__init__(models_dir, MODEL, log_path, *limits, *args, wait_serving=wait_serving, env=env)


def load_requests(count: int = 64, seed: int = 0) -> list[pb.RetrieveCandidatesRequest]:
    """Valid requests covering known and unknown users, every feature, exclusions and several k."""
    rng = np.random.default_rng(seed)
    genres = ("drama", "comedy", "horror", "western")
    requests = []
    for i in range(count):
        user = f"u{i % 30}" if i % 4 else f"stranger-{i}"
        features: dict[str, Any] = {}
        if i % 3:
            features["genres"] = list(rng.choice(genres, size=int(rng.integers(0, 4)), replace=False))
        if i % 5:
            features["country"] = str(rng.choice(["DE", "FR", "US", "JP"]))
        if i % 2:
            features["age"] = float(rng.uniform(10, 80))
        exclude = [item_id(int(r)) for r in rng.choice(400, size=int(rng.integers(0, 8)), replace=False)]
        requests.append(
            build_request(user, int(rng.choice([5, 10, 20, 50])), features=features, exclude=exclude, request_id=str(i))
        )
    return requests


class Oracle:
    """Exact offline answers to `requests` from the bundle at `bundle_path` (dot similarity)."""

    def __init__(self, bundle_path: Path, requests: Sequence[pb.RetrieveCandidatesRequest]) -> None:
        bundle = open_bundle(bundle_path)
        self.version = str(bundle.manifest.model_version)
        queries = [validate_request(r, SPEC, LIMITS) for r in requests]
        inputs = {}
        for feature in SPEC.features:
            values = [q.features[feature.name] for q in queries]
            dtype = object if isinstance(feature, CategoricalFeature) else np.float32
            inputs[feature.name] = np.array(values, dtype=dtype)
        self.scores = bundle.load_query_tower()(inputs) @ bundle.load_item_embeddings().T  # [R, N]
        self.ids = bundle.load_items().ids.tolist()
        self.row = {item: row for row, item in enumerate(self.ids)}
        self.expected: list[list[str]] = []
        for i, query in enumerate(queries):
            order = [r for r in np.argsort(-self.scores[i], kind="stable") if self.ids[r] not in query.exclude]
            self.expected.append([self.ids[r] for r in order[: query.k]])
        self.excluded = [q.exclude for q in queries]

    def check(self, index: int, response: pb.RetrieveCandidatesResponse, atol: float = 1e-4) -> str | None:
        """What is wrong with `response` to request `index`, or None (exact ids, or the same scores)."""
        got = [c.item_id for c in response.candidates]
        if response.model_version != self.version:
            return f"request {index}: version {response.model_version}, oracle has {self.version}"
        if got == self.expected[index]:
            return None
        expected_scores = self.scores[index][[self.row[i] for i in self.expected[index]]]
        scores = np.array([c.score for c in response.candidates])
        true_scores = self.scores[index][[self.row.get(i, 0) for i in got]]
        if (
            len(got) == len(self.expected[index])
            and all(i in self.row and i not in self.excluded[index] for i in got)
            and np.allclose(scores, expected_scores, atol=atol)
            and np.allclose(scores, true_scores, atol=atol)
        ):
            return None  # a near-tie ordered differently: the same scores
        return f"request {index}: got {got[:5]}..., expected {self.expected[index][:5]}..."


def copy_bundle(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination


class Results:
    """Numbers recorded by the tests, by scenario; written as JSON at the end of the session."""

    def __init__(self) -> None:
        self.scenarios: dict[str, dict[str, Any]] = {}

    def record(self, scenario: str, **numbers: Any) -> None:
        self.scenarios.setdefault(scenario, {}).setdefault("numbers", {}).update(_jsonable(numbers))

    def outcome(self, scenario: str, test: str, outcome: str, seconds: float) -> None:
        tests = self.scenarios.setdefault(scenario, {}).setdefault("tests", {})
        tests[test] = {"outcome": outcome, "seconds": round(seconds, 2)}

    def write(self, path: Path, total_seconds: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cpus": os.cpu_count(),
            "soak": SOAK,
            "total_seconds": round(total_seconds, 1),
            "scenarios": self.scenarios,
        }
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return round(value, 4)
    return value
