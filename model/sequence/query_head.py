"""The per-position head of a sequence encoder: optional user context, MLP and output projection."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="retrieval")
class QueryHead(keras.layers.Layer):
    """Maps per-position states [batch_size, L, d] (and a per-row context) to query embeddings.

    With a context [batch_size, c] (e.g. encoded user side features) the context is concatenated to every
    position; then the hidden ReLU layers and a linear projection to `output_dim` follow. Without context,
    hidden layers and `output_dim`, the head is the identity.

    Args:
        hidden_units: widths of the hidden ReLU layers.
        output_dim: size of the output; None keeps the input width d.
        dropout: dropout rate after each hidden layer.
    """

    def __init__(
        self,
        hidden_units: tuple[int, ...] | list[int] = (),
        output_dim: int | None = None,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if any(u < 1 for u in hidden_units) or (output_dim is not None and output_dim < 1):
            raise ValueError(f"sizes must be >= 1, got hidden_units={hidden_units}, output_dim={output_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.output_dim = None if output_dim is None else int(output_dim)
        self.dropout = float(dropout)
        self.hidden: list[keras.layers.Dense] = []
        self.drops: list[keras.layers.Dropout] = []
        self.projection: keras.layers.Dense | None = None

    def build(self, states_shape: tuple[int | None, ...], context_shape: tuple[int | None, ...] | None = None) -> None:
        width = _size(states_shape[-1]) + (_size(context_shape[-1]) if context_shape is not None else 0)
        shape: tuple[int | None, ...] = (*states_shape[:-1], width)
        for i, units in enumerate(self.hidden_units):
            dense = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")
            dense.build(shape)
            self.hidden.append(dense)
            self.drops.append(keras.layers.Dropout(self.dropout, name=f"dropout_{i}"))
            shape = (*states_shape[:-1], units)
        if self.hidden_units or context_shape is not None or self.output_dim is not None:
            self.projection = keras.layers.Dense(self.output_dim or _size(states_shape[-1]), name="projection")
            self.projection.build(shape)

    def call(self, states: Any, context: Any = None, training: bool | None = None) -> Any:
        """Applies the head.

        Args:
            states: [batch_size, L, d].
            context: optional [batch_size, c].
            training: enables dropout.

        Returns:
            [batch_size, L, output_dim or d].
        """
        x = states
        if context is not None:
            tiled = ops.broadcast_to(
                ops.expand_dims(ops.cast(context, x.dtype), 1), (*ops.shape(x)[:2], ops.shape(context)[-1])
            )
            x = ops.concatenate([x, tiled], axis=-1)
        for dense, drop in zip(self.hidden, self.drops, strict=True):
            x = drop(dense(x), training=training)
        return x if self.projection is None else self.projection(x)

    def compute_output_shape(
        self, states_shape: tuple[int | None, ...], context_shape: tuple[int | None, ...] | None = None
    ) -> tuple[int | None, ...]:
        return (*states_shape[:-1], self.output_dim or states_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "hidden_units": list(self.hidden_units),
            "output_dim": self.output_dim,
            "dropout": self.dropout,
        }


def _size(dim: int | None) -> int:
    if dim is None:
        raise ValueError("the last axis of the head's inputs must have a known size")
    return int(dim)
