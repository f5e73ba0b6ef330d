"""Query and item towers: feature embeddings, concatenation, MLP, optional L2 normalisation.

Each tower is its own functional Keras model taking a dict of raw features (strings for categorical
features, floats for numeric ones), so the query tower can be exported and served alone.
"""

from __future__ import annotations

from typing import Any

import keras

from model.features import CategoricalFeature, NumericFeature, TowerSpec
from model.layers import MaskedMeanPooling, Standardize


def tower_inputs(spec: TowerSpec) -> dict[str, keras.KerasTensor]:
    """Keras inputs for a tower: [batch] strings, [batch, n] padded strings, or [batch] floats."""
    inputs: dict[str, keras.KerasTensor] = {}
    for feature in spec.features:
        if isinstance(feature, CategoricalFeature):
            shape: tuple[int, ...] = (feature.max_values,) if feature.multi_valued else ()
            inputs[feature.name] = keras.Input(shape=shape, dtype="string", name=feature.name)
        else:
            inputs[feature.name] = keras.Input(shape=(), dtype="float32", name=feature.name)
    return inputs


def _encode_categorical(feature: CategoricalFeature, value: Any, spec: TowerSpec) -> Any:
    dim = feature.resolved_dim(spec.embedding_rule)
    prefix = f"{spec.name}_{feature.name}"
    if not feature.multi_valued:
        lookup = keras.layers.StringLookup(
            vocabulary=list(feature.vocabulary),
            num_oov_indices=feature.num_oov_buckets,
            mask_token=None,
            name=f"{prefix}_lookup",
        )
        embedding = keras.layers.Embedding(feature.cardinality, dim, name=f"{prefix}_embedding")
        return embedding(lookup(value))
    # Multi-valued: "" is padding and maps to index 0, which the pooling ignores.
    lookup = keras.layers.StringLookup(
        vocabulary=list(feature.vocabulary),
        num_oov_indices=feature.num_oov_buckets,
        mask_token="",
        name=f"{prefix}_lookup",
    )
    indices = lookup(value)
    embedding = keras.layers.Embedding(feature.cardinality + 1, dim, name=f"{prefix}_embedding")
    return MaskedMeanPooling(padding_index=0, name=f"{prefix}_pool")(embedding(indices), indices)


def _encode_numeric(feature: NumericFeature, value: Any, spec: TowerSpec) -> Any:
    return Standardize(feature.mean, feature.std, name=f"{spec.name}_{feature.name}_standardize")(value)


def build_tower(spec: TowerSpec) -> keras.Model:
    """Builds the tower described by `spec`.

    Returns:
        A functional model mapping the dict of raw features to [batch_size, spec.output_dim] embeddings.
    """
    inputs = tower_inputs(spec)
    parts = []
    for feature in spec.features:
        if isinstance(feature, CategoricalFeature):
            parts.append(_encode_categorical(feature, inputs[feature.name], spec))
        else:
            parts.append(_encode_numeric(feature, inputs[feature.name], spec))
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name=f"{spec.name}_concat")(parts)
    for i, units in enumerate(spec.hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"{spec.name}_dense_{i}")(x)
        if spec.dropout > 0:
            x = keras.layers.Dropout(spec.dropout, name=f"{spec.name}_dropout_{i}")(x)
    x = keras.layers.Dense(spec.output_dim, name=f"{spec.name}_output", dtype="float32")(x)
    if spec.l2_normalize:
        x = keras.layers.UnitNormalization(axis=-1, name=f"{spec.name}_l2_normalize", dtype="float32")(x)
    return keras.Model(inputs=inputs, outputs=x, name=f"{spec.name}_tower")
