"""Training objectives of a sequence query tower: which outputs are scored, and how a query is read.

An objective pairs a training target rule with the matching inference rule:
- `MaskedItemObjective` (BERT4Rec): random positions are masked and predicted with a bidirectional
  encoder; a query appends a mask token after the history and reads the output there.
- `CausalObjective` (SASRec, YouTube-DNN): every position predicts the next item with a causal encoder;
  a query reads the output at the last real item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from model.sequence.masking import (
    InferenceInputs,
    MaskedSequence,
    append_mask_for_inference,
    causal_targets,
    random_mask,
    read_last_for_inference,
)
from model.sequence.sequences import Padding


class SequenceObjective(Protocol):
    """What a sequential model trains on and how it reads a query."""

    @property
    def needs_causal_encoder(self) -> bool:
        """Whether the encoder must not look ahead (the targets are later inputs)."""

    @property
    def appends_mask(self) -> bool:
        """Whether inference appends a mask token after the history."""

    def window_length(self, max_length: int) -> int:
        """Columns of a training window whose encoder inputs are `max_length` long."""

    def targets(self, ids: Any, padding_mask: Any, *, mask_token: int, seed: Any) -> MaskedSequence:
        """Training inputs, targets, target mask and input padding mask of a batch of windows."""

    def inference(self, ids: Any, padding_mask: Any, *, mask_token: int, padding: Padding) -> InferenceInputs:
        """Encoder inputs and read positions of a batch of histories."""


@dataclass(frozen=True)
class MaskedItemObjective:
    """Random masking with probability `p` (see `random_mask`); append-mask inference.

    Attributes:
        p: masking probability.
    """

    p: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 < self.p <= 1.0:
            raise ValueError(f"p must be in (0, 1], got {self.p}")

    @property
    def needs_causal_encoder(self) -> bool:
        return False

    @property
    def appends_mask(self) -> bool:
        return True

    def window_length(self, max_length: int) -> int:
        return max_length

    def targets(self, ids: Any, padding_mask: Any, *, mask_token: int, seed: Any) -> MaskedSequence:
        return random_mask(ids, padding_mask, mask_token=mask_token, p=self.p, seed=seed)

    def inference(self, ids: Any, padding_mask: Any, *, mask_token: int, padding: Padding) -> InferenceInputs:
        return append_mask_for_inference(ids, padding_mask, mask_token=mask_token, padding=padding)


@dataclass(frozen=True)
class CausalObjective:
    """Next-item prediction at every position (see `causal_targets`); inference reads the last item.

    Training windows have `max_length + 1` columns: the first `max_length` are the inputs and each input's
    next item is its target, so the output at every input column (the last one, which a query reads,
    included) is trained.
    """

    @property
    def needs_causal_encoder(self) -> bool:
        return True

    @property
    def appends_mask(self) -> bool:
        return False

    def window_length(self, max_length: int) -> int:
        return max_length + 1

    def targets(self, ids: Any, padding_mask: Any, *, mask_token: int, seed: Any) -> MaskedSequence:
        return causal_targets(ids, padding_mask)

    def inference(self, ids: Any, padding_mask: Any, *, mask_token: int, padding: Padding) -> InferenceInputs:
        return read_last_for_inference(ids, padding_mask)
