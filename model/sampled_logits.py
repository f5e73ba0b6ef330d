"""Logits of positives against sampled negatives: the one step every retrieval model trains with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from model.samplers import NegativeSampler
from model.scorer import ContrastiveScorer


def sampled_logits(
    query: Any,
    positive: Any,
    positive_ids: Any,
    sampler: NegativeSampler,
    scorer: ContrastiveScorer,
    encode_items: Callable[[Any], Any],
) -> Any:
    """[n, 1 + k] logits (positive in column 0) of each query against its positive and the sampler's negatives.

    Args:
        query: [n, d] query embeddings.
        positive: [n, d] positive item embeddings.
        positive_ids: [n] int64 positive item ids (for accidental-hit masking and logQ).
        sampler: gives the negatives and, for logQ, the positives' sampling probabilities.
        scorer: turns embeddings into logits.
        encode_items: item ids -> embeddings through the item tower (for samplers that draw ids).
    """
    negatives = sampler.sample(positive_ids, positive, encode_items)
    logits = scorer(
        query,
        positive,
        positive_ids,
        negatives.embeddings,
        negatives.ids,
        negative_log_q=negatives.log_q,
        positive_log_q=sampler.log_q(positive_ids) if scorer.logq_correction else None,
        negative_valid=negatives.valid,
    )
    return logits[0] if isinstance(logits, tuple) else logits
