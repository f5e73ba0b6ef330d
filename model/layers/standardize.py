"""Standardisation of a numeric feature, with missing values mapped to the mean."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="retrieval")
class Standardize(keras.layers.Layer):
    """Maps x to (x - mean) / std as a [batch_size, 1] column; NaN and ±inf become 0 (the mean).

    Args:
        mean: value subtracted.
        std: positive scale.
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not std > 0:
            raise ValueError(f"std must be positive, got {std}")
        self.mean = float(mean)
        self.std = float(std)

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, self.compute_dtype)
        x = ops.reshape(x, (-1, 1))
        x = (x - self.mean) / self.std
        return ops.where(ops.isfinite(x), x, ops.zeros_like(x))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "std": self.std}
