"""The shared test helpers can fail: a round trip catches an argument that `get_config` forgets."""

from __future__ import annotations

from typing import Any

import keras
import pytest

from tests.helpers import serialize_round_trip


@keras.saving.register_keras_serializable(package="tests.helpers")
class Scale(keras.layers.Layer):
    """Multiplies by `factor`, then adds `offset`."""

    def __init__(self, factor: float = 1.0, offset: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor, self.offset = factor, offset

    def call(self, x: Any) -> Any:
        return x * self.factor + self.offset

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "offset": self.offset}


@keras.saving.register_keras_serializable(package="tests.helpers")
class ForgetfulScale(Scale):
    """`Scale` whose `get_config` forgets `offset`: restored, it adds 0."""

    def get_config(self) -> dict[str, Any]:
        return {k: v for k, v in super().get_config().items() if k != "offset"}


def test_round_trip_keeps_every_argument() -> None:
    restored = serialize_round_trip(Scale(factor=2.0, offset=3.0, name="kept"))
    assert (restored.factor, restored.offset, restored.name) == (2.0, 3.0, "kept")


def test_round_trip_fails_when_get_config_forgets_an_argument() -> None:
    layer = ForgetfulScale(factor=2.0, offset=3.0)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert restored.get_config() == layer.get_config()  # what the helper used to compare: blind to the loss
    with pytest.raises(AssertionError, match=r"ForgetfulScale\.offset: 3\.0 before the round trip, 0\.0 after"):
        serialize_round_trip(layer)


def test_round_trip_refuses_a_default_value() -> None:
    with pytest.raises(AssertionError, match=r"Scale\.offset: give a non-default value"):
        serialize_round_trip(Scale(factor=2.0))
