"""The served query tower of a sequential model: raw history strings (+ user side features) -> [B, d].

`build_query_model` returns a functional Keras model whose inputs are named like the features of
`query_spec`, so `model.bundle.export.export_bundle` exports it unchanged: the history is a multi-valued
categorical feature (the reserved input `HISTORY_FEATURE`, [B, H] strings padded with ""). Empty strings may
sit anywhere (the service pads on the right); the real ids are packed in order, most recent last, the latest
`max_length` kept, and then the training layout, the objective's inference rule and the encoder follow,
through the same layers as `SequentialRetrievalModel.query_embeddings`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from model.bundle.reserved import HISTORY_FEATURE
from model.features import CategoricalFeature, TowerSpec
from model.sequence.masking import append_mask_for_inference, gather_positions, read_last_for_inference
from model.sequence.retrieval_model import SequentialRetrievalModel
from model.sequence.sequences import Padding
from model.sequence.vocabulary import PAD_TOKEN


@keras.saving.register_keras_serializable(package="retrieval")
class CompactHistory(keras.layers.Layer):
    """Packs the real tokens of [B, H] histories (padding anywhere) into [B, max_length] training windows.

    Args:
        max_length: window length L; longer histories keep their latest L tokens.
        padding: "left" or "right", the layout of the training windows (`Padding` values).

    Call returns (tokens [B, L] int64, padding_mask [B, L] bool).
    """

    def __init__(self, max_length: int, padding: str = Padding.LEFT.value, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.max_length = int(max_length)
        self.padding = Padding(padding).value

    def call(self, tokens: Any) -> tuple[Any, Any]:
        tokens = ops.cast(tokens, "int64")
        width = tokens.shape[1]
        real = ops.not_equal(tokens, PAD_TOKEN)
        column = ops.arange(width, dtype="int32")
        order = ops.argsort(ops.where(real, column + width, column), axis=1)  # padding first, items in order
        packed = ops.take_along_axis(tokens, order, axis=1)
        if width >= self.max_length:
            packed = packed[:, width - self.max_length :]
        else:
            packed = ops.pad(packed, [[0, 0], [self.max_length - width, 0]], constant_values=PAD_TOKEN)
        if self.padding == Padding.RIGHT.value:
            count = ops.minimum(ops.sum(ops.cast(real, "int32"), axis=1, keepdims=True), self.max_length)
            window = ops.expand_dims(ops.arange(self.max_length, dtype="int32"), 0)
            source = ops.minimum(window + self.max_length - count, self.max_length - 1)
            packed = ops.where(window < count, ops.take_along_axis(packed, source, axis=1), PAD_TOKEN)
        return packed, ops.not_equal(packed, PAD_TOKEN)

    def compute_output_spec(self, tokens: Any) -> tuple[Any, Any]:
        shape = (tokens.shape[0], self.max_length)
        return keras.KerasTensor(shape, "int64"), keras.KerasTensor(shape, "bool")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "max_length": self.max_length, "padding": self.padding}


@keras.saving.register_keras_serializable(package="retrieval")
class QueryInputs(keras.layers.Layer):
    """The objective's inference rule as a layer: append a mask token, or read the last item.

    Args:
        mask_token: the mask token id.
        append_mask: True for masked-item models (append-mask inference), False for causal ones.
        padding: "left" or "right", the layout of the windows.

    Call returns (inputs [B, L], padding_mask [B, L], positions [B]).
    """

    def __init__(self, mask_token: int, append_mask: bool = True, padding: str = Padding.LEFT.value, **kwargs: Any):
        super().__init__(**kwargs)
        self.mask_token, self.append_mask, self.padding = int(mask_token), bool(append_mask), Padding(padding).value

    def call(self, tokens: Any, padding_mask: Any) -> tuple[Any, Any, Any]:
        if self.append_mask:
            return tuple(
                append_mask_for_inference(
                    tokens, padding_mask, mask_token=self.mask_token, padding=Padding(self.padding)
                )
            )
        return tuple(read_last_for_inference(tokens, padding_mask))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "mask_token": self.mask_token,
            "append_mask": self.append_mask,
            "padding": self.padding,
        }


@keras.saving.register_keras_serializable(package="retrieval")
class GatherPositions(keras.layers.Layer):
    """[B, L, d] states and [B] positions -> [B, d]."""

    def call(self, states: Any, positions: Any) -> Any:
        return gather_positions(states, positions)

    def compute_output_shape(self, states_shape: tuple[Any, ...], positions_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        return (states_shape[0], states_shape[2])


def build_query_model(model: SequentialRetrievalModel, history_length: int | None = None) -> keras.Model:
    """The serving query tower of a trained model, sharing its layers (and so its weights).

    Args:
        model: the trained model.
        history_length: width H of the history input; default the model's max_length.

    Returns:
        A functional model: {HISTORY_FEATURE: [B, H] strings, **raw context inputs} -> [B, d] float32.
    """
    width = history_length or model.max_length
    history = keras.Input(shape=(width,), dtype="string", name=HISTORY_FEATURE)
    inputs: dict[str, Any] = {HISTORY_FEATURE: history}
    lookup = keras.layers.StringLookup(
        vocabulary=[str(i) for i in model.catalog.external_ids.tolist()],
        mask_token="",
        num_oov_indices=1,
        output_mode="int",
        name="history_lookup",
    )
    tokens, padding_mask = CompactHistory(model.max_length, model.padding.value, name="compact_history")(
        lookup(history)
    )
    query_inputs, query_mask, positions = QueryInputs(
        model.mask_token, model.objective.appends_mask, model.padding.value, name="query_inputs"
    )(tokens, padding_mask)
    context = None
    if model.context_tower is not None:
        for tensor in model.context_tower.inputs:
            if tensor.name == HISTORY_FEATURE:
                raise ValueError(f"the context tower may not have an input named {HISTORY_FEATURE!r}")
            inputs[tensor.name] = keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=tensor.name)
        context = model.context_tower({t.name: inputs[t.name] for t in model.context_tower.inputs})
    states = model.encoder(model.item_embedding(query_inputs), query_mask, context)
    query = GatherPositions(name="read_query")(states, positions)
    if model.l2_normalize:
        query = model.normalization(query)
    return keras.Model(inputs=inputs, outputs=query, name="query_tower")


def query_spec(
    model: SequentialRetrievalModel, context_spec: TowerSpec | None = None, history_length: int | None = None
) -> TowerSpec:
    """The served query tower's feature schema for the bundle manifest (request validation).

    Args:
        model: the trained model.
        context_spec: the spec the context tower was built from, if any.
        history_length: width H of the history input; default the model's max_length.
    """
    history = CategoricalFeature(
        HISTORY_FEATURE,
        tuple(str(i) for i in model.catalog.external_ids.tolist()),
        max_values=history_length or model.max_length,
    )
    return TowerSpec(
        name="query",
        features=(history, *(context_spec.features if context_spec is not None else ())),
        hidden_units=(),
        output_dim=model.embedding_dim,
        l2_normalize=model.l2_normalize,
    )
