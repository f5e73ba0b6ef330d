"""Which positions of a token sequence the model predicts: pure functions returning explicit tensors.

Every function takes `ids` [batch_size, L] integer tokens and `padding_mask` [batch_size, L] booleans
(True at real items) and returns new tensors; nothing travels in `_keras_mask` side channels. Real items
are assumed contiguous (left- or right-padded windows, see `model.sequence.sequences`). `causal_targets`
takes windows one column longer than the encoder's inputs (SASRec: L + 1 items give L inputs, each with
the next item as its target).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras
from keras import ops

from model.sequence.sequences import Padding
from model.sequence.vocabulary import PAD_TOKEN


class MaskedSequence(NamedTuple):
    """Model inputs and the targets it must predict.

    Attributes:
        inputs: [batch_size, L] tokens fed to the encoder (the mask token at masked positions).
        targets: [batch_size, L] tokens to predict; PAD_TOKEN where `target_mask` is False.
        target_mask: [batch_size, L] bool, True where the output at that position is scored.
        padding_mask: [batch_size, L] bool, True at the real positions of `inputs`.
    """

    inputs: Any
    targets: Any
    target_mask: Any
    padding_mask: Any


class InferenceInputs(NamedTuple):
    """Encoder inputs for a query and the position whose output is the query embedding.

    Attributes:
        inputs: [batch_size, L] tokens.
        padding_mask: [batch_size, L] bool, True at real items and at an appended mask token.
        positions: [batch_size] int32 position to read; 0 for an empty causal row.
    """

    inputs: Any
    padding_mask: Any
    positions: Any


def _columns(ids: Any) -> Any:
    """[1, L] int32 column indices."""
    return ops.expand_dims(ops.arange(ops.shape(ids)[1], dtype="int32"), 0)


def _at(ids: Any, positions: Any) -> Any:
    """[batch_size, L] bool, True at column positions[b] of row b (nowhere for a negative position)."""
    return ops.equal(_columns(ids), ops.expand_dims(ops.cast(positions, "int32"), 1))


def _apply(ids: Any, real: Any, masked: Any, mask_token: int) -> MaskedSequence:
    inputs = ops.where(masked, ops.full_like(ids, mask_token), ids)
    targets = ops.where(masked, ids, ops.full_like(ids, PAD_TOKEN))
    return MaskedSequence(inputs, targets, masked, real)


def last_position(padding_mask: Any) -> Any:
    """[batch_size] int32 column of each row's last real item; -1 for a row without items."""
    real = ops.cast(padding_mask, "bool")
    return ops.max(ops.where(real, _columns(real), ops.full_like(_columns(real), -1)), axis=1)


def random_mask(ids: Any, padding_mask: Any, *, mask_token: int, p: float = 0.2, seed: Any = None) -> MaskedSequence:
    """BERT4Rec-style masking: each real position is masked with probability `p`.

    A row with n >= 2 items gets at least one and at most n - 1 masked positions; a row with one item has
    it masked (its input is then only the mask token); an empty row gets none. Padding is never masked.
    The result is a deterministic function of the inputs and an integer `seed`.

    Args:
        ids: [batch_size, L] tokens.
        padding_mask: [batch_size, L] bool, True at real items.
        mask_token: the token that replaces masked items.
        p: masking probability in [0, 1].
        seed: int, `keras.random.SeedGenerator` (a new draw per call) or None.

    Returns:
        The masked inputs, the targets and the target mask.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    real = ops.cast(padding_mask, "bool")
    u = keras.random.uniform(ops.shape(ids), seed=seed)
    masked = ops.logical_and(real, ops.less(u, p))
    count = ops.sum(ops.cast(real, "int32"), axis=1)
    # At least one: mask the real position closest to being drawn.
    none = ops.logical_and(ops.equal(ops.sum(ops.cast(masked, "int32"), axis=1), 0), ops.greater(count, 0))
    closest = ops.argmin(ops.where(real, u, ops.full_like(u, 2.0)), axis=1)
    masked = ops.logical_or(masked, ops.logical_and(_at(ids, closest), ops.expand_dims(none, 1)))
    # Never all (n >= 2): unmask the masked position furthest from being drawn.
    every = ops.logical_and(ops.equal(ops.sum(ops.cast(masked, "int32"), axis=1), count), ops.greater(count, 1))
    furthest = ops.argmax(ops.where(masked, u, ops.full_like(u, -1.0)), axis=1)
    masked = ops.logical_and(masked, ops.logical_not(ops.logical_and(_at(ids, furthest), ops.expand_dims(every, 1))))
    return _apply(ids, real, masked, mask_token)


def mask_last(ids: Any, padding_mask: Any, *, mask_token: int) -> MaskedSequence:
    """Masks each row's last real item (evaluation: predict the last item from the ones before it)."""
    real = ops.cast(padding_mask, "bool")
    return _apply(ids, real, _at(ids, last_position(real)), mask_token)


