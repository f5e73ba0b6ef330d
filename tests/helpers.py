"""Helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np


def serialize_round_trip(layer: keras.layers.Layer) -> keras.layers.Layer:
    """serialize_keras_object -> deserialize_keras_object; asserts the configs are equal."""
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()
    return restored


def save_load_model(model: keras.Model, tmp_path: Path) -> keras.Model:
    """Saves to a .keras file and loads it back."""
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    return keras.saving.load_model(path)


def assert_close(actual: Any, expected: Any, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), atol=atol, rtol=1e-5)
