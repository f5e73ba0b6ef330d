"""Full-catalog exact top-k retrieval metrics (Recall, NDCG, MRR @K) with random tie-breaking."""

from model.evaluation.evaluate import evaluate_embeddings, evaluate_query_scores, evaluate_scores, popularity_scores
from model.evaluation.exclusions import Exclusions
from model.evaluation.metrics import metrics_from_ranks, rank_of_target, retrieval_metrics
from model.evaluation.ranking import exact_top_k
from model.evaluation.report import full_report

__all__ = [
    "Exclusions",
    "evaluate_embeddings",
    "evaluate_query_scores",
    "evaluate_scores",
    "exact_top_k",
    "full_report",
    "metrics_from_ranks",
    "popularity_scores",
    "rank_of_target",
    "retrieval_metrics",
]
