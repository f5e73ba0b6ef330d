import pytest

from model.cli import parse_args
from model.training.config import RunConfig, apply_overrides, build_config, field_paths, load_toml, to_dict


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
    assert vars(args)["train.learning_rate"] == "0.1"
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
