import json
import math

import pytest

from bench import seeds
from model.training.config import build_config, to_dict


def test_mean_std_and_standard_error_by_hand():
    stat = seeds.mean_std([0.20, 0.22, 0.24])

    assert stat["mean"] == pytest.approx(0.22)
    assert stat["std"] == pytest.approx(0.02)  # sample std: sqrt((0.0004 + 0 + 0.0004) / 2)
    assert stat["se"] == pytest.approx(0.02 / math.sqrt(3))
    assert seeds.mean_std([0.5]) == {"mean": 0.5, "std": 0.0, "se": 0.0, "n": 1}


def _metrics(recall: float) -> dict:
    history = [{"epoch": 1, "val_recall@10": recall, "val_ndcg@10": recall / 2}]
    training = {"history": history, "best_epoch": 1, "epochs_done": 1, "seconds": 1.0}
    return {"training": training, "test": {"model": {"excluding_train": {"recall@10": recall, "ndcg@10": 0.1}}}}


def test_a_finished_run_of_the_same_config_is_read_back(tmp_path, monkeypatch):
    config = build_config({"output_dir": str(tmp_path / "run"), "train": {"seed": 7}})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(to_dict(config)))
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(_metrics(0.3)))
    monkeypatch.setattr(seeds, "run", lambda config: pytest.fail("a finished run must not be retrained"))

    assert seeds.seed_row(seeds.run_or_reuse(config), 7)["validation"] == {"recall@10": 0.3, "ndcg@10": 0.15}


def test_a_different_config_is_trained_again(tmp_path, monkeypatch):
    config = build_config({"output_dir": str(tmp_path / "run"), "train": {"seed": 7}})
    (tmp_path / "run").mkdir()
    other = build_config({"output_dir": str(tmp_path / "run"), "train": {"seed": 8}})
    (tmp_path / "run" / "config.json").write_text(json.dumps(to_dict(other)))
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(_metrics(0.3)))

    class Trained:
        metrics = _metrics(0.4)

    monkeypatch.setattr(seeds, "run", lambda config: Trained())

    assert seeds.run_or_reuse(config)["test"]["model"]["excluding_train"]["recall@10"] == 0.4


def test_summary_over_seed_rows():
    rows = [seeds.seed_row(_metrics(r), seed) for seed, r in ((1, 0.2), (2, 0.4))]

    summary = seeds.summarize(rows)

    assert summary["validation"]["recall@10"]["mean"] == pytest.approx(0.3)
    assert summary["test"]["ndcg@10"]["std"] == 0.0