def causal_targets(ids: Any, padding_mask: Any) -> MaskedSequence:
    """SASRec-style next-item targets of windows one column longer than the encoder's inputs.

    The inputs are the first L columns of a [batch_size, L + 1] window, and the input at column t has the
    item at column t + 1 as its target. Every input column, the last one included (the column a left-padded
    query reads), is thus trained; cutting the targets from the L inputs themselves instead would leave the
    last column, and a causal encoder's position L - 1, without any target.

    Args:
        ids: [batch_size, L + 1] tokens.
        padding_mask: [batch_size, L + 1] bool, True at real items.

    Returns:
        [batch_size, L] inputs, targets, target mask (a real input followed by a real item) and the inputs'
        padding mask.
    """
    real = ops.cast(padding_mask, "bool")
    inputs, inputs_real = ids[:, :-1], real[:, :-1]
    target_mask = ops.logical_and(inputs_real, real[:, 1:])
    targets = ops.where(target_mask, ids[:, 1:], ops.full_like(inputs, PAD_TOKEN))
    return MaskedSequence(inputs, targets, target_mask, inputs_real)


def append_mask_for_inference(
    ids: Any, padding_mask: Any, *, mask_token: int, padding: Padding = Padding.LEFT
) -> InferenceInputs:
    """Puts a mask token after each row's last real item; its output is the next-item query embedding.

    LEFT padding: the row shifts left by one (dropping its first column) and the mask takes column L - 1.
    RIGHT padding: the mask takes the first padding column, or, in a full row, the row shifts left by one.

    Args:
        ids: [batch_size, L] tokens.
        padding_mask: [batch_size, L] bool, True at real items.
        mask_token: the mask token.
        padding: the layout of the rows.

    Returns:
        Inputs, padding mask and [batch_size] positions of the mask token.
    """
    real = ops.cast(padding_mask, "bool")
    length = ops.shape(ids)[1]
    last = last_position(real)
    shifted_ids = ops.concatenate([ids[:, 1:], ops.full_like(ids[:, :1], mask_token)], axis=1)
    shifted_real = ops.concatenate([real[:, 1:], ops.ones_like(real[:, :1])], axis=1)
    shift = ops.ones_like(last, dtype="bool") if padding is Padding.LEFT else ops.equal(last, length - 1)
    position = ops.where(shift, ops.full_like(last, length - 1), last + 1)
    here = _at(ids, position)
    unshifted_ids = ops.where(here, ops.full_like(ids, mask_token), ids)
    unshifted_real = ops.logical_or(real, here)
    shift_rows = ops.expand_dims(shift, 1)
    return InferenceInputs(
        ops.where(shift_rows, shifted_ids, unshifted_ids),
        ops.where(shift_rows, shifted_real, unshifted_real),
        ops.cast(position, "int32"),
    )


def read_last_for_inference(ids: Any, padding_mask: Any) -> InferenceInputs:
    """Causal inference: the inputs unchanged, read at the last real item (column 0 for an empty row)."""
    return InferenceInputs(ids, ops.cast(padding_mask, "bool"), ops.maximum(last_position(padding_mask), 0))


def gather_positions(states: Any, positions: Any) -> Any:
    """[batch_size, d] rows of `states` [batch_size, L, d] at `positions` [batch_size]."""
    index = ops.reshape(ops.cast(positions, "int32"), (-1, 1, 1))
    return ops.squeeze(ops.take_along_axis(states, index, axis=1), axis=1)
