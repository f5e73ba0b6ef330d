"""A native Keras 3 transformer sequence encoder: learned positions, pre-norm blocks, padding-aware attention."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from model.sequence.query_head import QueryHead


@keras.saving.register_keras_serializable(package="retrieval")
class TransformerBlock(keras.layers.Layer):
    """One pre-norm block: x + MHA(LN(x)), then x + FFN(LN(x)), with dropout on both branches.

    Args:
        dim: model width d.
        num_heads: attention heads; d must be divisible by it.
        ff_dim: hidden width of the feed-forward network.
        dropout: dropout rate on attention weights and both residual branches.
        epsilon: layer-norm epsilon.
    """

    def __init__(
        self, dim: int, num_heads: int, ff_dim: int, dropout: float = 0.0, epsilon: float = 1e-6, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if dim < 1 or num_heads < 1 or ff_dim < 1 or dim % num_heads:
            raise ValueError(
                f"need dim, num_heads, ff_dim >= 1 and dim divisible by num_heads, got {dim}, {num_heads}, {ff_dim}"
            )
        self.dim, self.num_heads, self.ff_dim = int(dim), int(num_heads), int(ff_dim)
        self.dropout, self.epsilon = float(dropout), float(epsilon)
        self.attention_norm = keras.layers.LayerNormalization(epsilon=epsilon, name="attention_norm")
        self.attention = keras.layers.MultiHeadAttention(num_heads, dim // num_heads, dropout=dropout, name="attention")
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=epsilon, name="ffn_norm")
        self.ffn_hidden = keras.layers.Dense(ff_dim, activation="gelu", name="ffn_hidden")
        self.ffn_output = keras.layers.Dense(dim, name="ffn_output")
        self.drop = keras.layers.Dropout(dropout)

    def build(
        self, x_shape: tuple[int | None, ...], attention_mask_shape: tuple[int | None, ...] | None = None
    ) -> None:
        self.attention_norm.build(x_shape)
        self.attention.build(x_shape, x_shape)
        self.ffn_norm.build(x_shape)
        self.ffn_hidden.build(x_shape)
        self.ffn_output.build((*x_shape[:-1], self.ff_dim))

    def call(self, x: Any, attention_mask: Any, training: bool | None = None) -> Any:
        """[batch_size, L, d] -> [batch_size, L, d]; attention_mask [batch_size, L, L] bool (query, key)."""
        h = self.attention_norm(x)
        x = x + self.drop(self.attention(h, h, attention_mask=attention_mask, training=training), training=training)
        h = self.ffn_hidden(self.ffn_norm(x))
        return x + self.drop(self.ffn_output(self.drop(h, training=training)), training=training)

    def compute_output_shape(
        self, x_shape: tuple[int | None, ...], attention_mask_shape: tuple[int | None, ...] | None = None
    ) -> tuple[int | None, ...]:
        return x_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "dim": self.dim,
            "num_heads": self.num_heads,
            "ff_dim": self.ff_dim,
            "dropout": self.dropout,
            "epsilon": self.epsilon,
        }


@keras.saving.register_keras_serializable(package="retrieval")
class TransformerSequenceEncoder(keras.layers.Layer):
    """Contextual per-position states of an item sequence.

    Item embeddings plus learned position embeddings go through input dropout, `num_layers` pre-norm
    transformer blocks and a final layer norm. Attention never looks at padding keys (and, when `causal`,
    at later positions), so padded values cannot change the outputs at real positions; outputs at padding
    positions are zeros. A `QueryHead` (user context, MLP, projection) follows.

    Args:
        max_length: longest sequence L (rows of the position embedding).
        dim: model width d; the input embeddings must have this size.
        num_layers: transformer blocks.
        num_heads: attention heads per block.
        ff_dim: feed-forward width; None = 4 * dim.
        dropout: dropout rate in the blocks and on the input.
        causal: position t attends to positions <= t only (SASRec); False is bidirectional (BERT4Rec).
        hidden_units: hidden ReLU layers of the head.
        output_dim: output size; None keeps d.
        epsilon: layer-norm epsilon.
    """

    def __init__(
        self,
        max_length: int,
        dim: int,
        num_layers: int = 2,
        num_heads: int = 2,
        ff_dim: int | None = None,
        dropout: float = 0.1,
        causal: bool = False,
        hidden_units: tuple[int, ...] | list[int] = (),
        output_dim: int | None = None,
        epsilon: float = 1e-6,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_length < 1 or num_layers < 1:
            raise ValueError(f"max_length and num_layers must be >= 1, got {max_length} and {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.max_length, self.dim, self.num_layers, self.num_heads = (
            int(max_length),
            int(dim),
            int(num_layers),
            int(num_heads),
        )
        self.ff_dim = int(ff_dim) if ff_dim is not None else 4 * self.dim
        self.dropout, self.causal, self.epsilon = float(dropout), bool(causal), float(epsilon)
        self.positions = keras.layers.Embedding(self.max_length, self.dim, name="positions")
        self.input_dropout = keras.layers.Dropout(self.dropout)
        self.blocks = [
            TransformerBlock(self.dim, self.num_heads, self.ff_dim, self.dropout, self.epsilon, name=f"block_{i}")
            for i in range(self.num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(epsilon=self.epsilon, name="final_norm")
        self.head = QueryHead(hidden_units, output_dim, self.dropout, name="head")

    def build(
        self,
        embeddings_shape: tuple[int | None, ...],
        padding_mask_shape: tuple[int | None, ...] | None = None,
        context_shape: tuple[int | None, ...] | None = None,
    ) -> None:
        if embeddings_shape[-1] != self.dim:
            raise ValueError(f"embeddings have {embeddings_shape[-1]} dims, the encoder expects dim={self.dim}")
        if embeddings_shape[1] is not None and embeddings_shape[1] > self.max_length:
            raise ValueError(f"sequences of length {embeddings_shape[1]} exceed max_length={self.max_length}")
        self.positions.build((self.max_length,))
        length = embeddings_shape[1]
        for block in self.blocks:
            block.build(embeddings_shape, (embeddings_shape[0], length, length))
        self.final_norm.build(embeddings_shape)
        self.head.build(embeddings_shape, context_shape)

    def call(self, embeddings: Any, padding_mask: Any, context: Any = None, training: bool | None = None) -> Any:
        """Encodes.

        Args:
            embeddings: [batch_size, L, dim] item (and mask-token) embeddings, L <= max_length.
            padding_mask: [batch_size, L] bool, True at real positions.
            context: optional [batch_size, c] user context for the head.
            training: enables dropout.

        Returns:
            [batch_size, L, output_dim], zeros at padding positions.
        """
        real = ops.cast(padding_mask, "bool")
        length = ops.shape(embeddings)[1]
        index = ops.arange(length, dtype="int32")
        x = embeddings + ops.expand_dims(ops.cast(self.positions(index), embeddings.dtype), 0)
        x = self.input_dropout(x, training=training)
        attend = ops.broadcast_to(ops.expand_dims(real, 1), (ops.shape(real)[0], length, length))
        if self.causal:
            lower = ops.greater_equal(ops.expand_dims(index, 1), ops.expand_dims(index, 0))
            attend = ops.logical_and(attend, ops.expand_dims(lower, 0))
        for block in self.blocks:
            x = block(x, attend, training=training)
        x = self.head(self.final_norm(x), context, training=training)
        return x * ops.expand_dims(ops.cast(real, x.dtype), -1)

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
            "max_length": self.max_length,
            "dim": self.dim,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "ff_dim": self.ff_dim,
            "dropout": self.dropout,
            "causal": self.causal,
            "hidden_units": list(self.head.hidden_units),
            "output_dim": self.head.output_dim,
            "epsilon": self.epsilon,
        }
