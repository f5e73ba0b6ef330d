"""Helpers shared by the tests."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path
from typing import Any

import keras
import numpy as np
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

# Arguments of every Keras layer, handled (and round-tripped) by keras.layers.Layer itself.
_BASE_LAYER_ARGUMENTS = frozenset(inspect.signature(keras.layers.Layer.__init__).parameters) | {"name", "dtype"}


def _comparable(value: Any) -> Any:
    """A value in a form that compares equal after a round trip: lists for tuples, configs for Keras objects."""
    if isinstance(value, tuple | list):
        return [_comparable(v) for v in value]
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "get_config"):
        return _comparable(keras.saving.serialize_keras_object(value))
    return value


def _argument_value(obj: Any, name: str) -> Any:
    """What `obj` holds for its constructor argument `name`: the attribute `name` or `_name`, else its config's."""
    for attribute in (name, f"_{name}"):
        if hasattr(obj, attribute):
            return getattr(obj, attribute)
    config = obj.get_config()
    assert name in config, (
        f"{type(obj).__name__}: constructor argument {name!r} is in no attribute and not in get_config()"
    )
    return config[name]


def constructor_arguments(obj: Any) -> dict[str, Any]:
    """The named constructor arguments of `obj`'s class besides keras.layers.Layer's, with their defaults."""
    parameters = inspect.signature(type(obj).__init__).parameters.values()
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {
        p.name: p.default
        for p in parameters
        if p.kind in named and p.name != "self" and p.name not in _BASE_LAYER_ARGUMENTS
    }


def serialize_round_trip(layer: Any) -> Any:
    """serialize_keras_object -> deserialize_keras_object; asserts every constructor argument kept its value.

    For each named argument of the constructor, the restored object's attribute of that name (or `_name`) must
    equal the original's, so an argument that `get_config` forgets comes back as its default and fails here. An
    argument kept in no attribute must be in `get_config()`. A default value cannot tell a forgotten argument
    from a kept one, so every argument that has a default must be given another value.
    """
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)
    for name, default in constructor_arguments(layer).items():
        expected, actual = _comparable(_argument_value(layer, name)), _comparable(_argument_value(restored, name))
        if default is not inspect.Parameter.empty:
            assert expected != _comparable(default), f"{type(layer).__name__}.{name}: give a non-default value"
        assert actual == expected, (
            f"{type(layer).__name__}.{name}: {expected!r} before the round trip, {actual!r} after"
        )
    return restored


class Interrupt(keras.callbacks.Callback):
    """Stops a training run right after epoch `after` has been checkpointed: a crash, as far as the job knows."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch + 1 == self.after:
            raise KeyboardInterrupt("simulated interruption")


def project_requirements(*extras: str) -> dict[str, Requirement]:
    """pyproject.toml's core dependencies plus those of `extras`, by canonical distribution name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [line for extra in extras for line in project["optional-dependencies"][extra]]
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def pinned_requirements(path: Path) -> dict[str, str]:
    """The `name==version` pins of a requirements file, following its `-r` includes, by canonical name."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins |= pinned_requirements(path.parent / line[3:].strip())
        elif line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def save_load_model(model: keras.Model, tmp_path: Path) -> keras.Model:
    """Saves to a .keras file and loads it back."""
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    return keras.saving.load_model(path)


def assert_close(actual: Any, expected: Any, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), atol=atol, rtol=1e-5)
