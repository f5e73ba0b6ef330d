"""Sequential query towers: item sequences, masking, encoders, the trained model and its served query tower."""

from model.sequence.history_average import HistoryAverageEncoder
from model.sequence.masking import (
    InferenceInputs,
    MaskedSequence,
    append_mask_for_inference,
    causal_targets,
    gather_positions,
    last_position,
    mask_last,
    random_mask,
    read_last_for_inference,
)
from model.sequence.objectives import CausalObjective, MaskedItemObjective, SequenceObjective
from model.sequence.pipeline import sequence_dataset
from model.sequence.query_head import QueryHead
from model.sequence.retrieval_model import PADDING_MASK, TOKENS, SequentialRetrievalModel
from model.sequence.sequences import Padding, Sequences, build_sequences
from model.sequence.serving import (
    CompactHistory,
    GatherPositions,
    QueryInputs,
    build_query_model,
    query_spec,
)
from model.sequence.transformer import TransformerBlock, TransformerSequenceEncoder
from model.sequence.vocabulary import ITEM_OFFSET, OOV_TOKEN, PAD_TOKEN, SequenceVocabulary

__all__ = [
    "ITEM_OFFSET",
    "OOV_TOKEN",
    "PADDING_MASK",
    "PAD_TOKEN",
    "TOKENS",
    "CausalObjective",
    "CompactHistory",
    "GatherPositions",
    "HistoryAverageEncoder",
    "InferenceInputs",
    "MaskedItemObjective",
    "MaskedSequence",
    "Padding",
    "QueryHead",
    "QueryInputs",
    "SequenceObjective",
    "SequenceVocabulary",
    "Sequences",
    "SequentialRetrievalModel",
    "TransformerBlock",
    "TransformerSequenceEncoder",
    "append_mask_for_inference",
    "build_query_model",
    "build_sequences",
    "causal_targets",
    "gather_positions",
    "last_position",
    "mask_last",
    "query_spec",
    "random_mask",
    "read_last_for_inference",
    "sequence_dataset",
]
