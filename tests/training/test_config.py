import dataclasses

import keras
import pytest

from model.cli import parse_args
from model.training.config import (
    RunConfig,
    TrainConfig,
    apply_overrides,
    build_config,
    field_paths,
    load_toml,
    to_dict,
)
from model.training.factory import compile_model, learning_rate


def test_toml_then_command_line_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[train]\nepochs = 7\nbatch_size = 128\n[model]\nhidden_units = [64, 32]\nsampler = "mixed"\n')
    config = build_config(apply_overrides(load_toml(path), {"train.epochs": "3", "data.source": "synthetic"}))
    assert config.train.epochs == 3  # the command line wins
    assert config.train.batch_size == 128
    assert config.model.hidden_units == (64, 32)
    assert config.model.sampler == "mixed"
    assert config.data.source == "synthetic"
    assert build_config(to_dict(config)) == config  # the saved effective config rebuilds the same run


def test_every_field_is_a_command_line_flag():
    args = parse_args(["--train.learning_rate", "0.1", "--model.logq_correction", "false"])
    assert vars(args)["train.learning_rate"] == 0.1 and vars(args)["model.logq_correction"] is False
    assert set(field_paths()) <= set(vars(args))
    config = build_config(apply_overrides({}, {"train.learning_rate": "0.1", "model.logq_correction": "false"}))
    assert config.train.learning_rate == 0.1 and config.model.logq_correction is False


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"train": {"epochz": 1}}, r"unknown config field\(s\) \['train.epochz'\]"),
        ({"train": {"epochs": "many"}}, "config field train.epochs"),
        ({"model": {"logq_correction": "maybe"}}, "config field model.logq_correction: not a boolean"),
        ({"train": 3}, "config section train must be a table"),
    ],
)
def test_bad_config_names_the_field(values, message):
    with pytest.raises(ValueError, match=message):
        build_config(values)


def test_defaults_build():
    assert isinstance(build_config({}), RunConfig)


def test_cosine_schedule_decays_over_decay_epochs_and_stays_at_zero():
    train = TrainConfig(learning_rate=0.01, lr_schedule="cosine", epochs=40, decay_epochs=4, batch_size=10)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    compile_model(model, train, num_examples=95)  # 10 steps per epoch (the last one short): 40 decay steps
    rates = []
    for step in (0, 20, 40, 400):
        model.optimizer.iterations.assign(step)
        rates.append(float(model.optimizer.learning_rate))
    assert rates == pytest.approx([0.01, 0.005, 0.0, 0.0], abs=1e-7)
    assert learning_rate(TrainConfig(learning_rate=0.003), steps_per_epoch=7) == 0.003
    assert float(learning_rate(dataclasses.replace(train, decay_epochs=0), 10)(200)) == pytest.approx(0.005)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        (TrainConfig(lr_schedule="step"), r"train.lr_schedule must be one of \('constant', 'cosine'\), got 'step'"),
        (TrainConfig(lr_schedule="cosine", decay_epochs=-1), "train.decay_epochs >= 0"),
    ],
)
def test_bad_schedule_names_the_field(train, message):
    with pytest.raises(ValueError, match=message):
        learning_rate(train, steps_per_epoch=5)
