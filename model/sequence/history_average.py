"""YouTube-DNN style sequence encoder: the mean of the embeddings of the last N items."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from model.sequence.query_head import QueryHead


@keras.saving.register_keras_serializable(package="retrieval")
class HistoryAverageEncoder(keras.layers.Layer):
    """At every position t, averages the embeddings of the real items among positions (t - last_n, t].

    The output at the last real item is the classic "average of the last N items" query; the outputs at
    earlier positions let one window train on every next item (use it with `CausalObjective`). Optional
    user context (side features) is concatenated and passed through an MLP (`QueryHead`).

    Args:
        last_n: number of most recent positions averaged.
        hidden_units: hidden ReLU layers of the head.
        output_dim: output size; None keeps the embedding size.
        dropout: dropout after each hidden layer.
    """

    def __init__(
        self,
        last_n: int = 10,
        hidden_units: tuple[int, ...] | list[int] = (),
        output_dim: int | None = None,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if last_n < 1:
            raise ValueError(f"last_n must be >= 1, got {last_n}")
        self.last_n = int(last_n)
        self.head = QueryHead(hidden_units, output_dim, dropout, name="head")

    @property
    def causal(self) -> bool:
        """The output at t depends on positions <= t only."""
        return True

    def build(
        self,
        embeddings_shape: tuple[int | None, ...],
        padding_mask_shape: tuple[int | None, ...] | None = None,
        context_shape: tuple[int | None, ...] | None = None,
    ) -> None:
        self.head.build(embeddings_shape, context_shape)

    def call(self, embeddings: Any, padding_mask: Any, context: Any = None, training: bool | None = None) -> Any:
        """Encodes.

        Args:
            embeddings: [batch_size, L, d] item embeddings.
            padding_mask: [batch_size, L] bool, True at real items.
            context: optional [batch_size, c] user context.
            training: enables dropout.

        Returns:
            [batch_size, L, output_dim], zeros at padding positions.
        """
        real = ops.cast(padding_mask, embeddings.dtype)
        index = ops.arange(ops.shape(embeddings)[1], dtype="int32")
        gap = ops.expand_dims(index, 1) - ops.expand_dims(index, 0)  # t - s
        window = ops.cast(ops.logical_and(gap >= 0, gap < self.last_n), embeddings.dtype)
        summed = ops.einsum("ts,bsd->btd", window, embeddings * ops.expand_dims(real, -1))
        count = ops.einsum("ts,bs->bt", window, real)
        mean = summed / ops.expand_dims(ops.maximum(count, 1.0), -1)
        return self.head(mean, context, training=training) * ops.expand_dims(real, -1)

    def compute_output_shape(
        self,
        embeddings_shape: tuple[int | None, ...],
        padding_mask_shape: tuple[int | None, ...] | None = None,
        context_shape: tuple[int | None, ...] | None = None,
    ) -> tuple[int | None, ...]:
        return self.head.compute_output_shape(embeddings_shape, context_shape)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "last_n": self.last_n,
            "hidden_units": list(self.head.hidden_units),
            "output_dim": self.head.output_dim,
            "dropout": self.head.dropout,
        }
