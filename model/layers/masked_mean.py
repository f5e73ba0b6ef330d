"""Mean pooling of a multi-valued feature's embeddings, ignoring padding."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="retrieval")
class MaskedMeanPooling(keras.layers.Layer):
    """Averages [batch_size, n, d] embeddings over the positions whose index is not `padding_index`.

    A row with no valid position pools to zeros.

    Args:
        padding_index: index value that marks padding in the `indices` input.
    """

    def __init__(self, padding_index: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.padding_index = int(padding_index)

    def call(self, embeddings: Any, indices: Any) -> Any:
        """Pools.

        Args:
            embeddings: [batch_size, n, d].
            indices: [batch_size, n] integer lookups; `padding_index` marks padding.

        Returns:
            [batch_size, d].
        """
        valid = ops.cast(ops.not_equal(indices, self.padding_index), embeddings.dtype)
        total = ops.sum(embeddings * ops.expand_dims(valid, -1), axis=1)
        count = ops.maximum(ops.sum(valid, axis=1, keepdims=True), 1.0)
        return total / count

    def compute_output_shape(
        self, embeddings_shape: tuple[int | None, ...], indices_shape: tuple[int | None, ...]
    ) -> tuple[int | None, ...]:
        return (embeddings_shape[0], embeddings_shape[2])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding_index": self.padding_index}
